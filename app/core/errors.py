"""Errors the proxy can answer with, and the upstream error mapping table.

```
ProxyError                  .status, .error_type, .message, .retry_after
  ClientRequestError        client sent something we refuse      -> 400 invalid_request_error
  InboundAuthError          missing or wrong proxy key           -> 401 authentication_error
  UpstreamError             provider answered with an error      -> mapped status, retry-after kept
    UpstreamProtocolError   provider sent something unparseable  -> 502 api_error
  UpstreamUnavailable       connect failure / timeout, in words  -> 502/504 api_error
TranslatorStateError        a bug of ours (never rendered as anything but api_error)
```

Every `ProxyError` renders as Anthropic's `{"type":"error","error":{...}}` body
(`to_error_body`). Upstream bodies arrive as OpenAI `{"error":{...}}`, vLLM's
legacy `{"object":"error",...}`, NVIDIA problem details
`{"status","title","detail"}` or plain text: `upstream_error_from_response`
reads all of them.
"""

import json
import re
from typing import Any

from app.core.anthropic_types import ErrorBody

ERROR_TYPE_BY_STATUS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
    529: "overloaded_error",
}

# Statuses we answer with differently from the upstream's: Anthropic says
# "overloaded" with 529, and clients (the SDKs, Claude Code) retry on it.
CLIENT_STATUS_BY_UPSTREAM_STATUS: dict[int, int] = {503: 529}

# Upstream statuses worth retrying before the first byte goes to the client.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504, 529})


def error_type_for_status(status: int) -> str:
    if status in ERROR_TYPE_BY_STATUS:
        return ERROR_TYPE_BY_STATUS[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


class ProxyError(Exception):
    """An error with an Anthropic rendering. `message` is safe to show a user."""

    default_status = 500

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status if status is not None else self.default_status
        self.retry_after = retry_after

    @property
    def error_type(self) -> str:
        return error_type_for_status(self.status)

    def to_error_body(self) -> ErrorBody:
        return {"type": "error", "error": {"type": self.error_type, "message": self.message}}


class ClientRequestError(ProxyError):
    """The client's request is malformed; the message says which field and why."""

    default_status = 400


class InboundAuthError(ProxyError):
    default_status = 401


class UpstreamError(ProxyError):
    """The provider answered with an error status (or an error object mid-stream)."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        upstream_status: int | None = None,
        retry_after: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message, status=status, retry_after=retry_after)
        self.upstream_status = upstream_status if upstream_status is not None else status
        self.retryable = retryable


class UpstreamProtocolError(UpstreamError):
    """The provider sent something we cannot parse (garbled JSON, wrong content type)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=502)


class UpstreamUnavailable(ProxyError):
    """No usable answer: connection refused, DNS, TLS, timeouts. Said in words."""

    default_status = 502

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        # Only failures where the upstream surely did not start on the request
        # (e.g. connection refused) may be retried without the client knowing; the
        # client is told when to try again itself (the SDKs and Claude Code honour it).
        super().__init__(message, status=status, retry_after="1" if retryable else None)
        self.retryable = retryable


class TranslatorStateError(Exception):
    """The stream translator was driven out of order: a bug of ours, not the upstream's."""


# ------------------------------------------------------------------ upstream bodies

_MAX_MESSAGE_CHARS = 2000

# "This model's maximum context length is 8192 tokens. However, you requested
# 9000 tokens (8000 in the messages, 1000 in the completion)" (vLLM, OpenAI).
_CONTEXT_LIMIT_RE = re.compile(r"maximum context length is (\d+) tokens", re.IGNORECASE)
# How many tokens the prompt took, most specific wording first.
_PROMPT_TOKENS_RES = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"(\d+) in the messages",
        r"messages resulted in (\d+) tokens",
        r"prompt (?:contains|has) (?:at least )?(\d+) tokens",
        r"request has (\d+) input tokens",  # vLLM >= 0.6, NVIDIA's gateway
        r"requested (\d+) tokens",
    )
)
# Together / SGLang: "The input (250000 tokens) is longer than the model's
# context length (200000 tokens)."
_INPUT_LONGER_RE = re.compile(
    r"input \((\d+) tokens\) is longer than the model's context length \((\d+) tokens\)",
    re.IGNORECASE,
)
_ANTHROPIC_OVERFLOW_RE = re.compile(r"prompt is too long: \d+ tokens > \d+ maximum")
# vLLM / NIM when the prompt alone fills the context: "max_tokens must be at
# least 1, got -46771." The deficit is how far the prompt overshoots.
_NEGATIVE_MAX_TOKENS_RE = re.compile(r"max_tokens must be at least 1, got -(\d+)", re.IGNORECASE)
_DEGRADED_RE = re.compile(r"DEGRADED function cannot be invoked", re.IGNORECASE)


