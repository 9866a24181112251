"""The key canary: one whole tray session with recognisable keys, then a search for them.

The real pieces, in one process on qasync's loop: the provider key in a real Secret
Service, the tray app's `App` (log window, request inspector, settings dialog, Launch
Claude Code and Launch Codex through a real terminal process), the real service and server, DEBUG
logging to a real file, upstream errors that echo the key back (as real providers do:
"Incorrect API key provided: ..."), a stream that fails mid-way and a crash in a Qt slot.

The provider key may appear only where it must: the keychain and the upstream's
`Authorization` header. The proxy key only in the keychain, the server's check, the
settings dialog's masked field and Claude Code's and Codex's environments. Both keys are shaped
like nothing the log's shape patterns know, so only knowing the values can hide them.
"""

import json
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anthropic
import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QAbstractButton, QApplication, QLabel, QLineEdit, QPlainTextEdit
from pytestqt.qtbot import QtBot

from app.config.secrets import KeyringSecretStore, ProviderKeys
from app.config.settings import Settings, load_settings
from app.logs import LIBRARY_LOGGERS, LogBuffer, log_crashes, setup_logging
from app.service import ProxyService, ServerState
from app.tasks import spawn
from app.ui.qt_main import App
from tests.fake_upstream import FakeUpstream, chunk, default_behaviour, reply_json, reply_stream
from tests.integration.conftest import _upstream_server, loop_thread, upstream  # noqa: F401
from tests.ui.qt_async import qasync_loop  # noqa: F401  (fixture)

# Not `nvapi-...`/`sk-...`: a custom provider's key the shape patterns cannot guess.
UPSTREAM_CANARY = "CANARYupstream5f1e2d3c4b5a69788796a5b4"

pytestmark = [
    pytest.mark.usefixtures("qasync_loop", "secret_service"),
    # The crash below must reach NimBridge's own excepthook, not pytest-qt's.
    pytest.mark.qt_no_exception_capture,
    pytest.mark.allow_warnings,  # the failing requests log warnings, on purpose
]


@pytest.fixture
def debug_logging(tmp_path: Path) -> Iterator[tuple[Path, LogBuffer, Callable[..., None]]]:
    """Production logging at DEBUG (file, window buffer, crash hook); undone afterwards."""
    import logging
    import sys

    log_path = tmp_path / "logs" / "nimbridge.log"
    buffer = LogBuffer()
    saved_hooks = sys.excepthook, threading.excepthook
    secrets: list[Callable[[], list[str]]] = []

    def install(known: Callable[[], list[str]]) -> None:
        secrets.append(known)
        setup_logging("DEBUG", secrets=known, log_file=log_path, buffer=buffer)
        log_crashes()

    yield log_path, buffer, install
    sys.excepthook, threading.excepthook = saved_hooks
    root = logging.getLogger("app")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.propagate, root.level = True, logging.NOTSET
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate, library.level = True, logging.NOTSET


def _fake_terminal_and_claude(
    bin_dir: Path, out: Path, program: str = "claude"
) -> tuple[Path, Path]:
    """A terminal that runs its command, and a `claude` (or `program`) that writes down
    its argv and env."""
    bin_dir.mkdir()
    terminal = bin_dir / "fake-terminal"
    terminal.write_text(
        "#!/bin/sh\n"
        f'tr "\\0" "\\n" < /proc/$$/environ > {out}/terminal.env\n'
        f'printf "%s\\n" "$0" "$@" > {out}/terminal.argv\n'
        '[ "$1" = -e ] && shift\n'
        'exec "$@"\n'
    )
    claude = bin_dir / program
    claude.write_text(
        "#!/bin/sh\n"
        f"env > {out}/{program}.env.part && mv {out}/{program}.env.part {out}/{program}.env\n"
        f'printf "%s\\n" "$0" "$@" > {out}/{program}.argv\n'
    )
    for script in (terminal, claude):
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return terminal, claude


def _texts(widget: Any) -> list[str]:
    """Every text a user could see or copy in a window."""
    found = [w.text() for w in widget.findChildren(QLineEdit)]
    found += [w.toPlainText() for w in widget.findChildren(QPlainTextEdit)]
    found += [w.text() for w in widget.findChildren(QLabel)]
    found += [w.text() + w.toolTip() for w in widget.findChildren(QAbstractButton)]
    return found


