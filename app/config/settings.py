"""Settings: one human-readable JSON file, validated on load, saved atomically.

Invariants:
- No secret is ever a field here: keys live in the OS keychain
  (`app.config.secrets`), so nothing that saves settings can write one to disk.
- A bad file is refused whole, with an error naming the file and the key path
  (`providers[1].base_url`); nothing half-loaded.
- Saving writes a temp file and renames it over the old one (a crash leaves the
  old file or the new one, never half of one) and keeps keys this version does
  not know.
"""

import datetime
import ipaddress
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from app.core.capabilities import capability_overrides_from_mapping
from app.core.models import DEFAULT_UPSTREAM_MODEL, ModelAliases
from app.core.providers import (
    PRESET_BY_KIND,
    ExplicitModel,
    Provider,
    ProviderKind,
    preset_base_url,
)

NVIDIA_BASE_URL = PRESET_BY_KIND[ProviderKind.NVIDIA].base_url
SETTINGS_FILE_NAME = "settings.json"
# The variable that gives the local proxy key (as --proxy-key does), to `serve` and `code`.
PROXY_KEY_ENV = "NIMBRIDGE_PROXY_KEY"
TIER_NAMES = ("default", "opus", "sonnet", "haiku", "subagent")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
IMAGE_URL_POLICIES = ("pass", "fetch", "refuse")
# "" is no search backend: the web_search tool is still accepted and answers with an
# error that says how to choose one.
WEB_SEARCH_BACKENDS = ("", "tavily", "searxng", "brave")
MIN_WEB_FETCH_CHARS = 1000
# Key entries of web search backends share the keychain service with provider keys.
RESERVED_PROVIDER_PREFIX = "web-search-"


class SettingsError(Exception):
    """A settings file that cannot be used; the message names the file and the key."""


def default_settings_path() -> Path:
    """`settings.json` in the platform's config directory (platformdirs)."""
    import platformdirs  # imported here: only the composition root asks for the real path

    return platformdirs.user_config_path("nimbridge", appauthor=False) / SETTINGS_FILE_NAME


@dataclass(frozen=True, slots=True)
class TierModels:
    """Tier -> model reference (`model-id` or `provider/model-id`); None: use `default`."""

    default: str = DEFAULT_UPSTREAM_MODEL
    opus: str | None = None
    sonnet: str | None = None
    haiku: str | None = None
    subagent: str | None = None


def _default_providers() -> tuple[Provider, ...]:
    return (Provider("nvidia", ProviderKind.NVIDIA, NVIDIA_BASE_URL),)


