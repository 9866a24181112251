"""UpstreamClient and UpstreamResponse over an in-memory transport: what goes out, and
every read of what comes back, worded as the client tells it (no sockets)."""

import pytest

from app.core.errors import UpstreamProtocolError, UpstreamUnavailable
from app.core.masking import Masker
from app.server.upstream.client import MB, UpstreamClient, UpstreamResponse
from app.server.upstream.transport import ReadFailure
from tests.unit.server.upstream.memory_transport import MemoryTransport, Reply

URL = "http://127.0.0.1:9/v1/chat/completions"  # never dialled: the wire is in memory
KEY = "nvapi-s3cret-key-0123456789"


def _client(*replies: Reply | UpstreamUnavailable) -> tuple[UpstreamClient, MemoryTransport]:
    transport = MemoryTransport(*replies)
    client = UpstreamClient(
        connect_timeout_s=1, read_timeout_s=2, deadline_s=30, transport=transport
    )
    return client, transport


async def _response(reply: Reply) -> tuple[UpstreamResponse, MemoryTransport]:
    client, transport = _client(reply)
    return await client.request("POST", URL, api_key=KEY, body=b"{}"), transport


def _masker() -> Masker:
    masker = Masker()
    masker.add(KEY)
    return masker


async def test_a_request_carries_the_key_and_content_type() -> None:
    client, transport = _client(Reply(), Reply())
    await client.request("POST", URL, api_key=KEY, body=b"x=1", content_type="text/plain")
    await client.request("GET", URL, api_key=None)
    sent, listing = transport.sent
    assert (sent.method, sent.url, sent.body) == ("POST", URL, b"x=1")
    assert sent.headers == {
        "Content-Type": "text/plain",
        "Accept": "application/json",
        "Authorization": f"Bearer {KEY}",
    }
    assert "Authorization" not in listing.headers and listing.body is None


async def test_a_connect_failure_comes_out_of_request_as_the_transport_worded_it() -> None:
    refused = UpstreamUnavailable("cannot connect", retryable=True)
    client, _ = _client(refused)
    with pytest.raises(UpstreamUnavailable) as raised:
        await client.request("POST", URL, api_key=None)
    assert raised.value is refused


async def test_status_headers_and_content_type_are_the_wire_s() -> None:
    headers = {"Content-Type": "Text/Event-Stream; charset=utf-8", "Retry-After": "3"}
    response, _ = await _response(Reply(201, b"", headers))
    assert (response.status, response.url) == (201, URL)
    assert response.headers.get("retry-after") == "3"  # case-insensitive, as aiohttp's
    assert response.content_type == "text/event-stream"


async def test_chunks_come_one_per_read_as_they_arrived() -> None:
    response, _ = await _response(Reply(body=[b"data: 1\n\n", b"da", b"ta: 2\n\n"]))
    assert [data async for data in response.chunks()] == [b"data: 1\n\n", b"da", b"ta: 2\n\n"]


async def test_read_body_joins_and_masks_the_whole_body() -> None:
    response, _ = await _response(Reply(body=[b'{"echo": "nvapi-s3cret', b'-key-0123456789"}']))
    body = await response.read_body(MB, _masker())
    assert KEY.encode() not in body and body.startswith(b'{"echo": "') and body.endswith(b'"}')


async def test_read_body_without_a_masker_is_the_bytes_as_sent() -> None:
    response, _ = await _response(Reply(body=[b"a", b"b"]))
    assert await response.read_body(2) == b"ab"  # exactly at the limit is allowed


@pytest.mark.parametrize("read", ["chunks", "read_body"])
async def test_a_body_past_its_limit_is_cut_off_in_words(read: str) -> None:
    response, _ = await _response(Reply(body=[b"x" * MB, b"y"]))
    with pytest.raises(UpstreamProtocolError) as raised:
        if read == "chunks":
            async for _ in response.chunks(MB):
                pass
        else:
            await response.read_body(MB)
    assert raised.value.message == (
        "upstream sent more than 1 MB for one response and was cut off "
        "(max_upstream_response_mb in the settings)"
    )
    assert raised.value.status == 502


# failure -> (status, words naming the host, words of the streamed /v1/messages relay)
READ_FAILURES = {
    ReadFailure.DROPPED: (
        502,
        "the upstream connection dropped in the middle of the response; try again",
        "the upstream connection dropped in the middle of the response; try again",
    ),
    ReadFailure.SILENCE: (
        504,
        "the upstream 127.0.0.1 sent nothing for 2 s and was given up on; "
        "it may be overloaded, try again",
        "the upstream sent nothing for 2 s and was given up on; it may be overloaded, try again",
    ),
    ReadFailure.DEADLINE: (
        504,
        "the upstream 127.0.0.1 did not finish within 30 s (upstream_deadline_s) and was cut off",
        "the upstream did not finish within 30 s (upstream_deadline_s) and was cut off",
    ),
}


@pytest.mark.parametrize("failure", list(READ_FAILURES), ids=lambda f: f.value)
@pytest.mark.parametrize("name_host", [True, False], ids=["host", "relay"])
async def test_a_read_failure_mid_body_is_worded(failure: ReadFailure, name_host: bool) -> None:
    status, with_host, without_host = READ_FAILURES[failure]
    response, _ = await _response(Reply(body=[b"data: {", b'"id"'], fail=failure))
    seen: list[bytes] = []
    with pytest.raises(UpstreamUnavailable) as raised:
        async for data in response.chunks(name_host=name_host):
            seen.append(data)
    assert seen == [b"data: {", b'"id"']  # what came before the failure was relayed
    assert raised.value.message == (with_host if name_host else without_host)
    assert raised.value.status == status


async def test_read_body_words_a_read_failure_the_same_way() -> None:
    response, _ = await _response(Reply(body=b"{", fail=ReadFailure.SILENCE))
    with pytest.raises(UpstreamUnavailable, match="sent nothing for 2 s"):
        await response.read_body(MB)


async def test_an_error_body_is_masked_cut_at_its_limit_and_released() -> None:
    body = b'{"error": {"message": "Incorrect API key provided: ' + KEY.encode() + b'"}}'
    response, transport = await _response(Reply(401, [body, b"more"]))
    raw = await response.read_error_body(_masker(), limit=40)
    assert raw == _masker().mask_bytes(body[:40])
    assert transport.responses[0].released


async def test_an_error_body_that_cannot_be_read_is_empty_and_still_released() -> None:
    response, transport = await _response(Reply(503, fail=ReadFailure.DROPPED))
    assert await response.read_error_body(_masker()) == b""
    assert transport.responses[0].released


async def test_drain_reads_what_is_left_and_gives_up_quietly() -> None:
    done, transport = await _response(Reply(body=[b"data: [DONE]\n\n", b"0\r\n\r\n"]))
    assert await anext(done.chunks()) == b"data: [DONE]\n\n"  # a relay stops at [DONE]
    await done.drain()
    assert transport.responses[0].content.at_eof()

    broken, _ = await _response(Reply(body=[b"x", b"y"], fail=ReadFailure.DROPPED))
    await broken.drain()  # a dropped connection is not worth an error here

    slow, _ = await _response(Reply(body=[b"x", b"y"], pause_s=1.0))
    await anext(slow.chunks())
    await slow.drain(timeout_s=0.01)  # given up on: release() closes the connection

    empty, _ = await _response(Reply())
    await empty.drain()  # at the end already: nothing to read


async def test_release_hands_the_connection_back() -> None:
    response, transport = await _response(Reply(body=b"{}"))
    response.release()
    assert transport.responses[0].released
