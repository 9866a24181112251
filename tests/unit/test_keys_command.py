"""`nimbridge key set|delete|status` (app.commands.keys), in memory and in a real keychain."""

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from app.commands.keys import Action, run_key_command
from app.config.secrets import (
    KeyringSecretStore,
    MemorySecretStore,
    ProviderKeys,
    SecretStore,
    SecretStoreUnavailable,
)
from app.core.providers import Provider, ProviderKind, preset_base_url
from tests.secret_service import (  # noqa: F401  (fixtures, until tests/conftest.py registers them)
    secret_service,
    secret_service_session,
)

KEY = "nvapi-COMMAND-CANARY-5e2d"
PROVIDERS = (
    Provider("nvidia", ProviderKind.NVIDIA, preset_base_url(ProviderKind.NVIDIA)),
    Provider("local", ProviderKind.OLLAMA, preset_base_url(ProviderKind.OLLAMA)),
    Provider("work", ProviderKind.CUSTOM, "http://127.0.0.1:9000/v1"),
)


@dataclass
class Run:
    code: int
    out: str
    err: str
    prompts: list[str] = field(default_factory=list)


def run(
    action: Action,
    name: str | None,
    keys: ProviderKeys,
    typed: str | Callable[[str], str] = KEY,
    *,
    providers: Sequence[Provider] = PROVIDERS,
    web_search_backend: str = "",
) -> Run:
    out, err, prompts = io.StringIO(), io.StringIO(), []

    def read_secret(prompt: str) -> str:
        prompts.append(prompt)
        return typed(prompt) if callable(typed) else typed

    code = run_key_command(
        action,
        name,
        providers=providers,
        keys=keys,
        read_secret=read_secret,
        out=out,
        err=err,
        web_search_backend=web_search_backend,
    )
    result = Run(code, out.getvalue(), err.getvalue(), prompts)
    assert KEY not in result.out + result.err  # whatever happened, the key is not shown
    return result


class FailingStore:
    """A keychain that stopped answering."""

    description = "Secret Service (GNOME Keyring)"
    persistent = True
    problem = None

    def get(self, name: str) -> str | None:
        raise SecretStoreUnavailable("the keychain is locked", "unlock it and try again")

    def set(self, name: str, value: str) -> None:
        self.get(name)

    def delete(self, name: str) -> bool:
        self.get(name)
        return False


def test_set_in_memory_warns_it_will_be_forgotten() -> None:
    keys = ProviderKeys(MemorySecretStore(), env={})
    result = run("set", "nvidia", keys, typed=f"  {KEY}\n")
    assert result.code == 0
    assert result.out == "Stored the key for nvidia in memory only, for this session.\n"
    assert "forgotten when NimBridge exits" in result.err
    assert result.prompts == ["API key for nvidia (NVIDIA NIM (build.nvidia.com)): "]
    assert keys.key_for(PROVIDERS[0]) == KEY  # stripped


@pytest.mark.usefixtures("secret_service")
def test_set_status_delete_in_the_real_keychain() -> None:
    keys = ProviderKeys(KeyringSecretStore(), env={})
    result = run("set", "nvidia", keys)
    assert (result.code, result.err) == (0, "")
    assert result.out == "Stored the key for nvidia in Secret Service (GNOME Keyring).\n"
    assert ProviderKeys(KeyringSecretStore(), env={}).key_for(PROVIDERS[0]) == KEY

    status = run("status", None, keys)
    assert status.code == 0
    assert status.out.splitlines() == [
        "nvidia  nvidia      key in Secret Service (GNOME Keyring)",
        "local   ollama      no key needed",
        "work    custom      no key (needed)",
        "tavily  web search  no key",
        "brave   web search  no key",
    ]

    assert run("delete", "nvidia", keys).out == (
        "Deleted the key for nvidia from Secret Service (GNOME Keyring).\n"
    )
    again = run("delete", "nvidia", keys)
    assert again.code == 0
    assert again.out == "No key for nvidia in Secret Service (GNOME Keyring); nothing deleted.\n"


def test_status_names_the_env_variable_and_notes_the_override() -> None:
    keys = ProviderKeys(MemorySecretStore(), env={"NVIDIA_API_KEY": "nvapi-env-only-value"})
    status = run("status", "nvidia", keys)
    assert (status.code, status.out) == (0, "nvidia  nvidia  key from $NVIDIA_API_KEY\n")
    assert "nvapi-env-only-value" not in status.out
    stored = run("set", "nvidia", keys)
    assert stored.code == 0
    assert "$NVIDIA_API_KEY is set and overrides the stored key" in stored.err


