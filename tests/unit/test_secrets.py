"""app.config.secrets against a real Secret Service (gnome-keyring on a private bus)."""

import logging
from collections.abc import Iterator
from contextlib import closing

import keyring
import keyring.backend
import pytest
import secretstorage
from keyring.errors import KeyringError, KeyringLocked, PasswordSetError

from app.config.secrets import (
    PROXY_KEY_ENTRY,
    SERVICE_NAME,
    KeyringSecretStore,
    KeySource,
    KeyStatus,
    MemorySecretStore,
    ProviderKeys,
    SecretStoreUnavailable,
    keychain_advice,
    open_secret_store,
)
from app.core.providers import Provider, ProviderKind, preset_base_url
from app.logs import MASK, RedactingFilter
from tests.secret_service import (  # noqa: F401  (fixtures, until tests/conftest.py registers them)
    no_keychain,
    secret_service,
    secret_service_session,
)

# Cache keyring's list of real backends before the fakes below register
# themselves (every KeyringBackend subclass does), so detection never picks one.
keyring.backend.get_all_keyring()

NVIDIA = Provider("nvidia", ProviderKind.NVIDIA, preset_base_url(ProviderKind.NVIDIA))
OPENAI = Provider("openai", ProviderKind.OPENAI, preset_base_url(ProviderKind.OPENAI))
CANARY = "nvapi-CANARY-7f3a9c1e-do-not-leak"


class InsecureBackend(keyring.backend.KeyringBackend):
    """Like keyrings.alt's plain files: priority below 1. Records any use."""

    priority = 0.5
    used = False

    def get_password(self, service: str, username: str) -> str | None:
        InsecureBackend.used = True
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        InsecureBackend.used = True

    def delete_password(self, service: str, username: str) -> None:
        InsecureBackend.used = True


class AltNamedBackend(InsecureBackend):
    priority = 2


AltNamedBackend.__module__ = "keyrings.alt.file"


class BrokenBackend(keyring.backend.KeyringBackend):
    """A secure-looking backend whose every call fails; `set` echoes the password back."""

    priority = 5

    def get_password(self, service: str, username: str) -> str | None:
        raise KeyringLocked("Failed to unlock the collection!")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise PasswordSetError(f"cannot save {password!r}")

    def delete_password(self, service: str, username: str) -> None:
        raise KeyringError("backend down")


class UnviableBackend(BrokenBackend):
    @property
    def priority(self) -> float:  # type: ignore[override]
        raise RuntimeError("The Secret Service daemon is neither running nor activatable")


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[None]:
    """keyring's active backend is an instance of the class given by indirect parametrization."""
    previous = keyring.get_keyring()
    keyring.set_keyring(request.param())
    yield
    keyring.set_keyring(previous)


# --------------------------------------------------------------- the real keychain


def _items(label_username: str) -> list[secretstorage.Item]:
    with closing(secretstorage.dbus_init()) as connection:
        collection = secretstorage.get_default_collection(connection)
        query = {"service": SERVICE_NAME, "username": label_username}
        return list(collection.search_items(query))


@pytest.mark.usefixtures("secret_service")
def test_round_trip_lands_in_the_secret_service() -> None:
    store = KeyringSecretStore()
    assert (store.description, store.persistent) == ("Secret Service (GNOME Keyring)", True)
    store.set("nvidia", "nvapi-first")
    assert store.get("nvidia") == "nvapi-first"
    assert len(_items("nvidia")) == 1  # really in the daemon, under service + username
    assert store.delete("nvidia") is True
    assert store.get("nvidia") is None
    assert _items("nvidia") == []


@pytest.mark.usefixtures("secret_service")
def test_entries_are_independent_and_overwritable() -> None:
    store = KeyringSecretStore()
    store.set("nvidia", "nvapi-one")
    store.set("openai", "sk-two")
    store.set("nvidia", "nvapi-three")
    assert (store.get("nvidia"), store.get("openai")) == ("nvapi-three", "sk-two")
    assert len(_items("nvidia")) == 1
    assert store.delete("openai") is True
    assert store.get("nvidia") == "nvapi-three"


@pytest.mark.usefixtures("secret_service")
def test_unicode_key() -> None:
    store = KeyringSecretStore()
    store.set("custom", "clé-ключ-鍵-🔑")
    assert store.get("custom") == "clé-ключ-鍵-🔑"


@pytest.mark.usefixtures("secret_service")
def test_delete_missing_is_false() -> None:
    assert KeyringSecretStore().delete("nobody") is False


