"""Split `<think>...</think>` reasoning out of streamed `content` text.

R1-style models (and templates on NIM, vLLM, Together) put their reasoning
inline: the content opens with `<think>` and closes it with `</think>`; the
tags can arrive split at any character across chunks.

Invariants:
- Split-proof: any split of the same text into feeds (then `close()`) gives
  the same segments once adjacent segments of one kind are joined.
- `<think>` counts only at the very start of the content (after optional
  whitespace, which is dropped with it). Anything else opening the content
  makes all of it text at once; nothing is held back after that.
- Inside thinking, only the longest tail that could still start `</think>`
  is held back; everything after `</think>` is text.
- Newlines right after either tag are dropped (templates put one there).
- Segments are never empty.
"""

import enum
from dataclasses import dataclass
from typing import Literal

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"

SegmentKind = Literal["thinking", "text"]


@dataclass(frozen=True, slots=True)
class Segment:
    kind: SegmentKind
    text: str


class _Phase(enum.Enum):
    OPENING = "opening"  # no decision yet: the content may still open with <think>
    THINKING = "thinking"
    TEXT = "text"


class ThinkTagSplitter:
    """Streamed content in, thinking and text segments out, with no I/O.

    `start_in_thinking` is for models whose chat template already opened
    `<think>`: they only ever send `</think>` (an explicit `<think>` at the
    start is still accepted and dropped).
    """

    def __init__(self, *, start_in_thinking: bool = False) -> None:
        self._phase = _Phase.OPENING
        self._start_in_thinking = start_in_thinking
        self._held = ""  # text not yet decided: a possible opening, or a tail of "</think>"
        self._strip_newlines = False

    @property
    def passes_text(self) -> bool:
        """Whether every later `feed` gives its text back whole as one text segment (and
        `close` nothing): the opening is decided and no newline waits to be dropped.
        Once true it stays true."""
        return self._phase is _Phase.TEXT and not self._strip_newlines

    def feed(self, text: str) -> list[Segment]:
        segments: list[Segment] = []
        if not text:
            return segments
        if self._phase is _Phase.OPENING:
            self._held += text
            head = self._held.lstrip()
            if head.startswith(OPEN_TAG):
                text = head[len(OPEN_TAG) :]
                self._enter(_Phase.THINKING)
            elif not head or OPEN_TAG.startswith(head):
                return segments  # whitespace, or a prefix of "<think>": wait for more
            elif self._start_in_thinking:
                text = head
                self._enter(_Phase.THINKING)
            else:
                text = self._held
                self._held = ""
                self._phase = _Phase.TEXT
        if self._strip_newlines:
            text = text.lstrip("\r\n")
            if not text:
                return segments
            self._strip_newlines = False
        if self._phase is _Phase.THINKING:
            text = self._held + text
            end = text.find(CLOSE_TAG)
            if end < 0:
                keep = _tail_matching_prefix(text, CLOSE_TAG)
                self._held = text[len(text) - keep :] if keep else ""
                _append(segments, "thinking", text[: len(text) - keep])
                return segments
            _append(segments, "thinking", text[:end])
            self._enter(_Phase.TEXT)
            text = text[end + len(CLOSE_TAG) :].lstrip("\r\n")
            if not text:
                return segments
            self._strip_newlines = False
        _append(segments, "text", text)
        return segments

    def close(self) -> list[Segment]:
        """End of content: release whatever was held back."""
        segments: list[Segment] = []
        held, self._held = self._held, ""
        if self._phase is _Phase.THINKING:
            _append(segments, "thinking", held)
        elif self._phase is _Phase.OPENING:
            if self._start_in_thinking:
                _append(segments, "thinking", held.lstrip())
            else:
                _append(segments, "text", held)
        self._phase = _Phase.TEXT
        return segments

    def _enter(self, phase: _Phase) -> None:
        self._phase = phase
        self._held = ""
        self._strip_newlines = True


def _append(segments: list[Segment], kind: SegmentKind, text: str) -> None:
    if text:
        segments.append(Segment(kind, text))


def _tail_matching_prefix(text: str, tag: str) -> int:
    """Length of the longest tail of `text` that is a proper prefix of `tag`."""
    start = text.find(tag[0], max(0, len(text) - len(tag) + 1))
    while start >= 0:
        if tag.startswith(text[start:]):
            return len(text) - start
        start = text.find(tag[0], start + 1)
    return 0
