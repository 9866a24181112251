"""Tests for app.core.response_map: OpenAI chat.completion bodies -> Anthropic Message."""

import json
from pathlib import Path
from typing import Any

import pytest

from app.core.errors import UpstreamError, UpstreamProtocolError
from app.core.response_map import (
    STOP_REASON_BY_FINISH_REASON,
    anthropic_stop_reason,
    parse_tool_arguments,
    to_anthropic_message,
    usage_from_openai,
)
from app.core.thinking_display import reasoning_from_signature

BODIES = Path(__file__).parents[2] / "fixtures" / "upstream_bodies"


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((BODIES / name).read_text(encoding="utf-8"))
    return loaded


def completion(message: Any, finish_reason: Any = "stop", **choice: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": message, "finish_reason": finish_reason, **choice}]}


def translate(resp: dict[str, Any], **kwargs: Any) -> tuple[dict[str, Any], list[str]]:
    repairs: list[str] = []
    message = to_anthropic_message(
        resp, model="claude-x", message_id="msg_1", repairs=repairs, **kwargs
    )
    return dict(message), repairs


ZERO_USAGE = {
    "input_tokens": 0,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "output_tokens": 0,
}


# ------------------------------------------------------------------ recorded bodies


def test_ollama_reasoning_field_and_tool_call() -> None:
    message, repairs = translate(load("ollama-cloud_gpt-oss-20b_tool-call_reasoning-field.json"))
    assert [block["type"] for block in message["content"]] == ["thinking", "tool_use"]
    thinking, tool_use = message["content"]
    assert thinking["thinking"].startswith("The conversation: user asked")
    assert thinking["signature"] == "nimbridge"
    assert tool_use == {
        "type": "tool_use",
        "id": "call_o2vnpxrw",
        "name": "final_result",
        "input": {"city": "Paris", "country": "France"},
    }
    assert message["stop_reason"] == "tool_use"
    assert message["stop_sequence"] is None
    assert message["usage"] == {**ZERO_USAGE, "input_tokens": 206, "output_tokens": 194}
    assert message["model"] == "claude-x"
    assert message["id"] == "msg_1"
    assert message["type"] == "message"
    assert message["role"] == "assistant"
    assert repairs == []


def test_nim_minimax_vllm_extra_fields() -> None:
    body = load("nim_minimax-m2.7_nonstream_vllm-extra-fields.json")
    message, repairs = translate(body)
    # No thinking block came first, so the leading blank lines are the model's own text.
    assert message["content"] == [
        {"type": "text", "text": body["choices"][0]["message"]["content"]}
    ]
    assert message["stop_reason"] == "end_turn"  # `tool_calls: []` means no tool blocks
    assert message["usage"] == {**ZERO_USAGE, "input_tokens": 44, "output_tokens": 886}
    assert repairs == []


def test_reconstructed_minimax_xml_in_content_does_not_crash() -> None:
    message, _ = translate(load("RECONSTRUCTED_minimax_xml-tool-call-in-content.json"))
    assert message["content"][0]["type"] == "text"
    assert "<minimax:tool_call>" in message["content"][0]["text"]
    assert message["usage"] == ZERO_USAGE


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        pytest.param(
            "openrouter_429_provider-returned-error.json",
            "temporarily rate-limited",
            id="openrouter",
        ),
        pytest.param(
            "vllm_400_max-tokens-negative_error-envelope.json",
            "prompt is too long: 46772 tokens",
            id="vllm-envelope",
        ),
    ],
)
def test_error_object_with_200_raises_upstream_error(name: str, fragment: str) -> None:
    with pytest.raises(UpstreamError) as caught:
        translate(load(name))
    assert fragment in caught.value.message
    assert not isinstance(caught.value, UpstreamProtocolError)


