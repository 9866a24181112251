"""Anthropic stream events / message -> OpenAI Responses events / response object.

The second half of `responses_request.py`: the Anthropic stream that NimBridge's own
translator made from the upstream's Chat chunks (already checked by `StreamGuard`)
becomes the Responses event grammar Codex reads:

    response.created, response.in_progress,
    per output item: response.output_item.added, then
      message:   content_part.added, output_text.delta*, output_text.done, content_part.done
      reasoning: reasoning_summary_part.added, reasoning_summary_text.delta*,
                 reasoning_summary_text.done, reasoning_summary_part.done
      function_call: function_call_arguments.delta*, function_call_arguments.done
      web_search_call: (nothing between)
    response.output_item.done; and last response.completed (usage) |
    response.incomplete (max_output_tokens) | response.failed (error).

Sans-IO: `feed(events)` -> events, one translator per response. `ping` becomes an
SSE comment in `encode_responses_event`. Errors carry the `code` Codex acts on:
`context_length_exceeded` (Codex compacts), `rate_limit_exceeded`,
`server_is_overloaded`; Codex retries a failure with another code.

Reasoning packed into `encrypted_content` (compressed) is masked first, with the `mask`
the server hands in: the way out masks every byte, but cannot see a key compressed.
"""

import json
from collections.abc import Callable, Mapping
from typing import Any

from app.core.responses_request import ToolNames
from app.core.thinking_display import reasoning_signature

JSONObject = dict[str, Any]
PING_BYTES = b": ping\n\n"
OVERFLOW_WORDING = "prompt is too long"
ERROR_CODE_BY_TYPE: dict[str, str] = {
    "rate_limit_error": "rate_limit_exceeded",
    "overloaded_error": "server_is_overloaded",
    "invalid_request_error": "invalid_request_error",
    "authentication_error": "invalid_api_key",
    "permission_error": "permission_denied",
    "not_found_error": "model_not_found",
    "api_error": "server_error",
}
ITEM_PREFIX_BY_BLOCK: dict[str, str] = {
    "text": "msg",
    "thinking": "rs",
    "tool_use": "fc",
    "server_tool_use": "ws",
}


def error_code(error_type: str, message: str) -> str:
    """The Responses error code for an Anthropic error: overflow first (Codex compacts)."""
    if OVERFLOW_WORDING in message:
        return "context_length_exceeded"
    return ERROR_CODE_BY_TYPE.get(error_type, "server_error")


def openai_error_body(error_type: str, message: str) -> JSONObject:
    """An HTTP error body for /v1/responses, in OpenAI's shape."""
    return {
        "error": {
            "message": message,
            "type": error_type,
            "code": error_code(error_type, message),
            "param": None,
        }
    }


def encode_responses_event(event: Mapping[str, Any]) -> bytes:
    if event["type"] == "ping":
        return PING_BYTES
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n".encode("utf-8", "surrogatepass")


def response_usage(usage: Mapping[str, Any]) -> JSONObject:
    cached = usage.get("cache_read_input_tokens", 0)
    prompt = usage.get("input_tokens", 0) + cached
    output = usage.get("output_tokens", 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + output,
    }


class _Item:
    """One output item being built from one Anthropic content block."""

    def __init__(self, kind: str, item_id: str, block: Mapping[str, Any], names: ToolNames):
        self.kind, self.item_id, self.text = kind, item_id, ""
        self.call_id = str(block.get("id", ""))
        namespace, name = names.client_name(str(block.get("name", "")))
        self.name, self.namespace = name, namespace

    def skeleton(
        self, status: str, *, encrypted: bool = False, mask: Callable[[str], str] = str
    ) -> JSONObject:
        done = status == "completed"
        if self.kind == "text":
            content = [{"type": "output_text", "text": self.text, "annotations": []}]
            return {
                "type": "message",
                "id": self.item_id,
                "status": status,
                "role": "assistant",
                "content": content if done else [],
            }
        if self.kind == "thinking":
            summary = [{"type": "summary_text", "text": self.text}]
            item: JSONObject = {
                "type": "reasoning",
                "id": self.item_id,
                "summary": summary if done else [],
            }
            if done and encrypted:
                item["encrypted_content"] = reasoning_signature(mask(self.text))
            return item
        if self.kind == "server_tool_use":
            query = _query_of(self.text)
            action = {"type": "search", "query": query} if query else {"type": "search"}
            return {
                "type": "web_search_call",
                "id": self.item_id,
                "status": status,
                "action": action,
            }
        call: JSONObject = {
            "type": "function_call",
            "id": self.item_id,
            "status": status,
            "call_id": self.call_id,
            "name": self.name,
            "arguments": self.text if done else "",
        }
        if self.namespace is not None:
            call["namespace"] = self.namespace
        return call


