"""Split a long text or thinking delta into small ones, so a burst reads as a stream.

Text here is already decoded `str` (the SSE decoder and `json.loads` ran before),
so a cut can never fall inside a UTF-8 byte sequence nor inside a JSON escape:
those exist only in the encoded form, which `encode_event` builds afresh per piece.

What remains is not to cut a user-perceived character in two. The grapheme
rule here is a simplified one (full UAX #29 needs tables the stdlib lacks):
no cut before a combining mark (any `Mn`/`Mc`/`Me` or non-zero combining class),
a variation selector (U+FE00-FE0F, U+E0100-E01EF), an emoji skin-tone modifier
(U+1F3FB-1F3FF), a tag character (U+E0020-E007F, subdivision flags) or a ZWJ
(U+200D); no cut after a ZWJ; none inside a regional-indicator pair (a flag),
a CR LF, or a surrogate pair (valid JSON gives no lone surrogates, but a str
could hold them). Hangul jamo sequences and Indic conjuncts are not kept whole:
cutting them costs a momentary odd glyph, never a wrong final text.

Cutting upstream text is where a secret in it could be split past recognising (the
server masks every byte on its way out, but only what it still sees whole): a delta's
text passes `mask` before it is cut.

Timing is the writer's (`app.server.messages.stream_relay`); this module says what to
spread (`smoothed_and_paced`) and in which steps (`spread_plan`).
"""

import re
import unicodedata
from collections.abc import Callable
from typing import Any

from app.core.anthropic_types import StreamEvent

MAX_PIECE_CHARS = 24
SPLIT_ABOVE_CHARS = 48
# A burst's pieces are spread over at most MAX_SPREAD_S, in steps STEP_S apart (half a
# 60 Hz frame): long enough for a terminal to draw it in steps, short enough that no
# character is noticeably late. The stream's end is never late: the writer sends
# whatever is still pending the moment the upstream sends anything else.
MAX_SPREAD_S = 0.05
STEP_S = 0.008
_SPLIT_FIELD_BY_DELTA_TYPE: dict[Any, str] = {"text_delta": "text", "thinking_delta": "thinking"}
SPLIT_DELTA_TYPES = frozenset(_SPLIT_FIELD_BY_DELTA_TYPE)  # never input_json / signature

_ZWJ = "\u200d"
_REGIONAL_RUN = re.compile("[\U0001f1e6-\U0001f1ff]{2,}")  # pairs of them are flags


def _extends_previous(char: str) -> bool:
    """Whether `char` belongs to the cluster before it (no cut in front of it)."""
    code = ord(char)
    if code < 0x300:  # below the first combining mark: the common case, kept cheap
        return False
    return (
        char == _ZWJ
        or 0xFE00 <= code <= 0xFE0F
        or 0xE0100 <= code <= 0xE01EF
        or 0x1F3FB <= code <= 0x1F3FF
        or 0xE0020 <= code <= 0xE007F
        or 0xDC00 <= code <= 0xDFFF  # a low surrogate follows its high half
        or unicodedata.combining(char) != 0
        or unicodedata.category(char) in ("Mn", "Mc", "Me")
    )


def _flag_halves(text: str) -> set[int]:
    """Indices of each flag's second regional indicator: no cut in front of them."""
    halves: set[int] = set()
    for run in _REGIONAL_RUN.finditer(text):
        halves.update(range(run.start() + 1, run.end(), 2))
    return halves


def _can_cut(text: str, i: int, flag_halves: set[int]) -> bool:
    before, char = text[i - 1], text[i]
    return not (
        _extends_previous(char)
        or before == _ZWJ
        or (before == "\r" and char == "\n")
        or i in flag_halves
    )


def cut_positions(text: str) -> list[int]:
    """Every index i (0 < i < len) where text[:i] / text[i:] leaves clusters whole."""
    halves = _flag_halves(text)
    return [i for i in range(1, len(text)) if _can_cut(text, i, halves)]


def _preferred(text: str, cut: int) -> bool:
    """A cut right after whitespace or punctuation keeps words whole."""
    before = text[cut - 1]
    if before.isalnum():  # letters and digits: most cuts, decided without a table lookup
        return False
    return before.isspace() or unicodedata.category(before).startswith("P")


