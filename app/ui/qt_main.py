"""`run_gui`: the tray app's main loop (QApplication + qasync), single instance, clean quit.

Order matters (DESKTOP.md): PySide6 is imported before qasync, and qasync's
loop is made the running loop before any task is created, or tasks are lost.
Quit awaits `controller.stop()` (in-flight streams get their grace period) so
the port is never left bound. Whether the desktop has a tray is asked again every
`TRAY_POLL_MS` (`TrayPresence`): the app moves into a tray that starts after it
and back to its window when the tray goes (issue 24).
"""

import asyncio
import contextlib
import getpass
import logging
import signal
from collections.abc import Callable, Sequence

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from app.service import Health, ProxyController
from app.ui.home_window import HomeWindow
from app.ui.launch import CODEX, AgentLauncher
from app.ui.log_window import LogWindow
from app.ui.model_picker import ModelPicker
from app.ui.qt_loop import QtEventLoop
from app.ui.settings.dialog import SettingsDialog
from app.ui.tray import TrayIcon, Windows, icon_for
from app.ui.usage_window import UsageWindow

# Beyond the settings' shutdown_grace_s: what a stop may take to end the requests it cut.
QUIT_MARGIN_S = 5.0
# How often to ask whether a tray came or went: Qt answers in under 2 ms.
TRAY_POLL_MS = 2000

log = logging.getLogger(__name__)


class TrayPresence(QObject):
    """Whether the desktop shows tray icons now; `changed` when that turns.

    "Start at login" runs NimBridge before the panel, and a panel may restart.
    Polled, not watched: `isSystemTrayAvailable` answers for both kinds of tray
    (a StatusNotifierWatcher on the session bus, an XEmbed manager on X11), while
    a NameOwnerChanged watch would see only the first and needs QtDBus, which the
    bundle leaves out (packaging/bundle_contents.py).
    """

    changed = Signal(bool)

    def __init__(
        self,
        probe: Callable[[], bool] = QSystemTrayIcon.isSystemTrayAvailable,
        interval_ms: int = TRAY_POLL_MS,
    ) -> None:
        super().__init__()
        self._probe = probe
        self.available = probe()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.check)
        self._timer.start(interval_ms)

    def check(self) -> None:
        now = self._probe()
        if now != self.available:
            self.available = now
            self.changed.emit(now)

    def stop(self) -> None:
        self._timer.stop()


