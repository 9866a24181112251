"""The request rewritten around its PDFs (no network: documents by URL are fetched in
tests/integration/test_documents.py)."""

import base64
import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.core.anthropic_types import MessagesRequest
from app.server.messages.documents import documents_as_text
from app.server.messages.pdf_text import DocumentLimits, DocumentReader, read_pdf
from app.server.safe_fetch import FetchPolicy, SafeFetcher
from tests.pdfs import encrypted, make_pdf

LIMITS = DocumentLimits()
REPORT = make_pdf(["Sales rose (a lot).\nCosts fell.", "Outlook: good"], title="Q3 report")


def b64(pdf: bytes) -> str:
    return base64.b64encode(pdf).decode()


@pytest.fixture
async def reader() -> AsyncIterator[DocumentReader]:
    made = DocumentReader()
    yield made
    made.close()


def pdf_block(pdf: bytes, **extra: Any) -> dict[str, Any]:
    source = {"type": "base64", "media_type": "application/pdf", "data": b64(pdf)}
    return {"type": "document", "source": source, **extra}


def request(*messages: dict[str, Any]) -> MessagesRequest:
    return {"model": "m", "max_tokens": 10, "messages": list(messages)}


@pytest.fixture
async def fetcher() -> AsyncIterator[SafeFetcher]:
    made = SafeFetcher(FetchPolicy())
    yield made
    await made.close()


async def test_pdfs_in_user_content_and_tool_results_become_text(
    reader: DocumentReader, fetcher: SafeFetcher
) -> None:
    untouched = {"role": "user", "content": "hi"}
    req = request(
        untouched,
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t", "name": "Read", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t",
                    "content": [{"type": "text", "text": "PDF file read"}, pdf_block(REPORT)],
                },
                pdf_block(REPORT, title="mine.pdf", context="from the user", cache_control={}),
            ],
        },
    )
    sent = copy.deepcopy(req)
    notes: list[str] = []
    out = await documents_as_text(req, reader, fetcher, url_policy="fetch", notes=notes)
    assert req == sent  # the client's request is as it came
    assert out["messages"][0] is untouched and out["messages"][1] is req["messages"][1]
    text = read_pdf(REPORT, LIMITS).text
    source = {"type": "text", "media_type": "text/plain", "data": text}
    content = out["messages"][2]["content"]
    assert isinstance(content, list)
    assert content[0]["content"] == [
        {"type": "text", "text": "PDF file read"},
        {"type": "document", "source": source, "title": "Q3 report"},
    ]
    assert content[1] == {
        "type": "document",
        "source": source,
        "title": "mine.pdf",
        "context": "from the user",
    }
    assert notes == []
    assert reader.pdfs_read == 1


async def test_nothing_to_read_gives_the_request_back(
    reader: DocumentReader, fetcher: SafeFetcher
) -> None:
    text_document = {"type": "document", "source": {"type": "text", "data": "t"}}
    req = request(
        {"role": "user", "content": [text_document, {"type": "tool_result", "tool_use_id": "x"}]},
        {"role": "assistant", "content": [pdf_block(REPORT)]},  # not the client's to send
    )
    assert await documents_as_text(req, reader, fetcher, url_policy="fetch", notes=[]) is req


async def test_what_cannot_be_read_is_a_note_in_place_and_in_notes(
    reader: DocumentReader, fetcher: SafeFetcher
) -> None:
    req = request(
        {
            "role": "user",
            "content": [
                pdf_block(encrypted(REPORT, "pw"), title="report.pdf"),
                pdf_block(make_pdf([None, None, None])),
                pdf_block(make_pdf(["x" * 80] * 3)),
            ],
        }
    )
    reader.limits = DocumentLimits(max_chars=150)
    notes: list[str] = []
    out = await documents_as_text(req, reader, fetcher, url_policy="fetch", notes=notes)
    content = out["messages"][0]["content"]
    assert isinstance(content, list)
    assert content[0] == {
        "type": "text",
        "text": "(PDF 'report.pdf' is password-protected: NimBridge cannot open it without "
        "the password)",
    }
    assert content[1] == {
        "type": "text",
        "text": "(The PDF has no text layer: its 3 pages are images; NimBridge sends text only)",
    }
    assert content[2]["type"] == "document"
    assert notes == [
        "messages.0.content.0: PDF 'report.pdf' is password-protected: NimBridge cannot open "
        "it without the password",
        "messages.0.content.1: the PDF has no text layer: its 3 pages are images; NimBridge "
        "sends text only",
        "messages.0.content.2: the PDF cut: NimBridge sends at most 150 characters of one PDF; "
        "left out: the last 81 characters of page 2 and page 3",
    ]


async def test_documents_by_url_are_left_for_count_tokens_and_refused_with_a_note(
    reader: DocumentReader, fetcher: SafeFetcher
) -> None:
    by_url = {"type": "document", "source": {"type": "url", "url": "https://x.example/a.pdf"}}
    req = request({"role": "user", "content": [by_url]})
    assert await documents_as_text(req, reader, fetcher, url_policy=None, notes=[]) is req
    notes: list[str] = []
    out = await documents_as_text(req, reader, fetcher, url_policy="refuse", notes=notes)
    words = (
        "document at https://x.example/a.pdf not fetched: this NimBridge does not fetch "
        'documents by URL ("image_urls": "refuse" in its settings)'
    )
    assert out["messages"][0]["content"] == [{"type": "text", "text": f"({words})"}]
    assert notes == [f"messages.0.content.0: {words}"]
