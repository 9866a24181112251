"""NimBridge measured from outside: each proxy its own process, pinned, loaded by wrk.

    .venv/bin/python -m tests.benchmarks.bench_outside [--quick] [--json PATH] [--check]
                                    [--qasync] [--soak] [--rounds N] [--seconds S]

The shape of issue 22's table. Processes on 127.0.0.1, on a machine with two CPUs:

- a fast fake OpenAI upstream (bench_proxy's, on uvloop; `outside_servers.py`), wrk and
  the small Python clients of this script on CPU 1;
- the proxy under test alone on CPU 0, one proxy at a time: PASSTHROUGH (bench_proxy's
  minimal aiohttp byte pass-through, on uvloop: the floor), NIMBRIDGE (the real
  `python -m app serve` with the shipped settings in a temporary config folder: the
  NVIDIA preset pointed at the fake upstream with the largest rate budget the settings
  take, INFO logging to a file, request history, stream guard and smoothing as shipped),
  and with `--qasync` NIMBRIDGE-qasync (the same command on the tray's Qt loop).

wrk POSTs the Anthropic request to NimBridge and, to the pass-through, the exact body
NimBridge sent upstream for it (read back from the upstream), so the upstream answers
the same bytes to both. See tests/benchmarks/README.md for the figures and the targets.

Not collected by pytest (bench_*.py, no test_ functions). Exit code 0 unless `--check`
is given and a target FAILs (1), or a proxy answers wrongly or will not start (2).
"""

import argparse
import http.client
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.benchmarks.bench_proxy import COMPLETION_TEXT, SANITY_CHUNKS, Check, anthropic_body
from tests.benchmarks.proc import rss_kb, stop_process

CONCURRENCY = 32
STREAM_CHUNKS = 50
UPSTREAM_MODEL = "fake/model"
PROXY_KEY = "bench-outside-proxy-key"
UPSTREAM_KEY = "nvapi-bench-outside-upstream-key"
# The settings' largest per-minute budget (limits.py): unthrottled while NimBridge is
# sent fewer requests than this in any minute, which the run checks.
RATE_BUDGET = 100_000
PROXY_CPU, LOAD_CPU = 0, 1
SOAK_RSS_LIMIT_MB = 60.0

PASSTHROUGH, NIMBRIDGE, NIMBRIDGE_QASYNC = "PASSTHROUGH", "NIMBRIDGE", "NIMBRIDGE-qasync"
SERVERS = [sys.executable, "-m", "tests.benchmarks.outside_servers"]