def _query_of(arguments: str) -> str:
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return ""
    query = parsed.get("query") if isinstance(parsed, dict) else None
    return query if isinstance(query, str) else ""


class ResponsesStreamTranslator:
    """Anthropic events in, Responses events out (see the module doc)."""

    def __init__(
        self,
        *,
        response_id: str,
        created_at: int,
        tool_names: ToolNames,
        include_encrypted_reasoning: bool,
        mask: Callable[[str], str] = str,
    ) -> None:
        """`mask`: hides secrets in reasoning before it is packed (see the module doc)."""
        self.response_id = response_id
        self._mask = mask
        self.created_at = created_at
        self.tool_names = tool_names
        self.encrypted = include_encrypted_reasoning
        self.model = ""
        self.sequence = 0
        self.output: list[JSONObject] = []
        self.usage: JSONObject = {}
        self.stop_reason: str | None = None
        self.ended = False
        self._open: dict[int, _Item] = {}  # Anthropic block index -> item

    def _response(self, status: str) -> JSONObject:
        response: JSONObject = {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": self.model,
            "output": list(self.output),
        }
        if status != "in_progress":
            response["usage"] = response_usage(self.usage)
        return response

    def _event(self, kind: str, **fields: Any) -> JSONObject:
        self.sequence += 1
        return {"type": kind, "sequence_number": self.sequence, **fields}

    def feed(self, event: Mapping[str, Any]) -> list[JSONObject]:
        if self.ended:
            return []
        handler = _HANDLERS.get(event["type"])
        return handler(self, event) if handler is not None else []

    def _start(self, event: Mapping[str, Any]) -> list[JSONObject]:
        message = event.get("message") or {}
        self.model = str(message.get("model", ""))
        self.usage = dict(message.get("usage") or {})
        response = self._response("in_progress")
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=response),
        ]

    def _block_start(self, event: Mapping[str, Any]) -> list[JSONObject]:
        block = event["content_block"]
        prefix = ITEM_PREFIX_BY_BLOCK.get(block.get("type"))
        if prefix is None:
            return []  # web_search_tool_result and the like: for the model, not for Codex
        index = len(self.output) + len(self._open)
        item = _Item(block["type"], f"{prefix}_{self.response_id}_{index}", block, self.tool_names)
        self._open[event["index"]] = item
        added = self._event(
            "response.output_item.added", output_index=index, item=item.skeleton("in_progress")
        )
        if item.kind == "text":
            part = {"type": "output_text", "text": "", "annotations": []}
            return [added, self._part_event("response.content_part.added", item, part)]
        if item.kind == "thinking":
            part = {"type": "summary_text", "text": ""}
            return [added, self._summary_event("response.reasoning_summary_part.added", item, part)]
        return [added]

    def _output_index(self, item: _Item) -> int:
        return len(self.output) + list(self._open.values()).index(item)

    def _part_event(self, kind: str, item: _Item, part: JSONObject) -> JSONObject:
        return self._event(
            kind,
            item_id=item.item_id,
            output_index=self._output_index(item),
            content_index=0,
            part=part,
        )

    def _summary_event(self, kind: str, item: _Item, part: JSONObject) -> JSONObject:
        return self._event(
            kind,
            item_id=item.item_id,
            output_index=self._output_index(item),
            summary_index=0,
            part=part,
        )

    def _block_delta(self, event: Mapping[str, Any]) -> list[JSONObject]:
        item = self._open.get(event["index"])
        delta = event["delta"]
        piece = delta.get("text", delta.get("thinking", delta.get("partial_json")))
        if item is None or not isinstance(piece, str) or not piece:
            return []  # signature deltas, blocks Codex does not see
        item.text += piece
        where = {"item_id": item.item_id, "output_index": self._output_index(item)}
        if item.kind == "text":
            return [
                self._event(
                    "response.output_text.delta", **where, content_index=0, delta=piece, logprobs=[]
                )
            ]
        if item.kind == "thinking":
            return [
                self._event(
                    "response.reasoning_summary_text.delta", **where, summary_index=0, delta=piece
                )
            ]
        if item.kind == "tool_use":
            return [self._event("response.function_call_arguments.delta", **where, delta=piece)]
        return []

    def _block_stop(self, event: Mapping[str, Any]) -> list[JSONObject]:
        item = self._open.get(event["index"])
        if item is None:
            return []
        out: list[JSONObject] = []
        where = {"item_id": item.item_id, "output_index": self._output_index(item)}
        if item.kind == "text":
            part = {"type": "output_text", "text": item.text, "annotations": []}
            out += [
                self._event(
                    "response.output_text.done",
                    **where,
                    content_index=0,
                    text=item.text,
                    logprobs=[],
                ),
                self._part_event("response.content_part.done", item, part),
            ]
        elif item.kind == "thinking":
            part = {"type": "summary_text", "text": item.text}
            out += [
                self._event(
                    "response.reasoning_summary_text.done", **where, summary_index=0, text=item.text
                ),
                self._summary_event("response.reasoning_summary_part.done", item, part),
            ]
        elif item.kind == "tool_use":
            item.text = item.text or "{}"
            out.append(
                self._event("response.function_call_arguments.done", **where, arguments=item.text)
            )
        done = item.skeleton("completed", encrypted=self.encrypted, mask=self._mask)
        out.append(self._event("response.output_item.done", **where, item=done))
        del self._open[event["index"]]
        self.output.append(done)
        return out

    def _message_delta(self, event: Mapping[str, Any]) -> list[JSONObject]:
        self.stop_reason = (event.get("delta") or {}).get("stop_reason") or self.stop_reason
        self.usage.update(event.get("usage") or {})
        return []

    def _message_stop(self, event: Mapping[str, Any]) -> list[JSONObject]:
        self.ended = True
        if self.stop_reason == "max_tokens":
            response = self._response("incomplete")
            response["incomplete_details"] = {"reason": "max_output_tokens"}
            return [self._event("response.incomplete", response=response)]
        return [self._event("response.completed", response=self._response("completed"))]

    def _error(self, event: Mapping[str, Any]) -> list[JSONObject]:
        # A lone error (the Anthropic stream failed before message_start): a Responses
        # stream still opens with response.created, or its guard refuses the failure.
        out = self._start({}) if self.sequence == 0 else []
        self.ended = True
        error = event.get("error") or {}
        message = str(error.get("message", "error"))
        response = self._response("failed")
        response["error"] = {
            "code": error_code(str(error.get("type", "")), message),
            "message": message,
        }
        out.append(self._event("response.failed", response=response))
        return out

    def _ping(self, event: Mapping[str, Any]) -> list[JSONObject]:
        return [{"type": "ping"}]


