"""Anthropic Messages request -> OpenAI Chat Completions request.

Invariants of `to_openai_request` output (PROTOCOL.md, "Request: Anthropic -> OpenAI"):

- At most one `system` message, always first: the `system` field, then every
  `role: "system"` message of the conversation folded in, in order (many chat
  templates behind NIM and vLLM reject a system message that is not first).
- The first non-system message is a user message; no two adjacent messages
  share a role except `tool`; every `tool` message answers a tool call of the
  assistant message right before its run of tool messages.
- No `cache_control`, no boolean sub-schema, no server tool reaches the upstream,
  except `web_search_*` / `web_fetch_*`, which NimBridge runs: they go as function
  tools, and their earlier calls and results (`server_tool_use` + result blocks)
  as a tool call and a tool message (`app/core/server_tools/specs.py`).
- Tools go as `offered_tools` says (`app/core/deferred_tools.py`): a
  `defer_loading` tool only once a tool search in the conversation loaded it,
  after the eager ones; a `tool_reference` block reads "Tool X is now available.".
- Same input, same output, byte for byte once serialised: key order is fixed,
  system text and tools keep their order, and nothing rotating (Claude Code's
  billing header) is forwarded, so upstream prefix caches can hit.
- The input is never mutated. Big strings are shared, not copied.

Anything lossy is recorded in `notes` (for the server to log), never raised.
Documents and `search_result` blocks become text (title, context or source, then
their text); a PDF or a URL document arrives here already as text (the server reads
it first, `app/server/messages/documents.py`), and one that did not, or any other document the
model cannot read, becomes a short note in its place, in the text and in `notes`.

What the model is known to refuse (`ModelQuirks`, from the table, settings or
learned from a 400) is never sent: no tools to a model without tool support
(tool history goes as text), no images to a text-only model (a short text
stands in), no `chat_template_kwargs`, `reasoning_effort`, `parallel_tool_calls`
or `stream_options` to a model that refuses them.
"""

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from app.core.anthropic_types import MessagesRequest
from app.core.capabilities import ModelQuirks, ReasoningSwitch
from app.core.deferred_tools import OfferedTools, offered_tools, tool_reference_text
from app.core.errors import ClientRequestError
from app.core.openai_types import ChatMessage, ChatRequest, ToolCall
from app.core.server_tools.results import KIND_BY_RESULT_TYPE, result_text
from app.core.server_tools.specs import to_function_tool
from app.core.thinking_display import block_reasoning
from app.core.tiers import ModelRoute
from app.core.tool_schema import sanitize_tool_schema

BILLING_HEADER_PREFIX = "x-anthropic-billing-header:"
# Inserted when a conversation does not start with a user turn; LiteLLM's
# DEFAULT_USER_CONTINUE_MESSAGE uses the same words for the same template rule.
CONTINUE_USER_TEXT = "Please continue."
MAX_STOP_SEQUENCES = 4  # OpenAI's limit; vLLM takes more but we target the strictest.
# OpenAI rejects a longer `user`; longer ids (Claude Code sends a JSON blob with
# device and session ids) go out as their SHA-256: stable, short, not readable.
MAX_USER_CHARS = 64
PART_SEPARATOR = "\n\n"  # between text parts of one message, and system pieces
TOOL_RESULT_SEPARATOR = "\n"  # between text blocks of one tool_result
IMAGE_OMITTED_TEXT = "(image omitted: this model cannot take images)"
TOOL_USE_AS_TEXT = "(call of tool {name}, id {id})\n{arguments}"
TOOL_RESULT_AS_TEXT = "(result of tool call {id})\n{text}"
DOCUMENT_OMITTED_TEXT = "(document{name} omitted: {why})"
NOTE_TOOLS_DROPPED = "tools dropped: the model does not take tools"
NOTE_TOOL_HISTORY_AS_TEXT = "tool calls and results sent as text: the model does not take tools"
NOTE_USER_TURN_INSERTED = "conversation does not start with a user turn; inserted one"

