"""Tests for app.core.request_map: Anthropic Messages request -> OpenAI Chat request."""

import base64
import copy
import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.capabilities import ModelQuirks, ReasoningSwitch
from app.core.deferred_tools import offer_tools
from app.core.errors import ClientRequestError
from app.core.request_map import (
    CONTINUE_USER_TEXT,
    IMAGE_OMITTED_TEXT,
    NOTE_TOOL_HISTORY_AS_TEXT,
    NOTE_TOOLS_DROPPED,
    to_openai_request,
)
from app.core.request_validation import validate_messages_request
from app.core.server_tools.specs import to_function_tool
from app.core.thinking_display import REASONING_SIGNATURE_PREFIX, reasoning_signature
from app.core.tiers import ModelRoute

FIXTURES = Path(__file__).parents[2] / "fixtures"
ROUTE = ModelRoute("claude-x", "up/model", ModelQuirks())
IMAGE_B64 = {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}
CC = {"type": "ephemeral"}


def body(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "claude-x",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
    }
    base.update(fields)
    return base


def translate(
    request: dict[str, Any], route: ModelRoute = ROUTE
) -> tuple[dict[str, Any], list[str]]:
    notes: list[str] = []
    out = to_openai_request(validate_messages_request(request), route, notes=notes)
    return dict(out), notes


def route_with(**quirks: Any) -> ModelRoute:
    return ModelRoute("claude-x", "up/model", ModelQuirks(**quirks))


def text(value: str, **extra: Any) -> dict[str, Any]:
    return {"type": "text", "text": value, **extra}


def tool_use(call_id: str, name: str = "f", arguments: Any = None) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments or {}}


def tool_result(call_id: str, content: Any = "ok", **extra: Any) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": call_id, "content": content, **extra}


def openai_call(call_id: str, name: str = "f", arguments: str = "{}") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def find_keys(node: Any, key: str, path: str = "$") -> list[str]:
    """Every path at which `key` appears as a dict key."""
    found = []
    if isinstance(node, dict):
        for name, value in node.items():
            if name == key:
                found.append(f"{path}.{name}")
            found.extend(find_keys(value, key, f"{path}.{name}"))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(find_keys(value, key, f"{path}[{index}]"))
    return found


