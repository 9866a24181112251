"""`nimbridge key`, `models` and `doctor` as a user runs them: real processes, a real
Secret Service, the fake upstream as the provider."""

import json
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anthropic
import pytest

from app import __version__
from app.commands.doctor import Finding, Verdict, check_port, check_web_fetch, check_web_search
from app.config.secrets import MemorySecretStore, ProviderKeys
from app.config.settings import Settings
from app.core.providers import Provider, ProviderKind
from tests.fake_upstream import FakeUpstream, completion, reply_json
from tests.fake_web import BRAVE_KEY, PRIVATE, TAVILY_KEY, FakeWeb, running_fake_web
from tests.integration.conftest import track
from tests.integration.test_cli import base_url_of, finish, spawn
from tests.secret_service import SecretServiceInfo

CANARY = "nvapi-CANARY-0123456789abcdef"
KEYS = (TAVILY_KEY, BRAVE_KEY, "tvly-wrong-key-4d1e")  # search keys no doctor line may show


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

    # A web search key goes the same way, under its own entry.
    search = run("key", "set", "tavily", "--config", str(config), env=env, stdin=KEYS[0] + "\n")
    assert search.stdout == "Stored the Tavily web search key in Secret Service (GNOME Keyring).\n"
    status = run("key", "status", "--config", str(config), env=env)
    assert "tavily  web search  key in Secret Service (GNOME Keyring)" in status.stdout
    assert KEYS[0] not in search.stdout + search.stderr + status.stdout + status.stderr


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
    # A table: a header, one model per line, each column under its name.
    assert lines[0].split() == [
        "MODEL",
        "TOOLS",
        "VISION",
        "REASONING",
        "CONTEXT",
        "OUTPUT",
        "PROBE",
    ]
    assert lines[1].startswith("nvidia/meta/llama-3.3-70b-instruct ")
    assert lines[1][lines[0].index("CONTEXT") :].startswith("128K ")
    assert lines[1][lines[0].index("PROBE") :] == "entitled, tool calls work"
    assert not any("embed" in line for line in lines)  # cannot chat: filtered
    assert lines[-1] == "1 chat model(s)"


def test_doctor_says_what_is_wrong(config: Path, upstream: FakeUpstream) -> None:
    no_key = run("doctor", "--config", str(config), env={"PATH": "/usr/bin:/bin"})
    assert no_key.returncode == 1
    assert "[FAIL] provider nvidia: no key: run `nimbridge key set nvidia`" in no_key.stdout
    assert "Claude Code: not found on PATH; install it with: npm install -g " in no_key.stdout
    assert "[warn] web search: not set up, so clients' web searches" in no_key.stdout
    assert "[  ok] web fetch: on, public addresses only, pages cut at 100,000 characters" in (
        no_key.stdout
    )

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


def test_doctor_warns_of_a_tool_less_model_and_knows_its_own_nimbridge(
    config: Path, upstream: FakeUpstream, tmp_path: Path
) -> None:
    server = spawn("serve", "--config", str(config), env={"NVIDIA_API_KEY": "nvapi-doctor-key"})
    try:
        port = int(base_url_of(server).rsplit(":", 1)[1])
        on_that_port = tmp_path / "on-port.json"
        on_that_port.write_text(json.dumps({**json.loads(config.read_text()), "port": port}))
        # The fake upstream answers the probe with text: no tool call.
        checked = run(
            "doctor",
            "--config",
            str(on_that_port),
            env={"NVIDIA_API_KEY": "nvapi-doctor-key", "PATH": "/usr/bin:/bin"},
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)
        finish(server)
    lines = checked.stdout.splitlines()
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert any(
        line.startswith(
            "[warn] default model: meta/llama-3.3-70b-instruct on nvidia answered without "
            "calling the tool, and Claude Code needs tool calls"
        )
        for line in lines
    ), checked.stdout
    assert f"[  ok] port: 127.0.0.1:{port} is this NimBridge ({__version__}), running" in (
        checked.stdout
    )
    warnings = sum(line.startswith("[warn]") for line in lines)
    assert warnings >= 3 and lines[-1] == f"nothing failed; {warnings} warning(s) above"
    # The keychain is one finding, said once.
    keychain = [
        line for line in (checked.stdout + checked.stderr).splitlines() if "keychain" in line
    ]
    assert len(keychain) == 1 and keychain[0].startswith("[warn] keychain:"), keychain


