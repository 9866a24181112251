"""The tray icon and its menu: the whole app at a glance, driven by `ServiceStatus`.

Rule: the menu is built once and brought up to date from `controller.status()`
in place, every time it is about to show and on every status change, so it is
never stale and its entries keep their identity (their D-Bus ids on
StatusNotifierItem desktops, see `TrayMenu`); windows come in as callables
(`Windows`), so this module knows no window class.
"""

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction, QGuiApplication, QIcon, QPixmap
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from app.config.settings import Settings
from app.launcher import codex as codex_launch
from app.launcher.context_window import context_window
from app.launcher.environment import claude_code_env
from app.launcher.terminals import Shell, setup_lines
from app.service import Health, ProxyController, ServerState, ServiceStatus
from app.tasks import spawn

ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256)


def resources_dir() -> Path:
    """resources/ beside the package, or inside a PyInstaller bundle (sys._MEIPASS)."""
    bundle = getattr(sys, "_MEIPASS", None)
    root = Path(bundle) if bundle else Path(__file__).resolve().parents[2]
    return root / "resources"


def icon_for(health: Health) -> QIcon:
    icon = QIcon()
    for size in ICON_SIZES:
        path = resources_dir() / "icons" / f"nimbridge-{health.value}-{size}.png"
        if path.exists():
            icon.addPixmap(QPixmap(str(path)))
    return icon


@dataclass(frozen=True, slots=True)
class Windows:
    """How the menu opens things; None leaves the item disabled."""

    open_logs: Callable[[], None] | None = None
    open_settings: Callable[[], None] | None = None
    open_model_picker: Callable[[str], None] | None = None  # the tier to choose for
    launch_claude_code: Callable[[], None] | None = None  # comes with the launcher issue
    launch_codex: Callable[[], None] | None = None
    quit: Callable[[], None] | None = None
    open_home: Callable[[], None] | None = None  # the home window (also the icon's left click)
    open_usage: Callable[[], None] | None = None


def status_line(status: ServiceStatus) -> str:
    if status.needs_key:
        return "Needs an NVIDIA key: open Settings"
    if status.state is ServerState.ERROR or (
        status.last_error and status.state is not ServerState.RUNNING
    ):
        return f"Error: {status.last_error or 'the server did not start'}"
    if status.state is ServerState.RUNNING:
        busy = f" · {status.in_flight} in flight" if status.in_flight else ""
        cooling = (
            f" · cooling down {status.cooling_down_for:.0f} s" if status.cooling_down_for else ""
        )
        return f"Running on {status.base_url}{busy}{cooling}"
    return {ServerState.STARTING: "Starting...", ServerState.STOPPING: "Stopping..."}.get(
        status.state, "Stopped"
    )


MENU_LINE_CHARS = 90


def menu_line(text: str) -> str:
    """A long status cut for the menu (a menu is as wide as its widest line): its
    first sentence, else a cut at a word. The whole text is the item's tooltip,
    the no-tray window's label and a balloon."""
    if len(text) <= MENU_LINE_CHARS:
        return text
    end = text.find(". ")
    if 0 < end < MENU_LINE_CHARS:
        return text[: end + 1] + " …"
    cut = text.rfind(" ", 0, MENU_LINE_CHARS)
    return text[: cut if cut > 0 else MENU_LINE_CHARS].rstrip(" ,;:(") + "…"


def keychain_line(status: ServiceStatus) -> str | None:
    """Said beside the status, for as long as it lasts: keys entered now are lost at exit."""
    if status.keychain_problem is None:
        return None
    return f"Keys last this session only: {status.keychain_problem}"


def tooltip(status: ServiceStatus) -> str:
    lines = ["NimBridge", status_line(status), f"Default model: {status.default_model}"]
    keychain = keychain_line(status)
    if keychain:
        lines.append(keychain)
    lines.append(f"Requests today: {status.requests_today} ({status.failed_today} failed)")
    for provider, pacing in status.pacing.items():
        budget = f"/{pacing.budget_per_minute}" if pacing.budget_per_minute else ""
        cooling = (
            f", cooling down {pacing.cooling_down_for:.0f} s" if pacing.cooling_down_for else ""
        )
        lines.append(f"{provider}: {pacing.requests_last_minute}{budget} per minute{cooling}")
    return "\n".join(lines)