SUBSCHEMA_KEYS = {
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
SUBSCHEMA_LIST_KEYS = {"prefixItems", "anyOf", "oneOf", "allOf"}
SUBSCHEMA_MAP_KEYS = {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}


def boolean_subschemas(schema: Any, path: str = "$") -> list[str]:
    """Paths of boolean sub-schemas (schema positions only, not `default`/`const` values)."""
    if isinstance(schema, bool):
        return [path]
    if not isinstance(schema, dict):
        return []
    found = []
    for key, value in schema.items():
        if key in SUBSCHEMA_KEYS:
            values = value if isinstance(value, list) else [value]
            for index, item in enumerate(values):
                found.extend(boolean_subschemas(item, f"{path}.{key}[{index}]"))
        elif key in SUBSCHEMA_LIST_KEYS and isinstance(value, list):
            for index, item in enumerate(value):
                found.extend(boolean_subschemas(item, f"{path}.{key}[{index}]"))
        elif key in SUBSCHEMA_MAP_KEYS and isinstance(value, dict):
            for name, item in value.items():
                found.extend(boolean_subschemas(item, f"{path}.{key}.{name}"))
    return found


# ------------------------------------------------------------------ messages

USER_HI = {"role": "user", "content": "hi"}


@pytest.mark.parametrize(
    ("fields", "expected", "expected_notes"),
    [
        pytest.param(
            {"system": "Be brief."},
            [{"role": "system", "content": "Be brief."}, USER_HI],
            [],
            id="system-string",
        ),
        pytest.param({"system": ""}, [USER_HI], [], id="system-empty-string-omitted"),
        pytest.param(
            {"system": [text("A", cache_control=CC), text("B")]},
            [{"role": "system", "content": "A\n\nB"}, USER_HI],
            [],
            id="system-blocks-joined",
        ),
        pytest.param(
            {"system": [text("x-anthropic-billing-header: cc_version=1;"), text("A"), text("")]},
            [{"role": "system", "content": "A"}, USER_HI],
            [],
            id="billing-header-dropped",
        ),
        pytest.param(
            {"system": [text("A"), {"type": "image", "source": IMAGE_B64}]},
            [{"role": "system", "content": "A"}, USER_HI],
            ["system.1: image block dropped"],
            id="system-non-text-block-dropped",
        ),
        pytest.param(
            {
                "system": "S",
                "messages": [
                    {"role": "user", "content": "u1"},
                    {"role": "system", "content": "M1"},
                    {"role": "user", "content": "u2"},
                    {"role": "assistant", "content": "a"},
                    {
                        "role": "system",
                        "content": [text("M2"), text("x-anthropic-billing-header: x")],
                    },
                    {"role": "user", "content": "u3"},
                ],
            },
            [
                {"role": "system", "content": "S\n\nM1\n\nM2"},
                {"role": "user", "content": "u1\n\nu2"},
                {"role": "assistant", "content": "a"},
                {"role": "user", "content": "u3"},
            ],
            [],
            id="mid-conversation-system-folded",
        ),
        pytest.param(
            {"messages": [{"role": "user", "content": [text("a", cache_control=CC), text("b")]}]},
            [{"role": "user", "content": "a\n\nb"}],
            [],
            id="text-parts-collapsed",
        ),
        pytest.param(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [text("see"), {"type": "image", "source": IMAGE_B64}],
                    }
                ]
            },
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "see"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,iVBORw0K"},
                        },
                    ],
                }
            ],
            [],
            id="image-base64",
        ),
        pytest.param(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}
                        ],
                    }
                ]
            },
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
                }
            ],
            [],
            id="image-url",
        ),
        pytest.param(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "document",
                                "source": {
                                    "type": "text",
                                    "media_type": "text/plain",
                                    "data": "doc",
                                },
                            },
                            {"type": "document", "source": {"type": "content", "content": "c1"}},
                            {
                                "type": "document",
                                "source": {
                                    "type": "content",
                                    "content": [
                                        text("c2"),
                                        {"type": "image", "source": IMAGE_B64},
                                        text("c3"),
                                    ],
                                },
                            },
                        ],
                    }
                ]
            },
            [{"role": "user", "content": "doc\n\nc1\n\nc2\nc3"}],
            ["messages.0.content.2: image block inside a document dropped"],
            id="documents-as-text",
        ),
        pytest.param(
            {
                "messages": [
                    USER_HI,
                    {
                        "role": "assistant",
                        "content": [tool_use("t1", "Read", {"path": "ü.txt", "n": [1, 2]})],
                    },
                ]
            },
            [
                USER_HI,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [openai_call("t1", "Read", '{"path":"ü.txt","n":[1,2]}')],
                },
            ],
            [],
            id="tool-use-content-null",
        ),
        pytest.param(
            {
                "messages": [
                    USER_HI,
                    {
                        "role": "assistant",
                        "content": [text("Let me"), tool_use("t1"), text("look")],
                    },
                ]
            },
            [
                USER_HI,
                {
                    "role": "assistant",
                    "content": "Let me\n\nlook",
                    "tool_calls": [openai_call("t1")],
                },
            ],
            [],
            id="tool-use-with-text",
        ),
        pytest.param(
            {
                "messages": [
                    USER_HI,
                    {"role": "assistant", "content": [tool_use("t1"), tool_use("t2", "g")]},
                    {
                        "role": "user",
                        "content": [
                            text("before", cache_control=CC),
                            tool_result("t2", [text("g1"), text("g2")], cache_control=CC),
                            tool_result("t1", "boom", is_error=True),
                            text("after"),
                        ],
                    },
                ]
            },
            [
                USER_HI,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [openai_call("t1"), openai_call("t2", "g")],
                },
                {"role": "tool", "tool_call_id": "t1", "content": "Error: boom"},
                {"role": "tool", "tool_call_id": "t2", "content": "g1\ng2"},
                {"role": "user", "content": "before\n\nafter"},
            ],
            [],
            id="tool-results-first-in-call-order",
        ),
        pytest.param(
            {
                "messages": [
                    USER_HI,
                    {
                        "role": "assistant",
                        "content": [tool_use("t1"), tool_use("t2"), tool_use("t3")],
                    },
                    {
                        "role": "user",
                        "content": [
                            tool_result("t1", "Error: already", is_error=True),
                            tool_result("t2", None),
                            {"type": "tool_result", "tool_use_id": "t3"},
                        ],
                    },
                ]
            },
            [
                USER_HI,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [openai_call("t1"), openai_call("t2"), openai_call("t3")],
                },
                {"role": "tool", "tool_call_id": "t1", "content": "Error: already"},
                {"role": "tool", "tool_call_id": "t2", "content": ""},
                {"role": "tool", "tool_call_id": "t3", "content": ""},
            ],
            [],
            id="tool-result-error-prefix-once-and-empty-content",
        ),
        pytest.param(
            {
                "messages": [
                    USER_HI,
                    {"role": "assistant", "content": [tool_use("t1"), tool_use("t2")]},
                    {"role": "user", "content": [tool_result("t1", "one")]},
                    {"role": "user", "content": [text("note"), tool_result("t2", "two")]},
                ]
            },
            [
                USER_HI,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [openai_call("t1"), openai_call("t2")],
                },
                {"role": "tool", "tool_call_id": "t1", "content": "one"},
                {"role": "tool", "tool_call_id": "t2", "content": "two"},
                {"role": "user", "content": "note"},
            ],
            [],
            id="tool-results-split-over-two-user-messages",
        ),
        pytest.param(
            {
                "messages": [
                    USER_HI,
                    {"role": "assistant", "content": [tool_use("t1")]},
                    {
                        "role": "user",
                        "content": [
                            tool_result(
                                "t1",
                                [text("shot"), {"type": "image", "source": IMAGE_B64}],
                            ),
                            text("what now?"),
                        ],
                    },
                ]
            },
            [
                USER_HI,
                {"role": "assistant", "content": None, "tool_calls": [openai_call("t1")]},
                {"role": "tool", "tool_call_id": "t1", "content": "shot"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "(image from tool result t1)"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,iVBORw0K"},
                        },
                        {"type": "text", "text": "what now?"},
                    ],
                },
            ],
            [],
            id="tool-result-image-to-following-user-message",
        ),
        pytest.param(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            tool_result(
                                "ghost", [text("r"), {"type": "image", "source": IMAGE_B64}]
                            ),
                            text("q"),
                        ],
                    }
                ]
            },
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "(result of tool call ghost)\nr"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,iVBORw0K"},
                        },
                        {"type": "text", "text": "q"},
                    ],
                }
            ],
            [
                "messages.0.content.0: tool_result ghost has no matching tool_use; sent as text",
            ],
            id="orphan-tool-result-as-user-text",
        ),
        pytest.param(
            {
                "messages": [
                    USER_HI,
                    {"role": "assistant", "content": [tool_use("t1")]},
                    {"role": "user", "content": [tool_result("t1", "a"), tool_result("t1", "b")]},
                ]
            },
            [
                USER_HI,
                {"role": "assistant", "content": None, "tool_calls": [openai_call("t1")]},
                {"role": "tool", "tool_call_id": "t1", "content": "a"},
                {"role": "user", "content": "(result of tool call t1)\nb"},
            ],
            ["messages.2.content.1: tool_result t1 has no matching tool_use; sent as text"],
            id="duplicate-tool-result-is-orphan",
        ),
        pytest.param(
            {
                "messages": [
                    USER_HI,
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "thinking", "thinking": "hmm", "signature": "s"},
                            {"type": "redacted_thinking", "data": "xx"},
                            text("done"),
                        ],
                    },
                ]
            },
            [USER_HI, {"role": "assistant", "content": "done"}],
            [],
            id="thinking-dropped",
        ),
        pytest.param(
            {
                "messages": [
                    USER_HI,
                    {
                        "role": "assistant",
                        "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"}],
                    },
                    {"role": "user", "content": "more"},
                ]
            },
            [USER_HI, {"role": "assistant", "content": ""}, {"role": "user", "content": "more"}],
            [],
            id="assistant-left-empty-gets-empty-string",
        ),
        pytest.param(
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "user", "content": [text("b")]},
                    {"role": "assistant", "content": "c"},
                    {"role": "assistant", "content": [tool_use("t1")]},
                    {"role": "assistant", "content": [text("d"), tool_use("t2")]},
                ]
            },
            [
                {"role": "user", "content": "a\n\nb"},
                {
                    "role": "assistant",
                    "content": "c\n\nd",
                    "tool_calls": [openai_call("t1"), openai_call("t2")],
                },
            ],
            [],
            id="adjacent-same-role-merged",
        ),
        pytest.param(
            {
                "messages": [
                    USER_HI,
                    {"role": "assistant", "content": "a1"},
                    {"role": "user", "content": [{"type": "server_tool_use", "id": "s"}]},
                    {"role": "assistant", "content": "a2"},
                ]
            },
            [USER_HI, {"role": "assistant", "content": "a1\n\na2"}],
            ["messages.2.content.0: server_tool_use block dropped"],
            id="dropped-user-turn-merges-assistants",
        ),
        pytest.param(
            {
                "messages": [
                    {"role": "assistant", "content": "I said"},
                    {"role": "user", "content": "ok"},
                ]
            },
            [
                {"role": "user", "content": CONTINUE_USER_TEXT},
                {"role": "assistant", "content": "I said"},
                {"role": "user", "content": "ok"},
            ],
            ["conversation does not start with a user turn; inserted one"],
            id="first-assistant-gets-user-turn",
        ),
        pytest.param(
            {"system": "S", "messages": [{"role": "system", "content": "only"}]},
            [
                {"role": "system", "content": "S\n\nonly"},
                {"role": "user", "content": CONTINUE_USER_TEXT},
            ],
            ["conversation does not start with a user turn; inserted one"],
            id="only-system-messages",
        ),
        pytest.param(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            text("q"),
                            {"type": "thinking", "thinking": "x", "signature": "s"},
                            tool_use("u1"),
                        ],
                    },
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "image", "source": IMAGE_B64},
                            tool_result("u1"),
                            text("a"),
                        ],
                    },
                ]
            },
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
            [
                "messages.0.content.2: tool_use block dropped",
                "messages.1.content.0: image block dropped",
                "messages.1.content.1: tool_result block dropped",
            ],
            id="misplaced-blocks-dropped",
        ),
        pytest.param(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            text("x"),
                            tool_result("none", [{"type": "mystery", "content": []}]),
                        ],
                    }
                ]
            },
            [{"role": "user", "content": "x\n\n(result of tool call none)\n"}],
            [
                "messages.0.content.1.content.0: mystery block dropped",
                "messages.0.content.1: tool_result none has no matching tool_use; sent as text",
            ],
            id="unknown-block-in-tool-result",
        ),
        pytest.param(
            {"messages": [{"role": "user", "content": ""}]},
            [{"role": "user", "content": ""}],
            [],
            id="empty-user-string-kept",
        ),
    ],
)
def test_messages(
    fields: dict[str, Any], expected: list[dict[str, Any]], expected_notes: list[str]
) -> None:
    out, notes = translate(body(**fields))
    assert out["messages"] == expected
    assert notes == expected_notes


@pytest.mark.parametrize(
    ("send_back", "with_tools", "expected_reasoning"),
    [
        pytest.param(True, True, "one\n\ntwo", id="sent-back-beside-tool-calls"),
        pytest.param(True, False, None, id="not-without-tool-calls"),
        pytest.param(False, True, None, id="not-when-model-does-worse"),
    ],
)
def test_reasoning_sent_back(
    send_back: bool, with_tools: bool, expected_reasoning: str | None
) -> None:
    content: list[dict[str, Any]] = [
        {"type": "thinking", "thinking": "one", "signature": "s"},
        {"type": "redacted_thinking", "data": "xx"},
        {"type": "thinking", "signature": "no text"},
        {"type": "thinking", "thinking": "two", "signature": "s"},
    ]
    if with_tools:
        content.append(tool_use("t1"))
    messages = [USER_HI, {"role": "assistant", "content": content}]
    out, _ = translate(body(messages=messages), route_with(send_reasoning_back=send_back))
    assert out["messages"][1].get("reasoning_content") == expected_reasoning


def pdf_document(**extra: Any) -> dict[str, Any]:
    source = {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}
    return {"type": "document", "source": source, **extra}


