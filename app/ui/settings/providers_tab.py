"""The settings dialog's "Providers" tab: the list, the selected provider, its key.

Invariants:
- Edits go to drafts (`ProviderDraft`), one per provider; only `apply_to` turns
  them into settings, and only the dialog saves those.
- A saved provider's name is read-only: its key is stored under that name.
- Keys are saved at once through `controller.set_key` (the key field's rules).
"""

import logging
from dataclasses import dataclass, replace

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.config.secrets import KeySource, KeyStatus
from app.config.settings import Settings
from app.core.providers import PRESET_BY_KIND, Provider, ProviderKind, preset_base_url
from app.service import ProxyController
from app.ui.settings.add_provider_dialog import AddProviderDialog, name_problem
from app.ui.settings.form_fields import link, refusal, show_url
from app.ui.settings.key_field import KeyField

log = logging.getLogger(__name__)


@dataclass
class ProviderDraft:
    """One provider as edited here; `original` is None for one added in this dialog."""

    name: str
    kind: ProviderKind
    base_url: str
    account_id: str | None
    original: Provider | None

    @classmethod
    def of(cls, provider: Provider) -> "ProviderDraft":
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


class ProvidersTab(QWidget):
    key_saved = Signal(str)  # the provider's name

    def __init__(self, controller: ProxyController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._controller = controller
        settings = controller.settings
        self._drafts = [ProviderDraft.of(p) for p in settings.providers]
        self._default = next(
            (d for d in self._drafts if d.name == settings.default_provider), self._drafts[0]
        )
        self._stored_here: set[str] = set()  # keys saved for providers not yet in settings
        self._filling = False  # True while the form is filled from a draft
        self._shown: ProviderDraft | None = None  # the draft the form shows
        self.add_dialog: AddProviderDialog | None = None

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

        self.key_field = KeyField(
            controller,
            refresh_buttons=self._update_key_buttons,
            save_tip="Store the key in the keychain now (not in the settings file)",
            test_tip="Ask the provider for its models and send one tiny request\n"
            "(with the key typed above, or the stored one)",
        )
        self.key_status_label = self.key_field.key_status_label
        self.key_status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.key_edit = self.key_field.key_edit
        self.key_edit.setClearButtonEnabled(True)
        self.save_key_button = self.key_field.save_key_button
        self.remove_key_button = self.key_field.remove_key_button
        self.test_button = self.key_field.test_button
        self.get_key_link = QLabel()
        self.get_key_link.setOpenExternalLinks(True)
        self.get_key_link.setTextFormat(Qt.TextFormat.RichText)
        self.key_message_label = self.key_field.message_label
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

        row = QHBoxLayout(self)
        row.addLayout(left)
        row.addLayout(right, 1)

        self.provider_list.currentRowChanged.connect(self._provider_selected)
        self.add_button.clicked.connect(self._open_add_dialog)
        self.remove_button.clicked.connect(self._remove_selected)
        self.default_combo.activated.connect(self._default_chosen)
        self.name_edit.textEdited.connect(self._name_edited)
        self.account_edit.textEdited.connect(self._account_edited)
        self.base_url_edit.textEdited.connect(self._base_url_edited)
        self.key_edit.returnPressed.connect(self._save_key)
        self.save_key_button.clicked.connect(self._save_key)
        self.remove_key_button.clicked.connect(self._remove_key)
        self.test_button.clicked.connect(self._test)
        self._refresh_provider_list()

    # ---- list and selection

    @property
    def current_draft(self) -> ProviderDraft | None:
        row = self.provider_list.currentRow()
        return self._drafts[row] if 0 <= row < len(self._drafts) else None

    def select_provider(self, name: str) -> bool:
        for row, draft in enumerate(self._drafts):
            if draft.name == name:
                self.provider_list.setCurrentRow(row)
                self.show_draft()
                return True
        return False

    def add_provider(self, provider: Provider) -> None:
        """Add a provider (from the Add dialog) and select it, ready for its key."""
        self._drafts.append(
            ProviderDraft(
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
        self.show_draft()

    def _provider_selected(self, row: int) -> None:
        self.show_draft()

    def show_draft(self, *, force: bool = False) -> None:
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
                self.get_key_link.setText(link(preset.keys_page, "Get a key"))
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
        # The dialog's window as the parent: window-modal over the whole settings dialog.
        self.add_dialog = AddProviderDialog({d.name for d in self._drafts}, self.window())
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
        return self._status_text(name, self._key_status(name))

    def _status_text(self, name: str, status: KeyStatus) -> str:
        draft = next((d for d in self._drafts if d.name == name), None)
        if (
            status.source is KeySource.NONE
            and draft is not None
            and not PRESET_BY_KIND[draft.kind].needs_key
        ):
            return "no key (a local server usually needs none)"
        return self.key_field.status_text(status)

    def _show_key_status(self) -> None:
        draft = self.current_draft
        if draft is None:
            return
        status = self._key_status(draft.name)
        self.key_field.show_status(status, self._status_text(draft.name, status))

    def _update_key_buttons(self) -> None:
        self.save_key_button.setEnabled(bool(self.key_edit.text().strip()))
        self.test_button.setEnabled(not self.key_field.testing and self.current_draft is not None)

    def _save_key(self) -> None:
        draft = self.current_draft
        if draft is None or self.key_field.typed_key() is None:
            return
        name = draft.name.strip()
        if not self.key_field.store(lambda key: self._controller.set_key(name, key)):
            return
        self._stored_here.add(name)
        self._show_key_status()
        self.key_field.message(f"Key saved for {name}.", ok=True)
        self.key_saved.emit(name)

    def _remove_key(self) -> None:
        draft = self.current_draft
        if draft is None:
            return
        name = draft.name
        removed = self.key_field.delete(lambda: self._controller.delete_key(name))
        if removed is None:
            return
        self._stored_here.discard(name)
        self._show_key_status()
        self.key_field.message(
            f"Key removed for {name}." if removed else "There was no stored key.", ok=True
        )

    def _test(self) -> None:
        draft = self.current_draft
        if draft is None or self.key_field.testing:
            return
        provider, typed = draft.build(), self.key_field.typed_key()  # a key before saving it
        self.key_field.test(
            lambda: self._controller.test_provider(provider, typed),
            doing=f"Testing {draft.base_url.strip()} ...",
            name="settings-test-provider",
        )

    # ---- saving

    def apply_to(self, settings: Settings) -> Settings:
        """`settings` with these providers and the default; a refusal names a bad one."""
        taken: set[str] = set()
        providers = []
        for draft in self._drafts:
            problem = name_problem(draft.name, taken)
            if problem:
                raise refusal(problem)
            taken.add(draft.name)
            if draft.kind is ProviderKind.CLOUDFLARE and "/accounts//" in draft.base_url:
                raise refusal(f"provider {draft.name!r} (Cloudflare) needs your account ID")
            providers.append(draft.build())
        return replace(
            settings, providers=tuple(providers), default_provider=self._default.name.strip()
        )

    def mark_saved(self) -> None:
        """The drafts are saved: their names are their keys' names from here on."""
        for draft in self._drafts:
            draft.original = draft.build()
