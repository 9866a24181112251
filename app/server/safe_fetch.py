"""Fetch a URL for a client without opening a door into the user's network.

NimBridge runs on the user's machine, so whatever it fetches on a client's behalf is
fetched from inside their network: a URL naming `127.0.0.1`, `192.168.1.1` or the
cloud metadata address `169.254.169.254` would reach things no outsider should.

Invariants:
- Every address actually connected to is checked, not the name in the URL: names are
  checked in the connector's resolver (what it returns is what it connects to, so a
  name that resolves to a public address once and a private one next time gains
  nothing), IP literals before each request (aiohttp does not resolve those).
- Redirects are followed here, one hop at a time, each hop checked the same way, at
  most `max_redirects`.
- Through a proxy (app.server.network), the guard still decides on the target: the name
  is resolved here by the checked resolver and the request names the checked address
  (CONNECT 93.184.215.14:443, TLS still verified against the name), so the proxy never
  resolves a name for us unchecked. The proxy's own address is the user's choice and
  is not checked (a company proxy on 10.0.0.1 is the usual case).
- Only http and https; at most `max_bytes` read (the rest is never downloaded), and
  at most `max_request_bytes` by all the fetches of one request (`FetchBudget`); the
  whole fetch, redirects included, within `timeout_s`.
"""

import asyncio
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from app.server.bounded_read import read_within
from app.server.network import (
    Network,
    ProxyRoute,
    proxy_failure_words,
    proxy_login_words,
    route_options,
)

AddressCheck = Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], str | None]


class FetchError(Exception):
    """The fetch failed or was refused; the message says why in words."""


class AddressRefused(FetchError):
    """Refused because the URL leads to a private, loopback or other non-public address."""


