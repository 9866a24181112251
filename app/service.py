"""The UI's only door to NimBridge: `ProxyController`, and `ProxyService` that implements it.

Rule: `app.ui` imports this module (its types and the Protocol), never
`app.server`; tests give the UI a `FakeController` (tests/ui/fakes.py) with
the same surface. Callbacks handed to `subscribe_*` are called on the event
loop's thread, except log callbacks, which may come from any thread that logs
(the UI bridge batches them onto the Qt thread on a timer).
"""

import asyncio
import contextlib
import enum
import json
import logging
import secrets
import socket
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

from app.config.history import HistoryEntry, HistoryWriter, recent_entries
from app.config.secrets import (
    PROXY_KEY_ENTRY,
    WEB_SEARCH_KEY_ENV_BY_BACKEND,
    KeySource,
    KeyStatus,
    MemorySecretStore,
    ProviderKeys,
    SecretStoreUnavailable,
)
from app.config.settings import Settings, TierModels, save_settings, validate_settings
from app.core.catalog import CatalogModel
from app.core.errors import ProxyError, UpstreamUnavailable
from app.core.governor import GovernorState
from app.core.masking import Masker
from app.core.providers import Provider
from app.core.server_tools.backends import SearchQuery, WebToolError
from app.logs import LogBuffer, LogLine
from app.server.access import UnsafeBindError
from app.server.app import ProxyServer
from app.server.curl import to_curl_command
from app.server.history import UNRECORDED_PATHS
from app.server.images.catalog import ImageCatalogs
from app.server.network import Network, NetworkSetupError
from app.server.records import RequestRecord, upstream_label
from app.server.server_tools.backends import make_web_search
from app.server.upstream.registry import ProviderRegistry, open_registry

log = logging.getLogger(__name__)

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
    keychain_problem: str | None = None  # why keys last for this session only, in words
    pacing: Mapping[str, GovernorState] = field(default_factory=dict)

    @property
    def default_model(self) -> str:
        return self.tiers.default

    @property
    def health(self) -> Health:
        if self.state in (ServerState.STOPPED, ServerState.STOPPING):
            return Health.STOPPED
        # A missing key is something to act on too: green would say all is well.
        if (
            self.state is ServerState.ERROR
            or self.last_error
            or self.cooling_down_for > 0
            or self.needs_key
        ):
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

    async def list_image_models(self, *, refresh: bool = False) -> list[CatalogModel]: ...

    async def probe(self, provider: str, model: str) -> tuple[bool, bool | None, str]:
        """(entitled, tool calls work (None: unknown), words)."""

    def key_statuses(self) -> list[KeyStatus]: ...

    def key_store_description(self) -> str:
        """Where keys are kept, in words ("Secret Service (GNOME Keyring)", "memory only...")."""

    async def regenerate_proxy_key(self) -> str:
        """A new random proxy key, kept in the keychain and required from now on (the
        server restarts with it if running); returns it so the UI can show and copy it."""

    def set_key(self, provider: str, key: str) -> None:
        """Store in the OS keychain; ValueError (words, never the key) when refused."""

    def delete_key(self, provider: str) -> bool: ...

    async def test_provider(self, provider: Provider, key: str | None) -> tuple[bool, str]:
        """Call the provider once with this key (None: the stored one): (ok, words)."""

    def log_file(self) -> Path | None: ...

    def history_path(self) -> Path | None:
        """The request history's file; None when none is kept."""

    def watch_history_notices(self, on_notice: Callable[[str], None]) -> None:
        """`on_notice` gets each notice of the request history (a damaged file set aside,
        a locked one), those already made at once, later ones from the writer's thread."""

    # The outbound proxy's login (Settings → Server), in the keychain.
    def outbound_proxy_user(self) -> str | None:
        """The stored user name (never the password); None: none stored."""

    def set_outbound_proxy_login(self, user: str, password: str | None) -> None:
        """Store it (None: delete it); the next `apply_settings` restarts a running
        server so its sessions use it. ValueError for a bad name."""

    # Web search backends' keys (Tavily, Brave), under their own keychain entries.
    def web_search_key_status(self, backend: str) -> KeyStatus: ...

    def set_web_search_key(self, backend: str, key: str) -> None:
        """Store in the OS keychain; ValueError (words, never the key) when refused."""

    def delete_web_search_key(self, backend: str) -> bool: ...

    async def test_web_search(
        self, backend: str, base_url: str, key: str | None
    ) -> tuple[bool, str]:
        """Run one search with these (key None: the stored one): (ok, words)."""


