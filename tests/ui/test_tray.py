"""The tray menu and icon, offscreen, with the controller faked."""

import asyncio
import dataclasses
from collections.abc import Iterator

import pytest
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction, QGuiApplication, QIcon, QImage
from PySide6.QtWidgets import QApplication, QMenu
from pytestqt.qtbot import QtBot

from app.config.settings import Settings, TierModels
from app.core.governor import GovernorState
from app.service import Health, ServerState
from app.ui.home_window import HomeWindow
from app.ui.qt_main import SingleInstance
from app.ui.tray import (
    TrayIcon,
    TrayMenu,
    Windows,
    claude_code_setup,
    codex_setup,
    icon_for,
    tooltip,
)
from tests.ui.fakes import FakeController
from tests.ui.qt_async import qasync_loop  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("qasync_loop")


@pytest.fixture
def controller() -> FakeController:
    return FakeController(Settings(tiers=TierModels(default="qwen/coder", haiku="meta/small")))


@pytest.fixture
def opened() -> Iterator[list[str]]:
    yield []


def windows(opened: list[str]) -> Windows:
    return Windows(
        open_logs=lambda: opened.append("logs"),
        open_settings=lambda: opened.append("settings"),
        open_model_picker=lambda tier: opened.append(f"picker:{tier}"),
        quit=lambda: opened.append("quit"),
    )


def texts(menu: TrayMenu) -> list[str]:
    """The entries a user sees (a hidden entry is kept for when it is needed)."""
    return [a.text() for a in menu.menu.actions() if a.text() and a.isVisible()]


def look(icon: QIcon) -> QImage:
    return icon.pixmap(32, 32).toImage()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_menu_follows_the_status(controller: FakeController, opened: list[str]) -> None:
    menu = TrayMenu(controller, windows(opened))
    assert texts(menu)[0] == "Stopped" and "Start server" in texts(menu)
    assert not menu.action("Copy base URL").isEnabled()
    controller.set_status(state=ServerState.RUNNING, base_url="http://127.0.0.1:8787", in_flight=2)
    menu.menu.aboutToShow.emit()  # rebuilt from live status each time it opens
    assert texts(menu)[0] == "Running on http://127.0.0.1:8787 · 2 in flight"
    assert "Stop server" in texts(menu) and menu.action("Copy base URL").isEnabled()
    controller.set_status(needs_key=True)
    menu.refresh()
    assert texts(menu)[0] == "Needs an NVIDIA key: open Settings"


def test_a_long_error_is_cut_in_the_menu_and_whole_in_its_tooltip(
    controller: FakeController, opened: list[str], qtbot: QtBot
) -> None:
    error = (
        "Port 8787 on 127.0.0.1 is taken by another program (perhaps another NimBridge). "
        "Close it, or choose another port in Settings → Server → Port (8788 is free now)."
    )
    controller.set_status(state=ServerState.ERROR, last_error=error)
    menu = TrayMenu(controller, windows(opened))
    first = menu.menu.actions()[0]
    assert first.text() == (
        "Error: Port 8787 on 127.0.0.1 is taken by another program (perhaps another NimBridge). …"
    )
    assert first.toolTip() == f"Error: {error}"
    window = HomeWindow(controller, windows(opened))  # a window has room: the whole text
    qtbot.addWidget(window)
    assert window.status_label.text() == f"Error: {error}"


def test_a_keychain_problem_stays_in_sight(controller: FakeController, opened: list[str]) -> None:
    controller.set_status(state=ServerState.RUNNING, base_url="http://127.0.0.1:8787")
    menu = TrayMenu(controller, windows(opened))
    assert not any("Keys last" in text for text in texts(menu))
    controller.set_status(keychain_problem="Secret Service (GNOME Keyring) is locked")
    menu.refresh()
    line = "Keys last this session only: Secret Service (GNOME Keyring) is locked"
    assert texts(menu)[:2] == ["Running on http://127.0.0.1:8787", line]
    assert not menu.action(line).isEnabled()  # words, not a button
    assert line in tooltip(controller.status())


def test_start_and_stop_reach_the_controller(
    controller: FakeController, opened: list[str], qtbot: QtBot
) -> None:
    menu = TrayMenu(controller, windows(opened))
    menu.action("Start server").trigger()
    qtbot.waitUntil(lambda: controller.calls == ["start"])
    menu.refresh()
    menu.action("Stop server").trigger()
    qtbot.waitUntil(lambda: controller.calls == ["start", "stop"])


