"""The key editor both key tabs share (app/ui/settings/key_field.py), on its own."""

import pytest
from pytestqt.qtbot import QtBot

from app.config.secrets import KeySource, KeyStatus
from app.ui.settings.key_field import KeyField
from tests.ui.fakes import FakeController
from tests.ui.qt_async import qasync_loop  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("qasync_loop")

SECRET = "nvapi-THIS-KEY-MUST-NEVER-BE-SHOWN-0123456789"


class Field:
    def __init__(self, qtbot: QtBot) -> None:
        self.refreshes = 0
        self.field = KeyField(
            FakeController(), refresh_buttons=self.refresh, save_tip="save", test_tip="test"
        )
        for widget in (self.field.key_edit, self.field.message_label, self.field.test_button):
            qtbot.addWidget(widget)

    def refresh(self) -> None:
        self.refreshes += 1


@pytest.mark.parametrize(
    ("status", "text", "placeholder", "removable"),
    [
        pytest.param(
            KeyStatus("p", KeySource.KEYCHAIN),
            "key set, in Secret Service (GNOME Keyring)",
            "paste a new key to replace it",
            True,
            id="keychain",
        ),
        pytest.param(
            KeyStatus("p", KeySource.MEMORY),
            "key set (this session only: no keychain)",
            "paste a new key to replace it",
            True,
            id="memory",
        ),
        pytest.param(
            KeyStatus("p", KeySource.ENVIRONMENT, "NVIDIA_API_KEY"),
            "key from the environment variable NVIDIA_API_KEY",
            "paste a new key to replace it",
            False,
            id="environment",
        ),
        pytest.param(
            KeyStatus("p", KeySource.NONE), "no key", "paste your API key here", False, id="none"
        ),
    ],
)
def test_the_status_in_words(qtbot, status, text, placeholder, removable):
    f = Field(qtbot)
    assert f.field.status_text(status) == text
    f.field.show_status(status, text)
    assert f.field.key_status_label.text() == f"Status: {text}"
    assert f.field.key_edit.placeholderText() == placeholder
    assert f.field.remove_key_button.isEnabled() is removable
    assert f.refreshes == 1


def test_a_choice_without_a_key_shows_no_status(qtbot):
    f = Field(qtbot)
    f.field.show_status(None, "")
    assert f.field.key_status_label.text() == ""
    assert f.field.key_edit.placeholderText() == ""
    assert not f.field.remove_key_button.isEnabled()


def test_a_stored_key_leaves_the_field_and_a_refusal_is_words(qtbot):
    f = Field(qtbot)
    stored: list[str] = []
    f.field.key_edit.setText(f"  {SECRET} ")
    assert f.refreshes == 1  # typing refreshes the tab's buttons
    assert f.field.store(stored.append)
    assert stored == [SECRET] and f.field.key_edit.text() == ""

    def refuse(key: str) -> None:
        raise ValueError("the keychain is locked")

    f.field.key_edit.setText(SECRET)
    assert not f.field.store(refuse)
    assert f.field.message_label.text() == "Key not saved: the keychain is locked"
    assert f.field.key_edit.text() == SECRET  # kept, to try again


def test_delete_says_what_failed(qtbot):
    f = Field(qtbot)
    assert f.field.delete(lambda: True) is True
    assert f.field.delete(lambda: False) is False

    def fail() -> bool:
        raise OSError("no keychain")

    assert f.field.delete(fail) is None
    assert f.field.message_label.text() == "Key not removed: no keychain"


def test_a_test_keeps_its_verdict_line_while_it_runs(qtbot):
    f = Field(qtbot)
    f.field.message("Key saved for p.", ok=True)
    f.field.key_edit.textEdited.emit("x")  # typing forgets the old verdict
    assert f.field.message_label.text() == ""

    async def works() -> tuple[bool, str]:
        return True, "answers"

    f.field.test(works, doing="Testing ...", name="key-field-test")
    assert f.field.testing and f.field.message_label.text() == "Testing ..."
    f.field.key_edit.textEdited.emit("y")  # not while the test runs
    assert f.field.message_label.text() == "Testing ..."
    qtbot.waitUntil(lambda: not f.field.testing)
    assert f.field.message_label.text() == "Works: answers"

    async def breaks() -> tuple[bool, str]:
        raise TimeoutError

    f.field.test(breaks, doing="Testing ...", name="key-field-test")
    qtbot.waitUntil(lambda: not f.field.testing)
    assert f.field.message_label.text() == "Failed: TimeoutError"
