"""The home window: NimBridge at a glance, opened from the tray (left click, "Open
NimBridge"), from the application menu, and shown where there is no system tray.

Its buttons are the tray menu's own actions (`TrayMenu`, rebuilt from the
status), sorted into sections by what they are: Start/Stop beside the status,
Copy base URL beside the address, every "Launch..." then "Copy..." action in one row
(whatever the menu offers: Claude Code, Codex...), the Model submenu's tier
entries as a table with a Change button each, the rest at the bottom.

The provider's pace is live: status changes arrive by subscription, and a timer
reads the status once a second while the window is shown (the one-minute window
and a cool-down move on with no request to announce it).
"""

import datetime
from collections.abc import Callable, Sequence

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QProgressBar,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.config.history import entries_since
from app.config.usage import period_start, short_count, usage_report
from app.core.governor import GovernorState
from app.service import ProxyController, RequestSummary, ServerState, ServiceStatus
from app.ui.tray import OPEN_HOME, TrayMenu, Windows, icon_for, keychain_line, status_line

POLL_MS = 1000
TODAY_REFRESH_MS = 1500  # after a request: the history writer batches for 0.25 s


def pace_words(pacing: GovernorState) -> str:
    budget = (
        f"{pacing.requests_last_minute} of {pacing.budget_per_minute} requests a minute"
        if pacing.budget_per_minute
        else f"{pacing.requests_last_minute} requests in the last minute (no limit)"
    )
    parts = [budget]
    if pacing.queued:
        parts.append(f"{pacing.queued} queued")
    if pacing.cooling_down_for > 0:
        parts.append(f"cooling down {pacing.cooling_down_for:.0f} s")
    return " · ".join(parts)


def _button(action: QAction) -> QToolButton:
    button = QToolButton()
    button.setDefaultAction(action)
    button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
    if action.menu() is not None:
        button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
    button.setMinimumHeight(button.sizeHint().height() + 6)
    return button


def _clear(layout: QGridLayout | QHBoxLayout) -> None:
    while (item := layout.takeAt(0)) is not None:
        widget = item.widget()
        if widget is not None:
            widget.deleteLater()


def _section(title: str) -> tuple[QGroupBox, QVBoxLayout]:
    box = QGroupBox(title)
    layout = QVBoxLayout(box)
    return box, layout


