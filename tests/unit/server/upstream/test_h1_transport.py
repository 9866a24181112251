"""H1Transport against a scripted HTTP/1.1 server on 127.0.0.1: the pool, the body reader,
time limits and the wording of failures (the fault matrix runs it through the proxy too)."""

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from app.core.errors import UpstreamUnavailable
from app.server.network import Network
from app.server.upstream import h1_transport
from app.server.upstream.h1_transport import BUFFER_HIGH, H1Transport
from app.server.upstream.transport import RawResponse, ReadFailure

Served = tuple["ScriptedServer", str]  # the server, and the URL to ask it at
# What the scripted server does with one request: writes to the client (it may sleep,
# close, send garbage). It is given the request's head and body.
Script = Callable[[asyncio.StreamWriter, bytes, bytes], Awaitable[None]]


class ScriptedServer:
    def __init__(self) -> None:
        self.scripts: list[Script] = []
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []
        self.closed_by_client = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                await self.scripts.pop(0)(writer, head, body)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_client += 1
        finally:
            writer.close()


def answer(body: bytes = b'{"ok":true}', *, extra: str = "", status: str = "200 OK") -> Script:
    async def script(writer: asyncio.StreamWriter, head: bytes, req: bytes) -> None:
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    return script


def raw(*pieces: bytes, pause_s: float = 0.0, close: bool = False) -> Script:
    async def script(writer: asyncio.StreamWriter, head: bytes, req: bytes) -> None:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            if pause_s:
                await asyncio.sleep(pause_s)
        if close:
            writer.close()

    return script


@pytest.fixture
async def server() -> AsyncIterator[tuple[ScriptedServer, str]]:
    scripted = ScriptedServer()
    listening = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    yield scripted, f"http://127.0.0.1:{port}/v1/chat/completions"
    listening.close()


@pytest.fixture
async def transport() -> AsyncIterator[H1Transport]:
    made = H1Transport(connect_timeout_s=2, read_timeout_s=0.5, deadline_s=5)
    await made.start()
    yield made
    await made.close()


async def read_all(response: RawResponse) -> bytes:
    content = response.content
    pieces = []
    while data := await content.readany():
        pieces.append(data)
    return b"".join(pieces)


async def send(transport: H1Transport, url: str, body: bytes = b"{}") -> RawResponse:
    return await transport.send("POST", url, {"Content-Type": "application/json"}, body)


async def test_a_kept_alive_connection_is_used_again(
    server: Served, transport: H1Transport
) -> None:
    scripted, url = server
    scripted.scripts += [answer(), answer(), answer()]
    for _ in range(3):
        response = await send(transport, url, b'{"a":1}')
        assert (response.status, await read_all(response)) == (200, b'{"ok":true}')
        response.release()
    assert scripted.connections == 1 and transport.connections_in_use() == 0
    head, body = scripted.requests[0]
    assert body == b'{"a":1}'
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Content-Length: 7\r\n" in head and b"User-Agent: nimbridge/" in head


async def test_status_headers_and_content_type_are_the_wire_s(
    server: Served, transport: H1Transport
) -> None:
    scripted, url = server
    scripted.scripts.append(answer(extra="Retry-After: 7\r\n", status="429 Too Many Requests"))
    response = await send(transport, url)
    assert response.status == 429 and response.headers["retry-after"] == "7"
    assert response.content_type == "application/json"
    await read_all(response)
    response.release()


async def test_a_chunked_stream_comes_as_it_is_sent(server: Served, transport: H1Transport) -> None:
    scripted, url = server
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    head += b"Transfer-Encoding: chunked\r\n\r\n"
    chunks = (b"5\r\nhello\r\n", b"6\r\n world\r\n", b"0\r\n\r\n")
    scripted.scripts.append(raw(head, *chunks, pause_s=0.02))
    scripted.scripts.append(answer())
    response = await send(transport, url)
    content = response.content
    assert response.content_type == "text/event-stream"
    assert [await content.readany(), await content.readany(), await content.readany()] == [
        b"hello",
        b" world",
        b"",
    ]
    assert content.at_eof()
    response.release()
    await read_all(await send(transport, url))
    assert scripted.connections == 1  # read to its end: used again


