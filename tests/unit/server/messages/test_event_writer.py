"""EventWriter: the write that ends the stream ends the body too."""

from typing import cast

from aiohttp import web

from app.core.anthropic_stream import StreamTranslator
from app.core.anthropic_types import StreamEvent
from app.server.messages.stream_relay import EventWriter
from app.server.records import RequestRecord


class _Recording:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    async def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    async def write_eof(self, data: bytes = b"") -> None:
        self.calls.append(("write_eof", data))


def _stream() -> tuple[list[StreamEvent], list[StreamEvent]]:
    translator = StreamTranslator(model="m", message_id="msg_1")
    start = translator.start()
    chunk = {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": "stop"}]}
    return start, translator.feed(chunk) + translator.finish()


async def test_the_last_write_ends_the_body() -> None:
    response = _Recording()
    record = RequestRecord(request_id="req_test", method="POST", path="/v1/messages")
    writer = EventWriter(cast(web.StreamResponse, response), 600, record)
    start, rest = _stream()
    await writer.write(start)
    await writer.write(rest)
    await writer.write([])
    kinds = [kind for kind, _ in response.calls]
    assert kinds == ["write", "write_eof"]
    assert response.calls[1][1].endswith(b'data: {"type":"message_stop"}\n\n')
    assert writer.closed
