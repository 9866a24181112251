"""The one Anthropic stream grammar table: its shape, and that the translator's `_emit`, the
server's `StreamGuard` (both walk the table) and the tests' own reading
(`tests/anthropic_grammar.py`, written apart from it) draw the same line on every short stream."""

from collections.abc import Callable, Sequence
from typing import get_args

from app.core.anthropic_grammar import (
    DELTA_FIELD_BY_DELTA_TYPE,
    DELTA_TYPES_BY_BLOCK_TYPE,
    EVENT_TYPES,
    TERMINAL_STATES,
    TRANSITIONS_BY_STATE,
    StreamState,
)
from app.core.anthropic_stream import BlockKind, StreamTranslator
from app.core.anthropic_stream_guard import StreamGrammarError, StreamGuard
from app.core.anthropic_types import StreamEvent
from app.core.errors import TranslatorStateError
from tests.anthropic_grammar import assert_anthropic_grammar

# One letter per event, so that a stream reads as a word: S message_start, B content_block_start,
# d content_block_delta, E content_block_stop, M message_delta, Z message_stop, X error, p ping.
LETTERS = "SBdEMZXp"
# Deep enough for every state, every transition and a second block.
MAX_LENGTH = 8


def events_of(word: str) -> list[StreamEvent]:
    """Well-formed events in the order `word` gives (block indexes count the B's so far)."""
    events: list[StreamEvent] = []
    blocks = 0
    for letter in word:
        index = max(blocks - 1, 0)
        if letter == "S":
            events.append(
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_1",
                        "type": "message",
                        "role": "assistant",
                        "model": "m",
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": 1, "output_tokens": 0},
                    },
                }
            )
        elif letter == "B":
            block = {"type": "text", "text": ""}
            events.append({"type": "content_block_start", "index": blocks, "content_block": block})
            blocks += 1
        elif letter == "d":
            delta = {"type": "text_delta", "text": "hi"}
            events.append({"type": "content_block_delta", "index": index, "delta": delta})
        elif letter == "E":
            events.append({"type": "content_block_stop", "index": index})
        elif letter == "M":
            events.append(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 1},
                }
            )
        elif letter == "Z":
            events.append({"type": "message_stop"})
        elif letter == "X":
            events.append({"type": "error", "error": {"type": "api_error", "message": "boom"}})
        else:
            events.append({"type": "ping"})
    return events


# A verdict: the position of the first event refused; len(events) when all pass but the
# stream has not ended; None for a whole stream.
Verdict = int | None


def guard_verdict(events: Sequence[StreamEvent]) -> Verdict:
    guard = StreamGuard()
    for event in events:
        try:
            guard.check(event)
        except StreamGrammarError as exc:
            return exc.position
    return None if guard.ended else len(events)


def translator_verdict(events: Sequence[StreamEvent]) -> Verdict:
    translator = StreamTranslator(model="m", message_id="msg_1")
    out: list[StreamEvent] = []
    for position, event in enumerate(events):
        try:
            translator._emit(out, event)
        except TranslatorStateError:
            return position
    return None if translator.state in TERMINAL_STATES else len(events)


def reading_verdict(events: Sequence[StreamEvent]) -> Verdict:
    try:
        assert_anthropic_grammar(events)
    except AssertionError as exc:
        message = str(exc)
        if message.startswith("event "):
            return int(message.split(":")[0].removeprefix("event "))
        assert message.startswith("stream over without message_stop or error"), message
        return len(events)
    return None


VERDICTS: dict[str, Callable[[Sequence[StreamEvent]], Verdict]] = {
    "translator": translator_verdict,
    "guard": guard_verdict,
    "tests' reading": reading_verdict,
}


def test_translator_guard_and_the_tests_reading_agree_on_every_short_stream() -> None:
    """Every word up to MAX_LENGTH letters whose prefix all three accept (a refused prefix
    ends the stream: its extensions say nothing more)."""
    words = [""]
    whole_streams: list[str] = []
    checked = 0
    while words:
        prefix = words.pop()
        for letter in LETTERS:
            word = prefix + letter
            events = events_of(word)
            verdicts = {name: verdict(events) for name, verdict in VERDICTS.items()}
            checked += 1
            assert len(set(verdicts.values())) == 1, f"{word}: {verdicts}"
            verdict = verdicts["guard"]
            if verdict is None:
                whole_streams.append(word)
            elif verdict == len(word) and len(word) < MAX_LENGTH:
                words.append(word)  # a good prefix: go on
    assert checked > 1000
    for word in ("X", "ppX", "SMZ", "SBEMZ", "SBdEBEMZ", "SX", "SBdEX", "pSBpdEMZ"):
        assert word in whole_streams
    for word in ("SBX", "SMX", "SMMZ", "SZ", "SBdMZ", "SS", "B", "XS", "SMZp"):
        assert word not in whole_streams


def test_every_state_has_a_row_and_only_the_ends_are_empty() -> None:
    assert set(TRANSITIONS_BY_STATE) == set(StreamState)
    for state, row in TRANSITIONS_BY_STATE.items():
        assert (not row) == (state in TERMINAL_STATES)
        if row:
            assert row["ping"] is state  # ping anywhere before the end, and it changes nothing
    assert {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "error",
        "ping",
    } == EVENT_TYPES


def test_every_state_is_reachable_from_idle() -> None:
    reached, todo = {StreamState.IDLE}, [StreamState.IDLE]
    while todo:
        for after in TRANSITIONS_BY_STATE[todo.pop()].values():
            if after not in reached:
                reached.add(after)
                todo.append(after)
    assert reached == set(StreamState)


def test_every_block_the_translator_opens_has_its_deltas_and_every_delta_a_field() -> None:
    assert set(get_args(BlockKind)) <= set(DELTA_TYPES_BY_BLOCK_TYPE)
    delta_types = set().union(*DELTA_TYPES_BY_BLOCK_TYPE.values())
    assert delta_types == set(DELTA_FIELD_BY_DELTA_TYPE)
