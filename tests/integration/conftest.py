"""Live servers on loopback: the fake upstream and the proxy, on a loop in a thread.

A thread lets the *sync* official SDK clients call the proxy too; async tests
reach the same servers over real sockets.
"""

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import pytest

from app.config.history import HistoryWriter
from app.config.secrets import MemorySecretStore, ProviderKeys
from app.config.settings import Settings
from app.server.app import ProxyServer
from tests.fake_upstream import FakeUpstream, LoopThread

UPSTREAM_KEY = "nvapi-upstream-secret-0123456789"

# Sync SDK clients made during a test, closed after it: an httpx pool left to the
# garbage collector reports its sockets as ResourceWarnings in a later test.
_OPEN_CLIENTS: list[Any] = []


def track[C](client: C) -> C:
    _OPEN_CLIENTS.append(client)
    return client


@pytest.fixture(autouse=True)
def _close_sdk_clients() -> Iterator[None]:
    yield
    while _OPEN_CLIENTS:
        _OPEN_CLIENTS.pop().close()


DEFAULT_MODEL = "fake/default-model"


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture(scope="session")
def _upstream_server(loop_thread: LoopThread) -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    loop_thread.run(fake.start())
    yield fake
    loop_thread.run(fake.stop())


@pytest.fixture
def upstream(_upstream_server: FakeUpstream) -> FakeUpstream:
    _upstream_server.reset()
    return _upstream_server


@dataclass
class LiveProxy:
    server: ProxyServer
    url: str
    upstream: FakeUpstream
    client_key: str

    def client(self, **kwargs: Any) -> anthropic.Anthropic:
        kwargs.setdefault("api_key", self.client_key)
        return track(anthropic.Anthropic(base_url=self.url, max_retries=0, **kwargs))

    def async_client(self, **kwargs: Any) -> anthropic.AsyncAnthropic:
        kwargs.setdefault("api_key", self.client_key)
        return anthropic.AsyncAnthropic(base_url=self.url, max_retries=0, **kwargs)


MakeProxy = Callable[..., LiveProxy]


@pytest.fixture
def make_proxy(loop_thread: LoopThread, upstream: FakeUpstream) -> Iterator[MakeProxy]:
    started: list[ProxyServer] = []

    def make(
        *,
        proxy_key: str | None = "proxy-key-for-tests",
        upstream_key: str | None = UPSTREAM_KEY,
        upstream_url: str | None = None,
        model: str = DEFAULT_MODEL,
        history: HistoryWriter | None = None,
        **overrides: Any,
    ) -> LiveProxy:
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "commit_window_s": 0.3,
            "ping_interval_s": 5.0,
            "shutdown_grace_s": 2.0,
            "retry_max_wait_s": 3.0,
        }
        values.update(overrides)
        settings = Settings(**values).with_overrides(
            upstream_url=upstream_url or upstream.base_url, model=model
        )
        keys = ProviderKeys(MemorySecretStore(), env={})
        if upstream_key is not None:
            keys.set(settings.default_provider, upstream_key)
        server = ProxyServer(settings, keys, proxy_key, history=history)
        url = loop_thread.run(server.start())
        started.append(server)
        return LiveProxy(server, url, upstream, proxy_key or "client-own-key")

    yield make
    for server in started:
        loop_thread.run(server.stop())


@pytest.fixture
def proxy(make_proxy: MakeProxy) -> LiveProxy:
    return make_proxy()


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def fail_on_unexpected_warnings(request: pytest.FixtureRequest) -> Iterator[None]:
    """A WARNING or worse from `app` fails the test unless it is marked `allow_warnings`."""
    handler = _Collect()
    logger = logging.getLogger("app")
    logger.addHandler(handler)
    yield
    logger.removeHandler(handler)
    if request.node.get_closest_marker("allow_warnings") is None and handler.records:
        lines = "\n".join(f"{r.levelname} {r.name}: {r.getMessage()}" for r in handler.records)
        pytest.fail(f"unexpected log records:\n{lines}")


def wait_for_log(caplog: pytest.LogCaptureFixture, needle: str, timeout: float = 3.0) -> str:
    """The first log message holding `needle`, waiting for it: a request's summary line
    is written just after its answer is sent, so a client can be a moment ahead of it."""
    deadline = time.monotonic() + timeout
    while True:
        for record in list(caplog.records):
            message = record.getMessage()
            if needle in message:
                return message
        if time.monotonic() > deadline:
            raise AssertionError(f"no log line with {needle!r}")
        time.sleep(0.01)
