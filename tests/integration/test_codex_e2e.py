"""The real Codex CLI (`codex exec`) through NimBridge's /v1/responses, against the fake
upstream playing the model: it calls Codex's `exec_command` tool, Codex really runs the
command and sends the result back, and the model finishes with text. Needs the npm
package @openai/codex: NIMBRIDGE_TEST_CODEX_DIR names the folder of its `codex`
(`.ci/run` installs it); skipped without it, except in CI."""

import io
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from app.commands.codex import run_codex_command
from app.config.secrets import MemorySecretStore, ProviderKeys
from app.config.settings import Settings
from app.launcher.codex import codex_arguments, codex_env
from tests.fake_upstream import (
    FakeUpstream,
    Recorded,
    chunk,
    reply_json,
    reply_stream,
    text_stream,
)
from tests.integration.conftest import UPSTREAM_KEY, LiveProxy, MakeProxy

FINAL_TEXT = "All done: the commands ran."


def _codex_dirs() -> list[str | None]:
    """The Codex folders to test with: `.ci/run` names the pinned version's and the
    newest's (NIMBRIDGE_TEST_CODEX_DIRS); elsewhere whichever one `_codex` finds."""
    named = os.environ.get("NIMBRIDGE_TEST_CODEX_DIRS", "")
    return [folder for folder in named.split(os.pathsep) if folder] or [None]


def _version_id(folder: str | None) -> str:
    # .ci/run installs each version under a folder named codex-VERSION
    found = next((p.name for p in Path(folder or ".").parents if p.name.startswith("codex-")), "")
    return found.removeprefix("codex-") or "found"


