"""Run a coroutine from a Qt slot without losing it.

The event loop keeps only a weak reference to a task (asyncio docs, "Important:
Save a reference"), so a task started from a slot and not stored can be
garbage-collected mid-flight. `spawn` keeps it until it is done, and logs what
escaped it: a slot's coroutine reports expected failures in its own widgets.
"""

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)

_running: set[asyncio.Task[Any]] = set()


def spawn[T](coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
    """Schedule `coro` on the running loop (qasync's in the app) and keep it alive."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _running.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s failed", task.get_name(), exc_info=task.exception())
