"""The live log window: the server's log as it happens, and a table of recent requests.

Data flow: `LogPump` / `RequestPump` (bridge.py) hand over one batch per 100 ms
tick; the window appends the batch to a bounded model of lines and, unless
paused or hidden, appends the matching lines to the widget in ONE call. Filters
(level, search) re-render from that model, never by re-reading the widget.

Keys never appear: the service redacts, and every text shown here passes
`app.logs.redact` as well (the same secret shapes the log filter masks).
"""

import json
import logging
import re
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

from PySide6.QtCore import (
    QAbstractTableModel,
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QUrl,
)
from PySide6.QtGui import (
    QBrush,
    QColor,
    QDesktopServices,
    QFont,
    QFontDatabase,
    QGuiApplication,
    QPalette,
    QShowEvent,
    QSyntaxHighlighter,
    QTextCharFormat,
    QTextDocument,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.logs import LogLine, redact
from app.service import ProxyController, RequestDetail, RequestSummary
from app.tasks import spawn
from app.ui.bridge import LOG_CAPACITY, REQUEST_CAPACITY, LogPump, RequestPump

log = logging.getLogger(__name__)

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
WRAP_SETTING = "log_wrap_lines"  # in Settings.ui
_LEVEL_NO = logging.getLevelNamesMapping()
_LINE_HEAD = re.compile(r"^\d\d:\d\d:\d\d\.\d\d\d (\w+)")
# Highlighter block states (QSyntaxHighlighter's default is -1).
_STATE_PLAIN, _STATE_WARNING, _STATE_ERROR, _STATE_DEBUG = 0, 1, 2, 3


def _fixed_font() -> QFont:
    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    font.setStyleHint(QFont.StyleHint.Monospace)
    return font


def _is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Base).lightness() < 128


# ---------------------------------------------------------------- the log


@dataclass(frozen=True, slots=True)
class LogEntry:
    """A line as shown: formatted and redacted once, when it arrives."""

    levelno: int
    text: str
    folded: str  # text.casefold(), for the search box

    @classmethod
    def from_line(cls, line: LogLine) -> "LogEntry":
        second = int(line.created)
        stamp = _STAMPS.get(second)
        if stamp is None:  # localtime + strftime per line cost ~15% of a 10,000-line burst
            _STAMPS.clear()
            stamp = _STAMPS[second] = time.strftime("%H:%M:%S", time.localtime(second))
        millis = int(line.created * 1000) % 1000
        text = f"{stamp}.{millis:03d} {line.level:<7} {line.name}: {line.message}"
        folded = text.casefold()
        # The secret regex costs ~5 us a line; these C-speed probes are a superset of
        # its matches (all its anchors are ASCII), so most lines skip it.
        if "nvapi-" in folded or "sk-" in folded or "bearer" in folded or "x-api-key" in folded:
            text = redact(text)
            folded = text.casefold()
        return cls(_LEVEL_NO.get(line.level, logging.INFO), text, folded)


_STAMPS: dict[int, str] = {}


class LogModel:
    """The last `capacity` lines, whatever the filters: filters re-render from here."""

    def __init__(self, capacity: int = LOG_CAPACITY) -> None:
        self.entries: deque[LogEntry] = deque(maxlen=capacity)
        self.min_level = logging.DEBUG
        self.needle = ""

    def add(self, lines: Iterable[LogLine]) -> list[LogEntry]:
        new = [LogEntry.from_line(line) for line in lines]
        self.entries.extend(new)
        return new

    def matches(self, entry: LogEntry) -> bool:
        return entry.levelno >= self.min_level and self.needle in entry.folded

    def visible(self, entries: Iterable[LogEntry] | None = None) -> list[LogEntry]:
        source = self.entries if entries is None else entries
        if self.min_level <= logging.DEBUG and not self.needle:
            return list(source)
        return [e for e in source if self.matches(e)]

    def clear(self) -> None:
        self.entries.clear()


