"""app.server.json_body: orjson's speed, the standard library's acceptance."""

import json

import pytest

from app.server.json_body import MAX_JSON_DEPTH, deeper_than, encode_json, parse_json


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
