"""An in-memory `Transport` for `UpstreamClient` (httpx's MockTransport, for our seam).

Each `send` takes the next queued `Reply` (or raises the queued connect failure) and
records what was sent. A reply's body is bytes or a list of chunks, read one chunk per
`readany`, then ends or fails the way a real connection does (`ReadFailure`).
"""

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

from app.core.errors import UpstreamUnavailable
from app.server.upstream.transport import ReadFailure


@dataclass(frozen=True, slots=True)
class Reply:
    status: int = 200
    body: bytes | list[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    fail: ReadFailure | None = None  # raised by the read after the last chunk
    delay_s: float = 0.0  # before the status and headers
    pause_s: float = 0.0  # before each chunk after the first


def json_reply(body: Any, status: int = 200, **headers: str) -> Reply:
    return Reply(status, json.dumps(body).encode(), {"Content-Type": "application/json", **headers})


def error_reply(status: int, message: str, **headers: str) -> Reply:
    return json_reply({"error": {"message": message}}, status, **headers)


@dataclass(frozen=True, slots=True)
class Sent:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None

    def json(self) -> Any:
        assert self.body is not None
        return json.loads(self.body)


class BodyCut(Exception):
    """What a memory body's read raises where aiohttp would raise its own errors."""

    def __init__(self, failure: ReadFailure) -> None:
        super().__init__(failure.value)
        self.failure = failure


class MemoryBody:
    def __init__(self, reply: Reply) -> None:
        body = reply.body
        if isinstance(body, bytes):
            body = [body] if body else []
        self._chunks = deque(body)
        self._fail = reply.fail
        self._pause_s = reply.pause_s
        self._started = False

    async def readany(self) -> bytes:
        if self._started and self._pause_s and (self._chunks or self._fail):
            await asyncio.sleep(self._pause_s)
        self._started = True
        if self._chunks:
            return self._chunks.popleft()
        if self._fail is not None:
            raise BodyCut(self._fail)
        return b""

    async def read(self, n: int) -> bytes:
        data = await self.readany()
        if len(data) > n:
            self._chunks.appendleft(data[n:])
        return data[:n]

    def at_eof(self) -> bool:
        return not self._chunks and self._fail is None


class MemoryResponse:
    def __init__(self, reply: Reply) -> None:
        self.status = reply.status
        self.headers = CIMultiDictProxy(CIMultiDict(reply.headers))
        self.content = MemoryBody(reply)
        self.released = False

    @property
    def content_type(self) -> str:
        """As aiohttp gives it: the media type alone, lower case."""
        raw = self.headers.get("Content-Type", "application/octet-stream")
        return raw.split(";", 1)[0].strip().lower()

    def release(self) -> None:
        self.released = True


class MemoryTransport:
    read_errors: tuple[type[Exception], ...] = (BodyCut,)

    def __init__(self, *replies: Reply | UpstreamUnavailable) -> None:
        self._replies = deque(replies)
        self.sent: list[Sent] = []
        self.responses: list[MemoryResponse] = []

    def queue(self, *replies: Reply | UpstreamUnavailable) -> None:
        self._replies.extend(replies)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> MemoryResponse:
        self.sent.append(Sent(method, url, dict(headers), body))
        reply = self._replies.popleft()  # an IndexError: the test queued too few
        if isinstance(reply, UpstreamUnavailable):
            raise reply
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        response = MemoryResponse(reply)
        self.responses.append(response)
        return response

    def read_failure(self, exc: Exception) -> ReadFailure | None:
        return exc.failure if isinstance(exc, BodyCut) else None
