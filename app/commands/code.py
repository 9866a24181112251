"""`nimbridge code [--model M] [--folder DIR] [-- CLAUDE_ARGS...]`: Claude Code on NimBridge.

Reuses a NimBridge already serving on the configured host and port (the tray
app or `serve`); otherwise starts one in this process on a free port, with a
random proxy key for the run, so nothing else on the machine can spend the
user's quota through it. Claude Code runs in this terminal with its settings
in a private file; its exit code is passed through, and what was started here
is stopped when it exits.

While Claude Code runs, nothing else writes to the terminal (its full-screen UI
owns it): the server's log goes to a file, and what went wrong is summed up
after Claude Code exits.
"""

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from app.config.history import HistoryWriter
from app.config.secrets import ProviderKeys
from app.config.settings import PROXY_KEY_ENV, Settings
from app.launcher.context_window import served_context_window
from app.launcher.discovery import INSTALL_COMMAND, find_claude
from app.launcher.environment import (
    CUSTOM_HEADERS_ENV,
    PLACEHOLDER_TOKEN,
    claude_code_env,
    own_statusline_command,
    process_env,
    project_headers,
    status_line_setting,
    user_no_proxy_values,
    user_sets_status_line,
    write_settings_file,
)
from app.logs import ProblemTally
from app.server.app import ProxyServer
from app.server.event_loop import new_server_loop
from app.server.network import LOCAL_OPENER


def running_nimbridge(host: str, port: int, timeout_s: float = 1.0) -> str | None:
    """The base URL of a NimBridge answering /health on host:port, else None."""
    shown = f"[{host}]" if ":" in host else host
    base_url = f"http://{shown}:{port}"
    try:
        with LOCAL_OPENER.open(f"{base_url}/health", timeout=timeout_s) as response:
            health = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return base_url if isinstance(health, dict) and health.get("status") == "ok" else None


