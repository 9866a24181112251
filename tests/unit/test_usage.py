"""Usage figures from a real SQLite history file: table-driven, and `nimbridge usage`
in a subprocess (nothing heavy imported, an aligned table)."""

import csv
import datetime
import io
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from app.config.history import HistoryEntry, connect, entries_since, write_entries
from app.config.usage import (
    Grouping,
    error_kind,
    percentiles,
    period_start,
    report_text,
    table_lines,
    usage_csv,
    usage_report,
)

TODAY = datetime.date(2025, 3, 12)


def at(day_offset: int, hour: int = 12) -> float:
    """Local time `day_offset` days before TODAY, at `hour`."""
    day = TODAY - datetime.timedelta(days=day_offset)
    return datetime.datetime.combine(day, datetime.time(hour)).timestamp()


BASE = HistoryEntry(
    request_id="",
    started_at=0.0,
    method="POST",
    path="/v1/messages",
    client_model="claude-sonnet-4-6",
    upstream_model="qwen/coder",
    provider="nvidia",
    stream=True,
    status=200,
    error_type=None,
    error=None,
    ttfb_ms=100.0,
    duration_ms=1000.0,
    input_tokens=1000,
    output_tokens=100,
    cached_tokens=0,
    attempts=1,
    repairs=(),
    session_id="s-1",
    project="/home/u/shop",
)

# (days ago, changes): a week of two models, two providers, two sessions, some failures
ROWS: list[tuple[int, dict[str, object]]] = [
    (0, {}),
    (0, {"ttfb_ms": 300.0, "duration_ms": 3000.0, "input_tokens": 2000}),
    (0, {"upstream_model": "gpt-4.1-mini", "provider": "openai", "session_id": "s-2"}),
    (
        0,
        {
            "status": 429,
            "error_type": "rate_limit_error",
            "error": "slow down",
            "input_tokens": None,
            "output_tokens": None,
            "ttfb_ms": None,
        },
    ),
    (1, {"status": 502, "error": "upstream said no", "input_tokens": None, "output_tokens": None}),
    (3, {"project": None, "session_id": None, "cached_tokens": 500}),
    (6, {"upstream_model": "gpt-4.1-mini", "provider": "openai"}),
    (7, {"input_tokens": 99_999}),  # outside 7 days, inside 30
    (40, {"input_tokens": 99_999}),  # outside every period
]


@pytest.fixture
def history(tmp_path: Path) -> Path:
    path = tmp_path / "history.sqlite3"
    conn = connect(path)
    entries = [
        replace(BASE, request_id=f"req_{n}", started_at=at(days), **changes)  # type: ignore[arg-type]
        for n, (days, changes) in enumerate(ROWS)
    ]
    write_entries(conn, entries)
    conn.close()
    return path


def report_of(path: Path, days: int, by: Grouping = "model"):  # type: ignore[no-untyped-def]
    return usage_report(
        entries_since(path, period_start(days, TODAY)), days=days, today=TODAY, by=by
    )


@pytest.mark.parametrize(
    ("days", "requests", "failed", "tokens_in", "tokens_out"),
    [
        (1, 4, 1, 4000, 300),
        (7, 7, 2, 6000, 500),
        (30, 8, 2, 105_999, 600),
    ],
)
def test_totals_per_period(
    history: Path, days: int, requests: int, failed: int, tokens_in: int, tokens_out: int
) -> None:
    report = report_of(history, days)
    assert len(report.days) == days and report.days[-1] == TODAY
    total = report.total
    assert (total.requests, total.failed) == (requests, failed)
    assert (total.input_tokens, total.output_tokens) == (tokens_in, tokens_out)


@pytest.mark.parametrize(
    ("by", "groups"),
    [
        # name, requests, input tokens: most tokens first
        ("model", [("qwen/coder@nvidia", 5, 4000), ("gpt-4.1-mini@openai", 2, 2000)]),
        ("provider", [("nvidia", 5, 4000), ("openai", 2, 2000)]),
        ("session", [("s-1", 5, 4000), ("(no session id)", 1, 1000), ("s-2", 1, 1000)]),
        ("project", [("/home/u/shop", 6, 5000), ("(not launched by NimBridge)", 1, 1000)]),
    ],
)
def test_groups(history: Path, by: Grouping, groups: list[tuple[str, int, int]]) -> None:
    report = report_of(history, 7, by)
    assert [(n, t.requests, t.input_tokens) for n, t in report.groups] == groups


