"""Does HTTP/2 to the upstream pay? httpx2 over HTTP/2 against aiohttp's HTTP/1.1 pool.

    .venv/bin/python -m tests.benchmarks.bench_http2 [--quick] [--json PATH] [--rtt-ms 0,40]
                     [--chunks 50] [--chunk-delay-ms 2] [--concurrency 1,8,32,64] [--no-pin]

A Node process (`h2_upstream.mjs`: nghttp2 and llhttp, so the server's own cost stays far
below the Python client's) serves a fake OpenAI `/v1/chat/completions` over TLS on 127.0.0.1,
HTTP/2 and HTTP/1.1 on one port, with a relay in front that delays each direction by RTT/2.
This process sends waves of N simultaneous requests (the translated Claude Code request, or
a 2 KB one) with four clients: aiohttp configured like `UpstreamClient` (HTTP/1.1), httpx2
over HTTP/1.1 (the library without the protocol), httpx2 over HTTP/2 against the server with
HTTP/2's default 64 KiB flow-control windows, and against one advertising 1 MiB. Each repeat
is a fresh client: its first wave is **cold** (pays TCP and TLS), its second **warm**.

Not collected by pytest (bench_*.py, no test_ functions). Exit code 2 when a server answer or
a negotiated protocol is not what it should be. See tests/benchmarks/README.md.
"""

import argparse
import asyncio
import json
import math
import os
import shutil
import ssl
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import httpx2

from app.core.capabilities import quirks_for_model
from app.core.request_map import to_openai_request
from app.core.request_validation import validate_messages_request
from app.core.tiers import ModelAliases, resolve_model
from app.server.json_body import encode_json

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures"
CERT = FIXTURES / "tls" / "selfsigned-127.0.0.1.crt"
KEY = FIXTURES / "tls" / "selfsigned-127.0.0.1.key"
CLAUDE_CODE_REQUEST = FIXTURES / "requests" / "claude_code_request.json"
SERVER_SCRIPT = HERE / "h2_upstream.mjs"
PATH = "/v1/chat/completions"
HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
# Go's net/http2 server grants 1 MiB per connection and per stream by default; many API
# front ends grant more, some (HTTP/2's defaults) 64 KiB. The second HTTP/2 client sees this.
BIG_WINDOW = 1 << 20
DONE = b"data: [DONE]\n\n"


class BenchError(Exception):
    """A server answer or negotiated protocol that would make the figures meaningless."""


# ---------------------------------------------------------------- request bodies


def openai_body(anthropic: dict[str, Any], stream: bool) -> bytes:
    """What NimBridge sends upstream for `anthropic`, encoded as `UpstreamClient` does."""
    req = validate_messages_request({**anthropic, "stream": stream})
    target = resolve_model(req["model"], ModelAliases(default="bench/model"))
    route = target.with_quirks(quirks_for_model(target.upstream_model))
    return encode_json(dict(to_openai_request(req, route)))


def claude_code_body() -> dict[str, Any]:
    body: dict[str, Any] = json.loads(CLAUDE_CODE_REQUEST.read_text(encoding="utf-8"))["body"]
    return body


def small_body() -> dict[str, Any]:
    """About 2 KB upstream: a short system prompt and one question, no tools."""
    return {
        "model": "claude-haiku-4-5",
        "max_tokens": 512,
        "system": "You are a careful assistant. Answer briefly and precisely. " * 29,
        "messages": [{"role": "user", "content": "Summarise the last change in one line."}],
    }


@dataclass(frozen=True)
class Mode:
    name: str
    stream: bool
    body: bytes


def make_modes() -> list[Mode]:
    large, small = claude_code_body(), small_body()
    return [
        Mode("stream 74K", True, openai_body(large, True)),
        Mode("stream 2K", True, openai_body(small, True)),
        Mode("json 74K", False, openai_body(large, False)),
    ]


# ---------------------------------------------------------------- clients


class Fetcher(Protocol):
    async def fetch(self, url: str, body: bytes, stream: bool) -> tuple[float, float]:
        """One request read to its end: (time to first byte, total time), in seconds."""
        ...

    async def close(self) -> None: ...


async def read_sse(chunks: AsyncIterator[bytes], start: float) -> tuple[float, float]:
    """Time to the first complete `data:` event and to the end of the stream."""
    head = b""
    first: float | None = None
    tail = b""
    async for data in chunks:
        if first is None:
            head += data
            if b"\n\n" in head:
                first = time.perf_counter()
        tail = (tail + data)[-len(DONE) :]
    end = time.perf_counter()
    if first is None or tail != DONE:
        raise BenchError(f"stream did not end with [DONE]: ...{tail!r}")
    return first - start, end - start


