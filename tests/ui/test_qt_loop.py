"""QtEventLoop: qasync's loop, but a cancelled timer is gone at once (qasync keeps each
until it would have fired; the server cancels thousands of 600 s read timeouts)."""

import asyncio
import contextlib

from PySide6.QtWidgets import QApplication

from app.ui.qt_loop import QtEventLoop


def test_cancelled_timers_are_freed_and_live_ones_still_fire(qapp: QApplication) -> None:
    loop = QtEventLoop(qapp)
    asyncio.set_event_loop(loop)
    try:
        fired: list[str] = []

        async def scenario() -> None:
            idle = loop.pending_timers
            far = [loop.call_later(600, fired.append, "never") for _ in range(1000)]
            assert loop.pending_timers == idle + 1000
            for handle in far:
                handle.cancel()
            assert loop.pending_timers == idle
            loop.call_later(0.01, fired.append, "soon")
            await asyncio.sleep(0.05)
            # Cancelling a handle that already ran must not kill a newer timer that
            # got its (reused) Qt timer id.
            done = loop.call_soon(fired.append, "now")
            await asyncio.sleep(0)
            later = loop.call_later(0.02, fired.append, "later")
            done.cancel()
            assert not later.cancelled()
            await asyncio.sleep(0.1)
            # asyncio.wait_for and timeouts over the same loop still work.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.sleep(600), 0.01)

        loop.run_until_complete(asyncio.wait_for(scenario(), 10))
        assert fired == ["soon", "now", "later"]
        assert loop.pending_timers <= 1  # nothing of the 1000 left behind
    finally:
        loop.close()
        asyncio.set_event_loop(None)


def test_timers_never_fire_early(qapp: QApplication) -> None:
    """Qt counts whole milliseconds: a delay must round up, or 2.9 ms becomes 2 ms."""
    loop = QtEventLoop(qapp)
    asyncio.set_event_loop(loop)
    try:

        async def slept(delay: float) -> float:
            start = loop.time()
            await asyncio.sleep(delay)
            return float(loop.time() - start)

        async def scenario() -> list[tuple[float, float]]:
            return [(delay, await slept(delay)) for delay in (0.0009, 0.0029, 0.0051) * 5]

        for delay, took in loop.run_until_complete(asyncio.wait_for(scenario(), 10)):
            assert took >= delay, (delay, took)
    finally:
        loop.close()
        asyncio.set_event_loop(None)
