"""The tests' own reading of the Anthropic stream grammar, and a readable shorthand of a stream.

```
message_start
( content_block_start  content_block_delta*  content_block_stop )*   one open block, index 0,1,2...
message_delta  message_stop                                         | error
```
`ping` may appear anywhere before the end. A stream may also be a lone `error` (a failure
before `message_start` was sent).

Written from the protocol, apart from `app.core.anthropic_grammar` (the table the translator
and the server's guard share): checking the code with its own table could not fail. Where
this reading and the table part, `tests/unit/core/test_anthropic_grammar.py` says so.
"""

from collections.abc import Mapping, Sequence
from typing import Any

_DELTA_TYPES_BY_BLOCK_TYPE = {
    "text": {"text_delta"},
    "thinking": {"thinking_delta", "signature_delta"},
    "tool_use": {"input_json_delta"},
    "server_tool_use": {"input_json_delta"},
    "web_search_tool_result": set(),  # server tool results come whole in their start
    "web_fetch_tool_result": set(),
}

_EVENT_TYPES = (
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "error",
    "ping",
)

_DELTA_FIELD_BY_DELTA_TYPE = {
    "text_delta": "text",
    "thinking_delta": "thinking",
    "signature_delta": "signature",
    "input_json_delta": "partial_json",
}


def assert_anthropic_grammar(events: Sequence[Mapping[str, Any]]) -> None:
    """Fail with the position and reason (`event N: ...`) when `events` break the grammar."""
    assert events, "no events"
    reading = _Reading()
    for position, event in enumerate(events):
        reason = reading.step(event)
        assert reason is None, f"event {position}: {reason}"
    assert reading.ended, "stream over without message_stop or error"


class _Reading:
    """Where a stream stands, one event at a time; `step` says what is wrong, if anything."""

    def __init__(self) -> None:
        self.started = False  # message_start seen
        self.open_block: str | None = None  # the type of the block open now
        self.blocks = 0  # blocks opened so far
        self.message_delta_seen = False
        self.ended = False

    def step(self, event: Mapping[str, Any]) -> str | None:
        kind = event.get("type")
        if self.ended:
            return f"{kind} after the stream ended"
        if kind not in _EVENT_TYPES:  # a tuple: `kind` may be unhashable
            return f"unknown event type {kind!r}"
        if kind == "ping":
            return None
        if not self.started:
            return self._first(event, kind)
        if kind in ("content_block_start", "content_block_delta", "content_block_stop"):
            return self._block_event(event, str(kind))
        if self.open_block is not None:
            return f"{kind} while block {self.blocks - 1} is open"
        if kind == "message_delta":
            if self.message_delta_seen:
                return "a second message_delta"
            self.message_delta_seen = True
            return _message_delta_fault(event)
        if kind == "message_stop":
            self.ended = True
            return None if self.message_delta_seen else "message_stop before message_delta"
        self.ended = True  # an error
        return "error after message_delta" if self.message_delta_seen else _error_fault(event)

    def _first(self, event: Mapping[str, Any], kind: Any) -> str | None:
        if kind == "error":  # a lone error: the stream failed before it began
            self.ended = True
            return _error_fault(event)
        if kind != "message_start":
            return f"{kind} before message_start"
        self.started = True
        return _message_start_fault(event.get("message"))

    def _block_event(self, event: Mapping[str, Any], kind: str) -> str | None:
        if self.message_delta_seen:
            return f"{kind} after message_delta"
        index = event.get("index")
        if kind == "content_block_start":
            if self.open_block is not None:
                return f"{kind} while block {self.blocks - 1} is open"
            if type(index) is not int or index != self.blocks:
                return f"{kind} index {index} != {self.blocks}"
            block: Any = event.get("content_block")
            fault = _block_fault(block)
            self.open_block = block["type"] if fault is None else None
            self.blocks += 1
            return fault
        if self.open_block is None:
            return f"{kind} with no block open"
        if type(index) is not int or index != self.blocks - 1:
            return f"{kind} index {index} != {self.blocks - 1}"
        if kind == "content_block_stop":
            self.open_block = None
            return None
        allowed = _DELTA_TYPES_BY_BLOCK_TYPE[self.open_block]
        delta = event.get("delta")
        delta_type = delta.get("type") if isinstance(delta, dict) else None
        if not isinstance(delta_type, str) or delta_type not in allowed:
            return f"{delta_type} in a {self.open_block} block"
        assert isinstance(delta, dict)  # for the type checker: delta_type came from it
        if not isinstance(delta.get(_DELTA_FIELD_BY_DELTA_TYPE[delta_type]), str):
            return f"{delta_type} without a string value"
        return None


