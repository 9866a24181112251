"""The tray's "Launch Claude Code..." and "Launch Codex...", offscreen: dialogs faked, the
terminal caught at `popen`."""

import json
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMessageBox, QPushButton
from pytestqt.qtbot import QtBot

from app.config.settings import Settings, TierModels
from app.launcher import codex as codex_launch
from app.launcher.discovery import INSTALL_COMMAND
from app.launcher.environment import own_statusline_command, status_line_setting
from app.service import ServerState
from app.ui.launch import (
    CLAUDE_CODE,
    CODEX,
    MAX_RECENT,
    Agent,
    AgentLauncher,
    FolderChooser,
    remember,
)
from app.ui.tray import TrayMenu, Windows
from tests.ui.fakes import FakeController
from tests.ui.qt_async import qasync_loop  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("qasync_loop")

CLAUDE = Path("/opt/claude/bin/claude")


class Recorder:
    """The seams: folder chooser, error box and popen, all remembered."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.offered: list[list[Path]] = []
        self.agents: list[str] = []
        self.errors: list[tuple[str, str, str | None]] = []
        self.commands: list[list[str]] = []

    def choose(self, recent: Sequence[Path], agent: str) -> Path | None:
        self.offered.append(list(recent))
        self.agents.append(agent)
        return self.folder

    def error(self, title: str, text: str, copy_text: str | None) -> None:
        self.errors.append((title, text, copy_text))

    def popen(self, command: list[str], **options: Any) -> None:
        self.commands.append(command)
        Path(command[-1]).unlink()  # the terminal would run and remove it


def launcher_for(
    controller: FakeController,
    seams: Recorder,
    claude: Path | None = CLAUDE,
    agent: Agent | None = None,
) -> AgentLauncher:
    return AgentLauncher(
        controller,
        agent or CLAUDE_CODE,
        choose_folder=seams.choose,
        show_error=seams.error,
        find=lambda: claude,
        popen=seams.popen,
        which=lambda name: f"/usr/bin/{name}" if name == "konsole" else None,
        platform="linux",
    )


@pytest.fixture
def controller() -> FakeController:
    settings = Settings(
        tiers=TierModels(default="qwen/coder"), ui={"recent_folders": ["/old/one", "/old/two"]}
    )
    return FakeController(settings)


def test_tray_action_starts_the_server_and_opens_a_terminal(
    controller: FakeController, tmp_path: Path, qtbot: QtBot
) -> None:
    seams = Recorder(tmp_path)
    launcher = launcher_for(controller, seams)
    menu = TrayMenu(controller, Windows(launch_claude_code=launcher.launch))
    assert menu.action("Launch Claude Code...").isEnabled()
    menu.action("Launch Claude Code...").trigger()
    qtbot.waitUntil(lambda: len(controller.saved) == 1)
    assert controller.calls == ["start", "apply_settings"]  # stopped, so started first
    assert seams.offered == [[Path("/old/one"), Path("/old/two")]]
    [command] = seams.commands
    assert command[:3] == ["/usr/bin/konsole", "-e", "bash"]
    assert Path(command[3]).name.startswith("nimbridge-claude-")
    assert controller.saved[0].ui["recent_folders"] == [str(tmp_path), "/old/one", "/old/two"]
    assert seams.errors == []


def test_running_server_is_reused_and_the_script_holds_the_key(
    controller: FakeController, tmp_path: Path, qtbot: QtBot
) -> None:
    controller.set_status(
        state=ServerState.RUNNING,
        base_url="http://127.0.0.1:9999",
        proxy_key="local-key",
        tiers=TierModels(default="qwen/qwen3-coder-480b-a35b-instruct"),
    )
    scripts: list[str] = []
    seams = Recorder(tmp_path)

    def popen(command: list[str], **options: Any) -> None:
        seams.commands.append(command)
        scripts.append(Path(command[-1]).read_text())
        Path(command[-1]).unlink()

    launcher = launcher_for(controller, seams)
    launcher.popen = popen
    launcher.launch()
    qtbot.waitUntil(lambda: len(controller.saved) == 1)
    assert "start" not in controller.calls
    assert not any("local-key" in word for word in seams.commands[0])
    assert "export ANTHROPIC_AUTH_TOKEN=local-key" in scripts[0]
    assert "export ANTHROPIC_BASE_URL=http://127.0.0.1:9999" in scripts[0]
    assert f"cd -- {tmp_path}" in scripts[0]
    # Claude Code compacts at the model's real window (256K for Qwen3 Coder), not 200K.
    assert "export CLAUDE_CODE_AUTO_COMPACT_WINDOW=262144" in scripts[0]


def test_the_script_lists_nimbridges_models_and_bypasses_the_users_proxy(
    controller: FakeController, tmp_path: Path, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`/model` discovery on; NO_PROXY gains the loopback names, keeping the user's
    (environment and Claude Code settings file); as `--settings` too, since that file's
    NO_PROXY would otherwise replace the environment's."""
    config = tmp_path / "claude-config"
    config.mkdir()
    (config / "settings.json").write_text('{"env": {"NO_PROXY": "from-settings.example"}}')
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(config))
    monkeypatch.setenv("NO_PROXY", "corp.example")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    controller.set_status(
        state=ServerState.RUNNING, base_url="http://127.0.0.1:9999", proxy_key="local-key"
    )
    scripts: list[str] = []
    seams = Recorder(tmp_path)

    def popen(command: list[str], **options: Any) -> None:
        scripts.append(Path(command[-1]).read_text())
        Path(command[-1]).unlink()

    launcher = launcher_for(controller, seams)
    launcher.popen = popen
    launcher.launch()
    qtbot.waitUntil(lambda: len(controller.saved) == 1)
    lines = scripts[0].splitlines()
    assert "export CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1" in lines
    merged = "corp.example,from-settings.example,127.0.0.1,localhost,::1,[::1]"
    assert f"export NO_PROXY=\"${{NO_PROXY:+$NO_PROXY,}}\"'{merged}'" in lines
    assert f"export no_proxy=\"${{no_proxy:+$no_proxy,}}\"'{merged}'" in lines
    settings = {
        "statusLine": status_line_setting(own_statusline_command()),  # the user has none
        "env": {"NO_PROXY": merged, "no_proxy": merged},
    }
    assert lines[-1] == f"exec {CLAUDE} --settings {shlex.quote(json.dumps(settings))}"
    assert "export ANTHROPIC_CUSTOM_HEADERS=" in "\n".join(lines)  # the project's folder


