"""Error tree, status table and the reading of upstream error bodies."""

import json
from pathlib import Path
from typing import Any

import pytest

from app.core.errors import (
    ERROR_TYPE_BY_STATUS,
    ClientRequestError,
    InboundAuthError,
    ProxyError,
    TranslatorStateError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamUnavailable,
    context_overflow_message,
    error_type_for_status,
    extract_upstream_message,
    max_tokens_limit,
    upstream_error_from_response,
    upstream_error_from_stream_payload,
)

FIXTURES = Path(__file__).parents[2] / "fixtures"


def body(name: str) -> bytes:
    return (FIXTURES / "upstream_bodies" / name).read_bytes()


def stream_error_payload(name: str, marker: str) -> dict[str, Any]:
    """The first `data:` payload of a recorded stream that carries `marker`."""
    for line in (FIXTURES / "openai_stream" / name).read_text(encoding="utf-8").splitlines():
        if line.startswith("data:") and marker in line:
            payload: dict[str, Any] = json.loads(line.removeprefix("data:"))
            return payload
    raise AssertionError(f"{marker!r} not in {name}")


# ------------------------------------------------------------------ status table

# PROTOCOL.md, "Errors": status -> Anthropic error type.
PROTOCOL_ERROR_TABLE = {
    400: "invalid_request_error",
    422: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    504: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


@pytest.mark.parametrize(("status", "error_type"), PROTOCOL_ERROR_TABLE.items())
def test_error_type_by_status_matches_protocol(status: int, error_type: str) -> None:
    assert ERROR_TYPE_BY_STATUS[status] == error_type
    assert error_type_for_status(status) == error_type


def test_error_type_table_has_nothing_else() -> None:
    assert ERROR_TYPE_BY_STATUS == PROTOCOL_ERROR_TABLE


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (418, "invalid_request_error"),
        (499, "invalid_request_error"),
        (501, "api_error"),
        (302, "api_error"),
        (200, "api_error"),
    ],
)
def test_error_type_for_unlisted_status(status: int, error_type: str) -> None:
    assert error_type_for_status(status) == error_type


# ------------------------------------------------------------------ the tree


@pytest.mark.parametrize(
    ("error", "status", "error_type"),
    [
        pytest.param(ProxyError("x"), 500, "api_error", id="proxy-default"),
        pytest.param(ProxyError("x", status=413), 413, "request_too_large", id="proxy-status"),
        pytest.param(ClientRequestError("bad field"), 400, "invalid_request_error", id="client"),
        pytest.param(InboundAuthError("no key"), 401, "authentication_error", id="auth"),
        pytest.param(UpstreamError("x", status=429), 429, "rate_limit_error", id="upstream"),
        pytest.param(UpstreamProtocolError("garbled"), 502, "api_error", id="protocol"),
        pytest.param(UpstreamUnavailable("refused"), 502, "api_error", id="unavailable"),
        pytest.param(UpstreamUnavailable("slow", status=504), 504, "api_error", id="timeout"),
    ],
)
def test_error_tree_renders_anthropic_body(error: ProxyError, status: int, error_type: str) -> None:
    assert error.status == status
    assert error.error_type == error_type
    assert error.to_error_body() == {
        "type": "error",
        "error": {"type": error_type, "message": error.message},
    }
    assert str(error) == error.message


def test_error_tree_shape() -> None:
    assert issubclass(UpstreamProtocolError, UpstreamError)
    assert issubclass(UpstreamError, ProxyError)
    assert issubclass(UpstreamUnavailable, ProxyError)
    assert not issubclass(TranslatorStateError, ProxyError)
    upstream = UpstreamError("x", status=529, upstream_status=503, retry_after="7")
    assert (upstream.upstream_status, upstream.retry_after, upstream.retryable) == (503, "7", False)
    assert UpstreamError("x", status=400).upstream_status == 400
    assert UpstreamUnavailable("refused", retryable=True).retryable is True
    assert UpstreamUnavailable("reset").retryable is False
    # A refused connection tells the client when to retry (README: "with retry-after").
    assert UpstreamUnavailable("refused", retryable=True).retry_after == "1"
    assert UpstreamUnavailable("reset").retry_after is None


# ------------------------------------------------------------------ reading upstream bodies

