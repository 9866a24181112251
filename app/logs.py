"""One `app.*` logger tree, redacted on every handler.

Invariant: every handler `setup_logging` installs carries a `RedactingFilter`
(a logger's filter does not see records propagated from child loggers), so no
key can reach stderr, a file or the UI's buffer, whoever logged it.
"""

import asyncio
import contextlib
import logging
import logging.handlers
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from app.core.masking import MASK as MASK  # re-exported: what a masked secret reads
from app.core.masking import Masker, mask_shapes


class RedactingFilter(logging.Filter):
    """Formats the message, masks it (`Masker.redact`: known secrets, pieces of them at
    a cut, secret-shaped strings), clears args."""

    def __init__(self, secrets: Masker | Callable[[], Iterable[str]] = tuple) -> None:
        super().__init__()
        # A Masker is shared with the server (it learns pass-through client keys); a
        # callable is read again on each record, for callers that keep their own list.
        self._source = None if isinstance(secrets, Masker) else secrets
        self._masker = secrets if isinstance(secrets, Masker) else Masker()
        self._seen: tuple[str, ...] = ()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.mask(record.getMessage()), None
        if record.exc_info and record.exc_text is None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:  # a traceback quotes exception messages, which may hold a key
            record.exc_text = self.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
        return True

    def mask(self, text: str) -> str:
        if self._source is not None:
            secrets = tuple(self._source())
            if secrets != self._seen:
                self._masker, self._seen = Masker(secrets), secrets
        return self._masker.redact(text)


LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


_TIME_FORMAT = logging.Formatter.default_time_format


class LineFormatter(logging.Formatter):
    """`LOG_FORMAT`, with the date and time of day formatted once a second rather than
    for every record (strftime was a sixth of a request's log line)."""

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT)
        self._stamp: tuple[int, str] = (-1, "")  # (second, its text): swapped whole

    def format(self, record: logging.LogRecord) -> str:
        # A line our filter already made (its message formatted and masked, no args) and
        # that carries no traceback: `LOG_FORMAT` by one f-string (the standard path goes
        # through the style object and checks for the time field on every record).
        if record.args or record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        message = record.message = str(record.msg)
        record.asctime = self.formatTime(record)
        return f"{record.asctime} {record.levelname:<7} {record.name}: {message}"

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        second = int(record.created)
        cached_second, text = self._stamp
        if second != cached_second:
            text = time.strftime(_TIME_FORMAT, self.converter(record.created))
            self._stamp = (second, text)
        return f"{text},{int(record.msecs):03d}"  # the standard "%s,%03d"


# Libraries whose warnings and errors belong in our log (redacted like ours): asyncio's
# "Task exception was never retrieved", aiohttp's "Error handling request"...
LIBRARY_LOGGERS = ("asyncio", "aiohttp")
CRASH_LOGGER = "app.crash"


@dataclass(frozen=True, slots=True)
class LogLine:
    created: float  # time.time() of the record
    level: str
    name: str
    message: str  # already redacted


class LogBuffer(logging.Handler):
    """The last `capacity` records, and subscribers told of each new one.

    Subscribers are called on whatever thread logged; a UI must hand the lines
    to its own thread and batch them (the log window flushes on a timer, never
    per record: DESKTOP.md measured a 6x slowdown otherwise).
    """

    def __init__(self, capacity: int = 5000) -> None:
        super().__init__(logging.DEBUG)
        self._lines: deque[LogLine] = deque(maxlen=capacity)
        self._subscribers: list[Callable[[LogLine], None]] = []
        self._lock_lines = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = LogLine(record.created, record.levelname, record.name, record.getMessage())
        if record.exc_text:
            line = LogLine(
                line.created, line.level, line.name, f"{line.message}\n{record.exc_text}"
            )
        with self._lock_lines:
            self._lines.append(line)
            subscribers = list(self._subscribers)
        for callback in subscribers:
            callback(line)

    def lines(self) -> list[LogLine]:
        with self._lock_lines:
            return list(self._lines)

    def subscribe(self, callback: Callable[[LogLine], None]) -> Callable[[], None]:
        with self._lock_lines:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock_lines:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe


class ProblemTally(logging.Handler):
    """Counts WARNING and worse records and keeps each distinct message once, with how
    often it came: what `nimbridge code` tells once Claude Code has the terminal back."""

    def __init__(self, kept: int = 20) -> None:
        super().__init__(logging.WARNING)
        self._kept = kept
        self._lock_counts = threading.Lock()
        self.count_by_level: dict[str, int] = {}
        self.count_by_message: dict[str, int] = {}  # first seen first

    def emit(self, record: logging.LogRecord) -> None:
        message = (record.getMessage().splitlines() or [""])[0][:300]
        with self._lock_counts:
            level = record.levelname
            self.count_by_level[level] = self.count_by_level.get(level, 0) + 1
            if message in self.count_by_message or len(self.count_by_message) < self._kept:
                self.count_by_message[message] = self.count_by_message.get(message, 0) + 1

    def summary(self, shown: int = 3) -> list[str]:
        """A few lines: the counts by level, then the first distinct messages."""
        with self._lock_counts:
            if not self.count_by_level:
                return []
            counts = ", ".join(
                f"{count} {level.lower()}{'s' if count > 1 else ''}"
                for level, count in self.count_by_level.items()
            )
            lines = [counts]
            items = list(self.count_by_message.items())
        for message, count in items[:shown]:
            lines.append(f"  {message}" + (f" (x{count})" if count > 1 else ""))
        if len(items) > shown:
            lines.append(f"  ... and {len(items) - shown} more kind(s)")
        return lines


