"""`nimbridge key set|delete|status` (app.commands.keys), in memory and in a real keychain."""

import io
from collections.abc import Callable
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
) -> Run:
    out, err, prompts = io.StringIO(), io.StringIO(), []

    def read_secret(prompt: str) -> str:
        prompts.append(prompt)
        return typed(prompt) if callable(typed) else typed

    code = run_key_command(
        action,
        name,
        providers=PROVIDERS,
        keys=keys,
        read_secret=read_secret,
        out=out,
        err=err,
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
        "nvidia  nvidia  key in Secret Service (GNOME Keyring)",
        "local   ollama  no key needed",
        "work    custom  no key (needed)",
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
    assert (code, out.getvalue(), err.getvalue()) == (0, "No providers configured.\n", "")
