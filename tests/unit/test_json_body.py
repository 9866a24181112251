"""app.server.json_body: orjson's speed, the standard library's acceptance."""

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from app.server.json_body import (
    MAX_JSON_DEPTH,
    deeper_than,
    encode_json,
    nested_too_deep,
    parse_json,
    parse_json_text,
)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "b": [true, null, 2.5], "c": "é中🙂"}',
        '{"big": 123456789012345678901234567890}',  # beyond 64 bits: orjson refuses
        '{"half": "\\ud800"}',  # a lone surrogate escape: orjson refuses
        '{"deep": ' + "[" * 500 + "]" * 500 + "}",
    ],
    ids=["plain", "huge-int", "lone-surrogate", "deep"],
)
def test_parse_reads_what_the_standard_library_reads(text: str) -> None:
    assert parse_json(text.encode()) == json.loads(text)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"t": NaN}', "NaN is not a JSON value"),
        ('{"t": -Infinity}', "-Infinity is not a JSON value"),
        ('{"a": 1,}', "line 1 column 9"),  # the standard library's position, for the 400
    ],
)
def test_parse_refuses_what_is_not_json_in_words(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_json(text.encode())


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2.5, None, True], "text": "é中🙂"},
        {"big": 123456789012345678901234567890},
        {"half": "\ud800"},
    ],
    ids=["plain", "huge-int", "lone-surrogate"],
)
def test_encode_round_trips(value: object) -> None:
    encoded = encode_json(value)
    assert json.loads(encoded) == value
    assert b" " not in encoded.replace("é中🙂".encode(), b"")  # compact


@pytest.mark.parametrize(
    ("value", "limit", "path"),
    [
        ({"a": [1, {"b": "x"}]}, 3, None),
        ({"a": [1, {"b": []}]}, 3, "a.1.b"),
        ([[[]]], 2, "0.0"),
        ("scalar", 0, None),
        ({}, 0, "the top level"),
    ],
)
def test_deeper_than_names_the_first_too_deep_place(
    value: object, limit: int, path: str | None
) -> None:
    assert deeper_than(value, limit) == path


def test_deeper_than_does_not_recurse() -> None:
    deep: object = []
    for _ in range(100_000):  # far past Python's recursion limit
        deep = [deep]
    assert deeper_than(deep, MAX_JSON_DEPTH) == ".".join(["0"] * MAX_JSON_DEPTH)


# ------------------------------------------------------------------ upstream chunks


def typed(value: Any) -> Any:
    """`value` with each number's type kept in the comparison (1 == 1.0 otherwise)."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    return (type(value).__name__, value)


def same_as_json(text: str) -> None:
    try:
        expected = typed(json.loads(text))
    except (ValueError, RecursionError) as exc:
        with pytest.raises(type(exc)):
            parse_json_text(text)
        return
    assert typed(parse_json_text(text)) == expected


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too: orjson would read those as floats
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=12,
)


@given(JSON_VALUES)
@example(2**64 + 1)
@example(-(2**63) - 1)
@example(10**19)
@example([[[[1]]]])
def test_a_chunk_reads_what_the_standard_library_reads(value: Any) -> None:
    same_as_json(json.dumps(value))
    same_as_json(json.dumps(value, ensure_ascii=False))


@pytest.mark.parametrize(
    "text",
    [
        '{"created": -9223372036854775809}',  # below 64 bits: orjson reads a float
        '{"a": 1.0000000000000000000001e3}',
        '{"a": NaN, "b": -Infinity}',  # json reads them; orjson refuses
        '{"a": 1e400}',
        '{"half": "\\ud800"}',
        '{"a": 1, "a": 2}',
        "[" * 600 + "]" * 600,  # json decides: its limit depends on the stack it starts from
        '{"a": [1, 2',
        "",
        " ",
        "[DONE]",
    ],
)
def test_what_orjson_would_read_differently_or_refuse_is_the_standard_librarys(
    text: str,
) -> None:
    same_as_json(text)


@pytest.mark.parametrize(
    ("raw", "found"),
    [
        ('{"a": ' + "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1) + "}", None),
        ('{"a": ' + "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH + "}", "a" + ".0" * 63),
        # Brackets in strings count too: a walk, which finds nothing.
        ('{"a": "' + "[" * 100 + '"}', None),
    ],
    ids=["as-deep-as-allowed", "one-level-deeper", "brackets-in-a-string"],
)
def test_nested_too_deep_walks_only_what_could_be(raw: str, found: str | None) -> None:
    value = json.loads(raw)
    assert nested_too_deep(raw.encode(), value) == found == deeper_than(value, MAX_JSON_DEPTH)


def test_large_bodies_read_as_the_standard_library_reads_them() -> None:
    """Bodies (bytes) go to orjson at any size: Claude Code's request, and one whose
    19-digit number sends it to json (orjson would make it a float)."""
    fixture = Path(__file__).parents[1] / "fixtures" / "requests" / "claude_code_request.json"
    raw = fixture.read_bytes()
    assert len(raw) > 50_000
    assert typed(parse_json(raw)) == typed(json.loads(raw))
    big = json.dumps({"id": 12345678901234567890123, "pad": "x" * 5000}).encode()
    assert parse_json(big)["id"] == 12345678901234567890123
    assert parse_json_text(big)["id"] == 12345678901234567890123
