"""Several upstream rounds as one Anthropic message: streamed (ServerToolStream) and whole
(ServerToolMessage)."""

import json
from typing import Any

import pytest

from app.core.anthropic_stream import StreamState, StreamTranslator
from app.core.anthropic_types import ErrorBody, Message, MessagesRequest
from app.core.capabilities import quirks_for_model
from app.core.errors import TranslatorStateError
from app.core.request_map import to_openai_request
from app.core.response_map import to_anthropic_message
from app.core.server_tools.rounds import ServerToolMessage, ServerToolStream
from app.core.server_tools.specs import ServerToolCall, ServerToolLedger, continuation_request
from app.core.sse import ServerSentEvent
from app.core.thinking_display import reasoning_from_signature, thinking_display
from app.core.tiers import ModelRoute
from tests.anthropic_grammar import assert_anthropic_grammar, summarize

NAMES = frozenset({"web_search"})
RESULT = {"type": "web_search_tool_result", "tool_use_id": "x", "content": []}
ERROR: ErrorBody = {"type": "error", "error": {"type": "api_error", "message": "boom"}}


def delta_chunk(delta: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": None}]
    if "finish_reason" in extra:
        choices[0]["finish_reason"] = extra.pop("finish_reason")
    return {"choices": choices, **extra}


def call_chunk(name: str, arguments: str, call_id: str = "call_1", index: int = 0) -> Any:
    function = {"name": name, "arguments": arguments}
    return delta_chunk({"tool_calls": [{"index": index, "id": call_id, "function": function}]})


def usage_chunk(prompt: int, completion: int) -> dict[str, Any]:
    return delta_chunk(None, usage={"prompt_tokens": prompt, "completion_tokens": completion})


def new_stream(max_rounds: int = 4) -> ServerToolStream:
    def new_round(number: int) -> StreamTranslator:
        return StreamTranslator(
            model="m", message_id="msg_1", input_tokens=5, server_tool_names=NAMES
        )

    return ServerToolStream(new_round, ServerToolLedger(), max_rounds=max_rounds)


def feed_all(stream: ServerToolStream, chunks: list[Any]) -> list[Any]:
    events: list[Any] = []
    for item in chunks:
        events += stream.feed(item)
    return events + stream.finish()


SEARCH_ROUND = [
    delta_chunk({"role": "assistant", "content": "Looking."}),
    call_chunk("web_search", '{"query":'),
    delta_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"py"}'}}]}),
    delta_chunk({}, finish_reason="tool_calls"),
    usage_chunk(10, 3),
]
ANSWER_ROUND = [delta_chunk({"content": "Found."}, finish_reason="stop"), usage_chunk(30, 2)]


def test_search_then_answer_is_one_message() -> None:
    stream = new_stream()
    events = stream.start() + feed_all(stream, SEARCH_ROUND)
    assert stream.state.name == "STARTED"
    reported_after_one_round = stream.usage_reported
    assert reported_after_one_round
    (pending,) = stream.pending_calls
    assert pending == ServerToolCall("srvtoolu_call_1", "web_search", {"query": "py"})
    assert stream.feed(delta_chunk({"content": "late"})) == []  # after the round's end
    assert stream.feed_sse(ServerSentEvent("[DONE]")) == [] and stream.finish() == []
    events += stream.add_results([{**RESULT, "tool_use_id": pending.id}])
    stream.next_round()
    events += feed_all(stream, ANSWER_ROUND)
    assert_anthropic_grammar(events)
    assert summarize(events) == [
        ("start", 0, "text"),
        ("delta", 0, "Looking."),
        ("stop", 0),
        ("start", 1, "server_tool_use"),
        ("delta", 1, '{"query":"py"}'),
        ("stop", 1),
        ("start", 2, "web_search_tool_result"),
        ("stop", 2),
        ("start", 3, "text"),
        ("delta", 3, "Found."),
        ("stop", 3),
        ("end", "end_turn"),
    ]
    assert stream.state is StreamState.FINISHED and stream.ended and stream.rounds == 2
    assert events[-2]["usage"] == {
        "input_tokens": 40,
        "output_tokens": 5,
        "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
    }
    assert not stream.usage_reported  # the second prompt held the results
    assert stream.content == [
        {"type": "text", "text": "Looking."},
        {
            "type": "server_tool_use",
            "id": "srvtoolu_call_1",
            "name": "web_search",
            "input": {"query": "py"},
        },
        {**RESULT, "tool_use_id": "srvtoolu_call_1"},
        {"type": "text", "text": "Found."},
    ]
    assert stream.repairs == [] and stream.failure is None