def test_copy_actions(controller: FakeController, opened: list[str]) -> None:
    controller.set_status(
        state=ServerState.RUNNING, base_url="http://127.0.0.1:9999", proxy_key="local-key"
    )
    menu = TrayMenu(controller, windows(opened))
    menu.action("Copy base URL").trigger()
    assert QGuiApplication.clipboard().text() == "http://127.0.0.1:9999"
    assert menu.action("Copy Claude Code setup").menu() is not None  # one per shell
    menu.action("POSIX shell").trigger()
    setup = QGuiApplication.clipboard().text()
    assert "export ANTHROPIC_BASE_URL=http://127.0.0.1:9999" in setup
    assert "export ANTHROPIC_AUTH_TOKEN=local-key" in setup
    assert "export ANTHROPIC_DEFAULT_HAIKU_MODEL=meta/small" in setup
    assert "unset ANTHROPIC_API_KEY" in setup
    menu.action("PowerShell").trigger()
    setup = QGuiApplication.clipboard().text()
    assert "$env:ANTHROPIC_BASE_URL = 'http://127.0.0.1:9999'" in setup
    assert "$env:ANTHROPIC_AUTH_TOKEN = 'local-key'" in setup
    assert "Remove-Item Env:ANTHROPIC_API_KEY -ErrorAction SilentlyContinue" in setup
    menu.action("cmd").trigger()
    setup = QGuiApplication.clipboard().text()
    assert 'set "ANTHROPIC_BASE_URL=http://127.0.0.1:9999"' in setup
    assert 'set "ANTHROPIC_AUTH_TOKEN=local-key"' in setup
    assert "set ANTHROPIC_API_KEY=\n" in setup


def test_copy_codex_setup_in_three_shells(controller: FakeController, opened: list[str]) -> None:
    """Beside the Claude Code setup: the key, OpenAI's keys removed, and the `codex` line
    with NimBridge as its provider, the default tier's model and its window."""
    controller.set_status(
        state=ServerState.RUNNING,
        base_url="http://127.0.0.1:9999",
        proxy_key="local-key",
        tiers=TierModels(default="qwen/qwen3-coder-480b-a35b-instruct"),
    )
    said: list[str] = []
    menu = TrayMenu(controller, windows(opened), feedback=said.append)
    setup = menu.action("Copy Codex setup")
    assert setup.isEnabled() and "Codex" in setup.toolTip()
    shells = setup.menu()
    assert isinstance(shells, QMenu)
    copied = {}
    for item in shells.actions():
        item.trigger()
        copied[item.text()] = QGuiApplication.clipboard().text()
    assert list(copied) == ["POSIX shell", "PowerShell", "cmd"]
    assert copied["POSIX shell"] == codex_setup(controller.status(), "posix")
    posix = copied["POSIX shell"].splitlines()
    assert posix[0] == "export NIMBRIDGE_CODEX_KEY=local-key"
    assert "unset OPENAI_API_KEY" in posix and "unset CODEX_API_KEY" in posix
    assert posix[-1].startswith("codex -c \"model_providers.nimbridge={name='NimBridge',")
    assert "base_url='http://127.0.0.1:9999/v1'" in posix[-1]
    assert posix[-1].endswith(
        " -m qwen/qwen3-coder-480b-a35b-instruct -c model_context_window=262144"
    )
    assert copied["PowerShell"].startswith("$env:NIMBRIDGE_CODEX_KEY = 'local-key'\n")
    assert "Remove-Item Env:OPENAI_API_KEY -ErrorAction SilentlyContinue" in copied["PowerShell"]
    assert copied["cmd"].startswith('set "NIMBRIDGE_CODEX_KEY=local-key"\n')
    assert "set OPENAI_API_KEY=\n" in copied["cmd"]
    assert said == [
        f"Codex setup for {shell} copied: paste it into that terminal."
        for shell in ("POSIX shell", "PowerShell", "cmd")
    ]


def test_window_actions_and_model_submenu(controller: FakeController, opened: list[str]) -> None:
    menu = TrayMenu(controller, windows(opened))
    for text in ("Show logs", "Settings...", "Quit", "Choose model...", "Haiku: meta/small"):
        menu.action(text).trigger()
    assert opened == ["logs", "settings", "quit", "picker:default", "picker:haiku"]
    assert menu.action("Opus: (default: qwen/coder)").isEnabled()
    launch = menu.action("Launch Claude Code...")
    assert not launch.isEnabled() and "launcher" in launch.toolTip()
    assert not menu.action("Launch Codex...").isEnabled()


def test_missing_windows_are_disabled(controller: FakeController) -> None:
    menu = TrayMenu(controller, Windows())
    assert not menu.action("Show logs").isEnabled()
    assert not menu.action("Choose model...").isEnabled()


