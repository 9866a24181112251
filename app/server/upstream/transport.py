"""The wire under `UpstreamClient`: `Transport.send` gives a raw response, nothing more.

Invariants:
- `send` raises only `UpstreamUnavailable`, worded as a user can act on it (a refused
  connection, a TLS or DNS failure, a proxy that wants a login, a connect timeout).
- A raw response's body is read by `UpstreamResponse` (client.py) and no one else;
  what its reads raise is told apart by `Transport.read_failure`, and worded there.
- The aiohttp transport hands back aiohttp's own response (no wrapper): a chunk
  costs what aiohttp's `readany` costs.

Tests give `UpstreamClient` an in-memory transport instead
(tests/unit/server/upstream/memory_transport.py), as httpx's MockTransport allows.
"""

import enum
import errno
import ssl
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp

from app import __version__
from app.core.errors import UpstreamUnavailable
from app.server.network import Network, proxy_failure_words, proxy_login_words, route_options

# How long an idle upstream connection is kept for the next request (aiohttp's default
# is 15 s). A Claude Code turn often comes later than that, and a new connection costs
# two round trips (TCP, then TLS): ~85 ms at a 40 ms round trip, ~200 ms at 100 ms
# (tests/benchmarks/bench_http2.py, cold against warm). 90 s is Go's net/http default;
# a server that closes sooner sends a FIN and aiohttp drops the connection from its
# pool; one closed just as a request goes out is retried (`closed_before_answer`).
KEEPALIVE_S = 90.0


class ReadFailure(enum.Enum):
    """Why reading a response body stopped short."""

    DROPPED = "dropped"  # the connection ended before the body did
    SILENCE = "silence"  # nothing came for the read timeout
    DEADLINE = "deadline"  # the whole call's deadline passed


class BodyReader(Protocol):
    async def readany(self) -> bytes:
        """What has arrived (waiting for something); b"" at the end of the body."""
        ...

    async def read(self, n: int) -> bytes:
        """Like `readany`, at most `n` bytes of it."""
        ...

    def at_eof(self) -> bool: ...


class RawResponse(Protocol):
    """One response as the wire gave it (aiohttp's `ClientResponse` is one)."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content_type(self) -> str:
        """The media type alone, lower case; application/octet-stream when none was sent."""
        ...

    @property
    def content(self) -> BodyReader: ...

    def release(self) -> object:
        """Back to the pool when read to the end; otherwise the connection is closed."""
        ...


class Transport(Protocol):
    # What a body read may raise; `read_failure` sorts them.
    read_errors: tuple[type[Exception], ...]

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> RawResponse: ...

    def read_failure(self, exc: Exception) -> ReadFailure | None:
        """Which failure a body read's exception is; None: not one to word (it goes on)."""
        ...


def host_of(url: str) -> str:
    return urlsplit(url).hostname or url


def past_deadline(who: str, deadline_s: float | None) -> UpstreamUnavailable:
    return UpstreamUnavailable(
        f"{who} did not finish within {deadline_s:g} s (upstream_deadline_s) and was cut off",
        status=504,
    )


def closed_before_answer(host: str) -> UpstreamUnavailable:
    """The upstream closed the connection with no answer at all. Most often a kept-alive
    connection its server gave up on just as our request went out; retried like a
    refused connection (the official SDKs retry these too)."""
    return UpstreamUnavailable(
        f"the upstream {host} closed the connection before answering", retryable=True
    )


