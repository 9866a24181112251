"""The benchmarks' pipe to their server process: one reply, or the process's error."""

from multiprocessing.connection import Connection
from typing import Any


def receive(conn: Connection, timeout: float) -> Any:
    if not conn.poll(timeout):
        raise TimeoutError("the server process did not answer")
    reply = conn.recv()
    if isinstance(reply, dict) and "error" in reply:
        raise RuntimeError(f"server process failed:\n{reply['error']}")
    return reply
