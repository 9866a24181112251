"""Screenshots of the home window and the usage view, from a FakeController and a
history file written here (a week of two models, two projects, a few failures).

    DISPLAY=:99 QT_QPA_PLATFORM=xcb .venv/bin/python -m tests.ui.screenshot_home_window [DIR]

DIR defaults to resources/screenshots/ (home-window.png, usage-window.png).
"""

import datetime
import os
import random
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QApplication  # noqa: E402 (after the platform is chosen)

from app.config.history import HistoryEntry, connect, write_entries  # noqa: E402
from app.config.settings import Settings, TierModels  # noqa: E402
from app.core.governor import GovernorState  # noqa: E402
from app.service import ServerState  # noqa: E402
from app.ui.home_window import HomeWindow  # noqa: E402
from app.ui.tray import Windows  # noqa: E402
from app.ui.usage_window import UsageWindow  # noqa: E402
from tests.ui.fakes import FakeController  # noqa: E402

DEFAULT_DIR = Path("resources/screenshots")
MODELS = (
    ("qwen/qwen3-coder-480b-a35b-instruct", "nvidia"),
    ("deepseek-ai/deepseek-v3.1", "nvidia"),
    ("gpt-4.1-mini", "openai"),
)


def week_of_requests(today: datetime.date) -> list[HistoryEntry]:
    rng = random.Random(20)
    entries = []
    for days_ago in range(7):
        day = today - datetime.timedelta(days=days_ago)
        for n in range(rng.randint(8, 40) if days_ago != 4 else 0):
            model, provider = MODELS[rng.choice((0, 0, 0, 1, 1, 2))]
            at = datetime.datetime.combine(day, datetime.time(9)) + datetime.timedelta(
                minutes=n * 7
            )
            if at > datetime.datetime.now():
                at = datetime.datetime.now() - datetime.timedelta(minutes=n)
            failed = rng.random() < 0.06
            entries.append(
                HistoryEntry(
                    request_id=f"req_{days_ago}_{n}",
                    started_at=at.timestamp(),
                    method="POST",
                    path="/v1/messages",
                    client_model="claude-sonnet-4-6",
                    upstream_model=model,
                    provider=provider,
                    stream=True,
                    status=429 if failed else 200,
                    error_type="rate_limit_error" if failed else None,
                    error="rate limited" if failed else None,
                    ttfb_ms=rng.uniform(250, 1800),
                    duration_ms=rng.uniform(1500, 22000),
                    input_tokens=None if failed else rng.randint(4000, 38000),
                    output_tokens=None if failed else rng.randint(80, 2400),
                    cached_tokens=0,
                    attempts=1,
                    repairs=(),
                    session_id=f"{rng.choice(('9e135e1d', '41c07a2b', 'c3d9f0e4'))}-2a25-4148",
                    project=rng.choice(("/home/ana/shop", "/home/ana/blog")),
                )
            )
    return entries


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else DEFAULT_DIR
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(argv)
    today = datetime.date.today()
    history = Path(tempfile.mkdtemp()) / "history.sqlite3"
    conn = connect(history)
    write_entries(conn, week_of_requests(today))
    conn.close()
    tiers = TierModels(default="qwen/qwen3-coder-480b-a35b-instruct", haiku="openai/gpt-oss-20b")
    controller = FakeController(Settings(tiers=tiers))
    controller.history_file = history
    controller.set_status(
        state=ServerState.RUNNING,
        base_url="http://127.0.0.1:8787",
        pacing={"nvidia": GovernorState(31, 40, 0.0, 2, 0)},
    )
    nothing = lambda *args: None  # noqa: E731
    windows = Windows(nothing, nothing, nothing, nothing, nothing, nothing, nothing)
    home = HomeWindow(controller, windows)
    home.show()
    app.processEvents()
    home.button("Copy base URL").click()
    home.adjustSize()
    for _ in range(5):
        app.processEvents()
    home.grab().save(str(out / "home-window.png"))
    usage = UsageWindow(controller)
    usage.show()
    usage.tabs.setCurrentIndex(1)  # sessions
    for _ in range(5):
        app.processEvents()
    usage.grab().save(str(out / "usage-window.png"))
    print(out / "home-window.png", out / "usage-window.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
