"""One record per request, written as one INFO line when the request ends."""

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from app.core.errors import ProxyError
from app.core.tiers import ModelRoute


def upstream_label(model: str | None, provider: str | None) -> str | None:
    """`model@provider`, how a route is shown (log line, request table, status line)."""
    return f"{model}@{provider}" if model and provider else model


# Ids need to be unique, not secret: a generator seeded once from the OS (at import)
# instead of an OS call for each id (secrets.token_hex: three times the cost).
_ids = random.Random()


def new_request_id() -> str:
    """`req_` and 24 hex digits: the wall clock's milliseconds, then 52 random bits. Ids in
    the order they were made are the history's primary key: SQLite adds each row at the
    end of its index instead of at a random place (half the cost of a row, measured)."""
    return f"req_{int(time.time() * 1000):011x}{_ids.getrandbits(52):013x}"


def new_message_id() -> str:
    return f"msg_{_ids.getrandbits(96):024x}"


@dataclass(frozen=True, slots=True)
class UpstreamTarget:
    """Where an upstream call went and how its body was written ("Copy as curl" repeats it)."""

    method: str
    url: str
    content_type: str  # as sent: "multipart/form-data; boundary=..." for Workers AI's FLUX.2


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    method: str
    path: str
    started: float = field(default_factory=lambda: asyncio.get_running_loop().time())
    client_model: str | None = None
    upstream_model: str | None = None  # the provider's model id
    provider: str | None = None  # the provider it was sent to
    stream: bool | None = None  # None: not a generation request (count_tokens, models...)
    status: int | None = None
    first_byte_at: float | None = None
    attempts: int = 0
    usage: dict[str, Any] = field(default_factory=dict)
    repairs: list[str] = field(default_factory=list)
    error: str | None = None
    started_wall: float = field(default_factory=time.time)
    # References (never copies) for the UI's request detail view; bodies are
    # redacted only when someone asks to see them.
    client_body: Any = None
    upstream_body: Any = None
    upstream_target: UpstreamTarget | None = None  # the call that sent `upstream_body`
    upstream_response: bytes | None = None
    headers_sent: bool = False  # the response has begun: an error now must go in its body
    # The error `ProxyServer.stop` ended this request with, after the grace period.
    stopped_by: ProxyError | None = None
    # Who asked: Claude Code's session (its X-Claude-Code-Session-Id header) and the
    # folder NimBridge launched it in (X-NimBridge-Project, set by the launcher).
    session_id: str | None = None
    project: str | None = None

    def note_route(self, route: ModelRoute) -> None:
        self.client_model = route.client_model
        self.upstream_model, self.provider = route.upstream_model, route.provider or None

    @property
    def upstream(self) -> str | None:
        return upstream_label(self.upstream_model, self.provider)

    def mark_first_byte(self) -> None:
        if self.first_byte_at is None:
            self.first_byte_at = asyncio.get_running_loop().time()

    def summary(self) -> str:
        """`req_… POST /v1/messages claude-x -> up/model stream 200 ttfb=… total=… tokens=…`."""
        now = asyncio.get_running_loop().time()
        parts = [self.request_id, self.method, self.path]
        if self.client_model is not None:
            parts.append(f"{self.client_model} -> {self.upstream}")
            if self.stream is not None:
                parts.append("stream" if self.stream else "non-stream")
        parts.append(str(self.status if self.status is not None else "-"))
        if self.first_byte_at is not None:
            parts.append(f"ttfb={(self.first_byte_at - self.started) * 1000:.0f}ms")
        parts.append(f"total={(now - self.started) * 1000:.0f}ms")
        if self.usage:
            parts.append(
                f"tokens={self.usage.get('input_tokens', 0)}/{self.usage.get('output_tokens', 0)}"
            )
        if self.attempts > 1:
            parts.append(f"attempts={self.attempts}")
        if self.repairs:
            parts.append("repairs=[" + "; ".join(self.repairs) + "]")
        if self.error:
            parts.append(f"error={self.error!r}")
        return " ".join(parts)
