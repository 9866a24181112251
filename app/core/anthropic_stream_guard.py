"""The Anthropic stream grammar, checked one outgoing event at a time. No I/O.

The grammar itself (states, which event may come in which, where it leads) is
`app.core.anthropic_grammar`, the table the translator also walks; this module
adds what only an outgoing stream needs checked: each event's fields, block
indexes 0, 1, 2..., delta types that fit the open block.

Invariants:
- Every event the server writes passes `StreamGuard`; the tests' own reading of
  the grammar (`tests/anthropic_grammar.py`) is written apart from the table, so
  the two can disagree and a test fail.
- `check` is O(1) per event: it reads a few keys, never copies or walks the
  payload, so it can run on every event of every stream (deltas take a short
  way: under a microsecond, less than encoding them). JSON objects are `dict`s:
  exact type checks are cheaper than ABC ones.
- A violation is our bug (`StreamGrammarError`, like `TranslatorStateError`), never
  the upstream's: the translator absorbs upstream oddities before this point.
  `closing_events()` then ends the stream grammatically, whatever state it was in.
"""

from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from app.core.anthropic_grammar import (
    DELTA_FIELD_BY_DELTA_TYPE,
    DELTA_TYPES_BY_BLOCK_TYPE,
    EVENT_TYPES,
    TRANSITIONS_BY_STATE,
    StreamState,
)
from app.core.anthropic_types import StreamEvent

MALFORMED_STREAM_MESSAGE = "NimBridge produced a malformed stream (a NimBridge bug)"


class StreamGrammarError(Exception):
    """An event breaks the stream grammar; `position` counts events checked before it."""

    def __init__(self, reason: str, position: int) -> None:
        super().__init__(f"event {position}: {reason}")
        self.reason = reason
        self.position = position


_IDLE, _STARTED, _IN_BLOCK = StreamState.IDLE, StreamState.STARTED, StreamState.IN_BLOCK
_STOPPING, _FINISHED, _FAILED = StreamState.STOPPING, StreamState.FINISHED, StreamState.FAILED

_WHERE_BY_STATE: dict[StreamState, str] = {
    _IDLE: "before message_start",
    _STARTED: "between blocks",
    _STOPPING: "after message_delta",
    _FINISHED: "after the stream ended",
    _FAILED: "after the stream ended",
}


