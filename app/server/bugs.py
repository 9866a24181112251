"""How a bug of ours is described: one line, never a traceback above DEBUG.

A request that hits a bug is answered with a well-formed error; its one log line (the
request's summary) names the exception and where in NimBridge it was raised, which is
what a bug report needs. The full traceback goes to DEBUG only: a request body nested
deep enough to exhaust the stack once wrote a 2,967-line traceback per request, so any
client could fill the log.
"""

import logging
import traceback
from pathlib import Path

_APP_DIR = Path(__file__).resolve().parent.parent  # the `app` package


def where(exc: BaseException) -> str | None:
    """`file.py:LINE in function` of the innermost frame of NimBridge's own code (of
    any code when none is ours); None for an exception never raised."""
    # Without the source lines (extract_tb reads each file into linecache, kept for good).
    frames = traceback.StackSummary.extract(
        traceback.walk_tb(exc.__traceback__), lookup_lines=False
    )
    own = [f for f in frames if Path(f.filename).resolve().is_relative_to(_APP_DIR)]
    if not (own or frames):
        return None
    frame = (own or frames)[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"


def describe(exc: BaseException) -> str:
    """`RecursionError at routes.py:259 in _read_message`: class and place, not the
    message (it may hold what a client sent)."""
    place = where(exc)
    return exc.__class__.__name__ if place is None else f"{exc.__class__.__name__} at {place}"


def log_traceback(log: logging.Logger, request_id: str, exc: BaseException) -> None:
    """The traceback, at DEBUG only (see the module's doc)."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s traceback of the internal error", request_id, exc_info=exc)