def claude_code_setup(status: ServiceStatus, shell: Shell = "posix") -> str:
    """Shell lines for users who start Claude Code in their own terminal."""
    env = claude_code_env(
        base_url=status.base_url or "http://127.0.0.1:8787",
        proxy_key=status.proxy_key,
        tiers=status.tiers,
        context_window=None,
        timeout_s=600,
    )
    return setup_lines(env, shell=shell)


def codex_setup(
    status: ServiceStatus, shell: Shell = "posix", settings: Settings | None = None
) -> str:
    """Shell lines for users who start Codex in their own terminal: the key, then
    `codex` with NimBridge as its provider (Codex takes that on its command line)."""
    return codex_launch.setup_lines(
        base_url=status.base_url or "http://127.0.0.1:8787",
        model=status.tiers.default,
        proxy_key=status.proxy_key,
        context_window=context_window(status.tiers.default, settings),
        shell=shell,
    )


SETUP_SHELLS: tuple[tuple[str, Shell], ...] = (
    ("POSIX shell", "posix"),
    ("PowerShell", "powershell"),
    ("cmd", "cmd"),
)
OPEN_HOME = "Open NimBridge"
TIERS = ("default", "opus", "sonnet", "haiku")  # the Model submenu's entries, in order
NOT_RUNNING_TIP = "Start the server first: the address and key are known once it runs"


