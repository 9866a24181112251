"""The "Add a provider" dialog: a preset fills the base URL (and asks Cloudflare's account id).

`name_problem` is the one rule for a provider's name, here and when the settings are built.
"""

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from app.config.limits import provider_name_problem
from app.core.providers import PRESET_BY_KIND, Provider, ProviderKind, preset_base_url
from app.ui.settings.form_fields import ERROR_STYLE, show_url


def name_problem(name: str, taken: set[str]) -> str | None:
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
        problem = name_problem(self.name_edit.text(), self._taken)
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
