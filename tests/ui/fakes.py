"""A `ProxyController` for UI tests: no server, no network, everything observable."""

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from app.config.secrets import KeySource, KeyStatus
from app.config.settings import Settings
from app.core.capabilities import ModelQuirks, ReasoningSwitch
from app.core.catalog import CatalogModel, ModelKind
from app.core.providers import Provider
from app.logs import LogLine
from app.service import (
    RequestDetail,
    RequestSummary,
    ServerState,
    ServiceStatus,
    Unsubscribe,
)

FAKE_MODELS = [
    CatalogModel(
        "qwen/qwen3-coder-480b-a35b-instruct",
        "nvidia",
        "Qwen3 Coder 480B",
        0,
        "qwen",
        ModelQuirks(
            ReasoningSwitch.NONE, 65536, 262144, supports_tools=True, supports_images=False
        ),
    ),
    CatalogModel(
        "deepseek-ai/deepseek-v3.1",
        "nvidia",
        "DeepSeek V3.1",
        0,
        "deepseek-ai",
        ModelQuirks(ReasoningSwitch.TEMPLATE_THINKING, 32768, 131072, supports_tools=True),
    ),
    CatalogModel(
        "meta/llama-3.2-90b-vision-instruct",
        "nvidia",
        "Llama 3.2 90B Vision",
        0,
        "meta",
        ModelQuirks(max_output_tokens=4096, context_window=131072, supports_images=True),
    ),
    CatalogModel(
        "gpt-4.1-mini",
        "openai",
        "GPT-4.1 mini",
        0,
        "openai",
        ModelQuirks(supports_tools=True, supports_images=True),
    ),
]


FAKE_IMAGE_MODELS = [
    CatalogModel(
        "@cf/black-forest-labs/flux-1-schnell",
        "cf",
        "@cf/black-forest-labs/flux-1-schnell",
        0,
        "black-forest-labs",
        ModelQuirks(),
        kind=ModelKind.IMAGE,
    ),
    CatalogModel(
        "gpt-image-1", "openai", "gpt-image-1", 0, "system", ModelQuirks(), kind=ModelKind.IMAGE
    ),
]


