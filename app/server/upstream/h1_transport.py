"""HTTP/1.1 straight to the upstream: keep-alive connections on asyncio's own transports,
answers read by httptools (llhttp, Node's HTTP parser, in C).

Why not aiohttp's client for this: a request through `ClientSession` costs about 80 us of
CPU on this path (URL objects, header multidicts, cookie jar, timer contexts, tracing
hooks), this about 40, most of it the two system calls; the proxy's own cost is what
issue 22 cut (tests/benchmarks/bench_outside.py). aiohttp keeps what it does well and we
would otherwise rewrite: every URL a proxy applies to goes through `AiohttpTransport`
(CONNECT tunnels, proxy logins, 407s), so this module never speaks to a proxy.

Invariants (those of `Transport`, transport.py):
- `send` raises only `UpstreamUnavailable`, in the words `AiohttpTransport` uses for the
  same failure (the tests hold both to them).
- Body reads raise only `read_errors`; `read_failure` tells them apart.
- A connection goes back to the pool only when its answer was read to the end and both
  sides keep it alive; a request cancelled, cut or half read closes its connection, which
  is what aborts the upstream's work.
- Bounded: at most `limit` connections in use (more requests wait for one), at most
  `IDLE_KEPT` idle ones, each dropped after `KEEPALIVE_S` unused; a body is buffered up
  to `BUFFER_HIGH` bytes before the socket stops being read.
"""

import asyncio
import errno
import socket
import ssl
import time
import zlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlsplit

import aiohappyeyeballs
import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from app import __version__
from app.core.errors import UpstreamUnavailable
from app.server.network import Network
from app.server.upstream.transport import (
    KEEPALIVE_S,
    AiohttpTransport,
    RawResponse,
    ReadFailure,
    closed_before_answer,
    past_deadline,
)

IDLE_KEPT = 64  # idle connections kept across all hosts; more are closed on release
BUFFER_HIGH = 256 * 1024  # stop reading the socket when this much body waits to be read
BUFFER_LOW = 64 * 1024  # and read it again below this
DNS_TTL_S = 300.0  # as aiohttp's connector (ttl_dns_cache)
HAPPY_EYEBALLS_DELAY_S = 0.25  # as aiohttp: IPv6 first, IPv4 a quarter second later
USER_AGENT = f"nimbridge/{__version__}"
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


class BodyReadError(Exception):
    """A body read that failed; the subclass says how (`read_failure`)."""


class BodyDropped(BodyReadError):
    """The connection ended before the body did."""


class BodySilence(BodyReadError):
    """Nothing came for the read timeout."""


class BodyPastDeadline(BodyReadError):
    """The whole call's deadline passed."""


class _NoAnswer(Exception):
    """The connection ended, or failed, before the answer's headers were complete."""

    def __init__(self, cause: BaseException | None = None) -> None:
        super().__init__(str(cause) if cause else "closed")
        self.cause = cause


@dataclass(frozen=True, slots=True)
class _Target:
    """One upstream URL, taken apart once."""

    scheme: str
    host: str  # for DNS and TLS: IDNA-encoded, no brackets
    port: int
    host_header: str
    path: str  # with the query
    base: str  # how a connect failure names it (the URL up to /chat/completions)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


@lru_cache(maxsize=256)
def _target_of(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UpstreamUnavailable(f"the upstream URL {url} is not an http:// or https:// URL")
    host = parts.hostname
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise UpstreamUnavailable(f"the upstream host {host} is not a valid name") from exc
    default = 443 if parts.scheme == "https" else 80
    try:
        port = parts.port or default
    except ValueError as exc:
        raise UpstreamUnavailable(f"the upstream URL {url} has an invalid port") from exc
    shown_host = f"[{host}]" if ":" in host else host
    host_header = shown_host if port == default else f"{shown_host}:{port}"
    # Percent-encoded where it is not already (as yarl does for aiohttp).
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_QUERY_SAFE)
    base = url.rsplit("/", 2)[0] if url.endswith("/completions") else url
    return _Target(parts.scheme, host, port, host_header, path, base)