TOOL_CHOICE_BY_TYPE: dict[str, str] = {"auto": "auto", "any": "required", "none": "none"}
REASONING_EFFORT_BY_EFFORT: dict[str, str] = {
    "low": "low",
    "medium": "medium",
    "high": "high",
    "max": "high",
}
THINKING_ON_BY_TYPE: dict[str, bool] = {"enabled": True, "adaptive": True, "disabled": False}
TEMPLATE_KEY_BY_SWITCH: dict[ReasoningSwitch, str] = {
    ReasoningSwitch.TEMPLATE_THINKING: "thinking",
    ReasoningSwitch.TEMPLATE_ENABLE_THINKING: "enable_thinking",
}
# `json.dumps(value, ensure_ascii=False, separators=(",", ":"))` without a new encoder per call.
_compact_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


# ------------------------------------------------------------------ messages


@dataclass(slots=True)
class _Draft:
    """One outgoing message while it can still be merged with a neighbour."""

    role: str
    # Text parts as plain str (collapsed to one string when all are text), others as dicts.
    parts: list[str | dict[str, Any]] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    # Thinking blocks, read only when the reasoning goes upstream (it may need inflating).
    reasoning: list[Mapping[str, Any]] = field(default_factory=list)
    tool_call_id: str = ""


def _image_part(block: Mapping[str, Any], path: str) -> dict[str, Any]:
    source = block["source"]
    if source["type"] == "base64":
        url = f"data:{source['media_type']};base64,{source['data']}"
    elif source["type"] == "url":
        url = source["url"]
    else:
        raise ClientRequestError(
            f"{path}.source.type: image source '{source['type']}' is not supported "
            "through this proxy; send the image as base64 or url"
        )
    return {"type": "image_url", "image_url": {"url": url}}


def _named(block: Mapping[str, Any]) -> str:
    title = block.get("title")
    return f" '{title}'" if isinstance(title, str) and title else ""


def _document_omitted(source: Mapping[str, Any], media_type: str) -> str:
    """Why a document's source cannot become text here (the server reads PDFs and URLs first)."""
    kind = source["type"]
    if kind == "base64":
        if media_type.startswith("text/"):
            return f"its {media_type} data is not valid base64"
        if media_type == "application/pdf":
            return "the PDF was not converted to text"
        return f"{media_type or 'data of no media type'} is not text; NimBridge sends text only"
    if kind == "url":
        return f"{source['url']} was not fetched"
    if kind == "file":
        return f"file {source.get('file_id')} is in Anthropic's Files API, out of NimBridge's reach"
    return f"a '{kind}' source cannot be read"


def _document_text(block: Mapping[str, Any], path: str, notes: list[str]) -> str:
    """A document as the model reads it: its title and context, then its text; where
    there is no text to give, a note in its place (and in `notes`), never an error."""
    source = block["source"]
    media_type = str(source.get("media_type") or "").split(";", 1)[0].strip().lower()
    body: str | None = None
    if source["type"] == "text":
        body = cast(str, source["data"])
    elif source["type"] == "content":
        body = _content_text(source["content"], path, notes)
    elif source["type"] == "base64" and media_type.startswith("text/"):
        body = _decoded_text(source["data"])
    if body is None:
        why = _document_omitted(source, media_type)
        notes.append(f"{path}: document{_named(block)} omitted: {why}")
        return DOCUMENT_OMITTED_TEXT.format(name=_named(block), why=why)
    head = [
        f"{label}: {block[key]}"
        for key, label in (("title", "Document"), ("context", "Context"))
        if isinstance(block.get(key), str) and block[key]
    ]
    return "\n".join(head) + PART_SEPARATOR + body if head else body


def _decoded_text(data: str) -> str | None:
    try:
        return base64.b64decode(data).decode("utf-8", "replace")
    except ValueError:  # binascii.Error, or characters that are not ASCII
        return None


def _content_text(content: str | list[Any], path: str, notes: list[str]) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for inner in content:
        if inner["type"] == "text":
            texts.append(inner["text"])
        else:
            notes.append(f"{path}: {inner['type']} block inside a document dropped")
    return TOOL_RESULT_SEPARATOR.join(texts)


