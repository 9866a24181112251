"""The tray's "Launch Claude Code...": pick a folder, open a terminal there running Claude Code.

Thin on purpose: the folder chooser and the error box are injected callables
(`choose_folder`, `show_error`), and the terminal is opened by
`app.launcher.terminals.launch_in_terminal` through its `popen` seam, so tests
drive the whole flow offscreen without a real dialog or terminal.

Order: find Claude Code first (no point choosing a folder without it), then
the folder (a modal dialog, run from the slot and not from a task: a nested
event loop inside a qasync task is re-entrant trouble), then, in a task, start
the server if it is stopped, open the terminal and remember the folder.
"""

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.capabilities import quirks_for_model
from app.launcher.discovery import INSTALL_COMMAND, find_claude
from app.launcher.environment import (
    CUSTOM_HEADERS_ENV,
    claude_code_env,
    no_proxy_settings_arguments,
    own_statusline_command,
    project_headers,
    settings_no_proxy_values,
    status_line_setting,
    user_no_proxy_values,
    user_sets_status_line,
)
from app.launcher.terminals import LaunchError, Popen, launch_in_terminal
from app.service import ProxyController, ServerState
from app.ui._tasks import spawn

log = logging.getLogger(__name__)

MAX_RECENT = 10

# (recent folders, most recent first) -> the chosen folder, or None when cancelled
ChooseFolder = Callable[[Sequence[Path]], Path | None]
# (title, words, text for a "Copy install command" button or None)
ShowError = Callable[[str, str, str | None], None]


def recent_folders(ui: dict[str, object]) -> list[Path]:
    stored = ui.get("recent_folders")
    if not isinstance(stored, list):
        return []
    return [Path(item) for item in stored if isinstance(item, str)]


def remember(recent: Sequence[Path], folder: Path) -> list[str]:
    """`folder` first, then the others, without duplicates, at most MAX_RECENT."""
    folders = [folder, *(f for f in recent if f != folder)]
    return [str(f) for f in folders[:MAX_RECENT]]


class FolderChooser(QDialog):
    """Recent folders to double-click, and Browse... for any other."""

    def __init__(self, recent: Sequence[Path], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Launch Claude Code")
        self.chosen: Path | None = None
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Open Claude Code in:"))
        self.list = QListWidget()
        for folder in recent:
            self.list.addItem(QListWidgetItem(str(folder)))
        if recent:
            self.list.setCurrentRow(0)
        self.list.itemDoubleClicked.connect(lambda item: self._accept_folder(item.text()))
        layout.addWidget(self.list)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        browse = QPushButton("Browse...")
        buttons.addButton(browse, QDialogButtonBox.ButtonRole.ActionRole)
        browse.clicked.connect(self._browse)
        open_button = buttons.addButton("Open", QDialogButtonBox.ButtonRole.AcceptRole)
        open_button.setEnabled(bool(recent))
        buttons.accepted.connect(self._open_current)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self._start = recent[0] if recent else Path.home()

    def _open_current(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self._accept_folder(item.text())

    def _browse(self) -> None:
        name = QFileDialog.getExistingDirectory(self, "Open Claude Code in", str(self._start))
        if name:
            self._accept_folder(name)

    def _accept_folder(self, name: str) -> None:
        self.chosen = Path(name)
        self.accept()


def choose_folder_dialog(recent: Sequence[Path]) -> Path | None:
    """The real chooser: the plain folder dialog, or the recent list when there is one."""
    if not recent:
        name = QFileDialog.getExistingDirectory(None, "Open Claude Code in", str(Path.home()))
        return Path(name) if name else None
    dialog = FolderChooser(recent)
    return dialog.chosen if dialog.exec() == QDialog.DialogCode.Accepted else None


class ClaudeCodeLauncher:
    """What the tray's "Launch Claude Code..." runs."""

    def __init__(
        self,
        controller: ProxyController,
        *,
        choose_folder: ChooseFolder = choose_folder_dialog,
        show_error: ShowError | None = None,
        find: Callable[[], Path | None] = find_claude,
        popen: Popen = subprocess.Popen,
        which: Callable[[str], str | None] = shutil.which,
        platform: str = sys.platform,
    ) -> None:
        self.controller = controller
        self.choose_folder = choose_folder
        self.show_error: ShowError = show_error or self._message_box
        self.find = find
        self.popen = popen
        self.which = which
        self.platform = platform
        self._box: QMessageBox | None = None  # kept alive while shown

    def launch(self) -> None:
        """The slot: find Claude Code, choose the folder, then the rest in a task."""
        claude = self.find()
        if claude is None:
            self.show_error(
                "Claude Code is not installed",
                f"NimBridge could not find the claude command. Install it with:\n\n"
                f"{INSTALL_COMMAND}\n\nthen choose Launch Claude Code... again.",
                INSTALL_COMMAND,
            )
            return
        folder = self.choose_folder(recent_folders(self.controller.settings.ui))
        if folder is None:
            return
        spawn(self.run(folder, claude), name="launch Claude Code")

    async def run(self, folder: Path, claude: Path) -> list[str] | None:
        """Start the server if needed, open the terminal, remember the folder."""
        if self.controller.status().state is not ServerState.RUNNING:
            await self.controller.start()
        status = self.controller.status()
        if status.state is not ServerState.RUNNING or not status.base_url:
            self.show_error(
                "The server did not start",
                status.last_error or "NimBridge's server is not running.",
                None,
            )
            return None
        settings = self.controller.settings
        env = claude_code_env(
            base_url=status.base_url,
            proxy_key=status.proxy_key,
            tiers=status.tiers,
            # Compact at the default model's real window (settings overrides included).
            context_window=quirks_for_model(
                status.tiers.default, settings.capabilities or None
            ).context_window,
            timeout_s=settings.read_timeout_s,
            user_no_proxy=user_no_proxy_values(os.environ, folder),
        )
        # A settings file's NO_PROXY would replace the script's: then ours goes as settings.
        settings_set_no_proxy = bool(settings_no_proxy_values(os.environ, folder))
        env.update(project_headers(folder, os.environ.get(CUSTOM_HEADERS_ENV)))
        extra = (
            {}
            if user_sets_status_line(os.environ, folder)
            else {"statusLine": status_line_setting(own_statusline_command())}
        )
        try:
            command = launch_in_terminal(
                folder,
                env,
                claude,
                platform=self.platform,
                popen=self.popen,
                which=self.which,
                claude_args=no_proxy_settings_arguments(
                    env, no_proxy=settings_set_no_proxy, extra=extra
                ),
            )
        except LaunchError as error:
            self.show_error("Could not open a terminal", str(error), None)
            return None
        ui = {**settings.ui, "recent_folders": remember(recent_folders(settings.ui), folder)}
        try:
            # UI-only changes apply live: no server restart.
            await self.controller.apply_settings(replace(settings, ui=ui))
        except Exception:  # the terminal is open; a lost recent list is not worth a dialog
            log.exception("could not save the recent folders")
        return command

    def _message_box(self, title: str, text: str, copy_text: str | None) -> None:
        # Shown, not exec()'d: this can run inside a task, where a nested loop is trouble.
        box = QMessageBox(QMessageBox.Icon.Warning, title, text)
        if copy_text is not None:
            copy = box.addButton("Copy install command", QMessageBox.ButtonRole.ActionRole)
            copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(copy_text))
        box.addButton(QMessageBox.StandardButton.Close)
        self._box = box
        box.show()
