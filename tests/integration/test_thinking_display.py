"""`thinking.display: "omitted"` through the server, with the official SDK as client.

Omitted thinking comes back as Anthropic's API sends it (empty text, a signature),
the signature brings the reasoning back upstream on the next turn for a model that
wants it, and a client hears pings while the model reasons and nothing is shown.
"""

import http.client
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from anthropic.types import (
    MessageParam,
    ThinkingBlockParam,
    ThinkingConfigParam,
    ToolUseBlockParam,
)

from app.core.thinking_display import reasoning_from_signature
from tests.anthropic_grammar import assert_anthropic_grammar
from tests.fake_upstream import (
    FIXTURES,
    FakeUpstream,
    Recorded,
    chunk,
    completion,
    http_request,
    reply_json,
    reply_stream,
)
from tests.integration.conftest import LiveProxy, MakeProxy
from tests.integration.test_anthropic_sdk import WEATHER_TOOL
from tests.integration.test_claude_code_e2e import (
    FINAL_TEXT,
    agent,
    require_claude,
    run_nimbridge_code,
    tool_call_stream,
)

OMITTED: ThinkingConfigParam = {"type": "adaptive", "display": "omitted"}
REASONING = "The user wants the weather in Paris; call get_weather. Ünïcode ✓ 思考"
QUESTION: list[MessageParam] = [{"role": "user", "content": "Weather in Paris?"}]
# Send reasoning back (quirks.send_reasoning_back), and not.
DEEPSEEK = "deepseek-ai/deepseek-v3.2"
PLAIN = "fake/default-model"


def reasoning_then_call(body: dict[str, Any]) -> list[Any]:
    pieces = [REASONING[i : i + 9] for i in range(0, len(REASONING), 9)]
    call = {"index": 0, "id": "call_1", "type": "function"}
    return [
        chunk(body, {"role": "assistant", "reasoning_content": pieces[0]}),
        *(chunk(body, {"reasoning_content": piece}) for piece in pieces[1:]),
        chunk(
            body, {"tool_calls": [{**call, "function": {"name": "get_weather", "arguments": ""}}]}
        ),
        chunk(body, {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":"Paris"}'}}]}),
        chunk(body, {}, finish_reason="tool_calls"),
        "[DONE]",  # no usage: the estimate must count the reasoning
    ]


def reasoning_then_call_whole() -> Any:
    function = {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    call = {"id": "call_1", "type": "function", "function": function}
    return completion(
        {"model": "m"}, None, tool_calls=[call], finish_reason="tool_calls", reasoning=REASONING
    )


def first_turn(proxy: LiveProxy, *, stream: bool, thinking: ThinkingConfigParam) -> Any:
    client = proxy.client()
    if not stream:
        proxy.upstream.enqueue(reply_json(reasoning_then_call_whole()))
        return client.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=500,
            thinking=thinking,
            tools=[WEATHER_TOOL],
            messages=QUESTION,
        )
    proxy.upstream.enqueue(reply_stream(reasoning_then_call))
    with client.messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=500,
        thinking=thinking,
        tools=[WEATHER_TOOL],
        messages=QUESTION,
    ) as events:
        deltas = [e.delta.type for e in events if e.type == "content_block_delta"]
        final = events.get_final_message()
    shown = "thinking_delta" in deltas
    assert shown is (thinking.get("display") != "omitted")
    assert "signature_delta" in deltas
    return final


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("model", [DEEPSEEK, PLAIN])
def test_omitted_thinking_round_trips_through_the_signature(
    make_proxy: MakeProxy, stream: bool, model: str
) -> None:
    proxy = make_proxy(model=model)
    final = first_turn(proxy, stream=stream, thinking=OMITTED)
    assert [block.type for block in final.content] == ["thinking", "tool_use"]
    thinking, call = final.content
    assert thinking.type == "thinking" and thinking.thinking == ""
    assert thinking.signature and REASONING not in thinking.signature
    assert call.type == "tool_use" and call.input == {"city": "Paris"}
    if stream:  # no usage from the upstream: the estimate still counts the hidden reasoning
        assert final.usage.output_tokens >= len(REASONING) // 4

    # The client sends the turn back as it got it, with the tool's result.
    proxy.upstream.enqueue(reply_json(completion({"model": "m"}, "Sunny.")))
    answer = proxy.client().messages.create(
        model="claude-sonnet-4-6",
        max_tokens=500,
        thinking=OMITTED,
        tools=[WEATHER_TOOL],
        messages=[
            *QUESTION,
            {"role": "assistant", "content": final.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "24C"}],
            },
        ],
    )
    assert answer.content[0].type == "text" and answer.content[0].text == "Sunny."
    assistant = proxy.upstream.chat_requests[-1].body["messages"][1]
    assert assistant["role"] == "assistant" and assistant["tool_calls"][0]["id"] == "call_1"
    if model == DEEPSEEK:
        assert assistant["reasoning_content"] == REASONING
    else:
        assert "reasoning_content" not in assistant


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize(
    "thinking",
    [
        {"type": "adaptive", "display": "summarized"},
        {"type": "adaptive"},
        {"type": "enabled", "budget_tokens": 1024, "display": "a-later-mode"},
    ],
    ids=["summarized", "absent", "unknown"],
)
def test_summarized_or_absent_display_shows_the_thinking(
    proxy: LiveProxy, stream: bool, thinking: ThinkingConfigParam
) -> None:
    final = first_turn(proxy, stream=stream, thinking=thinking)
    assert final.content[0].type == "thinking"
    assert final.content[0].thinking == REASONING
    assert final.content[0].signature == "nimbridge"


