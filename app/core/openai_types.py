"""OpenAI Chat Completions wire types (the upstream side of the proxy).

Upstreams differ (see PROTOCOL.md, quirks): everything read from them is
treated as possibly missing or null, so responses are read as plain dicts and
these types describe what we *send* and the shape we *expect*.
"""

from typing import Any, Literal, Required, TypedDict

JSONObject = dict[str, Any]


class FunctionCall(TypedDict):
    name: str
    arguments: str


class ToolCall(TypedDict):
    id: str
    type: Literal["function"]
    function: FunctionCall


class ChatMessage(TypedDict, total=False):
    role: Required[Literal["system", "user", "assistant", "tool"]]
    content: str | list[JSONObject] | None
    tool_calls: list[ToolCall]
    tool_call_id: str
    reasoning_content: str


class ChatRequest(TypedDict, total=False):
    model: Required[str]
    messages: Required[list[ChatMessage]]
    max_tokens: int
    stream: bool
    stream_options: JSONObject
    stop: list[str]
    temperature: float
    top_p: float
    top_k: int
    user: str
    tools: list[JSONObject]
    tool_choice: str | JSONObject
    parallel_tool_calls: bool
    chat_template_kwargs: JSONObject
    reasoning_effort: str


# A parsed `chat.completion.chunk` or `chat.completion` body, as received.
ChatCompletionChunk = JSONObject
ChatCompletion = JSONObject