def extract_upstream_message(body: bytes | str) -> str:
    """The human message inside any upstream error body, trimmed; never empty."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = text.strip()
    try:
        parsed: Any = json.loads(text) if text else None
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        parsed = None
    message = _message_from_json(parsed) if parsed is not None else None
    if message is None:
        message = text or "(empty body)"
    # NIM appends " None" to some 400 messages (PROTOCOL.md, quirks).
    if message.endswith(" None"):
        message = message[: -len(" None")]
    if not message.strip():  # an empty message field: the raw body says more than nothing
        message = text or "(empty body)"
    return message[:_MAX_MESSAGE_CHARS]


def _message_from_json(parsed: Any) -> str | None:
    if isinstance(parsed, str):
        return parsed
    if not isinstance(parsed, dict):
        return None
    error = parsed.get("error")
    if isinstance(error, dict):
        message = error.get("message")
        metadata = error.get("metadata")
        raw = metadata.get("raw") if isinstance(metadata, dict) else None
        if isinstance(message, str) and isinstance(raw, str) and raw and raw not in message:
            return f"{message}: {raw}"  # OpenRouter hides the useful part in metadata.raw
        if isinstance(message, str):
            return message
    if isinstance(error, str):
        return error
    errors = parsed.get("errors")  # Cloudflare's API: {"success": false, "errors": [...]}
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0].get("message")
        if isinstance(first, str) and first:
            return first
    if isinstance(parsed.get("message"), str):  # vLLM legacy {"object":"error",...}
        return str(parsed["message"])
    title, detail = parsed.get("title"), parsed.get("detail")  # RFC 7807 problem details
    if isinstance(detail, str) and detail:
        return f"{title}: {detail}" if isinstance(title, str) and title else detail
    if isinstance(title, str):
        return title
    return None


def context_overflow_message(
    upstream_message: str, *, context_window: int | None, prompt_tokens: int | None
) -> str | None:
    """Claude Code's wording for a context overflow, or None when it is not one.

    `prompt is too long: N tokens > M maximum` is what makes Claude Code compact
    its history, so every provider's wording of it is rewritten to this.
    """
    already = _ANTHROPIC_OVERFLOW_RE.search(upstream_message)
    if already:  # an Anthropic-compatible upstream said it our way already
        return already.group(0)
    if max_tokens_limit(upstream_message) is not None:
        return None  # the prompt fits; only max_tokens is too large (retried clamped)
    longer = _INPUT_LONGER_RE.search(upstream_message)
    if longer:
        return f"prompt is too long: {longer.group(1)} tokens > {longer.group(2)} maximum"
    limit_match = _CONTEXT_LIMIT_RE.search(upstream_message)
    if limit_match:
        maximum = int(limit_match.group(1))
        found = (pattern.search(upstream_message) for pattern in _PROMPT_TOKENS_RES)
        match = next((m for m in found if m), None)
        used = int(match.group(1)) if match else (prompt_tokens or maximum + 1)
        return f"prompt is too long: {max(used, maximum + 1)} tokens > {maximum} maximum"
    negative = _NEGATIVE_MAX_TOKENS_RE.search(upstream_message)
    if negative:
        deficit = int(negative.group(1))
        if context_window is not None:
            used, maximum = context_window + deficit, context_window
        elif prompt_tokens is not None:
            used = max(prompt_tokens, deficit + 1)
            maximum = used - deficit
        else:  # nothing known but the deficit: still the wording Claude Code acts on
            used, maximum = deficit + 1, 1
        return f"prompt is too long: {used} tokens > {maximum} maximum"
    return None


# Wordings of "max_tokens is larger than this model allows", with the allowed
# maximum: OpenAI ("supports at most 16384 completion tokens"), NIM / TGI
# ("must be less than or equal to 8192", "exceeds the limit 4096"), vLLM.
_MAX_TOKENS_AT_MOST_RE = re.compile(
    r"(?:at most|less than or equal to|exceeds? the (?:limit|maximum)(?: of)?|"
    r"maximum (?:allowed )?(?:value )?(?:is|of)|must be <=)\s*(\d+)",
    re.IGNORECASE,
)
# vLLM: "maximum context length is 32768 tokens and your request has 1200 input
# tokens" / "However, you requested 33200 tokens (1200 in the messages, 32000 in
# the completion)": the prompt fits, the completion does not.
_CONTEXT_AND_PROMPT_RE = re.compile(
    r"maximum context length is (\d+) tokens.*?(?:request has (\d+) input tokens|"
    r"\((\d+) in the messages, (\d+) in the completion\))",
    re.IGNORECASE | re.DOTALL,
)


def max_tokens_limit(upstream_message: str) -> int | None:
    """The largest `max_tokens` an upstream 400 says it accepts, if it says one.

    Claude Code asks for 32000 output tokens, above many models' limit; the
    server clamps to this number and retries once.
    """
    context = _CONTEXT_AND_PROMPT_RE.search(upstream_message)
    if context:
        maximum = int(context.group(1))
        prompt = int(context.group(2) or context.group(3))
        return maximum - prompt if prompt < maximum else None
    if "max_tokens" not in upstream_message and "completion tokens" not in upstream_message:
        return None
    at_most = _MAX_TOKENS_AT_MOST_RE.search(upstream_message)
    return int(at_most.group(1)) if at_most and int(at_most.group(1)) > 0 else None


def upstream_error_from_response(
    status: int,
    body: bytes | str,
    *,
    retry_after: str | None = None,
    context_window: int | None = None,
    prompt_tokens: int | None = None,
) -> UpstreamError:
    """Map an upstream error response to the error we answer the client with."""
    message = extract_upstream_message(body)
    overflow = context_overflow_message(
        message, context_window=context_window, prompt_tokens=prompt_tokens
    )
    if overflow is not None:
        return UpstreamError(overflow, status=400, upstream_status=status)
    if _DEGRADED_RE.search(message):
        # NIM says 400 but means "this function is overloaded right now": retryable.
        return UpstreamError(
            f"upstream model is temporarily unavailable (degraded): {message}",
            status=529,
            upstream_status=status,
            retry_after=retry_after,
            retryable=True,
        )
    client_status = CLIENT_STATUS_BY_UPSTREAM_STATUS.get(status, status)
    if not 400 <= client_status <= 599:
        client_status = 502
    prefix = f"upstream returned {status}"
    if status == 401:
        prefix = "upstream rejected the API key (401); check the provider key"
    elif status == 403:
        prefix = "upstream refused access (403); the key may not be entitled to this model"
    elif status == 404:
        prefix = "upstream has no such model or route (404)"
    elif status == 429:
        prefix = "upstream rate limit reached (429)"
    return UpstreamError(
        f"{prefix}: {message}",
        status=client_status,
        upstream_status=status,
        retry_after=retry_after,
        retryable=status in RETRYABLE_STATUSES,
    )


def upstream_error_from_stream_payload(payload: dict[str, Any]) -> UpstreamError:
    """An `{"error": {...}}` object (or `event: error`) received mid-stream."""
    error = payload.get("error", payload)
    status = 502
    if isinstance(error, dict):
        for key in ("status_code", "code", "status"):
            value = error.get(key)
            if isinstance(value, int) and 400 <= value <= 599:
                status = value
                break
    message = _message_from_json(payload) or json.dumps(payload)[:_MAX_MESSAGE_CHARS]
    overflow = context_overflow_message(message, context_window=None, prompt_tokens=None)
    if overflow is not None:
        return UpstreamError(overflow, status=400, upstream_status=status)
    client_status = CLIENT_STATUS_BY_UPSTREAM_STATUS.get(status, status)
    return UpstreamError(
        f"upstream error mid-stream: {message}", status=client_status, upstream_status=status
    )