@pytest.mark.usefixtures("secret_service")
def test_open_secret_store_uses_the_keychain_without_warning() -> None:
    warnings: list[str] = []
    store = open_secret_store(warn=warnings.append)
    assert isinstance(store, KeyringSecretStore)
    assert warnings == []


# ------------------------------------------------------------- refusals and fallback


@pytest.mark.usefixtures("no_keychain")
def test_no_backend_falls_back_to_memory_with_one_warning() -> None:
    warnings: list[str] = []
    store = open_secret_store(warn=warnings.append)
    assert isinstance(store, MemorySecretStore)
    assert (store.persistent, store.description) == (False, "memory only, for this session")
    assert len(warnings) == 1
    assert "in memory for this session only" in warnings[0]
    with pytest.raises(SecretStoreUnavailable, match="no OS keychain backend"):
        KeyringSecretStore()


@pytest.mark.parametrize("backend", [InsecureBackend, AltNamedBackend], indirect=True)
def test_insecure_backend_is_never_used(backend: None) -> None:
    InsecureBackend.used = False
    warnings: list[str] = []
    store = open_secret_store(warn=warnings.append)
    assert isinstance(store, MemorySecretStore)
    assert len(warnings) == 1 and "gnome-keyring" in warnings[0]
    store.set("nvidia", "nvapi-x")
    assert InsecureBackend.used is False  # not even probed


@pytest.mark.parametrize("backend", [UnviableBackend], indirect=True)
def test_unviable_backend_is_refused(backend: None) -> None:
    with pytest.raises(SecretStoreUnavailable, match="not usable here"):
        KeyringSecretStore()


@pytest.mark.parametrize("backend", [BrokenBackend], indirect=True)
def test_backend_errors_become_one_exception_without_the_key(backend: None) -> None:
    store = KeyringSecretStore()
    for call, words in (
        (lambda: store.get("nvidia"), "BrokenBackend is locked;"),  # KeyringLocked, said plainly
        (lambda: store.set("nvidia", CANARY), "could not store the entry 'nvidia'"),
        (lambda: store.delete("nvidia"), "BrokenBackend is locked;"),  # asks first: locked
    ):
        with pytest.raises(SecretStoreUnavailable) as caught:
            call()
        message = str(caught.value)
        assert words in message and "unlock the keychain" in message
        assert CANARY not in message and CANARY not in repr(caught.value)
        # The backend's own exception is not chained (its text is not ours to vouch for).
        assert caught.value.__cause__ is None and caught.value.__context__ is None
    warnings: list[str] = []
    assert isinstance(open_secret_store(warn=warnings.append), MemorySecretStore)
    assert len(warnings) == 1 and "BrokenBackend is locked" in warnings[0]


def test_advice_per_platform() -> None:
    assert "gnome-keyring or KWallet" in keychain_advice("linux")
    assert "security unlock-keychain" in keychain_advice("darwin")
    assert "Credential Manager" in keychain_advice("win32")


# ------------------------------------------------------------------ ProviderKeys


@pytest.mark.usefixtures("secret_service")
def test_env_overrides_the_store_and_status_says_so() -> None:
    store = KeyringSecretStore()
    keys = ProviderKeys(store, env={"NGC_API_KEY": " nvapi-from-env \n", "NVIDIA_API_KEY": ""})
    keys.set("nvidia", "nvapi-from-keychain")
    assert keys.key_for(NVIDIA) == "nvapi-from-env"  # the empty variable is skipped
    assert keys.status(NVIDIA) == KeyStatus("nvidia", KeySource.ENVIRONMENT, "NGC_API_KEY")
    assert store.get("nvidia") == "nvapi-from-keychain"  # set touched the store only


@pytest.mark.usefixtures("secret_service")
def test_keychain_memory_and_none_sources() -> None:
    keys = ProviderKeys(KeyringSecretStore(), env={})
    assert keys.key_for(OPENAI) is None
    assert keys.status(OPENAI) == KeyStatus("openai", KeySource.NONE, None)
    keys.set("openai", "  sk-stripped  ")
    assert keys.key_for(OPENAI) == "sk-stripped"
    assert keys.status(OPENAI).source is KeySource.KEYCHAIN
    assert keys.delete("openai") is True and keys.delete("openai") is False

    memory = ProviderKeys(MemorySecretStore(), env={})
    memory.set("openai", "sk-memory")
    assert memory.status(OPENAI).source is KeySource.MEMORY


