"""OpenAI Chat Completions response (non-streamed) -> Anthropic Message.

Invariants of `to_anthropic_message` (PROTOCOL.md, "Response: OpenAI -> Anthropic"):

- Content order is thinking, text, tool_use...; at most one thinking and one
  text block; no empty or whitespace-only text block.
- Every tool_use has a non-empty id and a dict `input`, whatever the upstream sent.
- `stop_reason` is always one of Anthropic's; `stop_reason == "tool_use"` whenever
  tool_use blocks are present (except a `max_tokens` or content-filter cut).
- Upstream oddities are absorbed and recorded in `repairs`; only a body with no
  choices, or an `{"error": ...}` body, raises.

`STOP_REASON_BY_FINISH_REASON`, `anthropic_stop_reason` and `usage_from_openai`
are shared with the stream translator: keep them stable.

The body is parsed JSON: its objects are checked as `dict` (an ABC check costs ten times more).
"""

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from app.core.anthropic_types import ContentBlock, Message, Usage
from app.core.errors import UpstreamProtocolError, upstream_error_from_stream_payload
from app.core.thinking_display import ThinkingDisplay, reasoning_signature
from app.core.tool_markup import MarkupToolCall, extract_tool_markup, infer_tool_name

STOP_REASON_BY_FINISH_REASON: dict[str, str] = {
    "stop": "end_turn",
    "eos_token": "end_turn",  # TGI before it adopted OpenAI's names
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# `<think>` at the very start of content (R1-style models on servers without a
# reasoning parser); an unclosed one means the answer was cut while thinking.
_THINK_RE = re.compile(r"\A\s*<think>(.*?)(?:</think>|\Z)", re.DOTALL)
_JSON_DECODER = json.JSONDecoder()


def _int(value: object) -> int:
    """A token count: a non-negative int, 0 for anything else.

    `json.loads` reads `NaN`, `Infinity` and `1e999` as floats that `int()` refuses.
    """
    # `type(value) is int` first: what upstreams send, in one check (a bool is not of this type).
    if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)):
        return value if value > 0 else 0
    return max(int(value), 0) if isinstance(value, float) and math.isfinite(value) else 0


