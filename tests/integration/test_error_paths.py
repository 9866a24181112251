"""Every failure ends in a well-formed Anthropic error a user can act on.

Before the first byte: a plain HTTP status (retry-after kept) the SDK raises
as the right exception class. After it: an `error` event that ends the stream.
The whole matrix of upstream faults (statuses x body shapes, unreachable,
TLS, timeouts, cut and runaway streams, slow clients) is test_fault_matrix.py;
this file keeps what the SDK sees, retries, repairs and pings.
"""

import json
import socket
import time
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic.types import MessageParam

from tests.anthropic_grammar import assert_anthropic_grammar
from tests.fake_upstream import (
    FIXTURES,
    chunk,
    completion,
    hang,
    http_request,
    reply_body,
    reply_json,
    reply_stream,
    text_stream,
)
from tests.integration.conftest import UPSTREAM_KEY, LiveProxy, MakeProxy, track, wait_for_log

HELLO: list[MessageParam] = [{"role": "user", "content": "hello"}]
MODEL = "claude-sonnet-4-6"
BODIES = FIXTURES / "upstream_bodies"


def post_messages(
    proxy: LiveProxy, body: object, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    all_headers = {
        "x-api-key": proxy.client_key,
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
        **headers,
    }
    return http_request(proxy.url + "/v1/messages", "POST", body=data, headers=all_headers)


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]


def error_of(raw: bytes) -> dict[str, str]:
    body = json.loads(raw)
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    return dict(body["error"])


# ------------------------------------------------------------------ PROTOCOL.md's error table

STATUS_TABLE = [
    # upstream status, body, client status, Anthropic type, SDK exception
    (
        400,
        '{"error":{"message":"bad field","type":"BadRequestError"}}',
        400,
        "invalid_request_error",
        anthropic.BadRequestError,
    ),
    (
        401,
        '{"error":{"message":"Invalid API key","type":"auth"}}',
        401,
        "authentication_error",
        anthropic.AuthenticationError,
    ),
    (
        403,
        '{"status":403,"title":"Forbidden","detail":"not entitled"}',
        403,
        "permission_error",
        anthropic.PermissionDeniedError,
    ),
    (
        404,
        (BODIES / "nim_404_function-not-found-for-account.json").read_text(),
        404,
        "not_found_error",
        anthropic.NotFoundError,
    ),
    (413, "Request Entity Too Large", 413, "request_too_large", anthropic.APIStatusError),
    (
        422,
        '{"detail":[{"msg":"field required"}]}',
        422,
        "invalid_request_error",
        anthropic.UnprocessableEntityError,
    ),
    (
        429,
        (BODIES / "nim_429_too-many-requests.json").read_text(),
        429,
        "rate_limit_error",
        anthropic.RateLimitError,
    ),
    (500, "Internal Server Error", 500, "api_error", anthropic.InternalServerError),
    (502, "<html>Bad Gateway</html>", 502, "api_error", anthropic.InternalServerError),
    (503, '{"error":{"message":"overloaded"}}', 529, "overloaded_error", anthropic.OverloadedError),
    (504, "upstream request timeout", 504, "api_error", anthropic.InternalServerError),
]


@pytest.mark.allow_warnings
@pytest.mark.parametrize(
    ("upstream_status", "body", "status", "error_type", "exception"),
    STATUS_TABLE,
    ids=[str(row[0]) for row in STATUS_TABLE],
)
def test_error_table(
    make_proxy: MakeProxy,
    upstream_status: int,
    body: str,
    status: int,
    error_type: str,
    exception: type[anthropic.APIStatusError],
) -> None:
    proxy = make_proxy(retry_max_attempts=1)  # no retries: see the status as it is
    proxy.upstream.enqueue(
        reply_body(body, status=upstream_status, content_type="application/json")
    )
    with pytest.raises(exception) as raised:
        proxy.client().messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert raised.value.status_code == status
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["error"]["type"] == error_type
    assert raised.value.response.headers["request-id"].startswith("req_")
    assert UPSTREAM_KEY not in raised.value.body["error"]["message"]


