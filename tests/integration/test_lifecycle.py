"""Stopping and restarting drain: no new connections, a grace period for what runs, then a
well-formed error for what is left, the upstream request aborted and the port free."""

import asyncio
import concurrent.futures
import json
import logging
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic.types import MessageParam

from app.config.secrets import MemorySecretStore, ProviderKeys
from app.config.settings import Settings
from app.server.app import ProxyServer
from app.service import ProxyService, ServerState, ServiceStatus
from tests.anthropic_grammar import assert_anthropic_grammar
from tests.fake_upstream import FakeUpstream, LoopThread, hang, http_request, reply_stream
from tests.fake_upstream import text_stream as upstream_text
from tests.integration.conftest import UPSTREAM_KEY, LiveProxy, MakeProxy, track

HELLO: list[MessageParam] = [{"role": "user", "content": "hello"}]
MODEL = "claude-sonnet-4-6"
LONG = 200  # pieces of a stream that outlives any grace period here (0.05 s apart)


def slow_stream(pieces: int, delay: float = 0.05) -> Any:
    words = " ".join(f"w{n}" for n in range(pieces))
    return reply_stream(lambda body: upstream_text(body, words, pieces=pieces), delay=delay)


def post(proxy_url: str, key: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    headers = {"x-api-key": key, "content-type": "application/json"}
    return http_request(
        proxy_url + "/v1/messages", "POST", body=json.dumps(body).encode(), headers=headers
    )


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def refuses_connections(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
    return False


async def when_streaming(upstream: FakeUpstream, count: int = 1) -> None:
    """Until the upstream has answered `count` chat requests' first bytes (a stream is on)."""
    while len(upstream.chat_requests) < count:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # the first chunks are through the proxy by now


def stop_soon(loop_thread: LoopThread, proxy: LiveProxy) -> "concurrent.futures.Future[None]":
    """`proxy.server.stop()` on its loop, once a stream through it is under way."""

    async def stop() -> None:
        await when_streaming(proxy.upstream)
        await proxy.server.stop()

    return asyncio.run_coroutine_threadsafe(stop(), loop_thread.loop)


def test_a_stream_that_ends_within_the_grace_finishes_normally(
    make_proxy: MakeProxy, upstream: FakeUpstream, loop_thread: LoopThread
) -> None:
    proxy = make_proxy(shutdown_grace_s=10.0)
    upstream.enqueue(slow_stream(20))
    stopping = stop_soon(loop_thread, proxy)
    with proxy.client().messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == " ".join(f"w{n}" for n in range(20)) and final.stop_reason == "end_turn"
    stopping.result(10)
    assert refuses_connections(port_of(proxy.url))
    again = make_proxy(port=port_of(proxy.url))  # the same port binds again at once
    assert again.url == proxy.url


@pytest.mark.allow_warnings
def test_a_stream_that_outlives_the_grace_ends_with_an_error_event(
    make_proxy: MakeProxy,
    upstream: FakeUpstream,
    loop_thread: LoopThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = make_proxy(shutdown_grace_s=0.3)
    upstream.enqueue(slow_stream(LONG))
    stopping = stop_soon(loop_thread, proxy)
    with caplog.at_level(logging.INFO, logger="app"):
        status, headers, raw = post(
            proxy.url,
            proxy.client_key,
            {"model": MODEL, "max_tokens": 100, "stream": True, "messages": HELLO},
        )
        stopping.result(10)
    assert status == 200
    events = sse_events(raw)  # the whole body arrived: a chunked end, not a cut connection
    assert_anthropic_grammar(events)
    assert any(e["type"] == "content_block_delta" for e in events)  # it was mid-stream
    error = events[-1]
    assert error["type"] == "error" and error["error"]["type"] == "overloaded_error"
    assert "NimBridge is stopping" in error["error"]["message"]
    assert upstream.cancelled.wait(5)  # the upstream request was aborted, not read on
    request_id = headers["request-id"]
    ended = [r for r in caplog.records if request_id in r.getMessage()]
    assert len(ended) == 1 and ended[0].levelno == logging.WARNING
    assert "NimBridge is stopping" in ended[0].getMessage()
    again = make_proxy(port=port_of(proxy.url))
    assert again.url == proxy.url


@pytest.mark.allow_warnings
def test_the_sdk_raises_a_clear_error_for_a_stream_cut_by_the_stop(
    make_proxy: MakeProxy, upstream: FakeUpstream, loop_thread: LoopThread
) -> None:
    proxy = make_proxy(shutdown_grace_s=0.3)
    upstream.enqueue(slow_stream(LONG))
    stopping = stop_soon(loop_thread, proxy)
    received = ""
    client = proxy.client()
    with (
        pytest.raises(anthropic.APIStatusError, match="NimBridge is stopping") as caught,
        client.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream,
    ):
        for text in stream.text_stream:
            received += text
    stopping.result(10)
    assert received.startswith("w0")
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": caught.value.body["error"]["message"]},  # type: ignore[index]
    }


@pytest.mark.allow_warnings
def test_a_waiting_non_stream_request_gets_529_and_new_connections_are_refused(
    make_proxy: MakeProxy, upstream: FakeUpstream, loop_thread: LoopThread
) -> None:
    proxy = make_proxy(shutdown_grace_s=1.0)
    upstream.enqueue(hang(30))
    refused: list[bool] = []

    async def stop() -> None:
        await when_streaming(upstream)
        stopping = asyncio.ensure_future(proxy.server.stop())
        await asyncio.sleep(0.1)  # well inside the grace: the request still runs
        refused.append(
            await asyncio.get_running_loop().run_in_executor(
                None, refuses_connections, port_of(proxy.url)
            )
        )
        await stopping

    stopping = asyncio.run_coroutine_threadsafe(stop(), loop_thread.loop)
    status, headers, raw = post(
        proxy.url, proxy.client_key, {"model": MODEL, "max_tokens": 10, "messages": HELLO}
    )
    stopping.result(10)
    assert refused == [True]
    assert status == 529 and "request-id" in headers
    body = json.loads(raw)
    assert body["error"]["type"] == "overloaded_error"
    assert "NimBridge is stopping" in body["error"]["message"]
    assert upstream.cancelled.wait(5)


def test_a_second_server_on_a_taken_port_fails_and_the_first_keeps_serving(
    make_proxy: MakeProxy, loop_thread: LoopThread
) -> None:
    first = make_proxy()
    keys = ProviderKeys(MemorySecretStore(), env={})
    settings = replace(first.server.settings, port=port_of(first.url))
    second = ProxyServer(settings, keys, "other-key")
    with pytest.raises(OSError):
        loop_thread.run(second.start())
    message = first.client().messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert message.content[0].type == "text"


@pytest.mark.allow_warnings
def test_a_restart_for_new_settings_drains_the_same_way(
    loop_thread: LoopThread, upstream: FakeUpstream, tmp_path: Path
) -> None:
    keys = ProviderKeys(MemorySecretStore(), env={})
    keys.set("nvidia", UPSTREAM_KEY)
    settings = Settings(host="127.0.0.1", port=0, shutdown_grace_s=0.3).with_overrides(
        upstream_url=upstream.base_url, model="fake/model"
    )
    service = ProxyService(settings, keys, settings_path=tmp_path / "settings.json")

    async def status() -> ServiceStatus:  # the registry's clock is the loop's
        return service.status()

    loop_thread.run(service.start())
    old_url = loop_thread.run(status()).base_url
    assert old_url is not None
    upstream.enqueue(slow_stream(LONG))

    async def restart() -> None:
        await when_streaming(upstream)
        await service.apply_settings(replace(service.settings, read_timeout_s=300.0))

    restarting = asyncio.run_coroutine_threadsafe(restart(), loop_thread.loop)
    try:
        _, _, raw = post(
            old_url, "any", {"model": MODEL, "max_tokens": 10, "stream": True, "messages": HELLO}
        )
        restarting.result(10)
        events = sse_events(raw)
        assert_anthropic_grammar(events)
        assert events[-1]["type"] == "error"
        assert events[-1]["error"]["type"] == "overloaded_error"
        assert "restarting" in events[-1]["error"]["message"]
        now = loop_thread.run(status())
        assert now.state is ServerState.RUNNING and now.base_url
        client = track(anthropic.Anthropic(base_url=now.base_url, api_key="x", max_retries=0))
        assert client.messages.create(model=MODEL, max_tokens=10, messages=HELLO).content
    finally:
        loop_thread.run(service.stop())


@pytest.mark.allow_warnings
def test_an_openai_pass_through_stream_beyond_the_grace_ends_with_its_error_shape(
    make_proxy: MakeProxy, upstream: FakeUpstream, loop_thread: LoopThread
) -> None:
    proxy = make_proxy(shutdown_grace_s=0.3)
    upstream.enqueue(slow_stream(LONG))
    stopping = stop_soon(loop_thread, proxy)
    status, _, raw = http_request(
        proxy.url + "/v1/chat/completions",
        "POST",
        body=json.dumps(
            {"model": "fake/model", "stream": True, "messages": [{"role": "user", "content": "x"}]}
        ).encode(),
        headers={"Authorization": f"Bearer {proxy.client_key}", "content-type": "application/json"},
    )
    stopping.result(10)
    assert status == 200
    last = sse_events(raw)[-1]
    assert (
        last == {"error": {"message": last["error"]["message"], "type": "overloaded_error"}}
        and "NimBridge is stopping" in last["error"]["message"]
    )
