"""Codex CLI's command line and environment for NimBridge (app/launcher/codex.py)."""

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from app.launcher.codex import KEY_ENV, codex_arguments, codex_env, find_codex, setup_lines


def test_arguments_are_toml_codex_reads() -> None:
    arguments = codex_arguments(
        base_url="http://127.0.0.1:8082/", model="qwen/q", context_window=131072
    )
    overrides = dict(arguments[i + 1].split("=", 1) for i, a in enumerate(arguments) if a == "-c")
    provider = tomllib.loads(f"p = {overrides['model_providers.nimbridge']}")["p"]
    assert provider == {
        "name": "NimBridge",
        "base_url": "http://127.0.0.1:8082/v1",
        "env_key": KEY_ENV,
        "wire_api": "responses",
    }
    assert tomllib.loads(f"v = {overrides['model_provider']}")["v"] == "nimbridge"
    assert overrides["model_context_window"] == "131072"
    assert arguments[arguments.index("-m") + 1] == "qwen/q"
    assert "model_context_window" not in " ".join(
        codex_arguments(base_url="http://h:1", model="m", context_window=None)
    )


def test_environment_has_the_proxy_key_and_no_openai_key() -> None:
    env = codex_env({"PATH": "/bin", "OPENAI_API_KEY": "sk-x", "CODEX_API_KEY": "y"}, "proxy-k")
    assert env == {"PATH": "/bin", KEY_ENV: "proxy-k"}
    assert codex_env({}, None)[KEY_ENV] == "nimbridge"


def test_find_codex_on_path_or_npm_folders(tmp_path: Path) -> None:
    assert find_codex(path=str(tmp_path), home=tmp_path) is None
    npm = tmp_path / ".npm-global" / "bin"
    npm.mkdir(parents=True)
    (npm / "codex").write_text("#!/bin/sh\n")
    assert find_codex(path=str(tmp_path), home=tmp_path) == npm / "codex"
    on_path = tmp_path / "bin"
    on_path.mkdir()
    (on_path / "codex").write_text("#!/bin/sh\n")
    (on_path / "codex").chmod(0o755)
    assert find_codex(path=str(on_path), home=tmp_path) == on_path / "codex"


def _overrides(arguments: list[str]) -> dict[str, Any]:
    """Codex's `-c key=value` overrides, each value read as the TOML Codex reads."""
    pairs = [arguments[i + 1].split("=", 1) for i, a in enumerate(arguments) if a == "-c"]
    return {key: tomllib.loads(f"v = {value}")["v"] for key, value in pairs}


def test_arguments_hold_no_space_or_double_quote() -> None:
    """One word in every shell: cmd and PowerShell mangle double quotes inside a word."""
    arguments = codex_arguments(base_url="http://127.0.0.1:8082", model="m", context_window=9)
    assert not any(c in word for word in arguments for c in ' "')
    # A URL that cannot be a TOML literal string still comes out as one value.
    odd = codex_arguments(base_url="http://h:1/it's", model="m", context_window=None)
    assert _overrides(odd)["model_providers.nimbridge"]["base_url"] == "http://h:1/it's/v1"


@pytest.mark.skipif(sys.platform == "win32", reason="runs bash")
def test_posix_setup_runs_codex_on_nimbridge(tmp_path: Path) -> None:
    """Pasted into bash, the lines start `codex` with the key in its environment, OpenAI's
    keys gone, and overrides Codex reads as NimBridge's provider."""
    text = setup_lines(
        base_url="http://127.0.0.1:8082", model="qwen/q", proxy_key="k 'x'", context_window=4096
    )
    fake = tmp_path / "codex"
    fake.write_text(
        f'#!/bin/sh\necho "${KEY_ENV}|${{OPENAI_API_KEY-unset}}|${{CODEX_API_KEY-unset}}"\n'
        'printf "%s\\n" "$@"\n'
    )
    fake.chmod(0o755)
    result = subprocess.run(
        ["bash", "-c", text],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin", "OPENAI_API_KEY": "sk-x", "CODEX_API_KEY": "c"},
        capture_output=True,
        text=True,
        check=True,
    )
    first, *arguments = result.stdout.splitlines()
    assert first == "k 'x'|unset|unset"
    assert _overrides(arguments) == {
        "model_providers.nimbridge": {
            "name": "NimBridge",
            "base_url": "http://127.0.0.1:8082/v1",
            "env_key": KEY_ENV,
            "wire_api": "responses",
        },
        "model_provider": "nimbridge",
        "model_context_window": 4096,
    }
    assert arguments[arguments.index("-m") + 1] == "qwen/q"


def test_setup_lines_for_powershell_and_cmd() -> None:
    provider = (
        "model_providers.nimbridge={name='NimBridge',base_url='http://127.0.0.1:8082/v1',"
        f"env_key='{KEY_ENV}',wire_api='responses'}}"
    )
    quoted = provider.replace("'", "''")
    powershell = setup_lines(
        base_url="http://127.0.0.1:8082", model="m", proxy_key="k", shell="powershell"
    )
    assert powershell == (
        f"$env:{KEY_ENV} = 'k'\n"
        "Remove-Item Env:OPENAI_API_KEY -ErrorAction SilentlyContinue\n"
        "Remove-Item Env:CODEX_API_KEY -ErrorAction SilentlyContinue\n"
        "Remove-Item Env:OPENAI_BASE_URL -ErrorAction SilentlyContinue\n"
        f"codex -c '{quoted}' -c 'model_provider=''nimbridge''' -m m\n"
    )
    cmd = setup_lines(base_url="http://127.0.0.1:8082", model="m", proxy_key=None, shell="cmd")
    assert cmd == (
        f'set "{KEY_ENV}=nimbridge"\n'
        "set OPENAI_API_KEY=\nset CODEX_API_KEY=\nset OPENAI_BASE_URL=\n"
        f'codex -c "{provider}" -c "model_provider=\'nimbridge\'" -m m\n'
    )
