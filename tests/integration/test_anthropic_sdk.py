"""The official `anthropic` SDK as a black-box client of the proxy, against the fake upstream.

If the SDK's own parser and stream accumulator build the right Message, the
wire is right. Each test also checks what the upstream was sent.
"""

import base64
import json
from typing import Any

import anthropic
import pytest
from anthropic.types import MessageParam, ToolParam

from tests.anthropic_grammar import assert_anthropic_grammar
from tests.fake_upstream import (
    FIXTURES,
    chunk,
    completion,
    http_request,
    reply_fixture,
    reply_json,
    reply_stream,
)
from tests.integration.conftest import DEFAULT_MODEL, UPSTREAM_KEY, LiveProxy, track

HELLO: list[MessageParam] = [{"role": "user", "content": "hello"}]


def test_create_non_stream(proxy: LiveProxy) -> None:
    message = proxy.client().messages.create(
        model="claude-sonnet-4-6-20260217", max_tokens=100, messages=HELLO
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "You said: hello"
    assert message.model == "claude-sonnet-4-6-20260217"  # the name the client sent
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    sent = proxy.upstream.chat_requests[-1]
    assert sent.body["model"] == DEFAULT_MODEL
    assert sent.body["messages"] == [{"role": "user", "content": "hello"}]
    assert sent.body["max_tokens"] == 100
    assert "stream" not in sent.body
    assert sent.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_stream_get_final_message(proxy: LiveProxy) -> None:
    with proxy.client().messages.stream(
        model="claude-haiku-4-5", max_tokens=50, system="be brief", messages=HELLO
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == "You said: hello"
    assert final.content[0].type == "text" and final.content[0].text == "You said: hello"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    sent = proxy.upstream.chat_requests[-1].body
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["messages"][0] == {"role": "system", "content": "be brief"}


async def test_async_client_create_and_stream(proxy: LiveProxy) -> None:
    client = proxy.async_client()
    message = await client.messages.create(model="claude-opus-4-1", max_tokens=20, messages=HELLO)
    assert message.content[0].type == "text" and message.content[0].text == "You said: hello"
    async with client.messages.stream(
        model="claude-opus-4-1", max_tokens=20, messages=HELLO
    ) as stream:
        final = await stream.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == "You said: hello"
    await client.close()


def _tool_call_stream(body: dict[str, Any]) -> list[Any]:
    return [
        chunk(body, {"role": "assistant", "content": "Let me check."}),
        chunk(
            body,
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            },
        ),
        chunk(body, {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        chunk(body, {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk(body, {}, finish_reason="tool_calls"),
        chunk(body, None, usage={"prompt_tokens": 30, "completion_tokens": 12}),
        "[DONE]",
    ]


WEATHER_TOOL: ToolParam = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


def test_tool_use_round_trip(proxy: LiveProxy) -> None:
    client = proxy.client()
    proxy.upstream.enqueue(reply_stream(_tool_call_stream))
    with client.messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=200,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use"]
    tool_use = final.content[1]
    assert tool_use.type == "tool_use"
    assert tool_use.name == "get_weather" and tool_use.input == {"city": "Paris"}
    assert tool_use.id == "call_1"
    assert final.stop_reason == "tool_use"
    sent = proxy.upstream.chat_requests[-1].body
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["parallel_tool_calls"] is False
    assert sent["tool_choice"] == "auto"

    # Second turn: the tool result goes back as a `tool` message right after the call.
    proxy.upstream.enqueue(reply_json(completion({"model": "m"}, "It is sunny.")))
    answer = client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=200,
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": final.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny, 24C"},
                    {"type": "text", "text": "Thanks!"},
                ],
            },
        ],
    )
    assert answer.content[0].type == "text" and answer.content[0].text == "It is sunny."
    messages = proxy.upstream.chat_requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "user"]
    assert messages[1]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"Paris"}',
    }
    assert messages[2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 24C"}


def test_thinking_stream_from_reasoning_content(proxy: LiveProxy) -> None:
    proxy.upstream.enqueue(reply_fixture("deepseek-reasoner_reasoning-content.sse", split=97))
    with proxy.client().messages.stream(
        model="claude-opus-4-5",
        max_tokens=2000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=HELLO,
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].type == "thinking" and len(final.content[0].thinking) > 100
    assert final.content[0].signature
    assert final.content[1].type == "text" and final.content[1].text.strip()
    assert final.stop_reason == "end_turn"


def test_thinking_non_stream_from_think_tags(proxy: LiveProxy) -> None:
    proxy.upstream.enqueue(
        reply_json(completion({"model": "m"}, "<think>Let me add.</think>\n\n2 + 2 = 4"))
    )
    message = proxy.client().messages.create(
        model="claude-sonnet-4-6", max_tokens=100, thinking={"type": "adaptive"}, messages=HELLO
    )
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].type == "thinking"
    assert message.content[0].thinking == "Let me add."
    assert message.content[1].type == "text" and message.content[1].text == "2 + 2 = 4"


