"""Tool-call markup leaked into content: Kimi, MiniMax, Qwen/Hermes grammars."""

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.core.tool_markup import (
    MarkupToolCall,
    ToolMarkupScanner,
    extract_tool_markup,
    infer_tool_name,
)

FIXTURES = Path(__file__).parents[2] / "fixtures"

Item = str | MarkupToolCall


def call(name: str, **arguments: object) -> MarkupToolCall:
    return MarkupToolCall(name, json.dumps(arguments, separators=(",", ":"), ensure_ascii=False))


def merged(items: list[Item]) -> list[Item]:
    """Adjacent text pieces joined: the form in which every split must agree."""
    out: list[Item] = []
    for item in items:
        if isinstance(item, str) and out and isinstance(out[-1], str):
            out[-1] += item
        else:
            out.append(item)
    return out


def scan(pieces: list[str]) -> list[Item]:
    scanner = ToolMarkupScanner()
    items: list[Item] = []
    for piece in pieces:
        items += scanner.feed(piece)
    items += scanner.close()
    assert all(item != "" for item in items), "empty text must never be emitted"
    return merged(items)


def kimi_fixture_content() -> str:
    path = FIXTURES / "openai_stream" / "RECONSTRUCTED_kimi_tool-grammar-in-content.sse"
    content = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("data: "):
            delta = json.loads(line.removeprefix("data: "))["choices"][0]["delta"]
            content += delta.get("content") or ""
    return content


def minimax_fixture_content() -> str:
    path = FIXTURES / "upstream_bodies" / "RECONSTRUCTED_minimax_xml-tool-call-in-content.json"
    content: str = json.loads(path.read_text(encoding="utf-8"))["choices"][0]["message"]["content"]
    return content


KIMI_TWO = (
    "Let me check.<|tool_calls_section_begin|>"
    "<|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>"
    '{"city": "Paris"}<|tool_call_end|>'
    " <|tool_call_begin|>functions.read_file:1<|tool_call_argument_begin|>"
    '{"path": "/etc/hosts", "limit": 10}<|tool_call_end|>'
    "<|tool_calls_section_end|>"
)
MINIMAX_TWO = (
    "Searching.\n<minimax:tool_call>\n"
    '<invoke name="search_docs">\n<parameter name="query">mimo tool calls</parameter>\n'
    '<parameter name="limit">5</parameter>\n</invoke>\n'
    "<invoke name='edit'>\n<parameter name='dry_run'>true</parameter>\n"
    '<parameter name="opts">{"a": [1, 2]}</parameter>\n'
    '<parameter name="ids">[1, "x"]</parameter>\n'
    '<parameter name="ratio">0.5</parameter>\n'
    '<parameter name="nothing">null</parameter>\n'
    '<parameter name="quoted">"hi"</parameter>\n'
    '<parameter name="nan">NaN</parameter>\n'
    '<parameter name="body">\n\nline one\nline two\n\n</parameter>\n'
    "</invoke>\n</minimax:tool_call>\nDone."
)
QWEN_XML = (
    "<tool_call>\n<function=read_file>\n<parameter=file_path>\nREADME.md\n</parameter>\n"
    "<parameter=offset>\n12\n</parameter>\n</function>\n</tool_call>"
)

