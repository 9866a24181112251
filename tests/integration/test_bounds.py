"""Issue 17's probe, replayed: every resource a request can make NimBridge hold is
bounded, and no request ends in a 500 or a traceback.

Each test is one finding of the probe (real sockets on 127.0.0.1); the fd-limit one
runs `nimbridge serve` in a subprocess under `resource.setrlimit`.
"""

import dataclasses
import json
import logging
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from app.server import runner
from app.server.json_body import MAX_JSON_DEPTH
from app.server.runner import connection_cap
from app.server.safe_fetch import FetchPolicy, SafeFetcher
from app.server.state import STATE
from tests.fake_upstream import (
    FakeUpstream,
    LoopThread,
    completion,
    http_request,
    reply_body,
    reply_json,
)
from tests.integration.conftest import LiveProxy, MakeProxy
from tests.integration.test_cli import base_url_of, finish, spawn_serve
from tests.integration.test_image_urls import PNG, PUBLIC, _Names, _public_for_tests
from tests.integration.test_images import PROXY_KEY, images_keys, images_settings

FETCH_TOOL = {"type": "web_fetch_20250910", "name": "web_fetch", "max_uses": 2}


def post(proxy: LiveProxy, body: object, path: str = "/v1/messages", **headers: str) -> Any:
    all_headers = {
        "x-api-key": proxy.client_key,
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
        **headers,
    }
    return http_request(
        proxy.url + path, "POST", body=json.dumps(body).encode(), headers=all_headers
    )


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-6",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    traced = [r.getMessage() for r in caplog.records if r.exc_info and r.levelno > logging.DEBUG]
    assert not traced, traced


# ------------------------------------------------------------------ 3: IPv6 URLs


