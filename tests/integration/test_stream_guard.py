"""A malformed event of ours never reaches the client: the stream guard closes the stream
with an `error` event, logs one line, and the server goes on serving."""

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import anthropic
import pytest

from app.core.anthropic_stream import StreamTranslator
from app.core.anthropic_stream_guard import MALFORMED_STREAM_MESSAGE
from app.core.anthropic_types import StreamEvent
from app.core.sse import ServerSentEvent
from app.server.records import RequestRecord
from tests.anthropic_grammar import assert_anthropic_grammar
from tests.fake_upstream import http_request, reply_stream, text_stream
from tests.integration.conftest import LiveProxy

MODEL = "claude-sonnet-4-6"
ORIGINAL_FEED_SSE = StreamTranslator.feed_sse
ORIGINAL_FINISH = StreamTranslator.finish


def feed_sse_with_wrong_delta_index(
    self: StreamTranslator, event: ServerSentEvent
) -> list[StreamEvent]:
    out = ORIGINAL_FEED_SSE(self, event)
    return [{**e, "index": 7} if e["type"] == "content_block_delta" else e for e in out]


def finish_without_closing(self: StreamTranslator, *, done_sent: bool = False) -> list[StreamEvent]:
    ORIGINAL_FINISH(self, done_sent=done_sent)
    return [{"type": "message_stop"}]  # skips content_block_stop and message_delta


def stream_request(proxy: LiveProxy) -> tuple[int, dict[str, str], list[dict[str, Any]]]:
    body = {
        "model": MODEL,
        "max_tokens": 20,
        "stream": True,
        "messages": [{"role": "user", "content": "hello"}],
    }
    headers = {
        "x-api-key": proxy.client_key,
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
    }
    status, response_headers, raw = http_request(
        proxy.url + "/v1/messages", "POST", body=json.dumps(body).encode(), headers=headers
    )
    lines = raw.decode().splitlines()
    events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    names = [line[7:] for line in lines if line.startswith("event: ")]
    assert names == [e["type"] for e in events]  # each SSE name matches its payload
    return status, response_headers, events


@pytest.mark.allow_warnings  # the bug is logged at ERROR, on purpose
@pytest.mark.parametrize(
    ("method", "bug", "reason"),
    [
        pytest.param(
            "feed_sse",
            feed_sse_with_wrong_delta_index,
            "content_block_delta index 7 != 0",
            id="bad-delta-mid-stream",
        ),
        pytest.param(
            "finish",
            finish_without_closing,
            "message_stop not allowed while block 0 (text) is open",
            id="bad-end",
        ),
    ],
)
def test_malformed_event_closes_the_stream_with_an_error(
    proxy: LiveProxy,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    method: str,
    bug: Callable[..., list[StreamEvent]],
    reason: str,
) -> None:
    finished: list[RequestRecord] = []
    done = threading.Event()

    def on_finished(record: RequestRecord) -> None:
        finished.append(record)
        done.set()

    proxy.server.app_state.on_request_finished.append(on_finished)
    monkeypatch.setattr(StreamTranslator, method, bug)
    proxy.upstream.enqueue(reply_stream(lambda b: text_stream(b, "hello there, world")))
    with caplog.at_level(logging.INFO, logger="app"):
        status, headers, events = stream_request(proxy)
    assert status == 200
    assert_anthropic_grammar(events)
    assert [e["type"] for e in events[-2:]] == ["content_block_stop", "error"]
    assert events[-1]["error"] == {"type": "api_error", "message": MALFORMED_STREAM_MESSAGE}
    assert not any(e.get("index") == 7 for e in events)  # the bad event itself never went out

    request_id = headers["request-id"]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].startswith(f"{request_id} NimBridge bug: malformed stream, event ")
    assert errors[0].endswith(reason)
    assert done.wait(10)  # the record is complete only after the response ends
    assert finished[0].request_id == request_id
    assert finished[0].error == f"NimBridge bug: malformed stream ({reason})"

    monkeypatch.undo()  # the bug fixed: the same server answers the next stream in full
    proxy.upstream.enqueue(reply_stream(lambda b: text_stream(b, "fine again")))
    status, _, events = stream_request(proxy)
    assert status == 200
    assert_anthropic_grammar(events)
    assert events[-1]["type"] == "message_stop"
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text == "fine again"


@pytest.mark.allow_warnings
def test_sdk_sees_the_malformed_stream_as_an_api_error(
    proxy: LiveProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(StreamTranslator, "feed_sse", feed_sse_with_wrong_delta_index)
    proxy.upstream.enqueue(reply_stream(lambda b: text_stream(b, "hello there")))
    client = proxy.client()
    with (
        pytest.raises(anthropic.APIStatusError, match="malformed stream"),
        client.messages.stream(
            model=MODEL, max_tokens=20, messages=[{"role": "user", "content": "hello"}]
        ) as stream,
    ):
        stream.get_final_message()