def test_per_day_stacks_and_empty_days(history: Path) -> None:
    report = report_of(history, 7, "provider")
    today = report.per_day[TODAY]
    assert {k: v.requests for k, v in today.items()} == {"nvidia": 3, "openai": 1}
    assert report.per_day[TODAY - datetime.timedelta(days=2)] == {}  # a day with none is there


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([], None),
        ([None, None], None),
        ([5.0], (5.0, 5.0, 5.0)),
        (list(map(float, range(1, 101))), (50.0, 90.0, 99.0)),
        ([300.0, 100.0, None, 200.0], (200.0, 300.0, 300.0)),
    ],
)
def test_percentiles_nearest_rank(
    samples: list[float | None], expected: tuple[float, ...] | None
) -> None:
    found = percentiles(samples)
    assert (found.values if found else None) == expected


def test_latency_and_errors(history: Path) -> None:
    report = report_of(history, 1)
    assert report.ttfb is not None and report.ttfb.count == 3  # the 429 had no first byte
    assert report.ttfb.values == (100.0, 300.0, 300.0)
    assert report.duration is not None and report.duration.values[-1] == 3000.0
    assert report.errors == [("rate_limit_error", 1)]
    assert report.error_rate == 0.25
    assert report_of(history, 7).errors == [("HTTP 502", 1), ("rate_limit_error", 1)]


@pytest.mark.parametrize(
    ("changes", "kind"),
    [
        ({"error_type": "overloaded_error", "status": 529}, "overloaded_error"),
        ({"status": 499}, "cancelled by the client"),
        ({"status": None}, "no answer"),
        ({"status": 400}, "HTTP 400"),
    ],
)
def test_error_kind(changes: dict[str, object], kind: str) -> None:
    assert error_kind(replace(BASE, **changes)) == kind  # type: ignore[arg-type]


def test_csv_has_one_row_per_day_and_group(history: Path) -> None:
    rows = list(csv.reader(io.StringIO(usage_csv(report_of(history, 7)))))
    assert rows[0] == [
        "day",
        "model",
        "requests",
        "failed",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
    ]
    assert rows[1] == ["2025-03-06", "gpt-4.1-mini@openai", "1", "0", "1000", "100", "0"]
    assert ["2025-03-12", "qwen/coder@nvidia", "3", "1", "3000", "200", "0"] in rows
    assert len(rows) == 1 + 5  # 03-06, 03-09, 03-11, and two models on 03-12
    assert sum(int(r[2]) for r in rows[1:]) == 7


def test_table_lines_align() -> None:
    lines = table_lines(("name", "n"), [("a", "1"), ("longer", "1234")])
    assert lines == ["name       n", "a          1", "longer  1234"]


def test_report_text_of_an_empty_period() -> None:
    report = usage_report([], days=1, today=TODAY)
    assert report_text(report, title="Today").endswith("No requests in this period.\n")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    probe = (
        "import sys, app.cli\n"
        "code = app.cli.main(sys.argv[1:])\n"
        "heavy = ('aiohttp', 'PySide6', 'keyring', 'pypdf', 'platformdirs')\n"
        "print('HEAVY', sorted(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", probe, "usage", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_prints_aligned_tables_from_the_history(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    now = datetime.datetime.now()
    conn = connect(path)
    write_entries(
        conn,
        [
            replace(BASE, request_id="a", started_at=now.timestamp()),
            replace(
                BASE,
                request_id="b",
                started_at=now.timestamp(),
                upstream_model="gpt-4.1-mini",
                provider="openai",
                input_tokens=12_345,
                status=500,
                error="boom",
            ),
        ],
    )
    conn.close()
    done = run_cli("--days", "1", "--by", "provider", "--history", str(path))
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == ("Today: 2 requests (1 failed, 50.0%), 13,345 tokens in, 200 out, 0 cached")
    table = lines[2:5]
    assert table == [
        "provider  requests  failed  tokens in  tokens out  cached",
        "openai           1       1     12,345         100       0",
        "nvidia           1       0      1,000         100       0",
    ]
    assert any(line.startswith("time to first byte") for line in lines)
    assert any(line.startswith("HTTP 500") and line.endswith("50.0%") for line in lines)


def test_cli_says_when_there_is_no_history(tmp_path: Path) -> None:
    done = run_cli("--history", str(tmp_path / "none.sqlite3"))
    assert done.returncode == 1
    assert "no history yet" in done.stderr
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"not a database at all" * 100)
    done = run_cli("--history", str(bad))
    assert done.returncode == 1 and "cannot be read" in done.stderr
