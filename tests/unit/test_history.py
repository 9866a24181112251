"""The request history with a real SQLite file: round trip, migration, corruption, locks,
two processes writing at once, retention and the size bound."""

import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.config.history import (
    MIGRATIONS,
    SCHEMA_VERSION,
    HistoryEntry,
    HistoryWriter,
    entries_since,
    recent_entries,
    session_totals,
)
from app.config.secrets import MemorySecretStore, ProviderKeys
from app.config.settings import Settings
from app.service import ProxyService

ENTRY = HistoryEntry(
    request_id="req_1",
    started_at=1_700_000_000.5,
    method="POST",
    path="/v1/messages",
    client_model="claude-sonnet-4-6",
    upstream_model="meta/llama-3.3-70b-instruct",
    provider="nvidia",
    stream=True,
    status=200,
    error_type=None,
    error=None,
    ttfb_ms=120.5,
    duration_ms=900.0,
    input_tokens=1200,
    output_tokens=80,
    cached_tokens=None,
    attempts=1,
    repairs=("a note", "another"),
    session_id="9e135e1d-2a25-4148-987c-1ea8acc37485",
    project="/home/u/proj",
)


def entry(n: int, **changes: object) -> HistoryEntry:
    values: dict[str, object] = {"started_at": time.time() - 10 + n * 1e-3, **changes}
    return replace(ENTRY, request_id=f"req_{n}", **values)  # type: ignore[arg-type]


def written(path: Path, entries: list[HistoryEntry], **kwargs: object) -> HistoryWriter:
    writer = HistoryWriter(path, batch_window_s=0.01, **kwargs)  # type: ignore[arg-type]
    for e in entries:
        writer.submit(e)
    writer.flush()
    return writer


