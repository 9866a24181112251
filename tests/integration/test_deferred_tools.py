"""Deferred tools (tool search) through the server, with the official `anthropic` SDK.

Claude Code 2.1.332 declares most tools with `defer_loading: true` plus a
`DeferredToolPlaceholder` ("never call this tool"), and loads a tool when the
model calls its ToolSearch. The upstream must see only what the conversation
loaded: never the placeholder, and a loaded tool with its schema.
"""

import json
from typing import Any

import pytest

from tests.fake_upstream import FIXTURES, completion, reply_json
from tests.integration.conftest import LiveProxy

REQUESTS = FIXTURES / "requests"
CLAUDE_CODE_332 = json.loads((REQUESTS / "claude_code_2.1.332_request.json").read_text("utf-8"))
# 2.1.332 defers NotebookEdit; 2.1.197 still sent its schema eagerly.
NOTEBOOK_EDIT: dict[str, Any] = next(
    tool
    for tool in json.loads((REQUESTS / "claude_code_request.json").read_text("utf-8"))["body"][
        "tools"
    ]
    if tool["name"] == "NotebookEdit"
)
TOOLS_332: list[dict[str, Any]] = CLAUDE_CODE_332["body"]["tools"]
EAGER_332 = [tool["name"] for tool in TOOLS_332 if not tool.get("defer_loading")]
SEARCH_CALL = {
    "type": "tool_use",
    "id": "toolu_search_1",
    "name": "ToolSearch",
    "input": {"query": "select:NotebookEdit"},
}
# Claude Code's text form: one `<function>` line per loaded tool.
FUNCTIONS_TEXT = (
    "<functions>\n<function>"
    + json.dumps(
        {
            "description": NOTEBOOK_EDIT["description"],
            "name": "NotebookEdit",
            "parameters": NOTEBOOK_EDIT["input_schema"],
        }
    )
    + "</function>\n</functions>"
)
REFERENCE = [{"type": "tool_reference", "tool_name": "NotebookEdit"}]


def conversation(result: Any) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "Edit the notebook"},
        {"role": "assistant", "content": [SEARCH_CALL]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_search_1", "content": result}
            ],
        },
    ]


def tools_with_deferred_notebook() -> list[dict[str, Any]]:
    """The 2.1.332 tools as Claude Code sends them once NotebookEdit is loaded (API form)."""
    return [*TOOLS_332, {**NOTEBOOK_EDIT, "defer_loading": True}]


def offered(proxy: LiveProxy) -> list[dict[str, Any]]:
    return [tool["function"] for tool in proxy.upstream.chat_requests[-1].body.get("tools", [])]


def test_placeholder_is_never_offered(proxy: LiveProxy) -> None:
    proxy.client().messages.create(
        model="claude-sonnet-4-6",
        max_tokens=50,
        messages=[{"role": "user", "content": "say hi"}],
        tools=TOOLS_332,  # type: ignore[arg-type]
    )
    assert [tool["name"] for tool in offered(proxy)] == EAGER_332


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("result", "tools", "tool_message"),
    [
        pytest.param(FUNCTIONS_TEXT, TOOLS_332, FUNCTIONS_TEXT, id="functions-text"),
        pytest.param(
            REFERENCE,
            tools_with_deferred_notebook(),
            "Tool NotebookEdit is now available.",
            id="tool-reference",
        ),
    ],
)
def test_a_loaded_tool_is_offered_with_its_schema(
    proxy: LiveProxy, result: Any, tools: list[dict[str, Any]], tool_message: str, stream: bool
) -> None:
    client = proxy.client()
    kwargs: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 50,
        "messages": conversation(result),
        "tools": tools,
    }
    if stream:
        with client.messages.stream(**kwargs) as events:
            events.get_final_message()
    else:
        client.messages.create(**kwargs)
    functions = offered(proxy)
    assert [f["name"] for f in functions] == [*EAGER_332, "NotebookEdit"]
    notebook = functions[-1]
    assert notebook["description"] == NOTEBOOK_EDIT["description"]
    schema = notebook["parameters"]
    assert schema["required"] == ["notebook_path", "new_source"]
    assert schema["properties"] == NOTEBOOK_EDIT["input_schema"]["properties"]
    assert "$schema" not in schema and "additionalProperties" not in schema  # sanitized
    sent = proxy.upstream.chat_requests[-1].body["messages"]
    assert [m["content"] for m in sent if m["role"] == "tool"] == [tool_message]


def test_identical_requests_offer_identical_bytes(proxy: LiveProxy) -> None:
    client = proxy.client()
    for _ in range(2):
        client.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=50,
            messages=conversation(REFERENCE),  # type: ignore[arg-type]
            tools=tools_with_deferred_notebook(),  # type: ignore[arg-type]
        )
    first, second = (json.dumps(r.body["tools"]) for r in proxy.upstream.chat_requests[-2:])
    assert first == second


def test_count_tokens_counts_what_is_offered(proxy: LiveProxy) -> None:
    client = proxy.client()

    def count(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> int:
        return client.messages.count_tokens(
            model="claude-sonnet-4-6",
            messages=messages,  # type: ignore[arg-type]
            tools=tools,  # type: ignore[arg-type]
        ).input_tokens

    eager_only = [tool for tool in TOOLS_332 if not tool.get("defer_loading")]
    hello = [{"role": "user", "content": "say hi"}]
    assert count(hello, TOOLS_332) == count(hello, eager_only)  # the placeholder is not counted
    # Loaded: as if NotebookEdit were an eager tool and the reference plain text.
    loaded = count(conversation(REFERENCE), tools_with_deferred_notebook())
    as_text = conversation("Tool NotebookEdit is now available.")
    assert loaded == count(as_text, [*eager_only, NOTEBOOK_EDIT])
    assert loaded > count(as_text, eager_only) + len(json.dumps(NOTEBOOK_EDIT)) // 10
    from_text = count(conversation(FUNCTIONS_TEXT), TOOLS_332)
    assert from_text == count(conversation(FUNCTIONS_TEXT), [*eager_only, NOTEBOOK_EDIT])
    # The same text not opening the result (a file that quotes it) loads nothing.
    quoted = count(conversation("x" + FUNCTIONS_TEXT), TOOLS_332)
    assert from_text > quoted + len(json.dumps(NOTEBOOK_EDIT)) // 10
    assert not proxy.upstream.chat_requests  # counted locally


def test_leaked_nameless_call_is_read_against_the_loaded_tool(proxy: LiveProxy) -> None:
    """A Kimi call whose id names no function: the one offered tool whose schema fits
    is NotebookEdit (the placeholder's empty schema would fit anything: not offered)."""
    arguments = {"notebook_path": "/w/n.ipynb", "new_source": "print(2)"}
    leaked = (
        "<|tool_calls_section_begin|><|tool_call_begin|>call_9e6c04c8"
        f"<|tool_call_argument_begin|>{json.dumps(arguments)}<|tool_call_end|>"
        "<|tool_calls_section_end|>"
    )
    proxy.upstream.enqueue(reply_json(completion({"model": "m"}, leaked)))
    message = proxy.client().messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        messages=conversation(REFERENCE),  # type: ignore[arg-type]
        tools=tools_with_deferred_notebook(),  # type: ignore[arg-type]
    )
    assert [block.type for block in message.content] == ["tool_use"]
    call = message.content[0]
    assert call.type == "tool_use" and call.name == "NotebookEdit" and call.input == arguments