def test_foreign_signature_sent_back_is_ignored(make_proxy: MakeProxy) -> None:
    """A real Anthropic signature (another session's turn) is not ours: no reasoning, no error."""
    proxy = make_proxy(model=DEEPSEEK)
    proxy.upstream.enqueue(reply_json(completion({"model": "m"}, "Sunny.")))
    thinking: ThinkingBlockParam = {
        "type": "thinking",
        "thinking": "",
        "signature": "EqQBCkgIARABGAIiQL2u0fZq==",
    }
    call: ToolUseBlockParam = {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "get_weather",
        "input": {"city": "P"},
    }
    proxy.client().messages.create(
        model="claude-sonnet-4-6",
        max_tokens=500,
        thinking=OMITTED,
        tools=[WEATHER_TOOL],
        messages=[
            *QUESTION,
            {"role": "assistant", "content": [thinking, call]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]},
        ],
    )
    assistant = proxy.upstream.chat_requests[-1].body["messages"][1]
    assert assistant["tool_calls"] and "reasoning_content" not in assistant


def test_claude_code_request_gets_omitted_thinking(proxy: LiveProxy) -> None:
    """Claude Code 2.1.332's own request (it asks for display "omitted"), sent as it sent it."""
    captured = json.loads((FIXTURES / "requests" / "claude_code_2.1.332_request.json").read_text())
    assert captured["body"]["thinking"] == {"type": "adaptive", "display": "omitted"}
    proxy.upstream.enqueue(reply_stream(reasoning_then_call))
    headers = {
        k: v
        for k, v in captured["headers"].items()
        if k.lower() not in ("content-length", "accept-encoding", "connection", "host")
    }
    headers["Authorization"] = f"Bearer {proxy.client_key}"
    headers["x-api-key"] = proxy.client_key
    status, _, raw = http_request(
        proxy.url + "/v1/messages?beta=true",
        "POST",
        body=json.dumps(captured["body"]).encode(),
        headers=headers,
    )
    assert status == 200
    events = [json.loads(line[6:]) for line in raw.decode().splitlines() if line[:6] == "data: "]
    assert_anthropic_grammar(events)
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    assert [d["type"] for d in deltas][0] == "signature_delta"
    assert "thinking_delta" not in {d["type"] for d in deltas}


