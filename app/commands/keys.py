"""`nimbridge key set|delete|status`: the user's way to put provider keys in the keychain.

Invariant: a key goes from `read_secret` to the store and nowhere else; output
names providers, variables and stores, never a key. Every failure is one
actionable line on `err` and exit code 1.
"""

from collections.abc import Callable, Sequence
from typing import Literal, TextIO

from app.config.secrets import KeySource, ProviderKeys, SecretStoreUnavailable
from app.core.providers import PRESET_BY_KIND, Provider, ProviderKind, preset_base_url

Action = Literal["set", "delete", "status"]


def run_key_command(
    action: Action,
    provider_name: str | None,
    *,
    providers: Sequence[Provider],
    keys: ProviderKeys,
    read_secret: Callable[[str], str],
    out: TextIO,
    err: TextIO,
) -> int:
    try:
        if action == "status":
            return _status(provider_name, providers, keys, out, err)
        if not provider_name:
            choices = _choices(providers)
            err.write(f"Name a provider: nimbridge key {action} PROVIDER ({choices}).\n")
            return 1
        if action == "set":
            return _set(provider_name, providers, keys, read_secret, out, err)
        return _delete(provider_name, providers, keys, out, err)
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
    try:
        key = read_secret(f"API key for {name} ({provider.preset.label}): ")
    except EOFError:  # stdin closed before a line arrived
        key = ""
    try:
        keys.set(name, key)
    except ValueError as exc:  # its message names the problem, never the key
        page = provider.preset.keys_page
        where = f"; create one at {page}" if page else ""
        err.write(f"Nothing stored: {exc}{where}.\n")
        return 1
    store = keys.store
    out.write(f"Stored the key for {name} in {store.description}.\n")
    if not store.persistent:
        err.write(
            "Warning: no OS keychain is available, so the key is in memory only and will be "
            "forgotten when NimBridge exits.\n"
        )
    status = keys.status(provider)
    if status.source is KeySource.ENVIRONMENT:
        err.write(f"Note: ${status.env_name} is set and overrides the stored key.\n")
    return 0


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
        status = keys.status(provider)
        if status.source is KeySource.ENVIRONMENT:
            err.write(f"Note: ${status.env_name} still provides a key for {name}.\n")
    return 0


def _status(
    name: str | None, providers: Sequence[Provider], keys: ProviderKeys, out: TextIO, err: TextIO
) -> int:
    if name is None:
        shown = list(providers)
        if not shown:
            out.write("No providers configured.\n")
            return 0
    else:
        provider = _resolve(name, providers)
        if provider is None:
            err.write(_unknown(name, providers))
            return 1
        shown = [provider]
    # Ask the store for every line before printing any, so a failure prints one error only.
    rows = [(p.name, p.kind.value, _where(p, keys)) for p in shown]
    name_width = max(len(row[0]) for row in rows)
    kind_width = max(len(row[1]) for row in rows)
    for provider_name, kind, where in rows:
        out.write(f"{provider_name:<{name_width}}  {kind:<{kind_width}}  {where}\n")
    return 0


def _where(provider: Provider, keys: ProviderKeys) -> str:
    status = keys.status(provider)
    if status.source is KeySource.ENVIRONMENT:
        return f"key from ${status.env_name}"
    if status.source in (KeySource.KEYCHAIN, KeySource.MEMORY):
        return f"key in {keys.store.description}"
    return "no key (needed)" if provider.preset.needs_key else "no key needed"


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


def _choices(providers: Sequence[Provider]) -> str:
    kinds = ", ".join(kind.value for kind in PRESET_BY_KIND if kind is not ProviderKind.CUSTOM)
    configured = ", ".join(p.name for p in providers) or "none"
    return f"configured: {configured}; or a provider kind: {kinds}"


def _unknown(name: str, providers: Sequence[Provider]) -> str:
    return f"Unknown provider {name!r} ({_choices(providers)}).\n"
