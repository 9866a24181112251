"""A leak check for live-server tests: file descriptors, sockets and loop tasks, before and after.

    with LeakCheck(loop_thread, proxy).around():
        ...one case...

The proxy and the fake upstream run in the test process (on `loop_thread`), so
/proc/self/fd counts both ends of every connection.
"""

import asyncio
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields

import pytest

from app.server.upstream.h1_transport import H1Transport
from tests.fake_upstream import LoopThread
from tests.integration.conftest import LiveProxy


@dataclass(frozen=True)
class Usage:
    fds: int  # open file descriptors of the test process (proxy and fake upstream live here)
    sockets: int  # of which sockets
    tasks: int  # asyncio tasks on the servers' loop
    upstream_in_use: int  # connections the proxy's upstream pool has handed out


def _fd_counts() -> tuple[int, int]:
    fds = sockets = 0
    for entry in os.scandir("/proc/self/fd"):
        try:
            target = os.readlink(entry.path)
        except FileNotFoundError:  # closed while listing (scandir's own descriptor)
            continue
        fds += 1
        sockets += target.startswith("socket:")
    return fds, sockets


class LeakCheck:
    """Counts before and after a case; after it, waits (bounded) until nothing is left over.

    An idle keep-alive connection in the proxy's upstream pool is not a leak,
    and it is reused: the baseline, taken once the server settled (its catalog
    prefetch opens one), already holds it, so "after <= before" is the test.
    """

    def __init__(self, loop_thread: LoopThread, proxy: LiveProxy) -> None:
        self._loop_thread = loop_thread
        self._proxy = proxy

    def sample(self) -> Usage:
        async def on_loop() -> tuple[int, int]:
            transport = self._proxy.server.app_state.registry.upstream.transport
            assert isinstance(transport, H1Transport)
            return len(asyncio.all_tasks()), transport.connections_in_use()

        tasks, in_use = self._loop_thread.run(on_loop())
        fds, sockets = _fd_counts()
        return Usage(fds, sockets, tasks, in_use)

    def settled(self, timeout: float = 3.0) -> Usage:
        """The first sample equal to the two before it (or the last one at the timeout)."""
        deadline = time.monotonic() + timeout
        seen = [self.sample()]
        while time.monotonic() < deadline and not (len(seen) >= 3 and len(set(seen[-3:])) == 1):
            time.sleep(0.02)
            seen.append(self.sample())
        return seen[-1]

    @contextmanager
    def around(self, timeout: float = 5.0) -> Iterator[None]:
        before = self.settled()
        yield
        deadline = time.monotonic() + timeout
        while True:
            after = self.sample()
            if after.upstream_in_use == 0 and all(
                getattr(after, f.name) <= getattr(before, f.name) for f in fields(Usage)
            ):
                return
            if time.monotonic() > deadline:
                pytest.fail(f"resources left over after the case: before {before}, after {after}")
            time.sleep(0.02)