def test_missing_claude_shows_the_install_command(
    controller: FakeController, tmp_path: Path
) -> None:
    seams = Recorder(tmp_path)
    launcher_for(controller, seams, claude=None).launch()
    [(title, text, copy_text)] = seams.errors
    assert "not installed" in title and INSTALL_COMMAND in text
    assert copy_text == INSTALL_COMMAND
    assert seams.offered == [] and seams.commands == [] and controller.calls == []


def test_the_real_message_box_copies_the_install_command(controller: FakeController) -> None:
    launcher = AgentLauncher(controller, find=lambda: None)
    launcher.launch()
    box = launcher._box
    assert isinstance(box, QMessageBox) and INSTALL_COMMAND in box.text()
    copy = next(b for b in box.findChildren(QPushButton) if b.text() == "Copy install command")
    copy.click()
    assert QGuiApplication.clipboard().text() == INSTALL_COMMAND
    box.close()


def test_cancelled_chooser_does_nothing(controller: FakeController) -> None:
    seams = Recorder(None)
    launcher_for(controller, seams).launch()
    assert seams.offered and controller.calls == [] and seams.commands == []


def test_server_that_fails_to_start_is_reported(
    controller: FakeController, tmp_path: Path, qtbot: QtBot
) -> None:
    controller.start_error = "port 8787 is taken"
    seams = Recorder(tmp_path)
    launcher_for(controller, seams).launch()
    qtbot.waitUntil(lambda: bool(seams.errors))
    assert seams.errors == [("The server did not start", "port 8787 is taken", None)]
    assert seams.commands == [] and controller.saved == []


