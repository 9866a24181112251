"""app.core.request_validation: every refusal names its field; unknown fields pass."""

from typing import Any

import pytest

from app.core.errors import ClientRequestError
from app.core.request_validation import validate_messages_request
from tests.unit.core.test_request_map import (
    body,
    tool_result,
)

# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        pytest.param([], "body: expected a JSON object", id="body-not-object"),
        pytest.param(
            {"max_tokens": 1, "messages": []}, "model: Field required", id="model-missing"
        ),
        pytest.param(body(model=3), "model: Input should be a valid string", id="model-not-string"),
        pytest.param(
            {"model": "m", "messages": [{"role": "user", "content": "x"}]},
            "max_tokens: Field required",
            id="max-tokens-missing",
        ),
        pytest.param(
            body(max_tokens="9"), "max_tokens: Input should be a valid integer", id="max-tokens-str"
        ),
        pytest.param(
            body(max_tokens=True),
            "max_tokens: Input should be a valid integer",
            id="max-tokens-bool",
        ),
        pytest.param(
            body(max_tokens=0),
            "max_tokens: Input should be greater than or equal to 1",
            id="max-tokens-zero",
        ),
        pytest.param(
            {"model": "m", "max_tokens": 1}, "messages: Field required", id="messages-missing"
        ),
        pytest.param(
            body(messages={"role": "user"}),
            "messages: Input should be a valid list",
            id="messages-not-list",
        ),
        pytest.param(
            body(messages=[]),
            "messages: List should have at least 1 item after validation, not 0",
            id="messages-empty",
        ),
        pytest.param(
            body(messages=["hi"]),
            "messages.0: Input should be a valid dictionary",
            id="message-not-object",
        ),
        pytest.param(
            body(messages=[{"content": "x"}]), "messages.0.role: Field required", id="role-missing"
        ),
        pytest.param(
            body(messages=[{"role": "tool", "content": "x"}]),
            "messages.0.role: Input should be 'user', 'assistant' or 'system'",
            id="role-invalid",
        ),
        pytest.param(
            body(messages=[{"role": "user"}]),
            "messages.0.content: Field required",
            id="content-missing",
        ),
        pytest.param(
            body(messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": 5}]),
            "messages.1.content: Input should be a valid string or list of content blocks",
            id="content-not-string-or-list",
        ),
        pytest.param(
            body(messages=[{"role": "user", "content": ["x"]}]),
            "messages.0.content.0: Input should be a valid dictionary",
            id="block-not-object",
        ),
        pytest.param(
            body(messages=[{"role": "user", "content": [{"text": "x"}]}]),
            "messages.0.content.0.type: Field required",
            id="block-type-missing",
        ),
        pytest.param(
            body(messages=[{"role": "user", "content": [{"type": 1}]}]),
            "messages.0.content.0.type: Input should be a valid string",
            id="block-type-not-string",
        ),
        pytest.param(
            body(messages=[{"role": "user", "content": [{"type": "text"}]}]),
            "messages.0.content.0.text: Field required",
            id="text-missing",
        ),
        pytest.param(
            body(messages=[{"role": "user", "content": [{"type": "image"}]}]),
            "messages.0.content.0.source: Input should be a valid dictionary",
            id="image-source-missing",
        ),
        pytest.param(
            body(messages=[{"role": "user", "content": [{"type": "image", "source": {}}]}]),
            "messages.0.content.0.source.type: Field required",
            id="image-source-type-missing",
        ),
        pytest.param(
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "base64", "data": "x"}}],
                    }
                ]
            ),
            "messages.0.content.0.source.media_type: Field required",
            id="image-media-type-missing",
        ),
        pytest.param(
            body(
                messages=[
                    {"role": "user", "content": [{"type": "image", "source": {"type": "url"}}]}
                ]
            ),
            "messages.0.content.0.source.url: Field required",
            id="image-url-missing",
        ),
        pytest.param(
            body(
                messages=[
                    {"role": "user", "content": [{"type": "document", "source": {"type": "text"}}]}
                ]
            ),
            "messages.0.content.0.source.data: Field required",
            id="document-text-data-missing",
        ),
        pytest.param(
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "document", "source": {"type": "content", "content": [1]}}
                        ],
                    }
                ]
            ),
            "messages.0.content.0.source.content.0: Input should be a valid dictionary",
            id="document-content-block-invalid",
        ),
        pytest.param(
            body(messages=[{"role": "assistant", "content": [{"type": "tool_use", "name": "f"}]}]),
            "messages.0.content.0.id: Field required",
            id="tool-use-id-missing",
        ),
        pytest.param(
            body(
                messages=[
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "a", "name": "f", "input": "{}"}],
                    }
                ]
            ),
            "messages.0.content.0.input: Input should be a valid dictionary",
            id="tool-use-input-not-object",
        ),
        pytest.param(
            body(messages=[{"role": "user", "content": [{"type": "tool_result"}]}]),
            "messages.0.content.0.tool_use_id: Field required",
            id="tool-result-id-missing",
        ),
        pytest.param(
            body(messages=[{"role": "user", "content": [tool_result("a", content=3)]}]),
            "messages.0.content.0.content: "
            "Input should be a valid string or list of content blocks",
            id="tool-result-content-invalid",
        ),
        pytest.param(
            body(
                messages=[
                    {"role": "user", "content": [tool_result("a", content=[{"type": "text"}])]}
                ]
            ),
            "messages.0.content.0.content.0.text: Field required",
            id="tool-result-inner-text-missing",
        ),
        pytest.param(
            body(system=7),
            "system: Input should be a valid string or list of content blocks",
            id="system-invalid",
        ),
        pytest.param(
            body(system=[{"type": "text"}]), "system.0.text: Field required", id="system-block-text"
        ),
        pytest.param(body(stream="yes"), "stream: Input should be a valid boolean", id="stream"),
        pytest.param(
            body(temperature="hot"), "temperature: Input should be a valid number", id="temperature"
        ),
        pytest.param(body(top_p=True), "top_p: Input should be a valid number", id="top-p-bool"),
        pytest.param(body(top_k=1.5), "top_k: Input should be a valid integer", id="top-k-float"),
        pytest.param(
            body(metadata=[]), "metadata: Input should be a valid dictionary", id="metadata"
        ),
        pytest.param(
            body(thinking="on"), "thinking: Input should be a valid dictionary", id="thinking"
        ),
        pytest.param(
            body(stop_sequences="END"),
            "stop_sequences: Input should be a valid list",
            id="stop-sequences-not-list",
        ),
        pytest.param(
            body(stop_sequences=["a", 2]),
            "stop_sequences.1: Input should be a valid string",
            id="stop-sequence-not-string",
        ),
        pytest.param(body(tools={}), "tools: Input should be a valid list", id="tools-not-list"),
        pytest.param(
            body(tools=["Bash"]),
            "tools.0: Input should be a valid dictionary",
            id="tool-not-object",
        ),
        pytest.param(
            body(tools=[{"input_schema": {}}]), "tools.0.name: Field required", id="tool-name"
        ),
        pytest.param(
            body(tools=[{"name": "f"}]),
            "tools.0.input_schema: Field required",
            id="custom-tool-schema-missing",
        ),
        pytest.param(
            body(tools=[{"type": "custom", "name": "f", "input_schema": "{}"}]),
            "tools.0.input_schema: Input should be a valid dictionary",
            id="tool-schema-not-object",
        ),
        pytest.param(
            body(tool_choice={"type": "some"}),
            "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'",
            id="tool-choice-type",
        ),
        pytest.param(
            body(tool_choice={"type": "tool"}),
            "tool_choice.name: Field required",
            id="tool-choice-name",
        ),
    ],
)
def test_validation_errors(request_body: Any, message: str) -> None:
    with pytest.raises(ClientRequestError) as caught:
        validate_messages_request(request_body)
    assert caught.value.message == message
    assert caught.value.status == 400
    assert caught.value.error_type == "invalid_request_error"


