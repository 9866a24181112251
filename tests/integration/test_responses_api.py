"""`POST /v1/responses` with the official `openai` SDK's Responses client, against the
fake upstream: streamed and not, tools, parallel calls, errors; every stream also
passes the Responses grammar guard."""

import json
from pathlib import Path
from typing import Any

import openai
import pytest

from app.core.responses_guard import ResponsesStreamGuard
from tests.fake_upstream import (
    chunk,
    completion,
    http_request,
    reply_json,
    reply_stream,
    text_stream,
)
from tests.integration.conftest import LiveProxy, track

CODEX_REQUEST = (
    Path(__file__).parent.parent / "fixtures" / "requests" / "codex_0.171_responses_request.json"
)

SHELL_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "exec_command",
    "description": "Run a shell command",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {"cmd": {"type": "string"}},
        "required": ["cmd"],
        "additionalProperties": False,
    },
}


def _client(proxy: LiveProxy) -> openai.OpenAI:
    return track(openai.OpenAI(base_url=f"{proxy.url}/v1", api_key=proxy.client_key, max_retries=0))


def _sse_events(raw: bytes) -> list[dict[str, Any]]:
    """The events of a raw Responses stream, each checked by the grammar guard."""
    guard = ResponsesStreamGuard()
    events = []
    for block in raw.decode().split("\n\n"):
        data = [line[6:] for line in block.splitlines() if line.startswith("data: ")]
        if data:
            event = json.loads("".join(data))
            assert block.startswith(f"event: {event['type']}\n")
            guard.check(event)
            events.append(event)
    guard.finish()
    return events


class _Raw:
    def __init__(self, status: int, content: bytes) -> None:
        self.status_code, self.content = status, content
        self.text = content.decode()

    def json(self) -> Any:
        return json.loads(self.content)


def _post_raw(proxy: LiveProxy, body: dict[str, Any], path: str = "/v1/responses") -> _Raw:
    status, _headers, content = http_request(
        proxy.url + path,
        "POST",
        body=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {proxy.client_key}", "Content-Type": "application/json"},
    )
    return _Raw(status, content)