def test_icon_and_tooltip_follow_health(
    controller: FakeController, opened: list[str], qtbot: QtBot
) -> None:
    tray = TrayIcon(controller, windows(opened))
    keys = {h: icon_for(h).pixmap(32, 32).toImage() for h in Health}
    assert len({img.cacheKey() for img in keys.values()}) == len(Health)  # four looks

    def shown() -> object:
        return tray.icon.icon().pixmap(32, 32).toImage()

    assert shown() == keys[Health.STOPPED]
    controller.set_status(state=ServerState.RUNNING, base_url="http://127.0.0.1:8787")
    qtbot.waitUntil(lambda: shown() == keys[Health.RUNNING])
    controller.set_status(in_flight=1)
    qtbot.waitUntil(lambda: shown() == keys[Health.BUSY])
    controller.set_status(
        in_flight=0,
        cooling_down_for=12.0,
        requests_today=7,
        pacing={"nvidia": GovernorState(12, 40, 12.0, 0, 1)},
    )
    qtbot.waitUntil(lambda: shown() == keys[Health.ERROR])
    tip = tray.icon.toolTip()
    assert "Default model: qwen/coder" in tip and "Requests today: 7" in tip
    assert "nvidia: 12/40 per minute, cooling down 12 s" in tip
    tray.close()


