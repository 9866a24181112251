"""NimBridge soak: many mixed requests with injected faults through the real server, on
the headless asyncio loop (as `nimbridge serve`) and on qasync's Qt loop (as the tray).

    .venv/bin/python -m tests.benchmarks.soak [--quick] [--json PATH] [--requests N]
                                              [--concurrency N] [--loops asyncio,qasync,serve]

For each loop a **server process** runs NimBridge with the real set-up: a provider
registry with its rate governors (a custom provider, no budget), a proxy key, logging
at INFO to a rotating file (plus the log window's buffer on the Qt loop), every other
setting at its default. `asyncio` runs `ProxyServer` under `asyncio.run`, like `serve`;
`qasync` runs `ProxyService` on the tray's `QtEventLoop` (qasync's, app/ui/qt_loop.py) with
`QT_QPA_PLATFORM=offscreen`, like the tray app; `serve` (not run unless asked) is the
real `python -m app serve` command in a process of its own, with those settings in a
temporary config folder and its INFO log (stderr) in a file: what its RSS after the soak
is (tasks and timers cannot be read from outside; descriptors and sockets can). This
process is the load generator and the fast fake OpenAI upstream, so the server process's
RSS is NimBridge's alone.

The mix (per 100 requests): 34 non-stream, 34 streams of 50 chunks, 14 tool-call
streams, 4 streams whose first upstream attempt gets 429 (the proxy's retry absorbs
it), 2 requests the upstream always answers 429 (the client gets 429 after the
retries), 4 upstream 500s, 4 streams the upstream cuts after 10 chunks (an `error`
event), 4 streams the client leaves after 3 events. Every answer is checked (texts,
tool input, stream grammar with `tests.anthropic_grammar`); an outcome other than the
one its fault explains is an unexpected error.

Between phases (the first 10% as warm-up, then the rest) the client session is closed
and the server left idle for a moment, then sampled: RSS, asyncio tasks, open file
descriptors and sockets. PASS when there are no unexpected errors, RSS after the soak
is within 10% of RSS after the warm-up, and tasks, descriptors and sockets did not grow.
Not collected by pytest (no `test_` functions). Exit code 1 on a FAIL.
"""

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import multiprocessing
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import tracemalloc
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.anthropic_grammar import assert_anthropic_grammar
from tests.benchmarks.proc import rss_kb, stop_process
from tests.benchmarks.server_pipe import receive
from tests.fake_upstream import chunk, completion, encode_sse

CLIENT_MODEL = "claude-sonnet-4-6"
UPSTREAM_MODEL = "fake/model"
PROXY_KEY = "soak-proxy-key"
UPSTREAM_KEY = "nvapi-soak-upstream-key"
STREAM_CHUNKS = 50
CUT_AFTER = 10
LEAVE_AFTER_EVENTS = 3
TEXT = "Hello from the soak upstream."
TOOL_INPUT = {"path": "src/main.py", "start": 1, "end": 40}
RSS_GROWTH_LIMIT = 0.10
IDLE_BEFORE_SAMPLE_S = 0.5

# kind -> (weight per 100, the outcome its fault explains)
MIX: dict[str, tuple[int, str]] = {
    "plain": (34, "ok"),
    "stream": (34, "ok"),
    "tools": (14, "ok"),
    "retry429": (4, "ok"),
    "e429": (2, "http 429 rate_limit_error"),
    "e500": (4, "http 500 api_error"),
    "cut": (4, "error event api_error"),
    "leave": (4, "client left"),
}
EXPECTED_BY_KIND = {kind: expected for kind, (_, expected) in MIX.items()}


def say(message: str) -> None:
    print(f"[soak] {message}", file=sys.stderr, flush=True)


# ====================================================================== server process


def server_settings(upstream_url: str) -> Any:
    from app.config.settings import Settings, TierModels
    from app.core.providers import Provider, ProviderKind

    return Settings(
        host="127.0.0.1",
        port=0,
        providers=(Provider("soak", ProviderKind.CUSTOM, upstream_url),),
        default_provider="soak",
        tiers=TierModels(default=UPSTREAM_MODEL),
    )


_last_snapshot: list[Any] = []  # the server process's previous tracemalloc snapshot


