"""The aiohttp runner, with Anthropic-shaped answers to requests aiohttp refuses itself.

aiohttp's HTTP parser refuses some requests before any middleware runs: a
request line or header longer than 8190 bytes, more than 128 headers, a
malformed request line. It answers them with its own plain-text 400 (echoing
the offending bytes, which may hold a key) and logs an ERROR with a traceback.
`ProxyRequestHandler.handle_error` answers them as every other error of ours
is answered, `{"type":"error","error":{...}}` with a `request-id`, says which
limit was exceeded, and logs one line in words.

Invariant: a limit of the parser answers 431 Request Header Fields Too Large
(type `invalid_request_error`, as every 4xx outside PROTOCOL.md's table); any
other unparseable request 400 `invalid_request_error`. The connection closes
after the answer, as aiohttp's does (the parser's state is unknown).

Connections are bounded too, so that sockets which never send a request cannot hold
the process's file descriptors (300 silent sockets under a 256-fd limit used to starve
every real request, and asyncio logged each failed accept):
- a new connection has `HEADER_TIMEOUT_S` to send its first request's headers, else
  it gets a 408 and is closed; a kept-alive connection idle for `KEEPALIVE_TIMEOUT_S`
  is closed (aiohttp's timer also bounds the headers of each later request);
- at most `connection_cap(fd limit)` connections are open: a new one past the cap
  closes the oldest idle connection (none in a request), or, when every one is in a
  request, is answered 529 `overloaded_error` with `retry-after: 1` and closed;
- what is closed this way is logged at DEBUG, with one INFO line a minute at most
  while the cap is reached; asyncio's accept errors likewise one a minute.
"""

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from app.core.errors import ProxyError
from app.server.bugs import describe, log_traceback
from app.server.records import new_request_id

log = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 10.0
KEEPALIVE_TIMEOUT_S = 60.0  # aiohttp's own default is 3630 s
LISTEN_BACKLOG = 64  # connections the kernel queues; each takes an fd once accepted
_MAX_CONNECTIONS = 1024
_FD_RESERVE = 64  # log files, the upstream and fetch pools' idle sockets, pipes
_LOG_EVERY_S = 60.0


