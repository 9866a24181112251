"""`nimbridge key`, `models` and `doctor` as a user runs them: real processes, a real
Secret Service, the fake upstream as the provider."""

import json
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import anthropic
import pytest

from tests.fake_upstream import FakeUpstream, completion, reply_json
from tests.integration.conftest import track
from tests.integration.test_cli import base_url_of, finish, spawn
from tests.secret_service import SecretServiceInfo

CANARY = "nvapi-CANARY-0123456789abcdef"


def run(
    *args: str,
    env: dict[str, str],
    stdin: str = "",
    program: Sequence[str] = (sys.executable, "-m", "app"),
) -> subprocess.CompletedProcess[str]:
    process = spawn(*args, env=env, program=program)
    out, err = process.communicate(stdin, timeout=60) if stdin else process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.fixture
def config(tmp_path: Path, upstream: FakeUpstream) -> Path:
    path = tmp_path / "settings.json"
    path.write_text(
        json.dumps(
            {
                "providers": [{"name": "nvidia", "kind": "nvidia", "base_url": upstream.base_url}],
                "tiers": {"default": "meta/llama-3.3-70b-instruct"},
                "port": 0,
            }
        )
    )
    return path


def keychain_env(secret_service_session: SecretServiceInfo) -> dict[str, str]:
    # The real Secret Service, not the fail backend test_cli's spawn() defaults to.
    return {
        **secret_service_session.env,
        "PYTHON_KEYRING_BACKEND": "keyring.backends.SecretService.Keyring",
    }


def serve_one_request(config: Path, env: dict[str, str], upstream: FakeUpstream) -> str:
    """`nimbridge serve` answers one SDK request with the CANARY key upstream; its log."""
    server = spawn("serve", "--config", str(config), env=env)
    try:
        sdk = track(anthropic.Anthropic(base_url=base_url_of(server), api_key="x", max_retries=0))
        sdk.messages.create(
            model="claude-sonnet-4-6", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
        assert upstream.chat_requests[-1].headers["Authorization"] == f"Bearer {CANARY}"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)
        _, log = server.communicate(timeout=10)
    return log


def test_key_lifecycle_through_the_real_keychain(
    config: Path, upstream: FakeUpstream, secret_service_session: SecretServiceInfo
) -> None:
    env = keychain_env(secret_service_session)
    stored = run("key", "set", "nvidia", "--config", str(config), env=env, stdin=CANARY + "\n")
    assert stored.returncode == 0, stored.stderr
    assert "Secret Service" in stored.stdout and CANARY not in stored.stdout + stored.stderr

    status = run("key", "status", "--config", str(config), env=env)
    assert "nvidia" in status.stdout and "Secret Service" in status.stdout
    assert CANARY not in status.stdout + status.stderr

    log = serve_one_request(config, env, upstream)
    assert CANARY not in log
    assert CANARY not in config.read_text()  # never in the settings file

    deleted = run("key", "delete", "nvidia", "--config", str(config), env=env)
    assert deleted.returncode == 0
    status = run("key", "status", "--config", str(config), env=env)
    assert "no key" in status.stdout


def test_models_lists_chat_models_with_capabilities(config: Path, upstream: FakeUpstream) -> None:
    upstream.models = [
        {"id": "meta/llama-3.3-70b-instruct", "object": "model", "created": 1, "owned_by": "meta"},
        {"id": "nvidia/nv-embedqa-e5-v5", "object": "model", "created": 1, "owned_by": "nvidia"},
    ]
    called = {"id": "c", "type": "function", "function": {"name": "ping", "arguments": "{}"}}
    upstream.enqueue(reply_json(completion({}, None, tool_calls=[called])))
    listed = run("models", "--probe", "--config", str(config), env={"NVIDIA_API_KEY": "k"})
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].startswith("nvidia/meta/llama-3.3-70b-instruct")
    assert "context=128K" in lines[0] and "probe: entitled, tool calls work" in lines[0]
    assert not any("embed" in line for line in lines)  # cannot chat: filtered
    assert lines[-1] == "1 chat model(s)"


def test_doctor_says_what_is_wrong(config: Path, upstream: FakeUpstream) -> None:
    no_key = run("doctor", "--config", str(config), env={"PATH": "/usr/bin:/bin"})
    assert no_key.returncode == 1
    assert "[FAIL] provider nvidia: no key: run `nimbridge key set nvidia`" in no_key.stdout
    assert "Claude Code: not found on PATH; install it with: npm install -g " in no_key.stdout

    upstream.enqueue(
        reply_json(
            completion(
                {},
                None,
                tool_calls=[
                    {"id": "c", "type": "function", "function": {"name": "ping", "arguments": "{}"}}
                ],
            )
        )
    )
    good = run("doctor", "--config", str(config), env={"NVIDIA_API_KEY": "nvapi-doctor-key"})
    assert "[  ok] provider nvidia:" in good.stdout
    assert "key from environment" in good.stdout
    assert "[  ok] default model: meta/llama-3.3-70b-instruct on nvidia: tool calls work" in (
        good.stdout
    )
    assert "nvapi-doctor-key" not in good.stdout + good.stderr


def test_commands_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "app", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("serve", "key", "models", "doctor"):
        assert command in out
    finish(spawn("key", "status"))


def test_selftest_passes_offline() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "selftest"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "selftest passed"
    for subject in (
        "server:",
        "/health:",
        "translated request:",
        "streamed request:",
        "keyring backend:",
        "Qt platform plugins:",
    ):
        assert any(subject in line for line in lines), subject
    assert "offscreen" in result.stdout  # Qt's plugins were found
    assert result.stderr == ""  # quiet: the findings are the output


@pytest.mark.parametrize(
    ("platform", "plugins", "passes"),
    [
        ("linux", ["minimal", "offscreen", "wayland", "xcb"], True),
        ("linux", ["minimal", "offscreen"], False),  # a bundle trimmed too far: no desktop
        ("win32", ["minimal", "offscreen", "windows"], True),
        ("win32", ["offscreen", "xcb"], False),
        ("darwin", ["cocoa", "minimal", "offscreen"], True),
        ("darwin", [], False),
    ],
)
def test_selftest_needs_the_desktop_platform_plugin(
    platform: str, plugins: list[str], passes: bool
) -> None:
    from app.commands.doctor import Verdict
    from app.commands.selftest import check_qt_plugins

    finding = check_qt_plugins(plugins, platform)
    assert (finding.verdict is Verdict.OK) is passes
    if not passes:
        assert "missing" in finding.line()


def test_a_locked_keychain_is_said_plainly_and_nimbridge_still_serves(
    config: Path, upstream: FakeUpstream, locked_keychain: SecretServiceInfo
) -> None:
    env = keychain_env(locked_keychain)
    status = run("key", "status", "--config", str(config), env=env)
    assert status.returncode == 0, status.stderr
    assert "Secret Service (GNOME Keyring) is locked" in status.stderr
    assert "in memory for this session only" in status.stderr
    assert "Traceback" not in status.stderr

    log = serve_one_request(config, {**env, "NVIDIA_API_KEY": CANARY}, upstream)
    assert "is locked" in log and CANARY not in log
