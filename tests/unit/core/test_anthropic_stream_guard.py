"""StreamGuard: the stream grammar checked one event at a time, and the events that close a
stream broken at any point."""

from typing import Any

import pytest

from app.core.anthropic_grammar import StreamState
from app.core.anthropic_stream_guard import (
    MALFORMED_STREAM_MESSAGE,
    StreamGrammarError,
    StreamGuard,
)
from app.core.thinking_display import reasoning_signature
from tests.anthropic_grammar import assert_anthropic_grammar

Event = dict[str, Any]

START: Event = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 0},
    },
}
PING: Event = {"type": "ping"}
END: Event = {
    "type": "message_delta",
    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
    "usage": {"output_tokens": 5},
}
STOP: Event = {"type": "message_stop"}
ERROR: Event = {"type": "error", "error": {"type": "api_error", "message": "boom"}}
TEXT_BLOCK: Event = {"type": "text", "text": ""}
THINKING_BLOCK: Event = {"type": "thinking", "thinking": "", "signature": ""}
TOOL_BLOCK: Event = {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {}}
SERVER_TOOL_BLOCK: Event = {
    "type": "server_tool_use",
    "id": "srvtoolu_1",
    "name": "web_search",
    "input": {},
}
SEARCH_RESULT_BLOCK: Event = {
    "type": "web_search_tool_result",
    "tool_use_id": "srvtoolu_1",
    "content": [{"type": "web_search_result", "url": "https://a", "title": "A"}],
}
FETCH_ERROR_BLOCK: Event = {
    "type": "web_fetch_tool_result",
    "tool_use_id": "srvtoolu_2",
    "content": {"type": "web_fetch_tool_result_error", "error_code": "url_not_allowed"},
}


def open_(index: int, block: Event = TEXT_BLOCK) -> Event:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, value: Any = "hi", kind: str = "text_delta") -> Event:
    field = {
        "text_delta": "text",
        "thinking_delta": "thinking",
        "signature_delta": "signature",
        "input_json_delta": "partial_json",
    }.get(kind, "text")
    return {"type": "content_block_delta", "index": index, "delta": {"type": kind, field: value}}


def close(index: int) -> Event:
    return {"type": "content_block_stop", "index": index}


def text_block(index: int) -> list[Event]:
    return [open_(index), delta(index), close(index)]


GOOD_STREAMS = [
    pytest.param([START, *text_block(0), END, STOP], id="one-text-block"),
    pytest.param([START, END, STOP], id="no-blocks"),
    pytest.param(
        [
            START,
            open_(0, THINKING_BLOCK),
            delta(0, "Hm", "thinking_delta"),
            delta(0, "sig", "signature_delta"),
            close(0),
            *text_block(1),
            open_(2, TOOL_BLOCK),
            delta(2, '{"a":', "input_json_delta"),
            delta(2, "1}", "input_json_delta"),
            close(2),
            END,
            STOP,
        ],
        id="thinking-text-tool",
    ),
    pytest.param(
        [
            START,
            open_(0, THINKING_BLOCK),
            PING,
            PING,
            delta(0, reasoning_signature("long thought " * 500), "signature_delta"),
            close(0),
            *text_block(1),
            END,
            STOP,
        ],
        id="omitted-thinking-only-a-signature",
    ),
    pytest.param(
        [
            START,
            open_(0, SERVER_TOOL_BLOCK),
            delta(0, '{"query":"x"}', "input_json_delta"),
            close(0),
            open_(1, SEARCH_RESULT_BLOCK),
            close(1),
            open_(2, FETCH_ERROR_BLOCK),
            close(2),
            *text_block(3),
            END,
            STOP,
        ],
        id="server-tool-use-then-whole-results-then-text",
    ),
    pytest.param([ERROR], id="lone-error"),
    pytest.param([PING, PING, ERROR], id="pings-then-lone-error"),
    pytest.param([START, *text_block(0), ERROR], id="error-after-a-block"),
    pytest.param(
        [PING, START, PING, open_(0), PING, delta(0), PING, close(0), PING, END, PING, STOP],
        id="pings-everywhere-before-the-end",
    ),
]


