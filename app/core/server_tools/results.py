"""Server tool result blocks in Anthropic's shapes, and the text the model reads of them.
No I/O.

Invariant: what the model reads of a result (`result_text`) is rebuilt from the
block alone, so a later turn that sends the blocks back as history gives the
model the same text it read the first time (our `encrypted_content` carries the
snippet; Anthropic's own is opaque and only its title and URL are read). Only
an error's explanation is richer the first time (`server_tool_texts`).
"""

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from app.core.server_tools.backends import UNAVAILABLE, FetchedPage, SearchResult

ServerToolKind = Literal["web_search", "web_fetch"]

RESULT_TYPE_BY_KIND: dict[ServerToolKind, str] = {
    "web_search": "web_search_tool_result",
    "web_fetch": "web_fetch_tool_result",
}
KIND_BY_RESULT_TYPE: dict[str, ServerToolKind] = {v: k for k, v in RESULT_TYPE_BY_KIND.items()}
# Our `encrypted_content`: the snippet, readable by us when it comes back as history.
ENCRYPTED_CONTENT_PREFIX = "nb1."


def error_block(kind: ServerToolKind, call_id: str, code: str) -> dict[str, Any]:
    return {
        "type": RESULT_TYPE_BY_KIND[kind],
        "tool_use_id": call_id,
        "content": {"type": f"{RESULT_TYPE_BY_KIND[kind]}_error", "error_code": code},
    }


def error_text(kind: ServerToolKind, code: str, message: str = "") -> str:
    text = f"Error: {kind} failed ({code})"
    return f"{text}: {message}" if message else text


def _encrypted(text: str) -> str:
    return ENCRYPTED_CONTENT_PREFIX + base64.urlsafe_b64encode(text.encode()).decode("ascii")


def _decrypted(value: object) -> str:
    """The snippet our `encrypted_content` carries; "" for Anthropic's own (opaque)."""
    if not isinstance(value, str) or not value.startswith(ENCRYPTED_CONTENT_PREFIX):
        return ""
    try:
        return base64.urlsafe_b64decode(value[len(ENCRYPTED_CONTENT_PREFIX) :]).decode()
    except (binascii.Error, ValueError):
        return ""


def search_result_block(call_id: str, results: Sequence[SearchResult]) -> dict[str, Any]:
    return {
        "type": "web_search_tool_result",
        "tool_use_id": call_id,
        "content": [
            {
                "type": "web_search_result",
                "url": result.url,
                "title": result.title,
                "encrypted_content": _encrypted(result.content),
                "page_age": result.page_age,
            }
            for result in results
        ],
    }


def fetch_result_block(call_id: str, page: FetchedPage) -> dict[str, Any]:
    document: dict[str, Any] = {
        "type": "document",
        # The backend gives text (a PDF's too): Anthropic's plain-text document source.
        "source": {"type": "text", "media_type": "text/plain", "data": page.text},
    }
    if page.title:
        document["title"] = page.title
    return {
        "type": "web_fetch_tool_result",
        "tool_use_id": call_id,
        "content": {
            "type": "web_fetch_result",
            "url": page.url,
            "content": document,
            "retrieved_at": page.retrieved_at,
        },
    }


# ------------------------------------------------------------------ what the model reads


def _search_text(content: list[Any]) -> str:
    if not content:
        return "No results found."
    entries = []
    for number, result in enumerate(content, 1):
        if not isinstance(result, Mapping):
            continue
        lines = [f"[{number}] {result.get('title') or '(no title)'}", f"URL: {result.get('url')}"]
        if isinstance(result.get("page_age"), str):
            lines.append(f"Age: {result['page_age']}")
        snippet = _decrypted(result.get("encrypted_content"))
        if snippet:
            lines.append(snippet)
        entries.append("\n".join(lines))
    return "Web search results:\n\n" + "\n\n".join(entries)


def _fetch_text(content: Mapping[str, Any]) -> str:
    document = content.get("content")
    document = document if isinstance(document, Mapping) else {}
    source = document.get("source")
    data = source.get("data") if isinstance(source, Mapping) else None
    head = f"Fetched {content.get('url')}"
    if isinstance(document.get("title"), str):
        head += f"\nTitle: {document['title']}"
    if isinstance(content.get("retrieved_at"), str):
        head += f"\nRetrieved at: {content['retrieved_at']}"
    if not isinstance(data, str):
        return head + "\n\n(the content is not text and cannot be shown)"
    return f"{head}\n\n{data}"


def result_text(block: Mapping[str, Any]) -> str:
    """A `web_search_tool_result` / `web_fetch_tool_result` block as the model reads it."""
    kind = KIND_BY_RESULT_TYPE.get(str(block.get("type")), "web_search")
    content = block.get("content")
    if isinstance(content, list):
        return _search_text(content)
    if not isinstance(content, Mapping):
        return error_text(kind, UNAVAILABLE)
    if content.get("type") == "web_fetch_result":
        return _fetch_text(content)
    return error_text(kind, str(content.get("error_code") or UNAVAILABLE))