# ---------------------------------------------------------------------------- ProxyService

# Settings the running server cannot take without listening again or rebuilding
# its upstream session; anything else (tiers, aliases, retries...) applies live.
RESTART_FIELDS = (
    "host",
    "max_request_mb",
    "fetch_private_addresses",
    "port",
    "providers",
    "default_provider",
    "connect_timeout_s",
    "read_timeout_s",
    "upstream_deadline_s",
    "shutdown_grace_s",
    "catalog_ttl_s",
    "web_search_backend",  # the web tools are built with the server
    "web_search_base_url",
    "web_fetch_enabled",
    "outbound_proxy",  # the proxy and the CAs are the server's sessions' (app.server.network)
    "extra_ca_file",
)
REQUEST_ROWS_KEPT = 1000
REQUEST_DETAILS_KEPT = 100


def _redact(text: str, secrets: Masker) -> str:
    """The log filter's masking (known keys, pieces of them, key-shaped strings)."""
    return secrets.redact(text)


def _json_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        raw: bytes = value
        try:
            value = json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")
    return json.dumps(value, indent=2, ensure_ascii=False)


class ProxyService:
    """Runs the server on the current event loop (qasync's, in the tray app)."""

    def __init__(
        self,
        settings: Settings,
        keys: ProviderKeys,
        *,
        settings_path: Path | None,
        proxy_key: str | None = None,
        log_buffer: LogBuffer | None = None,
        log_path: Path | None = None,
        generate_proxy_key: bool = False,
        history: HistoryWriter | None = None,
    ) -> None:
        self._settings = settings
        self._history = history
        self._keys = keys
        self._network_login_changed = False  # the outbound proxy's login, since the last apply
        self._settings_path = settings_path
        self._explicit_proxy_key = proxy_key
        self._generate_proxy_key = generate_proxy_key
        self._proxy_key = self._choose_proxy_key(settings)
        self._log_buffer = log_buffer
        self._log_path = log_path
        self._server: ProxyServer | None = None
        self._state = ServerState.STOPPED
        self._last_error: str | None = None
        self._day = date.today()
        self._requests_today = 0
        self._failed_today = 0
        self._rows: deque[RequestSummary] = deque(maxlen=REQUEST_ROWS_KEPT)
        if history is not None:  # the table shows requests from before this start too
            self._rows.extend(
                map(_summary_of_entry, recent_entries(history.path, REQUEST_ROWS_KEPT))
            )
            self._count_today()
        # Each record with the row made when it finished: its times are fixed then
        # (a summary made later would count the time since as the request's).
        self._details: OrderedDict[str, tuple[RequestRecord, RequestSummary]] = OrderedDict()
        self._status_subscribers: list[Callable[[ServiceStatus], None]] = []
        self._request_subscribers: list[Callable[[RequestSummary], None]] = []
        self._lock = asyncio.Lock()  # start/stop/apply never overlap

    def _choose_proxy_key(self, settings: Settings) -> str | None:
        """A flag or env wins. The tray app (`generate_proxy_key`) always has a key unless
        the user chose pass-through: the one in the keychain, else a new random one, kept
        there so that `nimbridge code` and Claude Code sessions find it again after a
        restart. Then no other local program or web page can spend the user's quota
        through the port; the launcher hands the key on."""
        key = self._explicit_proxy_key
        if key is None and not (self._generate_proxy_key and settings.pass_client_keys):
            key = self._keys.stored_proxy_key()
            if key is None and self._generate_proxy_key:
                key = secrets.token_urlsafe(24)
                self._store_proxy_key(key)
        if key:
            self._keys.remember(key)
        return key

    def _store_proxy_key(self, key: str) -> None:
        store = self._keys.store
        try:
            store.set(PROXY_KEY_ENTRY, key)
        except SecretStoreUnavailable as exc:
            log.warning("the proxy key is for this run only: %s", exc)
            return
        if not store.persistent:
            log.info("the proxy key is for this run only: keys are kept in memory")

    # ------------------------------------------------------------------ state

    @property
    def settings(self) -> Settings:
        return self._settings

    def status(self) -> ServiceStatus:
        server = self._server
        registry = server.app_state.registry if server is not None else None
        pacing = registry.governor_states() if registry is not None else {}
        default = self._settings.default
        needs_key = default.preset.needs_key and self._key_source(default) is KeySource.NONE
        return ServiceStatus(
            state=self._state,
            base_url=server.base_url
            if server is not None and self._state is ServerState.RUNNING
            else None,
            in_flight=server.app_state.in_flight if server is not None else 0,
            last_error=self._last_error,
            cooling_down_for=max((p.cooling_down_for for p in pacing.values()), default=0.0),
            tiers=self._settings.tiers,
            requests_today=self._requests_today,
            failed_today=self._failed_today,
            needs_key=needs_key,
            proxy_key=self._proxy_key,
            keychain_problem=self._keys.store.problem,
            pacing=pacing,
        )

    def _key_source(self, provider: Provider) -> KeySource:
        try:
            return self._keys.status(provider).source
        except SecretStoreUnavailable:
            return KeySource.NONE

    def _notify(self) -> None:
        status = self.status()
        for callback in list(self._status_subscribers):
            callback(status)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        async with self._lock:
            if self._server is not None:
                return
            self._state, self._last_error = ServerState.STARTING, None
            self._notify()
            try:
                server = ProxyServer(
                    self._settings, self._keys, self._proxy_key, history=self._history
                )
            except NetworkSetupError as exc:  # a CA file that does not load
                self._state, self._last_error = ServerState.ERROR, str(exc)
                log.warning("%s", exc)
                self._notify()
                return
            server.app_state.on_request_started.append(self._request_started)
            server.app_state.on_request_finished.append(self._request_finished)
            try:
                await server.start()
            except UnsafeBindError as exc:
                self._state, self._last_error = ServerState.ERROR, str(exc)
                log.warning("%s", exc)
            except OSError as exc:
                host, port = self._settings.host, self._settings.port
                self._state = ServerState.ERROR
                free = _free_port_near(host, port)
                offer = f" ({free} is free now)" if free else ""
                # Words a person acts on; the OS's own text (aiohttp's "error while
                # attempting to bind...") goes to the log only.
                self._last_error = (
                    f"Port {port} on {host} is taken by another program (perhaps another "
                    f"NimBridge). Close it, or choose another port in Settings → Server → "
                    f"Port{offer}."
                )
                log.warning("%s (%s)", self._last_error, exc.strerror or exc)
            else:
                self._server, self._state = server, ServerState.RUNNING
                log.info("NimBridge listening on %s", server.base_url)
            self._notify()

    async def stop(self) -> None:
        async with self._lock:
            await self._stop_locked()

    async def _stop_locked(self, *, restarting: bool = False) -> None:
        server, self._server = self._server, None
        if server is None:
            self._state = ServerState.STOPPED
            self._notify()
            return
        self._state = ServerState.STOPPING
        self._notify()
        # In-flight requests get shutdown_grace_s, then end with an error that says why.
        await server.stop(restarting=restarting)
        self._state = ServerState.STOPPED
        log.info("server stopped")
        self._notify()

    async def apply_settings(self, settings: Settings) -> None:
        settings = validate_settings(settings, str(self._settings_path or "settings"))
        if self._settings_path is not None:
            save_settings(self._settings_path, settings)
        async with self._lock:
            old, self._settings = self._settings, settings
            proxy_key = self._proxy_key
            if old.pass_client_keys != settings.pass_client_keys:
                proxy_key = self._choose_proxy_key(settings)
            restart = self._server is not None and (
                proxy_key != self._proxy_key
                or self._network_login_changed
                or any(getattr(old, name) != getattr(settings, name) for name in RESTART_FIELDS)
            )
            self._proxy_key = proxy_key
            self._network_login_changed = False
            if self._server is not None and not restart:
                self._server.update_settings(settings)  # a new tier applies at once
            elif restart:
                await self._stop_locked(restarting=True)
        if restart:
            await self.start()
        self._notify()

    # ------------------------------------------------------------------ requests

    def _count_today(self) -> None:
        midnight = datetime.combine(date.today(), datetime.min.time()).timestamp()
        today = [row for row in self._rows if row.started_at >= midnight]
        self._requests_today = len(today)
        self._failed_today = sum(_failed(row.status, row.error) for row in today)

    def history_path(self) -> Path | None:
        """The request history's file (None: not kept): `nimbridge usage` and the usage
        view read it."""
        return self._history.path if self._history is not None else None

    def watch_history_notices(self, on_notice: Callable[[str], None]) -> None:
        if self._history is not None:
            for notice in self._history.watch(on_notice):
                on_notice(notice)

    def _request_started(self, record: RequestRecord) -> None:
        self._notify()

    def _request_finished(self, record: RequestRecord) -> None:
        today = date.today()
        if today != self._day:
            self._day, self._requests_today, self._failed_today = today, 0, 0
        if record.path not in UNRECORDED_PATHS:
            self._requests_today += 1
            failed = _failed(record.status, record.error)
            self._failed_today += failed
            self._last_error = record.error if failed and record.status != 499 else None
            row = _summary_of(record, self._secrets())
            self._rows.append(row)
            self._details[record.request_id] = (record, row)
            while len(self._details) > REQUEST_DETAILS_KEPT:
                self._details.popitem(last=False)
            for callback in list(self._request_subscribers):
                callback(row)
        self._notify()

    def subscribe_status(self, callback: Callable[[ServiceStatus], None]) -> Unsubscribe:
        return _subscribe(self._status_subscribers, callback)

    def subscribe_requests(self, callback: Callable[[RequestSummary], None]) -> Unsubscribe:
        return _subscribe(self._request_subscribers, callback)

    def recent_requests(self) -> list[RequestSummary]:
        return list(self._rows)

    def _secrets(self) -> Masker:
        if self._proxy_key:
            self._keys.remember(self._proxy_key)  # known already, unless set from outside
        return self._keys.masker

    def request_detail(self, request_id: str) -> RequestDetail | None:
        kept = self._details.get(request_id)
        if kept is None:
            return None
        record, row = kept
        secrets = self._secrets()
        provider = self._settings.provider(record.provider) if record.provider else None
        upstream_request = _json_text(record.upstream_body)
        response = (
            _json_text(record.upstream_response)
            if record.upstream_response is not None
            else "(streamed: see the log for the upstream's chunks at DEBUG level)"
        )
        return RequestDetail(
            summary=row,
            client_request=_redact(_json_text(record.client_body), secrets),
            upstream_request=_redact(upstream_request, secrets),
            upstream_response=_redact(response, secrets),
            curl=_redact(_curl(provider, record), secrets),
        )

    # ------------------------------------------------------------------ logs

    def subscribe_logs(self, callback: Callable[[Sequence[LogLine]], None]) -> Unsubscribe:
        if self._log_buffer is None:
            return lambda: None
        return self._log_buffer.subscribe(lambda line: callback((line,)))

    def recent_logs(self) -> list[LogLine]:
        return self._log_buffer.lines() if self._log_buffer is not None else []

    def log_file(self) -> Path | None:
        return self._log_path

    # ------------------------------------------------------------------ models and keys

    async def list_models(self, *, refresh: bool = False) -> list[CatalogModel]:
        async with self._registry() as registry:
            return await registry.merged_catalog(refresh=refresh)

    async def list_image_models(self, *, refresh: bool = False) -> list[CatalogModel]:
        """Text-to-image models (for POST /v1/images/generations), never a chat tier's."""
        async with self._registry() as registry:
            return await ImageCatalogs(registry).merged(refresh=refresh)

    async def probe(self, provider: str, model: str) -> tuple[bool, bool | None, str]:
        async with self._registry() as registry:
            result = await registry.probe(provider, model)
        return result.entitled, result.tools, result.detail

    def key_statuses(self) -> list[KeyStatus]:
        return [self._keys.status(p) for p in self._settings.providers]

    def key_store_description(self) -> str:
        store = self._keys.store
        return f"{store.description}: {store.problem}" if store.problem else store.description

    async def regenerate_proxy_key(self) -> str:
        key = secrets.token_urlsafe(24)
        self._keys.remember(key)
        self._keys.store.set(PROXY_KEY_ENTRY, key)
        async with self._lock:
            self._proxy_key = key
            was_running = self._server is not None
            if was_running:
                await self._stop_locked(restarting=True)
        if was_running:
            await self.start()
        log.info("a new proxy key was made; clients must send it from now on")
        self._notify()
        return key

    def set_key(self, provider: str, key: str) -> None:
        self._keys.set(provider, key)
        self._notify()

    def delete_key(self, provider: str) -> bool:
        deleted = self._keys.delete(provider)
        self._notify()
        return deleted

    async def test_provider(self, provider: Provider, key: str | None) -> tuple[bool, str]:
        """List the provider's models, then spend one token on the first, with this key."""
        keys = self._keys
        if key is not None:
            keys = ProviderKeys(MemorySecretStore(), env={})
            keys.set(provider.name, key)
        settings = replace(self._settings, providers=(provider,), default_provider=provider.name)
        try:
            network = Network.from_settings(self._settings, self._keys)
        except NetworkSetupError as exc:
            return False, str(exc)
        async with open_registry(
            settings, keys, network, connect_timeout_s=10, read_timeout_s=30
        ) as registry:
            try:
                models = await registry.catalog(provider.name, refresh=True)
            except ProxyError as exc:
                return False, exc.message
            if not models:
                return True, f"{provider.base_url} answers but lists no chat model"
            result = await registry.probe(provider.name, models[0].id)
            if not result.entitled:
                return False, result.detail
            return True, f"{provider.base_url} answers, key accepted, {len(models)} chat models"

    def outbound_proxy_user(self) -> str | None:
        """The outbound proxy's stored user name (never the password); None: none stored."""
        try:
            login = self._keys.outbound_proxy_credentials()
        except SecretStoreUnavailable:
            return None
        return login[0] if login else None

    def set_outbound_proxy_login(self, user: str, password: str | None) -> None:
        """Store the outbound proxy's login (None: delete it); the next `apply_settings`
        restarts a running server so its sessions use it. ValueError for a bad name."""
        if password is None:
            self._keys.delete_outbound_proxy_credentials()
        else:
            self._keys.set_outbound_proxy_credentials(user, password)
        self._network_login_changed = True

    def web_search_key_status(self, backend: str) -> KeyStatus:
        return self._keys.web_search_key_status(backend)

    def set_web_search_key(self, backend: str, key: str) -> None:
        self._keys.set_web_search_key(backend, key)

    def delete_web_search_key(self, backend: str) -> bool:
        return self._keys.delete_web_search_key(backend)

    async def test_web_search(
        self, backend: str, base_url: str, key: str | None
    ) -> tuple[bool, str]:
        if backend == "searxng" and not base_url.strip():
            return False, "enter your SearXNG instance's URL (http://host:8888)"
        keys = self._keys
        if key is not None and backend in WEB_SEARCH_KEY_ENV_BY_BACKEND:
            keys = ProviderKeys(MemorySecretStore(), env={})
            keys.set_web_search_key(backend, key)
        settings = replace(
            self._settings, web_search_backend=backend, web_search_base_url=base_url.strip()
        )
        try:
            network = Network.from_settings(self._settings, self._keys)
        except NetworkSetupError as exc:
            return False, str(exc)
        search = make_web_search(settings, keys, network)
        if search is None:
            return False, "choose a search backend first"
        try:
            results = await search.search(SearchQuery("NimBridge web search test", max_results=3))
        except WebToolError as exc:
            return False, exc.message
        finally:
            await search.close()
        return True, f"{search.describe} answers ({len(results)} results for a test search)"

    @contextlib.asynccontextmanager
    async def _registry(self) -> AsyncIterator[ProviderRegistry]:
        """The running server's registry (its caches), or a short-lived one when stopped."""
        if self._server is not None:
            yield self._server.app_state.registry
            return
        try:
            network = Network.from_settings(self._settings, self._keys)
        except NetworkSetupError as exc:
            raise UpstreamUnavailable(str(exc)) from exc
        async with open_registry(
            self._settings, self._keys, network, read_timeout_s=60
        ) as registry:
            yield registry


