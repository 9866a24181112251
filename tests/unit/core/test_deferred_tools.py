"""Tests for app.core.deferred_tools: which tools a request offers, deferred ones once loaded."""

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.deferred_tools import (
    EMPTY_SCHEMA,
    OfferedTools,
    functions_block_tools,
    offer_tools,
    offered_tools,
    tool_reference_text,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "requests"
SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}


def tool(name: str, *, deferred: bool = False, schema: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "description": f"{name} tool"}
    out["input_schema"] = schema if schema is not None else {"type": "object", "properties": {}}
    if deferred:
        out["defer_loading"] = True
    return out


PLACEHOLDER = tool("DeferredToolPlaceholder", deferred=True)
EAGER = [tool("Bash"), tool("ToolSearch")]
DEFERRED = [tool("NotebookEdit", deferred=True, schema=SCHEMA), tool("WebFetch", deferred=True)]


def function_line(name: str, parameters: Any = SCHEMA, description: str = "loaded") -> str:
    spec = {"description": description, "name": name, "parameters": parameters}
    return f"<function>{json.dumps(spec)}</function>"


def functions_text(*lines: str) -> str:
    """The tool_result text Claude Code writes (a `<functions>` block, one line per tool)."""
    return "<functions>" + "".join("\n" + line for line in lines) + "\n</functions>"


def reference(name: str) -> dict[str, Any]:
    return {"type": "tool_reference", "tool_name": name}


def search_round(call_id: str, content: Any) -> list[dict[str, Any]]:
    """The assistant's ToolSearch call and the user turn answering it."""
    call = {"type": "tool_use", "id": call_id, "name": "ToolSearch", "input": {"query": "q"}}
    result = {"type": "tool_result", "tool_use_id": call_id, "content": content}
    return [
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [result]},
    ]


def request(*rounds: Any, tools: Any = None) -> dict[str, Any]:
    messages: list[Any] = [{"role": "user", "content": "hi"}]
    for index, content in enumerate(rounds):
        messages += search_round(f"call_{index}", content)
    return {
        "model": "m",
        "max_tokens": 10,
        "messages": messages,
        "tools": [*EAGER, *DEFERRED, PLACEHOLDER] if tools is None else tools,
    }


def names(req: dict[str, Any]) -> list[str]:
    return [t["name"] for t in offered_tools(req)]


