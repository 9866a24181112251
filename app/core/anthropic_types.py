"""Anthropic Messages API wire types (the client side of the proxy).

Wire names are kept as the API spells them. Incoming JSON is validated by
`request_validation.validate_messages_request`; after that, code reads it through
these TypedDicts.
"""

from typing import Any, Literal, NotRequired, Required, TypedDict

JSONObject = dict[str, Any]


class TextBlock(TypedDict, total=False):
    type: Required[Literal["text"]]
    text: Required[str]
    cache_control: JSONObject
    citations: list[JSONObject]


class ThinkingBlock(TypedDict):
    type: Literal["thinking"]
    thinking: str
    signature: str


class ToolUseBlock(TypedDict):
    type: Literal["tool_use"]
    id: str
    name: str
    input: JSONObject


ContentBlock = TextBlock | ThinkingBlock | ToolUseBlock


class Usage(TypedDict, total=False):
    input_tokens: Required[int]
    output_tokens: Required[int]
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    # {web_search_requests, web_fetch_requests}: what NimBridge's server tools ran
    server_tool_use: dict[str, int]


class Message(TypedDict):
    """A complete (non-streamed) response, also the payload of `message_start`."""

    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[ContentBlock]
    stop_reason: str | None
    stop_sequence: str | None
    usage: Usage


class MessagesRequest(TypedDict, total=False):
    model: Required[str]
    max_tokens: Required[int]
    messages: Required[list[JSONObject]]
    system: str | list[JSONObject]
    stop_sequences: list[str]
    stream: bool
    temperature: float
    top_p: float
    top_k: int
    tools: list[JSONObject]
    tool_choice: JSONObject
    metadata: JSONObject
    thinking: JSONObject
    output_config: JSONObject


class ErrorDetail(TypedDict):
    type: str
    message: str


class ErrorBody(TypedDict):
    type: Literal["error"]
    error: ErrorDetail


class StreamEvent(TypedDict, total=False):
    """Any Anthropic stream event; `type` is also the SSE `event:` name.

    message_start{message} | content_block_start{index, content_block} |
    content_block_delta{index, delta} | content_block_stop{index} |
    message_delta{delta, usage} | message_stop | ping | error{error}
    """

    type: Required[str]
    message: Message
    index: int
    content_block: JSONObject
    delta: JSONObject
    usage: JSONObject
    error: ErrorDetail


PING_EVENT: StreamEvent = {"type": "ping"}

__all__ = [
    "PING_EVENT",
    "ContentBlock",
    "ErrorBody",
    "ErrorDetail",
    "JSONObject",
    "Message",
    "MessagesRequest",
    "NotRequired",
    "StreamEvent",
    "TextBlock",
    "ThinkingBlock",
    "ToolUseBlock",
    "Usage",
]
