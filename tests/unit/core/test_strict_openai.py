import json
from typing import Any

import pytest

from app.core.sse import DONE_LINE, ServerSentEvent, SSEDecoder
from app.core.strict_openai import ChunkNormaliser, to_strict_completion

ZERO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def normaliser(*, include_usage: bool = False) -> ChunkNormaliser:
    return ChunkNormaliser(
        stream_id="chatcmpl-ours", created=1700, model="asked-model", include_usage=include_usage
    )


def run(events: list[Any], *, include_usage: bool = False, close: bool = True) -> list[Any]:
    """Each event a dict (JSON data), a str (raw data) or a ServerSentEvent; out: parsed data."""
    fixer = normaliser(include_usage=include_usage)
    out = b""
    for item in events:
        if isinstance(item, dict):
            item = ServerSentEvent(json.dumps(item))
        elif isinstance(item, str):
            item = ServerSentEvent(item)
        out += fixer.fix(item)
    if close:
        out += fixer.finish()
    decoded = SSEDecoder().feed(out)
    return [e.data if e.data == "[DONE]" else json.loads(e.data) for e in decoded]


def test_a_bare_chunk_gets_every_field_strict_clients_need() -> None:
    first, done = run([{"choices": [{"delta": {"content": "hi"}}]}])
    assert first == {
        "id": "chatcmpl-ours",
        "object": "chat.completion.chunk",
        "created": 1700,
        "model": "asked-model",
        "choices": [{"index": 0, "delta": {"content": "hi", "role": "assistant"}}],
    }
    assert done == "[DONE]"