@pytest.mark.allow_warnings
def test_rate_limit_keeps_retry_after_and_is_retried_in_window(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(commit_window_s=0.0)
    limited = (BODIES / "nim_429_too-many-requests.json").read_text()
    proxy.upstream.enqueue(reply_body(limited, status=429, **{"Retry-After": "7"}))
    with pytest.raises(anthropic.RateLimitError) as raised:
        proxy.client().messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert raised.value.response.headers["retry-after"] == "7"
    assert "Too Many Requests" in raised.value.message

    # With a commit window, a transient 429 then 503 are retried before any byte goes out.
    proxy = make_proxy(commit_window_s=1.0)
    proxy.upstream.reset()
    proxy.upstream.enqueue(reply_body(limited, status=429), reply_body("busy", status=503))
    message = proxy.client().messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert message.content[0].type == "text"
    assert len(proxy.upstream.chat_requests) == 3


def test_degraded_function_is_overloaded_and_retried(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(commit_window_s=1.0)
    proxy.upstream.enqueue(
        reply_body((BODIES / "nim_400_degraded-function.json").read_text(), status=400)
    )
    with proxy.client().messages.stream(model=MODEL, max_tokens=10, messages=HELLO) as stream:
        assert stream.get_final_message().content[0].type == "text"
    assert len(proxy.upstream.chat_requests) == 2


@pytest.mark.allow_warnings
@pytest.mark.parametrize(
    "body",
    [
        (BODIES / "vllm_400_max-tokens-negative_error-envelope.json").read_text(),
        (BODIES / "vllm_400_max-tokens-negative_legacy-object-error.json").read_text(),
        '{"error":{"message":"This model\'s maximum context length is 8192 tokens. However, you '
        'requested 9000 tokens (8500 in the messages, 500 in the completion)."}}',
    ],
    ids=["vllm-negative-envelope", "vllm-negative-legacy", "openai-context-length"],
)
def test_context_overflow_reads_prompt_is_too_long(make_proxy: MakeProxy, body: str) -> None:
    proxy = make_proxy()
    proxy.upstream.enqueue(reply_body(body, status=400))
    with pytest.raises(anthropic.BadRequestError) as raised:
        proxy.client().messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    message = raised.value.body["error"]["message"]  # type: ignore[index]
    assert message.startswith("prompt is too long: ")
    words = message.split()  # prompt is too long: N tokens > M maximum
    assert words[5] == "tokens" and words[6] == ">" and words[8] == "maximum"
    assert int(words[4]) > int(words[7])


@pytest.mark.allow_warnings  # the repair is logged at WARNING, on purpose
def test_too_large_max_tokens_is_clamped_and_retried_once(make_proxy: MakeProxy) -> None:
    proxy = make_proxy()
    proxy.upstream.enqueue(
        reply_body(
            '{"error":{"message":"max_tokens must be less than or equal to 4096"}}', status=400
        )
    )
    with proxy.client().messages.stream(model=MODEL, max_tokens=32000, messages=HELLO) as stream:
        assert stream.get_final_message().content[0].type == "text"
    first, second = proxy.upstream.chat_requests
    assert first.body["max_tokens"] == 32000 and second.body["max_tokens"] == 4096


# ------------------------------------------------------------------ upstream unreachable / slow


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.allow_warnings
def test_upstream_unreachable(make_proxy: MakeProxy) -> None:
    # Three attempts: 0.75 s of backoff in all, well inside the bound below (the default
    # four waited 1.75 s, which a loaded machine pushed past 2 s).
    proxy = make_proxy(
        upstream_url=f"http://127.0.0.1:{_closed_port()}/v1",
        commit_window_s=0.2,
        retry_max_attempts=3,
    )
    started = time.monotonic()
    with pytest.raises(anthropic.InternalServerError) as raised:
        proxy.client().messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert raised.value.status_code == 502
    message = raised.value.body["error"]["message"]  # type: ignore[index]
    assert "cannot connect to the upstream" in message and "connection refused" in message
    assert time.monotonic() - started < 2  # retried inside the window, then gave up


@pytest.mark.allow_warnings
def test_upstream_silent_after_commit_ends_in_error_event(make_proxy: MakeProxy) -> None:
    """The window passes with no answer: message_start and pings go out, then an error event."""
    proxy = make_proxy(read_timeout_s=1.0, commit_window_s=0.1, ping_interval_s=0.2)
    proxy.upstream.enqueue(hang(3))
    status, _, raw = post_messages(
        proxy, {"model": MODEL, "max_tokens": 5, "messages": HELLO, "stream": True}
    )
    assert status == 200
    events = sse_events(raw)
    assert_anthropic_grammar(events)
    assert events[0]["type"] == "message_start"
    assert any(e["type"] == "ping" for e in events)
    assert events[-1]["type"] == "error" and "did not answer" in events[-1]["error"]["message"]


def test_pings_while_upstream_thinks_silently(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(ping_interval_s=0.1, commit_window_s=0.05)
    proxy.upstream.enqueue(reply_stream(lambda b: text_stream(b, "done"), first_delay=0.5))
    status, _, raw = post_messages(
        proxy, {"model": MODEL, "max_tokens": 5, "messages": HELLO, "stream": True}
    )
    events = sse_events(raw)
    assert_anthropic_grammar(events)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start" and kinds.count("ping") >= 2
    assert kinds[-1] == "message_stop"


@pytest.mark.allow_warnings
def test_sdk_raises_on_error_event(make_proxy: MakeProxy) -> None:
    proxy = make_proxy()
    proxy.upstream.enqueue(reply_stream(lambda b: text_stream(b, "partial answer")[:3], cut=True))
    with (
        pytest.raises(anthropic.APIStatusError),
        proxy.client().messages.stream(model=MODEL, max_tokens=5, messages=HELLO) as stream,
    ):
        stream.get_final_message()


@pytest.mark.allow_warnings
def test_upstream_200_with_garbage_body(proxy: LiveProxy) -> None:
    proxy.upstream.enqueue(reply_body("<html>oops</html>", status=200, content_type="text/html"))
    with pytest.raises(anthropic.InternalServerError) as raised:
        proxy.client().messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert "not JSON" in raised.value.body["error"]["message"]  # type: ignore[index]


def test_upstream_ignores_stream_flag_and_answers_json(proxy: LiveProxy) -> None:
    proxy.upstream.enqueue(reply_json(completion({"model": "m"}, "whole answer")))
    with proxy.client().messages.stream(model=MODEL, max_tokens=10, messages=HELLO) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == "whole answer"


# ------------------------------------------------------------------ malformed client requests


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        pytest.param(b"{not json", "invalid JSON", id="invalid-json"),
        pytest.param(b"", "empty", id="empty-body"),
        pytest.param(b"[1, 2]", "JSON object", id="not-an-object"),
        pytest.param(
            b'{"model": "m", "max_tokens": 5, "temperature": NaN, "messages": []}',
            "NaN is not a JSON value",
            id="nan",
        ),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "nested too deeply", id="deep-nesting"),
        pytest.param({"model": MODEL, "messages": HELLO}, "max_tokens", id="missing-max-tokens"),
        pytest.param({"model": MODEL, "max_tokens": 5}, "messages", id="missing-messages"),
        pytest.param({"max_tokens": 5, "messages": HELLO}, "model", id="missing-model"),
        pytest.param(
            {"model": MODEL, "max_tokens": 0, "messages": HELLO}, "max_tokens", id="zero-max-tokens"
        ),
        pytest.param(
            {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user"}]},
            "messages.0.content",
            id="message-without-content",
        ),
    ],
)
def test_malformed_requests_are_clear_400s(proxy: LiveProxy, body: object, needle: str) -> None:
    status, headers, raw = post_messages(proxy, body)
    assert status == 400
    error = error_of(raw)
    assert error["type"] == "invalid_request_error" and needle in error["message"]
    assert headers["request-id"].startswith("req_")
    assert not proxy.upstream.chat_requests


def test_unknown_fields_and_server_tools_never_4xx(proxy: LiveProxy) -> None:
    status, _, raw = post_messages(
        proxy,
        {
            "model": MODEL,
            "max_tokens": 5,
            "messages": HELLO,
            "context_management": {"edits": []},
            "service_tier": "auto",
            "container": "x",
            "mcp_servers": [],
            "output_config": {"effort": "high"},
            "tools": [{"type": "code_execution_20250825", "name": "code_execution"}],
        },
        **{"anthropic-beta": "context-management-2025-06-27,interleaved-thinking-2025-05-14"},
    )
    assert status == 200, raw
    # A server tool NimBridge does not run is dropped (web_search / web_fetch it runs:
    # test_server_tools.py).
    assert "tools" not in proxy.upstream.chat_requests[-1].body


def test_unknown_route_is_anthropic_404(proxy: LiveProxy) -> None:
    status, _, raw = http_request(proxy.url + "/v1/nothing-here")
    assert status == 404 and error_of(raw)["type"] == "not_found_error"


# ------------------------------------------------------------------ auth


def test_proxy_key_required_and_checked(proxy: LiveProxy) -> None:
    with pytest.raises(anthropic.AuthenticationError):
        proxy.client(api_key="wrong-key").messages.create(model=MODEL, max_tokens=5, messages=HELLO)
    status, _, raw = post_messages(
        proxy, {"model": MODEL, "max_tokens": 5, "messages": HELLO}, **{"x-api-key": ""}
    )
    assert status == 401 and error_of(raw)["type"] == "authentication_error"
    assert not proxy.upstream.chat_requests
    # Claude Code sends the key as a Bearer token.
    bearer = track(
        anthropic.Anthropic(base_url=proxy.url, auth_token=proxy.client_key, max_retries=0)
    )
    bearer.messages.create(model=MODEL, max_tokens=5, messages=HELLO)
    assert proxy.upstream.chat_requests[-1].headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_without_proxy_key_the_clients_key_passes_through(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(proxy_key=None, upstream_key=None)
    proxy.client(api_key="nvapi-client-own").messages.create(
        model=MODEL, max_tokens=5, messages=HELLO
    )
    assert proxy.upstream.chat_requests[-1].headers["Authorization"] == "Bearer nvapi-client-own"


# ------------------------------------------------------------------ client disconnect


def test_client_disconnect_cancels_upstream_within_a_second(proxy: LiveProxy) -> None:
    slow = [chunk({}, {"content": f"word{i} "}) for i in range(200)]
    proxy.upstream.enqueue(reply_stream(slow, delay=0.05))
    body = json.dumps({"model": MODEL, "max_tokens": 500, "messages": HELLO, "stream": True})
    with socket.create_connection(("127.0.0.1", proxy.server.port)) as sock:
        sock.sendall(
            (
                "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"x-api-key: {proxy.client_key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
            ).encode()
        )
        assert b"content_block_delta" in _read_until(sock, b"content_block_delta")
        closed_at = time.monotonic()
    assert proxy.upstream.cancelled.wait(2.0)
    record = proxy.upstream.chat_requests[-1]
    assert record.cancelled_at is not None and record.cancelled_at - closed_at < 1.0


def _read_until(sock: socket.socket, needle: bytes) -> bytes:
    sock.settimeout(5)
    seen = b""
    while needle not in seen:
        data = sock.recv(4096)
        if not data:
            break
        seen += data
    return seen


def test_no_key_in_logs(make_proxy: MakeProxy, caplog: pytest.LogCaptureFixture) -> None:
    proxy = make_proxy()
    with caplog.at_level("DEBUG", logger="app"):
        proxy.client().messages.create(model=MODEL, max_tokens=5, messages=HELLO)
        wait_for_log(caplog, "claude-sonnet-4-6 -> fake/default-model")
    assert UPSTREAM_KEY not in caplog.text and proxy.client_key not in caplog.text


def test_fixture_files_are_copies(tmp_path: Path) -> None:
    """Tests never read ../shared: every fixture they use lives under tests/fixtures."""
    assert (FIXTURES / "requests" / "claude_code_request.json").is_file()


def test_debug_logs_bodies_with_keys_redacted(
    make_proxy: MakeProxy, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = make_proxy()
    secret_text = "my key is nvapi-abcdefghijklmnop0123 and sk-abcdefghijklmnop"
    with caplog.at_level("DEBUG", logger="app"):
        proxy.client().messages.create(
            model=MODEL, max_tokens=5, messages=[{"role": "user", "content": secret_text}]
        )
        with proxy.client().messages.stream(model=MODEL, max_tokens=5, messages=HELLO) as stream:
            stream.get_final_message()
    bodies = [r.getMessage() for r in caplog.records if "request:" in r.getMessage()]
    assert any("client request" in b for b in bodies) and any(
        "upstream request" in b for b in bodies
    )
    assert any("upstream response" in r.getMessage() for r in caplog.records)
    assert any("upstream bytes" in r.getMessage() for r in caplog.records)
    assert UPSTREAM_KEY not in caplog.text and proxy.client_key not in caplog.text


def test_pings_while_upstream_sends_only_keepalive_comments(make_proxy: MakeProxy) -> None:
    """OpenRouter-style `: PROCESSING` lines keep *our* socket busy, not the client's."""
    proxy = make_proxy(ping_interval_s=0.1, commit_window_s=0.05)
    comments = [": OPENROUTER PROCESSING\n\n"] * 8
    proxy.upstream.enqueue(reply_stream(lambda b: comments + text_stream(b, "done"), delay=0.06))
    status, _, raw = post_messages(
        proxy, {"model": MODEL, "max_tokens": 5, "messages": HELLO, "stream": True}
    )
    events = sse_events(raw)
    assert_anthropic_grammar(events)
    assert [e["type"] for e in events].count("ping") >= 2
    assert events[-1]["type"] == "message_stop"
