"""The Responses API core: request mapping, event translation, the grammar guard."""

import base64
import json
from typing import Any

import pytest

from app.core.errors import ClientRequestError
from app.core.responses_guard import ResponsesGrammarError, ResponsesStreamGuard
from app.core.responses_request import (
    DEFAULT_MAX_OUTPUT_TOKENS,
    WEB_SEARCH_TOOL,
    ToolNames,
    to_messages_request,
)
from app.core.responses_stream import (
    PING_BYTES,
    ResponsesStreamTranslator,
    encode_responses_event,
    error_code,
    message_events,
    openai_error_body,
    to_response_object,
)
from app.core.thinking_display import reasoning_from_signature

FN = {"type": "function", "name": "exec_command", "parameters": {"type": "object"}}


def _map(body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    notes: list[str] = []
    plan = to_messages_request({"model": "m", "input": [], **body}, notes)
    return dict(plan.request), notes


def _messages(*items: Any) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = _map({"input": list(items)})[0]["messages"]
    return messages


def _user(*parts: Any) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": list(parts)}


TEXT_DATA = "data:text/plain;base64," + base64.b64encode(b"file text").decode()

CONTENT_CASES = [
    ("plain string", "hi", [{"type": "text", "text": "hi"}], 0),
    ("empty string", "", [], 0),
    ("input_text", [{"type": "input_text", "text": "a"}], [{"type": "text", "text": "a"}], 0),
    ("refusal", [{"type": "refusal", "refusal": "no"}], [{"type": "text", "text": "no"}], 0),
    ("empty text part", [{"type": "input_text", "text": ""}], [], 0),
    (
        "data image",
        [{"type": "input_image", "image_url": "data:image/png;base64,AAAA"}],
        [
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
            }
        ],
        0,
    ),
    (
        "url image",
        [{"type": "input_image", "image_url": "https://x/i.png"}],
        [{"type": "image", "source": {"type": "url", "url": "https://x/i.png"}}],
        0,
    ),
    ("image without url", [{"type": "input_image"}], [], 1),
    (
        "pdf file",
        [
            {
                "type": "input_file",
                "filename": "a.pdf",
                "file_data": "data:application/pdf;base64,QUJD",
            }
        ],
        [
            {
                "type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": "QUJD"},
                "title": "a.pdf",
            }
        ],
        0,
    ),
    (
        "text file",
        [{"type": "input_file", "file_data": TEXT_DATA}],
        [{"type": "text", "text": "[file file]\nfile text"}],
        0,
    ),
    ("broken text file", [{"type": "input_file", "file_data": "data:text/plain;base64,!!"}], [], 1),
    ("file by id", [{"type": "input_file", "file_id": "f1"}], [], 1),
    ("unknown part", [{"type": "audio"}, "junk"], [], 2),
]


@pytest.mark.parametrize(
    ("content", "blocks", "noted"),
    [c[1:] for c in CONTENT_CASES],
    ids=[c[0] for c in CONTENT_CASES],
)
def test_user_content(content: Any, blocks: list[Any], noted: int) -> None:
    request, notes = _map({"input": [{"role": "user", "content": content}]})
    assert request["messages"] == ([{"role": "user", "content": blocks}] if blocks else [])
    assert len(notes) == noted


def test_plain_string_input_and_defaults() -> None:
    request, notes = _map({"input": "hello", "stream": True, "store": False, "include": []})
    assert request == {
        "model": "m",
        "max_tokens": DEFAULT_MAX_OUTPUT_TOKENS,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
        "stream": True,
    }
    assert notes == []


def test_system_parts_and_later_developer_messages() -> None:
    request, _ = _map(
        {
            "instructions": "base",
            "input": [
                {
                    "type": "message",
                    "role": "developer",
                    "content": [{"type": "input_text", "text": "dev"}, {"type": "input_image"}],
                },
                {"role": "system", "content": "sys"},
                _user({"type": "input_text", "text": "q"}),
                {"role": "developer", "content": "later"},
                {"role": "developer", "content": None},
            ],
        }
    )
    assert request["system"] == "base\n\ndev\n\nsys"
    assert request["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "q"},
                {"type": "text", "text": "[developer]\nlater"},
            ],
        }
    ]