def test_provider_keys_refuse_bad_input() -> None:
    keys = ProviderKeys(MemorySecretStore(), env={})
    with pytest.raises(ValueError, match="empty"):
        keys.set("nvidia", " \t\n")
    with pytest.raises(ValueError, match="control characters") as caught:
        keys.set("nvidia", "nvapi-abc\r\nX-Evil: 1")
    assert "nvapi-abc" not in str(caught.value)
    with pytest.raises(ValueError):  # a provider must not read the proxy key
        keys.set(PROXY_KEY_ENTRY, "sk-x")
    assert keys.known_secrets() == []


@pytest.mark.usefixtures("secret_service")
def test_web_search_keys_have_their_own_entries_and_variables() -> None:
    store = KeyringSecretStore()
    keys = ProviderKeys(store, env={"BRAVE_API_KEY": "brave-from-env"})
    assert "brave-from-env" in keys.known_secrets()  # redacted before first use
    assert keys.web_search_key("tavily") is None
    assert keys.web_search_key_status("tavily") == KeyStatus("tavily", KeySource.NONE, None)
    keys.set_web_search_key("tavily", " tvly-abc ")
    assert store.get("web-search-tavily") == "tvly-abc"
    assert keys.web_search_key("tavily") == "tvly-abc"
    assert keys.web_search_key_status("tavily").source is KeySource.KEYCHAIN
    assert keys.web_search_key_status("brave") == KeyStatus(
        "brave", KeySource.ENVIRONMENT, "BRAVE_API_KEY"
    )
    assert keys.delete_web_search_key("tavily") and keys.web_search_key("tavily") is None
    with pytest.raises(ValueError, match="takes no key"):
        keys.web_search_key("searxng")
    with pytest.raises(ValueError):  # no provider reads a search key upstream
        keys.set("web-search-brave", "sk-x")


def test_known_secrets_feed_the_redacting_filter() -> None:
    keys = ProviderKeys(MemorySecretStore(), env={"OPENAI_API_KEY": "sk-env-value"})
    assert keys.known_secrets() == ["sk-env-value"]  # read at construction, before any use
    keys.set("nvidia", CANARY)
    record = logging.LogRecord("app.x", logging.INFO, __file__, 1, "sent %s", (CANARY,), None)
    RedactingFilter(keys.known_secrets).filter(record)
    assert record.getMessage() == f"sent {MASK}"
    assert set(keys.known_secrets()) == {"sk-env-value", CANARY}


@pytest.mark.usefixtures("secret_service")
def test_canary_key_never_reaches_logs_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # root: app.*, keyring.*, secretstorage, everything
    store = open_secret_store(warn=logging.getLogger("app.test").warning)
    keys = ProviderKeys(store, env={})
    keys.set("nvidia", CANARY)
    assert keys.key_for(NVIDIA) == CANARY
    status = keys.status(NVIDIA)
    assert keys.delete("nvidia") is True
    shown = [repr(obj) + str(obj) for obj in (store, keys, status, status.source)]
    logged = [record.getMessage() + (record.exc_text or "") for record in caplog.records]
    assert not [text for text in shown + logged if CANARY in text]
    assert CANARY in keys.known_secrets()


class CountingStore(MemorySecretStore):
    """Counts reads: a Secret Service read is a D-Bus round trip."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, name: str) -> str | None:
        self.reads += 1
        return super().get(name)


def test_keychain_answers_are_cached_until_forgotten() -> None:
    store = CountingStore()
    store.set("nvidia", "nvapi-first")
    keys = ProviderKeys(store, env={})
    provider = Provider("nvidia", ProviderKind.NVIDIA, "https://x.test/v1")
    assert [keys.key_for(provider) for _ in range(3)] == ["nvapi-first"] * 3
    assert store.reads == 1
    store.set("nvidia", "nvapi-second")  # changed elsewhere (another process)
    assert keys.key_for(provider) == "nvapi-first"
    keys.forget("nvidia")  # the upstream refused the key: read again
    assert keys.key_for(provider) == "nvapi-second" and store.reads == 2
    keys.set("nvidia", "nvapi-third")
    assert keys.key_for(provider) == "nvapi-third" and store.reads == 2
    keys.delete("nvidia")
    assert keys.key_for(provider) is None


# ------------------------------------------------------------- a locked keychain


@pytest.mark.usefixtures("secret_service")
def test_a_working_keychain_has_no_problem_to_report() -> None:
    assert open_secret_store(warn=pytest.fail).problem is None
    assert MemorySecretStore().problem is None  # chosen (--no-keyring, tests): not a problem
