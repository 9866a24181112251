"""AiohttpTransport tells aiohttp's body-read exceptions apart for the client to word."""

import aiohttp
import pytest

from app.server.upstream.transport import AiohttpTransport, ReadFailure


@pytest.mark.parametrize(
    ("exc", "failure"),
    [
        pytest.param(aiohttp.ClientPayloadError("cut"), ReadFailure.DROPPED, id="payload"),
        # ServerTimeoutError is a TimeoutError too: the read timeout, not the deadline.
        pytest.param(aiohttp.ServerTimeoutError("sock_read"), ReadFailure.SILENCE, id="silence"),
        pytest.param(TimeoutError(), ReadFailure.DEADLINE, id="deadline"),
        pytest.param(aiohttp.ClientConnectionError("closed"), None, id="other"),
    ],
)
def test_read_failures_are_told_apart(exc: Exception, failure: ReadFailure | None) -> None:
    transport = AiohttpTransport(connect_timeout_s=1, read_timeout_s=1)
    assert isinstance(exc, transport.read_errors)
    assert transport.read_failure(exc) is failure


def test_the_session_is_there_only_once_started() -> None:
    with pytest.raises(RuntimeError, match="start"):
        _ = AiohttpTransport(connect_timeout_s=1, read_timeout_s=1).session
