"""Requests through the live server land in the history (session and project included),
and `GET /v1/nimbridge/status` answers the status line, with the proxy key only."""

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

from app.config.history import HistoryWriter, recent_entries
from tests.integration.conftest import DEFAULT_MODEL, MakeProxy

SESSION = "9e135e1d-2a25-4148-987c-1ea8acc37485"


def _get(url: str, key: str | None) -> tuple[int, dict]:  # type: ignore[type-arg]
    request = urllib.request.Request(url)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _wait_for_rows(history: HistoryWriter, count: int) -> None:
    """The row is handed over just after the answer is sent: the client may be first."""
    deadline = time.monotonic() + 5
    while history.written < count and time.monotonic() < deadline:
        time.sleep(0.01)
    history.flush()


def test_requests_are_kept_with_session_and_project(make_proxy: MakeProxy, tmp_path: Path) -> None:
    history = HistoryWriter(tmp_path / "h.sqlite3", batch_window_s=0.01)
    proxy = make_proxy(history=history)
    project = "/home/ü/my project"
    client = proxy.client(
        default_headers={
            "X-Claude-Code-Session-Id": SESSION,
            "X-NimBridge-Project": quote(project),
        }
    )
    client.messages.create(
        model="claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    with client.messages.stream(
        model="claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        stream.get_final_message()
    status, body = _get(f"{proxy.url}/v1/nimbridge/status?session={SESSION}", proxy.client_key)
    assert status == 200
    assert body["session"]["requests"] == 2
    assert body["session"]["output_tokens"] > 0
    assert body["upstream_model"].startswith(DEFAULT_MODEL)
    assert body["pacing"]["requests_last_minute"] >= 2
    assert _get(f"{proxy.url}/v1/nimbridge/status", None)[0] == 401
    assert _get(f"{proxy.url}/v1/nimbridge/status", "wrong")[0] == 401
    health = _get(f"{proxy.url}/health", None)[1]
    assert SESSION not in json.dumps(health)  # unauthenticated: no session data
    _wait_for_rows(history, 2)
    history.close()
    rows = recent_entries(history.path, 10)
    assert [r.stream for r in rows] == [False, True]  # the status polls are not kept
    assert {r.session_id for r in rows} == {SESSION}
    assert {r.project for r in rows} == {project}
    assert rows[0].upstream_model == DEFAULT_MODEL and rows[0].provider == "nvidia"
    assert rows[0].status == 200 and rows[0].input_tokens and rows[0].ttfb_ms is not None


def test_status_seeds_a_session_from_the_history(make_proxy: MakeProxy, tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    first = HistoryWriter(path, batch_window_s=0.01)
    proxy = make_proxy(history=first)
    proxy.client(default_headers={"X-Claude-Code-Session-Id": SESSION}).messages.create(
        model="claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    _wait_for_rows(first, 1)
    first.close()
    again = HistoryWriter(path, batch_window_s=0.01)  # a restart: a new server, same file
    later = make_proxy(history=again)
    status, body = _get(f"{later.url}/v1/nimbridge/status?session={SESSION}", later.client_key)
    again.close()
    assert status == 200 and body["session"]["requests"] == 1
    assert body["session"]["input_tokens"] > 0
    unknown = _get(f"{later.url}/v1/nimbridge/status?session=nope", later.client_key)[1]
    assert unknown["session"] is None


def test_the_request_table_shows_requests_from_before_a_restart(tmp_path: Path) -> None:
    from dataclasses import replace

    from app.config.secrets import MemorySecretStore, ProviderKeys
    from app.config.settings import Settings
    from app.service import ProxyService
    from tests.unit.test_history import ENTRY

    path = tmp_path / "h.sqlite3"
    earlier = HistoryWriter(path, batch_window_s=0.01)
    now = time.time()
    earlier.submit(replace(ENTRY, request_id="req_yesterday", started_at=now - 86_400))
    earlier.submit(replace(ENTRY, request_id="req_today", started_at=now - 1, status=429))
    earlier.flush()
    earlier.close()
    history = HistoryWriter(path)
    service = ProxyService(
        Settings(), ProviderKeys(MemorySecretStore(), env={}), settings_path=None, history=history
    )
    history.close()
    rows = service.recent_requests()
    assert [r.request_id for r in rows] == ["req_yesterday", "req_today"]
    assert rows[1].upstream_model == "meta/llama-3.3-70b-instruct@nvidia"
    status = service.status()
    assert (status.requests_today, status.failed_today) == (1, 1)