class StreamGuard:
    """Fed each outgoing stream event in order; raises `StreamGrammarError` on the first
    one the grammar does not allow (and stays where it was, so it can still close)."""

    def __init__(self) -> None:
        self.state = _IDLE
        self._transitions = TRANSITIONS_BY_STATE[_IDLE]  # the state's row of the table
        self.position = 0  # events accepted so far, pings included
        self._next_index = 0
        self._open_block_type: str | None = None
        self._allowed_delta_types: frozenset[str] = frozenset()

    @property
    def ended(self) -> bool:
        return self.state is _FINISHED or self.state is _FAILED

    def check(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        if kind == "content_block_delta" and self.state is _IN_BLOCK:
            self._check_delta(event)  # nearly every event: the short way
            self.position += 1
            return
        after = self._transitions.get(kind) if isinstance(kind, str) else None
        if after is None:
            if not isinstance(kind, str) or kind not in EVENT_TYPES:
                self._fail(f"unknown event type {str(kind)[:40]!r}")
            self._fail(f"{kind} not allowed {self._where()}")
        if kind == "content_block_start":
            self._check_block_start(event)
        elif kind == "content_block_stop":
            self._check_index(event, self._next_index - 1, kind)
            self._open_block_type = None
        elif kind == "message_start":
            self._check_message_start(event.get("message"))
        elif kind == "message_delta":
            self._check_message_delta(event)
        elif kind == "error":
            self._check_error(event.get("error"))
        if after is not self.state:
            self.state = after
            self._transitions = TRANSITIONS_BY_STATE[after]
        self.position += 1

    def check_all(self, events: Iterable[Mapping[str, Any]]) -> None:
        """`check` each event in order: the same, with one call for a batch (an upstream
        read's events); on a refusal `position` is the refused event's."""
        for event in events:
            if event.get("type") == "content_block_delta" and self.state is _IN_BLOCK:
                self._check_delta(event)
                self.position += 1
            else:
                self.check(event)

    def finish(self) -> None:
        """The stream is over: it must have ended with `message_stop` or `error`."""
        if not self.ended:
            self._fail(f"stream over without message_stop or error ({self._where()})")

    def closing_events(self, message: str = MALFORMED_STREAM_MESSAGE) -> list[StreamEvent]:
        """Events that end the stream grammatically from where it stands (already checked).

        An open block is closed first, since an `error` may not come inside one.
        After `message_delta` only `message_stop` may follow: the client has the
        whole message then, and the bug shows only in our log.
        """
        events: list[StreamEvent] = []
        if self.state is _IN_BLOCK:
            events.append({"type": "content_block_stop", "index": self._next_index - 1})
        if self.state is _STOPPING:
            events.append({"type": "message_stop"})
        elif not self.ended:
            events.append({"type": "error", "error": {"type": "api_error", "message": message}})
        for event in events:
            self.check(event)
        return events

    # ------------------------------------------------------------------ checks

    def _where(self) -> str:
        if self.state is _IN_BLOCK:
            return f"while block {self._next_index - 1} ({self._open_block_type}) is open"
        return _WHERE_BY_STATE[self.state]

    def _fail(self, reason: str) -> NoReturn:
        raise StreamGrammarError(reason, self.position)

    def _check_index(self, event: Mapping[str, Any], expected: int, kind: str) -> None:
        index = event.get("index")
        if type(index) is not int or index != expected:
            self._fail(f"{kind} index {str(index)[:20]} != {expected}")

    def _check_block_start(self, event: Mapping[str, Any]) -> None:
        self._check_index(event, self._next_index, "content_block_start")
        block = event.get("content_block")
        block_type = block.get("type") if isinstance(block, dict) else None
        if not _is_empty_block(block_type, block):
            self._fail(f"content_block_start with a bad {str(block_type)[:40]} block")
        self._open_block_type = str(block_type)
        self._allowed_delta_types = DELTA_TYPES_BY_BLOCK_TYPE[self._open_block_type]
        self._next_index += 1

    def _check_delta(self, event: Mapping[str, Any]) -> None:
        index = event.get("index")  # inline, not _check_index: this runs for nearly every event
        if type(index) is not int or index != self._next_index - 1:
            self._fail(f"content_block_delta index {str(index)[:20]} != {self._next_index - 1}")
        delta = event.get("delta")
        if not isinstance(delta, dict):
            self._fail("content_block_delta without a delta object")
        delta_type = delta.get("type")
        if type(delta_type) is not str or delta_type not in self._allowed_delta_types:
            self._fail(f"{str(delta_type)[:20]} in a {self._open_block_type} block")
        if type(delta.get(DELTA_FIELD_BY_DELTA_TYPE[delta_type])) is not str:
            self._fail(f"{delta_type} without a string value")

    def _check_message_start(self, message: Any) -> None:
        usage = message.get("usage") if isinstance(message, dict) else None
        if not (
            isinstance(message, dict)
            and message.get("type") == "message"
            and message.get("role") == "assistant"
            and message.get("content") == []
            and message.get("stop_reason") is None
            and isinstance(usage, dict)
            and _is_count(usage.get("input_tokens"))
        ):
            self._fail("message_start without an empty assistant message and input_tokens")

    def _check_message_delta(self, event: Mapping[str, Any]) -> None:
        delta, usage = event.get("delta"), event.get("usage")
        if not (
            isinstance(delta, dict)
            and isinstance(delta.get("stop_reason"), str)
            and "stop_sequence" in delta
            and isinstance(usage, dict)
            and _is_count(usage.get("output_tokens"))
        ):
            self._fail("message_delta without stop_reason, stop_sequence and output_tokens")

    def _check_error(self, error: Any) -> None:
        if not (
            isinstance(error, dict)
            and isinstance(error.get("type"), str)
            and isinstance(error.get("message"), str)
        ):
            self._fail("error event without a string type and message")


def _is_empty_block(block_type: Any, block: Any) -> bool:
    """A block as content_block_start may carry it: empty, but for server tool
    results, which come whole."""
    if block_type == "text":
        return bool(block == {"type": "text", "text": ""})
    if block_type == "thinking":
        return bool(block == {"type": "thinking", "thinking": "", "signature": ""})
    if block_type in ("web_search_tool_result", "web_fetch_tool_result"):
        return (
            len(block) == 3
            and isinstance(block.get("tool_use_id"), str)
            and bool(block["tool_use_id"])
            and isinstance(block.get("content"), list | dict)
        )
    if block_type in ("tool_use", "server_tool_use"):
        return (
            len(block) == 4
            and isinstance(block.get("id"), str)
            and bool(block["id"])
            and isinstance(block.get("name"), str)
            and bool(block["name"])
            and block.get("input") == {}
        )
    return False


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0
