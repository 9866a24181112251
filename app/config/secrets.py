"""Where provider keys live: an environment variable, the OS keychain, or this session's memory.

Invariants:
- A key is never logged, printed, put in an exception message or a repr; only
  entry names, variable names and store descriptions are.
- No key goes to a plain-text file: a keyring backend with priority < 1
  (keyring's fail and null backends, keyrings.alt's files) is refused, and
  `open_secret_store` falls back to memory, saying so once.
- Every keyring failure reaches callers as one `SecretStoreUnavailable`.
- A variable named in the provider preset's `key_env` overrides the store (headless use);
  for web search keys, `WEB_SEARCH_KEY_ENV_BY_BACKEND`'s (TAVILY_API_KEY, BRAVE_API_KEY).
- Web search keys live under `web-search-<backend>` entries, a prefix no provider may take.
- Every key value `ProviderKeys` reads or stores is remembered for the log redaction filter.
"""

import enum
import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import keyring
from keyring.backend import KeyringBackend
from keyring.backends.chainer import ChainerBackend
from keyring.backends.fail import Keyring as FailKeyring

from app.config.settings import OUTBOUND_PROXY_NAME, RESERVED_PROVIDER_PREFIX
from app.core.masking import Masker
from app.core.providers import PRESET_BY_KIND, Provider

SERVICE_NAME = "nimbridge"
PROXY_KEY_ENTRY = "nimbridge-proxy-key"
# The user name and password of the outbound HTTP proxy (Settings' outbound_proxy), as
# "user:password" (a Basic user name holds no colon): never in settings.json.
OUTBOUND_PROXY_ENTRY = OUTBOUND_PROXY_NAME
# A missing entry to read once at start-up: it proves the keychain answers (and
# unlocks it then, not in the middle of a request) without fetching a secret.
_PROBE_ENTRY = "nimbridge-probe"

MEMORY_DESCRIPTION = "memory only, for this session"

# Web search backends that take a key: its variable (which wins, as a provider's does).
# Entries are RESERVED_PROVIDER_PREFIX + backend, a prefix no provider may take.
WEB_SEARCH_KEY_ENV_BY_BACKEND = {"tavily": "TAVILY_API_KEY", "brave": "BRAVE_API_KEY"}


def web_search_entry(backend: str) -> str:
    if backend not in WEB_SEARCH_KEY_ENV_BY_BACKEND:
        raise ValueError(f"the web search backend {backend!r} takes no key")
    return RESERVED_PROVIDER_PREFIX + backend


class SecretStoreUnavailable(Exception):
    """The keychain cannot be used. `reason` is short; `str()` adds what to do about it."""

    def __init__(self, reason: str, advice: str = "") -> None:
        super().__init__(f"{reason}; {advice}" if advice else reason)
        self.reason = reason


class SecretStore(Protocol):
    """Named secrets. `get` of a missing entry is None; `delete` says whether one existed."""

    @property
    def description(self) -> str: ...

    @property
    def persistent(self) -> bool: ...

    @property
    def problem(self) -> str | None:
        """Why keys are not kept across restarts when the user did not choose that."""
        ...

    def get(self, name: str) -> str | None: ...

    def set(self, name: str, value: str) -> None: ...

    def delete(self, name: str) -> bool: ...


def keychain_advice(platform: str | None = None) -> str:
    """How to get a working keychain on this OS, as the end of a sentence."""
    platform = sys.platform if platform is None else platform
    if platform == "darwin":
        how = "unlock your login keychain (`security unlock-keychain`)"
    elif platform == "win32":
        how = "make sure the Windows Credential Manager service is running"
    else:
        how = "install and start gnome-keyring or KWallet (Secret Service) and unlock it"
    return f"{how}, or set the provider's key variable such as NVIDIA_API_KEY (see the README)"


def _backend_label(backend: KeyringBackend) -> str:
    kind = type(backend)
    return f"{kind.__module__}.{kind.__name__}"


