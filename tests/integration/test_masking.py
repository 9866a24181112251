"""Keys echoed back by an upstream never reach the client or the log, on any route.

Every key here is shaped like nothing the log's shape patterns know (a Cloudflare
token, a custom provider's key): only knowing the values can hide them. The log is
production's (`setup_logging` with the server's own `Masker`), read from a LogBuffer.
"""

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.config.secrets import MemorySecretStore, ProviderKeys
from app.config.settings import Settings
from app.logs import LIBRARY_LOGGERS, LogBuffer, setup_logging
from app.server.app import ProxyServer
from tests.fake_upstream import (
    FakeUpstream,
    LoopThread,
    chunk,
    http_request,
    reply_body,
    reply_json,
    reply_stream,
)
from tests.integration.conftest import DEFAULT_MODEL, LiveProxy, MakeProxy

PROVIDER_KEY = "Qx9fLmT2vR8kWp4nZc6hYb1sJd5gHa3eUo7i"  # 36 characters, no known shape
SEARCH_KEY = "SEARCHkeyB7d2e9f4a1c6b3d8e5f0a7c2"
PROXY_KEY = "PROXYlocal4f8e2d6c1b9a7e3d5c0b8a6"
CLIENT_KEY = "CLIENTown9a8b7c6d5e4f3a2b1c0d9e8f7"

pytestmark = pytest.mark.allow_warnings  # upstream failures log warnings, on purpose


@pytest.fixture
def log_lines() -> Iterator[LogBuffer]:
    """Production logging into a buffer, masked by whatever secrets `use` is given."""
    buffer = LogBuffer()
    yield buffer
    root = logging.getLogger("app")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.propagate, root.level = True, logging.NOTSET
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate, library.level = True, logging.NOTSET


def log_to(buffer: LogBuffer, *proxies: LiveProxy) -> None:
    maskers = [proxy.server.app_state.masker for proxy in proxies]
    setup_logging(
        "DEBUG",
        secrets=lambda: [s for masker in maskers for s in masker.secrets()],
        buffer=buffer,
        stderr=False,
    )


def pieces_of(secret: str, size: int = 6) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


def assert_hidden(text: str, *secrets: str) -> None:
    for secret in secrets:
        leaked = [piece for piece in pieces_of(secret) if piece in text]
        assert not leaked, f"{secret[:4]}... leaked: {leaked[:3]} in {text[-300:]!r}"


def log_text(buffer: LogBuffer) -> str:
    return "\n".join(line.message for line in buffer.lines())


def post(url: str, path: str, body: dict[str, Any], key: str) -> tuple[int, str]:
    status, _headers, raw = http_request(
        url + path,
        "POST",
        body=json.dumps(body).encode(),
        headers={"content-type": "application/json", "x-api-key": key},
    )
    return status, raw.decode("utf-8", "replace")


def chat(stream: bool) -> dict[str, Any]:
    return {
        "model": DEFAULT_MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    }


def message(stream: bool) -> dict[str, Any]:
    return {**chat(stream), "max_tokens": 50}


# ------------------------------------------------------------------ the probe's findings


