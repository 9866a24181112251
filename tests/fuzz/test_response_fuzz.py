"""Response translation under arbitrary upstream bodies: a `ProxyError`, or a Message
that keeps response_map's invariants, whatever JSON the upstream answered with."""

import json
import math
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from app.core.errors import ProxyError
from app.core.response_map import to_anthropic_message
from app.core.thinking_display import reasoning_from_signature
from tests.fuzz import FUZZ
from tests.fuzz.strategies import (
    ARGUMENT_PIECES,
    DEEP_OBJECT,
    FINISH_REASONS,
    JSON_VALUES,
    TEXTS,
    TOOL_ID,
    TOOL_NAMES,
    TOOL_SETS,
    WEATHER_TOOL,
    optional_keys,
)

STOP_REASONS = {"end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal"}

# What `json.loads` gives for an upstream body: also NaN, Infinity and 1e999 (= inf).
NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.sampled_from([0, 5, 1.5, -3]),
)
COUNTS = st.one_of(st.integers(0, 10_000), NUMBERS, JSON_VALUES)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, strategy, strategy, JSON_VALUES)


TOOL_CALLS = st.lists(
    maybe(
        optional_keys(
            id=maybe(TOOL_ID),
            type=st.just("function"),
            function=maybe(
                optional_keys(
                    name=maybe(TOOL_NAMES),
                    arguments=st.one_of(
                        ARGUMENT_PIECES,
                        st.lists(ARGUMENT_PIECES, max_size=3).map("".join),
                        st.dictionaries(st.text(max_size=3), JSON_VALUES, max_size=2),
                        JSON_VALUES.map(json.dumps).map(json.dumps),  # double-encoded
                        JSON_VALUES,
                    ),
                )
            ),
        )
    ),
    max_size=3,
)
MESSAGES = optional_keys(
    role=st.just("assistant"),
    content=st.one_of(
        TEXTS, st.none(), st.lists(maybe(optional_keys(type=st.just("text"), text=maybe(TEXTS))))
    ),
    reasoning_content=maybe(TEXTS),
    reasoning=maybe(TEXTS),
    reasoning_details=maybe(
        st.lists(maybe(optional_keys(text=maybe(TEXTS), summary=maybe(TEXTS))), max_size=2)
    ),
    tool_calls=maybe(TOOL_CALLS),
    function_call=maybe(optional_keys(name=maybe(TOOL_NAMES), arguments=ARGUMENT_PIECES)),
    refusal=maybe(TEXTS),
)
CHOICES = optional_keys(
    index=st.just(0),
    message=maybe(MESSAGES),
    finish_reason=maybe(FINISH_REASONS),
    stop_reason=maybe(st.sampled_from(["</s>", 151645, ""])),
    matched_stop=maybe(st.sampled_from(["END", 2])),
)
USAGES = optional_keys(
    prompt_tokens=COUNTS,
    completion_tokens=COUNTS,
    prompt_tokens_details=maybe(optional_keys(cached_tokens=COUNTS)),
    prompt_cache_hit_tokens=COUNTS,
)
BODIES = st.one_of(
    st.fixed_dictionaries(
        {
            "object": st.just("chat.completion"),
            "choices": maybe(st.lists(maybe(CHOICES), max_size=2)),
        },
        optional={"usage": maybe(USAGES), "error": JSON_VALUES, "id": st.just("chatcmpl-fuzz")},
    ),
    st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4),
)


@FUZZ
@given(body=BODIES, tools=TOOL_SETS)
@example(  # json.loads reads `Infinity` (and 1e999) as a float that int() refuses
    body={"choices": [{"message": {"content": "hi"}}], "usage": {"prompt_tokens": math.inf}},
    tools=(),
)
@example(body={"choices": [{"message": {}}], "usage": {"completion_tokens": math.nan}}, tools=())
@example(body={"choices": [{"message": {}}], "usage": {"prompt_tokens": -5}}, tools=())
@example(body={"choices": [{}], "usage": 1}, tools=())  # AttributeError: 'int' has no .get
@example(  # stop_sequence beside a tool call: the client would not run the tool
    body={
        "choices": [
            {"finish_reason": "stop", "matched_stop": "END", "message": {"function_call": {}}}
        ]
    },
    tools=(),
)
@example(  # deeply nested arguments raised RecursionError, not ValueError
    body={
        "choices": [
            {"message": {"tool_calls": [{"function": {"name": "f", "arguments": DEEP_OBJECT}}]}}
        ]
    },
    tools=(),
)
@example(
    body={"choices": [{"message": {"content": f"<tool_call>{DEEP_OBJECT}</tool_call>"}}]},
    tools=(WEATHER_TOOL,),
)
def test_any_body_gives_a_proxy_error_or_a_well_formed_message(
    body: dict[str, Any], tools: tuple[dict[str, Any], ...]
) -> None:
    repairs: list[str] = []
    try:
        message = to_anthropic_message(
            body, model="claude-fuzz", message_id="msg_fuzz", tools=tools, repairs=repairs
        )
    except ProxyError as exc:
        assert exc.message and 400 <= exc.status <= 599
        return
    json.dumps(message, allow_nan=False)  # the client can read it
    assert message["stop_reason"] in STOP_REASONS
    kinds = [block["type"] for block in message["content"]]
    assert kinds.count("thinking") <= 1 and kinds[: kinds.count("thinking")] == ["thinking"] * (
        kinds.count("thinking")
    )
    for block in message["content"]:
        if block["type"] == "text":
            assert isinstance(block["text"], str) and block["text"].strip()
        elif block["type"] == "tool_use":
            assert isinstance(block["id"], str) and block["id"]
            assert isinstance(block["name"], str) and isinstance(block["input"], dict)
    if "tool_use" in kinds and message["stop_reason"] not in ("max_tokens", "refusal"):
        assert message["stop_reason"] == "tool_use"
    usage = message["usage"]
    assert all(type(value) is int and value >= 0 for value in usage.values()), usage
    assert all(isinstance(repair, str) for repair in repairs)


@FUZZ
@given(body=BODIES, tools=TOOL_SETS)
def test_omitted_thinking_moves_only_the_thinking_text(
    body: dict[str, Any], tools: tuple[dict[str, Any], ...]
) -> None:
    """Omitted: the same message, but the thinking text is in the signature."""
    answers: list[Any] = []
    for display in ("summarized", "omitted"):
        try:
            answers.append(
                to_anthropic_message(
                    body,
                    model="claude-fuzz",
                    message_id="msg_fuzz",
                    tools=tools,
                    thinking_display=display,
                )
            )
        except ProxyError as exc:
            answers.append(exc.message)
    shown, hidden = answers
    if isinstance(shown, str):
        assert hidden == shown
        return
    for index, block in enumerate(hidden["content"]):
        if block["type"] == "thinking":
            assert block["thinking"] == ""
            original = shown["content"][index]
            assert reasoning_from_signature(block["signature"]) == original["thinking"]
            hidden["content"][index] = original
    assert hidden == shown
