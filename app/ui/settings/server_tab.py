"""The settings dialog's "Server" tab: where NimBridge listens and with which key, how
it reaches providers, when it starts, its timing, streaming.

Invariants:
- `apply_to` refuses what the loader would refuse, in words naming the field;
  the dialog validates the rest and saves.
- The proxy login's password goes to the keychain only when the dialog saves
  (`save_proxy_login`), never into the settings file.
"""

import logging
from dataclasses import replace

from PySide6.QtCore import QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.autostart import autostart_enabled
from app.config.limits import RANGE_BY_SETTING
from app.config.settings import Settings, is_loopback
from app.service import ProxyController
from app.tasks import spawn
from app.ui.settings.form_fields import align_label_columns, refusal

log = logging.getLogger(__name__)

WARNING_STYLE = (
    "QLabel { background: #fff4ce; color: #4d3800; border: 1px solid #e0c060;"
    " border-radius: 4px; padding: 6px 8px; }"
)


class ServerTab(QWidget):
    def __init__(self, controller: ProxyController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._controller = controller
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
            self.autostart_was = autostart_enabled()
        except OSError as exc:
            log.warning("cannot tell whether NimBridge starts at login: %s", exc)
            self.autostart_was = False
        self.login_check.setChecked(self.autostart_was)

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

        layout = QVBoxLayout(self)
        layout.addWidget(network)
        layout.addWidget(outbound)
        layout.addWidget(startup)
        layout.addWidget(timing)
        layout.addWidget(streaming)
        layout.addStretch(1)

        self.host_edit.textChanged.connect(self._host_changed)
        self._host_changed(self.host_edit.text())

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

    def apply_to(self, settings: Settings) -> Settings:
        """`settings` with this tab's choices; a refusal says what is wrong with them."""
        host = self.host_edit.text().strip()
        if self.pass_client_keys_check.isChecked() and host and not is_loopback(host):
            raise refusal(f"listening on {host} needs the proxy key: turn pass-through off")
        if not host:
            raise refusal("the host must not be empty (127.0.0.1 keeps NimBridge on this computer)")
        port_text = self.port_edit.text().strip()
        try:
            port = int(port_text)
        except ValueError:
            raise refusal(f"the port must be a whole number, got {port_text!r}") from None
        if not 1 <= port <= 65535:
            raise refusal(f"the port must be between 1 and 65535, got {port}")
        ui = dict(settings.ui)
        start_server = self.start_server_check.isChecked()
        if start_server != bool(ui.get("start_server_at_launch", True)):  # else: no change
            ui["start_server_at_launch"] = start_server
        return replace(
            settings,
            host=host,
            port=port,
            pass_client_keys=self.pass_client_keys_check.isChecked(),
            commit_window_s=self.commit_spin.value(),
            connect_timeout_s=self.connect_spin.value(),
            read_timeout_s=self.read_spin.value(),
            smooth_deltas=self.smooth_check.isChecked(),
            outbound_proxy=self.outbound_proxy_edit.text().strip(),
            extra_ca_file=self.ca_file_edit.text().strip(),
            ui=ui,
        )

    def _browse_ca_file(self) -> None:
        chosen, _ = QFileDialog.getOpenFileName(
            self.window(), "Extra CA file", "", "Certificates (*.pem *.crt *.cer);;All files (*)"
        )
        if chosen:
            self.ca_file_edit.setText(chosen)

    def save_proxy_login(self) -> bool:
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