def test_calls_outputs_and_reasoning_in_order() -> None:
    signature = "nimbridge-reasoning-v1:x"
    messages = _messages(
        _user({"type": "input_text", "text": "go"}),
        {
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": "plan"}],
            "encrypted_content": signature,
        },
        {"type": "reasoning", "summary": []},
        {"type": "reasoning", "content": [{"type": "reasoning_text", "text": "raw"}]},
        {
            "type": "function_call",
            "call_id": "c1",
            "name": "exec_command",
            "arguments": '{"cmd":"ls"}',
        },
        {
            "type": "function_call",
            "call_id": "c2",
            "name": "spawn",
            "namespace": "agents",
            "arguments": "",
        },
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        {
            "type": "function_call_output",
            "call_id": "c2",
            "output": [{"type": "input_text", "text": "t"}],
        },
        {"type": "web_search_call", "action": {"type": "search", "query": "news"}},
        {"type": "web_search_call", "action": {}},
    )
    assert messages == [
        {"role": "user", "content": [{"type": "text", "text": "go"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "plan", "signature": signature},
                {"type": "thinking", "thinking": "raw", "signature": ""},
                {"type": "tool_use", "id": "c1", "name": "exec_command", "input": {"cmd": "ls"}},
                {"type": "tool_use", "id": "c2", "name": "agents__spawn", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "c1", "content": "ok"},
                {
                    "type": "tool_result",
                    "tool_use_id": "c2",
                    "content": [{"type": "text", "text": "t"}],
                },
            ],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "[searched the web for: news]"}],
        },
    ]


ARGUMENT_CASES = [
    ({"a": 1}, {"a": 1}, 0),
    ('{"a": 1}', {"a": 1}, 0),
    (None, {}, 0),
    ("not json", {"input": "not json"}, 1),
    ("[1]", {"input": "[1]"}, 1),
]


@pytest.mark.parametrize(("arguments", "expected", "noted"), ARGUMENT_CASES)
def test_call_arguments(arguments: Any, expected: dict[str, Any], noted: int) -> None:
    notes: list[str] = []
    item = {"type": "function_call", "call_id": "c", "name": "f", "arguments": arguments}
    plan = to_messages_request({"model": "m", "input": [item]}, notes)
    assert plan.request["messages"][0]["content"][0]["input"] == expected
    assert len(notes) == noted


@pytest.mark.parametrize(
    ("output", "expected"), [({"x": 1}, '{"x": 1}'), ([{"type": "audio"}], '[{"type": "audio"}]')]
)
def test_tool_output_that_is_not_text(output: Any, expected: str) -> None:
    (message,) = _messages({"type": "function_call_output", "call_id": "c", "output": output})
    assert message["content"][0]["content"] == expected


def test_unknown_input_item_is_noted() -> None:
    request, notes = _map({"input": [{"type": "item_reference", "id": "x"}]})
    assert request["messages"] == []
    assert notes == ["input.0: input item of type 'item_reference' dropped"]


