"""One `app.*` logger tree, redacted on every handler.

Invariant: every handler `setup_logging` installs carries a `RedactingFilter`
(a logger's filter does not see records propagated from child loggers), so no
key can reach stderr, a file or the UI's buffer, whoever logged it.
"""

import logging
import logging.handlers
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

# Shapes of secrets worth masking even when we were not told the value.
_SECRET_SHAPES = re.compile(
    r"(nvapi-[A-Za-z0-9_\-]{8,}|sk-[A-Za-z0-9_\-]{8,}|"
    r"(?i:bearer)\s+[A-Za-z0-9._~+/\-]{6,}=*|"
    r"(?i:x-api-key)[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9._\-]{6,})"
)
MASK = "***"


class RedactingFilter(logging.Filter):
    """Formats the message, masks known secrets and secret-shaped strings, clears args."""

    def __init__(self, secrets: Callable[[], Iterable[str]] = tuple) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for secret in self._secrets():
            if secret and len(secret) >= 4:
                message = message.replace(secret, MASK)
        message = _SECRET_SHAPES.sub(_mask_match, message)
        record.msg, record.args = message, None
        if record.exc_info and record.exc_text is None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _SECRET_SHAPES.sub(_mask_match, record.exc_text)
        return True


def _mask_match(match: re.Match[str]) -> str:
    text = match.group(0)
    lowered = text.lower()
    if lowered.startswith("bearer"):
        return "Bearer " + MASK
    if lowered.startswith("x-api-key"):
        return "x-api-key: " + MASK
    return text[:6] + MASK


LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is now (test runners and GUIs replace it),
    as the standard library's own last-resort handler does."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def setup_logging(
    level: str = "INFO",
    *,
    secrets: Callable[[], Iterable[str]] = tuple,
    log_file: Path | None = None,
) -> logging.Logger:
    """Give the `app` logger its handlers; only the composition root calls this."""
    root = logging.getLogger("app")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level.upper())
    root.propagate = False
    handlers: list[logging.Handler] = [StderrHandler()]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                log_file, maxBytes=2_000_000, backupCount=3, encoding="utf-8"
            )
        )
    for handler in handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.addFilter(RedactingFilter(secrets))
        root.addHandler(handler)
    return root