def memory_growth(top: int = 8) -> list[str]:
    """With --trace-memory: the source lines whose allocations grew most since last asked."""
    if not tracemalloc.is_tracing():
        return []
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    growth: list[str] = []
    if _last_snapshot:
        for stat in snapshot.compare_to(_last_snapshot[0], "lineno")[:top]:
            frame = stat.traceback[0]
            where = f"{Path(frame.filename).name}:{frame.lineno}"
            growth.append(f"{stat.size_diff / 1024:+.0f} KiB {stat.count_diff:+d} {where}")
    _last_snapshot[:] = [snapshot]
    return growth


def server_stats(loop: asyncio.AbstractEventLoop, server_port: int, in_flight: int) -> Any:
    """Runs on the server's loop: what a leak would make grow."""
    tasks = len(asyncio.all_tasks(loop)) - 1  # not the task asking
    # Timers not yet due: asyncio's heap (cancelled ones are pruned as it goes), or the
    # Qt loop's live timers.
    timers = getattr(loop, "pending_timers", None)
    if timers is None:
        timers = sum(not h.cancelled() for h in getattr(loop, "_scheduled", ()))
    return {
        "tasks": tasks,
        "timers": timers,
        **descriptor_stats("self", server_port),
        "in_flight": in_flight,
        "memory_growth": memory_growth(),
    }


