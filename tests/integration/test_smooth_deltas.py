"""An upstream's burst (a paragraph in one chunk) reaches the SDK as several small deltas."""

import asyncio
import json
from typing import Any, cast

import pytest
from aiohttp import web
from anthropic.types import MessageParam

from app.core.anthropic_stream import StreamTranslator
from app.core.anthropic_types import StreamEvent
from app.core.rechunk import MAX_SPREAD_S, STEP_S
from app.server.messages.stream_relay import EventWriter
from app.server.records import RequestRecord
from tests.anthropic_grammar import assert_anthropic_grammar
from tests.fake_upstream import chunk, http_request, reply_stream
from tests.integration.conftest import MakeProxy

PARAGRAPH = ("Café au lait, naïve façade: the résumé says 👩‍💻 works 🇫🇷 and 👍🏽 ok. " * 9)[:600]
HI: list[MessageParam] = [{"role": "user", "content": "hi"}]
THOUGHT = "Let me think about what the user wants here, step by step, carefully. " * 4


def _burst(body: dict[str, Any]) -> list[Any]:
    usage = {"prompt_tokens": 5, "completion_tokens": 150, "total_tokens": 155}
    return [
        chunk(body, {"role": "assistant", "reasoning_content": THOUGHT}),
        chunk(body, {"content": PARAGRAPH}),
        chunk(body, {}, finish_reason="stop"),
        chunk(body, None, usage=usage),
        "[DONE]",
    ]


@pytest.mark.parametrize("smooth", [True, False], ids=["smooth", "as-sent"])
def test_a_burst_is_split_and_the_sdk_text_is_the_upstreams(
    make_proxy: MakeProxy, smooth: bool
) -> None:
    proxy = make_proxy(smooth_deltas=smooth)
    proxy.upstream.enqueue(reply_stream(_burst), reply_stream(_burst))
    request = {"model": "claude-sonnet-4-6", "max_tokens": 1000, "messages": HI, "stream": True}
    status, _, raw = http_request(
        proxy.url + "/v1/messages",
        "POST",
        body=json.dumps(request).encode(),
        headers={"x-api-key": proxy.client_key, "content-type": "application/json"},
    )
    assert status == 200
    events = [json.loads(line[6:]) for line in raw.decode().splitlines() if line[:6] == "data: "]
    assert_anthropic_grammar(events)
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    texts = [d["text"] for d in deltas if d["type"] == "text_delta"]
    thoughts = [d["thinking"] for d in deltas if d["type"] == "thinking_delta"]
    assert "".join(texts) == PARAGRAPH and "".join(thoughts) == THOUGHT
    if smooth:
        assert len(texts) >= 600 // 24 and max(map(len, texts)) <= 24
        assert len(thoughts) > 1
    else:
        assert texts == [PARAGRAPH] and thoughts == [THOUGHT]

    # The official SDK's own accumulation gives back the upstream's text exactly.
    with proxy.client().messages.stream(
        model="claude-sonnet-4-6", max_tokens=1000, messages=HI
    ) as stream:
        final = stream.get_final_message()
    blocks = {block.type: block for block in final.content}
    assert blocks["text"].text == PARAGRAPH  # type: ignore[union-attr]
    assert blocks["thinking"].thinking == THOUGHT  # type: ignore[union-attr]


# The writer's timing, against a response that notes when each write came.
class _RecordingResponse:
    def __init__(self) -> None:
        self.writes: list[tuple[float, list[dict[str, Any]]]] = []

    async def write(self, data: bytes) -> None:
        events = [
            json.loads(line[6:]) for line in data.decode().splitlines() if line[:6] == "data: "
        ]
        self.writes.append((asyncio.get_running_loop().time(), events))

    async def write_eof(self, data: bytes = b"") -> None:  # the stream's last write
        if data:
            await self.write(data)


def _writer(smooth: bool = True) -> tuple[EventWriter, _RecordingResponse]:
    response = _RecordingResponse()
    record = RequestRecord(request_id="req_test", method="POST", path="/v1/messages")
    writer = EventWriter(cast(web.StreamResponse, response), 600, record, smooth_deltas=smooth)
    return writer, response