EXTRACT_CASES = [
    pytest.param("just text", ("just text", []), id="plain"),
    pytest.param("", ("", []), id="empty"),
    pytest.param(
        kimi_fixture_content(),
        ("Dạ anh Hà ơi, em làm lại bản TTS nha!", [call("", text="hello")]),
        id="kimi-fixture-id-without-name",
    ),
    pytest.param(
        KIMI_TWO,
        (
            "Let me check.",
            [call("get_weather", city="Paris"), call("read_file", path="/etc/hosts", limit=10)],
        ),
        id="kimi-two-calls",
    ),
    pytest.param(
        "<|tool_calls_section_begin|><|tool_call_begin|> lookup:3 <|tool_call_argument_begin|>"
        "<|tool_call_end|><|tool_calls_section_end|>",
        ("", [call("lookup")]),
        id="kimi-name-index-empty-args",
    ),
    pytest.param(
        "a<|tool_call_begin|>functions.ls<|tool_call_argument_begin|>{}<|tool_call_end|>b",
        ("ab", [call("ls")]),
        id="kimi-lone-call-no-section",
    ),
    pytest.param(
        "x<|tool_calls_section_begin|> <|tool_calls_section_end|>y",
        ("x<|tool_calls_section_begin|> <|tool_calls_section_end|>y", []),
        id="kimi-empty-section-kept",
    ),
    pytest.param(
        minimax_fixture_content(),
        ("", [call("search_docs", query="mimo tool calls")]),
        id="minimax-fixture",
    ),
    pytest.param(
        MINIMAX_TWO,
        (
            "Searching.\n\nDone.",
            [
                call("search_docs", query="mimo tool calls", limit=5),
                call(
                    "edit",
                    dry_run=True,
                    opts={"a": [1, 2]},
                    ids=[1, "x"],
                    ratio=0.5,
                    nothing="null",
                    quoted='"hi"',
                    nan="NaN",
                    body="\nline one\nline two\n",
                ),
            ],
        ),
        id="minimax-two-invokes-typed-params",
    ),
    pytest.param(
        'Sure. <tool_call>\n{"name": "get_time", "arguments": {"tz": "UTC"}}\n</tool_call> ok',
        ("Sure.  ok", [call("get_time", tz="UTC")]),
        id="hermes-json",
    ),
    pytest.param(
        '<tool_call>{"name": "a", "arguments": "{\\"x\\": 1}"}</tool_call>'
        '<tool_call>{"name": "b", "parameters": {"y": [2]}}</tool_call>'
        '<tool_call>{"name": "c"}</tool_call>'
        '<tool_call>{"name": "d", "arguments": ""}</tool_call>',
        ("", [call("a", x=1), call("b", y=[2]), call("c"), call("d")]),
        id="hermes-string-args-parameters-key-missing-args",
    ),
    pytest.param(
        QWEN_XML + " then text",
        ("then text", [call("read_file", file_path="README.md", offset=12)]),
        id="qwen3-coder-xml",
    ),
    pytest.param(
        '<tool_call>{"name": "ünïcode", "arguments": {"q": "日本"}}</tool_call>',
        ("", [MarkupToolCall("ünïcode", '{"q":"日本"}')]),
        id="non-ascii-kept-unescaped",
    ),
]


@pytest.mark.parametrize(("text", "expected"), EXTRACT_CASES)
def test_extract_tool_markup(text: str, expected: tuple[str, list[MarkupToolCall]]) -> None:
    assert extract_tool_markup(text) == expected


# Malformed markup is kept as text, byte for byte, so nothing the model said is lost;
# a call with invented `{}` arguments would run a tool the model did not ask for.
MALFORMED = [
    pytest.param(
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>"
        "{bad json<|tool_call_end|><|tool_calls_section_end|>",
        id="kimi-bad-json",
    ),
    pytest.param(
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>"
        "[1, 2]<|tool_call_end|><|tool_calls_section_end|>",
        id="kimi-args-not-object",
    ),
    pytest.param(
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>"
        "{}<|tool_call_end|> stray words <|tool_calls_section_end|>",
        id="kimi-stray-text-in-section",
    ),
    pytest.param(
        '<|tool_call_begin|>f:0<|tool_call_argument_begin|>{"x": NaN}<|tool_call_end|>',
        id="kimi-nan-is-not-json",
    ),
    pytest.param(
        '<minimax:tool_call>\n<invoke name="f">oops</invoke>\n</minimax:tool_call>',
        id="minimax-text-instead-of-parameters",
    ),
    pytest.param("<minimax:tool_call><invoke>x</invoke></minimax:tool_call>", id="minimax-no-name"),
    pytest.param("<minimax:tool_call>\n</minimax:tool_call>", id="minimax-empty"),
    pytest.param(
        '<minimax:tool_call><invoke name=" "></invoke></minimax:tool_call>',
        id="minimax-blank-name",
    ),
    pytest.param("<tool_call>{not json}</tool_call>", id="hermes-bad-json"),
    pytest.param('<tool_call>{"arguments": {}}</tool_call>', id="hermes-no-name"),
    pytest.param('<tool_call>{"name": "", "arguments": {}}</tool_call>', id="hermes-empty-name"),
    pytest.param('<tool_call>{"name": "f", "arguments": [1]}</tool_call>', id="hermes-args-list"),
    pytest.param('<tool_call>{"name": "f", "arguments": "[1]"}</tool_call>', id="hermes-str-list"),
    pytest.param("<tool_call><b>bold</b></tool_call>", id="qwen-xml-no-function"),
    pytest.param(
        "<tool_call><function=f>junk<parameter=a>1</parameter></function></tool_call>",
        id="qwen-xml-stray-text",
    ),
]


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_markup_is_kept_as_text(text: str) -> None:
    assert extract_tool_markup(f"before {text} after") == (f"before {text} after", [])


