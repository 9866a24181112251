"""app.core.rechunk: long deltas split into small ones, the text unchanged, clusters whole."""

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.anthropic_types import StreamEvent
from app.core.rechunk import (
    MAX_SPREAD_S,
    SPLIT_ABOVE_CHARS,
    STEP_S,
    cut_positions,
    smoothed,
    smoothed_and_paced,
    split_text,
    spread_plan,
)
from app.core.thinking_display import reasoning_signature

# Letters, spaces, punctuation and the cluster-forming characters, mixed densely.
CLUSTER_PARTS = st.sampled_from(
    ["a", "é", " ", ",", "\n", "\r", "\u0301", "\u200d", "\ufe0f", "\U0001f3fd", "\U0001f1eb"]
    + ["\U0001f1f7", "\U0001f468", "\ud83d", "\ude00", "\U000e0067", "字"]
)
TEXTS = st.text() | st.lists(CLUSTER_PARTS, max_size=300).map("".join)


def _no_cut_allowed_before(text: str, i: int) -> bool:
    char, before = text[i], text[i - 1]
    return (
        unicodedata.combining(char) != 0
        or unicodedata.category(char) in ("Mn", "Mc", "Me")
        or char in "\u200d\ufe0f"
        or before == "\u200d"
        or 0x1F3FB <= ord(char) <= 0x1F3FF
    )


@given(TEXTS, st.integers(1, 40), st.integers(0, 80))
def test_pieces_concatenate_to_the_input_and_stay_small(
    text: str, max_piece: int, threshold: int
) -> None:
    pieces = split_text(text, max_piece=max_piece, threshold=threshold)
    assert "".join(pieces) == text
    if len(text) <= threshold:
        assert pieces == [text]
        return
    allowed = set(cut_positions(text))
    position = 0
    for piece in pieces[:-1]:
        assert piece  # no empty delta is ever sent
        position += len(piece)
        assert position in allowed
        assert not _no_cut_allowed_before(text, position)
        if len(piece) > max_piece:  # only one cluster, no cut inside it
            start = position - len(piece)
            assert not any(start < cut < position for cut in allowed)
    assert len(pieces[-1]) <= max_piece or not any(
        cut > len(text) - len(pieces[-1]) for cut in allowed
    )


def _stands_alone(char: str) -> bool:
    """No cluster rule ties `char` to a neighbour."""
    return (
        cut_positions(f"a{char}a") == [1, 2]
        and char != "\r"
        and not 0x1F1E6 <= ord(char) <= 0x1F1FF
    )


@given(st.text(st.characters().filter(_stands_alone), min_size=49))
def test_pieces_of_plain_text_never_exceed_the_limit(text: str) -> None:
    assert all(len(piece) <= 24 for piece in split_text(text))


@pytest.mark.parametrize(
    ("text", "max_piece", "expected"),
    [
        pytest.param("short", 24, ["short"], id="under-threshold"),
        pytest.param("one two three four", 8, ["one two ", "three ", "four"], id="after-spaces"),
        pytest.param("a,b.c;d e", 4, ["a,b.", "c;d ", "e"], id="after-punctuation"),
        pytest.param("abcdefghij", 4, ["abcd", "efgh", "ij"], id="inside-a-long-word"),
        pytest.param("a bcdefghij", 8, ["a bcdefg", "hij"], id="no-tiny-piece-for-a-space"),
        pytest.param("e\u0301e\u0301e\u0301", 3, ["e\u0301", "e\u0301", "e\u0301"], id="accent"),
        pytest.param("\U0001f1eb\U0001f1f7" * 3, 3, ["\U0001f1eb\U0001f1f7"] * 3, id="flags"),
        pytest.param("ab\r\ncd", 3, ["ab", "\r\n", "cd"], id="crlf"),
        pytest.param(
            "\U0001f468\u200d\U0001f469\u200d\U0001f467x",
            2,
            ["\U0001f468\u200d\U0001f469\u200d\U0001f467", "x"],
            id="zwj-family-longer-than-max",
        ),
        pytest.param(
            "\U0001f44d\U0001f3fd\U0001f44d\ufe0f",
            2,
            ["\U0001f44d\U0001f3fd", "\U0001f44d\ufe0f"],
            id="skin-tone-and-variation-selector",
        ),
        pytest.param(
            "\ud83d\ude00\ud83d\ude00", 1, ["\ud83d\ude00", "\ud83d\ude00"], id="surrogates"
        ),
    ],
)
def test_examples(text: str, max_piece: int, expected: list[str]) -> None:
    threshold = 8 if text == "short" else 0
    assert split_text(text, max_piece=max_piece, threshold=threshold) == expected


def _delta(kind: str, field: str, value: str) -> StreamEvent:
    return {"type": "content_block_delta", "index": 0, "delta": {"type": kind, field: value}}