class AiohttpTransport:
    """A shared aiohttp ClientSession with connection reuse; words what aiohttp raises."""

    read_errors: tuple[type[Exception], ...] = (aiohttp.ClientError, TimeoutError)

    def __init__(
        self,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        deadline_s: float | None = None,
        network: Network | None = None,
    ) -> None:
        # Which proxy and which CAs (None: the proxy variables and the OS trust store).
        self.network = network or Network()
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        # The whole of one upstream call, answer read to its end: an upstream that drips
        # a byte now and then never trips the read timeout, and must still end.
        self._deadline_s = deadline_s
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=256,
                    ttl_dns_cache=300,
                    keepalive_timeout=KEEPALIVE_S,
                    ssl=self.network.ssl_context,
                ),
                timeout=aiohttp.ClientTimeout(
                    total=self._deadline_s,
                    sock_connect=self._connect_timeout_s,
                    sock_read=self._read_timeout_s,
                ),
                headers={"User-Agent": f"nimbridge/{__version__}"},
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def connections_in_use(self) -> int:
        """Connections handed out and not given back (the leak tests' count)."""
        connector = self._session.connector if self._session is not None else None
        return len(connector._acquired) if connector is not None else 0

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("UpstreamClient.start() was not awaited")
        return self._session

    def read_failure(self, exc: Exception) -> ReadFailure | None:
        if isinstance(exc, aiohttp.ClientPayloadError):
            return ReadFailure.DROPPED
        if isinstance(exc, aiohttp.ServerTimeoutError):  # before TimeoutError, its base
            return ReadFailure.SILENCE
        if isinstance(exc, TimeoutError):  # the whole call's deadline
            return ReadFailure.DEADLINE
        return None

    async def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> aiohttp.ClientResponse:
        """One attempt; connection-level failures become `UpstreamUnavailable` in words."""
        host = host_of(url)
        route = self.network.proxy_for(url)
        try:
            try:
                response = await self.session.request(
                    method,
                    url,
                    data=body,
                    allow_redirects=False,
                    **route_options(route, url, headers),
                )
            except aiohttp.ClientError as exc:  # the proxy's doing is worded as such
                words = proxy_failure_words(exc, route, host)
                if words is None:
                    raise
                raise UpstreamUnavailable(words) from exc
            if route is not None and response.status == 407:  # a plain-http request's proxy
                response.release()
                raise UpstreamUnavailable(proxy_login_words(route))
            return response
        except aiohttp.ClientConnectorCertificateError as exc:
            raise UpstreamUnavailable(
                f"TLS certificate of {host} was rejected ({exc.certificate_error}); "
                "check the upstream URL or the system's CA certificates"
            ) from exc
        except aiohttp.ClientConnectorSSLError as exc:
            # Before ClientConnectorError, its base: "wrong version number" is what
            # an https:// URL to a plain-HTTP port gives.
            raise UpstreamUnavailable(
                f"TLS handshake with {host} failed ({exc.os_error}); the server may not speak "
                "TLS on that port: check http:// versus https:// in the upstream URL"
            ) from exc
        except aiohttp.ClientConnectorDNSError as exc:
            raise UpstreamUnavailable(
                f"cannot resolve the upstream host {host}; check the upstream URL "
                "and your network connection"
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            refused = isinstance(exc.os_error, ConnectionRefusedError)
            reason = "connection refused" if refused else (exc.os_error.strerror or str(exc))
            base = url.rsplit("/", 2)[0] if url.endswith("/completions") else url
            raise UpstreamUnavailable(
                f"cannot connect to the upstream at {base} ({reason}); "
                "is it running and reachable?",
                retryable=refused,
            ) from exc
        except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
            raise UpstreamUnavailable(f"TLS handshake with {host} failed ({exc})") from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise UpstreamUnavailable(
                f"cannot connect to the upstream {host}: no answer to the connection attempt "
                f"within {self._connect_timeout_s:g} s (connect_timeout_s); is the host "
                "reachable, or is a firewall dropping the connection?",
                status=504,
            ) from exc
        except aiohttp.ServerTimeoutError as exc:
            raise UpstreamUnavailable(
                f"the upstream {host} did not answer in time (read timeout "
                f"{self._read_timeout_s:g} s); it may be overloaded, try again",
                status=504,
            ) from exc
        except TimeoutError as exc:  # the whole call's deadline
            raise past_deadline(f"the upstream {host}", self._deadline_s) from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise closed_before_answer(host) from exc
        except aiohttp.ClientOSError as exc:
            if exc.errno in (errno.ECONNRESET, errno.EPIPE):
                raise closed_before_answer(host) from exc
            raise UpstreamUnavailable(
                f"the connection to {host} failed before it answered ({exc})"
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(
                f"the connection to {host} failed before it answered ({exc})"
            ) from exc
