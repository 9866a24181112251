"""The settings dialog: providers and their keys, the server, start at login.

Invariants:
- A key typed here goes straight to the keychain through `controller.set_key`
  ("Save key") and the field is cleared: afterwards the dialog shows only
  whether a key is set and where, never the key.
- OK / Apply build one new `Settings`, check it with `validate_settings` and
  hand it to `controller.apply_settings` (which saves atomically). A refusal is
  shown in the dialog, which stays open; nothing is half-saved: start at login
  is changed first and put back if the settings cannot be applied.
- Cancel discards every edit (keys already saved with "Save key" stay saved:
  that button says what it does).
"""

import logging
from dataclasses import dataclass, replace
from urllib.parse import urlparse

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QGuiApplication, QShowEvent
from PySide6.QtWidgets import (
    QAbstractButton,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.autostart import autostart_enabled, default_command, set_autostart
from app.config.limits import RANGE_BY_SETTING, provider_name_problem
from app.config.secrets import KeySource, KeyStatus, SecretStoreUnavailable
from app.config.settings import Settings, SettingsError, is_loopback, validate_settings
from app.core.providers import PRESET_BY_KIND, Provider, ProviderKind, preset_base_url
from app.service import ProxyController
from app.tasks import spawn
from app.ui.form_fields import align_label_columns, show_url
from app.ui.web_tools_tab import WebToolsTab

log = logging.getLogger(__name__)

WHERE = "Not saved"  # how validate_settings' messages start in this dialog
ERROR_STYLE = "color: #b3261e;"
OK_STYLE = "color: #1e7d32;"
WARNING_STYLE = (
    "QLabel { background: #fff4ce; color: #4d3800; border: 1px solid #e0c060;"
    " border-radius: 4px; padding: 6px 8px; }"
)
BANNER_STYLE = (
    "QLabel { background: #e8f0fe; color: #0b2a5b; border: 1px solid #a8c1f0;"
    " border-radius: 4px; padding: 8px 10px; font-weight: 600; }"
)


def short_label(kind: ProviderKind) -> str:
    """ "NVIDIA", "OpenAI", "Cloudflare Workers AI": the preset's label without its note."""
    if kind is ProviderKind.NVIDIA:
        return "NVIDIA"
    return PRESET_BY_KIND[kind].label.split(" (")[0]


def _link(url: str, text: str) -> str:
    return f'<a href="{url}">{text}</a>'


def _key_store_words(controller: ProxyController) -> str:
    """Where keychain keys live ("Secret Service (GNOME Keyring)")."""
    return controller.key_store_description()


@dataclass
class _ProviderDraft:
    """One provider as edited here; `original` is None for one added in this dialog."""

    name: str
    kind: ProviderKind
    base_url: str
    account_id: str | None
    original: Provider | None

    @classmethod
    def of(cls, provider: Provider) -> "_ProviderDraft":
        return cls(provider.name, provider.kind, provider.base_url, provider.account_id, provider)

    def build(self) -> Provider:
        kept = self.original or Provider(self.name, self.kind, self.base_url)
        return replace(
            kept,
            name=self.name.strip(),
            kind=self.kind,
            base_url=self.base_url.strip().rstrip("/"),
            account_id=(self.account_id or "").strip() or None,
        )


def _name_problem(name: str, taken: set[str]) -> str | None:
    if not name.strip():
        return "a provider needs a name"
    if "/" in name or name != name.strip():
        return f"provider name {name!r} must have no '/' and no spaces around it"
    problem = provider_name_problem(name)  # the loader's rule: no control characters
    if problem:
        return f"provider name {problem}"
    if name in taken:
        return f"there is already a provider named {name!r}"
    return None


class AddProviderDialog(QDialog):
    """Choose a preset; it fills the base URL (and asks Cloudflare's account id)."""

    def __init__(self, taken_names: set[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add a provider - NimBridge")
        self._taken = set(taken_names)
        self._name_touched = False
        self._url_touched = False

        self.kind_combo = QComboBox()
        for kind, preset in PRESET_BY_KIND.items():
            self.kind_combo.addItem(preset.label, kind)
        self.name_edit = QLineEdit()
        self.account_label = QLabel("Account ID:")
        self.account_edit = QLineEdit()
        self.account_edit.setPlaceholderText("from the Cloudflare dashboard's URL or overview")
        self.base_url_edit = QLineEdit()
        self.base_url_edit.setMinimumWidth(380)
        self.error_label = QLabel()
        self.error_label.setStyleSheet(ERROR_STYLE)
        self.error_label.setWordWrap(True)
        self.error_label.hide()
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Add")

        form = QFormLayout()
        form.addRow("Kind:", self.kind_combo)
        form.addRow("Name:", self.name_edit)
        form.addRow(self.account_label, self.account_edit)
        form.addRow("Base URL:", self.base_url_edit)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addWidget(buttons)

        self.kind_combo.currentIndexChanged.connect(self._kind_changed)
        self.name_edit.textEdited.connect(self._touch_name)
        self.base_url_edit.textEdited.connect(self._touch_url)
        self.base_url_edit.textChanged.connect(self.base_url_edit.setToolTip)
        self.account_edit.textEdited.connect(self._account_changed)
        buttons.accepted.connect(self._accept_if_valid)
        buttons.rejected.connect(self.reject)
        self._kind_changed()

    @property
    def kind(self) -> ProviderKind:
        return ProviderKind(self.kind_combo.currentData())

    def set_kind(self, kind: ProviderKind) -> None:
        self.kind_combo.setCurrentIndex(self.kind_combo.findData(kind))

    def provider(self) -> Provider:
        return Provider(
            name=self.name_edit.text().strip(),
            kind=self.kind,
            base_url=self.base_url_edit.text().strip().rstrip("/"),
            account_id=self.account_edit.text().strip() or None,
        )

    def _touch_name(self) -> None:
        self._name_touched = True

    def _touch_url(self) -> None:
        self._url_touched = True

    def _kind_changed(self) -> None:
        kind = self.kind
        if not self._name_touched:
            name, n = kind.value, 2
            while name in self._taken:
                name, n = f"{kind.value}-{n}", n + 1
            self.name_edit.setText(name)
        cloudflare = kind is ProviderKind.CLOUDFLARE
        self.account_label.setVisible(cloudflare)
        self.account_edit.setVisible(cloudflare)
        self._url_touched = False
        self._account_changed()
        self.base_url_edit.setPlaceholderText(
            "https://example.com/v1" if kind is ProviderKind.CUSTOM else ""
        )

    def _account_changed(self) -> None:
        if not self._url_touched:
            account = self.account_edit.text().strip() or "{account_id}"
            url = (
                preset_base_url(self.kind, account) if self.kind is not ProviderKind.CUSTOM else ""
            )
            show_url(self.base_url_edit, url)

    def _problem(self) -> str | None:
        provider = self.provider()
        problem = _name_problem(self.name_edit.text(), self._taken)
        if problem:
            return problem
        if provider.kind is ProviderKind.CLOUDFLARE and not provider.account_id:
            return "Cloudflare Workers AI needs your account ID"
        if not provider.base_url.startswith(("http://", "https://")) or "{" in provider.base_url:
            return "the base URL must start with http:// or https://"
        return None

    def _accept_if_valid(self) -> None:
        problem = self._problem()
        if problem:
            self.error_label.setText(problem[0].upper() + problem[1:] + ".")
            self.error_label.show()
            return
        self.accept()


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
        settings = controller.settings
        self._drafts = [_ProviderDraft.of(p) for p in settings.providers]
        self._default = next(
            (d for d in self._drafts if d.name == settings.default_provider), self._drafts[0]
        )
        self._stored_here: set[str] = set()  # keys saved for providers not yet in settings
        self._testing = False
        self._saving = False
        self._filling = False  # True while the form is filled from a draft
        self._shown: _ProviderDraft | None = None  # the draft the form shows
        self.add_dialog: AddProviderDialog | None = None

        self.setWindowTitle("Settings - NimBridge")
        self.resize(780, 560)

        self.banner = QLabel()
        self.banner.setStyleSheet(BANNER_STYLE)
        self.banner.setWordWrap(True)
        self.banner.setOpenExternalLinks(True)
        self.banner.setTextFormat(Qt.TextFormat.RichText)
        self.banner.hide()

        self.tabs = QTabWidget()
        self.providers_tab = self._build_providers_tab()
        self.server_tab = self._build_server_tab()
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
        self._refresh_provider_list()

        if focus_key_for is not None:
            self._open_at_key(focus_key_for)

    # ================================================================== providers tab

    def _build_providers_tab(self) -> QWidget:
        self.provider_list = QListWidget()
        self.provider_list.setMinimumWidth(190)
        self.add_button = QPushButton("Add...")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip(
            "Remove this provider from NimBridge (its stored key stays in the keychain:\n"
            "use Remove key first to delete it)"
        )
        self.default_combo = QComboBox()
        self.default_combo.setToolTip(
            "Models named without a 'provider/' prefix are sent to this provider"
        )

        # ---- the selected provider
        self.name_edit = QLineEdit()
        self.kind_label = QLabel()
        self.account_label = QLabel("Account ID:")
        self.account_edit = QLineEdit()
        self.base_url_edit = QLineEdit()
        self.base_url_edit.setPlaceholderText("https://example.com/v1")

        self.key_status_label = QLabel()
        self.key_status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.key_edit = QLineEdit()
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_edit.setClearButtonEnabled(True)
        self.save_key_button = QPushButton("Save key")
        self.save_key_button.setToolTip(
            "Store the key in the keychain now (not in the settings file)"
        )
        self.remove_key_button = QPushButton("Remove key")
        self.test_button = QPushButton("Test")
        self.test_button.setToolTip(
            "Ask the provider for its models and send one tiny request\n"
            "(with the key typed above, or the stored one)"
        )
        self.get_key_link = QLabel()
        self.get_key_link.setOpenExternalLinks(True)
        self.get_key_link.setTextFormat(Qt.TextFormat.RichText)
        self.key_message_label = QLabel()
        self.key_message_label.setWordWrap(True)
        self.key_message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        list_buttons = QHBoxLayout()
        list_buttons.addWidget(self.add_button)
        list_buttons.addWidget(self.remove_button)
        left = QVBoxLayout()
        left.addWidget(self.provider_list, 1)
        left.addLayout(list_buttons)
        left.addWidget(QLabel("Default provider:"))
        left.addWidget(self.default_combo)

        details = QGroupBox("Provider")
        form = QFormLayout(details)
        form.addRow("Name:", self.name_edit)
        form.addRow("Kind:", self.kind_label)
        form.addRow(self.account_label, self.account_edit)
        form.addRow("Base URL:", self.base_url_edit)

        key_box = QGroupBox("API key")
        key_layout = QVBoxLayout(key_box)
        key_row = QHBoxLayout()
        key_row.addWidget(self.key_edit, 1)
        key_row.addWidget(self.save_key_button)
        key_row.addWidget(self.remove_key_button)
        test_row = QHBoxLayout()
        test_row.addWidget(self.test_button)
        test_row.addStretch(1)
        test_row.addWidget(self.get_key_link)
        key_layout.addWidget(self.key_status_label)
        key_layout.addLayout(key_row)
        key_layout.addLayout(test_row)
        key_layout.addWidget(self.key_message_label)

        right = QVBoxLayout()
        right.addWidget(details)
        right.addWidget(key_box)
        right.addStretch(1)

        tab = QWidget()
        row = QHBoxLayout(tab)
        row.addLayout(left)
        row.addLayout(right, 1)

        self.provider_list.currentRowChanged.connect(self._provider_selected)
        self.add_button.clicked.connect(self._open_add_dialog)
        self.remove_button.clicked.connect(self._remove_selected)
        self.default_combo.activated.connect(self._default_chosen)
        self.name_edit.textEdited.connect(self._name_edited)
        self.account_edit.textEdited.connect(self._account_edited)
        self.base_url_edit.textEdited.connect(self._base_url_edited)
        self.key_edit.textChanged.connect(self._update_key_buttons)
        self.key_edit.textEdited.connect(self._key_typed)
        self.key_edit.returnPressed.connect(self._save_key)
        self.save_key_button.clicked.connect(self._save_key)
        self.remove_key_button.clicked.connect(self._remove_key)
        self.test_button.clicked.connect(self._test)
        return tab

    # ---- list and selection

    @property
    def current_draft(self) -> _ProviderDraft | None:
        row = self.provider_list.currentRow()
        return self._drafts[row] if 0 <= row < len(self._drafts) else None

    def select_provider(self, name: str) -> bool:
        for row, draft in enumerate(self._drafts):
            if draft.name == name:
                self.provider_list.setCurrentRow(row)
                self._show_draft()
                return True
        return False

    def add_provider(self, provider: Provider) -> None:
        """Add a provider (from the Add dialog) and select it, ready for its key."""
        self._drafts.append(
            _ProviderDraft(
                provider.name, provider.kind, provider.base_url, provider.account_id, None
            )
        )
        self._refresh_provider_list()
        self.provider_list.setCurrentRow(len(self._drafts) - 1)
        if provider.preset.needs_key:
            self.key_edit.setFocus()

    def _refresh_provider_list(self) -> None:
        row = self.provider_list.currentRow()
        self.provider_list.blockSignals(True)  # rebuilding must not re-fill the form
        self.provider_list.clear()
        for draft in self._drafts:
            note = "  (default)" if draft is self._default else ""
            item = QListWidgetItem(f"{draft.name}{note}")
            item.setToolTip(PRESET_BY_KIND[draft.kind].label)
            item.setSizeHint(QSize(0, self.fontMetrics().height() + 10))  # room to click
            self.provider_list.addItem(item)
        self.provider_list.setCurrentRow(min(max(row, 0), len(self._drafts) - 1))
        self.provider_list.blockSignals(False)
        self.default_combo.clear()
        for draft in self._drafts:
            self.default_combo.addItem(draft.name)
        self.default_combo.setCurrentIndex(self._drafts.index(self._default))
        self.remove_button.setEnabled(len(self._drafts) > 1)
        self._show_draft()

    def _provider_selected(self, row: int) -> None:
        self._show_draft()

    def _show_draft(self, *, force: bool = False) -> None:
        """Fill the form from the selected draft, unless it already shows that one."""
        draft = self.current_draft
        if draft is None or (draft is self._shown and not force):
            return
        self._shown = draft
        self._filling = True
        try:
            preset = PRESET_BY_KIND[draft.kind]
            self.name_edit.setText(draft.name)
            # A saved provider's key is stored under its name: renaming would orphan it.
            self.name_edit.setReadOnly(draft.original is not None)
            self.name_edit.setFrame(draft.original is None)  # read-only should look it
            self.name_edit.setToolTip(
                "Remove the provider and add it again to rename it (its key is stored under "
                "this name)"
                if draft.original is not None
                else "Also the prefix that routes a model here: name/model-id"
            )
            self.kind_label.setText(preset.label)
            cloudflare = draft.kind is ProviderKind.CLOUDFLARE
            self.account_label.setVisible(cloudflare)
            self.account_edit.setVisible(cloudflare)
            self.account_edit.setText(draft.account_id or "")
            show_url(self.base_url_edit, draft.base_url)
            self.key_edit.clear()
            self.key_message_label.clear()
            if preset.keys_page:
                self.get_key_link.setText(_link(preset.keys_page, "Get a key"))
                self.get_key_link.setToolTip(preset.keys_page)
            self.get_key_link.setVisible(bool(preset.keys_page))
        finally:
            self._filling = False
        self._show_key_status()

    def _name_edited(self, text: str) -> None:
        draft = self.current_draft
        if draft is not None and not self._filling and draft.original is None:
            draft.name = text
            self._refresh_provider_list()

    def _account_edited(self, text: str) -> None:
        draft = self.current_draft
        if draft is None or self._filling:
            return
        # Keep the base URL in step with the account id unless the user changed the URL.
        if draft.base_url == preset_base_url(draft.kind, draft.account_id):
            draft.base_url = preset_base_url(draft.kind, text.strip())
            show_url(self.base_url_edit, draft.base_url)
        draft.account_id = text
        self.key_message_label.clear()  # a test's verdict was for the old account

    def _base_url_edited(self, text: str) -> None:
        draft = self.current_draft
        self.base_url_edit.setToolTip(text)
        if draft is not None and not self._filling:
            draft.base_url = text
            self.key_message_label.clear()  # a test's verdict was for the old URL

    def _default_chosen(self, index: int) -> None:
        if 0 <= index < len(self._drafts):
            self._default = self._drafts[index]
            self._refresh_provider_list()

    def _open_add_dialog(self) -> None:
        self.add_dialog = AddProviderDialog({d.name for d in self._drafts}, self)
        dialog = self.add_dialog
        dialog.accepted.connect(lambda: self.add_provider(dialog.provider()))
        dialog.open()  # window-modal, not a nested event loop (the qasync loop keeps running)

    def _remove_selected(self) -> None:
        draft = self.current_draft
        if draft is None or len(self._drafts) < 2:
            return
        row = self._drafts.index(draft)
        self._drafts.remove(draft)
        if draft is self._default:
            self._default = self._drafts[0]
        self._refresh_provider_list()
        self.provider_list.setCurrentRow(min(row, len(self._drafts) - 1))

    # ---- keys

    def _key_status(self, name: str) -> KeyStatus:
        try:
            statuses = {s.provider: s for s in self._controller.key_statuses()}
        except Exception as exc:  # a locked or missing keychain: say so, do not crash
            log.warning("cannot read key statuses: %s", exc)
            statuses = {}
        status = statuses.get(name)
        if status is not None and status.source is not KeySource.NONE:
            return status
        if name in self._stored_here:
            return KeyStatus(name, KeySource.KEYCHAIN)
        return KeyStatus(name, KeySource.NONE)

    def key_status_text(self, name: str) -> str:
        status = self._key_status(name)
        if status.source is KeySource.KEYCHAIN:
            where = _key_store_words(self._controller)
            return f"key set, in {where}"
        if status.source is KeySource.MEMORY:
            return "key set (this session only: no keychain)"
        if status.source is KeySource.ENVIRONMENT:
            return f"key from the environment variable {status.env_name or ''}".rstrip()
        draft = next((d for d in self._drafts if d.name == name), None)
        if draft is not None and not PRESET_BY_KIND[draft.kind].needs_key:
            return "no key (a local server usually needs none)"
        return "no key"

    def _show_key_status(self) -> None:
        draft = self.current_draft
        if draft is None:
            return
        text = self.key_status_text(draft.name)
        has_key = self._key_status(draft.name).source is not KeySource.NONE
        self.key_status_label.setText(f"Status: {text}")
        self.key_edit.setPlaceholderText(
            "paste a new key to replace it" if has_key else "paste your API key here"
        )
        self.remove_key_button.setEnabled(
            self._key_status(draft.name).source in (KeySource.KEYCHAIN, KeySource.MEMORY)
        )
        self._update_key_buttons()

    def _update_key_buttons(self) -> None:
        self.save_key_button.setEnabled(bool(self.key_edit.text().strip()))
        self.test_button.setEnabled(not self._testing and self.current_draft is not None)

    def _key_typed(self) -> None:
        if not self._testing:  # "Failed: ..." was about the key before this one
            self.key_message_label.clear()

    def _save_key(self) -> None:
        draft = self.current_draft
        key = self.key_edit.text()
        if draft is None or not key.strip():
            return
        name = draft.name.strip()
        try:
            self._controller.set_key(name, key.strip())
        except Exception as exc:  # ValueError / keychain unavailable: words, never the key
            self._key_message(f"Key not saved: {exc}", ok=False)
            return
        # The field never shows the key again: only whether one is set.
        self.key_edit.clear()
        self._stored_here.add(name)
        self._show_key_status()
        self._key_message(f"Key saved for {name}.", ok=True)
        if self._focus_key_for == name and self.banner.isVisible():
            self.banner.setText("Key saved. Press OK and NimBridge is ready.")

    def _remove_key(self) -> None:
        draft = self.current_draft
        if draft is None:
            return
        try:
            removed = self._controller.delete_key(draft.name)
        except Exception as exc:  # keychain errors: words
            self._key_message(f"Key not removed: {exc}", ok=False)
            return
        self._stored_here.discard(draft.name)
        self._show_key_status()
        self._key_message(
            f"Key removed for {draft.name}." if removed else "There was no stored key.", ok=True
        )

    def _key_message(self, text: str, *, ok: bool) -> None:
        self.key_message_label.setStyleSheet(OK_STYLE if ok else ERROR_STYLE)
        self.key_message_label.setText(text)

    def _test(self) -> None:
        draft = self.current_draft
        if draft is None or self._testing:
            return
        self._testing = True
        self._update_key_buttons()
        self.key_message_label.setStyleSheet("")
        self.key_message_label.setText(f"Testing {draft.base_url.strip()} ...")
        typed = self.key_edit.text().strip() or None  # test a key before saving it
        spawn(self._run_test(draft.build(), typed), name="settings-test-provider")

    async def _run_test(self, provider: Provider, key: str | None) -> None:
        try:
            ok, words = await self._controller.test_provider(provider, key)
        except Exception as exc:  # the network, a timeout: words
            ok, words = False, str(exc) or type(exc).__name__
        finally:
            self._testing = False
            self._update_key_buttons()
        self._key_message(("Works: " if ok else "Failed: ") + words, ok=ok)

    # ---- first run

    def _open_at_key(self, name: str) -> None:
        self.tabs.setCurrentWidget(self.providers_tab)
        found = self.select_provider(name)
        draft = self.current_draft
        if found and draft is not None:
            kind = draft.kind
        else:  # not configured (yet): a preset of that name, else NVIDIA's
            kind = next((k for k in ProviderKind if k.value == name), ProviderKind.NVIDIA)
        preset = PRESET_BY_KIND[kind]
        text = f"Paste your {short_label(kind)} API key to start"
        if preset.keys_page:
            host = urlparse(preset.keys_page).hostname or preset.keys_page
            text += f" (get one at {_link(preset.keys_page, host)})"
        self.banner.setText(text)
        self.banner.show()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        if self._focus_pending:
            self._focus_pending = False
            # After the window is shown, or the focus request is lost.
            QTimer.singleShot(0, self._focus_key_field)

    def _focus_key_field(self) -> None:
        self.activateWindow()
        self.key_edit.setFocus(Qt.FocusReason.OtherFocusReason)

    # ================================================================== server tab

    def _build_server_tab(self) -> QWidget:
        settings = self._controller.settings
        self.host_edit = QLineEdit(settings.host)
        self.host_edit.setMaximumWidth(280)
        self.host_edit.setToolTip("127.0.0.1 keeps NimBridge reachable from this computer only")
        self.host_warning = QLabel()
        self.host_warning.setWordWrap(True)
        self.host_warning.setStyleSheet(WARNING_STYLE)
        self.port_edit = QLineEdit(str(settings.port))
        self.port_edit.setMaximumWidth(100)
        self.pass_client_keys_check = QCheckBox(
            "Pass-through: no proxy key; send each client's own API key to the provider"
        )
        self.pass_client_keys_check.setChecked(settings.pass_client_keys)
        self.pass_client_keys_check.setToolTip(
            "Off (recommended): clients must send NimBridge's proxy key, which Launch Claude\n"
            "Code hands on, so no other program or web page can spend your quota.\n"
            "On: any program on this computer can use the port; NimBridge's own provider\n"
            "keys are used when set, else the client's key is passed on."
        )
        self.pass_client_keys_check.setEnabled(not settings.require_proxy_key)

        # The local proxy key: shown masked, revealed or copied on demand, regenerated
        # (the server restarts with it, so old clients must be given the new one).
        self.proxy_key_edit = QLineEdit(self._controller.status().proxy_key or "")
        self.proxy_key_edit.setReadOnly(True)
        self.proxy_key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.proxy_key_edit.setPlaceholderText("none: clients' own keys are passed on")
        self.show_proxy_key_button = QPushButton("Show")
        self.show_proxy_key_button.setCheckable(True)
        self.show_proxy_key_button.toggled.connect(self._show_proxy_key)
        self.copy_proxy_key_button = QPushButton("Copy")
        self.copy_proxy_key_button.clicked.connect(self._copy_proxy_key)
        self.regenerate_proxy_key_button = QPushButton("Regenerate")
        self.regenerate_proxy_key_button.setToolTip(
            "Make a new random key; clients (Claude Code) must then send the new one"
        )
        self.regenerate_proxy_key_button.clicked.connect(
            lambda checked=False: spawn(self._regenerate_proxy_key(), name="regenerate proxy key")
        )
        # In pass-through there is no key to regenerate (OK applies the choice first).
        self.regenerate_proxy_key_button.setEnabled(not settings.pass_client_keys)
        proxy_row_widget = QWidget()
        proxy_row = QHBoxLayout(proxy_row_widget)
        proxy_row.setContentsMargins(0, 0, 0, 0)
        proxy_row.addWidget(self.proxy_key_edit, 1)
        proxy_row.addWidget(self.show_proxy_key_button)
        proxy_row.addWidget(self.copy_proxy_key_button)
        proxy_row.addWidget(self.regenerate_proxy_key_button)

        self.start_server_check = QCheckBox("Start the server when NimBridge starts")
        self.start_server_check.setChecked(bool(settings.ui.get("start_server_at_launch", True)))
        self.login_check = QCheckBox("Start NimBridge when I log in")
        try:
            self._autostart_was = autostart_enabled()
        except OSError as exc:
            log.warning("cannot tell whether NimBridge starts at login: %s", exc)
            self._autostart_was = False
        self.login_check.setChecked(self._autostart_was)

        self.commit_spin = self._seconds("commit_window_s", settings, step=0.1)
        self.commit_spin.setToolTip(
            "While the provider has not begun its answer, NimBridge waits up to this long\n"
            "before it starts the reply to Claude Code. A provider that fails within that\n"
            "time is retried without Claude Code noticing; later, a failure ends the reply\n"
            "with an error. 0 starts every reply at once. (commit_window_s in the file)"
        )
        self.connect_spin = self._seconds("connect_timeout_s", settings, step=1)
        self.connect_spin.setToolTip("Give up connecting to a provider after this long")
        self.read_spin = self._seconds("read_timeout_s", settings, step=30)
        self.read_spin.setToolTip(
            "The longest silence tolerated from a provider (reasoning models think for minutes)"
        )

        self.smooth_check = QCheckBox(
            "Smooth bursts: split a long piece of text into small ones, spread over 50 ms"
        )
        self.smooth_check.setChecked(settings.smooth_deltas)
        self.smooth_check.setToolTip(
            "Some providers send a whole paragraph at once after a silence, which Claude Code\n"
            "shows as a jump. Split, it reads as a stream. The end of an answer is never\n"
            "later for it; tool arguments are never split."
        )

        # How NimBridge itself reaches providers and the web (app.server.network).
        self.outbound_proxy_edit = QLineEdit(settings.outbound_proxy)
        self.outbound_proxy_edit.setPlaceholderText(
            "empty: HTTPS_PROXY or the system's proxy; http://proxy:3128; direct"
        )
        self.outbound_proxy_edit.setToolTip(
            "The proxy NimBridge's own requests go through (providers, web search, web\n"
            "fetch). Empty: the HTTPS_PROXY / HTTP_PROXY / NO_PROXY variables, or the\n"
            'system\'s proxy settings. "direct": no proxy. Loopback never goes through it.\n'
            "Claude Code still talks to NimBridge directly."
        )
        stored_user = self._controller.outbound_proxy_user()
        self.proxy_user_edit = QLineEdit(stored_user or "")
        self.proxy_user_edit.setPlaceholderText("user name, if the proxy asks for one")
        self.proxy_password_edit = QLineEdit()
        self.proxy_password_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.proxy_password_edit.setPlaceholderText(
            "stored in the keychain" if stored_user else "password (kept in the keychain)"
        )
        login_row_widget = QWidget()
        login_row = QHBoxLayout(login_row_widget)
        login_row.setContentsMargins(0, 0, 0, 0)
        login_row.addWidget(self.proxy_user_edit, 1)
        login_row.addWidget(self.proxy_password_edit, 1)
        self.ca_file_edit = QLineEdit(settings.extra_ca_file)
        self.ca_file_edit.setPlaceholderText("none: the system's trust store only")
        self.ca_file_edit.setToolTip(
            "A PEM file of CA certificates trusted on top of the system's trust store:\n"
            "a self-hosted provider's own CA, or a TLS-inspecting proxy's root"
        )
        browse_ca_button = QPushButton("Browse…")
        browse_ca_button.clicked.connect(self._browse_ca_file)
        ca_row_widget = QWidget()
        ca_row = QHBoxLayout(ca_row_widget)
        ca_row.setContentsMargins(0, 0, 0, 0)
        ca_row.addWidget(self.ca_file_edit, 1)
        ca_row.addWidget(browse_ca_button)
        outbound = QGroupBox("Reaching providers")
        out_form = QFormLayout(outbound)
        out_form.addRow("Proxy:", self.outbound_proxy_edit)
        out_form.addRow("Proxy login:", login_row_widget)
        out_form.addRow("Extra CA file:", ca_row_widget)

        network = QGroupBox("Listening")
        net_form = QFormLayout(network)
        net_form.addRow("Host:", self.host_edit)
        net_form.addRow("", self.host_warning)
        net_form.addRow("Port:", self.port_edit)
        net_form.addRow("", self.pass_client_keys_check)
        net_form.addRow("Proxy key:", proxy_row_widget)

        startup = QGroupBox("Starting")
        start_layout = QVBoxLayout(startup)
        start_layout.addWidget(self.start_server_check)
        start_layout.addWidget(self.login_check)

        timing = QGroupBox("Timing")
        time_form = QFormLayout(timing)
        time_form.addRow("Retry unnoticed within:", self.commit_spin)
        retry_label = time_form.labelForField(self.commit_spin)
        if retry_label is not None:
            retry_label.setToolTip(self.commit_spin.toolTip())
        time_form.addRow("Connect timeout:", self.connect_spin)
        time_form.addRow("Read timeout:", self.read_spin)

        streaming = QGroupBox("Streaming")
        streaming_layout = QVBoxLayout(streaming)
        streaming_layout.addWidget(self.smooth_check)

        align_label_columns(net_form, time_form, out_form)

        tab = QWidget()
        layout = QVBoxLayout(tab)
        layout.addWidget(network)
        layout.addWidget(outbound)
        layout.addWidget(startup)
        layout.addWidget(timing)
        layout.addWidget(streaming)
        layout.addStretch(1)

        self.host_edit.textChanged.connect(self._host_changed)
        self._host_changed(self.host_edit.text())
        return tab

    def _copy_proxy_key(self) -> None:
        QGuiApplication.clipboard().setText(self.proxy_key_edit.text())
        self.copy_proxy_key_button.setText("Copied")  # the key itself is never shown
        # The button as the context: a dialog closed within the 2 s takes the call with it.
        button = self.copy_proxy_key_button
        QTimer.singleShot(2000, button, lambda: button.setText("Copy"))

    def _show_proxy_key(self, shown: bool) -> None:
        mode = QLineEdit.EchoMode.Normal if shown else QLineEdit.EchoMode.Password
        self.proxy_key_edit.setEchoMode(mode)
        self.show_proxy_key_button.setText("Hide" if shown else "Show")

    async def _regenerate_proxy_key(self) -> None:
        self.regenerate_proxy_key_button.setEnabled(False)
        try:
            self.proxy_key_edit.setText(await self._controller.regenerate_proxy_key())
        finally:
            self.regenerate_proxy_key_button.setEnabled(True)

    @staticmethod
    def _seconds(name: str, settings: Settings, *, step: float) -> QDoubleSpinBox:
        """A box for the setting `name`, its range the loader's (RANGE_BY_SETTING): what
        it lets a user choose, the file takes back."""
        value: float = getattr(settings, name)
        limits = RANGE_BY_SETTING[name]
        spin = QDoubleSpinBox()
        spin.setDecimals(1)  # the ranges start at 0 or 0.1
        spin.setRange(limits.minimum, limits.maximum)
        spin.setSingleStep(step)
        spin.setSuffix(" s")
        spin.setValue(value)
        spin.setMaximumWidth(120)
        return spin

    def _host_changed(self, text: str) -> None:
        host = text.strip()
        if host and is_loopback(host):
            self.host_warning.hide()
            return
        where = "every network interface" if host in ("", "0.0.0.0", "::") else host
        self.host_warning.setText(
            f"Warning: NimBridge will listen on {where}, so other computers on the network "
            "can reach it; only the proxy key keeps them from spending your API keys' quota "
            "(so pass-through must stay off). Keep 127.0.0.1 unless you need this."
        )
        self.host_warning.show()

    # ================================================================== saving

    def build_settings(self) -> Settings:
        """The dialog's settings, validated; SettingsError ("Not saved: ...") otherwise."""
        base = self._controller.settings  # now: the model picker may have changed tiers

        def refuse(why: str) -> SettingsError:
            return SettingsError(f"{WHERE}: {why}")

        host = self.host_edit.text().strip()
        if self.pass_client_keys_check.isChecked() and host and not is_loopback(host):
            raise refuse(f"listening on {host} needs the proxy key: turn pass-through off")
        if not host:
            raise refuse("the host must not be empty (127.0.0.1 keeps NimBridge on this computer)")
        port_text = self.port_edit.text().strip()
        try:
            port = int(port_text)
        except ValueError:
            raise refuse(f"the port must be a whole number, got {port_text!r}") from None
        if not 1 <= port <= 65535:
            raise refuse(f"the port must be between 1 and 65535, got {port}")
        taken: set[str] = set()
        providers = []
        for draft in self._drafts:
            problem = _name_problem(draft.name, taken)
            if problem:
                raise refuse(problem)
            taken.add(draft.name)
            if draft.kind is ProviderKind.CLOUDFLARE and "/accounts//" in draft.base_url:
                raise refuse(f"provider {draft.name!r} (Cloudflare) needs your account ID")
            providers.append(draft.build())
        ui = dict(base.ui)
        start_server = self.start_server_check.isChecked()
        if start_server != bool(ui.get("start_server_at_launch", True)):  # else: no change
            ui["start_server_at_launch"] = start_server
        settings = replace(
            self.web_tab.apply_to(base),
            host=host,
            port=port,
            pass_client_keys=self.pass_client_keys_check.isChecked(),
            commit_window_s=self.commit_spin.value(),
            connect_timeout_s=self.connect_spin.value(),
            read_timeout_s=self.read_spin.value(),
            smooth_deltas=self.smooth_check.isChecked(),
            outbound_proxy=self.outbound_proxy_edit.text().strip(),
            extra_ca_file=self.ca_file_edit.text().strip(),
            providers=tuple(providers),
            default_provider=self._default.name.strip(),
            ui=ui,
        )
        return validate_settings(settings, WHERE)

    def _browse_ca_file(self) -> None:
        chosen, _ = QFileDialog.getOpenFileName(
            self, "Extra CA file", "", "Certificates (*.pem *.crt *.cer);;All files (*)"
        )
        if chosen:
            self.ca_file_edit.setText(chosen)

    def _save_proxy_login(self) -> bool:
        """Store a typed password (or forget the login when the name was cleared);
        whether the login changed. ValueError for a name the keychain entry refuses."""
        user = self.proxy_user_edit.text().strip()
        password = self.proxy_password_edit.text()
        if password:
            self._controller.set_outbound_proxy_login(user, password)
            self.proxy_password_edit.clear()
            self.proxy_password_edit.setPlaceholderText("stored in the keychain")
            return True
        if not user and self._controller.outbound_proxy_user() is not None:
            self._controller.set_outbound_proxy_login("", None)
            self.proxy_password_edit.setPlaceholderText("password (kept in the keychain)")
            return True
        return False

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
        want_autostart = self.login_check.isChecked()
        autostart_changed = want_autostart != self._autostart_was
        try:
            if autostart_changed:
                try:
                    set_autostart(want_autostart, command=default_command())
                except (OSError, ValueError) as exc:
                    self._refuse(f"{WHERE}: could not change start at login ({exc})")
                    return
            try:
                login_changed = self._save_proxy_login()
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
                            set_autostart(self._autostart_was, command=default_command())
                        except OSError as undo:
                            log.warning("could not undo the start-at-login change: %s", undo)
                    text = str(exc)
                    self._refuse(text if text.startswith(WHERE) else f"{WHERE}: {text}")
                    return
            self._autostart_was = want_autostart
            for draft in self._drafts:  # now saved: names are keys' names from here on
                draft.original = draft.build()
        finally:
            self._saving = False
            self._set_busy(False)
        if close:
            self.accept()
        else:
            self._show_message("Saved.", style=OK_STYLE)
            self._show_draft(force=True)  # a saved provider's name is now read-only

    def _refuse(self, text: str) -> None:
        self._show_message(text, style=ERROR_STYLE)
        # Show the tab the problem is on.
        lowered = text.lower()
        on_providers = "provider" in lowered or "upstream_url" in lowered
        tab = self.providers_tab if on_providers else self.server_tab
        self.tabs.setCurrentWidget(self.web_tab if "'web_" in lowered else tab)

    def _show_message(self, text: str, *, style: str) -> None:
        self.message_label.setStyleSheet(style)
        self.message_label.setText(text)
        self.message_label.setVisible(bool(text))

    def _set_busy(self, busy: bool) -> None:
        self.ok_button.setEnabled(not busy)
        self.apply_button.setEnabled(not busy)