def _search_result_text(block: Mapping[str, Any], path: str, notes: list[str]) -> str:
    """A `search_result` block (a client's own search, RAG) as text: title, source, content.

    Not validated beyond its type (an unknown block elsewhere): read leniently."""
    title, source, content = block.get("title"), block.get("source"), block.get("content")
    lines = [f"Search result: {title}" if isinstance(title, str) else "Search result"]
    if isinstance(source, str):
        lines.append(f"Source: {source}")
    texts = [content] if isinstance(content, str) else []
    for index, inner in enumerate(content if isinstance(content, list) else ()):
        if isinstance(inner, Mapping) and isinstance(inner.get("text"), str):
            texts.append(inner["text"])
        else:
            kind = inner.get("type") if isinstance(inner, Mapping) else None
            notes.append(f"{path}.content.{index}: {kind} block inside a search result dropped")
    return "\n".join(lines) + "".join(PART_SEPARATOR + text for text in texts if text)


def _user_part(
    block: Mapping[str, Any], path: str, quirks: ModelQuirks, notes: list[str]
) -> str | dict[str, Any] | None:
    kind = block["type"]
    if kind == "text":
        return cast(str, block["text"])
    if kind == "image":
        if quirks.supports_images is False:
            notes.append(f"{path}: image omitted: the model cannot take images")
            return IMAGE_OMITTED_TEXT
        return _image_part(block, path)
    if kind == "document":
        return _document_text(block, path, notes)
    if kind == "tool_reference":  # a tool search loaded this tool: it is offered now
        return tool_reference_text(block)
    if kind == "search_result":
        return _search_result_text(block, path, notes)
    if kind not in ("thinking", "redacted_thinking"):
        notes.append(f"{path}: {kind} block dropped")
    return None


def _tool_result(
    block: Mapping[str, Any], path: str, quirks: ModelQuirks, notes: list[str]
) -> tuple[str, list[dict[str, Any]]]:
    """The text of a tool_result, and the images it carried (they can't go in a tool message)."""
    content = block.get("content")
    images: list[dict[str, Any]] = []
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        texts: list[str] = []
        for index, inner in enumerate(content):
            part = _user_part(inner, f"{path}.content.{index}", quirks, notes)
            if isinstance(part, str):
                texts.append(part)
            elif part is not None:
                images.append(part)
        text = TOOL_RESULT_SEPARATOR.join(texts)
    if block.get("is_error") is True and not text.startswith("Error:"):
        text = f"Error: {text}"
    return text, images


def _open_tool_calls(drafts: list[_Draft]) -> dict[str, int]:
    """Unanswered tool call ids of the last assistant message, with their order.

    Turns alternate (same-role messages are grouped first) and an assistant turn
    always yields a message, so the last draft is that assistant's, or the tool
    messages answering its server tool calls (already answered: not open).
    """
    position = len(drafts) - 1
    answered: set[str] = set()
    while position >= 0 and drafts[position].role == "tool":
        answered.add(drafts[position].tool_call_id)
        position -= 1
    order: dict[str, int] = {}
    if position >= 0 and drafts[position].role == "assistant":
        for index, call in enumerate(drafts[position].tool_calls):
            if call["id"] not in answered:
                order.setdefault(call["id"], index)
    return order


def _push(drafts: list[_Draft], draft: _Draft) -> None:
    last = drafts[-1] if drafts else None
    if last is not None and last.role == draft.role and draft.role != "tool":
        last.parts.extend(draft.parts)
        last.tool_calls.extend(draft.tool_calls)
        last.reasoning.extend(draft.reasoning)
    else:
        drafts.append(draft)


def _blocks(message: Mapping[str, Any]) -> list[Any]:
    content = message["content"]
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _note_once(notes: list[str], note: str) -> None:
    if note not in notes:
        notes.append(note)


