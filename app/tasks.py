"""Background tasks that cannot be garbage-collected while they run.

The event loop keeps only a weak reference to a task (asyncio docs, "Important:
Save a reference"), so a task started and not stored can vanish mid-flight. Every
task of the app starts here, below both the server and the UI; ruff's TID251 bans
the raw calls everywhere else.

- `create_task` keeps the task until it is done; its owner awaits it or reads its
  outcome (the server's tasks).
- `spawn` does the same and logs what escaped the task: nobody awaits a task a Qt
  slot starts, so its coroutine reports expected failures in its own widgets and
  anything else would otherwise be lost.
"""

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)

_running: set[asyncio.Task[Any]] = set()


def create_task[T](coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
    """Schedule `coro` on the running loop and keep it alive until it is done."""
    task = asyncio.create_task(coro, name=name)
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task


def spawn[T](coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
    """`create_task` for a task nobody awaits (a slot's): a failure is logged."""
    task = create_task(coro, name=name)
    task.add_done_callback(_log_failure)
    return task


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s failed", task.get_name(), exc_info=task.exception())