async def test_an_answer_without_a_length_ends_with_its_connection(
    server: Served, transport: H1Transport
) -> None:
    scripted, url = server
    scripted.scripts.append(raw(b"HTTP/1.1 200 OK\r\n\r\nall of ", b"it", pause_s=0.02, close=True))
    response = await send(transport, url)
    assert await read_all(response) == b"all of it"
    response.release()
    assert transport.connections_in_use() == 0


async def test_connection_close_and_half_read_answers_are_not_used_again(
    server: Served, transport: H1Transport
) -> None:
    scripted, url = server
    scripted.scripts += [answer(extra="Connection: close\r\n"), answer(b"x" * 100_000), answer()]
    response = await send(transport, url)
    await read_all(response)
    response.release()
    response = await send(transport, url)
    await response.content.read(10)
    response.release()  # half read: closed, which aborts it
    await read_all(await send(transport, url))
    assert scripted.connections == 3


async def test_an_informational_answer_is_skipped(server: Served, transport: H1Transport) -> None:
    scripted, url = server
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    scripted.scripts.append(raw(b"HTTP/1.1 100 Continue\r\n\r\n" + ok))
    response = await send(transport, url)
    assert (response.status, await read_all(response)) == (200, b"ok")


async def test_a_gzip_body_is_read_decoded(server: Served, transport: H1Transport) -> None:
    scripted, url = server
    zipped = gzip.compress(b'{"zipped":true}')
    scripted.scripts.append(answer(zipped, extra="Content-Encoding: gzip\r\n"))
    response = await send(transport, url)
    assert await read_all(response) == b'{"zipped":true}'


