"""What the benchmarks read of a process from outside (Linux /proc), and how they end one."""

import signal
import subprocess
from pathlib import Path


def status_kb(pid: int | str) -> dict[str, int]:
    """The kB figures of /proc/PID/status (VmRSS, VmHWM, ...) by name."""
    figures: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if value.rstrip().endswith(" kB"):
            figures[key] = int(value.split()[0])
    return figures


def rss_kb(pid: int | str) -> int:
    """The process's resident memory now."""
    return status_kb(pid)["VmRSS"]


def stop_process(proc: "subprocess.Popen[bytes]", wait_s: float) -> None:
    """SIGTERM (the way a user's system ends it), SIGKILL after `wait_s`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
