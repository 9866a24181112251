"""The fault matrix: every way an upstream (or a client) misbehaves, against the real server.

Each case ends in a well-formed Anthropic error (an HTTP status before the
first byte, an `error` event after it), a log line that says what happened in
words, and no leak: open file descriptors, sockets and tasks on the server's
loop come back to where they were (`LeakCheck`). test_error_paths.py keeps
the finer points (SDK exception classes, retry windows, repairs, pings); this
file walks the whole matrix the same way for each case.
"""

import asyncio
import json
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.core.anthropic_stream import RUNAWAY_CHARS_PER_TOKEN
from app.core.sse import MAX_EVENT_BYTES
from tests.anthropic_grammar import assert_anthropic_grammar
from tests.fake_upstream import (
    FIXTURES,
    Behaviour,
    FakeUpstream,
    LoopThread,
    after,
    chunk,
    drop_connection,
    endless,
    endless_line,
    endless_text,
    hang,
    http_request,
    reply_body,
    reply_stream,
    text_stream,
)
from tests.integration.conftest import UPSTREAM_KEY, LiveProxy, MakeProxy, wait_for_log
from tests.integration.leak_check import LeakCheck

pytestmark = pytest.mark.allow_warnings  # every case here fails on purpose, and says so

MODEL = "claude-sonnet-4-6"
HELLO = [{"role": "user", "content": "hello"}]
TLS = FIXTURES / "tls"
MB = 1024 * 1024


# ------------------------------------------------------------------ leak check


@pytest.fixture
def leaks(loop_thread: LoopThread) -> Callable[[LiveProxy], LeakCheck]:
    return lambda proxy: LeakCheck(loop_thread, proxy)


LeakCheckFor = Callable[[LiveProxy], LeakCheck]


# ------------------------------------------------------------------ client side


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def request_id(self) -> str:
        return self.headers["request-id"]

    def error(self) -> dict[str, str]:
        """The Anthropic error of a plain HTTP answer, checked for shape."""
        assert self.headers["Content-Type"].startswith("application/json"), self.headers
        body = json.loads(self.raw)
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
        return dict(body["error"])

    def events(self) -> list[dict[str, Any]]:
        """The stream's events, checked against the grammar."""
        assert self.status == 200, self.raw[:500]
        events = [
            json.loads(line[6:])
            for line in self.raw.decode().splitlines()
            if line.startswith("data: ")
        ]
        assert_anthropic_grammar(events)
        return events


def ask(proxy: LiveProxy, *, stream: bool, max_tokens: int = 50) -> Answer:
    body = {"model": MODEL, "max_tokens": max_tokens, "messages": HELLO, "stream": stream}
    headers = {
        "x-api-key": proxy.client_key,
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
    }
    status, got, raw = http_request(
        proxy.url + "/v1/messages", "POST", body=json.dumps(body).encode(), headers=headers
    )
    return Answer(status, got, raw)


def logged(caplog: pytest.LogCaptureFixture, request_id: str, timeout: float = 3.0) -> str:
    """The server's one summary line for a request."""
    return wait_for_log(caplog, request_id + " ", timeout)


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="app")


def assert_http_error(
    answer: Answer,
    caplog: pytest.LogCaptureFixture,
    *,
    status: int,
    error_type: str,
    words: tuple[str, ...],
) -> None:
    assert answer.status == status, answer.raw
    error = answer.error()
    assert error["type"] == error_type
    for word in words:
        assert word in error["message"], (word, error["message"])
    assert UPSTREAM_KEY not in error["message"]
    line = logged(caplog, answer.request_id)
    assert f" {status} " in line and words[0] in line, line


def assert_error_event(
    answer: Answer, caplog: pytest.LogCaptureFixture, *, words: tuple[str, ...]
) -> list[dict[str, Any]]:
    events = answer.events()
    assert events[0]["type"] == "message_start"
    last = events[-1]
    assert last["type"] == "error", events[-3:]
    for word in words:
        assert word in last["error"]["message"], (word, last["error"]["message"])
    line = logged(caplog, answer.request_id)
    assert words[0] in line, line
    return events


# ------------------------------------------------------------------ upstream HTTP statuses

