"""The headless servers' loop: uvloop's where it is installed, asyncio's where it is not."""

import asyncio
import logging
import sys

import pytest

from app.server.event_loop import loop_name, new_server_loop


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop is no dependency on Windows")
def test_the_server_loop_is_uvloops_where_it_is_installed() -> None:
    loop = new_server_loop()
    try:
        assert loop_name(loop) == "uvloop.Loop"
        assert loop.run_until_complete(asyncio.sleep(0, "ran")) == "ran"
    finally:
        loop.close()


def test_without_uvloop_asyncio_serves_and_one_debug_line_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    with caplog.at_level(logging.DEBUG, logger="app.server.event_loop"):
        loop = new_server_loop()
    try:
        assert isinstance(loop, asyncio.BaseEventLoop)
        assert loop_name(loop).startswith("asyncio.")
    finally:
        loop.close()
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, "uvloop is not installed: serving on asyncio's own event loop")
    ]