def _tool_calls_stream(body: dict[str, Any], calls: list[tuple[str, str, str]]) -> list[Any]:
    out: list[Any] = [chunk(body, {"role": "assistant", "content": ""})]
    for index, (call_id, name, arguments) in enumerate(calls):
        head = {
            "index": index,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        out.append(chunk(body, {"tool_calls": [head]}))
        half = len(arguments) // 2
        for piece in (arguments[:half], arguments[half:]):
            out.append(
                chunk(body, {"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            )
    out.append(chunk(body, {}, finish_reason="tool_calls"))
    out.append(chunk(body, None, usage={"prompt_tokens": 40, "completion_tokens": 9}))
    out.append("[DONE]")
    return out


def test_create_non_stream(proxy: LiveProxy) -> None:
    response = _client(proxy).responses.create(
        model="claude-sonnet-4-6", instructions="be brief", input="hello", max_output_tokens=99
    )
    assert response.output_text == "You said: hello"
    assert response.status == "completed"
    assert response.usage is not None and response.usage.output_tokens > 0
    sent = proxy.upstream.chat_requests[-1].body
    assert sent["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello"},
    ]
    assert sent["max_tokens"] == 99 and "stream" not in sent


def test_stream_text(proxy: LiveProxy) -> None:
    proxy.upstream.enqueue(reply_stream(lambda body: text_stream(body, "Hi there, Codex!")))
    with _client(proxy).responses.stream(model="claude-sonnet-4-6", input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "Hi there, Codex!"
    assert final.output_text == "Hi there, Codex!"
    assert final.usage is not None and final.usage.total_tokens > 0


def test_stream_passes_the_grammar_guard_and_reasoning_comes_back(proxy: LiveProxy) -> None:
    def reasoning_then_text(body: dict[str, Any]) -> list[Any]:
        return [
            chunk(body, {"role": "assistant", "reasoning_content": "Think "}),
            chunk(body, {"reasoning_content": "hard."}),
            *text_stream(body, "Done.")[1:],
        ]

    proxy.upstream.enqueue(reply_stream(reasoning_then_text))
    raw = _post_raw(
        proxy,
        {
            "model": "claude-sonnet-4-6",
            "input": "think",
            "stream": True,
            "include": ["reasoning.encrypted_content"],
        },
    )
    assert raw.status_code == 200
    events = _sse_events(raw.content)
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.reasoning_summary_text.delta" in kinds
    items = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [i["type"] for i in items] == ["reasoning", "message"]
    reasoning = items[0]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Think hard."}]
    # The next turn sends the reasoning item back: the encrypted content carries it.
    reasoning["summary"] = []
    proxy.upstream.enqueue(reply_json(completion({"model": "m"}, "ok")))
    history: list[Any] = [
        {"role": "user", "content": "think"},
        reasoning,
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Done."}],
        },
        {"role": "user", "content": "again"},
    ]
    _client(proxy).responses.create(model="claude-sonnet-4-6", input=history)
    sent = proxy.upstream.chat_requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"] == "Done."


def test_parallel_tool_calls_stream_and_results_back(proxy: LiveProxy) -> None:
    calls = [
        ("call_a", "exec_command", '{"cmd": "ls"}'),
        ("call_b", "exec_command", '{"cmd": "pwd"}'),
    ]
    proxy.upstream.enqueue(reply_stream(lambda body: _tool_calls_stream(body, calls)))
    client = _client(proxy)
    with client.responses.stream(
        model="claude-sonnet-4-6",
        input="list and pwd",
        tools=[SHELL_TOOL],  # type: ignore[list-item]
        parallel_tool_calls=True,
    ) as stream:
        final = stream.get_final_response()
    made = [item for item in final.output if item.type == "function_call"]
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in made] == [
        ("call_a", "exec_command", {"cmd": "ls"}),
        ("call_b", "exec_command", {"cmd": "pwd"}),
    ]
    sent = proxy.upstream.chat_requests[-1].body
    assert sent["tools"][0]["function"]["name"] == "exec_command"
    assert sent.get("parallel_tool_calls") is not False

    proxy.upstream.enqueue(reply_json(completion({"model": "m"}, "Both ran.")))
    history: list[Any] = [
        {"role": "user", "content": "list and pwd"},
        *[
            {
                "type": "function_call",
                "call_id": c.call_id,
                "name": c.name,
                "arguments": c.arguments,
            }
            for c in made
        ],
        {"type": "function_call_output", "call_id": "call_a", "output": "a.txt"},
        {"type": "function_call_output", "call_id": "call_b", "output": "/tmp"},
    ]
    answer = client.responses.create(
        model="claude-sonnet-4-6",
        tools=[SHELL_TOOL],  # type: ignore[list-item]
        input=history,
    )
    assert answer.output_text == "Both ran."
    messages = proxy.upstream.chat_requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool"]
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["call_a", "call_b"]
    assert messages[2] == {"role": "tool", "tool_call_id": "call_a", "content": "a.txt"}


def test_namespace_tool_comes_back_under_its_namespace(proxy: LiveProxy) -> None:
    calls = [("call_n", "agents__spawn", '{"task": "x"}')]
    proxy.upstream.enqueue(
        reply_json(
            completion(
                {"model": "m"},
                None,
                finish_reason="tool_calls",
                tool_calls=[
                    {"id": c[0], "type": "function", "function": {"name": c[1], "arguments": c[2]}}
                    for c in calls
                ],
            )
        )
    )
    namespace = {
        "type": "namespace",
        "name": "agents",
        "description": "sub-agents",
        "tools": [
            {
                **SHELL_TOOL,
                "name": "spawn",
                "parameters": {"type": "object", "properties": {"task": {"type": "string"}}},
            }
        ],
    }
    raw = _post_raw(
        proxy, {"model": "claude-sonnet-4-6", "input": "go", "tools": [namespace, SHELL_TOOL]}
    )
    assert raw.status_code == 200, raw.text
    (call,) = raw.json()["output"]
    assert (call["type"], call["name"], call["namespace"]) == ("function_call", "spawn", "agents")
    sent = proxy.upstream.chat_requests[-1].body
    assert [t["function"]["name"] for t in sent["tools"]] == ["agents__spawn", "exec_command"]


def test_codex_fixture_request_translated(proxy: LiveProxy) -> None:
    body = json.loads(CODEX_REQUEST.read_text())["body"]
    proxy.upstream.enqueue(reply_stream(lambda b: text_stream(b, "hi")))
    raw = _post_raw(proxy, body)
    assert raw.status_code == 200
    events = _sse_events(raw.content)
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "hi"
    sent = proxy.upstream.chat_requests[-1].body
    assert sent["messages"][0]["role"] == "system"
    assert sent["messages"][0]["content"].startswith(
        "You are a coding agent running in the Codex CLI"
    )
    assert sent["messages"][-1] == {"role": "user", "content": sent["messages"][-1]["content"]}
    names = [t["function"]["name"] for t in sent["tools"]]
    assert "exec_command" in names and "multi_agent_v1__spawn_agent" in names
    assert sent["tool_choice"] == "auto"


def test_previous_response_id_is_a_clear_400(proxy: LiveProxy) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _client(proxy).responses.create(model="m", input="hi", previous_response_id="resp_1")
    assert "previous_response_id" in str(caught.value)
    assert proxy.upstream.chat_requests == []


def test_context_overflow_has_the_code_codex_compacts_on(proxy: LiveProxy) -> None:
    overflow = {
        "error": {
            "message": "This model's maximum context length is 1000 tokens. "
            "However, your messages resulted in 5000 tokens.",
            "type": "invalid_request_error",
        }
    }
    proxy.upstream.enqueue(reply_json(overflow, status=400))
    raw = _post_raw(proxy, {"model": "claude-sonnet-4-6", "input": "long", "stream": True})
    assert raw.status_code == 400
    error = raw.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert "prompt is too long" in error["message"]


def test_mid_stream_failure_is_response_failed(proxy: LiveProxy) -> None:
    def broken(body: dict[str, Any]) -> list[Any]:
        return [
            chunk(body, {"role": "assistant", "content": "par"}),
            {"error": {"message": "boom", "type": "server_error"}},
        ]

    proxy.upstream.enqueue(reply_stream(broken))
    raw = _post_raw(
        proxy, {"model": "claude-sonnet-4-6", "input": "x", "stream": True}, path="/responses"
    )
    events = _sse_events(raw.content)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["message"]