BAD_REQUESTS = [
    ({"previous_response_id": "resp_1"}, "previous_response_id"),
    ({"model": ""}, "model"),
    ({"input": 5}, "input"),
    ({"input": [5]}, "input.0"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input.0.role"),
    ({"input": [{"role": "user", "content": 5}]}, "input.0.content"),
    ({"input": [{"type": "function_call", "call_id": "c"}]}, "function_call"),
    ({"input": [{"type": "function_call_output"}]}, "input.0.call_id"),
    ({"tools": {}}, "tools"),
    ({"tools": [FN], "tool_choice": {"type": "mcp"}}, "tool_choice"),
    # Found by the fuzz target (tests/fuzz/test_responses_fuzz.py): these were 500s.
    ({"tools": [{"type": "function"}]}, "tools.0.name"),
    ({"tools": [{"type": "namespace", "name": "ns", "tools": 1.5}]}, "tools.0.tools"),
    ({"tools": [{"type": "namespace", "name": "ns", "tools": [7]}]}, "tools.0.tools.0"),
    ({"tools": [{"type": "namespace", "name": "ns", "tools": [{}]}]}, "tools.0.tools.0.name"),
    ({"tools": [FN], "tool_choice": {"type": "function", "name": 3}}, "tool_choice.name"),
]


@pytest.mark.parametrize(
    "fields",
    [
        {"reasoning": 5},
        {"text": True},
        {"text": {"format": "json"}},
        {"include": True},
        {"input": [{"type": "web_search_call", "action": "q"}, {"role": "user", "content": "hi"}]},
        {"tools": [{**FN, "parameters": "none"}]},
    ],
)
def test_mangled_optional_objects_are_read_as_absent(fields: dict[str, Any]) -> None:
    plan = to_messages_request({"model": "m", "input": "hi", **fields}, [])
    assert plan.request["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    ]


@pytest.mark.parametrize(("body", "field"), BAD_REQUESTS)
def test_bad_requests_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ClientRequestError) as caught:
        to_messages_request({"model": "m", "input": [], **body}, [])
    assert caught.value.status == 400 and field in caught.value.message


def test_tools_flattened_and_named_back() -> None:
    notes: list[str] = []
    namespace = {
        "type": "namespace",
        "name": "agents",
        "tools": [{"type": "function", "name": "spawn", "description": "d"}],
    }
    plan = to_messages_request(
        {
            "model": "m",
            "input": [],
            "tools": [
                FN,
                namespace,
                {"type": "web_search", "external_web_access": False},
                {"type": "custom", "name": "apply_patch"},
            ],
            "tool_choice": {"type": "function", "name": "spawn", "namespace": "agents"},
            "parallel_tool_calls": False,
        },
        notes,
    )
    assert plan.request["tools"] == [
        {"name": "exec_command", "input_schema": {"type": "object"}},
        {
            "name": "agents__spawn",
            "input_schema": {"type": "object", "properties": {}},
            "description": "d",
        },
        WEB_SEARCH_TOOL,
    ]
    assert plan.request["tool_choice"] == {
        "type": "tool",
        "name": "agents__spawn",
        "disable_parallel_tool_use": True,
    }
    assert plan.tool_names.client_name("agents__spawn") == ("agents", "spawn")
    assert plan.tool_names.client_name("exec_command") == (None, "exec_command")
    assert notes == ["tools.3: tool of type 'custom' dropped (not supported)"]


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", True, {"type": "any"}),
        ("none", False, {"type": "none"}),
        ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
        (
            {"type": "function", "name": "exec_command"},
            None,
            {"type": "tool", "name": "exec_command"},
        ),
        (None, None, None),
    ],
)
def test_tool_choice(choice: Any, parallel: Any, expected: Any) -> None:
    request, _ = _map({"tools": [FN], "tool_choice": choice, "parallel_tool_calls": parallel})
    assert request.get("tool_choice") == expected


def test_tool_choice_without_tools_is_left_out() -> None:
    assert "tool_choice" not in _map({"tool_choice": "required"})[0]


@pytest.mark.parametrize(
    ("reasoning", "thinking", "output_config"),
    [
        ({"effort": "none"}, {"type": "disabled"}, None),
        ({"effort": "xhigh", "summary": "auto"}, {"type": "adaptive"}, {"effort": "max"}),
        ({"effort": "minimal"}, {"type": "adaptive"}, {"effort": "low"}),
        ({"summary": "auto"}, None, None),
        ({"effort": "turbo"}, None, None),
        (None, None, None),
    ],
)
def test_reasoning_effort(reasoning: Any, thinking: Any, output_config: Any) -> None:
    request, _ = _map({"reasoning": reasoning})
    assert request.get("thinking") == thinking
    assert request.get("output_config") == output_config


def test_sampling_output_budget_format_and_unknown_fields() -> None:
    request, notes = _map(
        {
            "max_output_tokens": 77,
            "temperature": 0.5,
            "top_p": 1,
            "instructions": "sys",
            "text": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
            "frobnicate": 1,
        }
    )
    assert (request["max_tokens"], request["temperature"], request["top_p"]) == (77, 0.5, 1)
    assert (
        request["system"] == 'sys\n\nAnswer with JSON that matches this schema: {"type": "object"}'
    )
    assert notes == ["Responses field 'frobnicate' ignored"]


def test_include_asks_for_encrypted_reasoning() -> None:
    plan = to_messages_request(
        {"model": "m", "input": [], "include": ["reasoning.encrypted_content"]}, []
    )
    assert plan.include_encrypted_reasoning
    assert not to_messages_request(
        {"model": "m", "input": [], "include": None}, []
    ).include_encrypted_reasoning


# ------------------------------------------------------------------ stream


def _translator(
    names: ToolNames | None = None, encrypted: bool = False
) -> ResponsesStreamTranslator:
    return ResponsesStreamTranslator(
        response_id="r1",
        created_at=5,
        tool_names=names or ToolNames(),
        include_encrypted_reasoning=encrypted,
    )


def _run(
    events: list[dict[str, Any]], translator: ResponsesStreamTranslator | None = None
) -> list[dict[str, Any]]:
    translator = translator or _translator()
    guard = ResponsesStreamGuard()
    out = [e for event in events for e in translator.feed(event)]
    for event in out:
        guard.check(event)
    return out