class OncePerLoopPass:
    """A handler's lines, when logged on an event loop's thread, written at the end of
    the loop's pass, all in one write: under load several requests end in one pass, and
    a write per line was a third of a request's logging cost. Elsewhere (no loop
    running: other threads, start-up, exit) a line is written at once, after any held
    ones, in order; `flush()` (which `logging.shutdown` calls at exit) writes what is
    held. A mixin for `logging.Handler`s: `emit` calls `write_line`."""

    lock: "threading.RLock | None"  # the handler's own (a string: RLock is a function at run time)
    _held: list[str]
    _write_scheduled_on: asyncio.AbstractEventLoop | None

    def hold_lines(self) -> None:
        self._held = []
        self._write_scheduled_on = None

    def write_line(self, line: str) -> None:
        """Called from `emit`, under the handler's lock."""
        self._held.append(line)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_held()
            return
        # Scheduled once per pass, on this loop: a loop that ended before its pass did
        # (its write never ran) does not keep the lines of the next one waiting.
        if self._write_scheduled_on is not loop:
            self._write_scheduled_on = loop
            loop.call_soon(self.flush)

    def flush(self) -> None:
        with self.lock or contextlib.nullcontext():
            self._write_held()

    def _write_held(self) -> None:
        self._write_scheduled_on = None
        if self._held:
            text = "".join(self._held)
            self._held.clear()
            self.write_text(text)

    def write_text(self, text: str) -> None:
        raise NotImplementedError


class StderrHandler(OncePerLoopPass, logging.Handler):
    """Writes to whatever `sys.stderr` is now (test runners and GUIs replace it),
    as the standard library's own last-resort handler does."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)
        self.hold_lines()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write_line(self.format(record) + "\n")
        except Exception:  # logging must never raise into the caller
            self.handleError(record)

    def write_text(self, text: str) -> None:
        stream = sys.stderr
        if stream is None:  # pythonw, a GUI without a console
            return
        with contextlib.suppress(OSError, ValueError):  # a closed or broken stderr
            stream.write(text)
            stream.flush()


class RotatingLogFile(OncePerLoopPass, logging.handlers.RotatingFileHandler):
    """The standard rotating file, minus its per-record cost: the standard one formats
    every record twice and asks the disk for the file's size each time, about 40 us a
    request on the event loop. This one counts what it wrote, and writes once per pass
    of the loop (`OncePerLoopPass`)."""

    def __init__(self, path: Path, *, max_bytes: int, backup_count: int) -> None:
        logging.handlers.RotatingFileHandler.__init__(
            self, path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8"
        )
        self.hold_lines()
        self._size = path.stat().st_size if path.exists() else 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write_line(self.format(record) + self.terminator)
        except Exception:  # logging must never raise into the caller
            self.handleError(record)

    def write_text(self, text: str) -> None:
        try:
            if self._size and self._size + len(text) > self.maxBytes:
                self.doRollover()
                self._size = 0
            if self.stream is None:
                self.stream = self._open()
            self.stream.write(text)
            self.stream.flush()
            self._size += len(text)  # characters: near enough to bytes for a size limit
        except OSError:  # a full disk, a removed folder: logging must never raise
            self.stream = None  # opened again for the next lines


def setup_logging(
    level: str = "INFO",
    *,
    secrets: Masker | Callable[[], Iterable[str]] = tuple,
    log_file: Path | None = None,
    buffer: logging.Handler | None = None,  # a LogBuffer, a ProblemTally
    stderr: bool = True,
) -> logging.Logger:
    """Give the `app` logger its handlers; only the composition root calls this."""
    # Our lines name the logger, not the file and line: skip the stack walk per record
    # and the thread/process lookups (the logging HOWTO's "Optimization" settings).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging.logAsyncioTasks = False  # type: ignore[attr-defined]  # 3.12: a task lookup per record
    root = logging.getLogger("app")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level.upper())
    root.propagate = False
    libraries = [logging.getLogger(name) for name in LIBRARY_LOGGERS]
    for library in libraries:
        for handler in list(library.handlers):
            library.removeHandler(handler)  # ours, from an earlier call; closed above
        library.setLevel(logging.WARNING)
        library.propagate = False
    handlers: list[logging.Handler] = [StderrHandler()] if stderr else []
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(RotatingLogFile(log_file, max_bytes=2_000_000, backup_count=3))
    if buffer is not None:
        handlers.append(buffer)
    for handler in handlers:
        handler.setFormatter(LineFormatter())
        handler.addFilter(RedactingFilter(secrets))
        root.addHandler(handler)
        for library in libraries:
            library.addHandler(handler)
    return root


def log_crashes() -> None:
    """Uncaught exceptions (a Qt slot's, a thread's, the main thread's) become CRITICAL
    records of `app.crash`: the crash report lands in the log file and window, through
    the same redaction as everything else, instead of a raw traceback on stderr."""
    crash = logging.getLogger(CRASH_LOGGER)

    def on_exception(
        kind: type[BaseException], error: BaseException, trace: TracebackType | None
    ) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, error, trace)
            return
        crash.critical("NimBridge hit a bug; please report it", exc_info=(kind, error, trace))

    def on_thread_exception(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            where = args.thread.name if args.thread is not None else "a thread"
            crash.critical(
                "NimBridge hit a bug in %s; please report it",
                where,
                exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
            )

    sys.excepthook = on_exception
    threading.excepthook = on_thread_exception


def redact(text: str) -> str:
    """Mask secret-shaped strings (`nvapi-…`, `sk-…`, `Bearer …`, `x-api-key`) in any text.

    For text shown outside logging (the log window's panes): the controller has
    already redacted it, and this is the second lock on the same door.
    """
    return mask_shapes(text)
