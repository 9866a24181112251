"""ProxyService on qasync's event loop, as the tray app runs it: start, a real SDK request,
the request feed and its redacted detail, stop frees the port."""

import asyncio
import json
import socket
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anthropic
import pytest
from PySide6.QtWidgets import QApplication

from app.config.secrets import MemorySecretStore, ProviderKeys
from app.config.settings import Settings, load_settings
from app.core.rechunk import MAX_SPREAD_S
from app.logs import LogBuffer
from app.service import ProxyService, RequestSummary, ServerState, ServiceStatus
from app.ui.qt_loop import QtEventLoop
from tests.fake_upstream import FakeUpstream, chunk, reply_stream, text_stream

KEY = "nvapi-service-test-key-0123456789"


@pytest.fixture
def qasync_loop(qapp: QApplication) -> Iterator[asyncio.AbstractEventLoop]:
    loop = QtEventLoop(qapp)  # the app's own qasync loop
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()  # DESKTOP.md: an unclosed loop breaks the next test's teardown
    asyncio.set_event_loop(None)


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def server_can_listen(port: int) -> bool:
    """Whether a new server could listen on `port` now. Like every server (aiohttp's too)
    it sets SO_REUSEADDR: the connections our stop closed linger in TIME_WAIT, and
    without the option those alone would keep the port "in use" for a minute."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


def test_service_runs_the_server_on_the_qt_loop(
    qasync_loop: asyncio.AbstractEventLoop, upstream: FakeUpstream, tmp_path: Path
) -> None:
    keys = ProviderKeys(MemorySecretStore(), env={})
    keys.set("nvidia", KEY)
    settings_path = tmp_path / "settings.json"
    settings = Settings(host="127.0.0.1", port=0).with_overrides(
        upstream_url=upstream.base_url, model="fake/model"
    )
    buffer = LogBuffer()
    service = ProxyService(settings, keys, settings_path=settings_path, log_buffer=buffer)
    statuses: list[ServiceStatus] = []
    rows: list[RequestSummary] = []
    service.subscribe_status(statuses.append)
    service.subscribe_requests(rows.append)

    async def scenario() -> None:
        await service.start()
        status = service.status()
        assert status.state is ServerState.RUNNING and status.base_url
        client = anthropic.AsyncAnthropic(base_url=status.base_url, api_key="x", max_retries=0)
        message = await client.messages.create(
            model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
        await client.close()
        assert message.content[0].type == "text"
        port = int(status.base_url.rsplit(":", 1)[1])
        await service.stop()
        assert service.status().state is ServerState.STOPPED
        assert port_is_free(port)

    qasync_loop.run_until_complete(asyncio.wait_for(scenario(), 30))

    assert [r.client_model for r in rows] == ["claude-sonnet-4-6"]
    row = rows[0]
    assert row.status == 200 and row.upstream_model == "fake/model@nvidia"
    assert row.input_tokens and row.output_tokens and row.duration_ms >= 0
    assert service.status().requests_today == 1
    assert any(s.in_flight == 1 for s in statuses)  # the busy state was shown
    detail = service.request_detail(row.request_id)
    assert detail is not None
    assert '"claude-sonnet-4-6"' in detail.client_request
    assert '"fake/model"' in detail.upstream_request and "You said: hi" in detail.upstream_response
    assert "$NVIDIA_API_KEY" in detail.curl and KEY not in detail.curl + detail.upstream_request
    assert detail.curl.startswith(f"curl -sS {upstream.base_url}/chat/completions \\\n")


def test_request_detail_keeps_the_duration_it_finished_with(
    qasync_loop: asyncio.AbstractEventLoop, upstream: FakeUpstream
) -> None:
    """Opened a while later (or again), the detail shows how long the request took,
    not how long ago it started."""
    settings = Settings(port=0).with_overrides(upstream_url=upstream.base_url, model="fake/model")
    keys = ProviderKeys(MemorySecretStore(), env={})
    keys.set("nvidia", KEY)
    service = ProxyService(settings, keys, settings_path=None)
    rows: list[RequestSummary] = []
    service.subscribe_requests(rows.append)

    async def scenario() -> None:
        await service.start()
        base_url = service.status().base_url
        assert base_url
        client = anthropic.AsyncAnthropic(base_url=base_url, api_key="x", max_retries=0)
        await client.messages.create(
            model="claude-sonnet-4-6", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
        await client.close()
        await asyncio.sleep(0.6)  # the user opens the details a little later
        first = service.request_detail(rows[0].request_id)
        await asyncio.sleep(0.3)  # ... and again
        again = service.request_detail(rows[0].request_id)
        assert first is not None and again is not None
        assert first.summary.duration_ms == again.summary.duration_ms == rows[0].duration_ms
        assert rows[0].duration_ms < 500
        await service.stop()

    qasync_loop.run_until_complete(asyncio.wait_for(scenario(), 30))


@pytest.mark.allow_warnings  # the refusal to start is logged, on purpose
def test_port_taken_is_an_error_status_in_words(
    qasync_loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = ProxyService(
            Settings(port=port), ProviderKeys(MemorySecretStore(), env={}), settings_path=None
        )
        qasync_loop.run_until_complete(service.start())
    status = service.status()
    assert status.state is ServerState.ERROR and status.health.value == "error"
    assert status.last_error
    assert status.last_error.startswith(f"Port {port} on 127.0.0.1 is taken by another program")
    assert "choose another port in Settings → Server → Port" in status.last_error
    assert "bind" not in status.last_error  # the OS's words stay in the log
    offered = int(status.last_error.rsplit("(", 1)[1].split()[0])  # "... (8788 is free now)."
    assert offered > port
    assert status.needs_key  # no NVIDIA key anywhere: the tray says so


def test_apply_settings_saves_and_restarts(
    qasync_loop: asyncio.AbstractEventLoop, upstream: FakeUpstream, tmp_path: Path
) -> None:
    path = tmp_path / "settings.json"
    settings = Settings(port=0).with_overrides(upstream_url=upstream.base_url)
    service = ProxyService(settings, ProviderKeys(MemorySecretStore(), env={}), settings_path=path)

    async def scenario() -> None:
        await service.start()
        first = service.status().base_url
        assert first
        client = anthropic.AsyncAnthropic(base_url=first, api_key="x", max_retries=0)
        changed = settings.with_overrides(model="other/model")
        await service.apply_settings(changed)  # a tier: live, no restart
        assert service.status().base_url == first
        await client.messages.create(
            model="claude-sonnet-4-6", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
        assert upstream.chat_requests[-1].body["model"] == "other/model"
        await service.apply_settings(changed.with_overrides(port=0, read_timeout_s=300.0))
        assert service.status().state is ServerState.RUNNING  # restarted for a timeout
        await client.close()
        await service.stop()

    qasync_loop.run_until_complete(asyncio.wait_for(scenario(), 30))
    assert load_settings(path).tiers.default == "other/model"


@pytest.mark.allow_warnings  # the stream cut by the stop is logged as a warning
def test_stop_on_the_qt_loop_ends_a_long_stream_with_an_error_and_frees_the_port(
    qasync_loop: asyncio.AbstractEventLoop, upstream: FakeUpstream
) -> None:
    """What the tray's Stop and Quit await: the grace, then an error event, then the port."""
    words = " ".join(f"w{n}" for n in range(400))
    upstream.enqueue(reply_stream(lambda b: text_stream(b, words, pieces=400), delay=0.05))
    settings = Settings(port=0, shutdown_grace_s=0.3).with_overrides(upstream_url=upstream.base_url)
    service = ProxyService(settings, ProviderKeys(MemorySecretStore(), env={}), settings_path=None)

    async def scenario() -> None:
        await service.start()
        url = service.status().base_url
        assert url
        client = anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0)
        stopping: asyncio.Task[None] | None = None
        received = ""
        with pytest.raises(anthropic.APIStatusError, match="NimBridge is stopping"):
            async with client.messages.stream(
                model="claude-sonnet-4-6", max_tokens=5, messages=[{"role": "user", "content": "x"}]
            ) as stream:
                async for text in stream.text_stream:
                    if stopping is None:
                        stopping = asyncio.ensure_future(service.stop())
                    received += text
        assert stopping is not None
        await stopping
        await client.close()
        assert received.startswith("w0") and not received.endswith("w399")
        assert service.status().state is ServerState.STOPPED
        assert server_can_listen(int(url.rsplit(":", 1)[1]))

    qasync_loop.run_until_complete(asyncio.wait_for(scenario(), 30))


