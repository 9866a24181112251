from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.core.anthropic_stream import (
    DONE_WITHOUT_FINISH_REASON_MESSAGE,
    NO_FINISH_REASON_MESSAGE,
    RUNAWAY_CHARS_PER_TOKEN,
    RUNAWAY_REPAIR,
    STOP_REASON_BY_FINISH_REASON,
    StreamState,
    StreamTranslator,
)
from app.core.anthropic_types import StreamEvent
from app.core.errors import TranslatorStateError
from app.core.sse import DONE_LINE, ServerSentEvent, SSEDecoder, encode_data
from app.core.thinking_display import ThinkingDisplay, reasoning_from_signature
from tests.anthropic_grammar import assert_anthropic_grammar, summarize

FIXTURES = Path(__file__).parents[2] / "fixtures" / "openai_stream"
MESSAGE_ID = "msg_test"


class StartsWith(str):
    """Matches any string that starts with it (long fixture texts)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other.startswith(str(self))

    __hash__ = str.__hash__


def new_translator() -> StreamTranslator:
    return StreamTranslator(model="claude-test", message_id=MESSAGE_ID, input_tokens=5)


def replay_bytes(pieces: Iterable[bytes]) -> tuple[list[StreamEvent], StreamTranslator]:
    """What the server does: decode, translate, and finish at EOF."""
    decoder = SSEDecoder()
    translator = new_translator()
    events = translator.start()
    for piece in pieces:
        for sse in decoder.feed(piece):
            events += translator.feed_sse(sse)
    for sse in decoder.close():
        events += translator.feed_sse(sse)
    events += translator.finish()
    assert_anthropic_grammar(events)
    return events, translator


def run(
    chunks: Sequence[Mapping[str, Any]],
    translator: StreamTranslator | None = None,
    *,
    done_sent: bool = False,
) -> tuple[list[StreamEvent], StreamTranslator]:
    translator = translator or new_translator()
    events = translator.start()
    for piece in chunks:
        events += translator.feed(piece)
    events += translator.finish(done_sent=done_sent)
    assert_anthropic_grammar(events)
    return events, translator


def split_at(body: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted(cuts), len(body)]
    return [body[a:b] for a, b in zip(points, points[1:], strict=False)]


# ---------------------------------------------------------------------------- fixtures

THINKING_THEN_TEXT_END_TURN = [
    ("start", 0, "thinking"),
    ("delta", 0, StartsWith("")),
    ("signature", 0, "nimbridge"),
    ("stop", 0),
    ("start", 1, "text"),
    ("delta", 1, StartsWith("")),
    ("stop", 1),
    ("end", "end_turn"),
]


def tool_use_only(name: str, arguments: str) -> list[tuple[Any, ...]]:
    return [
        ("start", 0, "tool_use", name),
        ("delta", 0, arguments),
        ("stop", 0),
        ("end", "tool_use"),
    ]


def thinking_then(*rest: tuple[Any, ...], thinking: str = "") -> list[tuple[Any, ...]]:
    return [
        ("start", 0, "thinking"),
        ("delta", 0, StartsWith(thinking)),
        ("signature", 0, "nimbridge"),
        ("stop", 0),
        *rest,
    ]


# fixture stem -> (summary, usage at the end, repairs)
FIXTURE_EXPECTATIONS: dict[str, tuple[list[tuple[Any, ...]], dict[str, int], list[str]]] = {
    # Kimi's tool markup stays text here: parsing it out of content is not this module's job.
    "RECONSTRUCTED_kimi_tool-grammar-in-content": (
        [
            ("start", 0, "text"),
            ("delta", 0, StartsWith("Dạ anh Hà ơi, em làm lại bản TTS nha!<|tool_calls_section")),
            ("stop", 0),
            ("end", "end_turn"),
        ],
        {"input_tokens": 5, "output_tokens": 46},
        [],
    ),
    "anthropic-openai-compat_tool-call-index-starts-at-1": (
        [
            ("start", 0, "text"),
            ("delta", 0, "Reading it."),
            ("stop", 0),
            ("start", 1, "tool_use", "read_file"),
            ("delta", 1, '{"path": "a.txt"}'),
            ("stop", 1),
            ("end", "tool_use"),
        ],
        {"input_tokens": 5, "output_tokens": 7},
        [],
    ),
    # Every delta holds the call twice (tool_calls and function_call): one call, not two.
    "llama-cpp-python-0.3.36_gemma-3-270m_tool-calls-beside-function-call": (
        [
            ("start", 0, "tool_use", "get_time"),
            ("delta", 0, "{ } "),
            ("stop", 0),
            ("end", "tool_use"),
        ],
        {"input_tokens": 5, "output_tokens": 1},
        [],
    ),
    "crusoe_vllm-0.24_llama-3.3_stop-reason_usage-only-chunk": (
        [("start", 0, "text"), ("delta", 0, "1, 2, 3, 4, 5"), ("stop", 0), ("end", "end_turn")],
        {"input_tokens": 46, "output_tokens": 14, "cache_read_input_tokens": 0},
        [],
    ),
    "deepseek-reasoner_reasoning-content": (
        thinking_then(
            ("start", 1, "text"),
            ("delta", 1, 'The word "strawberry" contains three "r"s.'),
            ("stop", 1),
            ("end", "end_turn"),
            thinking='We need to count the number of the letter "r"',
        ),
        {"input_tokens": 18, "output_tokens": 219, "cache_read_input_tokens": 0},
        [],
    ),
    "deepseek-reasoner_tool-call-streamed-args": (
        thinking_then(
            ("start", 1, "tool_use", "weather"),
            ("delta", 1, '{"location": "San Francisco"}'),
            ("stop", 1),
            ("end", "tool_use"),
            thinking="The user is asking for the weather in San Francisco.",
        ),
        {"input_tokens": 19, "output_tokens": 83, "cache_read_input_tokens": 320},
        [],
    ),
    # matched_stop is 1 here: a token id, not a stop string.
    "deepseek-v4-pro_azure_matched-stop_usage-only-chunk": (
        thinking_then(
            ("start", 1, "text"),
            ("delta", 1, StartsWith("Exciting news, Knicks fans")),
            ("stop", 1),
            ("end", "end_turn"),
            thinking="We need to invent a new holiday",
        ),
        {"input_tokens": 19, "output_tokens": 1720},
        [],
    ),
    "glm-5-2_tool-call-empty-name-continuation": (
        tool_use_only("webSearchTool", '{"query": "current Berlin weather"}'),
        {"input_tokens": 43, "output_tokens": 14, "cache_read_input_tokens": 128},
        [],
    ),
    "groq_gpt-oss-120b_event-error-tool-use-failed": (
        thinking_then(("error", "invalid_request_error"), thinking="We need to call the tool"),
        {"input_tokens": 5, "output_tokens": 103},
        [],
    ),
    "groq_gpt-oss-120b_reasoning-then-tool-call": (
        thinking_then(
            ("start", 1, "tool_use", "get_something_by_name"),
            ("delta", 1, '{"name":"example"}'),
            ("stop", 1),
            ("end", "tool_use"),
        ),
        {"input_tokens": 304, "output_tokens": 49},
        [],
    ),
    "groq_llama-3.3-70b_tool-call-args-one-chunk": (
        tool_use_only("weather", "{}"),
        {"input_tokens": 210, "output_tokens": 15},
        [],
    ),
    "groq_qwen3-32b_reasoning-field": (
        THINKING_THEN_TEXT_END_TURN,
        {"input_tokens": 17, "output_tokens": 1107},
        [],
    ),
    "nim-shaped-mock_tool-call-args-one-chunk_usage-only": (
        tool_use_only("magic", '{"intput": 3}'),
        {"input_tokens": 20, "output_tokens": 22},
        [],
    ),
    "openrouter_claude-sonnet-4.5_reasoning-details_keepalive": (
        thinking_then(
            ("start", 1, "text"),
            ("delta", 1, "2 + 2 = 4"),
            ("stop", 1),
            ("end", "end_turn"),
            thinking="This is a simple arithmetic question. 2+2 equals 4.",
        ),
        {"input_tokens": 43, "output_tokens": 36, "cache_read_input_tokens": 0},
        [],
    ),
    "openrouter_minimax-m2_keepalive-comments_midstream-error": (
        thinking_then(
            ("error", "invalid_request_error"),
            thinking="We need to respond to a greeting. The user",
        ),
        {"input_tokens": 5, "output_tokens": 11},
        [],
    ),
    "qwen3-max_dashscope_reasoning_usage-only-chunk": (
        THINKING_THEN_TEXT_END_TURN,
        {"input_tokens": 24, "output_tokens": 1355, "cache_read_input_tokens": 0},
        [],
    ),
    "qwen3-max_dashscope_tool-call-empty-id-continuation": (
        tool_use_only("weather", '{"location": "San Francisco"}'),
        {"input_tokens": 295, "output_tokens": 22, "cache_read_input_tokens": 0},
        [],
    ),
    "tgi-1.4.3_data-no-space_empty-id_choice-index-bug": (
        [("start", 0, "text"), ("delta", 0, "I'm"), ("stop", 0), ("end", "max_tokens")],
        {"input_tokens": 5, "output_tokens": 1},
        [],
    ),
    "together-via-hf-router_deepseek-r1_inline-think-tags": (
        thinking_then(
            ("start", 1, "text"),
            ("delta", 1, StartsWith("Crossing the street safely")),
            ("stop", 1),
            ("end", "end_turn"),
            thinking='Okay, the user asked "How do I cross the street?"',
        ),
        {"input_tokens": 10, "output_tokens": 955, "cache_read_input_tokens": 0},
        ["think tags in content"],
    ),
    "zai_glm-4.7_reasoning-content_no-finish-reason-key": (
        thinking_then(
            ("start", 1, "text"),
            ("delta", 1, "4"),
            ("stop", 1),
            ("end", "end_turn"),
            thinking="\n1.  **Analyze the User's Request:**",
        ),
        {"input_tokens": 13, "output_tokens": 564, "cache_read_input_tokens": 0},
        [],
    ),
}

FIXTURE_STEMS = sorted(p.stem for p in FIXTURES.glob("*.sse"))
_BODIES: dict[str, bytes] = {}


def fixture_body(stem: str) -> bytes:
    if stem not in _BODIES:
        _BODIES[stem] = (FIXTURES / f"{stem}.sse").read_bytes()
    return _BODIES[stem]


def test_every_fixture_has_expectations() -> None:
    assert sorted(FIXTURE_EXPECTATIONS) == FIXTURE_STEMS


@pytest.mark.parametrize("stem", FIXTURE_STEMS)
def test_fixture_replay(stem: str) -> None:
    events, translator = replay_bytes([fixture_body(stem)])
    summary, usage, repairs = FIXTURE_EXPECTATIONS[stem]
    assert summarize(events) == summary
    if events[-1]["type"] == "message_stop":
        assert events[-2]["usage"] == usage
        assert translator.state is StreamState.FINISHED
    else:
        assert translator.state is StreamState.FAILED
    assert translator.usage == usage
    assert translator.repairs == repairs


@pytest.mark.parametrize("stem", FIXTURE_STEMS)
def test_fixture_replay_one_byte_at_a_time(stem: str) -> None:
    body = fixture_body(stem)
    whole, _ = replay_bytes([body])
    by_byte, _ = replay_bytes(body[i : i + 1] for i in range(len(body)))
    assert by_byte == whole


@pytest.mark.parametrize("stem", FIXTURE_STEMS)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(0, 1 << 20), max_size=40))
def test_fixture_replay_random_splits(stem: str, cuts: list[int]) -> None:
    body = fixture_body(stem)
    whole, _ = replay_bytes([body])
    pieces, _ = replay_bytes(split_at(body, [c % (len(body) + 1) for c in cuts]))
    assert pieces == whole


def test_fixture_tool_id_and_error_details() -> None:
    events, _ = replay_bytes([fixture_body("anthropic-openai-compat_tool-call-index-starts-at-1")])
    assert events[5]["content_block"] == {
        "type": "tool_use",
        "id": "toolu_sanitized",
        "name": "read_file",
        "input": {},
    }
    events, _ = replay_bytes([fixture_body("groq_gpt-oss-120b_event-error-tool-use-failed")])
    assert "did not match schema" in events[-1]["error"]["message"]
    events, _ = replay_bytes(
        [fixture_body("openrouter_minimax-m2_keepalive-comments_midstream-error")]
    )
    assert events[-1]["error"]["message"] == "upstream error mid-stream: Token limit reached"


def test_message_start() -> None:
    translator = StreamTranslator(model="claude-x", message_id="msg_1", input_tokens=42)
    assert translator.start() == [
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-x",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 42, "output_tokens": 0},
            },
        }
    ]
    assert translator.start() == []
    assert translator.state is StreamState.STARTED


# ---------------------------------------------------------------------------- chunk tables


def chunk(
    delta: Mapping[str, Any] | None = None, finish: str | None = None, **choice: Any
) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": dict(delta or {}), "finish_reason": finish, **choice}],
    }


def calls(*tool_calls: Any) -> dict[str, Any]:
    return chunk({"tool_calls": list(tool_calls)})


def tc(
    index: int | None = None,
    id: str | None = None,
    name: str | None = None,
    args: Any = None,
) -> dict[str, Any]:
    call: dict[str, Any] = {"type": "function", "function": {}}
    if index is not None:
        call["index"] = index
    if id is not None:
        call["id"] = id
    if name is not None:
        call["function"]["name"] = name
    if args is not None:
        call["function"]["arguments"] = args
    return call


STOP = chunk(finish="stop")
TOOL_CALLS = chunk(finish="tool_calls")


def text_block(index: int, text: str) -> list[tuple[Any, ...]]:
    return [("start", index, "text"), ("delta", index, text), ("stop", index)]


def thinking_block(index: int, text: str) -> list[tuple[Any, ...]]:
    return [
        ("start", index, "thinking"),
        ("delta", index, text),
        ("signature", index, "nimbridge"),
        ("stop", index),
    ]


def tool_block(index: int, name: str, arguments: str | None) -> list[tuple[Any, ...]]:
    delta = [] if arguments is None else [("delta", index, arguments)]
    return [("start", index, "tool_use", name), *delta, ("stop", index)]


# (chunks, summary, repairs)
CHUNK_CASES = [
    pytest.param(
        [chunk({"role": "assistant", "content": "Hi"}), chunk({"content": " there"}), STOP],
        [*text_block(0, "Hi there"), ("end", "end_turn")],
        [],
        id="text",
    ),
    pytest.param(
        [chunk({"reasoning_content": "Hm", "content": None}), chunk({"content": "Hi"}), STOP],
        [*thinking_block(0, "Hm"), *text_block(1, "Hi"), ("end", "end_turn")],
        [],
        id="reasoning-content",
    ),
    pytest.param(
        [
            chunk(
                {
                    "reasoning_content": "Hm",
                    "reasoning": "Hm",
                    "reasoning_details": [{"type": "reasoning.text", "text": "Hm"}],
                }
            ),
            chunk({"reasoning": "Ok", "reasoning_details": [{"text": "Ok"}]}),
            chunk({"reasoning_details": [{"text": "!"}, {"signature": "x"}, "junk"]}),
            STOP,
        ],
        [*thinking_block(0, "HmOk!"), ("end", "end_turn")],
        [],
        id="reasoning-in-several-fields-not-duplicated",
    ),
    pytest.param(
        [
            chunk({"content": "<thi"}),
            chunk({"content": "nk>Hm</th"}),
            chunk({"content": "ink>Hi"}),
            STOP,
        ],
        [*thinking_block(0, "Hm"), *text_block(1, "Hi"), ("end", "end_turn")],
        ["think tags in content"],
        id="think-tags-split",
    ),
    pytest.param(
        [chunk({"content": "<thi"}), STOP],
        [*text_block(0, "<thi"), ("end", "end_turn")],
        [],
        id="held-prefix-flushed-at-finish",
    ),
    pytest.param(
        [
            chunk({"content": "Reading"}),
            calls(tc(1, "call_1", "read", "")),
            calls(tc(1, args='{"p"')),
            calls(tc(1, args=": 1}")),
            TOOL_CALLS,
        ],
        [*text_block(0, "Reading"), *tool_block(1, "read", '{"p": 1}'), ("end", "tool_use")],
        [],
        id="tool-index-starts-at-1",
    ),
    pytest.param(
        [calls(tc(None, "call_1", "f", '{"a"')), calls(tc(None, None, None, ": 1}")), TOOL_CALLS],
        [*tool_block(0, "f", '{"a": 1}'), ("end", "tool_use")],
        ["tool call without index"],
        id="tool-without-index-continues-current",
    ),
    pytest.param(
        [
            calls(tc(None, "call_1", "f", "{}"), tc(None, "call_2", "g", "{}")),
            calls(tc(None, "call_1", None, "")),
            TOOL_CALLS,
        ],
        [*tool_block(0, "f", "{}"), *tool_block(1, "g", "{}"), ("end", "tool_use")],
        ["tool call without index"],
        id="tools-without-index-keyed-by-id",
    ),
    pytest.param(
        [calls(tc(args="{}")), TOOL_CALLS],
        [("end", "end_turn")],
        [
            "tool call without index",
            "tool call without a name dropped",
            "finish_reason tool_calls without a tool call",
        ],
        id="tool-without-anything-dropped",
    ),
    pytest.param(
        [
            calls(tc(0, "call_1", "read_file", '{"a":')),
            calls(tc(0, "call_1", "read_file", ' "b"}')),
            TOOL_CALLS,
        ],
        [*tool_block(0, "read_file", '{"a": "b"}'), ("end", "tool_use")],
        [],
        id="minimax-name-and-id-resent-never-joined",
    ),
    pytest.param(
        [calls(tc(0, "call_1", "f", "")), calls(tc(0, "", "", "{}")), TOOL_CALLS],
        [*tool_block(0, "f", "{}"), ("end", "tool_use")],
        [],
        id="empty-id-and-name-continuation",
    ),
    pytest.param(
        [calls(tc(0, "call_1", None, '{"a"')), calls(tc(0, None, "f", ": 1}")), TOOL_CALLS],
        [*tool_block(0, "f", '{"a": 1}'), ("end", "tool_use")],
        [],
        id="name-late-arguments-held",
    ),
    pytest.param(
        [calls(tc(0, None, "f", "{}")), calls(tc(0, "late_id")), TOOL_CALLS],
        [*tool_block(0, "f", "{}"), ("end", "tool_use")],
        [],
        id="id-after-block-opened-ignored",
    ),
    pytest.param(
        [
            calls(tc(0, "call_a", "f", '{"x":1}')),
            calls(tc(0, "call_b", "g", '{"y":2}')),
            TOOL_CALLS,
        ],
        [*tool_block(0, "f", '{"x":1}'), *tool_block(1, "g", '{"y":2}'), ("end", "tool_use")],
        ["tool calls sharing one index"],
        id="ollama-every-call-index-0",
    ),
    pytest.param(
        [
            calls(tc(0, "call_a", "f", ""), tc(1, "call_b", "g", "")),
            calls(tc(0, args='{"x"')),
            calls(tc(1, args='{"y"')),
            calls(tc(0, args=":1}")),
            calls(tc(1, args=":2}")),
            TOOL_CALLS,
        ],
        [*tool_block(0, "f", '{"x":1}'), *tool_block(1, "g", '{"y":2}'), ("end", "tool_use")],
        [],
        id="interleaved-calls-second-buffered",
    ),
    pytest.param(
        [
            calls(tc(0, "call_a", "f", '{"x"')),
            calls(tc(1, "call_b", "g", '{"y":2}')),
            calls(tc(2, "call_c", "h", "{}")),
            TOOL_CALLS,
        ],
        [
            *tool_block(0, "f", '{"x"'),
            *tool_block(1, "g", '{"y":2}'),
            *tool_block(2, "h", "{}"),
            ("end", "tool_use"),
        ],
        ["invalid tool arguments JSON passed through"],
        id="unfinished-call-others-opened-at-finish",
    ),
    pytest.param(
        [
            calls(tc(0, "call_a", "f", '{"x"')),
            calls(tc(1, "call_b", "g", "{}")),
            chunk({"content": "Done"}),
            calls(tc(0, args=":1}")),
            calls(tc(0, args=" ")),
            STOP,
        ],
        [
            *tool_block(0, "f", '{"x"'),
            *tool_block(1, "g", "{}"),
            *text_block(2, "Done"),
            ("end", "tool_use"),
        ],
        [
            "invalid tool arguments JSON passed through",
            "tool call fragment after its block closed dropped",
            "finish_reason stop after tool calls",
        ],
        id="text-flushes-waiting-calls-late-fragment-dropped",
    ),
    pytest.param(
        [
            calls(tc(0, "call_a", "f", '{"x"')),
            calls(tc(1, "call_b", "g", "{}")),
            chunk({"reasoning_content": "Hm"}),
            TOOL_CALLS,
        ],
        [
            *tool_block(0, "f", '{"x"'),
            *tool_block(1, "g", "{}"),
            *thinking_block(2, "Hm"),
            ("end", "tool_use"),
        ],
        ["invalid tool arguments JSON passed through"],
        id="thinking-flushes-waiting-calls",
    ),
    pytest.param(
        [
            calls(tc(0, "c", "f", "{}")),
            chunk({"content": "\n\n"}),
            chunk({"content": "More"}),
            STOP,
        ],
        [*tool_block(0, "f", "{}"), *text_block(1, "\n\nMore"), ("end", "tool_use")],
        ["finish_reason stop after tool calls"],
        id="text-after-tool-call",
    ),
    pytest.param(
        [
            chunk({"reasoning_content": "Hm"}),
            chunk({"content": "\n\n"}),
            calls(tc(0, "c", "f", "{}")),
            TOOL_CALLS,
        ],
        [*thinking_block(0, "Hm"), *tool_block(1, "f", "{}"), ("end", "tool_use")],
        [],
        id="whitespace-before-tool-call-dropped",
    ),
    pytest.param(
        [chunk({"content": " "}), chunk({"content": "\n"}), STOP],
        [("end", "end_turn")],
        [],
        id="whitespace-only-answer-no-block",
    ),
    pytest.param(
        [chunk({"content": "Hi "}), chunk({"content": " "}), STOP],
        [*text_block(0, "Hi  "), ("end", "end_turn")],
        [],
        id="whitespace-inside-text-kept",
    ),
    pytest.param(
        [calls(tc(0, "c", "f", {"a": 1})), TOOL_CALLS],
        [*tool_block(0, "f", '{"a": 1}'), ("end", "tool_use")],
        ["tool arguments sent as JSON, not a string"],
        id="arguments-as-object",
    ),
    pytest.param(
        [calls(tc(0, "c", "f", "")), TOOL_CALLS],
        [*tool_block(0, "f", None), ("end", "tool_use")],
        [],
        id="empty-arguments-no-delta",
    ),
    pytest.param(
        [calls(tc(0, None, "f", "{}")), calls(tc(1, None, "g", "{}")), TOOL_CALLS],
        [*tool_block(0, "f", "{}"), *tool_block(1, "g", "{}"), ("end", "tool_use")],
        [],
        id="generated-ids",
    ),
    pytest.param(
        [
            chunk({"function_call": {"name": "f", "arguments": "{"}}),
            chunk({"function_call": {"arguments": "}"}}),
            chunk(finish="function_call"),
        ],
        [*tool_block(0, "f", "{}"), ("end", "tool_use")],
        [],
        id="legacy-function-call",
    ),
    pytest.param(
        [
            calls({"index": 0, "id": "c", "function": "junk"}, "junk"),
            calls(tc(0, name="f")),
            TOOL_CALLS,
        ],
        [*tool_block(0, "f", None), ("end", "tool_use")],
        [],
        id="malformed-tool-delta-fields",
    ),
    pytest.param(
        [
            chunk(
                {
                    "content": [
                        {"type": "thinking", "thinking": [{"type": "text", "text": "Hm"}]},
                        {"type": "thinking", "thinking": []},
                        {"type": "thinking", "thinking": "!"},
                        {"type": "text", "text": "Hi"},
                        {"type": "text", "text": ""},
                        "junk",
                    ]
                }
            ),
            STOP,
        ],
        [*thinking_block(0, "Hm!"), *text_block(1, "Hi"), ("end", "end_turn")],
        ["content as a list of parts"],
        id="magistral-content-parts",
    ),
    pytest.param(
        [chunk({"content": "Hi"}), chunk(finish="stop", stop_reason="</answer>")],
        [*text_block(0, "Hi"), ("end", "stop_sequence")],
        [],
        id="vllm-stop-reason-string",
    ),
    pytest.param(
        [chunk({"content": "Hi"}), chunk(finish="stop", stop_reason=None, matched_stop="STOP")],
        [*text_block(0, "Hi"), ("end", "stop_sequence")],
        [],
        id="sglang-matched-stop-string",
    ),
    pytest.param(
        [chunk({"content": "Hi"}), chunk(finish="stop", stop_reason=128009, matched_stop=1)],
        [*text_block(0, "Hi"), ("end", "end_turn")],
        [],
        id="stop-token-ids-ignored",
    ),
    pytest.param(
        [chunk({"content": "Hi"}, finish="length")],
        [*text_block(0, "Hi"), ("end", "max_tokens")],
        [],
        id="length",
    ),
    pytest.param(
        [chunk({"content": "Hi"}), chunk(finish="content_filter")],
        [*text_block(0, "Hi"), ("end", "refusal")],
        [],
        id="content-filter",
    ),
    pytest.param(
        [chunk({"content": "Hi"}), chunk(finish="eos_token")],
        [*text_block(0, "Hi"), ("end", "end_turn")],
        [],
        id="tgi-eos-token",
    ),
    pytest.param(
        [chunk({"content": "Hi"}), chunk(finish="brainfreeze")],
        [*text_block(0, "Hi"), ("end", "end_turn")],
        ["unknown finish_reason 'brainfreeze'"],
        id="unknown-finish-reason",
    ),
    pytest.param(
        [
            chunk({"content": "Hi"}, finish="length"),
            chunk(finish="length"),
            chunk({"content": "!"}),
        ],
        [*text_block(0, "Hi!"), ("end", "max_tokens")],
        [],
        id="finish-reason-twice-and-content-after",
    ),
    pytest.param(
        [
            {"choices": []},
            {"choices": None, "usage": None},
            {"choices": ["junk"]},
            {"choices": [{"delta": None, "finish_reason": None}]},
            chunk(
                {
                    "role": None,
                    "content": None,
                    "tool_calls": None,
                    "reasoning_content": None,
                    "reasoning_details": None,
                }
            ),
            chunk({"content": "Hi"}),
            STOP,
        ],
        [*text_block(0, "Hi"), ("end", "end_turn")],
        [],
        id="nulls-and-empty-choices",
    ),
]


@pytest.mark.parametrize(("chunks", "expected", "repairs"), CHUNK_CASES)
def test_chunks(
    chunks: list[dict[str, Any]], expected: list[tuple[Any, ...]], repairs: list[str]
) -> None:
    events, translator = run(chunks)
    assert summarize(events) == expected
    assert translator.repairs == repairs


@pytest.mark.parametrize(("chunks", "expected", "repairs"), CHUNK_CASES)
def test_chunks_through_sse(
    chunks: list[dict[str, Any]], expected: list[tuple[Any, ...]], repairs: list[str]
) -> None:
    body = b"".join(encode_data(c) for c in chunks) + DONE_LINE
    events, _ = replay_bytes([body])
    assert summarize(events) == expected


def test_start_in_thinking() -> None:
    translator = StreamTranslator(model="m", message_id="m1", start_in_thinking=True)
    events = translator.feed(chunk({"content": "Hm</think>"}))
    events += translator.feed(chunk({"content": "\n\nHi"}, finish="stop"))
    events += translator.finish()
    assert_anthropic_grammar(events)
    assert summarize(events) == [
        *thinking_block(0, "Hm"),
        *text_block(1, "Hi"),
        ("end", "end_turn"),
    ]


def test_tool_ids() -> None:
    events, _ = run(
        [
            calls(tc(0, None, "f", "{}")),
            calls(tc(1, "call_x", "g", "{}")),
            calls(tc(2, None, "h")),
            TOOL_CALLS,
        ]
    )
    ids = [e["content_block"]["id"] for e in events if e["type"] == "content_block_start"]
    assert ids == [f"toolu_{MESSAGE_ID}_0", "call_x", f"toolu_{MESSAGE_ID}_2"]
    translator = StreamTranslator(model="m", message_id="m1", tool_id_prefix="call_")
    events = translator.feed(calls(tc(0, None, "f")))
    assert events[-1]["content_block"]["id"] == "call_m1_0"


def test_late_id_before_block_is_used() -> None:
    events, _ = run([calls(tc(0, None, None, "{}")), calls(tc(0, "call_late", "f")), TOOL_CALLS])
    assert events[1]["content_block"]["id"] == "call_late"


def test_sequential_calls_stream_without_delay() -> None:
    translator = new_translator()
    translator.feed(calls(tc(0, "call_a", "f", '{"x":1}')))
    events = translator.feed(calls(tc(1, "call_b", "g", '{"y"')))
    assert summarize(events) == [("stop", 0), ("start", 1, "tool_use", "g"), ("delta", 1, '{"y"')]
    assert summarize(translator.feed(calls(tc(1, args=":2}")))) == [("delta", 1, ":2}")]


def test_interleaved_call_opens_once_open_call_completes() -> None:
    translator = new_translator()
    translator.feed(calls(tc(0, "call_a", "f", '{"x"'), tc(1, "call_b", "g", '{"y"')))
    assert translator.feed(calls(tc(1, args=":2"))) == []  # buffered: f is still unfinished
    events = translator.feed(calls(tc(0, args=":1}")))
    assert summarize(events) == [
        ("delta", 0, ":1}"),
        ("stop", 0),
        ("start", 1, "tool_use", "g"),
        ("delta", 1, '{"y":2'),
    ]


# ---------------------------------------------------------------------------- usage


USAGE_CASES = [
    pytest.param(
        [
            chunk({"content": "Hi"}),
            STOP,
            {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 3}},
        ],
        {"input_tokens": 10, "output_tokens": 3},
        id="usage-only-chunk-after-finish",
    ),
    pytest.param(
        [
            chunk({"content": "Hi"}),
            {
                **STOP,
                "usage": {
                    "prompt_tokens": 10,
                    "completion_tokens": 3,
                    "prompt_tokens_details": {"cached_tokens": 8},
                },
            },
        ],
        {"input_tokens": 2, "output_tokens": 3, "cache_read_input_tokens": 8},
        id="cached-tokens",
    ),
    pytest.param(
        [
            chunk({"content": "Hi"}),
            {
                **STOP,
                "usage": {
                    "prompt_tokens": 10,
                    "prompt_cache_hit_tokens": 4,
                    "prompt_tokens_details": None,
                },
            },
        ],
        {"input_tokens": 6, "output_tokens": 1, "cache_read_input_tokens": 4},
        id="deepseek-cache-hit-no-completion-count",
    ),
    pytest.param(
        [
            chunk({"content": "Hi"}),
            {**STOP, "x_groq": {"usage": {"prompt_tokens": 7, "completion_tokens": 2}}},
        ],
        {"input_tokens": 7, "output_tokens": 2},
        id="x-groq-usage",
    ),
    pytest.param(
        [
            chunk({"content": "Hi"}),
            {**STOP, "x_groq": {"id": "req"}},
            {"choices": [], "x_groq": None},
        ],
        {"input_tokens": 5, "output_tokens": 1},
        id="x-groq-without-usage",
    ),
    pytest.param(
        [
            chunk({"reasoning_content": "a" * 10, "content": "b" * 10}),
            calls(tc(0, "c", "f", '{"k": 1}')),
            {**STOP, "usage": {"prompt_tokens": True, "completion_tokens": -1}},
        ],
        {"input_tokens": 5, "output_tokens": 7},
        id="estimate-when-no-usable-usage",
    ),
    pytest.param([STOP], {"input_tokens": 5, "output_tokens": 0}, id="nothing-emitted"),
]


@pytest.mark.parametrize(("chunks", "usage"), USAGE_CASES)
def test_usage(chunks: list[dict[str, Any]], usage: dict[str, int]) -> None:
    events, translator = run(chunks)
    assert events[-2]["usage"] == usage
    assert translator.usage == usage
    assert translator.usage_reported == (usage["input_tokens"] != 5)


# ---------------------------------------------------------------------------- feed_sse


def sse(data: str, event: str | None = None) -> ServerSentEvent:
    return ServerSentEvent(data, event)


FAIL_CASES = [
    pytest.param(
        sse('{"error": {"message": "Tool call validation failed", "status_code": 400}}', "error"),
        "invalid_request_error",
        "upstream error mid-stream: Tool call validation failed",
        id="event-error-json",
    ),
    pytest.param(
        sse("overloaded", "error"),
        "api_error",
        "upstream error mid-stream: overloaded",
        id="event-error-text",
    ),
    pytest.param(
        sse("", "error"),
        "api_error",
        "upstream error mid-stream: (empty error event)",
        id="event-error-empty",
    ),
    pytest.param(
        sse('"busy"', "error"),
        "api_error",
        "upstream error mid-stream: busy",
        id="event-error-json-string",
    ),
    pytest.param(
        sse("[1, 2]", "error"),
        "api_error",
        "upstream error mid-stream: [1, 2]",
        id="event-error-json-list",
    ),
    pytest.param(
        sse('{"error": {"code": 429, "message": "slow down"}}'),
        "rate_limit_error",
        "upstream error mid-stream: slow down",
        id="error-object-in-data",
    ),
    pytest.param(
        sse('{"choices": [{"delta": {"content": "x"'),
        "api_error",
        'upstream sent invalid JSON in a stream chunk: \'{"choices": [{"delta": {"content": "x"\'',
        id="garbled-json",
    ),
    pytest.param(
        sse("[1]"),
        "api_error",
        "upstream sent a stream chunk that is not a JSON object: '[1]'",
        id="json-not-an-object",
    ),
]


@pytest.mark.parametrize(("event", "error_type", "message"), FAIL_CASES)
def test_feed_sse_failures(event: ServerSentEvent, error_type: str, message: str) -> None:
    translator = new_translator()
    events = translator.feed_sse(sse('{"choices": [{"delta": {"reasoning_content": "Hm"}}]}'))
    events += translator.feed_sse(event)
    assert_anthropic_grammar(events)
    assert summarize(events) == [*thinking_block(0, "Hm"), ("error", error_type)]
    assert events[-1]["error"]["message"] == message
    assert translator.state is StreamState.FAILED
    assert translator.feed_sse(sse("[DONE]")) == []  # OpenRouter sends [DONE] after its error
    with pytest.raises(TranslatorStateError):
        translator.feed_sse(sse('{"choices": []}'))


KEY = "Qx9fLmT2vR8kWp4nZc6hYb1sJd5gHa3eUo7i"  # an upstream echoing our key back


def hide_key(text: str) -> str:
    return text.replace(KEY, "***")


# The key straddles each cut (200 characters quoted, 2,000 of an upstream's message).
QUOTED_CASES = [
    pytest.param(sse(f"{'.' * 190}{KEY} oops"), "invalid JSON", id="not-json"),
    pytest.param(sse(f'["{"." * 190}{KEY}"]'), "not a JSON object", id="not-an-object"),
    pytest.param(sse(f"{'.' * 1990}{KEY}", "error"), "upstream error", id="error-event"),
    pytest.param(
        sse(f'{{"error": {{"message": "{"." * 1990}{KEY}"}}}}'), "upstream error", id="error-data"
    ),
]


@pytest.mark.parametrize(("event", "words"), QUOTED_CASES)
def test_upstream_text_is_masked_before_it_is_quoted_and_cut(
    event: ServerSentEvent, words: str
) -> None:
    translator = StreamTranslator(model="claude-test", message_id=MESSAGE_ID, mask=hide_key)
    events = translator.start() + translator.feed_sse(event)
    message = events[-1]["error"]["message"]
    assert words in message and "***" in message and KEY[:6] not in message
    assert translator.failure == message


def test_an_unknown_finish_reason_is_masked_before_it_is_quoted() -> None:
    translator = StreamTranslator(model="claude-test", message_id=MESSAGE_ID, mask=hide_key)
    run([chunk({"content": "Hi"}, finish=f"{'.' * 30}{KEY}")], translator)
    assert translator.repairs == [f"unknown finish_reason '{'.' * 30}***'"]


def test_omitted_reasoning_is_masked_before_it_is_packed_in_the_signature() -> None:
    translator = StreamTranslator(
        model="claude-test", message_id=MESSAGE_ID, thinking_display="omitted", mask=hide_key
    )
    events, _ = run([chunk({"reasoning_content": f"the key is {KEY}"}), STOP], translator)
    assert [reasoning_from_signature(s) for s in signatures(events)] == ["the key is ***"]


def test_chunks_are_parsed_by_the_loads_given() -> None:
    parsed: list[str] = []

    def loads(text: str) -> Any:
        parsed.append(text)
        return {"choices": [{"delta": {"content": "from loads"}, "finish_reason": "stop"}]}

    translator = StreamTranslator(model="claude-test", message_id=MESSAGE_ID, loads=loads)
    events = translator.start() + translator.feed_sse(sse('{"choices": []}'))
    assert parsed == ['{"choices": []}']
    assert ("delta", 0, "from loads") in summarize(events)


def test_feed_sse_keepalive_and_done() -> None:
    translator = new_translator()
    assert translator.feed_sse(sse("")) == []
    events = translator.start()  # not [] yet: the keep-alive did not start the message
    assert [e["type"] for e in events] == ["message_start"]
    events += translator.feed_sse(
        sse('{"choices": [{"delta": {"content": "Hi"}, "finish_reason": "stop"}]}')
    )
    events += translator.feed_sse(sse(" [DONE] "))
    assert_anthropic_grammar(events)
    assert translator.state is StreamState.FINISHED
    assert translator.stop_reason == "end_turn"
    assert translator.feed_sse(sse("[DONE]")) == []


# ---------------------------------------------------------------------------- states


def test_finish_without_finish_reason_is_an_error() -> None:
    translator = new_translator()
    events = translator.feed(chunk({"content": "Hi"}))
    events += translator.finish()
    assert_anthropic_grammar(events)
    assert summarize(events) == [*text_block(0, "Hi"), ("error", "api_error")]
    assert events[-1]["error"]["message"] == NO_FINISH_REASON_MESSAGE
    assert translator.stop_reason is None
    assert translator.failure == NO_FINISH_REASON_MESSAGE


def test_fail_before_start_is_a_lone_error() -> None:
    translator = new_translator()
    events = translator.finish()
    assert events == [
        {"type": "error", "error": {"type": "api_error", "message": NO_FINISH_REASON_MESSAGE}}
    ]
    assert_anthropic_grammar(events)
    assert translator.start() == []


def test_after_the_end() -> None:
    translator = new_translator()
    translator.feed(STOP)
    assert translator.finish()[-1] == {"type": "message_stop"}
    assert translator.finish() == []
    assert translator.fail({"type": "error", "error": {"type": "api_error", "message": "x"}}) == []
    with pytest.raises(TranslatorStateError, match="after the stream ended"):
        translator.feed(STOP)
    with pytest.raises(TranslatorStateError, match="after the stream ended"):
        translator.feed_sse(sse("{}"))


def test_fail_closes_open_tool_block() -> None:
    translator = new_translator()
    events = translator.feed(calls(tc(0, "c", "f", '{"a"')))
    events += translator.fail(
        {"type": "error", "error": {"type": "overloaded_error", "message": "x"}}
    )
    assert_anthropic_grammar(events)
    assert summarize(events) == [*tool_block(0, "f", '{"a"'), ("error", "overloaded_error")]
    assert translator.repairs == ["invalid tool arguments JSON passed through"]


GRAMMAR_VIOLATIONS = [
    pytest.param(
        [],
        {"type": "content_block_stop", "index": 0},
        "not allowed in state STARTED",
        id="stop-without-block",
    ),
    pytest.param(
        [],
        {"type": "content_block_start", "index": 3, "content_block": {"type": "text", "text": ""}},
        "out of order",
        id="skipped-index",
    ),
    pytest.param(
        ["text"],
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "x"}},
        "does not fit",
        id="delta-wrong-index",
    ),
    pytest.param(
        ["text"],
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "x"},
        },
        "does not fit",
        id="delta-wrong-type",
    ),
    pytest.param(
        ["text"],
        {"type": "content_block_stop", "index": 1},
        "not the open one",
        id="stop-wrong-index",
    ),
    pytest.param(
        ["text"],
        {"type": "message_delta", "delta": {}, "usage": {}},
        "not allowed in state IN_BLOCK",
        id="message-delta-in-block",
    ),
    pytest.param(
        ["message_delta"],
        {"type": "message_delta", "delta": {}, "usage": {}},
        "a second message_delta",
        id="two-message-deltas",
    ),
    pytest.param([], {"type": "message_stop"}, "before message_delta", id="stop-before-delta"),
    pytest.param(
        [],
        {"type": "message_start", "message": {}},
        "not allowed in state STARTED",
        id="second-message-start",
    ),
]


@pytest.mark.parametrize(("setup", "event", "match"), GRAMMAR_VIOLATIONS)
def test_emit_refuses_grammar_violations(setup: list[str], event: StreamEvent, match: str) -> None:
    translator = new_translator()
    out = translator.start()
    for step in setup:
        if step == "text":
            translator._open_block(out, "text", None)
        else:
            translator._emit(out, {"type": "message_delta", "delta": {}, "usage": {}})
    with pytest.raises(TranslatorStateError, match=match):
        translator._emit(out, event)


def test_stop_reason_table() -> None:
    assert STOP_REASON_BY_FINISH_REASON["stop"] == "end_turn"
    assert STOP_REASON_BY_FINISH_REASON["tool_calls"] == "tool_use"


# ---------------------------------------------------------------------------- random chunks

_TEXTS = st.sampled_from(["", " ", "\n", "Hi", "é😀", "<think>", "</think>", "<thi", "nk>", "<"])
_ARGS = st.sampled_from([None, "", " ", '{"a"', ": 1", "}", "{}", "[", "x"])
_TOOL_DELTAS = st.builds(
    tc,
    index=st.sampled_from([None, 0, 1, 2]),
    id=st.sampled_from([None, "", "call_a", "call_b"]),
    name=st.sampled_from([None, "", "f", "g"]),
    args=_ARGS,
)
_DELTAS = st.fixed_dictionaries(
    {},
    optional={
        "role": st.sampled_from(["assistant", None]),
        "content": st.none() | _TEXTS,
        "reasoning_content": st.none() | _TEXTS,
        "reasoning": st.none() | _TEXTS,
        "reasoning_details": st.lists(st.fixed_dictionaries({"text": _TEXTS}), max_size=2),
        "tool_calls": st.none() | st.lists(_TOOL_DELTAS, max_size=2),
    },
)
_CHUNKS = st.one_of(
    st.builds(
        chunk,
        _DELTAS,
        st.sampled_from([None, None, None, "stop", "length", "tool_calls", "odd"]),
    ),
    st.just({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_CHUNKS, max_size=12), st.lists(st.integers(0, 1 << 16), max_size=8))
@example(
    [calls(tc(0, "call_a", "f", '{"a"'), tc(1, "call_b", "g", "{}")), chunk({"content": "<thi"})],
    [],
)
def test_random_chunks_keep_the_grammar(chunks: list[dict[str, Any]], cuts: list[int]) -> None:
    events, translator = run(chunks, done_sent=True)  # asserts the grammar
    names = {e["content_block"].get("name") for e in events if e["type"] == "content_block_start"}
    assert names <= {None, "f", "g"}  # never joined
    assert translator.state in (StreamState.FINISHED, StreamState.FAILED)
    body = b"".join(encode_data(c) for c in chunks) + DONE_LINE
    through_sse, _ = replay_bytes(split_at(body, [c % (len(body) + 1) for c in cuts]))
    assert through_sse == events


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_CHUNKS, max_size=12),
    st.booleans(),
    st.booleans(),
    st.lists(st.sampled_from(["", "Hi", "<"]), max_size=2),
)
@example([chunk({"content": "a"}), chunk({"content": "b", "role": "assistant"})], False, False, [])
def test_plain_text_takes_the_short_way_to_the_same_events(
    chunks: list[dict[str, Any]], start_in_thinking: bool, with_tools: bool, stops: list[str]
) -> None:
    """Text into the open text block skips the think tags and markup (`_plain_text`):
    what comes out is what the general path gives for the same chunks."""

    def translate(short_way: bool) -> tuple[list[StreamEvent], StreamTranslator]:
        translator = StreamTranslator(
            model="claude-test",
            message_id=MESSAGE_ID,
            input_tokens=5,
            start_in_thinking=start_in_thinking,
            tools=[TTS_TOOL] if with_tools else (),
            stop_sequences=stops,
        )
        if not short_way:
            translator._text_passes_unchanged = lambda: False  # type: ignore[method-assign]
        return run(chunks, translator)

    (short, translator), (general, general_translator) = translate(True), translate(False)
    assert short == general
    assert translator.repairs == general_translator.repairs
    assert translator.usage == general_translator.usage
    assert translator.stop_reason == general_translator.stop_reason


def test_plain_text_is_decided_once() -> None:
    translator = new_translator()
    run([chunk({"content": "<thi"}), chunk({"content": "nk>a</think>"})], translator)
    assert not translator._plain_text  # </think> came last: a newline could still be dropped
    translator = new_translator()
    events, _ = run([chunk({"content": "a"}), chunk({"content": "<think>b"})], translator)
    assert translator._plain_text
    assert [e["delta"]["text"] for e in events if e["type"] == "content_block_delta"] == [
        "a",
        "<think>b",
    ]


# ------------------------------------------------------------------ tool-call markup in content

TTS_TOOL = {
    "name": "speak",
    "description": "Text to speech",
    "input_schema": {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
    },
}


def replay_with_tools(
    pieces: Iterable[bytes], tools: Sequence[Mapping[str, Any]]
) -> list[StreamEvent]:
    decoder = SSEDecoder()
    translator = StreamTranslator(model="claude-x", message_id="msg_1", tools=tools)
    events = translator.start()
    for piece in pieces:
        for sse in decoder.feed(piece):
            events += translator.feed_sse(sse)
    events += translator.finish()
    assert_anthropic_grammar(events)
    return events


KIMI_MARKUP = "RECONSTRUCTED_kimi_tool-grammar-in-content"


def test_kimi_markup_becomes_a_tool_call_when_tools_were_offered() -> None:
    body = fixture_body(KIMI_MARKUP)
    expected = [
        ("start", 0, "text"),
        ("delta", 0, "Dạ anh Hà ơi, em làm lại bản TTS nha!"),
        ("stop", 0),
        ("start", 1, "tool_use", "speak"),  # nameless call: the one fitting tool
        ("delta", 1, '{"text":"hello"}'),
        ("stop", 1),
        ("end", "tool_use"),  # Kimi said "stop"
    ]
    assert summarize(replay_with_tools([body], [TTS_TOOL])) == expected
    one_byte = [body[i : i + 1] for i in range(len(body))]
    assert summarize(replay_with_tools(one_byte, [TTS_TOOL])) == expected


def test_markup_stays_text_without_tools() -> None:
    events, _ = replay_bytes([fixture_body(KIMI_MARKUP)])
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert "<|tool_calls_section_begin|>" in text


@given(cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=12))
@settings(max_examples=100, deadline=None)
def test_qwen_markup_split_anywhere(cuts: list[int]) -> None:
    content = 'Checking.<tool_call>{"name": "speak", "arguments": {"text": "hi"}}</tool_call>'
    body = b"".join(
        encode_data({"choices": [{"index": 0, "delta": {"content": content[i : i + 7]}}]})
        for i in range(0, len(content), 7)
    ) + encode_data({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events = replay_with_tools(split_at(body, cuts), [TTS_TOOL])
    assert summarize(events) == [
        ("start", 0, "text"),
        ("delta", 0, "Checking."),
        ("stop", 0),
        ("start", 1, "tool_use", "speak"),
        ("delta", 1, '{"text":"hi"}'),
        ("stop", 1),
        ("end", "tool_use"),
    ]


def test_unnamed_markup_call_with_no_fitting_tool_is_kept_as_text() -> None:
    other = {
        "name": "other",
        "input_schema": {"type": "object", "properties": {"x": {}}, "required": ["x"]},
    }
    events = replay_with_tools([fixture_body(KIMI_MARKUP)], [other])
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    assert '(unnamed tool call: {"text":"hello"})' in text


def test_unterminated_markup_comes_out_as_text_at_the_end() -> None:
    body = encode_data(
        {"choices": [{"index": 0, "delta": {"content": 'Sure.<tool_call>{"name": "sp'}}]}
    ) + encode_data({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events = replay_with_tools([body], [TTS_TOOL])
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    assert text == 'Sure.<tool_call>{"name": "sp'
    assert summarize(events)[-1] == ("end", "end_turn")


# ---------------------------------------------------------------------------- runaway upstreams


def test_runaway_stream_ends_as_max_tokens_stop() -> None:
    """An upstream that ignores max_tokens: text and tool arguments count, thinking does not."""
    translator = StreamTranslator(model="m", message_id=MESSAGE_ID, max_output_tokens=1)
    limit = RUNAWAY_CHARS_PER_TOKEN  # characters allowed for one token
    events = translator.start()
    events += translator.feed(chunk({"reasoning_content": "t" * (limit * 4)}))  # not counted
    events += translator.feed(chunk({"content": "a" * limit}))  # exactly at the limit: goes on
    assert summarize(events)[-1] == ("delta", 1, "a" * limit)  # no end yet
    events += translator.feed(calls(tc(0, "call_1", "f", '{"a": 1}')))  # past it: stop
    assert_anthropic_grammar(events)
    assert summarize(events)[-1] == ("end", "max_tokens")
    assert translator.stop_reason == "max_tokens"
    assert translator.repairs == [RUNAWAY_REPAIR]
    assert translator.finish() == []


def test_without_max_output_tokens_nothing_is_cut() -> None:
    events, translator = run([chunk({"content": "a" * 10_000}), STOP])
    assert summarize(events)[-1] == ("end", "end_turn") and not translator.repairs


# ---------------------------------------------------------------------------- thinking.display


def run_display(
    chunks: Sequence[Mapping[str, Any]], display: ThinkingDisplay
) -> tuple[list[StreamEvent], StreamTranslator]:
    translator = StreamTranslator(
        model="claude-test", message_id=MESSAGE_ID, input_tokens=5, thinking_display=display
    )
    return run(chunks, translator)


def signatures(events: list[StreamEvent]) -> list[str]:
    return [
        e["delta"]["signature"]
        for e in events
        if e["type"] == "content_block_delta" and e["delta"]["type"] == "signature_delta"
    ]


# Reasoning from every source the translator reads: fields, think tags, Magistral parts;
# a tool call between two thinking phases (interleaved thinking).
INTERLEAVED = [
    chunk({"role": "assistant", "reasoning_content": "First "}),
    chunk({"reasoning": "I plan."}),
    calls(tc(0, "call_1", "read", '{"p": 1}')),
    chunk({"content": "<think>Then I check"}),
    chunk({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": " again."}]}]}),
    chunk({"content": "</think>Done."}),
    STOP,
]


def test_omitted_thinking_sends_no_thinking_delta_and_packs_the_reasoning() -> None:
    events, _ = run_display(INTERLEAVED, "omitted")
    assert [(e["type"], e.get("delta", {}).get("type")) for e in events[1:7]] == [
        ("content_block_start", None),
        ("content_block_delta", "signature_delta"),
        ("content_block_stop", None),
        ("content_block_start", None),
        ("content_block_delta", "input_json_delta"),
        ("content_block_stop", None),
    ]
    assert events[1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert not any(e.get("delta", {}).get("type") == "thinking_delta" for e in events)
    assert [reasoning_from_signature(s) for s in signatures(events)] == [
        "First I plan.",
        "Then I check again.",
    ]
    assert summarize(events)[-4:] == [
        ("start", 3, "text"),
        ("delta", 3, "Done."),
        ("stop", 3),
        ("end", "tool_use"),
    ]


@pytest.mark.parametrize("display", ["summarized", None])
def test_summarized_or_absent_display_streams_thinking_as_before(
    display: ThinkingDisplay | None,
) -> None:
    if display is None:
        events, _ = run(INTERLEAVED)
    else:
        events, _ = run_display(INTERLEAVED, display)
    assert summarize(events) == [
        ("start", 0, "thinking"),
        ("delta", 0, "First I plan."),
        ("signature", 0, "nimbridge"),
        ("stop", 0),
        ("start", 1, "tool_use", "read"),
        ("delta", 1, '{"p": 1}'),
        ("stop", 1),
        ("start", 2, "thinking"),
        ("delta", 2, "Then I check again."),
        ("signature", 2, "nimbridge"),
        ("stop", 2),
        ("start", 3, "text"),
        ("delta", 3, "Done."),
        ("stop", 3),
        ("end", "tool_use"),
    ]


def test_omitted_thinking_still_counts_in_the_output_estimate() -> None:
    chunks = [chunk({"reasoning_content": "r" * 400}), chunk({"content": "ok"}), STOP]
    omitted, _ = run_display(chunks, "omitted")
    summarized, _ = run_display(chunks, "summarized")
    assert (
        omitted[-2]["usage"]
        == summarized[-2]["usage"]
        == {
            "input_tokens": 5,
            "output_tokens": (400 + 2 + 3) // 4,
        }
    )


def test_omitted_thinking_cut_by_an_error_still_closes_with_its_reasoning() -> None:
    translator = StreamTranslator(model="m", message_id=MESSAGE_ID, thinking_display="omitted")
    events = translator.start() + translator.feed(chunk({"reasoning_content": "half a tho"}))
    events += translator.fail({"type": "error", "error": {"type": "api_error", "message": "x"}})
    assert_anthropic_grammar(events)
    assert [reasoning_from_signature(s) for s in signatures(events)] == ["half a tho"]


@pytest.mark.parametrize(
    "stem",
    [
        "deepseek-reasoner_reasoning-content",
        "openrouter_claude-sonnet-4.5_reasoning-details_keepalive",
        "together-via-hf-router_deepseek-r1_inline-think-tags",
    ],
)
def test_omitted_fixture_keeps_what_summarized_shows(stem: str) -> None:
    summarized, _ = replay_bytes([fixture_body(stem)])
    decoder = SSEDecoder()
    translator = StreamTranslator(
        model="claude-test", message_id=MESSAGE_ID, input_tokens=5, thinking_display="omitted"
    )
    omitted = translator.start()
    for sse in [*decoder.feed(fixture_body(stem)), *decoder.close()]:
        omitted += translator.feed_sse(sse)
    omitted += translator.finish()
    assert_anthropic_grammar(omitted)
    shown = [item[2] for item in summarize(summarized) if item[0] == "delta" and item[1] == 0]
    assert [reasoning_from_signature(s) for s in signatures(omitted)] == shown
    # thinking: start, one signature, stop (no thinking_delta); then the same text and end
    assert [item[0] for item in summarize(omitted)[:3]] == ["start", "signature", "stop"]
    assert summarize(omitted)[3:] == summarize(summarized)[4:]
    assert omitted[-2]["usage"] == summarized[-2]["usage"]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(st.characters(codec=None, exclude_categories=()), min_size=1)))
def test_omitted_reasoning_of_any_text_round_trips(pieces: list[str]) -> None:
    chunks = [chunk({"reasoning_content": piece}) for piece in pieces]
    events, _ = run_display([*chunks, chunk({"content": "ok"}), STOP], "omitted")
    expected = ["".join(pieces)] if pieces else []
    assert [reasoning_from_signature(s) for s in signatures(events)] == expected


# ------------------------------------------------ llama-cpp-python (issue 18)


def llama_tool_delta(arguments: str, *, first: bool) -> dict[str, Any]:
    """llama-cpp-python's delta: the call as `tool_calls` and again as `function_call`."""
    function = {"name": "get_time", "arguments": arguments} if first else {"arguments": arguments}
    call: dict[str, Any] = {"index": 0, "function": function}
    if first:
        call |= {"id": "call__0_get_time_cmpl-1", "type": "function"}
    return chunk({"tool_calls": [call], "function_call": function})


