"""The aiohttp application and its runner.

Invariant: whatever a handler raises, the client gets a well-formed error in
the shape of the API it called (Anthropic's, or OpenAI's on the pass-through)
with a `request-id` header, and exactly one log line says what happened.
"""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from app.config.history import HistoryWriter
from app.config.secrets import ProviderKeys
from app.config.settings import Settings
from app.core.errors import ProxyError
from app.core.masking import Masker
from app.core.responses_stream import openai_error_body
from app.server.access import add_cors_headers, check_bind, check_request
from app.server.auth import client_key
from app.server.bugs import describe, log_traceback
from app.server.egress import response_masker
from app.server.history import UNRECORDED_PATHS, to_history_row
from app.server.network import Network
from app.server.openai_api.responses import RESPONSES_PATHS, add_responses_routes
from app.server.records import RequestRecord, new_request_id
from app.server.routes import add_routes
from app.server.runner import LISTEN_BACKLOG, ProxyRunner
from app.server.safe_fetch import FetchPolicy, SafeFetcher
from app.server.server_tools.backends import make_web_tools
from app.server.state import RECORD, STATE, ProxyState, absorb_stop, learn_url_secrets
from app.server.upstream.client import UpstreamClient
from app.server.upstream.registry import ProviderRegistry
from app.tasks import create_task

log = logging.getLogger(__name__)

MB = 1024 * 1024
_QUIET_PATHS = UNRECORDED_PATHS  # polled: their lines at DEBUG
SESSION_HEADER = "X-Claude-Code-Session-Id"
PROJECT_HEADER = "X-NimBridge-Project"
# After the grace period, how long a cancelled request may take to write its error
# (a client that stopped reading) before the runner closes its connection.
_FINAL_WRITE_S = 2.0


def _openai_error_body(error: ProxyError) -> dict[str, Any]:
    return {"error": {"message": error.message, "type": error.error_type, "code": error.status}}


def error_response(request: web.Request, error: ProxyError, record: RequestRecord) -> web.Response:
    message = request.app[STATE].mask(error.message)
    if message != error.message:
        error = ProxyError(message, status=error.status, retry_after=error.retry_after)
    record.status, record.error = error.status, error.message
    openai_shape = request.path.startswith(("/v1/chat/completions", "/v1/images"))
    body = _openai_error_body(error) if openai_shape else error.to_error_body()
    if request.path in RESPONSES_PATHS:  # with the code Codex acts on (it compacts on overflow)
        openai_shape, body = True, openai_error_body(error.error_type, error.message)
    headers = {"request-id": record.request_id}
    if error.retry_after:
        headers["retry-after"] = error.retry_after
    if error.status == 401 and not openai_shape:
        headers["WWW-Authenticate"] = 'Bearer realm="nimbridge"'
    return web.Response(
        status=error.status,
        text=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        content_type="application/json",
        headers=headers,
    )