@pytest.mark.parametrize(
    ("block", "expected", "note"),
    [
        pytest.param(
            {
                "type": "document",
                "title": "Report",
                "context": "Q3 figures",
                "citations": {"enabled": True},
                "source": {"type": "text", "media_type": "text/plain", "data": "Sales rose."},
            },
            "Document: Report\nContext: Q3 figures\n\nSales rose.",
            None,
            id="title-and-context-before-the-text",
        ),
        pytest.param(
            {
                "type": "document",
                "title": "",
                "context": 3,
                "source": {"type": "content", "content": [text("a"), text("b")]},
            },
            "a\nb",
            None,
            id="empty-or-odd-title-and-context-left-out",
        ),
        pytest.param(
            {
                "type": "document",
                "title": "notes.txt",
                "source": {
                    "type": "base64",
                    "media_type": "text/plain; charset=utf-8",
                    "data": base64.b64encode("naïve text".encode()).decode(),
                },
            },
            "Document: notes.txt\n\nnaïve text",
            None,
            id="base64-text-decoded",
        ),
        pytest.param(
            {
                "type": "document",
                "source": {"type": "base64", "media_type": "text/csv", "data": "a,b"},
            },
            "(document omitted: its text/csv data is not valid base64)",
            "messages.0.content.1: document omitted: its text/csv data is not valid base64",
            id="base64-text-not-base64",
        ),
        pytest.param(
            {
                "type": "document",
                "source": {"type": "base64", "media_type": "text/plain", "data": "é"},
            },
            "(document omitted: its text/plain data is not valid base64)",
            "messages.0.content.1: document omitted: its text/plain data is not valid base64",
            id="base64-text-not-ascii",
        ),
        pytest.param(
            pdf_document(title="report.pdf"),
            "(document 'report.pdf' omitted: the PDF was not converted to text)",
            "messages.0.content.1: document 'report.pdf' omitted: the PDF was not converted "
            "to text",
            id="pdf-the-server-did-not-read",
        ),
        pytest.param(
            {
                "type": "document",
                "source": {"type": "base64", "media_type": "application/msword", "data": "0M8R"},
            },
            "(document omitted: application/msword is not text; NimBridge sends text only)",
            "messages.0.content.1: document omitted: application/msword is not text; "
            "NimBridge sends text only",
            id="base64-other-media-type",
        ),
        pytest.param(
            {"type": "document", "source": {"type": "base64", "media_type": "", "data": "AA"}},
            "(document omitted: data of no media type is not text; NimBridge sends text only)",
            "messages.0.content.1: document omitted: data of no media type is not text; "
            "NimBridge sends text only",
            id="base64-no-media-type",
        ),
        pytest.param(
            {"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}},
            "(document omitted: https://x/a.pdf was not fetched)",
            "messages.0.content.1: document omitted: https://x/a.pdf was not fetched",
            id="url-the-server-did-not-fetch",
        ),
        pytest.param(
            {"type": "document", "source": {"type": "file", "file_id": "file_9"}},
            "(document omitted: file file_9 is in Anthropic's Files API, out of NimBridge's reach)",
            "messages.0.content.1: document omitted: file file_9 is in Anthropic's Files API, "
            "out of NimBridge's reach",
            id="file-id",
        ),
        pytest.param(
            {"type": "document", "source": {"type": "hologram"}},
            "(document omitted: a 'hologram' source cannot be read)",
            "messages.0.content.1: document omitted: a 'hologram' source cannot be read",
            id="unknown-source",
        ),
        pytest.param(
            {
                "type": "search_result",
                "source": "https://kb.example/refunds",
                "title": "Refund policy",
                "content": [text("Refunds within 30 days."), text(""), text("Keep receipts.")],
                "citations": {"enabled": True},
            },
            "Search result: Refund policy\nSource: https://kb.example/refunds\n\n"
            "Refunds within 30 days.\n\nKeep receipts.",
            None,
            id="search-result",
        ),
        pytest.param(
            {"type": "search_result", "content": "plain", "source": 7},
            "Search result\n\nplain",
            None,
            id="search-result-lenient",
        ),
        pytest.param(
            {"type": "search_result", "title": "T", "content": [{"type": "image"}]},
            "Search result: T",
            "messages.0.content.1.content.0: image block inside a search result dropped",
            id="search-result-non-text-dropped-with-a-note",
        ),
    ],
)
@pytest.mark.parametrize("in_tool_result", [False, True])
def test_documents_and_search_results_as_text(
    block: dict[str, Any], expected: str, note: str | None, in_tool_result: bool
) -> None:
    """Never an error: text where there is text, else a note in place and in the notes."""
    if in_tool_result:
        messages = [
            {"role": "user", "content": "read"},
            {"role": "assistant", "content": [tool_use("t1")]},
            {"role": "user", "content": [text("see"), tool_result("t1", [text("file:"), block])]},
        ]
        out, notes = translate(body(messages=messages))
        assert out["messages"][2] == {
            "role": "tool",
            "tool_call_id": "t1",
            "content": f"file:\n{expected}",
        }
        prefix, inner = "messages.0.content.1", "messages.2.content.1.content.1"
        assert notes == ([note.replace(prefix, inner)] if note else [])
        return
    out, notes = translate(body(messages=[{"role": "user", "content": [text("read"), block]}]))
    assert out["messages"] == [{"role": "user", "content": f"read\n\n{expected}"}]
    assert notes == ([note] if note else [])


def test_search_result_in_a_tool_result_note_names_its_place() -> None:
    block = {"type": "search_result", "content": [3]}
    messages = [{"role": "user", "content": [tool_result("x", [block])]}]
    _, notes = translate(body(messages=messages))
    assert notes[0] == (
        "messages.0.content.0.content.0.content.0: None block inside a search result dropped"
    )


@pytest.mark.parametrize(
    ("block", "message"),
    [
        pytest.param(
            {"type": "image", "source": {"type": "file", "file_id": "file_1"}},
            "messages.0.content.1.source.type: image source 'file' is not supported through this "
            "proxy; send the image as base64 or url",
            id="image-file-id",
        ),
    ],
)
def test_content_the_upstream_cannot_take(block: dict[str, Any], message: str) -> None:
    with pytest.raises(ClientRequestError) as caught:
        translate(body(messages=[{"role": "user", "content": [text("read"), block]}]))
    assert caught.value.message == message


# ------------------------------------------------------------------ parameters


@pytest.mark.parametrize(
    ("fields", "route", "expected", "expected_notes"),
    [
        pytest.param({}, ROUTE, {"max_tokens": 100}, [], id="max-tokens-as-is"),
        pytest.param(
            {"max_tokens": 32000},
            route_with(max_output_tokens=4096),
            {"max_tokens": 4096},
            ["max_tokens clamped to 4096"],
            id="max-tokens-clamped",
        ),
        pytest.param(
            {"max_tokens": 4096},
            route_with(max_output_tokens=4096),
            {"max_tokens": 4096},
            [],
            id="max-tokens-at-limit",
        ),
        pytest.param(
            {"stream": True},
            ROUTE,
            {"stream": True, "stream_options": {"include_usage": True}},
            [],
            id="stream-true",
        ),
        pytest.param(
            {"stream": False},
            ROUTE,
            {"stream": None, "stream_options": None},
            [],
            id="stream-false",
        ),
        pytest.param({}, ROUTE, {"stream": None}, [], id="stream-absent"),
        pytest.param({"stop_sequences": ["a", "b"]}, ROUTE, {"stop": ["a", "b"]}, [], id="stop"),
        pytest.param({"stop_sequences": []}, ROUTE, {"stop": None}, [], id="stop-empty"),
        pytest.param(
            {"stop_sequences": ["1", "2", "3", "4", "5"]},
            ROUTE,
            {"stop": ["1", "2", "3", "4"]},
            ["stop_sequences cut to the first 4"],
            id="stop-at-most-4",
        ),
        pytest.param(
            {"temperature": 0.2, "top_p": 1},
            ROUTE,
            {"temperature": 0.2, "top_p": 1},
            [],
            id="sampling",
        ),
        pytest.param(
            {"temperature": None, "top_p": None},
            ROUTE,
            {"temperature": None, "top_p": None},
            [],
            id="sampling-null",
        ),
        pytest.param(
            {"top_k": 40}, route_with(accepts_top_k=True), {"top_k": 40}, [], id="top-k-accepted"
        ),
        pytest.param(
            {"top_k": 40},
            ROUTE,
            {"top_k": None},
            ["top_k dropped: the model does not take it"],
            id="top-k-dropped",
        ),
        pytest.param({"metadata": {"user_id": "u-1"}}, ROUTE, {"user": "u-1"}, [], id="user-id"),
        pytest.param(
            {"metadata": {"user_id": "x" * 65}},
            ROUTE,
            {"user": hashlib.sha256(b"x" * 65).hexdigest()},
            [],
            id="user-id-long-hashed",
        ),
        pytest.param({"metadata": {"user_id": ""}}, ROUTE, {"user": None}, [], id="user-id-empty"),
        pytest.param({"metadata": {"user_id": None}}, ROUTE, {"user": None}, [], id="user-id-null"),
        pytest.param({"metadata": {}}, ROUTE, {"user": None}, [], id="metadata-without-user"),
    ],
)
def test_parameters(
    fields: dict[str, Any], route: ModelRoute, expected: dict[str, Any], expected_notes: list[str]
) -> None:
    out, notes = translate(body(**fields), route)
    assert {key: out.get(key) for key in expected} == expected
    assert notes == expected_notes
    assert out["model"] == "up/model"


SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
FN_SEARCH = {
    "type": "function",
    "function": {"name": "search", "description": "Find.", "parameters": SCHEMA},
}
FN_READ = {"type": "function", "function": {"name": "read", "parameters": SCHEMA}}
TOOLS = [
    {"name": "search", "description": "Find.", "input_schema": SCHEMA, "cache_control": CC},
    {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
    {"type": "custom", "name": "read", "input_schema": SCHEMA},
    {"type": "bash_20250124", "name": "bash"},
]
SERVER_NOTES = ["server tool bash dropped"]
FN_WEB_SEARCH = to_function_tool({"type": "web_search_20250305", "name": "web_search"})


@pytest.mark.parametrize(
    ("fields", "expected", "expected_notes"),
    [
        pytest.param(
            {"tools": TOOLS},
            {
                "tools": [FN_SEARCH, FN_WEB_SEARCH, FN_READ],
                # Anthropic's default, said out loud: llama-cpp-python reads none as "none"
                "tool_choice": "auto",
                "parallel_tool_calls": None,
            },
            SERVER_NOTES,
            id="custom-and-web-tools-kept-other-server-tools-dropped",
        ),
        pytest.param({"tools": []}, {"tools": None}, [], id="no-tools"),
        pytest.param(
            {"tools": TOOLS, "tool_choice": {"type": "auto"}},
            {"tool_choice": "auto"},
            SERVER_NOTES,
            id="tool-choice-auto",
        ),
        pytest.param(
            {"tools": TOOLS, "tool_choice": {"type": "any"}},
            {"tool_choice": "required"},
            SERVER_NOTES,
            id="tool-choice-any",
        ),
        pytest.param(
            {"tools": TOOLS, "tool_choice": {"type": "none"}},
            {"tool_choice": "none"},
            SERVER_NOTES,
            id="tool-choice-none",
        ),
        pytest.param(
            {"tools": TOOLS, "tool_choice": {"type": "tool", "name": "read"}},
            {"tool_choice": {"type": "function", "function": {"name": "read"}}},
            SERVER_NOTES,
            id="tool-choice-tool",
        ),
        pytest.param(
            {"tools": TOOLS, "tool_choice": {"type": "tool", "name": "web_search"}},
            {"tool_choice": {"type": "function", "function": {"name": "web_search"}}},
            SERVER_NOTES,
            id="tool-choice-web-tool",
        ),
        pytest.param(
            {"tools": TOOLS, "tool_choice": {"type": "tool", "name": "bash"}},
            {"tool_choice": "auto"},
            [*SERVER_NOTES, "tool_choice bash is not a forwarded tool; sent auto"],
            id="tool-choice-dropped-tool",
        ),
        pytest.param(
            {"tools": TOOLS, "tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
            {"tool_choice": "auto", "parallel_tool_calls": False},
            SERVER_NOTES,
            id="disable-parallel-tool-use",
        ),
        pytest.param(
            {"tools": TOOLS, "tool_choice": {"type": "any", "disable_parallel_tool_use": False}},
            {"tool_choice": "required", "parallel_tool_calls": None},
            SERVER_NOTES,
            id="parallel-allowed",
        ),
        pytest.param(
            {
                "tools": [TOOLS[3]],
                "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            },
            {"tools": None, "tool_choice": None, "parallel_tool_calls": None},
            ["server tool bash dropped", "tool_choice dropped: no tools to choose from"],
            id="tool-choice-without-tools-omitted",
        ),
    ],
)
def test_tools(fields: dict[str, Any], expected: dict[str, Any], expected_notes: list[str]) -> None:
    out, notes = translate(body(**fields))
    assert {key: out.get(key) for key in expected} == expected
    assert notes == expected_notes


ON, OFF = {"type": "enabled", "budget_tokens": 2048}, {"type": "disabled"}
ADAPTIVE = {"type": "adaptive"}
RS = ReasoningSwitch


@pytest.mark.parametrize(
    ("switch", "fields", "system", "extra"),
    [
        pytest.param(RS.NONE, {"thinking": ON}, "S", {}, id="none-switch"),
        pytest.param(RS.ALWAYS, {"thinking": OFF}, "S", {}, id="always-switch"),
        pytest.param(
            RS.DETAILED_THINKING_SYSTEM,
            {"thinking": ON},
            "detailed thinking on\n\nS",
            {},
            id="detailed-on",
        ),
        pytest.param(
            RS.DETAILED_THINKING_SYSTEM,
            {"thinking": OFF},
            "detailed thinking off\n\nS",
            {},
            id="detailed-off",
        ),
        pytest.param(RS.DETAILED_THINKING_SYSTEM, {}, "S", {}, id="detailed-absent"),
        pytest.param(
            RS.SLASH_THINK_SYSTEM, {"thinking": ADAPTIVE}, "S\n\n/think", {}, id="slash-adaptive"
        ),
        pytest.param(
            RS.SLASH_THINK_SYSTEM, {"thinking": OFF}, "S\n\n/no_think", {}, id="slash-off"
        ),
        pytest.param(
            RS.TEMPLATE_THINKING,
            {"thinking": ON},
            "S",
            {"chat_template_kwargs": {"thinking": True}},
            id="template-thinking-on",
        ),
        pytest.param(
            RS.TEMPLATE_THINKING,
            {"thinking": OFF},
            "S",
            {"chat_template_kwargs": {"thinking": False}},
            id="template-thinking-off",
        ),
        pytest.param(
            RS.TEMPLATE_ENABLE_THINKING,
            {"thinking": ADAPTIVE},
            "S",
            {"chat_template_kwargs": {"enable_thinking": True}},
            id="qwen3-on",
        ),
        pytest.param(
            RS.TEMPLATE_ENABLE_THINKING,
            {"thinking": OFF},
            "S",
            {"chat_template_kwargs": {"enable_thinking": False}},
            id="qwen3-off",
        ),
        pytest.param(RS.TEMPLATE_ENABLE_THINKING, {}, "S", {}, id="qwen3-absent"),
        pytest.param(
            RS.TEMPLATE_ENABLE_THINKING,
            {"thinking": {"type": "sometimes"}},
            "S",
            {},
            id="unknown-type",
        ),
        pytest.param(  # found by tests/fuzz: TypeError (unhashable), a 500 for the client
            RS.TEMPLATE_ENABLE_THINKING,
            {"thinking": {"type": []}},
            "S",
            {},
            id="type-not-a-string",
        ),
        pytest.param(
            RS.REASONING_EFFORT,
            {"thinking": ADAPTIVE, "output_config": {"effort": "max"}},
            "S",
            {"reasoning_effort": "high"},
            id="effort-max",
        ),
        pytest.param(
            RS.REASONING_EFFORT,
            {"thinking": ON, "output_config": {"effort": "low"}},
            "S",
            {"reasoning_effort": "low"},
            id="effort-wins-over-budget",
        ),
        pytest.param(
            RS.REASONING_EFFORT,
            {"thinking": {"type": "enabled", "budget_tokens": 1024}},
            "S",
            {"reasoning_effort": "low"},
            id="budget-low",
        ),
        pytest.param(
            RS.REASONING_EFFORT,
            {
                "thinking": {"type": "enabled", "budget_tokens": 8000},
                "output_config": {"effort": "x"},
            },
            "S",
            {"reasoning_effort": "medium"},
            id="budget-medium-unknown-effort",
        ),
        pytest.param(
            RS.REASONING_EFFORT,
            {"thinking": {"type": "enabled", "budget_tokens": 16384}},
            "S",
            {"reasoning_effort": "high"},
            id="budget-high",
        ),
        pytest.param(
            RS.REASONING_EFFORT,
            {"thinking": {"type": "enabled", "budget_tokens": True}},
            "S",
            {"reasoning_effort": None},
            id="budget-bool-ignored",
        ),
        pytest.param(
            RS.REASONING_EFFORT,
            {"thinking": {"type": "enabled"}},
            "S",
            {"reasoning_effort": None},
            id="no-budget",
        ),
        pytest.param(
            RS.REASONING_EFFORT,
            {"thinking": ADAPTIVE},
            "S",
            {"reasoning_effort": None},
            id="adaptive-no-effort",
        ),
        pytest.param(
            RS.REASONING_EFFORT,
            {"thinking": OFF},
            "S",
            {"reasoning_effort": "low"},
            id="effort-off-is-low",
        ),
        pytest.param(
            RS.REASONING_EFFORT,
            {"output_config": {"effort": "high"}},
            "S",
            {"reasoning_effort": None},
            id="effort-without-thinking-sends-nothing",
        ),
    ],
)
def test_reasoning_switch(
    switch: ReasoningSwitch, fields: dict[str, Any], system: str, extra: dict[str, Any]
) -> None:
    out, notes = translate(body(system="S", **fields), route_with(reasoning=switch))
    assert out["messages"][0] == {"role": "system", "content": system}
    for key in ("chat_template_kwargs", "reasoning_effort"):
        assert out.get(key) == extra.get(key)
    assert notes == []


def test_reasoning_switch_makes_a_system_message() -> None:
    out, _ = translate(body(thinking=OFF), route_with(reasoning=RS.SLASH_THINK_SYSTEM))
    assert out["messages"][0] == {"role": "system", "content": "/no_think"}


# ------------------------------------------------------------------ what the model refuses

IMAGE_URL = {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}
OPENAI_IMAGE = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
TOOL_HISTORY = [
    {"role": "user", "content": "list files"},
    {"role": "assistant", "content": [text("Sure."), tool_use("t1", "bash", {"cmd": "ls"})]},
    {
        "role": "user",
        "content": [tool_result("t1", [text("a.txt"), IMAGE_URL]), text("and now?")],
    },
]
TOOL_FIELDS: dict[str, Any] = {
    "tools": [{"name": "bash", "input_schema": SCHEMA}],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
}


def test_tools_off_sends_no_tools_and_tool_history_as_text() -> None:
    out, notes = translate(
        body(messages=TOOL_HISTORY, **TOOL_FIELDS), route_with(supports_tools=False)
    )
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & out.keys()
    assert out["messages"] == [
        {"role": "user", "content": "list files"},
        {"role": "assistant", "content": 'Sure.\n\n(call of tool bash, id t1)\n{"cmd":"ls"}'},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "(result of tool call t1)\na.txt"},
                OPENAI_IMAGE,
                {"type": "text", "text": "and now?"},
            ],
        },
    ]
    assert notes == [NOTE_TOOL_HISTORY_AS_TEXT, NOTE_TOOLS_DROPPED]


@pytest.mark.parametrize("supports_tools", [None, True])
def test_tools_sent_unless_known_unsupported(supports_tools: bool | None) -> None:
    out, notes = translate(
        body(messages=TOOL_HISTORY, **TOOL_FIELDS), route_with(supports_tools=supports_tools)
    )
    assert out["tools"][0]["function"]["name"] == "bash"
    assert (out["tool_choice"], out["parallel_tool_calls"]) == ("auto", False)
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "tool", "user"]
    assert notes == []