PROSE = [
    pytest.param("if a < b and b > c: print('<tool')", id="less-than-and-tool-prefix"),
    pytest.param("Wrap the JSON in <tool_call> tags, like this.", id="tag-named-in-prose"),
    pytest.param("<tool_call>", id="bare-opening-at-end"),
    pytest.param("<tool_call> \n", id="opening-then-blanks-only"),
    pytest.param('<tool_call>{"name": "f", "arguments": {}}', id="hermes-unterminated"),
    pytest.param("<minimax:tool_call>x</minimax:tool_call>", id="minimax-prose-body"),
    pytest.param("<|tool_calls_section_begin|>hi", id="kimi-section-prose-body"),
    pytest.param("<|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{", id="kimi-cut"),
    pytest.param("a <tool_cal", id="partial-marker-at-end"),
    pytest.param("<<<|<|tool<minimax:<tool_call", id="nested-partial-markers"),
    pytest.param("</tool_call> <|tool_calls_section_end|>", id="closing-markers-alone"),
]


@pytest.mark.parametrize("text", PROSE)
def test_text_that_is_not_markup_passes_unchanged(text: str) -> None:
    assert scan([text]) == [text]
    assert scan(list(text)) == [text]


def test_implausible_opening_is_released_at_once() -> None:
    # Not buffered to the end of the stream: the first non-blank char decides.
    scanner = ToolMarkupScanner()
    assert scanner.feed("use <tool_call>") == ["use "]
    assert scanner.feed(" ") == []
    assert scanner.feed("tags") == ["<tool_call> tags"]


def test_plain_text_streams_without_delay() -> None:
    scanner = ToolMarkupScanner()
    assert scanner.feed("Hello, world") == ["Hello, world"]
    assert scanner.feed(" a<") == [" a"]  # only the possible marker start is held
    assert scanner.feed("b") == ["<b"]
    assert scanner.feed("<|tool_calls") == []
    assert scanner.feed("!") == ["<|tool_calls!"]
    assert scanner.close() == []


def test_streamed_markup_emits_call_when_closed() -> None:
    scanner = ToolMarkupScanner()
    assert scanner.feed("Hi <tool_call>") == ["Hi "]
    assert scanner.feed('{"name": "f", "arguments": {"a": 1}}') == []
    assert scanner.feed("</tool_") == []
    assert scanner.feed("call>bye") == [call("f", a=1), "bye"]
    assert scanner.close() == []


def test_close_releases_held_suffix_and_scanner_is_reusable() -> None:
    scanner = ToolMarkupScanner()
    assert scanner.feed("x <minimax:tool") == ["x "]
    assert scanner.close() == ["<minimax:tool"]
    assert scanner.feed(QWEN_XML) == [call("read_file", file_path="README.md", offset=12)]


ALL_INPUTS = [p.values[0] for p in EXTRACT_CASES + MALFORMED + PROSE]