def _message(*content: dict[str, Any], stop: str = "end_turn") -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": list(content),
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": 2},
    }


def test_every_block_kind_streams_in_grammar() -> None:
    names = ToolNames({"agents__spawn": ("agents", "spawn")})
    message = _message(
        {"type": "thinking", "thinking": "hmm", "signature": ""},
        {"type": "text", "text": "Hello"},
        {"type": "tool_use", "id": "c1", "name": "agents__spawn", "input": {"a": 1}},
        {"type": "server_tool_use", "id": "s1", "name": "web_search", "input": {"query": "q"}},
        {"type": "web_search_tool_result", "tool_use_id": "s1", "content": []},
    )
    events = [*message_events(message)]
    events.insert(1, {"type": "ping"})
    events.insert(
        3,
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": "x"},
        },
    )
    events.append({"type": "ping"})  # after the end: nothing
    out = _run(events, _translator(names, encrypted=True))
    done = [e["item"] for e in out if e["type"] == "response.output_item.done"]
    assert [item["type"] for item in done] == [
        "reasoning",
        "message",
        "function_call",
        "web_search_call",
    ]
    assert reasoning_from_signature(done[0]["encrypted_content"]) == "hmm"
    assert done[1]["content"][0]["text"] == "Hello"
    assert (done[2]["name"], done[2]["namespace"], json.loads(done[2]["arguments"])) == (
        "spawn",
        "agents",
        {"a": 1},
    )
    assert done[3]["action"] == {"type": "search", "query": "q"}
    assert out[-1]["type"] == "response.completed"
    assert out[-1]["response"]["usage"] == {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 2},
        "output_tokens": 4,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 16,
    }
    assert out[2] == {"type": "ping"}


def test_reasoning_is_masked_before_it_is_packed_as_encrypted_content() -> None:
    key = "Qx9fLmT2vR8kWp4nZc6hYb1sJd5gHa3eUo7i"  # compressed, the way out cannot see it
    translator = ResponsesStreamTranslator(
        response_id="r1",
        created_at=5,
        tool_names=ToolNames(),
        include_encrypted_reasoning=True,
        mask=lambda text: text.replace(key, "***"),
    )
    message = _message({"type": "thinking", "thinking": f"the key is {key}", "signature": ""})
    out = _run([*message_events(message)], translator)
    done = [e["item"] for e in out if e["type"] == "response.output_item.done"]
    assert reasoning_from_signature(done[0]["encrypted_content"]) == "the key is ***"


@pytest.mark.parametrize(
    ("arguments", "action"),
    [
        ("{}", {"type": "search"}),
        ("[", {"type": "search"}),
        ('{"query": 1}', {"type": "search"}),
        ("[1]", {"type": "search"}),
    ],
)
def test_web_search_call_without_a_query(arguments: str, action: dict[str, Any]) -> None:
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"model": "m"}},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "server_tool_use", "id": "s", "name": "web_search"},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": arguments},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_stop", "index": 7},
        {"type": "content_block_delta", "index": 7, "delta": {"type": "text_delta", "text": "x"}},
        {"type": "mystery"},
        {"type": "message_delta", "delta": {}, "usage": None},
        {"type": "message_stop"},
    ]
    out = _run(events)
    assert [e["item"]["action"] for e in out if e["type"] == "response.output_item.done"] == [
        action
    ]


def test_tool_call_without_arguments_and_a_max_tokens_stop() -> None:
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"model": "m", "usage": {"input_tokens": 1}}},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "c", "name": "f"},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens"},
            "usage": {"output_tokens": 3},
        },
        {"type": "message_stop"},
    ]
    out = _run(events)
    assert out[-2]["item"]["arguments"] == "{}" and "namespace" not in out[-2]["item"]
    assert out[-1]["type"] == "response.incomplete"
    assert out[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (
            {
                "type": "invalid_request_error",
                "message": "prompt is too long: 9 tokens > 5 maximum",
            },
            "context_length_exceeded",
        ),
        ({"type": "rate_limit_error", "message": "slow down"}, "rate_limit_exceeded"),
        ({"type": "weird", "message": "x"}, "server_error"),
        ({}, "server_error"),
    ],
)
def test_errors_fail_the_response_with_codes_codex_reads(error: dict[str, Any], code: str) -> None:
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"model": "m"}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "error", "error": error},
    ]
    out = _run(events)
    assert out[-1]["type"] == "response.failed"
    assert out[-1]["response"]["error"]["code"] == code
    assert error_code(error.get("type", ""), error.get("message", "")) == code


