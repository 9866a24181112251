"""`nimbridge key set|delete|status`: the user's way to put provider and web search keys
in the keychain.

Invariant: a key goes from `read_secret` to the store and nowhere else; output
names providers, backends, variables and stores, never a key. Every failure is one
actionable line on `err` and exit code 1.

Names: a configured provider's name first, then a provider kind (its default instance),
then a web search backend that takes a key (tavily, brave). A provider configured with a
backend's name keeps that name, because requests depend on it and scripts that set it
must not start writing elsewhere; `web-search-<backend>` (a prefix no provider may take)
always names the search key, and the output says so whenever the two could be confused.
"""

from collections.abc import Callable, Sequence
from typing import Literal, TextIO

from app.config.secrets import (
    WEB_SEARCH_KEY_ENV_BY_BACKEND,
    KeySource,
    KeyStatus,
    ProviderKeys,
    SecretStoreUnavailable,
)
from app.config.settings import OUTBOUND_PROXY_NAME, RESERVED_PROVIDER_PREFIX
from app.core.providers import PRESET_BY_KIND, Provider, ProviderKind, preset_base_url

Action = Literal["set", "delete", "status"]

WEB_SEARCH_LABEL_BY_BACKEND = {"tavily": "Tavily", "brave": "Brave Search"}
WEB_SEARCH_KEYS_PAGE_BY_BACKEND = {
    "tavily": "https://app.tavily.com",
    "brave": "https://api-dashboard.search.brave.com",
}
WEB_SEARCH_KIND = "web search"  # the kind column of `status` for search keys


def run_key_command(
    action: Action,
    name: str | None,
    *,
    providers: Sequence[Provider],
    keys: ProviderKeys,
    read_secret: Callable[[str], str],
    out: TextIO,
    err: TextIO,
    web_search_backend: str = "",
) -> int:
    """`web_search_backend` is the settings' choice: its missing key is shown as needed."""
    try:
        if action == "status":
            return _status(name, providers, keys, web_search_backend, out, err)
        if not name:
            choices = _choices(providers)
            err.write(f"Name a provider: nimbridge key {action} PROVIDER ({choices}).\n")
            return 1
        if name == OUTBOUND_PROXY_NAME:
            return _outbound_proxy_login(action, keys, read_secret, out, err)
        backend = _search_backend(name, providers)
        if action == "set":
            if backend is not None:
                return _set_search_key(backend, keys, read_secret, out, err)
            return _set(name, providers, keys, read_secret, out, err)
        if backend is not None:
            return _delete_search_key(backend, keys, out, err)
        return _delete(name, providers, keys, out, err)
    except SecretStoreUnavailable as exc:
        err.write(f"Error: {exc}.\n")
        return 1


def _set(
    name: str,
    providers: Sequence[Provider],
    keys: ProviderKeys,
    read_secret: Callable[[str], str],
    out: TextIO,
    err: TextIO,
) -> int:
    provider = _resolve(name, providers)
    if provider is None:
        err.write(_unknown(name, providers))
        return 1
    key = _read(read_secret, f"API key for {name} ({provider.preset.label}): ")
    try:
        keys.set(name, key)
    except ValueError as exc:  # its message names the problem, never the key
        err.write(f"Nothing stored: {exc}{_create_at(provider.preset.keys_page)}.\n")
        return 1
    out.write(f"Stored the key for {name} in {keys.store.description}.\n")
    _warn_if_forgotten(keys, err)
    _note_override(keys.status(provider), "is set and overrides the stored key", err)
    _note_shadowed(name, err)
    return 0


def _set_search_key(
    backend: str,
    keys: ProviderKeys,
    read_secret: Callable[[str], str],
    out: TextIO,
    err: TextIO,
) -> int:
    label = WEB_SEARCH_LABEL_BY_BACKEND[backend]
    key = _read(read_secret, f"{label} API key (web search): ")
    try:
        keys.set_web_search_key(backend, key)
    except ValueError as exc:
        err.write(f"Nothing stored: {exc}{_create_at(WEB_SEARCH_KEYS_PAGE_BY_BACKEND[backend])}.\n")
        return 1
    out.write(f"Stored the {label} web search key in {keys.store.description}.\n")
    _warn_if_forgotten(keys, err)
    status = keys.web_search_key_status(backend)
    _note_override(status, "is set and overrides the stored key", err)
    return 0


def _outbound_proxy_login(
    action: Literal["set", "delete"],
    keys: ProviderKeys,
    read_secret: Callable[[str], str],
    out: TextIO,
    err: TextIO,
) -> int:
    """The outbound proxy's user name and password (outbound_proxy in the settings)."""
    where = keys.store.description
    if action == "delete":
        deleted = keys.delete_outbound_proxy_credentials()
        out.write(
            f"Deleted the outbound proxy's login from {where}.\n"
            if deleted
            else f"No outbound proxy login in {where}; nothing deleted.\n"
        )
        return 0
    login = _read(read_secret, "Outbound proxy user name and password (user:password): ")
    user, _, password = login.strip().partition(":")
    try:
        keys.set_outbound_proxy_credentials(user, password)
    except ValueError as exc:
        err.write(f"Nothing stored: {exc}; type it as user:password.\n")
        return 1
    out.write(f"Stored the outbound proxy's login for {user} in {where}.\n")
    return 0


def _read(read_secret: Callable[[str], str], prompt: str) -> str:
    try:
        return read_secret(prompt)
    except EOFError:  # stdin closed before a line arrived
        return ""


def _create_at(page: str | None) -> str:
    return f"; create one at {page}" if page else ""