def test_tools_off_without_tool_fields_notes_only_the_history() -> None:
    out, notes = translate(body(messages=TOOL_HISTORY), route_with(supports_tools=False))
    assert "tools" not in out
    assert notes == [NOTE_TOOL_HISTORY_AS_TEXT]
    _, notes = translate(body(tool_choice={"type": "none"}), route_with(supports_tools=False))
    assert notes == [NOTE_TOOLS_DROPPED]
    _, notes = translate(body(), route_with(supports_tools=False))
    assert notes == []


def test_images_off_are_replaced_by_a_short_text() -> None:
    out, notes = translate(body(messages=TOOL_HISTORY), route_with(supports_images=False))
    assert find_keys(out, "image_url") == []
    assert out["messages"][2] == {
        "role": "tool",
        "tool_call_id": "t1",
        "content": f"a.txt\n{IMAGE_OMITTED_TEXT}",
    }
    assert out["messages"][3] == {"role": "user", "content": "and now?"}
    assert notes == ["messages.2.content.0.content.1: image omitted: the model cannot take images"]

    out, notes = translate(
        body(messages=[{"role": "user", "content": [text("what is it?"), IMAGE_URL]}]),
        route_with(supports_images=False),
    )
    assert out["messages"] == [{"role": "user", "content": f"what is it?\n\n{IMAGE_OMITTED_TEXT}"}]
    assert notes == ["messages.0.content.1: image omitted: the model cannot take images"]