def log(message: str) -> None:
    print(f"[outside] {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A process would not start or answered wrongly: the figures would mean nothing."""


# ====================================================================== processes


class Server:
    """A server process that prints `... listening on URL` as its first line."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], cpu: int, home: Path | None = None
    ) -> None:
        self.name = name
        self.home = home or Path(tempfile.mkdtemp(prefix="nimbridge-outside-"))
        self.log_path = self.home / f"{name.lower()}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,  # serve's INFO log: the file it is shipped to write
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        )
        # Before the interpreter is up: every thread it starts inherits the CPU.
        os.sched_setaffinity(self.proc.pid, {cpu})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if "listening on http://" not in line:
            self.stop()
            raise BenchError(f"{name} did not start: {line!r}\n{self.log_tail()}")
        self.url = line.split()[-1]
        wrong = [tid for tid in self.threads() if os.sched_getaffinity(tid) != {cpu}]
        if wrong:
            self.stop()
            raise BenchError(f"{name}: threads {wrong} not pinned to CPU {cpu}")

    def threads(self) -> list[int]:
        return [int(tid) for tid in os.listdir(f"/proc/{self.proc.pid}/task")]

    def cpu_seconds(self) -> float:
        """utime + stime of the whole process (all its threads), from /proc/PID/stat."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        return rss_kb(self.proc.pid) / 1024

    def log_tail(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        stop_process(self.proc, 15)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._log.close()
        shutil.rmtree(self.home, ignore_errors=True)


def nimbridge_argv(home: Path, upstream_url: str, qasync: bool) -> list[str]:
    """`serve` with the shipped settings but for the upstream and its budget."""
    config = home / "settings.json"
    provider = {
        "name": "nvidia",
        "kind": "nvidia",
        "base_url": f"{upstream_url}/v1",
        "requests_per_minute": RATE_BUDGET,
    }
    config.write_text(json.dumps({"providers": [provider]}), encoding="utf-8")
    command = ["serve", "--config", str(config), "--port", "0", "--model", UPSTREAM_MODEL]
    if qasync:
        return [*SERVERS, "qasync", "--", *command]
    return [sys.executable, "-m", "app", *command]


def start_nimbridge(name: str, upstream_url: str, qasync: bool) -> Server:
    home = Path(tempfile.mkdtemp(prefix="nimbridge-outside-home-"))
    env = {
        # A settings home of its own (history, config): the user's stay out of it.
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_STATE_HOME": str(home / "state"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",  # keys: the environment
        "NVIDIA_API_KEY": UPSTREAM_KEY,
        "NIMBRIDGE_PROXY_KEY": PROXY_KEY,
    }
    try:
        return Server(name, nimbridge_argv(home, upstream_url, qasync), env, PROXY_CPU, home)
    except BaseException:
        shutil.rmtree(home, ignore_errors=True)
        raise


# ====================================================================== requests


@dataclass(frozen=True)
class Target:
    """Where to send a request, and the bytes and headers it takes."""

    name: str
    url: str
    headers: dict[str, str]
    non_stream_body: bytes
    stream_body: bytes
    end_marker: bytes

    def body(self, stream: bool) -> bytes:
        return self.stream_body if stream else self.non_stream_body


def compact(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def nimbridge_target(name: str, base_url: str, chunks: int = STREAM_CHUNKS) -> Target:
    headers = {
        "Content-Type": "application/json",
        "x-api-key": PROXY_KEY,
        "anthropic-version": "2023-06-01",
    }
    return Target(
        name,
        base_url + "/v1/messages",
        headers,
        compact(anthropic_body(False)),
        compact(anthropic_body(True, chunks)),
        b"message_stop",
    )


def openai_target(name: str, base_url: str, non_stream: bytes, stream: bytes) -> Target:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {UPSTREAM_KEY}"}
    return Target(name, base_url + "/v1/chat/completions", headers, non_stream, stream, b"[DONE]")


class Client:
    """A keep-alive HTTP/1.1 connection (http.client): concurrency 1, first bytes timed."""

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.path = parsed.path
        self.conn = http.client.HTTPConnection(parsed.hostname or "", parsed.port, timeout=30)

    def post(self, target: Target, stream: bool) -> tuple[float, bytes, int]:
        """(seconds to the first body bytes, the whole body, status)."""
        started = time.perf_counter()
        self.conn.request("POST", self.path, target.body(stream), target.headers)
        response = self.conn.getresponse()
        first = response.read1(65536)
        first_s = time.perf_counter() - started
        return first_s, first + response.read(), response.status

    def close(self) -> None:
        self.conn.close()


def sse_text(raw: bytes, anthropic: bool) -> str:
    text = ""
    for line in raw.decode().splitlines():
        if not line.startswith("data:") or line[5:].strip() == "[DONE]":
            continue
        data = json.loads(line[5:])
        if anthropic and data.get("type") == "content_block_delta":
            text += data["delta"].get("text", "")
        elif not anthropic and data.get("choices"):
            text += data["choices"][0]["delta"].get("content") or ""
    return text


def sanity_check(target: Target, anthropic: bool) -> None:
    """The target answers the whole text, non-stream and stream (SANITY_CHUNKS chunks)."""
    client = Client(target.url)
    try:
        _, raw, status = client.post(target, stream=False)
        body = json.loads(raw) if status == 200 else {}
        text = (
            body.get("content", [{}])[0].get("text")
            if anthropic
            else body.get("choices", [{}])[0].get("message", {}).get("content")
        )
        if text != COMPLETION_TEXT:
            raise BenchError(f"{target.name} non-stream: status {status}, {raw[:300]!r}")
        if anthropic:  # a short stream, then the measured one
            short = nimbridge_target(target.name, target.url.rsplit("/v1/", 1)[0], SANITY_CHUNKS)
            _, raw, status = client.post(short, stream=True)
            expected = "".join(f" w{i % 100:02d}" for i in range(SANITY_CHUNKS))
            if status != 200 or sse_text(raw, True) != expected or b"event: error" in raw:
                raise BenchError(f"{target.name} stream: status {status}, {raw[:300]!r}")
        _, raw, status = client.post(target, stream=True)
        expected = "".join(f" w{i % 100:02d}" for i in range(STREAM_CHUNKS))
        if status != 200 or sse_text(raw, anthropic) != expected:
            raise BenchError(f"{target.name} stream: status {status}, {raw[-300:]!r}")
    finally:
        client.close()


def upstream_body_of(upstream_url: str, target: Target, stream: bool) -> bytes:
    """What NimBridge sends upstream for the target's request (read back from the upstream)."""
    client = Client(target.url)
    try:
        client.post(target, stream)
    finally:
        client.close()
    with urllib.request.urlopen(upstream_url + "/last-request", timeout=10) as response:
        body: bytes = response.read()
    return body


# ====================================================================== wrk

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
{headers}
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_JSON {{\\"requests\\": %d, \\"duration_us\\": %d, \\"p50_us\\": %.1f, "
    .. "\\"p99_us\\": %.1f, \\"errors\\": %d, \\"non_2xx\\": %d}}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def wrk(target: Target, stream: bool, connections: int, seconds: float, scripts: Path) -> WrkResult:
    """wrk, one thread (its CPU is shared with the upstream), `connections` at once."""
    headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in target.headers.items())
    body = target.body(stream).decode()
    assert "]==]" not in body
    script = scripts / f"{target.name}-{'stream' if stream else 'json'}.lua"
    script.write_text(WRK_SCRIPT.format(body=body, headers=headers), encoding="utf-8")
    whole_seconds = max(1, round(seconds))  # wrk takes whole seconds only
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{whole_seconds}s", "--timeout", "10s"]
    done = subprocess.run(
        [*argv, "-s", str(script), target.url], capture_output=True, text=True, check=False
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    out = json.loads(line[len("WRK_JSON ") :])
    return WrkResult(
        out["requests"],
        out["duration_us"] / 1e6,
        out["p50_us"] / 1000,
        out["p99_us"] / 1000,
        out["errors"] + out["non_2xx"],
    )


# ====================================================================== measuring


@dataclass
class Plan:
    seconds: float  # of load per throughput mode and round (whole seconds: wrk's)
    latency_seconds: float  # of wrk at one connection per target and turn (2 turns a round)
    ttfb_streams: int  # per target and round
    warmup_seconds: float
    rounds: int


DEFAULT_PLAN = Plan(10.0, 2.0, 300, 2.0, 2)
QUICK_PLAN = Plan(3.0, 1.0, 100, 1.0, 1)


@dataclass
class Tally:
    """One proxy's figures, summed over the rounds."""

    rps: dict[str, list[float]] = field(default_factory=lambda: {"json": [], "stream": []})
    requests: dict[str, int] = field(default_factory=lambda: {"json": 0, "stream": 0})
    cpu_s: dict[str, float] = field(default_factory=lambda: {"json": 0.0, "stream": 0.0})
    # CPU 1's work meanwhile (upstream + wrk), and the phases' length: was the proxy the
    # bound, or the load side?
    load_cpu_s: dict[str, float] = field(default_factory=lambda: {"json": 0.0, "stream": 0.0})
    seconds: dict[str, float] = field(default_factory=lambda: {"json": 0.0, "stream": 0.0})
    errors: int = 0
    p50_ms: list[float] = field(default_factory=list)
    direct_p50_ms: list[float] = field(default_factory=list)
    ttfb_s: list[float] = field(default_factory=list)
    direct_ttfb_s: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    most_requests_in_a_round: int = 0


def ttfb_pairs(proxy: Target, direct: Target, count: int, tally: Tally) -> None:
    """Streams at concurrency 1, proxy and upstream in blocks of 20 taken in turns."""
    clients = {proxy.name: Client(proxy.url), direct.name: Client(direct.url)}
    try:
        for target in (proxy, direct):  # warm-up: connections open, code paths warm
            for _ in range(10):
                clients[target.name].post(target, stream=True)
        done = 0
        while done < count:
            block = min(20, count - done)
            for target, into in ((proxy, tally.ttfb_s), (direct, tally.direct_ttfb_s)):
                for _ in range(block):
                    first, raw, status = clients[target.name].post(target, stream=True)
                    if status != 200 or target.end_marker not in raw[-200:]:
                        raise BenchError(f"{target.name} stream: {status} {raw[-200:]!r}")
                    into.append(first)
            done += block
    finally:
        for client in clients.values():
            client.close()


def children_cpu_seconds() -> float:
    """CPU time of the waited-for children: a wrk run's, as a difference around it."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    server: Server,
    upstream: Server,
    proxy: Target,
    direct: Target,
    plan: Plan,
    tally: Tally,
    scripts: Path,
) -> None:
    """One round for one proxy: throughput (32 at once), then latency (one at a time)."""
    sent = 0
    for stream in (False, True):
        sent += wrk(proxy, stream, CONCURRENCY, plan.warmup_seconds, scripts).requests
    for stream in (False, True):
        mode = "stream" if stream else "json"
        cpu0, load0 = server.cpu_seconds(), upstream.cpu_seconds() + children_cpu_seconds()
        result = wrk(proxy, stream, CONCURRENCY, plan.seconds, scripts)
        tally.cpu_s[mode] += server.cpu_seconds() - cpu0
        tally.load_cpu_s[mode] += upstream.cpu_seconds() + children_cpu_seconds() - load0
        tally.seconds[mode] += result.seconds
        tally.requests[mode] += result.requests
        tally.rps[mode].append(result.rps)
        tally.errors += result.errors
        sent += result.requests
        log(f"{proxy.name} {mode}: {result.rps:.0f} req/s, {result.errors} errors")
    for _ in range(2):  # upstream and proxy in turns, so drift hits both
        tally.direct_p50_ms.append(wrk(direct, False, 1, plan.latency_seconds, scripts).p50_ms)
        at_one = wrk(proxy, False, 1, plan.latency_seconds, scripts)
        tally.p50_ms.append(at_one.p50_ms)
        tally.errors += at_one.errors
        sent += at_one.requests
    ttfb_pairs(proxy, direct, plan.ttfb_streams, tally)
    tally.rss_mb.append(server.rss_mb())
    tally.most_requests_in_a_round = max(tally.most_requests_in_a_round, sent)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def summarize(tally: Tally) -> dict[str, Any]:
    def per_request_ms(mode: str) -> float:
        return round(tally.cpu_s[mode] * 1000 / max(tally.requests[mode], 1), 3)

    p50 = statistics.median(tally.p50_ms)
    direct_p50 = statistics.median(tally.direct_p50_ms)
    ttfb = statistics.median(tally.ttfb_s)
    direct_ttfb = statistics.median(tally.direct_ttfb_s)
    return {
        "non_stream_rps": round(statistics.mean(tally.rps["json"]), 1),
        "stream_rps": round(statistics.mean(tally.rps["stream"]), 1),
        "rps_each_round": {k: [round(v) for v in vs] for k, vs in tally.rps.items()},
        "errors": tally.errors,
        "p50_ms": round(p50, 3),
        "direct_p50_ms": round(direct_p50, 3),
        "added_p50_ms": round(p50 - direct_p50, 3),
        "ttfb_p50_ms": ms(ttfb),
        "direct_ttfb_p50_ms": ms(direct_ttfb),
        "added_ttfb_p50_ms": ms(ttfb - direct_ttfb),
        "cpu_ms_per_request_non_stream": per_request_ms("json"),
        "cpu_ms_per_request_stream": per_request_ms("stream"),
        "proxy_cpu_busy": {m: round(tally.cpu_s[m] / tally.seconds[m], 3) for m in tally.cpu_s},
        "load_cpu_busy": {m: round(tally.load_cpu_s[m] / tally.seconds[m], 3) for m in tally.cpu_s},
        "rss_mb_after_load": round(max(tally.rss_mb), 1),
        "most_requests_in_a_round": tally.most_requests_in_a_round,
    }


def run_proxies(args: argparse.Namespace, plan: Plan, scripts: Path) -> dict[str, Any]:
    upstream = Server("UPSTREAM", [*SERVERS, "upstream"], {}, LOAD_CPU)
    try:
        return run_against(upstream, args, plan, scripts)
    finally:
        upstream.stop()


def run_against(
    upstream: Server, args: argparse.Namespace, plan: Plan, scripts: Path
) -> dict[str, Any]:
    names = [PASSTHROUGH, NIMBRIDGE] + ([NIMBRIDGE_QASYNC] if args.qasync else [])
    # The pass-through is sent what NimBridge sends upstream: learn it from a first serve.
    log("learning the upstream body NimBridge sends")
    first = start_nimbridge(NIMBRIDGE, upstream.url, qasync=False)
    try:
        probe = nimbridge_target(NIMBRIDGE, first.url)
        sanity_check(probe, anthropic=True)
        upstream_bodies = {s: upstream_body_of(upstream.url, probe, s) for s in (False, True)}
    finally:
        first.stop()
    direct = openai_target("DIRECT", upstream.url, upstream_bodies[False], upstream_bodies[True])
    sanity_check(direct, anthropic=False)
    tallies = {name: Tally() for name in names}
    for round_no in range(plan.rounds):
        # Every other round in reverse, so a slow spell of the machine hits each alike.
        for name in names if round_no % 2 == 0 else names[::-1]:
            log(f"round {round_no + 1}/{plan.rounds}: {name}")
            if name == PASSTHROUGH:
                server = Server(name, [*SERVERS, "passthrough", upstream.url], {}, PROXY_CPU)
                target = openai_target(name, server.url, *upstream_bodies.values())
            else:
                server = start_nimbridge(name, upstream.url, qasync=name == NIMBRIDGE_QASYNC)
                target = nimbridge_target(name, server.url)
            try:
                sanity_check(target, anthropic=name != PASSTHROUGH)
                measure(server, upstream, target, direct, plan, tallies[name], scripts)
                if server.proc.poll() is not None:
                    raise BenchError(f"{name} ended during the run:\n{server.log_tail()}")
            finally:
                server.stop()
    return {name: summarize(tally) for name, tally in tallies.items()}


def run_soak(requests: int) -> dict[str, Any]:
    """soak.py's `serve` loop: the real `nimbridge serve` under the mixed load with faults."""
    import asyncio

    from tests.benchmarks import soak

    soak_args = soak.parse_args(["--loops", "serve", "--requests", str(requests)])
    result: dict[str, Any] = asyncio.run(soak.run(soak_args))[0]
    return {
        "requests": result["requests"],
        "rps": result["rps"],
        "unexpected_errors": result["unexpected_errors"],
        "rss_mb_after_warmup": round(result["after_warmup"]["rss_kb"] / 1024, 1),
        "rss_mb_end": round(result["end"]["rss_kb"] / 1024, 1),
        "soak_passed": result["passed"],
        "soak_failed_checks": [name for name, ok in result["checks"].items() if not ok],
    }


# ====================================================================== report


def make_checks(summary: dict[str, Any]) -> list[Check]:
    proxies = summary["proxies"]
    floor = proxies[PASSTHROUGH]
    checks: list[Check] = []
    limits = {NIMBRIDGE: (0.6, 0.55), NIMBRIDGE_QASYNC: (0.4, 0.35)}
    for name, (non_stream, stream) in limits.items():
        if name not in proxies:
            continue
        row = proxies[name]
        checks.append(
            Check(
                f"{name} non-stream req/s / PASSTHROUGH's",
                row["non_stream_rps"] / floor["non_stream_rps"],
                ">=",
                non_stream,
            )
        )
        checks.append(
            Check(
                f"{name} stream req/s / PASSTHROUGH's",
                row["stream_rps"] / floor["stream_rps"],
                ">=",
                stream,
            )
        )
    checks.append(
        Check(
            "NIMBRIDGE added p50 - PASSTHROUGH's (ms)",
            proxies[NIMBRIDGE]["added_p50_ms"] - floor["added_p50_ms"],
            "<=",
            0.5,
        )
    )
    if "soak" in summary:
        checks.append(
            Check(
                "serve RSS after the soak (MB)",
                summary["soak"]["rss_mb_end"],
                "<=",
                SOAK_RSS_LIMIT_MB,
                "  (the soak FAILED: {})".format(", ".join(summary["soak"]["soak_failed_checks"]))
                if not summary["soak"]["soak_passed"]
                else "",
            )
        )
    return checks


def render(summary: dict[str, Any], checks: list[Check]) -> str:
    env = summary["env"]
    proxies = summary["proxies"]
    floor = proxies[PASSTHROUGH]
    names = list(proxies)
    lines = [
        f"NimBridge from outside ({env['mode']}, {env['rounds']} round(s) of "
        f"{env['seconds']:g} s per mode): Python {env['python']}, {env['cpus']} CPUs; "
        f"proxy on CPU {PROXY_CPU}, upstream + wrk on CPU {LOAD_CPU}",
        "",
        f"{'':38}" + "".join(f"{name:>20}" for name in names),
    ]

    def row(label: str, cell: Any) -> None:
        lines.append(f"{label:38}" + "".join(f"{cell(name)!s:>20}" for name in names))

    def with_ratio(key: str) -> Any:
        def cell(name: str) -> str:
            value = proxies[name][key]
            if name == PASSTHROUGH:
                return f"{value:.0f}"
            return f"{value:.0f} ({value / floor[key]:.2f}x)"

        return cell

    row(f"non-stream req/s at {CONCURRENCY} at once", with_ratio("non_stream_rps"))
    row(f"{STREAM_CHUNKS}-chunk stream req/s at {CONCURRENCY}", with_ratio("stream_rps"))
    row("added p50 non-stream, ms", lambda n: f"{proxies[n]['added_p50_ms']:.2f}")
    row("stream TTFB added p50, ms", lambda n: f"{proxies[n]['added_ttfb_p50_ms']:.2f}")
    row(
        "proxy CPU ms/request, json / stream",
        lambda n: (
            f"{proxies[n]['cpu_ms_per_request_non_stream']:.2f} / "
            f"{proxies[n]['cpu_ms_per_request_stream']:.2f}"
        ),
    )
    row("RSS after load, MB", lambda n: f"{proxies[n]['rss_mb_after_load']:.0f}")
    row(
        "(CPU busy json/stream: proxy; CPU 1)",
        lambda n: "{:.0%}/{:.0%}; {:.0%}/{:.0%}".format(
            *proxies[n]["proxy_cpu_busy"].values(), *proxies[n]["load_cpu_busy"].values()
        ),
    )
    row("errors", lambda n: proxies[n]["errors"])
    row(
        "(upstream p50 / TTFB p50 alone, ms)",
        lambda n: f"{proxies[n]['direct_p50_ms']:.2f} / {proxies[n]['direct_ttfb_p50_ms']:.2f}",
    )
    if "soak" in summary:
        soak = summary["soak"]
        lines += [
            "",
            f"Soak of `serve`: {soak['requests']} requests, {soak['rps']} req/s, "
            f"{soak['unexpected_errors']} unexpected errors, RSS {soak['rss_mb_after_warmup']} MB "
            f"after the warm-up, {soak['rss_mb_end']} MB at the end",
        ]
    lines += ["", "Targets"]
    for check in checks:
        verdict = "PASS" if check.passed else "FAIL"
        lines.append(
            f"  {verdict}  {check.name} = {check.value:.3f} {check.op} {check.limit:g}{check.note}"
        )
    return "\n".join(lines)


# ====================================================================== main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.bench_outside",
        description="NimBridge and a byte pass-through, each its own pinned process, under wrk.",
    )
    parser.add_argument("--quick", action="store_true", help="one short round (about 1 min)")
    parser.add_argument("--json", metavar="PATH", help="also write the JSON summary here")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target FAILs")
    parser.add_argument(
        "--qasync", action="store_true", help="also NimBridge's serve on the tray's Qt loop"
    )
    parser.add_argument(
        "--soak",
        nargs="?",
        type=int,
        const=10_000,
        metavar="N",
        help="also soak `serve` with N mixed requests (10,000) and check its RSS",
    )
    parser.add_argument("--rounds", type=int, help="rounds over the proxies (default 2)")
    parser.add_argument("--seconds", type=int, help="wrk seconds per throughput mode (10)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK_PLAN if args.quick else DEFAULT_PLAN
    if args.rounds:
        plan.rounds = args.rounds
    if args.seconds:
        plan.seconds = args.seconds
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    all_cpus = os.sched_getaffinity(0)
    if not {PROXY_CPU, LOAD_CPU} <= all_cpus:
        print(f"needs CPUs {PROXY_CPU} and {LOAD_CPU}", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {LOAD_CPU})  # wrk, the clients and the upstream inherit it
    started = time.perf_counter()
    summary: dict[str, Any] = {
        "env": {
            "mode": "quick" if args.quick else "default",
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "rounds": plan.rounds,
            "seconds": plan.seconds,
            "concurrency": CONCURRENCY,
            "stream_chunks": STREAM_CHUNKS,
        }
    }
    try:
        with tempfile.TemporaryDirectory(prefix="nimbridge-wrk-") as scripts:
            summary["proxies"] = run_proxies(args, plan, Path(scripts))
        if args.soak:
            os.sched_setaffinity(0, all_cpus)  # the soak's serve and load need not share one
            log(f"soak of serve, {args.soak} requests")
            summary["soak"] = run_soak(args.soak)
    except BenchError as exc:
        print(f"no figures: {exc}", file=sys.stderr)
        return 2
    for name, row in summary["proxies"].items():
        if name != PASSTHROUGH and row["most_requests_in_a_round"] >= RATE_BUDGET:
            log(f"{name} was sent more than its rate budget in a round: it may have paced")
    checks = make_checks(summary)
    summary["targets"] = [
        {"name": c.name, "value": round(c.value, 4), "op": c.op, "limit": c.limit, "pass": c.passed}
        for c in checks
    ]
    summary["all_pass"] = all(c.passed for c in checks)
    summary["env"]["wall_s"] = round(time.perf_counter() - started, 1)
    print(render(summary, checks))
    print("\nJSON summary")
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    log(f"done in {summary['env']['wall_s']} s")
    return 1 if args.check and not summary["all_pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
