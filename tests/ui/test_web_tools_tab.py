"""The settings dialog's Web tools tab: backend, base URL, key to the keychain, fetch."""

import pytest
from PySide6.QtCore import QPoint
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot

from app.config.secrets import KeySource, KeyStatus
from app.config.settings import Settings
from app.ui.settings.dialog import SettingsDialog
from tests.ui.fakes import FakeController
from tests.ui.qt_async import qasync_loop  # noqa: F401  (fixture)
from tests.ui.test_settings_window import all_widget_text, click_ok_and_wait

pytestmark = pytest.mark.usefixtures("qasync_loop")

SECRET = "tvly-THIS-KEY-MUST-NEVER-BE-SHOWN-0123456789"


@pytest.fixture(autouse=True)
def xdg_config_home(tmp_path, monkeypatch):
    """Start at login writes here, never into the real ~/.config."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def open_web_tab(qtbot: QtBot, controller: FakeController) -> SettingsDialog:
    dialog = SettingsDialog(controller)
    qtbot.addWidget(dialog)
    dialog.tabs.setCurrentWidget(dialog.web_tab)
    return dialog


def choose(dialog: SettingsDialog, backend: str) -> None:
    combo = dialog.web_tab.backend_combo
    combo.setCurrentIndex(combo.findData(backend))


def test_off_by_default_with_nothing_to_type(qtbot):
    dialog = open_web_tab(qtbot, FakeController())  # held: the tab is the dialog's child
    tab = dialog.web_tab
    assert tab.backend == ""
    assert not tab.base_url_edit.isEnabled() and not tab.key_edit.isEnabled()
    assert not tab.test_button.isEnabled() and not tab.save_key_button.isEnabled()
    assert tab.fetch_check.isChecked() and tab.max_chars_spin.value() == 100_000


def test_a_key_goes_to_the_keychain_and_is_never_shown(qtbot):
    controller = FakeController()
    dialog = open_web_tab(qtbot, controller)
    tab = dialog.web_tab
    choose(dialog, "tavily")
    assert tab.key_status_label.text() == "Status: no key"
    assert tab.base_url_edit.placeholderText() == "https://api.tavily.com"
    tab.key_edit.setText(f"  {SECRET} ")
    tab.save_key_button.click()
    assert controller.keys == {"web-search-tavily": SECRET}
    assert tab.key_edit.text() == ""
    assert tab.key_status_label.text() == "Status: key set, in Secret Service (GNOME Keyring)"
    assert tab.message_label.text() == "Key saved for Tavily."
    assert SECRET not in all_widget_text(dialog)

    tab.remove_key_button.click()
    assert controller.keys == {} and tab.key_status_label.text() == "Status: no key"


def test_a_key_from_the_environment_is_said_so(qtbot):
    class FromEnv(FakeController):
        def web_search_key_status(self, backend: str) -> KeyStatus:
            return KeyStatus(backend, KeySource.ENVIRONMENT, "BRAVE_API_KEY")

    dialog = open_web_tab(qtbot, FromEnv(Settings(web_search_backend="brave")))
    tab = dialog.web_tab
    assert tab.key_status_text() == "key from the environment variable BRAVE_API_KEY"
    assert not tab.remove_key_button.isEnabled()


def test_choices_are_saved_with_the_rest(qtbot):
    controller = FakeController()
    dialog = open_web_tab(qtbot, controller)
    tab = dialog.web_tab
    choose(dialog, "searxng")
    assert not tab.key_edit.isEnabled() and tab.key_status_label.text() == "Status: no key needed"
    tab.base_url_edit.setText(" http://nas.local:8888/ ")
    tab.fetch_check.setChecked(False)
    assert not tab.max_chars_spin.isEnabled()
    tab.private_check.setChecked(True)
    click_ok_and_wait(qtbot, dialog)
    saved = controller.saved[-1]
    assert saved.web_search_backend == "searxng"
    assert saved.web_search_base_url == "http://nas.local:8888"
    assert not saved.web_fetch_enabled and saved.fetch_private_addresses


def test_each_backend_keeps_its_own_base_url(qtbot):
    controller = FakeController(
        Settings(web_search_backend="searxng", web_search_base_url="http://nas:8888")
    )
    dialog = open_web_tab(qtbot, controller)
    tab = dialog.web_tab
    assert tab.base_url_edit.text() == "http://nas:8888"
    choose(dialog, "brave")
    assert tab.base_url_edit.text() == ""  # Brave's own URL, not the SearXNG one
    choose(dialog, "searxng")
    assert tab.base_url_edit.text() == "http://nas:8888"
    choose(dialog, "")
    assert tab.apply_to(controller.settings).web_search_base_url == ""


def test_a_searxng_without_url_is_refused_on_this_tab(qtbot):
    controller = FakeController()
    dialog = open_web_tab(qtbot, controller)
    choose(dialog, "searxng")
    dialog.tabs.setCurrentWidget(dialog.server_tab)
    dialog.ok_button.click()
    assert "'web_search_base_url' must name your SearXNG instance" in (dialog.message_label.text())
    assert dialog.tabs.currentWidget() is dialog.web_tab
    assert controller.saved == []


def test_the_test_button_searches_with_the_typed_key(qtbot):
    seen: list[tuple[str, str, str | None]] = []

    class Recording(FakeController):
        async def test_web_search(
            self, backend: str, base_url: str, key: str | None
        ) -> tuple[bool, str]:
            seen.append((backend, base_url, key))
            return False, "the Tavily key was refused (Unauthorized)"

    dialog = open_web_tab(qtbot, Recording())
    tab = dialog.web_tab
    choose(dialog, "tavily")
    tab.base_url_edit.setText("https://tavily.example")
    tab.key_edit.setText(SECRET)
    tab.test_button.click()
    qtbot.waitUntil(lambda: tab.message_label.text().startswith("Failed"))
    assert tab.message_label.text() == "Failed: the Tavily key was refused (Unauthorized)"
    assert seen == [("tavily", "https://tavily.example", SECRET)]
    assert tab.test_button.isEnabled()
    QTest.keyClicks(tab.key_edit, "y")  # another key: the verdict was about the last one
    assert tab.message_label.text() == ""


def test_the_fetch_checkboxes_line_up_with_the_fields(qtbot):
    dialog = open_web_tab(qtbot, FakeController(Settings(web_search_backend="tavily")))
    dialog.resize(780, 560)
    dialog.show()
    qtbot.waitExposed(dialog)
    tab = dialog.web_tab

    def left(widget: QWidget) -> int:
        return widget.mapTo(tab, QPoint(0, 0)).x()

    column = left(tab.base_url_edit)
    assert [left(w) for w in (tab.fetch_check, tab.max_chars_spin, tab.private_check)] == [
        column
    ] * 3


def test_the_test_button_reports_success(qtbot):
    controller = FakeController(Settings(web_search_backend="brave"))
    controller.keys["web-search-brave"] = "x"
    dialog = open_web_tab(qtbot, controller)
    dialog.web_tab.test_button.click()
    qtbot.waitUntil(lambda: dialog.web_tab.message_label.text().startswith("Works"))
    assert "test web search brave" in controller.calls


def test_a_refused_key_is_told_in_words(qtbot):
    class Locked(FakeController):
        def set_web_search_key(self, backend: str, key: str) -> None:
            raise ValueError("the keychain is locked; unlock it and try again")

    dialog = open_web_tab(qtbot, Locked(Settings(web_search_backend="tavily")))
    tab = dialog.web_tab
    tab.key_edit.setText(SECRET)
    tab.save_key_button.click()
    assert tab.message_label.text() == (
        "Key not saved: the keychain is locked; unlock it and try again"
    )
    assert SECRET not in tab.message_label.text()
