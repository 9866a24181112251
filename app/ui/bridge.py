"""Carries the service's logs and requests onto the Qt thread, in batches, on a timer.

Why batches: DESKTOP.md measured that appending one line per request to a
QPlainTextEdit cut the proxy from 18.9k to 4.5k requests/s on the qasync loop.
So subscribers never touch Qt: they append to a bounded, locked deque (log
callbacks may arrive on any thread), and a 100 ms QTimer on the Qt thread takes
the whole pending batch and emits ONE signal per tick.

Bounded: when the Qt thread falls behind (a burst, a blocked UI), the oldest
pending items are dropped and counted, so memory never grows with the burst.
"""

import threading
from collections import deque
from collections.abc import Sequence

from PySide6.QtCore import QObject, QTimer, Signal

from app.logs import LogLine
from app.service import ProxyController, RequestSummary, Unsubscribe

FLUSH_INTERVAL_MS = 100
LOG_CAPACITY = 10_000
REQUEST_CAPACITY = 1_000


class _BatchPump[T](QObject):
    """A bounded, thread-safe queue drained by a Qt timer; subclasses emit the batch."""

    def __init__(
        self, capacity: int, interval_ms: int = FLUSH_INTERVAL_MS, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.capacity = capacity
        self._pending: deque[T] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._dropped = 0
        self._unsubscribe: Unsubscribe | None = None
        # The timer lives on the thread that built the pump (the Qt thread): only it
        # ever touches widgets. Other threads just fill the deque.
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.flush)
        self._timer.start()

    # ---- any thread
    def push(self, items: Sequence[T]) -> None:
        with self._lock:
            overflow = len(self._pending) + len(items) - self.capacity
            if overflow > 0:
                self._dropped += overflow  # the deque forgets the oldest
            self._pending.extend(items)

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    @property
    def dropped(self) -> int:
        """Items lost because more than `capacity` arrived between two ticks."""
        with self._lock:
            return self._dropped

    # ---- Qt thread
    def flush(self) -> None:
        """Emit everything pending as one batch (the timer calls this; tests may too)."""
        with self._lock:
            if not self._pending:
                return
            batch = list(self._pending)
            self._pending.clear()
        self._emit(batch)

    def _emit(self, batch: list[T]) -> None:
        raise NotImplementedError

    def _attach(self, unsubscribe: Unsubscribe) -> None:
        self._unsubscribe = unsubscribe

    def close(self) -> None:
        """Unsubscribe and stop the timer; pending items are discarded. Idempotent."""
        self._timer.stop()
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
        with self._lock:
            self._pending.clear()


class LogPump(_BatchPump[LogLine]):
    """`lines_ready(list[LogLine])`, at most once per tick, starting with `recent_logs()`."""

    lines_ready = Signal(list)

    def __init__(
        self,
        controller: ProxyController,
        *,
        capacity: int = LOG_CAPACITY,
        interval_ms: int = FLUSH_INTERVAL_MS,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(capacity, interval_ms, parent)
        # Backlog first, then live lines: a line logged in between may be missed,
        # which beats showing it twice.
        self.push(controller.recent_logs())
        self._attach(controller.subscribe_logs(self.push))

    def _emit(self, batch: list[LogLine]) -> None:
        self.lines_ready.emit(batch)


class RequestPump(_BatchPump[RequestSummary]):
    """`requests_ready(list[RequestSummary])`, oldest first, at most once per tick."""

    requests_ready = Signal(list)

    def __init__(
        self,
        controller: ProxyController,
        *,
        capacity: int = REQUEST_CAPACITY,
        interval_ms: int = FLUSH_INTERVAL_MS,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(capacity, interval_ms, parent)
        self.push(controller.recent_requests())
        self._attach(controller.subscribe_requests(self._push_one))

    def _push_one(self, row: RequestSummary) -> None:
        self.push((row,))

    def _emit(self, batch: list[RequestSummary]) -> None:
        self.requests_ready.emit(batch)


class ServiceBridge(QObject):
    """Both pumps for one controller, for whoever wants logs and requests together."""

    def __init__(
        self,
        controller: ProxyController,
        *,
        log_capacity: int = LOG_CAPACITY,
        request_capacity: int = REQUEST_CAPACITY,
        interval_ms: int = FLUSH_INTERVAL_MS,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.logs = LogPump(controller, capacity=log_capacity, interval_ms=interval_ms, parent=self)
        self.requests = RequestPump(
            controller, capacity=request_capacity, interval_ms=interval_ms, parent=self
        )

    def flush(self) -> None:
        self.logs.flush()
        self.requests.flush()

    def close(self) -> None:
        self.logs.close()
        self.requests.close()


__all__ = [
    "FLUSH_INTERVAL_MS",
    "LOG_CAPACITY",
    "REQUEST_CAPACITY",
    "LogPump",
    "RequestPump",
    "ServiceBridge",
]