@dataclass(frozen=True, slots=True)
class Settings:
    # server
    host: str = "127.0.0.1"
    port: int = 8787
    require_proxy_key: bool = False  # refuse to serve without a proxy key
    # The tray app's explicit opt-out of its proxy key: no key is asked of clients and
    # each client's own API key goes to the provider (the pass-through of OpenAI gateways).
    pass_client_keys: bool = False
    # Host names (beyond localhost and IP addresses) clients may call us by: a web page
    # reaching us through DNS rebinding carries its own name and is refused.
    allowed_hosts: tuple[str, ...] = ()
    # Web origins allowed to call us from a browser (CORS); any other Origin is refused.
    allowed_origins: tuple[str, ...] = ()
    max_request_mb: int = 32  # request body limit (Anthropic's own is 32 MB)
    max_concurrent_requests: int = 64  # beyond this, 529 overloaded with retry-after
    # Most an upstream may send for one response (a stream's bytes, or a JSON body):
    # a 128K-token answer streams ~20 MB; past this a runaway upstream is cut off.
    max_upstream_response_mb: int = 64
    # Images a client gives by URL: "pass" them to the provider as URLs (NimBridge
    # fetches nothing), "fetch" them here and send the bytes (for providers that take
    # only inline images), or "refuse" them with a 400.
    image_urls: str = "pass"
    # Fetch from private, loopback and link-local addresses too (a LAN you trust);
    # off, such URLs are refused, so a client cannot reach into your network through us.
    fetch_private_addresses: bool = False
    # Web tools (the web_search / web_fetch server tools, answered by NimBridge):
    # the search backend, its base URL ("" = the backend's public one; a SearXNG
    # instance must be named), and whether and how much NimBridge fetches of a page.
    web_search_backend: str = ""
    web_search_base_url: str = ""
    web_fetch_enabled: bool = True
    web_fetch_max_chars: int = 100_000
    # Split an upstream's long text/thinking bursts into small deltas (same write, no delay).
    smooth_deltas: bool = True
    commit_window_s: float = 0.8  # hold bytes back this long while the upstream has not answered
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 600.0  # longest silence tolerated (reasoning models think for minutes)
    upstream_deadline_s: float = 1800.0  # longest one upstream call may take, answer included
    ping_interval_s: float = 5.0
    shutdown_grace_s: float = 10.0
    # upstream behaviour
    retry_max_attempts: int = 4  # per request, before the first byte only
    retry_max_wait_s: float = 20.0  # total backoff a request may spend retrying
    queue_max_wait_s: float = 20.0  # longest a request may queue for the rate budget
    catalog_ttl_s: float = 600.0  # how long a provider's /models answer is reused
    # providers and models
    providers: tuple[Provider, ...] = field(default_factory=_default_providers)
    default_provider: str = "nvidia"
    tiers: TierModels = field(default_factory=TierModels)
    fallbacks: dict[str, str] = field(
        default_factory=dict
    )  # tier -> model used when retries run out
    model_aliases: dict[str, str] = field(default_factory=dict)  # exact client name -> model
    capabilities: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-model overrides
    # the rest
    ui: dict[str, Any] = field(default_factory=dict)
    log_level: str = "INFO"

    def aliases(self) -> ModelAliases:
        return ModelAliases(
            default=self.tiers.default,
            opus=self.tiers.opus,
            sonnet=self.tiers.sonnet,
            haiku=self.tiers.haiku,
            subagent=self.tiers.subagent,
            exact=dict(self.model_aliases),
        )

    def provider(self, name: str) -> Provider | None:
        return next((p for p in self.providers if p.name == name), None)

    @property
    def default(self) -> Provider:
        found = self.provider(self.default_provider)
        assert found is not None  # validate_settings guarantees it
        return found

    def with_overrides(
        self,
        *,
        upstream_url: str | None = None,
        upstream_kind: ProviderKind | None = None,
        model: str | None = None,
        **flat: Any,
    ) -> "Settings":
        """A copy with command-line flags applied: `--upstream-url` re-points the default
        provider (with `upstream_kind`, the preset its URL means: the command line's
        `provider_kind_for_url`), `--model` sets the default tier; other non-None values
        replace fields."""
        changed = replace(self, **{k: v for k, v in flat.items() if v is not None})
        if upstream_url is not None:
            providers = tuple(
                replace(p, base_url=upstream_url, kind=upstream_kind or p.kind)
                if p.name == changed.default_provider
                else p
                for p in changed.providers
            )
            changed = replace(changed, providers=providers)
        if model is not None:
            changed = replace(changed, tiers=replace(changed.tiers, default=model))
        return changed


# ------------------------------------------------------------------ validation


class _Reader:
    """Typed access to a parsed JSON object; errors name `where` and the key path."""

    def __init__(self, data: Mapping[str, Any], where: str, path: str = "") -> None:
        self.data, self.where, self.path = data, where, path

    def error(self, key: str, why: str) -> SettingsError:
        return SettingsError(f"{self.where}: '{self.path}{key}' {why}")

    def get(self, key: str, kinds: type | tuple[type, ...], default: Any) -> Any:
        if key not in self.data:
            return default
        value = self.data[key]
        if value is None and default is None:
            return None
        accepted = kinds if isinstance(kinds, tuple) else (kinds,)
        if isinstance(value, bool) and bool not in accepted:
            raise self.error(key, f"must be {_kind_words(accepted)}, got {value!r}")
        if not isinstance(value, accepted):
            raise self.error(key, f"must be {_kind_words(accepted)}, got {type(value).__name__}")
        return value

    def number(self, key: str, default: float, *, minimum: float, strictly: bool = False) -> float:
        value = float(self.get(key, (int, float), default))
        if value < minimum or (strictly and value == minimum):
            bound = f"more than {minimum:g}" if strictly else f"at least {minimum:g}"
            raise self.error(key, f"must be {bound}, got {value:g}")
        return value

    def string_list(self, key: str) -> tuple[str, ...]:
        items = self.get(key, list, [])
        for position, item in enumerate(items):
            if not isinstance(item, str) or not item.strip():
                raise self.error(f"{key}[{position}]", "must be a non-empty string")
        return tuple(item.strip() for item in items)

    def string_map(self, key: str) -> dict[str, str]:
        mapping = self.get(key, dict, {})
        for name, value in mapping.items():
            if not isinstance(value, str) or not value:
                raise self.error(f"{key}.{name}", "must be a non-empty string")
        return dict(mapping)