PNG_1X1 = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d4944415478da63f8cfc0f01f0005000201e2d6a3f40000000049454e44ae426082"
    )
).decode()


def test_images_base64_and_url(proxy: LiveProxy) -> None:
    proxy.client().messages.create(
        model="claude-sonnet-4-6",
        max_tokens=10,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG_1X1},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
    )
    parts = proxy.upstream.chat_requests[-1].body["messages"][0]["content"]
    assert parts[0] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{PNG_1X1}"},
    }
    assert parts[1] == {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}}
    assert parts[2] == {"type": "text", "text": "What is this?"}


def test_stop_sequence_reported(proxy: LiveProxy) -> None:
    body = completion({"model": "m"}, "one two")
    body["choices"][0]["stop_reason"] = "THREE"  # vLLM names the matched stop string
    proxy.upstream.enqueue(reply_json(body))
    message = proxy.client().messages.create(
        model="claude-sonnet-4-6", max_tokens=10, stop_sequences=["THREE"], messages=HELLO
    )
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "THREE"
    assert proxy.upstream.chat_requests[-1].body["stop"] == ["THREE"]


def test_count_tokens(proxy: LiveProxy) -> None:
    result = proxy.client().messages.count_tokens(
        model="claude-sonnet-4-6", system="You are terse.", messages=HELLO, tools=[WEATHER_TOOL]
    )
    assert 10 < result.input_tokens < 200
    assert not proxy.upstream.chat_requests  # counted locally, no upstream call


def test_count_tokens_learns_the_upstreams_count(proxy: LiveProxy) -> None:
    client = proxy.client()
    long_text = "The quick brown fox jumps over the lazy dog, again and again. " * 40
    for i in range(4):
        client.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=5,
            messages=[{"role": "user", "content": f"{i} {long_text}"}],
        )
    reported = proxy.upstream.chat_requests[-1]
    from tests.fake_upstream import fake_prompt_tokens

    truth = fake_prompt_tokens(reported.body)
    counted = client.messages.count_tokens(
        model="claude-sonnet-4-6", messages=[{"role": "user", "content": f"9 {long_text}"}]
    ).input_tokens
    assert abs(counted - truth) <= 0.1 * truth


def test_models_list_in_both_shapes(proxy: LiveProxy) -> None:
    page = proxy.client().models.list()
    upstream_ids = ["meta/llama-3.3-70b-instruct", "qwen/qwen3-coder-480b-a35b-instruct"]
    gateway_ids = [f"claude-nim/nvidia/{model}" for model in upstream_ids]
    # Anthropic's shape lists the gateway ids first (Claude Code reads one page).
    assert [m.id for m in page.data] == gateway_ids + upstream_ids
    llama = page.data[2]
    assert llama.type == "model" and llama.created_at.year == 2024
    assert page.data[0].display_name == "Llama 3.3 70B Instruct · NVIDIA"
    import openai

    oa = track(openai.OpenAI(base_url=proxy.url + "/v1", api_key=proxy.client_key, max_retries=0))
    assert [m.id for m in oa.models.list().data] == upstream_ids + gateway_ids


def test_model_retrieve_resolves_claude_names(proxy: LiveProxy) -> None:
    client = proxy.client()
    assert client.models.retrieve("claude-opus-4-5").id == "claude-opus-4-5"
    assert client.models.retrieve("meta/llama-3.3-70b-instruct").id == "meta/llama-3.3-70b-instruct"
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("no-such/model")