def check_completion(data: bytes) -> None:
    if json.loads(data).get("object") != "chat.completion":
        raise BenchError(f"not a chat.completion: {data[:200]!r}")


class AiohttpFetcher:
    """A ClientSession configured as `UpstreamClient` configures it (HTTP/1.1 keep-alive)."""

    def __init__(self, tls: ssl.SSLContext) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, ttl_dns_cache=300, ssl=tls),
            timeout=aiohttp.ClientTimeout(total=1800.0, sock_connect=10.0, sock_read=600.0),
            headers={"User-Agent": "nimbridge-bench"},
        )

    async def fetch(self, url: str, body: bytes, stream: bool) -> tuple[float, float]:
        start = time.perf_counter()
        async with self._session.post(url, data=body, headers=HEADERS) as response:
            if response.status != 200 or response.version != aiohttp.HttpVersion11:
                raise BenchError(f"aiohttp: {response.status} over HTTP/{response.version}")
            if stream:
                return await read_sse(response.content.iter_any(), start)
            first = time.perf_counter()
            check_completion(await response.read())
        return first - start, time.perf_counter() - start

    async def close(self) -> None:
        await self._session.close()


class HttpxFetcher:
    """httpx2 (the fork the anthropic and openai SDKs use) with limits as wide as aiohttp's."""

    def __init__(self, tls: ssl.SSLContext, *, http2: bool) -> None:
        self._expected = "HTTP/2" if http2 else "HTTP/1.1"
        self._client = httpx2.AsyncClient(
            http1=True,  # offered beside h2, as a deployment would keep a fallback
            http2=http2,
            verify=tls,
            limits=httpx2.Limits(max_connections=256, max_keepalive_connections=256),
            timeout=httpx2.Timeout(1800.0, connect=10.0, read=600.0, pool=None),
            headers={"User-Agent": "nimbridge-bench"},
        )

    async def fetch(self, url: str, body: bytes, stream: bool) -> tuple[float, float]:
        start = time.perf_counter()
        async with self._client.stream("POST", url, content=body, headers=HEADERS) as response:
            if response.status_code != 200 or response.http_version != self._expected:
                raise BenchError(
                    f"httpx2: {response.status_code} over {response.http_version}, "
                    f"expected {self._expected}"
                )
            if stream:
                return await read_sse(response.aiter_raw(), start)
            first = time.perf_counter()
            check_completion(await response.aread())
        return first - start, time.perf_counter() - start

    async def close(self) -> None:
        await self._client.aclose()


@dataclass(frozen=True)
class ClientKind:
    name: str
    server: str  # which of the upstream's two servers: "std" or "big" windows
    version: str  # what the server must report for every request: "1.1" or "2.0"
    make: Callable[[ssl.SSLContext], Fetcher]

    def client(self) -> Fetcher:
        # A context each: httpx2 sets ALPN on the one it is given, which would turn
        # aiohttp's connections to h2 (that aiohttp cannot speak) if they shared it.
        return self.make(ssl.create_default_context(cafile=str(CERT)))  # verify, trust ours


CLIENTS = (
    ClientKind("aiohttp h1", "std", "1.1", AiohttpFetcher),
    ClientKind("httpx h1", "std", "1.1", lambda tls: HttpxFetcher(tls, http2=False)),
    ClientKind("httpx h2", "std", "2.0", lambda tls: HttpxFetcher(tls, http2=True)),
    ClientKind("httpx h2 1M", "big", "2.0", lambda tls: HttpxFetcher(tls, http2=True)),
)
BASELINE = CLIENTS[0].name


# ---------------------------------------------------------------- the upstream process


def pin_to(cpu: int | None) -> Callable[[], None] | None:
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


