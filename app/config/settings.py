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
import math
import os
import re
import stat
import tempfile
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from app.config.limits import (
    CAPABILITY_RANGE_PREFIX,
    MAX_HOST_CHARS,
    MAX_MODEL_ID_CHARS,
    MAX_URL_CHARS,
    RANGE_BY_SETTING,
    name_problem,
    one_line,
    provider_name_problem,
    shown,
    url_problem,
)
from app.core.capabilities import capability_overrides_from_mapping
from app.core.providers import (
    PRESET_BY_KIND,
    ExplicitModel,
    Provider,
    ProviderKind,
    preset_base_url,
)
from app.core.tiers import DEFAULT_UPSTREAM_MODEL, ModelAliases

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
# Key entries of web search backends share the keychain service with provider keys.
RESERVED_PROVIDER_PREFIX = "web-search-"
# A settings file is a few kilobytes; past this it is not one (or /dev/zero).
MAX_SETTINGS_BYTES = 1024 * 1024
MAX_SETTINGS_DEPTH = 32  # objects and lists within each other
# A Cloudflare account id goes into the base URL's path: plain letters and digits only.
ACCOUNT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ACCOUNT_ID_RULE = "must be letters, digits, '-' or '_' (at most 64)"
# The numbers that are Settings fields themselves (the others belong to providers, models).
_FIELD_RANGES = {name: limits for name, limits in RANGE_BY_SETTING.items() if name.isidentifier()}


class SettingsError(Exception):
    """A settings file that cannot be used; the message names the file and the key.

    Always one line: control characters in it (a hostile key or value) are escaped."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


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
    # How NimBridge itself reaches the internet (app.server.network): "" = the proxy
    # variables (HTTPS_PROXY...) or the OS's proxy settings; "direct" = no proxy at all;
    # else a proxy URL (http://host:port, no credentials: those live in the keychain).
    outbound_proxy: str = ""
    # A PEM file of CA certificates trusted on top of the OS trust store (a self-hosted
    # upstream's own CA, a TLS-inspecting proxy's root not installed system-wide).
    extra_ca_file: str = ""
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
    # Request history (app/config/history.py): days kept (0: none kept) and its size bound.
    history_days: int = 90
    history_max_mb: int = 200
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
        replace fields. The copy is checked by `validate_settings` (a flag meets the
        file's rules): SettingsError naming the "command line" otherwise."""
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
        return validate_settings(changed, "command line")


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
    problem = url_problem(value)
    if problem:
        raise reader.error(key, problem)
    return value.rstrip("/")


def _provider_from(data: object, where: str, index: int) -> Provider:
    path = f"providers[{index}]."
    if not isinstance(data, dict):
        raise SettingsError(f"{where}: 'providers[{index}]' must be an object")
    reader = _Reader(data, where, path)
    name = reader.get("name", str, "")
    name_why = provider_name_problem(name)
    if name_why:
        raise reader.error("name", name_why)
    kind_text = reader.get("kind", str, ProviderKind.CUSTOM.value)
    try:
        kind = ProviderKind(kind_text)
    except ValueError:
        kinds = ", ".join(k.value for k in ProviderKind)
        raise reader.error("kind", f"must be one of {kinds}, got {shown(kind_text)}") from None
    account_id = reader.get("account_id", str, None)
    if account_id and not ACCOUNT_ID_RE.fullmatch(account_id):
        raise reader.error("account_id", _ACCOUNT_ID_RULE + f", got {shown(account_id)}")
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
    budget = data.get("requests_per_minute")  # kind and range: validate_settings
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
        "require_proxy_key": reader.get("require_proxy_key", bool, defaults.require_proxy_key),
        "pass_client_keys": reader.get("pass_client_keys", bool, defaults.pass_client_keys),
        "allowed_hosts": reader.string_list("allowed_hosts"),
        "allowed_origins": reader.string_list("allowed_origins"),
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
        "outbound_proxy": reader.get("outbound_proxy", str, defaults.outbound_proxy).strip(),
        "extra_ca_file": reader.get("extra_ca_file", str, defaults.extra_ca_file).strip(),
        "smooth_deltas": reader.get("smooth_deltas", bool, defaults.smooth_deltas),
        "ui": reader.get("ui", dict, {}),
        "model_aliases": reader.string_map("model_aliases"),
        "fallbacks": reader.string_map("fallbacks"),
    }
    for name in _FIELD_RANGES:  # as written: validate_settings checks kind and range
        values[name] = data.get(name, getattr(defaults, name))
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


# The keychain entry (and `nimbridge key set` name) of the outbound proxy's login.
OUTBOUND_PROXY_NAME = "outbound-proxy"
DIRECT = "direct"  # outbound_proxy: no proxy, whatever the variables say