def test_round_trip_and_session_totals(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    rows = [
        entry(1),
        entry(2, output_tokens=20, stream=None, repairs=()),
        entry(3, session_id=None),
    ]
    writer = written(path, rows)
    assert recent_entries(path, 10) == rows
    assert recent_entries(path, 2) == rows[1:]  # the last ones, oldest first
    totals = session_totals(path, ENTRY.session_id or "")
    assert totals is not None
    assert (totals.requests, totals.input_tokens, totals.output_tokens) == (2, 2400, 100)
    assert (totals.last_upstream_model, totals.last_provider) == (
        "meta/llama-3.3-70b-instruct",
        "nvidia",
    )
    assert session_totals(path, "other") is None
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    writer.close()
    assert writer.notices == []


@settings(max_examples=25, deadline=None)
@given(
    error=st.one_of(st.none(), st.text(max_size=200)),
    repairs=st.lists(st.text(min_size=1, max_size=50).filter(lambda s: "\n" not in s), max_size=4),
    tokens=st.one_of(st.none(), st.integers(0, 2**40)),
)
def test_any_entry_reads_back_as_written(
    tmp_path_factory: pytest.TempPathFactory,
    error: str | None,
    repairs: list[str],
    tokens: int | None,
) -> None:
    path = tmp_path_factory.mktemp("h") / "h.sqlite3"
    e = entry(1, error=error, repairs=tuple(repairs), input_tokens=tokens)
    written(path, [e]).close()
    assert recent_entries(path, 1) == [e]


def test_no_file_reads_as_empty(tmp_path: Path) -> None:
    assert recent_entries(tmp_path / "none.sqlite3", 10) == []
    assert session_totals(tmp_path / "none.sqlite3", "s") is None


def test_migrates_a_version_1_file_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(MIGRATIONS[0])
    old.execute(
        "INSERT INTO requests (request_id, started_at, method, path, duration_ms, attempts, "
        "repairs, status) VALUES ('req_old', ?, 'POST', '/v1/messages', 5, 1, '', 200)",
        (time.time() - 60,),
    )
    old.execute("PRAGMA user_version=1")
    old.commit()
    old.close()
    writer = written(path, [entry(1)])
    writer.close()
    rows = recent_entries(path, 10)
    assert [r.request_id for r in rows] == ["req_old", "req_1"]
    assert rows[0].session_id is None and rows[0].project is None
    assert rows[1].session_id == ENTRY.session_id
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION == 2


def test_a_corrupt_file_is_set_aside_and_a_new_one_started(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    path.write_bytes(b"this is not a database, it is a broken file " * 200)
    notices: list[str] = []
    writer = written(path, [entry(1)], on_notice=notices.append)
    writer.close()
    kept = list(tmp_path.glob("h.sqlite3.broken-*"))
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"this is not a database")
    assert len(notices) == 1 and "kept as h.sqlite3.broken-" in notices[0]
    assert [r.request_id for r in recent_entries(path, 10)] == ["req_1"]


def test_the_tray_sees_a_notice_made_before_it_watched_and_those_after(tmp_path: Path) -> None:
    """The tray app starts watching after the writer opened the file: the notice of a
    damaged file set aside is handed over then, and later ones as they come."""
    path = tmp_path / "h.sqlite3"
    path.write_bytes(b"this is not a database, it is a broken file " * 200)
    writer = written(path, [entry(1)])
    seen: list[str] = []
    try:
        keys = ProviderKeys(MemorySecretStore(), env={})
        service = ProxyService(Settings(), keys, settings_path=None, history=writer)
        service.watch_history_notices(seen.append)
        assert len(seen) == 1 and "kept as h.sqlite3.broken-" in seen[0]
        writer.watch(seen.append)  # what the service did; now a later notice arrives
        writer._notice("request history is behind: some requests were not recorded")
        assert seen[-1] == "request history is behind: some requests were not recorded"
    finally:
        writer.close()


def test_a_malformed_file_with_a_good_header_is_set_aside_too(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    written(path, [entry(n, error="x" * 500) for n in range(300)]).close()
    with path.open("r+b") as f:  # page 1 (header, schema) intact, the tables' pages not
        f.seek(4096)
        f.write(b"\xffgarbage" * 20_000)
    writer = written(path, [entry(1000)])
    writer.close()
    assert list(tmp_path.glob("h.sqlite3.broken-*"))
    assert any("malformed" in n and "a new history starts now" in n for n in writer.notices)
    assert [r.request_id for r in recent_entries(path, 10)] == ["req_1000"]


def test_a_newer_schema_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    writer = written(path, [entry(1)])
    writer.close()
    assert "newer NimBridge" in writer.notices[0]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 99
    assert not list(tmp_path.glob("*.broken-*"))


def test_a_locked_file_is_not_moved_and_submit_never_blocks(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    written(path, [entry(1)]).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        writer = HistoryWriter(path, batch_window_s=0.01)
        began = time.perf_counter()
        for n in range(2, 200):
            writer.submit(entry(n))
        assert time.perf_counter() - began < 0.05  # the request path never waits
        writer.flush()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    writer.close()
    assert path.exists() and not list(tmp_path.glob("*.broken-*"))
    assert any("locked" in n for n in writer.notices)


WRITER_SCRIPT = """
import sys, time
from dataclasses import replace
from pathlib import Path
from tests.unit.test_history import ENTRY
from app.config.history import HistoryWriter
writer = HistoryWriter(Path(sys.argv[1]), batch_window_s=0.001, batch_max=7)
for n in range(int(sys.argv[3])):
    writer.submit(replace(ENTRY, request_id=f"{sys.argv[2]}_{n}", started_at=time.time()))
writer.flush()
writer.close()
print(len(writer.notices))
"""


def test_two_processes_write_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    root = Path(__file__).parents[2]
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER_SCRIPT, str(path), name, "400"],
            cwd=root,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    outputs = [w.communicate(timeout=60)[0].strip() for w in writers]
    assert [w.returncode for w in writers] == [0, 0]
    assert outputs == ["0", "0"]  # no lock notice: WAL and the busy timeout share the file
    ids = {r.request_id for r in entries_since(path, 0)}
    assert ids == {f"{p}_{n}" for p in "ab" for n in range(400)}


def test_retention_drops_old_rows_at_start(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    day = 86_400
    old = [entry(n, started_at=time.time() - (n + 89.5) * day) for n in range(1, 4)]
    written(path, [entry(0), *old], keep_days=365).close()
    assert len(recent_entries(path, 10)) == 4
    written(path, [], keep_days=90).close()  # a day's rows older than 90 days go
    assert [r.request_id for r in recent_entries(path, 10)] == ["req_0"]


def test_size_bound_removes_the_oldest(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    bulky = [entry(n, error="x" * 2000) for n in range(600)]  # ~1.3 MB of rows
    written(path, bulky, keep_days=90, max_bytes=50 * 1024 * 1024).close()
    assert len(recent_entries(path, 1000)) == 600
    written(path, [], keep_days=90, max_bytes=300 * 1024).close()
    left = recent_entries(path, 1000)
    assert 0 < len(left) < 200
    assert left[-1].request_id == "req_599"  # the newest stay
    assert path.stat().st_size < 600 * 1024  # freed pages were given back