def test_notifications_once_per_change(
    controller: FakeController, opened: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tray = TrayIcon(controller, windows(opened))
    shown: list[str] = []
    icons: list[QIcon] = []

    def show_message(title: str, message: str, icon: QIcon, msecs: int) -> None:
        shown.append(title)
        icons.append(icon)

    monkeypatch.setattr(tray.icon, "showMessage", show_message)
    controller.set_status(state=ServerState.RUNNING, base_url="http://x")
    controller.set_status(cooling_down_for=30.0)
    controller.set_status(cooling_down_for=29.0)  # still cooling: no second balloon
    controller.set_status(cooling_down_for=0.0)
    controller.set_status(state=ServerState.ERROR, last_error="cannot listen on :8787")
    controller.set_status(state=ServerState.ERROR, last_error="cannot listen on :8787")
    assert shown == ["Rate limited", "Rate limit over", "NimBridge could not start"]
    # Our own icons, never Qt's "i" (issue 24): on StatusNotifierItem desktops the
    # notification's icon is the item's attention icon while it lasts. Not starting
    # is trouble to act on: the error look; news shows the state it comes with.
    assert look(icons[2]) == look(icon_for(Health.ERROR))
    assert look(icons[1]) == look(icon_for(Health.RUNNING))
    controller.set_status(state=ServerState.RUNNING, last_error=None, failed_today=0)
    controller.set_status(last_error="upstream rate limit reached (429): slow down", failed_today=1)
    controller.set_status(last_error="upstream rate limit reached (429): slow down", failed_today=1)
    controller.set_status(
        last_error="upstream rejected the API key (401); check the key", failed_today=2
    )
    assert shown[3:] == ["A request failed", "Key rejected"]
    tray.close()


def test_tooltip_and_setup_text_without_a_running_server() -> None:
    status = FakeController().status()
    assert tooltip(status).splitlines()[1] == "Stopped"
    assert claude_code_setup(status).startswith("export ANTHROPIC_BASE_URL=http://127.0.0.1:8787")


def test_copy_actions_say_what_was_copied_and_log_nothing(
    controller: FakeController, opened: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    said: list[str] = []
    menu = TrayMenu(controller, windows(opened), feedback=said.append)
    # Stopped: no copy has an address to give, and each says why.
    for text in ("Copy base URL", "Copy Claude Code setup", "Copy Codex setup"):
        assert not menu.action(text).isEnabled()
        assert "Start the server first" in menu.action(text).toolTip()
    controller.set_status(
        state=ServerState.RUNNING, base_url="http://127.0.0.1:9999", proxy_key="local-key-123"
    )
    menu.refresh()
    assert menu.action("Copy base URL").isEnabled()
    assert menu.action("Copy Claude Code setup").isEnabled()
    with caplog.at_level("DEBUG"):
        menu.action("Copy base URL").trigger()
        menu.action("PowerShell").trigger()
    assert said == [
        "Base URL copied.",
        "Claude Code setup for PowerShell copied: paste it into that terminal.",
    ]
    assert "local-key-123" in QGuiApplication.clipboard().text()
    assert not any(
        "local-key-123" in r.getMessage() or "9999" in r.getMessage() for r in caplog.records
    )


def test_the_tray_shows_a_short_balloon_for_a_copy(
    controller: FakeController, opened: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    controller.set_status(state=ServerState.RUNNING, base_url="http://127.0.0.1:9999")
    tray = TrayIcon(controller, windows(opened))
    balloons: list[tuple[str, str, int]] = []
    monkeypatch.setattr(
        tray.icon, "showMessage", lambda title, text, icon, ms: balloons.append((title, text, ms))
    )
    tray.menu.refresh()
    tray.menu.action("Copy base URL").trigger()
    assert balloons == [("Copied", "Base URL copied.", 2500)]
    tray.close()


def test_single_instance(qtbot: QtBot) -> None:
    first = SingleInstance("nimbridge-test-single-instance")
    assert first.acquire()
    second = SingleInstance("nimbridge-test-single-instance")
    with qtbot.waitSignal(first.show_requested, timeout=3000):
        assert not second.acquire()
    first.release()
    third = SingleInstance("nimbridge-test-single-instance")
    assert third.acquire()  # the name is free again after release
    third.release()


class _Emitter(QObject):
    ping = Signal(object)


def test_signal_guard_10000_emits(qtbot: QtBot) -> None:
    """DESKTOP.md: PySide6 on CPython 3.11 loses a reference to True on every emit and
    aborts after a few hundred; 3.12+ runs clean. This guards the Python choice."""
    emitter = _Emitter()
    received: list[object] = []
    emitter.ping.connect(received.append)
    for i in range(10_000):
        emitter.ping.emit(i % 2 == 0)
    assert len(received) == 10_000 and QApplication.instance() is not None


def every_action(menu: TrayMenu) -> list[QAction]:
    return menu._all_actions(menu.menu)


def test_opening_the_menu_keeps_its_entries_and_makes_no_menus(
    controller: FakeController, opened: list[str], qtbot: QtBot
) -> None:
    """Issue 24: a rebuild per open gave each entry a new D-Bus id (a host's click on
    the id it read a moment before was lost) and left two submenus behind per open."""
    tray = TrayIcon(controller, windows(opened))
    menus = len(tray.menu.menu.findChildren(QMenu))
    entries = every_action(tray.menu)
    for count in range(100):
        if count == 50:  # a status change on the way changes words, not entries
            controller.set_status(state=ServerState.RUNNING, base_url="http://127.0.0.1:8787")
        tray.menu.menu.aboutToShow.emit()
    qtbot.wait(0)  # deleteLater'd objects would go now: none were made
    assert len(tray.menu.menu.findChildren(QMenu)) == menus == 3  # Setup x2, Model
    assert every_action(tray.menu) == entries
    assert "Stop server" in texts(tray.menu)
    tray.close()


def test_a_status_change_updates_the_open_menu_in_place(
    controller: FakeController, opened: list[str]
) -> None:
    tray = TrayIcon(controller, windows(opened))
    start = tray.menu.action("Start server")
    copy_url = tray.menu.action("Copy base URL")
    opus = tray.menu.action("Opus: (default: qwen/coder)")
    controller.set_status(state=ServerState.RUNNING, base_url="http://127.0.0.1:8787")
    # No aboutToShow: a host may read the menu before it opens it.
    assert start.text() == "Stop server" and copy_url.isEnabled()
    assert texts(tray.menu)[0] == "Running on http://127.0.0.1:8787"
    controller.set_status(tiers=TierModels(default="qwen/coder", opus="big/one"))
    assert opus.text() == "Opus: big/one"
    tray.close()


def test_start_stop_acts_on_what_the_entry_said(
    controller: FakeController, opened: list[str], qtbot: QtBot
) -> None:
    menu = TrayMenu(controller, windows(opened))
    entry = menu.action("Start server")
    controller.set_status(state=ServerState.RUNNING, base_url="http://127.0.0.1:8787")
    entry.trigger()  # clicked as "Start server", before the menu caught up
    qtbot.waitUntil(lambda: controller.calls == ["start"])
    menu.refresh()
    entry.trigger()  # now it says "Stop server"
    qtbot.waitUntil(lambda: controller.calls == ["start", "stop"])


def test_a_missing_key_shows_the_error_icon_not_the_running_one() -> None:
    """The menu says "Needs an NVIDIA key"; the icon a user glances at must not say all is well."""
    base = FakeController().status()
    running = dataclasses.replace(base, state=ServerState.RUNNING, needs_key=False)
    assert running.health is Health.RUNNING
    assert dataclasses.replace(running, needs_key=True).health is Health.ERROR
    assert dataclasses.replace(running, needs_key=True, state=ServerState.STOPPED).health is (
        Health.STOPPED
    )
