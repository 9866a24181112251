"""The home window and the usage view, offscreen, with the controller faked and a real
SQLite history file written in the test."""

import csv
import datetime
import io
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QGridLayout,
    QMenu,
    QSystemTrayIcon,
    QTableWidget,
    QTableWidgetItem,
)
from pytestqt.qtbot import QtBot

from app.config.history import HistoryEntry, connect, write_entries
from app.config.settings import Settings, TierModels
from app.core.governor import GovernorState
from app.service import ServerState
from app.ui.home_window import HomeWindow, pace_words
from app.ui.qt_main import App
from app.ui.tray import TrayIcon, Windows
from app.ui.usage_window import UsageWindow
from tests.ui.fakes import FakeController, summary
from tests.ui.qt_async import qasync_loop  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("qasync_loop")

TODAY = datetime.date.today()


@pytest.fixture
def controller() -> FakeController:
    return FakeController(Settings(tiers=TierModels(default="qwen/coder", haiku="meta/small")))


@pytest.fixture
def opened() -> Iterator[list[str]]:
    yield []


def windows(opened: list[str]) -> Windows:
    return Windows(
        open_logs=lambda: opened.append("logs"),
        open_settings=lambda: opened.append("settings"),
        open_model_picker=lambda tier: opened.append(f"picker:{tier}"),
        launch_claude_code=lambda: opened.append("claude code"),
        quit=lambda: opened.append("quit"),
        open_home=lambda: opened.append("home"),
        open_usage=lambda: opened.append("usage"),
    )