MESSAGE_CASES = [
    pytest.param(
        b'{"error":{"message":"model not found","type":"invalid_request_error","code":null}}',
        "model not found",
        id="openai-shaped",
    ),
    pytest.param(
        '{"error":{"message":"tools are not supported None","type":"BadRequestError"}}',
        "tools are not supported",
        id="nim-none-suffix",
    ),
    pytest.param(body("nim_429_too-many-requests.json"), "Too Many Requests", id="nim-429-title"),
    pytest.param(
        body("nim_404_function-not-found-for-account.json"),
        "Not Found: Function '23d4f03a-b8a6-4adb-a183-7daa083a09cc': Not found for account "
        "'T0ktMu-NCoEGEm9N8eE19EvsHqn9CiQAk-DN7TF22WM'",
        id="nim-404-title-and-detail",
    ),
    pytest.param(
        '{"status":400,"detail":"no title here"}', "no title here", id="problem-detail-only"
    ),
    pytest.param(
        body("vllm_400_max-tokens-negative_legacy-object-error.json"),
        "max_tokens must be at least 1, got -45.",
        id="vllm-legacy-object",
    ),
    pytest.param(
        body("openrouter_429_provider-returned-error.json"),
        "Provider returned error: google/gemini-2.0-flash-exp:free is temporarily rate-limited "
        "upstream. Please retry shortly, or add your own key to accumulate your rate limits: "
        "https://openrouter.ai/settings/integrations",
        id="openrouter-metadata-raw",
    ),
    pytest.param(
        '{"error":{"message":"busy: try later","metadata":{"raw":"try later"}}}',
        "busy: try later",
        id="metadata-raw-already-in-message",
    ),
    pytest.param('{"error":{"message":"m","metadata":{"raw":""}}}', "m", id="metadata-raw-empty"),
    pytest.param('{"error":"plain error string"}', "plain error string", id="error-is-a-string"),
    pytest.param('{"error":{"code":500}}', '{"error":{"code":500}}', id="error-without-message"),
    pytest.param(
        '{"success":false,"errors":[{"code":5006,"message":"required properties at \'/\' '
        'are \'prompt\'"}],"result":null}',
        "required properties at '/' are 'prompt'",
        id="cloudflare-errors-list",
    ),
    pytest.param(
        '{"success":false,"errors":[{"code":7000}]}',
        '{"success":false,"errors":[{"code":7000}]}',
        id="cloudflare-errors-without-message",
    ),
    pytest.param('{"errors":[]}', '{"errors":[]}', id="cloudflare-errors-empty"),
    pytest.param('"quoted json string"', "quoted json string", id="json-string"),
    pytest.param("[1, 2]", "[1, 2]", id="json-array-kept-raw"),
    pytest.param(b"<html>502 Bad Gateway</html>\n", "<html>502 Bad Gateway</html>", id="html"),
    pytest.param("upstream connect error", "upstream connect error", id="plain-text"),
    pytest.param(b"", "(empty body)", id="empty"),
    pytest.param(b"  \n ", "(empty body)", id="blank"),
    pytest.param(b"\xff\xfebad utf8", "\ufffd\ufffdbad utf8", id="invalid-utf8-replaced"),
    pytest.param("x" * 5000, "x" * 2000, id="truncated-to-2000"),
]


@pytest.mark.parametrize(("raw", "message"), MESSAGE_CASES)
def test_extract_upstream_message(raw: bytes | str, message: str) -> None:
    assert extract_upstream_message(raw) == message


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param('{"status":500,"title":""}', id="problem-empty-title"),
        pytest.param('{"error":{"message":""}}', id="openai-empty-message"),
        pytest.param('{"object":"error","message":""}', id="vllm-empty-message"),
        pytest.param('{"error":{"message":" None"}}', id="nim-only-none-suffix"),
    ],
)
def test_extract_upstream_message_is_never_empty(raw: str) -> None:
    assert extract_upstream_message(raw).strip()


# ------------------------------------------------------------------ mapping responses


def openai_error(message: str) -> str:
    return json.dumps({"error": {"message": message, "type": "BadRequestError", "code": 400}})