def outbound_proxy_problem(value: str) -> str | None:
    """None for "", "direct" or a proxy URL (http(s)://host:port, nothing else)."""
    if value in ("", DIRECT):
        return None
    problem = url_problem(value)
    if problem:
        return f'{problem} (or "direct", or "" for the HTTPS_PROXY variables)'
    parts = urllib.parse.urlsplit(value)
    if parts.username is not None or parts.password is not None:
        return (
            "must not hold a user name or password (they would be written to this file): "
            "enter them in Settings → Server, or `nimbridge key set outbound-proxy`"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return f"must be just a scheme, host and port (http://proxy:3128), got {shown(value)}"
    return None


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

    def check_number(key: str, value: object, table_key: str) -> None:
        problem = RANGE_BY_SETTING[table_key].problem(value)
        if problem:
            raise bad(key, problem)

    def check_model_id(key: str, value: str) -> None:
        problem = name_problem(value, longest=MAX_MODEL_ID_CHARS)
        if problem:
            raise bad(key, problem)

    if settings.require_proxy_key and settings.pass_client_keys:
        raise bad("pass_client_keys", "cannot be true while require_proxy_key is true")
    numbers: dict[str, Any] = {}
    for name, limits in _FIELD_RANGES.items():
        value = getattr(settings, name)
        check_number(name, value, name)
        numbers[name] = value if limits.whole else float(value)  # in range: float() is safe
    _check_providers(settings, bad)
    if not settings.tiers.default.strip():
        raise bad("tiers.default", "must not be empty")
    for tier in TIER_NAMES:
        model = getattr(settings.tiers, tier)
        if model is not None:
            check_model_id(f"tiers.{tier}", model)
    for tier, model in settings.fallbacks.items():
        if tier not in TIER_NAMES:
            raise bad(f"fallbacks.{tier}", f"is not a tier; tiers are {', '.join(TIER_NAMES)}")
        check_model_id(f"fallbacks.{tier}", model)
    for alias, model in settings.model_aliases.items():
        check_model_id(f"model_aliases.{alias}", alias)
        check_model_id(f"model_aliases.{alias}", model)
    for model_id, overrides in settings.capabilities.items():
        check_model_id(f"capabilities.{model_id}", model_id)
        for table_key in RANGE_BY_SETTING:
            field_name = table_key.removeprefix(CAPABILITY_RANGE_PREFIX)
            if table_key.startswith(CAPABILITY_RANGE_PREFIX) and field_name in overrides:
                check_number(
                    f"capabilities.{model_id}.{field_name}", overrides[field_name], table_key
                )
    host_problem = name_problem(settings.host, longest=MAX_HOST_CHARS)
    if host_problem:
        raise bad("host", host_problem)
    for position, host in enumerate(settings.allowed_hosts):
        host_problem = name_problem(host, longest=MAX_HOST_CHARS)
        if host_problem:
            raise bad(f"allowed_hosts[{position}]", host_problem)
    for position, origin in enumerate(settings.allowed_origins):
        scheme, _, rest = origin.partition("://")
        origin_problem = name_problem(origin, longest=MAX_URL_CHARS)
        if origin_problem:
            raise bad(f"allowed_origins[{position}]", origin_problem)
        if scheme not in ("http", "https") or not rest or "/" in rest:
            raise bad(
                f"allowed_origins[{position}]",
                f"must be an origin like https://app.example (scheme and host, no path), "
                f"got {shown(origin)}",
            )
    if settings.web_search_backend not in WEB_SEARCH_BACKENDS:
        choices = ", ".join(repr(b) for b in WEB_SEARCH_BACKENDS)
        raise bad("web_search_backend", f"must be one of {choices} ('' for none)")
    base_url = settings.web_search_base_url
    if base_url:
        search_url_problem = url_problem(base_url)
        if search_url_problem:
            raise bad("web_search_base_url", search_url_problem)
    if settings.web_search_backend == "searxng" and not base_url:
        raise bad("web_search_base_url", "must name your SearXNG instance (http://host:8888)")
    proxy_problem = outbound_proxy_problem(settings.outbound_proxy)
    if proxy_problem:
        raise bad("outbound_proxy", proxy_problem)
    if settings.image_urls not in IMAGE_URL_POLICIES:
        raise bad("image_urls", f"must be one of {', '.join(IMAGE_URL_POLICIES)}")
    if settings.log_level.upper() not in LOG_LEVELS:
        raise bad("log_level", f"must be one of {', '.join(LOG_LEVELS)}")
    return replace(
        settings,
        **numbers,
        log_level=settings.log_level.upper(),
        web_search_base_url=base_url.rstrip("/"),
    )


def _check_providers(settings: Settings, bad: Callable[[str, str], SettingsError]) -> None:
    if not settings.providers:
        raise bad("providers", "must name at least one provider")
    names: dict[str, None] = {}  # a set in order (a dict: linear time for 10,000 names)
    for position, provider in enumerate(settings.providers):
        here = f"providers[{position}]"
        problem = provider_name_problem(provider.name)
        if problem:
            raise bad(f"{here}.name", problem)
        if provider.name in names:
            raise bad("providers", f"names provider {shown(provider.name)} twice")
        names[provider.name] = None
        if provider.name.startswith(RESERVED_PROVIDER_PREFIX):
            raise bad(
                "providers",
                f"cannot name a provider {shown(provider.name)}: names starting with "
                f"{RESERVED_PROVIDER_PREFIX!r} are kept for web search keys",
            )
        if provider.name == OUTBOUND_PROXY_NAME:
            raise bad(
                "providers",
                f"cannot name a provider {OUTBOUND_PROXY_NAME!r}: that name is kept for "
                "the outbound proxy's password",
            )
        problem = url_problem(provider.base_url)
        if problem:  # flags (--upstream-url) and the dialog bypass the file's checks
            raise bad("upstream_url", f"(base URL of provider {provider.name!r}) {problem}")
        if provider.account_id is not None and not ACCOUNT_ID_RE.fullmatch(provider.account_id):
            raise bad(f"{here}.account_id", f"{_ACCOUNT_ID_RULE}, got {shown(provider.account_id)}")
        if provider.requests_per_minute is not None:
            problem = RANGE_BY_SETTING["providers[].requests_per_minute"].problem(
                provider.requests_per_minute
            )
            if problem:
                raise bad(f"{here}.requests_per_minute", problem)
        for index, model in enumerate(provider.models):
            for label, text in (
                ("id", model.id),
                ("remote_id", model.remote_id),
                ("display_name", model.display_name),
            ):
                problem = text and name_problem(text, longest=MAX_MODEL_ID_CHARS)
                if problem or (label == "id" and not text):
                    raise bad(f"{here}.models[{index}].{label}", problem or "must not be empty")
    if settings.default_provider not in names:
        raise bad("default_provider", f"must be one of the providers ({', '.join(names)})")


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
    """Settings from `path`; defaults when it does not exist. Whatever the file holds,
    the result is valid Settings or a SettingsError naming the file."""
    text = _read_settings_text(path)
    if text is None:
        return Settings()
    try:
        data = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            object_pairs_hook=_object_without_duplicates,
        )
    except _RefusedJSON as exc:
        raise SettingsError(f"{path}: {exc}") from None
    except RecursionError:
        raise SettingsError(f"{path}: not valid JSON (nested too deeply)") from None
    except ValueError as exc:
        raise SettingsError(f"{path}: not valid JSON ({exc})") from None
    problem = _structure_problem(data)
    if problem:
        raise SettingsError(f"{path}: {problem}")
    return settings_from_mapping(data, where=str(path))


