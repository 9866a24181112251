"""OpenAI `chat.completion.chunk`s in, Anthropic Messages stream events out. No I/O.

Rule 1 (as in h11's `_state.py`): everything that moves the stream's state
lives in `StreamTranslator._emit`, driven by the grammar table of
`app/core/anthropic_grammar.py` (the one the server's `StreamGuard` checks with).
Every event leaves through `_emit`, which refuses anything outside this grammar:

```
message_start
( content_block_start  content_block_delta*  content_block_stop )*   one block open, index 0,1,2...
message_delta  message_stop                                         | error
```

Rule 2: blocks open only in `_open_block` and close only in `_close_block`.

Rule 3: upstream oddities are absorbed, never raised: each kind is recorded
once in `repairs` for the server to log. Only our own misuse raises
(`TranslatorStateError`: feeding after the end, or a grammar violation).

States: IDLE -> STARTED <-> IN_BLOCK; STARTED -> STOPPING -> FINISHED; IDLE | STARTED -> FAILED.

Tool calls (one block open at a time, so calls cannot be streamed side by side):
- A call is keyed by its `index`; without one, by its `id`; without both, it
  continues the call seen last. A different `id` under a known index is a new
  call (Ollama numbers every call of a turn 0).
- The name is taken once, from the first delta that has one (MiniMax resends
  it whole in every chunk: names are never joined). A call's block opens only
  when its name is known; its argument fragments wait until then. A call
  still nameless at the end is dropped.
- Calls open in the order they become nameable. The open call streams its own
  fragments live; another call's fragments are buffered until the open call's
  arguments form complete JSON (then it is done) or something else needs a
  block, or the stream ends; then the waiting call opens with its buffer as
  one `input_json_delta`. Sequential upstreams stream without delay; two
  interleaved calls stay correct, the second one only later.
- Tool calls a model leaked as markup into `content` (Kimi, MiniMax, Qwen
  grammars) become tool_use blocks too, but only when the request offered
  tools: without tools no call can be meant, and the text stays untouched.
- Calls of `server_tool_names` (web_search, web_fetch: NimBridge runs them) open
  `server_tool_use` blocks with `srvtoolu_` ids instead, and do not make the stop
  a `tool_use`; `server_tool_calls()` gives them to the server.
- Fragments go out as received. Arguments that are not valid JSON when their
  block closes are recorded as a repair: `partial_json` cannot be retracted.

Runaway upstreams: given the client's `max_output_tokens`, a stream whose
text and tool arguments pass `max_output_tokens * RUNAWAY_CHARS_PER_TOKEN`
characters is ended as a `max_tokens` stop (the client asked for no more;
Claude Code continues from a max_tokens stop as usual). The margin is wide on
purpose: only an upstream that ignores `max_tokens` gets there. Thinking is
not counted (DeepSeek's reasoner does not count its reasoning in
`max_tokens`); the server's byte cap bounds it.

Thinking display (`app/core/thinking_display.py`): "summarized" streams thinking
as `thinking_delta`s and signs the block with `signature`; "omitted" sends no
`thinking_delta` at all, only the block's start, one `signature_delta` that
carries the reasoning, and its stop (as Anthropic's API does). Either way the
reasoning counts in the estimated output tokens.

Secrets: upstream text reaches this module unmasked (the server masks every byte on
its way out). What quotes, cuts or packs upstream text here (an error's message, a
repair, omitted reasoning in its signature) passes it through `mask` first: a key cut
in two or compressed is past what the way out recognises.
"""

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from app.core.anthropic_grammar import (
    DELTA_TYPES_BY_BLOCK_TYPE,
    TERMINAL_STATES,
    TRANSITIONS_BY_STATE,
)
from app.core.anthropic_grammar import StreamState as StreamState  # callers import it from here
from app.core.anthropic_types import ErrorBody, Message, StreamEvent, Usage
from app.core.errors import (
    TranslatorStateError,
    UpstreamProtocolError,
    upstream_error_from_stream_payload,
)
from app.core.response_map import matched_stop_sequence, parse_tool_arguments
from app.core.server_tools.specs import ServerToolCall, server_tool_id
from app.core.sse import ServerSentEvent
from app.core.think_tags import Segment, ThinkTagSplitter
from app.core.thinking_display import ThinkingDisplay, reasoning_signature
from app.core.tool_markup import MarkupToolCall, ToolMarkupScanner, infer_tool_name

