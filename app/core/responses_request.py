"""OpenAI Responses request -> the Anthropic Messages request NimBridge already serves.

Codex CLI speaks only the Responses API. Rather than a second translator to Chat
Completions, a Responses request becomes a `MessagesRequest`, and from there takes
the same road as Claude Code's: routing, quirks, the Chat mapping, pacing, retries,
server tools (web search), records. The answer comes back through
`responses_stream.py` (Anthropic events / message -> Responses events / response).

How each part maps (table-driven where it is a table):
- `instructions`, and developer/system messages before the conversation -> `system`;
  a developer/system message later on -> a user text block tagged `[developer]`
  (Chat has no mid-conversation system turn that every model takes).
- user/assistant messages: `input_text`/`output_text`/`refusal` -> text,
  `input_image` -> image (data URL -> base64, else URL), `input_file` -> document
  (PDF data) or a note. A plain string `input` is one user message.
- `function_call` -> assistant `tool_use` (id = `call_id`), `function_call_output`
  -> user `tool_result`, in order; consecutive items of one role share a turn.
- `reasoning` -> a `thinking` block: its summary/content text, and its
  `encrypted_content` as the signature (ours carries the reasoning, see
  `thinking_display.py`), so models that want their reasoning back get it.
- tools: `function` as is; the functions of a `namespace` tool flattened to
  `NAMESPACE__NAME` (`ToolNames` maps them back); `web_search` -> NimBridge's own
  web search (`web_search_20250305`, run by `app/server/server_tools/runner.py`).
- `tool_choice` auto/none/required/function, `parallel_tool_calls: false`,
  `reasoning.effort` (none -> thinking off), `max_output_tokens`, `temperature`,
  `top_p`. `store` is honoured by keeping nothing (NimBridge never does);
  `previous_response_id` needs stored state: a clear 400.
"""

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.core.anthropic_types import JSONObject, MessagesRequest
from app.core.errors import ClientRequestError

# Codex sends no max_output_tokens; Claude Code's own default output budget.
DEFAULT_MAX_OUTPUT_TOKENS = 32000
NAMESPACE_SEPARATOR = "__"
WEB_SEARCH_TOOL: JSONObject = {"type": "web_search_20250305", "name": "web_search"}

_TEXT_PART_TYPES = ("input_text", "output_text", "text", "summary_text", "reasoning_text")
_SYSTEM_ROLES = ("developer", "system")
# Fields with no effect here, named so that they are not reported as dropped.
_IGNORED_FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "stream",
        "store",
        "include",
        "prompt_cache_key",
        "client_metadata",
        "metadata",
        "user",
        "service_tier",
        "truncation",
        "stream_options",
        "safety_identifier",
        "prompt_cache_retention",
        "background",
        "text",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning",
        "max_output_tokens",
        "temperature",
        "top_p",
        "previous_response_id",
    }
)
# reasoning.effort -> the Anthropic `output_config.effort` the Chat mapping reads.
EFFORT_BY_REASONING_EFFORT: dict[str, str] = {
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "max",
}
TOOL_CHOICE_BY_NAME: dict[str, JSONObject] = {
    "auto": {"type": "auto"},
    "none": {"type": "none"},
    "required": {"type": "any"},
}


@dataclass(frozen=True, slots=True)
class ToolNames:
    """Flat upstream tool names -> (namespace, name) as the client declared them."""

    namespaced: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def client_name(self, flat: str) -> tuple[str | None, str]:
        found = self.namespaced.get(flat)
        return found if found is not None else (None, flat)

    def flat_name(self, namespace: str | None, name: str) -> str:
        return f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name


@dataclass(frozen=True, slots=True)
class ResponsesPlan:
    """What the Anthropic request is, plus what the answer needs to look right."""

    request: MessagesRequest
    tool_names: ToolNames
    include_encrypted_reasoning: bool


def _mapping(value: Any) -> Mapping[str, Any]:
    """`value` when it is an object, else an empty one: optional objects a client may mangle."""
    return value if isinstance(value, Mapping) else {}


def _fail(path: str, message: str) -> ClientRequestError:
    return ClientRequestError(f"{path}: {message}")


