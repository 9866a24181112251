"""One Anthropic message over several upstream rounds, when NimBridge runs server tools.

A round is one upstream call. When the model's answer calls server tools
(web_search, web_fetch), the server runs them and calls the upstream again with
the message so far as an assistant turn; the client sees one message:

```
message_start                                  (once)
round 1 blocks    server_tool_use ...          (streamed as the upstream sends them)
result blocks     web_search_tool_result ...   (whole, in content_block_start)
round 2 blocks    text ...
message_delta  message_stop                    (once: usage summed over rounds)
```

`ServerToolStream` does that for streams: it wraps one `StreamTranslator` per
round and offers the relay the translator's own interface, renumbering block
indexes, dropping each later round's `message_start` and holding back a round's
`message_delta` while its server tool calls wait for their results.
`ServerToolMessage` does the same for whole (non-streamed) messages. No I/O.

A round ends the message unless it called server tools and nothing else:
- server tools only: their results follow, then the next round; past
  `max_rounds` the message ends as `pause_turn` (Anthropic's word for "send it
  back to go on") after the results.
- server and client tools: server results follow, then the message ends as
  `tool_use` (the client runs its tools; the model reads the results next turn).
- any other stop (max_tokens, a refusal): the message ends there.
"""

import json
from collections.abc import Callable, Mapping
from typing import Any

from app.core.anthropic_stream import StreamState, StreamTranslator
from app.core.anthropic_types import ErrorBody, Message, StreamEvent, Usage
from app.core.errors import TranslatorStateError
from app.core.server_tools.specs import (
    ServerToolCall,
    ServerToolLedger,
    server_tool_id,
)
from app.core.sse import ServerSentEvent

_CONTINUING_STOPS = ("end_turn", "tool_use")
_TERMINAL = (StreamState.FINISHED, StreamState.FAILED)


def _summed_usage(usages: list[Usage], ledger: ServerToolLedger) -> Usage:
    total: Usage = {
        "input_tokens": sum(usage["input_tokens"] for usage in usages),
        "output_tokens": sum(usage["output_tokens"] for usage in usages),
    }
    cached = [
        usage["cache_read_input_tokens"] for usage in usages if "cache_read_input_tokens" in usage
    ]
    if cached:
        total["cache_read_input_tokens"] = sum(cached)
    total["server_tool_use"] = ledger.usage()
    return total


def _unique_id(block_id: str, seen: set[str], round_number: int) -> str:
    """Ids stay unique over rounds: some upstreams number their calls afresh each time."""
    if block_id in seen:
        block_id = f"{block_id}_r{round_number}"
    seen.add(block_id)
    return block_id


