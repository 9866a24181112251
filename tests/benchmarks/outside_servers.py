"""The processes `bench_outside` starts beside `nimbridge serve`, one role each.

    python -m tests.benchmarks.outside_servers upstream
    python -m tests.benchmarks.outside_servers passthrough UPSTREAM_URL
    python -m tests.benchmarks.outside_servers qasync -- serve --config PATH ...

- `upstream`: bench_proxy's fast fake OpenAI upstream on uvloop, which also keeps the
  last request body it was sent (`GET /last-request`), so the pass-through can be sent
  exactly the bytes NimBridge sends upstream, and lists its one model (`GET /v1/models`,
  which NimBridge asks at start).
- `passthrough`: a minimal aiohttp byte pass-through on uvloop, the floor (bench_proxy
  uses the same class); this module imports nothing of NimBridge, whose memory the
  floor's process must not carry.
- `qasync`: NimBridge's own command line (`app.cli.main`) with every event loop it makes
  being the tray's Qt loop (`QtEventLoop`, offscreen): `serve` as shipped, on qasync.

The servers print `listening on URL` as their first line, as `serve` does.
"""

import asyncio
import importlib
import os
import sys
from typing import Any

import aiohttp
from aiohttp import web

UPSTREAM_MODEL = "fake/model"


async def start_listening(app: web.Application) -> tuple[web.AppRunner, str]:
    """`app` on a free loopback port: its runner and base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


class PassThrough:
    """The floor for any proxy: read the body, forward it, relay chunks as they arrive."""

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        url = self._upstream + request.path
        async with self._session.post(url, data=body, headers=headers) as upstream:
            response = web.StreamResponse(status=upstream.status)
            response.headers["Content-Type"] = upstream.headers.get("Content-Type", "")
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            async for data in upstream.content.iter_any():
                await response.write(data)
            await response.write_eof()
            return response

    async def start(self) -> str:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256),
            timeout=aiohttp.ClientTimeout(total=None, sock_read=600),
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.handle)
        self._runner, url = await start_listening(app)
        return url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


class RecordingUpstream:
    """bench_proxy's fast upstream, keeping the last request body (the proxies' output)."""

    def __init__(self) -> None:
        from tests.benchmarks.bench_proxy import FastUpstream

        self._upstream = FastUpstream()
        self._runner: web.AppRunner | None = None
        self.last_body = b""

    async def record_and_handle(self, request: web.Request) -> web.StreamResponse:
        self.last_body = await request.read()  # aiohttp keeps it for the handler's read
        return await self._upstream.handle(request)

    async def last_request(self, request: web.Request) -> web.Response:
        return web.Response(body=self.last_body, content_type="application/json")

    async def models(self, request: web.Request) -> web.Response:
        listing = {"object": "list", "data": [{"id": UPSTREAM_MODEL, "object": "model"}]}
        return web.json_response(listing)

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.record_and_handle)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/last-request", self.last_request)
        self._runner, url = await start_listening(app)
        return url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def run_forever(server: RecordingUpstream | PassThrough) -> None:
    url = await server.start()
    print(f"listening on {url}", flush=True)
    try:
        await asyncio.Event().wait()  # until SIGTERM ends the process
    finally:
        await server.stop()


def run_qasync(argv: list[str]) -> int:
    """`nimbridge ARGV` with asyncio.run's loop being the tray's Qt loop."""
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app import cli
    from app.ui.qt_loop import QtEventLoop

    qt = QApplication([])
    # Python sees signals (serve's SIGTERM) only between Qt events: wake it now and then,
    # as run_gui does.
    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(250)

    class QtLoopPolicy(asyncio.DefaultEventLoopPolicy):
        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            loop: Any = QtEventLoop(qt)
            print(f"event loop: {type(loop).__name__}", file=sys.stderr)  # into serve's log
            return loop  # type: ignore[no-any-return]

    asyncio.set_event_loop_policy(QtLoopPolicy())
    try:
        return cli.main(argv)
    finally:
        wake.stop()


def main(argv: list[str]) -> int:
    role, rest = argv[0], argv[1:]
    if role == "qasync":
        return run_qasync(rest[1:] if rest[:1] == ["--"] else rest)
    # uvloop comes with NimBridge where it is available (issue 22); the floor needs it.
    uvloop: Any = importlib.import_module("uvloop")
    if role == "upstream":
        uvloop.run(run_forever(RecordingUpstream()))
    elif role == "passthrough":
        uvloop.run(run_forever(PassThrough(rest[0])))
    else:
        print(f"unknown role {role!r}: upstream, passthrough or qasync", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
