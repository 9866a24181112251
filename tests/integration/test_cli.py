"""`nimbridge serve` as a user runs it: a real process, real signals, real ports."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import anthropic
import pytest

from tests.fake_upstream import FakeUpstream, http_request, reply_stream, text_stream
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
    upstream: FakeUpstream, program: Sequence[str] = (sys.executable, "-m", "app")
) -> subprocess.Popen[str]:
    """`serve` on a free port in front of the fake upstream, with a proxy key."""
    return spawn(
        "serve",
        "--port",
        "0",
        "--upstream-url",
        upstream.base_url,
        "--model",
        "fake/model",
        "--proxy-key",
        PROXY_KEY,
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