@pytest.mark.parametrize(
    "name",
    [
        "nim_400_degraded-function.json",
        "nim_404_function-not-found-for-account.json",
        "nim_429_too-many-requests.json",
        "vllm_400_max-tokens-negative_legacy-object-error.json",
    ],
)
def test_bodies_without_choices_are_protocol_errors(name: str) -> None:
    with pytest.raises(UpstreamProtocolError, match="upstream response has no choices"):
        translate(load(name))


@pytest.mark.parametrize(
    "resp",
    [
        pytest.param({}, id="missing"),
        pytest.param({"choices": []}, id="empty"),
        pytest.param({"choices": None}, id="null"),
        pytest.param({"choices": {"0": {}}}, id="not-a-list"),
        pytest.param({"choices": ["x"]}, id="choice-not-object"),
        pytest.param({"error": None, "choices": []}, id="null-error-key"),
    ],
)
def test_no_choices(resp: dict[str, Any]) -> None:
    with pytest.raises(UpstreamProtocolError, match="no choices"):
        translate(resp)


# ------------------------------------------------------------------ content


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param({"content": "hi"}, [{"type": "text", "text": "hi"}], id="plain-text"),
        pytest.param({"content": None}, [], id="null-content"),
        pytest.param({"content": ""}, [], id="empty-content-omitted"),
        pytest.param({"content": " \n\n "}, [], id="whitespace-only-omitted"),
        pytest.param({}, [], id="no-content-key"),
        pytest.param(
            {
                "content": [
                    {"type": "text", "text": "a"},
                    {"type": "text", "text": "b"},
                    "x",
                    {"t": 1},
                ]
            },
            [{"type": "text", "text": "ab"}],
            id="content-parts-list",
        ),
        pytest.param(
            {"reasoning_content": "hmm", "content": "\n\nanswer"},
            [
                {"type": "thinking", "thinking": "hmm", "signature": "nimbridge"},
                {"type": "text", "text": "answer"},
            ],
            id="reasoning-content-then-text-stripped",
        ),
        pytest.param(
            {"reasoning_content": None, "reasoning": "r", "content": "a"},
            [
                {"type": "thinking", "thinking": "r", "signature": "nimbridge"},
                {"type": "text", "text": "a"},
            ],
            id="reasoning-field",
        ),
        pytest.param(
            {"reasoning_content": "", "reasoning": "", "content": "a"},
            [{"type": "text", "text": "a"}],
            id="empty-reasoning-ignored",
        ),
        pytest.param(
            {
                "content": "a",
                "reasoning_details": [
                    {"type": "reasoning.text", "text": "one "},
                    {"type": "reasoning.summary", "summary": "two"},
                    {"type": "reasoning.encrypted", "data": "xx"},
                    "junk",
                    {"type": "reasoning.text", "text": 5},
                ],
            },
            [
                {"type": "thinking", "thinking": "one two", "signature": "nimbridge"},
                {"type": "text", "text": "a"},
            ],
            id="reasoning-details",
        ),
        pytest.param(
            {"content": "a", "reasoning_details": "nope"},
            [{"type": "text", "text": "a"}],
            id="reasoning-details-not-a-list",
        ),
        pytest.param(
            {"content": "\n<think>\nstep 1\n</think>\n\nanswer"},
            [
                {"type": "thinking", "thinking": "\nstep 1\n", "signature": "nimbridge"},
                {"type": "text", "text": "answer"},
            ],
            id="think-tags-at-start",
        ),
        pytest.param(
            {"content": "<think>cut short"},
            [{"type": "thinking", "thinking": "cut short", "signature": "nimbridge"}],
            id="unclosed-think-tag",
        ),
        pytest.param(
            {"content": "say <think>x</think> literally"},
            [{"type": "text", "text": "say <think>x</think> literally"}],
            id="think-tags-not-at-start-kept",
        ),
        pytest.param(
            {"reasoning_content": "r", "content": "<think>t</think>a"},
            [
                {"type": "thinking", "thinking": "r", "signature": "nimbridge"},
                {"type": "text", "text": "<think>t</think>a"},
            ],
            id="reasoning-field-wins-over-tags",
        ),
        pytest.param(
            {"content": None, "refusal": "I can't help with that."},
            [{"type": "text", "text": "I can't help with that."}],
            id="refusal-as-text",
        ),
        pytest.param(
            {"content": "a", "refusal": "no"},
            [{"type": "text", "text": "a"}],
            id="content-wins-over-refusal",
        ),
    ],
)
def test_content_blocks(message: dict[str, Any], expected: list[dict[str, Any]]) -> None:
    result, repairs = translate(completion(message))
    assert result["content"] == expected
    assert repairs == []