def test_openai_sdk_pass_through(proxy: LiveProxy) -> None:
    import openai

    client = track(
        openai.OpenAI(base_url=proxy.url + "/v1", api_key=proxy.client_key, max_retries=0)
    )
    answer = client.chat.completions.create(
        model="meta/llama-3.3-70b-instruct", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content == "You said: hi"
    sent = proxy.upstream.chat_requests[-1]
    assert sent.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"  # key injected
    stream = client.chat.completions.create(
        model="claude-sonnet-4-6", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "You said: hi"
    assert proxy.upstream.chat_requests[-1].body["model"] == DEFAULT_MODEL


def test_openai_pass_through_never_relays_our_key(proxy: LiveProxy) -> None:
    import openai

    echoed = f"Incorrect API key provided: {UPSTREAM_KEY}. You can find your API key at ..."
    proxy.upstream.enqueue(
        reply_json({"error": {"message": echoed, "type": "invalid_request_error"}}, status=401)
    )
    client = track(
        openai.OpenAI(base_url=proxy.url + "/v1", api_key=proxy.client_key, max_retries=0)
    )
    with pytest.raises(openai.AuthenticationError) as raised:
        client.chat.completions.create(
            model="meta/llama-3.3-70b-instruct", messages=[{"role": "user", "content": "hi"}]
        )
    assert UPSTREAM_KEY not in str(raised.value) and UPSTREAM_KEY not in raised.value.response.text
    assert "Incorrect API key provided: ***" in raised.value.response.text


def test_claude_code_captured_request(proxy: LiveProxy) -> None:
    """The real 76 KB Claude Code request, sent with its own headers, streams back right."""
    captured = json.loads((FIXTURES / "requests" / "claude_code_request.json").read_text())
    headers = {
        k: v
        for k, v in captured["headers"].items()
        if k.lower() not in ("content-length", "accept-encoding", "connection")
    }
    headers["Authorization"] = f"Bearer {proxy.client_key}"
    assert http_request(proxy.url + "/", "HEAD")[0] == 200
    status, got_headers, raw = http_request(
        proxy.url + "/v1/messages?beta=true",
        "POST",
        body=json.dumps(captured["body"]).encode(),
        headers=headers,
    )
    assert status == 200
    assert got_headers["Content-Type"].startswith("text/event-stream")
    events = [
        json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")
    ]
    assert_anthropic_grammar(events)
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    assert text.startswith("You said:")
    sent = proxy.upstream.chat_requests[-1].body
    assert sent["messages"][0]["role"] == "system"
    assert "x-anthropic-billing-header" not in json.dumps(sent)
    assert "cache_control" not in json.dumps(sent)
    assert len(sent["tools"]) == 24
    assert all(m["role"] != "system" for m in sent["messages"][1:])


def test_health_and_head(proxy: LiveProxy) -> None:
    assert http_request(proxy.url + "/", "HEAD")[0] == 200
    status, _, raw = http_request(proxy.url + "/health")
    health = json.loads(raw)
    assert status == 200
    assert health["status"] == "ok" and health["upstream"] == proxy.upstream.base_url
    assert health["uptime_s"] >= 0 and health["version"]


def test_api_anthropic_alias_path(proxy: LiveProxy) -> None:
    client = track(
        anthropic.Anthropic(
            base_url=proxy.url + "/api/anthropic", api_key=proxy.client_key, max_retries=0
        )
    )
    message = client.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=HELLO)
    assert message.content[0].type == "text"


def test_tool_markup_leaked_into_content_reaches_the_sdk_as_tool_use(proxy: LiveProxy) -> None:
    leaked = '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
    proxy.upstream.enqueue(reply_json(completion({"model": "m"}, leaked)))
    message = proxy.client().messages.create(
        model="claude-sonnet-4-6", max_tokens=100, tools=[WEATHER_TOOL], messages=HELLO
    )
    assert [b.type for b in message.content] == ["tool_use"]
    assert message.content[0].type == "tool_use" and message.content[0].input == {"city": "Oslo"}
    assert message.stop_reason == "tool_use"


def test_upstream_connection_is_reused(proxy: LiveProxy) -> None:
    client = proxy.client()
    for _ in range(3):
        client.messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=HELLO)
        with client.messages.stream(model="claude-sonnet-4-6", max_tokens=5, messages=HELLO) as s:
            s.get_final_message()
    peers = {r.peer for r in proxy.upstream.chat_requests}
    assert len(proxy.upstream.chat_requests) == 6 and len(peers) == 1