@pytest.mark.parametrize(
    "request_body",
    [
        pytest.param(
            body(
                context_management={"edits": []},
                service_tier="auto",
                container="c",
                mcp_servers=[{"name": "x"}],
                output_config={"effort": "high"},
                betas=["x"],
            ),
            id="unknown-top-level-fields",
        ),
        pytest.param(
            body(messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]),
            id="system-role-message",
        ),
        pytest.param(
            body(messages=[{"role": "user", "content": [{"type": "search_result", "x": 1}]}]),
            id="unknown-block-type",
        ),
        pytest.param(
            body(system=None, temperature=None, top_p=None, top_k=None, stream=None, tools=None),
            id="nulls-for-optional-fields",
        ),
        pytest.param(
            body(tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]),
            id="server-tool-without-schema",
        ),
        pytest.param(
            body(messages=[{"role": "user", "content": [tool_result("a", content=None)]}]),
            id="tool-result-null-content",
        ),
        pytest.param(
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "document",
                                "title": "r.pdf",
                                "context": "c",
                                "citations": {"enabled": True},
                                "source": {"type": "url", "url": "https://x/r.pdf"},
                            },
                            {
                                "type": "document",
                                "source": {
                                    "type": "base64",
                                    "media_type": "text/plain",
                                    "data": "",
                                },
                            },
                            {"type": "document", "source": {"type": "file", "file_id": "file_1"}},
                        ],
                    }
                ]
            ),
            id="documents-by-url-base64-text-and-file",
        ),
        pytest.param(
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            tool_result(
                                "a",
                                content=[
                                    {
                                        "type": "search_result",
                                        "source": "https://kb/1",
                                        "title": "T",
                                        "content": [{"type": "text", "text": "x"}],
                                    },
                                    {
                                        "type": "document",
                                        "source": {
                                            "type": "base64",
                                            "media_type": "application/pdf",
                                            "data": "JVBE",
                                        },
                                    },
                                ],
                            )
                        ],
                    }
                ]
            ),
            id="search-result-and-pdf-in-a-tool-result",
        ),
        *(
            pytest.param(body(thinking={"type": kind, "display": display}), id=f"{kind}-{display}")
            for kind in ("adaptive", "enabled", "disabled")
            for display in ("omitted", "summarized", "shown-in-full", None, 3, ["omitted"])
        ),
    ],
)
def test_validation_accepts(request_body: dict[str, Any]) -> None:
    assert validate_messages_request(request_body) is request_body
