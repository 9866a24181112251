"""The official `openai` Python SDK through /v1/chat/completions, from upstreams that
leave out what it relies on: every chunk still parses (strictly), errors raise."""

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageParam

from tests.fake_upstream import reply_body, reply_json, reply_stream
from tests.integration.conftest import DEFAULT_MODEL, UPSTREAM_KEY, LiveProxy, track

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
FULL = {"id": "up-1", "object": "chat.completion.chunk", "created": 7, "model": "up-model"}


def sdk(proxy: LiveProxy) -> openai.OpenAI:
    return track(openai.OpenAI(base_url=proxy.url + "/v1", api_key=proxy.client_key, max_retries=0))


def streamed(proxy: LiveProxy, **extra: Any) -> list[ChatCompletionChunk]:
    stream = sdk(proxy).chat.completions.create(
        model=DEFAULT_MODEL, messages=HELLO, stream=True, **extra
    )
    chunks: list[ChatCompletionChunk] = list(stream)
    for chunk in chunks:  # the SDK constructs leniently; the schema is the strict check
        ChatCompletionChunk.model_validate(chunk.to_dict())
    return chunks


def without(key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {name: item for name, item in value.items() if name != key}


def text_chunks(**top: Any) -> list[Any]:
    return [
        {**top, "choices": [{"index": 0, "delta": {"content": "Hel"}}]},
        {**top, "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]},
    ]


@pytest.mark.parametrize("missing", ["id", "object", "created", "model"])
def test_chunks_missing_a_top_level_field_parse(proxy: LiveProxy, missing: str) -> None:
    proxy.upstream.enqueue(reply_stream([*text_chunks(**without(missing, FULL)), "[DONE]"]))
    chunks = streamed(proxy)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello"
    assert len({c.id for c in chunks}) == 1 and chunks[0].object == "chat.completion.chunk"
    assert chunks[0].model == ("up-model" if missing != "model" else DEFAULT_MODEL)
    assert chunks[0].choices[0].delta.role == "assistant"


def test_choices_without_index_and_a_stream_without_done(proxy: LiveProxy) -> None:
    proxy.upstream.enqueue(
        reply_stream(
            [
                {"choices": [{"delta": {"content": "a"}}]},
                {"choices": [{"delta": {}, "finish_reason": "stop"}]},
            ]
        )
    )
    chunks = streamed(proxy)
    assert [c.choices[0].index for c in chunks] == [0, 0]
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_tool_call_deltas_without_index(proxy: LiveProxy) -> None:
    def call(call_id: str | None, **function: str) -> dict[str, Any]:
        body: dict[str, Any] = {"type": "function", "function": function}
        if call_id:
            body["id"] = call_id
        return {**FULL, "choices": [{"index": 0, "delta": {"tool_calls": [body]}}]}

    proxy.upstream.enqueue(
        reply_stream(
            [
                call("call_a", name="first", arguments=""),
                call(None, arguments='{"x":1}'),
                call("call_b", name="second", arguments="{}"),
                "[DONE]",
            ]
        )
    )
    chunks = streamed(proxy)
    indexes = [
        c.choices[0].delta.tool_calls[0].index for c in chunks if c.choices[0].delta.tool_calls
    ]
    assert indexes == [0, 0, 1]


def test_usage_chunk_added_when_asked_and_missing(proxy: LiveProxy) -> None:
    proxy.upstream.enqueue(reply_stream([*text_chunks(**FULL), "[DONE]"]))
    chunks = streamed(proxy, stream_options={"include_usage": True})
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 0
    assert proxy.upstream.chat_requests[-1].body["stream_options"] == {"include_usage": True}


def test_upstream_usage_chunk_is_relayed_once(proxy: LiveProxy) -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    proxy.upstream.enqueue(
        reply_stream([*text_chunks(**FULL), {**FULL, "choices": [], "usage": usage}, "[DONE]"])
    )
    chunks = streamed(proxy, stream_options={"include_usage": True})
    assert [c.usage.total_tokens for c in chunks if c.usage] == [5]


def test_upstream_error_mid_stream_makes_the_sdk_raise(proxy: LiveProxy) -> None:
    failure = {
        "object": "error",
        "message": "engine overloaded",
        "type": "ServerError",
        "code": 503,
    }
    proxy.upstream.enqueue(reply_stream([text_chunks(**FULL)[0], failure, "[DONE]"]))
    stream = sdk(proxy).chat.completions.create(model=DEFAULT_MODEL, messages=HELLO, stream=True)
    with pytest.raises(openai.APIError, match="engine overloaded"):
        list(stream)


def test_connection_cut_mid_stream_makes_the_sdk_raise(proxy: LiveProxy) -> None:
    proxy.upstream.enqueue(reply_stream([text_chunks(**FULL)[0]], cut=True))
    stream = sdk(proxy).chat.completions.create(model=DEFAULT_MODEL, messages=HELLO, stream=True)
    with pytest.raises(openai.APIError):
        list(stream)


def test_whole_answer_missing_fields_parses(proxy: LiveProxy) -> None:
    proxy.upstream.enqueue(reply_json({"choices": [{"message": {"content": "hi"}}]}))
    answer = sdk(proxy).chat.completions.create(model=DEFAULT_MODEL, messages=HELLO)
    ChatCompletion.model_validate(answer.to_dict())
    assert answer.model == DEFAULT_MODEL and answer.object == "chat.completion"
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].finish_reason == "stop" and answer.id.startswith("chatcmpl-")


def test_upstream_error_status_still_raises_with_its_message(proxy: LiveProxy) -> None:
    body = {"error": {"message": "no such model", "type": "invalid_request_error"}}
    proxy.upstream.enqueue(reply_json(body, status=404))
    with pytest.raises(openai.NotFoundError, match="no such model"):
        sdk(proxy).chat.completions.create(model=DEFAULT_MODEL, messages=HELLO)


def test_a_stream_answered_with_one_json_body_still_streams(proxy: LiveProxy) -> None:
    """Some upstreams ignore `stream: true` and answer the whole completion."""
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    whole = {
        "choices": [
            {
                "message": {
                    "content": "Hello",
                    "tool_calls": [call],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
    proxy.upstream.enqueue(reply_json(whole))
    chunks = streamed(proxy, stream_options={"include_usage": True})
    first, usage = chunks
    assert first.choices[0].delta.content == "Hello" and first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.tool_calls is not None
    assert first.choices[0].delta.tool_calls[0].index == 0
    assert first.choices[0].finish_reason == "tool_calls"
    assert usage.choices == [] and usage.usage is not None and usage.usage.total_tokens == 5


def test_a_stream_answered_with_an_error_body_and_200_raises(proxy: LiveProxy) -> None:
    proxy.upstream.enqueue(reply_json({"error": {"message": "model is loading"}}))
    stream = sdk(proxy).chat.completions.create(model=DEFAULT_MODEL, messages=HELLO, stream=True)
    with pytest.raises(openai.APIError, match="model is loading"):
        list(stream)


def test_a_stream_answered_with_something_else_raises_in_words(proxy: LiveProxy) -> None:
    page = "<html><body>Gateway login required</body></html>"
    proxy.upstream.enqueue(reply_body(page, status=200, content_type="text/html"))
    stream = sdk(proxy).chat.completions.create(model=DEFAULT_MODEL, messages=HELLO, stream=True)
    words = "answered with text/html, not a stream: .*Gateway login"
    with pytest.raises(openai.APIError, match=words):
        list(stream)


def test_an_error_status_on_a_stream_never_shows_the_key(proxy: LiveProxy) -> None:
    echo = {"error": {"message": f"Incorrect API key provided: {UPSTREAM_KEY}", "code": 401}}
    proxy.upstream.enqueue(reply_json(echo, status=401))
    stream = sdk(proxy).chat.completions.create
    with pytest.raises(openai.AuthenticationError, match="Incorrect API key") as raised:
        list(stream(model=DEFAULT_MODEL, messages=HELLO, stream=True))
    assert UPSTREAM_KEY not in str(raised.value) and UPSTREAM_KEY not in str(raised.value.body)


# ------------------------------------------------------------- the Node.js SDK

NODE_SCRIPT = Path(__file__).parent / "node" / "openai_stream.mjs"


def openai_node_dir() -> Path:
    """Where node_modules/openai is (`.ci/run` installs it); a skip without it, failed in CI."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    where = Path(
        os.environ.get("NIMBRIDGE_TEST_OPENAI_NODE_DIR", default / "nimbridge-ci" / "openai-node")
    )
    if shutil.which("node") is None or not (where / "node_modules" / "openai").is_dir():
        why = "needs Node.js and the npm package openai (see .ci/run)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return where


def run_node_sdk(proxy: LiveProxy, mode: str) -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node is not None
    done = subprocess.run(
        [node, str(NODE_SCRIPT), proxy.url + "/v1", proxy.client_key, DEFAULT_MODEL, mode],
        env={**os.environ, "OPENAI_NODE_DIR": str(openai_node_dir())},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.parametrize("missing", ["id", "object", "created", "model"])
def test_node_sdk_streams_chunks_missing_a_field(proxy: LiveProxy, missing: str) -> None:
    openai_node_dir()
    upstream_chunks = [{"choices": [{"delta": {"content": "Hel"}}]}, *text_chunks()[1:]]
    items = [{**without(missing, FULL), **item} for item in upstream_chunks]
    proxy.upstream.enqueue(reply_stream(items))  # and no [DONE]
    chunks = run_node_sdk(proxy, "stream-usage")
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]) == "Hello"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 0


def test_node_sdk_raises_on_an_upstream_error_mid_stream(proxy: LiveProxy) -> None:
    openai_node_dir()
    failure = {"error": {"message": "engine overloaded", "code": 503}}
    proxy.upstream.enqueue(reply_stream([text_chunks(**FULL)[0], failure]))
    *chunks, raised = run_node_sdk(proxy, "stream")
    assert len(chunks) == 1
    assert raised == {"raised": "APIError", "message": "engine overloaded"}


def test_node_sdk_reads_a_whole_answer_missing_fields(proxy: LiveProxy) -> None:
    openai_node_dir()
    proxy.upstream.enqueue(reply_json({"choices": [{"message": {"content": "hi"}}]}))
    (answer,) = run_node_sdk(proxy, "whole")
    assert ChatCompletion.model_validate(answer).choices[0].message.content == "hi"