def test_no_key_leaks_in_a_whole_session(
    qtbot: QtBot,
    upstream: FakeUpstream,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    debug_logging: tuple[Path, LogBuffer, Callable[..., None]],
) -> None:
    log_path, buffer, install_logging = debug_logging
    keys = ProviderKeys(KeyringSecretStore(), env={})
    keys.set("nvidia", UPSTREAM_CANARY)  # the real keychain, as Settings -> Keys does
    install_logging(keys.known_secrets)
    settings_path = tmp_path / "settings.json"
    settings = replace(
        Settings(port=0).with_overrides(upstream_url=upstream.base_url, model="fake/model"),
        retry_max_attempts=1,  # one upstream answer per request, in the order queued
    )
    service = ProxyService(
        settings,
        keys,
        settings_path=settings_path,
        log_buffer=buffer,
        log_path=log_path,
        generate_proxy_key=True,
    )
    proxy_key = service.status().proxy_key
    assert proxy_key and len(proxy_key) >= 32
    qapp = QApplication.instance()
    assert isinstance(qapp, QApplication)
    app = App(qapp, service, quit_app=lambda: None)
    app.open_logs()
    assert app.log_window is not None

    spawn(service.start(), name="start server")
    qtbot.waitUntil(lambda: service.status().state is ServerState.RUNNING, timeout=10_000)
    base_url = service.status().base_url
    assert base_url

    # ---- the session: answers, streams, and upstream failures that echo the key
    echoed = f"Incorrect API key provided: {UPSTREAM_CANARY}. Find your key in your account."
    half_then_error = [
        chunk({}, {"role": "assistant", "content": "half an answer"}),
        {"error": {"message": echoed, "code": 500}},  # NIM/vLLM's mid-stream error
    ]
    upstream.enqueue(
        reply_json({"object": "chat.completion", "choices": []}),  # an answer without one
        reply_json({"error": {"message": echoed, "type": "invalid_request_error"}}, status=401),
        reply_json({"type": "about:blank", "status": 500, "detail": echoed}, status=500),
        default_behaviour,  # a plain answer
        default_behaviour,  # a stream
        reply_stream(half_then_error),
    )
    errors: list[str] = []
    answers: list[str] = []

    def ask(client: anthropic.Anthropic, text: str, *, stream: bool = False) -> None:
        message: anthropic.types.MessageParam = {"role": "user", "content": text}
        try:
            if stream:
                with client.messages.stream(
                    model="claude-sonnet-4-6", max_tokens=10, messages=[message]
                ) as events:
                    answers.append(events.get_final_text())
            else:
                answer = client.messages.create(
                    model="claude-sonnet-4-6", max_tokens=10, messages=[message]
                )
                answers.append(answer.content[0].text if answer.content[0].type == "text" else "")
        except anthropic.APIError as exc:
            errors.append(f"{exc} {json.dumps(getattr(exc, 'body', None))}")

    def session() -> None:
        with anthropic.Anthropic(base_url=base_url, api_key=proxy_key, max_retries=0) as client:
            for text in ("no choices", "bad key", "server error", "hello"):
                ask(client, text)
            ask(client, "a stream", stream=True)
            ask(client, "a broken stream", stream=True)
        with anthropic.Anthropic(base_url=base_url, api_key="wrong", max_retries=0) as client:
            ask(client, "not the proxy key")

    thread = threading.Thread(target=session)
    thread.start()
    qtbot.waitUntil(lambda: not thread.is_alive(), timeout=30_000)
    assert len(errors) == 5 and answers == ["You said: hello", "You said: a stream"], errors
    assert {r.headers["Authorization"] for r in upstream.chat_requests} == {
        f"Bearer {UPSTREAM_CANARY}"  # where it must be
    }

    # ---- a crash in a Qt slot, its message holding the key
    def crash() -> None:
        raise RuntimeError(f"slot failed with {UPSTREAM_CANARY} and {proxy_key}")

    QTimer.singleShot(0, crash)
    qtbot.waitUntil(lambda: "NimBridge hit a bug" in log_path.read_text(), timeout=5_000)

    # ---- the windows: log, request inspector, settings
    window = app.log_window
    qtbot.waitUntil(lambda: len(window.requests.model.rows) == 7, timeout=10_000)
    window.log.render_all()
    rows = window.requests.model.rows
    inspectors = [window.requests.open_request(row.request_id) for row in rows]
    app.open_settings()
    assert app.settings is not None
    settings_texts = _texts(app.settings)
    seen_in_windows = _texts(window) + [t for d in inspectors for t in _texts(d)]
    for dialog in inspectors:
        dialog.copy_as_curl()
        seen_in_windows.append(QApplication.clipboard().text())

    # ---- Launch Claude Code through a real terminal process
    out = tmp_path / "child"
    out.mkdir()
    terminal, claude = _fake_terminal_and_claude(tmp_path / "bin", out)
    monkeypatch.setenv("TERMINAL", str(terminal))
    app.launcher.find = lambda: claude
    app.launcher.choose_folder = lambda recent, agent: tmp_path
    shown: list[str] = []
    app.launcher.show_error = lambda title, text, copy: shown.append(f"{title}: {text}")
    children: list[subprocess.Popen[bytes]] = []

    def popen(command: list[str], **options: Any) -> subprocess.Popen[bytes]:
        children.append(subprocess.Popen(command, **options))
        return children[-1]

    app.launcher.popen = popen  # the real Popen, kept so the test can wait for it
    app.launcher.launch()
    qtbot.waitUntil(lambda: (out / "claude.env").exists(), timeout=10_000)
    assert [child.wait(10) for child in children] == [0]
    qtbot.waitUntil(lambda: settings_path.exists(), timeout=5_000)  # recent folders saved
    assert shown == []
    claude_env = dict(
        line.split("=", 1) for line in (out / "claude.env").read_text().splitlines() if "=" in line
    )
    assert claude_env["ANTHROPIC_AUTH_TOKEN"] == proxy_key  # where it must be
    assert claude_env["ANTHROPIC_BASE_URL"] == base_url

    # ---- Launch Codex the same way
    codex_out = tmp_path / "codex-child"
    codex_out.mkdir()
    codex_terminal, codex = _fake_terminal_and_claude(tmp_path / "codex-bin", codex_out, "codex")
    monkeypatch.setenv("TERMINAL", str(codex_terminal))
    app.codex_launcher.find = lambda: codex
    app.codex_launcher.choose_folder = lambda recent, agent: tmp_path
    app.codex_launcher.show_error = lambda title, text, copy: shown.append(f"{title}: {text}")
    app.codex_launcher.popen = popen
    app.codex_launcher.launch()
    qtbot.waitUntil(lambda: (codex_out / "codex.env").exists(), timeout=10_000)
    assert [child.wait(10) for child in children] == [0, 0] and shown == []
    codex_env = dict(
        line.split("=", 1)
        for line in (codex_out / "codex.env").read_text().splitlines()
        if "=" in line
    )
    assert codex_env["NIMBRIDGE_CODEX_KEY"] == proxy_key  # where it must be
    assert f"base_url='{base_url}/v1'" in (codex_out / "codex.argv").read_text()

    spawn(service.stop(), name="stop")
    qtbot.waitUntil(lambda: service.status().state is ServerState.STOPPED, timeout=10_000)
    app.close()

    # ---- the search
    places: dict[str, str] = {
        "log file": log_path.read_text(),
        "log window buffer": "\n".join(line.message for line in buffer.lines()),
        "log window and request inspector": "\n".join(seen_in_windows),
        "settings dialog": "\n".join(settings_texts),
        "settings file": settings_path.read_text(),
        "errors the client saw": "\n".join(errors),
        "terminal command line": (out / "terminal.argv").read_text(),
        "terminal environment": (out / "terminal.env").read_text(),
        "Claude Code command line": (out / "claude.argv").read_text(),
        "Claude Code environment": (out / "claude.env").read_text(),
        "Codex terminal command line": (codex_out / "terminal.argv").read_text(),
        "Codex terminal environment": (codex_out / "terminal.env").read_text(),
        "Codex command line": (codex_out / "codex.argv").read_text(),
        "Codex environment": (codex_out / "codex.env").read_text(),
    }
    for place, text in places.items():
        assert UPSTREAM_CANARY not in text, f"the provider key leaked into the {place}"
    allowed_proxy_key = {"settings dialog", "Claude Code environment", "Codex environment"}
    for place, text in places.items():
        if place not in allowed_proxy_key:
            assert proxy_key not in text, f"the proxy key leaked into the {place}"
    # The search found the things it searched: the session really happened.
    assert "NimBridge hit a bug" in places["log file"] and "***" in places["log file"]
    assert "Incorrect API key provided: ***" in places["errors the client saw"]
    assert load_settings(settings_path).ui.get("recent_folders") == [str(tmp_path)]
