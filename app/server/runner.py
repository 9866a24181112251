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
"""

import json
import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from app.core.errors import ProxyError
from app.server.records import new_request_id

log = logging.getLogger(__name__)

_TOO_MANY_HEADERS = "Too many headers received"  # aiohttp's words for max_headers


class ProxyRequestHandler(RequestHandler):
    """aiohttp's per-connection protocol, rendering its own refusals as Anthropic errors."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # too late for an answer: aiohttp closes
            return super().handle_error(request, status, exc, message)
        error = refusal_error(status, exc, max_headers=self.max_headers)
        request_id = new_request_id()
        if error.status >= 500:
            log.error("%s %s", request_id, error.message, exc_info=exc)
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
    name = exc.__class__.__name__ if exc is not None else f"status {status}"
    return ProxyError(f"internal error in NimBridge's HTTP server ({name}); see its log")


class _ProxyHTTPServer(web.Server):
    def __call__(self) -> RequestHandler:
        return ProxyRequestHandler(self, loop=self._loop, **self._kwargs)


class ProxyRunner(web.AppRunner):
    """`web.AppRunner` whose connections are `ProxyRequestHandler`s."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp has no parameter for the protocol class: the same server object,
        # re-classed so that its protocol factory makes our handler.
        server.__class__ = _ProxyHTTPServer
        return server
