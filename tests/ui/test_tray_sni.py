"""The real tray app on a StatusNotifierItem desktop: Xvfb (no XEmbed tray) or weston
headless (Wayland), a private session bus, and our watcher + host (tests/ui/sni_host.py).

What KDE Plasma, Ubuntu's AppIndicator extension and the Wayland panels do with the
item, done over D-Bus: read its properties and its menu (com.canonical.dbusmenu),
open the menu, click entries. Issue 24: the item registers, its menu is the
XEmbed one, clicks act, ids stay put across opens, a panel that starts late gets
the item and one that goes away brings the window back, a notification shows our
own icon. Skipped where the tools are missing, except in CI.
"""

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from jeepney import MatchRule  # type: ignore[import-untyped]
from PySide6.QtWidgets import QApplication

from app.config.settings import Settings
from app.service import ServerState
from app.ui.tray import TrayMenu, Windows
from tests.ui.fakes import FakeController
from tests.ui.sni_host import (
    MENU_INTERFACE,
    MenuEntry,
    SniReader,
    end_process,
    private_session_bus,
    start_watcher,
    stop_process,
    wait_for,
)
from tests.ui.test_tray_xvfb import ROOT, _free_display, tray_settings

LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:(\d+))")
PACKAGES = "xvfb dbus-daemon x11-utils xdotool (and weston for Wayland)"


def _require(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        why = f"needs {', '.join(missing)} (apt-get install {PACKAGES})"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)


@dataclass(frozen=True, slots=True)
class Desktop:
    """Where the app runs: its display variables and its private session bus."""

    env: dict[str, str]
    bus: str


