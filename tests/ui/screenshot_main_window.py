"""A screenshot of the window shown where there is no system tray (stock GNOME).

    .venv/bin/python -m tests.ui.screenshot_main_window [OUT.png]

OUT.png defaults to resources/screenshots/no-tray-window.png. The server is
"running" (a FakeController) and Copy base URL has just been clicked.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QApplication  # noqa: E402 (after the platform is chosen)

from app.config.settings import Settings, TierModels  # noqa: E402
from app.service import ServerState  # noqa: E402
from app.ui.qt_main import MainWindow  # noqa: E402
from app.ui.tray import Windows  # noqa: E402
from tests.ui.fakes import FakeController  # noqa: E402

DEFAULT_OUT = Path("resources/screenshots/no-tray-window.png")


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(argv)
    tiers = TierModels(default="qwen/qwen3-coder-480b-a35b-instruct", haiku="openai/gpt-oss-20b")
    controller = FakeController(Settings(tiers=tiers))
    controller.set_status(
        state=ServerState.RUNNING, base_url="http://127.0.0.1:8787", requests_today=12
    )
    nothing = lambda *args: None  # noqa: E731
    windows = Windows(
        open_logs=nothing,
        open_settings=nothing,
        open_model_picker=nothing,
        launch_claude_code=nothing,
        launch_codex=nothing,
        quit=nothing,
    )
    window = MainWindow(controller, windows)
    window.show()
    app.processEvents()
    window.button("Copy base URL").click()
    window.adjustSize()
    app.processEvents()
    window.grab().save(str(out))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