RESPONSE_CASES = [
    # (status, body, kwargs) -> (client status, message, retryable)
    pytest.param(
        400,
        openai_error("Invalid 'tools': unsupported None"),
        {},
        (400, "upstream returned 400: Invalid 'tools': unsupported", False),
        id="400-openai-none-suffix",
    ),
    pytest.param(
        401,
        '{"error":{"message":"Invalid API key"}}',
        {},
        (
            401,
            "upstream rejected the API key (401); check the provider key: Invalid API key",
            False,
        ),
        id="401-words",
    ),
    pytest.param(
        403,
        "Forbidden",
        {},
        (
            403,
            "upstream refused access (403); the key may not be entitled to this model: Forbidden",
            False,
        ),
        id="403-plain-text",
    ),
    pytest.param(
        404,
        body("nim_404_function-not-found-for-account.json"),
        {},
        (
            404,
            "upstream has no such model or route (404): Not Found: Function "
            "'23d4f03a-b8a6-4adb-a183-7daa083a09cc': Not found for account "
            "'T0ktMu-NCoEGEm9N8eE19EvsHqn9CiQAk-DN7TF22WM'",
            False,
        ),
        id="404-nim-problem-details",
    ),
    pytest.param(
        429,
        body("nim_429_too-many-requests.json"),
        {"retry_after": "12"},
        (429, "upstream rate limit reached (429): Too Many Requests", True),
        id="429-nim-retry-after-kept",
    ),
    pytest.param(
        500, b"", {}, (500, "upstream returned 500: (empty body)", False), id="500-empty-body"
    ),
    pytest.param(
        502,
        "Bad Gateway",
        {},
        (502, "upstream returned 502: Bad Gateway", True),
        id="502-retryable",
    ),
    pytest.param(
        503,
        '{"error":{"message":"Service Unavailable"}}',
        {},
        (529, "upstream returned 503: Service Unavailable", True),
        id="503-answered-as-529-overloaded",
    ),
    pytest.param(504, "timeout", {}, (504, "upstream returned 504: timeout", True), id="504"),
    pytest.param(
        400,
        body("nim_400_degraded-function.json"),
        {"retry_after": "3"},
        (
            529,
            "upstream model is temporarily unavailable (degraded): Bad Request: Function id "
            "'267194f7-f0a1-43cc-814b-83e44d440f2c': DEGRADED function cannot be invoked",
            True,
        ),
        id="nim-degraded-is-529-retryable",
    ),
    pytest.param(200, "odd", {}, (502, "upstream returned 200: odd", False), id="non-error-status"),
    pytest.param(302, "moved", {}, (502, "upstream returned 302: moved", False), id="redirect"),
]


@pytest.mark.parametrize(("status", "raw", "kwargs", "expected"), RESPONSE_CASES)
def test_upstream_error_from_response(
    status: int, raw: bytes | str, kwargs: dict[str, Any], expected: tuple[int, str, bool]
) -> None:
    error = upstream_error_from_response(status, raw, **kwargs)
    assert (error.status, error.message, error.retryable) == expected
    assert error.upstream_status == status
    assert error.retry_after == kwargs.get("retry_after")


def test_503_renders_as_overloaded_error_body() -> None:
    error = upstream_error_from_response(503, "busy")
    assert error.to_error_body()["error"]["type"] == "overloaded_error"
    assert error.status == 529


# ------------------------------------------------------------------ context overflows

NEGATIVE_ENVELOPE = body("vllm_400_max-tokens-negative_error-envelope.json")  # got -46771
NEGATIVE_LEGACY = body("vllm_400_max-tokens-negative_legacy-object-error.json")  # got -45