def test_missing_message_is_repaired() -> None:
    result, repairs = translate({"choices": [{"finish_reason": "stop"}]})
    assert result["content"] == []
    assert result["stop_reason"] == "end_turn"
    assert repairs == ["choice has no message"]


def test_signature_and_tool_id_prefix_arguments() -> None:
    resp = completion(
        {"reasoning_content": "r", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]},
        "tool_calls",
    )
    result, _ = translate(resp, signature="sig", tool_id_prefix="call_")
    assert result["content"][0]["signature"] == "sig"
    assert result["content"][1]["id"] == "call_msg_1_0"


# ------------------------------------------------------------------ tool calls


def call(arguments: Any, name: Any = "f", call_id: Any = "c1") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


@pytest.mark.parametrize(
    ("calls", "expected", "repair_count"),
    [
        pytest.param(
            [call('{"a": 1}'), call('{"b":"ü"}', name="g", call_id="c2")],
            [("c1", "f", {"a": 1}), ("c2", "g", {"b": "ü"})],
            0,
            id="two-calls",
        ),
        pytest.param([call({"a": 1})], [("c1", "f", {"a": 1})], 0, id="arguments-already-object"),
        pytest.param([call("")], [("c1", "f", {})], 0, id="empty-arguments"),
        pytest.param([call(None)], [("c1", "f", {})], 0, id="null-arguments"),
        pytest.param([call(" \n")], [("c1", "f", {})], 0, id="blank-arguments"),
        pytest.param([call('{"a":1}}')], [("c1", "f", {"a": 1})], 1, id="trailing-garbage"),
        pytest.param([call('{"a":1}<|call|>')], [("c1", "f", {"a": 1})], 1, id="trailing-token"),
        pytest.param([call('{"a":{"b":1')], [("c1", "f", {"a": {"b": 1}})], 1, id="cut-short"),
        pytest.param([call('"{\\"a\\": 1}"')], [("c1", "f", {"a": 1})], 0, id="double-encoded"),
        pytest.param([call("{'a': 1}")], [("c1", "f", {})], 1, id="single-quotes-give-up"),
        pytest.param([call("[1, 2]")], [("c1", "f", {})], 1, id="array-not-object"),
        pytest.param([call(42)], [("c1", "f", {})], 1, id="number-arguments"),
        pytest.param([call("{}", call_id=None)], [("toolu_msg_1_0", "f", {})], 0, id="missing-id"),
        pytest.param([call("{}", call_id="")], [("toolu_msg_1_0", "f", {})], 0, id="empty-id"),
        pytest.param([call("{}", name="")], [("c1", "", {})], 1, id="empty-name"),
        pytest.param([{"id": "c1"}], [("c1", "", {})], 1, id="no-function"),
        pytest.param(
            ["junk", call("{}", call_id=None)],
            [("toolu_msg_1_1", "f", {})],
            1,
            id="non-object-call-dropped",
        ),
    ],
)
def test_tool_calls(
    calls: list[Any], expected: list[tuple[str, str, Any]], repair_count: int
) -> None:
    result, repairs = translate(completion({"content": None, "tool_calls": calls}, "tool_calls"))
    blocks = [
        (b["id"], b["name"], b["input"]) for b in result["content"] if b["type"] == "tool_use"
    ]
    assert blocks == expected
    assert len(repairs) == repair_count, repairs
    assert result["stop_reason"] == "tool_use"