def split_text(
    text: str, *, max_piece: int = MAX_PIECE_CHARS, threshold: int = SPLIT_ABOVE_CHARS
) -> list[str]:
    """Pieces of `text` that concatenate to it exactly.

    Only a text longer than `threshold` is split. Each piece has at most
    `max_piece` characters, cut after whitespace or punctuation when one lies
    in reach, inside a word otherwise; a single cluster longer than `max_piece`
    (a long ZWJ or combining sequence) stays one piece.
    """
    if len(text) <= threshold:
        return [text]
    halves = _flag_halves(text)
    pieces: list[str] = []
    start = 0
    while len(text) - start > max_piece:
        end = _piece_end(text, start, max_piece, halves)
        pieces.append(text[start:end])
        start = end
    if start < len(text):  # not when the last piece was one long cluster
        pieces.append(text[start:])
    return pieces


def _piece_end(text: str, start: int, max_piece: int, flag_halves: set[int]) -> int:
    """The last cut at most `max_piece` after `start`, after whitespace or punctuation
    if one is in the window's second half; past the window only when one cluster fills it.

    It looks back from the window's end, so it reads a few characters per piece,
    not the whole text: the per-chunk cost stays small."""
    plain = 0
    for i in range(start + max_piece, start, -1):
        if plain and i <= start + max_piece // 2:
            return plain  # no piece shorter than half the window just to end on a space
        if _can_cut(text, i, flag_halves):
            if _preferred(text, i):
                return i
            plain = plain or i
    if plain:
        return plain
    end = start + max_piece + 1
    while end < len(text) and not _can_cut(text, end, flag_halves):
        end += 1
    return end


def _pieces(
    event: StreamEvent, max_piece: int, threshold: int, mask: Callable[[str], str]
) -> list[StreamEvent] | None:
    """The pieces a long text/thinking delta becomes; None for any other event."""
    if event["type"] != "content_block_delta":
        return None
    delta = event.get("delta")
    if not isinstance(delta, dict):
        return None
    field = _SPLIT_FIELD_BY_DELTA_TYPE.get(delta.get("type"))
    if field is None:
        return None
    value = delta.get(field)
    if not isinstance(value, str) or len(value) <= threshold:
        return None
    return [
        {**event, "delta": {**delta, field: piece}}
        for piece in split_text(mask(value), max_piece=max_piece, threshold=threshold)
    ]


def smoothed(
    events: list[StreamEvent],
    *,
    max_piece: int = MAX_PIECE_CHARS,
    threshold: int = SPLIT_ABOVE_CHARS,
    mask: Callable[[str], str] = str,
) -> list[StreamEvent]:
    """`events` with each long text/thinking delta replaced by several small ones
    (their text masked by `mask` before the cut)."""
    out: list[StreamEvent] = []
    for event in events:
        pieces = _pieces(event, max_piece, threshold, mask)
        if pieces is None:  # nearly every event: no list of one made for it
            out.append(event)
        else:
            out.extend(pieces)
    return out


def smoothed_and_paced(
    events: list[StreamEvent],
    *,
    max_piece: int = MAX_PIECE_CHARS,
    threshold: int = SPLIT_ABOVE_CHARS,
    mask: Callable[[str], str] = str,
) -> tuple[list[StreamEvent], list[StreamEvent]]:
    """(now, later): `events` smoothed, with the pieces worth spreading over time apart.

    Only a burst that ends the batch is spread: its first piece goes now, the rest
    `later`. A burst with events behind it in the same upstream read goes whole
    now, since spreading it would hold back what follows."""
    if not events:
        return [], []
    now = smoothed(events[:-1], max_piece=max_piece, threshold=threshold, mask=mask)
    tail = _pieces(events[-1], max_piece, threshold, mask)  # each event looked at once
    if tail is None:
        return [*now, events[-1]], []
    return now + tail[:1], tail[1:]


def spread_plan(
    later_pieces: int, *, max_spread_s: float = MAX_SPREAD_S, step_s: float = STEP_S
) -> tuple[int, float]:
    """(pieces per step, seconds between steps) for spreading `later_pieces`.

    At most one timed write per `step_s`: each wake-up of an idle loop costs tens
    of microseconds of CPU, and a terminal draws at most once a frame anyway. The
    last step goes out at most `max_spread_s` after the first piece, so the added
    delay of any piece is bounded."""
    if later_pieces <= 0:
        return 0, 0.0
    steps = min(later_pieces, max(1, int(max_spread_s / step_s)))
    per_step = -(-later_pieces // steps)  # ceiling division
    steps = -(-later_pieces // per_step)  # what that many per step really takes
    return per_step, min(step_s, max_spread_s / steps)