@contextlib.contextmanager
def bare_x_display() -> Iterator[str]:
    """Xvfb with no XEmbed tray on it: a tray can only come over D-Bus."""
    display = f":{_free_display()}"
    xvfb = subprocess.Popen(
        ["Xvfb", display, "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        env = {**os.environ, "DISPLAY": display}
        wait_for(
            lambda: (
                subprocess.run(["xwininfo", "-root"], env=env, capture_output=True).returncode == 0
            ),
            10,
            "Xvfb",
        )
        yield display
    finally:
        stop_process(xvfb)


@contextlib.contextmanager
def headless_weston(folder: Path) -> Iterator[dict[str, str]]:
    """weston's headless backend: a Wayland compositor with no screen."""
    runtime = folder / "runtime"
    runtime.mkdir(mode=0o700)
    env = {"XDG_RUNTIME_DIR": str(runtime), "WAYLAND_DISPLAY": "wayland-nimbridge"}
    weston = subprocess.Popen(
        ["weston", "--backend=headless-backend.so", "--socket=wayland-nimbridge", "--idle-time=0"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: (runtime / "wayland-nimbridge").exists(), 15, "weston's socket")
        yield env
    finally:
        stop_process(weston)


@pytest.fixture
def x11() -> Iterator[Desktop]:
    _require("Xvfb", "dbus-daemon", "xwininfo", "xdotool")
    with bare_x_display() as display, private_session_bus() as bus:
        yield Desktop({"DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}, bus)


@pytest.fixture
def wayland(tmp_path: Path) -> Iterator[Desktop]:
    _require("weston", "dbus-daemon")
    with headless_weston(tmp_path) as env, private_session_bus() as bus:
        yield Desktop({**env, "QT_QPA_PLATFORM": "wayland"}, bus)


class RunningApp:
    """`python -m app` as a user starts it, on `desktop`, its log read as it comes."""

    def __init__(self, desktop: Desktop, tmp_path: Path) -> None:
        config = tray_settings(tmp_path)
        env = {
            **os.environ,
            **desktop.env,
            "DBUS_SESSION_BUS_ADDRESS": desktop.bus,
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "XDG_STATE_HOME": str(tmp_path / "state"),
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "NVIDIA_API_KEY": "nvapi-sni-test-key-0000",
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        }
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", "--config", str(config)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reading = threading.Thread(target=self._read, daemon=True)
        self._reading.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def base_url(self) -> str:
        def found() -> str | None:
            assert self.process.poll() is None, "the app exited:\n" + self.log()
            match = next(
                (LISTENING.search(line) for line in self.lines if "listening" in line), None
            )
            return match.group(1) if match else None

        url: str = wait_for(found, 30, "the server's 'listening' line")
        return url

    def log(self) -> str:
        return "".join(self.lines[-40:])

    def stop(self) -> None:
        end_process(self.process)
        self._reading.join(5)  # to the end of what it wrote
        assert self.process.stderr is not None
        self.process.stderr.close()


@contextlib.contextmanager
def running_app(desktop: Desktop, tmp_path: Path) -> Iterator[RunningApp]:
    app = RunningApp(desktop, tmp_path)
    try:
        yield app
    finally:
        app.stop()


@contextlib.contextmanager
def watcher_on(desktop: Desktop) -> Iterator[subprocess.Popen[str]]:
    process = start_watcher(desktop.bus)
    try:
        yield process
    finally:
        stop_process(process)


def the_item(reader: SniReader, timeout: float = 20) -> str:
    items: list[str] = wait_for(reader.items, timeout, "the item to register with the watcher")
    assert len(items) == 1, items
    return items[0]


def tree(entry: MenuEntry) -> list[object]:
    """The entries a user sees, as labels ("-" a separator), submenus as [label, [...]]."""
    shown: list[object] = []
    for child in entry.shown():
        label = "-" if child.is_separator else child.label
        shown.append([label, tree(child)] if child.children else label)
    return shown


def qmenu_tree(menu: TrayMenu) -> list[object]:
    """The same for a TrayMenu's QMenu: what XEmbed trays pop up."""

    def walk(actions: list[object]) -> list[object]:
        shown: list[object] = []
        for action in actions:
            if not action.isVisible():  # type: ignore[attr-defined]
                continue
            submenu = action.menu()  # type: ignore[attr-defined]
            label = "-" if action.isSeparator() else action.text()  # type: ignore[attr-defined]
            shown.append([label, walk(submenu.actions())] if submenu else label)
        return shown

    return walk(menu.menu.actions())  # type: ignore[arg-type]


def nothing() -> None:
    """A window that the test does not open."""


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_the_item_its_menu_a_notification_and_quit(
    x11: Desktop, tmp_path: Path, qapp: QApplication
) -> None:
    with (
        watcher_on(x11),
        running_app(x11, tmp_path) as app,
        contextlib.closing(SniReader(x11.bus)) as reader,
    ):
        started = time.monotonic()
        item = the_item(reader)
        registered_s = time.monotonic() - started
        base_url = app.base_url()
        properties = wait_for(
            lambda: (found := reader.properties(item))["ToolTip"][2] and found,
            10,
            "the tooltip",
        )
        assert properties["Status"] == "Active" and properties["Category"] == "ApplicationStatus"
        assert properties["IconPixmap"], "no icon"
        # Qt gives the whole tooltip as the title: the name, then the status lines.
        assert properties["ToolTip"][2].startswith(f"NimBridge\nRunning on {base_url}\n")
        # The menu a host reads is the QMenu an XEmbed tray pops up: same entries, same order.
        menu = wait_for(
            lambda: (found := reader.layout(item)).shown()[0].label.startswith("Running") and found,
            10,
            "the menu to say the server runs",
        )
        assert menu.shown()[0].label == f"Running on {base_url}"
        shown = tree(menu)
        first_separator = shown.index("-")
        controller = FakeController(Settings())
        controller.set_status(state=ServerState.RUNNING, base_url=base_url)
        every = Windows(  # the app has every window
            open_logs=nothing,
            open_settings=nothing,
            open_model_picker=lambda tier: None,
            launch_claude_code=nothing,
            launch_codex=nothing,
            quit=nothing,
            open_home=nothing,
            open_usage=nothing,
        )
        expected = qmenu_tree(TrayMenu(controller, every))
        assert shown[first_separator:] == expected[expected.index("-") :]
        assert shown[-1] == "Quit" and "Stop server" in shown

        # Copy base URL: the notification makes the item NeedsAttention with OUR icon.
        reader.about_to_show(item)
        reader.click(item, reader.layout(item).find("Copy base URL").id)
        attention = wait_for(
            lambda: (found := reader.properties(item))["Status"] == "NeedsAttention" and found,
            5,
            "the notification",
        )
        assert attention["AttentionIconName"] == ""  # not Qt's theme "dialog-information"
        assert attention["AttentionIconPixmap"] == attention["IconPixmap"]  # our running look

        # Quit, clicked as a host clicks: the process ends and frees the port.
        port = int(base_url.rsplit(":", 1)[1])
        reader.about_to_show(item)
        reader.click(item, reader.layout(item).find("Quit").id)
        assert app.process.wait(20) == 0, app.log()
        assert port_is_free(port)
        assert wait_for(lambda: reader.items() == [], 5, "the item to leave the watcher") is True
    print(f"SNI item registered {registered_s:.1f} s after start")


def test_menu_ids_stay_put_across_opens(x11: Desktop, tmp_path: Path) -> None:
    with (
        watcher_on(x11),
        running_app(x11, tmp_path) as app,
        contextlib.closing(SniReader(x11.bus)) as reader,
    ):
        item = the_item(reader)
        app.base_url()

        def opened() -> MenuEntry:  # as a host opens it: AboutToShow, then GetLayout
            reader.about_to_show(item)
            return reader.layout(item)

        wait_for(lambda: opened().shown()[0].label.startswith("Running"), 10, "running")
        before = reader.layout(item)
        updates = MatchRule(type="signal", interface=MENU_INTERFACE, member="LayoutUpdated")
        reader.conn.bus_proxy.AddMatch(updates)
        with reader.conn.filter(updates, bufsize=1000) as layout_updates:
            for _ in range(10):  # a user opening the menu ten times
                assert opened().ids() == before.ids()
            with contextlib.suppress(TimeoutError):  # the signals still on their way
                while True:
                    reader.conn.recv_messages(timeout=0.5)
            # Was ~25 per open when the menu was rebuilt (issue 24).
            print(f"LayoutUpdated over 10 opens: {len(layout_updates)}")
            assert len(layout_updates) <= 2
        # The same ids click: Stop server, read a moment before, stops it.
        stop = before.find("Stop server")
        reader.click(item, stop.id)
        wait_for(
            lambda: reader.layout(item).find("Start server").id == stop.id, 10, "the server stopped"
        )


def _home_window_shown(desktop: Desktop) -> bool:
    found = subprocess.run(
        ["xdotool", "search", "--onlyvisible", "--name", "^NimBridge$"],
        env={**os.environ, **desktop.env},
        capture_output=True,
        text=True,
    )
    return bool(found.stdout.strip())


def test_a_host_that_comes_late_gets_the_item_and_one_that_goes_brings_the_window(
    x11: Desktop, tmp_path: Path
) -> None:
    with running_app(x11, tmp_path) as app, contextlib.closing(SniReader(x11.bus)) as reader:
        app.base_url()
        wait_for(lambda: _home_window_shown(x11), 15, "the window shown for want of a tray")
        time.sleep(5)  # the panel starts 5 s after NimBridge, as at login
        assert not reader.has_watcher()
        with watcher_on(x11) as watcher:
            the_item(reader, timeout=10)
            wait_for(lambda: not _home_window_shown(x11), 10, "the window to make way")
            stop_process(watcher)  # the panel crashes
            wait_for(lambda: _home_window_shown(x11), 10, "the window back")
        assert app.process.poll() is None, app.log()


def test_wayland_registers_and_quits(wayland: Desktop, tmp_path: Path) -> None:
    with (
        watcher_on(wayland),
        running_app(wayland, tmp_path) as app,
        contextlib.closing(SniReader(wayland.bus)) as reader,
    ):
        item = the_item(reader)
        base_url = app.base_url()
        assert reader.properties(item)["IconPixmap"]
        reader.about_to_show(item)
        reader.click(item, reader.layout(item).find("Quit").id)
        assert app.process.wait(20) == 0, app.log()
        assert port_is_free(int(base_url.rsplit(":", 1)[1]))
