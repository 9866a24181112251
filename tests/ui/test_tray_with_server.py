"""The tray menu and log window driving the REAL service and server on qasync's loop:
start from the menu, an official-SDK request appears in the request table, stop from
the menu frees the port."""

import socket
import threading
from pathlib import Path

import anthropic
import pytest
from pytestqt.qtbot import QtBot

from app.config.secrets import MemorySecretStore, ProviderKeys
from app.config.settings import Settings
from app.logs import LogBuffer
from app.service import ProxyService, ServerState
from app.ui.log_window import LogWindow
from app.ui.tray import TrayMenu, Windows
from tests.fake_upstream import FakeUpstream, reply_stream, text_stream
from tests.integration.conftest import _upstream_server, loop_thread, upstream  # noqa: F401
from tests.ui.qt_async import qasync_loop  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("qasync_loop")


def test_start_request_and_stop_from_the_menu(
    qtbot: QtBot,
    upstream: FakeUpstream,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    keys = ProviderKeys(MemorySecretStore(), env={})
    keys.set("nvidia", "nvapi-tray-test-key-000000")
    settings = Settings(host="127.0.0.1", port=0).with_overrides(
        upstream_url=upstream.base_url, model="fake/model"
    )
    service = ProxyService(
        settings, keys, settings_path=tmp_path / "settings.json", log_buffer=LogBuffer()
    )
    menu = TrayMenu(service, Windows())
    window = LogWindow(service)
    qtbot.addWidget(window)

    menu.action("Start server").trigger()
    qtbot.waitUntil(lambda: service.status().state is ServerState.RUNNING, timeout=10_000)
    base_url = service.status().base_url
    assert base_url
    menu.refresh()
    assert menu.menu.actions()[0].text() == f"Running on {base_url}"

    # The SDK is synchronous: run it beside the Qt loop, which keeps serving meanwhile.
    answers: list[str] = []

    def ask() -> None:
        with anthropic.Anthropic(base_url=base_url, api_key="x", max_retries=0) as client:
            message = client.messages.create(
                model="claude-opus-4-5",
                max_tokens=10,
                messages=[{"role": "user", "content": "from the tray"}],
            )
            block = message.content[0]
            answers.append(block.text if block.type == "text" else "")

    thread = threading.Thread(target=ask)
    thread.start()
    qtbot.waitUntil(lambda: bool(answers), timeout=10_000)
    thread.join(5)
    assert answers == ["You said: from the tray"]
    qtbot.waitUntil(lambda: len(window.requests.model.rows) == 1, timeout=5_000)
    row = window.requests.model.rows[0]
    assert row.client_model == "claude-opus-4-5" and row.status == 200
    assert row.upstream_model == "fake/model@nvidia"

    port = int(base_url.rsplit(":", 1)[1])
    menu.refresh()
    menu.action("Stop server").trigger()
    qtbot.waitUntil(lambda: service.status().state is ServerState.STOPPED, timeout=10_000)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # the port is free again
    window.shutdown()


@pytest.mark.allow_warnings  # the stream cut by the stop is logged as a warning
def test_stop_from_the_menu_ends_a_long_stream_with_an_error_event(
    qtbot: QtBot,
    upstream: FakeUpstream,  # noqa: F811  (the fixture imported above)
) -> None:
    words = " ".join(f"w{n}" for n in range(400))
    upstream.enqueue(reply_stream(lambda b: text_stream(b, words, pieces=400), delay=0.05))
    settings = Settings(host="127.0.0.1", port=0, shutdown_grace_s=0.3).with_overrides(
        upstream_url=upstream.base_url, model="fake/model"
    )
    service = ProxyService(settings, ProviderKeys(MemorySecretStore(), env={}), settings_path=None)
    menu = TrayMenu(service, Windows())
    menu.action("Start server").trigger()
    qtbot.waitUntil(lambda: service.status().state is ServerState.RUNNING, timeout=10_000)
    base_url = service.status().base_url
    assert base_url
    received: list[str] = []
    failures: list[Exception] = []

    def stream() -> None:
        with anthropic.Anthropic(base_url=base_url, api_key="x", max_retries=0) as client:
            try:
                with client.messages.stream(
                    model="claude-opus-4-5",
                    max_tokens=10,
                    messages=[{"role": "user", "content": "x"}],
                ) as events:
                    received.extend(events.text_stream)
            except anthropic.APIStatusError as exc:
                failures.append(exc)

    thread = threading.Thread(target=stream)
    thread.start()
    qtbot.waitUntil(lambda: bool(received), timeout=10_000)  # the stream is under way
    menu.refresh()
    menu.action("Stop server").trigger()
    qtbot.waitUntil(lambda: service.status().state is ServerState.STOPPED, timeout=10_000)
    thread.join(10)
    assert len(failures) == 1 and "NimBridge is stopping" in str(failures[0])
    assert received and "".join(received) != words  # cut short
