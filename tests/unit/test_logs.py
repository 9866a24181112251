"""app.logs: every handler setup_logging installs masks secrets, however they are logged."""

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.logs import MASK, RedactingFilter, setup_logging

SECRETS = ("exact-proxy-secret-123", "nvapi-EXACTUPSTREAMSECRET")


@pytest.fixture
def logged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Path]:
    # capsys first, so the stderr handler is bound to the captured stream
    log_file = tmp_path / "logs" / "nimbridge.log"
    root = setup_logging("DEBUG", secrets=lambda: SECRETS, log_file=log_file)
    yield log_file
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.propagate = True


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


def test_ordinary_text_is_left_alone() -> None:
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "model %s -> %s", ("a", "b"), None)
    assert RedactingFilter(lambda: SECRETS).filter(record)
    assert record.getMessage() == "model a -> b"