def descriptor_stats(pid: str, server_port: int) -> dict[str, int]:
    """Descriptors and TCP sockets of process `pid` ("self" or a number), by role."""
    fds = os.listdir(f"/proc/{pid}/fd")
    socket_inodes: set[str] = set()
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                socket_inodes.add(target[8:-1])
    by_role: Counter[str] = Counter()
    for table in (f"/proc/{pid}/net/tcp", f"/proc/{pid}/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[9] not in socket_inodes:
                    continue
                local_port = int(cols[1].rsplit(":", 1)[1], 16)
                if cols[3] == "0A":
                    by_role["listening"] += 1
                elif local_port == server_port:
                    by_role["client"] += 1  # accepted from a client
                else:
                    by_role["upstream"] += 1  # the upstream pool
    return {
        "fds": len(fds),
        "sockets": len(socket_inodes),
        "client_sockets": by_role["client"],
        "upstream_sockets": by_role["upstream"],
    }


def answer_commands(
    conn: Connection, loop: asyncio.AbstractEventLoop, stats: Callable[[], Any], stop: Any
) -> None:
    """Commands from the load generator, read in a thread, run on the server's loop."""

    async def on_loop(command: str) -> Any:
        if command == "stop":
            stop.set()
            return "ok"
        return stats()

    while True:
        try:
            command = conn.recv()
        except (EOFError, OSError):
            command = "stop"
        try:
            reply = asyncio.run_coroutine_threadsafe(on_loop(command), loop).result(30)
        except Exception:
            reply = {"error": traceback.format_exc()}
        with contextlib.suppress(EOFError, OSError):
            conn.send(reply)
        if command == "stop":
            return


async def serve_headless(conn: Connection, upstream_url: str, log_path: Path) -> None:
    """`nimbridge serve`'s set-up: ProxyServer, INFO logging to a file."""
    from app.config.secrets import MemorySecretStore, ProviderKeys
    from app.logs import setup_logging
    from app.server.app import ProxyServer

    keys = ProviderKeys(MemorySecretStore(), env={})
    keys.set("soak", UPSTREAM_KEY)
    setup_logging("INFO", secrets=lambda: [*keys.known_secrets(), PROXY_KEY], log_file=log_path)
    server = ProxyServer(server_settings(upstream_url), keys, PROXY_KEY)
    url = await server.start()
    await run_until_stopped(conn, url, lambda: server.app_state.in_flight)
    await server.stop()


async def serve_tray_like(conn: Connection, upstream_url: str, log_path: Path) -> None:
    """The tray's set-up: ProxyService (status and request feeds), the log window's buffer."""
    from app.config.secrets import MemorySecretStore, ProviderKeys
    from app.logs import LogBuffer, setup_logging
    from app.service import ProxyService

    keys = ProviderKeys(MemorySecretStore(), env={})
    keys.set("soak", UPSTREAM_KEY)
    buffer = LogBuffer()
    secrets = lambda: [*keys.known_secrets(), PROXY_KEY]  # noqa: E731
    setup_logging("INFO", secrets=secrets, log_file=log_path, buffer=buffer)
    service = ProxyService(
        server_settings(upstream_url),
        keys,
        settings_path=None,
        proxy_key=PROXY_KEY,
        log_buffer=buffer,
        log_path=log_path,
    )
    rows: deque[Any] = deque(maxlen=1000)
    service.subscribe_requests(rows.append)  # as the log window's table (1,000 rows) does
    await service.start()
    url = service.status().base_url
    assert url, service.status().last_error
    await run_until_stopped(conn, url, lambda: service.status().in_flight)
    await service.stop()


async def run_until_stopped(conn: Connection, url: str, in_flight: Callable[[], int]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    port = int(url.rsplit(":", 1)[1])
    thread = threading.Thread(
        target=answer_commands,
        args=(conn, loop, lambda: server_stats(loop, port, in_flight()), stop),
        daemon=True,
    )
    conn.send({"url": url, "pid": os.getpid()})
    thread.start()
    await stop.wait()


def server_main(
    conn: Connection, loop_kind: str, upstream_url: str, log_path: str, trace_memory: bool
) -> None:
    """Entry point of the server process."""
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115  (the log goes to its file)
    if trace_memory:
        tracemalloc.start()
    try:
        if loop_kind == "asyncio":
            asyncio.run(serve_headless(conn, upstream_url, Path(log_path)))
            return
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        from PySide6.QtWidgets import QApplication

        from app.ui.qt_loop import QtEventLoop

        qt = QApplication([])
        loop = QtEventLoop(qt)  # as `run_gui` makes it
        asyncio.set_event_loop(loop)
        with loop:
            loop.run_until_complete(serve_tray_like(conn, upstream_url, Path(log_path)))
    except BaseException:
        with contextlib.suppress(EOFError, OSError):
            conn.send({"error": traceback.format_exc()})
        raise


class ServerProcess:
    def __init__(
        self, loop_kind: str, upstream_url: str, log_path: Path, trace_memory: bool = False
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self._child = child
        self.proc = context.Process(
            target=server_main,
            args=(child, loop_kind, upstream_url, str(log_path), trace_memory),
            name=f"soak-{loop_kind}",
            daemon=True,
        )
        self.url = ""

    def start(self) -> str:
        self.proc.start()
        self._child.close()
        reply = self._receive(60)
        self.url = reply["url"]
        return self.url

    def _receive(self, timeout: float) -> Any:
        return receive(self.conn, timeout)

    def sample(self) -> dict[str, Any]:
        self.conn.send("stats")
        stats: dict[str, Any] = self._receive(120)
        stats["rss_kb"] = self.rss_kb()
        return stats

    def rss_kb(self) -> int:
        assert self.proc.pid is not None  # started
        return rss_kb(self.proc.pid)

    def stop(self) -> None:
        if self.proc.is_alive():
            with contextlib.suppress(OSError, EOFError, TimeoutError, RuntimeError):
                self.conn.send("stop")
                self._receive(30)
            self.proc.join(30)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        self.conn.close()


class ServeProcess:
    """`nimbridge serve` itself (python -m app serve), sampled from outside through /proc.

    No upstream key: a custom provider reads none from the environment, and the keychain
    is the failing backend; the soak's upstream asks for none."""

    def __init__(self, upstream_url: str, log_path: Path) -> None:
        from app.config.settings import save_settings

        self.home = Path(tempfile.mkdtemp(prefix="nimbridge-soak-serve-"))
        save_settings(self.home / "settings.json", server_settings(upstream_url))
        self._log = log_path.open("wb")
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> str:
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            # A settings home of its own (history, config): the user's stay out of it.
            **{f"XDG_{kind}_HOME": str(self.home / kind) for kind in ("CONFIG", "DATA", "STATE")},
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
            "NIMBRIDGE_PROXY_KEY": PROXY_KEY,
        }
        config = self.home / "settings.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--config", str(config), "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,  # its INFO log, in a file as in soak's other loops
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("NimBridge listening on "):
            raise RuntimeError(f"serve did not start: {line!r}")
        self.url = line.split()[-1]
        return self.url

    def sample(self) -> dict[str, Any]:
        assert self.proc is not None
        port = int(self.url.rsplit(":", 1)[1])
        stats: dict[str, Any] = descriptor_stats(str(self.proc.pid), port)
        # Not visible from outside: what the other loops read on the server's own loop.
        stats.update(tasks=None, timers=None, in_flight=None, memory_growth=[])
        stats["rss_kb"] = self.rss_kb()
        return stats

    def rss_kb(self) -> int:
        assert self.proc is not None
        return rss_kb(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 30)
            assert self.proc.stdout is not None
            self.proc.stdout.close()
        self._log.close()
        shutil.rmtree(self.home, ignore_errors=True)


# ====================================================================== fake upstream


class SoakUpstream:
    """A fast fake OpenAI upstream; the user text `soak KIND N` picks its behaviour."""

    def __init__(self) -> None:
        body = {"model": UPSTREAM_MODEL}
        self._completion = json.dumps(completion(body, TEXT)).encode()
        self._rate_limited: set[str] = set()
        pieces = [f"w{i} " for i in range(STREAM_CHUNKS)]
        self._text_stream = encode_sse(stream_items(body, pieces))
        self._tool_stream = encode_sse(tool_items(body))
        self._runner: web.AppRunner | None = None
        self.aborted = 0  # upstream streams the proxy aborted when their client left

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw)
        match = re.search(r"soak (\w+) (\d+)", json.dumps(body["messages"][-1]))
        kind, nonce = match.groups() if match else ("plain", "0")
        if kind == "e429" or (kind == "retry429" and nonce not in self._rate_limited):
            self._rate_limited.add(nonce)
            error = {"error": {"message": "Too Many Requests", "type": "rate_limit"}}
            return web.json_response(error, status=429, headers={"Retry-After": "0"})
        if kind == "e500":
            return web.json_response({"error": {"message": "internal failure"}}, status=500)
        if not body.get("stream"):
            return web.Response(body=self._completion, content_type="application/json")
        events = self._tool_stream if kind == "tools" else self._text_stream
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            for n, event in enumerate(events):
                if kind == "cut" and n == CUT_AFTER:
                    assert request.transport is not None
                    request.transport.abort()  # no chunked terminator: a dropped stream
                    return response
                await response.write(event)
                # Paced like a model's tokens (the proxy reads chunk by chunk); the stream
                # the client leaves is slower, so the client is gone while it still runs.
                await asyncio.sleep(0.002 if kind == "leave" else 0)
            await response.write_eof()
        except ConnectionResetError:
            if kind != "leave":
                raise  # only the stream its client left may be aborted by the proxy
            self.aborted += 1
        return response

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def stream_items(body: dict[str, Any], pieces: list[str]) -> list[Any]:
    usage = {
        "prompt_tokens": 12,
        "completion_tokens": len(pieces),
        "total_tokens": 12 + len(pieces),
    }
    items: list[Any] = [chunk(body, {"role": "assistant", "content": ""})]
    items += [chunk(body, {"content": piece}) for piece in pieces]
    items.append(chunk(body, {}, finish_reason="stop"))
    items.append(chunk(body, None, usage=usage))
    items.append("[DONE]")
    return items


def tool_items(body: dict[str, Any]) -> list[Any]:
    arguments = json.dumps(TOOL_INPUT)
    parts = [arguments[i : i + 6] for i in range(0, len(arguments), 6)]
    call = {"index": 0, "id": "call_soak", "type": "function"}
    items: list[Any] = [chunk(body, {"role": "assistant", "content": "Let me look."})]
    items.append(
        chunk(body, {"tool_calls": [{**call, "function": {"name": "read_file", "arguments": ""}}]})
    )
    items += [
        chunk(body, {"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
        for part in parts
    ]
    items.append(chunk(body, {}, finish_reason="tool_calls"))
    items.append(chunk(body, None, usage={"prompt_tokens": 30, "completion_tokens": 20}))
    items.append("[DONE]")
    return items


# ====================================================================== load generator


TOOLS = [
    {
        "name": "read_file",
        "description": "Read part of a file.",
        "input_schema": {
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "start": {"type": "integer"},
                "end": {"type": "integer"},
            },
            "required": ["path"],
        },
    }
]


def request_body(kind: str, n: int) -> bytes:
    body: dict[str, Any] = {
        "model": CLIENT_MODEL,
        "max_tokens": 200,
        "messages": [{"role": "user", "content": f"soak {kind} {n}"}],
        "stream": kind not in ("plain", "e500"),
    }
    if kind == "tools":
        body["tools"] = TOOLS
    return json.dumps(body).encode()


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]


def check_stream(kind: str, events: list[dict[str, Any]]) -> str:
    """The outcome of a stream read to its end: ok, an error event, or what is wrong."""
    try:
        assert_anthropic_grammar(events)
    except AssertionError as exc:
        return f"bad grammar: {exc}"
    last = events[-1]
    if last["type"] == "error":
        return f"error event {last['error']['type']}"
    blocks: dict[int, dict[str, Any]] = {}
    for event in events:
        if event["type"] == "content_block_start":
            blocks[event["index"]] = {**event["content_block"], "text": "", "json": ""}
        elif event["type"] == "content_block_delta":
            delta = event["delta"]
            block = blocks[event["index"]]
            block["text"] += delta.get("text", "")
            block["json"] += delta.get("partial_json", "")
    if kind == "tools":
        uses = [b for b in blocks.values() if b["type"] == "tool_use"]
        if len(uses) != 1 or json.loads(uses[0]["json"]) != TOOL_INPUT:
            return f"wrong tool call: {uses}"
        return "ok"
    text = "".join(b["text"] for b in blocks.values() if b["type"] == "text")
    expected = "".join(f"w{i} " for i in range(STREAM_CHUNKS))
    return "ok" if text == expected else f"wrong text: {text[:60]!r}"


async def one_request(session: aiohttp.ClientSession, url: str, kind: str, n: int) -> str:
    headers = {"x-api-key": PROXY_KEY, "content-type": "application/json"}
    async with session.post(url, data=request_body(kind, n), headers=headers) as response:
        if response.status != 200:
            body = await response.json(content_type=None)
            return f"http {response.status} {body.get('error', {}).get('type')}"
        if kind == "leave":
            seen = 0
            async for _ in response.content:
                seen += _.startswith(b"data: ")
                if seen >= LEAVE_AFTER_EVENTS:
                    response.close()  # the client goes away mid-stream
                    return "client left"
            return "stream ended before the client left"
        raw = await response.read()
        if "text/event-stream" in response.headers.get("Content-Type", ""):
            return check_stream(kind, sse_events(raw))
        message = json.loads(raw)
        return "ok" if message["content"][0].get("text") == TEXT else f"wrong body: {message}"


@dataclass
class PhaseResult:
    count: int = 0
    seconds: float = 0.0
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)  # requests meant to succeed
    latencies_by_kind: dict[str, list[float]] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)  # a few unexpected outcomes, to show