def test_client_hears_pings_while_the_model_reasons_unseen(make_proxy: MakeProxy) -> None:
    """The upstream is busy (a reasoning chunk every 50 ms) yet omitted mode shows the
    client nothing of it: pings must come from the client's silence, not the upstream's."""
    interval = 0.25
    proxy = make_proxy(ping_interval_s=interval, commit_window_s=0.05)

    def long_reasoning(body: dict[str, Any]) -> list[Any]:
        steps = [chunk(body, {"reasoning_content": f"step {n}. "}) for n in range(40)]
        return [*steps, chunk(body, {"content": "Done."}), chunk(body, {}, finish_reason="stop")]

    proxy.upstream.enqueue(reply_stream(long_reasoning, delay=0.05))  # 2 s of reasoning
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 100,
        "stream": True,
        "thinking": OMITTED,
        "messages": [{"role": "user", "content": "think"}],
    }
    headers = {
        "x-api-key": proxy.client_key,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }
    arrivals: list[tuple[float, dict[str, Any]]] = []  # each event with when it came
    address = urlsplit(proxy.url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
    try:
        connection.request("POST", "/v1/messages", json.dumps(body).encode(), headers)
        response = connection.getresponse()
        assert response.status == 200
        while line := response.readline():
            if line.startswith(b"data: "):
                arrivals.append((time.monotonic(), json.loads(line[6:])))
    finally:
        connection.close()
    events = [event for _, event in arrivals]
    assert_anthropic_grammar(events)
    kinds = [event["type"] for event in events]
    opened = kinds.index("content_block_start")
    signed = next(
        i for i, e in enumerate(events) if e.get("delta", {}).get("type") == "signature_delta"
    )
    assert kinds[opened + 1 : signed].count("ping") >= 4  # ~2 s of reasoning, a ping each 0.25 s
    assert set(kinds[opened + 1 : signed]) == {"ping"}
    gaps = [b[0] - a[0] for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert max(gaps) < interval + 0.5  # never silent much longer than the interval


# ------------------------------------------------------------------ the real Claude Code

CC_REASONING = "The user wants made.txt; one Bash call writes it."


async def reasoning_agent(request: web.Request, record: Recorded) -> web.StreamResponse:
    """Reasons (reasoning_content), then calls Bash; answers once the result is back."""
    body = record.body
    answered = any(m.get("role") == "tool" for m in body.get("messages", []))
    has_bash = any(t.get("function", {}).get("name") == "Bash" for t in body.get("tools", []))
    if not has_bash or answered or not body.get("stream"):
        return await agent(request, record)
    items = tool_call_stream(body)
    items[0] = chunk(body, {"role": "assistant", "reasoning_content": CC_REASONING})
    return await reply_stream(items)(request, record)


def test_claude_code_keeps_the_signature_and_the_reasoning_goes_back(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    """Claude Code 2.1.332 asks for omitted thinking, stores the block we send and sends it
    back with the tool result: DeepSeek then gets its reasoning as reasoning_content."""
    where = require_claude()
    upstream.enqueue(*[reasoning_agent] * 20)
    settings = {"tiers": {"default": DEEPSEEK}}
    work, result = run_nimbridge_code(
        upstream, tmp_path, where, "Write made.txt", "Bash", settings=settings
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (work / "made.txt").read_text().strip() == "made-by-nimbridge"
    assert FINAL_TEXT in result.stdout
    # Claude Code's transcript keeps the block as we sent it: no text, our signature.
    stored = [
        block
        for transcript in (tmp_path / "home").rglob("*.jsonl")
        for line in transcript.read_text().splitlines()
        if (entry := json.loads(line)).get("type") == "assistant"
        for block in entry["message"]["content"]
        if block["type"] == "thinking"
    ]
    assert [block["thinking"] for block in stored] == [""]
    assert reasoning_from_signature(stored[0]["signature"]) == CC_REASONING
    answered = [
        r.body
        for r in upstream.chat_requests
        if any(m.get("role") == "tool" for m in r.body.get("messages", []))
    ]
    assert answered
    calling = [m for m in answered[0]["messages"] if m.get("tool_calls")]
    assert [m.get("reasoning_content") for m in calling] == [CC_REASONING]
