"""Deferred tools (tool search): which tools a request offers the model, from the request alone.

A client may declare tools with `defer_loading: true` and let the model load
them on demand through a tool search tool. Two forms of "loaded" reach us:

- the Messages API's: a tool_result holding `{"type": "tool_reference",
  "tool_name": ...}` blocks; the schema is the request's own declaration
  (Claude Code 2.1.332 through NimBridge sends this);
- Claude Code's text form (for models it thinks cannot take tool_reference): a
  tool_result text that starts with a `<functions>` block, one
  `<function>{"description", "name", "parameters"}</function>` line per tool;
  such a tool need not be declared in `tools` at all.

`offered_tools(req)` is what the upstream gets: the eager tools in request
order, then the loaded ones in order of first load. A deferred tool never
loaded (Claude Code's `DeferredToolPlaceholder`) is not offered.

Invariants:
- Derived from the request only (no session state): the same request gives
  the same list, and a longer conversation only appends to its earlier list,
  so upstream prefix caches keep hitting. The first load of a name fixes its
  place and, for the text form, its schema.
- Cheap on big requests: only tool_result blocks are looked at, and a text is
  parsed only when it starts with `<functions>`.
- Lenient: a malformed `<function>` line or a reference to an unknown tool is
  a note, never an exception; the input is never mutated.
- Worked out once per request: `offer_tools` keeps the list with its notes, for the
  translation, the token count and the answer to share (`OfferedTools`).

The input is parsed JSON: objects are `dict`s, checked as such (an ABC check costs
ten times more, and a request holds thousands of values).
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

TOOL_REFERENCE_TEXT = "Tool {name} is now available."
FUNCTIONS_OPEN, FUNCTIONS_CLOSE = "<functions>", "</functions>"
FUNCTION_OPEN, FUNCTION_CLOSE = "<function>", "</function>"
EMPTY_SCHEMA: Mapping[str, Any] = {"type": "object", "properties": {}}


def is_deferred(tool: Mapping[str, Any]) -> bool:
    return tool.get("defer_loading") is True


def tool_reference_text(block: Mapping[str, Any]) -> str:
    """What the model reads for a tool_reference block."""
    return TOOL_REFERENCE_TEXT.format(name=block.get("tool_name"))


def _function_definition(line: str) -> Mapping[str, Any] | None:
    """An Anthropic tool definition from one `<function>{json}</function>` line, or None."""
    if not (line.startswith(FUNCTION_OPEN) and line.endswith(FUNCTION_CLOSE)):
        return None
    try:
        spec = json.loads(line[len(FUNCTION_OPEN) : -len(FUNCTION_CLOSE)])
    except ValueError:
        return None
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        return None
    parameters = spec.get("parameters")
    tool: dict[str, Any] = {"name": spec["name"]}
    if isinstance(spec.get("description"), str):
        tool["description"] = spec["description"]
    tool["input_schema"] = parameters if isinstance(parameters, dict) else EMPTY_SCHEMA
    return tool


def functions_block_tools(text: str, path: str, notes: list[str]) -> list[Mapping[str, Any]]:
    """The tools of a `<functions>` block that opens `text` (none when it does not open it).

    Only a block at the start counts: a file's content that merely mentions
    the markup (a Read result has line numbers in front) must not load tools.
    """
    body = text.lstrip()
    if not body.startswith(FUNCTIONS_OPEN):
        return []
    body = body[len(FUNCTIONS_OPEN) :].partition(FUNCTIONS_CLOSE)[0]
    tools: list[Mapping[str, Any]] = []
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    for number, line in enumerate(lines, start=1):
        tool = _function_definition(line)
        if tool is None:
            notes.append(f"{path}: malformed <function> line {number} skipped")
        else:
            tools.append(tool)
    return tools


class _Loads:
    """Tools loaded so far, by name, in order of first load."""

    __slots__ = ("by_name", "declared", "notes")

    def __init__(self, declared: Mapping[str, Mapping[str, Any]], notes: list[str]) -> None:
        self.declared = declared
        self.notes = notes
        self.by_name: dict[str, Mapping[str, Any]] = {}

    def add_text(self, text: str, path: str) -> None:
        if FUNCTIONS_OPEN not in text:  # the cheap check before any parsing
            return
        for tool in functions_block_tools(text, path, self.notes):
            self.by_name.setdefault(tool["name"], tool)

    def add_reference(self, block: Mapping[str, Any], path: str) -> None:
        name = block.get("tool_name")
        tool = self.declared.get(name) if isinstance(name, str) else None
        if tool is None:
            self.notes.append(f"{path}: tool_reference to unknown tool {name}")
        else:
            self.by_name.setdefault(tool["name"], tool)

    def add_result(self, result: Mapping[str, Any], path: str) -> None:
        content = result.get("content")
        if isinstance(content, str):
            self.add_text(content, path)
            return
        for index, inner in enumerate(content if isinstance(content, list) else ()):
            if not isinstance(inner, dict):
                continue
            kind = inner.get("type")
            if kind == "text" and isinstance(inner.get("text"), str):
                self.add_text(inner["text"], f"{path}.content.{index}")
            elif kind == "tool_reference":
                self.add_reference(inner, f"{path}.content.{index}")


def _tool_results(req: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(path, block) of every tool_result of the conversation, in order."""
    found: list[tuple[str, Mapping[str, Any]]] = []
    messages = req.get("messages")
    for index, message in enumerate(messages if isinstance(messages, list) else ()):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for position, block in enumerate(content):
            if isinstance(block, dict) and block.get("type") == "tool_result":
                found.append((f"messages.{index}.content.{position}", block))
    return found


class OfferedTools(NamedTuple):
    """`offered_tools` of one request and the notes it made, worked out once and shared."""

    tools: Sequence[Mapping[str, Any]]
    notes: Sequence[str]


def offer_tools(req: Mapping[str, Any]) -> OfferedTools:
    notes: list[str] = []
    return OfferedTools(offered_tools(req, notes), notes)


def offered_tools(
    req: Mapping[str, Any], notes: list[str] | None = None
) -> Sequence[Mapping[str, Any]]:
    """The Anthropic tool definitions to offer: eager ones, then loaded ones (module docstring)."""
    if notes is None:
        notes = []
    raw_tools = req.get("tools")
    listed = raw_tools if isinstance(raw_tools, list) else ()
    tools = [tool for tool in listed if isinstance(tool, dict)]
    eager = [tool for tool in tools if not is_deferred(tool)]
    results = _tool_results(req)
    if not results:  # nothing loaded (most requests): the eager tools are the list
        return eager
    loads = _Loads(
        {tool["name"]: tool for tool in tools if isinstance(tool.get("name"), str)}, notes
    )
    for path, result in results:
        loads.add_result(result, path)
    eager_names = {tool.get("name") for tool in eager}
    return eager + [tool for name, tool in loads.by_name.items() if name not in eager_names]
