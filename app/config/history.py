"""Request history: one row per request in a SQLite file, kept across restarts.

It sits with the settings as NimBridge's own state on disk (stdlib `sqlite3` only).
What is stored is what the request table shows, never a body (privacy).

- Writes are off the request path: `HistoryWriter.submit_row()` appends the row
  to a queue and returns; a worker thread wakes once per batch window (not per
  row) and writes what came, one transaction per batch. A full queue drops rows
  (counted, said once) rather than slow a request.
- WAL, so readers (the log window, `nimbridge usage`, the status line) never
  wait for the writer, and two NimBridge processes can write the same file.
- `PRAGMA user_version` is the schema version; `MIGRATIONS[n]` takes version n
  to n + 1. A file made by a newer NimBridge is left alone (no history this run).
- A file SQLite calls corrupt is set aside as `<name>.broken-<UTC time>` (as a
  broken settings file is) and a new one started; a file locked by another
  process beyond the busy timeout is not moved (it is in use): that batch waits.
  Either way the notice says so once and NimBridge keeps serving.
"""

import contextlib
import datetime
import logging
import operator
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HISTORY_FILE_NAME = "history.sqlite3"
BUSY_TIMEOUT_S = 2.0  # another process's write transaction lasts milliseconds
PRUNE_EVERY_S = 3600.0
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One request, as the request table and the usage figures need it."""

    request_id: str
    started_at: float  # wall-clock seconds (time.time())
    method: str
    path: str
    client_model: str | None
    upstream_model: str | None  # the provider's model id, without `@provider`
    provider: str | None
    stream: bool | None
    status: int | None
    error_type: str | None  # Anthropic's error type ("rate_limit_error"...)
    error: str | None  # already masked
    ttfb_ms: float | None
    duration_ms: float
    input_tokens: int | None
    output_tokens: int | None
    cached_tokens: int | None
    attempts: int
    repairs: tuple[str, ...]
    session_id: str | None  # Claude Code's X-Claude-Code-Session-Id
    project: str | None  # the folder NimBridge launched that Claude Code in


COLUMNS = tuple(f.name for f in fields(HistoryEntry))
REPAIRS_SEPARATOR = "\n"
# A row as stored: HistoryEntry's fields in COLUMNS order, repairs joined by the separator.
HistoryRow = tuple[Any, ...]

# MIGRATIONS[n] takes a file at version n to n + 1 (version 0: a new, empty file).
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE requests (
        request_id TEXT PRIMARY KEY,
        started_at REAL NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        client_model TEXT,
        upstream_model TEXT,
        provider TEXT,
        stream INTEGER,
        status INTEGER,
        error_type TEXT,
        error TEXT,
        ttfb_ms REAL,
        duration_ms REAL NOT NULL,
        input_tokens INTEGER,
        output_tokens INTEGER,
        attempts INTEGER NOT NULL,
        repairs TEXT NOT NULL
    );
    CREATE INDEX requests_by_time ON requests(started_at);
    """,
    # 2: who asked (Claude Code's session, the launched project) and cached tokens.
    """
    ALTER TABLE requests ADD COLUMN cached_tokens INTEGER;
    ALTER TABLE requests ADD COLUMN session_id TEXT;
    ALTER TABLE requests ADD COLUMN project TEXT;
    CREATE INDEX requests_by_session ON requests(session_id);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class HistoryUnavailable(Exception):
    """The file cannot be used this run; the message says why, in words."""


def default_history_path() -> Path:
    """`history.sqlite3` in the platform's data folder (~/.local/share/nimbridge on Linux)."""
    import platformdirs  # the composition root asks for the real path

    return platformdirs.user_data_path("nimbridge", appauthor=False) / HISTORY_FILE_NAME


def set_aside_database(path: Path, *, now: datetime.datetime | None = None) -> Path:
    """Move a file SQLite cannot read to `<name>.broken-<UTC time>` (with its WAL); the new path."""
    stamp = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y%m%dT%H%M%SZ")
    kept = path.with_name(f"{path.name}.broken-{stamp}")
    path.replace(kept)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.replace(kept.with_name(kept.name + suffix))
    return kept