class _Body:
    """The body of one answer as it arrives: `BodyReader` (transport.py)."""

    __slots__ = ("_buffered", "_chunks", "_conn", "_eof", "_error", "_waiter")

    def __init__(self, conn: "_Connection") -> None:
        self._conn = conn
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    # ------------------------------------------------ fed by the connection

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > BUFFER_HIGH:
            self._conn.pause_reading()
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        if not self._eof:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------ read by the client

    def at_eof(self) -> bool:
        return self._eof and not self._chunks

    async def readany(self) -> bytes:
        if not self._chunks:
            await self._wait()
            if not self._chunks:
                return b""
        if len(self._chunks) == 1:
            data = self._chunks.popleft()
        else:
            data = b"".join(self._chunks)
            self._chunks.clear()
        self._took(len(data))
        return data

    async def read(self, n: int) -> bytes:
        if not self._chunks:
            await self._wait()
            if not self._chunks:
                return b""
        data = self._chunks.popleft()
        if len(data) > n:
            data, rest = data[:n], data[n:]
            self._chunks.appendleft(rest)
        self._took(len(data))
        return data

    def _took(self, size: int) -> None:
        self._buffered -= size
        if self._buffered < BUFFER_LOW:
            self._conn.resume_reading()

    async def _wait(self) -> None:
        """Until something arrives, the body ends or fails (raised), within the read
        timeout and the deadline."""
        while not self._chunks and not self._eof:
            if self._error is not None:
                raise self._error
            conn = self._conn
            loop = conn.loop
            timeout: float = conn.read_timeout_s
            error: type[Exception] = BodySilence
            deadline_at = conn.deadline_at
            if deadline_at is not None and deadline_at - loop.time() < timeout:
                timeout, error = deadline_at - loop.time(), BodyPastDeadline
            if timeout <= 0:
                raise error()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(timeout, _expire, waiter, error)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        if self._error is not None and not self._chunks and not self._eof:
            raise self._error


def _expire(waiter: "asyncio.Future[None]", error: type[Exception]) -> None:
    """A timer's end: the wait raises `error` (a task's own cancellation stays one)."""
    if not waiter.done():
        waiter.set_exception(error())