def test_set_accepts_a_preset_kind_that_is_not_configured() -> None:
    keys = ProviderKeys(MemorySecretStore(), env={})
    assert run("set", "openai", keys, typed="sk-openai-value").code == 0
    assert keys.store.get("openai") == "sk-openai-value"
    assert (
        run("status", "openai", keys).out
        == "openai  openai  key in memory only, for this session\n"
    )


@pytest.mark.parametrize("name", ["nope", "custom", None])
def test_unknown_or_missing_provider(name: str | None) -> None:
    keys = ProviderKeys(MemorySecretStore(), env={})
    result = run("set", name, keys)
    assert (result.code, result.out, result.prompts) == (1, "", [])
    assert result.err.count("\n") == 1 and "nvidia, local, work" in result.err
    assert "web search: tavily, brave" in result.err
    if name is not None:
        assert run("status", name, keys).code == 1


@pytest.mark.parametrize("typed", ["", "  \n"])
def test_empty_key_is_refused(typed: str) -> None:
    keys = ProviderKeys(MemorySecretStore(), env={})
    result = run("set", "nvidia", keys, typed=typed)
    assert (result.code, result.out) == (1, "")
    assert result.err == (
        "Nothing stored: the key is empty; "
        "create one at https://build.nvidia.com/settings/api-keys.\n"
    )
    assert keys.store.get("nvidia") is None


def test_closed_stdin_is_an_empty_key() -> None:
    def closed(_prompt: str) -> str:
        raise EOFError

    result = run("set", "nvidia", ProviderKeys(MemorySecretStore(), env={}), typed=closed)
    assert result.code == 1 and result.err.startswith("Nothing stored: the key is empty")


@pytest.mark.parametrize("action", ["set", "delete", "status"])
def test_store_failure_is_one_actionable_line(action: Action) -> None:
    store: SecretStore = FailingStore()
    result = run(action, "nvidia", ProviderKeys(store, env={}))
    assert result.code == 1
    assert result.err == "Error: the keychain is locked; unlock it and try again.\n"


def test_status_without_providers() -> None:
    out, err = io.StringIO(), io.StringIO()
    code = run_key_command(
        "status",
        None,
        providers=(),
        keys=ProviderKeys(MemorySecretStore(), env={}),
        read_secret=input,
        out=out,
        err=err,
    )
    assert (code, err.getvalue()) == (0, "")
    assert out.getvalue().splitlines() == [
        "No providers configured.",
        "tavily  web search  no key",
        "brave   web search  no key",
    ]


# -- web search backends' keys (Tavily, Brave): `web-search-<backend>` entries


@pytest.mark.usefixtures("secret_service")
def test_search_key_set_status_delete_in_the_real_keychain() -> None:
    keys = ProviderKeys(KeyringSecretStore(), env={})
    stored = run("set", "tavily", keys, typed=f" {KEY} \n")
    assert (stored.code, stored.err) == (0, "")
    assert stored.out == "Stored the Tavily web search key in Secret Service (GNOME Keyring).\n"
    assert stored.prompts == ["Tavily API key (web search): "]
    # Where the server reads it from, in a fresh process's view of the keychain.
    assert ProviderKeys(KeyringSecretStore(), env={}).web_search_key("tavily") == KEY
    assert KeyringSecretStore().get("tavily") is None  # not a provider entry

    status = run("status", None, keys, web_search_backend="brave")
    assert status.out.splitlines()[-2:] == [
        "tavily  web search  key in Secret Service (GNOME Keyring)",
        "brave   web search  no key (needed)",  # the backend the settings chose
    ]
    assert run("status", "tavily", keys).out == (
        "tavily  web search  key in Secret Service (GNOME Keyring)\n"
    )

    deleted = run("delete", "tavily", keys)
    assert (deleted.code, deleted.out) == (
        0,
        "Deleted the Tavily web search key from Secret Service (GNOME Keyring).\n",
    )
    assert ProviderKeys(KeyringSecretStore(), env={}).web_search_key("tavily") is None
    again = run("delete", "web-search-tavily", keys)
    assert again.out == (
        "No Tavily web search key in Secret Service (GNOME Keyring); nothing deleted.\n"
    )