def test_no_terminal_is_reported(controller: FakeController, tmp_path: Path, qtbot: QtBot) -> None:
    seams = Recorder(tmp_path)
    launcher = launcher_for(controller, seams)
    launcher.which = lambda name: None
    launcher.launch()
    qtbot.waitUntil(lambda: bool(seams.errors))
    assert "no terminal found" in seams.errors[0][1]
    assert controller.saved == []


def test_recent_folders_are_capped_and_deduplicated() -> None:
    recent = [Path(f"/p/{i}") for i in range(MAX_RECENT)]
    assert remember(recent, Path("/p/3"))[:2] == ["/p/3", "/p/0"]
    assert len(remember(recent, Path("/new"))) == MAX_RECENT
    assert remember(recent, Path("/new"))[0] == "/new"


def test_folder_chooser_offers_the_recent_folders(qtbot: QtBot) -> None:
    chooser = FolderChooser([Path("/old/one"), Path("/old/two")])
    qtbot.addWidget(chooser)
    assert [chooser.list.item(i).text() for i in range(chooser.list.count())] == [
        "/old/one",
        "/old/two",
    ]
    chooser.list.setCurrentRow(1)
    chooser._open_current()
    assert chooser.chosen == Path("/old/two") and chooser.result() == 1


CODEX_BIN = Path("/opt/codex/bin/codex")


def _running(controller: FakeController) -> None:
    controller.set_status(
        state=ServerState.RUNNING,
        base_url="http://127.0.0.1:9999",
        proxy_key="local-key",
        tiers=TierModels(default="qwen/qwen3-coder-480b-a35b-instruct"),
    )