def _kind_words(kinds: tuple[type, ...]) -> str:
    words = {
        str: "a string",
        int: "a whole number",
        float: "a number",
        bool: "true or false",
        dict: "an object",
        list: "a list",
    }
    return " or ".join(dict.fromkeys(words[k] for k in kinds if k in words))


def _url(reader: _Reader, key: str, value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise reader.error(key, f"must start with http:// or https://, got {value!r}")
    return value.rstrip("/")


def _provider_from(data: object, where: str, index: int) -> Provider:
    path = f"providers[{index}]."
    if not isinstance(data, dict):
        raise SettingsError(f"{where}: 'providers[{index}]' must be an object")
    reader = _Reader(data, where, path)
    name = reader.get("name", str, "")
    if not name or "/" in name or name != name.strip():
        raise reader.error("name", "must be a non-empty name without '/' or surrounding spaces")
    kind_text = reader.get("kind", str, ProviderKind.CUSTOM.value)
    try:
        kind = ProviderKind(kind_text)
    except ValueError:
        kinds = ", ".join(k.value for k in ProviderKind)
        raise reader.error("kind", f"must be one of {kinds}, got {kind_text!r}") from None
    account_id = reader.get("account_id", str, None)
    explicit_url = reader.get("base_url", str, None)
    if kind is ProviderKind.CLOUDFLARE and not account_id and not explicit_url:
        raise reader.error("account_id", "is needed for Cloudflare Workers AI")
    base_url = explicit_url or preset_base_url(kind, account_id)
    if not base_url:
        raise reader.error("base_url", "is needed for a custom provider")
    models = []
    for position, entry in enumerate(reader.get("models", list, [])):
        model_reader = _Reader(
            entry if isinstance(entry, dict) else {}, where, f"{path}models[{position}]."
        )
        if not isinstance(entry, dict) or not model_reader.get("id", str, ""):
            raise model_reader.error("id", "must be a non-empty string")
        models.append(
            ExplicitModel(
                id=entry["id"],
                remote_id=model_reader.get("remote_id", str, None),
                display_name=model_reader.get("display_name", str, None),
            )
        )
    budget = reader.get("requests_per_minute", int, None)
    if budget is not None and budget < 1:
        raise reader.error("requests_per_minute", f"must be at least 1, got {budget}")
    return Provider(
        name=name,
        kind=kind,
        base_url=_url(reader, "base_url", base_url),
        models=tuple(models),
        account_id=account_id,
        requests_per_minute=budget,
    )


def settings_from_mapping(data: object, *, where: str = "settings") -> Settings:
    """Validate a parsed JSON object. Unknown keys are ignored here and kept on save."""
    if not isinstance(data, dict):
        raise SettingsError(f"{where}: expected a JSON object at the top level")
    reader = _Reader(data, where)
    defaults = Settings()
    values: dict[str, Any] = {
        "host": reader.get("host", str, defaults.host),
        "port": reader.get("port", int, defaults.port),
        "require_proxy_key": reader.get("require_proxy_key", bool, defaults.require_proxy_key),
        "pass_client_keys": reader.get("pass_client_keys", bool, defaults.pass_client_keys),
        "allowed_hosts": reader.string_list("allowed_hosts"),
        "allowed_origins": reader.string_list("allowed_origins"),
        "max_request_mb": reader.get("max_request_mb", int, defaults.max_request_mb),
        "max_concurrent_requests": reader.get(
            "max_concurrent_requests", int, defaults.max_concurrent_requests
        ),
        "max_upstream_response_mb": reader.get(
            "max_upstream_response_mb", int, defaults.max_upstream_response_mb
        ),
        "commit_window_s": reader.number("commit_window_s", defaults.commit_window_s, minimum=0),
        "retry_max_attempts": reader.get("retry_max_attempts", int, defaults.retry_max_attempts),
        "retry_max_wait_s": reader.number("retry_max_wait_s", defaults.retry_max_wait_s, minimum=0),
        "queue_max_wait_s": reader.number("queue_max_wait_s", defaults.queue_max_wait_s, minimum=0),
        "log_level": reader.get("log_level", str, defaults.log_level),
        "image_urls": reader.get("image_urls", str, defaults.image_urls),
        "fetch_private_addresses": reader.get(
            "fetch_private_addresses", bool, defaults.fetch_private_addresses
        ),
        "web_search_backend": reader.get("web_search_backend", str, defaults.web_search_backend),
        "web_search_base_url": reader.get(
            "web_search_base_url", str, defaults.web_search_base_url
        ).strip(),
        "web_fetch_enabled": reader.get("web_fetch_enabled", bool, defaults.web_fetch_enabled),
        "web_fetch_max_chars": reader.get("web_fetch_max_chars", int, defaults.web_fetch_max_chars),
        "smooth_deltas": reader.get("smooth_deltas", bool, defaults.smooth_deltas),
        "ui": reader.get("ui", dict, {}),
        "model_aliases": reader.string_map("model_aliases"),
        "fallbacks": reader.string_map("fallbacks"),
    }
    for name in (
        "connect_timeout_s",
        "read_timeout_s",
        "upstream_deadline_s",
        "ping_interval_s",
        "shutdown_grace_s",
        "catalog_ttl_s",
    ):
        values[name] = reader.number(name, getattr(defaults, name), minimum=0, strictly=True)
    if "providers" in data:
        entries = reader.get("providers", list, [])
        values["providers"] = tuple(
            _provider_from(entry, where, i) for i, entry in enumerate(entries)
        )
    providers = values.get("providers") or defaults.providers
    values["default_provider"] = reader.get("default_provider", str, providers[0].name)
    tiers = reader.get("tiers", dict, {})
    tier_reader = _Reader(tiers, where, "tiers.")
    for tier in tiers:
        if tier not in TIER_NAMES:
            raise tier_reader.error(tier, f"is not a tier; tiers are {', '.join(TIER_NAMES)}")
    values["tiers"] = TierModels(
        default=tier_reader.get("default", str, DEFAULT_UPSTREAM_MODEL),
        **{t: tier_reader.get(t, str, None) for t in TIER_NAMES[1:]},
    )
    capabilities = reader.get("capabilities", dict, {})
    for model_id, overrides in capabilities.items():
        if not isinstance(overrides, dict):
            raise reader.error(f"capabilities.{model_id}", "must be an object")
    try:
        values["capabilities"] = capability_overrides_from_mapping(
            capabilities, where=f"{where}: capabilities"
        )
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc
    return validate_settings(Settings(**values), where)


LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "localhost.localdomain"})


