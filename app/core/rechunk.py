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
"""

import unicodedata
from bisect import bisect_right

from app.core.anthropic_types import StreamEvent

MAX_PIECE_CHARS = 24
SPLIT_ABOVE_CHARS = 48
SPLIT_DELTA_TYPES = frozenset({"text_delta", "thinking_delta"})  # never input_json / signature

_ZWJ = "\u200d"


def _extends_previous(char: str) -> bool:
    """Whether `char` belongs to the cluster before it (no cut in front of it)."""
    code = ord(char)
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


def _is_regional_indicator(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def cut_positions(text: str) -> list[int]:
    """Every index i (0 < i < len) where text[:i] / text[i:] leaves clusters whole."""
    cuts: list[int] = []
    regional_run = 0  # regional indicators in a row so far: pairs form flags
    for i in range(1, len(text)):
        before, char = text[i - 1], text[i]
        regional_run = regional_run + 1 if _is_regional_indicator(before) else 0
        if _extends_previous(char) or before == _ZWJ:
            continue
        if (before, char) == ("\r", "\n"):
            continue
        if regional_run % 2 == 1 and _is_regional_indicator(char):
            continue  # the second half of a flag
        cuts.append(i)
    return cuts


def _preferred(text: str, cut: int) -> bool:
    """A cut right after whitespace or punctuation keeps words whole."""
    before = text[cut - 1]
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
    cuts = [*cut_positions(text), len(text)]
    pieces: list[str] = []
    start = 0
    while len(text) - start > max_piece:
        plain = preferred = 0
        j = bisect_right(cuts, start)  # the first cut after `start`; len(text) at worst
        for cut in cuts[j : bisect_right(cuts, start + max_piece)]:
            plain = cut
            if _preferred(text, cut):
                preferred = cut
        end = preferred or plain or cuts[j]  # cuts[j]: one cluster longer than max_piece
        pieces.append(text[start:end])
        start = end
    if start < len(text):  # not when the last piece was one long cluster
        pieces.append(text[start:])
    return pieces


def smoothed(
    events: list[StreamEvent],
    *,
    max_piece: int = MAX_PIECE_CHARS,
    threshold: int = SPLIT_ABOVE_CHARS,
) -> list[StreamEvent]:
    """`events` with each long text/thinking delta replaced by several small ones."""
    out: list[StreamEvent] = []
    for event in events:
        delta = event.get("delta") if event["type"] == "content_block_delta" else None
        kind = delta.get("type") if isinstance(delta, dict) else None
        field = "thinking" if kind == "thinking_delta" else "text"
        value = delta.get(field) if isinstance(delta, dict) else None
        if kind not in SPLIT_DELTA_TYPES or not isinstance(value, str) or len(value) <= threshold:
            out.append(event)
            continue
        for piece in split_text(value, max_piece=max_piece, threshold=threshold):
            out.append({**event, "delta": {**delta, field: piece}})  # type: ignore[dict-item]
    return out