# upstream status -> (client status, Anthropic type, NIM's problem-details title)
STATUSES = {
    400: (400, "invalid_request_error", "Bad Request"),
    401: (401, "authentication_error", "Unauthorized"),
    403: (403, "permission_error", "Forbidden"),
    404: (404, "not_found_error", "Not Found"),
    413: (413, "request_too_large", "Payload Too Large"),
    422: (422, "invalid_request_error", "Unprocessable Entity"),
    429: (429, "rate_limit_error", "Too Many Requests"),
    500: (500, "api_error", "Internal Server Error"),
    502: (502, "api_error", "Bad Gateway"),
    503: (529, "overloaded_error", "Service Unavailable"),  # Anthropic says overloaded as 529
    504: (504, "api_error", "Gateway Timeout"),
}
RETRY_AFTER_STATUSES = {429, 503}  # where a provider says when to come back


def error_body(shape: str, status: int, words: str) -> tuple[str, str]:
    """(body, content type) of an upstream error in one of the three shapes seen in the wild."""
    if shape == "openai":
        error = {"message": words, "type": "invalid_request_error", "code": str(status)}
        return json.dumps({"error": error}), "application/json"
    if shape == "problem":  # NVIDIA's hosted API (fixtures/upstream_bodies/nim_404_*.json)
        problem = {
            "type": "urn:kaizen:problem-details:example",
            "title": STATUSES[status][2],
            "status": status,
            "detail": words,
        }
        return json.dumps(problem), "application/problem+json"
    return words, "text/plain"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("shape", ["openai", "problem", "plain"])
@pytest.mark.parametrize("upstream_status", list(STATUSES))
def test_upstream_status(
    make_proxy: MakeProxy,
    leaks: LeakCheckFor,
    caplog: pytest.LogCaptureFixture,
    upstream_status: int,
    shape: str,
    stream: bool,
) -> None:
    proxy = make_proxy(retry_max_attempts=1)  # no retries here: the next test has them
    words = f"zebra quota {upstream_status} exhausted for this account"
    body, content_type = error_body(shape, upstream_status, words)
    headers = {"Retry-After": "7"} if upstream_status in RETRY_AFTER_STATUSES else {}
    status, error_type, title = STATUSES[upstream_status]
    with leaks(proxy).around():
        proxy.upstream.enqueue(
            reply_body(body, status=upstream_status, content_type=content_type, **headers)
        )
        answer = ask(proxy, stream=stream)
        expected = (words, title) if shape == "problem" else (words,)
        assert_http_error(answer, caplog, status=status, error_type=error_type, words=expected)
        assert answer.headers.get("retry-after") == headers.get("Retry-After")
        assert len(proxy.upstream.chat_requests) == 1


@pytest.mark.parametrize("upstream_status", list(STATUSES))
def test_upstream_status_after_commit(
    make_proxy: MakeProxy,
    leaks: LeakCheckFor,
    caplog: pytest.LogCaptureFixture,
    upstream_status: int,
) -> None:
    """The error comes after the commit window: message_start is out, an `error` event ends it."""
    proxy = make_proxy(retry_max_attempts=1, commit_window_s=0.05)
    words = f"late zebra {upstream_status}"
    body, content_type = error_body("openai", upstream_status, words)
    with leaks(proxy).around():
        proxy.upstream.enqueue(
            after(0.25, reply_body(body, status=upstream_status, content_type=content_type))
        )
        answer = ask(proxy, stream=True)
        events = assert_error_event(answer, caplog, words=(words,))
        assert events[-1]["error"]["type"] == STATUSES[upstream_status][1]


