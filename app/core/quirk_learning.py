"""Learn from an upstream 400/422 which part of our request the model refused.

Rules:
- Only a part we actually sent can be blamed: the answer is checked against the
  ChatRequest that drew it, so an error naming `prompt_cache_key` or
  `presence_penalty` (never sent by us) blames nothing.
- Wordings are data (`*_WORDINGS`, `REJECTION_BY_FIELD`), taken from real
  answers of vLLM, NVIDIA's hosted NIM, Ollama, OpenAI and others; the tests
  quote them. When an answer names several refused parts, the first named wins:
  the caller retries once per rejection.
- `learn` turns a rejection into the quirk that avoids it, and nothing else.
  The server keeps what was learned per (provider, model) for the session.
"""

import dataclasses
import enum
import re
from collections.abc import Mapping
from typing import Any

from app.core.capabilities import ModelQuirks


class Rejection(enum.StrEnum):
    """A part of the request a model refused; the value names it in log lines."""

    TOP_K = "top_k"
    CHAT_TEMPLATE_KWARGS = "chat_template_kwargs"
    REASONING_EFFORT = "reasoning_effort"
    TOOLS = "tools"
    IMAGES = "images"
    PARALLEL_TOOL_CALLS = "parallel_tool_calls"
    STREAM_OPTIONS = "stream_options"
    NULL_CONTENT = "null content"  # `"content": null` beside tool calls
    REQUIRED_TOOL_CHOICE = "tool_choice required"


LEARNED_QUIRK_BY_REJECTION: dict[Rejection, str] = {
    Rejection.TOP_K: "accepts_top_k",
    Rejection.CHAT_TEMPLATE_KWARGS: "accepts_chat_template_kwargs",
    Rejection.REASONING_EFFORT: "accepts_reasoning_effort",
    Rejection.TOOLS: "supports_tools",
    Rejection.IMAGES: "supports_images",
    Rejection.PARALLEL_TOOL_CALLS: "accepts_parallel_tool_calls",
    Rejection.STREAM_OPTIONS: "accepts_stream_options",
    Rejection.NULL_CONTENT: "accepts_null_content",
    Rejection.REQUIRED_TOOL_CHOICE: "accepts_required_tool_choice",
}

# A request field (or a name servers use for it) -> what refusing it means.
REJECTION_BY_FIELD: dict[str, Rejection] = {
    "top_k": Rejection.TOP_K,
    "chat_template_kwargs": Rejection.CHAT_TEMPLATE_KWARGS,
    "chat_template": Rejection.CHAT_TEMPLATE_KWARGS,  # vLLM: "chat_template is not supported ..."
    "enable_thinking": Rejection.CHAT_TEMPLATE_KWARGS,
    "reasoning_effort": Rejection.REASONING_EFFORT,
    "tools": Rejection.TOOLS,
    "tool_choice": Rejection.TOOLS,
    "parallel_tool_calls": Rejection.PARALLEL_TOOL_CALLS,
    "stream_options": Rejection.STREAM_OPTIONS,
    "include_usage": Rejection.STREAM_OPTIONS,
}

# Where a rejection's part sits in the ChatRequest we sent (images: see _sent).
SENT_KEYS_BY_REJECTION: dict[Rejection, tuple[str, ...]] = {
    Rejection.TOP_K: ("top_k",),
    Rejection.CHAT_TEMPLATE_KWARGS: ("chat_template_kwargs",),
    Rejection.REASONING_EFFORT: ("reasoning_effort",),
    Rejection.TOOLS: ("tools", "tool_choice"),
    Rejection.PARALLEL_TOOL_CALLS: ("parallel_tool_calls",),
    Rejection.STREAM_OPTIONS: ("stream_options",),
    Rejection.IMAGES: (),
    Rejection.NULL_CONTENT: (),
    Rejection.REQUIRED_TOOL_CHOICE: (),
}

_Q = r"""\\?[`'"]?"""  # an optional quote around a name, maybe JSON-escaped
_NAME = r"([a-z_]+)"
_NAMES = r"((?:\\?[`'\"]?[a-z_]+\\?[`'\"]?(?:\s*,\s*|\s+and\s+)?)+)"