def test_legacy_function_call() -> None:
    resp = completion(
        {"content": "ok", "function_call": {"name": "f", "arguments": '{"x":1}'}}, "function_call"
    )
    result, _ = translate(resp)
    assert result["content"] == [
        {"type": "text", "text": "ok"},
        {"type": "tool_use", "id": "toolu_msg_1_0", "name": "f", "input": {"x": 1}},
    ]
    assert result["stop_reason"] == "tool_use"


def test_text_thinking_and_tools_keep_order() -> None:
    resp = completion(
        {"content": "\n\nLet me look.", "reasoning_content": "plan", "tool_calls": [call("{}")]},
        "tool_calls",
    )
    result, _ = translate(resp)
    assert [b["type"] for b in result["content"]] == ["thinking", "text", "tool_use"]
    assert result["content"][1]["text"] == "Let me look."


def test_parse_tool_arguments_does_not_copy_dicts() -> None:
    args = {"a": 1}
    assert parse_tool_arguments(args, []) is args


# ------------------------------------------------------------------ stop reasons


@pytest.mark.parametrize(
    ("choice", "has_tools", "expected", "repaired"),
    [
        pytest.param({"finish_reason": "stop"}, False, ("end_turn", None), False, id="stop"),
        pytest.param({"finish_reason": "length"}, False, ("max_tokens", None), False, id="length"),
        pytest.param(
            {"finish_reason": "tool_calls"}, True, ("tool_use", None), False, id="tool-calls"
        ),
        pytest.param(
            {"finish_reason": "function_call"}, True, ("tool_use", None), False, id="function-call"
        ),
        pytest.param(
            {"finish_reason": "content_filter"},
            False,
            ("refusal", None),
            False,
            id="content-filter",
        ),
        pytest.param(
            {"finish_reason": "eos_token"}, False, ("end_turn", None), False, id="tgi-eos"
        ),
        pytest.param(
            {"finish_reason": "stop", "stop_reason": "###"},
            False,
            ("stop_sequence", "###"),
            False,
            id="vllm-stop-reason-string",
        ),
        pytest.param(
            {"finish_reason": "stop", "matched_stop": "END"},
            False,
            ("stop_sequence", "END"),
            False,
            id="sglang-matched-stop",
        ),
        pytest.param(
            {"finish_reason": "stop", "stop_reason": 128009},
            False,
            ("end_turn", None),
            False,
            id="vllm-stop-token-id",
        ),
        pytest.param(
            {"finish_reason": "stop", "matched_stop": ""},
            False,
            ("end_turn", None),
            False,
            id="empty-matched-stop",
        ),
        pytest.param(
            {"finish_reason": "length", "stop_reason": "x"},
            False,
            ("max_tokens", None),
            False,
            id="length-ignores-stop-reason",
        ),
        pytest.param(
            {"finish_reason": "stop"}, True, ("tool_use", None), False, id="stop-with-tools"
        ),
        pytest.param(  # found by tests/fuzz: was ("stop_sequence", "END") beside a tool call
            {"finish_reason": "stop", "matched_stop": "END"},
            True,
            ("tool_use", None),
            False,
            id="matched-stop-with-tools",
        ),
        pytest.param(
            {"finish_reason": "length"}, True, ("max_tokens", None), False, id="length-with-tools"
        ),
        pytest.param({"finish_reason": None}, False, ("end_turn", None), True, id="null"),
        pytest.param({}, True, ("tool_use", None), True, id="missing-with-tools"),
        pytest.param({"finish_reason": "weird"}, False, ("end_turn", None), True, id="unknown"),
        pytest.param({"finish_reason": 3}, False, ("end_turn", None), True, id="not-a-string"),
    ],
)
def test_stop_reason(
    choice: dict[str, Any], has_tools: bool, expected: tuple[str, str | None], repaired: bool
) -> None:
    message: dict[str, Any] = {"content": "x"}
    if has_tools:
        message["tool_calls"] = [call("{}")]
    result, repairs = translate({"choices": [{"message": message, **choice}]})
    assert (result["stop_reason"], result["stop_sequence"]) == expected
    assert bool(repairs) is repaired