@pytest.mark.parametrize("upstream_status", list(STATUSES))
def test_retried_statuses(make_proxy: MakeProxy, upstream_status: int) -> None:
    """429, 502, 503 and 504 are retried before the first byte; the rest are final."""
    proxy = make_proxy(retry_max_attempts=2)
    for _ in range(2):  # Retry-After 0: no 2 s cool-down after the 429
        proxy.upstream.enqueue(
            reply_body("busy busy", status=upstream_status, **{"Retry-After": "0"})
        )
    answer = ask(proxy, stream=False)
    assert answer.status == STATUSES[upstream_status][0]
    retried = upstream_status in {429, 502, 503, 504}
    assert len(proxy.upstream.chat_requests) == (2 if retried else 1)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_connection_closed_before_the_answer_is_sent_again(
    make_proxy: MakeProxy, leaks: LeakCheckFor, stream: bool
) -> None:
    """What a kept-alive connection the server gave up on looks like: the request goes out
    and the connection closes with no answer. Sent again, the client never sees it."""
    proxy = make_proxy()
    with leaks(proxy).around():
        proxy.upstream.enqueue(drop_connection())  # then the fake's normal answer
        answer = ask(proxy, stream=stream)
        assert answer.status == 200 and b"error" not in answer.raw
        assert b"end_turn" in answer.raw  # a whole answer
        assert len(proxy.upstream.chat_requests) == 2