def summary(request_id: str = "req_1", **changes: object) -> RequestSummary:
    base = RequestSummary(
        request_id=request_id,
        started_at=time.time(),
        method="POST",
        path="/v1/messages",
        client_model="claude-sonnet-4-6",
        upstream_model="qwen/qwen3-coder-480b-a35b-instruct@nvidia",
        stream=True,
        status=200,
        ttfb_ms=412.0,
        duration_ms=2310.0,
        input_tokens=1200,
        output_tokens=340,
        attempts=1,
        repairs=(),
        error=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


class FakeController:
    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings or Settings()
        self._status = ServiceStatus(ServerState.STOPPED, None, tiers=self._settings.tiers)
        self.calls: list[str] = []
        self.history_notice: Callable[[str], None] | None = None
        self.keys: dict[str, str] = {}
        self.saved: list[Settings] = []
        self.models = list(FAKE_MODELS)
        self.image_models: list[CatalogModel] = []
        self._status_subscribers: list[Callable[[ServiceStatus], None]] = []
        self._log_subscribers: list[Callable[[Sequence[LogLine]], None]] = []
        self._request_subscribers: list[Callable[[RequestSummary], None]] = []
        self._requests: list[RequestSummary] = []
        self._logs: list[LogLine] = []
        self.start_error: str | None = None  # set to make start() fail with these words
        self.history_file: Path | None = None  # a real SQLite history a test wrote

    # ---- what tests use to drive the UI
    def set_status(self, **changes: object) -> None:
        self._status = replace(self._status, **changes)  # type: ignore[arg-type]
        for callback in list(self._status_subscribers):
            callback(self._status)

    def emit_logs(self, lines: Sequence[LogLine]) -> None:
        self._logs.extend(lines)
        for callback in list(self._log_subscribers):
            callback(lines)

    def emit_request(self, row: RequestSummary) -> None:
        self._requests.append(row)
        for callback in list(self._request_subscribers):
            callback(row)

    # ---- ProxyController
    @property
    def settings(self) -> Settings:
        return self._settings

    def status(self) -> ServiceStatus:
        return self._status

    async def start(self) -> None:
        self.calls.append("start")
        if self.start_error:
            self.set_status(state=ServerState.ERROR, last_error=self.start_error)
        else:
            self.set_status(
                state=ServerState.RUNNING, base_url="http://127.0.0.1:8787", last_error=None
            )

    async def stop(self) -> None:
        self.calls.append("stop")
        self.set_status(state=ServerState.STOPPED, base_url=None, in_flight=0)

    async def apply_settings(self, settings: Settings) -> None:
        self.calls.append("apply_settings")
        self._settings = settings
        self.saved.append(settings)
        self.set_status(tiers=settings.tiers)

    def subscribe_status(self, callback: Callable[[ServiceStatus], None]) -> Unsubscribe:
        self._status_subscribers.append(callback)
        return lambda: self._status_subscribers.remove(callback)

    def subscribe_logs(self, callback: Callable[[Sequence[LogLine]], None]) -> Unsubscribe:
        self._log_subscribers.append(callback)
        return lambda: self._log_subscribers.remove(callback)

    def recent_logs(self) -> list[LogLine]:
        return list(self._logs)

    def subscribe_requests(self, callback: Callable[[RequestSummary], None]) -> Unsubscribe:
        self._request_subscribers.append(callback)
        return lambda: self._request_subscribers.remove(callback)

    def recent_requests(self) -> list[RequestSummary]:
        return list(self._requests)

    def request_detail(self, request_id: str) -> RequestDetail | None:
        row = next((r for r in self._requests if r.request_id == request_id), None)
        if row is None:
            return None
        return RequestDetail(
            summary=row,
            client_request='{"model": "claude-sonnet-4-6", "max_tokens": 100}',
            upstream_request='{"model": "qwen/qwen3-coder-480b-a35b-instruct"}',
            upstream_response='{"choices": []}',
            curl="curl https://integrate.api.nvidia.com/v1/chat/completions "
            '-H "Authorization: Bearer $NVIDIA_API_KEY" -d @-',
        )

    async def list_models(self, *, refresh: bool = False) -> list[CatalogModel]:
        self.calls.append("list_models")
        return list(self.models)

    async def list_image_models(self, *, refresh: bool = False) -> list[CatalogModel]:
        self.calls.append("list_image_models")
        return list(self.image_models)

    async def probe(self, provider: str, model: str) -> tuple[bool, bool | None, str]:
        self.calls.append(f"probe {provider}/{model}")
        return True, True, "tool calls work"

    def key_statuses(self) -> list[KeyStatus]:
        return [
            KeyStatus(p.name, KeySource.KEYCHAIN if p.name in self.keys else KeySource.NONE)
            for p in self._settings.providers
        ]

    def key_store_description(self) -> str:
        return "Secret Service (GNOME Keyring)"

    async def regenerate_proxy_key(self) -> str:
        self.calls.append("regenerate_proxy_key")
        key = f"proxy-key-{len(self.calls)}"
        self.set_status(proxy_key=key)
        return key

    def set_key(self, provider: str, key: str) -> None:
        if not key.strip():
            raise ValueError("the key is empty")
        self.keys[provider] = key.strip()
        if provider == self._settings.default_provider:
            self.set_status(needs_key=False)

    def delete_key(self, provider: str) -> bool:
        return self.keys.pop(provider, None) is not None

    async def test_provider(self, provider: Provider, key: str | None) -> tuple[bool, str]:
        self.calls.append(f"test {provider.name}")
        return (True, f"{provider.base_url} answers; key accepted")

    def log_file(self) -> Path | None:
        return None

    def history_path(self) -> Path | None:
        return self.history_file

    def watch_history_notices(self, on_notice: Callable[[str], None]) -> None:
        self.history_notice = on_notice

    def outbound_proxy_user(self) -> str | None:
        login = self.keys.get("outbound-proxy")
        return login.partition(":")[0] if login else None

    def set_outbound_proxy_login(self, user: str, password: str | None) -> None:
        if password is None:
            self.keys.pop("outbound-proxy", None)
            return
        if not user or ":" in user:
            raise ValueError("the proxy user name must be non-empty and hold no ':'")
        self.keys["outbound-proxy"] = f"{user}:{password}"

    def web_search_key_status(self, backend: str) -> KeyStatus:
        source = KeySource.KEYCHAIN if f"web-search-{backend}" in self.keys else KeySource.NONE
        return KeyStatus(backend, source)

    def set_web_search_key(self, backend: str, key: str) -> None:
        if not key.strip():
            raise ValueError("the key is empty")
        self.keys[f"web-search-{backend}"] = key.strip()

    def delete_web_search_key(self, backend: str) -> bool:
        return self.keys.pop(f"web-search-{backend}", None) is not None

    async def test_web_search(
        self, backend: str, base_url: str, key: str | None
    ) -> tuple[bool, str]:
        self.calls.append(f"test web search {backend} {base_url}".rstrip())
        if backend != "searxng" and key is None and f"web-search-{backend}" not in self.keys:
            return False, f"no {backend} key is set"
        return True, f"{backend} answers (3 results for a test search)"