@pytest.mark.skipif(sys.platform == "win32", reason="runs bash")
def test_launch_codex_runs_it_on_nimbridge_with_the_key_in_the_script_only(
    controller: FakeController, tmp_path: Path, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The terminal's script, run by bash with a stand-in `codex`: the proxy key in the
    variable NimBridge's provider names, OpenAI's keys gone, NO_PROXY added to the shell's,
    and `-c` overrides Codex reads as NimBridge's provider, model and window."""
    monkeypatch.setenv("NO_PROXY", "corp.example")
    monkeypatch.delenv("no_proxy", raising=False)
    _running(controller)
    folder = tmp_path / "project"
    folder.mkdir()
    codex = tmp_path / "codex"
    codex.write_text(
        "#!/bin/sh\n"
        'echo "$PWD|$NIMBRIDGE_CODEX_KEY|${OPENAI_API_KEY-unset}|'
        '${CODEX_API_KEY-unset}|$NO_PROXY"\n'
        'printf "%s\\n" "$@"\n'
    )
    codex.chmod(0o755)
    seams = Recorder(folder)
    scripts: list[str] = []
    runs: list[subprocess.CompletedProcess[str]] = []

    def popen(command: list[str], **options: Any) -> None:
        seams.commands.append(command)
        script = Path(command[-1])
        scripts.append(script.read_text())
        runs.append(
            subprocess.run(
                command[2:],  # what konsole -e would run: bash SCRIPT
                env={
                    "PATH": "/usr/bin:/bin",
                    "OPENAI_API_KEY": "sk-users-own",
                    "CODEX_API_KEY": "x",
                    "NO_PROXY": "shell.example",
                },
                capture_output=True,
                text=True,
                check=True,
            )
        )
        assert not script.exists()  # the script removed itself

    launcher = launcher_for(controller, seams, claude=codex, agent=CODEX)
    launcher.popen = popen
    menu = TrayMenu(controller, Windows(launch_codex=launcher.launch))
    menu.action("Launch Codex...").trigger()
    qtbot.waitUntil(lambda: len(controller.saved) == 1)
    assert "start" not in controller.calls and seams.errors == []
    assert seams.agents == ["Codex"]  # the chooser says what it opens
    [command] = seams.commands
    assert Path(command[-1]).name.startswith("nimbridge-codex-")
    assert not any("local-key" in word for word in command)
    lines = scripts[0].splitlines()
    assert "export NIMBRIDGE_CODEX_KEY=local-key" in lines
    assert {"unset OPENAI_API_KEY", "unset CODEX_API_KEY", "unset OPENAI_BASE_URL"} <= set(lines)
    assert "ANTHROPIC" not in scripts[0]
    first, *arguments = runs[0].stdout.splitlines()
    loopback = "corp.example,127.0.0.1,localhost,::1,[::1]"
    assert first == f"{folder}|local-key|unset|unset|shell.example,{loopback}"
    pairs = [arguments[i + 1].split("=", 1) for i, a in enumerate(arguments) if a == "-c"]
    overrides = {key: tomllib.loads(f"v = {value}")["v"] for key, value in pairs}
    assert overrides == {
        "model_providers.nimbridge": {
            "name": "NimBridge",
            "base_url": "http://127.0.0.1:9999/v1",
            "env_key": "NIMBRIDGE_CODEX_KEY",
            "wire_api": "responses",
        },
        "model_provider": "nimbridge",
        "model_context_window": 262144,  # Qwen3 Coder's real window
    }
    assert arguments[arguments.index("-m") + 1] == "qwen/qwen3-coder-480b-a35b-instruct"
    # The recent folders are shared with Launch Claude Code.
    assert seams.offered == [[Path("/old/one"), Path("/old/two")]]
    assert controller.saved[0].ui["recent_folders"] == [str(folder), "/old/one", "/old/two"]


def test_launch_codex_on_windows_quotes_each_argument(
    controller: FakeController, tmp_path: Path, qtbot: QtBot
) -> None:
    """cmd takes Codex's overrides whole: no double quote inside them to break the words."""
    _running(controller)
    seams = Recorder(tmp_path)
    launcher = launcher_for(controller, seams, claude=Path("C:/npm/codex.cmd"), agent=CODEX)
    launcher.platform = "win32"
    scripts: list[str] = []

    def popen(command: list[str], **options: Any) -> None:
        scripts.append(Path(command[-1]).read_bytes().decode())
        Path(command[-1]).unlink()

    launcher.popen = popen
    launcher.launch()
    qtbot.waitUntil(lambda: len(controller.saved) == 1)
    assert seams.errors == []
    lines = scripts[0].split("\r\n")
    assert 'set "NIMBRIDGE_CODEX_KEY=local-key"' in lines and 'set "OPENAI_API_KEY="' in lines
    assert lines[-2].startswith('del "%~f0" & "C:/npm/codex.cmd" "-c" "model_providers.nimbridge=')
    assert '"-m" "qwen/qwen3-coder-480b-a35b-instruct"' in lines[-2]


def test_missing_codex_says_how_to_install_it(controller: FakeController, tmp_path: Path) -> None:
    seams = Recorder(tmp_path)
    launcher_for(controller, seams, claude=None, agent=CODEX).launch()
    [(title, text, copy_text)] = seams.errors
    assert title == "Codex is not installed"
    assert "npm install -g @openai/codex" in text and "Launch Codex..." in text
    assert copy_text == codex_launch.INSTALL_COMMAND == "npm install -g @openai/codex"
    assert seams.offered == [] and seams.commands == [] and controller.calls == []
    box_launcher = AgentLauncher(controller, CODEX, find=lambda: None)
    box_launcher.launch()
    box = box_launcher._box
    assert isinstance(box, QMessageBox) and codex_launch.INSTALL_COMMAND in box.text()
    copy = next(b for b in box.findChildren(QPushButton) if b.text() == "Copy install command")
    copy.click()
    assert QGuiApplication.clipboard().text() == codex_launch.INSTALL_COMMAND
    box.close()


def test_folder_chooser_names_the_agent(qtbot: QtBot) -> None:
    chooser = FolderChooser([Path("/old/one")], "Codex")
    qtbot.addWidget(chooser)
    assert chooser.windowTitle() == "Launch Codex"
