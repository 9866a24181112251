"""app.logs: every handler setup_logging installs masks secrets, however they are logged."""

import asyncio
import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.logs import (
    LIBRARY_LOGGERS,
    MASK,
    ProblemTally,
    RedactingFilter,
    RotatingLogFile,
    log_crashes,
    setup_logging,
)

SECRETS = ("exact-proxy-secret-123", "nvapi-EXACTUPSTREAMSECRET")


def undo_logging(root: logging.Logger) -> None:
    """What setup_logging did, undone: the next test starts from Python's defaults."""
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.propagate = True
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate, library.level = True, logging.NOTSET


@pytest.fixture
def logged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Path]:
    # capsys first, so the stderr handler is bound to the captured stream
    log_file = tmp_path / "logs" / "nimbridge.log"
    root = setup_logging("DEBUG", secrets=lambda: SECRETS, log_file=log_file)
    yield log_file
    undo_logging(root)


@pytest.mark.parametrize(
    ("message", "args", "leaked"),
    [
        pytest.param("key %s", ("exact-proxy-secret-123",), "exact-proxy-secret-123", id="arg"),
        pytest.param(
            "upstream key nvapi-EXACTUPSTREAMSECRET", (), "EXACTUPSTREAMSECRET", id="in-message"
        ),
        pytest.param("shape nvapi-zzzzzzzzzzzzzzzz", (), "zzzzzzzzzzzzzzzz", id="nvapi-shape"),
        pytest.param("shape sk-proj-aaaaaaaaaaaaaaaaaa", (), "aaaaaaaaaaaaaaaaaa", id="sk-shape"),
        pytest.param(
            "headers {'Authorization': 'Bearer abc.def-ghi_123'}",
            (),
            "abc.def-ghi_123",
            id="bearer",
        ),
        pytest.param('"x-api-key": "kkkkkkkkkkkk"', (), "kkkkkkkkkkkk", id="x-api-key"),
    ],
)
def test_secrets_never_reach_stderr_or_the_file(
    logged: Path,
    capsys: pytest.CaptureFixture[str],
    message: str,
    args: tuple[str, ...],
    leaked: str,
) -> None:
    logging.getLogger("app.server.routes").info(message, *args)
    stderr = capsys.readouterr().err
    written = logged.read_text()
    assert leaked not in stderr and leaked not in written
    assert MASK in stderr and MASK in written


def test_tracebacks_are_redacted_too(logged: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        raise RuntimeError("failed with Bearer secret-token-value")
    except RuntimeError:
        logging.getLogger("app.x").exception("boom")
    assert "secret-token-value" not in capsys.readouterr().err
    assert "secret-token-value" not in logged.read_text()


def test_tracebacks_mask_known_secrets_of_any_shape(
    logged: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        raise RuntimeError("provider said: bad key exact-proxy-secret-123")
    except RuntimeError:
        logging.getLogger("app.x").exception("boom")
    assert "exact-proxy-secret-123" not in capsys.readouterr().err
    assert "exact-proxy-secret-123" not in logged.read_text()


@pytest.mark.parametrize("library", LIBRARY_LOGGERS)
def test_library_errors_land_in_our_log_redacted(
    logged: Path, capsys: pytest.CaptureFixture[str], library: str
) -> None:
    logging.getLogger(f"{library}.inner").error("Task failed: exact-proxy-secret-123")
    logging.getLogger(library).info("chatter below WARNING stays out")
    written = logged.read_text()
    assert f"{library}.inner: Task failed: {MASK}" in written
    assert "chatter" not in written and "exact-proxy-secret-123" not in capsys.readouterr().err


@pytest.fixture
def crash_hooks() -> Iterator[None]:
    saved = sys.excepthook, threading.excepthook
    log_crashes()
    yield
    sys.excepthook, threading.excepthook = saved


@pytest.mark.usefixtures("crash_hooks")
def test_an_uncaught_exception_is_a_redacted_crash_report(logged: Path) -> None:
    try:
        raise ValueError("slot failed holding nvapi-EXACTUPSTREAMSECRET")
    except ValueError as error:  # what Python does with an exception nobody caught
        sys.excepthook(type(error), error, error.__traceback__)
    thread = threading.Thread(
        target=lambda: (_ for _ in ()).throw(OSError("exact-proxy-secret-123")), name="worker"
    )
    thread.start()
    thread.join()
    written = logged.read_text()
    assert "CRITICAL app.crash: NimBridge hit a bug; please report it" in written
    assert f"ValueError: slot failed holding {MASK}" in written  # the traceback is kept
    assert "NimBridge hit a bug in worker" in written and f"OSError: {MASK}" in written
    assert "EXACTUPSTREAMSECRET" not in written and "exact-proxy-secret-123" not in written


def test_ordinary_text_is_left_alone() -> None:
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "model %s -> %s", ("a", "b"), None)
    assert RedactingFilter(lambda: SECRETS).filter(record)
    assert record.getMessage() == "model a -> b"


def test_the_log_file_rotates_by_what_it_wrote(tmp_path: Path) -> None:
    path = tmp_path / "nimbridge.log"
    path.write_text("x" * 900 + "\n")  # a file from an earlier run counts too
    handler = RotatingLogFile(path, max_bytes=1000, backup_count=2)
    handler.setFormatter(logging.Formatter("%(message)s"))
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "y" * 199, None, None)
    handler.emit(record)  # 900 + 200 > 1000: rotated first
    assert (tmp_path / "nimbridge.log.1").read_text().startswith("x" * 900)
    for _ in range(12):  # 2,400 characters more: rotated twice, two backups kept
        handler.emit(record)
    handler.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "nimbridge.log",
        "nimbridge.log.1",
        "nimbridge.log.2",
    ]
    assert all(p.stat().st_size <= 1000 for p in tmp_path.iterdir())