def _message_start_fault(message: Any) -> str | None:
    if not isinstance(message, dict):
        return "message_start without a message"
    usage = message.get("usage")
    empty: dict[str, Any] = {
        "type": "message",
        "role": "assistant",
        "content": [],
        "stop_reason": None,
    }
    if any(message.get(key) != value for key, value in empty.items()):
        return f"message_start with a message that is not an empty assistant one: {message}"
    if not isinstance(usage, dict) or not _is_count(usage.get("input_tokens")):
        return "message_start without input_tokens"
    return None


def _block_fault(block: Any) -> str | None:
    """What is wrong with a block as content_block_start carries it (empty, but for the
    server tool results, which come whole)."""
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "text" and block == {"type": "text", "text": ""}:
        return None
    if kind == "thinking" and block == {"type": "thinking", "thinking": "", "signature": ""}:
        return None
    if kind in ("tool_use", "server_tool_use") and (
        set(block) == {"type", "id", "name", "input"}
        and _is_name(block["id"])
        and _is_name(block["name"])
        and block["input"] == {}
    ):
        return None
    if kind in ("web_search_tool_result", "web_fetch_tool_result") and (
        set(block) == {"type", "tool_use_id", "content"}
        and _is_name(block["tool_use_id"])
        and isinstance(block["content"], list | dict)
    ):
        return None
    return f"content_block_start with a bad block: {block}"


def _message_delta_fault(event: Mapping[str, Any]) -> str | None:
    delta, usage = event.get("delta"), event.get("usage")
    if (
        isinstance(delta, dict)
        and isinstance(delta.get("stop_reason"), str)
        and "stop_sequence" in delta
        and isinstance(usage, dict)
        and _is_count(usage.get("output_tokens"))
    ):
        return None
    return f"message_delta without stop_reason, stop_sequence or output_tokens: {dict(event)}"


def _error_fault(event: Mapping[str, Any]) -> str | None:
    error = event.get("error")
    if (
        isinstance(error, dict)
        and isinstance(error.get("type"), str)
        and isinstance(error.get("message"), str)
    ):
        return None
    return f"error event without a type and message: {dict(event)}"


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def summarize(events: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """Shorthand of a stream, consecutive deltas of one block merged.

    ("start", 0, "thinking") | ("start", 2, "tool_use", NAME) | ("delta", 0, "Hm") |
    ("signature", 0, SIG) | ("stop", 0) | ("end", STOP_REASON) | ("error", TYPE);
    message_start, message_stop and ping are left out.
    """
    shorthand: list[tuple[Any, ...]] = []
    for event in events:
        kind = event["type"]
        if kind == "content_block_start":
            block = event["content_block"]
            if block["type"] == "tool_use":
                shorthand.append(("start", event["index"], "tool_use", block["name"]))
            else:
                shorthand.append(("start", event["index"], block["type"]))
        elif kind == "content_block_delta":
            delta = event["delta"]
            value = delta[_DELTA_FIELD_BY_DELTA_TYPE[delta["type"]]]
            if delta["type"] == "signature_delta":
                shorthand.append(("signature", event["index"], value))
            elif shorthand and shorthand[-1][:2] == ("delta", event["index"]):
                shorthand[-1] = ("delta", event["index"], shorthand[-1][2] + value)
            else:
                shorthand.append(("delta", event["index"], value))
        elif kind == "content_block_stop":
            shorthand.append(("stop", event["index"]))
        elif kind == "message_delta":
            shorthand.append(("end", event["delta"]["stop_reason"]))
        elif kind == "error":
            shorthand.append(("error", event["error"]["type"]))
    return shorthand