OFFERED_CASES = [
    pytest.param(request(), ["Bash", "ToolSearch"], [], id="nothing-loaded-no-placeholder"),
    pytest.param(request(tools=EAGER), ["Bash", "ToolSearch"], [], id="no-deferred-tools-at-all"),
    pytest.param(
        request([reference("NotebookEdit")]),
        ["Bash", "ToolSearch", "NotebookEdit"],
        [],
        id="tool-reference-loads-declared",
    ),
    pytest.param(
        request([reference("WebFetch"), reference("NotebookEdit")]),
        ["Bash", "ToolSearch", "WebFetch", "NotebookEdit"],
        [],
        id="order-of-first-load-not-declaration",
    ),
    pytest.param(
        request([reference("NotebookEdit")], [reference("WebFetch"), reference("NotebookEdit")]),
        ["Bash", "ToolSearch", "NotebookEdit", "WebFetch"],
        [],
        id="reload-keeps-first-place",
    ),
    pytest.param(
        request([reference("Nope")]),
        ["Bash", "ToolSearch"],
        ["messages.2.content.0.content.0: tool_reference to unknown tool Nope"],
        id="unknown-reference-noted",
    ),
    pytest.param(
        request([{"type": "tool_reference"}]),
        ["Bash", "ToolSearch"],
        ["messages.2.content.0.content.0: tool_reference to unknown tool None"],
        id="nameless-reference-noted",
    ),
    pytest.param(
        request([reference("Bash")]), ["Bash", "ToolSearch"], [], id="eager-not-offered-twice"
    ),
    pytest.param(
        request(functions_text(function_line("NotebookEdit"))),
        ["Bash", "ToolSearch", "NotebookEdit"],
        [],
        id="functions-in-string-content",
    ),
    pytest.param(
        request([{"type": "text", "text": functions_text(function_line("Undeclared"))}]),
        ["Bash", "ToolSearch", "Undeclared"],
        [],
        id="functions-in-text-block-undeclared-tool",
    ),
    pytest.param(
        request(functions_text(function_line("Bash"), function_line("WebFetch"))),
        ["Bash", "ToolSearch", "WebFetch"],
        [],
        id="functions-eager-name-not-twice",
    ),
    pytest.param(
        request("  \n" + functions_text(function_line("WebFetch"))),
        ["Bash", "ToolSearch", "WebFetch"],
        [],
        id="leading-whitespace-allowed",
    ),
    pytest.param(
        request("     1\t" + functions_text(function_line("WebFetch"))),
        ["Bash", "ToolSearch"],
        [],
        id="block-not-at-start-is-file-content",
    ),
    pytest.param(
        request("<functions>\n" + function_line("WebFetch")),
        ["Bash", "ToolSearch", "WebFetch"],
        [],
        id="unclosed-block-read-to-end",
    ),
    pytest.param(
        request(
            functions_text(
                "<function>{not json}</function>",
                "<function>[1, 2]</function>",
                '<function>{"name": ""}</function>',
                '<function>{"description": "no name"}</function>',
                "<function>" + json.dumps({"name": "Half"}),
                "stray words",
                function_line("WebFetch"),
            )
        ),
        ["Bash", "ToolSearch", "WebFetch"],
        [f"messages.2.content.0: malformed <function> line {n} skipped" for n in range(1, 7)],
        id="malformed-lines-skipped-with-notes",
    ),
    pytest.param(
        request(
            [
                {"type": "text", "text": "<functions>\n<function>x</function>\n</functions>"},
                reference("NotebookEdit"),
            ]
        ),
        ["Bash", "ToolSearch", "NotebookEdit"],
        ["messages.2.content.0.content.0: malformed <function> line 1 skipped"],
        id="block-path-in-note",
    ),
    pytest.param(
        request([{"type": "image", "source": {}}, "junk", {"type": "text", "text": 5}], None, 7),
        ["Bash", "ToolSearch"],
        [],
        id="odd-result-content-ignored",
    ),
]


@pytest.mark.parametrize(("req", "expected", "expected_notes"), OFFERED_CASES)
def test_offered_tools(req: dict[str, Any], expected: list[str], expected_notes: list[str]) -> None:
    notes: list[str] = []
    before = copy.deepcopy(req)
    assert [t["name"] for t in offered_tools(req, notes)] == expected
    assert notes == expected_notes
    assert req == before  # never mutated


@pytest.mark.parametrize(("req", "expected", "expected_notes"), OFFERED_CASES)
def test_offer_tools_keeps_the_notes(
    req: dict[str, Any], expected: list[str], expected_notes: list[str]
) -> None:
    offered = offer_tools(req)
    assert isinstance(offered, OfferedTools)
    assert [t["name"] for t in offered.tools] == expected
    assert list(offered.notes) == expected_notes
    assert offered.tools == offered_tools(req)


def test_loaded_tools_carry_their_schema() -> None:
    by_reference = offered_tools(request([reference("NotebookEdit")]))[-1]
    assert by_reference is DEFERRED[0]  # the request's own declaration, shared
    from_text = offered_tools(
        request(functions_text(function_line("Fresh", description="Does things.")))
    )[-1]
    assert from_text == {"name": "Fresh", "description": "Does things.", "input_schema": SCHEMA}


def test_first_load_fixes_the_schema() -> None:
    other = {"type": "object", "properties": {"other": {"type": "integer"}}}
    req = request(
        functions_text(function_line("WebFetch")),
        functions_text(function_line("WebFetch", parameters=other)),
    )
    assert offered_tools(req)[-1]["input_schema"] == SCHEMA


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param('{"name": "A"}', {"name": "A", "input_schema": EMPTY_SCHEMA}, id="bare"),
        pytest.param(
            '{"name": "A", "description": 3, "parameters": "x"}',
            {"name": "A", "input_schema": EMPTY_SCHEMA},
            id="wrong-types-dropped",
        ),
        pytest.param(
            # A description that quotes the markup itself stays one line.
            json.dumps({"name": "A", "description": "one <function>{}</function> line"}),
            {
                "name": "A",
                "description": "one <function>{}</function> line",
                "input_schema": EMPTY_SCHEMA,
            },
            id="markup-inside-description",
        ),
    ],
)
def test_function_lines(line: str, expected: dict[str, Any]) -> None:
    notes: list[str] = []
    text = f"<functions>\n<function>{line}</function>\n</functions>"
    assert functions_block_tools(text, "p", notes) == [expected]
    assert notes == []