def _user_turn(
    turn: list[tuple[int, Any]], drafts: list[_Draft], quirks: ModelQuirks, notes: list[str]
) -> None:
    open_calls = _open_tool_calls(drafts)
    tools: list[tuple[int, _Draft]] = []
    tool_images: list[str | dict[str, Any]] = []
    parts: list[str | dict[str, Any]] = []
    for index, message in turn:
        content = message["content"]
        if isinstance(content, str):  # plain text (most turns): the part is the string
            parts.append(content)
            continue
        for position, block in enumerate(content):
            path = f"messages.{index}.content.{position}"
            if block["type"] != "tool_result":
                part = _user_part(block, path, quirks, notes)
                if part is not None:
                    parts.append(part)
                continue
            call_id = block["tool_use_id"]
            text, images = _tool_result(block, path, quirks, notes)
            if call_id in open_calls:
                tools.append(
                    (open_calls.pop(call_id), _Draft("tool", [text], tool_call_id=call_id))
                )
                if images:
                    tool_images.append(f"(image from tool result {call_id})")
                    tool_images.extend(images)
            else:
                if quirks.supports_tools is False:
                    _note_once(notes, NOTE_TOOL_HISTORY_AS_TEXT)
                else:
                    notes.append(
                        f"{path}: tool_result {call_id} has no matching tool_use; sent as text"
                    )
                parts.append(TOOL_RESULT_AS_TEXT.format(id=call_id, text=text))
                parts.extend(images)
    # Tool messages answer in the order the assistant made the calls.
    if len(tools) > 1:
        tools.sort(key=lambda item: item[0])
    for _, draft in tools:
        _push(drafts, draft)
    if tool_images or parts:
        _push(drafts, _Draft("user", tool_images + parts))


def _tool_call(call_id: str, name: str, arguments: str) -> ToolCall:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _assistant_turn(
    turn: list[tuple[int, Any]],
    drafts: list[_Draft],
    quirks: ModelQuirks,
    notes: list[str],
    server_tool_texts: Mapping[str, str],
) -> None:
    """One assistant turn; server tool calls answered within it (Anthropic's
    `server_tool_use` + `web_*_tool_result` blocks) become a tool call and a tool
    message, and what follows them a new assistant message."""
    if all(isinstance(message["content"], str) for _, message in turn):
        # Plain text only (a chat client's turns): one message of the texts, nothing to split.
        _push(drafts, _Draft("assistant", [message["content"] for _, message in turn]))
        return
    blocks = [
        (f"messages.{index}.content.{position}", block)
        for index, message in turn
        for position, block in enumerate(_blocks(message))
    ]
    tools_ok = quirks.supports_tools is not False
    answered = {
        block.get("tool_use_id") for _, block in blocks if block["type"] in KIND_BY_RESULT_TYPE
    }
    draft: _Draft | None = _Draft("assistant")
    split = False  # a server tool's result ended an assistant message within this turn
    for path, block in blocks:
        if draft is None:
            draft = _Draft("assistant")
        kind = block["type"]
        if kind == "text":
            draft.parts.append(block["text"])
        elif kind in ("tool_use", "server_tool_use"):
            # server_tool_use is not validated (an unknown block elsewhere): read it leniently
            call_id, name = str(block.get("id") or path), str(block.get("name") or "")
            call_input = block.get("input")
            arguments = _compact_json(call_input if isinstance(call_input, dict) else {})
            if not tools_ok or (kind == "server_tool_use" and call_id not in answered):
                if tools_ok:
                    notes.append(f"{path}: server_tool_use without its result; sent as text")
                else:
                    _note_once(notes, NOTE_TOOL_HISTORY_AS_TEXT)
                draft.parts.append(
                    TOOL_USE_AS_TEXT.format(name=name, id=call_id, arguments=arguments)
                )
                continue
            draft.tool_calls.append(_tool_call(call_id, name, arguments))
        elif kind in KIND_BY_RESULT_TYPE:
            call_id = str(block.get("tool_use_id"))
            text = server_tool_texts.get(call_id) or result_text(block)
            if tools_ok and any(call["id"] == call_id for call in draft.tool_calls):
                _push(drafts, draft)
                draft, split = None, True
            if call_id in _open_tool_calls(drafts):
                _push(drafts, _Draft("tool", [text], tool_call_id=call_id))
            else:
                draft = draft or _Draft("assistant")
                draft.parts.append(TOOL_RESULT_AS_TEXT.format(id=call_id, text=text))
        elif kind == "thinking":
            draft.reasoning.append(block)
        elif kind != "redacted_thinking":
            notes.append(f"{path}: {kind} block dropped")
    if draft is not None and (draft.parts or draft.tool_calls or not split):
        _push(drafts, draft)


