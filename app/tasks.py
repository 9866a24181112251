"""Background tasks that cannot be garbage-collected while they run.

The event loop keeps only a weak reference to a task (asyncio docs, "Important:
Save a reference"); ruff's TID251 bans the raw calls everywhere else.
"""

import asyncio
from collections.abc import Coroutine
from typing import Any

_running: set[asyncio.Task[Any]] = set()


def create_task[T](coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
    task = asyncio.create_task(coro, name=name)
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task