@pytest.mark.parametrize("events", GOOD_STREAMS)
def test_good_streams_pass(events: list[Event]) -> None:
    guard = StreamGuard()
    for event in events:
        guard.check(event)
    guard.finish()
    assert guard.ended and guard.position == len(events)


def tool_block(**changes: Any) -> Event:
    return open_(0, {**TOOL_BLOCK, **changes})


def result_block(**changes: Any) -> Event:
    return open_(0, {**SEARCH_RESULT_BLOCK, **changes})


BAD_STREAMS = [
    pytest.param(
        [START, result_block(), delta(0)],
        "text_delta in a web_search_tool_result block",
        id="result-blocks-take-no-delta",
    ),
    pytest.param(
        [START, result_block(tool_use_id="")], "bad web_search_tool_result", id="result-no-id"
    ),
    pytest.param(
        [START, result_block(content="x")], "bad web_search_tool_result", id="result-content-str"
    ),
    pytest.param(
        [START, result_block(extra=1)], "bad web_search_tool_result", id="result-extra-key"
    ),
    pytest.param(
        [START, open_(0, {**SERVER_TOOL_BLOCK, "input": {"query": "x"}})],
        "bad server_tool_use block",
        id="server-tool-use-input-not-empty",
    ),
    # events (the last one is refused), reason
    pytest.param([{"type": "image"}], "unknown event type 'image'", id="unknown-type"),
    pytest.param([{"index": 0}], "unknown event type 'None'", id="no-type"),
    pytest.param([{"type": ["x"]}], "unknown event type", id="unhashable-type"),
    pytest.param(
        [open_(0)], "content_block_start not allowed before message_start", id="block-first"
    ),
    pytest.param([START, START], "message_start not allowed between blocks", id="two-starts"),
    pytest.param([START, open_(1)], "content_block_start index 1 != 0", id="index-skipped"),
    pytest.param(
        [START, *text_block(0), open_(0)], "content_block_start index 0 != 1", id="index-reused"
    ),
    pytest.param(
        [START, *text_block(0), open_(True)],
        "content_block_start index True != 1",
        id="index-bool",
    ),
    pytest.param(
        [START, open_(0), open_(1)],
        "content_block_start not allowed while block 0 (text) is open",
        id="two-open-blocks",
    ),
    pytest.param(
        [START, delta(0)], "content_block_delta not allowed between blocks", id="delta-no-block"
    ),
    pytest.param([START, open_(0), delta(1)], "content_block_delta index 1 != 0", id="delta-index"),
    pytest.param(
        [START, open_(0), {"type": "content_block_delta", "index": 0, "delta": "x"}],
        "content_block_delta without a delta object",
        id="delta-not-object",
    ),
    pytest.param(
        [START, open_(0, THINKING_BLOCK), delta(0)],
        "text_delta in a thinking block",
        id="text-delta-in-thinking",
    ),
    pytest.param(
        [START, open_(0, TOOL_BLOCK), delta(0, "x", "thinking_delta")],
        "thinking_delta in a tool_use block",
        id="thinking-delta-in-tool",
    ),
    pytest.param(
        [START, open_(0), {"type": "content_block_delta", "index": 0, "delta": {"type": [1]}}],
        "[1] in a text block",
        id="delta-type-unhashable",
    ),
    pytest.param(
        [START, open_(0), delta(0, 5)], "text_delta without a string value", id="delta-not-str"
    ),
    pytest.param([START, open_(0), close(1)], "content_block_stop index 1 != 0", id="stop-index"),
    pytest.param(
        [START, close(0)], "content_block_stop not allowed between blocks", id="stop-no-block"
    ),
    pytest.param(
        [START, open_(0, {"type": "text", "text": "x"})],
        "content_block_start with a bad text block",
        id="text-block-not-empty",
    ),
    pytest.param(
        [START, open_(0, {**THINKING_BLOCK, "signature": "s"})],
        "with a bad thinking block",
        id="thinking-block-not-empty",
    ),
    pytest.param([START, tool_block(id="")], "bad tool_use block", id="tool-without-id"),
    pytest.param([START, tool_block(id=7)], "bad tool_use block", id="tool-id-not-str"),
    pytest.param([START, tool_block(name=None)], "bad tool_use block", id="tool-without-name"),
    pytest.param([START, tool_block(name="")], "bad tool_use block", id="tool-name-empty"),
    pytest.param([START, tool_block(input={"a": 1})], "bad tool_use block", id="tool-input"),
    pytest.param([START, tool_block(extra=1)], "bad tool_use block", id="tool-extra-key"),
    pytest.param([START, open_(0, {"type": "image"})], "bad image block", id="unknown-block-type"),
    pytest.param(
        [START, {"type": "content_block_start", "index": 0, "content_block": "text"}],
        "bad None block",
        id="block-not-object",
    ),
    pytest.param(
        [{"type": "message_start", "message": None}],
        "message_start without an empty assistant message",
        id="start-without-message",
    ),
    pytest.param(
        [{"type": "message_start", "message": {**START["message"], "content": [TEXT_BLOCK]}}],
        "message_start without an empty assistant message",
        id="start-with-content",
    ),
    pytest.param(
        [{"type": "message_start", "message": {**START["message"], "usage": {}}}],
        "and input_tokens",
        id="start-without-input-tokens",
    ),
    pytest.param(
        [{"type": "message_start", "message": {**START["message"], "role": "user"}}],
        "empty assistant message",
        id="start-user-role",
    ),
    pytest.param(
        [START, open_(0), END],
        "message_delta not allowed while block 0 (text) is open",
        id="delta-in-block",
    ),
    pytest.param(
        [START, {**END, "delta": {"stop_reason": "end_turn"}}],
        "message_delta without stop_reason, stop_sequence and output_tokens",
        id="message-delta-without-stop-sequence",
    ),
    pytest.param(
        [START, {**END, "usage": {"output_tokens": -1}}],
        "message_delta without",
        id="negative-output-tokens",
    ),
    pytest.param([START, {**END, "usage": None}], "message_delta without", id="no-usage"),
    pytest.param([START, {**END, "delta": None}], "message_delta without", id="no-delta"),
    pytest.param([START, END, END], "message_delta not allowed after message_delta", id="2-ends"),
    pytest.param(
        [START, STOP], "message_stop not allowed between blocks", id="stop-without-message-delta"
    ),
    pytest.param(
        [START, END, ERROR], "error not allowed after message_delta", id="error-after-end"
    ),
    pytest.param([START, open_(0), ERROR], "error not allowed while block 0", id="error-in-block"),
    pytest.param(
        [{"type": "error", "error": {"type": "api_error"}}],
        "error event without a string type and message",
        id="error-without-message",
    ),
    pytest.param(
        [{"type": "error", "error": "boom"}], "error event without", id="error-not-object"
    ),
    pytest.param(
        [START, END, STOP, PING], "ping not allowed after the stream ended", id="ping-after-end"
    ),
    pytest.param([ERROR, START], "message_start not allowed after the stream ended", id="2nd-go"),
]


