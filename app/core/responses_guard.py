"""The Responses event grammar, checked event by event (as `anthropic_stream_guard.py` for
Anthropic's).

    stream  := response.created response.in_progress item* end
    item    := output_item.added(output_index = items so far) inner* output_item.done(same id)
    inner   := an event of the open item's kind, naming its item_id and output_index
    end     := response.completed | response.incomplete | response.failed
    (a response.failed may also come in the middle of an item; `ping` anywhere before the end)

`sequence_number` grows by one from 1. Nothing follows the end. The server's writer
checks every event it sends; the tests wrap the same class.

This is the grammar's only owner: `ResponsesStreamTranslator` (responses_stream.py)
maps Anthropic events one at a time and keeps no state machine of its own (only
`ended`, and the open items), so the Anthropic table's order carries over.
"""

from collections.abc import Mapping
from typing import Any

ENDING_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
INNER_EVENTS_BY_ITEM: dict[str, frozenset[str]] = {
    "message": frozenset(
        {
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
        }
    ),
    "reasoning": frozenset(
        {
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
        }
    ),
    "function_call": frozenset(
        {"response.function_call_arguments.delta", "response.function_call_arguments.done"}
    ),
    "web_search_call": frozenset(),
}


class ResponsesGrammarError(Exception):
    def __init__(self, reason: str, position: int) -> None:
        super().__init__(f"event {position}: {reason}")
        self.reason = reason


class ResponsesStreamGuard:
    def __init__(self) -> None:
        self.position = 0
        self.sequence = 0
        self.started = False
        self.ended = False
        self.items = 0
        self.open_item: Mapping[str, Any] | None = None

    def _fail(self, reason: str) -> ResponsesGrammarError:
        return ResponsesGrammarError(reason, self.position)

    def check(self, event: Mapping[str, Any]) -> None:
        self.position += 1
        kind = event.get("type")
        if self.ended:
            raise self._fail(f"{kind} after the end of the response")
        if kind == "ping":
            return
        if event.get("sequence_number") != self.sequence + 1:
            raise self._fail(f"{kind}: sequence_number is not {self.sequence + 1}")
        self.sequence += 1
        if not self.started:
            if (self.sequence, kind) not in ((1, "response.created"), (2, "response.in_progress")):
                raise self._fail(f"{kind} before response.created and response.in_progress")
            self.started = self.sequence == 2
            return
        if kind in ENDING_EVENTS:
            if self.open_item is not None and kind != "response.failed":
                raise self._fail(f"{kind} while output item {self.items} is open")
            self.ended = True
            return
        if kind == "response.output_item.added":
            self._added(event)
        elif kind == "response.output_item.done":
            self._done(event)
        else:
            self._inner(event, str(kind))

    def _added(self, event: Mapping[str, Any]) -> None:
        if self.open_item is not None:
            raise self._fail("output_item.added while another item is open")
        item = event.get("item") or {}
        if event.get("output_index") != self.items or item.get("type") not in INNER_EVENTS_BY_ITEM:
            raise self._fail(
                f"output_item.added with output_index or type wrong: {item.get('type')}"
            )
        self.open_item = item

    def _done(self, event: Mapping[str, Any]) -> None:
        item = event.get("item") or {}
        if self.open_item is None or item.get("id") != self.open_item.get("id"):
            raise self._fail("output_item.done for an item that is not open")
        self.open_item = None
        self.items += 1

    def _inner(self, event: Mapping[str, Any], kind: str) -> None:
        if self.open_item is None:
            raise self._fail(f"{kind} outside an output item")
        if kind not in INNER_EVENTS_BY_ITEM[self.open_item["type"]]:
            raise self._fail(f"{kind} inside a {self.open_item['type']} item")
        if (
            event.get("item_id") != self.open_item.get("id")
            or event.get("output_index") != self.items
        ):
            raise self._fail(f"{kind} names another item than the open one")

    def finish(self) -> None:
        """The stream is over: it must have ended."""
        if not self.ended:
            raise self._fail("the stream stopped without response.completed/incomplete/failed")