# Wordings whose group 1 holds the refused field name(s).
FIELD_WORDINGS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        # OpenAI (and Azure, Copilot): "Unrecognized request argument supplied: top_k"
        r"unrecognized request arguments? supplied:\s*" + _NAMES,
        # OpenAI: "Unsupported parameter: 'parallel_tool_calls' is not supported with this model."
        # NIM: "Validation: Unsupported parameter(s): `prompt_cache_key`";
        # Qwen: "Unsupported param: tools"
        r"unsupported (?:parameter|param|argument|field)s?(?:\(s\))?:\s*" + _NAMES,
        # OpenAI: "Unknown parameter: 'reasoning'."; serde servers: "unknown field `top_k`"
        r"unknown (?:parameter|field|argument)s?:?\s*" + _NAMES,
        # Gemini's OpenAI layer: "Invalid JSON payload received. Unknown name \"enable_thinking\""
        r"unknown name\s*" + _Q + _NAME,
        # vLLM / pydantic v2 error list: {'type': 'extra_forbidden', 'loc': ('body', 'top_k'), ...}
        rf"extra_forbidden{_Q},\s*{_Q}loc{_Q}:\s*[(\[]\s*{_Q}body{_Q},\s*{_Q}{_NAME}",
        # NIM problem details (pydantic v1 text): "body -> top_k\n  Extra inputs are not permitted"
        r"body\s*->\s*" + _NAME + r"\s+extra (?:inputs are|fields) not permitted",
        # pydantic v2 str(): "1 validation error for ChatCompletionRequest\ntop_k\n  Extra ..."
        r"(?:^|\n)\s*" + _NAME + r"\s*\n\s*extra inputs are not permitted",
        # Fireworks: "Extra inputs are not permitted, field: 'stream_options'"
        r"extra inputs are not permitted,?\s*field:\s*" + _Q + _NAME,
        # vLLM (Mistral tokenizers): "chat_template is not supported for Mistral tokenizers."
        r"(?<![a-z_])" + _Q + _NAME + _Q + r"\s+(?:is|are) not (?:supported|allowed|permitted)",
    )
)

# Wordings that blame a capability without naming a field.
TOOLS_WORDINGS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"does not support tools",  # Ollama: "llama3 does not support tools"
        r"tool choice requires --enable-auto-tool-choice",  # vLLM without a tool parser
        r"tool (?:use|calling|calls) (?:is |are )?not supported",
        r"(?:function|tool) calling is not (?:supported|enabled)",
        r"does not support (?:function|tool) calling",
        r"no endpoints found that support tool use",  # OpenRouter (a 404)
    )
)
IMAGES_WORDINGS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"is not a multimodal model",  # vLLM: "GLM-5.2 is not a multimodal model"
        r"at most 0 image\(s\) may be provided",  # vLLM: image limit of zero
        r"do(?:es)? not support image(?: input)?s?",  # Ollama cloud, Volcengine
        r"image input is not supported|images are not supported",
        r"no endpoints found that support image input",  # OpenRouter (a 404)
        r"allowed values: \[\s*'text'\s*\]",  # text-only servers on a content part type
    )
)
# A message's content must be a string: llama-cpp-python 0.3.36's 500 lists pydantic
# errors, one of them "('body', 'messages', 1, 'ChatCompletionRequestAssistantMessage',
# 'content'), 'msg': 'Input should be a valid string', 'input': None".
NULL_CONTENT_WORDINGS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"assistantmessage\W+content\W+msg\W+input should be a valid string\W+input\W+none",
        r"content\W*\s+input should be a valid string",
        r"content[^\n]{0,80}\n[^\n]*input_value=none\b",
        r"content must be a string",
    )
)
# "required" refused: vLLM before 0.8 ("... named tools, \"none\" or \"auto\" ..."), others.
REQUIRED_TOOL_CHOICE_WORDINGS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"tool_choice\W+(?:\w+\W+){0,3}required\W+(?:is |are )?not (?:supported|allowed)",
        r"only named tools,? \\?\"?none\\?\"? (?:or|and) \\?\"?auto\\?\"?",
    )
)
CAPABILITY_WORDINGS: tuple[tuple[Rejection, tuple[re.Pattern[str], ...]], ...] = (
    (Rejection.NULL_CONTENT, NULL_CONTENT_WORDINGS),
    (Rejection.REQUIRED_TOOL_CHOICE, REQUIRED_TOOL_CHOICE_WORDINGS),
    (Rejection.TOOLS, TOOLS_WORDINGS),
    (Rejection.IMAGES, IMAGES_WORDINGS),
)