class _LogHighlighter(QSyntaxHighlighter):
    """Colours WARNING/ERROR lines (and their traceback lines) and marks search hits."""

    def __init__(self, document: QTextDocument, dark: bool) -> None:
        super().__init__(document)
        self.needle = ""
        self._formats: dict[int, QTextCharFormat] = {}
        colours = {
            _STATE_WARNING: "#ffb74d" if dark else "#a65800",
            _STATE_ERROR: "#ff6b6b" if dark else "#c62828",
            _STATE_DEBUG: "#8a8a8a" if dark else "#7a7a7a",
        }
        for state, colour in colours.items():
            fmt = QTextCharFormat()
            fmt.setForeground(QColor(colour))
            if state == _STATE_ERROR:
                fmt.setFontWeight(QFont.Weight.Bold)
            self._formats[state] = fmt
        self._hit = QTextCharFormat()
        self._hit.setBackground(QColor("#7a6a00" if dark else "#fff176"))

    def highlightBlock(self, text: str) -> None:  # noqa: N802 (Qt's name)
        head = _LINE_HEAD.match(text)
        if head is None:
            # A continuation line (traceback) takes the colour of its record.
            state = max(self.previousBlockState(), _STATE_PLAIN)
        else:
            level = _LEVEL_NO.get(head.group(1), logging.INFO)
            if level >= logging.ERROR:
                state = _STATE_ERROR
            elif level >= logging.WARNING:
                state = _STATE_WARNING
            elif level < logging.INFO:
                state = _STATE_DEBUG
            else:
                state = _STATE_PLAIN
        self.setCurrentBlockState(state)
        if state in self._formats:
            self.setFormat(0, len(text), self._formats[state])
        if self.needle:
            folded, size, start = text.casefold(), len(self.needle), 0
            while (start := folded.find(self.needle, start)) >= 0:
                self.setFormat(start, size, self._hit)
                start += size