async def run_phase(
    url: str,
    kinds: list[str],
    first: int,
    concurrency: int,
    on_done: Callable[[int], None] = lambda done: None,
) -> PhaseResult:
    """`kinds[i]` as request `first + i`, `concurrency` at a time; `on_done(count)` after each."""
    result = PhaseResult(count=len(kinds))
    done = 0
    position = 0
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal position
            while position < len(kinds):
                n, position = position, position + 1
                kind = kinds[n]
                started = time.perf_counter()
                try:
                    outcome = await one_request(session, url + "/v1/messages", kind, first + n)
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    outcome = f"client {exc.__class__.__name__}: {exc}"
                elapsed = time.perf_counter() - started
                result.outcomes[(kind, outcome)] += 1
                if EXPECTED_BY_KIND[kind] == "ok":
                    result.latencies_s.append(elapsed)
                result.latencies_by_kind.setdefault(kind, []).append(elapsed)
                if outcome != EXPECTED_BY_KIND[kind] and len(result.samples) < 5:
                    result.samples.append(f"{kind} #{first + n}: {outcome}")
                nonlocal done
                done += 1
                on_done(done)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - started
    return result


def plan_kinds(count: int, seed: int) -> list[str]:
    names = list(MIX)
    weights = [MIX[name][0] for name in names]
    return random.Random(seed).choices(names, weights, k=count)


