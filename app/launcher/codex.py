"""Codex CLI's command line and environment to use NimBridge (PROTOCOL.md, "Codex CLI").

Codex reads its provider from `[model_providers.NAME]` in `$CODEX_HOME/config.toml`;
every key of it can also be given as `-c key=value` (TOML values). NimBridge gives
them on the command line and never writes the user's own config.toml. The key Codex
sends (as `Authorization: Bearer`) is NimBridge's proxy key, read from the variable
the provider's `env_key` names; a provider key never goes into Codex's environment.
"""

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from app.launcher.environment import PLACEHOLDER_TOKEN
from app.launcher.terminals import Shell
from app.launcher.terminals import setup_lines as shell_lines

INSTALL_COMMAND = "npm install -g @openai/codex"
PROVIDER_ID = "nimbridge"
KEY_ENV = "NIMBRIDGE_CODEX_KEY"
# Keys Codex would otherwise send or use for OpenAI itself: not ours to pass on.
UNSET = ("OPENAI_API_KEY", "CODEX_API_KEY", "OPENAI_BASE_URL")


def _toml_string(value: str) -> str:
    # A literal string ('...') where it can be: no double quote, so the words pass
    # whole through cmd and PowerShell, which mangle those.
    if "'" not in value and not any(ord(c) < 32 for c in value):
        return f"'{value}'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if ord(c) >= 32 else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'


def codex_arguments(*, base_url: str, model: str, context_window: int | None) -> list[str]:
    """`-c` overrides naming NimBridge as Codex's provider, and the model to use.

    No spaces and no double quotes in them: each is one word in every shell."""
    fields = {"name": "NimBridge", "base_url": base_url.rstrip("/") + "/v1"}
    fields |= {"env_key": KEY_ENV, "wire_api": "responses"}
    provider = "{" + ",".join(f"{k}={_toml_string(v)}" for k, v in fields.items()) + "}"
    arguments = [
        "-c",
        f"model_providers.{PROVIDER_ID}={provider}",
        "-c",
        f"model_provider={_toml_string(PROVIDER_ID)}",
        "-m",
        model,
    ]
    if context_window:
        arguments += ["-c", f"model_context_window={context_window}"]
    return arguments


def codex_env(base: Mapping[str, str], proxy_key: str | None) -> dict[str, str]:
    """Codex's environment: the caller's, without OpenAI keys, plus the proxy key."""
    env = {name: value for name, value in base.items() if name not in UNSET}
    env[KEY_ENV] = proxy_key or PLACEHOLDER_TOKEN
    return env


def find_codex(*, path: str | None = None, home: Path | None = None) -> Path | None:
    """The `codex` executable: on PATH, else npm's usual global folders."""
    found = shutil.which("codex", path=path)
    if found:
        return Path(found)
    home = home or Path.home()
    for candidate in (
        home / ".npm-global" / "bin" / "codex",
        home / ".local" / "bin" / "codex",
        Path(os.environ.get("APPDATA", home)) / "npm" / "codex.cmd",
    ):
        if candidate.is_file():
            return candidate
    return None


def setup_lines(
    *,
    base_url: str,
    model: str,
    proxy_key: str | None,
    context_window: int | None = None,
    shell: Shell = "posix",
) -> str:
    """What "Copy Codex setup" puts on the clipboard, for `shell`: the proxy key in
    the environment, OpenAI's keys removed, then the line that runs Codex on NimBridge."""
    arguments = codex_arguments(base_url=base_url, model=model, context_window=context_window)
    return shell_lines(
        codex_env({}, proxy_key), shell=shell, unset=UNSET, command=["codex", *arguments]
    )
