"""MaskedStream: every byte of a streamed response masked, a secret split between writes
included, and the last bytes sent with the end of the body."""

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient

from app.core.masking import Masker
from app.server.egress import MaskedStream

SECRET = "nvapi-secret-value-123"

Writes = list[tuple[str, bytes]]
AiohttpClient = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]


def _app(masker: Masker, writes: Writes) -> web.Application:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = MaskedStream(masker, status=200)
        await response.prepare(request)
        for kind, data in writes:
            if kind == "write":
                await response.write(data)
            else:
                await response.write_eof(data)
        await response.write_eof()  # after the end: nothing more
        return response

    app = web.Application()
    app.router.add_get("/", handler)
    return app


async def _body(aiohttp_client: AiohttpClient, writes: Writes) -> bytes:
    client = await aiohttp_client(_app(Masker([SECRET]), writes))
    response = await client.get("/")
    return await response.read()


async def test_last_bytes_given_to_write_eof_are_masked(aiohttp_client: AiohttpClient) -> None:
    body = await _body(aiohttp_client, [("write", b"a "), ("eof", f"key {SECRET}.".encode())])
    assert body == b"a key ***."


async def test_a_secret_split_by_the_last_write_is_still_masked(
    aiohttp_client: AiohttpClient,
) -> None:
    head, tail = SECRET[:9].encode(), SECRET[9:].encode()
    body = await _body(aiohttp_client, [("write", b"key " + head), ("eof", tail + b" end")])
    assert body == b"key *** end"


async def test_what_is_held_back_goes_out_at_the_end(aiohttp_client: AiohttpClient) -> None:
    held = SECRET[:9].encode()  # could be the start of the secret: held until the end
    assert await _body(aiohttp_client, [("write", b"x " + held), ("eof", b"")]) == b"x " + held