OVERFLOW_CASES = [
    pytest.param(
        openai_error(
            "This model's maximum context length is 8192 tokens. However, you requested 9000 "
            "tokens (8500 in the messages, 500 in the completion). Please reduce the length."
        ),
        {},
        "prompt is too long: 8500 tokens > 8192 maximum",
        id="vllm-requested-messages-over-window",
    ),
    pytest.param(
        openai_error(
            "This model's maximum context length is 128000 tokens. However, your messages "
            "resulted in 130000 tokens. Please reduce the length of the messages."
        ),
        {},
        "prompt is too long: 130000 tokens > 128000 maximum",
        id="openai-messages-resulted-in",
    ),
    pytest.param(
        openai_error(
            "This model's maximum context length is 4096 tokens. However, your prompt contains "
            "at least 4097 tokens."
        ),
        {},
        "prompt is too long: 4097 tokens > 4096 maximum",
        id="prompt-contains-at-least",
    ),
    pytest.param(
        openai_error(
            "This model's maximum context length is 4096 tokens. However, you requested "
            "5000 tokens. Please reduce your prompt."
        ),
        {},
        "prompt is too long: 5000 tokens > 4096 maximum",
        id="requested-total-only",
    ),
    pytest.param(
        openai_error("This model's maximum context length is 4096 tokens."),
        {"prompt_tokens": 6000},
        "prompt is too long: 6000 tokens > 4096 maximum",
        id="no-count-uses-our-estimate",
    ),
    pytest.param(
        openai_error("This model's maximum context length is 4096 tokens."),
        {},
        "prompt is too long: 4097 tokens > 4096 maximum",
        id="no-count-at-all",
    ),
    pytest.param(
        openai_error("This model's maximum context length is 4096 tokens."),
        {"prompt_tokens": 100},
        "prompt is too long: 4097 tokens > 4096 maximum",
        id="estimate-below-limit-still-over",
    ),
    pytest.param(
        NEGATIVE_ENVELOPE,
        {"context_window": 131072},
        "prompt is too long: 177843 tokens > 131072 maximum",
        id="vllm-negative-envelope-with-window",
    ),
    pytest.param(
        NEGATIVE_ENVELOPE,
        {"prompt_tokens": 180000},
        "prompt is too long: 180000 tokens > 133229 maximum",
        id="vllm-negative-envelope-with-prompt-tokens",
    ),
    pytest.param(
        NEGATIVE_ENVELOPE,
        {"prompt_tokens": 1000},  # our estimate is below the deficit: trust the deficit
        "prompt is too long: 46772 tokens > 1 maximum",
        id="vllm-negative-envelope-with-low-estimate",
    ),
    pytest.param(
        NEGATIVE_LEGACY,
        {"context_window": 8192, "prompt_tokens": 1},
        "prompt is too long: 8237 tokens > 8192 maximum",
        id="vllm-negative-legacy-window-wins",
    ),
    pytest.param(
        NEGATIVE_LEGACY,
        {"prompt_tokens": 8000},
        "prompt is too long: 8000 tokens > 7955 maximum",
        id="vllm-negative-legacy-with-prompt-tokens",
    ),
]


@pytest.mark.parametrize(("raw", "kwargs", "message"), OVERFLOW_CASES)
def test_context_overflow_reads_as_prompt_too_long(
    raw: bytes | str, kwargs: dict[str, Any], message: str
) -> None:
    error = upstream_error_from_response(400, raw, **kwargs)
    assert error.message == message
    assert (error.status, error.error_type, error.retryable) == (
        400,
        "invalid_request_error",
        False,
    )


# Overflow wordings found while writing these tests (each was a bug, now fixed).
KNOWN_OVERFLOW_GAPS = [
    pytest.param(
        NEGATIVE_ENVELOPE,
        {},
        "prompt is too long: 46772 tokens > 1 maximum",
        id="vllm-negative-envelope-no-window-no-estimate",
    ),
    pytest.param(
        NEGATIVE_LEGACY,
        {},
        "prompt is too long: 46 tokens > 1 maximum",
        id="vllm-negative-legacy-no-window-no-estimate",
    ),
    pytest.param(
        openai_error(
            "This model's maximum context length is 262144 tokens. However, your request has "
            "1203158 input tokens. Please reduce the length of the input messages."
        ),
        {},
        "prompt is too long: 1203158 tokens > 262144 maximum",
        id="vllm-nvidia-your-request-has-input-tokens",
    ),
    pytest.param(
        openai_error(
            "The input (250000 tokens) is longer than the model's context length (200000 tokens)."
        ),
        {},
        "prompt is too long: 250000 tokens > 200000 maximum",
        id="together-sglang-input-longer-than-context",
    ),
    pytest.param(
        openai_error("prompt is too long: 210000 tokens > 200000 maximum"),
        {},
        "prompt is too long: 210000 tokens > 200000 maximum",
        id="anthropic-compatible-upstream-wording-kept",
    ),
]


@pytest.mark.parametrize(("raw", "kwargs", "message"), KNOWN_OVERFLOW_GAPS)
def test_context_overflow_known_gaps(
    raw: bytes | str, kwargs: dict[str, Any], message: str
) -> None:
    assert upstream_error_from_response(400, raw, **kwargs).message == message


