"""The one checker of Anthropic stream grammar, and a readable shorthand of a stream.

```
message_start
( content_block_start  content_block_delta*  content_block_stop )*   one open block, index 0,1,2...
message_delta  message_stop                                         | error
```
`ping` may appear anywhere before the end. A stream may also be a lone `error` (a failure
before `message_start` was sent).
"""

from collections.abc import Mapping, Sequence
from typing import Any

from app.core.anthropic_stream_guard import (
    DELTA_FIELD_BY_DELTA_TYPE,
    StreamGrammarError,
    StreamGuard,
)


def assert_anthropic_grammar(events: Sequence[Mapping[str, Any]]) -> None:
    """Fail with the position and reason when `events` break the stream grammar.

    A thin wrapper: the grammar itself is `app.core.anthropic_stream_guard.StreamGuard`,
    the same check the server runs on every event it writes.
    """
    assert events, "no events"
    guard = StreamGuard()
    try:
        for event in events:
            guard.check(event)
        guard.finish()
    except StreamGrammarError as exc:
        raise AssertionError(str(exc)) from None


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
            value = delta[DELTA_FIELD_BY_DELTA_TYPE[delta["type"]]]
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
