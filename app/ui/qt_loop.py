"""`QtEventLoop`: qasync's event loop, except that a cancelled timer is freed at once.

qasync (0.27, 0.28) gives every `call_later` a Qt timer and keeps the handle until
the timer fires, cancelled or not. The server cancels timers all the time: aiohttp's
read timeouts (`read_timeout_s`, 600 s), keep-alive timers, each stream's ping sleep.
So the tray kept about 30 dead timers per stream for up to ten minutes: 11,000 after
600 requests of the soak (tests/benchmarks/soak.py), memory growing with the request
rate and Qt's timer list slowing every timer. Here `cancel()` kills the Qt timer and
drops the handle, as asyncio's own loop drops cancelled timers from its heap.
"""

import asyncio
import inspect
import math
from collections.abc import Callable
from contextvars import Context
from typing import Any

import PySide6.QtCore  # noqa: F401  (first: qasync takes the Qt binding already imported)
import qasync
from PySide6.QtCore import QObject, QTimerEvent


class _ReleasingTimer(QObject):
    """Stands in for qasync's private `_SimpleTimer` (`add_callback`, `stop`, `set_debug`)."""

    def __init__(self) -> None:
        super().__init__()
        self._handles: dict[int, asyncio.Handle] = {}
        self._stopped = False

    @property
    def pending(self) -> int:
        return len(self._handles)

    def add_callback(self, handle: asyncio.Handle, delay: float = 0) -> int:
        # Rounded up: Qt counts whole milliseconds, and a timer must never fire early
        # (truncating made a 2.9 ms sleep last 2 ms, and smooth deltas' spread shrink).
        timer_id = self.startTimer(math.ceil(max(0.0, delay) * 1000))
        self._handles[timer_id] = handle
        return timer_id

    def release(self, timer_id: int, handle: asyncio.Handle) -> None:
        # Only while the handle still owns the id: Qt reuses the ids of killed timers.
        if self._handles.get(timer_id) is handle:
            del self._handles[timer_id]
            self.killTimer(timer_id)

    def timerEvent(self, event: QTimerEvent) -> None:  # noqa: N802  (Qt's name)
        timer_id = event.timerId()
        self.killTimer(timer_id)
        handle = self._handles.pop(timer_id, None)
        if handle is not None and not handle.cancelled() and not self._stopped:
            handle._run()

    def stop(self) -> None:
        self._stopped = True

    def set_debug(self, enabled: bool) -> None:
        pass  # qasync's slow-callback report in debug mode is not kept


class _ReleasingHandle(asyncio.Handle):
    __slots__ = ("_timer", "_timer_id")

    def __init__(
        self,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        context: Context | None,
        timer: _ReleasingTimer,
    ) -> None:
        super().__init__(callback, args, loop, context=context)
        self._timer = timer
        self._timer_id = -1

    def cancel(self) -> None:
        if not self.cancelled():
            self._timer.release(self._timer_id, self)
        super().cancel()


class QtEventLoop(qasync.QEventLoop):  # type: ignore[misc]  # qasync ships no types
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer = _ReleasingTimer()

    @property
    def pending_timers(self) -> int:
        """Timers not yet fired nor cancelled (a leak shows here first)."""
        return self._timer.pending

    def call_later(
        self, delay: float, callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.Handle:
        # qasync's `call_soon` and `call_at` come here too.
        if inspect.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with call_later")
        handle = _ReleasingHandle(callback, args, self, context, self._timer)
        handle._timer_id = self._timer.add_callback(handle, delay)
        return handle