def test_tool_calls_beside_a_legacy_function_call_are_one_call() -> None:
    events, translator = run(
        [
            chunk({"role": "assistant", "content": None}),
            llama_tool_delta('{"tz": ', first=True),
            llama_tool_delta('"UTC"}', first=False),
            chunk(finish="tool_calls"),
        ]
    )
    starts = [e for e in events if e["type"] == "content_block_start"]
    assert [e["content_block"]["name"] for e in starts] == ["get_time"]
    assert translator.stop_reason == "tool_use"
    assert translator.repairs == []


def test_a_legacy_function_call_alone_is_still_a_call() -> None:
    events, translator = run(
        [
            chunk({"tool_calls": [], "function_call": {"name": "f", "arguments": "{}"}}),
            chunk(finish="function_call"),
        ]
    )
    assert translator.stop_reason == "tool_use"


@pytest.mark.parametrize(
    ("text", "finish", "completion_tokens", "expected"),
    [
        pytest.param("word " * 120, "length", None, 64, id="length-stop-counts-max-tokens"),
        pytest.param("x" * 400, "stop", None, 64, id="estimate-capped-at-max-tokens"),
        pytest.param("word", "stop", None, 1, id="short-answer-estimated"),
        pytest.param("word " * 120, "length", 70, 70, id="upstream-count-wins"),
    ],
)
def test_estimated_output_tokens_never_pass_max_tokens(
    text: str, finish: str, completion_tokens: int | None, expected: int
) -> None:
    translator = StreamTranslator(
        model="claude-test", message_id=MESSAGE_ID, input_tokens=5, max_output_tokens=64
    )
    chunks = [chunk({"content": text}), chunk(finish=finish)]
    if completion_tokens is not None:
        chunks.append({"choices": [], "usage": {"completion_tokens": completion_tokens}})
    events, _ = run(chunks, translator)
    delta = next(e for e in events if e["type"] == "message_delta")
    assert delta["usage"]["output_tokens"] == expected


