import logging

import pytest
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, LineTooLong

from app.server.runner import refusal_error

SECRET = "sk-ant-secret-in-a-header-0123456789"


@pytest.mark.parametrize(
    ("exc", "status", "words"),
    [
        pytest.param(
            LineTooLong(SECRET.encode(), 8190),
            431,
            "a request header (or the request line) is longer than 8190 bytes",
            id="line-too-long",
        ),
        pytest.param(
            BadHttpMessage("Too many headers received"),
            431,
            "the request has more than 128 headers",
            id="too-many-headers",
        ),
        pytest.param(
            BadHttpMethod("BLAH"),
            400,
            "malformed HTTP request: Bad HTTP method in status line 'BLAH'",
            id="bad-method",
        ),
        pytest.param(BadHttpMessage(""), 400, "malformed HTTP request: unreadable", id="empty"),
        pytest.param(
            RuntimeError("boom"),
            500,
            "internal error in NimBridge's HTTP server (RuntimeError)",
            id="our-bug",
        ),
        pytest.param(None, 500, "(status 500)", id="no-exception"),
    ],
)
def test_refusal_error(exc: BaseException | None, status: int, words: str) -> None:
    error = refusal_error(500 if status == 500 else 400, exc, max_headers=128)
    assert error.status == status
    assert words in error.message and SECRET not in error.message
    assert error.error_type == ("api_error" if status == 500 else "invalid_request_error")


def test_a_bug_is_described_by_class_and_place_without_its_message() -> None:
    from app.server.bugs import describe

    try:
        empty: dict[str, int] = {}
        empty["the client's secret"]
    except KeyError as exc:
        described = describe(exc)
    assert described.startswith("KeyError at test_runner.py:")  # no frame of `app`: the last
    assert "secret" not in described
    assert describe(KeyError("never raised")) == "KeyError"


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_a_client_gone_mid_answer_is_not_an_error_with_a_traceback() -> None:
    """A write that finds the client gone (before aiohttp cancels the handler) ends the
    connection quietly: the request's own line says 499; aiohttp logged an ERROR with a
    traceback for each one."""
    import asyncio

    from aiohttp import web
    from aiohttp.client_exceptions import ClientConnectionResetError

    from app.server.runner import ProxyRunner

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"data: first\n\n")
        raise ClientConnectionResetError("Cannot write to closing transport")

    app = web.Application()
    app.router.add_get("/", handler)
    runner = ProxyRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    collected = Collected()
    # Straight on the loggers: other tests' logging set-up may stop propagation.
    loggers = [logging.getLogger(name) for name in ("app.server.runner", "aiohttp.server")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(collected)
        logger.setLevel(logging.DEBUG)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)  # to the end: the server closed
        writer.close()
        assert b"data: first" in answer
        assert not [r for r in collected.records if r.levelno >= logging.WARNING]
        assert any("connection is gone" in r.getMessage() for r in collected.records)
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(collected)
            logger.setLevel(level)
        await runner.cleanup()
