"""The real Claude Code CLI through `nimbridge code`, against a fake OpenAI upstream.

The fake upstream plays the model: asked with tools and no tool result yet, it
calls Claude Code's Bash tool to write a file; given the tool result, it
answers with a final text. Claude Code runs offline in print mode and really
runs the command. Needs the npm package @anthropic-ai/claude-code (`.ci/run`
installs it); skipped without it, except in CI.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from app.core.rechunk import MAX_SPREAD_S
from tests.fake_upstream import (
    FakeUpstream,
    LoopThread,
    Recorded,
    after,
    chunk,
    completion,
    reply_json,
    reply_stream,
    text_stream,
)
from tests.fake_web import TAVILY_KEY, running_fake_web

ROOT = Path(__file__).resolve().parents[2]
FINAL_TEXT = "Done: made.txt is written."


def claude_dir() -> str | None:
    for candidate in (os.environ.get("NIMBRIDGE_TEST_CLAUDE_DIR"), "/tmp/cc/node_modules/.bin"):
        if candidate and (Path(candidate) / "claude").exists():
            return candidate
    found = shutil.which("claude")
    return str(Path(found).parent) if found else None


def require_claude() -> str:
    """Claude Code's folder; a skip where it is missing, a failure in CI."""
    where = claude_dir()
    if where is None:
        why = "needs Claude Code (npm install -g @anthropic-ai/claude-code)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return where


def nimbridge_code_command(
    upstream: FakeUpstream,
    tmp_path: Path,
    where: str,
    claude_args: list[str],
    *,
    settings: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[Path, list[str], dict[str, str]]:
    """(work folder, argv, env) of `nimbridge code -- CLAUDE_ARGS` in a fresh folder and
    home, against the fake upstream."""
    work = tmp_path / "work"
    work.mkdir()
    config = tmp_path / "settings.json"
    config.write_text(
        json.dumps(
            {
                "providers": [{"name": "nvidia", "kind": "nvidia", "base_url": upstream.base_url}],
                "tiers": {"default": "fake/agent-model"},
                "port": 1,  # nothing answers there: `code` starts its own server
                **(settings or {}),
            }
        )
    )
    (tmp_path / "home").mkdir(exist_ok=True)
    extra_env = env or {}
    env = {
        **os.environ,
        "PATH": f"{where}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path / "home"),  # Claude Code's own state stays in the test's folder
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "NVIDIA_API_KEY": "nvapi-e2e-upstream-key-0000",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }
    env.pop("ANTHROPIC_API_KEY", None)
    env.update(extra_env)
    argv = [
        sys.executable,
        "-m",
        "app",
        "code",
        "--config",
        str(config),
        "--folder",
        str(work),
        "--",
        *claude_args,
    ]
    return work, argv, env


def run_nimbridge_code(
    upstream: FakeUpstream,
    tmp_path: Path,
    where: str,
    prompt: str,
    tools: str,
    *,
    settings: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """`nimbridge code -- -p PROMPT` in a fresh folder and home, against the fake upstream."""
    claude_args = ["-p", prompt, "--permission-mode", "acceptEdits", "--allowedTools", tools]
    work, argv, full_env = nimbridge_code_command(
        upstream, tmp_path, where, claude_args, settings=settings, env=env
    )
    result = subprocess.run(
        argv, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=180, check=False
    )
    return work, result


def tool_call_stream(body: dict[str, Any]) -> list[Any]:
    arguments = json.dumps(
        {"command": "echo made-by-nimbridge > made.txt", "description": "Write made.txt"}
    )
    return [
        chunk(body, {"role": "assistant", "content": "I'll write the file."}),
        chunk(
            body,
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_e2e_1",
                        "type": "function",
                        "function": {"name": "Bash", "arguments": ""},
                    }
                ]
            },
        ),
        chunk(body, {"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}),
        chunk(body, {}, finish_reason="tool_calls"),
        chunk(body, None, usage={"prompt_tokens": 900, "completion_tokens": 30}),
        "[DONE]",
    ]


async def agent(request: web.Request, record: Recorded) -> web.StreamResponse:
    """Decide from the conversation, so side requests (titles...) cannot steal the script."""
    body = record.body
    messages = body.get("messages", [])
    has_tools = any(t.get("function", {}).get("name") == "Bash" for t in body.get("tools", []))
    answered = any(m.get("role") == "tool" for m in messages)
    if has_tools and not answered:
        items = tool_call_stream(body)
    else:
        items = text_stream(body, FINAL_TEXT if answered else "ok")
    if body.get("stream"):
        return await reply_stream(items)(request, record)
    return web.json_response(
        {
            "id": "x",
            "object": "chat.completion",
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "ok"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1},
        }
    )