def _read_settings_text(path: Path) -> str | None:
    """The file's text (a UTF-8 BOM dropped), None when there is no file."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a directory, a FIFO, /dev/zero
            raise SettingsError(f"{path}: not a regular file")
        if info.st_size > MAX_SETTINGS_BYTES:
            raise SettingsError(
                f"{path}: too large ({info.st_size} bytes; a settings file may have "
                f"{MAX_SETTINGS_BYTES})"
            )
        with path.open("rb") as file:
            raw = file.read(MAX_SETTINGS_BYTES + 1)  # it may have grown since stat
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > MAX_SETTINGS_BYTES:
        raise SettingsError(f"{path}: too large (a settings file may have {MAX_SETTINGS_BYTES})")
    try:
        return raw.decode("utf-8-sig")  # Windows editors may start the file with a BOM
    except UnicodeDecodeError as exc:
        raise SettingsError(
            f"{path}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})"
        ) from None


class _RefusedJSON(ValueError):
    """JSON that parses but that settings refuse (NaN, 1e400, a key given twice)."""


def _refuse_constant(name: str) -> object:
    raise _RefusedJSON(f"{name} is not a number settings can hold (numbers must be finite)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _RefusedJSON(f"the number {shown(text)} is too large (numbers must be finite)")
    return value


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:  # json.loads would keep the last one quietly: which was meant?
            raise _RefusedJSON(f"'{key}' is given twice in one object")
        seen.add(key)
    return dict(pairs)


def _structure_problem(data: object) -> str | None:
    """Why parsed JSON cannot be settings, whatever its keys: nested too deeply (saving it
    would recurse), or a string no file can hold (a lone surrogate, from a `\ud800` escape)."""
    pending: list[tuple[object, int]] = [(data, 1)]  # no recursion: depth is the question
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return f"the text {shown(value)} has a lone surrogate (\\ud800-\\udfff)"
        elif isinstance(value, dict | list):
            if depth > MAX_SETTINGS_DEPTH:
                return f"nested more than {MAX_SETTINGS_DEPTH} levels deep"
            items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            pending.extend((item, depth + 1) for item in items)
    return None


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
