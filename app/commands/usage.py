"""`nimbridge usage [--days N] [--by model|provider|session|project]`: the usage view's
figures as aligned tables in the terminal, read from the request history file.

Standard library only (sqlite3): no aiohttp, Qt or keychain.
"""

import datetime
import sqlite3
from pathlib import Path
from typing import TextIO

from app.config.history import HistoryUnavailable, connect, entries_since
from app.config.usage import Grouping, period_start, report_text, usage_report


def run_usage(
    history: Path, *, days: int, by: Grouping, out: TextIO, err: TextIO, today: datetime.date
) -> int:
    if days < 1:
        print("nimbridge usage: --days must be 1 or more", file=err)
        return 2
    try:  # entries_since() says nothing about a missing or unreadable file: we must
        connect(history, read_only=True).close()
    except HistoryUnavailable as exc:
        print(f"nimbridge usage: {exc}", file=err)
        return 1
    except sqlite3.Error as exc:  # not a database, malformed
        print(f"nimbridge usage: the history {history} cannot be read: {exc}", file=err)
        return 1
    entries = entries_since(history, period_start(days, today))
    report = usage_report(entries, days=days, today=today, by=by)
    title = "Today" if days == 1 else f"Last {days} days ({report.days[0].isoformat()} to today)"
    out.write(report_text(report, title=title))
    return 0