def test_upstream_values_are_kept_and_reused_by_later_chunks_without_them() -> None:
    given = {"id": "up-1", "created": 5, "model": "up-model", "object": "x", "extra": [1]}
    chunks = run([{**given, "choices": []}, {"choices": []}])
    assert chunks[0] == {**given, "object": "chat.completion.chunk", "choices": []}
    assert {key: chunks[1][key] for key in ("id", "created", "model")} == {
        "id": "up-1",
        "created": 5,
        "model": "up-model",
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (
            {"delta": {"role": "assistant", "content": ""}},
            {"index": 0, "delta": {"role": "assistant", "content": ""}},
        ),
        (
            {"index": 0, "finish_reason": "stop"},
            {"index": 0, "delta": {"role": "assistant"}, "finish_reason": "stop"},
        ),
        ({"index": "0", "delta": None}, {"index": 0, "delta": {"role": "assistant"}}),
    ],
)
def test_choices_get_index_and_a_delta_with_the_role_first(
    choice: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert run([{"choices": [choice]}])[0]["choices"] == [expected]


def test_role_only_on_each_choices_first_delta() -> None:
    chunks = run(
        [
            {"choices": [{"delta": {"content": "a"}}, {"delta": {"content": "b"}}]},
            {"choices": [{"index": 1, "delta": {"content": "c"}}, "junk"]},
        ]
    )
    assert [c["delta"] for c in chunks[0]["choices"]] == [
        {"content": "a", "role": "assistant"},
        {"content": "b", "role": "assistant"},
    ]
    assert chunks[1]["choices"] == [{"index": 1, "delta": {"content": "c"}}, "junk"]


def test_missing_or_odd_choices_become_a_list() -> None:
    assert run([{"usage": None}, {"choices": "odd"}])[0]["choices"] == []


def tool_delta(*calls: Any) -> dict[str, Any]:
    return {"choices": [{"delta": {"tool_calls": list(calls)}}]}


def test_tool_call_deltas_get_an_index_by_id_order() -> None:
    chunks = run(
        [
            tool_delta({"function": {"arguments": "{"}}),  # no id yet: index 0
            tool_delta({"id": "a", "function": {"name": "f"}}),
            tool_delta({"function": {"arguments": "{}"}}),  # continues "a"
            tool_delta({"id": "b"}, {"id": "a"}, {"id": "", "index": 7}, "junk"),
            tool_delta({"id": "c", "index": 2}),
        ]
    )
    indexes = [
        [
            call["index"] if isinstance(call, dict) else call
            for call in c["choices"][0]["delta"]["tool_calls"]
        ]
        for c in chunks[:-1]
    ]
    assert indexes == [[0], [0], [0], [1, 0, 7, "junk"], [2]]


def test_tool_calls_not_a_list_are_left_alone() -> None:
    assert run([tool_delta() | {"choices": [{"delta": {"tool_calls": None}}]}])[0]["choices"][0][
        "delta"
    ] == {"tool_calls": None, "role": "assistant"}


@pytest.mark.parametrize(
    ("events", "error"),
    [
        (
            [{"error": {"message": "overloaded", "type": "server_error", "code": 503}}],
            {"message": "overloaded", "type": "server_error", "code": 503},
        ),
        ([{"error": "plain words"}], {"message": "plain words", "type": "api_error", "code": None}),
        (
            [{"error": {}}],
            {"message": "upstream failed mid-stream", "type": "api_error", "code": None},
        ),
        (
            [{"object": "error", "message": "vllm", "type": "BadRequestError", "code": 400}],
            {"message": "vllm", "type": "BadRequestError", "code": 400},
        ),
        (
            [ServerSentEvent('{"detail": "x"}', event="error")],
            {"message": "upstream failed mid-stream", "type": "api_error", "code": None},
        ),
        (
            ["not json"],
            {
                "message": "upstream sent an event that is not JSON: not json",
                "type": "api_error",
                "code": None,
            },
        ),
        (
            ["[1, 2]"],
            {"message": "upstream sent a non-object event", "type": "api_error", "code": None},
        ),
    ],
)
def test_upstream_failures_become_one_error_chunk_and_end_the_stream(
    events: list[Any], error: dict[str, Any]
) -> None:
    before = {"choices": [{"delta": {"content": "a"}}]}
    out = run([before, *events, before, "[DONE]"], include_usage=True)
    assert out[1:] == [{"error": error}]


def test_done_is_added_when_missing_and_sent_once() -> None:
    assert run([{"choices": []}])[-1] == "[DONE]"
    assert run([{"choices": []}, "[DONE]", {"choices": []}, "[DONE]"])[1:] == ["[DONE]"]


def test_empty_events_are_dropped() -> None:
    assert run(["", "  "]) == ["[DONE]"]


def test_missing_usage_chunk_is_sent_with_zeros_when_asked() -> None:
    out = run(
        [{"id": "up", "choices": [{"delta": {"content": "a"}}]}, "[DONE]"], include_usage=True
    )
    assert out[1] == {
        "id": "up",
        "object": "chat.completion.chunk",
        "created": 1700,
        "model": "asked-model",
        "choices": [],
        "usage": ZERO_USAGE,
    }
    assert out[2] == "[DONE]"


def test_upstream_usage_is_not_doubled() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    out = run([{"choices": [], "usage": usage}], include_usage=True)
    assert [c if c == "[DONE]" else c["usage"] for c in out] == [usage, "[DONE]"]


def test_no_usage_chunk_when_not_asked() -> None:
    assert run([{"choices": []}])[1:] == ["[DONE]"]


COMPLETE = {
    "id": "up",
    "object": "chat.completion",
    "created": 9,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "length"}
    ],
    "usage": {"prompt_tokens": 1},
}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (COMPLETE, COMPLETE),
        (
            {"choices": [{"message": {"content": "x"}}]},
            {
                "id": "chatcmpl-ours",
                "object": "chat.completion",
                "created": 1700,
                "model": "asked-model",
                "choices": [
                    {
                        "index": 0,
                        "message": {"content": "x", "role": "assistant"},
                        "finish_reason": "stop",
                    }
                ],
            },
        ),
        (
            {
                "id": "",
                "choices": [
                    {"message": {"tool_calls": [{"id": "t"}]}, "finish_reason": None},
                    "junk",
                ],
            },
            {
                "id": "chatcmpl-ours",
                "object": "chat.completion",
                "created": 1700,
                "model": "asked-model",
                "choices": [
                    {
                        "index": 0,
                        "message": {"tool_calls": [{"id": "t"}], "role": "assistant"},
                        "finish_reason": "tool_calls",
                    },
                    "junk",
                ],
            },
        ),
        (
            {"choices": [{"index": 3, "message": None, "finish_reason": "stop"}]},
            {
                "id": "chatcmpl-ours",
                "object": "chat.completion",
                "created": 1700,
                "model": "asked-model",
                "choices": [
                    {
                        "index": 3,
                        "message": {"content": None, "role": "assistant"},
                        "finish_reason": "stop",
                    }
                ],
            },
        ),
        (
            {"choices": None},
            {
                "id": "chatcmpl-ours",
                "object": "chat.completion",
                "created": 1700,
                "model": "asked-model",
                "choices": [],
            },
        ),
    ],
)
def test_whole_answers_get_the_fields_strict_clients_need(
    body: dict[str, Any], expected: dict[str, Any]
) -> None:
    fixed = to_strict_completion(
        json.loads(json.dumps(body)),
        completion_id="chatcmpl-ours",
        created=1700,
        model="asked-model",
    )
    assert fixed == expected


def test_done_line_is_the_sse_one() -> None:
    fixer = normaliser()
    assert fixer.fix(ServerSentEvent("[DONE]")) == DONE_LINE
    assert fixer.finish() == b""


WHOLE_CHUNK = (
    '{"id":"up-1", "object":"chat.completion.chunk","created":5,"model":"m",'
    '"choices":[{"index":0,"delta":{"role":"assistant","content":"h\\u00e9"}}],"x":null}'
)


