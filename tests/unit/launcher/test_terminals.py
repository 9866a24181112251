"""Terminal command lines per OS and terminal, the launch scripts, and the setup lines."""

import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.launcher.discovery import INSTALL_COMMAND
from app.launcher.terminals import (
    CREATE_NEW_CONSOLE,
    LaunchError,
    launch_in_terminal,
    setup_lines,
    terminal_command,
    write_launch_script,
    write_launch_script_windows,
)

SCRIPT = Path("/tmp/nimbridge-claude-x.sh")
ENV = {
    "ANTHROPIC_BASE_URL": "http://127.0.0.1:8787",
    "ANTHROPIC_AUTH_TOKEN": "secret-token",
    "ANTHROPIC_MODEL": "it's/model",
}


def which_of(*installed: str) -> Callable[[str], str | None]:
    return lambda name: f"/usr/bin/{name}" if name in installed else None


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        ("x-terminal-emulator", ["-e"]),
        ("gnome-terminal", ["--"]),
        ("konsole", ["-e"]),
        ("xfce4-terminal", ["-x"]),
        ("kitty", []),
        ("alacritty", ["-e"]),
        ("wezterm", ["start", "--"]),
        ("xterm", ["-e"]),
    ],
)
def test_each_linux_terminal_has_its_prefix(name: str, prefix: list[str]) -> None:
    command = terminal_command(SCRIPT, platform="linux", env={}, which=which_of(name))
    assert command == [f"/usr/bin/{name}", *prefix, "bash", str(SCRIPT)]


def test_linux_order_of_preference() -> None:
    which = which_of("xterm", "konsole", "gnome-terminal")
    command = terminal_command(SCRIPT, platform="linux", env={}, which=which)
    assert command is not None and command[0] == "/usr/bin/gnome-terminal"


def test_terminal_variable_comes_first() -> None:
    which = which_of("foot", "kitty", "xterm")
    command = terminal_command(SCRIPT, platform="linux", env={"TERMINAL": "foot"}, which=which)
    assert command == ["/usr/bin/foot", "-e", "bash", str(SCRIPT)]
    # a known terminal named in $TERMINAL keeps its own prefix, and its arguments
    env = {"TERMINAL": "gnome-terminal --wait"}
    command = terminal_command(SCRIPT, platform="linux", env=env, which=which_of("gnome-terminal"))
    assert command == ["/usr/bin/gnome-terminal", "--wait", "--", "bash", str(SCRIPT)]
    # $TERMINAL naming nothing installed: fall back to the list
    command = terminal_command(SCRIPT, platform="linux", env={"TERMINAL": "nope"}, which=which)
    assert command is not None and command[0] == "/usr/bin/kitty"


def test_no_linux_terminal() -> None:
    assert terminal_command(SCRIPT, platform="linux", env={}, which=which_of()) is None


def test_macos_uses_terminal_through_osascript() -> None:
    script = Path('/tmp/odd "dir"/s.sh')
    command = terminal_command(script, platform="darwin", env={}, which=which_of())
    assert command == [
        "osascript",
        "-e",
        'tell application "Terminal" to do script "bash \'/tmp/odd \\"dir\\"/s.sh\'"',
        "-e",
        'tell application "Terminal" to activate',
    ]


def test_windows_terminal_else_cmd() -> None:
    script = Path("C:/Temp/nimbridge-claude-x.cmd")
    command = terminal_command(script, platform="win32", env={}, which=which_of("wt.exe"))
    assert command == ["/usr/bin/wt.exe", "cmd", "/k", str(script)]
    command = terminal_command(script, platform="win32", env={}, which=which_of())
    assert command == ["cmd.exe", "/k", str(script)]


def test_posix_script(tmp_path: Path) -> None:
    folder = tmp_path / "my project"
    script = write_launch_script(ENV, folder, Path("/opt/claude bin/claude"), directory=tmp_path)
    assert stat.S_IMODE(script.stat().st_mode) == 0o600
    text = script.read_text()
    lines = text.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert lines[2] == 'rm -f -- "$0"'  # removes itself before anything can fail
    assert lines[3].startswith(f"cd -- '{folder}' || ")
    assert "export ANTHROPIC_AUTH_TOKEN=secret-token" in lines
    assert "export ANTHROPIC_MODEL='it'\"'\"'s/model'" in lines
    assert "unset ANTHROPIC_API_KEY" in lines
    assert lines[-1] == "exec '/opt/claude bin/claude'"