def test_too_large_max_tokens_is_not_an_overflow() -> None:
    # The brief's vLLM example: 8000 prompt tokens fit in 8192, only the 1000 requested output
    # tokens do not. Since 0ae4425 that is a clamp-and-retry case (max_tokens_limit -> 192), not
    # "prompt is too long" (which would make Claude Code compact a prompt that fits).
    message = (
        "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens "
        "(8000 in the messages, 1000 in the completion). Please reduce the length of the messages "
        "or completion."
    )
    assert max_tokens_limit(message) == 192
    assert context_overflow_message(message, context_window=None, prompt_tokens=None) is None
    error = upstream_error_from_response(400, openai_error(message))
    assert error.message == f"upstream returned 400: {message}"
    assert error.status == 400


@pytest.mark.parametrize(
    ("message", "limit"),
    [
        pytest.param(
            "'max_tokens' or 'max_completion_tokens' is too large: 32000. This model's maximum "
            "context length is 32768 tokens and your request has 1200 input tokens "
            "(32000 > 32768 - 1200).",
            31568,
            id="vllm-request-has-input-tokens",
        ),
        pytest.param(
            "max_tokens is too large: 32000. This model supports at most 16384 completion tokens, "
            "whereas you provided 32000.",
            16384,
            id="openai-at-most",
        ),
        pytest.param("max_tokens must be less than or equal to 8192", 8192, id="nim-lte"),
        pytest.param("max_tokens must be at least 1, got -45.", None, id="negative-is-overflow"),
        pytest.param("the limit is at most 100 things", None, id="not-about-max-tokens"),
        pytest.param("max_tokens exceeds the limit 0", None, id="zero-is-no-limit"),
        pytest.param(
            "This model's maximum context length is 8192 tokens. However, you requested 9000 "
            "tokens (8500 in the messages, 500 in the completion).",
            None,
            id="prompt-itself-over-window",
        ),
    ],
)
def test_max_tokens_limit(message: str, limit: int | None) -> None:
    assert max_tokens_limit(message) == limit


def test_context_overflow_message_of_unrelated_error_is_none() -> None:
    assert context_overflow_message("rate limited", context_window=8192, prompt_tokens=9) is None


# ------------------------------------------------------------------ mid-stream errors


def test_stream_payload_groq_event_error() -> None:
    payload = stream_error_payload("groq_gpt-oss-120b_event-error-tool-use-failed.sse", '"error"')
    error = upstream_error_from_stream_payload(payload)
    assert (error.status, error.upstream_status) == (400, 400)  # from status_code; code is a str
    assert error.message.startswith(
        "upstream error mid-stream: Tool call validation failed: tool call validation failed: "
        "parameters for tool get_something_by_name did not match schema"
    )
    assert error.error_type == "invalid_request_error"


def test_stream_payload_openrouter_error_chunk() -> None:
    payload = stream_error_payload(
        "openrouter_minimax-m2_keepalive-comments_midstream-error.sse", '"error"'
    )
    error = upstream_error_from_stream_payload(payload)
    assert (error.status, error.upstream_status) == (400, 400)
    assert error.message == "upstream error mid-stream: Token limit reached"


@pytest.mark.parametrize(
    ("payload", "status", "upstream_status", "message"),
    [
        pytest.param(
            {"error": {"message": "overloaded", "status": 503}},
            529,
            503,
            "upstream error mid-stream: overloaded",
            id="503-becomes-529",
        ),
        pytest.param(
            {"error": {"message": "x", "code": 200, "status": 429}},
            429,
            429,
            "upstream error mid-stream: x",
            id="out-of-range-code-skipped",
        ),
        pytest.param(
            {"message": "bare", "code": 500},
            500,
            500,
            "upstream error mid-stream: bare",
            id="no-error-key",
        ),
        pytest.param(
            {"error": "just words"},
            502,
            502,
            "upstream error mid-stream: just words",
            id="error-string",
        ),
        pytest.param(
            {"error": {"code": True}},
            502,
            502,
            'upstream error mid-stream: {"error": {"code": true}}',
            id="nothing-readable",
        ),
    ],
)
def test_upstream_error_from_stream_payload(
    payload: dict[str, Any], status: int, upstream_status: int, message: str
) -> None:
    error = upstream_error_from_stream_payload(payload)
    assert (error.status, error.upstream_status, error.message) == (
        status,
        upstream_status,
        message,
    )


def test_stream_payload_context_overflow_reads_as_prompt_too_long() -> None:
    payload = {
        "error": {
            "message": "This model's maximum context length is 8192 tokens. However, your "
            "messages resulted in 9000 tokens.",
            "code": 400,
        }
    }
    message = upstream_error_from_stream_payload(payload).message
    assert message == "prompt is too long: 9000 tokens > 8192 maximum"
