"""The UI's only door to NimBridge: `ProxyController`, and `ProxyService` that implements it.

Rule: `app.ui` imports this module (its types and the Protocol), never
`app.server`; tests give the UI a `FakeController` (tests/ui/fakes.py) with
the same surface. Callbacks handed to `subscribe_*` are called on the event
loop's thread, except log callbacks, which may come from any thread that logs
(the UI bridge batches them onto the Qt thread on a timer).
"""

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from app.config.secrets import KeyStatus
from app.config.settings import Settings, TierModels
from app.core.catalog import CatalogModel
from app.core.governor import GovernorState
from app.core.providers import Provider
from app.logs import LogLine

Unsubscribe = Callable[[], None]


class ServerState(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    ERROR = "error"  # could not start (port taken...), see `last_error`


class Health(enum.StrEnum):
    """What the tray icon shows."""

    STOPPED = "stopped"
    RUNNING = "running"
    BUSY = "busy"  # requests in flight
    ERROR = "error"  # not started, last request failed, upstream unreachable, cooling down


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    state: ServerState
    base_url: str | None  # while running
    in_flight: int = 0
    last_error: str | None = None  # words a user can act on; None when all is well
    cooling_down_for: float = 0.0  # seconds left of the longest rate-limit cool-down
    tiers: TierModels = field(default_factory=TierModels)
    requests_today: int = 0
    failed_today: int = 0
    needs_key: bool = False  # the default provider needs a key and has none
    proxy_key: str | None = None  # what clients must send (shown on demand, copied)
    pacing: Mapping[str, GovernorState] = field(default_factory=dict)

    @property
    def default_model(self) -> str:
        return self.tiers.default

    @property
    def health(self) -> Health:
        if self.state in (ServerState.STOPPED, ServerState.STOPPING):
            return Health.STOPPED
        if self.state is ServerState.ERROR or self.last_error or self.cooling_down_for > 0:
            return Health.ERROR
        if self.in_flight > 0:
            return Health.BUSY
        return Health.RUNNING if self.state is ServerState.RUNNING else Health.STOPPED


@dataclass(frozen=True, slots=True)
class RequestSummary:
    """One row of the request table."""

    request_id: str
    started_at: float  # wall-clock seconds (time.time())
    method: str
    path: str
    client_model: str | None
    upstream_model: str | None  # `model@provider`
    stream: bool | None
    status: int | None
    ttfb_ms: float | None
    duration_ms: float
    input_tokens: int | None
    output_tokens: int | None
    attempts: int
    repairs: tuple[str, ...]
    error: str | None


@dataclass(frozen=True, slots=True)
class RequestDetail:
    """What a row opens: the translated request and response, keys redacted."""

    summary: RequestSummary
    client_request: str  # JSON text
    upstream_request: str  # JSON text, as sent to the provider
    upstream_response: str  # JSON text (non-stream) or a note for streams
    curl: str  # reproduces the upstream request; the key as an environment variable


class ProxyController(Protocol):
    @property
    def settings(self) -> Settings: ...

    def status(self) -> ServiceStatus: ...

    async def start(self) -> None:
        """Start the server; on failure the status says why (state ERROR, last_error)."""

    async def stop(self) -> None:
        """Let in-flight streams finish (bounded), then close; the port is freed."""

    async def apply_settings(self, settings: Settings) -> None:
        """Validate, save atomically, and restart the server if it was running."""

    def subscribe_status(self, callback: Callable[[ServiceStatus], None]) -> Unsubscribe: ...

    def subscribe_logs(self, callback: Callable[[Sequence[LogLine]], None]) -> Unsubscribe: ...

    def recent_logs(self) -> list[LogLine]: ...

    def subscribe_requests(self, callback: Callable[[RequestSummary], None]) -> Unsubscribe: ...

    def recent_requests(self) -> list[RequestSummary]: ...

    def request_detail(self, request_id: str) -> RequestDetail | None: ...

    async def list_models(self, *, refresh: bool = False) -> list[CatalogModel]: ...

    async def probe(self, provider: str, model: str) -> tuple[bool, bool | None, str]:
        """(entitled, tool calls work (None: unknown), words)."""

    def key_statuses(self) -> list[KeyStatus]: ...

    def set_key(self, provider: str, key: str) -> None:
        """Store in the OS keychain; ValueError (words, never the key) when refused."""

    def delete_key(self, provider: str) -> bool: ...

    async def test_provider(self, provider: Provider, key: str | None) -> tuple[bool, str]:
        """Call the provider once with this key (None: the stored one): (ok, words)."""

    def log_file(self) -> Path | None: ...
