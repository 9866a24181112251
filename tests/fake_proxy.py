"""A small HTTP proxy on 127.0.0.1 for the tests: CONNECT tunnels and absolute-URI
requests, Basic authentication when asked for, every request line recorded.

Bounded: it listens on loopback only, reads at most 16 KB of a request head, and
connects only to loopback addresses: names resolve through `hosts` (a test's own
table, standing in for the proxy's DNS), anything else is answered 502.
"""

import asyncio
import base64
import contextlib
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

MAX_HEAD_BYTES = 16 * 1024


@dataclass
class FakeProxy:
    hosts: dict[str, str] = field(default_factory=dict)  # name -> loopback address
    login: tuple[str, str] | None = None  # required Basic credentials, when set
    seen: list[str] = field(default_factory=list)  # request lines, in order
    refused_logins: int = 0
    port: int = 0
    open_writers: set[asyncio.StreamWriter] = field(default_factory=set)  # closed at the end

    _server: asyncio.Server | None = None

    async def start(self) -> "FakeProxy":
        self._server = await asyncio.start_server(self.handle, "127.0.0.1", 0, limit=MAX_HEAD_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self.open_writers):  # Server.close_clients() is 3.13's
            await _close(writer)
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _address(self, host: str) -> str | None:
        address = self.hosts.get(host, host)
        try:
            return address if ipaddress.ip_address(address).is_loopback else None
        except ValueError:
            return None

    def _authorised(self, headers: dict[str, str]) -> bool:
        if self.login is None:
            return True
        expected = base64.b64encode(":".join(self.login).encode()).decode()
        return headers.get("proxy-authorization", "") == f"Basic {expected}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_writers.add(writer)
        try:
            await self._serve(reader, writer)
        finally:
            self.open_writers.discard(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        request_line = lines[0]
        self.seen.append(request_line)
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        }
        if not self._authorised(headers):
            self.refused_logins += 1
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="tests"\r\n'
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await _close(writer)
            return
        method, target, _version = request_line.split(" ", 2)
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            path_head = b""
        else:  # http://host:port/path: forwarded in origin form, one request per connection
            scheme_less = target.split("://", 1)[1]
            authority, slash, path = scheme_less.partition("/")
            host, _, port = authority.rpartition(":") if ":" in authority else (authority, "", "80")
            kept = [line for line in lines[1:] if line and not line.lower().startswith("proxy-")]
            path_head = (
                f"{method} {slash}{path} HTTP/1.1\r\n" + "\r\n".join(kept) + "\r\n\r\n"
            ).encode("latin-1")
        address = self._address(host.strip("[]"))
        if address is None:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await _close(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(address, int(port))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await _close(writer)
            return
        self.open_writers.add(up_writer)
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            up_writer.write(path_head)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self.open_writers.discard(up_writer)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except ConnectionError:
        pass
    finally:
        await _close(sink)


async def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        writer.close()
        await writer.wait_closed()


@contextlib.asynccontextmanager
async def running_fake_proxy(
    hosts: dict[str, str] | None = None, login: tuple[str, str] | None = None
) -> AsyncIterator[FakeProxy]:
    proxy = await FakeProxy(hosts=dict(hosts or {}), login=login).start()
    try:
        yield proxy
    finally:
        await proxy.stop()
