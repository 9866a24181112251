"""llama-cpp-python's behaviours (issue 18), played by the fake upstream's quirks table
(`QUIRKS_BY_SERVER["llama-cpp-python"]`), driven with the official SDK. The same
contract against the real server: tests/integration/test_real_model.py."""

import json
from typing import Any

import anthropic
import pytest
from anthropic.types import MessageParam, ToolParam

from app.config.secrets import MemorySecretStore, ProviderKeys
from app.config.settings import Settings, TierModels
from app.core.providers import Provider, ProviderKind
from app.launcher.context_window import served_context_window
from app.server.app import ProxyServer
from tests.fake_upstream import FakeUpstream, LoopThread, http_request
from tests.integration.conftest import LiveProxy

TOOL: ToolParam = {
    "name": "get_time",
    "description": "The time in a time zone.",
    "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}},
}


@pytest.fixture
def llama(proxy: LiveProxy) -> LiveProxy:
    proxy.upstream.server = "llama-cpp-python"
    proxy.upstream.n_ctx = 300
    return proxy


def test_streamed_tool_call_is_one_tool_use(llama: LiveProxy) -> None:
    with llama.client().messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=64,
        tools=[TOOL],
        tool_choice={"type": "tool", "name": "get_time"},
        messages=[{"role": "user", "content": "time?"}],
    ) as stream:
        message = stream.get_final_message()
    assert [block.type for block in message.content] == ["tool_use"]
    assert message.stop_reason == "tool_use"


def test_tools_without_tool_choice_are_sent_with_auto(llama: LiveProxy) -> None:
    llama.client().messages.create(
        model="claude-sonnet-4-6",
        max_tokens=64,
        tools=[TOOL],
        messages=[{"role": "user", "content": "hi"}],
    )
    assert llama.upstream.chat_requests[-1].body["tool_choice"] == "auto"


@pytest.mark.allow_warnings  # the learned quirk is logged as a repair
def test_tool_loop_second_turn_learns_null_content(llama: LiveProxy) -> None:
    messages: list[MessageParam] = [
        {"role": "user", "content": "time?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "get_time", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "noon"}],
        },
    ]
    client = llama.client()
    for _ in range(2):  # the second request is sent right the first time
        message = client.messages.create(
            model="claude-sonnet-4-6", max_tokens=64, tools=[TOOL], messages=messages
        )
        assert message.stop_reason in ("end_turn", "tool_use")
    sent = [r.body["messages"][1]["content"] for r in llama.upstream.chat_requests]
    assert sent == [None, "", ""]


@pytest.mark.allow_warnings
def test_forced_any_with_one_tool_goes_named_after_required_fails(llama: LiveProxy) -> None:
    message = llama.client().messages.create(
        model="claude-sonnet-4-6",
        max_tokens=64,
        tools=[TOOL],
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "time?"}],
    )
    assert message.content
    choices = [r.body["tool_choice"] for r in llama.upstream.chat_requests]
    assert choices == ["required", {"type": "function", "function": {"name": "get_time"}}]


def test_streamed_overflow_is_prompt_too_long(llama: LiveProxy) -> None:
    long_text = "word " * 800
    with (
        pytest.raises(anthropic.APIStatusError) as raised,
        llama.client().messages.stream(
            model="claude-sonnet-4-6",
            max_tokens=16,
            messages=[{"role": "user", "content": long_text}],
        ) as stream,
    ):
        stream.get_final_message()
    assert "prompt is too long" in str(raised.value)
    bodies = [r.body for r in llama.upstream.chat_requests]
    assert [body.get("stream", False) for body in bodies] == [True, False]  # asked once more


def test_streamed_answer_without_usage_counts_no_more_than_max_tokens(llama: LiveProxy) -> None:
    with llama.client().messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=3,
        messages=[{"role": "user", "content": "a fairly long question to echo back " * 3}],
    ) as stream:
        message = stream.get_final_message()
    assert message.usage.output_tokens <= 3


def test_stop_sequence_the_server_does_not_name_stays_unknown(llama: LiveProxy) -> None:
    message = llama.client().messages.create(
        model="claude-sonnet-4-6",
        max_tokens=64,
        stop_sequences=["STOP"],
        messages=[{"role": "user", "content": "count 1 2 STOP 3"}],
    )
    assert message.content[0].type == "text" and "STOP" not in message.content[0].text
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)


def test_llama_cpp_preset_reads_the_served_context(
    loop_thread: LoopThread, upstream: FakeUpstream
) -> None:
    upstream.server, upstream.n_ctx = "llama-cpp-python", 32768
    upstream.models = [{"id": "gemma-3-270m-it", "object": "model", "owned_by": "me"}]
    settings = Settings(
        host="127.0.0.1",
        port=0,
        providers=(Provider("llama", ProviderKind.LLAMACPP, upstream.base_url),),
        tiers=TierModels(default="gemma-3-270m-it"),
    )
    server = ProxyServer(settings, ProviderKeys(MemorySecretStore(), env={}), "k")
    url = loop_thread.run(server.start())
    try:
        status, _, body = http_request(
            f"{url}/v1/models/llama/gemma-3-270m-it", headers={"x-api-key": "k"}
        )
        assert status == 200, body
        facts: dict[str, Any] = json.loads(body)["nimbridge"]
        # The name table says 131,072 (gemma-3-); the server serves 32,768.
        assert facts["context_window"] == 32768
        # ... and `nimbridge code` sets Claude Code's compact window from it
        assert served_context_window(url, "k", "llama/gemma-3-270m-it", settings) == 32768
        # the name table, when the server refuses the key
        assert served_context_window(url, "wrong-key", "gemma-3-270m-it", settings) == 131072
    finally:
        loop_thread.run(server.stop())
