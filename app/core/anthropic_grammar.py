"""The Anthropic stream grammar as one table: what the translator may emit, what the guard lets out.

```
message_start
( content_block_start  content_block_delta*  content_block_stop )*   one open block, index 0,1,2...
message_delta  message_stop                                         | error
```
`ping` may come anywhere before the end. A stream may also be a lone `error`
(a failure before `message_start` went out).

Rule 1 (as in h11's `_state.py`): which event type may come in which state, and
which state it leads to, is `TRANSITIONS_BY_STATE` and nowhere else.
`StreamTranslator._emit` (anthropic_stream.py) walks it for every event it makes,
`StreamGuard.check` (anthropic_stream_guard.py) for every event the server writes.
Each keeps only its own extras: the translator its block bookkeeping, the guard its
checks of each event's fields.

Per event the cost is one dict lookup: a holder keeps its state's row
(`TRANSITIONS_BY_STATE[state]`) and fetches a new one only when the state changes.
"""

import enum
from collections.abc import Mapping


class StreamState(enum.Enum):
    IDLE = "idle"  # nothing but pings yet
    STARTED = "started"  # message_start out, no block open
    IN_BLOCK = "in_block"  # one content block open
    STOPPING = "stopping"  # message_delta out: only message_stop may follow
    FINISHED = "finished"  # message_stop out: nothing may follow
    FAILED = "failed"  # error out: nothing may follow


_IDLE, _STARTED, _IN_BLOCK = StreamState.IDLE, StreamState.STARTED, StreamState.IN_BLOCK
_STOPPING, _FINISHED, _FAILED = StreamState.STOPPING, StreamState.FINISHED, StreamState.FAILED

TERMINAL_STATES = frozenset({_FINISHED, _FAILED})

# state -> {event type allowed in it -> the state after it}
TRANSITIONS_BY_STATE: Mapping[StreamState, Mapping[str, StreamState]] = {
    _IDLE: {"ping": _IDLE, "message_start": _STARTED, "error": _FAILED},
    _STARTED: {
        "ping": _STARTED,
        "content_block_start": _IN_BLOCK,
        "message_delta": _STOPPING,
        "error": _FAILED,
    },
    # No error inside a block: whoever ends a stream early closes its block first.
    _IN_BLOCK: {
        "ping": _IN_BLOCK,
        "content_block_delta": _IN_BLOCK,
        "content_block_stop": _STARTED,
    },
    # The client has the whole message once message_delta is out: no error after it.
    _STOPPING: {"ping": _STOPPING, "message_stop": _FINISHED},
    _FINISHED: {},
    _FAILED: {},
}

EVENT_TYPES = frozenset(kind for row in TRANSITIONS_BY_STATE.values() for kind in row)

DELTA_TYPES_BY_BLOCK_TYPE: Mapping[str, frozenset[str]] = {
    "text": frozenset({"text_delta"}),
    "thinking": frozenset({"thinking_delta", "signature_delta"}),
    "tool_use": frozenset({"input_json_delta"}),
    "server_tool_use": frozenset({"input_json_delta"}),
    # Server tool results arrive whole in their content_block_start: no deltas.
    "web_search_tool_result": frozenset(),
    "web_fetch_tool_result": frozenset(),
}

DELTA_FIELD_BY_DELTA_TYPE: Mapping[str, str] = {
    "text_delta": "text",
    "thinking_delta": "thinking",
    "signature_delta": "signature",
    "input_json_delta": "partial_json",
}
