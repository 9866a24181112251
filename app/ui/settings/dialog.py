"""The settings dialog: its tabs (providers and their keys, the server, web tools),
the first-run banner, and OK / Apply / Cancel.

Invariants:
- A key typed in a tab goes straight to the keychain ("Save key") and the field
  is cleared: afterwards the dialog shows only whether a key is set and where,
  never the key (key_field.py).
- OK / Apply build one new `Settings` (each tab's `apply_to`), check it with
  `validate_settings` and hand it to `controller.apply_settings` (which saves
  atomically). A refusal is shown in the dialog, which stays open; nothing is
  half-saved: start at login is changed first and put back if the settings
  cannot be applied.
- Cancel discards every edit (keys already saved with "Save key" stay saved:
  that button says what it does).
"""

import logging
from urllib.parse import urlparse

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QAbstractButton,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.autostart import default_command, set_autostart
from app.config.secrets import SecretStoreUnavailable
from app.config.settings import Settings, SettingsError, validate_settings
from app.core.providers import PRESET_BY_KIND, ProviderKind
from app.service import ProxyController
from app.tasks import spawn
from app.ui.settings.form_fields import ERROR_STYLE, OK_STYLE, WHERE, link
from app.ui.settings.providers_tab import ProvidersTab
from app.ui.settings.server_tab import ServerTab
from app.ui.settings.web_tools_tab import WebToolsTab

log = logging.getLogger(__name__)

BANNER_STYLE = (
    "QLabel { background: #e8f0fe; color: #0b2a5b; border: 1px solid #a8c1f0;"
    " border-radius: 4px; padding: 8px 10px; font-weight: 600; }"
)


def short_label(kind: ProviderKind) -> str:
    """ "NVIDIA", "OpenAI", "Cloudflare Workers AI": the preset's label without its note."""
    if kind is ProviderKind.NVIDIA:
        return "NVIDIA"
    return PRESET_BY_KIND[kind].label.split(" (")[0]