class LogPanel(QWidget):
    """The Log tab: filters and buttons over a read-only, bounded QPlainTextEdit."""

    def __init__(
        self,
        controller: ProxyController,
        *,
        capacity: int = LOG_CAPACITY,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._controller = controller
        self.model = LogModel(capacity)
        self._held = 0  # lines that arrived while paused or hidden
        self._dirty = False  # the widget must be re-rendered before it is seen
        self._shown_hint = ""

        self.level = QComboBox()
        self.level.addItems(LEVELS)
        self.level.setToolTip("Show this level and above")
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search the log")
        self.search.setClearButtonEnabled(True)
        self.pause = QPushButton("Pause")
        self.pause.setCheckable(True)
        self.pause.setToolTip("Stop adding lines; they are kept and shown on resume")
        self.follow = QPushButton("Follow")
        self.follow.setCheckable(True)
        self.follow.setChecked(True)
        self.follow.setToolTip("Keep the newest line in view")
        self.wrap = QPushButton("Wrap lines")
        self.wrap.setCheckable(True)
        self.wrap.setChecked(bool(controller.settings.ui.get(WRAP_SETTING, False)))
        self.wrap.setToolTip("Fold long lines at the window's edge instead of scrolling sideways")
        self.copy = QPushButton("Copy")
        self.copy.setToolTip("Copy the selection, or every shown line")
        self.clear = QPushButton("Clear")
        self.open_file = QPushButton("Open log file")

        self.view = QPlainTextEdit()
        self.view.setReadOnly(True)
        self.view.setUndoRedoEnabled(False)
        self._show_wrap(self.wrap.isChecked())
        self.view.setMaximumBlockCount(capacity)  # bounded memory, whatever arrives
        self.view.setFont(_fixed_font())
        self.view.setPlaceholderText("Nothing logged yet.")
        self._highlighter = _LogHighlighter(self.view.document(), _is_dark(self.palette()))
        self.status = QLabel()
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)

        bar = QHBoxLayout()
        bar.addWidget(QLabel("Level"))
        bar.addWidget(self.level)
        bar.addWidget(self.search, 1)
        for button in (self.pause, self.follow, self.wrap, self.copy, self.clear, self.open_file):
            bar.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(bar)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.status)

        self.level.currentIndexChanged.connect(self._filters_changed)
        self.search.textChanged.connect(self._filters_changed)
        self.pause.toggled.connect(self._pause_toggled)
        self.follow.toggled.connect(self._follow_toggled)
        self.wrap.toggled.connect(self._wrap_toggled)
        self.copy.clicked.connect(self.copy_text)
        self.clear.clicked.connect(self.clear_log)
        self.open_file.clicked.connect(self.open_log_file)
        self.refresh_log_file()
        self._update_status()

    # ---- data in
    def add_lines(self, lines: Sequence[LogLine]) -> None:
        """One batch from the pump: into the model, then (one call) into the widget."""
        new = self.model.add(lines)
        if self.pause.isChecked() or not self.isVisible():
            self._held += len(new)
            self._dirty = True
        else:
            self._append(self.model.visible(new))
        self._update_status()

    def _append(self, entries: list[LogEntry]) -> None:
        if not entries:
            return
        # Lines beyond the block limit would be trimmed at once: never insert them.
        entries = entries[-self.view.maximumBlockCount() :]
        scroll = self.view.verticalScrollBar()
        kept = scroll.value()
        self.view.appendPlainText("\n".join(e.text for e in entries))
        scroll.setValue(scroll.maximum() if self.follow.isChecked() else kept)

    def render_all(self) -> None:
        """Re-render the widget from the model (filters changed, resumed, shown)."""
        self._held, self._dirty = 0, False
        entries = self.model.visible()[-self.view.maximumBlockCount() :]
        self.view.setPlainText("\n".join(e.text for e in entries))
        if self.follow.isChecked():
            scroll = self.view.verticalScrollBar()
            scroll.setValue(scroll.maximum())
        self._update_status()

    # ---- controls
    def _filters_changed(self) -> None:
        self.model.min_level = _LEVEL_NO[self.level.currentText()]
        self.model.needle = self.search.text().strip().casefold()
        self._highlighter.needle = self.model.needle
        if self.pause.isChecked():
            self._dirty = True
        else:
            self.render_all()

    def _pause_toggled(self, paused: bool) -> None:
        self.pause.setText("Resume" if paused else "Pause")
        if not paused and self._dirty:
            self.render_all()
        self._update_status()

    def _follow_toggled(self, follow: bool) -> None:
        if follow:
            scroll = self.view.verticalScrollBar()
            scroll.setValue(scroll.maximum())

    def _show_wrap(self, wrap: bool) -> None:
        mode = (
            QPlainTextEdit.LineWrapMode.WidgetWidth if wrap else QPlainTextEdit.LineWrapMode.NoWrap
        )
        self.view.setLineWrapMode(mode)

    def _wrap_toggled(self, wrap: bool) -> None:
        self._show_wrap(wrap)
        if self.follow.isChecked():
            scroll = self.view.verticalScrollBar()
            scroll.setValue(scroll.maximum())
        spawn(self._remember_wrap(wrap), name="remember log wrap")

    async def _remember_wrap(self, wrap: bool) -> None:
        """Kept in the settings' `ui` section, so the next window opens the same way."""
        settings = self._controller.settings
        if bool(settings.ui.get(WRAP_SETTING, False)) == wrap:
            return
        try:
            await self._controller.apply_settings(
                replace(settings, ui={**settings.ui, WRAP_SETTING: wrap})
            )
        except Exception as exc:  # a read-only settings file: wrapping still works now
            log.warning("could not remember the log window's line wrapping: %s", exc)

    def copy_text(self) -> None:
        cursor = self.view.textCursor()
        if cursor.hasSelection():
            # selectedText() separates blocks with U+2029.
            text = cursor.selectedText().replace("\u2029", "\n")
        else:
            text = self.view.toPlainText()
        QGuiApplication.clipboard().setText(redact(text))

    def clear_log(self) -> None:
        self.model.clear()
        self.view.clear()
        self._held, self._dirty = 0, False
        self._update_status()

    def refresh_log_file(self) -> None:
        path = self._controller.log_file()
        self.open_file.setEnabled(path is not None)
        self.open_file.setToolTip(str(path) if path else "Logging to a file is off")

    def open_log_file(self) -> None:
        path = self._controller.log_file()
        if path is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))

    def _update_status(self) -> None:
        shown = self.view.blockCount() if self.view.document().characterCount() > 1 else 0
        words = [f"{len(self.model.entries):,} lines kept, {shown:,} shown"]
        if self.pause.isChecked():
            words.append(f"paused: {self._held:,} new lines held")
        text = " · ".join(words)
        if text != self._shown_hint:  # a label repaint per tick is cheap, but not free
            self._shown_hint = text
            self.status.setText(text)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        self.refresh_log_file()
        if self._dirty and not self.pause.isChecked():
            self.render_all()