def test_anthropic_stop_reason_without_repairs_list() -> None:
    assert anthropic_stop_reason(None) == ("end_turn", None)
    assert set(STOP_REASON_BY_FINISH_REASON.values()) <= {
        "end_turn",
        "max_tokens",
        "tool_use",
        "refusal",
    }


# ------------------------------------------------------------------ usage


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        pytest.param(None, ZERO_USAGE, id="none"),
        pytest.param({}, ZERO_USAGE, id="empty"),
        pytest.param(
            {"prompt_tokens": 100, "completion_tokens": 7},
            {**ZERO_USAGE, "input_tokens": 100, "output_tokens": 7},
            id="plain",
        ),
        pytest.param(
            {
                "prompt_tokens": 100,
                "completion_tokens": 7,
                "prompt_tokens_details": {"cached_tokens": 60},
            },
            {**ZERO_USAGE, "input_tokens": 40, "cache_read_input_tokens": 60, "output_tokens": 7},
            id="openai-cached",
        ),
        pytest.param(
            {"prompt_tokens": 100, "prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 36},
            {**ZERO_USAGE, "input_tokens": 36, "cache_read_input_tokens": 64},
            id="deepseek-cache-hit",
        ),
        pytest.param(
            {
                "prompt_tokens": 10,
                "prompt_tokens_details": {"cached_tokens": 0},
                "prompt_cache_hit_tokens": 4,
            },
            {**ZERO_USAGE, "input_tokens": 6, "cache_read_input_tokens": 4},
            id="zero-cached-falls-back",
        ),
        pytest.param(
            {"prompt_tokens": 10, "prompt_tokens_details": None},
            {**ZERO_USAGE, "input_tokens": 10},
            id="null-details",
        ),
        pytest.param(
            {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 50}},
            {**ZERO_USAGE, "cache_read_input_tokens": 10},
            id="cached-clamped",
        ),
        pytest.param(
            {"prompt_tokens": 12.0, "completion_tokens": True},
            {**ZERO_USAGE, "input_tokens": 12},
            id="float-and-bool",
        ),
        pytest.param(
            {"prompt_tokens": "12", "completion_tokens": None},
            ZERO_USAGE,
            id="strings-ignored",
        ),
        # Found by tests/fuzz: json.loads gives inf for `Infinity` / `1e999` and nan for
        # `NaN`, which int() refused (OverflowError, ValueError: a 500 for the client).
        pytest.param(
            {"prompt_tokens": float("inf"), "completion_tokens": float("nan")},
            ZERO_USAGE,
            id="non-finite-floats",
        ),
        pytest.param(
            {"prompt_tokens": -5, "completion_tokens": -1.5},
            ZERO_USAGE,
            id="negative-counts",
        ),
        pytest.param(1, ZERO_USAGE, id="not-an-object"),  # found by tests/fuzz: AttributeError
    ],
)
def test_usage_from_openai(usage: Any, expected: dict[str, int]) -> None:
    assert usage_from_openai(usage) == expected
    resp = completion({"content": "x"})
    if usage is not None:
        resp["usage"] = usage
    assert translate(resp)[0]["usage"] == expected


def test_repairs_list_is_optional() -> None:
    resp = completion({"tool_calls": [call("not json")]}, None)
    message = to_anthropic_message(resp, model="m", message_id="msg_2")
    assert message["content"] == [{"type": "tool_use", "id": "c1", "name": "f", "input": {}}]
    assert message["stop_reason"] == "tool_use"