def test_server_and_client_calls_end_after_the_results() -> None:
    stream = new_stream()
    chunks = [
        call_chunk("web_search", '{"query":"a"}'),
        call_chunk("get_time", "{}", "call_2", 1),
        delta_chunk({}, finish_reason="tool_calls"),
    ]
    events = stream.start() + feed_all(stream, chunks)
    assert len(stream.pending_calls) == 1
    events += stream.add_results([RESULT])
    assert_anthropic_grammar(events)
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    with pytest.raises(TranslatorStateError):
        stream.next_round()


def test_past_max_rounds_the_message_pauses() -> None:
    stream = new_stream(max_rounds=1)
    events = stream.start() + feed_all(stream, SEARCH_ROUND)
    events += stream.add_results([RESULT])
    assert_anthropic_grammar(events)
    assert events[-2]["delta"]["stop_reason"] == "pause_turn"
    with pytest.raises(TranslatorStateError):
        stream.add_results([RESULT])


def test_a_cut_round_ends_the_message_without_running_tools() -> None:
    stream = new_stream()
    chunks = [call_chunk("web_search", '{"query": "p'), delta_chunk({}, finish_reason="length")]
    events = stream.start() + feed_all(stream, chunks)
    assert_anthropic_grammar(events)
    assert stream.pending_calls == [] and events[-2]["delta"]["stop_reason"] == "max_tokens"
    assert stream.content[0]["input"] == {}  # cut JSON: nothing usable


def test_ids_stay_unique_across_rounds_and_odd_inputs_become_empty() -> None:
    stream = new_stream()
    stream.start()
    feed_all(stream, [call_chunk("web_search", "[1]"), delta_chunk({}, finish_reason="tool_calls")])
    stream.add_results([RESULT])
    stream.next_round()
    feed_all(stream, [call_chunk("web_search", "{}"), delta_chunk({}, finish_reason="tool_calls")])
    ids = [block["id"] for block in stream.content if block["type"] == "server_tool_use"]
    assert ids == ["srvtoolu_call_1", "srvtoolu_call_1_r2"]
    assert stream.content[0]["input"] == {}
    assert stream.pending_calls[0].id == "srvtoolu_call_1_r2"


def test_thinking_is_kept_for_the_next_round() -> None:
    stream = new_stream()
    stream.start()
    feed_all(
        stream,
        [
            delta_chunk({"reasoning_content": "Hm"}),
            call_chunk("web_search", '{"query":"q"}'),
            delta_chunk({}, finish_reason="tool_calls"),
        ],
    )
    assert stream.content[0] == {"type": "thinking", "thinking": "Hm", "signature": "nimbridge"}


def test_failures_in_and_between_rounds() -> None:
    stream = new_stream()
    stream.start()
    feed_all(stream, SEARCH_ROUND)
    stream.add_results([RESULT])
    assert stream.fail(ERROR) == [ERROR]  # between rounds: no block open
    assert stream.state is StreamState.FAILED and stream.failure == "boom"
    assert stream.fail(ERROR) == []

    live = new_stream()
    events = live.start() + live.feed(delta_chunk({"content": "Hi"})) + live.fail(ERROR)
    assert_anthropic_grammar(events)
    assert live.state is StreamState.FAILED and live.failure == "boom"

    upstream_error = new_stream()
    events = upstream_error.start() + upstream_error.feed_sse(
        ServerSentEvent('{"error": {"message": "overloaded"}}')
    )
    assert_anthropic_grammar(events)
    assert upstream_error.state is StreamState.FAILED


def test_next_round_only_between_rounds() -> None:
    stream = new_stream()
    stream.start()
    with pytest.raises(TranslatorStateError):
        stream.next_round()
    with pytest.raises(TranslatorStateError):
        stream.add_results([RESULT])
    assert stream.state is StreamState.STARTED


# ------------------------------------------------------------------ whole messages


def message(content: list[Any], stop: str, tokens: tuple[int, int] = (10, 2)) -> Message:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": tokens[0], "output_tokens": tokens[1]},
    }


