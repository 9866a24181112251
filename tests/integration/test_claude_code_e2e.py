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


def _claude_dirs() -> list[str | None]:
    """The Claude Code folders to test with: `.ci/run` names the pinned version's and the
    newest's (NIMBRIDGE_TEST_CLAUDE_DIRS); elsewhere whichever one `claude_dir` finds."""
    named = os.environ.get("NIMBRIDGE_TEST_CLAUDE_DIRS", "")
    return [folder for folder in named.split(os.pathsep) if folder] or [None]


def _version_id(folder: str | None) -> str:
    # .ci/run installs each version under a folder named claude-code-VERSION
    found = next((p.name for p in Path(folder or ".").parents if "claude-code-" in p.name), "")
    return found.removeprefix("claude-code-") or "found"


@pytest.fixture(autouse=True, params=_claude_dirs(), ids=_version_id)
def claude_code_version(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here runs once per Claude Code version CI installed (pinned and newest)."""
    if request.param is not None:
        monkeypatch.setenv("NIMBRIDGE_TEST_CLAUDE_DIR", request.param)


def claude_dir() -> str | None:
    # Outside this module's fixture (tests elsewhere that borrow require_claude): the
    # newest of the versions CI installed.
    newest = [folder for folder in reversed(_claude_dirs()) if folder is not None][:1]
    candidates = (os.environ.get("NIMBRIDGE_TEST_CLAUDE_DIR"), *newest, "/tmp/cc/node_modules/.bin")
    for candidate in candidates:
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
        "XDG_STATE_HOME": str(tmp_path / "state"),  # where `code` keeps its log
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
    # Claude Code's terminal got none of the server's log lines: they are in the file.
    log = code_log(tmp_path).read_text()
    assert "POST /v1/messages" in log and "POST /v1/messages" not in result.stderr
    assert "nvapi-e2e-upstream-key-0000" not in log
    assert result.stderr.rstrip().endswith(
        f"no problems during the session; the log is {code_log(tmp_path)}"
    )


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
    """Plays both models: Claude Code's main one (loads its deferred WebSearch tool
    through ToolSearch, calls it, then answers from what came back) and the one behind
    WebSearch (calls the web_search function NimBridge offers for the server tool,
    then sums up the results)."""
    body = record.body
    names = {t.get("function", {}).get("name") for t in body.get("tools", [])}
    answered = [m for m in body.get("messages", []) if m.get("role") == "tool"]
    searched = any(m.get("tool_call_id") == "call_websearch_1" for m in answered)
    deltas: list[Any]
    if "web_search" in names and not answered:
        deltas = _function_call("web_search", {"query": SEARCH_QUERY}, "call_search_1")
        finish = "tool_calls"
    elif "web_search" in names:
        deltas = [{"content": "Results: asyncio — Asynchronous I/O (docs.python.org)."}]
        finish = "stop"
    elif "WebSearch" in names and not searched:
        deltas = _function_call("WebSearch", {"query": SEARCH_QUERY}, "call_websearch_1")
        finish = "tool_calls"
    elif "ToolSearch" in names and not answered:  # 2.1.332 defers WebSearch: load it first
        deltas = _function_call("ToolSearch", {"query": "select:WebSearch"}, "call_load_1")
        finish = "tool_calls"
    else:
        deltas = [{"content": SEARCH_ANSWER if searched else "ok"}]
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


# ------------------------------------------------------------------ deferred tools (issue 15)

NOTEBOOK_CELL_ID = "cell-a"
NOTEBOOK_EDITED_SOURCE = "print('edited through nimbridge')"
NOTEBOOK_ANSWER = "The notebook cell is replaced."


def notebook(source: str) -> dict[str, Any]:
    return {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": NOTEBOOK_CELL_ID,
                "metadata": {},
                "outputs": [],
                "source": [source],
            }
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def loaded_schema(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    """A tool's schema as the conversation loaded it: from a `<functions>` block in a
    tool message (Claude Code's text form), else from what the upstream is offered
    (the API form: Claude Code answered with tool_reference blocks)."""
    for message in body.get("messages", []):
        text = message.get("content") if message.get("role") == "tool" else None
        for line in text.splitlines() if isinstance(text, str) else ():
            if line.startswith("<function>") and line.endswith("</function>"):
                spec = json.loads(line[len("<function>") : -len("</function>")])
                if spec.get("name") == name:
                    return dict(spec["parameters"])
    for tool in body.get("tools", []):
        if tool.get("function", {}).get("name") == name:
            return dict(tool["function"]["parameters"])
    return None


def notebook_agent(notebook_path: Path) -> Any:
    """ToolSearch (select:NotebookEdit), then Read of the notebook (NotebookEdit wants it
    read first), then NotebookEdit with arguments fitted to the loaded schema, then an
    answer. Each step is decided from the conversation: side requests (titles...)
    carry no ToolSearch and get a plain answer."""

    async def behave(request: web.Request, record: Recorded) -> web.StreamResponse:
        body = record.body
        names = {t.get("function", {}).get("name") for t in body.get("tools", [])}
        answered = {m.get("tool_call_id") for m in body.get("messages", []) if m["role"] == "tool"}
        deltas: list[Any] = []
        finish = "tool_calls"
        if "ToolSearch" not in names:
            deltas, finish = [{"content": "ok"}], "stop"
        elif "call_search" not in answered:
            deltas = _function_call("ToolSearch", {"query": "select:NotebookEdit"}, "call_search")
        elif "call_read" not in answered:
            deltas = _function_call("Read", {"file_path": str(notebook_path)}, "call_read")
        elif "call_edit" not in answered:
            schema = loaded_schema(body, "NotebookEdit")
            if schema is None:
                deltas, finish = [{"content": "NotebookEdit was never loaded"}], "stop"
            else:
                wanted = {
                    "notebook_path": str(notebook_path),
                    "cell_id": NOTEBOOK_CELL_ID,
                    "new_source": NOTEBOOK_EDITED_SOURCE,
                    "edit_mode": "replace",
                }
                properties = schema.get("properties", {})
                arguments = {key: value for key, value in wanted.items() if key in properties}
                deltas = _function_call("NotebookEdit", arguments, "call_edit")
        else:
            deltas, finish = [{"content": NOTEBOOK_ANSWER}], "stop"
        items: list[Any] = [chunk(body, {"role": "assistant", "content": ""})]
        items += [chunk(body, delta) for delta in deltas]
        items += [
            chunk(body, {}, finish_reason=finish),
            chunk(body, None, usage={"prompt_tokens": 700, "completion_tokens": 20}),
            "[DONE]",
        ]
        if body.get("stream"):
            return await reply_stream(items)(request, record)
        return web.json_response(completion(body, "ok"))

    return behave


def test_claude_code_loads_a_deferred_tool_through_nimbridge(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    """Claude Code 2.1.332 defers NotebookEdit behind ToolSearch (also through
    `nimbridge code`, no setting needed): the upstream is offered it, with its schema,
    once the conversation loaded it, and never the DeferredToolPlaceholder."""
    where = require_claude()
    claude_args = [
        "-p",
        "Replace the code in nb.ipynb",
        "--permission-mode",
        "acceptEdits",
        "--allowedTools",
        "ToolSearch Read NotebookEdit",
    ]
    work, argv, env = nimbridge_code_command(upstream, tmp_path, where, claude_args)
    notebook_path = work / "nb.ipynb"
    notebook_path.write_text(json.dumps(notebook("print('before')"), indent=1))
    upstream.enqueue(*[notebook_agent(notebook_path)] * 30)
    result = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert NOTEBOOK_ANSWER in result.stdout
    cells = json.loads(notebook_path.read_text())["cells"]
    assert "".join(cells[0]["source"]) == NOTEBOOK_EDITED_SOURCE

    main = [r.body for r in upstream.chat_requests if r.body.get("tools")]
    offered = [[t["function"]["name"] for t in body["tools"]] for body in main]
    assert offered and all("DeferredToolPlaceholder" not in names for names in offered)
    assert "NotebookEdit" not in offered[0]  # deferred: only named in a system-reminder
    after_search = next(
        body
        for body in main
        if any(m.get("tool_call_id") == "call_search" for m in body["messages"])
    )
    search_result = next(
        m["content"] for m in after_search["messages"] if m.get("tool_call_id") == "call_search"
    )
    # 2.1.332 answers with tool_reference blocks (the API form) for a model it does not
    # know; the `<functions>` text form is for models it lists as without tool_reference.
    assert search_result == "Tool NotebookEdit is now available." or search_result.startswith(
        "<functions>"
    )
    notebook_tool = next(
        t["function"] for t in after_search["tools"] if t["function"]["name"] == "NotebookEdit"
    )
    assert {"notebook_path", "new_source", "cell_id"} <= set(
        notebook_tool["parameters"]["properties"]
    )
    assert "notebook_path" in notebook_tool["parameters"]["required"]
    # Loaded tools come after the eager ones, and stay in place as the conversation grows.
    later = [names for names in offered if "NotebookEdit" in names]
    assert later and all(names == later[0] for names in later)
    assert later[0][-1] == "NotebookEdit"


# ------------------------------------------------------------------ /model and proxies

QWEN = "qwen/qwen3-coder-480b-a35b-instruct"
# The log line of Claude Code's start-up discovery request, with its total time.
DISCOVERY_LOG = re.compile(r"GET /v1/models\?limit=1000 200 total=(\d+)ms")


def dead_port() -> int:
    """A loopback port nothing listens on: a proxy there refuses every connection."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def code_log(tmp_path: Path) -> Path:
    """The log `nimbridge code` wrote (nimbridge_code_command's XDG_STATE_HOME)."""
    return tmp_path / "state" / "nimbridge" / "log" / "nimbridge-code.log"


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
    # The server's log goes to a file while Claude Code has the terminal.
    log = code_log(tmp_path)
    assert log.name in result.stderr
    found = DISCOVERY_LOG.search(log.read_text())
    assert found is not None, log.read_text()
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
