"""The settings dialog's "Web tools" tab: the search backend, its key, and web fetch.

Invariants (the Providers tab's, for search keys):
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
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.config.limits import RANGE_BY_SETTING
from app.config.secrets import KeySource, KeyStatus
from app.config.settings import Settings
from app.service import ProxyController
from app.tasks import spawn
from app.ui.form_fields import align_label_columns

log = logging.getLogger(__name__)

ERROR_STYLE = "color: #b3261e;"
OK_STYLE = "color: #1e7d32;"
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
        self._testing = False
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
        self.key_edit = QLineEdit()
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.save_key_button = QPushButton("Save key")
        self.save_key_button.setToolTip("Store the key in the OS keychain now")
        self.remove_key_button = QPushButton("Remove key")
        self.key_status_label = QLabel()
        self.test_button = QPushButton("Test")
        self.test_button.setToolTip("Run one search with these settings (and the typed key)")
        self.message_label = QLabel()
        self.message_label.setWordWrap(True)

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
        self.key_edit.textChanged.connect(self._update_buttons)
        self.key_edit.textEdited.connect(self._forget_verdict)
        self.base_url_edit.textEdited.connect(self._forget_verdict)
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
        status = self._key_status()
        if status is None:
            return "no key needed" if self.backend else ""
        if status.source is KeySource.KEYCHAIN:
            return f"key set, in {self._controller.key_store_description()}"
        if status.source is KeySource.MEMORY:
            return "key set (this session only: no keychain)"
        if status.source is KeySource.ENVIRONMENT:
            return f"key from the environment variable {status.env_name or ''}".rstrip()
        return "no key"

    def _show_key_status(self) -> None:
        text = self.key_status_text()
        self.key_status_label.setText(f"Status: {text}" if text else "")
        status = self._key_status()
        has_key = status is not None and status.source is not KeySource.NONE
        self.key_edit.setPlaceholderText(
            ""
            if status is None
            else "paste a new key to replace it"
            if has_key
            else "paste your API key here"
        )
        self.remove_key_button.setEnabled(
            status is not None and status.source in (KeySource.KEYCHAIN, KeySource.MEMORY)
        )
        self._update_buttons()

    def _update_buttons(self) -> None:
        keyed = self.backend in KEYED_BACKENDS
        self.save_key_button.setEnabled(keyed and bool(self.key_edit.text().strip()))
        self.test_button.setEnabled(bool(self.backend) and not self._testing)

    def _forget_verdict(self) -> None:
        if not self._testing:  # "Failed: ..." was about the key or URL before the edit
            self.message_label.clear()

    def _save_key(self) -> None:
        key = self.key_edit.text().strip()
        if not key or self.backend not in KEYED_BACKENDS:
            return
        try:
            self._controller.set_web_search_key(self.backend, key)
        except Exception as exc:  # ValueError / keychain unavailable: words, never the key
            self._message(f"Key not saved: {exc}", ok=False)
            return
        self.key_edit.clear()  # never shown again: only whether one is set
        self._show_key_status()
        self._message(f"Key saved for {self.backend_combo.currentText()}.", ok=True)

    def _remove_key(self) -> None:
        try:
            removed = self._controller.delete_web_search_key(self.backend)
        except Exception as exc:  # keychain errors: words
            self._message(f"Key not removed: {exc}", ok=False)
            return
        self._show_key_status()
        self._message("Key removed." if removed else "There was no stored key.", ok=True)

    def _message(self, text: str, *, ok: bool) -> None:
        self.message_label.setStyleSheet(OK_STYLE if ok else ERROR_STYLE)
        self.message_label.setText(text)

    # ---- test

    def _test(self) -> None:
        if self._testing or not self.backend:
            return
        self._testing = True
        self._update_buttons()
        self.message_label.setStyleSheet("")
        self.message_label.setText("Searching ...")
        typed = self.key_edit.text().strip() or None  # test a key before saving it
        spawn(
            self._run_test(self.backend, self.base_url_edit.text().strip(), typed),
            name="settings-test-web-search",
        )

    async def _run_test(self, backend: str, base_url: str, key: str | None) -> None:
        try:
            ok, words = await self._controller.test_web_search(backend, base_url, key)
        except Exception as exc:  # the network, a timeout: words
            ok, words = False, str(exc) or type(exc).__name__
        finally:
            self._testing = False
            self._update_buttons()
        self._message(("Works: " if ok else "Failed: ") + words, ok=ok)