STOP_REASON_BY_FINISH_REASON: dict[str, str] = {
    "stop": "end_turn",
    "eos_token": "end_turn",  # TGI's native name for "stop"
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

NO_FINISH_REASON_MESSAGE = "upstream stream ended without a finish_reason (connection dropped?)"
# llama-cpp-python (--interrupt_requests, its default) ends a stream this way when
# another request arrives: the connection did not drop, the server gave up on it.
DONE_WITHOUT_FINISH_REASON_MESSAGE = (
    "upstream ended the stream with [DONE] but without a finish_reason (the server interrupted "
    "the answer: llama-cpp-python does when another request arrives, unless started "
    "with --interrupt_requests false)"
)

# Characters per token above which a stream is a runaway: tokenizers average
# 3-6 characters a token on code and prose; 16 is far beyond any real answer.
RUNAWAY_CHARS_PER_TOKEN = 16
RUNAWAY_REPAIR = "upstream ignored max_tokens; stream ended as max_tokens"

BlockKind = Literal["text", "thinking", "tool_use", "server_tool_use"]


_IDLE, _STARTED, _STOPPING = StreamState.IDLE, StreamState.STARTED, StreamState.STOPPING
# A tuple, not the frozenset: `in` compares by identity first, where a set hashes the
# enum member in Python (Enum.__hash__), on every chunk.
_TERMINAL = tuple(TERMINAL_STATES)
# Delta fields that take more than the plain text path (see `_take_delta`).
_REASONING_KEYS = frozenset({"reasoning_content", "reasoning", "reasoning_details"})
_NOT_PLAIN_TEXT_KEYS = _REASONING_KEYS | {"tool_calls", "function_call"}


@dataclass(slots=True, eq=False)
class _ToolCall:
    order: int  # appearance order, for generated ids
    upstream_id: str | None
    name: str | None = None
    fragments: list[str] = field(default_factory=list)
    has_block: bool = False  # its block was opened (it may since have closed)
    incomplete_at: int = -1  # fragment count when its arguments were last seen incomplete


class StreamTranslator:
    """One upstream stream in, one Anthropic stream out; see the module docstring."""

    def __init__(
        self,
        *,
        model: str,
        message_id: str,
        input_tokens: int = 0,
        tool_id_prefix: str = "toolu_",
        signature: str = "nimbridge",
        thinking_display: ThinkingDisplay = "summarized",
        tools: Sequence[Mapping[str, Any]] = (),
        start_in_thinking: bool = False,
        max_output_tokens: int | None = None,
        server_tool_names: frozenset[str] = frozenset(),
        stop_sequences: Sequence[str] = (),
        loads: Callable[[str], Any] = json.loads,
        mask: Callable[[str], str] = str,
    ) -> None:
        """`loads` parses each chunk's JSON (the server's is faster and reads the same;
        ValueError or RecursionError for what is not JSON); `mask` hides secrets in
        upstream text before this quotes or cuts it (see the module docstring)."""
        self.model = model
        self._loads = loads
        self._mask = mask
        self.message_id = message_id
        self.state = _IDLE
        self.repairs: list[str] = []
        self.stop_reason: str | None = None
        self.failure: str | None = None  # the message of the `error` event that ended it
        self._input_tokens_estimate = input_tokens
        self._tool_id_prefix = tool_id_prefix
        self._signature = signature
        self._omit_thinking = thinking_display == "omitted"
        self._held_reasoning: list[str] = []  # the open thinking block's text, when omitted
        # grammar (owned by _emit)
        self._transitions = TRANSITIONS_BY_STATE[_IDLE]  # the state's row of the table
        self._next_index = 0
        self._open_kind: BlockKind | None = None
        self._open_delta_types: frozenset[str] = frozenset()
        # content
        # start_in_thinking: the model's template already opened <think> (ThinkTagSplitter)
        self._tools = tools  # Anthropic tool definitions, to name nameless markup calls
        self._markup = ToolMarkupScanner() if tools else None
        self._think_tags = ThinkTagSplitter(start_in_thinking=start_in_thinking)
        self._plain_text = False  # content text passes unchanged (`_text_passes_unchanged`)
        self._open_call: _ToolCall | None = None
        self._held_space = ""  # whitespace that would open a text block on its own
        self._calls: list[_ToolCall] = []
        self._calls_by_index: dict[int, _ToolCall] = {}
        self._calls_by_id: dict[str, _ToolCall] = {}
        self._last_call: _ToolCall | None = None
        self._waiting_calls: list[_ToolCall] = []  # named, block not opened yet
        self._tool_blocks = 0
        # Calls of these names are NimBridge's to run (web_search, web_fetch): they go
        # out as `server_tool_use` blocks and never count as the client's tool_use.
        self._server_tool_names = server_tool_names
        self.server_calls: list[tuple[str, _ToolCall]] = []  # (block id, call)
        self._output_chars = 0
        self._answer_chars = 0  # text and tool arguments: what max_output_tokens bounds
        self._max_output_tokens = max_output_tokens
        self._max_answer_chars = (
            None if max_output_tokens is None else max_output_tokens * RUNAWAY_CHARS_PER_TOKEN
        )
        # The client's stop sequences, and the end of the text, to find which one
        # matched when the upstream does not say (`matched_stop_sequence`).
        self._stop_sequences = tuple(stop for stop in stop_sequences if stop)
        self._text_tail = ""
        self.received_chunks = 0  # chunks fed: 0 at the end means the upstream sent nothing
        # end of message
        self._finish_reason: str | None = None
        self._stop_sequence: str | None = None
        self._prompt_tokens: int | None = None
        self._completion_tokens: int | None = None
        self._cached_tokens: int | None = None

    # ------------------------------------------------------------------ public

    @property
    def usage(self) -> Usage:
        """Token counts as known now: the upstream's, else our estimates."""
        if self._completion_tokens is not None:
            output_tokens = self._completion_tokens
        else:
            output_tokens = (self._output_chars + 3) // 4  # rough: ~4 characters a token
            if self._max_output_tokens is not None:
                # The upstream cannot have written more than it was allowed, and a
                # length stop means it wrote exactly that much (llama.cpp sends no usage).
                if self._finish_reason == "length":
                    output_tokens = self._max_output_tokens
                output_tokens = min(output_tokens, self._max_output_tokens)
        if self._prompt_tokens is None:
            return {"input_tokens": self._input_tokens_estimate, "output_tokens": output_tokens}
        cached = self._cached_tokens or 0
        usage: Usage = {
            "input_tokens": max(0, self._prompt_tokens - cached),
            "output_tokens": output_tokens,
        }
        if self._cached_tokens is not None:
            usage["cache_read_input_tokens"] = cached
        return usage

    @property
    def usage_reported(self) -> bool:
        """Whether the upstream counted the prompt itself (else `usage` has our estimate)."""
        return self._prompt_tokens is not None

    def server_tool_calls(self) -> list[ServerToolCall]:
        """The server tool calls streamed so far, arguments parsed (repaired, or {})."""
        return [
            ServerToolCall(
                block_id,
                call.name or "",
                parse_tool_arguments("".join(call.fragments), self.repairs),
            )
            for block_id, call in self.server_calls
        ]

    def start(self) -> list[StreamEvent]:
        """`message_start`, sent as soon as the server commits to the stream."""
        out: list[StreamEvent] = []
        if self.state is _IDLE:
            message: Message = {
                "id": self.message_id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": self._input_tokens_estimate, "output_tokens": 0},
            }
            self._emit(out, {"type": "message_start", "message": message})
        return out

    def feed(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        """One parsed `chat.completion.chunk`."""
        if self.state in _TERMINAL:
            raise TranslatorStateError(f"feed() after the stream ended ({self.state.name})")
        out = self.start() if self.state is _IDLE else []
        self.received_chunks += 1
        if chunk.get("usage") is not None or "x_groq" in chunk:
            self._take_usage(chunk)
        choices = chunk.get("choices")
        if not choices or not isinstance(choices, list):
            return out  # usage-only chunk
        # Only the first choice: we never ask for n > 1, and TGI 1.4 numbers its
        # one choice by token (choices[].index = 1, 2, 3...).
        choice = choices[0]
        # Parsed JSON gives dicts: the exact type check first, the ABC one (slow) after.
        if type(choice) is not dict and not isinstance(choice, Mapping):
            return out
        delta = choice.get("delta")
        if type(delta) is dict or isinstance(delta, Mapping):
            self._take_delta(out, delta)
        if self._max_answer_chars is not None and self._answer_chars > self._max_answer_chars:
            self._repair(RUNAWAY_REPAIR)
            self._finish_reason = "length"
            return out + self.finish()
        finish_reason = choice.get("finish_reason")
        if isinstance(finish_reason, str) and finish_reason:
            self._finish_reason = finish_reason
            # The matched stop string: vLLM's `stop_reason`, SGLang's `matched_stop`
            # (both are token ids, not strings, when an EOS token stopped it).
            matched = choice.get("stop_reason")
            if not isinstance(matched, str):
                matched = choice.get("matched_stop")
            if isinstance(matched, str) and matched:
                self._stop_sequence = matched
        return out

    def feed_sse(self, event: ServerSentEvent) -> list[StreamEvent]:
        """One upstream SSE event: `[DONE]`, an error, or a JSON chunk."""
        data = event.data
        chunk_like = data[:1] == "{"  # nearly always: no stripping and comparing then
        if not chunk_like and data.strip() == "[DONE]":
            # also after an error event: finish() is idempotent
            return self.finish(done_sent=True)
        if self.state in _TERMINAL:
            raise TranslatorStateError(f"feed_sse() after the stream ended ({self.state.name})")
        if event.event == "error":
            return self._fail_upstream(data)
        if not chunk_like and not data.strip():
            return []  # an empty data line: a keep-alive, not a chunk
        try:
            payload = self._loads(data)
        except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
            return self.fail(
                UpstreamProtocolError(
                    f"upstream sent invalid JSON in a stream chunk: {self._mask(data)[:200]!r}"
                ).to_error_body()
            )
        if not isinstance(payload, dict):
            quoted = self._mask(data)[:200]
            return self.fail(
                UpstreamProtocolError(
                    f"upstream sent a stream chunk that is not a JSON object: {quoted!r}"
                ).to_error_body()
            )
        if payload.get("error"):
            return self._fail_upstream(data)
        return self.feed(payload)

    def _fail_upstream(self, data: str) -> list[StreamEvent]:
        """End with the upstream's own error, read from its text masked (its message is
        cut to a length: a key must be hidden before that)."""
        payload = _error_payload(self._mask(data))
        return self.fail(upstream_error_from_stream_payload(payload).to_error_body())

    def finish(self, *, done_sent: bool = False) -> list[StreamEvent]:
        """The upstream stream ended (`[DONE]`, `done_sent`, or EOF). Idempotent once ended."""
        if self.state in _TERMINAL:
            return []
        if self._finish_reason is None:
            message = DONE_WITHOUT_FINISH_REASON_MESSAGE if done_sent else NO_FINISH_REASON_MESSAGE
            return self.fail({"type": "error", "error": {"type": "api_error", "message": message}})
        out: list[StreamEvent] = []
        for segment in self._think_tags.close():
            self._take_segment(out, segment)
        if self._markup is not None:
            for piece in self._markup.close():
                self._take_markup_piece(out, piece)
        self._open_waiting_calls(out)
        if self._calls and any(call.name is None for call in self._calls):
            self._repair("tool call without a name dropped")
        self._close_block(out)
        self.stop_reason, stop_sequence = self._final_stop_reason(self._finish_reason)
        self._emit(
            out,
            {
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason, "stop_sequence": stop_sequence},
                "usage": dict(self.usage),
            },
        )
        self._emit(out, {"type": "message_stop"})
        return out

    def fail(self, error: ErrorBody) -> list[StreamEvent]:
        """End the stream with an `error` event (after closing any open block)."""
        out: list[StreamEvent] = []
        if self.state not in _TERMINAL:
            self._close_block(out)
            self._emit(out, {"type": "error", "error": error["error"]})
            self.failure = error["error"]["message"]
        return out

    # ------------------------------------------------------------------ grammar

    def _emit(self, out: list[StreamEvent], event: StreamEvent) -> None:
        kind = event["type"]
        after = self._transitions.get(kind)
        if after is None:
            raise TranslatorStateError(_refusal(kind, self.state))
        if kind == "content_block_delta":
            if (
                event["index"] != self._next_index - 1
                or event["delta"]["type"] not in self._open_delta_types
            ):
                raise TranslatorStateError(f"delta {event} does not fit the open block")
        elif kind == "content_block_start":
            if event["index"] != self._next_index:
                raise TranslatorStateError(f"block {event['index']} out of order")
            self._next_index += 1
            self._open_kind = event["content_block"]["type"]
            self._open_delta_types = DELTA_TYPES_BY_BLOCK_TYPE[self._open_kind]
        elif kind == "content_block_stop":
            if event["index"] != self._next_index - 1:
                raise TranslatorStateError(f"stop of block {event['index']}, not the open one")
            self._open_kind = None
        if after is not self.state:
            self.state = after
            self._transitions = TRANSITIONS_BY_STATE[after]
        out.append(event)

    def _open_block(self, out: list[StreamEvent], kind: BlockKind, call: _ToolCall | None) -> None:
        self._close_block(out)
        block: dict[str, Any]
        if kind == "tool_use":
            assert call is not None and call.name is not None
            call_id = call.upstream_id or f"{self._tool_id_prefix}{self.message_id}_{call.order}"
            if call.name in self._server_tool_names:
                call_id = server_tool_id(call_id)
                block = {"type": "server_tool_use", "id": call_id, "name": call.name, "input": {}}
                self.server_calls.append((call_id, call))
            else:
                block = {"type": "tool_use", "id": call_id, "name": call.name, "input": {}}
                self._tool_blocks += 1
            call.has_block = True
            self._open_call = call
            self._held_space = ""  # whitespace before a tool call is not worth a block
        elif kind == "thinking":
            block = {"type": "thinking", "thinking": "", "signature": ""}
            self._held_space = ""
        else:
            block = {"type": "text", "text": ""}
        self._emit(
            out, {"type": "content_block_start", "index": self._next_index, "content_block": block}
        )

    def _close_block(self, out: list[StreamEvent]) -> None:
        if self._open_kind is None:
            return
        index = self._next_index - 1
        if self._open_kind == "thinking":
            signature = self._signature
            if self._omit_thinking:
                # Packed (compressed) past what the way out could still recognise.
                signature = reasoning_signature(self._mask("".join(self._held_reasoning)))
                self._held_reasoning = []
            delta = {"type": "signature_delta", "signature": signature}
            self._emit(out, {"type": "content_block_delta", "index": index, "delta": delta})
        elif self._open_call is not None:
            arguments = "".join(self._open_call.fragments)
            if arguments and not _is_json(arguments):
                self._repair("invalid tool arguments JSON passed through")
            self._open_call = None
        self._emit(out, {"type": "content_block_stop", "index": index})

    # ------------------------------------------------------------------ content

    def _take_delta(self, out: list[StreamEvent], delta: Mapping[str, Any]) -> None:
        content = delta.get("content")
        if (
            self._open_kind == "text"
            and type(content) is str
            and content
            and _NOT_PLAIN_TEXT_KEYS.isdisjoint(delta)
            and (self._plain_text or self._text_passes_unchanged())
        ):
            # Nearly every chunk of an answer: text into the open text block, with no
            # reasoning, tool call, think tag or tool markup to look for (the general
            # path below would send the very same delta).
            self._take_text(out, content)
            return
        if not _REASONING_KEYS.isdisjoint(delta):
            reasoning = _reasoning_text(delta)
            if reasoning:
                self._take_thinking(out, reasoning)
        if isinstance(content, str):
            if content:
                for segment in self._think_tags.feed(content):
                    self._take_segment(out, segment)
        elif isinstance(content, list):
            self._take_content_parts(out, content)
        tool_calls = delta.get("tool_calls")
        if isinstance(tool_calls, list) and tool_calls:
            for tool_call in tool_calls:
                if isinstance(tool_call, Mapping):
                    self._take_tool_delta(out, tool_call)
            return  # llama-cpp-python repeats the call as `function_call`: not a second call
        function_call = delta.get("function_call")  # the pre-tools API: one call at most
        if isinstance(function_call, Mapping):
            self._take_tool_delta(out, {"index": -1, "function": function_call})

    def _text_passes_unchanged(self) -> bool:
        """Whether content text from now on goes out as it comes: no tool markup is
        looked for, and the think tags are decided (then it stays so: `_plain_text`)."""
        self._plain_text = self._markup is None and self._think_tags.passes_text
        return self._plain_text

    def _take_content_parts(self, out: list[StreamEvent], parts: list[Any]) -> None:
        # Mistral's Magistral streams content as parts, with reasoning in
        # {"type": "thinking", "thinking": [{"type": "text", "text": ...}]}.
        self._repair("content as a list of parts")
        for part in parts:
            if not isinstance(part, Mapping):
                continue
            if part.get("type") == "thinking":
                thinking = _joined_texts(part.get("thinking"))
                if thinking:
                    self._take_thinking(out, thinking)
            elif isinstance(part.get("text"), str) and part["text"]:
                for segment in self._think_tags.feed(part["text"]):
                    self._take_segment(out, segment)

    def _take_segment(self, out: list[StreamEvent], segment: Segment) -> None:
        if segment.kind == "thinking":
            self._repair("think tags in content")
            self._take_thinking(out, segment.text)
        elif self._markup is None:
            self._take_text(out, segment.text)
        else:
            for piece in self._markup.feed(segment.text):
                self._take_markup_piece(out, piece)

    def _take_markup_piece(self, out: list[StreamEvent], piece: str | MarkupToolCall) -> None:
        if isinstance(piece, str):
            self._take_text(out, piece)
            return
        self._repair("tool call markup in content")
        name = piece.name or infer_tool_name(piece.arguments, self._tools)
        if not name:
            self._repair("tool call markup without a recognisable tool kept as text")
            self._take_text(out, f"(unnamed tool call: {piece.arguments})")
            return
        call = self._new_call(None)
        call.name = name
        call.fragments.append(piece.arguments)
        self._waiting_calls.append(call)
        self._open_waiting_calls(out)

    def _take_thinking(self, out: list[StreamEvent], text: str) -> None:
        if self._open_kind != "thinking":
            self._open_waiting_calls(out)
            self._open_block(out, "thinking", None)
        self._output_chars += len(text)  # counted when omitted too: the model produced it
        if self._omit_thinking:
            self._held_reasoning.append(text)
            return
        delta = {"type": "thinking_delta", "thinking": text}
        self._emit(
            out, {"type": "content_block_delta", "index": self._next_index - 1, "delta": delta}
        )

    def _take_text(self, out: list[StreamEvent], text: str) -> None:
        if self._open_kind != "text":
            if text.isspace():
                self._held_space += text
                return
            text, self._held_space = self._held_space + text, ""
            self._open_waiting_calls(out)
            self._open_block(out, "text", None)
        self._output_chars += len(text)
        self._answer_chars += len(text)
        if self._stop_sequences:
            longest = max(map(len, self._stop_sequences))
            self._text_tail = (self._text_tail + text)[-longest:]
        delta = {"type": "text_delta", "text": text}
        self._emit(
            out, {"type": "content_block_delta", "index": self._next_index - 1, "delta": delta}
        )

    # ------------------------------------------------------------------ tool calls

    def _take_tool_delta(self, out: list[StreamEvent], tool_delta: Mapping[str, Any]) -> None:
        call = self._call_for(tool_delta)
        function = tool_delta.get("function")
        if not isinstance(function, Mapping):
            function = {}
        name = function.get("name")
        if call.name is None and isinstance(name, str) and name:
            call.name = name  # once: later names (MiniMax resends them) are ignored
            self._waiting_calls.append(call)
        arguments = function.get("arguments")
        if isinstance(arguments, Mapping | list):
            self._repair("tool arguments sent as JSON, not a string")
            arguments = json.dumps(arguments, ensure_ascii=False)
        if isinstance(arguments, str) and arguments:
            if call is self._open_call:
                self._emit_arguments(out, arguments)
                call.fragments.append(arguments)
            elif not call.has_block:
                call.fragments.append(arguments)
            elif not arguments.isspace():
                self._repair("tool call fragment after its block closed dropped")
        self._advance_calls(out)

    def _call_for(self, tool_delta: Mapping[str, Any]) -> _ToolCall:
        index = tool_delta.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            index = None
        call_id = tool_delta.get("id")
        if not isinstance(call_id, str) or not call_id:
            call_id = None  # vLLM, DashScope: "" on continuation deltas
        call: _ToolCall | None
        if index is not None:
            call = self._calls_by_index.get(index)
            if call is not None and call_id and call.upstream_id and call_id != call.upstream_id:
                # Ollama numbers every call of a turn 0 (ollama/ollama#15457).
                self._repair("tool calls sharing one index")
                call = None
            if call is None:
                call = self._new_call(call_id)
                self._calls_by_index[index] = call
        else:
            self._repair("tool call without index")  # Ollama before 0.4.7 (ollama#7881)
            call = self._calls_by_id.get(call_id) if call_id else self._last_call
            if call is None:
                call = self._new_call(call_id)
        if call_id and call.upstream_id is None and not call.has_block:
            call.upstream_id = call_id  # the id came late, before its block: still usable
            self._calls_by_id[call_id] = call
        self._last_call = call
        return call

    def _new_call(self, call_id: str | None) -> _ToolCall:
        call = _ToolCall(order=len(self._calls), upstream_id=call_id)
        self._calls.append(call)
        if call_id:
            self._calls_by_id[call_id] = call
        return call

    def _advance_calls(self, out: list[StreamEvent]) -> None:
        """Open waiting calls while the open block is not an unfinished tool call."""
        while self._waiting_calls:
            current = self._open_call
            if current is not None:
                count = len(current.fragments)
                if count == current.incomplete_at:
                    return  # no news for it since it was last found incomplete
                if not _is_json("".join(current.fragments)):
                    current.incomplete_at = count
                    return
            self._open_call_block(out, self._waiting_calls.pop(0))

    def _open_waiting_calls(self, out: list[StreamEvent]) -> None:
        """Something else needs a block (or the stream ends): open every waiting call."""
        while self._waiting_calls:
            self._open_call_block(out, self._waiting_calls.pop(0))

    def _open_call_block(self, out: list[StreamEvent], call: _ToolCall) -> None:
        self._open_block(out, "tool_use", call)
        if call.fragments:
            buffered = "".join(call.fragments)
            call.fragments = [buffered]
            self._emit_arguments(out, buffered)

    def _emit_arguments(self, out: list[StreamEvent], arguments: str) -> None:
        self._output_chars += len(arguments)
        self._answer_chars += len(arguments)
        delta = {"type": "input_json_delta", "partial_json": arguments}
        self._emit(
            out, {"type": "content_block_delta", "index": self._next_index - 1, "delta": delta}
        )

    # ------------------------------------------------------------------ end of message

    def _take_usage(self, chunk: Mapping[str, Any]) -> None:
        usage = chunk.get("usage")
        if not isinstance(usage, Mapping):
            x_groq = chunk.get("x_groq")  # Groq's own copy of the usage
            usage = x_groq.get("usage") if isinstance(x_groq, Mapping) else None
            if not isinstance(usage, Mapping):
                return
        prompt = _count(usage.get("prompt_tokens"))
        completion = _count(usage.get("completion_tokens"))
        details = usage.get("prompt_tokens_details")
        cached = _count(details.get("cached_tokens")) if isinstance(details, Mapping) else None
        if cached is None:
            cached = _count(usage.get("prompt_cache_hit_tokens"))  # DeepSeek
        if cached is None:
            cached = _count(usage.get("cached_tokens"))  # Together
        if prompt is not None:
            self._prompt_tokens = prompt
        if completion is not None:
            self._completion_tokens = completion
        if cached is not None:
            self._cached_tokens = cached

    def _final_stop_reason(self, finish_reason: str) -> tuple[str, str | None]:
        stop_reason = STOP_REASON_BY_FINISH_REASON.get(finish_reason)
        if stop_reason is None:
            self._repair(f"unknown finish_reason {self._mask(finish_reason)[:40]!r}")
            stop_reason = "end_turn"
        if stop_reason == "end_turn" and self._tool_blocks:
            self._repair("finish_reason stop after tool calls")  # Kimi, some NIM templates
            return "tool_use", None
        if stop_reason == "tool_use" and not self._tool_blocks:
            if not self.server_calls:
                self._repair("finish_reason tool_calls without a tool call")
            return "end_turn", None
        if finish_reason == "stop" and self._stop_sequence is None:
            self._stop_sequence = matched_stop_sequence(self._text_tail, self._stop_sequences)
        if finish_reason == "stop" and self._stop_sequence is not None:
            return "stop_sequence", self._stop_sequence
        return stop_reason, None

    def _repair(self, what: str) -> None:
        if what not in self.repairs:
            self.repairs.append(what)


def _refusal(kind: str, state: StreamState) -> str:
    """Why `_emit` refuses an event the grammar table does not allow in `state`."""
    reason = f"{kind} not allowed in state {state.name}"
    if kind == "message_delta" and state is _STOPPING:
        return f"a second message_delta ({reason})"
    if kind == "message_stop" and state is _STARTED:
        return f"message_stop before message_delta ({reason})"
    return reason


def _reasoning_text(delta: Mapping[str, Any]) -> str:
    """The delta's reasoning, from the first field that has it (they may repeat it)."""
    for key in ("reasoning_content", "reasoning"):
        value = delta.get(key)
        if isinstance(value, str) and value:
            return value
    return _joined_texts(delta.get("reasoning_details"))  # OpenRouter


def _joined_texts(parts: Any) -> str:
    if isinstance(parts, str):
        return parts
    if not isinstance(parts, list):
        return ""
    return "".join(
        part["text"]
        for part in parts
        if isinstance(part, Mapping) and isinstance(part.get("text"), str)
    )


def _error_payload(data: str) -> dict[str, Any]:
    """The JSON object of an `event: error`, or one made up around its text."""
    try:
        payload = json.loads(data)
    except (ValueError, RecursionError):
        payload = data.strip() or "(empty error event)"
    if isinstance(payload, dict):
        return payload
    return {"error": {"message": payload if isinstance(payload, str) else json.dumps(payload)}}


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True
