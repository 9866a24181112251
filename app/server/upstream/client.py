"""The one HTTP client to every provider, and the one reader of what they answer.

Invariant: every failure leaves here as a `ProxyError` whose message a user can
act on (never an aiohttp exception): `Transport.send` words a failure to connect,
`UpstreamResponse` words a failure to read (a dropped connection, silence past the
read timeout, the whole call's deadline, a body past its limit), so no caller
words one again. Policy (retries, budgets, learning) lives in
`app.server.upstream.call_policy`; this module only moves bytes and words failures.
"""

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from app.core.errors import UpstreamProtocolError, UpstreamUnavailable
from app.core.masking import Masker
from app.server.json_body import encode_json
from app.server.network import Network
from app.server.upstream.h1_transport import H1Transport
from app.server.upstream.transport import (
    RawResponse,
    ReadFailure,
    Transport,
    host_of,
    past_deadline,
)

MB = 1024 * 1024
ERROR_BODY_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class _ReadWords:
    """What wording a read failure takes: the transport that tells them apart, the timeouts."""

    transport: Transport
    read_timeout_s: float
    deadline_s: float | None

    def failure(self, exc: Exception, url: str, *, name_host: bool) -> UpstreamUnavailable | None:
        kind = self.transport.read_failure(exc)
        if kind is None:
            return None
        if kind is ReadFailure.DROPPED:
            return UpstreamUnavailable(
                "the upstream connection dropped in the middle of the response; try again"
            )
        who = f"the upstream {host_of(url)}" if name_host else "the upstream"
        if kind is ReadFailure.DEADLINE:
            return past_deadline(who, self.deadline_s)
        return UpstreamUnavailable(
            f"{who} sent nothing for {self.read_timeout_s:g} s and was given up on; "
            "it may be overloaded, try again",
            status=504,
        )


class UpstreamClient:
    def __init__(
        self,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        deadline_s: float | None = None,
        network: Network | None = None,
        transport: Transport | None = None,
    ) -> None:
        """`transport`: the wire (tests give an in-memory one); by default HTTP/1.1 of our
        own straight to the upstream, aiohttp's client where a proxy applies."""
        self.transport: Transport = transport or H1Transport(
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            deadline_s=deadline_s,
            network=network,
        )
        self._words = _ReadWords(self.transport, read_timeout_s, deadline_s)

    async def start(self) -> None:
        await self.transport.start()

    async def close(self) -> None:
        await self.transport.close()

    async def request(
        self,
        method: str,
        url: str,
        *,
        api_key: str | None,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> "UpstreamResponse":
        """One attempt; connection-level failures become `UpstreamUnavailable` in words."""
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        raw = await self.transport.send(method, url, headers, body)
        return UpstreamResponse(raw, url, self._words)


class UpstreamResponse:
    """An upstream's answer: status and headers at once, the body through reads that
    raise only worded `UpstreamUnavailable` / `UpstreamProtocolError`.

    `name_host=False` on a read leaves the host out of a timeout's words (the
    streamed /v1/messages relay has always said "the upstream").
    """

    __slots__ = ("_raw", "_words", "url")

    def __init__(self, raw: RawResponse, url: str, words: _ReadWords) -> None:
        self._raw = raw
        self._words = words
        self.url = url

    @property
    def status(self) -> int:
        return self._raw.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._raw.headers

    @property
    def content_type(self) -> str:
        return self._raw.content_type

    def chunks(
        self, limit_bytes: int | None = None, *, name_host: bool = True
    ) -> AsyncIterator[bytes]:
        """The body as it arrives, one item per read; `UpstreamProtocolError` once it
        passes `limit_bytes` (a runaway upstream must not fill memory)."""
        return _Chunks(self, limit_bytes, name_host)

    async def read_body(
        self, limit_bytes: int, masker: Masker | None = None, *, name_host: bool = True
    ) -> bytes:
        """The whole body, masked when a `masker` is given (before anything quotes and
        cuts it); `UpstreamProtocolError` once it passes `limit_bytes`."""
        pieces = [data async for data in _Chunks(self, limit_bytes, name_host)]
        body = b"".join(pieces)
        return masker.mask_bytes(body) if masker is not None else body

    async def read_error_body(self, masker: Masker, limit: int = ERROR_BODY_LIMIT) -> bytes:
        """At most `limit` bytes of an error body, masked (before anything quotes and cuts
        it: "Incorrect API key provided: ..."), then the response is released; b"" when
        the read fails (the status says enough)."""
        try:
            return masker.mask_bytes(await self._raw.content.read(limit))
        except self._words.transport.read_errors:
            return b""
        finally:
            self._raw.release()

    async def drain(self, timeout_s: float = 0.05) -> None:
        """Read the few bytes after the last event (the chunked terminator) so the
        connection goes back to the pool; given up on quietly after `timeout_s`."""
        content = self._raw.content
        if content.at_eof():
            return
        try:
            async with asyncio.timeout(timeout_s):
                while await content.readany():
                    pass
        except TimeoutError:
            pass  # not reusable then; release() closes it
        except self._words.transport.read_errors:
            pass

    def release(self) -> None:
        """Back to the pool when read to the end; otherwise the connection is closed,
        which is what aborts the upstream request."""
        self._raw.release()

    def _failure(self, exc: Exception, name_host: bool) -> UpstreamUnavailable | None:
        return self._words.failure(exc, self.url, name_host=name_host)


class _Chunks:
    """`UpstreamResponse.chunks()`: one `readany` per step, no buffer of its own (a
    class, not a generator: nothing is left to finalise when the reader stops early)."""

    __slots__ = ("_limit", "_name_host", "_read_errors", "_readany", "_received", "_response")

    def __init__(self, response: UpstreamResponse, limit: int | None, name_host: bool) -> None:
        self._response = response
        self._readany = response._raw.content.readany
        self._read_errors = response._words.transport.read_errors
        self._limit = limit
        self._name_host = name_host
        self._received = 0

    def __aiter__(self) -> "_Chunks":
        return self

    async def __anext__(self) -> bytes:
        try:
            data = await self._readany()
        except self._read_errors as exc:
            failure = self._response._failure(exc, self._name_host)
            if failure is None:
                raise
            raise failure from exc
        if not data:
            raise StopAsyncIteration
        if self._limit is not None:
            self._received += len(data)
            if self._received > self._limit:
                raise response_too_large(self._limit)
        return data


def answered_whole(content_type: str) -> bool:
    """Whether a stream request was answered with one JSON body: some upstreams ignore
    `stream: true`."""
    return "json" in content_type and "event-stream" not in content_type


def response_too_large(limit_bytes: int) -> UpstreamProtocolError:
    return UpstreamProtocolError(
        f"upstream sent more than {limit_bytes / MB:g} MB for one response and was cut off "
        "(max_upstream_response_mb in the settings)"
    )


def encode_json_body(body: dict[str, Any]) -> bytes:
    return encode_json(body)