START: list[StreamEvent] = [
    *StreamTranslator(model="m", message_id="msg_1").start(),  # message_start
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
]
BURST: StreamEvent = {
    "type": "content_block_delta",
    "index": 0,
    "delta": {"type": "text_delta", "text": PARAGRAPH},
}
END: list[StreamEvent] = [
    {"type": "content_block_stop", "index": 0},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 9},
    },
    {"type": "message_stop"},
]


def _texts(response: _RecordingResponse) -> str:
    return "".join(
        e["delta"]["text"]
        for _, events in response.writes
        for e in events
        if e["type"] == "content_block_delta"
    )


async def test_a_burst_followed_by_silence_is_spread_within_the_bound() -> None:
    writer, response = _writer()
    await writer.write(START)
    burst_at = asyncio.get_running_loop().time()
    await writer.write([BURST])
    await asyncio.sleep(MAX_SPREAD_S * 4)  # the upstream says nothing for a while
    await writer.write(END)
    text_writes = [(at, ev) for at, ev in response.writes if ev[0]["type"] == "content_block_delta"]
    # Small deltas, in a few timed writes (one a step): the display moves in steps.
    assert sum(len(events) for _, events in text_writes) >= 600 // 24
    assert len(text_writes) == 1 + MAX_SPREAD_S // STEP_S
    first, last = text_writes[0][0], text_writes[-1][0]
    assert first - burst_at < MAX_SPREAD_S  # the first piece is not held back
    # Spread out (sleeps are never shorter than asked), and bounded (generously: a
    # loaded machine wakes timers late, never early).
    assert MAX_SPREAD_S * 0.8 <= last - first < MAX_SPREAD_S * 3
    assert _texts(response) == PARAGRAPH
    assert response.writes[-1][1][-1]["type"] == "message_stop"


async def test_what_comes_next_sends_the_pending_pieces_at_once() -> None:
    writer, response = _writer()
    await writer.write(START)
    await writer.write([BURST])
    end_at = asyncio.get_running_loop().time()
    await writer.write(END)  # the upstream's next event right behind the burst
    done_at = asyncio.get_running_loop().time()
    # Pieces 2..n went in one write just before the end: nothing waited for its turn.
    *_, (_, pending), (_, last) = response.writes
    assert all(e["type"] == "content_block_delta" for e in pending) and len(pending) > 1
    assert [e["type"] for e in last] == ["content_block_stop", "message_delta", "message_stop"]
    assert done_at - end_at < MAX_SPREAD_S  # the stream's end is not late
    assert _texts(response) == PARAGRAPH


async def test_without_smoothing_the_burst_goes_as_sent() -> None:
    writer, response = _writer(smooth=False)
    await writer.write(START)
    await writer.write([BURST])
    assert response.writes[-1][1] == [BURST]


async def test_a_client_gone_mid_spread_is_reported_and_nothing_is_left_running() -> None:
    writer, response = _writer()
    await writer.write(START)

    async def gone(data: bytes) -> None:
        raise ConnectionResetError("client went away")

    await writer.write([BURST])  # the first piece goes; the rest are spreading
    response.write = gone  # type: ignore[method-assign]
    with pytest.raises(ConnectionResetError):
        await writer.write(END)
    writer.abandon()
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("pace ")]


async def test_abandon_stops_the_spreading_task() -> None:
    writer, response = _writer()
    await writer.write(START)
    await writer.write([BURST])
    writes_before = len(response.writes)
    writer.abandon()
    await asyncio.sleep(MAX_SPREAD_S * 2)
    assert len(response.writes) == writes_before
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("pace ") and not t.done()]


async def test_an_upstream_chunk_with_nothing_to_show_keeps_the_pace() -> None:
    writer, response = _writer()
    await writer.write(START)
    await writer.write([BURST])
    writes = len(response.writes)
    await writer.write([])  # e.g. a finish_reason chunk whose events come with [DONE]
    assert len(response.writes) == writes  # the pending pieces were not hurried out
    await writer.write(END)
    assert _texts(response) == PARAGRAPH
