"""`nimbridge statusline`: the line it prints, what it says when NimBridge is down, and
that it starts fast (stdlib only: no aiohttp, PySide6 or keyring)."""

import io
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from app.commands.statusline import DOWN, run_statusline, status_line_text

ROOT = Path(__file__).parents[2]


def test_line_with_pace_queue_cool_down_and_tokens() -> None:
    status = {
        "upstream_model": "meta/llama-3.3-70b-instruct@nvidia",
        "pacing": {
            "requests_last_minute": 31,
            "budget_per_minute": 40,
            "cooling_down_for_s": 12.4,
            "queued": 2,
        },
        "session": {"requests": 9, "input_tokens": 123_456, "output_tokens": 812},
    }
    assert status_line_text(status) == (
        "meta/llama-3.3-70b-instruct@nvidia · cooling down 12 s · 31/40 per min · 2 queued"
        " · 123k in / 812 out"
    )


def test_line_without_budget_or_session() -> None:
    status = {"upstream_model": "m", "pacing": {"requests_last_minute": 3}, "session": None}
    assert status_line_text(status) == "m · 3 per min"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_down_in_a_few_words() -> None:
    out = io.StringIO()
    stdin = io.StringIO(json.dumps({"session_id": "s", "model": {"id": "claude-x"}}))
    url = f"http://127.0.0.1:{_free_port()}"
    assert run_statusline({"ANTHROPIC_BASE_URL": url}, stdin, out, default_url="x") == 0
    assert out.getvalue() == f"{DOWN}\n"


def test_starts_fast_and_imports_nothing_heavy() -> None:
    # What Claude Code runs (`python -m app statusline`, the bundle's binary the same).
    probe = (
        "import atexit, sys, runpy;"
        "atexit.register(lambda: print([m for m in ('aiohttp', 'PySide6', 'keyring', 'sqlite3',"
        " 'asyncio') if m in sys.modules], file=sys.stderr));"
        "sys.argv = ['app', 'statusline']; runpy.run_module('app', run_name='__main__')"
    )
    env = {"ANTHROPIC_BASE_URL": f"http://127.0.0.1:{_free_port()}", "PATH": "/usr/bin:/bin"}
    runs = []
    for _ in range(3):
        began = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=ROOT,
            env=env,
            input="{}",
            capture_output=True,
            text=True,
        )
        runs.append(time.perf_counter() - began)
        assert done.stdout == f"{DOWN}\n" and done.stderr.strip() == "[]"
    bare = []
    for _ in range(3):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - began)
    # The whole process, interpreter start included, on a shared machine: its own
    # part (over a bare `python -c pass`) must stay well under 100 ms.
    assert min(runs) - min(bare) < 0.1, (runs, bare)