def test_an_upstream_closing_idle_connections_sooner_than_us_costs_nothing(
    make_proxy: MakeProxy, loop_thread: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    """We keep idle connections 90 s; uvicorn (vLLM) and Node close theirs after 5 s.
    Their close reaches our pool before the next request, which takes a new connection."""
    quick_closer = FakeUpstream(keepalive_s=1.0)
    loop_thread.run(quick_closer.start())
    try:
        proxy = make_proxy(upstream_url=quick_closer.base_url)
        assert ask(proxy, stream=False).status == 200
        assert ask(proxy, stream=False).status == 200  # at once: a pooled connection
        time.sleep(2.0)  # the upstream closes the idle connections
        assert ask(proxy, stream=True).status == 200
        first, again, later = (r.peer for r in quick_closer.chat_requests)
        assert later not in (first, again)  # a new connection, none of the closed ones
        assert len(quick_closer.chat_requests) == 3  # nothing was sent twice
        assert "retrying" not in caplog.text
    finally:
        loop_thread.run(quick_closer.stop())


# ------------------------------------------------------------------ reaching the upstream


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def tls_server(loop_thread: LoopThread) -> Iterator[int]:
    """A TLS listener on 127.0.0.1 with a self-signed certificate; the port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(TLS / "selfsigned-127.0.0.1.crt", TLS / "selfsigned-127.0.0.1.key")

    async def start() -> asyncio.Server:
        return await asyncio.get_running_loop().create_server(
            asyncio.Protocol, "127.0.0.1", 0, ssl=context
        )

    server = loop_thread.run(start())
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        loop_thread.run(server.wait_closed())


@contextmanager
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full: Linux drops further SYNs, so connect() hangs.

    listen(0) takes one connection that is never accepted; the next ones fill
    the SYN queue. Deterministic on Linux (tcp_abort_on_overflow=0, the
    default): a connect timeout without any packet loss games.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(
    "case",
    [
        "refused",
        "dns",
        "tls-to-plain-http",
        "tls-self-signed",
        "connect-timeout",
        "dropped-before-answer",
    ],
)
def test_cannot_reach_upstream(
    make_proxy: MakeProxy,
    leaks: LeakCheckFor,
    caplog: pytest.LogCaptureFixture,
    loop_thread: LoopThread,
    upstream: FakeUpstream,
    case: str,
    stream: bool,
) -> None:
    # A commit window longer than the connect timeout: the failure is known before
    # the first byte, so streams get a plain HTTP status too.
    settings = {"retry_max_attempts": 1, "commit_window_s": 2.0, "connect_timeout_s": 0.5}
    with tls_server(loop_thread) as tls_port, full_backlog() as blackhole_port:
        url, status, words = {
            "refused": (
                f"http://127.0.0.1:{_closed_port()}/v1",
                502,
                ("cannot connect to the upstream", "connection refused"),
            ),
            "dns": (
                "http://no-such-host.invalid/v1",
                502,
                ("cannot resolve the upstream host no-such-host.invalid",),
            ),
            "tls-to-plain-http": (
                f"https://127.0.0.1:{upstream.port}/v1",
                502,
                ("TLS handshake with 127.0.0.1 failed", "http:// versus https://"),
            ),
            "tls-self-signed": (
                f"https://127.0.0.1:{tls_port}/v1",
                502,
                ("TLS certificate of 127.0.0.1 was rejected", "self-signed certificate"),
            ),
            "connect-timeout": (
                f"http://127.0.0.1:{blackhole_port}/v1",
                504,
                ("no answer to the connection attempt within 0.5 s",),
            ),
            "dropped-before-answer": (
                upstream.base_url,
                502,
                ("the upstream 127.0.0.1 closed the connection before answering",),
            ),
        }[case]
        proxy = make_proxy(upstream_url=url, **settings)
        with leaks(proxy).around():
            upstream.enqueue(drop_connection())  # taken only where the fake upstream is the URL
            answer = ask(proxy, stream=stream)
            assert_http_error(answer, caplog, status=status, error_type="api_error", words=words)


# ------------------------------------------------------------------ slow and broken answers


def _tool_call_cut(body: dict[str, Any]) -> list[Any]:
    call = {"index": 0, "id": "call_1", "type": "function"}
    return [
        chunk(body, {"role": "assistant", "tool_calls": [{**call, "function": {"name": "Read"}}]}),
        chunk(body, {"tool_calls": [{"index": 0, "function": {"arguments": '{"path": "/tm'}}]}),
    ]


def _thinking_cut(body: dict[str, Any]) -> list[Any]:
    return [
        chunk(body, {"role": "assistant", "reasoning_content": "Let me think"}),
        chunk(body, {"reasoning_content": " about it"}),
    ]


DROPPED = "the upstream connection dropped in the middle of the response"

# id -> (behaviour, read_timeout_s, words, what the stream kept before the error)
BROKEN: dict[str, tuple[Behaviour, float, str, str | None]] = {
    "no-headers": (hang(3), 0.5, "did not answer in time (read timeout 0.5 s)", None),
    "headers-then-silence": (
        reply_stream([chunk({}, {"role": "assistant", "content": "Hel"})], hang=3),
        0.5,
        "sent nothing for 0.5 s",
        "text",
    ),
    "cut-mid-text": (
        reply_stream(lambda b: text_stream(b, "partial answer")[:3], cut=True, delay=0.05),
        5.0,
        DROPPED,
        "text",
    ),
    "cut-mid-tool-arguments": (
        reply_stream(_tool_call_cut, cut=True, delay=0.05),
        5.0,
        DROPPED,
        "tool_use",
    ),
    "cut-mid-thinking": (
        reply_stream(_thinking_cut, cut=True, delay=0.05),
        5.0,
        DROPPED,
        "thinking",
    ),
    "garbled-json": (
        reply_stream(lambda b: [chunk(b, {"content": "x"}), b"data: {not json\n\n"]),
        5.0,
        "invalid JSON",
        "text",
    ),
    "done-without-finish-reason": (
        reply_stream(lambda b: [chunk(b, {"content": "x"}), "[DONE]"]),
        5.0,
        "without a finish_reason",
        "text",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_stream(
    make_proxy: MakeProxy, leaks: LeakCheckFor, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    behaviour, read_timeout, words, kept = BROKEN[case]
    proxy = make_proxy(read_timeout_s=read_timeout, commit_window_s=0.2)
    with leaks(proxy).around():
        proxy.upstream.enqueue(behaviour)
        events = assert_error_event(ask(proxy, stream=True), caplog, words=(words,))
        blocks = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
        assert blocks == ([kept] if kept else [])


# The same faults on a non-stream request: one plain HTTP error.
BROKEN_JSON: dict[str, tuple[Behaviour, float, int, str]] = {
    "no-headers": (hang(3), 0.5, 504, "did not answer in time (read timeout 0.5 s)"),
    "headers-then-silence": (reply_stream([b'{"id": "x", '], hang=3), 0.5, 504, "sent nothing"),
    "cut-mid-body": (reply_stream([b'{"id": "x", "choi'], cut=True), 5.0, 502, DROPPED),
    "garbled-json": (
        reply_body("{not json", status=200, content_type="application/json"),
        5.0,
        502,
        "not JSON",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN_JSON))
def test_broken_body(
    make_proxy: MakeProxy, leaks: LeakCheckFor, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    behaviour, read_timeout, status, words = BROKEN_JSON[case]
    proxy = make_proxy(read_timeout_s=read_timeout, retry_max_attempts=1)
    with leaks(proxy).around():
        proxy.upstream.enqueue(behaviour)
        answer = ask(proxy, stream=False)
        assert_http_error(answer, caplog, status=status, error_type="api_error", words=(words,))


# ------------------------------------------------------------------ runaway upstreams


def test_endless_stream_stops_at_max_tokens(
    make_proxy: MakeProxy, leaks: LeakCheckFor, caplog: pytest.LogCaptureFixture
) -> None:
    """An upstream that ignores max_tokens: the client gets a max_tokens stop, not more."""
    proxy = make_proxy()
    with leaks(proxy).around():
        proxy.upstream.enqueue(endless(endless_text))
        answer = ask(proxy, stream=True, max_tokens=64)
        events = answer.events()
        text = "".join(e["delta"].get("text", "") for e in events if "delta" in e)
        limit = 64 * RUNAWAY_CHARS_PER_TOKEN
        assert limit < len(text) <= limit + len("word ")  # cut on the first chunk past it
        assert events[-2]["delta"]["stop_reason"] == "max_tokens"
        assert events[-1]["type"] == "message_stop"
        assert proxy.upstream.cancelled.wait(2.0)  # the upstream connection was closed
        assert "upstream ignored max_tokens" in logged(caplog, answer.request_id)


def _keepalive(body: dict[str, Any], n: int) -> bytes:
    return b": keep-alive\n\n"


def _json_drip(body: dict[str, Any], n: int) -> bytes:
    return b'{"id": "x", "pad": "' if n == 0 else b" "


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_a_dripping_upstream_meets_the_deadline(
    make_proxy: MakeProxy, leaks: LeakCheckFor, caplog: pytest.LogCaptureFixture, stream: bool
) -> None:
    """A byte every 0.1 s never trips the read timeout; upstream_deadline_s ends it."""
    proxy = make_proxy(upstream_deadline_s=1.0, read_timeout_s=5.0, retry_max_attempts=1)
    words = "did not finish within 1 s (upstream_deadline_s)"
    with leaks(proxy).around():
        if stream:
            proxy.upstream.enqueue(endless(_keepalive, pause=0.1))
            assert_error_event(ask(proxy, stream=True), caplog, words=(words,))
        else:
            dripping = endless(_json_drip, pause=0.1, content_type="application/json")
            proxy.upstream.enqueue(dripping)
            answer = ask(proxy, stream=False)
            assert_http_error(answer, caplog, status=504, error_type="api_error", words=(words,))


def _empty_delta(body: dict[str, Any], n: int) -> bytes:
    return b"data: " + json.dumps(chunk(body, {"content": ""})).encode() + b"\n\n"


def _endless_thinking(body: dict[str, Any], n: int) -> bytes:
    return b"data: " + json.dumps(chunk(body, {"reasoning_content": "hmm "})).encode() + b"\n\n"


@pytest.mark.parametrize(
    "piece",
    [
        pytest.param(endless_text, id="text-under-max-tokens"),
        pytest.param(_empty_delta, id="empty-deltas"),
        pytest.param(_endless_thinking, id="thinking"),  # not counted against max_tokens
        pytest.param(_keepalive, id="keep-alive-comments"),
    ],
)
def test_endless_stream_hits_the_byte_cap(
    make_proxy: MakeProxy,
    leaks: LeakCheckFor,
    caplog: pytest.LogCaptureFixture,
    piece: Callable[[dict[str, Any], int], bytes],
) -> None:
    """What max_tokens cannot bound (nothing countable, or a huge max_tokens) the byte cap does."""
    proxy = make_proxy(max_upstream_response_mb=1)
    with leaks(proxy).around():
        proxy.upstream.enqueue(endless(piece))
        answer = ask(proxy, stream=True, max_tokens=100_000)
        assert_error_event(answer, caplog, words=("more than 1 MB", "max_upstream_response_mb"))
        assert proxy.upstream.cancelled.wait(2.0)
        assert proxy.upstream.chat_requests[-1].sent_bytes < 8 * MB


def test_endless_body_hits_the_byte_cap(
    make_proxy: MakeProxy, leaks: LeakCheckFor, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = make_proxy(max_upstream_response_mb=1)
    with leaks(proxy).around():
        proxy.upstream.enqueue(endless(endless_line))
        answer = ask(proxy, stream=False)
        assert_http_error(
            answer, caplog, status=502, error_type="api_error", words=("more than 1 MB",)
        )
        assert proxy.upstream.cancelled.wait(2.0)


def test_endless_body_on_the_openai_pass_through(
    make_proxy: MakeProxy, leaks: LeakCheckFor, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = make_proxy(max_upstream_response_mb=1)
    body = {"model": "fake/default-model", "messages": HELLO, "stream": False}
    headers = {"Authorization": f"Bearer {proxy.client_key}", "content-type": "application/json"}
    with leaks(proxy).around():
        proxy.upstream.enqueue(endless(endless_line))
        status, got, raw = http_request(
            proxy.url + "/v1/chat/completions",
            "POST",
            body=json.dumps(body).encode(),
            headers=headers,
        )
        assert status == 502
        error = json.loads(raw)["error"]  # the OpenAI shape, as that endpoint speaks
        assert error["type"] == "api_error" and "more than 1 MB" in error["message"]
        assert "more than 1 MB" in logged(caplog, got["request-id"])
        assert proxy.upstream.cancelled.wait(2.0)


def test_huge_single_event(
    make_proxy: MakeProxy, leaks: LeakCheckFor, caplog: pytest.LogCaptureFixture
) -> None:
    """20 MB in one SSE event: the decoder refuses it at its 4 MB bound."""
    proxy = make_proxy()
    huge = json.dumps(chunk({}, {"content": "x" * (20 * MB)})).encode()
    with leaks(proxy).around():
        proxy.upstream.enqueue(reply_stream([b"data: " + huge + b"\n\n", "[DONE]"]))
        answer = ask(proxy, stream=True, max_tokens=10_000_000)
        limit = f"longer than {MAX_EVENT_BYTES // MB} MB"
        assert_error_event(answer, caplog, words=(limit,))
    del huge


def test_line_that_never_ends(
    make_proxy: MakeProxy, leaks: LeakCheckFor, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = make_proxy()
    with leaks(proxy).around():
        proxy.upstream.enqueue(endless(endless_line))
        answer = ask(proxy, stream=True)
        limit = f"a line longer than {MAX_EVENT_BYTES // MB} MB"
        assert_error_event(answer, caplog, words=(limit,))
        assert proxy.upstream.cancelled.wait(2.0)
        # Read up to the bound, then no more: the proxy stopped reading and hung up.
        assert proxy.upstream.chat_requests[-1].sent_bytes < MAX_EVENT_BYTES + 16 * MB


# ------------------------------------------------------------------ a slow client


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _send_stream_request(proxy: LiveProxy, sock: socket.socket) -> None:
    request = {"model": MODEL, "max_tokens": 10_000_000, "messages": HELLO, "stream": True}
    body = json.dumps(request)
    sock.sendall(
        (
            "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"x-api-key: {proxy.client_key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        ).encode()
    )


def _plateau(read: Callable[[], int], *, still_for: float = 0.5, timeout: float = 10.0) -> int:
    """Poll `read()` until it has not grown for `still_for` seconds; its value then."""
    deadline = time.monotonic() + timeout
    value, since = read(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = read()
        if now != value:
            value, since = now, time.monotonic()
        elif time.monotonic() - since >= still_for:
            return value
    raise AssertionError(f"still growing after {timeout} s: {value}")


@pytest.mark.slow
def test_slow_client_pauses_the_upstream(
    make_proxy: MakeProxy, leaks: LeakCheckFor, caplog: pytest.LogCaptureFixture
) -> None:
    """Backpressure: a client that stops reading stops the upstream read, memory stays flat.

    The proxy's `write` awaits the drain of its socket to the client; while it
    waits it does not read the upstream, whose writes then wait too. So what the
    upstream got written plateaus at the sum of the buffers on the way (kernel
    socket buffers, a few MB on loopback, plus aiohttp's 64 KB read buffer).
    """
    # No cap may end the stream here: only backpressure may stop the upstream.
    proxy = make_proxy(max_upstream_response_mb=4096)
    with leaks(proxy).around():
        proxy.upstream.enqueue(endless(endless_text))
        rss_before = _rss_bytes()
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", proxy.server.port or 0))
            _send_stream_request(proxy, sock)
            sock.settimeout(5)
            seen = b""
            while b"content_block_delta" not in seen:  # the stream is flowing
                seen += sock.recv(2048)
            record = proxy.upstream.chat_requests[-1]
            stalled = _plateau(lambda: record.sent_bytes)
            # Neither cap ended the stream: the plateau is the buffers' (~10 MB measured).
            assert stalled < 32 * MB
            grown = _rss_bytes() - rss_before
            assert grown < 16 * MB, f"RSS grew by {grown / MB:.1f} MB"  # ~1 MB measured
            for _ in range(5):  # a few bytes a second: the upstream barely moves
                seen = sock.recv(64)
                assert b"error" not in seen and b"message_stop" not in seen
                time.sleep(0.2)
            assert record.sent_bytes - stalled < 4 * MB
        assert proxy.upstream.cancelled.wait(2.0)  # the client hung up: so did the proxy
        assert "client disconnected" in _disconnect_line(caplog)


def test_a_client_gone_while_a_burst_is_spread_leaves_nothing_behind(
    make_proxy: MakeProxy, leaks: LeakCheckFor, caplog: pytest.LogCaptureFixture
) -> None:
    """Smooth deltas' pacing task meets a closed socket: no error, no task, no fd left."""
    burst = "word " * 200  # 1,000 characters: pieces spread over 50 ms

    def items(body: dict[str, Any]) -> list[Any]:
        return [chunk(body, {"role": "assistant", "content": burst}), "[DONE]"]

    proxy = make_proxy()
    with leaks(proxy).around():
        proxy.upstream.enqueue(reply_stream(items, hang=2.0))  # silence after the burst
        with socket.socket() as sock:
            sock.connect(("127.0.0.1", proxy.server.port or 0))
            _send_stream_request(proxy, sock)
            sock.settimeout(5)
            seen = b""
            while b"content_block_delta" not in seen:  # the first piece is out
                seen += sock.recv(65536)
        # Closed with pieces still to send: the proxy finds out and drops the upstream.
        assert proxy.upstream.cancelled.wait(3.0)
        assert "client disconnected" in _disconnect_line(caplog)
    assert "Traceback" not in caplog.text and "never retrieved" not in caplog.text


def _disconnect_line(caplog: pytest.LogCaptureFixture, timeout: float = 3.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in list(caplog.records):
            if "client disconnected" in record.getMessage():
                return record.getMessage()
        time.sleep(0.02)
    raise AssertionError("no log line for the disconnect")


# ------------------------------------------------------------------ requests aiohttp refuses


def _raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the answer to its end (the server closes after these)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request)
        sock.settimeout(5)
        data = b""
        while chunk_ := sock.recv(65536):
            data += chunk_
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body


SECRET_IN_HEADER = "sk-ant-oversized-header-secret-0123456789"

REFUSED = {
    "header-too-long": (
        b"X-Big: " + SECRET_IN_HEADER.encode() + b"a" * 9000 + b"\r\n",
        431,
        "a request header (or the request line) is longer than 8190 bytes",
    ),
    "too-many-headers": (
        b"".join(b"X-H%d: v\r\n" % i for i in range(200)),
        431,
        "the request has more than 128 headers",
    ),
    "malformed-header": (b"X-Broken\r\n", 400, "malformed HTTP request"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_requests_aiohttp_refuses_are_anthropic_errors(
    proxy: LiveProxy, leaks: LeakCheckFor, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    extra, status, words = REFUSED[case]
    request = (
        b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + extra
        + b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )
    with leaks(proxy).around():
        assert proxy.server.port is not None
        got, headers, raw = _raw_exchange(proxy.server.port, request)
        answer = Answer(got, {**headers, "Content-Type": headers["content-type"]}, raw)
        assert answer.status == status
        error = answer.error()
        assert error["type"] == "invalid_request_error" and words in error["message"]
        assert SECRET_IN_HEADER not in raw.decode()
        assert headers["request-id"].startswith("req_")
        assert "refused before routing" in logged(caplog, headers["request-id"])
    assert not proxy.upstream.chat_requests
