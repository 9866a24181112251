"""The settings dialog: validates, stores keys through the controller, never shows them."""

import json
from dataclasses import replace

import pytest
from PySide6.QtGui import QGuiApplication
from PySide6.QtTest import QTest
from PySide6.QtWidgets import (
    QAbstractButton,
    QComboBox,
    QDoubleSpinBox,
    QLabel,
    QLineEdit,
    QSpinBox,
    QWidget,
)
from pytestqt.qtbot import QtBot

from app import autostart
from app.config.limits import RANGE_BY_SETTING
from app.config.settings import Settings, is_loopback, settings_from_mapping, settings_to_mapping
from app.core.providers import PRESET_BY_KIND, Provider, ProviderKind
from app.ui.settings.dialog import SettingsDialog
from tests.ui.fakes import FakeController
from tests.ui.qt_async import qasync_loop  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("qasync_loop")

SECRET = "nvapi-THIS-KEY-MUST-NEVER-BE-SHOWN-0123456789"
OPENAI_URL = PRESET_BY_KIND[ProviderKind.OPENAI].base_url


@pytest.fixture(autouse=True)
def xdg_config_home(tmp_path, monkeypatch):
    """Start at login writes here, never into the real ~/.config."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config"


def two_providers() -> Settings:
    return Settings(
        providers=(
            Provider("nvidia", ProviderKind.NVIDIA, PRESET_BY_KIND[ProviderKind.NVIDIA].base_url),
            Provider("openai", ProviderKind.OPENAI, OPENAI_URL),
        )
    )


def open_dialog(
    qtbot: QtBot, controller: FakeController, *, focus_key_for: str | None = None
) -> SettingsDialog:
    dialog = SettingsDialog(controller, focus_key_for=focus_key_for)
    qtbot.addWidget(dialog)
    return dialog


def all_widget_text(dialog: QWidget) -> str:
    """Every string a widget of the dialog holds or shows."""
    parts = [dialog.windowTitle()]
    for widget in dialog.findChildren(QWidget):
        parts += [widget.toolTip(), widget.accessibleName(), widget.windowTitle()]
        if isinstance(widget, QLineEdit):
            parts += [widget.text(), widget.displayText(), widget.placeholderText()]
        elif isinstance(widget, QLabel | QAbstractButton):
            parts.append(widget.text())
        elif isinstance(widget, QComboBox):
            parts += [widget.itemText(i) for i in range(widget.count())]
    return "\n".join(parts)


def click_ok_and_wait(qtbot: QtBot, dialog: SettingsDialog) -> None:
    dialog.ok_button.click()
    qtbot.waitUntil(lambda: dialog.ok_button.isEnabled())


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("port", "reason"),
    [
        pytest.param("70000", "the port must be between 1 and 65535, got 70000", id="too-big"),
        pytest.param("0", "the port must be between 1 and 65535, got 0", id="zero"),
        pytest.param("87a", "the port must be a whole number, got '87a'", id="not-a-number"),
    ],
)
def test_bad_port_is_refused_with_the_reason(qtbot, port, reason):
    controller = FakeController()
    dialog = open_dialog(qtbot, controller)
    dialog.tabs.setCurrentWidget(dialog.providers_tab)
    dialog.server_tab.port_edit.setText(port)

    dialog.ok_button.click()
    qtbot.wait(50)

    assert dialog.message_label.text() == f"Not saved: {reason}"
    assert dialog.message_label.isVisibleTo(dialog)
    assert dialog.tabs.currentWidget() is dialog.server_tab  # shows where the problem is
    assert controller.saved == [] and "apply_settings" not in controller.calls
    assert dialog.result() == 0  # not accepted: still open for a fix


def test_validate_settings_reasons_reach_the_dialog(qtbot):
    controller = FakeController(two_providers())
    dialog = open_dialog(qtbot, controller)
    dialog.providers_tab.select_provider("openai")
    dialog.providers_tab.base_url_edit.setText("ftp://example.com")
    dialog.providers_tab.base_url_edit.textEdited.emit("ftp://example.com")

    dialog.apply_button.click()
    qtbot.wait(50)

    assert "must start with http:// or https://" in dialog.message_label.text()
    assert dialog.message_label.text().startswith("Not saved:")
    assert dialog.tabs.currentWidget() is dialog.providers_tab
    assert controller.saved == []


@pytest.mark.parametrize(
    ("host", "warned"),
    [
        ("127.0.0.1", False),
        ("::1", False),
        ("localhost", False),
        ("127.0.0.2", False),
        ("0.0.0.0", True),
        ("192.168.1.20", True),
        ("my-laptop.lan", True),
    ],
)
def test_non_loopback_host_warns_before_anything_binds(qtbot, host, warned):
    controller = FakeController()
    dialog = open_dialog(qtbot, controller)
    dialog.server_tab.host_edit.setText(host)
    assert dialog.server_tab.host_warning.isHidden() is not warned  # its tab need not be showing
    assert is_loopback(host) is not warned
    if warned:
        assert "other computers" in dialog.server_tab.host_warning.text()
    assert controller.calls == []  # nothing applied by typing


# ------------------------------------------------------------------ saving


def test_ok_applies_once_with_the_edited_settings(qtbot):
    controller = FakeController(two_providers())
    dialog = open_dialog(qtbot, controller)
    dialog.server_tab.port_edit.setText("9911")
    dialog.server_tab.pass_client_keys_check.setChecked(True)
    dialog.server_tab.start_server_check.setChecked(False)
    dialog.server_tab.commit_spin.setValue(1.5)
    dialog.server_tab.read_spin.setValue(900)
    assert dialog.server_tab.smooth_check.isChecked()  # on by default
    dialog.server_tab.smooth_check.setChecked(False)
    dialog.providers_tab.default_combo.setCurrentIndex(1)
    dialog.providers_tab.default_combo.activated.emit(1)

    with qtbot.waitSignal(dialog.accepted, timeout=3000):
        dialog.ok_button.click()

    assert controller.calls.count("apply_settings") == 1
    expected = replace(
        two_providers(),
        port=9911,
        pass_client_keys=True,
        commit_window_s=1.5,
        read_timeout_s=900.0,
        smooth_deltas=False,
        default_provider="openai",
        ui={"start_server_at_launch": False},
    )
    assert controller.saved == [expected]


def test_ok_without_changes_does_not_restart_anything(qtbot):
    controller = FakeController()
    dialog = open_dialog(qtbot, controller)
    dialog.server_tab.start_server_check.setChecked(True)  # the default, so not written
    with qtbot.waitSignal(dialog.accepted, timeout=3000):
        dialog.ok_button.click()
    assert controller.saved == []


def test_apply_keeps_the_dialog_open_and_says_saved(qtbot):
    controller = FakeController()
    dialog = open_dialog(qtbot, controller)
    dialog.show()
    dialog.server_tab.port_edit.setText("8788")
    dialog.apply_button.click()
    qtbot.waitUntil(lambda: dialog.message_label.text() == "Saved.")
    assert dialog.isVisible()
    assert [s.port for s in controller.saved] == [8788]


def test_a_refused_apply_is_shown_and_leaves_start_at_login_alone(qtbot, xdg_config_home):
    class Refusing(FakeController):
        async def apply_settings(self, settings: Settings) -> None:
            self.calls.append("apply_settings")
            raise OSError("settings.json: disk full")

    controller = Refusing()
    dialog = open_dialog(qtbot, controller)
    dialog.server_tab.port_edit.setText("8790")
    dialog.server_tab.login_check.setChecked(True)

    click_ok_and_wait(qtbot, dialog)

    assert dialog.message_label.text() == "Not saved: settings.json: disk full"
    assert not (xdg_config_home / "autostart" / "nimbridge.desktop").exists()
    assert dialog.result() == 0  # still open for another try


def test_pass_through_beyond_this_computer_is_refused(qtbot):
    controller = FakeController()
    dialog = open_dialog(qtbot, controller)
    dialog.server_tab.host_edit.setText("0.0.0.0")
    dialog.server_tab.pass_client_keys_check.setChecked(True)
    dialog.ok_button.click()
    assert dialog.message_label.text() == (
        "Not saved: listening on 0.0.0.0 needs the proxy key: turn pass-through off"
    )
    assert controller.saved == []


def test_no_key_to_regenerate_in_pass_through(qtbot):
    controller = FakeController(replace(Settings(), pass_client_keys=True))
    dialog = open_dialog(qtbot, controller)
    assert dialog.server_tab.pass_client_keys_check.isChecked()
    assert not dialog.server_tab.regenerate_proxy_key_button.isEnabled()


def test_pass_through_is_locked_off_when_the_file_requires_the_key(qtbot):
    controller = FakeController(replace(Settings(), require_proxy_key=True))
    dialog = open_dialog(qtbot, controller)
    assert not dialog.server_tab.pass_client_keys_check.isEnabled()
    assert not dialog.server_tab.pass_client_keys_check.isChecked()


def test_cancel_changes_nothing(qtbot, xdg_config_home):
    controller = FakeController(two_providers())
    before = controller.settings
    dialog = open_dialog(qtbot, controller)
    dialog.server_tab.port_edit.setText("9999")
    dialog.server_tab.host_edit.setText("0.0.0.0")
    dialog.server_tab.login_check.setChecked(True)
    dialog.providers_tab.select_provider("openai")
    dialog.providers_tab.remove_button.click()

    dialog.cancel_button.click()
    qtbot.wait(50)

    assert controller.settings is before
    assert controller.saved == [] and controller.calls == []
    assert not (xdg_config_home / "autostart").exists()


def test_start_at_login_writes_the_autostart_file(qtbot, xdg_config_home):
    controller = FakeController()
    dialog = open_dialog(qtbot, controller)
    assert not dialog.server_tab.login_check.isChecked()
    dialog.server_tab.login_check.setChecked(True)
    with qtbot.waitSignal(dialog.accepted, timeout=3000):
        dialog.ok_button.click()
    assert autostart.autostart_enabled()
    assert (xdg_config_home / "autostart" / "nimbridge.desktop").is_file()
    assert controller.saved == []  # only start at login changed

    again = open_dialog(qtbot, controller)
    assert again.server_tab.login_check.isChecked()


# ------------------------------------------------------------------ providers


def test_add_a_provider_from_a_preset(qtbot):
    controller = FakeController()
    dialog = open_dialog(qtbot, controller)
    dialog.providers_tab.add_button.click()
    add = dialog.providers_tab.add_dialog
    assert add is not None
    add.set_kind(ProviderKind.CLOUDFLARE)
    assert add.account_edit.isVisibleTo(add)
    add.ok_button.click()  # no account id yet
    assert "account ID" in add.error_label.text() and add.result() == 0
    add.account_edit.setText("abc123")
    add.account_edit.textEdited.emit("abc123")
    assert add.base_url_edit.text() == (
        "https://api.cloudflare.com/client/v4/accounts/abc123/ai/v1"
    )
    add.ok_button.click()
    qtbot.waitUntil(
        lambda: (
            dialog.providers_tab.current_draft is not None
            and dialog.providers_tab.current_draft.name == "cloudflare"
        )
    )

    with qtbot.waitSignal(dialog.accepted, timeout=3000):
        dialog.ok_button.click()
    saved = controller.saved[0]
    assert [p.name for p in saved.providers] == ["nvidia", "cloudflare"]
    assert saved.providers[1].account_id == "abc123"
    assert saved.providers[1].kind is ProviderKind.CLOUDFLARE


def test_remove_a_provider_moves_the_default(qtbot):
    controller = FakeController(replace(two_providers(), default_provider="openai"))
    dialog = open_dialog(qtbot, controller)
    dialog.providers_tab.select_provider("openai")
    dialog.providers_tab.remove_button.click()
    assert not dialog.providers_tab.remove_button.isEnabled()  # the last one stays
    with qtbot.waitSignal(dialog.accepted, timeout=3000):
        dialog.ok_button.click()
    assert [p.name for p in controller.saved[0].providers] == ["nvidia"]
    assert controller.saved[0].default_provider == "nvidia"


# ------------------------------------------------------------------ keys


def test_save_key_stores_it_and_never_shows_it_again(qtbot):
    controller = FakeController(two_providers())
    dialog = open_dialog(qtbot, controller)
    dialog.show()
    dialog.providers_tab.select_provider("nvidia")
    assert dialog.providers_tab.key_status_label.text() == "Status: no key"
    assert dialog.providers_tab.key_edit.echoMode() is QLineEdit.EchoMode.Password

    dialog.providers_tab.key_edit.setText(SECRET)
    dialog.providers_tab.save_key_button.click()

    assert controller.keys == {"nvidia": SECRET}
    assert dialog.providers_tab.key_edit.text() == ""
    assert (
        dialog.providers_tab.key_status_label.text()
        == "Status: key set, in Secret Service (GNOME Keyring)"
    )
    assert SECRET not in all_widget_text(dialog)
    # ...nor after moving around and coming back
    dialog.providers_tab.select_provider("openai")
    dialog.providers_tab.select_provider("nvidia")
    dialog.tabs.setCurrentWidget(dialog.server_tab)
    assert SECRET not in all_widget_text(dialog)
    assert controller.saved == []  # a key is not a setting


def test_key_status_names_the_keychain_when_the_controller_does(qtbot):
    class Described(FakeController):
        def key_store_description(self) -> str:
            return "Secret Service"

    controller = Described()
    controller.keys["nvidia"] = SECRET
    dialog = open_dialog(qtbot, controller)
    assert dialog.providers_tab.key_status_label.text() == "Status: key set, in Secret Service"
    assert SECRET not in all_widget_text(dialog)


def test_a_refused_key_is_told_in_words(qtbot):
    controller = FakeController()
    dialog = open_dialog(qtbot, controller)
    dialog.providers_tab.key_edit.setText("   ")
    dialog.providers_tab.save_key_button.click()  # disabled: nothing to save
    assert controller.keys == {}
    dialog.providers_tab.key_edit.setText(" ")
    dialog.providers_tab._save_key()
    assert controller.keys == {}

    class Locked(FakeController):
        def set_key(self, provider: str, key: str) -> None:
            raise ValueError("the keychain is locked; unlock it and try again")

    locked = open_dialog(qtbot, Locked())
    locked.providers_tab.key_edit.setText(SECRET)
    locked.providers_tab.save_key_button.click()
    assert locked.providers_tab.key_message_label.text() == (
        "Key not saved: the keychain is locked; unlock it and try again"
    )


def test_remove_key(qtbot):
    controller = FakeController()
    controller.keys["nvidia"] = SECRET
    dialog = open_dialog(qtbot, controller)
    assert dialog.providers_tab.remove_key_button.isEnabled()
    dialog.providers_tab.remove_key_button.click()
    assert controller.keys == {}
    assert dialog.providers_tab.key_status_label.text() == "Status: no key"
    assert not dialog.providers_tab.remove_key_button.isEnabled()


def test_test_button_reports_in_words(qtbot):
    controller = FakeController(two_providers())
    dialog = open_dialog(qtbot, controller)
    dialog.providers_tab.select_provider("openai")
    dialog.providers_tab.test_button.click()
    qtbot.waitUntil(lambda: dialog.providers_tab.key_message_label.text().startswith("Works"))
    assert (
        dialog.providers_tab.key_message_label.text()
        == f"Works: {OPENAI_URL} answers; key accepted"
    )
    assert "test openai" in controller.calls


def test_test_button_failure_and_typed_key(qtbot):
    seen: list[str | None] = []

    class Rejecting(FakeController):
        async def test_provider(self, provider: Provider, key: str | None) -> tuple[bool, str]:
            seen.append(key)
            return False, "the provider rejected the key (401)"

    dialog = open_dialog(qtbot, Rejecting())
    dialog.providers_tab.key_edit.setText(SECRET)
    dialog.providers_tab.test_button.click()
    qtbot.waitUntil(lambda: dialog.providers_tab.key_message_label.text().startswith("Failed"))
    assert (
        dialog.providers_tab.key_message_label.text()
        == "Failed: the provider rejected the key (401)"
    )
    assert seen == [SECRET]  # a typed key is tested before it is saved
    assert dialog.providers_tab.test_button.isEnabled()
    # Typing another key makes the verdict stale: it goes.
    QTest.keyClicks(dialog.providers_tab.key_edit, "x")
    assert dialog.providers_tab.key_message_label.text() == ""


def test_a_long_base_url_shows_its_start_and_the_whole_in_its_tooltip(qtbot):
    account = "0123456789abcdef0123456789abcdef"
    url = f"https://api.cloudflare.com/client/v4/accounts/{account}/ai/v1"
    controller = FakeController(
        replace(
            two_providers(),
            providers=(
                *two_providers().providers,
                Provider("cloudflare", ProviderKind.CLOUDFLARE, url, account_id=account),
            ),
        )
    )
    dialog = open_dialog(qtbot, controller)
    dialog.show()
    dialog.providers_tab.select_provider("cloudflare")
    edit = dialog.providers_tab.base_url_edit
    assert edit.text() == url and edit.cursorPosition() == 0 and edit.toolTip() == url
    # The Add dialog fills it from the account id the same way.
    dialog.providers_tab.add_button.click()
    add = dialog.providers_tab.add_dialog
    assert add is not None
    add.set_kind(ProviderKind.CLOUDFLARE)
    add.account_edit.setText(account)
    add.account_edit.textEdited.emit(account)
    assert add.base_url_edit.cursorPosition() == 0 and add.base_url_edit.toolTip() == url
    add.reject()


def test_timing_says_what_the_commit_window_does_in_plain_words(qtbot):
    dialog = open_dialog(qtbot, FakeController())
    texts = [w.text() for w in dialog.server_tab.findChildren(QLabel)]
    assert "Commit window:" not in texts and "Retry unnoticed within:" in texts
    tip = dialog.server_tab.commit_spin.toolTip()
    assert "retried without Claude Code noticing" in tip and "0 starts every reply at once" in tip


def dialog_alive(dialog: object) -> bool:
    from shiboken6 import isValid

    return bool(isValid(dialog))


def test_copying_the_proxy_key_says_so(qtbot):
    controller = FakeController()
    controller.set_status(proxy_key="proxy-key-abc")
    dialog = open_dialog(qtbot, controller)
    dialog.server_tab.copy_proxy_key_button.click()
    assert QGuiApplication.clipboard().text() == "proxy-key-abc"
    assert dialog.server_tab.copy_proxy_key_button.text() == "Copied"
    qtbot.waitUntil(lambda: dialog.server_tab.copy_proxy_key_button.text() == "Copy", timeout=4000)


def test_a_dialog_closed_right_after_copying_leaves_no_late_call(qtbot):
    """The "Copied" label's reset must die with the dialog (it once raised 2 s later,
    inside whatever ran then: "Internal C++ object already deleted")."""
    controller = FakeController()
    controller.set_status(proxy_key="proxy-key-abc")
    dialog = open_dialog(qtbot, controller)
    dialog.server_tab.copy_proxy_key_button.click()
    dialog.deleteLater()
    qtbot.waitUntil(lambda: not dialog_alive(dialog), timeout=2000)
    qtbot.wait(2300)  # past the reset: pytest-qt fails the test on an exception in Qt's loop


# ------------------------------------------------------------------ first run


def test_first_run_opens_at_the_nvidia_key_field(qtbot):
    controller = FakeController(replace(two_providers(), default_provider="nvidia"))
    dialog = open_dialog(qtbot, controller, focus_key_for="nvidia")
    dialog.show()

    assert dialog.tabs.currentWidget() is dialog.providers_tab
    assert (
        dialog.providers_tab.current_draft is not None
        and dialog.providers_tab.current_draft.name == "nvidia"
    )
    qtbot.waitUntil(lambda: dialog.focusWidget() is dialog.providers_tab.key_edit)
    assert dialog.banner.isVisible()
    assert "Paste your NVIDIA API key to start (get one at" in dialog.banner.text()
    assert 'href="https://build.nvidia.com/settings/api-keys"' in dialog.banner.text()
    assert "build.nvidia.com</a>" in dialog.banner.text()
    assert dialog.providers_tab.get_key_link.isVisible()

    dialog.providers_tab.key_edit.setText(SECRET)
    dialog.providers_tab.key_edit.returnPressed.emit()
    assert controller.keys == {"nvidia": SECRET}
    assert controller.status().needs_key is False
    assert "Key saved" in dialog.banner.text()
    assert SECRET not in all_widget_text(dialog)


def test_no_banner_normally(qtbot):
    dialog = open_dialog(qtbot, FakeController())
    dialog.show()
    assert not dialog.banner.isVisible()


def test_proxy_key_shown_masked_copied_and_regenerated(qtbot: QtBot) -> None:
    controller = FakeController()
    controller.set_status(proxy_key="first-proxy-key")
    dialog = open_dialog(qtbot, controller)
    edit = dialog.server_tab.proxy_key_edit
    assert edit.text() == "first-proxy-key" and "first-proxy-key" not in edit.displayText()
    dialog.server_tab.show_proxy_key_button.click()
    assert edit.displayText() == "first-proxy-key"
    dialog.server_tab.show_proxy_key_button.click()
    assert "first-proxy-key" not in edit.displayText()
    dialog.server_tab.copy_proxy_key_button.click()
    assert QGuiApplication.clipboard().text() == "first-proxy-key"
    dialog.server_tab.regenerate_proxy_key_button.click()
    qtbot.waitUntil(lambda: edit.text() != "first-proxy-key")
    assert controller.calls == ["regenerate_proxy_key"]
    assert edit.text() == controller.status().proxy_key


# ------------------------------------------------------------------ what the loader takes


def test_the_number_boxes_offer_only_what_the_loader_takes(qtbot):
    """Each box's range is the loader's (RANGE_BY_SETTING): at either end, what is saved
    loads back from its file."""
    controller = FakeController()
    dialog = open_dialog(qtbot, controller)
    boxes: dict[str, QDoubleSpinBox | QSpinBox] = {
        "commit_window_s": dialog.server_tab.commit_spin,
        "connect_timeout_s": dialog.server_tab.connect_spin,
        "read_timeout_s": dialog.server_tab.read_spin,
        "web_fetch_max_chars": dialog.web_tab.max_chars_spin,
    }
    for name, box in boxes.items():
        limits = RANGE_BY_SETTING[name]
        assert (box.minimum(), box.maximum()) == (limits.minimum, limits.maximum), name
    for end in ("minimum", "maximum"):
        for box in boxes.values():
            if end == "minimum":
                box.stepBy(-(10**9))  # at most down to the minimum
            else:
                box.stepBy(10**9)
        saved = dialog.build_settings()
        reloaded = settings_from_mapping(json.loads(json.dumps(settings_to_mapping(saved))))
        for name, box in boxes.items():
            assert getattr(reloaded, name) == getattr(box, end)(), (name, end)


@pytest.mark.parametrize(
    "name", ["box\nINFO forged", "\x1b[31mbox", "box\x85", "box\u200b", "b" * 65]
)
def test_a_provider_name_the_loader_would_refuse_cannot_be_added(qtbot, name):
    controller = FakeController()
    dialog = open_dialog(qtbot, controller)
    dialog.providers_tab.add_button.click()
    add = dialog.providers_tab.add_dialog
    assert add is not None
    add.set_kind(ProviderKind.OLLAMA)
    add.name_edit.setText(name)
    add.name_edit.textEdited.emit(name)
    add.ok_button.click()
    assert add.result() == 0 and add.error_label.text().startswith("Provider name")


# ------------------------------------------------------------------ reaching providers


def test_the_proxy_and_ca_file_are_saved_and_the_login_goes_to_the_keychain(qtbot, tmp_path):
    controller = FakeController()
    dialog = open_dialog(qtbot, controller)
    dialog.server_tab.outbound_proxy_edit.setText("http://proxy.corp.example:3128")
    dialog.server_tab.proxy_user_edit.setText("alice")
    dialog.server_tab.proxy_password_edit.setText("Proxy-Pass-NEVER-IN-FILE")
    dialog.server_tab.ca_file_edit.setText(str(tmp_path / "corp-root.pem"))
    with qtbot.waitSignal(dialog.accepted, timeout=3000):
        dialog.ok_button.click()
    saved = controller.saved[-1]
    assert saved.outbound_proxy == "http://proxy.corp.example:3128"
    assert saved.extra_ca_file == str(tmp_path / "corp-root.pem")
    assert controller.keys["outbound-proxy"] == "alice:Proxy-Pass-NEVER-IN-FILE"
    assert "Proxy-Pass" not in json.dumps(settings_to_mapping(saved))

    again = open_dialog(qtbot, controller)  # the password is never shown back
    assert (
        again.server_tab.proxy_user_edit.text() == "alice"
        and again.server_tab.proxy_password_edit.text() == ""
    )
    assert "Proxy-Pass" not in all_widget_text(again)
    again.server_tab.proxy_user_edit.clear()  # a cleared name forgets the login, and restarts
    with qtbot.waitSignal(again.accepted, timeout=3000):
        again.ok_button.click()
    assert "outbound-proxy" not in controller.keys
    assert len(controller.saved) == 2


def test_a_proxy_url_with_a_password_is_refused_before_anything_is_written(qtbot):
    controller = FakeController()
    dialog = open_dialog(qtbot, controller)
    dialog.server_tab.outbound_proxy_edit.setText("http://alice:secret@proxy.corp.example:3128")
    dialog.ok_button.click()
    assert "must not hold a user name or password" in dialog.message_label.text()
    assert dialog.tabs.currentWidget() is dialog.server_tab
    assert controller.saved == []