def test_regenerated_proxy_key_is_kept_and_required(
    qasync_loop: asyncio.AbstractEventLoop, upstream: FakeUpstream, tmp_path: Path
) -> None:
    store = MemorySecretStore()
    keys = ProviderKeys(store, env={})
    settings = Settings(port=0).with_overrides(upstream_url=upstream.base_url)
    service = ProxyService(settings, keys, settings_path=None)
    assert service.status().proxy_key is None  # none yet: clients' own keys pass through

    async def scenario() -> str:
        await service.start()
        key = await service.regenerate_proxy_key()
        base_url = service.status().base_url
        assert service.status().state is ServerState.RUNNING and base_url
        refused = anthropic.AsyncAnthropic(base_url=base_url, api_key="wrong", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError):
            await refused.messages.create(
                model="claude-sonnet-4-6", max_tokens=5, messages=[{"role": "user", "content": "x"}]
            )
        await refused.close()
        allowed = anthropic.AsyncAnthropic(base_url=base_url, api_key=key, max_retries=0)
        await allowed.messages.create(
            model="claude-sonnet-4-6", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
        await allowed.close()
        await service.stop()
        return key

    key = qasync_loop.run_until_complete(asyncio.wait_for(scenario(), 30))
    assert len(key) >= 32 and store.get("nimbridge-proxy-key") == key
    again = ProxyService(settings, ProviderKeys(store, env={}), settings_path=None)
    assert again.status().proxy_key == key  # kept in the keychain for the next start
    assert key in keys.known_secrets()  # masked in logs


def test_tray_service_makes_a_proxy_key_and_keeps_it_in_the_keychain() -> None:
    store = MemorySecretStore()
    keys = ProviderKeys(store, env={})
    plain = ProxyService(Settings(), keys, settings_path=None)
    assert plain.status().proxy_key is None  # `serve`-like use: nothing invented
    tray = ProxyService(Settings(), keys, settings_path=None, generate_proxy_key=True)
    first = tray.status().proxy_key
    assert first and len(first) >= 32 and store.get("nimbridge-proxy-key") == first
    again = ProxyService(Settings(), keys, settings_path=None, generate_proxy_key=True)
    assert again.status().proxy_key == first  # the next start, and `nimbridge code`, find it
    explicit = ProxyService(
        Settings(), keys, settings_path=None, proxy_key="from-flag", generate_proxy_key=True
    )
    assert explicit.status().proxy_key == "from-flag"  # --proxy-key / the env win


def test_pass_through_is_an_explicit_choice_that_applies_live(
    qasync_loop: asyncio.AbstractEventLoop, upstream: FakeUpstream
) -> None:
    keys = ProviderKeys(MemorySecretStore(), env={})
    settings = Settings(port=0).with_overrides(upstream_url=upstream.base_url)
    service = ProxyService(settings, keys, settings_path=None, generate_proxy_key=True)
    key = service.status().proxy_key
    assert key

    async def status_of(api_key: str) -> int:
        base_url = service.status().base_url
        client = anthropic.AsyncAnthropic(base_url=base_url, api_key=api_key, max_retries=0)
        try:
            await client.messages.create(
                model="claude-sonnet-4-6", max_tokens=5, messages=[{"role": "user", "content": "x"}]
            )
            return 200
        except anthropic.APIStatusError as exc:
            return exc.status_code
        finally:
            await client.close()

    async def scenario() -> None:
        await service.start()
        assert await status_of("sk-clients-own") == 401  # by default the proxy key is asked
        await service.apply_settings(replace(settings, pass_client_keys=True))
        assert service.status().proxy_key is None
        assert await status_of("sk-clients-own") == 200
        assert upstream.chat_requests[-1].headers["Authorization"] == "Bearer sk-clients-own"
        await service.apply_settings(settings)
        assert service.status().proxy_key == key  # the same key comes back from the keychain
        assert await status_of("sk-clients-own") == 401
        assert await status_of(key) == 200
        await service.stop()

    qasync_loop.run_until_complete(asyncio.wait_for(scenario(), 30))


def test_a_keychain_problem_is_in_the_status() -> None:
    problem = "Secret Service (GNOME Keyring) is locked"
    keys = ProviderKeys(MemorySecretStore(problem=problem), env={})
    service = ProxyService(Settings(), keys, settings_path=None, generate_proxy_key=True)
    assert service.status().keychain_problem == problem
    assert service.status().proxy_key  # the app still works, with a key for this run
    fine = ProxyService(Settings(), ProviderKeys(MemorySecretStore(), env={}), settings_path=None)
    assert fine.status().keychain_problem is None


# A client in its own process reading the raw stream as it comes: the text, and when
# each text piece arrived (an SDK's first-use costs would blur the first arrivals).
STREAM_READER = """
import http.client, json, sys, time
from urllib.parse import urlsplit
url = urlsplit(sys.argv[1])
body = {"model": "claude-sonnet-4-6", "max_tokens": 500, "stream": True,
        "messages": [{"role": "user", "content": "x"}]}
connection = http.client.HTTPConnection(url.hostname, url.port, timeout=20)
connection.request("POST", "/v1/messages", json.dumps(body),
                   {"content-type": "application/json", "x-api-key": "x"})
response = connection.getresponse()
assert response.status == 200, response.status
buffer, texts, arrivals = b"", [], []
while data := response.read1(65536):
    buffer += data
    *events, buffer = buffer.split(b"\\n\\n")
    for event in events:
        for line in event.split(b"\\n"):
            if line.startswith(b"data: "):
                payload = json.loads(line[6:])
                if payload.get("delta", {}).get("type") == "text_delta":
                    texts.append(payload["delta"]["text"])
                    arrivals.append(time.monotonic())
print(json.dumps({"text": "".join(texts), "arrivals": arrivals}))
"""


def test_a_burst_is_spread_on_the_qt_loop_and_the_text_is_whole(
    qasync_loop: asyncio.AbstractEventLoop, upstream: FakeUpstream
) -> None:
    """Smooth deltas' timers on the tray's own loop: pieces arrive spread, text exact."""
    paragraph = ("The résumé says 👩‍💻 works, and 🇫🇷 too. " * 20)[:600]

    def burst(body: dict[str, Any]) -> list[Any]:
        return [chunk(body, {"role": "assistant", "content": paragraph})]

    def finish(body: dict[str, Any]) -> list[Any]:
        return [chunk(body, {}, finish_reason="stop"), "[DONE]"]

    # The burst, then a silent upstream (hang) before the rest arrives.
    upstream.enqueue(reply_stream(lambda b: [*burst(b), *finish(b)], delay=0.6))
    settings = Settings(port=0).with_overrides(upstream_url=upstream.base_url)
    service = ProxyService(settings, ProviderKeys(MemorySecretStore(), env={}), settings_path=None)
    arrivals: list[float] = []

    async def read_as_claude_code_would(url: str) -> dict[str, Any]:
        """In another process, as Claude Code is: a client thread in this one would
        hold the GIL against the loop's timers, and its own loop would be the tray's."""
        reader = await asyncio.create_subprocess_exec(
            sys.executable, "-c", STREAM_READER, url, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await reader.communicate()
        assert reader.returncode == 0
        result: dict[str, Any] = json.loads(out)
        return result

    async def scenario() -> str:
        await service.start()
        url = service.status().base_url
        assert url
        result = await read_as_claude_code_would(url)
        await service.stop()
        arrivals.extend(result["arrivals"])
        text: str = result["text"]
        return text

    text = qasync_loop.run_until_complete(asyncio.wait_for(scenario(), 60))
    assert text == paragraph
    assert len(arrivals) >= 600 // 24
    # The pieces leave over ~48 ms (Qt timers never fire early); a reader descheduled on a
    # loaded machine reads the first ones late, hence the low bound. Unspread, all come
    # within a few ms.
    assert MAX_SPREAD_S * 0.3 <= arrivals[-1] - arrivals[0] < 0.5  # before the silence ends