class Upstream:
    """The Node server and its relays; one per RTT, since the relays' delay is fixed."""

    def __init__(self, proc: asyncio.subprocess.Process, ports: dict[str, int]) -> None:
        self.proc = proc
        self.urls = {name: f"https://127.0.0.1:{port}{PATH}" for name, port in ports.items()}

    @classmethod
    async def start(cls, args: argparse.Namespace, rtt_ms: float, cpu: int | None) -> "Upstream":
        node = shutil.which("node")
        if node is None:
            raise BenchError("node (>= 18) is needed for the upstream server")
        proc = await asyncio.create_subprocess_exec(
            node,
            str(SERVER_SCRIPT),
            str(CERT),
            str(KEY),
            str(args.chunks),
            str(args.chunk_delay_ms),
            str(rtt_ms),
            str(BIG_WINDOW),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            preexec_fn=pin_to(cpu),  # before exec: Node's threads inherit it
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
        if not line:
            raise BenchError("the Node upstream exited before listening")
        return cls(proc, json.loads(line))

    async def stats(self) -> dict[str, Any]:
        """Counters since the last call (requests, TLS connections, HTTP versions, CPU)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"stats\n")
        stats: dict[str, Any] = json.loads(await self.proc.stdout.readline())
        return stats

    async def stop(self) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"stop\n")
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


# ---------------------------------------------------------------- waves and figures


@dataclass
class Figures:
    """Everything measured for one (rtt, mode, concurrency, wave, client)."""

    ttfb: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    cpu_per_request: list[float] = field(default_factory=list)
    connections: list[int] = field(default_factory=list)


async def run_wave(
    fetcher: Fetcher,
    upstream: Upstream,
    kind: ClientKind,
    mode: Mode,
    concurrency: int,
    figures: Figures,
) -> None:
    url = upstream.urls[kind.server]
    cpu0 = time.process_time()
    start = time.perf_counter()
    samples = await asyncio.gather(
        *(fetcher.fetch(url, mode.body, mode.stream) for _ in range(concurrency))
    )
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    stats = await upstream.stats()
    if stats["requests"] != concurrency or stats["versions"] != {kind.version: concurrency}:
        raise BenchError(f"{kind.name}: server saw {stats}, expected HTTP/{kind.version}")
    figures.ttfb.extend(s[0] for s in samples)
    figures.total.extend(s[1] for s in samples)
    figures.wall.append(wall)
    figures.cpu_per_request.append(cpu / concurrency)
    figures.connections.append(stats["tls_connections"])


Key = tuple[float, str, int, str, str]  # rtt_ms, mode, concurrency, wave, client


def repeats_for(concurrency: int, quick: bool) -> int:
    """Waves per client: 8 alone (2 with --quick), else 2 (1); a wave of 8 or more requests
    already gives a stable median, and the simulated round trip varies little."""
    target, least = (2, 1) if quick else (8, 2)
    return max(least, -(-target // concurrency))


async def run_all(args: argparse.Namespace) -> dict[Key, Figures]:
    cpus = sorted(os.sched_getaffinity(0))
    pin = not args.no_pin and len(cpus) >= 2
    if pin:
        os.sched_setaffinity(0, {cpus[1]})
    modes = make_modes()
    if args.quick:  # the streams only: what a Claude Code session sends
        modes = [mode for mode in modes if mode.stream]
    results: dict[Key, Figures] = {}
    for rtt in args.rtt_ms:
        upstream = await Upstream.start(args, rtt, cpus[0] if pin else None)
        try:
            await upstream.stats()
            for kind in CLIENTS:  # sanity: every client, every mode, the right protocol
                fetcher = kind.client()
                try:
                    for mode in modes:
                        await run_wave(fetcher, upstream, kind, mode, 2, Figures())
                finally:
                    await fetcher.close()
            for mode in modes:
                for concurrency in args.concurrency:
                    repeats = repeats_for(concurrency, args.quick)
                    log(f"rtt {rtt:g} ms, {mode.name}, {concurrency} at once, x{repeats} each")
                    for repeat in range(repeats):
                        turn = repeat % len(CLIENTS)  # rotate: drift hits every client alike
                        for kind in CLIENTS[turn:] + CLIENTS[:turn]:
                            fetcher = kind.client()
                            try:
                                for wave in ("cold", "warm"):
                                    key = (rtt, mode.name, concurrency, wave, kind.name)
                                    figures = results.setdefault(key, Figures())
                                    await run_wave(
                                        fetcher, upstream, kind, mode, concurrency, figures
                                    )
                            finally:
                                await fetcher.close()
        finally:
            await upstream.stop()
    return results


def percentile(values: list[float], p: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def summarise(figures: Figures) -> dict[str, float]:
    wall = statistics.median(figures.wall)
    return {
        "ttfb_p50_ms": 1000 * percentile(figures.ttfb, 50),
        "ttfb_p95_ms": 1000 * percentile(figures.ttfb, 95),
        "total_p50_ms": 1000 * percentile(figures.total, 50),
        "total_p95_ms": 1000 * percentile(figures.total, 95),
        "wall_ms": 1000 * wall,
        # run-to-run variation: the spread of a wave's wall time over the repeats
        "wall_spread_pct": 100 * (max(figures.wall) - min(figures.wall)) / wall
        if len(figures.wall) > 1
        else float("nan"),
        "cpu_ms_per_request": 1000 * statistics.median(figures.cpu_per_request),
        "connections": statistics.median(figures.connections),
        "waves": len(figures.wall),
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def absolute_table(summary: dict[Key, dict[str, float]]) -> str:
    lines = [
        "| RTT | request | conc | wave | client | TTFB p50 / p95 ms | total p50 / p95 ms "
        "| wall ms (spread) | CPU ms/req | TLS conns |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (rtt, mode, concurrency, wave, client), s in summary.items():
        lines.append(
            f"| {rtt:g} | {mode} | {concurrency} | {wave} | {client} "
            f"| {s['ttfb_p50_ms']:.1f} / {s['ttfb_p95_ms']:.1f} "
            f"| {s['total_p50_ms']:.1f} / {s['total_p95_ms']:.1f} "
            f"| {s['wall_ms']:.1f} {_spread(s['wall_spread_pct'])} "
            f"| {s['cpu_ms_per_request']:.2f} | {s['connections']:g} |"
        )
    return "\n".join(lines)


def _spread(percent: float) -> str:
    """The repeats' spread; one repeat (--quick) has none to show."""
    return "" if math.isnan(percent) else f"({percent:.0f}%)"


def ratio_table(summary: dict[Key, dict[str, float]]) -> str:
    """Per scenario: aiohttp's figures, and every other client's as a ratio to them."""
    others = [kind.name for kind in CLIENTS[1:]]
    lines = [
        "| RTT ms | request | conc | wave | aiohttp h1 TTFB p50/p95, total p50/p95 ms | "
        + " | ".join(f"{name} : aiohttp (TTFB p50/p95, total p50/p95, wall)" for name in others)
        + " | CPU ms/req "
        + " / ".join(kind.name for kind in CLIENTS)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(others) + "---|",
    ]
    scenarios = dict.fromkeys(key[:4] for key in summary)
    for scenario in scenarios:
        base = summary[(*scenario, BASELINE)]
        cells = [
            f"{base['ttfb_p50_ms']:.0f}/{base['ttfb_p95_ms']:.0f}, "
            f"{base['total_p50_ms']:.0f}/{base['total_p95_ms']:.0f}"
        ]
        for name in others:
            s = summary[(*scenario, name)]
            ratios = [
                s[f] / base[f]
                for f in ("ttfb_p50_ms", "ttfb_p95_ms", "total_p50_ms", "total_p95_ms", "wall_ms")
            ]
            cells.append("{:.2f}/{:.2f}, {:.2f}/{:.2f}, {:.2f}".format(*ratios))
        cells.append(
            " / ".join(f"{summary[(*scenario, k.name)]['cpu_ms_per_request']:.2f}" for k in CLIENTS)
        )
        rtt, mode, concurrency, wave = scenario
        lines.append(f"| {rtt:g} | {mode} | {concurrency} | {wave} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comma_list(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    return lambda text: [kind(part) for part in text.split(",") if part]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="streams only, 1, 8 and 64 at once, fewer waves"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument(
        "--rtt-ms", type=comma_list(float), default=[0.0, 40.0], help="round trips to simulate"
    )
    parser.add_argument("--concurrency", type=comma_list(int), help="default 1,8,32,64")
    parser.add_argument("--chunks", type=int, default=50, help="content chunks per stream")
    parser.add_argument("--chunk-delay-ms", type=float, default=2.0, help="between chunks")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client")
    args = parser.parse_args(argv)
    if args.concurrency is None:
        args.concurrency = [1, 8, 64] if args.quick else [1, 8, 32, 64]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        results = asyncio.run(run_all(args))
    except BenchError as exc:
        log(f"FAILED: {exc}")
        return 2
    summary = {key: summarise(figures) for key, figures in results.items()}
    log(f"took {time.perf_counter() - started:.0f} s")
    print(absolute_table(summary))
    print()
    print(ratio_table(summary))
    if args.json:
        document = {
            "config": {
                "rtt_ms": args.rtt_ms,
                "chunks": args.chunks,
                "chunk_delay_ms": args.chunk_delay_ms,
                "big_window": BIG_WINDOW,
                "quick": args.quick,
                "pinned": not args.no_pin,
                "aiohttp": aiohttp.__version__,
                "httpx2": httpx2.__version__,
            },
            "results": [
                dict(zip(("rtt_ms", "mode", "concurrency", "wave", "client"), key, strict=True))
                | figures
                for key, figures in summary.items()
            ],
        }
        args.json.write_text(json.dumps(document, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