def _text_of(content: Any) -> str:
    """The text of a string or of a list of text-like parts (others skipped)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "\n".join(
        part["text"]
        for part in content
        if isinstance(part, Mapping)
        and part.get("type") in _TEXT_PART_TYPES
        and isinstance(part.get("text"), str)
    )


def _image_block(url: Any, path: str, notes: list[str]) -> JSONObject | None:
    if not isinstance(url, str) or not url:
        notes.append(f"{path}: an image without image_url dropped")
        return None
    if url.startswith("data:") and ";base64," in url:
        media_type, data = url[5:].split(";base64,", 1)
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _file_block(part: Mapping[str, Any], path: str, notes: list[str]) -> JSONObject | None:
    data = part.get("file_data")
    name = part.get("filename") or "file"
    if isinstance(data, str) and data.startswith("data:application/pdf;base64,"):
        return {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": data[28:]},
            "title": name,
        }
    if isinstance(data, str) and data.startswith("data:text/") and ";base64," in data:
        try:
            text = base64.b64decode(data.split(";base64,", 1)[1], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            text = None
        if text is not None:
            return {"type": "text", "text": f"[file {name}]\n{text}"}
    notes.append(f"{path}: input_file {name} dropped (only PDF or text data can be read)")
    return None


def _content_blocks(content: Any, path: str, notes: list[str]) -> list[JSONObject]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _fail(f"{path}.content", "Input should be a string or a list of parts")
    blocks: list[JSONObject] = []
    for index, part in enumerate(content):
        where = f"{path}.content.{index}"
        kind = part.get("type") if isinstance(part, Mapping) else None
        block: JSONObject | None = None
        if kind in _TEXT_PART_TYPES or kind == "refusal":
            text = part.get("text", part.get("refusal"))
            block = {"type": "text", "text": text} if isinstance(text, str) and text else None
        elif kind == "input_image":
            block = _image_block(part.get("image_url"), where, notes)
        elif kind == "input_file":
            block = _file_block(part, where, notes)
        else:
            notes.append(f"{where}: content part of type {kind!r} dropped")
        if block is not None:
            blocks.append(block)
    return blocks


def _arguments(raw: Any, path: str, notes: list[str]) -> JSONObject:
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        parsed = json.loads(raw) if isinstance(raw, str) and raw.strip() else {}
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return parsed
    notes.append(f"{path}: arguments that are not a JSON object passed as {{'input': ...}}")
    return {"input": raw}


def _tool_output(output: Any, path: str, notes: list[str]) -> str | list[JSONObject]:
    if isinstance(output, str):
        return output
    blocks = _content_blocks(output, path, notes) if isinstance(output, list) else []
    return blocks or json.dumps(output, ensure_ascii=False)


class _Conversation:
    """Anthropic messages built item by item: one turn per run of one role."""

    def __init__(self) -> None:
        self.messages: list[JSONObject] = []

    def add(self, role: str, blocks: list[JSONObject]) -> None:
        if not blocks:
            return
        if self.messages and self.messages[-1]["role"] == role:
            self.messages[-1]["content"].extend(blocks)
        else:
            self.messages.append({"role": role, "content": list(blocks)})


def _reasoning_block(item: Mapping[str, Any]) -> JSONObject | None:
    text = _text_of(item.get("content")) or _text_of(item.get("summary"))
    signature = item.get("encrypted_content")
    if not text and not isinstance(signature, str):
        return None
    return {
        "type": "thinking",
        "thinking": text,
        "signature": signature if isinstance(signature, str) else "",
    }


def _map_input(
    items: list[Any], names: ToolNames, notes: list[str]
) -> tuple[list[str], list[JSONObject]]:
    system: list[str] = []
    talk = _Conversation()
    for index, item in enumerate(items):
        path = f"input.{index}"
        if not isinstance(item, Mapping):
            raise _fail(path, "Input should be an object")
        kind = item.get("type", "message")
        role = item.get("role")
        if kind == "message" and role in _SYSTEM_ROLES:
            text = _text_of(item.get("content"))
            if not talk.messages:
                system.append(text)
            elif text:
                talk.add("user", [{"type": "text", "text": f"[{role}]\n{text}"}])
        elif kind == "message" and role in ("user", "assistant"):
            talk.add(role, _content_blocks(item.get("content"), path, notes))
        elif kind == "message":
            raise _fail(
                f"{path}.role", "Input should be 'user', 'assistant', 'system' or 'developer'"
            )
        elif kind == "function_call":
            call_id, name = item.get("call_id"), item.get("name")
            if not isinstance(call_id, str) or not isinstance(name, str):
                raise _fail(path, "a function_call needs a call_id and a name")
            namespace = item.get("namespace")
            flat = names.flat_name(namespace if isinstance(namespace, str) else None, name)
            arguments = _arguments(item.get("arguments"), path, notes)
            talk.add(
                "assistant", [{"type": "tool_use", "id": call_id, "name": flat, "input": arguments}]
            )
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str):
                raise _fail(f"{path}.call_id", "Field required")
            output = _tool_output(item.get("output"), path, notes)
            talk.add("user", [{"type": "tool_result", "tool_use_id": call_id, "content": output}])
        elif kind == "reasoning":
            block = _reasoning_block(item)
            if block is not None:
                talk.add("assistant", [block])
        elif kind == "web_search_call":
            query = _mapping(item.get("action")).get("query")
            if isinstance(query, str) and query:
                talk.add(
                    "assistant", [{"type": "text", "text": f"[searched the web for: {query}]"}]
                )
        else:
            notes.append(f"{path}: input item of type {kind!r} dropped")
    return system, talk.messages


def _map_tools(tools: Any, notes: list[str]) -> tuple[list[JSONObject], dict[str, tuple[str, str]]]:
    if tools is None:
        return [], {}
    if not isinstance(tools, list):
        raise _fail("tools", "Input should be a valid list")
    mapped: list[JSONObject] = []
    namespaced: dict[str, tuple[str, str]] = {}
    for index, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, Mapping) else None
        if kind == "function":
            mapped.append(_function_tool(tool, _name_of(tool, f"tools.{index}")))
        elif kind == "namespace":
            namespace = _name_of(tool, f"tools.{index}")
            inner_tools = tool.get("tools")
            if not isinstance(inner_tools, list):
                raise _fail(f"tools.{index}.tools", "Input should be a valid list")
            for position, inner in enumerate(inner_tools):
                where = f"tools.{index}.tools.{position}"
                if not isinstance(inner, Mapping):
                    raise _fail(where, "Input should be an object")
                name = _name_of(inner, where)
                flat = f"{namespace}{NAMESPACE_SEPARATOR}{name}"
                namespaced[flat] = (namespace, name)
                mapped.append(_function_tool(inner, flat))
        elif kind in ("web_search", "web_search_preview"):
            mapped.append(dict(WEB_SEARCH_TOOL))
        else:
            notes.append(f"tools.{index}: tool of type {kind!r} dropped (not supported)")
    return mapped, namespaced


def _name_of(tool: Mapping[str, Any], path: str) -> str:
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise _fail(f"{path}.name", "Input should be a non-empty string")
    return name


def _function_tool(tool: Mapping[str, Any], name: str) -> JSONObject:
    parameters = tool.get("parameters")
    out: JSONObject = {
        "name": name,
        "input_schema": parameters
        if isinstance(parameters, dict) and parameters
        else {"type": "object", "properties": {}},
    }
    if isinstance(tool.get("description"), str):
        out["description"] = tool["description"]
    return out


def _tool_choice(choice: Any, names: ToolNames) -> JSONObject | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in TOOL_CHOICE_BY_NAME:
        return dict(TOOL_CHOICE_BY_NAME[choice])
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        namespace = choice.get("namespace")
        name = names.flat_name(
            namespace if isinstance(namespace, str) else None, _name_of(choice, "tool_choice")
        )
        return {"type": "tool", "name": name}
    raise _fail("tool_choice", f"unsupported tool_choice {choice!r}")


def to_messages_request(body: Mapping[str, Any], notes: list[str]) -> ResponsesPlan:
    """The Anthropic request a Responses request means; `notes` gets what was dropped."""
    if body.get("previous_response_id") is not None:
        raise _fail(
            "previous_response_id",
            "NimBridge keeps no conversation state (as with store: false): "
            "send the whole conversation in `input`",
        )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _fail("model", "Field required")
    raw_input = body.get("input")
    items = [{"role": "user", "content": raw_input}] if isinstance(raw_input, str) else raw_input
    if not isinstance(items, list):
        raise _fail("input", "Input should be a string or a list of items")
    tools, namespaced = _map_tools(body.get("tools"), notes)
    names = ToolNames(namespaced)
    system, messages = _map_input(items, names, notes)
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        system.insert(0, instructions)
    max_tokens = body.get("max_output_tokens")
    req: MessagesRequest = {
        "model": model,
        "max_tokens": max_tokens if isinstance(max_tokens, int) else DEFAULT_MAX_OUTPUT_TOKENS,
        "messages": messages,
        "stream": body.get("stream") is True,
    }
    joined = "\n\n".join(text for text in system if text)
    if joined:
        req["system"] = joined
    for key in ("temperature", "top_p"):
        if isinstance(body.get(key), int | float):
            req[key] = body[key]
    if tools:
        req["tools"] = tools
    choice = _tool_choice(body.get("tool_choice"), names)
    if choice is not None and tools:
        if body.get("parallel_tool_calls") is False and choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
        req["tool_choice"] = choice
    effort = _mapping(body.get("reasoning")).get("effort")
    if effort == "none":
        req["thinking"] = {"type": "disabled"}
    elif isinstance(effort, str) and effort in EFFORT_BY_REASONING_EFFORT:
        req["thinking"] = {"type": "adaptive"}
        req["output_config"] = {"effort": EFFORT_BY_REASONING_EFFORT[effort]}
    text_format = _mapping(_mapping(body.get("text")).get("format"))
    if text_format.get("type") == "json_schema":
        schema = json.dumps(text_format.get("schema"), ensure_ascii=False)
        req["system"] = f"{joined}\n\nAnswer with JSON that matches this schema: {schema}".strip()
    for key in sorted(set(body) - _IGNORED_FIELDS):
        notes.append(f"Responses field {key!r} ignored")
    include = body.get("include")
    encrypted = isinstance(include, list) and "reasoning.encrypted_content" in include
    return ResponsesPlan(req, names, include_encrypted_reasoning=encrypted)