async def soak_one_loop(
    loop_kind: str, upstream_url: str, args: argparse.Namespace, log_dir: Path
) -> dict[str, Any]:
    """A warm-up of a tenth of the requests, then the rest in one go. After each, the
    client session is closed and the idle server sampled; RSS is also read at every
    further tenth while the load runs."""
    count, concurrency = args.requests, args.concurrency
    log_path = log_dir / f"nimbridge-{loop_kind}.log"
    server: ServerProcess | ServeProcess
    if loop_kind == "serve":
        server = ServeProcess(upstream_url, log_path)
    else:
        server = ServerProcess(loop_kind, upstream_url, log_path, args.trace_memory)
    url = await asyncio.to_thread(server.start)
    kinds = plan_kinds(count, seed=20261121)
    warm_count = max(1, count // 10)
    rss_curve: list[int] = []

    def read_rss(done: int) -> None:
        if done % warm_count == 0:
            rss_curve.append(server.rss_kb())

    try:
        before = await asyncio.to_thread(server.sample)
        say(f"{loop_kind}: warm-up, {warm_count} requests at concurrency {concurrency}")
        warm = await run_phase(url, kinds[:warm_count], 0, concurrency)
        await asyncio.sleep(IDLE_BEFORE_SAMPLE_S)
        after_warm = await asyncio.to_thread(server.sample)
        rss_curve.append(after_warm["rss_kb"])
        say(f"{loop_kind}: soak, {count - warm_count} requests")
        main = await run_phase(url, kinds[warm_count:], warm_count, concurrency, read_rss)
        await asyncio.sleep(IDLE_BEFORE_SAMPLE_S)
        end = await asyncio.to_thread(server.sample)
        for sample in (after_warm, end):
            for line in sample["memory_growth"]:
                say(f"{loop_kind}: memory grew: {line}")
    finally:
        await asyncio.to_thread(server.stop)
    log_lines = 0
    for path in log_dir.glob(f"{log_path.name}*"):  # with the rotated ones
        with path.open(encoding="utf-8") as lines:
            log_lines += sum(1 for _ in lines)
    return summarize(
        loop_kind, [warm, main], [before, after_warm, end], rss_curve, log_lines, concurrency
    )


def summarize(
    loop_kind: str,
    phases: list[PhaseResult],
    samples: list[dict[str, Any]],
    rss_curve: list[int],
    log_lines: int,
    concurrency: int,
) -> dict[str, Any]:
    before, after_warm, end = samples
    outcomes: Counter[tuple[str, str]] = Counter()
    latencies: list[float] = []
    shown: list[str] = []
    by_kind: dict[str, list[float]] = {}
    for phase in phases:
        for kind, values in phase.latencies_by_kind.items():
            by_kind.setdefault(kind, []).extend(values)
        outcomes.update(phase.outcomes)
        latencies += phase.latencies_s
        shown += phase.samples
    total = sum(outcomes.values())
    unexpected = sum(c for (kind, o), c in outcomes.items() if o != EXPECTED_BY_KIND[kind])
    expected_errors = Counter(
        o for (kind, o), c in outcomes.items() for _ in range(c) if o == EXPECTED_BY_KIND[kind]
    )
    del expected_errors["ok"]
    seconds = sum(p.seconds for p in phases)
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    rss_growth = (end["rss_kb"] - after_warm["rss_kb"]) / after_warm["rss_kb"]
    checks = {
        "unexpected errors: 0": unexpected == 0,
        f"RSS flat within {RSS_GROWTH_LIMIT:.0%}": rss_growth <= RSS_GROWTH_LIMIT,
        # The upstream pool keeps idle connections (at most one per concurrent request);
        # everything else must come back to where it was.
        "descriptors did not grow (pool aside)": end["fds"] - end["upstream_sockets"]
        <= after_warm["fds"] - after_warm["upstream_sockets"],
        "upstream pool within the concurrency": end["upstream_sockets"] <= concurrency,
        "no client socket left": end["client_sockets"] == 0,
    }
    if loop_kind != "serve":  # read on the server's own loop, which serve's is not
        checks["tasks did not grow"] = end["tasks"] <= after_warm["tasks"]
        checks["timers did not grow"] = end["timers"] <= after_warm["timers"]
        checks["server idle"] = end["in_flight"] == 0
    return {
        "loop": loop_kind,
        "requests": total,
        "seconds": round(seconds, 2),
        "rps": round(total / seconds, 1),
        "p50_ms": round(quantiles[49] * 1000, 1),
        "p99_ms": round(quantiles[98] * 1000, 1),
        "p50_ms_by_kind": {
            kind: round(statistics.median(values) * 1000, 1) for kind, values in by_kind.items()
        },
        "ok": outcomes_total(outcomes, "ok"),
        "expected_errors": dict(expected_errors),
        "unexpected_errors": unexpected,
        "unexpected_samples": shown[:5],
        "outcomes": {f"{kind}: {o}": c for (kind, o), c in sorted(outcomes.items())},
        "before": before,
        "after_warmup": after_warm,
        "end": end,
        "rss_growth": round(rss_growth, 4),
        "rss_mb_each_tenth": [round(kb / 1024, 1) for kb in rss_curve],
        "log_lines": log_lines,
        "checks": checks,
        "passed": all(checks.values()),
    }


def outcomes_total(outcomes: Counter[tuple[str, str]], outcome: str) -> int:
    return sum(c for (_, o), c in outcomes.items() if o == outcome)


def render(results: list[dict[str, Any]], count: int, concurrency: int) -> str:
    rows: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
        ("requests", lambda r: r["requests"]),
        ("requests/s", lambda r: r["rps"]),
        ("p50 / p99 ms (meant to succeed)", lambda r: f"{r['p50_ms']} / {r['p99_ms']}"),
        ("ok", lambda r: r["ok"]),
        (
            "errors explained by a fault",
            lambda r: ", ".join(f"{k} {v}" for k, v in sorted(r["expected_errors"].items())),
        ),
        ("unexpected errors", lambda r: r["unexpected_errors"]),
        ("RSS MB: start / warm / end", lambda r: rss_cell(r)),
        ("RSS growth after warm-up", lambda r: f"{r['rss_growth']:+.1%}"),
        ("RSS MB each 10%", lambda r: " ".join(f"{v:.0f}" for v in r["rss_mb_each_tenth"])),
        ("asyncio tasks: warm / end", lambda r: pair(r, "tasks")),
        ("pending timers: warm / end", lambda r: pair(r, "timers")),
        ("fds: warm / end", lambda r: pair(r, "fds")),
        ("sockets: warm / end", lambda r: pair(r, "sockets")),
        ("  of which upstream pool", lambda r: pair(r, "upstream_sockets")),
        ("  of which clients'", lambda r: pair(r, "client_sockets")),
        ("log lines written", lambda r: r["log_lines"]),
        ("verdict", lambda r: "PASS" if r["passed"] else "FAIL"),
    ]
    width = max(len(label) for label, _ in rows)
    header = f"{'':{width}}  " + "  ".join(f"{r['loop']:>28}" for r in results)
    lines = [f"Soak: {count} requests, concurrency {concurrency}", header]
    for label, cell in rows:
        lines.append(f"{label:{width}}  " + "  ".join(f"{cell(r)!s:>28}" for r in results))
    for r in results:
        failed = [name for name, ok in r["checks"].items() if not ok]
        if failed:
            lines.append(f"{r['loop']}: FAILED {', '.join(failed)}")
        for sample in r["unexpected_samples"]:
            lines.append(f"{r['loop']}: unexpected: {sample}")
        lines.append(f"{r['loop']}: unexpected errors: {r['unexpected_errors']}")
    return "\n".join(lines)