def test_a_chunk_lacking_nothing_goes_on_byte_for_byte() -> None:
    fixer = normaliser()
    assert fixer.fix(ServerSentEvent(WHOLE_CHUNK)) == b"data: " + WHOLE_CHUNK.encode() + b"\n\n"
    later = WHOLE_CHUNK.replace('"role":"assistant",', "")  # role only on the first
    assert fixer.fix(ServerSentEvent(later)) == b"data: " + later.encode() + b"\n\n"


def test_a_whole_chunk_over_several_data_lines_is_written_on_one() -> None:
    spread = WHOLE_CHUNK.replace('"x":null', '\n"x":null')  # SSE joins data lines with \n
    (chunk,) = run([spread], close=False)
    assert chunk == json.loads(WHOLE_CHUNK)


def whole(body: object, *, include_usage: bool = False) -> list[Any]:
    out = normaliser(include_usage=include_usage).whole(body)
    return [e.data if e.data == "[DONE]" else json.loads(e.data) for e in SSEDecoder().feed(out)]


CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


@pytest.mark.parametrize(
    ("choices", "expected"),
    [
        pytest.param(
            [{"message": {"content": "hi"}}],
            [
                {
                    "index": 0,
                    "delta": {"content": "hi", "role": "assistant"},
                    "finish_reason": "stop",
                }
            ],
            id="text",
        ),
        pytest.param(
            [{"index": 0, "message": {"role": "assistant", "tool_calls": [CALL, "odd"]}}],
            [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "tool_calls": [{"index": 0, **CALL}, "odd"]},
                    "finish_reason": "tool_calls",
                }
            ],
            id="tool-calls-indexed",
        ),
        pytest.param(
            [{"message": "odd", "finish_reason": "length"}, "not a choice"],
            [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": "length"}],
            id="odd-message-kept-reason",
        ),
        pytest.param("not a list", [], id="no-choices"),
    ],
)
def test_a_whole_answer_to_a_stream_request_becomes_one_chunk(
    choices: object, expected: list[Any]
) -> None:
    chunk, done = whole({"id": "up-1", "choices": choices, "usage": USAGE})
    assert chunk["choices"] == expected and chunk["id"] == "up-1" and "usage" not in chunk
    assert done == "[DONE]"


def test_a_whole_answer_gives_its_usage_chunk_when_asked() -> None:
    _, usage, done = whole({"choices": [], "usage": USAGE}, include_usage=True)
    assert usage["choices"] == [] and usage["usage"] == USAGE and done == "[DONE]"
    _, zeros, _ = whole({"choices": []}, include_usage=True)  # none given: zeros, once
    assert zeros["usage"] == ZERO_USAGE


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": {"message": "model is loading"}}, "model is loading"),
        ({"object": "error", "message": "overloaded"}, "overloaded"),
        ("<html>", "upstream answered a non-object body"),
    ],
)
def test_a_whole_error_answer_to_a_stream_request_is_an_error_chunk(
    body: object, message: str
) -> None:
    (error,) = whole(body)
    assert error["error"]["message"] == message


def test_after_the_end_a_whole_answer_adds_nothing() -> None:
    fixer = normaliser()
    fixer.finish()
    assert fixer.whole({"choices": []}) == b""


def test_a_body_that_is_not_a_stream_is_said_in_words() -> None:
    fixer = normaliser()
    out = fixer.not_a_stream("text/html", "<html>\n  <body>Log in</body>\n</html>")
    (error,) = [json.loads(e.data) for e in SSEDecoder().feed(out)]
    assert error["error"]["message"] == (
        "the upstream answered with text/html, not a stream: <html> <body>Log in</body> </html>"
    )
    assert fixer.finish() == b""  # the stream ends with the error
    assert "no content type" in normaliser().not_a_stream("", "x").decode()


def test_an_event_that_is_not_json_is_masked_before_it_is_quoted_and_cut() -> None:
    key = "Qx9fLmT2vR8kWp4nZc6hYb1sJd5gHa3eUo7i"
    fixer = ChunkNormaliser(
        stream_id="chatcmpl-ours",
        created=1700,
        model="asked-model",
        mask=lambda text: text.replace(key, "***"),
    )
    out = fixer.fix(ServerSentEvent(f"{'.' * 190}{key} oops"))
    message = json.loads(SSEDecoder().feed(out)[0].data)["error"]["message"]
    assert message.endswith(f"not JSON: {'.' * 190}*** oops") and key[:6] not in message


def test_events_are_parsed_by_the_loads_given() -> None:
    fixer = ChunkNormaliser(
        stream_id="chatcmpl-ours",
        created=1700,
        model="asked-model",
        loads=lambda text: {"choices": [{"delta": {"content": text}}]},
    )
    out = fixer.fix(ServerSentEvent("anything"))
    assert json.loads(SSEDecoder().feed(out)[0].data)["choices"][0]["delta"]["content"] == (
        "anything"
    )