def public_only(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why this address is out of bounds (None: a public address, allowed)."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address inside an IPv6 one is judged as itself: ::ffff:127.0.0.1 is
        # 127.0.0.1, and so is the 6to4 2002:7f00:1:: (Python 3.12 calls it global).
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return public_only(embedded)
        if address.is_site_local:  # fec0::/10: deprecated, still private where used
            return "a site-local address (a private network)"
    for attribute, words in (
        ("is_loopback", "a loopback address (this computer)"),
        ("is_link_local", "a link-local address (cloud metadata lives there)"),
        ("is_private", "a private-network address"),
        ("is_multicast", "a multicast address"),
        ("is_unspecified", "an unspecified address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(address, attribute):
            return words
    return None if address.is_global else "not a public address"


def any_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    allow_private: bool = False  # the user's explicit choice, for a LAN they trust
    max_bytes: int = 10 * 1024 * 1024
    timeout_s: float = 15.0
    max_redirects: int = 5
    # All fetches of one request together (images and documents by URL): 40 URLs of
    # 5 MB each in a 4 KB request took the process from 64 to 402 MB before this bound.
    max_request_bytes: int = 20 * 1024 * 1024

    @property
    def check(self) -> AddressCheck:
        return any_address if self.allow_private else public_only


class FetchBudget:
    """The bytes all the fetches of one request may read together; each fetch draws on
    it as its bytes arrive, so fetches running at once cannot overshoot it together."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def check_room(self, size: int, url: object) -> None:
        """FetchError if `size` more bytes would not fit (nothing is taken)."""
        if self.used + size > self.limit:
            raise FetchError(
                f"fetching {url} went over the {self.limit:,} bytes NimBridge fetches for "
                "one request (images and documents by URL together)"
            )

    def take(self, size: int, url: object) -> None:
        self.check_room(size, url)
        self.used += size


@dataclass(frozen=True, slots=True)
class Fetched:
    url: str  # after redirects
    content_type: str
    body: bytes


def _refusal(host: str, address: str, check: AddressCheck) -> str | None:
    why = check(ipaddress.ip_address(address.split("%", 1)[0]))
    if why is None:
        return None
    shown = host if host == address else f"{host} ({address})"
    return f"{shown} is {why}; NimBridge fetches only from public addresses"


class CheckedResolver(AbstractResolver):
    """The default resolver, refusing names that resolve to any out-of-bounds address."""

    def __init__(self, check: AddressCheck, inner: AbstractResolver | None = None) -> None:
        self._check = check
        self._inner = inner  # the default one is made on the loop, at first use

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = DefaultResolver()
        results = await self._inner.resolve(host, port, family)
        for result in results:
            refusal = _refusal(host, result["host"], self._check)
            if refusal is not None:
                raise AddressRefused(refusal)
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


class SafeFetcher:
    """One connection pool for fetches on clients' behalf, separate from the upstreams'."""

    def __init__(
        self,
        policy: FetchPolicy,
        *,
        resolver: AbstractResolver | None = None,  # tests: names of their own
        check: AddressCheck | None = None,  # tests: which loopback address counts as public
        network: Network | None = None,  # the proxy and the CAs (None: variables, OS store)
    ) -> None:
        self.policy = policy
        self._check = check or policy.check
        self._resolver = CheckedResolver(self._check, resolver)
        self._network = network or Network()
        self._session: aiohttp.ClientSession | None = None
        # Through a proxy: its connector resolves only the proxy's own name (unchecked).
        self._proxied_session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        for session in (self._session, self._proxied_session):
            if session is not None:
                await session.close()
        self._session = self._proxied_session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = self._new_session(self._resolver)
        return self._session

    def _proxied_client(self) -> aiohttp.ClientSession:
        if self._proxied_session is None:
            self._proxied_session = self._new_session(None)
        return self._proxied_session

    def _new_session(self, resolver: AbstractResolver | None) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                resolver=resolver, limit=16, ssl=self._network.ssl_context
            ),
            headers={"User-Agent": "NimBridge (fetching for a local client)"},
            auto_decompress=True,
        )

    async def _open(self, url: URL, route: ProxyRoute | None) -> aiohttp.ClientResponse:
        """The request to `url`; through `route` it names the checked address, not the
        name (the proxy would resolve a name itself, past the guard)."""
        if route is None:
            return await self._client().get(url, allow_redirects=False)
        host = url.host or ""
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
            address = host  # a literal: `_check_url` judged it
        except ValueError:
            try:
                resolved = await self._resolver.resolve(host, url.port or 0, socket.AF_UNSPEC)
            except OSError as exc:
                raise FetchError(f"could not resolve {host}: {exc.strerror or exc}") from None
            address = resolved[0]["host"]
        return await self._proxied_client().get(
            url.with_host(address),
            allow_redirects=False,
            server_hostname=host if url.scheme == "https" else None,
            **route_options(route, url, {"Host": url.host_port_subcomponent or host}),
        )

    def request_budget(self) -> FetchBudget:
        """A new budget for the fetches of one request."""
        return FetchBudget(self.policy.max_request_bytes)

    async def fetch(self, url: str, budget: FetchBudget | None = None) -> Fetched:
        """The body at `url`, drawn from `budget` (a budget of its own when None);
        FetchError saying why not."""
        try:
            async with asyncio.timeout(self.policy.timeout_s):
                return await self._follow(URL(url), budget or self.request_budget())
        except TimeoutError:
            raise FetchError(f"{url} did not answer within {self.policy.timeout_s:g} s") from None
        except ValueError as exc:  # yarl: not a URL at all
            raise FetchError(f"{url!r} is not a valid URL ({exc})") from None

    async def _follow(self, url: URL, budget: FetchBudget) -> Fetched:
        for _ in range(self.policy.max_redirects + 1):
            self._check_url(url)
            route = self._network.proxy_for(url)
            try:
                async with await self._open(url, route) as response:
                    if route is not None and response.status == 407:
                        raise FetchError(proxy_login_words(route))
                    if response.status in (301, 302, 303, 307, 308):
                        location = response.headers.get("Location")
                        if not location:
                            raise FetchError(f"{url} redirected without saying where")
                        url = url.join(URL(location))
                        continue
                    if response.status >= 400:
                        raise FetchError(f"{url} answered {response.status} {response.reason}")
                    body = await self._read_bounded(response, url, budget)
                    return Fetched(str(url), response.headers.get("Content-Type", ""), body)
            except FetchError:
                raise
            except aiohttp.ClientError as exc:
                words = proxy_failure_words(exc, route, url.host or "")
                if words is not None:
                    raise FetchError(words) from None
                if isinstance(exc, aiohttp.ClientConnectorError):
                    cause = exc.os_error
                    raise FetchError(
                        f"could not connect to {url.host}: {cause.strerror or cause}"
                    ) from None
                raise FetchError(f"fetching {url} failed: {exc.__class__.__name__}") from None
        raise FetchError(f"{url}: more than {self.policy.max_redirects} redirects")

    def _check_url(self, url: URL) -> None:
        if url.scheme not in ("http", "https") or not url.host:
            raise FetchError(f"{url} is not an http(s) URL")
        host = url.host
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return  # a name: its addresses are checked when the connector resolves it
        refusal = _refusal(host, host, self._check)
        if refusal is not None:
            raise AddressRefused(refusal)

    async def _read_bounded(
        self, response: aiohttp.ClientResponse, url: URL, budget: FetchBudget
    ) -> bytes:
        limit = self.policy.max_bytes
        if response.content_length is not None and response.content_length > limit:
            raise FetchError(f"{url} is {response.content_length:,} bytes, over {limit:,}")
        if response.content_length is not None:  # known: refused before reading
            budget.check_room(response.content_length, url)
        return await read_within(
            response.content.iter_any(),
            limit,
            lambda: FetchError(f"{url} is over {limit:,} bytes"),
            each=lambda size: budget.take(size, url),
        )
