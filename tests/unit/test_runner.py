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
