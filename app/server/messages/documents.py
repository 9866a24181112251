"""PDFs and documents by URL as text, before the core translates a request.

The upstream models read text only and the core is stdlib-only, so `documents_as_text`
gives a copy of the request in which each PDF document block (in user content and in
tool results) is a plain-text document: its text as `app/server/messages/pdf_text.py` reads it
(pages marked "--- page 3 of 12 ---"), its title kept, or taken from the PDF's
metadata, its context kept; the core puts title and context before the text. A
document by URL is fetched under the `image_urls` setting ("refuse": not at all)
through the server's `SafeFetcher` (public addresses only unless the user allowed
private ones, bounded size and time) and read the same way; a fetched text/* document
becomes its text.

Invariants:
- Never a 400: a PDF that is password-protected, has no text layer, is damaged or too
  big, a URL refused, not fetched or neither PDF nor text, becomes a short note in the
  block's place saying what happened, and the same words go to `notes` (the request
  record's repairs: the log line and the log window); so does a cut.
- The client's request is never changed (the inspector shows what the client sent):
  only the messages, blocks and lists on the way to a replaced block are copied.
"""

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from app.core.anthropic_types import MessagesRequest
from app.server.messages.pdf_text import DocumentLimits, DocumentReader, PdfReading, cut_at_word
from app.server.safe_fetch import FetchBudget, FetchError, SafeFetcher

PDF_TYPE = "application/pdf"


@dataclass(frozen=True, slots=True)
class _Found:
    path: str
    message: int
    block: int
    inner: int | None  # the block's place inside a tool_result's content
    document: Mapping[str, Any]


def _media_type(source: Mapping[str, Any]) -> str:
    return str(source.get("media_type") or "").split(";", 1)[0].strip().lower()


def _to_read(block: object, with_urls: bool) -> bool:
    # dict first: the ABC check costs several times more, on every block of every request
    if not isinstance(block, dict) and not isinstance(block, Mapping):
        return False
    if block.get("type") != "document":
        return False
    source = block["source"]
    if source["type"] == "base64":
        return _media_type(source) == PDF_TYPE
    return with_urls and source["type"] == "url"


def _documents(req: MessagesRequest, with_urls: bool) -> Iterator[_Found]:
    """PDF documents (and documents by URL) in user content and in tool results."""
    for m, message in enumerate(req["messages"]):
        content = message["content"]
        if message["role"] != "user" or not isinstance(content, list):
            continue
        for b, block in enumerate(content):
            kind = block["type"]
            if kind == "document":
                if _to_read(block, with_urls):
                    yield _Found(f"messages.{m}.content.{b}", m, b, None, block)
            elif kind == "tool_result" and isinstance(block.get("content"), list):
                for i, inner in enumerate(block["content"]):
                    if _to_read(inner, with_urls):
                        yield _Found(f"messages.{m}.content.{b}.content.{i}", m, b, i, inner)


def _replaced(req: MessagesRequest, blocks: dict[tuple[int, int, int | None], Any]) -> Any:
    """A copy of `req` with these blocks in place; what they are not in stays shared."""
    messages = list(req["messages"])
    copied: set[tuple[int, int | None]] = set()  # (message, None) or (message, tool_result)
    for (m, b, inner), block in blocks.items():
        if (m, None) not in copied:
            messages[m] = {**messages[m], "content": list(messages[m]["content"])}
            copied.add((m, None))
        content = messages[m]["content"]
        if inner is None:
            content[b] = block
            continue
        if (m, b) not in copied:
            content[b] = {**content[b], "content": list(content[b]["content"])}
            copied.add((m, b))
        content[b]["content"][inner] = block
    return {**req, "messages": messages}


def _text_block(text: str) -> dict[str, str]:
    return {"type": "text", "text": text}


def _text_document(document: Mapping[str, Any], text: str, title: str | None) -> dict[str, Any]:
    replaced: dict[str, Any] = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": text},
    }
    for key in ("title", "context"):
        if isinstance(document.get(key), str) and document[key]:
            replaced[key] = document[key]
    if "title" not in replaced and title:
        replaced["title"] = title
    return replaced