class TrayMenu(QObject):
    """The QMenu, built once; `refresh()` brings every entry up to date from live status.

    Rule: entries are updated in place (text, enabled, visible, tooltip), never
    rebuilt. On StatusNotifierItem desktops Qt exports each QAction over
    com.canonical.dbusmenu under an id of its own and the host clicks by id: a
    menu rebuilt on every open gave new ids, dropped clicks and left its submenus
    behind (issue 24). `refresh` runs on `aboutToShow` (vorta's tray_menu.py), so
    an open menu is never stale, and on every status change (`TrayIcon`), so a host
    that reads the menu before it opens it reads it right.

    `feedback` is told, in words, what a Copy action put on the clipboard (never
    the text itself: it may hold the proxy key). The window shown where there is
    home window lays out the same actions as buttons (home_window.HomeWindow).
    """

    def __init__(
        self,
        controller: ProxyController,
        windows: Windows,
        feedback: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.controller = controller
        self.windows = windows
        self.feedback = feedback
        self.status = controller.status()  # what the menu shows: a click acts on it
        self.menu = QMenu()
        self.menu.setToolTipsVisible(True)  # why an item is disabled
        self._build()
        self.menu.aboutToShow.connect(self.refresh)
        self.refresh()

    def action(self, text: str) -> QAction:
        """The menu's action with this text (tests trigger them)."""
        found = next((a for a in self._all_actions(self.menu) if a.text() == text), None)
        if found is None:
            raise KeyError(text)
        return found

    def _all_actions(self, menu: QMenu) -> list[QAction]:
        actions: list[QAction] = []
        for item in menu.actions():
            actions.append(item)
            submenu = item.menu()
            if isinstance(submenu, QMenu):
                actions += self._all_actions(submenu)
        return actions

    def _build(self) -> None:
        """Every entry, once, in the menu's order; their words come from `refresh`."""
        menu = self.menu
        self._status_line = menu.addAction("")
        self._status_line.setEnabled(False)
        self._keychain_line = menu.addAction("")  # shown while the keychain fails
        self._keychain_line.setEnabled(False)
        menu.addSeparator()
        if self.windows.open_home is not None:
            self._add_window_action(OPEN_HOME, self.windows.open_home)
        self._start_stop = menu.addAction("")
        self._start_stop.triggered.connect(self._start_or_stop)
        # Both copies need the running server's address: enabled (or not) together.
        self._copy_url = menu.addAction("Copy base URL")
        self._copy_url.triggered.connect(
            lambda checked=False: self._copy(self.status.base_url or "", "Base URL copied")
        )
        self._setups = (
            self._add_setup_menu(
                "Claude Code",
                "The environment variables that point Claude Code, started in your own\n"
                "terminal, at NimBridge",
                lambda shell: claude_code_setup(self.status, shell),
            ),
            self._add_setup_menu(
                "Codex",
                "The lines that start Codex, in your own terminal, with NimBridge as its provider",
                lambda shell: codex_setup(self.status, shell, self.controller.settings),
            ),
        )
        menu.addSeparator()
        self._add_window_action(
            "Launch Claude Code...",
            self.windows.launch_claude_code,
            "comes with the Claude Code launcher",
        )
        self._add_window_action("Launch Codex...", self.windows.launch_codex)
        models = menu.addMenu("Model")
        self._tier_items: list[tuple[str, QAction]] = []
        for tier in TIERS:
            item = models.addAction("")
            self._connect_picker(item, tier)
            self._tier_items.append((tier, item))
        models.addSeparator()
        self._connect_picker(models.addAction("Choose model..."), "default")
        menu.addSeparator()
        self._add_window_action("Show logs", self.windows.open_logs)
        if self.windows.open_usage is not None:
            self._add_window_action("Usage...", self.windows.open_usage)
        self._add_window_action("Settings...", self.windows.open_settings)
        menu.addSeparator()
        self._add_window_action("Quit", self.windows.quit)

    def refresh(self) -> None:
        """Each entry from live status; Qt sends a host only what changed."""
        status = self.controller.status()
        self.status = status
        words = status_line(status)
        self._status_line.setText(menu_line(words))
        self._status_line.setToolTip(words)
        keychain = keychain_line(status) or ""
        self._keychain_line.setText(menu_line(keychain))
        self._keychain_line.setToolTip(keychain)
        self._keychain_line.setVisible(bool(keychain))
        running = status.state is ServerState.RUNNING
        self._start_stop.setText("Stop server" if running else "Start server")
        self._copy_url.setEnabled(running)
        self._copy_url.setToolTip((status.base_url or "") if running else NOT_RUNNING_TIP)
        for setup, tip in self._setups:
            setup.menuAction().setEnabled(running)
            setup.menuAction().setToolTip(tip if running else NOT_RUNNING_TIP)
        tiers = status.tiers
        models = {"default": tiers.default, "opus": tiers.opus}
        models |= {"sonnet": tiers.sonnet, "haiku": tiers.haiku}
        for tier, item in self._tier_items:
            item.setText(f"{tier.capitalize()}: {models[tier] or f'(default: {tiers.default})'}")

    def _start_or_stop(self) -> None:
        # What the entry said when clicked (`status` of the last refresh), not what
        # the server did since: a click on "Stop server" never starts it.
        if self.status.state is ServerState.RUNNING:
            spawn(self.controller.stop(), name="stop server")
        else:
            spawn(self.controller.start(), name="start server")

    def _add_setup_menu(
        self, agent: str, tip: str, lines_for: Callable[[Shell], str]
    ) -> tuple[QMenu, str]:
        """The "Copy AGENT setup" submenu, an item per shell; needs the server's address."""
        setup = self.menu.addMenu(f"Copy {agent} setup")
        setup.setToolTipsVisible(True)
        for text, shell in SETUP_SHELLS:
            setup.addAction(text).triggered.connect(
                lambda checked=False, sh=shell, name=text: self._copy(
                    lines_for(sh), f"{agent} setup for {name} copied: paste it into that terminal"
                )
            )
        return setup, tip

    def _copy(self, text: str, words: str) -> None:
        QGuiApplication.clipboard().setText(text)
        if self.feedback is not None:
            self.feedback(words + ".")

    def _connect_picker(self, item: QAction, tier: str) -> None:
        opener = self.windows.open_model_picker
        item.setEnabled(opener is not None)
        if opener is not None:
            item.triggered.connect(lambda checked=False, t=tier: opener(t))

    def _add_window_action(
        self, text: str, callback: Callable[[], None] | None, missing: str = ""
    ) -> None:
        item = self.menu.addAction(text)
        item.setEnabled(callback is not None)
        if callback is None:
            item.setToolTip(missing)
        else:
            item.triggered.connect(lambda checked=False: callback())


class TrayIcon(QObject):
    """The icon: its look says the health; notifications for what the user must know.

    Made when a tray is there and closed when it goes (qt_main.App): Qt picks the
    kind of tray (StatusNotifierItem over D-Bus, or XEmbed) when a QSystemTrayIcon
    is made, so a tray that comes back may be of the other kind.
    """

    status_changed = Signal(object)  # ServiceStatus, delivered on the Qt thread

    def __init__(self, controller: ProxyController, windows: Windows) -> None:
        super().__init__()
        self.menu = TrayMenu(controller, windows, feedback=self._copied)
        self.icon = QSystemTrayIcon()
        self.icon.setContextMenu(self.menu.menu)
        self.icon.activated.connect(self._activated)
        self._open_on_click = windows.open_home or windows.open_logs
        self._last: ServiceStatus | None = None
        self._health = Health.STOPPED
        self.status_changed.connect(self.show_status)
        self._unsubscribe = controller.subscribe_status(self.status_changed.emit)
        self.show_status(controller.status())

    def show_status(self, status: ServiceStatus) -> None:
        self._health = status.health
        self.icon.setIcon(icon_for(status.health))
        self.icon.setToolTip(tooltip(status))
        self.menu.refresh()  # in place: a host that reads it now reads it right
        self._notify_changes(self._last, status)
        self._last = status

    def _notify_changes(self, before: ServiceStatus | None, now: ServiceStatus) -> None:
        """One balloon per change worth knowing, never repeated for the same state."""
        if now.state is ServerState.ERROR and (
            before is None or before.last_error != now.last_error
        ):
            self.notify("NimBridge could not start", now.last_error or "", warning=True)
        elif before is not None:
            if before.cooling_down_for == 0 and now.cooling_down_for > 0:
                self.notify(
                    "Rate limited",
                    f"The provider asked NimBridge to wait {now.cooling_down_for:.0f} s; "
                    "requests queue meanwhile.",
                )
            elif before.cooling_down_for > 0 and now.cooling_down_for == 0:
                self.notify("Rate limit over", "Requests flow again.")
            if now.last_error and now.last_error != before.last_error:
                if "401" in now.last_error:
                    self.notify("Key rejected", now.last_error, warning=True)
                elif now.failed_today > before.failed_today:
                    # A Claude Code session would otherwise just show a spinner.
                    self.notify("A request failed", now.last_error, warning=True)

    def notify(self, title: str, message: str, *, warning: bool = False, msecs: int = 8000) -> None:
        """A balloon (XEmbed) or desktop notification (StatusNotifierItem).

        Given our own icon, not a MessageIcon: on SNI Qt shows the item as
        NeedsAttention for `msecs` with the notification's icon, and a MessageIcon
        there is a theme name ("dialog-information") that hosts show instead of
        NimBridge's state (issue 24). Trouble gets the error look, news the current one.
        """
        shown = Health.ERROR if warning else self._health
        self.icon.showMessage(title, message, icon_for(shown), msecs)

    def _copied(self, words: str) -> None:
        self.notify("Copied", words, msecs=2500)

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason is QSystemTrayIcon.ActivationReason.Trigger and self._open_on_click is not None:
            self._open_on_click()

    def close(self) -> None:
        """Leave the tray: the icon and its menu are deleted, not kept hidden."""
        self._unsubscribe()
        self.icon.hide()
        self.icon.deleteLater()
        self.menu.menu.deleteLater()
