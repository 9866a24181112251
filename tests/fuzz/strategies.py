"""Hypothesis strategies for the wire shapes the core reads, well-typed and not.

Each strategy mixes the real shapes (as the recorded fixtures show them) with
values of the wrong type in the same places, so the core's type checks are
exercised where upstreams and clients actually go wrong.
"""

from typing import Any

from hypothesis import strategies as st

# Any JSON value, kept small: shapes matter here, not sizes.
JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8)
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    JSON_SCALARS | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)

# JSON nested deeper than the parser's stack: json.loads raises RecursionError, not
# ValueError, on it (found by fuzzing; every parse of upstream JSON must absorb it).
DEEP_JSON = "[" * 100_000
DEEP_OBJECT = '{"a":' + DEEP_JSON + "]}"

# Pieces that make the translator's text paths branch: think tags split at any
# byte, leaked tool-call markup of the three grammars, whitespace, a lone
# surrogate (an emoji cut in half by an upstream), multi-byte characters.
TEXT_PIECES = [
    "<think>",
    "</think>",
    "<thi",
    "nk>",
    "</th",
    "\n",
    "  ",
    "Hello",
    " world.",
    "\ud83d",
    "\ude00",
    "é",
    "你好",
    "<tool_call>",
    "</tool_call>",
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    '{"name": "get_weather", "arguments": ',
    "<function=get_weather><parameter=city>Paris</parameter></function>",
    "<|tool_calls_section_begin|>",
    "<|tool_call_begin|>",
    "functions.get_weather:0",
    "call_9e6c04c8",
    "<|tool_call_argument_begin|>",
    '{"city": "Oslo"}',
    "<|tool_call_end|>",
    "<|tool_calls_section_end|>",
    "<minimax:tool_call>",
    '<invoke name="get_weather">',
    '<parameter name="city">Rome</parameter>',
    "</invoke>",
    "</minimax:tool_call>",
    DEEP_OBJECT,
]
TEXTS = st.lists(st.sampled_from(TEXT_PIECES) | st.text(max_size=4), max_size=5).map("".join)

TOOL_NAMES = st.sampled_from(["get_weather", "Bash", "search", ""])
TOOL_ID = st.sampled_from(["call_a", "call_b", "", "toolu_x"])
ARGUMENT_PIECES = st.sampled_from(
    ['{"city"', ': "Paris"}', "{}", '{"a": 1}', "}", " ", '"x', "[1]"]
)

# The tools a request may offer (Anthropic definitions), to name nameless markup calls.
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
BASH_TOOL = {
    "name": "Bash",
    "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
}
TOOL_SETS = st.sampled_from([(), (WEATHER_TOOL,), (WEATHER_TOOL, BASH_TOOL)])


def optional_keys(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


def chunk_strategy(*, odd: bool) -> st.SearchStrategy[dict[str, Any]]:
    """`chat.completion.chunk`s: well-typed ones, or (`odd`) any JSON value in any field."""

    def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(strategy, JSON_VALUES) if odd else strategy

    tool_call_delta = optional_keys(
        index=maybe(st.integers(-1, 3)),
        id=maybe(TOOL_ID),
        type=st.just("function"),
        function=maybe(
            optional_keys(
                name=maybe(TOOL_NAMES),
                arguments=st.one_of(ARGUMENT_PIECES, st.just({"city": "Rome"})),
            )
        ),
    )
    text_part = optional_keys(type=st.just("text"), text=maybe(TEXTS))
    content_parts = st.lists(
        maybe(
            st.one_of(
                text_part,
                optional_keys(type=st.just("thinking"), thinking=maybe(st.lists(text_part))),
            )
        ),
        max_size=3,
    )
    reasoning_details = st.lists(
        maybe(optional_keys(type=st.just("reasoning.text"), text=maybe(TEXTS))), max_size=2
    )
    delta = st.one_of(
        st.fixed_dictionaries({"content": st.one_of(TEXTS, content_parts)}),
        st.fixed_dictionaries({"reasoning_content": maybe(TEXTS)}),
        st.fixed_dictionaries({"reasoning": maybe(TEXTS)}),
        st.fixed_dictionaries({"reasoning_details": maybe(reasoning_details)}),
        st.fixed_dictionaries({"tool_calls": maybe(st.lists(maybe(tool_call_delta), max_size=2))}),
        optional_keys(
            role=st.just("assistant"),
            content=st.one_of(TEXTS, st.none(), content_parts),
            reasoning_content=maybe(TEXTS),
            reasoning=maybe(TEXTS),
            reasoning_details=maybe(reasoning_details),
            tool_calls=maybe(st.lists(maybe(tool_call_delta), max_size=2)),
            function_call=maybe(optional_keys(name=maybe(TOOL_NAMES), arguments=ARGUMENT_PIECES)),
        ),
    )
    choice = st.fixed_dictionaries(
        {"index": maybe(st.integers(0, 1)), "delta": maybe(delta)},
        optional={
            "finish_reason": st.one_of(st.none(), st.none(), maybe(FINISH_REASONS)),
            "stop_reason": maybe(st.sampled_from(["</s>", "\n\nHuman:", 151645])),
            "matched_stop": maybe(st.sampled_from(["END", 2])),
        },
    )
    return st.fixed_dictionaries(
        {
            "object": st.just("chat.completion.chunk"),
            "choices": maybe(st.lists(maybe(choice), min_size=0 if odd else 1, max_size=2)),
        },
        optional={
            "id": st.just("chatcmpl-fuzz"),
            "usage": maybe(usage_strategy(odd=odd)),
            "x_groq": maybe(optional_keys(usage=maybe(usage_strategy(odd=odd)))),
        },
    )


def usage_strategy(*, odd: bool) -> st.SearchStrategy[dict[str, Any]]:
    counts = st.one_of(st.integers(-2, 10_000), JSON_VALUES) if odd else st.integers(0, 10_000)
    details = optional_keys(cached_tokens=counts)
    return optional_keys(
        prompt_tokens=counts,
        completion_tokens=counts,
        total_tokens=counts,
        prompt_tokens_details=st.one_of(details, JSON_VALUES) if odd else details,
        prompt_cache_hit_tokens=counts,
        cached_tokens=counts,
    )


FINISH_REASONS = st.sampled_from(
    ["stop", "length", "tool_calls", "function_call", "eos_token", "content_filter", "weird", ""]
)
USAGES = usage_strategy(odd=False)
# Mostly well-typed chunks, so that streams get far; now and then a malformed one.
CHUNKS = st.one_of(*[chunk_strategy(odd=False)] * 6, chunk_strategy(odd=True))

FINAL_CHUNKS = st.builds(
    lambda reason, stop: {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {}, "finish_reason": reason, **stop}],
    },
    FINISH_REASONS,
    optional_keys(stop_reason=st.sampled_from(["</s>", 2]), matched_stop=st.just("END")),
)
USAGE_CHUNKS = st.builds(
    lambda usage: {"object": "chat.completion.chunk", "choices": [], "usage": usage}, USAGES
)
