"""The event loop the headless servers run on: uvloop's where it is installed.

`serve` and `code`'s in-process server have no Qt to share a loop with, so they take
uvloop (Linux and macOS: a dependency marker leaves it out on Windows), a faster loop
for the same asyncio code (what the outside benchmark's floor runs on too). Without it,
asyncio's own loop serves the same.
The tray app stays on qasync's loop, which Qt needs.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


def new_server_loop() -> asyncio.AbstractEventLoop:
    """A new event loop for a headless server: uvloop's, else asyncio's."""
    try:
        import uvloop
    except ImportError:
        log.debug("uvloop is not installed: serving on asyncio's own event loop")
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """The loop's class by module and name (`uvloop.Loop`), for the log."""
    kind = type(loop)
    return f"{kind.__module__}.{kind.__qualname__}"