def proxy_key_refused(base_url: str, token: str, timeout_s: float = 10.0) -> bool:
    """Whether the NimBridge at base_url refuses `token` (401), asked with a request
    that costs nothing upstream: count_tokens is answered by NimBridge itself."""
    body = {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi"}]}
    request = urllib.request.Request(
        f"{base_url}/v1/messages/count_tokens",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    try:
        with LOCAL_OPENER.open(request, timeout=timeout_s):
            return False
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code == 401
    except OSError:  # it stopped meanwhile: Claude Code will say so itself
        return False


class BackgroundServer:
    """A NimBridge server on its own event loop in a daemon thread, for the run."""

    def __init__(
        self,
        settings: Settings,
        keys: ProviderKeys,
        proxy_key: str,
        *,
        history: HistoryWriter | None = None,
    ) -> None:
        self._loop = new_server_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server = ProxyServer(settings, keys, proxy_key, history=history)

    def start(self) -> str:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self._server.start(), self._loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop).result(60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def serve_for_session(
    settings: Settings,
    keys: ProviderKeys,
    *,
    reuse: bool,
    proxy_key: str | None,
    err: TextIO,
    history: HistoryWriter | None = None,
) -> "tuple[str, str | None, BackgroundServer | None] | int":
    """The NimBridge a coding agent's session talks to: the one running (when `reuse`),
    else one started here on a free port with a key for this run (writing `history`). Its
    base URL, the proxy key to send, and what to stop afterwards; or the exit code of a
    failure."""
    started: BackgroundServer | None = None
    base_url = running_nimbridge(settings.host, settings.port)
    if base_url is not None and reuse:
        # Someone else's server: its proxy key is the one kept for it, or the env's.
        token = proxy_key or keys.stored_proxy_key()
        if proxy_key_refused(base_url, token or PLACEHOLDER_TOKEN):
            # Else Claude Code retries its 401s in silence for minutes.
            problem = (
                "refused the proxy key given"
                if proxy_key
                else "needs a proxy key, and none was given or kept in the keychain"
            )
            print(
                f"nimbridge: the NimBridge running at {base_url} {problem}: pass the key "
                f"it was started with as --proxy-key or {PROXY_KEY_ENV} (the tray app's is "
                "in Settings > Server > Proxy key: Copy), or stop it to let `code` start its own",
                file=err,
            )
            return 2
        print(f"nimbridge: using the NimBridge already running at {base_url}", file=err)
    else:
        token = proxy_key or secrets.token_urlsafe(24)  # a key for this run only
        keys.remember(token)
        started = BackgroundServer(replace(settings, port=0), keys, token, history=history)
        try:
            base_url = started.start()
        except OSError as exc:
            print(f"nimbridge: cannot start the server: {exc.strerror or exc}", file=err)
            return 2
        print(f"nimbridge: started NimBridge at {base_url} for this session", file=err)
    return base_url, token, started


def run_code_command(
    settings: Settings,
    keys: ProviderKeys,
    *,
    model: str | None,
    folder: Path | None,
    claude_args: Sequence[str],
    proxy_key: str | None,
    problems: ProblemTally | None = None,
    log_path: Path | None = None,
    err: TextIO = sys.stderr,
    history: HistoryWriter | None = None,
) -> int:
    claude = find_claude()
    if claude is None:
        print(
            f"nimbridge: Claude Code is not installed; install it with: {INSTALL_COMMAND}", file=err
        )
        return 127
    if model:
        settings = replace(settings, tiers=replace(settings.tiers, default=model))
    session = serve_for_session(
        settings, keys, reuse=not model, proxy_key=proxy_key, err=err, history=history
    )
    if isinstance(session, int):
        return session
    base_url, token, started = session
    tiers = settings.tiers
    print(
        "nimbridge: Claude Code's models: "
        + ", ".join(
            f"{name} {getattr(tiers, name) or tiers.default}"
            for name in ("default", "opus", "sonnet", "haiku", "subagent")
        ),
        file=err,
    )
    here = (folder or Path.cwd()).resolve()
    env = claude_code_env(
        base_url=base_url,
        proxy_key=token,
        tiers=settings.tiers,
        context_window=served_context_window(base_url, token, settings.tiers.default, settings),
        timeout_s=settings.read_timeout_s,
        user_no_proxy=user_no_proxy_values(os.environ, here),
    )
    env.update(project_headers(here, os.environ.get(CUSTOM_HEADERS_ENV)))
    extra = (
        {}
        if user_sets_status_line(os.environ, here)
        else {"statusLine": status_line_setting(own_statusline_command())}
    )
    settings_file = write_settings_file(env, extra=extra)
    try:
        # SIGTERM ends Claude Code first; then the server started here stops gracefully
        # below (the default action would kill this process with the port and streams).
        # Set before Claude Code starts: a SIGTERM right after its start must not be lost.
        with _forwarding_sigterm() as forward:
            claude_process = subprocess.Popen(
                [str(claude), "--settings", str(settings_file), *claude_args],
                cwd=folder or Path.cwd(),
                env=process_env(os.environ, env),
            )
            forward.to(claude_process)
            code = claude_process.wait()
        return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as shells say
    except KeyboardInterrupt:
        return 130
    finally:
        settings_file.unlink(missing_ok=True)
        if started is not None:
            started.stop()
        _sum_up(problems, log_path, err)


def _sum_up(problems: ProblemTally | None, log_path: Path | None, err: TextIO) -> None:
    """After Claude Code: the session's problems in a few lines, and where the log is."""
    lines = problems.summary() if problems is not None else []
    where = f"; the log is {log_path}" if log_path is not None else ""
    if lines:
        print(f"nimbridge: during the session: {lines[0]}{where}", file=err)
        for line in lines[1:]:
            print(line, file=err)
    elif log_path is not None:
        print(f"nimbridge: no problems during the session{where}", file=err)


class _SigtermForwarder:
    """Passes SIGTERM on to the child, even one that arrived before the child existed."""

    def __init__(self) -> None:
        self._child: subprocess.Popen[bytes] | None = None
        self._asked = False

    def on_signal(self, *_: object) -> None:
        self._asked = True
        if self._child is not None:
            self._child.terminate()

    def to(self, child: subprocess.Popen[bytes]) -> None:
        self._child = child
        if self._asked:  # it came while the child was starting
            child.terminate()


@contextlib.contextmanager
def _forwarding_sigterm() -> Iterator[_SigtermForwarder]:
    forwarder = _SigtermForwarder()
    if threading.current_thread() is not threading.main_thread():
        yield forwarder  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGTERM, forwarder.on_signal)
    try:
        yield forwarder
    finally:
        signal.signal(signal.SIGTERM, previous)