def is_loopback(host: str) -> bool:
    """True for a `host` only this computer can reach (127.0.0.0/8, ::1, localhost)."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_settings(settings: Settings, where: str) -> Settings:
    """The same settings, normalised, or a SettingsError naming `where` and the key."""

    def bad(key: str, why: str) -> SettingsError:
        return SettingsError(f"{where}: '{key}' {why}")

    if settings.require_proxy_key and settings.pass_client_keys:
        raise bad("pass_client_keys", "cannot be true while require_proxy_key is true")
    if not 0 <= settings.port <= 65535:
        raise bad("port", f"must be 0..65535, got {settings.port}")
    if not settings.providers:
        raise bad("providers", "must name at least one provider")
    names = [p.name for p in settings.providers]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise bad("providers", f"names provider {duplicate!r} twice")
    if settings.default_provider not in names:
        raise bad("default_provider", f"must be one of the providers ({', '.join(names)})")
    for provider in settings.providers:  # flags (--upstream-url) bypass the file's checks
        if not provider.base_url.startswith(("http://", "https://")):
            raise bad(
                "upstream_url",
                f"(base URL of provider {provider.name!r}) must start with http:// or https://, "
                f"got {provider.base_url!r}",
            )
    if not settings.tiers.default.strip():
        raise bad("tiers.default", "must not be empty")
    for tier in settings.fallbacks:
        if tier not in TIER_NAMES:
            raise bad(f"fallbacks.{tier}", f"is not a tier; tiers are {', '.join(TIER_NAMES)}")
    if settings.retry_max_attempts < 1:
        raise bad("retry_max_attempts", f"must be at least 1, got {settings.retry_max_attempts}")
    if settings.commit_window_s < 0:
        raise bad("commit_window_s", f"must be 0 or more seconds, got {settings.commit_window_s}")
    for name in (
        "connect_timeout_s",
        "read_timeout_s",
        "upstream_deadline_s",
        "ping_interval_s",
        "shutdown_grace_s",
    ):
        if getattr(settings, name) <= 0:
            raise bad(name, f"must be a positive number of seconds, got {getattr(settings, name)}")
    for name in ("max_request_mb", "max_concurrent_requests", "max_upstream_response_mb"):
        if getattr(settings, name) < 1:
            raise bad(name, f"must be at least 1, got {getattr(settings, name)}")
    for position, origin in enumerate(settings.allowed_origins):
        scheme, _, rest = origin.partition("://")
        if scheme not in ("http", "https") or not rest or "/" in rest:
            raise bad(
                f"allowed_origins[{position}]",
                f"must be an origin like https://app.example (scheme and host, no path), "
                f"got {origin!r}",
            )
    for provider in settings.providers:
        if provider.name.startswith(RESERVED_PROVIDER_PREFIX):
            raise bad(
                "providers",
                f"cannot name a provider {provider.name!r}: names starting with "
                f"{RESERVED_PROVIDER_PREFIX!r} are kept for web search keys",
            )
    if settings.web_search_backend not in WEB_SEARCH_BACKENDS:
        choices = ", ".join(repr(b) for b in WEB_SEARCH_BACKENDS)
        raise bad("web_search_backend", f"must be one of {choices} ('' for none)")
    base_url = settings.web_search_base_url
    if base_url and not base_url.startswith(("http://", "https://")):
        raise bad("web_search_base_url", f"must start with http:// or https://, got {base_url!r}")
    if settings.web_search_backend == "searxng" and not base_url:
        raise bad("web_search_base_url", "must name your SearXNG instance (http://host:8888)")
    if settings.web_fetch_max_chars < MIN_WEB_FETCH_CHARS:
        raise bad(
            "web_fetch_max_chars",
            f"must be at least {MIN_WEB_FETCH_CHARS}, got {settings.web_fetch_max_chars}",
        )
    if settings.image_urls not in IMAGE_URL_POLICIES:
        raise bad("image_urls", f"must be one of {', '.join(IMAGE_URL_POLICIES)}")
    if settings.log_level.upper() not in LOG_LEVELS:
        raise bad("log_level", f"must be one of {', '.join(LOG_LEVELS)}")
    return replace(
        settings, log_level=settings.log_level.upper(), web_search_base_url=base_url.rstrip("/")
    )


# ------------------------------------------------------------------ files


def settings_to_mapping(settings: Settings) -> dict[str, Any]:
    """The JSON form: what `settings_from_mapping` reads back to equal settings."""
    out: dict[str, Any] = {}
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if f.name == "providers":
            value = [_provider_to_mapping(p) for p in value]
        elif f.name == "tiers":
            value = {t: getattr(value, t) for t in TIER_NAMES}
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def _provider_to_mapping(provider: Provider) -> dict[str, Any]:
    out: dict[str, Any] = {"name": provider.name, "kind": provider.kind.value}
    if provider.base_url != preset_base_url(provider.kind, provider.account_id):
        out["base_url"] = provider.base_url
    if provider.account_id:
        out["account_id"] = provider.account_id
    if provider.requests_per_minute is not None:
        out["requests_per_minute"] = provider.requests_per_minute
    if provider.models:
        out["models"] = [
            {
                k: v
                for k, v in (
                    ("id", m.id),
                    ("remote_id", m.remote_id),
                    ("display_name", m.display_name),
                )
                if v is not None
            }
            for m in provider.models
        ]
    return out


def load_settings(path: Path) -> Settings:
    """Settings from `path`; defaults when it does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Settings()
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SettingsError(f"{path}: not valid JSON ({exc})") from exc
    return settings_from_mapping(data, where=str(path))