class SingleInstance(QObject):
    """One NimBridge per user: a second launch asks the first to show itself, then exits."""

    show_requested = Signal()

    def __init__(self, name: str | None = None) -> None:
        super().__init__()
        self.name = name or f"nimbridge-{getpass.getuser()}"
        self._server: QLocalServer | None = None

    def acquire(self) -> bool:
        """True when this process is the first; False after telling the first one."""
        probe = QLocalSocket()
        probe.connectToServer(self.name)
        if probe.waitForConnected(300):
            probe.write(b"show\n")
            probe.waitForBytesWritten(300)
            probe.disconnectFromServer()
            return False
        QLocalServer.removeServer(self.name)  # a socket left by a crashed instance
        self._server = QLocalServer()
        self._server.newConnection.connect(self._on_connection)
        return self._server.listen(self.name)

    def _on_connection(self) -> None:
        assert self._server is not None
        socket = self._server.nextPendingConnection()
        if socket is not None:
            socket.readyRead.connect(self.show_requested.emit)
            socket.disconnected.connect(socket.deleteLater)

    def release(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None


class App:
    """The pieces of the running tray app, wired together."""

    def __init__(
        self,
        qt: QApplication,
        controller: ProxyController,
        quit_app: Callable[[], None],
        *,
        show_home: bool = False,
        tray_probe: Callable[[], bool] = QSystemTrayIcon.isSystemTrayAvailable,
    ):
        self.qt = qt
        self.controller = controller
        self.log_window: LogWindow | None = None
        self.usage_window: UsageWindow | None = None
        self.settings: SettingsDialog | None = None
        self.picker: ModelPicker | None = None
        self.launcher = AgentLauncher(controller)
        self.codex_launcher = AgentLauncher(controller, CODEX)
        self.windows = Windows(
            open_logs=self.open_logs,
            open_settings=self.open_settings,
            open_model_picker=self.open_model_picker,
            launch_claude_code=self.launcher.launch,
            launch_codex=self.codex_launcher.launch,
            quit=quit_app,
            open_home=self.open_home,
            open_usage=self.open_usage,
        )
        self.tray: TrayIcon | None = None
        self.home: HomeWindow | None = None
        self._home_stands_in = False  # shown for want of a tray: it goes when one comes
        self.presence = TrayPresence(tray_probe)
        self.presence.changed.connect(self._follow_tray)
        if self.presence.available:
            self._enter_tray()
        if show_home:  # the application menu's entry
            self.open_home()
        elif self.tray is None:
            self._stand_in_for_tray()

    def _follow_tray(self, available: bool) -> None:
        if available:
            log.info("A system tray is there now: NimBridge moves into it")
            self._enter_tray()
            if self._home_stands_in and self.home is not None:
                self.home.hide()
            self._home_stands_in = False
        elif self.tray is not None:
            log.info("The system tray went away: NimBridge shows its window")
            self.tray.close()
            self.tray = None
            self._stand_in_for_tray()

    def _enter_tray(self) -> None:
        # A new QSystemTrayIcon each time: Qt picks the kind of tray when making one.
        self.tray = TrayIcon(self.controller, self.windows)
        self.tray.icon.show()

    def _stand_in_for_tray(self) -> None:
        if self.home is not None and self.home.isVisible():
            return  # opened by the user: it stays when a tray comes
        self._show_home()
        self._home_stands_in = True

    def open_home(self) -> None:
        self._show_home()
        self._home_stands_in = False  # asked for: it stays when a tray comes

    def _show_home(self) -> None:
        if self.home is None:
            self.home = HomeWindow(self.controller, self.windows)
        self.home.bring_forward()

    def open_usage(self) -> None:
        if self.usage_window is None:
            self.usage_window = UsageWindow(self.controller)
        self.usage_window.bring_forward()

    def notify(self, message: str) -> None:
        if self.tray is not None:
            self.tray.notify("NimBridge", message)

    def open_logs(self) -> None:
        if self.log_window is None:
            self.log_window = LogWindow(self.controller)
        self.log_window.bring_forward()

    def open_settings(self, focus_key_for: str | None = None) -> None:
        if self.settings is None or not self.settings.isVisible():
            self.settings = SettingsDialog(self.controller, focus_key_for=focus_key_for)
        self.settings.show()
        self.settings.raise_()
        self.settings.activateWindow()

    def open_model_picker(self, tier: str = "default") -> None:
        self.picker = ModelPicker(self.controller, tier=tier)
        self.picker.show()
        self.picker.raise_()

    def show_yourself(self) -> None:
        """A second launch (the application menu's entry...) asked for us: the home window."""
        self.open_home()

    def close(self) -> None:
        self.presence.stop()
        if self.log_window is not None:
            self.log_window.shutdown()
        if self.home is not None:
            self.home.close_subscriptions()
        if self.tray is not None:
            self.tray.close()


def run_gui(
    controller: ProxyController,
    *,
    start_server: bool | None = None,
    notices: Sequence[str] = (),
    show_home: bool = False,
) -> int:
    """Run the tray app until Quit; `notices` (a settings file set aside, no keychain...)
    are shown once as tray notifications, as well as in the log. `show_home` opens the
    home window at once (the application menu's entry; autostart leaves only the icon)."""
    qt = QApplication.instance() or QApplication([])
    assert isinstance(qt, QApplication)
    qt.setApplicationName("NimBridge")
    # Wayland's app id and the menu entry it belongs to (packaging/linux/nimbridge.desktop).
    qt.setDesktopFileName("nimbridge")
    qt.setQuitOnLastWindowClosed(False)  # closing a window leaves the tray running
    qt.setWindowIcon(icon_for(Health.RUNNING))
    instance = SingleInstance()
    if not instance.acquire():
        print("NimBridge is already running; its window was brought forward.")
        return 0
    loop = QtEventLoop(qt)  # qasync's, with cancelled timers freed at once
    asyncio.set_event_loop(loop)  # before any task: tasks made earlier are lost
    closing = asyncio.Event()
    app = App(qt, controller, lambda: closing.set(), show_home=show_home)
    for notice in notices:
        app.notify(notice)
    # The request history's notices (a damaged file set aside) come from its own thread.
    controller.watch_history_notices(lambda text: loop.call_soon_threadsafe(app.notify, text))
    instance.show_requested.connect(app.show_yourself)
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, closing.set)
        except (NotImplementedError, RuntimeError):  # Windows
            signal.signal(signum, lambda *_: loop.call_soon_threadsafe(closing.set))
    # Python only sees signals between Qt events: wake it up now and then.
    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(250)

    async def main() -> None:
        if (
            start_server
            if start_server is not None
            else controller.settings.ui.get("start_server_at_launch", True)
        ):
            await controller.start()
        if controller.status().needs_key:  # first run: straight to the key field
            app.open_settings(focus_key_for=controller.settings.default_provider)
        await closing.wait()
        # stop() cancels what is left after its grace; the process ends either way.
        with contextlib.suppress(TimeoutError):
            grace = controller.settings.shutdown_grace_s
            await asyncio.wait_for(controller.stop(), grace + QUIT_MARGIN_S)

    try:
        with loop:
            loop.run_until_complete(main())
    finally:
        wake.stop()
        app.close()
        instance.release()
    return 0
