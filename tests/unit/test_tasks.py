"""app/tasks.py: the one task keeper, for the server (`create_task`) and the UI (`spawn`)."""

import asyncio
import gc
import logging

import pytest

from app import tasks


async def test_create_task_keeps_the_task_until_it_is_done() -> None:
    release = asyncio.Event()

    async def wait() -> str:
        await release.wait()
        return "done"

    task = tasks.create_task(wait(), name="kept")
    del task
    gc.collect()  # only the keeper holds it now
    [kept] = [t for t in tasks._running if t.get_name() == "kept"]
    release.set()
    assert await kept == "done"
    assert kept not in tasks._running


async def test_spawn_logs_what_escaped_the_task(caplog: pytest.LogCaptureFixture) -> None:
    async def fail() -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="app.tasks"):
        task = tasks.spawn(fail(), name="settings-save")
        await asyncio.wait([task])
        await asyncio.sleep(0)  # done callbacks run on the next turn of the loop
    [record] = caplog.records
    assert record.getMessage() == "task settings-save failed"
    assert record.exc_info is not None and str(record.exc_info[1]) == "boom"
    assert task not in tasks._running


async def test_spawn_is_silent_for_a_result_or_a_cancel(caplog: pytest.LogCaptureFixture) -> None:
    async def answer() -> int:
        return 42

    async def hang() -> None:
        await asyncio.Event().wait()

    with caplog.at_level(logging.DEBUG, logger="app.tasks"):
        finished = tasks.spawn(answer(), name="answer")
        cancelled = tasks.spawn(hang(), name="hang")
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.wait([finished, cancelled])
        await asyncio.sleep(0)
    assert finished.result() == 42
    assert cancelled.cancelled()
    assert caplog.records == []
    assert not {finished, cancelled} & tasks._running


async def test_create_task_does_not_log_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    async def fail() -> None:
        raise ValueError("the owner reads this")

    with caplog.at_level(logging.DEBUG, logger="app.tasks"):
        task = tasks.create_task(fail(), name="owned")
        with pytest.raises(ValueError, match="the owner reads this"):
            await task
        await asyncio.sleep(0)
    assert caplog.records == []
