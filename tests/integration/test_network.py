"""Outbound requests through a real HTTP CONNECT proxy (tests/fake_proxy.py) to an HTTPS
upstream whose certificate a CA made in the test signed (tests/fake_tls.py); all on
loopback. `upstream.nimbridge.test` exists only in the proxy's table, so a request that
reaches it went through the proxy."""

import contextlib
import ipaddress
import json
import socket
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from app.config.secrets import MemorySecretStore, ProviderKeys
from app.config.settings import Settings
from app.core.errors import UpstreamUnavailable
from app.server.network import Network, NetworkSetupError
from app.server.safe_fetch import AddressRefused, FetchPolicy, SafeFetcher, public_only
from app.server.upstream.client import UpstreamClient
from tests.fake_proxy import FakeProxy, running_fake_proxy
from tests.fake_tls import TestCA
from tests.fake_upstream import FakeUpstream, LoopThread
from tests.fake_web import PRIVATE, PUBLIC, FakeWeb, running_fake_web
from tests.integration.test_commands import run

UPSTREAM_NAME = "upstream.nimbridge.test"
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")
SOURCE = (sys.executable, "-m", "app")


@pytest.fixture(autouse=True)
def _no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: the machine's own proxy variables would change the answers."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):  # the store is the machine's, or the test's
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture
def ca_file(ca: TestCA, tmp_path: Path) -> str:
    return str(ca.write_pem(tmp_path / "test-root.pem"))


@pytest.fixture
async def tls_upstream(ca: TestCA) -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream(ssl_context=ca.server_context(UPSTREAM_NAME), host=UPSTREAM_NAME)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def proxy() -> AsyncIterator[FakeProxy]:
    async with running_fake_proxy({UPSTREAM_NAME: "127.0.0.1"}) as running:
        yield running


async def _list_models(network: Network, upstream: FakeUpstream) -> int:
    client = UpstreamClient(connect_timeout_s=5, read_timeout_s=5, network=network)
    await client.start()
    try:
        response = await client.request("GET", upstream.base_url + "/models", api_key="k")
        response.release()
        return response.status
    finally:
        await client.close()


async def _refusal(network: Network, upstream: FakeUpstream) -> str:
    with pytest.raises(UpstreamUnavailable) as raised:
        await _list_models(network, upstream)
    return raised.value.message


def _connect_line(upstream: FakeUpstream) -> str:
    return f"CONNECT {UPSTREAM_NAME}:{upstream.port} HTTP/1.1"


# ------------------------------------------------------------------ the proxy


async def test_https_proxy_variable_carries_the_request(
    monkeypatch: pytest.MonkeyPatch, proxy: FakeProxy, tls_upstream: FakeUpstream, ca_file: str
) -> None:
    monkeypatch.setenv("https_proxy", proxy.url)  # lower case counts too
    network = Network(extra_ca_file=ca_file)
    assert await _list_models(network, tls_upstream) == 200
    assert proxy.seen == [_connect_line(tls_upstream)]
    assert "from $HTTPS_PROXY" in network.describe_proxy()


async def test_a_proxy_asking_for_a_login_is_said_so_and_the_keychain_login_passes(
    proxy: FakeProxy, tls_upstream: FakeUpstream, ca_file: str
) -> None:
    proxy.login = ("alice", "pr0xy-s3cret")
    settings = Settings(outbound_proxy=proxy.url, extra_ca_file=ca_file)
    keys = ProviderKeys(MemorySecretStore(), env={})
    words = await _refusal(Network.from_settings(settings, keys), tls_upstream)
    assert words == (
        f"the proxy {proxy.url} (from Settings → Server) asks for a user name and password "
        "(407 Proxy Authentication Required): enter them in Settings → Server, or "
        "`nimbridge key set outbound-proxy`"
    )
    keys.set_outbound_proxy_credentials("alice", "wrong")
    words = await _refusal(Network.from_settings(settings, keys), tls_upstream)
    assert "refused the user name and password it was given (407" in words
    keys.set_outbound_proxy_credentials("alice", "pr0xy-s3cret")
    network = Network.from_settings(settings, keys)
    assert await _list_models(network, tls_upstream) == 200
    assert proxy.seen[-1] == _connect_line(tls_upstream) and proxy.refused_logins == 2
    assert "pr0xy-s3cret" not in network.describe_proxy()
    assert "pr0xy-s3cret" not in keys.masker.mask("login pr0xy-s3cret")  # logs never show it