@pytest.mark.parametrize(
    "text",
    ["fetch http://[::1 please", "see http://[::1]:8080/x and http://[zz]/ and http://a:99999/"],
)
def test_a_bracketed_url_in_a_conversation_with_web_fetch_is_no_500(
    proxy: LiveProxy, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    proxy.upstream.enqueue(reply_json(completion({}, "ok")))
    status, _, raw = post(proxy, ask(text, tools=[FETCH_TOOL]))
    assert status == 200, raw
    assert json.loads(raw)["content"][0]["text"] == "ok"
    no_tracebacks(caplog)


# ------------------------------------------------------------------ 7: 500s that were 4xx


def nested_schema(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "array", "items": schema}
    return schema


def tool_with(schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": "deep", "description": "d", "input_schema": schema}


def test_a_deeply_nested_tool_schema_is_a_400_naming_the_limit(
    proxy: LiveProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app")
    status, _, raw = post(proxy, ask("hi", tools=[tool_with(nested_schema(490))]))
    assert status == 400, raw
    error = json.loads(raw)["error"]
    assert error["type"] == "invalid_request_error"
    assert f"{MAX_JSON_DEPTH} levels" in error["message"]
    no_tracebacks(caplog)
    assert len([r for r in caplog.records if r.name.startswith("app")]) == 1


def test_a_schema_nested_just_under_the_limit_still_works(proxy: LiveProxy) -> None:
    proxy.upstream.enqueue(reply_json(completion({}, "deep enough")))
    # The body's own levels: request, tools list, tool, input_schema.
    body = ask("hi", tools=[tool_with(nested_schema(MAX_JSON_DEPTH - 4))])
    status, _, raw = post(proxy, body)
    assert status == 200, raw


LONE_SURROGATE_ANSWER = (
    b'{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"before \\ud800 after"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6}}'
)


def test_a_lone_surrogate_in_an_upstream_answer_is_no_500(
    proxy: LiveProxy, caplog: pytest.LogCaptureFixture
) -> None:
    proxy.upstream.enqueue(reply_body(LONE_SURROGATE_ANSWER, status=200))
    status, _, raw = post(proxy, ask("hi"))
    assert status == 200, raw
    text = json.loads(raw)["content"][0]["text"]
    assert text.startswith("before ") and text.endswith(" after")
    no_tracebacks(caplog)


def raw_exchange(url: str, request: bytes, timeout: float = 5.0) -> bytes:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def test_a_non_utf8_api_key_is_a_401(proxy: LiveProxy, caplog: pytest.LogCaptureFixture) -> None:
    body = json.dumps(ask("hi")).encode()
    answer = raw_exchange(
        proxy.url,
        b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"x-api-key: \xff\xfe-not-utf8\r\nanthropic-version: 2023-06-01\r\n"
        b"content-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body,
    )
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    no_tracebacks(caplog)


# ------------------------------------------------------------------ 9: retry-after


@pytest.mark.allow_warnings
def test_a_refused_upstream_connection_answers_with_retry_after(make_proxy: MakeProxy) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    proxy = make_proxy(upstream_url=f"http://127.0.0.1:{closed}/v1", retry_max_wait_s=0.5)
    status, headers, raw = post(proxy, ask("hi"))
    assert status == 502, raw
    assert headers.get("retry-after") == "1"


# ------------------------------------------------------------------ 8: ids in URL paths


@pytest.fixture
def cloudflare_proxy(loop_thread: LoopThread, upstream: FakeUpstream) -> Iterator[str]:
    from app.server.app import ProxyServer

    saved = upstream.cloudflare_models
    upstream.cloudflare_models = []  # the image catalog empty: nothing to check ids against
    settings = dataclasses.replace(images_settings(upstream), default_provider="cf")
    server = ProxyServer(settings, images_keys(), PROXY_KEY)
    url = loop_thread.run(server.start())
    try:
        yield url
    finally:
        loop_thread.run(server.stop())
        upstream.cloudflare_models = saved


@pytest.mark.parametrize("model", ["../../../../user/tokens", "x?y=1", "@cf/a/../../b", "a#b"])
def test_a_workers_ai_model_id_cannot_leave_the_run_path(
    cloudflare_proxy: str, upstream: FakeUpstream, model: str
) -> None:
    status, _, raw = http_request(
        cloudflare_proxy + "/v1/images/generations",
        "POST",
        body=json.dumps({"model": model, "prompt": "a cat"}).encode(),
        headers={"Authorization": f"Bearer {PROXY_KEY}", "content-type": "application/json"},
    )
    assert status == 400, raw
    assert "model" in json.loads(raw)["error"]["message"]
    assert not [r.path for r in upstream.requests if "/ai/run/" in r.path or "user" in r.path]


# ------------------------------------------------------------------ 5: bytes fetched


@dataclasses.dataclass
class CountingImages:
    url: str
    served: list[str]


@pytest.fixture
def counting_images(loop_thread: LoopThread) -> Iterator[CountingImages]:
    served: list[str] = []

    async def image(request: web.Request) -> web.Response:
        served.append(request.path)
        return web.Response(body=PNG + b"\0" * (60 * 1024), content_type="image/png")

    async def start() -> tuple[web.AppRunner, int]:
        app = web.Application()
        app.router.add_get("/{name}", image)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, PUBLIC, 0)
        await site.start()
        return runner, runner.addresses[0][1]

    runner, port = loop_thread.run(start())
    yield CountingImages(f"http://{PUBLIC}:{port}", served)
    loop_thread.run(runner.cleanup())


def with_small_fetcher(live: LiveProxy, *, per_request: int) -> None:
    live.server.app[STATE].fetcher = SafeFetcher(
        FetchPolicy(max_bytes=64 * 1024, max_request_bytes=per_request, timeout_s=5.0),
        resolver=_Names(),
        check=_public_for_tests,
    )


def many_images(base: str, count: int, model: str = "claude-sonnet-4-6") -> dict[str, Any]:
    images = [
        {"type": "image", "source": {"type": "url", "url": f"{base}/{i}.png"}} for i in range(count)
    ]
    return {
        "model": model,
        "max_tokens": 32,
        "messages": [{"role": "user", "content": [*images, {"type": "text", "text": "which?"}]}],
    }


def test_images_by_url_share_one_byte_budget_per_request(
    make_proxy: MakeProxy, counting_images: CountingImages
) -> None:
    live = make_proxy(image_urls="fetch")
    with_small_fetcher(live, per_request=256 * 1024)
    live.upstream.enqueue(reply_json(completion({}, "ok")))
    status, _, raw = post(live, many_images(counting_images.url, 40))
    assert status == 400, raw
    message = json.loads(raw)["error"]["message"]
    assert "262,144 bytes" in message and "one request" in message


def test_documents_by_url_draw_on_the_same_budget(
    make_proxy: MakeProxy, counting_images: CountingImages
) -> None:
    live = make_proxy(image_urls="fetch")
    with_small_fetcher(live, per_request=100 * 1024)
    live.upstream.enqueue(reply_json(completion({}, "ok")))
    body = many_images(counting_images.url, 1)
    document = {"type": "document", "source": {"type": "url", "url": f"{counting_images.url}/d"}}
    body["messages"][0]["content"].insert(1, document)
    status, _, raw = post(live, body)
    assert status == 200, raw  # a document is never a 400: a note in its place
    sent = json.dumps(live.upstream.chat_requests[-1].body)
    assert "over the 102,400 bytes NimBridge fetches for one request" in sent


def test_images_are_not_fetched_for_a_model_without_vision(
    make_proxy: MakeProxy, counting_images: CountingImages
) -> None:
    live = make_proxy(image_urls="fetch", model="qwen/qwen3-coder-480b-a35b-instruct")
    with_small_fetcher(live, per_request=1024 * 1024)
    live.upstream.enqueue(reply_json(completion({}, "ok")))
    status, _, raw = post(live, many_images(counting_images.url, 3, model="qwen3-coder-any"))
    assert status == 200, raw
    assert counting_images.served == []
    assert "image omitted" in json.dumps(live.upstream.chat_requests[-1].body)


# ------------------------------------------------------------------ 4: connections


SERVE_UNDER_LIMIT = """
import resource, runpy, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
sys.argv = ["nimbridge", *sys.argv[1:]]
runpy.run_module("app", run_name="__main__")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="fd limits are POSIX")
def test_silent_connections_cannot_starve_a_real_request(upstream: FakeUpstream) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 400:
        pytest.skip("this test opens 300 sockets of its own")
    process = spawn_serve(upstream, program=(sys.executable, "-c", SERVE_UNDER_LIMIT))
    silent: list[socket.socket] = []
    try:
        url = base_url_of(process)
        host, port = url.removeprefix("http://").rsplit(":", 1)
        for _ in range(300):  # more than the server may hold: 256 fds in all
            try:
                silent.append(socket.create_connection((host, int(port)), timeout=2))
            except OSError:
                break
        time.sleep(0.5)
        upstream.enqueue(reply_json(completion({}, "still served")))
        started = time.monotonic()
        status, _, raw = http_request(
            url + "/v1/messages",
            "POST",
            body=json.dumps(ask("hi")).encode(),
            headers={
                "x-api-key": "cli-proxy-key",
                "content-type": "application/json",
                "anthropic-version": "2023-06-01",
            },
        )
        assert status == 200, raw
        assert time.monotonic() - started < 5
    finally:
        for sock in silent:
            sock.close()
        process.terminate()
        try:
            _, log = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            finish(process)
            raise
    # asyncio says "socket.accept() out of system resource" once per failed accept.
    assert log.count("out of system resource") < 5, log[-2000:]


def test_a_connection_that_sends_no_headers_is_closed(
    make_proxy: MakeProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "HEADER_TIMEOUT_S", 1.0)
    live = make_proxy()
    host, port = live.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n")  # never finished
        answer = sock.recv(65536)
        waited = time.monotonic() - started
    assert 0.8 < waited < 3
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["type"] == "invalid_request_error"


def test_an_idle_kept_alive_connection_is_closed(
    make_proxy: MakeProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "KEEPALIVE_TIMEOUT_S", 1.0)
    live = make_proxy()
    host, port = live.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        started = time.monotonic()
        received = b""
        while data := sock.recv(65536):  # the answer, then the close
            received += data
        waited = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 200 ")
    assert 0.8 < waited < 3


def test_the_connection_cap_follows_the_fd_limit() -> None:
    assert connection_cap(256) < 256 // 2
    assert connection_cap(1024) < 1024 // 2
    assert connection_cap(1_000_000) == connection_cap(10_000_000)  # a fixed ceiling


# ------------------------------------------------------------------ one line per failure


@pytest.mark.allow_warnings  # the 500's summary line is a WARNING
def test_a_bug_in_a_handler_is_one_log_line_without_a_traceback(
    proxy: LiveProxy, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.server.messages import exchange

    def broken(*args: object) -> object:
        empty: dict[str, object] = {}
        return empty["missing"]

    monkeypatch.setattr(exchange, "measure_request", broken)
    caplog.set_level(logging.INFO, logger="app")
    status, headers, raw = post(proxy, ask("hi"))
    assert status == 500
    error = json.loads(raw)["error"]
    assert error["type"] == "api_error"
    assert "KeyError at test_bounds.py" not in error["message"]  # our own frame is named
    assert "KeyError at exchange.py:" in error["message"]
    lines = [r for r in caplog.records if r.name.startswith("app") and r.levelno > logging.DEBUG]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert headers["request-id"] in lines[0].getMessage()
    no_tracebacks(caplog)