def test_minimax_markup_in_content_becomes_tool_use_when_tools_were_offered() -> None:
    body = json.loads((BODIES / "RECONSTRUCTED_minimax_xml-tool-call-in-content.json").read_text())
    tool = {
        "name": "search_docs",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
    repairs: list[str] = []
    message = to_anthropic_message(
        body, model="claude-x", message_id="msg_1", tools=[tool], repairs=repairs
    )
    assert message["content"] == [
        {
            "type": "tool_use",
            "id": "toolu_msg_1_m0",
            "name": "search_docs",
            "input": {"query": "mimo tool calls"},
        }
    ]
    assert message["stop_reason"] == "tool_use"
    assert "tool call markup in content" in repairs
    without_tools = to_anthropic_message(body, model="claude-x", message_id="msg_1")
    assert without_tools["content"][0]["type"] == "text"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(
            "a < b, and 2 <3",
            [{"type": "text", "text": "a < b, and 2 <3"}],
            id="angle-brackets-not-markup",
        ),
        pytest.param(
            '<|tool_call_begin|>call_1<|tool_call_argument_begin|>{"zzz":1}<|tool_call_end|>',
            [{"type": "text", "text": '(unnamed tool call: {"zzz":1})'}],
            id="nameless-call-no-fitting-tool",
        ),
    ],
)
def test_markup_edge_cases_with_tools(content: str, expected: list[dict[str, Any]]) -> None:
    tool = {
        "name": "t",
        "input_schema": {"type": "object", "properties": {"q": {}}, "required": ["q"]},
    }
    body = {
        "choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]
    }
    message = to_anthropic_message(body, model="m", message_id="msg_1", tools=[tool])
    assert message["content"] == expected


# ------------------------------------------------------------------ thinking.display


@pytest.mark.parametrize(
    "message",
    [
        pytest.param({"reasoning_content": "Add them.", "content": "\n\n4"}, id="reasoning-field"),
        pytest.param({"content": "<think>Add them.</think>\n\n4"}, id="think-tags"),
    ],
)
def test_omitted_thinking_is_empty_and_the_signature_carries_it(message: dict[str, Any]) -> None:
    omitted, _ = translate(completion(message), thinking_display="omitted")
    thinking, text = omitted["content"]
    assert thinking["type"] == "thinking" and thinking["thinking"] == ""
    assert reasoning_from_signature(thinking["signature"]) == "Add them."
    assert text == {"type": "text", "text": "4"}
    summarized, _ = translate(completion(message), thinking_display="summarized")
    absent, _ = translate(completion(message))
    assert summarized == absent
    assert summarized["content"][0] == {
        "type": "thinking",
        "thinking": "Add them.",
        "signature": "nimbridge",
    }
    assert {**omitted, "content": None} == {**summarized, "content": None}


def test_omitted_without_reasoning_adds_no_thinking_block() -> None:
    message, _ = translate(completion({"content": "4"}), thinking_display="omitted")
    assert message["content"] == [{"type": "text", "text": "4"}]


# ------------------------------------------------------------------ issue 18


@pytest.mark.parametrize(
    ("content", "stops", "stop_reason", "stop_sequence"),
    [
        pytest.param("The end STOP", ["STOP"], "stop_sequence", "STOP", id="kept-in-text"),
        pytest.param("The end", ["STOP"], "end_turn", None, id="stripped-unknowable"),
    ],
)
def test_stop_sequence_found_at_the_end_of_the_text(
    content: str, stops: list[str], stop_reason: str, stop_sequence: str | None
) -> None:
    message, _ = translate(completion({"content": content}), stop_sequences=stops)
    assert (message["stop_reason"], message["stop_sequence"]) == (stop_reason, stop_sequence)


def test_text_without_markup_keeps_its_whitespace_when_tools_are_offered() -> None:
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    message, _ = translate(completion({"content": "  a < b\n"}), tools=tools)
    assert message["content"] == [{"type": "text", "text": "  a < b\n"}]
