"""The usage view: tokens and requests per day (stacked by model or provider), latency
percentiles, errors by kind, totals per Claude Code session and per project, a
period picker and CSV export.

The figures are `app.config.usage`'s, the same as `nimbridge usage` prints; the
rows come from the history file the service names (`controller.history_path()`).
"""

import datetime
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.config.history import entries_since
from app.config.usage import (
    PERCENTILES,
    PERIODS,
    Grouping,
    Totals,
    UsageReport,
    milliseconds,
    period_start,
    short_count,
    usage_csv,
    usage_report,
)
from app.service import ProxyController
from app.ui.charts import StackedBarChart

NUMERIC = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter


def _table(header: Sequence[str]) -> QTableWidget:
    table = QTableWidget(0, len(header))
    table.setHorizontalHeaderLabels(list(header))
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setAlternatingRowColors(True)
    table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    for column in range(1, len(header)):
        table.horizontalHeader().setSectionResizeMode(
            column, QHeaderView.ResizeMode.ResizeToContents
        )
    return table


def _fill(table: QTableWidget, rows: Sequence[Sequence[str]]) -> None:
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            item = QTableWidgetItem(text)
            if c:
                item.setTextAlignment(NUMERIC)
            else:
                item.setToolTip(text)
            table.setItem(r, c, item)


def _when(at: float | None) -> str:
    return datetime.datetime.fromtimestamp(at).strftime("%m-%d %H:%M") if at else ""


def _totals_row(name: str, t: Totals) -> list[str]:
    return [
        name,
        str(t.requests),
        str(t.failed),
        f"{t.input_tokens:,}",
        f"{t.output_tokens:,}",
        f"{t.cached_tokens:,}",
        _when(t.first_at),
        _when(t.last_at),
    ]


TOTALS_HEADER = ("", "Requests", "Failed", "Tokens in", "Tokens out", "Cached", "First", "Last")


