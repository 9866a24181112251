"""Who may talk to the proxy: Host (DNS rebinding), Origin (web pages), CORS, load,
body size, and listening beyond loopback. Real server, real HTTP on 127.0.0.1."""

import asyncio
import json
import re
import socket
from typing import Any

import anthropic
import pytest

from app.config.secrets import MemorySecretStore, ProviderKeys
from app.config.settings import Settings, SettingsError, is_loopback, settings_from_mapping
from app.server.access import UnsafeBindError, host_allowed
from app.server.app import ProxyServer
from tests.fake_upstream import (
    after,
    completion,
    http_request,
    reply_json,
    reply_stream,
    text_stream,
)
from tests.integration.conftest import MakeProxy

MODEL = "claude-sonnet-4-6"
HELLO: list[Any] = [{"role": "user", "content": "hi"}]
BODY = json.dumps({"model": MODEL, "max_tokens": 5, "messages": HELLO}).encode()


def post(url: str, key: str, **headers: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    status, got, body = http_request(
        url + "/v1/messages",
        "POST",
        body=BODY,
        headers={"content-type": "application/json", "x-api-key": key, **headers},
    )
    return status, got, json.loads(body) if body else {}


def raw_host(port: int, host: str, key: str) -> bytes:
    """A request with exactly this Host header (urllib would write its own)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            (
                f"POST /v1/messages HTTP/1.1\r\nHost: {host}\r\nx-api-key: {key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            + BODY
        )
        sock.settimeout(10)
        seen = b""
        while data := sock.recv(65536):
            seen += data
    return seen


# ------------------------------------------------------------------ Host


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:8787", True),
        ("localhost:8787", True),
        ("LOCALHOST", True),
        ("[::1]:8787", True),
        ("192.168.1.20:8787", True),  # an address: no DNS name to rebind
        ("evil.example:8787", False),
        ("127.0.0.1.nip.io:8787", False),
        ("localhost.evil.example", False),
        ("mybox.lan:8787", False),
        (None, True),
    ],
)
def test_host_rule(host: str | None, allowed: bool) -> None:
    assert host_allowed(host, Settings()) is allowed


def test_allowed_hosts_add_names() -> None:
    settings = Settings(allowed_hosts=("mybox.lan",))
    assert host_allowed("MyBox.lan:8787", settings)
    assert not host_allowed("otherbox.lan", settings)


def test_dns_rebinding_is_refused_with_an_anthropic_error(make_proxy: MakeProxy) -> None:
    proxy = make_proxy()
    port = proxy.server.port
    assert port is not None
    refused = raw_host(port, f"attacker.example:{port}", proxy.client_key)
    head, _, body = refused.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403")
    error = json.loads(body)
    assert error["type"] == "error" and error["error"]["type"] == "permission_error"
    assert "allowed_hosts" in error["error"]["message"]
    assert proxy.upstream.chat_requests == []  # never reached the upstream
    assert raw_host(port, f"localhost:{port}", proxy.client_key).startswith(b"HTTP/1.1 200")


# ------------------------------------------------------------------ Origin and CORS


def test_a_web_page_is_refused_by_default(make_proxy: MakeProxy) -> None:
    proxy = make_proxy()
    status, headers, body = post(proxy.url, proxy.client_key, Origin="https://evil.example")
    assert status == 403 and body["error"]["type"] == "permission_error"
    assert "allowed_origins" in body["error"]["message"]
    assert "Access-Control-Allow-Origin" not in headers
    assert proxy.upstream.chat_requests == []


def test_an_allowed_origin_gets_cors_on_answers_and_streams(make_proxy: MakeProxy) -> None:
    origin = "https://chat.example"
    proxy = make_proxy(allowed_origins=(origin,))
    status, headers, body = http_request(
        proxy.url + "/v1/messages",
        "OPTIONS",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-api-key, anthropic-version",
        },
    )
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == origin
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "x-api-key" in headers["Access-Control-Allow-Headers"]

    status, headers, _ = post(proxy.url, proxy.client_key, Origin=origin)
    assert status == 200 and headers["Access-Control-Allow-Origin"] == origin

    proxy.upstream.enqueue(reply_stream(lambda body: text_stream(body, "hey")))
    client = proxy.client(default_headers={"Origin": origin})
    with client.messages.with_streaming_response.create(
        model=MODEL, max_tokens=5, messages=HELLO, stream=True
    ) as streamed:
        assert streamed.headers["access-control-allow-origin"] == origin
        text = "".join(
            event.delta.text
            for event in streamed.parse()
            if event.type == "content_block_delta" and event.delta.type == "text_delta"
        )
    assert text == "hey"

    status, _, _ = post(proxy.url, proxy.client_key, Origin="https://other.example")
    assert status == 403


# ------------------------------------------------------------------ limits


def test_a_body_over_the_limit_is_413_request_too_large(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(max_request_mb=1)
    big = "x" * (1024 * 1024 + 10)
    client = proxy.client()
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(
            model=MODEL, max_tokens=5, messages=[{"role": "user", "content": big}]
        )
    assert caught.value.status_code == 413
    error = caught.value.body
    assert isinstance(error, dict) and error["error"]["type"] == "request_too_large"
    assert "1 MB" in error["error"]["message"] and "max_request_mb" in error["error"]["message"]
    assert proxy.upstream.chat_requests == []


@pytest.mark.allow_warnings  # the 529 is logged as a warning
def test_too_many_at_once_get_529_with_retry_after(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(max_concurrent_requests=2)
    for _ in range(2):
        proxy.upstream.enqueue(after(3.0, reply_json(completion({}, "late"))))

    async def many() -> list[int]:
        client = proxy.async_client()
        try:

            async def one() -> int:
                try:
                    await client.messages.create(model=MODEL, max_tokens=50, messages=HELLO)
                except anthropic.APIStatusError as exc:
                    assert exc.response.headers["retry-after"] == "1"
                    assert isinstance(exc.body, dict)
                    assert exc.body["error"]["type"] == "overloaded_error"
                    return exc.status_code
                return 200

            first = [asyncio.ensure_future(one()) for _ in range(2)]
            # Both are at the slow upstream now (polled: a loaded machine is slow to get there).
            for _ in range(100):
                if len(proxy.upstream.chat_requests) >= 2:
                    break
                await asyncio.sleep(0.05)
            third = await one()
            return [*(await asyncio.gather(*first)), third]
        finally:
            await client.close()

    assert asyncio.run(many()) == [200, 200, 529]
    status, _, _ = http_request(proxy.url + "/health")
    assert status == 200


# ------------------------------------------------------------------ listening


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("127.1.2.3", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("", False)],
)  # fmt: skip
def test_loopback_rule(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.allow_warnings  # with a key: a warning that other machines can reach us
def test_listening_on_the_network_needs_a_proxy_key() -> None:
    settings = Settings(host="0.0.0.0", port=0)
    keys = ProviderKeys(MemorySecretStore(), env={})
    with pytest.raises(UnsafeBindError, match="without a proxy key"):
        asyncio.run(ProxyServer(settings, keys, None).start())

    async def with_key() -> str:
        server = ProxyServer(settings, keys, "a-proxy-key")
        try:
            return await server.start()
        finally:
            await server.stop()

    assert asyncio.run(with_key()).startswith("http://0.0.0.0:")


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"allowed_origins": ["https://a.example/path"]}, "allowed_origins[0]"),
        ({"allowed_origins": ["a.example"]}, "allowed_origins[0]"),
        ({"allowed_hosts": [""]}, "allowed_hosts[0]"),
        ({"max_request_mb": 0}, "max_request_mb"),
        ({"max_concurrent_requests": 0}, "max_concurrent_requests"),
    ],
)
def test_guard_settings_are_validated(data: dict[str, Any], where: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(f"'{where}'")):
        settings_from_mapping(data)


def test_serve_on_the_network_without_a_key_exits_with_one_line() -> None:
    from tests.integration.test_cli import spawn

    process = spawn("serve", "--host", "0.0.0.0", "--port", "0")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert err.strip().startswith("nimbridge: refusing to listen on 0.0.0.0 without a proxy key")
    assert len(err.strip().splitlines()) == 1 and out == ""