def set_aside(path: Path, *, now: datetime.datetime | None = None) -> Path:
    """Rename a settings file we cannot use to `<name>.broken-<UTC time>`; the new path."""
    stamp = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y%m%dT%H%M%SZ")
    kept = path.with_name(f"{path.name}.broken-{stamp}")
    counter = 1
    while kept.exists():  # twice in one second: never overwrite an earlier copy
        counter += 1
        kept = path.with_name(f"{path.name}.broken-{stamp}-{counter}")
    os.replace(path, kept)
    return kept


def load_settings_or_set_aside(path: Path) -> tuple[Settings, str | None]:
    """For the tray app: a file we cannot use is kept aside, not lost, and the app starts
    on defaults; the second value says so in words (None when all was well)."""
    try:
        return load_settings(path), None
    except SettingsError as exc:
        try:
            kept = set_aside(path)
        except OSError:
            raise exc from None  # cannot even move it: report the original problem
        # What the user must know first (a notification shows the start), then why.
        return Settings(), (
            f"NimBridge started with default settings: {path.name} could not be used and "
            f"was kept as {kept.name}. Why: {exc}. Fix that file and put it back, or set "
            "things again in Settings"
        )


def save_settings(path: Path, settings: Settings) -> None:
    """Write atomically (temp file + rename) and keep keys this version does not know.
    A file that is not valid JSON is set aside first, never overwritten unseen."""
    existing: dict[str, Any] = {}
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            existing = loaded
    except FileNotFoundError:
        pass
    except ValueError:
        set_aside(path)
    except OSError:
        pass
    existing.update(settings_to_mapping(settings))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(existing, out, indent=2, sort_keys=True, ensure_ascii=False)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
