"""The one checker of Anthropic stream grammar, and a readable shorthand of a stream.

```
message_start
( content_block_start  content_block_delta*  content_block_stop )*   one open block, index 0,1,2...
message_delta  message_stop                                         | error
```
`ping` may appear anywhere. A stream may also be a lone `error` (a failure
before `message_start` was sent).
"""

from collections.abc import Mapping, Sequence
from typing import Any

_DELTA_TYPES_BY_BLOCK_TYPE = {
    "text": {"text_delta"},
    "thinking": {"thinking_delta", "signature_delta"},
    "tool_use": {"input_json_delta"},
}

_DELTA_FIELD_BY_DELTA_TYPE = {
    "text_delta": "text",
    "thinking_delta": "thinking",
    "signature_delta": "signature",
    "input_json_delta": "partial_json",
}


def assert_anthropic_grammar(events: Sequence[Mapping[str, Any]]) -> None:
    """Fail with the position and reason when `events` break the stream grammar."""
    real = [(n, e) for n, e in enumerate(events) if e.get("type") != "ping"]
    assert real, "no events"
    if len(real) == 1 and real[0][1]["type"] == "error":
        _check_error(real[0][1])
        return
    first = real[0][1]
    assert first["type"] == "message_start", f"first event is {first['type']}"
    message = first["message"]
    assert message["type"] == "message" and message["role"] == "assistant", message
    assert message["content"] == [] and message["stop_reason"] is None, message
    assert isinstance(message["usage"]["input_tokens"], int), message
    open_block: Mapping[str, Any] | None = None
    next_index = 0
    ended = False
    for n, event in real[1:]:
        kind = event["type"]
        where = f"event {n} ({kind})"
        assert not ended, f"{where} after the stream ended"
        if kind == "content_block_start":
            assert open_block is None, f"{where} while block {next_index - 1} is open"
            assert event["index"] == next_index, f"{where}: index {event['index']} != {next_index}"
            open_block = event["content_block"]
            _check_block_start(open_block, where)
            next_index += 1
        elif kind == "content_block_delta":
            assert open_block is not None, f"{where} with no open block"
            assert event["index"] == next_index - 1, f"{where}: wrong index {event['index']}"
            delta = event["delta"]
            allowed = _DELTA_TYPES_BY_BLOCK_TYPE[open_block["type"]]
            assert delta["type"] in allowed, f"{where}: {delta['type']} in a {open_block['type']}"
            assert isinstance(delta[_DELTA_FIELD_BY_DELTA_TYPE[delta["type"]]], str), where
        elif kind == "content_block_stop":
            assert open_block is not None, f"{where} with no open block"
            assert event["index"] == next_index - 1, f"{where}: wrong index {event['index']}"
            open_block = None
        elif kind == "message_delta":
            assert open_block is None, f"{where} while a block is open"
            assert isinstance(event["delta"]["stop_reason"], str), where
            assert "stop_sequence" in event["delta"], where
            assert isinstance(event["usage"]["output_tokens"], int), where
            following = [e["type"] for m, e in real if m > n]
            assert following == ["message_stop"], f"{where} followed by {following}"
        elif kind == "message_stop":
            ended = True
        elif kind == "error":
            assert open_block is None, f"{where} while a block is open"
            _check_error(event)
            ended = True
        else:
            raise AssertionError(f"{where}: unknown event type")
    assert ended, "stream has no message_stop or error at its end"


def _check_block_start(block: Mapping[str, Any], where: str) -> None:
    if block["type"] == "text":
        assert block == {"type": "text", "text": ""}, where
    elif block["type"] == "thinking":
        assert block == {"type": "thinking", "thinking": "", "signature": ""}, where
    elif block["type"] == "tool_use":
        assert set(block) == {"type", "id", "name", "input"}, where
        assert block["id"] and block["name"] and block["input"] == {}, where
    else:
        raise AssertionError(f"{where}: unknown block type {block['type']}")


def _check_error(event: Mapping[str, Any]) -> None:
    error = event["error"]
    assert isinstance(error["type"], str) and isinstance(error["message"], str), event


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