def test_a_lone_error_still_opens_the_response() -> None:
    """The Anthropic grammar allows a stream that is one `error` (pings before it); the
    Responses one begins with response.created whatever follows."""
    error = {"type": "overloaded_error", "message": "busy"}
    out = _run([{"type": "ping"}, {"type": "error", "error": error}])
    assert [e["type"] for e in out] == [
        "ping",
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
    assert out[-1]["response"]["error"] == {"code": "server_is_overloaded", "message": "busy"}
    assert out[-1]["response"]["status"] == "failed"


def test_http_error_body_and_encoding() -> None:
    body = openai_error_body("overloaded_error", "busy")
    assert body == {
        "error": {
            "message": "busy",
            "type": "overloaded_error",
            "code": "server_is_overloaded",
            "param": None,
        }
    }
    assert encode_responses_event({"type": "ping"}) == PING_BYTES
    assert (
        encode_responses_event({"type": "response.x", "a": "é"})
        == 'event: response.x\ndata: {"type":"response.x","a":"é"}\n\n'.encode()
    )


def test_whole_message_as_a_response_object() -> None:
    message = _message(
        {"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}, stop="tool_use"
    )
    response = to_response_object(
        message,
        response_id="r9",
        created_at=3,
        tool_names=ToolNames(),
        include_encrypted_reasoning=False,
    )
    assert (response["id"], response["status"], response["model"], response["output_text"]) == (
        "r9",
        "completed",
        "claude-x",
        "Hi there",
    )
    assert [item["type"] for item in response["output"]] == ["message", "message"]


# ------------------------------------------------------------------ guard


def _ev(kind: str, n: int, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "sequence_number": n, **fields}


OPENING = [_ev("response.created", 1), _ev("response.in_progress", 2)]
ADDED = _ev("response.output_item.added", 3, output_index=0, item={"type": "message", "id": "i"})

GUARD_FAILURES = [
    ("starts without created", [_ev("response.in_progress", 1)], "before response.created"),
    ("sequence gap", [_ev("response.created", 2)], "sequence_number"),
    (
        "text outside an item",
        [*OPENING, _ev("response.output_text.delta", 3, item_id="i", output_index=0)],
        "outside",
    ),
    ("two items open", [*OPENING, ADDED, {**ADDED, "sequence_number": 4}], "another item is open"),
    ("wrong output_index", [*OPENING, {**ADDED, "output_index": 1}], "output_index"),
    ("unknown item type", [*OPENING, {**ADDED, "item": {"type": "audio"}}], "type wrong"),
    (
        "done of another item",
        [*OPENING, ADDED, _ev("response.output_item.done", 4, item={"id": "j"})],
        "not open",
    ),
    (
        "done with none open",
        [*OPENING, _ev("response.output_item.done", 3, item={"id": "i"})],
        "not open",
    ),
    (
        "wrong event for the item",
        [
            *OPENING,
            ADDED,
            _ev("response.function_call_arguments.delta", 4, item_id="i", output_index=0),
        ],
        "inside a message",
    ),
    (
        "names another item",
        [*OPENING, ADDED, _ev("response.output_text.delta", 4, item_id="j", output_index=0)],
        "another item",
    ),
    ("completed with an item open", [*OPENING, ADDED, _ev("response.completed", 4)], "is open"),
    ("after the end", [*OPENING, _ev("response.completed", 3), {"type": "ping"}], "after the end"),
]


@pytest.mark.parametrize(
    ("events", "reason"), [c[1:] for c in GUARD_FAILURES], ids=[c[0] for c in GUARD_FAILURES]
)
def test_guard_refuses(events: list[dict[str, Any]], reason: str) -> None:
    guard = ResponsesStreamGuard()
    with pytest.raises(ResponsesGrammarError) as caught:
        for event in events:
            guard.check(event)
    assert reason in caught.value.reason


def test_guard_takes_a_failure_inside_an_item_and_wants_an_end() -> None:
    guard = ResponsesStreamGuard()
    for event in [*OPENING, ADDED, _ev("response.failed", 4)]:
        guard.check(event)
    guard.finish()
    unfinished = ResponsesStreamGuard()
    unfinished.check(OPENING[0])
    with pytest.raises(ResponsesGrammarError):
        unfinished.finish()