def _collapse(parts: list[str | dict[str, Any]]) -> str | list[dict[str, Any]]:
    if len(parts) == 1 and isinstance(parts[0], str):  # one text (most messages)
        return parts[0]
    if all(isinstance(part, str) for part in parts):
        return PART_SEPARATOR.join(cast(list[str], parts))
    return [{"type": "text", "text": p} if isinstance(p, str) else p for p in parts]


def _to_chat_message(draft: _Draft, quirks: ModelQuirks) -> ChatMessage:
    if draft.role == "tool":
        return {
            "role": "tool",
            "tool_call_id": draft.tool_call_id,
            "content": cast(str, draft.parts[0]),
        }
    if draft.role == "user":
        return {"role": "user", "content": _collapse(draft.parts)}
    message: ChatMessage = {"role": "assistant"}
    if draft.parts:
        message["content"] = _collapse(draft.parts)
    else:
        # OpenAI wants null beside tool calls; templates choke on a missing content,
        # and some servers on null (llama-cpp-python: a 500).
        message["content"] = None if draft.tool_calls and quirks.accepts_null_content else ""
    if draft.tool_calls:
        message["tool_calls"] = draft.tool_calls
    if draft.tool_calls and quirks.send_reasoning_back:
        # Text of summarized thinking, or what our signature carries when it was omitted.
        reasoning = [text for text in map(block_reasoning, draft.reasoning) if text]
        if reasoning:
            message["reasoning_content"] = PART_SEPARATOR.join(reasoning)
    return message


def _system_texts(content: object, path: str, notes: list[str]) -> list[str]:
    if isinstance(content, str):
        return [content] if content else []
    texts = []
    for index, block in enumerate(cast(list[Any], content or ())):
        if block["type"] != "text":
            notes.append(f"{path}.{index}: {block['type']} block dropped")
        # The billing header rotates per request and would defeat prefix caching.
        elif block["text"] and not block["text"].startswith(BILLING_HEADER_PREFIX):
            texts.append(block["text"])
    return texts


def _plain_text_messages(
    messages: list[Any], system: list[str], notes: list[str]
) -> list[ChatMessage] | None:
    """What `_to_openai_messages` makes of a conversation whose every content is a string
    (a chat client's), without drafts: same-role neighbours joined, system text set
    aside, a user turn put first. None when any content is blocks (the general path)."""
    if not all(isinstance(message["content"], str) for message in messages):
        return None
    out: list[ChatMessage] = []
    for message in messages:
        role, content = message["role"], message["content"]
        if role == "system":
            if content:
                system.append(content)
        elif out and out[-1]["role"] == role:
            out[-1]["content"] += PART_SEPARATOR + content
        else:
            out.append({"role": role, "content": content})
    if not out or out[0]["role"] != "user":
        notes.append(NOTE_USER_TURN_INSERTED)
        out.insert(0, {"role": "user", "content": CONTINUE_USER_TEXT})
    return out


