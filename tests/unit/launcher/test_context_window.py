"""The window agents compact at (app/launcher/context_window.py): one owner for the
tray's launchers, its copied Codex set-up, `nimbridge code` and `nimbridge codex`."""

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.config.settings import Settings, TierModels
from app.launcher.context_window import context_window, served_context_window

QWEN = "qwen/qwen3-coder-480b-a35b-instruct"  # the name table: 262,144
OVERRIDDEN = Settings(
    tiers=TierModels(default=QWEN), capabilities={QWEN: {"context_window": 65536}}
)


def test_the_name_table_gives_the_window() -> None:
    assert context_window(QWEN, Settings()) == 262144
    assert context_window(QWEN, None) == 262144  # the tray's set-up without settings
    assert context_window("no-such/model", Settings()) is None


def test_the_users_override_wins_over_the_name_table() -> None:
    assert context_window(QWEN, OVERRIDDEN) == 65536
    assert context_window("other/model", OVERRIDDEN) is None  # exact ids only


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_no_server_to_ask_falls_back_to_the_override(closed_port: int) -> None:
    # Issue 19: `nimbridge code` fell back to the name table without the user's
    # overrides, while the tray's launcher applied them.
    url = f"http://127.0.0.1:{closed_port}"
    assert served_context_window(url, "k", QWEN, OVERRIDDEN) == 65536
    assert served_context_window(url, "k", QWEN, Settings()) == 262144


class _Models(BaseHTTPRequestHandler):
    answers: dict[str, object] = {}
    seen_keys: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.seen_keys.append(self.headers.get("x-api-key"))
        body = json.dumps(self.answers.get(self.path, {})).encode()
        self.send_response(200 if self.path in self.answers else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass


@pytest.fixture
def models_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_what_the_server_serves_wins(models_server: str) -> None:
    _Models.answers = {f"/v1/models/{QWEN}": {"nimbridge": {"context_window": 32768}}}
    _Models.seen_keys = []
    assert served_context_window(models_server, "k", QWEN, OVERRIDDEN) == 32768
    assert _Models.seen_keys == ["k"]


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"nimbridge": {"context_window": 0}}, id="zero"),
        pytest.param({"nimbridge": {"context_window": True}}, id="a-bool"),
        pytest.param({"nimbridge": {"context_window": "32768"}}, id="a-string"),
        pytest.param({"nimbridge": ["not", "facts"]}, id="facts-not-an-object"),
        pytest.param({"id": QWEN}, id="no-facts"),
    ],
)
def test_an_answer_without_a_window_falls_back_to_the_override(
    models_server: str, answer: dict[str, object]
) -> None:
    _Models.answers = {f"/v1/models/{QWEN}": answer}
    _Models.seen_keys = []
    assert served_context_window(models_server, None, QWEN, OVERRIDDEN) == 65536
    assert _Models.seen_keys == [None]  # no key, no header


def test_a_refusal_falls_back_to_the_override(models_server: str) -> None:
    _Models.answers = {}  # 404
    assert served_context_window(models_server, "k", QWEN, OVERRIDDEN) == 65536