# ---------------------------------------------------------------- requests


def _ms(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def _count(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def is_failed(row: RequestSummary) -> bool:
    return row.error is not None or (row.status is not None and row.status >= 400)


def request_words(row: RequestSummary) -> str:
    """What the Request column says: the model route, or the method and path of a
    request that names no model (`GET /v1/models`, one refused before routing)."""
    if row.client_model is None and row.upstream_model is None:
        return f"{row.method} {row.path}"
    if row.upstream_model is None:
        return f"{row.client_model} · {row.method} {row.path}"
    return f"{row.client_model or '?'} → {row.upstream_model}"


def notes_words(row: RequestSummary) -> str:
    """Retries and repairs in one column: both are rare, so they share the room."""
    retries = max(row.attempts - 1, 0)
    words = [f"{retries} {'retry' if retries == 1 else 'retries'}"] if retries else []
    return ", ".join([*words, *row.repairs])


class RequestTableModel(QAbstractTableModel):
    """The last `capacity` requests, newest on top; a row seen again replaces itself."""

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "Time",
        "Request",
        "Stream",
        "Status",
        "TTFB",
        "Duration",
        "Tokens in / out",
        "Notes",
        "Error",
    )
    HEADER_TIPS: ClassVar[dict[int, str]] = {
        1: "The model asked for → the upstream model@provider; method and path when\n"
        "the request names no model",
        4: "Time to the first byte of the answer",
        7: "Retries of the upstream call, and what NimBridge repaired in the answer",
    }
    REQUEST_COLUMN, NOTES_COLUMN, ERROR_COLUMN = 1, 7, 8
    _RIGHT: ClassVar[frozenset[int]] = frozenset({3, 4, 5, 6})
    ID_ROLE = Qt.ItemDataRole.UserRole

    def __init__(self, capacity: int = REQUEST_CAPACITY, *, dark: bool = False) -> None:
        super().__init__()
        self.capacity = capacity
        self.rows: list[RequestSummary] = []
        self._failed_bg = QBrush(QColor("#4a1f1f" if dark else "#fde2e1"))
        self._failed_fg = QBrush(QColor("#ff8a80" if dark else "#b71c1c"))

    def add(self, batch: Sequence[RequestSummary]) -> None:
        """`batch` is oldest first (as the pump delivers)."""
        index = {row.request_id: i for i, row in enumerate(self.rows)}
        fresh: dict[str, RequestSummary] = {}
        for row in batch:
            at = index.get(row.request_id)
            if at is None:
                fresh[row.request_id] = row  # a later copy in the same batch wins
            else:
                self.rows[at] = row
                self.dataChanged.emit(self.index(at, 0), self.index(at, len(self.COLUMNS) - 1))
        new = list(reversed(fresh.values()))[: self.capacity]
        if new:
            self.beginInsertRows(QModelIndex(), 0, len(new) - 1)
            self.rows[:0] = new
            self.endInsertRows()
        if len(self.rows) > self.capacity:
            self.beginRemoveRows(QModelIndex(), self.capacity, len(self.rows) - 1)
            del self.rows[self.capacity :]
            self.endRemoveRows()

    def clear(self) -> None:
        self.beginResetModel()
        self.rows.clear()
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(  # noqa: N802
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.HEADER_TIPS.get(section)
        return None

    def text(self, row: RequestSummary, column: int) -> str:
        match column:
            case 0:
                return time.strftime("%H:%M:%S", time.localtime(row.started_at))
            case 1:
                return request_words(row)
            case 2:
                return {True: "yes", False: "no", None: ""}[row.stream]
            case 3:
                return "" if row.status is None else str(row.status)
            case 4:
                return _ms(row.ttfb_ms)
            case 5:
                return _ms(row.duration_ms)
            case 6:
                if row.input_tokens is None and row.output_tokens is None:
                    return ""
                return f"{_count(row.input_tokens) or '–'} / {_count(row.output_tokens) or '–'}"
            case 7:
                return notes_words(row)
            case 8:
                return redact(row.error or "")
        return ""

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if not index.isValid():
            return None
        row, column = self.rows[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return redact(self.text(row, column))
        if role == Qt.ItemDataRole.ToolTipRole:
            # The whole text of a cell the column may cut, then what identifies the row.
            lines = [f"{row.request_id}  {row.method} {row.path}"]
            if column in (self.REQUEST_COLUMN, self.NOTES_COLUMN) and self.text(row, column):
                lines.insert(0, self.text(row, column))
            if row.error:
                lines.append(f"Error: {row.error}")
            return redact("\n".join(lines))
        if role == Qt.ItemDataRole.TextAlignmentRole and column in self._RIGHT:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.BackgroundRole and is_failed(row):
            return self._failed_bg
        if role == Qt.ItemDataRole.ForegroundRole and is_failed(row) and column in (3, 8):
            return self._failed_fg
        if role == Qt.ItemDataRole.FontRole and is_failed(row) and column == 3:
            font = QFont()
            font.setBold(True)
            return font
        if role == self.ID_ROLE:
            return row.request_id
        return None


def _pretty(text: str) -> str:
    """Pretty-printed JSON when it parses; the text as it came otherwise (stream notes)."""
    try:
        value = json.loads(text)
    except ValueError:
        return redact(text)
    return redact(json.dumps(value, indent=2, ensure_ascii=False))


class RequestDetailDialog(QDialog):
    """What a request row opens: the three bodies, redacted, and "Copy as curl"."""

    PANES: ClassVar[tuple[str, ...]] = ("Client request", "Upstream request", "Upstream response")

    def __init__(self, detail: RequestDetail | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.detail = detail
        self.setWindowTitle("Request details")
        self.resize(1100, 640)
        layout = QVBoxLayout(self)

        self.header = QLabel()
        self.header.setTextFormat(Qt.TextFormat.PlainText)  # errors may hold "<...>"
        self.header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.header.setWordWrap(True)
        layout.addWidget(self.header)

        self.panes: list[QPlainTextEdit] = []
        splitter = QSplitter(Qt.Orientation.Horizontal)
        bodies = (
            (detail.client_request, detail.upstream_request, detail.upstream_response)
            if detail
            else ("", "", "")
        )
        for title, body in zip(self.PANES, bodies, strict=True):
            box = QWidget()
            box_layout = QVBoxLayout(box)
            box_layout.setContentsMargins(0, 0, 0, 0)
            box_layout.addWidget(QLabel(f"<b>{title}</b>"))
            pane = QPlainTextEdit(_pretty(body) if body else "")
            pane.setReadOnly(True)
            # Wrapped: bodies carry long strings (system prompts, tool descriptions).
            pane.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
            pane.setFont(_fixed_font())
            box_layout.addWidget(pane)
            self.panes.append(pane)
            splitter.addWidget(box)
        layout.addWidget(splitter, 1)

        buttons = QHBoxLayout()
        self.copy_curl = QPushButton("Copy as curl")
        self.copy_curl.setToolTip("A curl command for the upstream request; the key stays in $ENV")
        self.copy_all = QPushButton("Copy")
        self.copy_all.setToolTip("Copy the three bodies")
        close = QPushButton("Close")
        buttons.addWidget(self.copy_curl)
        buttons.addWidget(self.copy_all)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout.addLayout(buttons)
        close.clicked.connect(self.accept)
        self.copy_curl.clicked.connect(self.copy_as_curl)
        self.copy_all.clicked.connect(self.copy_text)

        if detail is None:
            self.header.setText(
                "Details no longer kept: NimBridge keeps the bodies of recent requests only."
            )
            splitter.setEnabled(False)
            self.copy_curl.setEnabled(False)
            self.copy_all.setEnabled(False)
        else:
            self.header.setText(self._describe(detail.summary))

    @staticmethod
    def _describe(row: RequestSummary) -> str:
        routed = row.client_model is not None or row.upstream_model is not None
        parts = [
            f"{row.request_id}: {row.method} {row.path}",
            request_words(row) if routed else "",
            f"status {row.status}" if row.status is not None else "no status",
            f"took {_ms(row.duration_ms)}",
            f"first byte after {_ms(row.ttfb_ms)}" if row.ttfb_ms is not None else "",
            f"{row.attempts} attempts" if row.attempts > 1 else "",
            f"repairs: {', '.join(row.repairs)}" if row.repairs else "",
            f"error: {row.error}" if row.error else "",
        ]
        return redact(" · ".join(p for p in parts if p))

    def copy_as_curl(self) -> None:
        if self.detail is not None:
            QGuiApplication.clipboard().setText(redact(self.detail.curl))

    def copy_text(self) -> None:
        sections = [f"# {self.header.text()}"]
        for title, pane in zip(self.PANES, self.panes, strict=True):
            sections.append(f"# {title}\n{pane.toPlainText()}")
        QGuiApplication.clipboard().setText("\n\n".join(sections))


class _MiddleElideDelegate(QStyledItemDelegate):
    def initStyleOption(  # noqa: N802 (Qt's name)
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        super().initStyleOption(option, index)
        option.textElideMode = Qt.TextElideMode.ElideMiddle


class RequestPanel(QWidget):
    """The Requests tab: a bounded table; a row opens `RequestDetailDialog`."""

    def __init__(
        self,
        controller: ProxyController,
        *,
        capacity: int = REQUEST_CAPACITY,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._controller = controller
        self.model = RequestTableModel(capacity, dark=_is_dark(self.palette()))
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)  # full text in the tooltip
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        header = self.table.horizontalHeader()
        header.setStretchLastSection(True)
        header.setHighlightSections(False)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        # Widths from the font, not from the rows: ResizeToContents would measure
        # up to 1,000 rows on every batch.
        metrics = self.fontMetrics()
        # Number columns as narrow as their header; the Request and Error columns share
        # what is left (`_fit_columns`). What is cut shows "…", and the whole text is in
        # the cell's tooltip.
        samples = (
            "00:00:00",
            "",  # Request: fitted
            "Stream",
            "Status",
            "1234 ms",
            "120.00 s",
            "123,456 / 12,345",
            "1 retry",
        )
        header_metrics = header.fontMetrics()
        for column, sample in enumerate(samples):
            title = RequestTableModel.COLUMNS[column]
            width = max(metrics.horizontalAdvance(sample), header_metrics.horizontalAdvance(title))
            header.resizeSection(column, width + 20)
        common_route = "claude-sonnet-4-6 → qwen/qwen3-coder-480b-a35b-instruct@nvidia"
        self._route_width = metrics.horizontalAdvance(common_route) + 20
        self._error_min_width = metrics.horizontalAdvance("x" * 40)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.viewport().installEventFilter(self)
        # A route is cut in its middle, so its provider (at the end) stays in sight.
        self._middle_elide = _MiddleElideDelegate(self.table)
        self.table.setItemDelegateForColumn(RequestTableModel.REQUEST_COLUMN, self._middle_elide)
        self.table.activated.connect(self._row_activated)  # double-click and Enter
        self.hint = QLabel("Double-click a request (or press Enter) to see what was sent.")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.hint)
        self.last_dialog: RequestDetailDialog | None = None

    def add_requests(self, batch: Sequence[RequestSummary]) -> None:
        self.model.add(batch)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if watched is self.table.viewport() and event.type() == QEvent.Type.Resize:
            self._fit_columns()
        return False

    def _fit_columns(self) -> None:
        """The Request column gets a whole common route if the Error column keeps room
        for a short error; the Error column (last, stretched) gets the rest."""
        header = self.table.horizontalHeader()
        fixed = sum(
            header.sectionSize(c)
            for c in range(self.model.columnCount())
            if c not in (RequestTableModel.REQUEST_COLUMN, RequestTableModel.ERROR_COLUMN)
        )
        free = self.table.viewport().width() - fixed
        route = min(self._route_width, max(free - self._error_min_width, free // 2))
        header.resizeSection(RequestTableModel.REQUEST_COLUMN, max(route, 120))

    def _row_activated(self, index: QModelIndex) -> None:
        request_id = self.model.data(self.model.index(index.row(), 0), RequestTableModel.ID_ROLE)
        if isinstance(request_id, str):
            self.open_request(request_id)

    def open_request(self, request_id: str) -> RequestDetailDialog:
        dialog = RequestDetailDialog(self._controller.request_detail(request_id), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        self.last_dialog = dialog
        dialog.destroyed.connect(self._forget_dialog)
        return dialog

    def _forget_dialog(self) -> None:
        self.last_dialog = None


# ---------------------------------------------------------------- the window


class LogWindow(QWidget):
    """Top-level window with the Log and Requests tabs, fed by its own pumps.

    Closing only hides it (Qt's default for a window without WA_DeleteOnClose):
    the tray's "Show logs" shows it again, with everything kept meanwhile
    (bounded). `shutdown()` unsubscribes for good.
    """

    def __init__(
        self,
        controller: ProxyController,
        *,
        log_capacity: int = LOG_CAPACITY,
        request_capacity: int = REQUEST_CAPACITY,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("NimBridge log")
        self.resize(1200, 680)
        self.log = LogPanel(controller, capacity=log_capacity)
        self.requests = RequestPanel(controller, capacity=request_capacity)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.log, "Log")
        self.tabs.addTab(self.requests, "Requests")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.tabs)

        self.log_pump = LogPump(controller, capacity=log_capacity, parent=self)
        self.request_pump = RequestPump(controller, capacity=request_capacity, parent=self)
        self.log_pump.lines_ready.connect(self.log.add_lines)
        self.request_pump.requests_ready.connect(self.requests.add_requests)

    def show_requests(self) -> None:
        self.tabs.setCurrentWidget(self.requests)

    def bring_forward(self) -> None:
        """For the tray's "Show logs": show, un-minimise, raise."""
        self.show()
        self.setWindowState(self.windowState() & ~Qt.WindowState.WindowMinimized)
        self.raise_()
        self.activateWindow()

    def shutdown(self) -> None:
        """Unsubscribe from the controller and stop the timers."""
        self.log_pump.close()
        self.request_pump.close()