def test_passthrough_mid_stream_error_event_is_masked(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(upstream_key=PROVIDER_KEY)
    echoed = {"error": {"message": f"Incorrect API key provided: {PROVIDER_KEY}"}}
    proxy.upstream.enqueue(reply_stream([chunk({}, {"role": "assistant", "content": "a"}), echoed]))
    status, text = post(proxy.url, "/v1/chat/completions", chat(True), proxy.client_key)
    assert status == 200 and "Incorrect API key provided: ***" in text
    assert_hidden(text, PROVIDER_KEY)


def test_passthrough_event_that_is_not_json_is_masked(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(upstream_key=PROVIDER_KEY)
    key = PROVIDER_KEY
    # The key straddles the 200 characters the error quotes.
    proxy.upstream.enqueue(reply_stream([f"data: {'.' * 190}{key} oops\n\n"]))
    status, text = post(proxy.url, "/v1/chat/completions", chat(True), proxy.client_key)
    assert status == 200 and "not JSON" in text
    assert_hidden(text, key)


def test_passthrough_body_typed_json_that_is_not_json_is_masked(
    make_proxy: MakeProxy,
) -> None:
    proxy = make_proxy(upstream_key=PROVIDER_KEY)
    key = PROVIDER_KEY
    proxy.upstream.enqueue(reply_body(f"oops {key} oops", status=200))
    status, text = post(proxy.url, "/v1/chat/completions", chat(False), proxy.client_key)
    assert status == 200 and text == "oops *** oops"


@pytest.mark.parametrize("stream", [False, True])
def test_a_key_cut_by_the_2000_character_limit_is_masked_whole(
    make_proxy: MakeProxy, log_lines: LogBuffer, stream: bool
) -> None:
    proxy = make_proxy(upstream_key=PROVIDER_KEY, proxy_key=PROXY_KEY)
    log_to(log_lines, proxy)
    for cut_at in (6, 20, 30):  # characters of the key before the cut
        long = "." * (2000 - cut_at) + PROVIDER_KEY + "." * 500
        proxy.upstream.enqueue(reply_json({"error": {"message": long}}, status=400))
        status, text = post(proxy.url, "/v1/messages", message(stream), PROXY_KEY)
        assert status == 400 and "***" in text
        assert_hidden(text, PROVIDER_KEY)
    assert "***" in log_text(log_lines)
    assert_hidden(log_text(log_lines), PROVIDER_KEY)


def test_a_pass_through_client_key_is_masked_in_the_log(
    make_proxy: MakeProxy, log_lines: LogBuffer
) -> None:
    proxy = make_proxy(proxy_key=None, upstream_key=None)
    log_to(log_lines, proxy)
    echoed = {"error": {"message": f"Incorrect API key provided: {CLIENT_KEY}"}}
    proxy.upstream.enqueue(reply_json(echoed, status=401))
    status, text = post(proxy.url, "/v1/messages", message(False), CLIENT_KEY)
    assert status == 401
    assert proxy.upstream.chat_requests[-1].headers["Authorization"] == f"Bearer {CLIENT_KEY}"
    assert "Incorrect API key provided: ***" in log_text(log_lines)
    assert_hidden(text + log_text(log_lines), CLIENT_KEY)


def test_health_shows_the_upstream_without_credentials(
    make_proxy: MakeProxy, upstream: FakeUpstream
) -> None:
    with_secrets = upstream.base_url.replace("http://", "http://me:PASSword9876@") + (
        "?key=QUERYsecret5432"
    )
    proxy = make_proxy(upstream_url=with_secrets)
    status, _headers, raw = http_request(proxy.url + "/health")
    assert status == 200
    assert json.loads(raw)["upstream"] == upstream.base_url
    assert b"PASSword9876" not in raw and b"QUERYsecret5432" not in raw
    masker = proxy.server.app_state.masker
    assert masker.mask("PASSword9876 QUERYsecret5432") == "*** ***"  # in logs too


# ------------------------------------------------------------------ nothing can forget it


def test_a_stream_that_is_not_masked_is_refused_before_any_byte(
    loop_thread: LoopThread, upstream: FakeUpstream
) -> None:
    settings = Settings(host="127.0.0.1", port=0).with_overrides(upstream_url=upstream.base_url)
    keys = ProviderKeys(MemorySecretStore(), env={})
    keys.set(settings.default_provider, PROVIDER_KEY)
    server = ProxyServer(settings, keys, PROXY_KEY)

    async def careless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(PROVIDER_KEY.encode())
        return response

    async def careless_whole(request: web.Request) -> web.Response:
        return web.json_response({"echo": PROVIDER_KEY})

    server.app.router.add_get("/careless", careless)
    server.app.router.add_get("/careless-whole", careless_whole)
    url = loop_thread.run(server.start())
    try:
        status, _headers, raw = http_request(url + "/careless")
        assert status == 500 and PROVIDER_KEY.encode() not in raw
        status, _headers, raw = http_request(url + "/careless-whole")
        assert status == 200 and json.loads(raw) == {"echo": "***"}
    finally:
        loop_thread.run(server.stop())


def test_only_the_egress_module_makes_stream_responses() -> None:
    """A handler that made its own `web.StreamResponse` would fail at prepare; this
    says so before a test has to find the route."""
    server = Path(__file__).parents[2] / "app" / "server"
    makers = [
        path.name
        for path in server.glob("*.py")
        if "web.StreamResponse(" in path.read_text() and path.name != "egress.py"
    ]
    assert makers == []


# ------------------------------------------------------------------ the property

SECRET_KINDS = ("provider", "search", "proxy", "client")
ROUTES = (
    "messages",
    "messages-stream",
    "chat",
    "chat-stream",
    "messages-error",
    "chat-error",
    "chat-stream-error",
    "models",
    "count_tokens",
    "health",
)


@pytest.fixture
def two_proxies(make_proxy: MakeProxy, log_lines: LogBuffer) -> tuple[LiveProxy, LiveProxy]:
    keyed = make_proxy(upstream_key=PROVIDER_KEY, proxy_key=PROXY_KEY)
    keyed.server.app_state.registry.keys.set_web_search_key("tavily", SEARCH_KEY)
    passing = make_proxy(proxy_key=None, upstream_key=None)
    log_to(log_lines, keyed, passing)
    return keyed, passing


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    kind=st.sampled_from(SECRET_KINDS),
    route=st.sampled_from(ROUTES),
    before=st.integers(min_value=0, max_value=2100),
    after=st.integers(min_value=0, max_value=300),
    split=st.one_of(st.none(), st.integers(min_value=1, max_value=97)),
)
def test_no_configured_key_ever_reaches_the_client_or_the_log(
    two_proxies: tuple[LiveProxy, LiveProxy],
    log_lines: LogBuffer,
    kind: str,
    route: str,
    before: int,
    after: int,
    split: int | None,
) -> None:
    keyed, passing = two_proxies
    proxy, key = (passing, CLIENT_KEY) if kind == "client" else (keyed, PROXY_KEY)
    secret = {
        "provider": PROVIDER_KEY,
        "search": SEARCH_KEY,
        "proxy": PROXY_KEY,
        "client": CLIENT_KEY,
    }[kind]
    text = "." * before + secret + " " * after  # wherever our cuts (200, 512, 2000) land
    logged_before = len(log_lines.lines())
    upstream = proxy.upstream
    path, body = "/v1/messages", message(False)
    if route == "messages":
        upstream.enqueue(reply_json(_completion(text)))
    elif route == "messages-stream":
        upstream.enqueue(
            reply_stream([chunk({}, {"role": "assistant", "content": text}), "[DONE]"], split=split)
        )
        body = message(True)
    elif route in ("chat", "chat-stream"):
        stream = route == "chat-stream"
        items = [chunk({}, {"role": "assistant", "content": text}), "[DONE]"]
        upstream.enqueue(
            reply_stream(items, split=split) if stream else reply_json(_completion(text))
        )
        path, body = "/v1/chat/completions", chat(stream)
    elif route == "messages-error":
        upstream.enqueue(reply_json({"error": {"message": text}}, status=400))
    elif route == "chat-error":
        upstream.enqueue(reply_body(text, status=400, content_type="text/plain"))
        path, body = "/v1/chat/completions", chat(False)
    elif route == "chat-stream-error":
        upstream.enqueue(reply_stream([f"data: {text}\n\n"], split=split))
        path, body = "/v1/chat/completions", chat(True)
    if route == "models":
        upstream.models_queue.append(reply_json({"error": {"message": text}}, status=500))
        status, _headers, raw = http_request(
            proxy.url + "/v1/models?refresh=1", headers={"x-api-key": key}
        )
        answer = raw.decode()
    elif route == "count_tokens":
        status, answer = post(proxy.url, "/v1/messages/count_tokens", {"model": text}, key)
    elif route == "health":
        status, _headers, raw = http_request(proxy.url + "/health")
        answer = raw.decode()
    else:
        status, answer = post(proxy.url, path, body, key)
    upstream.queue.clear()
    upstream.models_queue.clear()
    assert status
    assert_hidden(answer, secret)
    deadline = time.monotonic() + 2.0  # the request's line is written just after the answer
    while len(log_lines.lines()) == logged_before and time.monotonic() < deadline:
        time.sleep(0.01)
    logged = "\n".join(line.message for line in log_lines.lines()[logged_before:])
    assert logged
    assert_hidden(logged, secret)


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