def _free_port_near(host: str, port: int) -> int | None:
    """A port after `port` that is free now, to offer when `port` is taken."""
    for candidate in range(port + 1, min(port + 50, 65536)):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            try:
                sock.bind((host, candidate))
            except OSError:
                continue
            return candidate
    return None


def _subscribe[T](subscribers: list[T], callback: T) -> Unsubscribe:
    subscribers.append(callback)

    def unsubscribe() -> None:
        if callback in subscribers:
            subscribers.remove(callback)

    return unsubscribe


def _failed(status: int | None, error: str | None) -> bool:
    return status is None or status >= 400 or bool(error)


def _summary_of_entry(entry: HistoryEntry) -> RequestSummary:
    """A row kept in the history (from an earlier run, or this one's)."""
    return RequestSummary(
        request_id=entry.request_id,
        started_at=entry.started_at,
        method=entry.method,
        path=entry.path,
        client_model=entry.client_model,
        upstream_model=upstream_label(entry.upstream_model, entry.provider),
        stream=entry.stream,
        status=entry.status,
        ttfb_ms=entry.ttfb_ms,
        duration_ms=entry.duration_ms,
        input_tokens=entry.input_tokens,
        output_tokens=entry.output_tokens,
        attempts=entry.attempts,
        repairs=entry.repairs,
        error=entry.error,
    )


def _summary_of(record: RequestRecord, secrets: Masker) -> RequestSummary:
    loop_now = record.started + (time.time() - record.started_wall)
    return RequestSummary(
        request_id=record.request_id,
        started_at=record.started_wall,
        method=record.method,
        path=record.path,
        client_model=record.client_model,
        upstream_model=record.upstream,
        stream=record.stream,
        status=record.status,
        ttfb_ms=(record.first_byte_at - record.started) * 1000
        if record.first_byte_at is not None
        else None,
        duration_ms=max(0.0, (loop_now - record.started) * 1000),
        input_tokens=record.usage.get("input_tokens"),
        output_tokens=record.usage.get("output_tokens"),
        attempts=record.attempts,
        repairs=tuple(record.repairs),
        error=_redact(record.error, secrets) if record.error else None,
    )


def _curl(provider: Provider | None, record: RequestRecord) -> str:
    key_env = provider.preset.key_env[0] if provider and provider.preset.key_env else "API_KEY"
    return to_curl_command(record.upstream_target, record.upstream_body, key_env=key_env)