def _warn_if_forgotten(keys: ProviderKeys, err: TextIO) -> None:
    if not keys.store.persistent:
        err.write(
            "Warning: no OS keychain is available, so the key is in memory only and will be "
            "forgotten when NimBridge exits.\n"
        )


def _note_override(status: KeyStatus, what: str, err: TextIO) -> None:
    if status.source is KeySource.ENVIRONMENT:
        err.write(f"Note: ${status.env_name} {what}.\n")


def _note_shadowed(name: str, err: TextIO) -> None:
    """A provider took a search backend's name: say how to reach the search key."""
    if name in WEB_SEARCH_KEY_ENV_BY_BACKEND:
        err.write(
            f"Note: that is the provider {name!r}; the {WEB_SEARCH_LABEL_BY_BACKEND[name]} "
            f"web search key is `{RESERVED_PROVIDER_PREFIX}{name}`.\n"
        )


def _delete(
    name: str, providers: Sequence[Provider], keys: ProviderKeys, out: TextIO, err: TextIO
) -> int:
    try:
        deleted = keys.delete(name)
    except ValueError as exc:
        err.write(f"Error: {exc}.\n")
        return 1
    where = keys.store.description
    if deleted:
        out.write(f"Deleted the key for {name} from {where}.\n")
    else:
        out.write(f"No key for {name} in {where}; nothing deleted.\n")
    provider = _resolve(name, providers)
    if provider is not None:
        _note_override(keys.status(provider), f"still provides a key for {name}", err)
    _note_shadowed(name, err)
    return 0


def _delete_search_key(backend: str, keys: ProviderKeys, out: TextIO, err: TextIO) -> int:
    label = WEB_SEARCH_LABEL_BY_BACKEND[backend]
    where = keys.store.description
    if keys.delete_web_search_key(backend):
        out.write(f"Deleted the {label} web search key from {where}.\n")
    else:
        out.write(f"No {label} web search key in {where}; nothing deleted.\n")
    status = keys.web_search_key_status(backend)
    _note_override(status, f"still provides a {label} key", err)
    return 0


def _status(
    name: str | None,
    providers: Sequence[Provider],
    keys: ProviderKeys,
    web_search_backend: str,
    out: TextIO,
    err: TextIO,
) -> int:
    shown: list[Provider]
    backends: list[str]
    if name is None:
        shown, backends = list(providers), list(WEB_SEARCH_KEY_ENV_BY_BACKEND)
        if not shown:
            out.write("No providers configured.\n")
    else:
        backend = _search_backend(name, providers)
        provider = None if backend is not None else _resolve(name, providers)
        if backend is None and provider is None:
            err.write(_unknown(name, providers))
            return 1
        shown = [provider] if provider is not None else []
        backends = [backend] if backend is not None else []
    # Ask the store for every line before printing any, so a failure prints one error only.
    rows = [(p.name, p.kind.value, _where(p, keys)) for p in shown]
    taken = {p.name for p in providers}
    for backend in backends:
        status = keys.web_search_key_status(backend)
        needed = "no key (needed)" if backend == web_search_backend else "no key"
        shown_name = RESERVED_PROVIDER_PREFIX + backend if backend in taken else backend
        rows.append((shown_name, WEB_SEARCH_KIND, _source(status, keys) or needed))
    name_width = max(len(row[0]) for row in rows)
    kind_width = max(len(row[1]) for row in rows)
    for row_name, kind, where in rows:
        out.write(f"{row_name:<{name_width}}  {kind:<{kind_width}}  {where}\n")
    return 0


def _where(provider: Provider, keys: ProviderKeys) -> str:
    needed = "no key (needed)" if provider.preset.needs_key else "no key needed"
    return _source(keys.status(provider), keys) or needed


def _source(status: KeyStatus, keys: ProviderKeys) -> str | None:
    """Where a key comes from, or None when there is none."""
    if status.source is KeySource.ENVIRONMENT:
        return f"key from ${status.env_name}"
    if status.source in (KeySource.KEYCHAIN, KeySource.MEMORY):
        return f"key in {keys.store.description}"
    return None


def _resolve(name: str, providers: Sequence[Provider]) -> Provider | None:
    """A configured provider, or a preset kind's name standing for its default instance."""
    for provider in providers:
        if provider.name == name:
            return provider
    try:
        kind = ProviderKind(name)
    except ValueError:
        return None
    if kind is ProviderKind.CUSTOM:  # a custom provider is known only by its configured name
        return None
    return Provider(name=name, kind=kind, base_url=preset_base_url(kind))


def _search_backend(name: str, providers: Sequence[Provider]) -> str | None:
    """The keyed web search backend `name` stands for; a configured provider's name wins."""
    if name.startswith(RESERVED_PROVIDER_PREFIX):
        backend = name.removeprefix(RESERVED_PROVIDER_PREFIX)
    elif any(provider.name == name for provider in providers):
        return None
    else:
        backend = name
    return backend if backend in WEB_SEARCH_KEY_ENV_BY_BACKEND else None


def _choices(providers: Sequence[Provider]) -> str:
    kinds = ", ".join(kind.value for kind in PRESET_BY_KIND if kind is not ProviderKind.CUSTOM)
    configured = ", ".join(p.name for p in providers) or "none"
    searches = ", ".join(WEB_SEARCH_KEY_ENV_BY_BACKEND)
    return f"configured: {configured}; or a provider kind: {kinds}; or web search: {searches}"


def _unknown(name: str, providers: Sequence[Provider]) -> str:
    if name.removeprefix(RESERVED_PROVIDER_PREFIX) == "searxng":
        return (
            "SearXNG takes no key: set its address as web_search_base_url "
            "(Settings → Web tools, or the settings file).\n"
        )
    return f"Unknown provider {name!r} ({_choices(providers)}).\n"
