"""app.core.tool_schema: no boolean sub-schema reaches NIM; values stay untouched."""

import copy
from typing import Any

import pytest

from app.core.tool_schema import sanitize_tool_schema
from tests.unit.core.test_request_map import (
    CC,
    boolean_subschemas,
)

# ------------------------------------------------------------------ tool schemas


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        pytest.param(None, {"type": "object", "properties": {}}, id="missing"),
        pytest.param({}, {"type": "object", "properties": {}}, id="empty"),
        pytest.param(True, {"type": "object", "properties": {}}, id="root-true"),
        pytest.param(
            {"properties": {"a": {"type": "string"}}},
            {"type": "object", "properties": {"a": {"type": "string"}}},
            id="type-added",
        ),
        pytest.param(
            {"type": "object", "required": []},
            {"type": "object", "required": [], "properties": {}},
            id="properties-added",
        ),
        pytest.param({"type": "string"}, {"type": "string"}, id="non-object-root-kept"),
        pytest.param(
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "properties": {},
                "additionalProperties": False,
                "unevaluatedProperties": True,
                "cache_control": CC,
            },
            {"type": "object", "properties": {}},
            id="schema-and-boolean-additional-properties-dropped",
        ),
        pytest.param(
            {
                "type": "object",
                "properties": {
                    "list": {"type": "array", "items": True},
                    "none": {"type": "array", "items": False},
                    "tuple": {
                        "type": "array",
                        "prefixItems": [True, {"type": "string"}],
                        "items": [False],
                    },
                    "map": {
                        "type": "object",
                        "additionalProperties": {"type": "object", "additionalProperties": False},
                    },
                    "default": {
                        "type": "boolean",
                        "default": False,
                        "const": True,
                        "enum": [True, False],
                    },
                    "additionalProperties": True,
                },
            },
            {
                "type": "object",
                "properties": {
                    "list": {"type": "array", "items": {}},
                    "none": {"type": "array", "items": {"not": {}}},
                    "tuple": {
                        "type": "array",
                        "prefixItems": [{}, {"type": "string"}],
                        "items": [{"not": {}}],
                    },
                    "map": {"type": "object", "additionalProperties": {"type": "object"}},
                    "default": {
                        "type": "boolean",
                        "default": False,
                        "const": True,
                        "enum": [True, False],
                    },
                    "additionalProperties": {},
                },
            },
            id="boolean-sub-schemas",
        ),
        pytest.param(
            {
                "type": "object",
                "properties": {
                    "a": {"anyOf": [True, {"type": "null"}], "oneOf": [False], "allOf": [True]}
                },
                "$defs": {"T": True, "F": False},
                "definitions": {"D": {"not": True}},
                "patternProperties": {"^x": False},
                "dependentSchemas": {"a": True},
                "dependencies": {"a": ["b"], "c": False},
                "if": True,
                "then": False,
                "else": {"properties": {"z": True}},
                "contains": True,
                "propertyNames": {"pattern": "^[a-z]+$"},
                "items": 3,
            },
            {
                "type": "object",
                "properties": {
                    "a": {"anyOf": [{}, {"type": "null"}], "oneOf": [{"not": {}}], "allOf": [{}]}
                },
                "$defs": {"T": {}, "F": {"not": {}}},
                "definitions": {"D": {"not": {}}},
                "patternProperties": {"^x": {"not": {}}},
                "dependentSchemas": {"a": {}},
                "dependencies": {"a": ["b"], "c": {"not": {}}},
                "if": {},
                "then": {"not": {}},
                "else": {"properties": {"z": {}}},
                "contains": {},
                "propertyNames": {"pattern": "^[a-z]+$"},
                "items": 3,
            },
            id="every-sub-schema-keyword",
        ),
        pytest.param(
            {"type": "object", "properties": {"a": {"anyOf": "bad"}}, "$defs": ["bad"]},
            {"type": "object", "properties": {"a": {"anyOf": "bad"}}, "$defs": ["bad"]},
            id="malformed-kept",
        ),
    ],
)
def test_sanitize_tool_schema(schema: Any, expected: dict[str, Any]) -> None:
    before = copy.deepcopy(schema)
    result = sanitize_tool_schema(schema)
    assert result == expected
    assert list(result)[: len(expected)] == list(expected)
    assert schema == before  # never mutated
    assert boolean_subschemas(result) == []