def test_claude_code_runs_a_tool_through_nimbridge(upstream: FakeUpstream, tmp_path: Path) -> None:
    where = require_claude()
    upstream.enqueue(*[agent] * 20)
    work, result = run_nimbridge_code(
        upstream, tmp_path, where, "Write made.txt please", "Bash Write"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (work / "made.txt").read_text().strip() == "made-by-nimbridge"
    assert FINAL_TEXT in result.stdout
    assert "Claude Code's models: default fake/agent-model, opus fake/agent-model" in (
        result.stderr
    )
    conversations = [r.body for r in upstream.chat_requests if r.body.get("tools")]
    tool_messages = [m for body in conversations for m in body["messages"] if m["role"] == "tool"]
    assert tool_messages and tool_messages[0]["tool_call_id"] == "call_e2e_1"
    sent = upstream.chat_requests[-1]
    assert sent.headers["Authorization"] == "Bearer nvapi-e2e-upstream-key-0000"
    assert "nvapi-e2e-upstream-key-0000" not in result.stdout + result.stderr


def bash_call(index: int, call_id: str, command: str) -> dict[str, Any]:
    arguments = json.dumps({"command": command, "description": "step"})
    return {
        "index": index,
        "id": call_id,
        "type": "function",
        "function": {"name": "Bash", "arguments": arguments},
    }


async def multi_step_agent(request: web.Request, record: Recorded) -> web.StreamResponse:
    """Step 1: two Bash calls at once (parallel); step 2: one more, using their files;
    step 3: a final answer that streams its reasoning first (thinking)."""
    body = record.body
    if not any(t.get("function", {}).get("name") == "Bash" for t in body.get("tools", [])):
        return await reply_stream(text_stream(body, "ok"))(request, record)
    results = sum(1 for m in body.get("messages", []) if m.get("role") == "tool")
    if results == 0:
        items: list[Any] = [
            chunk(body, {"role": "assistant", "content": ""}),
            chunk(
                body,
                {
                    "tool_calls": [
                        bash_call(0, "call_a", "echo alpha > a.txt"),
                        bash_call(1, "call_b", "echo beta > b.txt"),
                    ]
                },
            ),
            chunk(body, {}, finish_reason="tool_calls"),
            "[DONE]",
        ]
    elif results == 2:
        items = [
            chunk(body, {"role": "assistant", "content": ""}),
            chunk(body, {"tool_calls": [bash_call(0, "call_c", "cat a.txt b.txt > c.txt")]}),
            chunk(body, {}, finish_reason="tool_calls"),
            "[DONE]",
        ]
    else:
        items = [
            chunk(body, {"role": "assistant", "reasoning_content": "Both files are joined; "}),
            chunk(body, {"reasoning_content": "I can report now."}),
            *text_stream(body, "All three steps done.")[1:],
        ]
    return await reply_stream(items)(request, record)


def test_claude_code_multi_step_parallel_tools_and_thinking(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    where = require_claude()
    upstream.enqueue(*[multi_step_agent] * 30)
    work, result = run_nimbridge_code(upstream, tmp_path, where, "Do the three steps", "Bash")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (work / "c.txt").read_text().split() == ["alpha", "beta"]
    assert "All three steps done." in result.stdout
    last = [r.body for r in upstream.chat_requests if r.body.get("tools")][-1]
    tool_ids = [m["tool_call_id"] for m in last["messages"] if m["role"] == "tool"]
    assert tool_ids == ["call_a", "call_b", "call_c"]  # results in order, right after calls
    roles = [m["role"] for m in last["messages"]]
    assert roles.count("assistant") >= 2


# ------------------------------------------------------------------ WebSearch (issue 8)

SEARCH_QUERY = "python asyncio docs"
SEARCH_ANSWER = "Found it: the asyncio documentation at docs.python.org."


def _function_call(name: str, arguments: dict[str, Any], call_id: str) -> list[Any]:
    call = {"index": 0, "id": call_id, "type": "function"}
    return [
        {"tool_calls": [{**call, "function": {"name": name, "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": json.dumps(arguments)}}]},
    ]


async def searching_agent(request: web.Request, record: Recorded) -> web.StreamResponse:
    """Plays both models: Claude Code's main one (calls its WebSearch tool, then answers
    from what came back) and the one behind WebSearch (calls the web_search function
    NimBridge offers for the server tool, then sums up the results)."""
    body = record.body
    names = {t.get("function", {}).get("name") for t in body.get("tools", [])}
    answered = [m for m in body.get("messages", []) if m.get("role") == "tool"]
    deltas: list[Any]
    if "web_search" in names and not answered:
        deltas = _function_call("web_search", {"query": SEARCH_QUERY}, "call_search_1")
        finish = "tool_calls"
    elif "web_search" in names:
        deltas = [{"content": "Results: asyncio — Asynchronous I/O (docs.python.org)."}]
        finish = "stop"
    elif "WebSearch" in names and not answered:
        deltas = _function_call("WebSearch", {"query": SEARCH_QUERY}, "call_websearch_1")
        finish = "tool_calls"
    else:
        deltas = [{"content": SEARCH_ANSWER if answered else "ok"}]
        finish = "stop"
    items: list[Any] = [chunk(body, {"role": "assistant", "content": ""})]
    items += [chunk(body, delta) for delta in deltas]
    items += [
        chunk(body, {}, finish_reason=finish),
        chunk(body, None, usage={"prompt_tokens": 500, "completion_tokens": 20}),
        "[DONE]",
    ]
    if body.get("stream"):
        return await reply_stream(items)(request, record)
    return await agent(request, record)


def test_claude_code_web_search_through_nimbridge(
    upstream: FakeUpstream, tmp_path: Path, loop_thread: LoopThread
) -> None:
    where = require_claude()
    context = running_fake_web()
    fake_web = loop_thread.run(context.__aenter__())
    try:
        upstream.enqueue(*[searching_agent] * 30)
        work, result = run_nimbridge_code(
            upstream,
            tmp_path,
            where,
            f"Search the web for: {SEARCH_QUERY}",
            "WebSearch",
            settings={
                "web_search_backend": "tavily",
                "web_search_base_url": fake_web.url("/tavily"),
            },
            env={"TAVILY_API_KEY": TAVILY_KEY},
        )
    finally:
        loop_thread.run(context.__aexit__(None, None, None))
    assert result.returncode == 0, result.stdout + result.stderr
    assert SEARCH_ANSWER in result.stdout
    assert [r["body"]["query"] for r in fake_web.requests] == [SEARCH_QUERY]
    # What Claude Code handed its main model came from the fake backend's results.
    main = [r.body for r in upstream.chat_requests if "WebSearch" in str(r.body.get("tools"))]
    handed = [m["content"] for body in main for m in body["messages"] if m["role"] == "tool"]
    assert any("docs.python.org/3/library/asyncio.html" in str(text) for text in handed)
    assert TAVILY_KEY not in result.stdout + result.stderr


BURST = (
    "Smooth streams matter: a paragraph that arrives in one piece jumps onto the screen. " * 8
)[:600]


async def bursty_model(request: web.Request, record: Recorded) -> web.StreamResponse:
    """A model that thinks in silence, then sends its whole paragraph in one chunk."""
    body = record.body
    if not body.get("stream"):
        return web.json_response(completion(body, "ok"))
    if not body.get("tools"):  # Claude Code's side requests (titles...)
        return await reply_stream(text_stream(body, "ok"))(request, record)
    items = [
        chunk(body, {"role": "assistant", "content": BURST}),
        chunk(body, {}, finish_reason="stop"),
        chunk(body, None, usage={"prompt_tokens": 900, "completion_tokens": 150}),
        "[DONE]",
    ]
    return await reply_stream(items, delay=0.6)(request, record)  # silence after the burst


def test_claude_code_gets_a_burst_as_a_smooth_stream(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    """Claude Code's own stream events (`--include-partial-messages`), timed as its
    stdout gives them: the burst arrives as small deltas, spread over tens of ms."""
    where = require_claude()
    upstream.enqueue(*[bursty_model] * 10)
    claude_args = [
        "-p",
        "Tell me about smooth streams",
        "--output-format",
        "stream-json",
        "--include-partial-messages",
        "--verbose",
    ]
    _, argv, env = nimbridge_code_command(upstream, tmp_path, where, claude_args)
    arrivals: list[tuple[float, str]] = []
    lines: list[str] = []
    with subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as claude:
        assert claude.stdout is not None
        for line in claude.stdout:
            lines.append(line)
            event = json.loads(line).get("event", {}) if line.startswith("{") else {}
            delta = event.get("delta", {}) if event.get("type") == "content_block_delta" else {}
            if delta.get("type") == "text_delta":
                arrivals.append((time.monotonic(), delta["text"]))
        _, stderr = claude.communicate(timeout=180)
    assert claude.returncode == 0, "".join(lines) + stderr
    assert "".join(text for _, text in arrivals) == BURST  # whole, in order
    assert len(arrivals) >= 600 // 24 and max(len(text) for _, text in arrivals) <= 24
    spread = arrivals[-1][0] - arrivals[0][0]
    # Spread out (unspread, the same pieces come within ~7 ms), and before the silence ends.
    assert MAX_SPREAD_S * 0.3 <= spread < 0.5


# ------------------------------------------------------------------ /model and proxies

QWEN = "qwen/qwen3-coder-480b-a35b-instruct"
# The log line of Claude Code's start-up discovery request, with its total time.
DISCOVERY_LOG = re.compile(r"GET /v1/models\?limit=1000 200 total=(\d+)ms")


def dead_port() -> int:
    """A loopback port nothing listens on: a proxy there refuses every connection."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def gateway_models_cache(tmp_path: Path) -> list[dict[str, Any]]:
    """What Claude Code kept from the discovery answer for its `/model` picker."""
    cache = tmp_path / "home" / ".claude" / "cache" / "gateway-models.json"
    models: list[dict[str, Any]] = json.loads(cache.read_text())["models"]
    return models


def test_claude_code_discovers_nimbridges_models_within_3_s_of_a_slow_upstream(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    """With the env `nimbridge code` sets, Claude Code asks GET /v1/models?limit=1000 at
    start; NimBridge answers in time even though the upstream's list takes 5 s, and
    Claude Code keeps the gateway ids (its `/model` picker's cache)."""
    where = require_claude()
    slow = after(5.0, reply_json({"object": "list", "data": upstream.models}))
    upstream.models_queue.extend([slow] * 3)  # the start-up prefetch's and the next
    # Claude Code exits after its answer, cutting discovery short: answer after 3 s.
    upstream.enqueue(*[after(3.0, agent)] * 5)
    _, result = run_nimbridge_code(
        upstream, tmp_path, where, "hello", "Bash", settings={"log_level": "INFO"}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    found = DISCOVERY_LOG.search(result.stderr)
    assert found is not None, result.stderr
    assert int(found[1]) < 3000
    kept = {m["id"]: m["display_name"] for m in gateway_models_cache(tmp_path)}
    # The upstream's list was late: the tier model is what was known.
    assert kept == {"claude-nim/nvidia/fake/agent-model": "Agent Model · NVIDIA"}


def test_claude_code_runs_a_gateway_model_past_a_dead_proxy(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    """`--model claude-nim/nvidia/<id>` reaches that upstream model, with HTTP(S)_PROXY
    pointing at a dead port both in the environment and in Claude Code's own settings
    file (whose NO_PROXY would replace the environment's)."""
    where = require_claude()
    proxy = f"http://127.0.0.1:{dead_port()}"
    claude_config = tmp_path / "home" / ".claude"
    claude_config.mkdir(parents=True)
    (claude_config / "settings.json").write_text(
        json.dumps({"env": {"HTTPS_PROXY": proxy, "NO_PROXY": "corp.example"}})
    )
    env = {"HTTPS_PROXY": proxy, "HTTP_PROXY": proxy, "https_proxy": proxy, "http_proxy": proxy}
    work, argv, full_env = nimbridge_code_command(
        upstream,
        tmp_path,
        where,
        ["-p", "hello", "--model", f"claude-nim/nvidia/{QWEN}"],
        env=env,
    )
    result = subprocess.run(
        argv, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("You said:")  # the fake upstream's default answer
    assert [r.body["model"] for r in upstream.chat_requests] == [QWEN] * len(upstream.chat_requests)
    assert upstream.chat_requests
    assert {m["id"] for m in gateway_models_cache(tmp_path)} == {
        "claude-nim/nvidia/meta/llama-3.3-70b-instruct",
        f"claude-nim/nvidia/{QWEN}",
    }