def test_images_and_tools_off_together() -> None:
    route = route_with(supports_tools=False, supports_images=False)
    out, _ = translate(body(messages=TOOL_HISTORY), route)
    assert out["messages"][2] == {
        "role": "user",
        "content": f"(result of tool call t1)\na.txt\n{IMAGE_OMITTED_TEXT}\n\nand now?",
    }


@pytest.mark.parametrize(
    ("switch", "refused", "note"),
    [
        pytest.param(
            RS.TEMPLATE_THINKING,
            {"accepts_chat_template_kwargs": False},
            "thinking switch dropped: the model does not take chat_template_kwargs",
            id="template-thinking",
        ),
        pytest.param(
            RS.TEMPLATE_ENABLE_THINKING,
            {"accepts_chat_template_kwargs": False},
            "thinking switch dropped: the model does not take chat_template_kwargs",
            id="template-enable-thinking",
        ),
        pytest.param(
            RS.REASONING_EFFORT,
            {"accepts_reasoning_effort": False},
            "thinking switch dropped: the model does not take reasoning_effort",
            id="reasoning-effort",
        ),
    ],
)
def test_refused_thinking_switch_falls_back_to_nothing(
    switch: ReasoningSwitch, refused: dict[str, bool], note: str
) -> None:
    out, notes = translate(body(thinking=ON), route_with(reasoning=switch, **refused))
    assert "chat_template_kwargs" not in out and "reasoning_effort" not in out
    assert out["messages"] == [USER_HI]
    assert notes == [note]


@pytest.mark.parametrize(
    "refused",
    [{"accepts_reasoning_effort": False}, {"accepts_chat_template_kwargs": False}],
)
def test_a_refusal_only_touches_its_own_switch(refused: dict[str, bool]) -> None:
    out, notes = translate(
        body(thinking=ON), route_with(reasoning=RS.SLASH_THINK_SYSTEM, **refused)
    )
    assert out["messages"][0] == {"role": "system", "content": "/think"}
    assert notes == []


def test_parallel_tool_calls_refused() -> None:
    out, notes = translate(body(**TOOL_FIELDS), route_with(accepts_parallel_tool_calls=False))
    assert out["tool_choice"] == "auto" and "parallel_tool_calls" not in out
    assert notes == ["parallel_tool_calls dropped: the model does not take it"]


def test_stream_options_refused() -> None:
    out, notes = translate(body(stream=True), route_with(accepts_stream_options=False))
    assert out["stream"] is True and "stream_options" not in out
    assert notes == ["stream_options dropped: the model does not take it; usage may be missing"]


def test_output_key_order_is_fixed() -> None:
    request = body(
        system="S",
        stream=True,
        stop_sequences=["x"],
        temperature=0.5,
        top_p=0.9,
        top_k=5,
        metadata={"user_id": "u"},
        tools=TOOLS,
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        thinking=ON,
    )
    out, _ = translate(request, route_with(reasoning=RS.TEMPLATE_THINKING, accepts_top_k=True))
    assert list(out) == [
        "model",
        "messages",
        "max_tokens",
        "stream",
        "stream_options",
        "stop",
        "temperature",
        "top_p",
        "top_k",
        "user",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "chat_template_kwargs",
    ]


def test_notes_list_is_optional_and_input_untouched() -> None:
    request = body(
        system=[text("A", cache_control=CC)],
        tools=TOOLS,
        messages=[{"role": "assistant", "content": [text("x", cache_control=CC)]}],
        stop_sequences=list("abcdef"),
    )
    before = copy.deepcopy(request)
    out = to_openai_request(validate_messages_request(request), ROUTE)
    assert out["stop"] == ["a", "b", "c", "d"]
    assert request == before


# ------------------------------------------------------------------ the real Claude Code request


@pytest.fixture(scope="module")
def claude_code_body() -> dict[str, Any]:
    captured = json.loads((FIXTURES / "requests" / "claude_code_request.json").read_text("utf-8"))
    request: dict[str, Any] = captured["body"]
    return request


