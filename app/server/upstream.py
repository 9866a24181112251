"""The one HTTP client to the provider: a shared ClientSession with connection reuse.

Invariant: every failure leaves here as a `ProxyError` whose message a user can
act on (never an aiohttp exception), and every response handed out is either
2xx or already turned into an `UpstreamError`.
"""

import asyncio
import json
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from app import __version__
from app.core.errors import (
    ProxyError,
    UpstreamError,
    UpstreamUnavailable,
    extract_upstream_message,
    max_tokens_limit,
    upstream_error_from_response,
)
from app.core.openai_types import ChatRequest

log = logging.getLogger(__name__)

# What reading an upstream body can raise: a dropped connection, or silence
# longer than the read timeout. `UpstreamClient.read_failure` words them.
READ_ERRORS = (aiohttp.ClientPayloadError, aiohttp.ServerTimeoutError, TimeoutError)

# First retry waits this long, then doubles, always inside the commit window.
FIRST_BACKOFF_S = 0.05


@dataclass(slots=True)
class Attempts:
    """What happened while getting one upstream response, for the request log."""

    count: int = 0
    repairs: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ErrorContext:
    """Facts that turn an upstream 400 into Claude Code's 'prompt is too long' wording."""

    context_window: int | None = None
    prompt_tokens: int | None = None


class UpstreamClient:
    def __init__(self, base_url: str, *, connect_timeout_s: float, read_timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        self._host = parts.hostname or self.base_url
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(
                    total=None,
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

    def _headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        return headers

    async def request(
        self, method: str, path: str, *, api_key: str | None, body: bytes | None = None
    ) -> aiohttp.ClientResponse:
        """One attempt; connection-level failures become `UpstreamUnavailable` in words."""
        url = f"{self.base_url}{path}"
        try:
            return await self.session.request(
                method, url, data=body, headers=self._headers(api_key), allow_redirects=False
            )
        except aiohttp.ClientConnectorCertificateError as exc:
            raise UpstreamUnavailable(
                f"TLS certificate of {self._host} was rejected ({exc.certificate_error}); "
                "check the upstream URL or the system's CA certificates"
            ) from exc
        except aiohttp.ClientConnectorDNSError as exc:
            raise UpstreamUnavailable(
                f"cannot resolve the upstream host {self._host}; check the upstream URL "
                "and your network connection"
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            refused = isinstance(exc.os_error, ConnectionRefusedError)
            reason = "connection refused" if refused else (exc.os_error.strerror or str(exc))
            raise UpstreamUnavailable(
                f"cannot connect to the upstream at {self.base_url} ({reason}); "
                "is it running and reachable?",
                retryable=refused,
            ) from exc
        except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
            raise UpstreamUnavailable(f"TLS handshake with {self._host} failed ({exc})") from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise timeout_error(self._host, self._connect_timeout_s, self._read_timeout_s) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(
                f"the connection to {self._host} failed before it answered ({exc})"
            ) from exc

    def read_failure(self, exc: Exception) -> UpstreamUnavailable:
        """A failure while reading a response body (`READ_ERRORS`), in words."""
        if isinstance(exc, aiohttp.ClientPayloadError):
            return UpstreamUnavailable(
                "the upstream connection dropped in the middle of the response; try again"
            )
        return UpstreamUnavailable(
            f"the upstream {self._host} sent nothing for {self._read_timeout_s:g} s and was "
            "given up on; it may be overloaded, try again",
            status=504,
        )

    async def post_chat(
        self,
        chat: ChatRequest,
        *,
        api_key: str | None,
        window_s: float,
        context: ErrorContext,
        attempts: Attempts,
        on_retry: Callable[[ProxyError], None] | None = None,
    ) -> aiohttp.ClientResponse:
        """POST /chat/completions until a 2xx, retrying transient failures inside `window_s`.

        A too-large `max_tokens` is clamped to the limit the upstream names and
        sent once more, whatever the window (it is a fix, not a wait).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window_s
        backoff = FIRST_BACKOFF_S
        body: dict[str, Any] = dict(chat)
        clamped = False
        while True:
            attempts.count += 1
            try:
                response = await self.request(
                    "POST", "/chat/completions", api_key=api_key, body=encode_json_body(body)
                )
            except UpstreamUnavailable as exc:
                error: ProxyError = exc
                retryable = exc.retryable
                retry_after_s = None
            else:
                if response.status < 400:
                    return response
                raw = await read_error_body(response)
                limit = max_tokens_limit(extract_upstream_message(raw))
                requested = body.get("max_tokens")
                if (
                    response.status in (400, 422)
                    and not clamped
                    and limit is not None
                    and isinstance(requested, int)
                    and limit < requested
                ):
                    body["max_tokens"] = limit
                    clamped = True
                    attempts.repairs.append(f"max_tokens clamped to {limit} after upstream 400")
                    continue
                retry_after = response.headers.get("Retry-After")
                error = upstream_error_from_response(
                    response.status,
                    raw,
                    retry_after=retry_after,
                    context_window=context.context_window,
                    prompt_tokens=context.prompt_tokens,
                )
                retryable = isinstance(error, UpstreamError) and error.retryable
                retry_after_s = _seconds(retry_after)
            wait = max(backoff, retry_after_s or 0.0)
            if not retryable or loop.time() + wait > deadline:
                raise error
            if on_retry is not None:
                on_retry(error)
            await asyncio.sleep(wait)
            backoff *= 2


def timeout_error(host: str, connect_s: float, read_s: float) -> UpstreamUnavailable:
    return UpstreamUnavailable(
        f"the upstream {host} did not answer in time (connect timeout {connect_s:g} s, "
        f"read timeout {read_s:g} s); it may be overloaded, try again",
        status=504,
    )


async def read_error_body(response: aiohttp.ClientResponse, limit: int = 64 * 1024) -> bytes:
    """At most `limit` bytes of an error body, then the response is released."""
    try:
        return await response.content.read(limit)
    except (aiohttp.ClientError, TimeoutError):
        return b""
    finally:
        response.release()


def encode_json_body(body: dict[str, Any]) -> bytes:
    # ASCII escapes: 2.6x faster than ensure_ascii=False on Claude Code's 76 KB
    # requests (measured, tests/benchmarks), and equally valid JSON upstream.
    return json.dumps(body, separators=(",", ":")).encode()


def _seconds(retry_after: str | None) -> float | None:
    try:
        return float(retry_after) if retry_after else None
    except ValueError:  # an HTTP date: rare upstream; let the client use it as is
        return None