async def test_silence_before_the_answer_and_in_the_body_is_worded(
    server: Served, transport: H1Transport
) -> None:
    scripted, url = server
    scripted.scripts.append(raw(b"", pause_s=1.0))
    with pytest.raises(UpstreamUnavailable, match=r"did not answer in time \(read timeout 0.5 s\)"):
        await send(transport, url)
    assert transport.connections_in_use() == 0
    scripted.scripts.append(raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", pause_s=1.0))
    response = await send(transport, url)
    assert await response.content.readany() == b"half"
    with pytest.raises(transport.read_errors) as caught:
        await response.content.readany()
    assert transport.read_failure(caught.value) is ReadFailure.SILENCE
    response.release()


async def test_the_deadline_ends_a_slow_drip(server: Served) -> None:
    scripted, url = server
    transport = H1Transport(connect_timeout_s=2, read_timeout_s=0.5, deadline_s=0.4)
    await transport.start()
    try:
        drip = [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", *[b"x"] * 20]
        scripted.scripts.append(raw(*drip, pause_s=0.1))
        response = await send(transport, url)
        with pytest.raises(transport.read_errors) as caught:
            await read_all(response)
        assert transport.read_failure(caught.value) is ReadFailure.DEADLINE
        response.release()
        scripted.scripts.append(raw(b"", pause_s=1.0))
        with pytest.raises(UpstreamUnavailable, match="did not finish within 0.4 s"):
            await send(transport, url)
    finally:
        await transport.close()


async def test_a_body_cut_short_is_a_dropped_connection(
    server: Served, transport: H1Transport
) -> None:
    scripted, url = server
    scripted.scripts.append(raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", close=True))
    response = await send(transport, url)
    with pytest.raises(transport.read_errors) as caught:
        await read_all(response)
    assert transport.read_failure(caught.value) is ReadFailure.DROPPED


async def test_no_answer_at_all_and_a_malformed_one_are_worded(
    server: Served, transport: H1Transport
) -> None:
    scripted, url = server
    scripted.scripts.append(raw(close=True))
    with pytest.raises(UpstreamUnavailable, match="closed the connection before answering") as no:
        await send(transport, url)
    assert no.value.retryable
    scripted.scripts.append(raw(b"NOT HTTP AT ALL\r\n\r\n"))
    with pytest.raises(UpstreamUnavailable, match="failed before it answered"):
        await send(transport, url)
    assert transport.connections_in_use() == 0


async def test_a_big_body_is_not_read_faster_than_it_is_taken(
    server: Served, transport: H1Transport
) -> None:
    scripted, url = server
    body = bytes(range(256)) * 16_384  # 4 MB
    scripted.scripts.append(answer(body))
    response = await send(transport, url)
    await asyncio.sleep(0.2)  # the server has written all it could; we read nothing
    buffered = response.content._buffered  # type: ignore[attr-defined]
    assert buffered <= BUFFER_HIGH + 256 * 1024
    assert await read_all(response) == body


async def test_requests_past_the_limit_wait_for_a_connection(server: Served) -> None:
    scripted, url = server
    transport = H1Transport(connect_timeout_s=2, read_timeout_s=2, limit=1)
    await transport.start()
    try:
        scripted.scripts += [answer(), answer()]
        first = await send(transport, url)
        second = asyncio.ensure_future(send(transport, url))
        await asyncio.sleep(0.05)
        assert not second.done()  # waiting for the one slot
        await read_all(first)
        first.release()
        await read_all(await second)
    finally:
        await transport.close()


async def test_an_idle_connection_is_dropped_after_the_keep_alive(
    server: Served,
    transport: H1Transport,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scripted, url = server
    monkeypatch.setattr(h1_transport, "KEEPALIVE_S", 0.05)
    scripted.scripts += [answer(), answer()]
    await read_all(await send(transport, url))
    await asyncio.sleep(0.1)
    await read_all(await send(transport, url))
    assert scripted.connections == 2


async def test_a_cancelled_request_closes_its_connection_and_its_slot(
    server: Served, transport: H1Transport
) -> None:
    scripted, url = server
    scripted.scripts.append(raw(b"", pause_s=0.1))
    task = asyncio.ensure_future(send(transport, url))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert transport.connections_in_use() == 0
    await asyncio.sleep(0.2)  # the server, done waiting, finds the connection closed
    assert scripted.closed_by_client == 1


async def test_a_header_with_a_line_break_is_refused(
    server: Served, transport: H1Transport
) -> None:
    _, url = server
    with pytest.raises(UpstreamUnavailable, match="holds a line break"):
        await transport.send("POST", url, {"Authorization": "Bearer a\r\nX: b"}, b"{}")


async def test_refused_and_unresolvable_hosts_are_worded(transport: H1Transport) -> None:
    free = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = free.sockets[0].getsockname()[1]
    free.close()
    await free.wait_closed()
    with pytest.raises(UpstreamUnavailable, match="connection refused") as refused:
        await send(transport, f"http://127.0.0.1:{port}/v1/chat/completions")
    assert refused.value.retryable
    with pytest.raises(UpstreamUnavailable, match="cannot resolve the upstream host"):
        await send(transport, "http://no-such-host.invalid/v1/chat/completions")


async def test_a_proxied_url_goes_through_aiohttp() -> None:
    network = Network(proxy_setting="http://127.0.0.1:9")  # nothing listens there
    transport = H1Transport(connect_timeout_s=1, read_timeout_s=1, network=network)
    await transport.start()
    try:
        with pytest.raises(UpstreamUnavailable, match="proxy"):
            await send(transport, "http://upstream.example/v1/chat/completions")
    finally:
        await transport.close()


def test_urls_are_taken_apart_as_yarl_would() -> None:
    target = h1_transport._target_of("https://Bücher.example:8443/v1/a b?x=1 2")
    assert (target.host, target.port) == ("xn--bcher-kva.example", 8443)
    assert target.host_header == "xn--bcher-kva.example:8443"
    assert target.path == "/v1/a%20b?x=1%202"
    assert h1_transport._target_of("http://[::1]/v1").host_header == "[::1]"
    with pytest.raises(UpstreamUnavailable, match="not an http"):
        h1_transport._target_of("ftp://example.com/v1")


async def test_slots_go_to_waiters_in_order_and_a_cancelled_one_passes_its_slot_on() -> None:
    slots = h1_transport._Slots(1)
    await slots.acquire()
    order: list[str] = []

    async def take(name: str) -> None:
        await slots.acquire()
        order.append(name)

    first, second, third = (asyncio.ensure_future(take(n)) for n in ("first", "second", "third"))
    await asyncio.sleep(0)
    second.cancel()  # still waiting: it leaves the queue
    await asyncio.sleep(0)
    slots.release()  # handed to `first`...
    first.cancel()  # ...which is cancelled before it runs: the slot goes on to `third`
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert order == ["third"] and first.cancelled() and second.cancelled()
    slots.release()
    await slots.acquire()  # free again: taken at once