@pytest.fixture(autouse=True, params=_codex_dirs(), ids=_version_id)
def codex_version(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here runs once per Codex version CI installed (pinned and newest)."""
    if request.param is not None:
        monkeypatch.setenv("NIMBRIDGE_TEST_CODEX_DIR", request.param)


def _codex() -> Path:
    folder = os.environ.get("NIMBRIDGE_TEST_CODEX_DIR")
    candidates = [Path(folder) / "codex"] if folder else []
    found = next((c for c in candidates if c.is_file()), None) or (
        Path(which) if (which := shutil.which("codex")) else None
    )
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Codex CLI missing in CI: NIMBRIDGE_TEST_CODEX_DIR names no codex")
        pytest.skip("Codex CLI not installed (npm install @openai/codex)")
    return found


def _tool_calls(body: dict[str, Any], commands: list[str]) -> list[Any]:
    out: list[Any] = [chunk(body, {"role": "assistant", "content": ""})]
    for index, command in enumerate(commands):
        head = {"index": index, "id": f"call_{index}", "type": "function"}
        head["function"] = {"name": "exec_command", "arguments": json.dumps({"cmd": command})}
        out.append(chunk(body, {"tool_calls": [head]}))
    out.append(chunk(body, {}, finish_reason="tool_calls"))
    out.append(chunk(body, None, usage={"prompt_tokens": 100, "completion_tokens": 20}))
    out.append("[DONE]")
    return out


def _run_codex(proxy: LiveProxy, tmp_path: Path, prompt: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    work = tmp_path / "work"
    work.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CODEX", "OPENAI"))}
    env = codex_env(
        {**base, "HOME": str(home), "CODEX_HOME": str(home / ".codex")}, proxy.client_key
    )
    arguments = codex_arguments(base_url=proxy.url, model="nim-model", context_window=32768)
    return subprocess.run(
        [
            str(_codex()),
            "exec",
            "--skip-git-repo-check",
            "-s",
            "danger-full-access",
            *arguments,
            prompt,
        ],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _tool_outputs(request: Recorded) -> list[str]:
    return [m["content"] for m in request.body["messages"] if m["role"] == "tool"]


@pytest.mark.parametrize(
    "commands",
    [["echo nimbridge-$((40+2))"], ["echo first-$((1+1))", "echo second-$((2+1))"]],
    ids=["one-call", "two-parallel-calls"],
)
def test_codex_runs_a_command_and_finishes(
    make_proxy: MakeProxy, tmp_path: Path, commands: list[str]
) -> None:
    proxy = make_proxy()
    proxy.upstream.enqueue(
        reply_stream(lambda body: _tool_calls(body, commands)),
        reply_stream(lambda body: text_stream(body, FINAL_TEXT)),
    )
    done = _run_codex(proxy, tmp_path, "run the commands")
    assert done.returncode == 0, done.stderr[-3000:]
    assert FINAL_TEXT in done.stdout
    first, second = proxy.upstream.chat_requests[:2]
    assert "exec_command" in [t["function"]["name"] for t in first.body["tools"]]
    outputs = _tool_outputs(second)
    expected = ["nimbridge-42"] if len(commands) == 1 else ["first-2", "second-3"]
    assert len(outputs) == len(expected)
    for output, word in zip(outputs, expected, strict=True):
        assert word in output
    calls = next(m for m in second.body["messages"] if m.get("tool_calls"))["tool_calls"]
    assert [c["id"] for c in calls] == [f"call_{i}" for i in range(len(commands))]


def test_nimbridge_codex_launches_codex_on_its_own_server(
    upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`nimbridge codex -- exec ...`: a server of its own (none runs on the port), Codex
    pointed at it by -c overrides, the proxy key in Codex's environment only."""
    codex = _codex()
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    for name in [n for n in os.environ if n.startswith(("CODEX", "OPENAI"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CODEX_HOME", str(home / ".codex"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-reach-codex")
    upstream.enqueue(
        reply_stream(lambda body: _tool_calls(body, ["echo launched-$((3*3))"])),
        reply_stream(lambda body: text_stream(body, FINAL_TEXT)),
    )
    with socket.socket() as probe:  # a port nothing listens on: `codex` starts its own server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(host="127.0.0.1", port=port).with_overrides(
        upstream_url=upstream.base_url, model="fake/codex-model"
    )
    keys = ProviderKeys(MemorySecretStore(), env={})
    keys.set(settings.default_provider, UPSTREAM_KEY)
    err = io.StringIO()
    code = run_codex_command(
        settings,
        keys,
        model=None,
        folder=tmp_path,
        codex_args=["exec", "--skip-git-repo-check", "-s", "danger-full-access", "run it"],
        proxy_key=None,
        err=err,
        codex=codex,
    )
    assert code == 0, err.getvalue()
    assert "started NimBridge" in err.getvalue()
    first, second = upstream.chat_requests[:2]
    assert first.body["model"] == "fake/codex-model"
    assert first.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert any("launched-9" in output for output in _tool_outputs(second))
    assert not (home / ".codex" / "config.toml").exists()  # nothing written to Codex's config


# vLLM's (and so NIM's) answer to a prompt longer than the model's window.
CONTEXT_OVERFLOW = {
    "object": "error",
    "message": "This model's maximum context length is 32768 tokens. However, you requested "
    "40000 tokens (39000 in the messages, 1000 in the completion). Please reduce the length "
    "of the messages or completion.",
    "type": "BadRequestError",
    "param": None,
    "code": 400,
}


def test_codex_knows_a_context_overflow_for_what_it_is(
    make_proxy: MakeProxy, tmp_path: Path
) -> None:
    """An upstream's "maximum context length" reaches Codex as `context_length_exceeded`,
    which Codex tells apart from other failures: it says the context window ran out (its
    cue to compact or start a new thread) instead of a generic error, and does not retry."""
    proxy = make_proxy()
    proxy.upstream.enqueue(reply_json(CONTEXT_OVERFLOW, status=400))
    done = _run_codex(proxy, tmp_path, "hello")
    assert done.returncode != 0
    assert "ran out of room in the model's context window" in done.stderr, done.stderr[-3000:]
    assert len(proxy.upstream.chat_requests) == 1