class HomeWindow(QWidget):
    status_changed = Signal(object)
    request_seen = Signal(object)
    FEEDBACK_MS = 5000

    def __init__(
        self,
        controller: ProxyController,
        windows: Windows,
        *,
        today: Callable[[], datetime.date] = datetime.date.today,
    ) -> None:
        super().__init__()
        self.setWindowTitle("NimBridge")
        self.controller = controller
        self._today = today
        self.menu = TrayMenu(controller, windows, feedback=self.show_feedback)

        # -- the status, its address, start/stop
        self.status_icon = QLabel()
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        bold = self.status_label.font()
        bold.setBold(True)
        bold.setPointSizeF(bold.pointSizeF() * 1.15)
        self.status_label.setFont(bold)
        self.detail_label = QLabel()  # keychain trouble
        self.detail_label.setWordWrap(True)
        self.detail_label.setStyleSheet("color: #b15c00;")
        self.url_label = QLabel()
        self.url_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.server_buttons = QHBoxLayout()
        head = QGridLayout()
        head.addWidget(self.status_icon, 0, 0, 2, 1, Qt.AlignmentFlag.AlignTop)
        head.addWidget(self.status_label, 0, 1)
        url_row = QHBoxLayout()
        url_row.addWidget(self.url_label, 1)
        url_row.addLayout(self.server_buttons)
        head.addLayout(url_row, 1, 1)
        head.addWidget(self.detail_label, 2, 1)
        head.setColumnStretch(1, 1)

        # -- launch and copy
        self.launch_box, launch_layout = _section("Use it")
        self.launch_buttons = QHBoxLayout()
        launch_layout.addLayout(self.launch_buttons)

        # -- the tiers' models
        self.models_box, models_layout = _section("Models")
        self.models_grid = QGridLayout()
        self.models_grid.setColumnStretch(1, 1)
        models_layout.addLayout(self.models_grid)

        # -- pace, live
        self.pace_box, pace_layout = _section("Provider pace")
        self.pace_grid = QGridLayout()
        self.pace_grid.setColumnStretch(1, 1)
        pace_layout.addLayout(self.pace_grid)
        self.pace_rows: dict[str, tuple[QProgressBar, QLabel]] = {}
        self.pace_empty = QLabel()
        self.pace_empty.setWordWrap(True)
        pace_layout.addWidget(self.pace_empty)

        # -- today
        self.today_box, today_layout = _section("Today")
        self.today_label = QLabel()
        self.today_label.setWordWrap(True)
        today_layout.addWidget(self.today_label)

        self.other_buttons = QHBoxLayout()
        self.feedback_label = QLabel()
        self.feedback_label.setStyleSheet("color: #1e7d32;")
        self.feedback_label.setWordWrap(True)
        self._feedback_timer = QTimer(self)
        self._feedback_timer.setSingleShot(True)
        self._feedback_timer.timeout.connect(self.feedback_label.clear)

        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addSpacing(4)
        for box in (self.launch_box, self.models_box, self.pace_box, self.today_box):
            layout.addWidget(box)
        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Sunken)
        layout.addWidget(line)
        layout.addLayout(self.other_buttons)
        layout.addWidget(self.feedback_label)
        layout.addStretch(1)
        self.setMinimumWidth(560)

        self._today_timer = QTimer(self)
        self._today_timer.setSingleShot(True)
        self._today_timer.setInterval(TODAY_REFRESH_MS)
        self._today_timer.timeout.connect(self.refresh_today)
        self._shape: object = None
        self.status_changed.connect(self.show_status)
        self._unsubscribe = controller.subscribe_status(self.status_changed.emit)
        self.request_seen.connect(lambda row: self._today_timer.start())
        self._unsubscribe_requests = controller.subscribe_requests(self.request_seen.emit)
        self.poll = QTimer(self)  # the pace moves on between requests
        self.poll.setInterval(POLL_MS)
        self.poll.timeout.connect(lambda: self.show_status(self.controller.status()))
        self.show_status(controller.status())
        self.refresh_today()

    # ------------------------------------------------------------------ what tests use

    def button(self, text: str) -> QToolButton:
        """The button of the menu action with this text (tests click them)."""
        for found in self.findChildren(QToolButton):
            action = found.defaultAction()
            if action is not None and action.text() == text:
                return found
        raise KeyError(text)

    def buttons_in(self, layout: QGridLayout | QHBoxLayout) -> list[str]:
        texts = []
        for index in range(layout.count()):
            item = layout.itemAt(index)
            widget = item.widget() if item is not None else None
            action = widget.defaultAction() if isinstance(widget, QToolButton) else None
            if action is not None:
                texts.append(action.text())
        return texts

    # ------------------------------------------------------------------ status

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.poll.start()
        self.show_status(self.controller.status())
        self.refresh_today()

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        self.poll.stop()

    def show_status(self, status: ServiceStatus) -> None:
        icon = icon_for(status.health)
        self.setWindowIcon(icon)
        self.status_icon.setPixmap(icon.pixmap(40, 40))
        self.status_label.setText(status_line(status))
        running = status.state is ServerState.RUNNING
        self.url_label.setText(
            f"Base URL: <b>{status.base_url}</b>"
            if running and status.base_url
            else "Not listening: start the server to get the base URL"
        )
        keychain = keychain_line(status)
        self.detail_label.setText(keychain or "")
        self.detail_label.setVisible(bool(keychain))
        self._show_pace(status)
        # What the actions depend on; a change of in-flight count alone keeps the buttons.
        shape = (status.state, status.base_url, status.proxy_key, status.tiers)
        if shape != self._shape:
            self._shape = shape
            self._rebuild_buttons()

    def _show_pace(self, status: ServiceStatus) -> None:
        pacing = dict(status.pacing)
        if set(pacing) != set(self.pace_rows):
            _clear(self.pace_grid)
            self.pace_rows = {}
            for row, provider in enumerate(sorted(pacing)):
                bar = QProgressBar()
                bar.setTextVisible(False)
                bar.setMaximumHeight(12)
                words = QLabel()
                self.pace_grid.addWidget(QLabel(f"<b>{provider}</b>"), row, 0)
                self.pace_grid.addWidget(bar, row, 1)
                self.pace_grid.addWidget(words, row, 2)
                self.pace_rows[provider] = (bar, words)
        for provider, (bar, words) in self.pace_rows.items():
            state = pacing[provider]
            budget = state.budget_per_minute or 0
            bar.setRange(0, max(budget, 1))
            bar.setValue(min(state.requests_last_minute, budget) if budget else 0)
            bar.setEnabled(bool(budget))
            words.setText(pace_words(state))
            cooling = state.cooling_down_for > 0 or (
                budget and state.requests_last_minute >= budget
            )
            words.setStyleSheet("color: #b00020;" if cooling else "")
        if pacing:
            self.pace_empty.hide()
        else:
            self.pace_empty.setText(
                "No requests have been paced yet this run."
                if status.state is ServerState.RUNNING
                else "The server is not running: nothing is being sent."
            )
            self.pace_empty.show()

    def refresh_today(self) -> None:
        """Today's requests and tokens: from the history file (across restarts), else from
        the rows this run has seen."""
        today = self._today()
        path = self.controller.history_path()
        if path is not None:
            entries = entries_since(path, period_start(1, today))
            report = usage_report(entries, days=1, today=today)
            requests, failed = report.total.requests, report.total.failed
            tokens_in, tokens_out = report.total.input_tokens, report.total.output_tokens
            top = report.groups[0][0] if report.groups else None
        else:
            rows = self._rows_of(today, self.controller.recent_requests())
            requests = len(rows)
            failed = sum(1 for r in rows if r.status is None or r.status >= 400 or r.error)
            tokens_in = sum(r.input_tokens or 0 for r in rows)
            tokens_out = sum(r.output_tokens or 0 for r in rows)
            top = None
        if not requests:
            self.today_label.setText("No requests yet today.")
            return
        failures = f", {failed} failed" if failed else ""
        most = f"<br>Most tokens: {top}" if top else ""
        self.today_label.setText(
            f"<b>{requests}</b> requests{failures} · <b>{short_count(tokens_in)}</b> tokens in"
            f" · <b>{short_count(tokens_out)}</b> out{most}"
        )

    @staticmethod
    def _rows_of(today: datetime.date, rows: Sequence[RequestSummary]) -> list[RequestSummary]:
        midnight = period_start(1, today)
        end = midnight + 86_400
        return [r for r in rows if midnight <= r.started_at < end and r.path != "/"]

    # ------------------------------------------------------------------ the actions

    def _rebuild_buttons(self) -> None:
        if QApplication.activePopupWidget() is not None:  # a button's menu is open
            self._shape = None
            QTimer.singleShot(500, self, lambda: self.show_status(self.controller.status()))
            return
        for layout in (self.server_buttons, self.launch_buttons, self.other_buttons):
            _clear(layout)
        _clear(self.models_grid)
        self.menu.refresh()
        actions = self.menu.menu.actions()
        first = next((i for i, a in enumerate(actions) if a.isSeparator()), -1)
        copies: list[QAction] = []  # after the launches: launching is what most come for
        for action in actions[first + 1 :]:
            text = action.text()
            if action.isSeparator() or text == OPEN_HOME:
                continue
            if text in ("Start server", "Stop server", "Copy base URL"):
                self.server_buttons.addWidget(_button(action))
            elif text.startswith("Launch"):
                self.launch_buttons.addWidget(_button(action))
            elif text.startswith("Copy"):
                copies.append(action)
            elif text == "Model" and isinstance(action.menu(), QMenu):
                self._add_models(action.menu())  # type: ignore[arg-type]
            else:
                self.other_buttons.addWidget(_button(action))
        for action in copies:
            self.launch_buttons.addWidget(_button(action))
        self.launch_buttons.addStretch(1)
        self.other_buttons.insertStretch(self.other_buttons.count() - 1, 1)  # Quit on the right

    def _add_models(self, models: QMenu) -> None:
        """A row per tier: its name, its model, and Change (the tier's own menu entry)."""
        row = 0
        for action in models.actions():
            tier, colon, model = action.text().partition(": ")
            if action.isSeparator() or not colon:
                continue
            name = QLabel(tier)
            value = QLabel(model)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            value.setToolTip(model)
            if model.startswith("(default"):
                value.setStyleSheet("color: palette(placeholder-text);")
            change = QToolButton()
            change.setText("Change...")
            change.setToolTip(f"Choose the {tier.lower()} tier's model")
            change.setEnabled(action.isEnabled())
            change.clicked.connect(lambda checked=False, a=action: a.trigger())
            self.models_grid.addWidget(name, row, 0)
            self.models_grid.addWidget(value, row, 1)
            self.models_grid.addWidget(change, row, 2)
            row += 1

    def show_feedback(self, words: str) -> None:
        self.feedback_label.setText(words)
        self._feedback_timer.start(self.FEEDBACK_MS)

    def bring_forward(self) -> None:
        self.show()
        self.raise_()
        self.activateWindow()

    def close_subscriptions(self) -> None:
        self._unsubscribe()
        self._unsubscribe_requests()
        self.poll.stop()
