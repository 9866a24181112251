"""StreamTranslator under random chunk sequences: whatever the upstream sends, the
client gets a grammatical stream, and nothing but our typed errors is raised."""

import json
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from app.core.anthropic_stream import StreamState, StreamTranslator
from app.core.anthropic_stream_guard import StreamGuard
from app.core.anthropic_types import StreamEvent
from app.core.errors import ProxyError
from app.core.sse import ServerSentEvent, SSEDecoder, encode_event
from app.core.thinking_display import ThinkingDisplay, reasoning_from_signature
from tests.fuzz import FUZZ
from tests.fuzz.strategies import (
    CHUNKS,
    DEEP_JSON,
    DEEP_OBJECT,
    FINAL_CHUNKS,
    JSON_VALUES,
    TOOL_SETS,
    USAGE_CHUNKS,
    WEATHER_TOOL,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "openai_stream"
FIXTURE_BODIES = {p.stem: p.read_bytes() for p in sorted(FIXTURES.glob("*.sse"))}
_ENDED = (StreamState.FINISHED, StreamState.FAILED)

# What reaches `feed_sse` besides well-formed chunks: the upstream oddities of PROTOCOL.md.
ODD_SSE = st.one_of(
    st.builds(
        ServerSentEvent,
        st.sampled_from(
            ["[DONE]", " [DONE] ", "", " ", "{not json", "[1]", DEEP_JSON, DEEP_OBJECT]
        ),
    ),
    st.builds(ServerSentEvent, JSON_VALUES.map(json.dumps)),
    st.builds(
        ServerSentEvent,
        st.sampled_from(
            ['{"error": {"message": "overloaded", "code": 503}}', "boom", "", "[2]", DEEP_OBJECT]
        ),
        st.just("error"),
    ),
    st.builds(
        lambda error: ServerSentEvent(json.dumps({"error": error})),
        JSON_VALUES.filter(bool),
    ),
)
# A chunk goes in parsed (`feed`) or as the SSE event the decoder would give (`feed_sse`).
# A chunk goes in parsed (`feed`) or as the SSE event the decoder gives (`feed_sse`).
CHUNK_ITEMS = CHUNKS | CHUNKS.map(lambda chunk: ServerSentEvent(json.dumps(chunk)))


@st.composite
def streams(draw: st.DrawFn) -> list[Any]:
    """Chunks; in a quarter of the streams an odd event somewhere; mostly a finish_reason
    chunk at the end, sometimes a usage-only chunk after it (stream_options)."""
    items: list[Any] = draw(st.lists(CHUNK_ITEMS, max_size=10))
    if draw(st.integers(0, 3)) == 0:
        items.insert(draw(st.integers(0, len(items))), draw(ODD_SSE))
    if draw(st.integers(0, 4)) > 0:
        items.append(draw(FINAL_CHUNKS))
    if draw(st.booleans()):
        items.append(draw(USAGE_CHUNKS))
    return items


ERROR_BODY = {"type": "error", "error": {"type": "api_error", "message": "upstream read failed"}}


def relay(
    items: list[Any],
    *,
    end: str,
    tools: tuple[dict[str, Any], ...],
    start_in_thinking: bool,
    thinking_display: ThinkingDisplay = "summarized",
) -> tuple[list[StreamEvent], StreamTranslator]:
    """What the server does with one upstream stream, a ProxyError included."""
    translator = StreamTranslator(
        model="claude-fuzz",
        message_id="msg_fuzz",
        input_tokens=7,
        tools=tools,
        start_in_thinking=start_in_thinking,
        thinking_display=thinking_display,
    )
    events = translator.start()
    try:
        for item in items:
            if translator.state in _ENDED:
                break  # the server stops reading once the stream ended
            if isinstance(item, ServerSentEvent):
                events += translator.feed_sse(item)
            else:
                events += translator.feed(item)
    except ProxyError as exc:  # the only kind the server turns into an error event
        events += translator.fail(exc.to_error_body())
    events += translator.finish() if end == "finish" else translator.fail(ERROR_BODY)  # type: ignore[arg-type]
    return events, translator


def assert_well_formed(events: list[StreamEvent], translator: StreamTranslator) -> None:
    guard = StreamGuard()
    for event in events:
        guard.check(event)
    guard.finish()
    assert translator.state in _ENDED
    # What the client parses is what was meant: encode, decode, compare. The two halves
    # of a surrogate pair (an emoji an upstream split across chunks) go out as JSON
    # escapes and rejoin on the client, hence the expectation's own JSON round trip.
    decoded = SSEDecoder().feed(b"".join(map(encode_event, events)))
    expected = [(e["type"], json.loads(json.dumps(e))) for e in events]
    assert [(e.event, json.loads(e.data)) for e in decoded] == expected
    usage = translator.usage
    assert all(type(v) is int and v >= 0 for v in usage.values()), usage
    assert all(isinstance(r, str) for r in translator.repairs)


@FUZZ
@given(
    items=streams(),
    end=st.sampled_from(["finish", "fail"]),
    tools=TOOL_SETS,
    start_in_thinking=st.booleans(),
)
@example(
    items=[
        {"object": "chat.completion.chunk", "choices": [{"delta": {"content": "<thi"}}]},
        {"object": "chat.completion.chunk", "choices": [{"delta": {"content": "nk>Hm"}}]},
    ],
    end="finish",
    tools=(),
    start_in_thinking=False,
)
# Regressions: deeply nested JSON raised RecursionError out of the translator.
@example(items=[ServerSentEvent(DEEP_OBJECT)], end="finish", tools=(), start_in_thinking=False)
@example(
    items=[ServerSentEvent(DEEP_OBJECT, "error")], end="finish", tools=(), start_in_thinking=False
)
@example(
    items=[
        {"choices": [{"delta": {"tool_calls": [tool_call]}}]}
        for tool_call in (
            {"index": 0, "id": "call_a", "function": {"name": "f", "arguments": DEEP_OBJECT}},
            {"index": 1, "id": "call_b", "function": {"name": "g", "arguments": "{}"}},
        )
    ],
    end="finish",
    tools=(),
    start_in_thinking=False,
)
@example(
    items=[{"choices": [{"delta": {"content": f"<tool_call>{DEEP_OBJECT}</tool_call>"}}]}],
    end="finish",
    tools=(WEATHER_TOOL,),
    start_in_thinking=False,
)
@example(  # two surrogate halves joined in one delta go out escaped and rejoin as one emoji
    items=[{"choices": [{"delta": {"reasoning_content": "\ud83d\ude00"}}]}],
    end="finish",
    tools=(),
    start_in_thinking=False,
)
def test_random_chunks_give_a_grammatical_stream(
    items: list[Any], end: str, tools: tuple[dict[str, Any], ...], start_in_thinking: bool
) -> None:
    events, translator = relay(items, end=end, tools=tools, start_in_thinking=start_in_thinking)
    assert_well_formed(events, translator)


def thinking_shown(events: list[StreamEvent]) -> tuple[list[str], list[StreamEvent]]:
    """(each thinking block's text, every event but thinking deltas and signatures)."""
    texts: list[str] = []
    rest: list[StreamEvent] = []
    for event in events:
        delta = event.get("delta", {})
        if event["type"] == "content_block_start" and event["content_block"]["type"] == "thinking":
            texts.append("")
        if event["type"] != "content_block_delta" or delta["type"] not in (
            "thinking_delta",
            "signature_delta",
        ):
            rest.append(event)
        elif delta["type"] == "thinking_delta":
            texts[-1] += delta["thinking"]
        else:
            texts[-1] = reasoning_from_signature(delta["signature"]) or texts[-1]
    return texts, rest


@FUZZ
@given(items=streams(), end=st.sampled_from(["finish", "fail"]), tools=TOOL_SETS)
def test_omitted_thinking_hides_only_the_thinking_text(
    items: list[Any], end: str, tools: tuple[dict[str, Any], ...]
) -> None:
    """Omitted: the same stream but for thinking blocks, whose text moved to the signature."""
    shown, shown_translator = relay(items, end=end, tools=tools, start_in_thinking=False)
    hidden, hidden_translator = relay(
        items, end=end, tools=tools, start_in_thinking=False, thinking_display="omitted"
    )
    assert_well_formed(hidden, hidden_translator)
    assert not any(e.get("delta", {}).get("type") == "thinking_delta" for e in hidden)
    assert thinking_shown(hidden) == thinking_shown(shown)
    assert hidden_translator.usage == shown_translator.usage


def split_at(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(body) + 1) for c in cuts})
    return [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]


def replay(pieces: list[bytes], tools: tuple[dict[str, Any], ...]) -> list[StreamEvent]:
    decoder = SSEDecoder()
    sse: list[ServerSentEvent] = []
    for piece in pieces:
        sse += decoder.feed(piece)
    sse += decoder.close()
    events, translator = relay(sse, end="finish", tools=tools, start_in_thinking=False)
    assert_well_formed(events, translator)
    return events


@FUZZ
@given(
    stem=st.sampled_from(sorted(FIXTURE_BODIES)),
    cut=st.integers(0, 1 << 20),
    garbage=st.binary(max_size=12),
    splits=st.lists(st.integers(0, 1 << 20), max_size=10),
    tools=TOOL_SETS,
)
def test_recorded_streams_cut_anywhere_stay_grammatical(
    stem: str, cut: int, garbage: bytes, splits: list[int], tools: tuple[dict[str, Any], ...]
) -> None:
    """A real stream, dropped at any byte (then maybe garbage), in any chunking."""
    whole = FIXTURE_BODIES[stem]
    body = whole[: cut % (len(whole) + 1)] + garbage
    assert replay(split_at(body, splits), tools) == replay([body], tools)
