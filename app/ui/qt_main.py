"""`run_gui`: the tray app's main loop (QApplication + qasync), single instance, clean quit.

Order matters (DESKTOP.md): PySide6 is imported before qasync, and qasync's
loop is made the running loop before any task is created, or tasks are lost.
Quit awaits `controller.stop()` (in-flight streams get their grace period) so
the port is never left bound.
"""

import asyncio
import contextlib
import getpass
import signal
from collections.abc import Callable, Sequence

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket
from PySide6.QtWidgets import (
    QApplication,
    QGridLayout,
    QLabel,
    QSizePolicy,
    QSystemTrayIcon,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.service import Health, ProxyController, ServiceStatus
from app.ui.launch import CODEX, AgentLauncher
from app.ui.log_window import LogWindow
from app.ui.model_picker import ModelPicker
from app.ui.qt_loop import QtEventLoop
from app.ui.settings_window import SettingsDialog
from app.ui.tray import TrayIcon, TrayMenu, Windows, icon_for, keychain_line, status_line

# Beyond the settings' shutdown_grace_s: what a stop may take to end the requests it cut.
QUIT_MARGIN_S = 5.0


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


class MainWindow(QWidget):
    """The tray menu's controls as buttons, for desktops without a system tray.

    The buttons are the tray menu's own actions (`TrayMenu`, rebuilt from the
    status), so both offer the same things and behave alike; a group of the menu
    (between separators) is a row here.
    """

    status_changed = Signal(object)
    FEEDBACK_MS = 5000

    def __init__(self, controller: ProxyController, windows: Windows) -> None:
        super().__init__()
        self.setWindowTitle("NimBridge")
        self.controller = controller
        self.menu = TrayMenu(controller, windows, feedback=self.show_feedback)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        bold = self.status_label.font()
        bold.setBold(True)
        self.status_label.setFont(bold)
        self.detail_label = QLabel()  # default model, keychain trouble
        self.detail_label.setWordWrap(True)
        self.buttons = QGridLayout()
        self.buttons.setHorizontalSpacing(8)
        self.feedback_label = QLabel()
        self.feedback_label.setStyleSheet("color: #1e7d32;")
        self._feedback_timer = QTimer(self)
        self._feedback_timer.setSingleShot(True)
        self._feedback_timer.timeout.connect(self.feedback_label.clear)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status_label)
        layout.addWidget(self.detail_label)
        layout.addSpacing(6)
        layout.addLayout(self.buttons)
        layout.addWidget(self.feedback_label)
        layout.addStretch(1)
        self._shape: object = None
        self.status_changed.connect(self.show_status)
        self._unsubscribe = controller.subscribe_status(self.status_changed.emit)
        self.show_status(controller.status())

    def button(self, text: str) -> QToolButton:
        """The button of the menu action with this text (tests click them)."""
        for found in self.findChildren(QToolButton):
            action = found.defaultAction()
            if action is not None and action.text() == text:
                return found
        raise KeyError(text)

    def show_status(self, status: ServiceStatus) -> None:
        self.setWindowIcon(icon_for(status.health))
        self.status_label.setText(status_line(status))
        details = [f"Default model: {status.tiers.default}"]
        keychain = keychain_line(status)
        if keychain:
            details.append(keychain)
        self.detail_label.setText("\n".join(details))
        # What the actions depend on; a change of in-flight count alone keeps the buttons.
        shape = (status.state, status.base_url, status.proxy_key, status.tiers)
        if shape != self._shape:
            self._shape = shape
            self._rebuild_buttons()

    def _rebuild_buttons(self) -> None:
        if QApplication.activePopupWidget() is not None:  # a button's menu is open
            self._shape = None
            QTimer.singleShot(500, self, lambda: self.show_status(self.controller.status()))
            return
        while (item := self.buttons.takeAt(0)) is not None:
            widget = item.widget()
            if widget is not None:
                widget.deleteLater()
        self.menu.rebuild()
        actions = self.menu.menu.actions()
        # The status lines (up to the first separator) are the labels above.
        first = next((i for i, a in enumerate(actions) if a.isSeparator()), -1)
        row = column = width = 0
        made: list[QToolButton] = []
        for action in actions[first + 1 :]:
            if action.isSeparator():
                row, column = (row + 1, 0) if column else (row, column)
                continue
            button = QToolButton()
            button.setDefaultAction(action)
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            if action.menu() is not None:
                button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
            self.buttons.addWidget(button, row, column)
            made.append(button)
            width = max(width, button.sizeHint().width())
            column += 1
        for button in made:  # one width: a tidy grid (+ room for a menu's arrow)
            button.setMinimumWidth(width + 24)
            button.setMinimumHeight(button.sizeHint().height() + 6)

    def show_feedback(self, words: str) -> None:
        self.feedback_label.setText(words)
        self._feedback_timer.start(self.FEEDBACK_MS)


class App:
    """The pieces of the running tray app, wired together."""

    def __init__(self, qt: QApplication, controller: ProxyController, quit_app: Callable[[], None]):
        self.qt = qt
        self.controller = controller
        self.log_window: LogWindow | None = None
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
        )
        self.tray: TrayIcon | None = None
        self.main_window: MainWindow | None = None
        if QSystemTrayIcon.isSystemTrayAvailable():
            self.tray = TrayIcon(controller, self.windows)
            self.tray.icon.show()
        else:  # no tray on this desktop: a small window with the same controls
            self.main_window = MainWindow(controller, self.windows)
            self.main_window.show()

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
        """A second launch asked for us: bring a window forward."""
        if self.main_window is not None:
            self.main_window.show()
            self.main_window.raise_()
            self.main_window.activateWindow()
        else:
            self.open_logs()

    def close(self) -> None:
        if self.log_window is not None:
            self.log_window.shutdown()
        if self.tray is not None:
            self.tray.close()


def run_gui(
    controller: ProxyController,
    *,
    start_server: bool | None = None,
    notices: Sequence[str] = (),
) -> int:
    """Run the tray app until Quit; `notices` (a settings file set aside, no keychain...)
    are shown once as tray notifications, as well as in the log."""
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
    app = App(qt, controller, lambda: closing.set())
    for notice in notices:
        app.notify(notice)
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
