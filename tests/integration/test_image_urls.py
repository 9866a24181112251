"""Images by URL under the `image_urls` setting, through the real server and the SDK.

An image server runs on two loopback addresses: 127.0.0.2 stands for "the internet"
(the fetcher is told to count it as public) and 127.0.0.1 for "the user's network",
which must stay out of reach unless `fetch_private_addresses` is set.
"""

import asyncio
import base64
import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from app.server.safe_fetch import FetchPolicy, SafeFetcher, public_only
from tests.fake_upstream import LoopThread
from tests.integration.conftest import LiveProxy, MakeProxy

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PUBLIC, PRIVATE = "127.0.0.2", "127.0.0.1"
SMALL_LIMIT = 64 * 1024


@dataclass
class ImageServer:
    port: int

    def url(self, address: str, path: str) -> str:
        return f"http://{address}:{self.port}{path}"


def _image_app(port_of: list[int]) -> web.Application:
    async def png(request: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html>not an image</html>", content_type="text/html")

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)
        for _ in range(64):  # 4 MB with no Content-Length: only counting can stop it
            await response.write(b"\0" * 65536)
        return response

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(body=PNG, content_type="image/png")

    async def to_private(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://{PRIVATE}:{port_of[0]}/cat.png")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    app = web.Application()
    app.router.add_get("/cat.png", png)
    app.router.add_get("/page", page)
    app.router.add_get("/huge", huge)
    app.router.add_get("/slow", slow)
    app.router.add_get("/to-private", to_private)
    app.router.add_get("/loop", loop)
    return app


@pytest.fixture(scope="module")
def image_server(loop_thread: LoopThread) -> Iterator[ImageServer]:
    port_of: list[int] = []

    async def start() -> web.AppRunner:
        runner = web.AppRunner(_image_app(port_of))
        await runner.setup()
        with socket.socket() as probe:  # one free port, on both addresses
            probe.bind((PRIVATE, 0))
            port = probe.getsockname()[1]
        for address in (PUBLIC, PRIVATE):
            await web.TCPSite(runner, address, port).start()
        port_of.append(port)
        return runner

    runner = loop_thread.run(start())
    yield ImageServer(port_of[0])
    loop_thread.run(runner.cleanup())


def _public_for_tests(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    return None if str(address) == PUBLIC else public_only(address)


class _Names(AbstractResolver):
    """images.test is "on the internet"; rebind.test is a name that points inside."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = {"images.test": PUBLIC, "rebind.test": PRIVATE}[host]
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass


def _proxy(make_proxy: MakeProxy, image_urls: str, **settings: Any) -> LiveProxy:
    live = make_proxy(image_urls=image_urls, **settings)
    state = live.server.app_state
    state.fetcher = SafeFetcher(
        FetchPolicy(
            allow_private=live.server.settings.fetch_private_addresses,
            max_bytes=SMALL_LIMIT,
            timeout_s=1.0,
        ),
        resolver=_Names(),
        check=None if live.server.settings.fetch_private_addresses else _public_for_tests,
    )
    return live


def _ask(live: LiveProxy, url: str, *, in_tool_result: bool = False) -> Any:
    image = {"type": "image", "source": {"type": "url", "url": url}}
    content: list[Any] = [image, {"type": "text", "text": "what is this?"}]
    if in_tool_result:
        content = [{"type": "tool_result", "tool_use_id": "t1", "content": [image]}]
    messages: list[Any] = [{"role": "user", "content": content}]
    if in_tool_result:
        messages = [
            {"role": "user", "content": "look"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "shot", "input": {}}],
            },
            *messages,
        ]
    with anthropic.Anthropic(base_url=live.url, api_key=live.client_key, max_retries=0) as sdk:
        return sdk.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=messages)


def _upstream_image_urls(live: LiveProxy) -> list[str]:
    body = live.upstream.chat_requests[-1].body
    found = []
    for message in body["messages"]:
        if isinstance(message.get("content"), list):
            found += [p["image_url"]["url"] for p in message["content"] if "image_url" in p]
    return found


def test_pass_hands_the_url_to_the_provider(make_proxy: MakeProxy) -> None:
    live = make_proxy()  # the default
    _ask(live, "https://example.invalid/cat.png")
    assert _upstream_image_urls(live) == ["https://example.invalid/cat.png"]


@pytest.mark.parametrize("where", ["https://images.test/cat.png", f"http://{PUBLIC}/cat.png"])
def test_fetch_sends_the_image_inline(
    make_proxy: MakeProxy, image_server: ImageServer, where: str
) -> None:
    live = _proxy(make_proxy, "fetch")
    url = where.replace("https://images.test", f"http://images.test:{image_server.port}")
    url = url.replace(f"http://{PUBLIC}/", image_server.url(PUBLIC, "/"))
    _ask(live, url)
    expected = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert _upstream_image_urls(live) == [expected]
    _ask(live, url, in_tool_result=True)  # screenshots come back in tool results
    assert _upstream_image_urls(live) == [expected]


@pytest.mark.parametrize(
    ("path", "address", "words"),
    [
        pytest.param("/cat.png", PRIVATE, "127.0.0.1 is a loopback address", id="loopback"),
        pytest.param("/to-private", PUBLIC, "127.0.0.1 is a loopback address", id="redirect-in"),
        pytest.param("/cat.png", "rebind.test", "rebind.test (127.0.0.1) is a loopback", id="dns"),
        pytest.param("/huge", PUBLIC, f"is over {SMALL_LIMIT:,} bytes", id="too-big"),
        pytest.param("/slow", PUBLIC, "did not answer within 1 s", id="too-slow"),
        pytest.param("/page", PUBLIC, "is text/html, not an image", id="not-an-image"),
        pytest.param("/loop", PUBLIC, "more than 5 redirects", id="redirect-loop"),
        pytest.param("/missing", PUBLIC, "answered 404 Not Found", id="404"),
    ],
)
def test_fetch_refusals_are_clear_400s(
    make_proxy: MakeProxy, image_server: ImageServer, path: str, address: str, words: str
) -> None:
    live = _proxy(make_proxy, "fetch")
    before = len(live.upstream.chat_requests)
    with pytest.raises(anthropic.BadRequestError) as raised:
        _ask(live, image_server.url(address, path))
    message = raised.value.body["error"]["message"]  # type: ignore[index]
    assert message.startswith("messages.0.content.0.source.url: could not fetch the image")
    assert words in message
    assert len(live.upstream.chat_requests) == before  # nothing went upstream


def test_cloud_metadata_and_odd_schemes_are_refused(make_proxy: MakeProxy) -> None:
    live = make_proxy(image_urls="fetch")  # the real policy: public addresses only
    for url, words in [
        ("http://169.254.169.254/latest/meta-data/", "is a link-local address"),
        ("http://[::ffff:192.168.1.1]/x.png", "is a private-network address"),
        ("file:///etc/passwd", "is not an http(s) URL"),
    ]:
        with pytest.raises(anthropic.BadRequestError) as raised:
            _ask(live, url)
        assert words in raised.value.body["error"]["message"]  # type: ignore[index]


def test_private_addresses_when_the_user_allows_them(
    make_proxy: MakeProxy, image_server: ImageServer
) -> None:
    live = _proxy(make_proxy, "fetch", fetch_private_addresses=True)
    _ask(live, image_server.url(PRIVATE, "/cat.png"))
    assert _upstream_image_urls(live)[0].startswith("data:image/png;base64,")


def test_refuse_says_how_to_send_the_image(make_proxy: MakeProxy) -> None:
    live = make_proxy(image_urls="refuse")
    with pytest.raises(anthropic.BadRequestError) as raised:
        _ask(live, "https://example.invalid/cat.png")
    message = raised.value.body["error"]["message"]  # type: ignore[index]
    assert '"image_urls": "refuse"' in message and "send the image as base64" in message