def usage_from_openai(usage: object) -> Usage:
    """OpenAI usage -> Anthropic usage; cache hits leave `input_tokens` as Anthropic counts."""
    if not isinstance(usage, dict):  # absent, null, or not even an object
        usage = {}
    prompt = _int(usage.get("prompt_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    if not cached:
        cached = _int(usage.get("prompt_cache_hit_tokens"))  # DeepSeek
    cached = min(cached, prompt)
    return {
        "input_tokens": prompt - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": _int(usage.get("completion_tokens")),
    }


def anthropic_stop_reason(
    finish_reason: object,
    *,
    matched_stop: object = None,
    has_tool_use: bool = False,
    repairs: list[str] | None = None,
) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) for an OpenAI finish_reason.

    `matched_stop` is vLLM's `stop_reason` or SGLang's `matched_stop`: a string
    when a stop string ended the output (an int is a stop token id: not ours).
    """
    # A tool call outranks a matched stop string: the client must still run the tool
    # (the stream translator decides the same way).
    if finish_reason == "stop" and isinstance(matched_stop, str) and matched_stop:
        return ("tool_use", None) if has_tool_use else ("stop_sequence", matched_stop)
    stop_reason = (
        STOP_REASON_BY_FINISH_REASON.get(finish_reason) if isinstance(finish_reason, str) else None
    )
    if stop_reason is None:
        if repairs is not None:
            repairs.append(f"finish_reason {finish_reason!r} not understood; ended the turn")
        stop_reason = "end_turn"
    # Some servers say "stop" after a tool call; the client must still run the tool.
    if has_tool_use and stop_reason == "end_turn":
        stop_reason = "tool_use"
    return stop_reason, None


def matched_stop_sequence(text: str, stop_sequences: Sequence[str]) -> str | None:
    """The stop sequence `text` ends with (the longest), for servers that keep it in the
    output but do not say which matched. None when none does: a server that strips
    it (llama.cpp, OpenAI) cannot be told from a natural end of turn."""
    found = [stop for stop in stop_sequences if stop and text.endswith(stop)]
    return max(found, key=len) if found else None


def parse_tool_arguments(arguments: object, repairs: list[str]) -> dict[str, Any]:
    """Tool-call arguments as a dict: parsed, lightly repaired, or `{}` with a repair note."""
    if isinstance(arguments, dict):
        return arguments  # some providers send an object, not a JSON string
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    if not isinstance(arguments, str):
        repairs.append(f"tool arguments of type {type(arguments).__name__} replaced by {{}}")
        return {}
    text = arguments.strip()
    candidates = [text]
    missing = text.count("{") - text.count("}")
    if missing > 0:  # cut short (max_tokens, or a server that drops the last chunk)
        candidates.append(text + "}" * missing)
    for candidate in candidates:
        try:
            # raw_decode tolerates trailing garbage (`{"a":1}}`, `{...}<|call|>`).
            value, end = _JSON_DECODER.raw_decode(candidate)
        except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
            continue
        if isinstance(value, str):  # double-encoded
            return parse_tool_arguments(value, repairs)
        if isinstance(value, dict):
            if end != len(candidate) or candidate is not text:
                repairs.append("tool arguments were not valid JSON; repaired")
            return value
    repairs.append(f"tool arguments are not a JSON object; replaced by {{}}: {text[:200]!r}")
    return {}


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # a few providers answer with content parts
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _reasoning_of(message: Mapping[str, Any]) -> str:
    for key in ("reasoning_content", "reasoning"):  # DeepSeek/vLLM; Groq/Ollama/OpenRouter
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    details = message.get("reasoning_details")  # OpenRouter
    if not isinstance(details, list):  # no reasoning (most answers)
        return ""
    texts: list[str] = []
    for detail in details:
        value = detail.get("text") or detail.get("summary") if isinstance(detail, dict) else None
        if isinstance(value, str):
            texts.append(value)
    return "".join(texts)


def _tool_calls_of(message: Mapping[str, Any]) -> list[Any]:
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        return calls
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        return [{"function": legacy}]
    return []


def to_anthropic_message(
    resp: Mapping[str, Any],
    *,
    model: str,
    message_id: str,
    tool_id_prefix: str = "toolu_",
    signature: str = "nimbridge",
    repairs: list[str] | None = None,
    tools: Sequence[Mapping[str, Any]] = (),
    thinking_display: ThinkingDisplay = "summarized",
    stop_sequences: Sequence[str] = (),
) -> Message:
    """Translate a parsed `chat.completion` body; `model` is the name the client sent.

    `tools` are the request's Anthropic tool definitions: when some were offered,
    tool calls a model leaked as markup into `content` become tool_use blocks.
    `thinking_display` "omitted": the thinking block's text is empty and its
    signature carries the reasoning (`app/core/thinking_display.py`).
    `stop_sequences` are the client's: where the upstream does not name the one that
    matched, a text ending with one names it (`matched_stop_sequence`).
    """
    if repairs is None:
        repairs = []
    if resp.get("error") is not None:
        raise upstream_error_from_stream_payload(dict(resp))
    choices = resp.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamProtocolError("upstream response has no choices")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        repairs.append("choice has no message")
        message = {}

    text = _text_of(message.get("content"))
    thinking = _reasoning_of(message)
    if not thinking and "<think>" in text:  # the substring test spares most texts the regex
        match = _THINK_RE.match(text)
        if match:
            thinking, text = match.group(1), text[match.end() :]
    content: list[ContentBlock] = []
    if thinking:
        if thinking_display == "omitted":  # the reasoning travels in the signature only
            signature, thinking = reasoning_signature(thinking), ""
        content.append({"type": "thinking", "thinking": thinking, "signature": signature})
        text = text.lstrip("\n")  # templates put a blank line after the reasoning
    markup_calls: list[MarkupToolCall] = []
    if tools and "<" in text:
        text, markup_calls = extract_tool_markup(text)
        if markup_calls:
            repairs.append("tool call markup in content")
    if not text.strip() and isinstance(message.get("refusal"), str):
        text = message["refusal"]
    if text.strip():
        content.append({"type": "text", "text": text})

    for position, call in enumerate(_tool_calls_of(message)):
        if not isinstance(call, dict):
            repairs.append(f"tool call {position} is not an object; dropped")
            continue
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        name = function.get("name")
        if not isinstance(name, str) or not name:
            repairs.append(f"tool call {position} has no name")
            name = ""
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            call_id = f"{tool_id_prefix}{message_id}_{position}"
        content.append(
            {
                "type": "tool_use",
                "id": call_id,
                "name": name,
                "input": parse_tool_arguments(function.get("arguments"), repairs),
            }
        )

    for position, markup in enumerate(markup_calls):
        name = markup.name or infer_tool_name(markup.arguments, tools)
        if not name:
            repairs.append("tool call markup without a recognisable tool kept as text")
            content.append({"type": "text", "text": f"(unnamed tool call: {markup.arguments})"})
            continue
        content.append(
            {
                "type": "tool_use",
                "id": f"{tool_id_prefix}{message_id}_m{position}",
                "name": name,
                "input": parse_tool_arguments(markup.arguments, repairs),
            }
        )

    matched = choice.get("stop_reason") or choice.get("matched_stop")
    if not isinstance(matched, str) or not matched:
        matched = matched_stop_sequence(text, stop_sequences)
    stop_reason, stop_sequence = anthropic_stop_reason(
        choice.get("finish_reason"),
        matched_stop=matched,
        has_tool_use=any(block["type"] == "tool_use" for block in content),
        repairs=repairs,
    )
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage_from_openai(resp.get("usage")),
    }
