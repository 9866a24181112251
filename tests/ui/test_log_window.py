"""The live log window: batched on a timer, filtered from a bounded model, never a key."""

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QModelIndex, Qt, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication, QTextCursor
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QPlainTextEdit
from pytestqt.qtbot import QtBot

from app.logs import LogLine
from app.service import RequestDetail
from app.ui.bridge import LogPump
from app.ui.log_window import LogWindow, RequestDetailDialog, RequestTableModel
from tests.ui.fakes import FakeController, summary
from tests.ui.qt_async import qasync_loop  # noqa: F401  (fixture)

FAKE_KEY = "nvapi-AAAAAAAAAAAAAAAA"


def make_lines(count: int, level: str = "INFO", text: str = "request") -> list[LogLine]:
    now = time.time()
    return [LogLine(now, level, "app.server.routes", f"{text} {i}") for i in range(count)]


@pytest.fixture
def controller() -> FakeController:
    return FakeController()


@pytest.fixture
def window(qtbot: QtBot, controller: FakeController) -> Iterator[LogWindow]:
    win = LogWindow(controller)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.shutdown()


def shown(win: LogWindow) -> list[str]:
    text = win.log.view.toPlainText()
    return text.split("\n") if text else []


# ---------------------------------------------------------------- batching


def test_lines_reach_the_widget_on_the_timer_in_one_batch(
    qtbot: QtBot, window: LogWindow, controller: FakeController
) -> None:
    batches: list[int] = []
    window.log_pump.lines_ready.connect(lambda batch: batches.append(len(batch)))
    for start in range(0, 1000, 100):
        controller.emit_logs(make_lines(100, text=f"chunk{start}"))

    assert window.log.view.toPlainText() == ""  # nothing per record
    qtbot.waitUntil(lambda: len(shown(window)) == 1000, timeout=1000)
    assert batches == [1000]  # one signal for the whole tick
    assert shown(window)[-1].endswith("chunk900 99")


def test_backlog_is_shown_when_the_window_opens(qtbot: QtBot, controller: FakeController) -> None:
    controller.emit_logs(make_lines(3, text="before"))
    win = LogWindow(controller)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: len(shown(win)) == 3, timeout=1000)
    win.shutdown()


def test_lines_arriving_while_hidden_appear_when_shown(
    qtbot: QtBot, window: LogWindow, controller: FakeController
) -> None:
    window.hide()
    controller.emit_logs(make_lines(5))
    window.log_pump.flush()
    window.show()
    qtbot.waitUntil(lambda: len(shown(window)) == 5, timeout=1000)


# ---------------------------------------------------------------- filters and buttons


def test_level_filter_and_search_work_on_the_model(
    qtbot: QtBot, window: LogWindow, controller: FakeController
) -> None:
    for level in ("DEBUG", "INFO", "WARNING", "ERROR"):
        controller.emit_logs(make_lines(2, level, text=f"{level.lower()} line"))
    window.log_pump.flush()
    assert len(shown(window)) == 8

    window.log.level.setCurrentText("WARNING")
    assert [line.split()[1] for line in shown(window)] == ["WARNING"] * 2 + ["ERROR"] * 2

    window.log.search.setText("ERROR LINE 1")  # case-insensitive
    assert len(shown(window)) == 1 and shown(window)[0].endswith("error line 1")

    window.log.level.setCurrentText("DEBUG")
    window.log.search.setText("")
    assert len(shown(window)) == 8  # re-rendered from the model, nothing lost

    window.log.search.setText("line 0")
    controller.emit_logs(make_lines(1, text="line 0 again") + make_lines(1, text="other"))
    window.log_pump.flush()
    assert shown(window)[-1].endswith("line 0 again 0")  # new lines are filtered too
    assert len(shown(window)) == 5


def test_pause_keeps_buffering_and_resume_shows_everything(
    window: LogWindow, controller: FakeController
) -> None:
    controller.emit_logs(make_lines(2, text="early"))
    window.log_pump.flush()
    window.log.pause.setChecked(True)
    controller.emit_logs(make_lines(3, text="while paused"))
    window.log_pump.flush()
    assert len(shown(window)) == 2
    assert "3 new lines held" in window.log.status.text()
    assert window.log.pause.text() == "Resume"

    window.log.pause.setChecked(False)
    assert len(shown(window)) == 5
    assert shown(window)[-1].endswith("while paused 2")