class UsageWindow(QWidget):
    def __init__(self, controller: ProxyController, *, today: datetime.date | None = None) -> None:
        super().__init__()
        self.setWindowTitle("NimBridge usage")
        self.controller = controller
        self._today = today  # fixed in tests; else the day when the figures are read
        self.days = 7
        self.by: Grouping = "model"
        self.report: UsageReport | None = None

        self.period_buttons = QButtonGroup(self)
        top = QHBoxLayout()
        top.addWidget(QLabel("Period:"))
        for text, days in PERIODS:
            button = QPushButton(text)
            button.setCheckable(True)
            button.setChecked(days == self.days)
            self.period_buttons.addButton(button, days)
            top.addWidget(button)
        self.period_buttons.idClicked.connect(self.set_days)
        top.addSpacing(16)
        top.addWidget(QLabel("Bars by:"))
        self.by_box = QComboBox()
        self.by_box.addItems(["model", "provider"])
        self.by_box.currentTextChanged.connect(self._set_by)
        top.addWidget(self.by_box)
        top.addStretch(1)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        top.addWidget(refresh)
        self.export_button = QPushButton("Export CSV...")
        self.export_button.clicked.connect(self._ask_export)
        top.addWidget(self.export_button)

        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.tokens_chart = StackedBarChart("Tokens per day (in + out)")
        self.requests_chart = StackedBarChart("Requests per day")
        charts = QHBoxLayout()
        charts.addWidget(self.tokens_chart)
        charts.addSpacing(12)
        charts.addWidget(self.requests_chart)

        self.latency_table = _table(("", "Requests", *(f"p{p}" for p in PERCENTILES)))
        self.errors_table = _table(("Error", "Requests", "Share of all requests"))
        self.sessions_table = _table(("Claude Code session", *TOTALS_HEADER[1:]))
        self.projects_table = _table(("Project folder", *TOTALS_HEADER[1:]))
        self.groups_table = _table(("Model", *TOTALS_HEADER[1:]))
        self.tabs = QTabWidget()
        self.tabs.addTab(self.groups_table, "Totals")
        self.tabs.addTab(self.sessions_table, "Sessions")
        self.tabs.addTab(self.projects_table, "Projects")
        self.tabs.addTab(self.latency_table, "Latency")
        self.tabs.addTab(self.errors_table, "Errors")

        self.feedback = QLabel()
        self.feedback.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.summary)
        layout.addLayout(charts, 3)
        layout.addWidget(self.tabs, 2)
        layout.addWidget(self.feedback)
        self.resize(980, 680)
        self.refresh()

    def today(self) -> datetime.date:
        return self._today or datetime.date.today()

    def set_days(self, days: int) -> None:
        self.days = days
        button = self.period_buttons.button(days)
        if button is not None:
            button.setChecked(True)
        self.refresh()

    def _set_by(self, by: str) -> None:
        self.by = "provider" if by == "provider" else "model"
        self.groups_table.setHorizontalHeaderItem(0, QTableWidgetItem(by.capitalize()))
        self.refresh()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.refresh()

    def refresh(self) -> None:
        today = self.today()
        path = self.controller.history_path()
        entries = entries_since(path, period_start(self.days, today)) if path else []
        report = usage_report(entries, days=self.days, today=today, by=self.by)
        self.report = report
        self.export_button.setEnabled(report.total.requests > 0)
        total = report.total
        if path is None:
            self.summary.setText(
                "No request history is kept (Settings: history days is 0), so there is "
                "nothing to show."
            )
        elif not total.requests:
            self.summary.setText("No requests in this period.")
        else:
            self.summary.setText(
                f"<b>{total.requests:,} requests</b>, {total.failed} failed "
                f"({report.error_rate:.1%}) · <b>{short_count(total.input_tokens)}</b> tokens "
                f"in, <b>{short_count(total.output_tokens)}</b> out, "
                f"{short_count(total.cached_tokens)} cached"
            )
        labels = [day.strftime("%m-%d") for day in report.days]
        per_day = [report.per_day[day] for day in report.days]
        tokens = [[float(d[k].tokens) if k in d else 0.0 for k in report.keys] for d in per_day]
        requests = [[float(d[k].requests) if k in d else 0.0 for k in report.keys] for d in per_day]
        self.tokens_chart.set_data(labels, report.keys, tokens)
        self.requests_chart.set_data(labels, report.keys, requests)
        _fill(self.groups_table, [_totals_row(name, t) for name, t in report.groups])
        for table, by in ((self.sessions_table, "session"), (self.projects_table, "project")):
            grouped = usage_report(entries, days=self.days, today=today, by=by)  # type: ignore[arg-type]
            _fill(table, [_totals_row(name, t) for name, t in grouped.groups])
        _fill(
            self.latency_table,
            [
                [name, str(p.count), *(milliseconds(v) for v in p.values)]
                for name, p in (("Time to first byte", report.ttfb), ("Duration", report.duration))
                if p is not None
            ],
        )
        _fill(
            self.errors_table,
            [[kind, str(count), f"{count / total.requests:.1%}"] for kind, count in report.errors],
        )
        self.tabs.setTabText(4, f"Errors ({total.failed})" if total.failed else "Errors")

    def export_csv(self, path: Path) -> int:
        """Write the figures of the bars (a row per day and model/provider); the rows written."""
        assert self.report is not None
        text = usage_csv(self.report)
        path.write_text(text, encoding="utf-8")
        rows = text.count("\n") - 1
        self.feedback.setText(f"Saved {rows} rows to {path}.")
        return rows

    def _ask_export(self) -> None:
        suggested = f"nimbridge-usage-{self.today().isoformat()}-{self.days}d-by-{self.by}.csv"
        name, _ = QFileDialog.getSaveFileName(
            self, "Export usage as CSV", str(Path.home() / suggested), "CSV files (*.csv)"
        )
        if not name:
            return
        try:
            self.export_csv(Path(name))
        except OSError as exc:
            self.feedback.setText(f"Could not save {name}: {exc.strerror or exc}")

    def bring_forward(self) -> None:
        self.show()
        self.raise_()
        self.activateWindow()