@pytest.mark.parametrize(("events", "reason"), BAD_STREAMS)
def test_each_violation_is_caught_with_its_reason(events: list[Event], reason: str) -> None:
    guard = StreamGuard()
    for event in events[:-1]:
        guard.check(event)
    state = guard.state
    with pytest.raises(StreamGrammarError) as raised:
        guard.check(events[-1])
    assert reason in raised.value.reason
    assert raised.value.position == len(events) - 1
    assert str(raised.value) == f"event {len(events) - 1}: {raised.value.reason}"
    assert guard.state is state and guard.position == len(events) - 1  # the refusal changed nothing


@pytest.mark.parametrize(("events", "reason"), BAD_STREAMS)
def test_check_all_refuses_as_check_does(events: list[Event], reason: str) -> None:
    guard = StreamGuard()
    guard.check(PING)
    state = guard.state
    with pytest.raises(StreamGrammarError) as raised:
        guard.check_all(events)
    assert reason in raised.value.reason
    assert raised.value.position == len(events)  # the ping before, and all but the last
    assert guard.position == len(events)
    if len(events) == 1:
        assert guard.state is state


@pytest.mark.parametrize("events", GOOD_STREAMS)
def test_check_all_accepts_what_check_accepts(events: list[Event]) -> None:
    one_by_one, at_once = StreamGuard(), StreamGuard()
    for event in events:
        one_by_one.check(event)
    at_once.check_all(events[:1])
    at_once.check_all(events[1:])
    assert (at_once.state, at_once.position, at_once.ended) == (
        one_by_one.state,
        one_by_one.position,
        one_by_one.ended,
    )