@pytest.mark.parametrize("text", ALL_INPUTS)
def test_every_split_point_gives_the_same_result(text: str) -> None:
    whole = scan([text])
    assert scan(list(text)) == whole  # one character at a time
    for cut in range(len(text) + 1):
        assert scan([text[:cut], text[cut:]]) == whole


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(ALL_INPUTS), st.lists(st.integers(min_value=0), max_size=12))
def test_random_splits_give_the_same_result(text: str, cuts: list[int]) -> None:
    points = sorted({cut % (len(text) + 1) for cut in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    assert scan(pieces) == scan([text])


FRAGMENTS = [
    "hello ",
    "<",
    "a < b",
    "<tool",
    "<tool_call>",
    "</tool_call>",
    '{"name": "f", "arguments": {"k": 1}}',
    "<minimax:tool_call>",
    "</minimax:tool_call>",
    '<invoke name="g"><parameter name="p">2</parameter></invoke>',
    "<|tool_calls_section_begin|>",
    "<|tool_calls_section_end|>",
    "<|tool_call_begin|>functions.h:0<|tool_call_argument_begin|>{}<|tool_call_end|>",
    "<function=q><parameter=z>x</parameter></function>",
    "\n",
]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(FRAGMENTS), max_size=10).map("".join),
    st.lists(st.integers(min_value=0), max_size=8),
)
@example("<tool_call><tool_call>{}</tool_call>", [11])
@example("<tool_call>\n</tool_call><|tool", [3, 20])
def test_random_markup_soup_is_split_invariant(text: str, cuts: list[int]) -> None:
    points = sorted({cut % (len(text) + 1) for cut in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    result = scan(pieces)
    assert result == scan(list(text))
    if not any(isinstance(item, MarkupToolCall) for item in result):
        # No call recognised: the text must come back exactly.
        assert "".join(item for item in result if isinstance(item, str)) == text


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=60))
def test_text_without_markers_is_untouched(text: str) -> None:
    assert scan(list(text)) == ([text] if text else [])


def test_kimi_fixture_streamed_as_recorded() -> None:
    # The fixture splits the call id across deltas ("call_9e6" | "c04c8").
    path = FIXTURES / "openai_stream" / "RECONSTRUCTED_kimi_tool-grammar-in-content.sse"
    deltas = [
        json.loads(line.removeprefix("data: "))["choices"][0]["delta"].get("content")
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith("data: ")
    ]
    scanner = ToolMarkupScanner()
    emitted = [scanner.feed(delta) for delta in deltas if delta]
    assert emitted == [["Dạ anh Hà ơi, em làm lại bản TTS nha!"], [], [call("", text="hello")]]
    assert scanner.close() == []


TOOLS: list[dict[str, Any]] = [
    {"name": "tts_synthesize", "input_schema": {"type": "object"}},
    {
        "name": "tts",
        "input_schema": {"type": "object", "properties": {"text": {}}, "required": ["text"]},
    },
    {
        "name": "web_search",
        "input_schema": {"type": "object", "properties": {"query": {}}, "required": ["query"]},
    },
    {"name": "announce", "input_schema": {"properties": {"text": {}, "loud": {}}}},
    {"type": "web_search_20250305", "name": "server_side"},
    {"name": 3, "input_schema": {}},
]


@pytest.mark.parametrize(
    ("arguments", "tools", "expected"),
    [
        pytest.param('{"text":"hello"}', TOOLS[:1], "tts_synthesize", id="only-tool-bare-schema"),
        pytest.param('{"text":"hello"}', TOOLS[1:3], "tts", id="unique-schema-fit"),
        pytest.param('{"query":"w"}', TOOLS[1:], "web_search", id="fits-one-of-many"),
        pytest.param('{"text":"hello"}', TOOLS[1:4], None, id="ambiguous"),
        pytest.param('{"unknown":"x"}', TOOLS[1:4], None, id="no-fit"),
        pytest.param('{"text":"x","loud":true}', TOOLS[1:4], "announce", id="extra-key-rules-out"),
        pytest.param(
            '{"required":"bad"}',
            [{"name": "r", "input_schema": {"required": "x"}}],
            "r",
            id="malformed-required-ignored",
        ),
        pytest.param("not json", TOOLS, None, id="bad-arguments"),
        pytest.param("{}", [], None, id="no-tools"),
    ],
)
def test_infer_tool_name(arguments: str, tools: list[dict[str, Any]], expected: str | None) -> None:
    assert infer_tool_name(arguments, tools) == expected


def test_kimi_fixture_name_is_inferred_from_the_offered_tool() -> None:
    _, calls = extract_tool_markup(kimi_fixture_content())
    assert infer_tool_name(calls[0].arguments, TOOLS[:1]) == "tts_synthesize"