def test_claude_code_request(claude_code_body: dict[str, Any]) -> None:
    before = copy.deepcopy(claude_code_body)
    route = ModelRoute(
        "some-model",
        "qwen/qwen3-235b-a22b",
        ModelQuirks(ReasoningSwitch.TEMPLATE_ENABLE_THINKING, max_output_tokens=16384),
    )
    out, notes = translate(claude_code_body, route)
    messages = out["messages"]

    assert [m["role"] for m in messages] == ["system", "user"]
    system = messages[0]["content"]
    assert "x-anthropic-billing-header" not in json.dumps(out)
    assert system.startswith("You are a Claude agent, built on Anthropic's Claude Agent SDK.\n\n")
    # The mid-conversation system message (last in `messages`) is folded in at the end.
    folded = claude_code_body["messages"][-1]["content"]
    assert claude_code_body["messages"][-1]["role"] == "system"
    assert system.endswith("\n\n" + folded)
    assert messages[1]["content"].endswith("\n\nsay hi")

    assert len(out["tools"]) == 24
    assert [t["function"]["name"] for t in out["tools"]] == [
        t["name"] for t in claude_code_body["tools"]
    ]
    for tool in out["tools"]:
        parameters = tool["function"]["parameters"]
        assert parameters["type"] == "object"
        assert boolean_subschemas(parameters) == [], tool["function"]["name"]
        assert "$schema" not in parameters
    assert find_keys(out, "cache_control") == []

    assert out["max_tokens"] == 16384
    assert notes == ["max_tokens clamped to 16384"]
    assert out["chat_template_kwargs"] == {"enable_thinking": True}  # thinking: adaptive
    assert out["stream"] is True
    assert out["stream_options"] == {"include_usage": True}
    assert len(out["user"]) == 64  # the JSON user_id blob, hashed
    assert "context_management" not in out
    assert claude_code_body == before

    again, _ = translate(claude_code_body, route)
    assert json.dumps(again) == json.dumps(out)


# ------------------------------------------------------------------ property: all translate

IDS = st.sampled_from(["t1", "t2", "t3", "t4"])
SHORT = st.text(max_size=8)
CACHE = st.sampled_from([{}, {"cache_control": CC}])

TEXT = st.builds(lambda t, c: {"type": "text", "text": t, **c}, SHORT, CACHE)
IMAGE = st.sampled_from(
    [
        {"type": "image", "source": IMAGE_B64},
        {"type": "image", "source": {"type": "url", "url": "https://x/i.png"}},
    ]
)
DOC = st.builds(
    lambda t: {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": t},
    },
    SHORT,
)
UNKNOWN = st.sampled_from([{"type": "search_result"}, {"type": "server_tool_use", "id": "s"}])
THINKING = st.sampled_from(
    [
        {"type": "thinking", "thinking": "hm", "signature": "s"},
        {"type": "redacted_thinking", "data": "x"},
    ]
)
TOOL_RESULT = st.builds(
    lambda i, c, e, cc: {
        "type": "tool_result",
        "tool_use_id": i,
        "content": c,
        "is_error": e,
        **cc,
    },
    IDS,
    st.one_of(SHORT, st.lists(st.one_of(TEXT, IMAGE), max_size=3), st.none()),
    st.booleans(),
    CACHE,
)
TOOL_USE = st.builds(
    lambda i, n, a: {"type": "tool_use", "id": i, "name": n, "input": a},
    IDS,
    st.sampled_from(["search", "read", "bash"]),
    st.dictionaries(st.sampled_from(["q", "n"]), st.one_of(SHORT, st.integers())),
)
USER_CONTENT = st.one_of(
    SHORT, st.lists(st.one_of(TEXT, IMAGE, DOC, UNKNOWN, THINKING, TOOL_RESULT), max_size=5)
)
ASSISTANT_CONTENT = st.one_of(
    SHORT, st.lists(st.one_of(TEXT, TOOL_USE, THINKING, UNKNOWN, IMAGE), max_size=5)
)
MESSAGE = st.one_of(
    st.builds(lambda c: {"role": "user", "content": c}, USER_CONTENT),
    st.builds(lambda c: {"role": "assistant", "content": c}, ASSISTANT_CONTENT),
    st.builds(
        lambda c: {"role": "system", "content": c}, st.one_of(SHORT, st.lists(TEXT, max_size=2))
    ),
)
TOOL_DEF = st.one_of(
    st.builds(
        lambda n, s: {"name": n, "input_schema": s, "cache_control": CC},
        st.sampled_from(["search", "read"]),
        st.sampled_from(
            [
                SCHEMA,
                {},
                {"type": "object", "properties": {"x": True}, "additionalProperties": False},
            ]
        ),
    ),
    st.just({"type": "web_search_20250305", "name": "web_search"}),
)
TOOL_CHOICE = st.one_of(
    st.none(),
    st.builds(
        lambda t, d: {"type": t, "disable_parallel_tool_use": d},
        st.sampled_from(["auto", "any", "none"]),
        st.booleans(),
    ),
    st.builds(
        lambda n: {"type": "tool", "name": n}, st.sampled_from(["search", "read", "web_search"])
    ),
)
THINKING_FIELD = st.sampled_from(
    [None, ON, OFF, ADAPTIVE, {"type": "enabled", "budget_tokens": 20000}]
)
ROUTES = st.builds(
    lambda r, s, m, k, tools, images, flags: route_with(
        reasoning=r,
        send_reasoning_back=s,
        max_output_tokens=m,
        accepts_top_k=k,
        supports_tools=tools,
        supports_images=images,
        **flags,
    ),
    st.sampled_from(list(ReasoningSwitch)),
    st.booleans(),
    st.sampled_from([None, 50, 4096]),
    st.booleans(),
    st.sampled_from([None, True, False]),
    st.sampled_from([None, True, False]),
    st.fixed_dictionaries(
        {
            name: st.booleans()
            for name in (
                "accepts_chat_template_kwargs",
                "accepts_reasoning_effort",
                "accepts_parallel_tool_calls",
                "accepts_stream_options",
            )
        }
    ),
)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    request = body(messages=draw(st.lists(MESSAGE, min_size=1, max_size=8)))
    for key, strategy in (
        ("system", st.one_of(SHORT, st.lists(TEXT, max_size=3))),
        ("tools", st.lists(TOOL_DEF, max_size=3)),
        ("tool_choice", TOOL_CHOICE),
        ("thinking", THINKING_FIELD),
        ("stop_sequences", st.lists(SHORT, max_size=6)),
        ("stream", st.booleans()),
        ("top_k", st.integers(1, 100)),
        ("output_config", st.sampled_from([{"effort": "low"}, {"effort": "max"}, {}])),
    ):
        if draw(st.booleans()):
            value = draw(strategy)
            if value is not None:
                request[key] = value
    return request


def assert_well_formed(out: dict[str, Any]) -> None:
    messages = out["messages"]
    roles = [m["role"] for m in messages]
    assert "system" not in roles[1:]
    conversation = roles[1:] if roles[0] == "system" else roles
    assert conversation and conversation[0] == "user"
    for before, after in zip(roles, roles[1:], strict=False):
        assert before != after or before == "tool", roles
    for index, message in enumerate(messages):
        if message["role"] == "assistant":
            assert "content" in message
            assert message["content"] is not None or message.get("tool_calls")
        if message["role"] != "tool":
            continue
        assert isinstance(message["content"], str)
        back = index - 1
        while messages[back]["role"] == "tool":
            back -= 1
        owner = messages[back]
        assert owner["role"] == "assistant"
        assert message["tool_call_id"] in {c["id"] for c in owner.get("tool_calls", [])}
    assert find_keys(out, "cache_control") == []
    for tool in out.get("tools", []):
        assert boolean_subschemas(tool["function"]["parameters"]) == []
    if "tool_choice" in out or "parallel_tool_calls" in out:
        assert out.get("tools")
    assert len(out.get("stop", [])) <= 4


def assert_refusals_honoured(out: dict[str, Any], quirks: ModelQuirks) -> None:
    """Nothing the model is known to refuse is sent."""
    if quirks.supports_tools is False:
        assert not {"tools", "tool_choice", "parallel_tool_calls"} & out.keys()
        assert find_keys(out["messages"], "tool_calls") == []
        assert all(m["role"] != "tool" for m in out["messages"])
    if quirks.supports_images is False:
        assert find_keys(out, "image_url") == []
    for flag, key in (
        ("accepts_top_k", "top_k"),
        ("accepts_chat_template_kwargs", "chat_template_kwargs"),
        ("accepts_reasoning_effort", "reasoning_effort"),
        ("accepts_parallel_tool_calls", "parallel_tool_calls"),
        ("accepts_stream_options", "stream_options"),
    ):
        if not getattr(quirks, flag):
            assert key not in out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests(), route=ROUTES)