def test_the_problem_tally_sums_up_warnings_and_worse_redacted(tmp_path: Path) -> None:
    tally = ProblemTally()
    root = setup_logging(
        "INFO", secrets=lambda: SECRETS, log_file=tmp_path / "code.log", buffer=tally, stderr=False
    )
    try:
        log = logging.getLogger("app.test")
        log.info("an ordinary request")
        for _ in range(3):
            log.warning("upstream 500 with key %s", SECRETS[0])
        log.error("a bug\nwith a second line")
        for n in range(4):
            log.warning("kind %d", n)
    finally:
        undo_logging(root)
    assert tally.summary() == [
        "7 warnings, 1 error",
        f"  upstream 500 with key {MASK} (x3)",
        "  a bug",
        "  kind 0",
        "  ... and 3 more kind(s)",
    ]
    assert ProblemTally().summary() == []


def test_the_line_formatter_writes_what_the_standard_one_writes() -> None:
    from app.logs import LOG_FORMAT, LineFormatter

    ours, standard = LineFormatter(), logging.Formatter(LOG_FORMAT)
    # Within one second, across a second, back in time (a clock set back), and a new day.
    for created in (1e9, 1e9 + 0.001, 1e9 + 0.999, 1e9 + 1.5, 1e9 - 3600.25, 1e9 + 86400.5):
        record = logging.LogRecord("app.x", logging.INFO, __file__, 1, "line %d", (7,), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert ours.format(record) == standard.format(record)
    # The short way (a message with no args left, as our filter leaves it), at each level
    # and with a traceback, which takes the standard way.
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL):
        record = logging.LogRecord("app.server.app", level, __file__, 1, "req_1 POST", None, None)
        assert ours.format(record) == standard.format(record)
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("app.x", 40, __file__, 1, "failed", None, sys.exc_info())
    assert ours.format(failed) == standard.format(failed)
    assert ours.format(failed).endswith("ValueError: boom")


class CountingStderr:
    """A stderr that counts the writes it is given."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_lines_logged_in_one_pass_of_the_loop_are_written_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.logs import StderrHandler

    stderr = CountingStderr()
    monkeypatch.setattr(sys, "stderr", stderr)
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))

    def line(text: str) -> None:
        handler.handle(logging.LogRecord("app.x", logging.INFO, __file__, 1, text, None, None))

    async def on_the_loop() -> list[str]:
        line("one")
        line("two")
        held = list(stderr.writes)  # nothing written yet: the pass is not over
        await asyncio.sleep(0)
        line("three")
        await asyncio.sleep(0)
        return held

    line("before")  # no loop: at once
    assert asyncio.run(on_the_loop()) == ["before\n"]
    assert stderr.writes == ["before\n", "one\ntwo\n", "three\n"]

    def log_and_stop(loop: asyncio.AbstractEventLoop, text: str) -> None:
        line(text)
        loop.stop()  # the loop ends with this pass: the write it scheduled never runs

    loop = asyncio.new_event_loop()
    loop.call_soon(log_and_stop, loop, "last words")
    loop.run_forever()
    loop.close()
    assert stderr.writes[-1] == "three\n"
    line("from a thread without a loop")  # held lines first, then this one, in order
    assert stderr.writes[-1] == "last words\nfrom a thread without a loop\n"

    loop = asyncio.new_event_loop()
    loop.call_soon(log_and_stop, loop, "held at exit")
    loop.run_forever()
    loop.close()
    handler.flush()  # what logging.shutdown does at exit
    assert stderr.writes[-1] == "held at exit\n"


def test_the_log_file_rotates_by_what_it_wrote_when_lines_come_in_batches(
    tmp_path: Path,
) -> None:
    path = tmp_path / "n.log"
    handler = RotatingLogFile(path, max_bytes=1000, backup_count=2)
    handler.setFormatter(logging.Formatter("%(message)s"))

    sizes: list[int] = []

    async def a_busy_pass() -> None:
        for n in range(30):  # 30 lines of 99 bytes in one pass: one write at its end
            handler.handle(logging.LogRecord("a", 20, __file__, 1, f"{n:02d}" * 49, None, None))
        sizes.append(path.stat().st_size)

    asyncio.run(a_busy_pass())
    asyncio.run(a_busy_pass())  # over the limit: the file rolls over before this batch
    handler.close()
    assert sizes == [0, 2970]  # nothing written during a pass
    assert path.stat().st_size == 2970 and (tmp_path / "n.log.1").stat().st_size == 2970
