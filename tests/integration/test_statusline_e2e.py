"""The real Claude Code runs NimBridge's status line, installed by `nimbridge code`.

Claude Code 2.1.332 runs a `statusLine` command only in its interactive UI (print
mode has no status bar), and only in a folder whose trust was accepted; so this
drives `nimbridge code` in a pseudo-terminal, with trust pre-accepted in the test's
own home, asks one question, and reads the screen.
"""

import json
import os
import pty
import re
import select
import signal
import time
from pathlib import Path

import pytest

from tests.fake_upstream import FakeUpstream
from tests.integration.test_claude_code_e2e import ROOT, nimbridge_code_command, require_claude

pytestmark = pytest.mark.skipif(os.name != "posix", reason="a POSIX pseudo-terminal")
ESCAPES = re.compile(rb"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[=>()][0-9A-B]?)")


class Screen:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.raw = b""

    @property
    def text(self) -> str:
        return ESCAPES.sub(b"", self.raw).decode("utf-8", "replace")

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text)
            if found:
                return found
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                try:
                    self.raw += os.read(self.fd, 65536)
                except OSError:
                    break
        raise AssertionError(f"{pattern!r} not on screen; it ends with:\n{self.text[-2000:]}")


def test_claude_code_shows_nimbridge_status_line(upstream: FakeUpstream, tmp_path: Path) -> None:
    where = require_claude()
    work, argv, env = nimbridge_code_command(upstream, tmp_path, where, [])
    home = Path(env["HOME"])
    (home / ".claude.json").write_text(
        json.dumps(
            {
                "hasCompletedOnboarding": True,
                "projects": {str(work.resolve()): {"hasTrustDialogAccepted": True}},
            }
        )
    )
    # Claude Code runs no status line when CI=true (as .ci/run sets): a user's terminal
    # has no such variable.
    env.pop("CI", None)
    env.update(
        PYTHONPATH=str(ROOT),  # the status line runs `python -m app` in the work folder
        TERM="xterm-256color",
        COLUMNS="160",
        LINES="40",
    )
    pid, fd = pty.fork()
    if pid == 0:  # the child: `nimbridge code`, Claude Code inside it
        os.chdir(ROOT)
        os.execve(argv[0], argv, env)
    screen = Screen(fd)
    try:
        # Before any request: the default tier's model and the provider's budget.
        screen.wait_for(r"fake/agent-model@nvidia · 0/40 per min")
        os.write(fd, b"hello\r")
        # After one answer, this session's tokens (the terminal redraws only what changed:
        # "0/40" -> "1/40 per min · 6.9k in / 148 out" may come as "1 · 6.9k in / 148 out").
        found = screen.wait_for(r"1(/40 per min)? · ([\d.]+k?) in / (\d+) out")
        assert found[2] != "0" and int(found[3]) > 0
        assert any(r.path.startswith("/v1/chat/completions") for r in upstream.chat_requests)
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0):
            try:
                os.read(fd, 65536)
            except OSError:
                time.sleep(0.1)
        os.close(fd)