def test_functions_block_must_open_the_text() -> None:
    notes: list[str] = []
    assert functions_block_tools("see <functions></functions>", "p", notes) == []
    assert notes == []


@pytest.mark.parametrize(
    "req",
    [
        pytest.param({"messages": "x", "tools": "y"}, id="not-lists"),
        pytest.param({"messages": [5, {"role": "user"}], "tools": [3, {"no": "name"}]}, id="junk"),
        pytest.param({"messages": [{"role": "user", "content": [1, {"type": "x"}]}]}, id="blocks"),
        pytest.param({}, id="empty"),
    ],
)
def test_unvalidated_input_is_tolerated(req: dict[str, Any]) -> None:
    """measure_request runs it on what a client sent, validated or not."""
    assert [t.get("name") for t in offered_tools(req)] == (
        [None] if req.get("tools") == [3, {"no": "name"}] else []
    )


def test_tool_reference_text() -> None:
    assert tool_reference_text(reference("NotebookEdit")) == "Tool NotebookEdit is now available."


# ------------------------------------------------------------------ real Claude Code


@pytest.fixture(scope="module")
def claude_code_332() -> dict[str, Any]:
    captured = json.loads((FIXTURES / "claude_code_2.1.332_request.json").read_text("utf-8"))
    return dict(captured["body"])


def test_claude_code_332_offers_no_placeholder(claude_code_332: dict[str, Any]) -> None:
    offered = names(claude_code_332)
    assert "DeferredToolPlaceholder" not in offered
    declared = [t["name"] for t in claude_code_332["tools"]]
    assert offered == [name for name in declared if name != "DeferredToolPlaceholder"]


def test_claude_code_332_scan_is_cheap(claude_code_332: dict[str, Any]) -> None:
    # A long session: 200 tool rounds of big results, none of them a tool search.
    req = dict(claude_code_332)
    req["messages"] = claude_code_332["messages"] + [
        message for index in range(200) for message in search_round(f"c{index}", "x" * 20_000)
    ]
    started = time.perf_counter()
    for _ in range(20):
        offered_tools(req)
    assert (time.perf_counter() - started) / 20 < 0.01  # ~0.2 ms here


# ------------------------------------------------------------------ properties

POOL = ["NotebookEdit", "WebFetch", "Bash", "Fresh", "Other", "Nope"]
load_strategy = st.tuples(
    st.sampled_from(["reference", "functions"]),
    st.lists(st.sampled_from(POOL), min_size=1, max_size=3),
)


def result_content(kind: str, loaded: list[str]) -> Any:
    if kind == "reference":
        return [reference(name) for name in loaded]
    return functions_text(*(function_line(name) for name in loaded))


@given(st.lists(load_strategy, max_size=8), st.data())
def test_offered_list_grows_by_appending(loads: list[tuple[str, list[str]]], data: Any) -> None:
    full = request(*(result_content(kind, loaded) for kind, loaded in loads))
    cut = data.draw(st.integers(0, len(loads)))
    earlier = request(*(result_content(kind, loaded) for kind, loaded in loads[:cut]))
    offered_full, offered_earlier = offered_tools(full), offered_tools(earlier)
    # Earlier tools keep their place and schema: prefix caches of the shorter
    # conversation stay valid for the longer one.
    assert offered_full[: len(offered_earlier)] == offered_earlier
    # Same request, same tool list, byte for byte.
    again = offered_tools(copy.deepcopy(full))
    assert json.dumps(again) == json.dumps(offered_full)
    assert "DeferredToolPlaceholder" not in [t["name"] for t in offered_full]
    assert len({t["name"] for t in offered_full}) == len(offered_full)
