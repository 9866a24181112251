"""Render the tray/app icons from resources/icons/nimbridge.svg (reproducible).

    .venv/bin/python packaging/make_icons.py

Writes `nimbridge-{state}-{size}.png` for every tray state and size, and the 256 px
`nimbridge.png` app icon. A state is the source SVG with another tile colour and,
for busy/error, a badge in the bottom-right corner; the badge has a white rim so
it reads on light and dark panels alike.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QByteArray, QRectF, Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

ICONS = Path(__file__).resolve().parent.parent / "resources" / "icons"
SOURCE = ICONS / "nimbridge.svg"
SIZES = (16, 22, 24, 32, 48, 64, 128, 256)
GREEN = "#76B900"

BUSY_BADGE = (
    '<circle cx="198" cy="198" r="54" fill="#FFFFFF"/>'
    '<circle cx="198" cy="198" r="40" fill="#1D4F00"/>'
    '<circle cx="198" cy="198" r="22" fill="#9BE22D"/>'
)
ERROR_BADGE = (
    '<circle cx="198" cy="198" r="56" fill="#FFFFFF"/>'
    '<circle cx="198" cy="198" r="44" fill="#FF9800"/>'
    '<rect x="189" y="168" width="18" height="38" rx="6" fill="#3A1A00"/>'
    '<circle cx="198" cy="222" r="10" fill="#3A1A00"/>'
)
# state -> (tile colour, badge markup)
STATES: dict[str, tuple[str, str]] = {
    "stopped": ("#7D848F", ""),
    "running": (GREEN, ""),
    "busy": (GREEN, BUSY_BADGE),
    "error": ("#D4351C", ERROR_BADGE),
}


def state_svg(source: str, colour: str, badge: str) -> str:
    return source.replace(GREEN, colour).replace("</svg>", f"  {badge}\n</svg>")


def render(svg: str, size: int) -> QImage:
    renderer = QSvgRenderer(QByteArray(svg.encode()))
    if not renderer.isValid():
        raise SystemExit("make_icons: the SVG does not parse")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    return image


def main() -> int:
    _app = QGuiApplication(sys.argv[:1])  # QImage text/SVG rendering wants a GUI app
    source = SOURCE.read_text(encoding="utf-8")
    for state, (colour, badge) in STATES.items():
        svg = state_svg(source, colour, badge)
        for size in SIZES:
            out = ICONS / f"nimbridge-{state}-{size}.png"
            if not render(svg, size).save(str(out), b"PNG"):
                raise SystemExit(f"make_icons: cannot write {out}")
    render(source, 256).save(str(ICONS / "nimbridge.png"), b"PNG")
    print(f"wrote {len(STATES) * len(SIZES) + 1} PNGs to {ICONS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
