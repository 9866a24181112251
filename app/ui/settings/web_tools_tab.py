"""The settings dialog's "Web tools" tab: the search backend, its key, and web fetch.

Invariants (the Providers tab's, for search keys: the same key field):
- A key typed here goes straight to the keychain through
  `controller.set_web_search_key` ("Save key") and the field is cleared; afterwards
  only whether a key is set, and where, is shown.
- `apply_to(settings)` gives the tab's choices as settings; the dialog validates and
  saves them with the rest (Cancel discards them, not saved keys).
"""

import logging
from dataclasses import replace

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.config.limits import RANGE_BY_SETTING
from app.config.secrets import KeySource, KeyStatus
from app.config.settings import Settings
from app.service import ProxyController
from app.ui.settings.form_fields import align_label_columns
from app.ui.settings.key_field import KeyField

log = logging.getLogger(__name__)

HINT_STYLE = "color: #5f6368;"

# (setting value, what the list shows, base URL placeholder, words under the list)
BACKEND_CHOICES = (
    (
        "",
        "None: web search is off",
        "",
        "Clients' web searches get an error saying how to turn it on.",
    ),
    (
        "tavily",
        "Tavily",
        "https://api.tavily.com",
        "A search API made for models; keys at tavily.com (a free tier exists).",
    ),
    (
        "brave",
        "Brave Search",
        "https://api.search.brave.com",
        "Brave's own index; keys at api-dashboard.search.brave.com.",
    ),
    (
        "searxng",
        "SearXNG (your own instance)",
        "http://localhost:8888",
        "No key. Its settings.yml must allow JSON: search: formats: [html, json].",
    ),
)
KEYED_BACKENDS = ("tavily", "brave")
FETCH_CHARS_RANGE = RANGE_BY_SETTING["web_fetch_max_chars"]  # the loader's range