_HANDLERS = {
    "message_start": ResponsesStreamTranslator._start,
    "content_block_start": ResponsesStreamTranslator._block_start,
    "content_block_delta": ResponsesStreamTranslator._block_delta,
    "content_block_stop": ResponsesStreamTranslator._block_stop,
    "message_delta": ResponsesStreamTranslator._message_delta,
    "message_stop": ResponsesStreamTranslator._message_stop,
    "error": ResponsesStreamTranslator._error,
    "ping": ResponsesStreamTranslator._ping,
}


def message_events(message: Mapping[str, Any]) -> list[JSONObject]:
    """A whole Anthropic message as the stream of events that would have made it."""
    start = {**message, "content": [], "stop_reason": None}
    events: list[JSONObject] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(message["content"]):
        kind = block.get("type")
        opened = {"type": kind, "id": block.get("id"), "name": block.get("name")}
        events.append({"type": "content_block_start", "index": index, "content_block": opened})
        if kind == "text":
            delta = {"type": "text_delta", "text": block["text"]}
        elif kind == "thinking":
            delta = {"type": "thinking_delta", "thinking": block.get("thinking", "")}
        else:
            arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
            delta = {"type": "input_json_delta", "partial_json": arguments}
        events.append({"type": "content_block_delta", "index": index, "delta": delta})
        events.append({"type": "content_block_stop", "index": index})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": message.get("stop_reason")},
            "usage": message.get("usage") or {},
        }
    )
    events.append({"type": "message_stop"})
    return events


def to_response_object(
    message: Mapping[str, Any],
    *,
    response_id: str,
    created_at: int,
    tool_names: ToolNames,
    include_encrypted_reasoning: bool,
) -> JSONObject:
    """A whole Anthropic message as one Responses `response` object (not streamed)."""
    translator = ResponsesStreamTranslator(
        response_id=response_id,
        created_at=created_at,
        tool_names=tool_names,
        include_encrypted_reasoning=include_encrypted_reasoning,
    )
    last: list[JSONObject] = []
    for event in message_events(message):
        last = translator.feed(event) or last
    response: JSONObject = last[-1]["response"]
    texts = [
        part["text"]
        for item in response["output"]
        if item["type"] == "message"
        for part in item["content"]
    ]
    response["output_text"] = "".join(texts)
    return response