def rss_cell(r: dict[str, Any]) -> str:
    mb = [r[key]["rss_kb"] / 1024 for key in ("before", "after_warmup", "end")]
    return " / ".join(f"{v:.1f}" for v in mb)


def pair(r: dict[str, Any], key: str) -> str:
    if r["end"][key] is None:
        return "n/a"  # serve's: not visible from outside
    return f"{r['after_warmup'][key]} / {r['end'][key]}"


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    upstream = SoakUpstream()
    upstream_url = await upstream.start()
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="nimbridge-soak-") as log_dir:
            for loop_kind in args.loops:
                results.append(await soak_one_loop(loop_kind, upstream_url, args, Path(log_dir)))
    finally:
        await upstream.stop()
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1,000 requests per loop (< 60 s)")
    parser.add_argument("--requests", type=int, help="requests per loop (default 10,000)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--loops",
        default="asyncio,qasync",
        type=lambda text: [part for part in text.split(",") if part],
        help="comma-separated: asyncio (like serve), qasync (like the tray), "
        "serve (the real `python -m app serve` process; not in the default)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the JSON summary here")
    parser.add_argument(
        "--trace-memory",
        action="store_true",
        help="tracemalloc in the server: print the lines whose memory grew, per phase (slow)",
    )
    args = parser.parse_args(argv)
    if args.requests is None:
        args.requests = 1000 if args.quick else 10_000
    unknown = set(args.loops) - {"asyncio", "qasync", "serve"}
    if unknown:
        parser.error(f"unknown loop(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("aiohttp").setLevel(logging.ERROR)
    started = time.perf_counter()
    results = asyncio.run(run(args))
    print(render(results, args.requests, args.concurrency))
    summary = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "wall_s": round(time.perf_counter() - started, 1),
        "loops": results,
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
