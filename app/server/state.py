"""What every handler needs, reached through one typed AppKey (no globals)."""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from app.config.settings import Settings
from app.core.errors import ProxyError
from app.core.masking import Masker, url_secrets
from app.core.server_tools.backends import WebFetch, WebSearch
from app.core.tokens import TokenEstimator
from app.server.history import SessionTallies
from app.server.messages.pdf_text import DocumentReader
from app.server.records import RequestRecord
from app.server.safe_fetch import SafeFetcher
from app.server.upstream.registry import ProviderRegistry

MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """How answers are relayed, built once from the settings (again when they change)."""

    commit_window_s: float  # an unanswered attempt commits the stream after this long
    ping_interval_s: float  # a ping after this long of the client hearing nothing
    max_upstream_bytes: int  # one upstream answer is cut off past this
    smooth_deltas: bool  # an upstream's bursts go out as several small deltas

    @classmethod
    def from_settings(cls, settings: Settings) -> "RelayConfig":
        return cls(
            commit_window_s=settings.commit_window_s,
            ping_interval_s=settings.ping_interval_s,
            max_upstream_bytes=settings.max_upstream_response_mb * MB,
            smooth_deltas=settings.smooth_deltas,
        )


def learn_url_secrets(masker: Masker, settings: Settings) -> None:
    """Secrets inside configured URLs (`user:PASS@`, `?key=...`) are masked like keys."""
    for url in (*(p.base_url for p in settings.providers), settings.web_search_base_url):
        for secret in url_secrets(url):
            masker.add(secret)


@dataclass(slots=True)
class ProxyState:
    # The one holder of the settings (`settings` below reads them from it): the registry
    # derives its router and retry policy from them, so it is told first.
    registry: ProviderRegistry
    proxy_key: str | None  # what clients must send; None: pass-through of their own keys
    fetcher: SafeFetcher  # what NimBridge fetches for clients (images by URL)
    # The one masking step, shared with the log filter: every key we know, and the
    # pass-through clients' own keys as they come (`request_middleware`).
    masker: Masker
    estimator: TokenEstimator = field(default_factory=TokenEstimator)
    # Reads PDFs as text (worker threads, limits, a cache across turns); closed at shutdown.
    documents: DocumentReader = field(default_factory=DocumentReader)
    # The backends of Anthropic's web_search / web_fetch server tools; None: not set up
    # (the model is told how to set them up, the request still succeeds).
    web_search: WebSearch | None = None
    web_fetch: WebFetch | None = None
    started: float = 0.0
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    # Each request's handler task, so `ProxyServer.stop` can end those that outlive the grace.
    live: dict[asyncio.Task[Any], RequestRecord] = field(default_factory=dict)
    # Set when the server begins to stop: what a request still arriving is answered.
    closing: ProxyError | None = None
    # Told of every request as it starts and ends (the tray's service), on the loop.
    on_request_started: list[Callable[[RequestRecord], None]] = field(default_factory=list)
    on_request_finished: list[Callable[[RequestRecord], None]] = field(default_factory=list)
    # Each Claude Code session's tokens and model, for the status line.
    sessions: SessionTallies = field(default_factory=SessionTallies)
    # Where finished requests are kept across restarts (None: not kept).
    history_path: Path | None = None
    relay: RelayConfig = field(init=False)

    def __post_init__(self) -> None:
        self.relay = RelayConfig.from_settings(self.registry.settings)

    @property
    def settings(self) -> Settings:
        return self.registry.settings

    def update_settings(self, settings: Settings) -> None:
        """Settings that need no restart (tiers, aliases, fallbacks, capabilities, retries,
        relay), taken at once: requests already under way keep what they started with."""
        self.registry.update_settings(settings)
        self.relay = RelayConfig.from_settings(settings)
        learn_url_secrets(self.masker, settings)

    def mask(self, text: str) -> str:
        """`text` without any key we know, piece of one at its edges or key-shaped
        string: for what leaves us in words (error messages, which quote what upstreams
        echo back: "Incorrect API key provided: ..."). Bytes are masked again as sent."""
        return self.masker.redact(text)


STATE = web.AppKey("state", ProxyState)
RECORD = web.RequestKey("record", RequestRecord)


def record_of(request: web.Request) -> RequestRecord:
    return request[RECORD]


def absorb_stop(record: RequestRecord) -> bool:
    """True when the current task was cancelled by `ProxyServer.stop` (only): the
    cancellation is then taken back so the handler can still end its response well.
    A second cancellation (the client left too, or the runner's last deadline) stays."""
    task = asyncio.current_task()
    if record.stopped_by is None or task is None or task.cancelling() != 1:
        return False
    task.uncancel()
    return True
