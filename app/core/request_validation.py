"""Validate an Anthropic Messages request before anything else reads it.

Rule: what passes here has every field the mappers index without checking
(`model`, `max_tokens`, `messages[].role`, block `type`s and their required
fields); what fails names the field the way Anthropic's API does
(`messages.1.content: ...`). Unknown fields and block types pass: they are
ignored or dropped later, never a 4xx. So are unknown values where a newer
client may send more than we know (`thinking.display`: anything but "omitted"
means summarized, `app/core/thinking_display.py`).
"""

from collections.abc import Callable, Mapping
from typing import Any, cast

from app.core.anthropic_types import MessagesRequest
from app.core.errors import ClientRequestError

_ROLES = ("user", "assistant", "system")


def _fail(path: str, message: str) -> ClientRequestError:
    return ClientRequestError(f"{path}: {message}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_str(obj: Mapping[str, Any], key: str, path: str) -> None:
    if key not in obj:
        raise _fail(f"{path}.{key}" if path else key, "Field required")
    if not isinstance(obj[key], str):
        raise _fail(f"{path}.{key}" if path else key, "Input should be a valid string")


def _check_block(block: object, path: str) -> None:
    """A content block: an object with a string `type`; known types also their fields."""
    if not isinstance(block, dict):
        raise _fail(path, "Input should be a valid dictionary")
    _check_str(block, "type", path)
    kind = block["type"]
    if kind == "text":
        _check_str(block, "text", path)
    elif kind in ("image", "document"):
        source = block.get("source")
        if not isinstance(source, dict):
            raise _fail(f"{path}.source", "Input should be a valid dictionary")
        _check_str(source, "type", f"{path}.source")
        required = {"base64": ("media_type", "data"), "url": ("url",), "text": ("data",)}
        for key in required.get(source["type"], ()):
            _check_str(source, key, f"{path}.source")
        if source["type"] == "content":
            _check_content(source.get("content"), f"{path}.source.content")
    elif kind == "tool_use":
        _check_str(block, "id", path)
        _check_str(block, "name", path)
        if not isinstance(block.get("input"), dict):
            raise _fail(f"{path}.input", "Input should be a valid dictionary")
    elif kind == "tool_result":
        _check_str(block, "tool_use_id", path)
        if block.get("content") is not None:
            _check_content(block["content"], f"{path}.content")


def _check_content(content: object, path: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _fail(path, "Input should be a valid string or list of content blocks")
    for index, block in enumerate(content):
        if type(block) is dict and block.get("type") == "text" and type(block.get("text")) is str:
            continue  # the usual block, whole: no path built for it
        _check_block(block, f"{path}.{index}")


def _is_bool(value: object) -> bool:
    return isinstance(value, bool)


def _is_dict(value: object) -> bool:
    return isinstance(value, dict)


def _is_list(value: object) -> bool:
    return isinstance(value, list)


# Optional top-level fields, checked in this order when present and not null.
_OPTIONAL_FIELDS: tuple[tuple[str, Callable[[object], bool], str], ...] = (
    ("stream", _is_bool, "boolean"),
    ("temperature", _is_number, "number"),
    ("top_p", _is_number, "number"),
    ("top_k", _is_int, "integer"),
    ("metadata", _is_dict, "dictionary"),
    ("thinking", _is_dict, "dictionary"),
    ("output_config", _is_dict, "dictionary"),
    ("tool_choice", _is_dict, "dictionary"),
    ("stop_sequences", _is_list, "list"),
)


def _check_optional(
    body: Mapping[str, Any], key: str, check: Callable[[object], bool], expected: str
) -> None:
    value = body.get(key)
    if value is not None and not check(value):
        raise _fail(key, f"Input should be a valid {expected}")


def validate_messages_request(body: object) -> MessagesRequest:
    """Check a parsed JSON body the way Anthropic does; the same object comes back, typed.

    Unknown top-level fields and unknown content block types pass (Claude Code
    sends beta fields freely); what the mapper relies on is checked.
    """
    if not isinstance(body, dict):
        raise _fail("body", "expected a JSON object")
    _check_str(body, "model", "")
    if "max_tokens" not in body:
        raise _fail("max_tokens", "Field required")
    if not _is_int(body["max_tokens"]):
        raise _fail("max_tokens", "Input should be a valid integer")
    if body["max_tokens"] < 1:
        raise _fail("max_tokens", "Input should be greater than or equal to 1")
    messages = body.get("messages")
    if "messages" not in body:
        raise _fail("messages", "Field required")
    if not isinstance(messages, list):
        raise _fail("messages", "Input should be a valid list")
    if not messages:
        raise _fail("messages", "List should have at least 1 item after validation, not 0")
    for index, message in enumerate(messages):
        # Paths are written only for an error: most messages pass.
        if not isinstance(message, dict):
            raise _fail(f"messages.{index}", "Input should be a valid dictionary")
        if "role" not in message:
            raise _fail(f"messages.{index}.role", "Field required")
        if message["role"] not in _ROLES:
            raise _fail(f"messages.{index}.role", "Input should be 'user', 'assistant' or 'system'")
        if "content" not in message:
            raise _fail(f"messages.{index}.content", "Field required")
        content = message["content"]
        if not isinstance(content, str):  # plain text needs no more checking
            _check_content(content, f"messages.{index}.content")
    if body.get("system") is not None:
        _check_content(body["system"], "system")
    for key, check, expected in _OPTIONAL_FIELDS:  # `_check_optional`, inlined: nine a request
        value = body.get(key)
        if value is not None and not check(value):
            raise _fail(key, f"Input should be a valid {expected}")
    stops = body.get("stop_sequences")
    for index, stop in enumerate(stops or ()):
        if not isinstance(stop, str):
            raise _fail(f"stop_sequences.{index}", "Input should be a valid string")
    _check_optional(body, "tools", _is_list, "list")
    for index, tool in enumerate(body.get("tools") or ()):
        _check_tool(tool, f"tools.{index}")
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        if choice.get("type") not in ("auto", "any", "tool", "none"):
            raise _fail("tool_choice.type", "Input should be 'auto', 'any', 'tool' or 'none'")
        if choice["type"] == "tool":
            _check_str(choice, "name", "tool_choice")
    return cast(MessagesRequest, body)


def _check_tool(tool: object, path: str) -> None:
    if not isinstance(tool, dict):
        raise _fail(path, "Input should be a valid dictionary")
    _check_str(tool, "name", path)
    custom = tool.get("type") in (None, "custom")
    schema = tool.get("input_schema")
    if custom and schema is None:
        raise _fail(f"{path}.input_schema", "Field required")
    if schema is not None and not isinstance(schema, dict):
        raise _fail(f"{path}.input_schema", "Input should be a valid dictionary")