def entry(n: int, at: datetime.datetime, **changes: object) -> HistoryEntry:
    base = HistoryEntry(
        request_id=f"req_{n}",
        started_at=at.timestamp(),
        method="POST",
        path="/v1/messages",
        client_model="claude-sonnet-4-6",
        upstream_model="qwen/coder",
        provider="nvidia",
        stream=True,
        status=200,
        error_type=None,
        error=None,
        ttfb_ms=200.0 + n,
        duration_ms=2000.0 + n,
        input_tokens=1000,
        output_tokens=100,
        cached_tokens=0,
        attempts=1,
        repairs=(),
        session_id="6f1c-session",
        project="/home/u/shop",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def write_history(path: Path, entries: list[HistoryEntry]) -> Path:
    conn = connect(path)
    write_entries(conn, entries)
    conn.close()
    return path


def noon(days_ago: int) -> datetime.datetime:
    return datetime.datetime.combine(TODAY - datetime.timedelta(days=days_ago), datetime.time(12))


def test_home_window_lays_out_the_menus_actions_by_kind(
    controller: FakeController, opened: list[str], qtbot: QtBot
) -> None:
    window = HomeWindow(controller, windows(opened))
    qtbot.addWidget(window)
    window.show()
    assert window.status_label.text() == "Stopped"
    assert "start the server" in window.url_label.text()
    assert window.buttons_in(window.server_buttons) == ["Start server", "Copy base URL"]
    assert window.buttons_in(window.launch_buttons) == [
        "Launch Claude Code...",
        "Launch Codex...",
        "Copy Claude Code setup",
        "Copy Codex setup",
    ]
    assert window.buttons_in(window.other_buttons) == [
        "Show logs",
        "Usage...",
        "Settings...",
        "Quit",
    ]
    with pytest.raises(KeyError):  # the window does not offer to open itself
        window.button("Open NimBridge")
    # Every enabled action of the tray menu is somewhere here.
    for action in window.menu.menu.actions():
        if (
            action.text()
            and action.isEnabled()
            and action.text() not in ("Open NimBridge", "Model")
        ):
            assert window.button(action.text()).isVisible()
    assert not window.button("Copy base URL").isEnabled()

    window.button("Start server").click()
    qtbot.waitUntil(lambda: window.status_label.text() == "Running on http://127.0.0.1:8787")
    assert "http://127.0.0.1:8787" in window.url_label.text()
    qtbot.waitUntil(lambda: window.button("Copy base URL").isEnabled())
    window.button("Copy base URL").click()
    assert QGuiApplication.clipboard().text() == "http://127.0.0.1:8787"
    assert window.feedback_label.text() == "Base URL copied."
    setup = window.button("Copy Claude Code setup").defaultAction().menu()
    assert isinstance(setup, QMenu) and setup.actions()[0].text() == "POSIX shell"
    for text in ("Launch Claude Code...", "Show logs", "Usage...", "Settings...", "Quit"):
        window.button(text).click()
    assert opened == ["claude code", "logs", "usage", "settings", "quit"]
    stop = window.button("Stop server")
    controller.set_status(in_flight=2)  # the words change, the buttons stay (no flicker)
    assert window.button("Stop server") is stop and "2 in flight" in window.status_label.text()


def test_a_launch_or_copy_action_the_menu_gains_shows_in_the_launch_row(
    controller: FakeController, opened: list[str], qtbot: QtBot
) -> None:
    window = HomeWindow(controller, windows(opened))
    qtbot.addWidget(window)
    original = window.menu.refresh

    def with_another() -> None:  # as a future agent's launcher would add its entries
        original()
        window.menu.menu.addAction("Launch Another Agent...")
        window.menu.menu.addMenu("Copy Another Agent setup")

    window.menu.refresh = with_another  # type: ignore[method-assign]
    controller.set_status(state=ServerState.RUNNING, base_url="http://127.0.0.1:8787")
    assert window.buttons_in(window.launch_buttons) == [
        "Launch Claude Code...",
        "Launch Codex...",
        "Launch Another Agent...",
        "Copy Claude Code setup",
        "Copy Codex setup",
        "Copy Another Agent setup",
    ]


def cell(grid: QGridLayout, row: int, column: int) -> Any:
    item = grid.itemAtPosition(row, column)
    assert item is not None
    return item.widget()


def test_models_of_each_tier_with_a_change_button(
    controller: FakeController, opened: list[str], qtbot: QtBot
) -> None:
    window = HomeWindow(controller, windows(opened))
    qtbot.addWidget(window)
    grid = window.models_grid
    rows = [
        (cell(grid, r, 0).text(), cell(grid, r, 1).text())
        for r in range(grid.rowCount())
        if grid.itemAtPosition(r, 0) is not None
    ]
    assert rows == [
        ("Default", "qwen/coder"),
        ("Opus", "(default: qwen/coder)"),
        ("Sonnet", "(default: qwen/coder)"),
        ("Haiku", "meta/small"),
    ]
    cell(grid, 3, 2).click()  # Haiku's Change...
    assert opened == ["picker:haiku"]
    controller.set_status(tiers=TierModels(default="deepseek/v3", haiku="meta/small"))
    assert cell(grid, 0, 1).text() == "deepseek/v3"  # a change shows at once


def test_the_pace_is_live(controller: FakeController, opened: list[str], qtbot: QtBot) -> None:
    window = HomeWindow(controller, windows(opened))
    qtbot.addWidget(window)
    window.show()
    assert "not running" in window.pace_empty.text() and window.pace_empty.isVisible()
    nvidia = GovernorState(31, 40, 0.0, 0, 0)
    controller.set_status(
        state=ServerState.RUNNING, base_url="http://127.0.0.1:8787", pacing={"nvidia": nvidia}
    )
    bar, words = window.pace_rows["nvidia"]
    assert (bar.value(), bar.maximum()) == (31, 40)
    assert words.text() == "31 of 40 requests a minute"
    assert not window.pace_empty.isVisible()
    controller.set_status(pacing={"nvidia": replace(nvidia, requests_last_minute=40, queued=2)})
    assert window.pace_rows["nvidia"][1].text() == "40 of 40 requests a minute · 2 queued"
    assert "b00020" in window.pace_rows["nvidia"][1].styleSheet()  # at the budget: in red
    # No request announces that a cool-down runs out: the window reads the status itself.
    controller._status = replace(  # noqa: SLF001  (no notification on purpose)
        controller.status(), pacing={"nvidia": replace(nvidia, cooling_down_for=12.2)}
    )
    qtbot.waitUntil(
        lambda: (
            window.pace_rows["nvidia"][1].text() == "31 of 40 requests a minute · cooling down 12 s"
        ),
        timeout=3000,
    )
    window.hide()
    assert not window.poll.isActive()  # hidden: no reading every second


@pytest.mark.parametrize(
    ("state", "words"),
    [
        (GovernorState(3, None, 0.0, 0, 0), "3 requests in the last minute (no limit)"),
        (
            GovernorState(0, 40, 5.4, 1, 1),
            "0 of 40 requests a minute · 1 queued · cooling down 5 s",
        ),
    ],
)
def test_pace_words(state: GovernorState, words: str) -> None:
    assert pace_words(state) == words


def test_today_comes_from_the_history_file(
    controller: FakeController, opened: list[str], qtbot: QtBot, tmp_path: Path
) -> None:
    controller.history_file = write_history(
        tmp_path / "history.sqlite3",
        [
            entry(1, noon(0), input_tokens=12_000, output_tokens=800),
            entry(2, noon(0), status=429, error="slow down", input_tokens=None, output_tokens=None),
            entry(3, noon(1), input_tokens=99_999),  # yesterday: not today's
        ],
    )
    window = HomeWindow(controller, windows(opened))
    qtbot.addWidget(window)
    assert window.today_label.text() == (
        "<b>2</b> requests, 1 failed · <b>12k</b> tokens in · <b>800</b> out"
        "<br>Most tokens: qwen/coder@nvidia"
    )
    conn = connect(controller.history_file)  # a request arrives: the figures follow
    write_entries(conn, [entry(4, datetime.datetime.now(), input_tokens=500)])
    conn.close()
    controller.emit_request(summary("req_4"))
    qtbot.waitUntil(lambda: "<b>3</b> requests" in window.today_label.text(), timeout=4000)


def test_today_without_a_history_counts_this_runs_rows(
    controller: FakeController, opened: list[str], qtbot: QtBot
) -> None:
    window = HomeWindow(controller, windows(opened))
    qtbot.addWidget(window)
    assert window.today_label.text() == "No requests yet today."
    controller.emit_request(summary("a", input_tokens=2000, output_tokens=10))
    controller.emit_request(summary("b", status=500, error="boom"))
    window.refresh_today()
    assert window.today_label.text().startswith("<b>2</b> requests, 1 failed · <b>3.2k</b>")


def test_the_tray_icons_left_click_opens_the_home_window(
    controller: FakeController, opened: list[str]
) -> None:
    tray = TrayIcon(controller, windows(opened))
    tray.menu.action("Open NimBridge").trigger()
    tray.icon.activated.emit(QSystemTrayIcon.ActivationReason.Trigger)
    assert opened == ["home", "home"]
    tray.close()


def test_the_app_shows_the_home_window_without_a_tray_and_when_asked_again(
    controller: FakeController, qtbot: QtBot
) -> None:
    assert not QSystemTrayIcon.isSystemTrayAvailable()  # offscreen: no tray
    app = App(cast(QApplication, QApplication.instance()), controller, lambda: None)
    try:
        assert app.home is not None and app.home.isVisible()
        app.home.hide()
        app.show_yourself()  # a second `nimbridge --show` (the application menu's entry)
        assert app.home.isVisible()
        app.windows.open_usage and app.windows.open_usage()
        assert app.usage_window is not None and app.usage_window.isVisible()
    finally:
        app.close()
        for window in (app.home, app.usage_window):
            if window is not None:
                window.close()


# ---------------------------------------------------------------------------- the usage view


@pytest.fixture
def usage(controller: FakeController, tmp_path: Path, qtbot: QtBot) -> UsageWindow:
    controller.history_file = write_history(
        tmp_path / "history.sqlite3",
        [
            entry(1, noon(0)),
            entry(2, noon(0), upstream_model="gpt-4.1-mini", provider="openai", session_id="s-2"),
            entry(3, noon(0), status=429, error_type="rate_limit_error", error="slow"),
            entry(4, noon(2), project=None, session_id=None, input_tokens=5000),
            entry(5, noon(20), input_tokens=7000),
        ],
    )
    window = UsageWindow(controller, today=TODAY)
    qtbot.addWidget(window)
    return window


def column(table: QTableWidget, index: int = 0) -> list[str]:
    return [cast(QTableWidgetItem, table.item(r, index)).text() for r in range(table.rowCount())]


def test_usage_view_figures_and_period(usage: UsageWindow) -> None:
    assert usage.days == 7 and len(usage.tokens_chart.labels) == 7
    assert "<b>4 requests</b>, 1 failed (25.0%)" in usage.summary.text()
    assert column(usage.groups_table) == ["qwen/coder@nvidia", "gpt-4.1-mini@openai"]
    assert column(usage.sessions_table) == ["(no session id)", "6f1c-session", "s-2"]
    assert column(usage.projects_table) == ["(not launched by NimBridge)", "/home/u/shop"]
    assert column(usage.errors_table) == ["rate_limit_error"]
    assert column(usage.errors_table, 2) == ["25.0%"]
    assert column(usage.latency_table) == ["Time to first byte", "Duration"]
    assert usage.tabs.tabText(4) == "Errors (1)"
    # The bars: today's stack holds both models.
    assert usage.tokens_chart.series == ["qwen/coder@nvidia", "gpt-4.1-mini@openai"]
    assert usage.requests_chart.values[-1] == [2.0, 1.0]
    usage.period_buttons.button(30).click()
    assert usage.days == 30 and "<b>5 requests</b>" in usage.summary.text()
    usage.period_buttons.button(1).click()
    assert len(usage.tokens_chart.labels) == 1 and "<b>3 requests</b>" in usage.summary.text()
    usage.by_box.setCurrentText("provider")
    assert column(usage.groups_table) == ["nvidia", "openai"]
    assert cast(QTableWidgetItem, usage.groups_table.horizontalHeaderItem(0)).text() == "Provider"


def test_usage_view_exports_csv(
    usage: UsageWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "usage.csv"
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *args, **kw: (str(out), "CSV"))
    )
    usage.export_button.click()
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0][:3] == ["day", "model", "requests"]
    assert [r[1:3] for r in rows[1:]] == [
        ["qwen/coder@nvidia", "1"],
        ["qwen/coder@nvidia", "2"],
        ["gpt-4.1-mini@openai", "1"],
    ]
    assert usage.feedback.text() == f"Saved 3 rows to {out}."
    monkeypatch.setattr(
        QFileDialog,
        "getSaveFileName",
        staticmethod(lambda *args, **kw: (str(tmp_path / "no" / "such" / "x.csv"), "CSV")),
    )
    usage.export_button.click()
    assert usage.feedback.text().startswith("Could not save")


def test_usage_view_without_history(controller: FakeController, qtbot: QtBot) -> None:
    window = UsageWindow(controller, today=TODAY)
    qtbot.addWidget(window)
    assert "No request history is kept" in window.summary.text()
    assert not window.export_button.isEnabled()
    window.grab()  # the empty chart paints its words without error