def test_any_well_formed_request_translates(request: dict[str, Any], route: ModelRoute) -> None:
    before = copy.deepcopy(request)
    out, _ = translate(request, route)
    assert_well_formed(out)
    assert_refusals_honoured(out, route.quirks)
    assert request == before
    assert json.dumps(translate(request, route)[0]) == json.dumps(out)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests(), route=ROUTES, quirks=ROUTES)
def test_quirks_and_offered_tools_given_change_nothing(
    request: dict[str, Any], route: ModelRoute, quirks: ModelRoute
) -> None:
    # What a retry's body builder passes: the quirks known now, the tools worked out once.
    req = validate_messages_request(request)
    notes: list[str] = []
    expected = to_openai_request(req, replace(route, quirks=quirks.quirks), notes=notes)
    given_notes: list[str] = []
    out = to_openai_request(
        req, route, notes=given_notes, quirks=quirks.quirks, offered=offer_tools(req)
    )
    assert json.dumps(out) == json.dumps(expected)
    assert given_notes == notes


PLAIN_MESSAGE = st.builds(
    lambda role, content: {"role": role, "content": content},
    st.sampled_from(["user", "assistant", "system"]),
    SHORT,
)


@settings(max_examples=300, deadline=None)
@given(messages=st.lists(PLAIN_MESSAGE, min_size=1, max_size=8), route=ROUTES)
def test_plain_text_conversations_translate_as_their_text_blocks_do(
    messages: list[dict[str, Any]], route: ModelRoute
) -> None:
    # String contents take a path of their own; as text blocks they take the general one.
    as_blocks = [
        {**message, "content": [{"type": "text", "text": message["content"]}]}
        for message in messages
    ]
    # (They differ only on a system text holding the billing header: too long for SHORT.)
    assert translate(body(messages=messages), route) == translate(body(messages=as_blocks), route)


def test_offered_tools_notes_keep_their_place() -> None:
    loading = {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "t1",
                "content": "<functions>\nbad\n</functions>",
            }
        ],
    }
    request = body(
        messages=[
            {"role": "user", "content": [{"type": "unknown_kind"}]},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "s", "input": {}}],
            },
            loading,
        ],
        tools=[{"name": "s", "input_schema": SCHEMA}],
        top_k=5,
    )
    req = validate_messages_request(request)
    out, notes = translate(request)
    given_notes: list[str] = []
    given = to_openai_request(req, ROUTE, notes=given_notes, offered=offer_tools(req))
    assert given == out
    assert given_notes == notes
    assert notes == [
        "messages.0.content.0: unknown_kind block dropped",
        "conversation does not start with a user turn; inserted one",
        "top_k dropped: the model does not take it",
        "messages.2.content.0: malformed <function> line 1 skipped",  # where offering notes it
    ]


# ------------------------------------------------------------------ server tool history

USE = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}}
USE2 = {**USE, "id": "srvtoolu_2", "input": {"query": "r"}}
RESULT = {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}
RESULT2 = {**RESULT, "tool_use_id": "srvtoolu_2"}
CALL1 = {
    "id": "srvtoolu_1",
    "type": "function",
    "function": {"name": "web_search", "arguments": '{"query":"q"}'},
}
CALL2 = {
    "id": "srvtoolu_2",
    "type": "function",
    "function": {"name": "web_search", "arguments": '{"query":"r"}'},
}
NO_RESULTS = "No results found."
CLIENT_USE = {"type": "tool_use", "id": "toolu_9", "name": "get", "input": {}}
CLIENT_CALL = {"id": "toolu_9", "type": "function", "function": {"name": "get", "arguments": "{}"}}


def tool(call_id: str, content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


@pytest.mark.parametrize(
    ("assistant", "after", "route", "expected", "expected_notes"),
    [
        pytest.param(
            [text("Let me look."), USE, RESULT, text("Found nothing.")],
            [],
            ROUTE,
            [
                {"role": "assistant", "content": "Let me look.", "tool_calls": [CALL1]},
                tool("srvtoolu_1", NO_RESULTS),
                {"role": "assistant", "content": "Found nothing."},
            ],
            [],
            id="call-result-text",
        ),
        pytest.param(
            [USE, USE2, RESULT, RESULT2, text("Two.")],
            [],
            ROUTE,
            [
                {"role": "assistant", "content": None, "tool_calls": [CALL1, CALL2]},
                tool("srvtoolu_1", NO_RESULTS),
                tool("srvtoolu_2", NO_RESULTS),
                {"role": "assistant", "content": "Two."},
            ],
            [],
            id="two-calls-two-results",
        ),
        pytest.param(
            [USE, CLIENT_USE, RESULT],
            [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "12:00"}],
            ROUTE,
            [
                {"role": "assistant", "content": None, "tool_calls": [CALL1, CLIENT_CALL]},
                tool("srvtoolu_1", NO_RESULTS),
                tool("toolu_9", "12:00"),
            ],
            [],
            id="server-and-client-calls-then-client-result",
        ),
        pytest.param(
            [USE, RESULT],
            [text("next")],
            ROUTE,
            [
                {"role": "assistant", "content": None, "tool_calls": [CALL1]},
                tool("srvtoolu_1", NO_RESULTS),
                {"role": "user", "content": "next"},
            ],
            [],
            id="results-end-the-turn",
        ),
        pytest.param(
            [text("Hm."), USE],
            [],
            ROUTE,
            [
                {
                    "role": "assistant",
                    "content": 'Hm.\n\n(call of tool web_search, id srvtoolu_1)\n{"query":"q"}',
                }
            ],
            ["messages.1.content.1: server_tool_use without its result; sent as text"],
            id="call-without-result-as-text",
        ),
        pytest.param(
            [USE, RESULT, {**RESULT, "content": {"type": "x", "error_code": "unavailable"}}],
            [],
            ROUTE,
            [
                {"role": "assistant", "content": None, "tool_calls": [CALL1]},
                tool("srvtoolu_1", NO_RESULTS),
                {
                    "role": "assistant",
                    "content": "(result of tool call srvtoolu_1)\n"
                    "Error: web_search failed (unavailable)",
                },
            ],
            [],
            id="a-second-result-of-one-call-as-text",
        ),
        pytest.param(
            [USE, RESULT],
            [],
            route_with(supports_tools=False),
            [
                {
                    "role": "assistant",
                    "content": '(call of tool web_search, id srvtoolu_1)\n{"query":"q"}\n\n'
                    "(result of tool call srvtoolu_1)\nNo results found.",
                }
            ],
            [NOTE_TOOL_HISTORY_AS_TEXT],
            id="model-without-tools-reads-text",
        ),
        pytest.param(
            [{"type": "server_tool_use", "input": "odd"}],
            [],
            ROUTE,
            [
                {
                    "role": "assistant",
                    "content": "(call of tool , id messages.1.content.0)\n{}",
                }
            ],
            ["messages.1.content.0: server_tool_use without its result; sent as text"],
            id="malformed-call-read-leniently",
        ),
    ],
)
def test_server_tool_history(
    assistant: list[Any],
    after: list[Any],
    route: ModelRoute,
    expected: list[Any],
    expected_notes: list[str],
) -> None:
    messages = [USER_HI, {"role": "assistant", "content": assistant}]
    if after:
        messages.append({"role": "user", "content": after})
    out, notes = translate(body(messages=messages), route)
    assert out["messages"] == [USER_HI, *expected]
    assert notes == expected_notes


def test_server_tool_texts_override_what_the_block_says() -> None:
    request = body(messages=[USER_HI, {"role": "assistant", "content": [USE, RESULT]}])
    out = to_openai_request(
        validate_messages_request(request), ROUTE, server_tool_texts={"srvtoolu_1": "set it up"}
    )
    assert out["messages"][2] == tool("srvtoolu_1", "set it up")


# ------------------------------------------------------------------ deferred tools (tool search)