def test_done_without_finish_reason_says_the_upstream_ended_it() -> None:
    translator = new_translator()
    events = translator.start() + translator.feed(chunk({"content": "Hi"}))
    events += translator.feed_sse(ServerSentEvent(data="[DONE]"))
    assert_anthropic_grammar(events)
    assert events[-1]["error"]["message"] == DONE_WITHOUT_FINISH_REASON_MESSAGE
    assert "connection dropped" not in DONE_WITHOUT_FINISH_REASON_MESSAGE


def test_received_chunks_counts_what_came() -> None:
    translator = new_translator()
    translator.start()
    assert translator.received_chunks == 0
    translator.feed(chunk({"content": "Hi"}))
    assert translator.received_chunks == 1


@pytest.mark.parametrize(
    ("pieces", "stops", "expected"),
    [
        pytest.param(
            ["The end", " STOP"], ["STOP", "HALT"], ("stop_sequence", "STOP"), id="kept-in-text"
        ),
        pytest.param(
            ["ab", "c"], ["c", "bc", "zzzz"], ("stop_sequence", "bc"), id="longest-across-deltas"
        ),
        pytest.param(["The end."], ["STOP"], ("end_turn", None), id="stripped-unknowable"),
        pytest.param(["The end STOP"], [], ("end_turn", None), id="no-stops-asked"),
    ],
)
def test_stop_sequence_found_at_the_end_of_the_text(
    pieces: list[str], stops: list[str], expected: tuple[str, str | None]
) -> None:
    translator = StreamTranslator(model="claude-test", message_id=MESSAGE_ID, stop_sequences=stops)
    events, _ = run([*(chunk({"content": p}) for p in pieces), chunk(finish="stop")], translator)
    delta = next(e for e in events if e["type"] == "message_delta")["delta"]
    assert (delta["stop_reason"], delta["stop_sequence"]) == expected


def test_recorded_llama_cpp_python_tool_stream_is_one_call() -> None:
    """llama-cpp-python 0.3.36, a forced call streamed: each delta holds the call as
    `tool_calls` and again as `function_call`, and no usage chunk follows."""
    raw = FIXTURES / "llama-cpp-python-0.3.36_gemma-3-270m_tool-calls-beside-function-call.sse"
    events, translator = replay_bytes([raw.read_bytes()])
    starts = [e for e in events if e["type"] == "content_block_start"]
    assert [e["content_block"]["type"] for e in starts] == ["tool_use"]
    assert translator.stop_reason == "tool_use"
