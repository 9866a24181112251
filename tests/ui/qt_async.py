"""A qasync loop for widget tests that start tasks from slots.

`QEventLoop(app, already_running=True)` registers itself as the running asyncio
loop without entering `exec()`; pytest-qt's `qtbot.waitUntil` / `qtbot.wait`
process Qt events, which run the loop's callbacks, so tasks started by
`app.tasks.spawn` advance while a test waits.
"""

import asyncio
from collections.abc import Iterator

import pytest
import qasync  # pytest-qt has imported PySide6 already, so qasync picks it
from PySide6.QtWidgets import QApplication

from app.ui.qt_loop import QtEventLoop


@pytest.fixture
def qasync_loop(qapp: QApplication) -> Iterator[qasync.QEventLoop]:
    loop = QtEventLoop(qapp, already_running=True)  # the app's own qasync loop
    try:
        yield loop
    finally:
        # Let finished tasks' callbacks run, then leave no running loop behind.
        for task in asyncio.all_tasks(loop):
            task.cancel()
        qapp.processEvents()
        asyncio.events._set_running_loop(None)
        # Not `loop.stop()`: it calls `QApplication.exit()`, after which the next
        # test's waits return at once and its loop never runs. Mark the loop stopped
        # (qasync keeps the flag private) and close it, as DESKTOP.md asks.
        loop._QEventLoop__is_running = False
        loop.close()
