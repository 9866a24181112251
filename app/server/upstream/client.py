"""The one HTTP client to every provider: a shared ClientSession with connection reuse.

Invariant: every failure leaves here as a `ProxyError` whose message a user can
act on (never an aiohttp exception). Policy (retries, budgets, learning) lives
in `app.server.upstream.call_policy`; this module only moves bytes and words failures.
"""

import errno
import ssl
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from app import __version__
from app.core.errors import UpstreamProtocolError, UpstreamUnavailable
from app.core.masking import Masker
from app.server.json_body import encode_json
from app.server.network import Network, proxy_failure_words, proxy_login_words, route_options

MB = 1024 * 1024
# How long an idle upstream connection is kept for the next request (aiohttp's default
# is 15 s). A Claude Code turn often comes later than that, and a new connection costs
# two round trips (TCP, then TLS): ~85 ms at a 40 ms round trip, ~200 ms at 100 ms
# (tests/benchmarks/bench_http2.py, cold against warm). 90 s is Go's net/http default;
# a server that closes sooner sends a FIN and aiohttp drops the connection from its
# pool; one closed just as a request goes out is retried (`closed_before_answer`).
KEEPALIVE_S = 90.0

# What reading an upstream body can raise: a dropped connection, or silence
# longer than the read timeout. `UpstreamClient.read_failure` words them.
READ_ERRORS = (aiohttp.ClientPayloadError, aiohttp.ServerTimeoutError, TimeoutError)


def host_of(url: str) -> str:
    return urlsplit(url).hostname or url


class UpstreamClient:
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

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("UpstreamClient.start() was not awaited")
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        api_key: str | None,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> aiohttp.ClientResponse:
        """One attempt; connection-level failures become `UpstreamUnavailable` in words."""
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
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
            raise self._past_deadline(f"the upstream {host}") from exc
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

    def read_failure(self, exc: Exception, url: str = "") -> UpstreamUnavailable:
        """A failure while reading a response body (`READ_ERRORS`), in words."""
        if isinstance(exc, aiohttp.ClientPayloadError):
            return UpstreamUnavailable(
                "the upstream connection dropped in the middle of the response; try again"
            )
        who = f"the upstream {host_of(url)}" if url else "the upstream"
        if not isinstance(exc, aiohttp.ServerTimeoutError):  # the whole call's deadline
            return self._past_deadline(who)
        return UpstreamUnavailable(
            f"{who} sent nothing for {self._read_timeout_s:g} s and was given up on; "
            "it may be overloaded, try again",
            status=504,
        )

    def _past_deadline(self, who: str) -> UpstreamUnavailable:
        return UpstreamUnavailable(
            f"{who} did not finish within {self._deadline_s:g} s "
            "(upstream_deadline_s) and was cut off",
            status=504,
        )


def answered_whole(content_type: str) -> bool:
    """Whether a stream request was answered with one JSON body: some upstreams ignore
    `stream: true`."""
    return "json" in content_type and "event-stream" not in content_type


def closed_before_answer(host: str) -> UpstreamUnavailable:
    """The upstream closed the connection with no answer at all. Most often a kept-alive
    connection its server gave up on just as our request went out; retried like a
    refused connection (the official SDKs retry these too)."""
    return UpstreamUnavailable(
        f"the upstream {host} closed the connection before answering", retryable=True
    )


async def read_error_body(
    response: aiohttp.ClientResponse, masker: Masker, limit: int = 64 * 1024
) -> bytes:
    """At most `limit` bytes of an error body, masked (before anything quotes and cuts
    it: "Incorrect API key provided: ..."), then the response is released."""
    try:
        return masker.mask_bytes(await response.content.read(limit))
    except (aiohttp.ClientError, TimeoutError):
        return b""
    finally:
        response.release()


async def read_bounded(
    response: aiohttp.ClientResponse, limit_bytes: int, *, masker: Masker | None = None
) -> bytes:
    """The whole body, masked when a `masker` is given (before anything quotes and cuts
    it); `UpstreamProtocolError` once it passes `limit_bytes` (a runaway upstream must
    not fill memory). Read errors are `READ_ERRORS`, for the caller to word."""
    pieces: list[bytes] = []
    size = 0
    async for data in response.content.iter_any():
        size += len(data)
        if size > limit_bytes:
            raise response_too_large(limit_bytes)
        pieces.append(data)
    body = b"".join(pieces)
    return masker.mask_bytes(body) if masker is not None else body


def response_too_large(limit_bytes: int) -> UpstreamProtocolError:
    return UpstreamProtocolError(
        f"upstream sent more than {limit_bytes / MB:g} MB for one response and was cut off "
        "(max_upstream_response_mb in the settings)"
    )


def encode_json_body(body: dict[str, Any]) -> bytes:
    return encode_json(body)