def tool_use(name: str, call_id: str = "call_1", **input_: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": input_}


def test_whole_rounds_into_one_message() -> None:
    ledger = ServerToolLedger()
    rounds = ServerToolMessage(NAMES, ledger, max_rounds=4)
    assert rounds.content == []
    assert not rounds.add_round(message([tool_use("web_search", query="q")], "tool_use"))
    assert rounds.pending_calls == [ServerToolCall("srvtoolu_call_1", "web_search", {"query": "q"})]
    ledger.requests["web_search"] += 1
    assert not rounds.add_results([RESULT])
    assert rounds.add_round(message([{"type": "text", "text": "Done."}], "end_turn", (30, 4)))
    assert rounds.message is not None
    assert [block["type"] for block in rounds.message["content"]] == [
        "server_tool_use",
        "web_search_tool_result",
        "text",
    ]
    assert rounds.message["stop_reason"] == "end_turn"
    assert rounds.message["usage"] == {
        "input_tokens": 40,
        "output_tokens": 6,
        "server_tool_use": {"web_search_requests": 1, "web_fetch_requests": 0},
    }


def test_whole_rounds_with_a_client_call_and_repeated_ids() -> None:
    rounds = ServerToolMessage(NAMES, ServerToolLedger(), max_rounds=4)
    rounds.add_round(message([tool_use("web_search", query="q")], "tool_use"))
    rounds.add_results([RESULT])
    calls = [tool_use("web_search", query="r"), tool_use("get", "call_2")]
    assert not rounds.add_round(message(calls, "tool_use"))
    assert rounds.add_results([RESULT])
    assert rounds.message is not None and rounds.message["stop_reason"] == "tool_use"
    ids = [block.get("id") for block in rounds.message["content"]]
    assert ids == ["srvtoolu_call_1", None, "srvtoolu_call_1_r2", "call_2", None]
    with pytest.raises(TranslatorStateError):
        rounds.add_results([RESULT])


def test_whole_rounds_pause_past_max_rounds() -> None:
    rounds = ServerToolMessage(NAMES, ServerToolLedger(), max_rounds=1)
    cached = message([tool_use("web_search", query="q")], "tool_use")
    cached["usage"]["cache_read_input_tokens"] = 8
    rounds.add_round(cached)
    assert rounds.add_results([RESULT])
    assert rounds.message is not None and rounds.message["stop_reason"] == "pause_turn"
    assert rounds.message["usage"]["cache_read_input_tokens"] == 8
    assert json.dumps(rounds.message)  # plain JSON for the response


# ------------------------------------------------------------------ thinking.display omitted

DEEPSEEK = ModelRoute(
    "claude-x", "deepseek-ai/deepseek-v3.2", quirks_for_model("deepseek-ai/deepseek-v3.2")
)
OMITTED_REQUEST: MessagesRequest = {
    "model": "claude-x",
    "max_tokens": 100,
    "messages": [{"role": "user", "content": "search py"}],
    "thinking": {"type": "adaptive", "display": "omitted"},
    "tools": [{"type": "web_search_20250305", "name": "web_search"}],
}


def next_round_messages(content: list[Any]) -> list[Any]:
    """What the next round sends upstream for a model that wants its reasoning back."""
    request = continuation_request(OMITTED_REQUEST, content)
    return list(to_openai_request(request, DEEPSEEK)["messages"])


def test_streamed_omitted_reasoning_goes_to_the_next_round() -> None:
    def new_round(number: int) -> StreamTranslator:
        return StreamTranslator(
            model="m",
            message_id="msg_1",
            server_tool_names=NAMES,
            thinking_display=thinking_display(OMITTED_REQUEST["thinking"]),
        )

    stream = ServerToolStream(new_round, ServerToolLedger(), max_rounds=4)
    events = stream.start() + feed_all(
        stream, [delta_chunk({"reasoning_content": "Search for py."}), *SEARCH_ROUND]
    )
    events += stream.add_results([{**RESULT, "tool_use_id": "srvtoolu_call_1"}])
    assistant = next_round_messages(stream.content)[1]
    stream.next_round()
    events += feed_all(stream, ANSWER_ROUND)
    assert_anthropic_grammar(events)
    assert not any(e.get("delta", {}).get("type") == "thinking_delta" for e in events)
    thinking = stream.content[0]
    assert thinking["type"] == "thinking" and thinking["thinking"] == ""
    assert reasoning_from_signature(thinking["signature"]) == "Search for py."
    assert assistant["role"] == "assistant" and assistant["tool_calls"]
    assert assistant["reasoning_content"] == "Search for py."


def test_whole_omitted_reasoning_goes_to_the_next_round() -> None:
    reply = {
        "choices": [
            {
                "message": {
                    "reasoning_content": "Search for py.",
                    "tool_calls": [
                        {"id": "call_1", "function": {"name": "web_search", "arguments": "{}"}}
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ]
    }
    rounds = ServerToolMessage(NAMES, ServerToolLedger(), max_rounds=4)
    first = to_anthropic_message(reply, model="m", message_id="msg_1", thinking_display="omitted")
    assert not rounds.add_round(first)
    rounds.add_results([{**RESULT, "tool_use_id": "srvtoolu_call_1"}])
    assert rounds.content[0]["thinking"] == ""
    assert next_round_messages(rounds.content)[1]["reasoning_content"] == "Search for py."
