"""`nimbridge serve` as a user runs it: a real process, real signals, real ports."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import anthropic
import pytest

from tests.fake_upstream import (
    FakeUpstream,
    http_request,
    reply_json,
    reply_stream,
    text_stream,
)
from tests.integration.conftest import track


def spawn(
    *args: str,
    env: dict[str, str] | None = None,
    program: Sequence[str] = (sys.executable, "-m", "app"),
) -> subprocess.Popen[str]:
    """`nimbridge ARGS` as a user runs it (`program`: the installed or bundled one)."""
    # A settings home of its own: the user's real settings and keychain stay out of it.
    home = tempfile.mkdtemp(prefix="nimbridge-cli-")
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "XDG_CONFIG_HOME": home, **(env or {})}
    for name in ("NIMBRIDGE_PROXY_KEY", "NVIDIA_API_KEY", "NGC_API_KEY"):
        full_env.pop(name, None)
    full_env.update(env or {})
    full_env.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    return subprocess.Popen(
        [*program, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )


def base_url_of(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("NimBridge listening on http://127.0.0.1:"), line
    return line.split()[-1]


PROXY_KEY = "cli-proxy-key"
UPSTREAM_SECRET = "nvapi-cli-upstream-secret"


def spawn_serve(
    upstream: FakeUpstream,
    program: Sequence[str] = (sys.executable, "-m", "app"),
    extra: Sequence[str] = (),
) -> subprocess.Popen[str]:
    """`serve` on a free port in front of the fake upstream (as NVIDIA), with a proxy key."""
    # --upstream-url would pick the custom preset for a loopback URL: the file names NVIDIA's.
    config = Path(tempfile.mkdtemp(prefix="nimbridge-cli-")) / "settings.json"
    config.write_text(
        json.dumps(
            {"providers": [{"name": "nvidia", "kind": "nvidia", "base_url": upstream.base_url}]}
        )
    )
    return spawn(
        "serve",
        "--config",
        str(config),
        "--port",
        "0",
        "--model",
        "fake/model",
        "--proxy-key",
        PROXY_KEY,
        *extra,
        env={"NVIDIA_API_KEY": UPSTREAM_SECRET},
        program=program,
    )


@pytest.fixture
def served(upstream: FakeUpstream) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = spawn_serve(upstream)
    try:
        yield process, base_url_of(process)
    finally:
        finish(process)


def finish(process: subprocess.Popen[str]) -> None:
    """Kill if still running, and close the pipes (ResourceWarnings are errors here)."""
    if process.poll() is None:
        process.kill()
    process.communicate(timeout=10)


def test_serve_answers_and_stops_cleanly_on_sigterm(
    served: tuple[subprocess.Popen[str], str], upstream: FakeUpstream
) -> None:
    process, url = served
    assert json.loads(http_request(url + "/health")[2])["status"] == "ok"
    client = track(anthropic.Anthropic(base_url=url, api_key="cli-proxy-key", max_retries=0))
    message = client.messages.create(
        model="claude-opus-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].type == "text" and message.content[0].text == "You said: hi"
    assert upstream.chat_requests[-1].body["model"] == "fake/model"
    assert upstream.chat_requests[-1].headers["Authorization"] == "Bearer nvapi-cli-upstream-secret"
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0
    assert process.stderr is not None
    log = process.stderr.read()
    assert "claude-opus-4-5 -> fake/model" in log  # the one line per request
    assert "nvapi-cli-upstream-secret" not in log and "cli-proxy-key" not in log


# `nimbridge serve` as installed, and with uvloop hidden as on Windows (no such wheel).
WITHOUT_UVLOOP = (
    sys.executable,
    "-c",
    "import sys; sys.modules['uvloop'] = None; import app.cli; sys.exit(app.cli.main())",
)


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop is no dependency on Windows")
@pytest.mark.parametrize(
    ("program", "loop"),
    [
        pytest.param((sys.executable, "-m", "app"), "uvloop.Loop", id="uvloop"),
        pytest.param(WITHOUT_UVLOOP, "asyncio.unix_events._UnixSelectorEventLoop", id="asyncio"),
    ],
)
def test_serve_runs_on_uvloop_where_it_is_installed(
    upstream: FakeUpstream, program: Sequence[str], loop: str
) -> None:
    process = spawn_serve(upstream, program, extra=("--log-level", "DEBUG"))
    try:
        url = base_url_of(process)
        assert json.loads(http_request(url + "/health")[2])["status"] == "ok"
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        assert process.stderr is not None
        log = process.stderr.read()
    finally:
        finish(process)
    assert f"event loop: {loop}\n" in log
    assert ("uvloop is not installed" in log) is (loop != "uvloop.Loop")


def test_sigint_lets_an_in_flight_stream_finish(
    served: tuple[subprocess.Popen[str], str], upstream: FakeUpstream
) -> None:
    process, url = served
    upstream.enqueue(
        reply_stream(lambda b: text_stream(b, "slow but complete", pieces=8), delay=0.1)
    )
    client = track(anthropic.Anthropic(base_url=url, api_key="cli-proxy-key", max_retries=0))
    with client.messages.stream(
        model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        first = next(iter(stream.text_stream))
        process.send_signal(signal.SIGINT)
        rest = "".join(stream.text_stream)
    assert first + rest == "slow but complete"
    assert process.wait(10) == 0


def test_port_taken_exits_nonzero_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = spawn("serve", "--port", str(port))
        _, err = process.communicate(timeout=20)
    assert process.returncode == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0]


def test_a_second_serve_on_the_same_port_fails_fast_and_the_first_keeps_serving(
    served: tuple[subprocess.Popen[str], str],
) -> None:
    first, url = served
    port = url.rsplit(":", 1)[1]
    second = spawn("serve", "--port", port)
    _, err = second.communicate(timeout=20)
    assert second.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in err and "another NimBridge" in err
    assert first.poll() is None
    assert json.loads(http_request(url + "/health")[2])["status"] == "ok"


def test_sigterm_mid_stream_ends_it_with_an_error_event_then_exits(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"shutdown_grace_s": 0.5}))
    words = " ".join(f"w{n}" for n in range(400))
    upstream.enqueue(reply_stream(lambda b: text_stream(b, words, pieces=400), delay=0.05))
    process = spawn(
        "serve",
        "--config",
        str(config),
        "--port",
        "0",
        "--upstream-url",
        upstream.base_url,
        "--proxy-key",
        PROXY_KEY,
        env={"NVIDIA_API_KEY": UPSTREAM_SECRET},
    )
    try:
        url = base_url_of(process)
        client = track(anthropic.Anthropic(base_url=url, api_key=PROXY_KEY, max_retries=0))
        received = ""
        with (
            pytest.raises(anthropic.APIStatusError, match="NimBridge is stopping"),
            client.messages.stream(
                model="claude-sonnet-4-6",
                max_tokens=10,
                messages=[{"role": "user", "content": "hi"}],
            ) as stream,
        ):
            for text in stream.text_stream:
                if not received:
                    process.send_signal(signal.SIGTERM)
                received += text
        assert received.startswith("w0") and not received.endswith("w399")
        assert process.wait(0.5 + 10) == 0
        _, err = process.communicate(timeout=10)
        assert "1 request(s) still running after the 0.5 s grace period" in err
        assert "error='NimBridge is stopping" in err  # the request's own line says why
        assert upstream.cancelled.wait(5)  # the upstream request was aborted
        again = spawn("serve", "--port", url.rsplit(":", 1)[1])  # the port is free at once
        try:
            assert base_url_of(again) == url
        finally:
            again.send_signal(signal.SIGTERM)
            assert again.wait(10) == 0
            finish(again)
    finally:
        finish(process)


def test_code_on_sigterm_ends_claude_code_then_stops_its_server(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    fake_claude = tmp_path / "bin" / "claude"
    fake_claude.parent.mkdir()
    fake_claude.write_text("#!/bin/sh\necho claude-started\nexec sleep 60\n")
    fake_claude.chmod(0o755)
    config = tmp_path / "settings.json"
    # Port 1: nothing answers there, so `code` starts a server of its own.
    config.write_text(json.dumps({"port": 1, "shutdown_grace_s": 1.0}))
    process = spawn(
        "code",
        "--config",
        str(config),
        env={"PATH": f"{fake_claude.parent}{os.pathsep}{os.environ['PATH']}"},
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "claude-started"
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 128 + signal.SIGTERM  # Claude Code's end, as a shell says
        _, err = process.communicate(timeout=10)
        assert "started NimBridge at" in err and "Traceback" not in err
    finally:
        finish(process)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "not valid JSON"),
        ('{"port": "eighty"}', "'port'"),
        ('{"port": 99999}', "'port'"),
        (
            '{"providers": [{"name": "x", "kind": "custom", "base_url": "ftp://x"}]}',
            "'providers[0].base_url'",
        ),
        ('{"providers": [{"name": "x", "kind": "bogus"}]}', "'providers[0].kind'"),
        ('{"tiers": {"opus": 5}}', "'tiers.opus'"),
    ],
)
def test_invalid_config_exits_nonzero_naming_file_and_key(
    tmp_path: Path, content: str, needle: str
) -> None:
    config = tmp_path / "settings.json"
    config.write_text(content)
    process = spawn("serve", "--config", str(config))
    _, err = process.communicate(timeout=20)
    assert process.returncode == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and str(config) in lines[0] and needle in lines[0]


HOSTILE_FILES: dict[str, bytes] = {
    "nan-ping": b'{"ping_interval_s": NaN}',
    "infinite-timeout": b'{"read_timeout_s": Infinity}',
    "1e400-deadline": b'{"upstream_deadline_s": 1e400}',
    "invalid-utf8": b'{"host": "\xff\xfe"}',
    "deep-nesting": b"[" * 100_000 + b"]" * 100_000,
    "duplicate-key": b'{"port": 1, "port": 2}',
    "forged-log-line": json.dumps(
        {"providers": [{"name": "x\nINFO forged\x1b[31m", "kind": "vllm"}]}
    ).encode(),
    "huge": b" " * (2 * 1024 * 1024) + b"{}",
}


@pytest.mark.parametrize("content", HOSTILE_FILES.values(), ids=HOSTILE_FILES.keys())
def test_a_hostile_settings_file_is_exit_2_and_one_line(tmp_path: Path, content: bytes) -> None:
    config = tmp_path / "settings.json"
    config.write_bytes(content)
    process = spawn("serve", "--config", str(config), "--port", "0")
    try:
        _, err = process.communicate(timeout=30)
    finally:
        finish(process)  # a server that took the file would otherwise keep running
    lines = [line for line in err.splitlines() if line.strip()]
    assert process.returncode == 2, err
    assert len(lines) == 1 and lines[0].startswith("nimbridge: invalid settings: "), err
    assert str(config) in lines[0] and "Traceback" not in err


def test_a_directory_as_settings_file_is_exit_2_and_one_line(tmp_path: Path) -> None:
    process = spawn("serve", "--config", str(tmp_path), "--port", "0")
    try:
        _, err = process.communicate(timeout=30)
    finally:
        finish(process)
    lines = [line for line in err.splitlines() if line.strip()]
    assert process.returncode == 2 and len(lines) == 1 and "not a regular file" in lines[0], err


@pytest.mark.parametrize("command", [["models"], ["doctor"], ["key", "status"], ["code"]])
def test_every_command_refuses_a_hostile_file_in_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    config = tmp_path / "settings.json"
    config.write_bytes(b'{"ping_interval_s": NaN, "host": "\xff"}')
    process = spawn(*command, "--config", str(config))
    try:
        _, err = process.communicate(timeout=60)
    finally:
        finish(process)
    lines = [line for line in err.splitlines() if line.strip()]
    assert process.returncode == 2 and len(lines) == 1 and str(config) in lines[0], err


def test_a_flag_out_of_range_is_exit_2_and_one_line() -> None:
    process = spawn("serve", "--port", "70000")
    try:
        _, err = process.communicate(timeout=30)
    finally:
        finish(process)
    lines = [line for line in err.splitlines() if line.strip()]
    assert process.returncode == 2 and len(lines) == 1, err
    assert "command line: 'port' must be a whole number from 0 to 65535, got 70000" in lines[0]


def test_config_file_values_are_used(tmp_path: Path, upstream: FakeUpstream) -> None:
    config = tmp_path / "settings.json"
    config.write_text(
        json.dumps(
            {
                "providers": [{"name": "local", "kind": "vllm", "base_url": upstream.base_url}],
                "tiers": {"default": "from/config", "haiku": "small/model"},
                "port": 0,
            }
        )
    )
    process = spawn("serve", "--config", str(config))
    try:
        url = base_url_of(process)
        client = track(anthropic.Anthropic(base_url=url, api_key="passthrough-key", max_retries=0))
        client.messages.create(
            model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
        assert upstream.chat_requests[-1].body["model"] == "small/model"
        client.messages.create(
            model="claude-opus-4-5", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
        assert upstream.chat_requests[-1].body["model"] == "from/config"
        # No proxy key configured: the client's own key is passed through.
        assert upstream.chat_requests[-1].headers["Authorization"] == "Bearer passthrough-key"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        finish(process)


def test_help_lists_the_serve_flags() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for flag in (
        "--host",
        "--port",
        "--upstream-url",
        "--model",
        "--proxy-key",
        "--config",
        "--log-level",
    ):
        assert flag in out


# ------------------------------------------------------------------ a new user's first hour

HEAVY_MODULES = ("aiohttp", "pypdf", "bs4", "PySide6", "keyring")


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["serve", "--help"]])
def test_version_and_help_import_only_what_they_need(args: list[str]) -> None:
    """They answer at once: nothing heavy is imported, measured as the modules loaded."""
    probe = (
        "import sys\n"
        "import app.cli\n"
        "try:\n"
        f"    app.cli.main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr
    assert done.stdout  # it did answer
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "app", *args], capture_output=True, timeout=60, check=True
    )
    assert time.monotonic() - started < 1.5  # generous: 0.3 s on an idle machine


def test_an_unknown_flag_shows_that_commands_usage() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--bogus"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("usage: nimbridge serve ")
    assert "unrecognized arguments: --bogus" in done.stderr


@pytest.mark.parametrize(
    "command", [["serve"], ["models"], ["doctor"], ["key", "status"], ["code"], ["selftest"]]
)
def test_a_named_settings_file_that_does_not_exist_is_an_error(
    command: list[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "settings.json"
    process = spawn(*command, "--config", str(missing))
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and str(missing) in lines[0] and "does not exist" in lines[0], err


def test_the_tray_app_may_be_named_a_settings_file_it_will_create(tmp_path: Path) -> None:
    # Its first run creates the file; here, without a display, it stops for that reason.
    missing = tmp_path / "settings.json"
    no_display = {"DISPLAY": "", "WAYLAND_DISPLAY": "", "QT_QPA_PLATFORM": ""}
    process = spawn("--config", str(missing), env=no_display)
    try:
        _, err = process.communicate(timeout=60)
    finally:
        finish(process)  # a tray app left running would hold the single-instance lock
    assert process.returncode == 2 and "no display found" in err and "does not exist" not in err


@pytest.mark.parametrize(
    ("url", "preset"),
    [
        ("http://127.0.0.1:9/v1", "custom"),
        ("http://localhost:11434/v1", "ollama"),
        ("https://integrate.api.nvidia.com/v1", "nvidia"),
    ],
)
def test_serve_says_which_preset_its_upstream_url_picked(url: str, preset: str) -> None:
    process = spawn("serve", "--port", "0", "--upstream-url", url)
    try:
        base_url_of(process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        _, err = process.communicate(timeout=10)
        assert f"provider nvidia: {preset} preset at {url}" in err, err
    finally:
        finish(process)


def fake_claude(folder: Path, script: str) -> dict[str, str]:
    """A `claude` on PATH that runs `script` (Python) instead; the env to find it."""
    claude = folder / "bin" / "claude"
    claude.parent.mkdir(parents=True, exist_ok=True)
    claude.write_text(f"#!{sys.executable}\n{script}")
    claude.chmod(0o755)
    return {"PATH": f"{claude.parent}{os.pathsep}{os.environ['PATH']}"}


def test_code_joining_a_nimbridge_with_another_proxy_key_says_so_and_stops(
    served: tuple[subprocess.Popen[str], str], tmp_path: Path
) -> None:
    _, url = served
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"port": int(url.rsplit(":", 1)[1])}))
    env = fake_claude(tmp_path, "print('claude-started')\n")
    refused = spawn("code", "--config", str(config), env=env)
    out, err = refused.communicate(timeout=60)
    assert refused.returncode == 2 and "claude-started" not in out
    lines = [line for line in err.splitlines() if "nimbridge:" in line]
    assert any(
        "needs a proxy key, and none was given" in line
        and "--proxy-key" in line
        and "NIMBRIDGE_PROXY_KEY" in line
        for line in lines
    ), err
    assert PROXY_KEY not in err
    wrong = spawn("code", "--config", str(config), env={**env, "NIMBRIDGE_PROXY_KEY": "wrong"})
    out, err = wrong.communicate(timeout=60)
    assert wrong.returncode == 2 and "claude-started" not in out
    assert "refused the proxy key given: pass the key it was started with" in err, err
    joined = spawn("code", "--config", str(config), env={**env, "NIMBRIDGE_PROXY_KEY": PROXY_KEY})
    out, err = joined.communicate(timeout=60)
    assert joined.returncode == 0 and out.strip() == "claude-started", err


CLAUDE_ASKS_ONCE = """\
import json, os, sys, urllib.error, urllib.request
print("CLAUDE-START", file=sys.stderr, flush=True)
request = urllib.request.Request(
    os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages",
    data=json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 5,
                     "messages": [{"role": "user", "content": "hi"}]}).encode(),
    headers={"Authorization": "Bearer " + os.environ["ANTHROPIC_AUTH_TOKEN"],
             "content-type": "application/json"},
)
try:
    urllib.request.urlopen(request, timeout=30).read()