class _Connection(asyncio.Protocol):
    """One keep-alive connection: the request written, the answer parsed as it comes."""

    def __init__(self, owner: "H1Transport", target: _Target) -> None:
        self.owner = owner
        self.target = target
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.read_timeout_s = owner.read_timeout_s
        self.deadline_at: float | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._paused = False
        self._response: H1Response | None = None
        self._header_pairs: list[tuple[str, str]] = []
        self._headers_waiter: asyncio.Future[None] | None = None
        self._complete = False
        self._close_delimited = False
        self._informational = False

    # ------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(_NoAnswer(exc), BodyDropped(f"malformed answer ({exc})"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        response = self._response
        if response is None or self._complete:
            return
        if response.status and self._close_delimited and exc is None:
            self._complete = True  # an answer without a length ends where the connection does
            response.body.feed_eof()
            return
        self._fail(_NoAnswer(exc), BodyDropped("the connection ended before the body did"))

    # ------------------------------------------------------------ httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_pairs.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # 100 Continue, 103 Early Hints: the answer is yet to come
            self._informational = True
            self._header_pairs = []
            return
        response = self._response
        if response is None:  # an answer nobody asked for: not a connection to keep
            self.close()
            return
        headers = CIMultiDictProxy(CIMultiDict(self._header_pairs))
        response.status, response.headers = status, headers
        response.keep_alive = self._parser.should_keep_alive()
        self._close_delimited = "Content-Length" not in headers and "chunked" not in (
            headers.get("Transfer-Encoding", "").lower()
        )
        encoding = headers.get("Content-Encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):  # we never ask for it; some send it
            response.body = _Decompressing(response.body, encoding)
        waiter = self._headers_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_body(self, data: bytes) -> None:
        if self._response is not None and not self._informational:
            self._response.body.feed(data)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        self._complete = True
        if self._response is not None:
            self._response.body.feed_eof()

    # ------------------------------------------------------------ used by the transport

    async def exchange(self, request: bytes, response: "H1Response") -> None:
        """Write the request; return once the answer's headers are in."""
        assert self.transport is not None
        self._response = response
        self._header_pairs = []
        self._complete = self._close_delimited = self._informational = False
        waiter = self._headers_waiter = self.loop.create_future()
        self.transport.write(request)
        timeout = self.read_timeout_s
        error: type[Exception] = _Silent
        if self.deadline_at is not None and self.deadline_at - self.loop.time() < timeout:
            timeout, error = self.deadline_at - self.loop.time(), _PastDeadline
        timer = self.loop.call_later(max(timeout, 0.0), _expire, waiter, error)
        try:
            await waiter
        finally:
            timer.cancel()
            self._headers_waiter = None

    def finished(self) -> bool:
        """Read to the end, and both sides keep the connection: fit to be used again."""
        response = self._response
        return (
            not self.closed
            and self._complete
            and response is not None
            and response.keep_alive
            and response.body.at_eof()
        )

    def reset(self) -> None:
        self._response = None
        self.deadline_at = None
        if self._paused:
            self.resume_reading()

    def pause_reading(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, before_headers: BaseException, in_body: BaseException) -> None:
        waiter = self._headers_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(before_headers)
        elif self._response is not None:
            self._response.body.fail(in_body)


class _Silent(Exception):
    """No answer within the read timeout."""


class _PastDeadline(Exception):
    """No answer before the deadline."""


class _Decompressing:
    """A body sent gzip- or deflate-encoded, read decoded (`BodyReader`)."""

    __slots__ = ("_body", "_decoder")

    def __init__(self, body: _Body, encoding: str) -> None:
        self._body = body
        self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS if "gzip" in encoding else 0)

    def feed(self, data: bytes) -> None:
        self._body.feed(data)

    def feed_eof(self) -> None:
        self._body.feed_eof()

    def fail(self, error: BaseException) -> None:
        self._body.fail(error)

    def at_eof(self) -> bool:
        return self._body.at_eof()

    async def readany(self) -> bytes:
        while True:
            data = await self._body.readany()
            try:
                out = self._decoder.decompress(data) if data else self._decoder.flush()
            except zlib.error as exc:
                raise BodyDropped(f"the answer's compressed body is damaged ({exc})") from exc
            if out or not data:
                return out

    async def read(self, n: int) -> bytes:
        return (await self.readany())[:n]  # error bodies, cut at their limit anyway


class H1Response:
    """`RawResponse` (transport.py) for one answer on one connection."""

    __slots__ = ("_conn", "_owner", "body", "headers", "keep_alive", "status")

    def __init__(self, conn: _Connection, owner: "H1Transport") -> None:
        self._conn: _Connection | None = conn
        self._owner = owner
        self.status = 0
        self.headers: Mapping[str, str] = CIMultiDictProxy(CIMultiDict())
        self.keep_alive = False
        self.body: Any = _Body(conn)

    @property
    def content_type(self) -> str:
        value = self.headers.get("Content-Type")
        if not value:
            return "application/octet-stream"
        return value.split(";", 1)[0].strip().lower()

    @property
    def content(self) -> Any:
        return self.body

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._owner.give_back(conn)


class _Slots:
    """A count of connections in use, bounded, FIFO for the waiters. asyncio.Semaphore's
    `acquire` scans its waiters even when a slot is free: a cost on every request."""

    __slots__ = ("_free", "_waiters")

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # `release` hands its slot straight to the first waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot, then cancelled: pass it on
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