def _insecure_reason(backend: KeyringBackend) -> str | None:
    """Why this backend must not hold keys, or None when it is a real keychain."""
    if isinstance(backend, FailKeyring):
        return "keyring found no OS keychain backend"
    label = _backend_label(backend)
    if label.startswith("keyrings.alt."):
        return f"{label} keeps keys in a plain file"
    try:
        priority = float(backend.priority)
    except Exception as exc:  # a backend reports "not usable here" by raising from priority
        return f"{label} is not usable here ({_error_text(exc)})"
    if priority < 1:  # keyring's own rule: below 1 is not a recommended (secure) store
        return f"{label} is not a secure store (priority {priority:g})"
    return None


def _secure_backend(backend: KeyringBackend) -> KeyringBackend:
    # The chainer would also read from (and, failing over, write to) every
    # insecure backend it chains; use its best secure member directly instead.
    if isinstance(backend, ChainerBackend):
        chained: list[KeyringBackend] = list(backend.backends)
        for member in chained:
            if _insecure_reason(member) is None:
                return member
        raise SecretStoreUnavailable(
            "keyring found no secure OS keychain among its backends", keychain_advice()
        )
    reason = _insecure_reason(backend)
    if reason is not None:
        raise SecretStoreUnavailable(reason, keychain_advice())
    return backend


def _describe_backend(backend: KeyringBackend) -> str:
    module = type(backend).__module__
    if module in ("keyring.backends.SecretService", "keyring.backends.libsecret"):
        return "Secret Service (GNOME Keyring)"
    if module == "keyring.backends.kwallet":
        return "KWallet"
    if module == "keyring.backends.macOS":
        return "macOS Keychain"
    if module == "keyring.backends.Windows":
        return "Windows Credential Manager"
    return f"keyring backend {_backend_label(backend)}"


def _error_text(exc: Exception, secret: str | None = None) -> str:
    """The backend's own words, scrubbed of the secret in case a backend echoed it."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if secret:
        text = text.replace(secret, "***")
    return text if len(text) <= 200 else text[:197] + "..."


def _open_backend(backend: KeyringBackend | None) -> KeyringBackend:
    try:
        return _secure_backend(keyring.get_keyring() if backend is None else backend)
    except SecretStoreUnavailable:
        raise
    except Exception as exc:  # keyring's detection and a backend's priority may raise anything
        message = f"the OS keychain could not be opened ({_error_text(exc)})"
    # Raised outside `except`: the backend's exception is not chained into tracebacks.
    raise SecretStoreUnavailable(message, keychain_advice())


class KeyringSecretStore:
    """The OS keychain through `keyring`: service SERVICE_NAME, username = entry name."""

    def __init__(self, backend: KeyringBackend | None = None) -> None:
        self._backend = _open_backend(backend)
        self._description = _describe_backend(self._backend)

    @property
    def description(self) -> str:
        return self._description

    @property
    def persistent(self) -> bool:
        return True

    @property
    def problem(self) -> str | None:
        return None

    def get(self, name: str) -> str | None:
        def read() -> str | None:
            return self._backend.get_password(SERVICE_NAME, name)

        return self._call("read", name, read)

    def set(self, name: str, value: str) -> None:
        def write() -> None:
            self._backend.set_password(SERVICE_NAME, name, value)

        self._call("store", name, write, secret=value)

    def delete(self, name: str) -> bool:
        # keyring raises the same PasswordDeleteError for "missing" as for real
        # failures; asking first keeps real failures loud.
        if self.get(name) is None:
            return False

        def remove() -> None:
            self._backend.delete_password(SERVICE_NAME, name)

        self._call("delete", name, remove)
        return True

    def _call[T](self, verb: str, name: str, op: Callable[[], T], secret: str | None = None) -> T:
        try:
            return op()
        except Exception as exc:  # backends raise anything: KeyringError, D-Bus, OS errors
            # keyring's KeyringLocked, secretstorage's LockedException: no prompt could
            # unlock it (none runs in a headless session), so say that in plain words.
            locked = "locked" in type(exc).__name__.lower()
            message = (
                f"{self._description} is locked"
                if locked
                else f"{self._description} could not {verb} the entry {name!r} "
                f"({_error_text(exc, secret)})"
            )
        # Raised here, outside `except`, so the backend's exception (which we did
        # not write and cannot vouch for) is not chained into tracebacks.
        raise SecretStoreUnavailable(message, "unlock the keychain and try again")

    def __repr__(self) -> str:
        return f"KeyringSecretStore({self._description!r})"


class MemorySecretStore:
    """Forgotten when the process exits: for tests, `--no-keyring`, and machines without one."""

    def __init__(self, problem: str | None = None) -> None:
        self._entries: dict[str, str] = {}
        self._problem = problem

    @property
    def description(self) -> str:
        return MEMORY_DESCRIPTION

    @property
    def persistent(self) -> bool:
        return False

    @property
    def problem(self) -> str | None:
        return self._problem

    def get(self, name: str) -> str | None:
        return self._entries.get(name)

    def set(self, name: str, value: str) -> None:
        self._entries[name] = value

    def delete(self, name: str) -> bool:
        return self._entries.pop(name, None) is not None

    def __repr__(self) -> str:
        return f"MemorySecretStore(entries={sorted(self._entries)!r})"


def open_secret_store(*, warn: Callable[[str], None]) -> SecretStore:
    """The OS keychain if a secure one answers; otherwise memory, after exactly one `warn`."""
    try:
        store = KeyringSecretStore()
        store.get(_PROBE_ENTRY)
    except SecretStoreUnavailable as exc:
        warn(
            f"No usable OS keychain ({exc.reason}), so keys are kept in memory "
            f"for this session only; to keep them, {keychain_advice()}."
        )
        return MemorySecretStore(problem=exc.reason)
    return store


class KeySource(enum.StrEnum):
    ENVIRONMENT = "environment"
    KEYCHAIN = "keychain"
    MEMORY = "memory"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """Where a provider's key comes from; never the key itself."""

    provider: str
    source: KeySource
    env_name: str | None = None  # the variable, when source is ENVIRONMENT


