"""OpenAI pass-through bodies made parseable by strict clients (the official SDKs).

Upstreams called "OpenAI-compatible" leave out fields the `openai` SDKs rely on:
`id`, `object`, `created`, `model`, `choices[].index`, `delta.role`, the
`index` of tool-call deltas, the usage chunk asked for with
`stream_options.include_usage`, the closing `data: [DONE]`. Some report a
failure mid-stream in a shape the SDK does not raise on. `ChunkNormaliser`
fills what is missing and keeps everything else (unknown fields pass through);
`to_strict_completion` does the same for a non-stream body.

Choices made here:
- A missing `id` / `created` / `model` takes the first value the upstream sent
  in this stream, else the caller's (a generated id, the clock, the request's
  model): core has no clock and no randomness.
- A usage chunk that was asked for and never came is sent with zero counts:
  clients read `chunk.usage.prompt_tokens` on the last chunk and would fail on
  its absence; zeros say "not reported" without inventing numbers.
- An upstream error (`{"error": ...}`, `{"object": "error", ...}`, `event: error`
  or data that is not a JSON object) becomes `{"error": {"message", "type",
  "code"}}`, which the SDK raises as `APIError`; the stream ends there.
- A missing or null `finish_reason` in a whole answer is "tool_calls" when the
  message calls tools, else "stop": the answer is complete, so it did stop.
- Upstream text comes in unmasked (the server masks every byte on its way out); what
  is quoted and cut (an event that is not JSON) passes the caller's `mask` first, so the
  cut cannot split a key past recognising.
"""

import json
from collections.abc import Callable
from typing import Any

from app.core.sse import DONE_LINE, ServerSentEvent, encode_data


