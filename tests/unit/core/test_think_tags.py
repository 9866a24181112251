import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.core.think_tags import Segment, ThinkTagSplitter

T, X = "thinking", "text"

# (content, start_in_thinking, segments once adjacent ones of a kind are joined)
SPLIT_CASES = [
    pytest.param("<think>Hm</think>Hi", False, [(T, "Hm"), (X, "Hi")], id="think-then-text"),
    pytest.param(
        "<think>\nHm\n</think>\n\nHi", False, [(T, "Hm\n"), (X, "Hi")], id="newlines-after-tags"
    ),
    pytest.param(" \n <think>Hm</think>Hi", False, [(T, "Hm"), (X, "Hi")], id="leading-space"),
    pytest.param("Hi <think>no</think>", False, [(X, "Hi <think>no</think>")], id="not-at-start"),
    pytest.param("  Hi", False, [(X, "  Hi")], id="plain-text-keeps-space"),
    pytest.param("   ", False, [(X, "   ")], id="whitespace-only"),
    pytest.param("<thinking>", False, [(X, "<thinking>")], id="other-tag"),
    pytest.param("<thi", False, [(X, "<thi")], id="unfinished-open-tag-is-text"),
    pytest.param("<b>bold</b>", False, [(X, "<b>bold</b>")], id="html"),
    pytest.param("<think>Hm", False, [(T, "Hm")], id="never-closed"),
    pytest.param("<think>Hm</thi", False, [(T, "Hm</thi")], id="unfinished-close-tag"),
    pytest.param("<think>a<b</think>", False, [(T, "a<b")], id="lt-inside-thinking"),
    pytest.param("<think>a</</think>b", False, [(T, "a</"), (X, "b")], id="close-tag-restarts"),
    pytest.param("<think></think>Hi", False, [(X, "Hi")], id="empty-thinking"),
    pytest.param("<think>\n\n</think>\n\n", False, [], id="only-newlines"),
    pytest.param(
        "<think>a</think>b</think>", False, [(T, "a"), (X, "b</think>")], id="second-close"
    ),
    pytest.param("Hm</think>Hi", True, [(T, "Hm"), (X, "Hi")], id="template-opened"),
    pytest.param("\nHm</think>\nHi", True, [(T, "Hm"), (X, "Hi")], id="template-opened-newlines"),
    pytest.param(
        "<think>Hm</think>Hi", True, [(T, "Hm"), (X, "Hi")], id="template-opened-explicit"
    ),
    pytest.param("<b>Hm</think>", True, [(T, "<b>Hm")], id="template-opened-lt"),
    pytest.param(" <thi", True, [(T, "<thi")], id="template-opened-unfinished"),
    pytest.param("  ", True, [], id="template-opened-whitespace"),
    pytest.param("", False, [], id="empty"),
]


def split(chunks: list[str], start_in_thinking: bool) -> list[tuple[str, str]]:
    splitter = ThinkTagSplitter(start_in_thinking=start_in_thinking)
    segments = [s for chunk in chunks for s in splitter.feed(chunk)] + splitter.close()
    assert all(s.text for s in segments), segments
    joined: list[tuple[str, str]] = []
    for segment in segments:
        if joined and joined[-1][0] == segment.kind:
            joined[-1] = (segment.kind, joined[-1][1] + segment.text)
        else:
            joined.append((segment.kind, segment.text))
    return joined


@pytest.mark.parametrize(("content", "start_in_thinking", "expected"), SPLIT_CASES)
def test_split_whole(
    content: str, start_in_thinking: bool, expected: list[tuple[str, str]]
) -> None:
    assert split([content], start_in_thinking) == expected


@pytest.mark.parametrize(("content", "start_in_thinking", "expected"), SPLIT_CASES)
def test_split_one_char_at_a_time(
    content: str, start_in_thinking: bool, expected: list[tuple[str, str]]
) -> None:
    assert split(list(content), start_in_thinking) == expected


@pytest.mark.parametrize(("content", "start_in_thinking", "expected"), SPLIT_CASES)
def test_split_every_three_way_split(
    content: str, start_in_thinking: bool, expected: list[tuple[str, str]]
) -> None:
    for i in range(len(content) + 1):
        for j in range(i, len(content) + 1):
            chunks = [content[:i], content[i:j], content[j:]]
            assert split(chunks, start_in_thinking) == expected, chunks


_PIECES = ["<think>", "</think>", "<", "</", "<thi", "nk>", "\n", " ", "a", "é", "think", ">"]


@settings(max_examples=200)
@given(
    st.lists(st.sampled_from(_PIECES), max_size=12).map("".join),
    st.lists(st.integers(0, 200), max_size=6),
    st.booleans(),
)
@example("<thi" + "nk>Hm</thi" + "nk>Hi", [4, 11], False)
def test_any_split_gives_same_segments(content: str, cuts: list[int], start: bool) -> None:
    points = [0, *sorted(c for c in cuts if c <= len(content)), len(content)]
    chunks = [content[a:b] for a, b in zip(points, points[1:], strict=False)]
    assert split(chunks, start) == split([content], start)


@pytest.mark.parametrize(
    ("fed", "start", "passes"),
    [
        ([], False, False),
        ([" "], False, False),  # the opening is not decided yet
        (["<thi"], False, False),
        (["Hi"], False, True),
        (["<think>a"], False, False),
        (["a"], True, False),  # in thinking until </think>
        (["<think>a</think>"], False, False),  # a newline may still come to be dropped
        (["<think>a</think>\n"], False, False),
        (["<think>a</think>", "b"], False, True),
        (["<think>a</think>b"], False, True),
    ],
)
def test_passes_text(fed: list[str], start: bool, passes: bool) -> None:
    splitter = ThinkTagSplitter(start_in_thinking=start)
    for text in fed:
        splitter.feed(text)
    assert splitter.passes_text is passes


@given(
    st.lists(st.sampled_from(["<think>", "</think>", "a", "\n", " ", "<", "/think>"])),
    st.lists(st.text(min_size=1), max_size=5),
    st.booleans(),
)
def test_once_it_passes_text_every_feed_comes_back_whole(
    before: list[str], after: list[str], start: bool
) -> None:
    splitter = ThinkTagSplitter(start_in_thinking=start)
    for text in before:
        splitter.feed(text)
    if not splitter.passes_text:
        return
    for text in after:
        assert splitter.feed(text) == [Segment("text", text)]
        assert splitter.passes_text
    assert splitter.close() == []


def test_no_holding_back_once_text() -> None:
    splitter = ThinkTagSplitter()
    assert splitter.feed(" ") == []
    assert splitter.feed("Hi") == [Segment("text", " Hi")]
    assert splitter.feed("<think>") == [Segment("text", "<think>")]


def test_holds_back_only_a_possible_close_tag() -> None:
    splitter = ThinkTagSplitter()
    assert splitter.feed("<think>ab</t") == [Segment("thinking", "ab")]
    assert splitter.feed("x") == [Segment("thinking", "</tx")]
    assert splitter.feed("a<") == [Segment("thinking", "a")]
    assert splitter.feed("/think>\nb") == [Segment("text", "b")]
    assert splitter.close() == []


def test_close_after_open_tag_only() -> None:
    splitter = ThinkTagSplitter()
    assert splitter.feed("<think>") == []
    assert splitter.close() == []