@web.middleware
async def request_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    state = request.app[STATE]
    record = RequestRecord(new_request_id(), request.method, request.path)
    record.session_id, record.project = who_asked(request)
    request[RECORD] = record
    state.in_flight += 1
    state.idle.clear()
    task = asyncio.current_task()
    if task is not None:
        state.live[task] = record
    if state.proxy_key is None:  # pass-through: the client's own key may be echoed back
        sent = client_key(request)
        if sent:
            state.masker.add_client_key(sent)
    for observer in state.on_request_started:
        observer(record)
    try:
        if state.closing is not None:  # a request on a kept-alive connection while stopping
            raise state.closing
        preflight = check_request(request, state.settings, state.in_flight)
        if preflight is not None:
            record.status = preflight.status
            return preflight
        response: web.StreamResponse = await handler(request)
        if not response.prepared:
            # Sent here, before the request's log line and observers: the client does
            # not wait for our bookkeeping (aiohttp finds it sent and adds nothing).
            await response.prepare(request)
            await response.write_eof()
        return response
    except ProxyError as exc:
        return error_response(request, exc, record)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = {404: f"not found: {request.method} {request.path}"}.get(exc.status, exc.reason)
        if exc.status == 413:
            limit = request.app[STATE].settings.max_request_mb
            reason = f"request body is larger than {limit} MB (max_request_mb in the settings)"
        return error_response(request, ProxyError(reason, status=exc.status), record)
    except asyncio.CancelledError:
        if record.stopped_by is None:
            record.status, record.error = 499, "client disconnected"
            raise
        if not record.headers_sent and absorb_stop(record):
            # Ended by the server's stop before a byte went out: a plain error to retry.
            return error_response(request, record.stopped_by, record)
        record.error = record.stopped_by.message
        raise
    except ConnectionResetError:
        record.status, record.error = 499, "client disconnected"
        raise
    except Exception as exc:  # the boundary: a bug of ours, still a well-formed answer
        # One line (the summary below carries this message); the traceback at DEBUG.
        log_traceback(log, record.request_id, exc)
        error = ProxyError(f"internal error in NimBridge ({describe(exc)}); see its log")
        return error_response(request, error, record)
    finally:
        state.in_flight -= 1
        if state.in_flight == 0:
            state.idle.set()
        if task is not None:
            state.live.pop(task, None)
        level = logging.DEBUG if request.path in _QUIET_PATHS else logging.INFO
        if (record.status is not None and record.status >= 500) or record.stopped_by:
            level = logging.WARNING  # a request NimBridge's stop cut short says so
        if log.isEnabledFor(level):
            log.log(level, "%s", record.summary())
        for observer in state.on_request_finished:
            observer(record)


def who_asked(request: web.Request) -> tuple[str | None, str | None]:
    """Claude Code's session id, and the project folder the launcher named (percent-encoded:
    a header is ASCII); both bounded, as any client may send anything."""
    headers = request.headers
    session = headers.get(SESSION_HEADER, "").strip()[:128] or None
    project = headers.get(PROJECT_HEADER)
    if project is not None:
        project = unquote(project.strip())[:4096] or None
    return session, project


def history_recorder(state: ProxyState, history: HistoryWriter) -> Callable[[RequestRecord], None]:
    """The observer that hands each finished request to the history's thread: building the
    row is all it does on the loop (a few microseconds)."""

    def record_finished(record: RequestRecord) -> None:
        if record.path in UNRECORDED_PATHS:
            return
        now = asyncio.get_running_loop().time()
        history.submit_row(to_history_row(record, state.masker, loop_now=now))

    return record_finished


def prepare_hook(masker: Masker) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """The one `on_response_prepare` hook (one coroutine per response, not three): every
    byte that leaves masked (egress), CORS headers (access), the record told."""
    mask_response = response_masker(masker)

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        mask_response(request, response)
        add_cors_headers(request, response)
        record = request.get(RECORD)
        if record is not None:
            record.headers_sent = True

    return on_prepare


def make_app(settings: Settings, keys: ProviderKeys, proxy_key: str | None) -> web.Application:
    app = web.Application(
        middlewares=[request_middleware], client_max_size=settings.max_request_mb * MB
    )
    masker = keys.masker
    if proxy_key:
        keys.remember(proxy_key)
    learn_url_secrets(masker, settings)
    app.on_response_prepare.append(prepare_hook(masker))  # every byte that leaves
    # One proxy and trust decision for every outbound request (raises NetworkSetupError).
    network = Network.from_settings(settings, keys)
    upstream = UpstreamClient(
        connect_timeout_s=settings.connect_timeout_s,
        read_timeout_s=settings.read_timeout_s,
        deadline_s=settings.upstream_deadline_s,
        network=network,
    )
    registry = ProviderRegistry(settings, keys, upstream)
    fetcher = SafeFetcher(
        FetchPolicy(allow_private=settings.fetch_private_addresses), network=network
    )
    web_search, web_fetch = make_web_tools(settings, keys, fetcher, network)
    state = ProxyState(
        registry=registry,
        proxy_key=proxy_key,
        fetcher=fetcher,
        masker=masker,
        web_search=web_search,
        web_fetch=web_fetch,
    )
    state.idle.set()
    state.on_request_finished.append(state.sessions.add)
    app[STATE] = state
    add_routes(app)
    add_responses_routes(app)

    async def upstream_session(app: web.Application) -> AsyncIterator[None]:
        state.started = time.monotonic()
        await upstream.start()
        # Catalogs fill in the background so routing by catalog works early;
        # no request waits for them.
        prefetch = create_task(registry.prefetch(), name="catalog prefetch")
        yield
        prefetch.cancel()
        registry.cancel_listings()
        await upstream.close()
        await fetcher.close()
        state.documents.close()
        if web_search is not None:
            await web_search.close()

    app.cleanup_ctx.append(upstream_session)
    return app