@pytest.mark.skipif(sys.platform == "win32", reason="runs bash")
def test_posix_script_adds_no_proxy_to_the_shells_own(tmp_path: Path) -> None:
    """The terminal's shell may hold NO_PROXY entries NimBridge never saw: kept, ours added;
    `program_args` (NO_PROXY as settings) reach Claude Code whole."""
    fake_claude = tmp_path / "claude"
    fake_claude.write_text('#!/bin/sh\necho "$NO_PROXY|$no_proxy"\nprintf "%s\\n" "$@"\n')
    fake_claude.chmod(0o755)
    env = {**ENV, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    settings = '{"env": {"NO_PROXY": "a b\'c"}}'
    script = write_launch_script(
        env, tmp_path, fake_claude, directory=tmp_path, program_args=["--settings", settings]
    )
    result = subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "NO_PROXY": "shell.example"},
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "shell.example,127.0.0.1,localhost|127.0.0.1,localhost"
    assert lines[1:] == ["--settings", settings]


def test_setup_lines_add_no_proxy_to_the_shells_own() -> None:
    lines = setup_lines({"NO_PROXY": "127.0.0.1"}, shell="posix").splitlines()
    assert lines[0] == 'export NO_PROXY="${NO_PROXY:+$NO_PROXY,}"127.0.0.1'


@pytest.mark.skipif(sys.platform == "win32", reason="runs bash")
def test_posix_script_runs_and_removes_itself(tmp_path: Path) -> None:
    fake_claude = tmp_path / "claude"
    fake_claude.write_text(
        '#!/bin/sh\necho "$PWD|$ANTHROPIC_AUTH_TOKEN|${ANTHROPIC_API_KEY-unset}"\n'
    )
    fake_claude.chmod(0o755)
    script = write_launch_script(ENV, tmp_path, fake_claude, directory=tmp_path)
    result = subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "ANTHROPIC_API_KEY": "real-anthropic-key"},
        check=True,
    )
    assert result.stdout.strip() == f"{tmp_path}|secret-token|unset"
    assert not script.exists()


def test_windows_script(tmp_path: Path) -> None:
    env = {**ENV, "API_TIMEOUT_MS": "100%"}
    folder = Path("C:/work/a & b")
    claude = Path("C:/npm/claude.cmd")
    script = write_launch_script_windows(env, folder, claude, directory=tmp_path)
    assert script.suffix == ".cmd"
    assert stat.S_IMODE(script.stat().st_mode) == 0o600 or sys.platform == "win32"
    lines = script.read_bytes().decode().split("\r\n")
    assert lines[0] == "@echo off"
    assert lines[1] == f'cd /d "{folder}"'
    assert 'set "ANTHROPIC_AUTH_TOKEN=secret-token"' in lines
    assert 'set "API_TIMEOUT_MS=100%%"' in lines
    assert 'set "ANTHROPIC_API_KEY="' in lines
    assert lines[-2] == f'del "%~f0" & "{claude}"'
    with pytest.raises(LaunchError):
        write_launch_script_windows({"X": 'a"b'}, folder, claude, directory=tmp_path)


class FakePopen:
    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict[str, Any]]] = []

    def __call__(self, command: list[str], **options: Any) -> None:
        self.calls.append((command, options))


def test_launch_runs_the_terminal_without_the_token_in_argv(tmp_path: Path) -> None:
    popen = FakePopen()
    command = launch_in_terminal(
        tmp_path,
        ENV,
        Path("/usr/bin/claude"),
        platform="linux",
        popen=popen,
        which=which_of("xterm"),
        environ={},
    )
    assert popen.calls == [
        (
            command,
            {
                "stdin": subprocess.DEVNULL,
                "stdout": subprocess.DEVNULL,
                "stderr": subprocess.DEVNULL,
                "start_new_session": True,
            },
        )
    ]
    assert command[:4] == ["/usr/bin/xterm", "-e", "bash", command[3]]
    assert not any("secret-token" in word for word in command)
    script = Path(command[3])
    assert "secret-token" in script.read_text()
    script.unlink()


