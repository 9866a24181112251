"""Tests for app.core.thinking_display: the display a request asks for, and the
signature that carries omitted reasoning from one turn to the next."""

import base64
import zlib
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from app.core.thinking_display import (
    MAX_REASONING_BYTES,
    REASONING_SIGNATURE_PREFIX,
    block_reasoning,
    reasoning_from_signature,
    reasoning_signature,
    thinking_display,
)

# A real Anthropic signature's shape: opaque base64, no prefix of ours.
ANTHROPIC_SIGNATURE = "EqQBCkgIARABGAIiQL2u0fZqZ0tT0r3Y2pX8kQ+e7cYy5P1xV9bQ4nYt0Hh8R1mC0pW=="


def ours(payload: bytes) -> str:
    """A signature with our prefix around any bytes (already compressed or not)."""
    return REASONING_SIGNATURE_PREFIX + base64.b64encode(payload).decode()


@pytest.mark.parametrize(
    ("thinking", "expected"),
    [
        pytest.param({"type": "adaptive", "display": "omitted"}, "omitted", id="adaptive-omitted"),
        pytest.param(
            {"type": "enabled", "budget_tokens": 2048, "display": "omitted"},
            "omitted",
            id="enabled-omitted",
        ),
        pytest.param({"type": "adaptive", "display": "summarized"}, "summarized", id="summarized"),
        pytest.param({"type": "adaptive"}, "summarized", id="display-absent"),
        pytest.param({"type": "adaptive", "display": None}, "summarized", id="display-null"),
        pytest.param({"type": "adaptive", "display": "hidden"}, "summarized", id="unknown-value"),
        pytest.param({"type": "adaptive", "display": ["omitted"]}, "summarized", id="not-a-str"),
        pytest.param({"type": "disabled", "display": "omitted"}, "summarized", id="disabled"),
        pytest.param({"type": ["adaptive"], "display": "omitted"}, "summarized", id="type-list"),
        pytest.param({"display": "omitted"}, "summarized", id="no-type"),
        pytest.param(None, "summarized", id="thinking-absent"),
        pytest.param("omitted", "summarized", id="thinking-not-an-object"),
    ],
)
def test_thinking_display(thinking: Any, expected: str) -> None:
    assert thinking_display(thinking) == expected


def test_signature_is_ours_ascii_and_smaller_than_long_reasoning() -> None:
    reasoning = "Let me think about the build. " * 400
    signature = reasoning_signature(reasoning)
    assert signature.startswith(REASONING_SIGNATURE_PREFIX)
    assert signature.isascii()
    assert len(signature) < len(reasoning) // 10  # compressed: a long stream costs little
    assert reasoning_from_signature(signature) == reasoning


@given(st.text(st.characters(codec=None, exclude_categories=())))
@example("")
@example("\ud800 lone surrogate, \U0001f9d1\u200d\U0001f4bb, \u00e9, \x00")
def test_any_reasoning_round_trips(reasoning: str) -> None:
    assert reasoning_from_signature(reasoning_signature(reasoning)) == reasoning


BOMB = zlib.compress(b"\0" * (MAX_REASONING_BYTES + 1), 9)


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(None, id="none"),
        pytest.param(5, id="int"),
        pytest.param(reasoning_signature("x").encode(), id="bytes"),
        pytest.param("", id="empty"),
        pytest.param("nimbridge", id="summarized-signature"),
        pytest.param(ANTHROPIC_SIGNATURE, id="anthropic"),
        pytest.param(REASONING_SIGNATURE_PREFIX, id="prefix-only"),
        pytest.param(REASONING_SIGNATURE_PREFIX + "not base64!", id="bad-base64"),
        pytest.param(REASONING_SIGNATURE_PREFIX + "abc", id="bad-padding"),
        pytest.param(ours(b"plain bytes, not zlib"), id="not-zlib"),
        pytest.param(ours(zlib.compress(b"cut short" * 50)[:-6]), id="truncated"),
        pytest.param(ours(zlib.compress(b"x") + b"junk"), id="trailing-bytes"),
        pytest.param(ours(zlib.compress(b"\xff\xfe not utf-8")), id="not-utf8"),
        pytest.param(ours(BOMB), id="decompression-bomb"),
    ],
)
def test_signatures_not_ours_give_nothing(signature: Any) -> None:
    assert reasoning_from_signature(signature) is None


def test_the_bound_is_inclusive() -> None:
    at_bound = ours(zlib.compress(b"a" * MAX_REASONING_BYTES, 9))
    assert reasoning_from_signature(at_bound) == "a" * MAX_REASONING_BYTES


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        pytest.param(
            {"type": "thinking", "thinking": "shown", "signature": reasoning_signature("packed")},
            "shown",
            id="text-wins",
        ),
        pytest.param(
            {"type": "thinking", "thinking": "", "signature": reasoning_signature("packed")},
            "packed",
            id="omitted-from-signature",
        ),
        pytest.param(
            {"type": "thinking", "signature": reasoning_signature("packed")},
            "packed",
            id="no-thinking-field",
        ),
        pytest.param(
            {"type": "thinking", "thinking": "", "signature": ANTHROPIC_SIGNATURE},
            "",
            id="anthropic-signature",
        ),
        pytest.param({"type": "thinking", "thinking": 7, "signature": None}, "", id="garbage"),
    ],
)
def test_block_reasoning(block: dict[str, Any], expected: str) -> None:
    assert block_reasoning(block) == expected