REJECTION_STATUSES = frozenset({400, 422})
# llama-cpp-python answers what its request model refuses with a 500: only these
# rejections, whose wordings are specific, are read from one.
REJECTIONS_READ_FROM_500 = frozenset({Rejection.NULL_CONTENT, Rejection.REQUIRED_TOOL_CHOICE})
# llama-cpp-python's answer to tool_choice "required": an AssertionError, which has
# no message (`{"error": {"message": "", "type": "internal_server_error"}}`).
_EMPTY_INTERNAL_ERROR = re.compile(r'"message":\s*"",\s*"type":\s*"internal_server_error"')
# OpenRouter answers 404 when no provider of the model can serve the request's parts.
_NO_ENDPOINTS = re.compile(r"no endpoints found that support", re.IGNORECASE)
_FIELD_NAME = re.compile(r"[a-z_]+", re.IGNORECASE)


def rejection_from_error(status: int, message: str, sent: Mapping[str, Any]) -> Rejection | None:
    """The part of `sent` that the upstream's error `message` refuses, if it names one."""
    server_error = status == 500
    if (
        status not in REJECTION_STATUSES
        and not server_error
        and not (status == 404 and _NO_ENDPOINTS.search(message))
    ):
        return None
    if server_error and _EMPTY_INTERNAL_ERROR.search(message):
        required = Rejection.REQUIRED_TOOL_CHOICE
        return required if _sent(required, sent) else None
    found: list[tuple[int, Rejection]] = []
    for pattern in FIELD_WORDINGS:
        for match in pattern.finditer(message):
            for name in _FIELD_NAME.finditer(match.group(1)):
                rejection = REJECTION_BY_FIELD.get(name.group().lower())
                if rejection is not None:
                    found.append((match.start(1) + name.start(), rejection))
    for rejection, wordings in CAPABILITY_WORDINGS:
        for pattern in wordings:
            hit = pattern.search(message)
            if hit is not None:
                found.append((hit.start(), rejection))
    for _, rejection in sorted(found):
        if server_error and rejection not in REJECTIONS_READ_FROM_500:
            continue
        if _sent(rejection, sent):
            return rejection
    return None


def learn(quirks: ModelQuirks, rejection: Rejection) -> ModelQuirks:
    """The quirks that avoid `rejection` next time."""
    change: dict[str, Any] = {LEARNED_QUIRK_BY_REJECTION[rejection]: False}
    return dataclasses.replace(quirks, **change)


def already_learned(quirks: ModelQuirks, rejection: Rejection) -> bool:
    """True when `quirks` already avoid `rejection` (a retry would change nothing)."""
    return getattr(quirks, LEARNED_QUIRK_BY_REJECTION[rejection]) is False


def _sent(rejection: Rejection, sent: Mapping[str, Any]) -> bool:
    if rejection is Rejection.IMAGES:
        return any(_has_image(message) for message in sent.get("messages") or ())
    if rejection is Rejection.NULL_CONTENT:
        return any(
            isinstance(message, Mapping) and "content" in message and message["content"] is None
            for message in sent.get("messages") or ()
        )
    if rejection is Rejection.REQUIRED_TOOL_CHOICE:
        return sent.get("tool_choice") == "required"
    return any(sent.get(key) is not None for key in SENT_KEYS_BY_REJECTION[rejection])


def _has_image(message: object) -> bool:
    if not isinstance(message, Mapping):
        return False
    content = message.get("content")
    if not isinstance(content, list):
        return False
    return any(isinstance(part, Mapping) and part.get("type") == "image_url" for part in content)