def _to_openai_messages(
    req: MessagesRequest,
    system: list[str],
    quirks: ModelQuirks,
    notes: list[str],
    server_tool_texts: Mapping[str, str],
) -> list[ChatMessage]:
    plain = _plain_text_messages(req["messages"], system, notes)
    if plain is not None:
        return plain
    # Group consecutive same-role messages into one turn first, so that tool
    # results split over two user messages still follow their assistant turn.
    turns: list[tuple[str, list[tuple[int, Any]]]] = []
    for index, message in enumerate(req["messages"]):
        role = message["role"]
        if role == "system":
            system.extend(_system_texts(message["content"], f"messages.{index}.content", notes))
        elif turns and turns[-1][0] == role:
            turns[-1][1].append((index, message))
        else:
            turns.append((role, [(index, message)]))
    drafts: list[_Draft] = []
    for role, turn in turns:
        if role == "user":
            _user_turn(turn, drafts, quirks, notes)
        else:
            _assistant_turn(turn, drafts, quirks, notes, server_tool_texts)
    if not drafts or drafts[0].role != "user":
        notes.append(NOTE_USER_TURN_INSERTED)
        drafts.insert(0, _Draft("user", [CONTINUE_USER_TEXT]))
    return [_to_chat_message(draft, quirks) for draft in drafts]


# ------------------------------------------------------------------ parameters


def _reasoning_effort(req: MessagesRequest, thinking: Mapping[str, Any]) -> str | None:
    effort = (req.get("output_config") or {}).get("effort")
    if isinstance(effort, str) and effort in REASONING_EFFORT_BY_EFFORT:
        return REASONING_EFFORT_BY_EFFORT[effort]
    budget = thinking.get("budget_tokens")
    if thinking.get("type") != "enabled" or isinstance(budget, bool) or not isinstance(budget, int):
        return None
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


def _apply_reasoning(
    req: MessagesRequest,
    quirks: ModelQuirks,
    system: list[str],
    out: ChatRequest,
    notes: list[str],
) -> None:
    """Translate `thinking` into the model family's own switch; absent means model default."""
    thinking = req.get("thinking") or {}
    kind = thinking.get("type")
    on = THINKING_ON_BY_TYPE.get(kind) if isinstance(kind, str) else None  # [] is unhashable
    if on is None:
        return
    switch = quirks.reasoning
    if switch in TEMPLATE_KEY_BY_SWITCH and not quirks.accepts_chat_template_kwargs:
        notes.append("thinking switch dropped: the model does not take chat_template_kwargs")
    elif switch is ReasoningSwitch.REASONING_EFFORT and not quirks.accepts_reasoning_effort:
        notes.append("thinking switch dropped: the model does not take reasoning_effort")
    elif switch is ReasoningSwitch.DETAILED_THINKING_SYSTEM:
        system.insert(0, "detailed thinking on" if on else "detailed thinking off")
    elif switch is ReasoningSwitch.SLASH_THINK_SYSTEM:
        system.append("/think" if on else "/no_think")
    elif switch in TEMPLATE_KEY_BY_SWITCH:
        out["chat_template_kwargs"] = {TEMPLATE_KEY_BY_SWITCH[switch]: on}
    elif switch is ReasoningSwitch.REASONING_EFFORT:
        # These models cannot stop reasoning; "low" is the least every one of them takes.
        effort = _reasoning_effort(req, thinking) if on else "low"
        if effort is not None:
            out["reasoning_effort"] = effort


def _to_openai_tools(
    req: MessagesRequest, notes: list[str], offered: OfferedTools | None
) -> list[dict[str, Any]]:
    if offered is None:
        offered_list = offered_tools(req, notes)
    else:  # worked out once for the request: its notes go where they would have
        offered_list = offered.tools
        notes.extend(offered.notes)
    tools: list[dict[str, Any]] = []
    for tool in offered_list:
        if tool.get("input_schema") is None:
            served = to_function_tool(tool)  # web_search / web_fetch: NimBridge runs them
            if served is None:
                notes.append(f"server tool {tool['name']} dropped")
            else:
                tools.append(served)
            continue
        function: dict[str, Any] = {"name": tool["name"]}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        function["parameters"] = sanitize_tool_schema(tool["input_schema"])
        tools.append({"type": "function", "function": function})
    return tools