class ChunkNormaliser:
    """Decoded upstream events in, strict `chat.completion.chunk` SSE bytes out."""

    def __init__(
        self,
        *,
        stream_id: str,
        created: int,
        model: str,
        include_usage: bool = False,
        loads: Callable[[str], Any] = json.loads,
        mask: Callable[[str], str] = str,
    ) -> None:
        """`loads` parses each event's JSON (ValueError for what is not JSON); `mask`
        hides secrets in upstream text before it is quoted and cut."""
        self._loads = loads
        self._mask = mask
        self._defaults: dict[str, Any] = {
            "id": stream_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        self._include_usage = include_usage
        self._usage_seen = False
        self._ended = False  # [DONE] or an error was sent: nothing more goes out
        self._roled: set[int] = set()  # choices whose first delta has been sent
        self._tool_index_by_id: dict[tuple[int, str], int] = {}
        self._last_tool_index: dict[int, int] = {}

    def fix(self, event: ServerSentEvent) -> bytes:
        if self._ended or not event.data.strip():
            return b""
        if event.data.strip() == "[DONE]":
            return self.finish()
        try:
            chunk = self._loads(event.data)
        except (ValueError, RecursionError):
            quoted = self._mask(event.data)[:200]
            chunk = {"message": f"upstream sent an event that is not JSON: {quoted}"}
            return self._fail(_error_of(chunk))
        if not isinstance(chunk, dict):
            return self._fail(_error_of({"message": "upstream sent a non-object event"}))
        if "error" in chunk or chunk.get("object") == "error" or event.event == "error":
            return self._fail(_error_of(chunk))
        if self._fix_chunk(chunk) or "\n" in event.data:
            return encode_data(chunk)
        # Nothing was missing (the usual case): the upstream's own text goes on as it
        # came, which skips re-encoding, about half the cost of a chunk.
        return b"data: " + event.data.encode() + b"\n\n"

    def whole(self, body: object) -> bytes:
        """A stream request answered with one JSON body (some upstreams ignore
        `stream: true`): the completion as one chunk, then the usage chunk and
        `[DONE]`; an error body as the error chunk."""
        if self._ended:
            return b""
        if not isinstance(body, dict):
            return self._fail(_error_of({"message": "upstream answered a non-object body"}))
        if "error" in body or body.get("object") == "error":
            return self._fail(_error_of(body))
        chunk = completion_as_chunk(body)
        usage = chunk.pop("usage", None)  # only ever in its own last chunk, when asked
        for choice in chunk["choices"]:
            if not choice.get("finish_reason"):  # the answer is whole, so it did stop
                choice["finish_reason"] = (
                    "tool_calls" if choice["delta"].get("tool_calls") else "stop"
                )
        self._fix_chunk(chunk)
        out = encode_data(chunk)
        if self._include_usage and isinstance(usage, dict):
            self._usage_seen = True
            out += encode_data({**self._defaults, "choices": [], "usage": usage})
        return out + self.finish()

    def not_a_stream(self, content_type: str, start: str) -> bytes:
        """A 2xx body that is neither SSE nor JSON (a gateway's HTML page...), in words."""
        shown = " ".join(start.split())[:200]
        kind = content_type or "no content type"
        message = f"the upstream answered with {kind}, not a stream: {shown}"
        return self._fail(_error_of({"message": message}))

    def finish(self) -> bytes:
        """End of stream: the missing usage chunk, then `[DONE]` (once)."""
        if self._ended:
            return b""
        self._ended = True
        if self._include_usage and not self._usage_seen:
            usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
            return encode_data({**self._defaults, "choices": [], "usage": usage}) + DONE_LINE
        return DONE_LINE

    def _fail(self, error: dict[str, Any]) -> bytes:
        self._ended = True
        return encode_data({"error": error})

    def _fix_chunk(self, chunk: dict[str, Any]) -> bool:
        """Fill in what `chunk` lacks (in place); whether anything was."""
        changed = False
        for key in ("id", "created", "model"):
            if chunk.get(key) in (None, ""):
                chunk[key] = self._defaults[key]
                changed = True
            else:
                self._defaults[key] = chunk[key]  # later chunks without it reuse it
        if chunk.get("object") != "chat.completion.chunk":
            chunk["object"] = "chat.completion.chunk"
            changed = True
        if chunk.get("usage"):
            self._usage_seen = True
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            chunk["choices"] = choices = []
            changed = True
        for position, choice in enumerate(choices):
            if isinstance(choice, dict):
                changed = self._fix_choice(choice, position) or changed
        return changed

    def _fix_choice(self, choice: dict[str, Any], position: int) -> bool:
        changed = False
        index = choice.get("index")
        if not isinstance(index, int):
            choice["index"] = index = position
            changed = True
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            choice["delta"] = delta = {}
            changed = True
        if index not in self._roled:
            self._roled.add(index)
            if not delta.get("role"):
                delta["role"] = "assistant"
                changed = True
        tool_calls = delta.get("tool_calls")
        if isinstance(tool_calls, list):
            for call in tool_calls:
                if isinstance(call, dict) and not isinstance(call.get("index"), int):
                    call["index"] = self._tool_index(index, call.get("id"))
                    changed = True
        return changed

    def _tool_index(self, choice_index: int, call_id: object) -> int:
        """By id order: a new id takes the next index, no id continues the last call."""
        last = self._last_tool_index.get(choice_index, -1)
        if not isinstance(call_id, str) or not call_id:
            return max(last, 0)
        key = (choice_index, call_id)
        if key not in self._tool_index_by_id:
            self._tool_index_by_id[key] = last + 1
        self._last_tool_index[choice_index] = self._tool_index_by_id[key]
        return self._tool_index_by_id[key]


def completion_as_chunk(body: dict[str, Any]) -> dict[str, Any]:
    """A whole `chat.completion` reshaped as one `chat.completion.chunk`: each choice's
    message becomes its delta, tool calls indexed by position (a whole answer's calls
    are complete). Other fields (usage...) are kept."""
    choices = body.get("choices")
    return {
        **body,
        "object": "chat.completion.chunk",
        "choices": [_as_delta_choice(choice) for choice in choices if isinstance(choice, dict)]
        if isinstance(choices, list)
        else [],
    }


def _as_delta_choice(choice: dict[str, Any]) -> dict[str, Any]:
    message = choice.get("message")
    delta = dict(message) if isinstance(message, dict) else {}
    calls = delta.get("tool_calls")
    if isinstance(calls, list):
        delta["tool_calls"] = [
            {"index": position, **call} if isinstance(call, dict) else call
            for position, call in enumerate(calls)
        ]
    streamed = {key: value for key, value in choice.items() if key != "message"}
    streamed["delta"] = delta
    return streamed


def _error_of(chunk: dict[str, Any]) -> dict[str, Any]:
    error = chunk.get("error")
    source = error if isinstance(error, dict) else chunk
    message = source.get("message")
    if not isinstance(message, str) or not message:
        message = error if isinstance(error, str) and error else "upstream failed mid-stream"
    kind = source.get("type")
    return {
        "message": message,
        "type": kind if isinstance(kind, str) and kind else "api_error",
        "code": source.get("code"),
    }


def to_strict_completion(
    body: dict[str, Any], *, completion_id: str, created: int, model: str
) -> dict[str, Any]:
    """A whole `chat.completion` with the fields strict clients require (in place)."""
    for key, default in (("id", completion_id), ("created", created), ("model", model)):
        if body.get(key) in (None, ""):
            body[key] = default
    body["object"] = "chat.completion"
    choices = body.get("choices")
    if not isinstance(choices, list):
        body["choices"] = choices = []
    for position, choice in enumerate(choices):
        if not isinstance(choice, dict):
            continue
        if not isinstance(choice.get("index"), int):
            choice["index"] = position
        message = choice.get("message")
        if not isinstance(message, dict):
            choice["message"] = message = {"content": None}
        if not message.get("role"):
            message["role"] = "assistant"
        if not choice.get("finish_reason"):
            choice["finish_reason"] = "tool_calls" if message.get("tool_calls") else "stop"
    return body