NOTEBOOK_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {"notebook_path": {"type": "string"}, "new_source": {"type": "string"}},
    "required": ["notebook_path", "new_source"],
    "additionalProperties": False,
}
NOTEBOOK_PARAMETERS = {
    "type": "object",
    "properties": {"notebook_path": {"type": "string"}, "new_source": {"type": "string"}},
    "required": ["notebook_path", "new_source"],
}
DEFERRED_TOOLS = [
    {"name": "Bash", "description": "Run", "input_schema": {"type": "object", "properties": {}}},
    {"name": "ToolSearch", "input_schema": {"type": "object", "properties": {}}},
    {
        "name": "DeferredToolPlaceholder",
        "description": "never call this tool",
        "input_schema": {"type": "object", "properties": {}},
        "defer_loading": True,
    },
    {
        "name": "NotebookEdit",
        "description": "Edit a notebook",
        "input_schema": NOTEBOOK_SCHEMA,
        "defer_loading": True,
    },
]
SEARCH_CALL = tool_use("toolu_s", "ToolSearch", {"query": "select:NotebookEdit"})
FUNCTIONS_TEXT = (
    "<functions>\n<function>"
    + json.dumps(
        {"description": "Edit a notebook", "name": "NotebookEdit", "parameters": NOTEBOOK_SCHEMA}
    )
    + "</function>\n</functions>"
)
FN_NOTEBOOK = {
    "type": "function",
    "function": {
        "name": "NotebookEdit",
        "description": "Edit a notebook",
        "parameters": NOTEBOOK_PARAMETERS,
    },
}
FN_BASH = {
    "type": "function",
    "function": {
        "name": "Bash",
        "description": "Run",
        "parameters": {"type": "object", "properties": {}},
    },
}
FN_TOOL_SEARCH = {
    "type": "function",
    "function": {"name": "ToolSearch", "parameters": {"type": "object", "properties": {}}},
}


def searched(result_content: Any, **fields: Any) -> dict[str, Any]:
    messages = [
        USER_HI,
        {"role": "assistant", "content": [SEARCH_CALL]},
        {"role": "user", "content": [tool_result("toolu_s", result_content)]},
    ]
    return body(messages=messages, tools=DEFERRED_TOOLS, **fields)


@pytest.mark.parametrize(
    ("request_body", "expected_tools", "tool_message", "expected_notes"),
    [
        pytest.param(
            body(tools=DEFERRED_TOOLS), [FN_BASH, FN_TOOL_SEARCH], None, [], id="nothing-loaded"
        ),
        pytest.param(
            searched([{"type": "tool_reference", "tool_name": "NotebookEdit"}]),
            [FN_BASH, FN_TOOL_SEARCH, FN_NOTEBOOK],
            "Tool NotebookEdit is now available.",
            [],
            id="tool-reference",
        ),
        pytest.param(
            searched(
                [
                    {"type": "tool_reference", "tool_name": "NotebookEdit"},
                    {"type": "tool_reference", "tool_name": "Gone"},
                ]
            ),
            [FN_BASH, FN_TOOL_SEARCH, FN_NOTEBOOK],
            "Tool NotebookEdit is now available.\nTool Gone is now available.",
            ["messages.2.content.0.content.1: tool_reference to unknown tool Gone"],
            id="unknown-reference",
        ),
        pytest.param(
            searched(FUNCTIONS_TEXT),
            [FN_BASH, FN_TOOL_SEARCH, FN_NOTEBOOK],
            FUNCTIONS_TEXT,
            [],
            id="functions-text-stays-in-tool-message",
        ),
    ],
)
def test_deferred_tools(
    request_body: dict[str, Any],
    expected_tools: list[Any],
    tool_message: str | None,
    expected_notes: list[str],
) -> None:
    out, notes = translate(request_body)
    assert out["tools"] == expected_tools
    tool_messages = [m["content"] for m in out["messages"] if m["role"] == "tool"]
    assert tool_messages == ([tool_message] if tool_message is not None else [])
    assert notes == expected_notes
    # Same request, same bytes: prefix caches hit.
    again, _ = translate(copy.deepcopy(request_body))
    assert json.dumps(again) == json.dumps(out)


def test_tool_choice_names_a_loaded_tool() -> None:
    choice = {"type": "tool", "name": "NotebookEdit"}
    out, notes = translate(searched(FUNCTIONS_TEXT, tool_choice=choice))
    assert out["tool_choice"] == {"type": "function", "function": {"name": "NotebookEdit"}}
    assert notes == []
    before_loading, notes = translate(body(tools=DEFERRED_TOOLS, tool_choice=choice))
    assert before_loading["tool_choice"] == "auto"
    assert notes == ["tool_choice NotebookEdit is not a forwarded tool; sent auto"]


def test_only_deferred_tools_and_none_loaded_sends_no_tools() -> None:
    out, notes = translate(body(tools=DEFERRED_TOOLS[2:], tool_choice={"type": "auto"}))
    assert "tools" not in out
    assert notes == ["tool_choice dropped: no tools to choose from"]


def test_claude_code_332_request_offers_no_placeholder() -> None:
    captured = json.loads(
        (FIXTURES / "requests" / "claude_code_2.1.332_request.json").read_text("utf-8")
    )
    out, _ = translate(captured["body"])
    offered = [t["function"]["name"] for t in out["tools"]]
    assert "DeferredToolPlaceholder" not in offered
    assert offered == [
        t["name"] for t in captured["body"]["tools"] if t["name"] != "DeferredToolPlaceholder"
    ]


@pytest.mark.parametrize(
    ("thinking_blocks", "expected_reasoning"),
    [
        pytest.param(
            [{"type": "thinking", "thinking": "", "signature": reasoning_signature("packed")}],
            "packed",
            id="omitted-from-our-signature",
        ),
        pytest.param(
            [
                {"type": "thinking", "thinking": "", "signature": reasoning_signature("one")},
                {"type": "thinking", "thinking": "two", "signature": "nimbridge"},
            ],
            "one\n\ntwo",
            id="omitted-and-summarized-mixed",
        ),
        pytest.param(
            [
                {"type": "thinking", "thinking": "", "signature": "EqQBCkgIARABGAIiQL2u0fZq=="},
                {"type": "thinking", "thinking": "", "signature": REASONING_SIGNATURE_PREFIX + "!"},
                {"type": "thinking", "thinking": "", "signature": ["not", "a", "str"]},
            ],
            None,
            id="signatures-not-ours-ignored",
        ),
    ],
)
def test_omitted_reasoning_sent_back(
    thinking_blocks: list[dict[str, Any]], expected_reasoning: str | None
) -> None:
    content = [*thinking_blocks, tool_use("t1")]
    messages = [USER_HI, {"role": "assistant", "content": content}]
    out, notes = translate(body(messages=messages), route_with(send_reasoning_back=True))
    assert out["messages"][1].get("reasoning_content") == expected_reasoning
    assert out["messages"][1]["tool_calls"] == [openai_call("t1")]
    assert notes == []
    out, _ = translate(body(messages=messages), route_with(send_reasoning_back=False))
    assert "reasoning_content" not in out["messages"][1]


# ------------------------------------------------------------------ llama-cpp-python (issue 18)

ONE_TOOL = [{"name": "get_time", "input_schema": {"type": "object"}}]


@pytest.mark.parametrize(
    ("tools", "choice", "expected", "expected_notes"),
    [
        pytest.param(
            ONE_TOOL,
            {"type": "any"},
            {"type": "function", "function": {"name": "get_time"}},
            [],
            id="one-tool-named",
        ),
        pytest.param(
            [*ONE_TOOL, {"name": "other", "input_schema": {"type": "object"}}],
            {"type": "any"},
            "auto",
            ["tool_choice any sent as auto: the model does not take required"],
            id="several-tools-auto-noted",
        ),
        pytest.param(ONE_TOOL, None, "auto", [], id="none-given-auto"),
    ],
)
def test_tool_choice_without_required(
    tools: list[Any], choice: Any, expected: Any, expected_notes: list[str]
) -> None:
    fields: dict[str, Any] = {"tools": tools}
    if choice is not None:
        fields["tool_choice"] = choice
    out, notes = translate(body(**fields), route_with(accepts_required_tool_choice=False))
    assert out["tool_choice"] == expected
    assert notes == expected_notes


@pytest.mark.parametrize(("accepts", "content"), [(True, None), (False, "")])
def test_tool_only_assistant_turn_content(accepts: bool, content: str | None) -> None:
    messages = [
        {"role": "user", "content": "time?"},
        {"role": "assistant", "content": [tool_use("t1", "get_time", {})]},
        {"role": "user", "content": [tool_result("t1", "noon")]},
    ]
    out, _ = translate(body(messages=messages), route_with(accepts_null_content=accepts))
    assert out["messages"][1]["content"] == content
    assert out["messages"][1]["tool_calls"][0]["id"] == "t1"