def _apply_tools(
    req: MessagesRequest,
    quirks: ModelQuirks,
    out: ChatRequest,
    notes: list[str],
    offered: OfferedTools | None,
) -> None:
    if quirks.supports_tools is False:
        if req.get("tools") or req.get("tool_choice"):
            notes.append(NOTE_TOOLS_DROPPED)
        return
    tools = _to_openai_tools(req, notes, offered)
    if not tools:
        if req.get("tool_choice"):
            notes.append("tool_choice dropped: no tools to choose from")
        return
    out["tools"] = tools
    # Anthropic's default with tools is auto; some servers read a missing tool_choice
    # as none and leave the tools out of the prompt (llama-cpp-python).
    choice = req.get("tool_choice") or {"type": "auto"}
    if choice["type"] == "any" and not quirks.accepts_required_tool_choice:
        if len(tools) == 1:  # the named form forces the same call
            out["tool_choice"] = {
                "type": "function",
                "function": {"name": tools[0]["function"]["name"]},
            }
        else:
            notes.append("tool_choice any sent as auto: the model does not take required")
            out["tool_choice"] = "auto"
    elif choice["type"] == "tool":
        names = {tool["function"]["name"] for tool in tools}
        if choice["name"] in names:
            out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
        else:
            notes.append(f"tool_choice {choice['name']} is not a forwarded tool; sent auto")
            out["tool_choice"] = "auto"
    else:
        out["tool_choice"] = TOOL_CHOICE_BY_TYPE[choice["type"]]
    if choice.get("disable_parallel_tool_use") is True:
        if quirks.accepts_parallel_tool_calls:
            out["parallel_tool_calls"] = False
        else:
            notes.append("parallel_tool_calls dropped: the model does not take it")


def _user_field(user_id: str) -> str:
    if len(user_id) <= MAX_USER_CHARS:
        return user_id
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()


def to_openai_request(
    req: MessagesRequest,
    route: ModelRoute,
    *,
    notes: list[str] | None = None,
    server_tool_texts: Mapping[str, str] | None = None,
    quirks: ModelQuirks | None = None,
    offered: OfferedTools | None = None,
) -> ChatRequest:
    """Translate a validated Messages request for `route`; lossy steps are appended to notes.

    `server_tool_texts`: what the model reads of server tool results by call id, where
    it says more than the result block does (an error's explanation, this request only).
    `quirks`: the model's quirks as known now, in place of `route.quirks` (a retry's,
    after a refusal was learned). `offered`: `offer_tools(req)` when the caller has it.
    """
    if notes is None:
        notes = []
    if quirks is None:
        quirks = route.quirks
    system = _system_texts(req.get("system"), "system", notes)
    messages = _to_openai_messages(req, system, quirks, notes, server_tool_texts or {})
    out: ChatRequest = {"model": route.upstream_model, "messages": messages}

    max_tokens = req["max_tokens"]
    if quirks.max_output_tokens is not None and max_tokens > quirks.max_output_tokens:
        max_tokens = quirks.max_output_tokens
        notes.append(f"max_tokens clamped to {max_tokens}")
    out["max_tokens"] = max_tokens
    if req.get("stream") is True:
        out["stream"] = True
        if quirks.accepts_stream_options:
            out["stream_options"] = {"include_usage": True}
        else:
            notes.append("stream_options dropped: the model does not take it; usage may be missing")
    stops = req.get("stop_sequences")
    if stops:
        if len(stops) > MAX_STOP_SEQUENCES:
            notes.append(f"stop_sequences cut to the first {MAX_STOP_SEQUENCES}")
        out["stop"] = stops[:MAX_STOP_SEQUENCES]
    if req.get("temperature") is not None:
        out["temperature"] = req["temperature"]
    if req.get("top_p") is not None:
        out["top_p"] = req["top_p"]
    if req.get("top_k") is not None:
        if quirks.accepts_top_k:
            out["top_k"] = req["top_k"]
        else:
            notes.append("top_k dropped: the model does not take it")
    user_id = (req.get("metadata") or {}).get("user_id")
    if isinstance(user_id, str) and user_id:
        out["user"] = _user_field(user_id)
    _apply_tools(req, quirks, out, notes, offered)
    _apply_reasoning(req, quirks, system, out, notes)

    if system:
        system_message: ChatMessage = {"role": "system", "content": PART_SEPARATOR.join(system)}
        messages.insert(0, system_message)
    return out
