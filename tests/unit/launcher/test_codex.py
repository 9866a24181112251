"""Codex CLI's command line and environment for NimBridge (app/launcher/codex.py)."""

import tomllib
from pathlib import Path

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


def test_setup_lines_for_the_clipboard() -> None:
    text = setup_lines(base_url="http://127.0.0.1:8082", model="m", proxy_key="k")
    assert text.startswith(f"export {KEY_ENV}='k'\ncodex -c 'model_providers.nimbridge=")
    assert "-m m" in text