class WebToolsTab(QWidget):
    def __init__(self, controller: ProxyController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._controller = controller
        settings = controller.settings
        # Each backend keeps the URL typed for it while the user switches between them.
        self._base_url_by_backend = {settings.web_search_backend: settings.web_search_base_url}
        self._backend = settings.web_search_backend

        self.backend_combo = QComboBox()
        for value, label, _placeholder, _hint in BACKEND_CHOICES:
            self.backend_combo.addItem(label, value)
        self.backend_hint = QLabel()
        self.backend_hint.setWordWrap(True)
        self.backend_hint.setStyleSheet(HINT_STYLE)
        self.base_url_edit = QLineEdit()
        self.key_field = KeyField(
            controller,
            refresh_buttons=self._update_buttons,
            save_tip="Store the key in the OS keychain now",
            test_tip="Run one search with these settings (and the typed key)",
        )
        self.key_edit = self.key_field.key_edit
        self.save_key_button = self.key_field.save_key_button
        self.remove_key_button = self.key_field.remove_key_button
        self.key_status_label = self.key_field.key_status_label
        self.test_button = self.key_field.test_button
        self.message_label = self.key_field.message_label

        key_row_widget = QWidget()
        key_row = QHBoxLayout(key_row_widget)
        key_row.setContentsMargins(0, 0, 0, 0)
        key_row.addWidget(self.key_edit, 1)
        key_row.addWidget(self.save_key_button)
        key_row.addWidget(self.remove_key_button)
        test_row_widget = QWidget()
        test_row = QHBoxLayout(test_row_widget)
        test_row.setContentsMargins(0, 0, 0, 0)
        test_row.addWidget(self.test_button)
        test_row.addWidget(self.message_label, 1)

        search = QGroupBox("Web search (the web_search tool)")
        search_form = QFormLayout(search)
        search_form.addRow("Backend:", self.backend_combo)
        search_form.addRow("", self.backend_hint)
        search_form.addRow("Base URL:", self.base_url_edit)
        search_form.addRow("API key:", key_row_widget)
        search_form.addRow("", self.key_status_label)
        search_form.addRow("", test_row_widget)

        self.fetch_check = QCheckBox("Fetch web pages for the model (the web_fetch tool)")
        self.fetch_check.setChecked(settings.web_fetch_enabled)
        self.max_chars_spin = QSpinBox()
        self.max_chars_spin.setRange(int(FETCH_CHARS_RANGE.minimum), int(FETCH_CHARS_RANGE.maximum))
        self.max_chars_spin.setSingleStep(10_000)
        self.max_chars_spin.setGroupSeparatorShown(True)
        self.max_chars_spin.setSuffix(" characters")
        self.max_chars_spin.setMaximumWidth(220)
        self.max_chars_spin.setValue(settings.web_fetch_max_chars)
        self.max_chars_spin.setToolTip("A page's text is cut to this length (about 4 per token)")
        self.private_check = QCheckBox(
            "Also fetch from private, loopback and link-local addresses (a network you trust)"
        )
        self.private_check.setChecked(settings.fetch_private_addresses)
        self.private_check.setToolTip(
            "Off: a URL leading into your own network (192.168.x.x, 127.0.0.1, the cloud\n"
            "metadata address) is refused. Applies to images fetched by URL too."
        )
        fetch = QGroupBox("Web fetch")
        fetch_form = QFormLayout(fetch)
        fetch_form.addRow("", self.fetch_check)
        fetch_form.addRow("Longest page:", self.max_chars_spin)
        fetch_form.addRow("", self.private_check)

        # One label width for both groups: the fetch checkboxes line up with the fields.
        align_label_columns(search_form, fetch_form)

        layout = QVBoxLayout(self)
        layout.addWidget(search)
        layout.addWidget(fetch)
        layout.addStretch(1)

        self.backend_combo.setCurrentIndex(max(0, self.backend_combo.findData(self._backend)))
        self.backend_combo.currentIndexChanged.connect(self._backend_changed)
        self.base_url_edit.textEdited.connect(self.key_field.forget_verdict)
        self.save_key_button.clicked.connect(self._save_key)
        self.remove_key_button.clicked.connect(self._remove_key)
        self.test_button.clicked.connect(self._test)
        self.fetch_check.toggled.connect(self.max_chars_spin.setEnabled)
        self.max_chars_spin.setEnabled(settings.web_fetch_enabled)
        self._show_backend()

    @property
    def backend(self) -> str:
        return str(self.backend_combo.currentData())

    def apply_to(self, settings: Settings) -> Settings:
        """`settings` with this tab's choices (validated by the dialog with the rest)."""
        backend = self.backend
        return replace(
            settings,
            web_search_backend=backend,
            web_search_base_url=self.base_url_edit.text().strip() if backend else "",
            web_fetch_enabled=self.fetch_check.isChecked(),
            web_fetch_max_chars=self.max_chars_spin.value(),
            fetch_private_addresses=self.private_check.isChecked(),
        )

    # ---- backend

    def _backend_changed(self) -> None:
        self._base_url_by_backend[self._backend] = self.base_url_edit.text()
        self._backend = self.backend
        self.message_label.clear()
        self._show_backend()

    def _show_backend(self) -> None:
        backend = self.backend
        _value, _label, placeholder, hint = next(c for c in BACKEND_CHOICES if c[0] == backend)
        self.backend_hint.setText(hint)
        self.base_url_edit.setText(self._base_url_by_backend.get(backend, ""))
        self.base_url_edit.setPlaceholderText(
            f"e.g. {placeholder}" if backend == "searxng" else placeholder
        )
        self.base_url_edit.setEnabled(bool(backend))
        keyed = backend in KEYED_BACKENDS
        self.key_edit.setEnabled(keyed)
        self.key_edit.clear()
        self._show_key_status()

    # ---- key

    def _key_status(self) -> KeyStatus | None:
        if self.backend not in KEYED_BACKENDS:
            return None
        try:
            return self._controller.web_search_key_status(self.backend)
        except Exception as exc:  # a locked or missing keychain: say so, do not crash
            log.warning("cannot read the web search key's status: %s", exc)
            return KeyStatus(self.backend, KeySource.NONE)

    def key_status_text(self) -> str:
        return self._status_text(self._key_status())

    def _status_text(self, status: KeyStatus | None) -> str:
        if status is None:
            return "no key needed" if self.backend else ""
        return self.key_field.status_text(status)

    def _show_key_status(self) -> None:
        status = self._key_status()
        self.key_field.show_status(status, self._status_text(status))

    def _update_buttons(self) -> None:
        keyed = self.backend in KEYED_BACKENDS
        self.save_key_button.setEnabled(keyed and bool(self.key_edit.text().strip()))
        self.test_button.setEnabled(bool(self.backend) and not self.key_field.testing)

    def _save_key(self) -> None:
        backend = self.backend
        if self.key_field.typed_key() is None or backend not in KEYED_BACKENDS:
            return
        if not self.key_field.store(lambda key: self._controller.set_web_search_key(backend, key)):
            return
        self._show_key_status()
        self.key_field.message(f"Key saved for {self.backend_combo.currentText()}.", ok=True)

    def _remove_key(self) -> None:
        backend = self.backend
        removed = self.key_field.delete(lambda: self._controller.delete_web_search_key(backend))
        if removed is None:
            return
        self._show_key_status()
        self.key_field.message("Key removed." if removed else "There was no stored key.", ok=True)

    # ---- test

    def _test(self) -> None:
        if self.key_field.testing or not self.backend:
            return
        backend, base_url = self.backend, self.base_url_edit.text().strip()
        typed = self.key_field.typed_key()  # test a key before saving it
        self.key_field.test(
            lambda: self._controller.test_web_search(backend, base_url, typed),
            doing="Searching ...",
            name="settings-test-web-search",
        )