def _from_reading(
    found: _Found, reading: PdfReading, url: str = ""
) -> tuple[dict[str, Any], str | None]:
    """(what stands in the block's place, the note for the record or None)."""
    title = found.document.get("title")
    name = title if isinstance(title, str) and title else reading.title
    label = f"PDF '{name}'" if name else "the PDF"
    if url:
        label += f" at {url}"
    if reading.text is None:
        note = f"{label} {reading.problem}"
        return _text_block(f"({note[0].upper()}{note[1:]})"), f"{found.path}: {note}"
    cut = f"{found.path}: {label} cut: {reading.cut}" if reading.cut else None
    return _text_document(found.document, reading.text, reading.title), cut


def _content_type(header: str) -> tuple[str, str]:
    media_type, _, params = header.partition(";")
    charset = "utf-8"
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("\"'")
    try:
        "".encode(charset)
    except LookupError:
        charset = "utf-8"  # a charset Python does not know
    return media_type.strip().lower(), charset


async def _from_url(
    found: _Found,
    reader: DocumentReader,
    fetcher: SafeFetcher,
    url_policy: str,
    budget: FetchBudget | None,
) -> tuple[dict[str, Any], str | None]:
    url = found.document["source"]["url"]
    if url_policy == "refuse":
        note = (
            f"document at {url} not fetched: this NimBridge does not fetch documents by URL "
            '("image_urls": "refuse" in its settings)'
        )
    else:
        try:
            fetched = await fetcher.fetch(url, budget)
        except FetchError as exc:
            note = f"document at {url} could not be fetched: {exc}"
        else:
            media_type, charset = _content_type(fetched.content_type)
            if media_type == PDF_TYPE or (
                media_type in ("", "application/octet-stream") and fetched.body[:5] == b"%PDF-"
            ):
                return _from_reading(found, await reader.read(fetched.body), url)
            if media_type.startswith("text/"):
                return _fetched_text(found, fetched.body.decode(charset, "replace"), reader.limits)
            kind = media_type or "of no stated type"
            note = f"document at {url} is {kind}, not a PDF or text; NimBridge did not read it"
    return _text_block(f"({note})"), f"{found.path}: {note}"


def _fetched_text(
    found: _Found, text: str, limits: DocumentLimits
) -> tuple[dict[str, Any], str | None]:
    if len(text) <= limits.max_chars:
        return _text_document(found.document, text, None), None
    kept = cut_at_word(text, limits.max_chars)
    cut = (
        f"NimBridge sends at most {limits.max_chars:,} characters of one document; "
        f"left out: the last {len(text) - len(kept):,} characters"
    )
    url = found.document["source"]["url"]
    return (
        _text_document(found.document, f"{kept}\n\n[… {cut}]", None),
        f"{found.path}: document at {url} cut: {cut}",
    )


async def _as_text(
    found: _Found,
    reader: DocumentReader,
    fetcher: SafeFetcher,
    url_policy: str | None,
    budget: FetchBudget | None,
) -> tuple[dict[str, Any], str | None]:
    source = found.document["source"]
    if source["type"] == "url":
        return await _from_url(found, reader, fetcher, cast(str, url_policy), budget)
    return _from_reading(found, await reader.read(source["data"]))


async def documents_as_text(
    req: MessagesRequest,
    reader: DocumentReader,
    fetcher: SafeFetcher,
    *,
    url_policy: str | None,
    notes: list[str],
    budget: FetchBudget | None = None,
) -> MessagesRequest:
    """`req` with its PDFs (and documents by URL) as text; what went wrong in `notes`.

    `url_policy`: the `image_urls` setting ("refuse": a note instead of a fetch), or
    None to leave documents by URL as they are (count_tokens fetches nothing).
    `budget`: the request's bytes by URL, shared with its images (one of their own: None).
    """
    found = list(_documents(req, with_urls=url_policy is not None))
    if not found:
        return req
    budget = budget or fetcher.request_budget()
    results = await asyncio.gather(
        *(_as_text(f, reader, fetcher, url_policy, budget) for f in found)
    )
    notes.extend(note for _, note in results if note is not None)
    blocks = {
        (f.message, f.block, f.inner): block for f, (block, _) in zip(found, results, strict=True)
    }
    return cast(MessagesRequest, _replaced(req, blocks))