def test_follow_scrolls_to_the_newest_line_and_unfollow_stays_put(
    window: LogWindow, controller: FakeController
) -> None:
    scroll = window.log.view.verticalScrollBar()
    controller.emit_logs(make_lines(500))
    window.log_pump.flush()
    assert scroll.maximum() > 0 and scroll.value() == scroll.maximum()

    window.log.follow.setChecked(False)
    scroll.setValue(0)
    controller.emit_logs(make_lines(200))
    window.log_pump.flush()
    assert scroll.value() == 0

    window.log.follow.setChecked(True)
    assert scroll.value() == scroll.maximum()


def test_clear_empties_widget_and_model(window: LogWindow, controller: FakeController) -> None:
    controller.emit_logs(make_lines(10))
    window.log_pump.flush()
    window.log.clear.click()
    assert shown(window) == [] and len(window.log.model.entries) == 0
    window.log.search.setText("request")  # nothing comes back from a filter
    assert shown(window) == []


def test_copy_takes_the_selection_or_everything_shown(
    window: LogWindow, controller: FakeController
) -> None:
    controller.emit_logs(make_lines(3))
    window.log_pump.flush()
    clipboard = QGuiApplication.clipboard()
    window.log.copy.click()
    assert clipboard.text() == window.log.view.toPlainText()
    assert clipboard.text().count("\n") == 2

    cursor = window.log.view.textCursor()
    cursor.movePosition(QTextCursor.MoveOperation.Start)
    cursor.movePosition(QTextCursor.MoveOperation.Down, QTextCursor.MoveMode.KeepAnchor, 2)
    cursor.movePosition(QTextCursor.MoveOperation.EndOfBlock, QTextCursor.MoveMode.KeepAnchor)
    window.log.view.setTextCursor(cursor)
    window.log.copy.click()
    assert clipboard.text() == "\n".join(shown(window)[:3])
    cursor.movePosition(QTextCursor.MoveOperation.Start)
    cursor.movePosition(QTextCursor.MoveOperation.EndOfBlock, QTextCursor.MoveMode.KeepAnchor)
    window.log.view.setTextCursor(cursor)
    window.log.copy.click()
    assert clipboard.text() == shown(window)[0]


def test_open_log_file_is_disabled_without_a_file(window: LogWindow) -> None:
    assert not window.log.open_file.isEnabled()


