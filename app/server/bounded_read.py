"""Reading a body whole, within a bound: what every outbound fetch of ours does (web search
answers, pages and images fetched for clients). Upstream model answers are bounded as they
stream, in `upstream.client`."""

from collections.abc import AsyncIterable, Callable


async def read_within(
    parts: AsyncIterable[bytes],
    limit: int,
    too_large: Callable[[], Exception],
    *,
    each: Callable[[int], None] | None = None,
) -> bytes:
    """All of `parts` joined; `too_large()` raised as soon as they pass `limit` bytes (a
    runaway sender must not fill memory). `each` is told each part's size as it comes
    (a request's shared budget, which may refuse it by raising)."""
    pieces: list[bytes] = []
    size = 0
    async for part in parts:
        size += len(part)
        if size > limit:
            raise too_large()
        if each is not None:
            each(len(part))
        pieces.append(part)
    return b"".join(pieces)