@pytest.mark.parametrize(
    ("events", "where"),
    [
        pytest.param([], "before message_start", id="empty"),
        pytest.param([PING], "before message_start", id="only-pings"),
        pytest.param([START, *text_block(0)], "between blocks", id="no-end"),
        pytest.param([START, open_(0)], "while block 0 (text) is open", id="cut-in-block"),
        pytest.param([START, END], "after message_delta", id="no-message-stop"),
    ],
)
def test_finish_requires_an_end(events: list[Event], where: str) -> None:
    guard = StreamGuard()
    for event in events:
        guard.check(event)
    with pytest.raises(StreamGrammarError) as raised:
        guard.finish()
    assert raised.value.reason == f"stream over without message_stop or error ({where})"
    assert raised.value.position == len(events)


@pytest.mark.parametrize(
    ("prefix", "bad", "closing"),
    [
        pytest.param([], open_(0), ["error"], id="idle"),
        pytest.param([PING, START], START, ["error"], id="started"),
        pytest.param([START, open_(0), delta(0)], END, ["content_block_stop", "error"], id="text"),
        pytest.param(
            [START, *text_block(0), open_(1, THINKING_BLOCK)],
            delta(1),
            ["content_block_stop", "error"],
            id="thinking",
        ),
        pytest.param([START, END], ERROR, ["message_stop"], id="after-message-delta"),
        pytest.param([START, END, STOP], PING, [], id="ended"),
    ],
)
def test_closing_events_make_a_broken_prefix_grammatical(
    prefix: list[Event], bad: Event, closing: list[str]
) -> None:
    guard = StreamGuard()
    for event in prefix:
        guard.check(event)
    with pytest.raises(StreamGrammarError):
        guard.check(bad)
    events = guard.closing_events()
    assert [e["type"] for e in events] == closing
    assert guard.ended
    guard.finish()
    assert_anthropic_grammar([*prefix, *events])  # a fresh guard agrees
    if closing[-1:] == ["error"]:
        error = events[-1]["error"]
        assert error == {"type": "api_error", "message": MALFORMED_STREAM_MESSAGE}


def test_closing_events_carry_the_given_message() -> None:
    guard = StreamGuard()
    guard.check(START)
    assert guard.closing_events("said otherwise")[-1]["error"]["message"] == "said otherwise"
    assert guard.state is StreamState.FAILED


def test_assert_anthropic_grammar_fails_like_an_assertion() -> None:
    with pytest.raises(AssertionError, match="no events"):
        assert_anthropic_grammar([])
    with pytest.raises(AssertionError, match=r"^event 2: content_block_delta index 5 != 0$"):
        assert_anthropic_grammar([START, open_(0), delta(5)])
    with pytest.raises(AssertionError, match="stream over without message_stop or error"):
        assert_anthropic_grammar([START])