async def test_a_login_in_the_variable_is_sent_as_proxy_auth(
    monkeypatch: pytest.MonkeyPatch, proxy: FakeProxy, tls_upstream: FakeUpstream, ca_file: str
) -> None:
    proxy.login = ("bob", "p@ss:word")
    monkeypatch.setenv("HTTPS_PROXY", f"http://bob:p%40ss%3Aword@127.0.0.1:{proxy.port}")
    network = Network(extra_ca_file=ca_file)
    assert await _list_models(network, tls_upstream) == 200
    assert "p%40ss" not in network.describe_proxy() and "bob" not in network.describe_proxy()


async def test_a_proxy_that_is_not_running_is_named(
    tls_upstream: FakeUpstream, ca_file: str
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    network = Network(proxy_setting=f"http://127.0.0.1:{port}", extra_ca_file=ca_file)
    words = await _refusal(network, tls_upstream)
    assert words == (
        f"cannot connect to the proxy http://127.0.0.1:{port} (from Settings → Server) "
        "(connection refused): check the proxy's address and port, and that it is running"
    )


async def test_loopback_upstreams_never_go_through_the_proxy(
    monkeypatch: pytest.MonkeyPatch, proxy: FakeProxy
) -> None:
    plain = FakeUpstream()
    await plain.start()
    try:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        for network in (Network(), Network(proxy_setting=proxy.url)):
            assert await _list_models(network, plain) == 200
        assert proxy.seen == []
    finally:
        await plain.stop()


def test_no_proxy_names_go_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example,.corp.example")
    network = Network()
    assert network.proxy_for("https://internal.example/v1") is None
    assert network.proxy_for("https://llm.corp.example/v1") is None
    assert network.proxy_for("http://[::1]:8000/v1") is None
    route = network.proxy_for("https://integrate.api.nvidia.com/v1")
    assert route is not None and route.shown == "http://proxy.example:3128"
    assert network.proxy_for("http://plain.example/") is None  # no HTTP_PROXY set
    assert Network(proxy_setting="direct").proxy_for("https://integrate.api.nvidia.com") is None


def test_a_socks_proxy_variable_is_reported_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
    network = Network()
    assert network.proxy_for("https://integrate.api.nvidia.com") is None
    assert network.problems and "socks5 proxy" in network.problems[0]


# ------------------------------------------------------------------ the trust store


async def test_the_os_trust_store_decides(
    monkeypatch: pytest.MonkeyPatch,
    proxy: FakeProxy,
    tls_upstream: FakeUpstream,
    ca: TestCA,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    # Not in the store: what a TLS-inspecting proxy's unknown root looks like.
    words = await _refusal(Network(), tls_upstream)
    assert words.startswith(
        f"the TLS certificate {UPSTREAM_NAME} presented through the proxy {proxy.url} "
        "(from $HTTPS_PROXY) is not trusted ("
    )
    assert "install that root certificate in the system's trust store" in words
    # In the store: on Linux truststore reads OpenSSL's default paths, which
    # SSL_CERT_FILE moves (the test's own store, read at each handshake).
    store = tmp_path / "store.pem"
    store.write_bytes(ca.pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(store))
    assert await _list_models(Network(), tls_upstream) == 200


def test_a_ca_file_that_does_not_load_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(NetworkSetupError, match="cannot be loaded"):
        Network(extra_ca_file=str(tmp_path / "missing.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(NetworkSetupError, match="must be a PEM file"):
        Network(extra_ca_file=str(junk))


def test_verification_is_never_off(ca_file: str) -> None:
    import ssl

    for network in (Network(), Network(extra_ca_file=ca_file)):
        assert network.ssl_context.verify_mode == ssl.CERT_REQUIRED
        assert network.ssl_context.check_hostname


# ------------------------------------------------------------------ the SSRF guard


class _Names(AbstractResolver):
    """Our DNS, for the test: names that exist only here."""

    def __init__(self, table: dict[str, str]) -> None:
        self._table = table

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self._table:
            raise OSError(f"no such name: {host}")
        address = self._table[host]
        return [
            ResolveResult(
                hostname=host, host=address, port=port, family=socket.AF_INET, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        pass


def _public_for_tests(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    return None if str(address) == PUBLIC else public_only(address)


@pytest.fixture
async def fake_web() -> AsyncIterator[FakeWeb]:
    async with running_fake_web() as fake:
        yield fake


async def test_the_guard_decides_on_the_target_not_the_proxy(
    fake_web: FakeWeb, tls_upstream: FakeUpstream, ca_file: str
) -> None:
    table = {"intranet.test": PRIVATE, "site.test": PUBLIC}
    login = ("carol", "web-pass")
    async with running_fake_proxy(table, login) as web_proxy:  # it would connect to either
        network = Network(proxy_setting=web_proxy.url, credentials=login, extra_ca_file=ca_file)
        fetcher = SafeFetcher(
            FetchPolicy(timeout_s=5),
            resolver=_Names(table),
            check=_public_for_tests,
            network=network,
        )
        try:
            with pytest.raises(AddressRefused, match="intranet.test"):
                await fetcher.fetch(f"http://intranet.test:{fake_web.port}/pages/plain")
            assert web_proxy.seen == []  # refused before the proxy was asked anything
            fetched = await fetcher.fetch(f"http://site.test:{fake_web.port}/pages/plain")
            assert fetched.body
            # The proxy was given the checked address, not a name to resolve itself.
            assert web_proxy.seen == [f"GET http://{PUBLIC}:{fake_web.port}/pages/plain HTTP/1.1"]
        finally:
            await fetcher.close()


async def test_https_through_the_proxy_is_pinned_and_verified_against_the_name(
    ca: TestCA, ca_file: str
) -> None:
    site = FakeUpstream(ssl_context=ca.server_context("site.test"), host="site.test", bind=PUBLIC)
    await site.start()
    try:
        async with running_fake_proxy() as web_proxy:
            fetcher = SafeFetcher(
                FetchPolicy(timeout_s=5),
                resolver=_Names({"site.test": PUBLIC}),
                check=_public_for_tests,
                network=Network(proxy_setting=web_proxy.url, extra_ca_file=ca_file),
            )
            try:
                fetched = await fetcher.fetch(site.base_url + "/models")
            finally:
                await fetcher.close()
            assert b'"object": "list"' in fetched.body or b'"object":"list"' in fetched.body
            assert web_proxy.seen == [f"CONNECT {PUBLIC}:{site.port} HTTP/1.1"]
            assert site.requests[-1].headers["Host"] == f"site.test:{site.port}"
    finally:
        await site.stop()


# ------------------------------------------------------------------ doctor, as a user runs it


@dataclass
class ProxiedProvider:
    """An HTTPS provider reachable only through a proxy, on the session's loop thread."""

    upstream: FakeUpstream
    proxy: FakeProxy
    config: Path

    def doctor(self, env: dict[str, str], program: Sequence[str] = SOURCE) -> str:
        full_env = {"NVIDIA_API_KEY": "nvapi-doctor-key", "HTTPS_PROXY": self.proxy.url, **env}
        result = run("doctor", "--config", str(self.config), env=full_env, program=program)
        assert "nvapi-doctor-key" not in result.stdout + result.stderr
        return result.stdout


@contextlib.contextmanager
def proxied_provider(
    loop_thread: LoopThread, ca: TestCA, folder: Path
) -> Iterator[ProxiedProvider]:
    upstream = FakeUpstream(ssl_context=ca.server_context(UPSTREAM_NAME), host=UPSTREAM_NAME)
    loop_thread.run(upstream.start())
    proxy = loop_thread.run(FakeProxy(hosts={UPSTREAM_NAME: "127.0.0.1"}).start())
    config = folder / "settings.json"
    config.write_text(
        json.dumps(
            {
                "providers": [{"name": "nvidia", "kind": "nvidia", "base_url": upstream.base_url}],
                "tiers": {"default": "meta/llama-3.3-70b-instruct"},
                "port": 0,
            }
        )
    )
    try:
        yield ProxiedProvider(upstream, proxy, config)
    finally:
        loop_thread.run(proxy.stop())
        loop_thread.run(upstream.stop())


def doctor_lines_through_the_proxy(
    provider: ProxiedProvider, env: dict[str, str], program: Sequence[str] = SOURCE
) -> tuple[str, str]:
    """(the proxy line, the provider line) of one doctor run."""
    out = provider.doctor(env, program)
    proxy_line = next(line for line in out.splitlines() if "] proxy:" in line)
    provider_line = next(line for line in out.splitlines() if "provider nvidia:" in line)
    return proxy_line, provider_line


def test_doctor_names_the_proxy_and_the_store_and_words_a_distrusted_root(
    loop_thread: LoopThread, ca: TestCA, tmp_path: Path
) -> None:
    with proxied_provider(loop_thread, ca, tmp_path) as provider:
        store = tmp_path / "store.pem"  # the test's own OS store, in a process of its own
        store.write_bytes(ca.pem)
        proxy_line, provider_line = doctor_lines_through_the_proxy(
            provider, {"SSL_CERT_FILE": str(store)}
        )
        assert proxy_line == (
            f"[  ok] proxy: https:// via {provider.proxy.url} (from $HTTPS_PROXY); "
            "loopback and NO_PROXY hosts go direct"
        )
        assert provider_line.startswith("[  ok] provider nvidia: https://upstream.nimbridge.test")
        assert f"CONNECT {UPSTREAM_NAME}:{provider.upstream.port} HTTP/1.1" in provider.proxy.seen
        out = provider.doctor({"SSL_CERT_FILE": str(store)})
        assert f"[  ok] trust store: the system's CA certificates ({store}) via truststore" in out

        _, provider_line = doctor_lines_through_the_proxy(provider, {})  # the machine's store
        assert provider_line.startswith(
            f"[FAIL] provider nvidia: the TLS certificate {UPSTREAM_NAME} presented through the "
            f"proxy {provider.proxy.url} (from $HTTPS_PROXY) is not trusted"
        )

        provider.proxy.login = ("dora", "pw")
        _, provider_line = doctor_lines_through_the_proxy(provider, {"SSL_CERT_FILE": str(store)})
        assert provider_line.endswith(
            "asks for a user name and password (407 Proxy Authentication Required): enter them "
            "in Settings → Server, or `nimbridge key set outbound-proxy`"
        )


async def test_a_direct_https_upstream_is_verified_and_reused(
    ca: TestCA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Straight to an https:// upstream (NimBridge's own HTTP/1.1 transport, as every
    provider with no proxy in between): its certificate checked against the name, in
    words when refused, and the connection kept for the next request."""
    fake = FakeUpstream(ssl_context=ca.server_context("127.0.0.1"), host="127.0.0.1")
    await fake.start()
    try:
        words = await _refusal(Network(), fake)  # the test's CA is in no store yet
        assert words.startswith("TLS certificate of 127.0.0.1 was rejected (")
        assert "check the upstream URL or the system's CA certificates" in words
        store = tmp_path / "store.pem"
        store.write_bytes(ca.pem)
        monkeypatch.setenv("SSL_CERT_FILE", str(store))
        client = UpstreamClient(connect_timeout_s=5, read_timeout_s=5, network=Network())
        await client.start()
        try:
            for _ in range(3):
                response = await client.request("GET", fake.base_url + "/models", api_key="k")
                assert response.status == 200
                assert b'"data"' in await response.read_body(1 << 20)
                response.release()
            assert client.transport.connections_in_use() == 0  # type: ignore[attr-defined]
        finally:
            await client.close()
        assert len({r.peer for r in fake.requests}) == 1  # one connection for the three
    finally:
        await fake.stop()