class ServerToolStream:
    """One client stream over several upstream streams; see the module docstring."""

    def __init__(
        self,
        new_round: Callable[[int], StreamTranslator],
        ledger: ServerToolLedger,
        *,
        max_rounds: int,
    ) -> None:
        self._new_round = new_round  # round number (1, 2...) -> its translator
        self._ledger = ledger
        self._max_rounds = max_rounds
        self._rounds = [new_round(1)]
        self._offset = 0  # blocks sent before the current round
        self._ids: dict[str, str] = {}  # this round's block ids -> the ids sent
        self._seen_ids: set[str] = set()
        self._ended: StreamState | None = None  # FINISHED / FAILED once the client's stream ended
        self._own_failure: str | None = None
        self._held_stop: str | None = None  # the stop once the pending results are in
        self.pending_calls: list[ServerToolCall] = []  # waiting for their results
        self.content: list[dict[str, Any]] = []  # the message so far, for the next round
        self._json: dict[int, list[str]] = {}  # tool input fragments by content index

    # ------------------------------------------------------------------ the translator's face

    @property
    def _round(self) -> StreamTranslator:
        return self._rounds[-1]

    @property
    def state(self) -> StreamState:
        if self._ended is not None:
            return self._ended
        return StreamState.STARTED if self._round.state in _TERMINAL else self._round.state

    @property
    def rounds(self) -> int:
        return len(self._rounds)

    @property
    def ended(self) -> bool:
        return self._ended is not None

    @property
    def repairs(self) -> list[str]:
        out: list[str] = []
        for translator in self._rounds:
            out += [repair for repair in translator.repairs if repair not in out]
        return out

    @property
    def failure(self) -> str | None:
        return self._own_failure or self._round.failure

    @property
    def usage(self) -> Usage:
        return _summed_usage([t.usage for t in self._rounds], self._ledger)

    @property
    def usage_reported(self) -> bool:
        """The upstream counted this request's prompt: true only of a single round
        (later rounds' prompts hold the tool results: no use for the estimator)."""
        return len(self._rounds) == 1 and self._round.usage_reported

    def start(self) -> list[StreamEvent]:
        return self._splice(self._round.start())

    def feed(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        if self._waiting:
            return []  # after this round's [DONE]: nothing more of it counts
        return self._splice(self._round.feed(chunk))

    def feed_sse(self, event: ServerSentEvent) -> list[StreamEvent]:
        if self._waiting:
            return []
        return self._splice(self._round.feed_sse(event))

    def finish(self) -> list[StreamEvent]:
        if self._waiting:
            return []
        return self._splice(self._round.finish())

    def fail(self, error: ErrorBody) -> list[StreamEvent]:
        if self._ended is not None:
            return []
        if self._waiting:  # between rounds: no block is open, the round's end was held
            self._ended = StreamState.FAILED
            self._own_failure = error["error"]["message"]
            return [{"type": "error", "error": error["error"]}]
        return self._splice(self._round.fail(error))

    # ------------------------------------------------------------------ between rounds

    @property
    def _waiting(self) -> bool:
        return self._ended is None and self._round.state in _TERMINAL

    def add_results(self, blocks: list[dict[str, Any]]) -> list[StreamEvent]:
        """The pending calls' result blocks; then the message's end, if it ends here."""
        if not self.pending_calls or self._ended is not None:
            raise TranslatorStateError("add_results() without pending server tool calls")
        out: list[StreamEvent] = []
        for block in blocks:
            index = len(self.content)
            out.append({"type": "content_block_start", "index": index, "content_block": block})
            out.append({"type": "content_block_stop", "index": index})
            self.content.append(block)
        self.pending_calls = []
        stop = self._held_stop
        if stop is None and len(self._rounds) >= self._max_rounds:
            stop = "pause_turn"
        if stop is not None:
            out += self._end(stop, None)
        return out

    def next_round(self) -> None:
        """Begin the next upstream round (its events follow as this stream's)."""
        if not self._waiting or self.pending_calls:
            raise TranslatorStateError("next_round() while a round is live or results pending")
        self._offset = len(self.content)
        self._ids = {}
        self._rounds.append(self._new_round(len(self._rounds) + 1))

    # ------------------------------------------------------------------ splicing

    def _end(self, stop_reason: str, stop_sequence: str | None) -> list[StreamEvent]:
        self._ended = StreamState.FINISHED
        return [
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                "usage": dict(self.usage),
            },
            {"type": "message_stop"},
        ]

    def _splice(self, events: list[StreamEvent]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for event in events:
            kind = event["type"]
            if kind == "message_start":
                if len(self._rounds) == 1:
                    out.append(event)
            elif kind == "message_delta":
                out += self._round_ended(event)
            elif kind == "message_stop":
                pass  # sent by _end, with the message_delta
            elif kind == "error":
                self._ended = StreamState.FAILED
                out.append(event)
            else:
                out.append(self._block_event(event))
        return out

    def _round_ended(self, event: StreamEvent) -> list[StreamEvent]:
        delta = event["delta"]
        calls = self._round.server_tool_calls()
        if calls and delta["stop_reason"] in _CONTINUING_STOPS:
            for call in calls:
                sent_id = self._ids.get(call.id, call.id)
                self.pending_calls.append(ServerToolCall(sent_id, call.name, call.input))
                for block in self.content:
                    if block.get("id") == sent_id:
                        block["input"] = dict(call.input)
            self._held_stop = "tool_use" if delta["stop_reason"] == "tool_use" else None
            return []
        return self._end(delta["stop_reason"], delta.get("stop_sequence"))

    def _block_event(self, event: StreamEvent) -> StreamEvent:
        index = event["index"] + self._offset
        event = {**event, "index": index}
        kind = event["type"]
        if kind == "content_block_start":
            block = dict(event["content_block"])
            if block["type"] in ("tool_use", "server_tool_use"):
                sent = _unique_id(block["id"], self._seen_ids, len(self._rounds))
                self._ids[block["id"]] = sent
                block["id"] = sent
                event["content_block"] = block
                self._json[index] = []
            self.content.append(dict(block))
        elif kind == "content_block_delta":
            self._accumulate(index, event["delta"])
        elif index in self._json:  # a tool block's stop: its input is whole now
            self._take_input(index)
        return event

    def _accumulate(self, index: int, delta: Mapping[str, Any]) -> None:
        block = self.content[index]
        kind = delta["type"]
        if kind == "text_delta":
            block["text"] += delta["text"]
        elif kind == "thinking_delta":
            block["thinking"] += delta["thinking"]
        elif kind == "signature_delta":
            block["signature"] = delta["signature"]
        else:  # input_json_delta: the translator sends no other kind
            self._json[index].append(delta["partial_json"])

    def _take_input(self, index: int) -> None:
        try:
            value = json.loads("".join(self._json.pop(index)) or "{}")
        except (ValueError, RecursionError):
            value = {}
        self.content[index]["input"] = value if isinstance(value, dict) else {}


class ServerToolMessage:
    """Whole (non-streamed) rounds joined into one message; see the module docstring."""

    def __init__(
        self, server_tool_names: frozenset[str], ledger: ServerToolLedger, *, max_rounds: int
    ) -> None:
        self._names = server_tool_names
        self._ledger = ledger
        self._max_rounds = max_rounds
        self._usages: list[Usage] = []
        self._seen_ids: set[str] = set()
        self._held_stop: str | None = None
        self.message: Message | None = None  # the message so far
        self.pending_calls: list[ServerToolCall] = []
        self.ended = False

    @property
    def rounds(self) -> int:
        return len(self._usages)

    @property
    def content(self) -> list[Any]:
        return list(self.message["content"]) if self.message is not None else []

    def add_round(self, message: Message) -> bool:
        """One round's message (its server calls become `server_tool_use` blocks);
        True when the message ends with it."""
        self._usages.append(message["usage"])
        blocks: list[Any] = []
        calls: list[ServerToolCall] = []
        for block in message["content"]:
            if block["type"] == "tool_use" and block["name"] in self._names:
                sent_id = _unique_id(server_tool_id(block["id"]), self._seen_ids, self.rounds)
                calls.append(ServerToolCall(sent_id, block["name"], block["input"]))
                blocks.append({**block, "type": "server_tool_use", "id": sent_id})
            elif block["type"] == "tool_use":
                blocks.append({**block, "id": _unique_id(block["id"], self._seen_ids, self.rounds)})
            else:
                blocks.append(block)
        client_calls = any(block["type"] == "tool_use" for block in blocks)
        if self.message is None:
            self.message = {**message, "content": blocks}
        else:
            self.message = {**message, "content": [*self.message["content"], *blocks]}
        stop = message["stop_reason"]
        if calls and stop in _CONTINUING_STOPS:
            self.pending_calls = calls
            self._held_stop = "tool_use" if client_calls else None
            # to_anthropic_message called the server calls tool_use: not the client's
            self.message["stop_reason"] = self._held_stop or "end_turn"
        else:
            self.ended = True
        self.message["usage"] = _summed_usage(self._usages, self._ledger)
        return self.ended

    def add_results(self, blocks: list[dict[str, Any]]) -> bool:
        """The pending calls' result blocks; True when the message ends with them."""
        if self.message is None or not self.pending_calls:
            raise TranslatorStateError("add_results() without pending server tool calls")
        self.message["content"] = [*self.message["content"], *blocks]  # type: ignore[list-item]
        self.pending_calls = []
        self.message["usage"] = _summed_usage(self._usages, self._ledger)
        if self._held_stop is not None:
            self.ended = True
        elif self.rounds >= self._max_rounds:
            self.message["stop_reason"] = "pause_turn"
            self.ended = True
        return self.ended
