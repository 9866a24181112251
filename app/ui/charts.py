"""A stacked bar chart drawn with QPainter: the usage view's only chart, so no chart
library (Qt Charts is not in PySide6-Essentials, and would add ~10 MB for two bars)."""

from collections.abc import Sequence

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFontMetrics, QPainter, QPaintEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.config.usage import short_count

# Distinct for most kinds of colour blindness (Okabe-Ito), then grey for "other".
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
OTHER_COLOUR = "#999999"
OTHER = "other"


def fold_series(
    names: Sequence[str], values: Sequence[Sequence[float]], keep: int = len(PALETTE)
) -> tuple[list[str], list[list[float]]]:
    """At most `keep` series (the first ones: the caller ranks them), the rest summed
    as "other", so every colour says one thing."""
    if len(names) <= keep + 1:
        return list(names), [list(v) for v in values]
    return [*names[:keep], OTHER], [[*row[:keep], sum(row[keep:])] for row in values]


class StackedBarChart(QWidget):
    """One bar per label (a day), stacked by series; a legend above, totals on the bars."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.labels: list[str] = []
        self.series: list[str] = []
        self.values: list[list[float]] = []  # [label][series]
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumHeight(190)

    def sizeHint(self) -> QSize:
        return QSize(460, 230)

    def set_data(
        self, labels: Sequence[str], series: Sequence[str], values: Sequence[Sequence[float]]
    ) -> None:
        self.labels = list(labels)
        self.series, self.values = fold_series(series, values)
        self.setToolTip(
            "\n".join(
                f"{label}: "
                + ", ".join(
                    f"{name} {short_count(v)}"
                    for name, v in zip(self.series, row, strict=True)
                    if v
                )
                for label, row in zip(self.labels, self.values, strict=True)
                if any(row)
            )
        )
        self.update()

    def colour(self, index: int) -> QColor:
        name = self.series[index]
        return QColor(OTHER_COLOUR if name == OTHER else PALETTE[index % len(PALETTE)])

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        try:
            self._paint(painter)
        finally:
            painter.end()

    def _paint(self, painter: QPainter) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        metrics = QFontMetrics(self.font())
        line = metrics.height()
        text_colour = self.palette().windowText().color()
        width, height = self.width(), self.height()
        bold = self.font()
        bold.setBold(True)
        painter.setFont(bold)
        painter.setPen(text_colour)
        painter.drawText(QRectF(0, 0, width, line), Qt.AlignmentFlag.AlignLeft, self.title)
        painter.setFont(self.font())
        # The legend: a row of swatches with names, wrapped.
        x, y = 0.0, float(line + 4)
        for index, name in enumerate(self.series):
            shown = metrics.elidedText(name, Qt.TextElideMode.ElideMiddle, 260)
            item_width = 14 + metrics.horizontalAdvance(shown) + 16
            if x > 0 and x + item_width > width:
                x, y = 0.0, y + line + 2
            painter.fillRect(QRectF(x, y + line / 2 - 5, 10, 10), self.colour(index))
            painter.setPen(text_colour)
            painter.drawText(QRectF(x + 14, y, item_width, line), shown)
            x += item_width
        top = y + line + 8 + line  # room for the totals above the tallest bar
        bottom = height - line - 6
        totals = [sum(row) for row in self.values]
        peak = max(totals, default=0.0)
        if not self.labels or bottom - top < 20:
            return
        axis = QColor(text_colour)
        axis.setAlpha(90)
        painter.setPen(axis)
        painter.drawLine(0, int(bottom), width, int(bottom))
        if peak <= 0:
            painter.setPen(text_colour)
            painter.drawText(
                QRectF(0, top, width, bottom - top),
                Qt.AlignmentFlag.AlignCenter,
                "No requests in this period",
            )
            return
        slot = width / len(self.labels)
        bar = max(4.0, min(56.0, slot * 0.6))
        scale = (bottom - top) / peak
        label_every = max(1, int((metrics.horizontalAdvance("00-00") + 8) // slot) + 1)
        for index, (label, row) in enumerate(zip(self.labels, self.values, strict=True)):
            left = index * slot + (slot - bar) / 2
            level = float(bottom)
            for series_index, value in enumerate(row):
                if value <= 0:
                    continue
                size = value * scale
                painter.fillRect(QRectF(left, level - size, bar, size), self.colour(series_index))
                level -= size
            painter.setPen(text_colour)
            if totals[index] > 0 and slot >= metrics.horizontalAdvance("99.9k"):
                painter.drawText(
                    QRectF(index * slot, level - line - 1, slot, line),
                    Qt.AlignmentFlag.AlignHCenter,
                    short_count(totals[index]),
                )
            if (len(self.labels) - 1 - index) % label_every == 0:  # today always labelled
                painter.drawText(
                    QRectF(index * slot - 10, bottom + 3, slot + 20, line),
                    Qt.AlignmentFlag.AlignHCenter,
                    label,
                )
