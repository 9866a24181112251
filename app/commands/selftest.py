"""`nimbridge selftest`: prove this installation works, offline, in a few seconds.

Runs the real server on a free loopback port against a tiny OpenAI-compatible
upstream served in this process, checks /health and a translated request
(plain and streamed), then reports the keyring backend and the Qt platform
plugins found. Works the same in a PyInstaller bundle, which is what it is
for: a frozen build that lost a hidden import fails here, not on a user's desk.
Exit 0 when nothing failed; otherwise the failing line names what.
"""

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

import aiohttp
from aiohttp import web

from app import __version__
from app.commands.doctor import Finding, Verdict
from app.config.secrets import MemorySecretStore, ProviderKeys
from app.config.settings import Settings
from app.server.app import ProxyServer
from app.server.event_loop import loop_name, new_server_loop

ANSWER = "selftest answer"


def _completion(stream: bool) -> bytes:
    if not stream:
        return json.dumps(
            {
                "id": "c",
                "object": "chat.completion",
                "created": 0,
                "model": "selftest",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": ANSWER},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2},
            }
        ).encode()
    chunks = [{"role": "assistant", "content": ""}, {"content": ANSWER}, {}]
    events = [
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "selftest",
            "choices": [
                {"index": 0, "delta": delta, "finish_reason": "stop" if not delta else None}
            ],
        }
        for delta in chunks
    ]
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + (
        b"data: [DONE]\n\n"
    )


async def _fake_upstream() -> tuple[web.AppRunner, str]:
    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        stream = bool(body.get("stream"))
        return web.Response(
            body=_completion(stream),
            content_type="text/event-stream" if stream else "application/json",
        )

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "selftest/model"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/v1"


async def check_server() -> list[Finding]:
    findings: list[Finding] = []
    upstream, upstream_url = await _fake_upstream()
    keys = ProviderKeys(MemorySecretStore(), env={})
    keys.set("nvidia", "selftest-key")
    settings = Settings(host="127.0.0.1", port=0, catalog_ttl_s=60).with_overrides(
        upstream_url=upstream_url, model="selftest/model"
    )
    server = ProxyServer(settings, keys, "selftest-proxy-key")
    try:
        base_url = await server.start()
        # The loop `serve` runs on too: a bundle without uvloop shows asyncio's here.
        loop = loop_name(asyncio.get_running_loop())
        findings.append(Finding(Verdict.OK, "server", f"listening on {base_url} ({loop})"))
        headers = {"x-api-key": "selftest-proxy-key", "anthropic-version": "2023-06-01"}
        request: dict[str, Any] = {
            "model": "claude-sonnet-4-6",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "hi"}],
        }
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
            async with http.get(f"{base_url}/health") as response:
                health = await response.json()
            findings.append(
                _finding(
                    "/health",
                    health.get("status") == "ok",
                    f"status {health.get('status')}, version {__version__}",
                )
            )
            async with http.post(
                f"{base_url}/v1/messages", json=request, headers=headers
            ) as response:
                message = await response.json()
            text = "".join(b.get("text", "") for b in message.get("content", []))
            findings.append(
                _finding(
                    "translated request", text == ANSWER, f"HTTP {response.status}, answer {text!r}"
                )
            )
            async with http.post(
                f"{base_url}/v1/messages", json={**request, "stream": True}, headers=headers
            ) as response:
                raw = await response.text()
            streamed = "event: message_stop" in raw and ANSWER in raw
            findings.append(
                _finding(
                    "streamed request",
                    streamed,
                    "message_start ... message_stop" if streamed else raw[:200],
                )
            )
    except (OSError, aiohttp.ClientError, ValueError) as exc:
        findings.append(Finding(Verdict.FAIL, "server", f"{exc.__class__.__name__}: {exc}"))
    finally:
        await server.stop()
        await upstream.cleanup()
    return findings


def _finding(subject: str, ok: bool, words: str) -> Finding:
    return Finding(Verdict.OK if ok else Verdict.FAIL, subject, words)


def check_keyring() -> Finding:
    try:
        import keyring

        backend = keyring.get_keyring()
    except Exception as exc:  # a broken bundle is exactly what this reports
        return Finding(Verdict.FAIL, "keyring", f"cannot load keyring: {exc}")
    name = f"{type(backend).__module__}.{type(backend).__name__}"
    priority = getattr(backend, "priority", 0)
    if priority >= 1:
        return Finding(Verdict.OK, "keyring backend", f"{name} (priority {priority:g})")
    return Finding(
        Verdict.WARN,
        "keyring backend",
        f"{name}: no secure keychain here; keys would stay in memory for a run",
    )


# The plugin each desktop needs to show the tray icon: a bundle without it starts
# headless at best.
DESKTOP_PLUGIN = {"win32": "windows", "darwin": "cocoa"}


def check_qt_plugins(plugins: list[str], platform: str = sys.platform) -> Finding:
    needed = DESKTOP_PLUGIN.get(platform, "xcb")
    found = ", ".join(plugins) or "none"
    if needed not in plugins:
        return Finding(Verdict.FAIL, "Qt platform plugins", f"{found}; missing {needed!r}")
    return Finding(Verdict.OK, "Qt platform plugins", found)


def run_selftest(qt_plugins: Callable[[], list[str]], out: TextIO = sys.stdout) -> int:
    findings = asyncio.run(check_server(), loop_factory=new_server_loop)
    findings.append(check_keyring())
    try:
        plugins = qt_plugins()
    except Exception as exc:  # idem: a missing Qt library must be named, not crash
        findings.append(Finding(Verdict.FAIL, "Qt", f"cannot load Qt: {exc}"))
    else:
        findings.append(check_qt_plugins(plugins))
    for finding in findings:
        print(finding.line(), file=out)
    failed = [f for f in findings if f.verdict is Verdict.FAIL]
    print("selftest passed" if not failed else f"selftest FAILED: {failed[0].subject}", file=out)
    return 1 if failed else 0
