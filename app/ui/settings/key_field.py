"""The key editor the Providers and Web tools tabs share.

Invariants:
- A key typed here goes straight to the keychain (`store`, "Save key") and the
  field is cleared: afterwards only whether a key is set, and where, is shown.
- A "Test" runs with the typed key, else the stored one; while it runs, typing
  keeps its verdict line, which then says "Works: ..." or "Failed: ...".

Each tab lays the widgets out its own way and says what the key is for.
"""

from collections.abc import Awaitable, Callable

from PySide6.QtWidgets import QLabel, QLineEdit, QPushButton

from app.config.secrets import KeySource, KeyStatus
from app.service import ProxyController
from app.tasks import spawn
from app.ui.settings.form_fields import ERROR_STYLE, OK_STYLE

# Keys NimBridge itself stored, so "Remove key" can delete them (not the environment's).
REMOVABLE = (KeySource.KEYCHAIN, KeySource.MEMORY)


class KeyField:
    """A password field with Save key / Remove key, a status line, Test and a verdict line.

    `refresh_buttons` is the tab's rule for which buttons are enabled; it runs when the
    typed key changes and when a test starts or ends.
    """

    def __init__(
        self,
        controller: ProxyController,
        *,
        refresh_buttons: Callable[[], None],
        save_tip: str,
        test_tip: str,
    ) -> None:
        self._controller = controller
        self._refresh_buttons = refresh_buttons
        self.testing = False
        self.key_edit = QLineEdit()
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.save_key_button = QPushButton("Save key")
        self.save_key_button.setToolTip(save_tip)
        self.remove_key_button = QPushButton("Remove key")
        self.key_status_label = QLabel()
        self.test_button = QPushButton("Test")
        self.test_button.setToolTip(test_tip)
        self.message_label = QLabel()  # the verdict: a save, a removal, a test
        self.message_label.setWordWrap(True)

        self.key_edit.textChanged.connect(refresh_buttons)
        self.key_edit.textEdited.connect(self.forget_verdict)

    def typed_key(self) -> str | None:
        return self.key_edit.text().strip() or None

    def status_text(self, status: KeyStatus) -> str:
        """Where the key comes from, in words ("key set, in Secret Service")."""
        if status.source is KeySource.KEYCHAIN:
            return f"key set, in {self._controller.key_store_description()}"
        if status.source is KeySource.MEMORY:
            return "key set (this session only: no keychain)"
        if status.source is KeySource.ENVIRONMENT:
            return f"key from the environment variable {status.env_name or ''}".rstrip()
        return "no key"

    def show_status(self, status: KeyStatus | None, text: str) -> None:
        """Show `text` as the status; `status` None: this choice takes no key."""
        self.key_status_label.setText(f"Status: {text}" if text else "")
        has_key = status is not None and status.source is not KeySource.NONE
        self.key_edit.setPlaceholderText(
            ""
            if status is None
            else "paste a new key to replace it"
            if has_key
            else "paste your API key here"
        )
        self.remove_key_button.setEnabled(status is not None and status.source in REMOVABLE)
        self._refresh_buttons()

    def store(self, save: Callable[[str], None]) -> bool:
        """Hand the typed key to `save`; whether it was stored (else the reason is shown)."""
        try:
            save(self.key_edit.text().strip())
        except Exception as exc:  # ValueError / keychain unavailable: words, never the key
            self.message(f"Key not saved: {exc}", ok=False)
            return False
        self.key_edit.clear()  # never shown again: only whether one is set
        return True

    def delete(self, remove: Callable[[], bool]) -> bool | None:
        """Whether `remove` found a key to delete; None when it failed (the reason shown)."""
        try:
            return remove()
        except Exception as exc:  # keychain errors: words
            self.message(f"Key not removed: {exc}", ok=False)
            return None

    def message(self, text: str, *, ok: bool) -> None:
        self.message_label.setStyleSheet(OK_STYLE if ok else ERROR_STYLE)
        self.message_label.setText(text)

    def forget_verdict(self) -> None:
        if not self.testing:  # "Failed: ..." was about the key (or URL) before the edit
            self.message_label.clear()

    def test(
        self, run: Callable[[], Awaitable[tuple[bool, str]]], *, doing: str, name: str
    ) -> None:
        """Run `run()` (ok, words) in the background, `doing` shown meanwhile."""
        self.testing = True
        self._refresh_buttons()
        self.message_label.setStyleSheet("")
        self.message_label.setText(doing)
        spawn(self._run_test(run), name=name)

    async def _run_test(self, run: Callable[[], Awaitable[tuple[bool, str]]]) -> None:
        try:
            ok, words = await run()
        except Exception as exc:  # the network, a timeout: words
            ok, words = False, str(exc) or type(exc).__name__
        finally:
            self.testing = False
            self._refresh_buttons()
        self.message(("Works: " if ok else "Failed: ") + words, ok=ok)