def test_launch_on_windows_opens_a_new_console(tmp_path: Path) -> None:
    popen = FakePopen()
    command = launch_in_terminal(
        tmp_path, ENV, Path("C:/npm/claude.cmd"), platform="win32", popen=popen, which=which_of()
    )
    assert command[:2] == ["cmd.exe", "/k"] and command[2].endswith(".cmd")
    assert popen.calls[0][1]["creationflags"] == CREATE_NEW_CONSOLE
    Path(command[2]).unlink()


def test_launch_errors_have_words(tmp_path: Path) -> None:
    popen = FakePopen()
    with pytest.raises(LaunchError, match=INSTALL_COMMAND):
        launch_in_terminal(tmp_path, ENV, None, platform="linux", popen=popen, which=which_of())
    with pytest.raises(LaunchError, match=r"no terminal found: set \$TERMINAL or install xterm"):
        launch_in_terminal(
            tmp_path,
            ENV,
            Path("/usr/bin/claude"),
            platform="linux",
            popen=popen,
            which=which_of(),
            environ={},
        )
    with pytest.raises(LaunchError, match="is not a folder"):
        launch_in_terminal(
            tmp_path / "gone", ENV, Path("/usr/bin/claude"), platform="linux", popen=popen
        )

    def broken(command: list[str], **options: Any) -> None:
        raise FileNotFoundError(command[0])

    with pytest.raises(LaunchError, match="could not start /usr/bin/xterm"):
        launch_in_terminal(
            tmp_path,
            ENV,
            Path("/usr/bin/claude"),
            platform="linux",
            popen=broken,
            which=which_of("xterm"),
            environ={},
        )
    assert popen.calls == []


def test_setup_lines_in_three_shells() -> None:
    env = {"ANTHROPIC_AUTH_TOKEN": "k", "ANTHROPIC_MODEL": "it's"}
    assert setup_lines(env, shell="posix") == (
        "export ANTHROPIC_AUTH_TOKEN=k\n"
        "export ANTHROPIC_MODEL='it'\"'\"'s'\n"
        "unset ANTHROPIC_API_KEY\n"
    )
    assert setup_lines(env, shell="powershell") == (
        "$env:ANTHROPIC_AUTH_TOKEN = 'k'\n"
        "$env:ANTHROPIC_MODEL = 'it''s'\n"
        "Remove-Item Env:ANTHROPIC_API_KEY -ErrorAction SilentlyContinue\n"
    )
    assert setup_lines(env, shell="cmd") == (
        'set "ANTHROPIC_AUTH_TOKEN=k"\nset "ANTHROPIC_MODEL=it\'s"\nset ANTHROPIC_API_KEY=\n'
    )


def test_windows_script_quotes_each_argument_and_unsets_what_it_is_told(tmp_path: Path) -> None:
    codex = Path("C:/npm/codex.cmd")
    script = write_launch_script_windows(
        {"NIMBRIDGE_CODEX_KEY": "k"},
        Path("C:/work"),
        codex,
        directory=tmp_path,
        program_args=["-c", "model_provider='nimbridge'", "-m", "a&b"],
        unset=("OPENAI_API_KEY",),
    )
    assert script.name.startswith("nimbridge-codex-")
    lines = script.read_bytes().decode().split("\r\n")
    assert 'set "OPENAI_API_KEY="' in lines and 'set "ANTHROPIC_API_KEY="' not in lines
    assert lines[-2] == f'del "%~f0" & "{codex}" "-c" "model_provider=\'nimbridge\'" "-m" "a&b"'
    with pytest.raises(LaunchError):
        write_launch_script_windows(
            {}, Path("C:/work"), codex, directory=tmp_path, program_args=['{"a": 1}']
        )