except urllib.error.HTTPError as error:
    print("status", error.code)
print("CLAUDE-END", file=sys.stderr, flush=True)
"""


def test_code_keeps_the_terminal_to_claude_code_and_sums_up_problems_after(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.enqueue(reply_json({"error": {"message": "upstream fell over"}}, status=500))
    config = tmp_path / "settings.json"
    config.write_text(
        json.dumps(
            {
                "providers": [{"name": "nvidia", "kind": "nvidia", "base_url": upstream.base_url}],
                "port": 1,  # nothing answers there: `code` starts its own server
                "retry_max_attempts": 1,
            }
        )
    )
    state = tmp_path / "state"
    env = {**fake_claude(tmp_path, CLAUDE_ASKS_ONCE), "XDG_STATE_HOME": str(state)}
    process = spawn("code", "--config", str(config), env=env)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "status 500" in out
    during = err.split("CLAUDE-START\n", 1)[1].split("CLAUDE-END\n", 1)
    assert during[0] == "", err  # nothing but Claude Code wrote while it ran
    after = during[1]
    assert "1 warning" in after and "upstream fell over" in after, after
    log_files = list(state.rglob("*.log"))
    assert len(log_files) == 1 and str(log_files[0]) in after
    logged = log_files[0].read_text()
    assert (
        "WARNING app.server.app: req_" in logged and "POST /v1/messages claude-sonnet-4-6" in logged
    )
