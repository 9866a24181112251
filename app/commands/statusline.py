"""`nimbridge statusline`: one short line for Claude Code's status bar.

Claude Code runs the `statusLine` command of its settings with a JSON object on
stdin (2.1.332: `session_id`, `transcript_path`, `cwd`, `model {id, display_name}`,
`workspace {current_dir, project_dir}`, `cost`, `context_window`...), and shows
what it prints. This asks the running NimBridge (`GET /v1/nimbridge/status`, with
the proxy key Claude Code itself was given: ANTHROPIC_BASE_URL and
ANTHROPIC_AUTH_TOKEN are in the environment it hands the command) and prints:

    meta/llama-3.3-70b-instruct · 31/40 per min · 2 queued · 12.3k in / 812 out

Standard library only, and quick: it runs after every turn and on a timer.
"""

import json
import os
import socket
import sys
import urllib.parse
from collections.abc import Mapping
from typing import Any, TextIO

STATUS_PATH = "/v1/nimbridge/status"  # app/server/status_route.py (aiohttp: not imported here)
MAX_ANSWER_BYTES = 1 << 20
TIMEOUT_S = 0.5  # a status line that hangs is worse than one that says "no answer"
DOWN = "NimBridge is not running"


def read_claude_input(stdin: TextIO) -> dict[str, Any]:
    """What Claude Code piped in; {} when run by hand (a terminal) or not JSON."""
    if stdin.isatty():
        return {}
    try:
        data = json.loads(stdin.read() or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class StatusRefused(Exception):
    """The server answered with an error status (401: not the proxy key)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def fetch_status(base_url: str, token: str | None, session_id: str | None) -> dict[str, Any]:
    """The server's answer; OSError (refused, timeout), StatusRefused or ValueError (not
    ours) otherwise. One HTTP/1.0 request on a plain socket: urllib.request alone takes
    ~60 ms to import, and the server is on this computer (never behind a proxy)."""
    url = urllib.parse.urlsplit(base_url)
    if url.scheme != "http" or not url.hostname:
        raise ValueError(f"not a local http URL: {base_url}")
    query = f"?session={urllib.parse.quote(session_id)}" if session_id else ""
    lines = [
        f"GET {url.path.rstrip('/')}{STATUS_PATH}{query} HTTP/1.0",
        f"Host: {url.netloc}",
        *([f"Authorization: Bearer {token}"] if token else []),
        "",
        "",
    ]
    with socket.create_connection((url.hostname, url.port or 80), timeout=TIMEOUT_S) as conn:
        conn.sendall("\r\n".join(lines).encode("latin-1"))
        received = bytearray()
        while chunk := conn.recv(65536):
            received += chunk
            if len(received) > MAX_ANSWER_BYTES:
                raise ValueError("answer too long")
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    if status != 200:
        raise StatusRefused(status)
    answer = json.loads(body)
    if not isinstance(answer, dict):
        raise ValueError("not a NimBridge status")
    return answer


def _tokens(count: int) -> str:
    if count >= 1_000_000:
        return f"{count / 1_000_000:.1f}M"
    if count >= 10_000:
        return f"{count / 1000:.0f}k"
    if count >= 1000:
        return f"{count / 1000:.1f}k"
    return str(count)


def status_line_text(status: Mapping[str, Any]) -> str:
    """The line, from `/v1/nimbridge/status`'s answer."""
    parts = [str(status.get("upstream_model") or "?")]
    pacing = status.get("pacing")
    if isinstance(pacing, dict):
        cooling = float(pacing.get("cooling_down_for_s") or 0)
        if cooling > 0:
            parts.append(f"cooling down {cooling:.0f} s")
        budget = pacing.get("budget_per_minute")
        used = pacing.get("requests_last_minute", 0)
        parts.append(f"{used}/{budget} per min" if budget else f"{used} per min")
        queued = int(pacing.get("queued") or 0)
        if queued:
            parts.append(f"{queued} queued")
    session = status.get("session")
    if isinstance(session, dict):
        tokens_in = int(session.get("input_tokens") or 0)
        tokens_out = int(session.get("output_tokens") or 0)
        parts.append(f"{_tokens(tokens_in)} in / {_tokens(tokens_out)} out")
    return " · ".join(parts)


def run_statusline(
    environ: Mapping[str, str], stdin: TextIO, out: TextIO, *, default_url: str
) -> int:
    """Always exits 0 with one line: Claude Code shows whatever is printed."""
    claude = read_claude_input(stdin)
    session = claude.get("session_id")
    base_url = environ.get("ANTHROPIC_BASE_URL") or default_url
    token = environ.get("ANTHROPIC_AUTH_TOKEN") or environ.get("NIMBRIDGE_PROXY_KEY")
    try:
        status = fetch_status(base_url, token, session if isinstance(session, str) else None)
    except StatusRefused as exc:
        line = "NimBridge refused the key" if exc.status == 401 else f"NimBridge: {exc}"
    except (OSError, ValueError):
        line = DOWN
    else:
        line = status_line_text(status)
    print(line, file=out)
    return 0


def main() -> int:
    return run_statusline(os.environ, sys.stdin, sys.stdout, default_url="http://127.0.0.1:8787")