def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection at the current schema (migrated when needed); HistoryUnavailable or
    sqlite3.DatabaseError (corrupt) otherwise."""
    if read_only:
        if not path.exists():
            raise HistoryUnavailable(f"no history yet ({path})")
        conn = sqlite3.connect(
            f"{path.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=False
        )
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise HistoryUnavailable(
                f"{path.name} was written by a newer NimBridge (schema {version}, this one "
                f"knows {SCHEMA_VERSION}): history is not kept this run"
            )
        if read_only:
            if version < SCHEMA_VERSION:
                raise HistoryUnavailable(f"{path.name} is not yet at this version's schema")
            return conn
        if version == 0:  # deleted rows give their space back; only before the first table
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL: safe against crashes, not power loss
        # The writer appends at the end of its indexes: a small page cache serves it (the
        # default, 2 MB, filled up in a long-running server's memory for nothing).
        conn.execute("PRAGMA cache_size=-256")
        _migrate(conn, version)
        return conn
    except BaseException:
        conn.close()
        raise


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")  # two processes starting at once migrate once
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        for step in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[step].split(";"):
                if statement.strip():
                    conn.execute(statement)
            log.info("request history: schema %d -> %d", step, step + 1)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


_REPAIRS_AT = COLUMNS.index("repairs")
_VALUES_OF = operator.attrgetter(*COLUMNS)  # astuple copies deeply: 15 times slower


def row_of(entry: HistoryEntry) -> HistoryRow:
    values: HistoryRow = _VALUES_OF(entry)
    repairs = REPAIRS_SEPARATOR.join(entry.repairs)
    return (*values[:_REPAIRS_AT], repairs, *values[_REPAIRS_AT + 1 :])


def entry_of(row: Sequence[Any]) -> HistoryEntry:
    values = dict(zip(COLUMNS, row, strict=True))
    values["repairs"] = tuple(r for r in (values["repairs"] or "").split(REPAIRS_SEPARATOR) if r)
    values["stream"] = None if values["stream"] is None else bool(values["stream"])
    return HistoryEntry(**values)


_INSERT = (
    f"INSERT OR REPLACE INTO requests ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in COLUMNS)})"
)


def write_entries(conn: sqlite3.Connection, entries: Sequence[HistoryEntry]) -> None:
    """One transaction for the batch."""
    write_rows(conn, [row_of(e) for e in entries])


def write_rows(conn: sqlite3.Connection, rows: Sequence[HistoryRow]) -> None:
    """One transaction for the batch."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(_INSERT, rows)
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def prune(conn: sqlite3.Connection, *, keep_days: int, max_bytes: int, now: float) -> int:
    """Rows older than `keep_days` go, then the oldest tenth at a time while the file is
    over `max_bytes`; the number of rows deleted."""
    deleted = conn.execute(
        "DELETE FROM requests WHERE started_at < ?", (now - keep_days * SECONDS_PER_DAY,)
    ).rowcount
    for _ in range(20):  # each round removes a tenth: bounded work
        if _size(conn) <= max_bytes:
            break
        (count,) = conn.execute("SELECT COUNT(*) FROM requests").fetchone()
        if not count:
            break
        deleted += conn.execute(
            "DELETE FROM requests WHERE request_id IN "
            "(SELECT request_id FROM requests ORDER BY started_at LIMIT ?)",
            (max(1, count // 10),),
        ).rowcount
        conn.execute("PRAGMA incremental_vacuum").fetchall()  # one page per step
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return deleted


def _size(conn: sqlite3.Connection) -> int:
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    (free,) = conn.execute("PRAGMA freelist_count").fetchone()
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    return int((pages - free) * page_size)


# ---------------------------------------------------------------------------- the writer

_STOP = object()


class HistoryWriter:
    """Writes submitted rows from its own thread, in batches; `submit_row` never blocks.

    The thread sleeps out each batch window and then takes everything that came: one
    wake-up per window, where a queue's `get` per row woke it (and took the GIL from the
    event loop) for every request."""

    def __init__(
        self,
        path: Path,
        *,
        keep_days: int = 90,
        max_bytes: int = 200 * 1024 * 1024,
        on_notice: Callable[[str], None] | None = None,
        batch_window_s: float = 0.25,
        batch_max: int = 500,
        queue_max: int = 50_000,
    ) -> None:
        self.path = path
        self.keep_days = keep_days
        self.max_bytes = max_bytes
        self._on_notice = on_notice
        self._batch_window_s = batch_window_s
        self._batch_max = batch_max
        self._queue_max = queue_max
        # Rows, and the flush markers (Events) and _STOP among them. deque's append and
        # popleft are atomic: the submitting thread takes no lock.
        self._pending: deque[object] = deque()
        self._wake = threading.Event()  # something is pending
        self._hurry = threading.Event()  # a flush or close waits: end the window now
        self._conn: sqlite3.Connection | None = None
        self._last_prune = 0.0
        self.dropped = 0
        self.written = 0
        self.notices: list[str] = []
        self._thread = threading.Thread(target=self._run, name="request history", daemon=True)
        self._thread.start()

    def submit(self, entry: HistoryEntry) -> None:
        self.submit_row(row_of(entry))

    def submit_row(self, row: HistoryRow) -> None:
        if len(self._pending) >= self._queue_max:
            self.dropped += 1
            if self.dropped == 1:
                self._notice("request history is behind: some requests were not recorded")
            return
        self._pending.append(row)
        if not self._wake.is_set():
            self._wake.set()

    def flush(self) -> None:
        """Wait until every row submitted so far is written (or given up)."""
        done = threading.Event()
        self._enqueue_urgent(done)
        while self._thread.is_alive() and not done.wait(0.1):
            pass

    def close(self, timeout_s: float = 10.0) -> None:
        self._enqueue_urgent(_STOP)
        self._thread.join(timeout_s)

    def _enqueue_urgent(self, item: object) -> None:
        self._pending.append(item)
        self._hurry.set()
        self._wake.set()

    def watch(self, on_notice: Callable[[str], None]) -> list[str]:
        """Call `on_notice` (from the writer's thread) with each notice from now on; the
        notices made before, for the caller to show too."""
        self._on_notice = on_notice
        return list(self.notices)

    def _notice(self, text: str) -> None:
        self.notices.append(text)
        log.warning("%s", text)
        if self._on_notice is not None:
            self._on_notice(text)

    # -------------------------------------------------------------- on the thread

    def _run(self) -> None:
        self._open()
        stopping = False
        while not stopping:
            self._wake.wait()
            self._hurry.wait(self._batch_window_s)  # rows gather meanwhile
            self._hurry.clear()
            self._wake.clear()  # before taking: a row appended from now on wakes us again
            batch: list[HistoryRow] = []
            while self._pending and not stopping:
                item = self._pending.popleft()
                if isinstance(item, tuple):
                    batch.append(item)
                    if len(batch) >= self._batch_max:
                        self._write(batch)
                        batch = []
                    continue
                self._write(batch)
                batch = []
                if item is _STOP:
                    stopping = True
                elif isinstance(item, threading.Event):  # a flush: all before it is written
                    item.set()
            self._write(batch)
        if self._conn is not None:
            self._conn.close()

    def _open(self) -> None:
        for attempt in range(2):
            try:
                conn = connect(self.path)
                try:
                    self._conn = conn
                    self._prune()
                except BaseException:
                    self._conn = None
                    conn.close()
                    raise
                return
            except HistoryUnavailable as exc:
                self._notice(str(exc))
                return
            except sqlite3.OperationalError as exc:
                if _is_locked(exc):
                    self._notice(f"request history: {self.path} is locked by another program")
                    return
                failure: Exception = exc
            except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed"
                failure = exc
            except OSError as exc:
                self._give_up(exc)
                return
            if attempt == 0:
                self._set_aside(failure)
            else:
                self._give_up(failure)

    def _set_aside(self, exc: Exception) -> None:
        try:
            kept = set_aside_database(self.path)
        except OSError:
            self._give_up(exc)
            return
        self._notice(
            f"the request history {self.path.name} could not be read ({exc}) and was kept "
            f"as {kept.name}; a new history starts now"
        )

    def _give_up(self, exc: Exception) -> None:
        self._conn = None
        self._notice(f"request history is not kept this run: {self.path}: {exc}")

    def _write(self, rows: list[HistoryRow]) -> None:
        if not rows:
            return
        if self._conn is None:
            self._open_again()
            if self._conn is None:
                return
        try:
            write_rows(self._conn, rows)
            self.written += len(rows)
            if time.monotonic() - self._last_prune > PRUNE_EVERY_S:
                self._prune()
        except sqlite3.OperationalError as exc:
            if _is_locked(exc):
                log.warning(
                    "request history: %s is locked; %d rows not written", self.path, len(rows)
                )
                return
            self._recover(exc, rows)
        except sqlite3.DatabaseError as exc:
            self._recover(exc, rows)

    def _open_again(self) -> None:
        """After a lock at start: try again now and then, never every request."""
        if time.monotonic() - self._last_prune > 60:
            self._last_prune = time.monotonic()
            with contextlib.suppress(sqlite3.Error, HistoryUnavailable, OSError):
                self._conn = connect(self.path)

    def _recover(self, exc: sqlite3.DatabaseError, rows: list[HistoryRow]) -> None:
        """Corruption found while writing: set the file aside, start anew, write again."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._set_aside(exc)
        with contextlib.suppress(sqlite3.Error, HistoryUnavailable, OSError):
            self._conn = connect(self.path)
            write_rows(self._conn, rows)
            self.written += len(rows)

    def _prune(self) -> None:
        assert self._conn is not None
        self._last_prune = time.monotonic()
        if self.keep_days <= 0:
            return
        deleted = prune(
            self._conn, keep_days=self.keep_days, max_bytes=self.max_bytes, now=time.time()
        )
        if deleted:
            log.info("request history: %d old rows removed", deleted)


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


# ---------------------------------------------------------------------------- reading


@contextlib.contextmanager
def reading(path: Path) -> Iterator[sqlite3.Connection]:
    conn = connect(path, read_only=True)
    try:
        yield conn
    finally:
        conn.close()


def recent_entries(path: Path, limit: int) -> list[HistoryEntry]:
    """The last `limit` requests, oldest first; [] when there is no usable history."""
    try:
        with reading(path) as conn:
            rows = conn.execute(
                f"SELECT {', '.join(COLUMNS)} FROM requests ORDER BY started_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
    except (sqlite3.Error, HistoryUnavailable):
        return []
    return [entry_of(row) for row in reversed(rows)]


def entries_since(path: Path, since: float) -> list[HistoryEntry]:
    try:
        with reading(path) as conn:
            rows = conn.execute(
                f"SELECT {', '.join(COLUMNS)} FROM requests WHERE started_at >= ? "
                "ORDER BY started_at",
                (since,),
            ).fetchall()
    except (sqlite3.Error, HistoryUnavailable):
        return []
    return [entry_of(row) for row in rows]


@dataclass(frozen=True, slots=True)
class SessionTotals:
    requests: int
    input_tokens: int
    output_tokens: int
    last_upstream_model: str | None  # the last answer's model id, and its provider
    last_provider: str | None


def session_totals(path: Path, session_id: str) -> SessionTotals | None:
    try:
        with reading(path) as conn:
            requests, tokens_in, tokens_out = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0) "
                "FROM requests WHERE session_id = ?",
                (session_id,),
            ).fetchone()
            last = conn.execute(
                "SELECT upstream_model, provider FROM requests WHERE session_id = ? "
                "AND upstream_model IS NOT NULL ORDER BY started_at DESC LIMIT 1",
                (session_id,),
            ).fetchone()
    except (sqlite3.Error, HistoryUnavailable):
        return None
    if not requests:
        return None
    model, provider = (None, None) if last is None else (last[0], last[1] or None)
    return SessionTotals(int(requests), int(tokens_in), int(tokens_out), model, provider)