def test_smoothed_splits_only_long_text_and_thinking_deltas() -> None:
    long_text = "word " * 20
    events: list[StreamEvent] = [
        {"type": "ping"},
        _delta("text_delta", "text", "short"),
        _delta("text_delta", "text", long_text),
        _delta("thinking_delta", "thinking", long_text),
        _delta("input_json_delta", "partial_json", '{"a": "' + "x" * 200 + '"}'),
        _delta("signature_delta", "signature", "s" * 200),
    ]
    out = smoothed(events)
    kinds = [e.get("delta", {}).get("type") for e in out]
    assert kinds.count("text_delta") == 1 + 5 and kinds.count("thinking_delta") == 5
    assert out[0] == events[0] and out[1] == events[1] and out[-2:] == events[-2:]
    assert "".join(e["delta"]["text"] for e in out[2:7]) == long_text
    assert all(e["index"] == 0 for e in out[1:])


def test_an_omitted_thinking_signature_is_never_split() -> None:
    """The signature of omitted thinking carries the whole reasoning: long, and only
    meaningful whole."""
    signature = reasoning_signature("".join(chr(0x4E00 + i) for i in range(4000)))
    assert len(signature) > 20 * SPLIT_ABOVE_CHARS
    event = _delta("signature_delta", "signature", signature)
    assert smoothed([event]) == [event]
    assert smoothed_and_paced([event]) == ([event], [])
    assert smoothed_and_paced([event, event]) == ([event, event], [])


def test_smoothed_leaves_odd_deltas_alone() -> None:
    odd: list[StreamEvent] = [
        {"type": "content_block_delta", "index": 0, "delta": "text"},  # type: ignore[typeddict-item]
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": 5}},
    ]
    assert smoothed(odd) == odd


LONG = "word " * 20  # 100 characters: five pieces of at most 24


@pytest.mark.parametrize(
    ("events", "now_count", "later_count"),
    [
        pytest.param([], 0, 0, id="nothing"),
        pytest.param([_delta("text_delta", "text", "short")], 1, 0, id="small-delta"),
        pytest.param([_delta("text_delta", "text", LONG)], 1, 4, id="burst-last: spread"),
        pytest.param([_delta("thinking_delta", "thinking", LONG)], 1, 4, id="thinking-burst"),
        pytest.param(
            [_delta("text_delta", "text", LONG), {"type": "content_block_stop", "index": 0}],
            6,
            0,
            id="burst-then-more: all now",
        ),
        pytest.param(
            [_delta("text_delta", "text", LONG), _delta("text_delta", "text", LONG)],
            6,
            4,
            id="two-bursts: the last spread",
        ),
        pytest.param(
            [_delta("input_json_delta", "partial_json", '"' + "x" * 200 + '"')],
            1,
            0,
            id="tool-json-never",
        ),
    ],
)
def test_only_a_burst_ending_the_batch_is_spread(
    events: list[StreamEvent], now_count: int, later_count: int
) -> None:
    now, later = smoothed_and_paced(events)
    assert (len(now), len(later)) == (now_count, later_count)
    assert now + later == smoothed(events)  # the same pieces, in the same order


@given(st.integers(0, 10_000), st.floats(0.001, 1.0), st.floats(0.0001, 0.1))
def test_the_added_delay_of_any_piece_is_bounded(
    later_pieces: int, max_spread_s: float, step_s: float
) -> None:
    per_step, gap = spread_plan(later_pieces, max_spread_s=max_spread_s, step_s=step_s)
    if later_pieces == 0:
        assert (per_step, gap) == (0, 0.0)
        return
    steps = -(-later_pieces // per_step)
    assert per_step >= 1 and (steps - 1) * per_step < later_pieces <= steps * per_step
    assert 0 < gap <= step_s  # never more wake-ups than one a step
    assert gap * steps <= max_spread_s * (1 + 1e-9)  # the last piece's delay


@pytest.mark.parametrize(
    ("later", "plan"),
    [(1, (1, STEP_S)), (3, (1, STEP_S)), (6, (1, STEP_S)), (28, (5, STEP_S)), (600, (100, STEP_S))],
)
def test_a_burst_goes_in_at_most_six_steps_of_8_ms(later: int, plan: tuple[int, float]) -> None:
    assert spread_plan(later) == plan


@given(TEXTS)
def test_a_burst_of_any_text_is_spread_within_the_bound(text: str) -> None:
    now, later = smoothed_and_paced([_delta("text_delta", "text", text)])
    assert "".join(e["delta"]["text"] for e in now + later) == text
    per_step, gap = spread_plan(len(later))
    assert gap * -(-len(later) // max(per_step, 1)) <= MAX_SPREAD_S * (1 + 1e-9)


def test_a_delta_is_masked_before_it_is_cut() -> None:
    # A key cut across two pieces would no longer be seen whole on the way out.
    key = "Qx9fLmT2vR8kWp4nZc6hYb1sJd5gHa3eUo7i"
    event = _delta("text_delta", "text", f"{'.' * 20}{key}{'.' * 40}")

    def hide(text: str) -> str:
        return text.replace(key, "***")

    for now, later in (smoothed_and_paced([event], mask=hide), (smoothed([event], mask=hide), [])):
        pieces = [e["delta"]["text"] for e in now + later]
        assert len(pieces) > 1 and "".join(pieces) == f"{'.' * 20}***{'.' * 40}"
