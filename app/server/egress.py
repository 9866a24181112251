"""The one way bytes leave the server: through the `Masker`, on every route.

Invariant (enforced by `mask_response`, which the app's one `on_response_prepare`
hook runs first, so a new route cannot forget it): a whole `web.Response` (JSON
errors, listings, /health, images...) has its body masked as it is sent; a
streamed response must be a `MaskedStream`, whose every write is masked, else
preparing it raises (a bug of ours, answered as an internal error before any
byte goes out).
"""

from collections.abc import Callable
from typing import Any

from aiohttp import web

from app.core.masking import Masker, StreamMasker


class MaskedStream(web.StreamResponse):
    """A streamed response whose writes are masked; a secret split between two
    writes is still seen whole (`StreamMasker` holds back a possible start of one)."""

    def __init__(self, masker: Masker, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._stream_masker = StreamMasker(masker)

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        masked = self._stream_masker.feed(bytes(data))
        if masked:
            await super().write(masked)

    async def write_eof(self, data: bytes = b"") -> None:
        """The last bytes (masked), what the masker still holds, and the end of the body,
        in one write."""
        masked = self._stream_masker.feed(bytes(data)) if data else b""
        await super().write_eof(masked + self._stream_masker.close())


def response_masker(masker: Masker) -> Callable[[web.Request, web.StreamResponse], None]:
    """What masks a response as it is prepared (app.py's `on_response_prepare` hook runs it)."""

    def mask_response(request: web.Request, response: web.StreamResponse) -> None:
        if isinstance(response, web.Response):
            body = response.body
            if isinstance(body, (bytes, bytearray)) and body:
                masked = masker.mask_bytes(bytes(body))
                if masked is not body:
                    response.body = masked
                    if "Content-Length" in response.headers:  # counted before this hook
                        response.headers["Content-Length"] = str(len(masked))
            elif body is not None and not isinstance(body, (bytes, bytearray)):
                raise TypeError("a response body that is not bytes cannot be masked")
        elif not isinstance(response, MaskedStream):
            raise TypeError(f"{request.path}: a streamed response must be a MaskedStream")

    return mask_response