class SettingsDialog(QDialog):
    """Settings. `focus_key_for="nvidia"` opens on that provider's key field (first run)."""

    def __init__(
        self,
        controller: ProxyController,
        *,
        focus_key_for: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._controller = controller
        self._focus_key_for = focus_key_for
        self._focus_pending = focus_key_for is not None
        self._saving = False

        self.setWindowTitle("Settings - NimBridge")
        self.resize(780, 560)

        self.banner = QLabel()
        self.banner.setStyleSheet(BANNER_STYLE)
        self.banner.setWordWrap(True)
        self.banner.setOpenExternalLinks(True)
        self.banner.setTextFormat(Qt.TextFormat.RichText)
        self.banner.hide()

        self.tabs = QTabWidget()
        self.providers_tab = ProvidersTab(controller)
        self.server_tab = ServerTab(controller)
        self.tabs.addTab(self.providers_tab, "Providers")
        self.tabs.addTab(self.server_tab, "Server")
        self.web_tab = WebToolsTab(controller)
        self.tabs.addTab(self.web_tab, "Web tools")

        self.message_label = QLabel()  # refusals (red) and "Saved." (green)
        self.message_label.setWordWrap(True)
        self.message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message_label.hide()

        self.button_box = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Apply
            | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button = self.button_box.button(QDialogButtonBox.StandardButton.Ok)
        self.apply_button = self.button_box.button(QDialogButtonBox.StandardButton.Apply)
        self.cancel_button = self.button_box.button(QDialogButtonBox.StandardButton.Cancel)

        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.message_label)
        layout.addWidget(self.button_box)

        self.button_box.clicked.connect(self._button_clicked)
        self.providers_tab.key_saved.connect(self._key_saved)

        if focus_key_for is not None:
            self._open_at_key(focus_key_for)

    # ---- first run

    def _open_at_key(self, name: str) -> None:
        self.tabs.setCurrentWidget(self.providers_tab)
        found = self.providers_tab.select_provider(name)
        draft = self.providers_tab.current_draft
        if found and draft is not None:
            kind = draft.kind
        else:  # not configured (yet): a preset of that name, else NVIDIA's
            kind = next((k for k in ProviderKind if k.value == name), ProviderKind.NVIDIA)
        preset = PRESET_BY_KIND[kind]
        text = f"Paste your {short_label(kind)} API key to start"
        if preset.keys_page:
            host = urlparse(preset.keys_page).hostname or preset.keys_page
            text += f" (get one at {link(preset.keys_page, host)})"
        self.banner.setText(text)
        self.banner.show()

    def _key_saved(self, name: str) -> None:
        if self._focus_key_for == name and self.banner.isVisible():
            self.banner.setText("Key saved. Press OK and NimBridge is ready.")

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        if self._focus_pending:
            self._focus_pending = False
            # After the window is shown, or the focus request is lost.
            QTimer.singleShot(0, self._focus_key_field)

    def _focus_key_field(self) -> None:
        self.activateWindow()
        self.providers_tab.key_edit.setFocus(Qt.FocusReason.OtherFocusReason)

    # ---- saving

    def build_settings(self) -> Settings:
        """The dialog's settings, validated; SettingsError ("Not saved: ...") otherwise."""
        base = self._controller.settings  # now: the model picker may have changed tiers
        # The server tab's refusals come first, then the providers' (as the tabs read).
        settings = self.server_tab.apply_to(base)
        settings = self.providers_tab.apply_to(settings)
        return validate_settings(self.web_tab.apply_to(settings), WHERE)

    def _button_clicked(self, button: QAbstractButton) -> None:
        if button is self.cancel_button:
            self.reject()
        elif button is self.ok_button:
            self.save(close=True)
        elif button is self.apply_button:
            self.save(close=False)

    def save(self, *, close: bool) -> None:
        """Validate now; if good, apply in the background and (OK) close when done."""
        if self._saving:
            return
        try:
            settings = self.build_settings()
        except SettingsError as exc:
            self._refuse(str(exc))
            return
        self._saving = True
        self._set_busy(True)
        self._show_message("Saving...", style="")
        spawn(self._save(settings, close), name="settings-save")

    async def _save(self, settings: Settings, close: bool) -> None:
        server = self.server_tab
        want_autostart = server.login_check.isChecked()
        autostart_changed = want_autostart != server.autostart_was
        try:
            if autostart_changed:
                try:
                    set_autostart(want_autostart, command=default_command())
                except (OSError, ValueError) as exc:
                    self._refuse(f"{WHERE}: could not change start at login ({exc})")
                    return
            try:
                login_changed = server.save_proxy_login()
            except (ValueError, SecretStoreUnavailable) as exc:
                self._refuse(f"{WHERE}: the proxy login was not stored ({exc})")
                return
            # Unchanged: no needless restart (a new proxy login needs one).
            if settings != self._controller.settings or login_changed:
                try:
                    await self._controller.apply_settings(settings)
                except Exception as exc:  # SettingsError, OSError: put start at login back
                    if autostart_changed:
                        try:
                            set_autostart(server.autostart_was, command=default_command())
                        except OSError as undo:
                            log.warning("could not undo the start-at-login change: %s", undo)
                    text = str(exc)
                    self._refuse(text if text.startswith(WHERE) else f"{WHERE}: {text}")
                    return
            server.autostart_was = want_autostart
            self.providers_tab.mark_saved()
        finally:
            self._saving = False
            self._set_busy(False)
        if close:
            self.accept()
        else:
            self._show_message("Saved.", style=OK_STYLE)
            self.providers_tab.show_draft(force=True)  # a saved provider's name is read-only

    def _refuse(self, text: str) -> None:
        self._show_message(text, style=ERROR_STYLE)
        # Show the tab the problem is on.
        lowered = text.lower()
        on_providers = "provider" in lowered or "upstream_url" in lowered
        tab: QWidget = self.providers_tab if on_providers else self.server_tab
        self.tabs.setCurrentWidget(self.web_tab if "'web_" in lowered else tab)

    def _show_message(self, text: str, *, style: str) -> None:
        self.message_label.setStyleSheet(style)
        self.message_label.setText(text)
        self.message_label.setVisible(bool(text))

    def _set_busy(self, busy: bool) -> None:
        self.ok_button.setEnabled(not busy)
        self.apply_button.setEnabled(not busy)
