"""Tool JSON schemas made acceptable to NIM.

NIM rejects boolean sub-schemas (`"items": true`, boolean `additionalProperties`
in some positions: PROTOCOL.md, quirks). Only schema positions are rewritten,
so values such as `default: false`, `const` and `enum` stay as they are; the
input is never mutated.
"""

from collections.abc import Mapping
from typing import Any

# JSON-schema keywords whose value is a schema, a list of schemas, or a map of them.
_SCHEMA_KEYWORDS = frozenset(
    {
        "items",
        "additionalItems",
        "unevaluatedItems",
        "contains",
        "not",
        "if",
        "then",
        "else",
        "propertyNames",
        "additionalProperties",
        "unevaluatedProperties",
    }
)
_SCHEMA_LIST_KEYWORDS = frozenset({"prefixItems", "anyOf", "oneOf", "allOf"})
_SCHEMA_MAP_KEYWORDS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies"}
)
# NIM rejects a boolean here (PROTOCOL.md, quirks). Dropping it only stops the
# schema from policing extra keys, which tool-call parsers don't enforce anyway.
_DROPPED_WHEN_BOOLEAN = frozenset({"additionalProperties", "unevaluatedProperties"})
_DROPPED_SCHEMA_KEYS = frozenset({"$schema", "cache_control"})


def sanitize_tool_schema(schema: object) -> dict[str, Any]:
    """A copy of a tool's JSON schema that NIM accepts; the root is always an object schema.

    Boolean sub-schemas become `{}` (true) or `{"not": {}}` (false), boolean
    `additionalProperties` is dropped, `$schema` and `cache_control` go. Schema
    objects are copied; leaf values (`enum`, `default`...) are shared, unmutated.
    """
    if not isinstance(schema, dict) or not schema:
        return {"type": "object", "properties": {}}
    root = _sanitize_node(schema)
    if "type" not in root:
        root = {"type": "object", **root}
    if root["type"] == "object" and "properties" not in root:
        root["properties"] = {}
    return root


def _sanitize_subschema(node: object) -> Any:
    if node is True:
        return {}
    if node is False:
        return {"not": {}}
    if isinstance(node, dict):
        return _sanitize_node(node)
    return node  # malformed: the upstream will say so better than we can guess


def _sanitize_node(node: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_SCHEMA_KEYS or (
            key in _DROPPED_WHEN_BOOLEAN and isinstance(value, bool)
        ):
            continue
        if key in _SCHEMA_KEYWORDS:
            # `items` may also be a draft-4 tuple list.
            if isinstance(value, list):
                out[key] = [_sanitize_subschema(item) for item in value]
            else:
                out[key] = _sanitize_subschema(value)
        elif key in _SCHEMA_LIST_KEYWORDS and isinstance(value, list):
            out[key] = [_sanitize_subschema(item) for item in value]
        elif key in _SCHEMA_MAP_KEYWORDS and isinstance(value, dict):
            # Keys here are property names, never keywords; draft-7 `dependencies`
            # may map to a list of names, kept as is.
            out[key] = {
                name: sub if isinstance(sub, list) else _sanitize_subschema(sub)
                for name, sub in value.items()
            }
        else:
            out[key] = value
    return out