class ProviderKeys:
    """Each provider's key: its preset's variables first, then the store entry named like it.

    Keychain answers are cached: a Secret Service lookup is a D-Bus round trip
    of several milliseconds, too slow for every request. `set`/`delete` here, or
    `forget(provider)` (the server calls it when an upstream rejects a key, so a
    key changed by `nimbridge key set` in another process is picked up), drop it.
    """

    def __init__(self, store: SecretStore, env: Mapping[str, str] | None = None) -> None:
        self._store = store
        self._env: Mapping[str, str] = os.environ if env is None else env
        self._lock = threading.Lock()  # the log filter asks from any thread
        self._known: dict[str, None] = {}  # insertion-ordered set
        # The one masking step (logs, the server's bytes) learns each value as it is read.
        # Keys are added from the UI, the server's loop and `code`'s own thread: writers lock.
        self.masker = Masker(lock=threading.Lock())
        self._cached: dict[str, str | None] = {}  # entry -> the store's answer
        # Remember every key variable now, so logs are redacted before first use.
        for preset in PRESET_BY_KIND.values():
            for var in preset.key_env:
                self._env_value(var)
        for var in WEB_SEARCH_KEY_ENV_BY_BACKEND.values():
            self._env_value(var)

    @property
    def store(self) -> SecretStore:
        return self._store

    def key_for(self, provider: Provider) -> str | None:
        """Raises SecretStoreUnavailable when the keychain fails (not when the entry is missing)."""
        return self._lookup(provider)[0]

    def status(self, provider: Provider) -> KeyStatus:
        _key, source, env_name = self._lookup(provider)
        return KeyStatus(provider.name, source, env_name)

    def set(self, provider_name: str, key: str) -> None:
        """Store a key (stripped). ValueError for an empty key or one that would break a header."""
        self._set_entry(_entry_name(provider_name), key)

    def _set_entry(self, entry: str, key: str) -> None:
        key = key.strip()
        if not key:
            raise ValueError("the key is empty")
        if any(ord(char) < 0x20 or ord(char) == 0x7F for char in key):
            raise ValueError("the key contains control characters")
        self._remember(key)  # before storing: a failure message must not carry it either
        self._cached.pop(entry, None)
        self._store.set(entry, key)
        self._cached[entry] = key

    def delete(self, provider_name: str) -> bool:
        entry = _entry_name(provider_name)
        self._cached.pop(entry, None)
        return self._store.delete(entry)

    def forget(self, provider_name: str) -> None:
        """Read the store again at the next lookup (the upstream refused the cached key)."""
        self._cached.pop(_entry_name(provider_name), None)

    def known_secrets(self) -> list[str]:
        """Every key read or stored this session (`masker` masks them)."""
        with self._lock:
            return list(self._known)

    def __repr__(self) -> str:
        return (
            f"ProviderKeys(store={self._store.description!r}, "
            f"known_secrets={len(self.known_secrets())})"
        )

    # -- web search backends' keys (Tavily, Brave): the same rules under their own entries

    def web_search_key(self, backend: str) -> str | None:
        """Raises SecretStoreUnavailable when the keychain fails (not when the entry is missing)."""
        entry = web_search_entry(backend)
        return self._lookup_entry((WEB_SEARCH_KEY_ENV_BY_BACKEND[backend],), entry)[0]

    def web_search_key_status(self, backend: str) -> KeyStatus:
        entry = web_search_entry(backend)
        _key, source, env_name = self._lookup_entry(
            (WEB_SEARCH_KEY_ENV_BY_BACKEND[backend],), entry
        )
        return KeyStatus(backend, source, env_name)

    def set_web_search_key(self, backend: str, key: str) -> None:
        self._set_entry(web_search_entry(backend), key)

    def delete_web_search_key(self, backend: str) -> bool:
        entry = web_search_entry(backend)
        self._cached.pop(entry, None)
        return self._store.delete(entry)

    def _lookup(self, provider: Provider) -> tuple[str | None, KeySource, str | None]:
        return self._lookup_entry(provider.preset.key_env, _entry_name(provider.name))

    def _lookup_entry(
        self, env_vars: tuple[str, ...], entry: str
    ) -> tuple[str | None, KeySource, str | None]:
        for var in env_vars:
            value = self._env_value(var)
            if value:
                return value, KeySource.ENVIRONMENT, var
        if entry not in self._cached:
            self._cached[entry] = self._store.get(entry)
        key = self._cached[entry]
        if key:
            self._remember(key)
            return key, KeySource.KEYCHAIN if self._store.persistent else KeySource.MEMORY, None
        return None, KeySource.NONE, None

    def _env_value(self, var: str) -> str | None:
        value = (self._env.get(var) or "").strip()
        if not value:
            return None
        self._remember(value)
        return value

    # -- the outbound HTTP proxy's user name and password (app.server.network)

    def outbound_proxy_credentials(self) -> tuple[str, str] | None:
        """(user, password) from the store; raises SecretStoreUnavailable."""
        stored = self._lookup_entry((), OUTBOUND_PROXY_ENTRY)[0]
        if not stored:
            return None
        user, _, password = stored.partition(":")
        if password:
            self._remember(password)
        return user, password

    def set_outbound_proxy_credentials(self, user: str, password: str) -> None:
        if not user or ":" in user:
            raise ValueError("the proxy user name must be non-empty and hold no ':'")
        if password:
            self._remember(password)
        self._set_entry(OUTBOUND_PROXY_ENTRY, f"{user}:{password}")

    def delete_outbound_proxy_credentials(self) -> bool:
        self._cached.pop(OUTBOUND_PROXY_ENTRY, None)
        return self._store.delete(OUTBOUND_PROXY_ENTRY)

    def stored_proxy_key(self) -> str | None:
        """The local proxy key kept in the keychain (by the tray's Regenerate), if any."""
        try:
            return self._store.get(PROXY_KEY_ENTRY)
        except SecretStoreUnavailable:
            return None

    def remember(self, secret: str) -> None:
        """Mask this value in logs too (the local proxy key, which is not a provider key)."""
        self._remember(secret)

    def _remember(self, value: str) -> None:
        if value in self._known:  # every request reads its key: the common case, no lock
            return
        with self._lock:
            self._known[value] = None
        self.masker.add(value)


def _entry_name(provider_name: str) -> str:
    # The proxy key shares the service; a provider of that name would read it upstream.
    if (
        not provider_name
        or provider_name in (PROXY_KEY_ENTRY, OUTBOUND_PROXY_ENTRY)
        or provider_name.startswith(RESERVED_PROVIDER_PREFIX)
    ):
        raise ValueError(f"{provider_name!r} cannot name a provider key entry")
    return provider_name


# ---------------------------------------------------------------------------
