"""The real Claude Code CLI through `nimbridge code`, against a fake OpenAI upstream.

The fake upstream plays the model: asked with tools and no tool result yet, it
calls Claude Code's Bash tool to write a file; given the tool result, it
answers with a final text. Claude Code runs offline in print mode and really
runs the command. Needs the npm package @anthropic-ai/claude-code (`.ci/run`
installs it); skipped without it, except in CI.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.fake_upstream import FakeUpstream, Recorded, chunk, reply_stream, text_stream

ROOT = Path(__file__).resolve().parents[2]
FINAL_TEXT = "Done: made.txt is written."


def claude_dir() -> str | None:
    for candidate in (os.environ.get("NIMBRIDGE_TEST_CLAUDE_DIR"), "/tmp/cc/node_modules/.bin"):
        if candidate and (Path(candidate) / "claude").exists():
            return candidate
    found = shutil.which("claude")
    return str(Path(found).parent) if found else None


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
    where = claude_dir()
    if where is None:
        why = "needs Claude Code (npm install -g @anthropic-ai/claude-code)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    upstream.enqueue(*[agent] * 20)
    work = tmp_path / "work"
    work.mkdir()
    config = tmp_path / "settings.json"
    config.write_text(
        json.dumps(
            {
                "providers": [{"name": "nvidia", "kind": "nvidia", "base_url": upstream.base_url}],
                "tiers": {"default": "fake/agent-model"},
                "port": 1,  # nothing answers there: `code` starts its own server
            }
        )
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "PATH": f"{where}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),  # Claude Code's own state stays in the test's folder
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "NVIDIA_API_KEY": "nvapi-e2e-upstream-key-0000",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }
    env.pop("ANTHROPIC_API_KEY", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "code",
            "--config",
            str(config),
            "--folder",
            str(work),
            "--",
            "-p",
            "Write made.txt please",
            "--permission-mode",
            "acceptEdits",
            "--allowedTools",
            "Bash Write",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (work / "made.txt").read_text().strip() == "made-by-nimbridge"
    assert FINAL_TEXT in result.stdout
    conversations = [r.body for r in upstream.chat_requests if r.body.get("tools")]
    tool_messages = [m for body in conversations for m in body["messages"] if m["role"] == "tool"]
    assert tool_messages and tool_messages[0]["tool_call_id"] == "call_e2e_1"
    sent = upstream.chat_requests[-1]
    assert sent.headers["Authorization"] == "Bearer nvapi-e2e-upstream-key-0000"
    assert "nvapi-e2e-upstream-key-0000" not in result.stdout + result.stderr