def test_open_log_file_opens_the_file(
    qtbot: QtBot, controller: FakeController, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log_path = tmp_path / "nimbridge.log"
    monkeypatch.setattr(controller, "log_file", lambda: log_path)
    opened: list[QUrl] = []

    def open_url(url: QUrl) -> bool:
        opened.append(url)
        return True

    monkeypatch.setattr(QDesktopServices, "openUrl", open_url)
    win = LogWindow(controller)
    qtbot.addWidget(win)
    win.show()
    assert win.log.open_file.isEnabled()
    win.log.open_file.click()
    assert opened == [QUrl.fromLocalFile(str(log_path))]
    win.shutdown()


def test_warning_and_error_lines_are_coloured(
    window: LogWindow, controller: FakeController
) -> None:
    controller.emit_logs(make_lines(1, "INFO") + make_lines(1, "WARNING") + make_lines(1, "ERROR"))
    window.log_pump.flush()
    block = window.log.view.document().firstBlock()
    colours = []
    while block.isValid():
        formats = block.layout().formats()
        colours.append(formats[0].format.foreground().color().name() if formats else None)
        block = block.next()
    assert colours[0] is None
    assert colours[1] is not None and colours[2] is not None and colours[1] != colours[2]


# ---------------------------------------------------------------- a burst


def test_a_burst_from_another_thread_stays_responsive(
    qtbot: QtBot, window: LogWindow, controller: FakeController
) -> None:
    lines = make_lines(10_000, text="burst line with a bit of text to format and search")

    def burst() -> None:
        for start in range(0, len(lines), 100):
            controller.emit_logs(lines[start : start + 100])

    thread = threading.Thread(target=burst)
    ticks: list[float] = []
    thread.start()
    app = QApplication.instance()
    assert app is not None
    # Keep the Qt thread spinning as a real event loop would; each pass may run a
    # timer tick that flushes everything pending.
    deadline = time.monotonic() + 10
    while (thread.is_alive() or len(shown(window)) < 10_000) and time.monotonic() < deadline:
        started = time.perf_counter()
        app.processEvents()
        ticks.append(time.perf_counter() - started)
        time.sleep(0.01)
    thread.join()
    assert len(shown(window)) == 10_000
    # The window shows lines in bounded batches per tick, so no tick takes long (~135 ms
    # at worst here). A 2-core CI VM stalls a whole process for 100s of ms at times, which
    # lands on one tick: the slowest but one is judged (a UI that blocks does so each tick).
    # (A fast machine may show all of it within a tick or two: nothing then to set aside.)
    slow = sorted(ticks)[-2] if len(ticks) > 2 else max(ticks, default=0.0)
    assert slow < 0.6, f"ticks blocked the UI for {slow * 1000:.0f} ms"


def test_memory_stays_bounded(qtbot: QtBot, controller: FakeController) -> None:
    win = LogWindow(controller, log_capacity=2_000, request_capacity=50)
    qtbot.addWidget(win)
    win.show()

    def burst() -> None:
        for _ in range(20):
            controller.emit_logs(make_lines(500))

    thread = threading.Thread(target=burst)
    thread.start()
    thread.join()
    assert win.log_pump.pending_count() <= win.log_pump.capacity == 2_000
    assert win.log_pump.dropped == 8_000  # counted, not kept
    win.log_pump.flush()
    assert win.log.view.blockCount() <= win.log.view.maximumBlockCount() == 2_000
    assert len(win.log.model.entries) <= 2_000
    for _ in range(3):  # more ticks, still bounded
        controller.emit_logs(make_lines(1_500))
        win.log_pump.flush()
    assert win.log.view.blockCount() == 2_000
    assert len(win.log.model.entries) == 2_000
    for i in range(80):
        controller.emit_request(summary(f"req_{i}"))
    win.request_pump.flush()
    assert win.requests.model.rowCount() == 50
    win.shutdown()


def test_shutdown_unsubscribes(qtbot: QtBot, controller: FakeController) -> None:
    win = LogWindow(controller)
    qtbot.addWidget(win)
    win.shutdown()
    controller.emit_logs(make_lines(3))  # nobody listens: no error, nothing queued
    assert win.log_pump.pending_count() == 0
    assert not win.log_pump._timer.isActive()


def test_log_pump_alone_batches(qtbot: QtBot, controller: FakeController) -> None:
    pump = LogPump(controller, capacity=10, interval_ms=20)
    with qtbot.waitSignal(pump.lines_ready, timeout=1000) as blocker:
        controller.emit_logs(make_lines(15))
    assert len(blocker.args[0]) == 10 and pump.dropped == 5
    pump.close()


@pytest.mark.usefixtures("qasync_loop")
def test_wrap_lines_is_a_toggle_remembered_in_the_ui_settings(
    qtbot: QtBot, window: LogWindow, controller: FakeController
) -> None:
    view = window.log.view
    assert view.lineWrapMode() is QPlainTextEdit.LineWrapMode.NoWrap  # the default
    controller.emit_logs(make_lines(1, text="x" * 2000))
    window.log_pump.flush()
    assert view.horizontalScrollBar().maximum() > 0  # runs off the right edge
    window.log.wrap.click()
    assert view.lineWrapMode() is QPlainTextEdit.LineWrapMode.WidgetWidth
    qtbot.waitUntil(lambda: controller.settings.ui.get("log_wrap_lines") is True)
    assert view.horizontalScrollBar().maximum() == 0
    reopened = LogWindow(controller)  # the next window (or the next run) wraps too
    qtbot.addWidget(reopened)
    assert reopened.log.wrap.isChecked()
    assert reopened.log.view.lineWrapMode() is QPlainTextEdit.LineWrapMode.WidgetWidth
    reopened.log.wrap.click()
    qtbot.waitUntil(lambda: controller.settings.ui.get("log_wrap_lines") is False)
    reopened.shutdown()


# ---------------------------------------------------------------- requests


def row_texts(model: RequestTableModel, row: int) -> list[str]:
    return [
        str(model.data(model.index(row, column), Qt.ItemDataRole.DisplayRole))
        for column in range(model.columnCount())
    ]


def test_request_table_columns_and_order(window: LogWindow, controller: FakeController) -> None:
    controller.emit_request(
        summary("req_1", started_at=time.mktime((2026, 1, 2, 9, 5, 7, 0, 0, -1)))
    )
    controller.emit_request(
        summary(
            "req_2",
            stream=False,
            status=502,
            ttfb_ms=None,
            duration_ms=850.0,
            output_tokens=None,
            attempts=3,
            repairs=("tool_args_json", "think_tags"),
            error="upstream answered 502",
        )
    )
    window.request_pump.flush()
    model = window.requests.model
    assert [model.headerData(c, Qt.Orientation.Horizontal) for c in range(9)] == [
        "Time", "Request", "Stream", "Status", "TTFB", "Duration",
        "Tokens in / out", "Notes", "Error",
    ]  # fmt: skip
    assert model.rowCount() == 2
    newest, oldest = row_texts(model, 0), row_texts(model, 1)
    assert oldest == [
        "09:05:07",
        "claude-sonnet-4-6 → qwen/qwen3-coder-480b-a35b-instruct@nvidia",
        "yes",
        "200",
        "412 ms",
        "2.31 s",
        "1,200 / 340",
        "",
        "",
    ]
    assert newest[2:] == [
        "no", "502", "", "850 ms", "1,200 / –",
        "2 retries, tool_args_json, think_tags", "upstream answered 502",
    ]  # fmt: skip
    # The failed row is marked; the good one is not.
    assert model.data(model.index(0, 0), Qt.ItemDataRole.BackgroundRole) is not None
    assert model.data(model.index(1, 0), Qt.ItemDataRole.BackgroundRole) is None


def test_requests_without_a_model_show_their_method_and_path(
    window: LogWindow, controller: FakeController
) -> None:
    controller.emit_request(
        summary("req_m", method="GET", path="/v1/models", client_model=None, upstream_model=None)
    )
    controller.emit_request(
        summary("req_401", status=401, client_model=None, upstream_model=None, error="bad key")
    )
    controller.emit_request(
        summary("req_400", status=400, upstream_model=None, error="unknown model", attempts=2)
    )
    window.request_pump.flush()
    model = window.requests.model
    assert [row_texts(model, r)[1] for r in range(3)] == [
        "claude-sonnet-4-6 · POST /v1/messages",
        "POST /v1/messages",
        "GET /v1/models",
    ]
    assert row_texts(model, 0)[model.NOTES_COLUMN] == "1 retry"
    header = RequestDetailDialog._describe(model.rows[2])
    assert "?" not in header and header.count("GET /v1/models") == 1


def test_request_columns_give_the_room_to_the_route_and_the_error(
    qtbot: QtBot, window: LogWindow, controller: FakeController
) -> None:
    error = "upstream rejected the request (400): " + "the prompt is too long; " * 8
    controller.emit_request(summary("req_1", status=400, error=error))
    window.request_pump.flush()
    window.resize(1200, 680)
    window.show_requests()
    qtbot.waitUntil(lambda: window.requests.table.isVisible())
    table, model = window.requests.table, window.requests.model
    header = table.horizontalHeader()
    route = row_texts(model, 0)[model.REQUEST_COLUMN]
    route_width = table.fontMetrics().horizontalAdvance(route)
    error_width = header.sectionSize(model.ERROR_COLUMN)
    others = [header.sectionSize(c) for c in range(model.columnCount())]
    assert error_width >= 240 and error_width >= max(others[2:-1])  # wider than any number
    assert header.sectionSize(model.REQUEST_COLUMN) >= 0.8 * route_width  # cut in the middle
    assert header.sectionSize(model.NOTES_COLUMN) < 100  # mostly empty: narrow
    window.resize(1500, 680)  # a wider window: the whole route, and more room for errors
    qtbot.waitUntil(lambda: header.sectionSize(model.REQUEST_COLUMN) > route_width)
    assert header.sectionSize(model.ERROR_COLUMN) > error_width
    # Cut cells keep their whole text in the tooltip.
    for column in (model.REQUEST_COLUMN, model.ERROR_COLUMN):
        tip = str(model.data(model.index(0, column), Qt.ItemDataRole.ToolTipRole))
        assert row_texts(model, 0)[column] in tip
    assert error in str(model.data(model.index(0, 0), Qt.ItemDataRole.ToolTipRole))


def test_a_request_seen_again_updates_its_row(
    window: LogWindow, controller: FakeController
) -> None:
    controller.emit_request(summary("req_1", status=None))
    window.request_pump.flush()
    controller.emit_request(summary("req_1", status=429, error="rate limited"))
    window.request_pump.flush()
    model = window.requests.model
    assert model.rowCount() == 1
    assert row_texts(model, 0)[3] == "429"


def test_double_click_opens_details_and_copy_as_curl(
    qtbot: QtBot, window: LogWindow, controller: FakeController
) -> None:
    controller.emit_request(summary("req_1"))
    window.request_pump.flush()
    window.show_requests()
    table = window.requests.table
    rect = table.visualRect(window.requests.model.index(0, 1))
    # QTest's double-click needs the press before it to set the pressed index.
    for action in (QTest.mouseClick, QTest.mouseDClick):
        action(
            table.viewport(),
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
            rect.center(),
        )
    dialog = window.requests.last_dialog
    assert isinstance(dialog, RequestDetailDialog) and dialog.isVisible()
    detail = controller.request_detail("req_1")
    assert detail is not None
    client, upstream, response = (pane.toPlainText() for pane in dialog.panes)
    assert client == '{\n  "model": "claude-sonnet-4-6",\n  "max_tokens": 100\n}'
    assert '"qwen/qwen3-coder-480b-a35b-instruct"' in upstream
    assert '"choices": []' in response

    dialog.copy_curl.click()
    assert QGuiApplication.clipboard().text() == detail.curl
    dialog.copy_all.click()
    assert "# Upstream response" in QGuiApplication.clipboard().text()
    dialog.close()


def test_enter_opens_details(qtbot: QtBot, window: LogWindow, controller: FakeController) -> None:
    controller.emit_request(summary("req_1"))
    window.request_pump.flush()
    window.show_requests()
    table = window.requests.table
    table.setFocus()
    table.setCurrentIndex(window.requests.model.index(0, 0))
    QTest.keyClick(table, Qt.Key.Key_Return)
    assert window.requests.last_dialog is not None


def test_details_no_longer_kept(window: LogWindow) -> None:
    dialog = window.requests.open_request("req_gone")
    assert "no longer kept" in dialog.header.text()
    assert not dialog.copy_curl.isEnabled() and not dialog.copy_all.isEnabled()
    dialog.close()


# ---------------------------------------------------------------- keys


def test_a_key_is_never_shown(
    window: LogWindow, controller: FakeController, monkeypatch: pytest.MonkeyPatch
) -> None:
    controller.emit_logs(
        [
            LogLine(time.time(), "ERROR", "app.server", f"upstream said: bad key {FAKE_KEY}"),
            LogLine(time.time(), "INFO", "app.server", "Authorization: Bearer abcdefghijklmnop"),
        ]
    )
    controller.emit_request(summary("req_1", status=401, error=f"key {FAKE_KEY} refused"))
    row = summary("req_1", status=401, error=f"key {FAKE_KEY} refused")
    monkeypatch.setattr(
        controller,
        "request_detail",
        lambda _id: RequestDetail(
            row,
            f'{{"x-api-key": "{FAKE_KEY}"}}',
            f'{{"note": "{FAKE_KEY}"}}',
            f"not json {FAKE_KEY}",
            f'curl -H "Authorization: Bearer {FAKE_KEY}"',
        ),
    )
    window.log_pump.flush()
    window.request_pump.flush()

    log_text = window.log.view.toPlainText()
    assert FAKE_KEY not in log_text and "abcdefghijklmnop" not in log_text
    assert "nvapi-***" in log_text
    window.log.search.setText("AAAAAAAA")  # searching for the key finds nothing
    assert shown(window) == []

    model = window.requests.model
    for role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
        for column in range(model.columnCount()):
            assert FAKE_KEY not in str(model.data(model.index(0, column), role))

    dialog = window.requests.open_request("req_1")
    everything = [dialog.header.text()] + [pane.toPlainText() for pane in dialog.panes]
    assert not any(FAKE_KEY in text for text in everything)
    dialog.copy_curl.click()
    assert FAKE_KEY not in QGuiApplication.clipboard().text()
    dialog.copy_all.click()
    assert FAKE_KEY not in QGuiApplication.clipboard().text()
    dialog.close()


def test_activation_of_an_invalid_index_does_nothing(window: LogWindow) -> None:
    window.requests.table.activated.emit(QModelIndex())
    assert window.requests.last_dialog is None