def connection_cap(fd_limit: int) -> int:
    """How many client connections to keep open under `fd_limit` descriptors: each
    in-flight request also holds an upstream socket, and up to `LISTEN_BACKLOG` are
    accepted at once before any is counted."""
    if fd_limit < 0:  # RLIM_INFINITY
        return _MAX_CONNECTIONS
    return max(16, min(_MAX_CONNECTIONS, (fd_limit - _FD_RESERVE - LISTEN_BACKLOG) // 2))


def fd_limit() -> int:
    try:
        import resource
    except ImportError:  # Windows: no per-process fd limit of this kind
        return -1
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class _Throttle:
    """True at most once per `_LOG_EVERY_S`: a flood logs one line a minute."""

    def __init__(self) -> None:
        self._last = -_LOG_EVERY_S
        self.skipped = 0

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self._last < _LOG_EVERY_S:
            self.skipped += 1
            return False
        self._last = now
        return True


_OVERLOADED = (
    b"HTTP/1.1 529 Overloaded\r\nContent-Type: application/json\r\nretry-after: 1\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
)
_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
)


def _raw_error(template: bytes, error: ProxyError) -> bytes:
    body = json.dumps(error.to_error_body(), separators=(",", ":")).encode()
    return template % (len(body), body)


_TOO_MANY_HEADERS = "Too many headers received"  # aiohttp's words for max_headers


class ProxyRequestHandler(RequestHandler):
    """aiohttp's per-connection protocol, rendering its own refusals as Anthropic errors,
    with a header timeout and a cap on open connections."""

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        manager = self._manager
        if not isinstance(manager, _ProxyHTTPServer):  # pragma: no cover - always ours
            return
        if len(manager.connections) > manager.max_connections and not manager.make_room(self):
            self._refuse_overloaded(manager)
            return
        self._header_timer = self._loop.call_later(HEADER_TIMEOUT_S, self._headers_too_slow)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_timer is not None and self._request_count > 0:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    @property
    def idle(self) -> bool:
        """Holding a connection with no request in it (yet)."""
        return self._current_request is None and not self._messages and not self._force_close

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._request_count > 0 or self.transport is None:
            return
        log.debug("closing a connection that sent no request within %g s", HEADER_TIMEOUT_S)
        error = ProxyError(
            f"no complete request headers within {HEADER_TIMEOUT_S:g} s of connecting",
            status=408,
        )
        self.transport.write(_raw_error(_TIMED_OUT, error))
        self.force_close()

    def _refuse_overloaded(self, manager: "_ProxyHTTPServer") -> None:
        error = ProxyError(
            f"NimBridge has {manager.max_connections} connections open, each in a request; "
            "retry in a moment",
            status=529,
        )
        manager.note_cap_reached("answering new connections 529")
        if self.transport is not None:
            self.transport.write(_raw_error(_OVERLOADED, error))
        self.force_close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # too late for an answer: the connection closes
            if isinstance(exc, ConnectionError):
                # The client went away mid-answer: the request's own line says so (499);
                # aiohttp's ERROR and traceback for it filled the log, one per disconnect.
                log.debug("%s: the client's connection is gone (%s)", request.path, exc)
                raise ConnectionError("the client's connection is gone") from exc
            return super().handle_error(request, status, exc, message)
        error = refusal_error(status, exc, max_headers=self.max_headers)
        request_id = new_request_id()
        if error.status >= 500:  # one line; the traceback at DEBUG (app/server/bugs.py)
            log.error("%s %s", request_id, error.message)
            if exc is not None:
                log_traceback(log, request_id, exc)
        else:
            log.info("%s refused before routing: %s", request_id, error.message)
        body = json.dumps(error.to_error_body(), separators=(",", ":"))
        response = web.Response(
            status=error.status,
            text=body,
            content_type="application/json",
            headers={"request-id": request_id},
        )
        response.force_close()
        return response


def refusal_error(status: int, exc: BaseException | None, *, max_headers: int) -> ProxyError:
    """What to answer for a request aiohttp refused (`exc`), in words; never echoing headers."""
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 else "8190"
        return ProxyError(
            f"a request header (or the request line) is longer than {limit} bytes, the "
            "most NimBridge reads; send large values in the body",
            status=431,
        )
    if isinstance(exc, HttpProcessingError) and exc.message == _TOO_MANY_HEADERS:
        return ProxyError(
            f"the request has more than {max_headers} headers, the most NimBridge reads",
            status=431,
        )
    if isinstance(exc, HttpProcessingError):
        words = exc.message.splitlines()[0][:120] if exc.message else "unreadable"
        return ProxyError(f"malformed HTTP request: {words}", status=400)
    name = describe(exc) if exc is not None else f"status {status}"
    return ProxyError(f"internal error in NimBridge's HTTP server ({name}); see its log")


class _ProxyHTTPServer(web.Server):
    max_connections: int = _MAX_CONNECTIONS
    _cap_log: _Throttle

    def __call__(self) -> RequestHandler:
        return ProxyRequestHandler(self, loop=self._loop, **self._kwargs)

    def make_room(self, newcomer: RequestHandler) -> bool:
        """Close the oldest connection with no request in it; False when all are busy."""
        for handler in self.connections:  # oldest first
            if (
                handler is not newcomer
                and isinstance(handler, ProxyRequestHandler)
                and handler.idle
            ):
                log.debug("at the connection cap: closing the oldest idle connection")
                self.note_cap_reached("closing idle ones for new ones")
                handler.force_close()
                return True
        return False

    def note_cap_reached(self, doing: str) -> None:
        if self._cap_log.ready():
            log.info(
                "%d connections open, the most NimBridge keeps (by its file descriptor limit): %s",
                self.max_connections,
                doing,
            )


class ProxyRunner(web.AppRunner):
    """`web.AppRunner` whose connections are `ProxyRequestHandler`s, bounded in number
    (`connection_cap` of the process's fd limit) and in idle time."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", KEEPALIVE_TIMEOUT_S)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp has no parameter for the protocol class: the same server object,
        # re-classed so that its protocol factory makes our handler.
        server.__class__ = _ProxyHTTPServer
        assert isinstance(server, _ProxyHTTPServer)
        server.max_connections = connection_cap(fd_limit())
        server._cap_log = _Throttle()
        throttle_accept_errors(asyncio.get_running_loop())
        return server


_ACCEPT_ERROR = "socket.accept() out of system resource"


def throttle_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """asyncio logs every accept that fails for want of file descriptors (thousands a
    second under a flood): pass one a minute on, with how many were left out."""
    previous = loop.get_exception_handler()
    if getattr(previous, "throttles_accept_errors", False):
        return
    throttle = _Throttle()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == _ACCEPT_ERROR:
            if not throttle.ready():
                return
            exc = context.get("exception")
            log.warning(
                "cannot accept connections: %s (%d such errors left out of the log)",
                exc or "out of file descriptors",
                throttle.skipped,
            )
            throttle.skipped = 0
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    handler.throttles_accept_errors = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)