class H1Transport:
    """`Transport` (transport.py): direct URLs here, proxied ones through aiohttp."""

    read_errors: tuple[type[Exception], ...] = (
        BodyReadError,
        *AiohttpTransport.read_errors,
    )

    def __init__(
        self,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        deadline_s: float | None = None,
        network: Network | None = None,
        limit: int = 256,
    ) -> None:
        self.network = network or Network()
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.deadline_s = deadline_s
        self.proxied = AiohttpTransport(
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            deadline_s=deadline_s,
            network=self.network,
        )
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._idle_count = 0
        self._in_use: set[_Connection] = set()
        self._slots = _Slots(limit)
        self._dns: dict[tuple[str, int], tuple[float, list[Any]]] = {}
        self._direct: dict[str, bool] = {}  # URL -> no proxy applies (the Network is fixed)
        self._started = False

    async def start(self) -> None:
        await self.proxied.start()
        self._started = True

    async def close(self) -> None:
        self._started = False
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        self._idle_count = 0
        for conn in list(self._in_use):
            conn.close()
        self._in_use.clear()
        await self.proxied.close()

    def connections_in_use(self) -> int:
        """Connections handed out and not given back (both paths): the leak tests' count."""
        return len(self._in_use) + self.proxied.connections_in_use()

    def read_failure(self, exc: Exception) -> ReadFailure | None:
        if isinstance(exc, BodyDropped):
            return ReadFailure.DROPPED
        if isinstance(exc, BodySilence):
            return ReadFailure.SILENCE
        if isinstance(exc, BodyPastDeadline):
            return ReadFailure.DEADLINE
        return self.proxied.read_failure(exc)

    async def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> RawResponse:
        direct = self._direct.get(url)
        if direct is None:
            direct = self.network.proxy_for(url) is None
            if len(self._direct) < 1024:
                self._direct[url] = direct
        if not direct:
            return await self.proxied.send(method, url, headers, body)
        if not self._started:
            raise RuntimeError("UpstreamClient.start() was not awaited")
        target = _target_of(url)
        request = _request_bytes(method, target, headers, body)
        loop = asyncio.get_running_loop()
        deadline_at = loop.time() + self.deadline_s if self.deadline_s is not None else None
        await self._slots.acquire()
        handed_out = False
        try:
            conn = self._idle_connection(target, loop.time())
            if conn is None:
                conn = await self._connect(target, deadline_at)
            self._in_use.add(conn)
            conn.deadline_at = deadline_at
            response = H1Response(conn, self)
            try:
                await conn.exchange(request, response)
            except _NoAnswer as exc:
                # A kept-alive connection the server closed just then, most often: the
                # call policy retries that (closed_before_answer), as with aiohttp.
                self._discard(conn)
                raise self._no_answer(target, exc.cause) from exc
            except BaseException:  # cancelled, timed out: the request is abandoned
                self._discard(conn)
                raise
            handed_out = True
            return response
        except _Silent as exc:
            raise UpstreamUnavailable(
                f"the upstream {target.host} did not answer in time (read timeout "
                f"{self.read_timeout_s:g} s); it may be overloaded, try again",
                status=504,
            ) from exc
        except _PastDeadline as exc:
            raise past_deadline(f"the upstream {target.host}", self.deadline_s) from exc
        finally:
            if not handed_out:
                self._slots.release()

    # ------------------------------------------------------------------ the pool

    def give_back(self, conn: _Connection) -> None:
        """A released response's connection (and its slot): kept when fit for another
        request, else closed."""
        if conn not in self._in_use:
            return  # released twice, or the transport closed meanwhile
        self._in_use.discard(conn)
        self._slots.release()
        if not conn.finished() or not self._started or self._idle_count >= IDLE_KEPT:
            conn.close()
            return
        conn.reset()
        conn.idle_since = conn.loop.time()
        self._idle.setdefault(conn.target.key, []).append(conn)
        self._idle_count += 1

    def _idle_connection(self, target: _Target, now: float) -> _Connection | None:
        conns = self._idle.get(target.key)
        while conns:
            conn = conns.pop()  # the most recently used: the least likely to be closed
            self._idle_count -= 1
            if not conn.closed and now - conn.idle_since < KEEPALIVE_S:
                return conn
            conn.close()
        return None

    def _discard(self, conn: _Connection) -> None:
        """A connection that failed in `send`: closed (its slot is `send`'s to free)."""
        conn.close()
        self._in_use.discard(conn)

    async def _connect(self, target: _Target, deadline_at: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        timeout = self.connect_timeout_s
        if deadline_at is not None:
            timeout = min(timeout, max(deadline_at - loop.time(), 0.0))
        tls = self.network.ssl_context if target.scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                infos = await self._resolve(target)
                sock = await aiohappyeyeballs.start_connection(
                    infos, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY_S, interleave=1
                )
                try:
                    _, conn = await loop.create_connection(
                        lambda: _Connection(self, target),
                        sock=sock,
                        ssl=tls,
                        server_hostname=target.host if tls is not None else None,
                    )
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError as exc:
            raise UpstreamUnavailable(
                f"cannot connect to the upstream {target.host}: no answer to the connection "
                f"attempt within {self.connect_timeout_s:g} s (connect_timeout_s); is the "
                "host reachable, or is a firewall dropping the connection?",
                status=504,
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            raise UpstreamUnavailable(
                f"TLS certificate of {target.host} was rejected ({exc}); "
                "check the upstream URL or the system's CA certificates"
            ) from exc
        except ssl.SSLError as exc:
            raise UpstreamUnavailable(
                f"TLS handshake with {target.host} failed ({exc}); the server may not speak "
                "TLS on that port: check http:// versus https:// in the upstream URL"
            ) from exc
        except socket.gaierror as exc:
            raise UpstreamUnavailable(
                f"cannot resolve the upstream host {target.host}; check the upstream URL "
                "and your network connection"
            ) from exc
        except OSError as exc:
            refused = _refused(exc)
            reason = "connection refused" if refused else (exc.strerror or str(exc))
            raise UpstreamUnavailable(
                f"cannot connect to the upstream at {target.base} ({reason}); "
                "is it running and reachable?",
                retryable=refused,
            ) from exc
        return conn

    async def _resolve(self, target: _Target) -> list[Any]:
        key = (target.host, target.port)
        now = time.monotonic()
        cached = self._dns.get(key)
        if cached is not None and now - cached[0] < DNS_TTL_S:
            return cached[1]
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        if not infos:
            raise socket.gaierror(socket.EAI_NONAME, "no address")
        if len(self._dns) >= 256:
            self._dns.clear()
        self._dns[key] = (now, infos)
        return infos

    def _no_answer(self, target: _Target, cause: BaseException | None) -> UpstreamUnavailable:
        if cause is None or _closed_quietly(cause):
            return closed_before_answer(target.host)
        return UpstreamUnavailable(
            f"the connection to {target.host} failed before it answered ({cause})"
        )


def _closed_quietly(cause: BaseException | None) -> bool:
    """Closed, reset or broken: what a server that gave up on a kept-alive connection does."""
    return cause is None or (
        isinstance(cause, OSError) and cause.errno in (errno.ECONNRESET, errno.EPIPE)
    )


def _refused(exc: OSError) -> bool:
    # Happy eyeballs raises one OSError for all the addresses it tried, with their errno
    # when they agree.
    return isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED


def _request_bytes(
    method: str, target: _Target, headers: Mapping[str, str], body: bytes | None
) -> bytes:
    lines = [f"{method} {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n"]
    lines.append(f"User-Agent: {USER_AGENT}\r\n")
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise UpstreamUnavailable(f"the {name} header for the upstream holds a line break")
        lines.append(f"{name}: {value}\r\n")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}\r\n")
    lines.append("\r\n")
    head = "".join(lines).encode("utf-8")  # as aiohttp encodes headers
    return head + body if body else head