def test_doctor_warns_of_a_port_another_program_holds(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "settings.json"
        config.write_text(json.dumps({"port": port}))
        finding = check_port("127.0.0.1", port)
    assert finding.verdict is Verdict.WARN and "is in use" in finding.words


@pytest.fixture
async def fake_web() -> AsyncIterator[FakeWeb]:
    async with running_fake_web() as fake:
        yield fake


def _search_settings(
    fake: FakeWeb, backend: str, path: str, providers: tuple[Provider, ...] = ()
) -> Settings:
    return Settings(
        web_search_backend=backend, web_search_base_url=fake.url(path, PRIVATE), providers=providers
    )


async def test_doctor_runs_one_test_search_with_the_key_it_would_use(fake_web: FakeWeb) -> None:
    from_env = ProviderKeys(MemorySecretStore(), env={"TAVILY_API_KEY": TAVILY_KEY})
    tavily = await check_web_search(_search_settings(fake_web, "tavily", "/tavily"), from_env)
    assert tavily.line() == (
        f"[  ok] web search: Tavily ({fake_web.url('/tavily', PRIVATE)}) answered a test "
        "search (a result), key from environment"
    )
    assert fake_web.requests[-1]["body"]["max_results"] == 1  # one credit, one result

    stored = ProviderKeys(MemorySecretStore(), env={})
    stored.set_web_search_key("brave", BRAVE_KEY)
    brave = await check_web_search(_search_settings(fake_web, "brave", "/brave"), stored)
    assert (brave.verdict, brave.words.endswith("key from memory")) == (Verdict.OK, True)

    searxng = await check_web_search(_search_settings(fake_web, "searxng", "/searx"), stored)
    assert searxng.verdict is Verdict.OK and "SearXNG" in searxng.words
    assert all(key not in f.line() for f in (tavily, brave, searxng) for key in KEYS)


async def test_doctor_says_why_web_search_cannot_work(fake_web: FakeWeb) -> None:
    no_keys = ProviderKeys(MemorySecretStore(), env={})
    missing = await check_web_search(_search_settings(fake_web, "tavily", "/tavily"), no_keys)
    assert missing.line() == (
        "[FAIL] web search: tavily has no key: run `nimbridge key set tavily`, "
        "set $TAVILY_API_KEY, or save one in Settings → Web tools"
    )
    assert fake_web.requests == []  # nothing to test without a key

    # A provider named like the backend keeps that name in `nimbridge key`.
    shadowed = _search_settings(
        fake_web,
        "tavily",
        "/tavily",
        providers=(Provider("tavily", ProviderKind.CUSTOM, "http://127.0.0.1:9/v1"),),
    )
    assert (
        "`nimbridge key set web-search-tavily`" in (await check_web_search(shadowed, no_keys)).words
    )

    wrong = ProviderKeys(MemorySecretStore(), env={"TAVILY_API_KEY": KEYS[2]})
    refused = await check_web_search(_search_settings(fake_web, "tavily", "/tavily"), wrong)
    assert refused.verdict is Verdict.FAIL and "the Tavily key was refused" in refused.words
    assert KEYS[2] not in refused.line()  # the fake echoes the key back: scrubbed

    html_only = await check_web_search(
        _search_settings(fake_web, "searxng", "/searx-html"), no_keys
    )
    assert html_only.verdict is Verdict.FAIL
    assert "search: formats: [html, json]" in html_only.words


@pytest.mark.parametrize(
    ("settings", "verdict", "words"),
    [
        (Settings(), Verdict.OK, "on, public addresses only, pages cut at 100,000 characters"),
        (
            Settings(fetch_private_addresses=True, web_fetch_max_chars=5000),
            Verdict.WARN,
            "on, pages cut at 5,000 characters, and private addresses allowed "
            '("fetch_private_addresses": true): a model or a page\'s redirect can reach '
            "localhost and your LAN through it; turn that off unless you need it",
        ),
        (
            Settings(web_fetch_enabled=False),
            Verdict.OK,
            'off ("web_fetch_enabled": false): clients\' web_fetch calls get an error',
        ),
    ],
)
def test_doctor_reports_web_fetch(settings: Settings, verdict: Verdict, words: str) -> None:
    assert check_web_fetch(settings) == Finding(verdict, "web fetch", words)


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