def test_search_key_env_variable_overrides_and_is_never_shown() -> None:
    keys = ProviderKeys(MemorySecretStore(), env={"BRAVE_API_KEY": "brave-env-only-value"})
    status = run("status", "brave", keys)
    assert (status.code, status.out) == (0, "brave  web search  key from $BRAVE_API_KEY\n")
    stored = run("set", "brave", keys)
    assert stored.code == 0
    assert stored.err.splitlines() == [
        "Warning: no OS keychain is available, so the key is in memory only and will be "
        "forgotten when NimBridge exits.",
        "Note: $BRAVE_API_KEY is set and overrides the stored key.",
    ]
    deleted = run("delete", "brave", keys)
    assert deleted.err == "Note: $BRAVE_API_KEY still provides a Brave Search key.\n"
    assert "brave-env-only-value" not in stored.out + stored.err + status.out + deleted.err


def test_search_key_empty_is_refused_with_where_to_get_one() -> None:
    keys = ProviderKeys(MemorySecretStore(), env={})
    result = run("set", "brave", keys, typed="  \n")
    assert (result.code, result.out) == (1, "")
    assert result.err == (
        "Nothing stored: the key is empty; create one at https://api-dashboard.search.brave.com.\n"
    )
    assert keys.web_search_key("brave") is None


def test_a_provider_named_like_a_backend_keeps_its_name() -> None:
    # The provider wins: requests depend on its key, and a script that set it before
    # search keys existed must not start writing elsewhere. web-search-<backend> is
    # the search key's unambiguous name, and the output says so.
    providers = (Provider("tavily", ProviderKind.CUSTOM, "http://127.0.0.1:9000/v1"),)
    keys = ProviderKeys(MemorySecretStore(), env={})
    as_provider = run("set", "tavily", keys, typed="sk-provider-value", providers=providers)
    assert as_provider.out == "Stored the key for tavily in memory only, for this session.\n"
    assert "the Tavily web search key is `web-search-tavily`" in as_provider.err
    assert keys.key_for(providers[0]) == "sk-provider-value"
    assert keys.web_search_key("tavily") is None

    as_search = run(
        "set", "web-search-tavily", keys, typed="tvly-search-value", providers=providers
    )
    assert as_search.code == 0
    assert keys.web_search_key("tavily") == "tvly-search-value"
    assert keys.key_for(providers[0]) == "sk-provider-value"

    status = run("status", None, keys, providers=providers)
    assert status.out.splitlines() == [
        "tavily             custom      key in memory only, for this session",
        "web-search-tavily  web search  key in memory only, for this session",
        "brave              web search  no key",
    ]
    removed = run("delete", "tavily", keys, providers=providers)
    assert removed.out == "Deleted the key for tavily from memory only, for this session.\n"
    assert keys.web_search_key("tavily") == "tvly-search-value"


@pytest.mark.parametrize("name", ["searxng", "web-search-searxng"])
def test_searxng_takes_no_key(name: str) -> None:
    result = run("set", name, ProviderKeys(MemorySecretStore(), env={}))
    assert (result.code, result.prompts) == (1, [])
    assert result.err == (
        "SearXNG takes no key: set its address as web_search_base_url "
        "(Settings → Web tools, or the settings file).\n"
    )


@pytest.mark.parametrize("action", ["set", "delete", "status"])
def test_search_key_store_failure_is_one_actionable_line(action: Action) -> None:
    result = run(action, "brave", ProviderKeys(FailingStore(), env={}))
    assert (result.code, result.out) == (1, "")
    assert result.err == "Error: the keychain is locked; unlock it and try again.\n"


def test_the_outbound_proxy_login_is_set_and_deleted_by_name() -> None:
    keys = ProviderKeys(MemorySecretStore(), env={})
    result = run("set", "outbound-proxy", keys, typed="alice:pa:ss\n")
    assert result.code == 0 and "pa:ss" not in result.out
    assert (
        result.out
        == "Stored the outbound proxy's login for alice in memory only, for this session.\n"
    )
    assert keys.outbound_proxy_credentials() == ("alice", "pa:ss")
    assert run("set", "outbound-proxy", keys, typed="no-colon-no-password\n").code == 0
    assert run("set", "outbound-proxy", keys, typed=":nameless\n").code == 1
    assert run("delete", "outbound-proxy", keys).out.startswith("Deleted the outbound proxy's")
    assert keys.outbound_proxy_credentials() is None
    with pytest.raises(ValueError):
        keys.set("outbound-proxy", KEY)  # never a provider's entry