class ProxyServer:
    """Runs the app on host:port; `stop()` lets in-flight requests finish (bounded)."""

    def __init__(
        self,
        settings: Settings,
        keys: ProviderKeys,
        proxy_key: str | None,
        *,
        history: HistoryWriter | None = None,
    ) -> None:
        self.app = make_app(settings, keys, proxy_key)
        if history is not None:  # kept across restarts: the caller owns and closes it
            self.app_state.history_path = history.path
            self.app_state.on_request_finished.append(history_recorder(self.app_state, history))
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def app_state(self) -> ProxyState:
        return self.app[STATE]

    @property
    def settings(self) -> Settings:
        return self.app_state.settings

    @property
    def base_url(self) -> str:
        host = self.settings.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}"

    def update_settings(self, settings: Settings) -> None:
        """Apply settings that do not change how the server listens or reaches providers."""
        self.app_state.update_settings(settings)

    async def start(self) -> str:
        """Listen; OSError when the port is taken, UnsafeBindError for an open door."""
        check_bind(self.settings.host, self.app_state.proxy_key)
        runner = ProxyRunner(  # aiohttp's own refusals answered as Anthropic errors
            self.app,
            handler_cancellation=True,  # a client that goes away cancels its upstream request
            access_log=None,  # our own one line per request replaces it
            shutdown_timeout=_FINAL_WRITE_S,  # `stop` gives the grace period itself
        )
        await runner.setup()
        site = web.TCPSite(runner, self.settings.host, self.settings.port, backlog=LISTEN_BACKLOG)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])  # the real port when 0 asked for a free one
        return self.base_url

    async def stop(self, *, restarting: bool = False) -> None:
        """Stop accepting at once, let in-flight requests finish within `shutdown_grace_s`,
        then end the rest with an error (an `error` event on a stream, a 529 when nothing
        was sent yet) and abort their upstream requests; the port is free on return."""
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        state = self.app_state
        state.closing = ProxyError(
            "NimBridge is restarting to apply new settings; retry in a moment"
            if restarting
            else "NimBridge is stopping; the request was cut short, retry when it runs again",
            status=529,  # overloaded_error: what the SDKs and Claude Code retry
        )
        for site in list(runner.sites):
            await site.stop()  # the listening socket closes: new connections are refused
        if runner.server is not None:
            runner.server.pre_shutdown()  # idle kept-alive connections close now
        grace = self.settings.shutdown_grace_s
        if state.in_flight:
            log.info(
                "%s: %d request(s) in flight, waiting up to %g s for them",
                "restarting" if restarting else "stopping",
                state.in_flight,
                grace,
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await state.idle.wait()
        left = [(task, record) for task, record in state.live.items() if not task.done()]
        if left:
            log.warning(
                "%d request(s) still running after the %g s grace period: ending them",
                len(left),
                grace,
            )
            for task, record in left:
                record.stopped_by = state.closing
                task.cancel()
        await runner.cleanup()  # waits up to _FINAL_WRITE_S for those, then cancels again
