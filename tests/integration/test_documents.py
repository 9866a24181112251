"""PDFs, documents by URL and search_result blocks, through the real server and the SDK.

The upstream reads text only: what reaches the fake upstream must be the documents'
text (pages marked, title and source first), or a note saying why there is none, with
the same note in the request's record; never a 400. Documents by URL come from a small
server on 127.0.0.2, which the fetcher is told to count as public ("the internet"),
while 127.0.0.1 stays "the user's network", out of reach.
"""

import base64
import ipaddress
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from app.server.messages.pdf_text import DocumentLimits, DocumentReader
from app.server.records import RequestRecord
from app.server.safe_fetch import FetchPolicy, SafeFetcher, public_only
from tests.fake_upstream import (
    FakeUpstream,
    LoopThread,
    Recorded,
    chunk,
    last_user_text,
    reply_stream,
    text_stream,
)
from tests.integration.conftest import LiveProxy, MakeProxy
from tests.integration.test_claude_code_e2e import require_claude, run_nimbridge_code
from tests.pdfs import encrypted, make_pdf

PUBLIC, PRIVATE = "127.0.0.2", "127.0.0.1"
REPORT = make_pdf(["Sales rose.\nCosts fell.", "Outlook: good"], title="Q3 report")
REPORT_TEXT = (
    "Document: Q3 report\n\n--- page 1 of 2 ---\nSales rose.\nCosts fell.\n\n"
    "--- page 2 of 2 ---\nOutlook: good"
)
CLAUDE = "claude-sonnet-4-6"


def pdf_block(pdf: bytes, **extra: Any) -> dict[str, Any]:
    data = base64.b64encode(pdf).decode()
    return {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": data},
        **extra,
    }


def url_block(url: str) -> dict[str, Any]:
    return {"type": "document", "source": {"type": "url", "url": url}}


def read_tool_turns(result_content: list[Any]) -> list[Any]:
    """Claude Code's Read of a PDF: a tool_result with a line of text and the document."""
    return [
        {"role": "user", "content": "summarise /tmp/r.pdf"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"p": "r.pdf"}}
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": result_content}
            ],
        },
    ]


def finished_records(live: LiveProxy) -> list[RequestRecord]:
    finished: list[RequestRecord] = []
    live.server.app_state.on_request_finished.append(finished.append)
    return finished


def last_record(finished: list[RequestRecord]) -> RequestRecord:
    deadline = time.monotonic() + 3
    while not finished and time.monotonic() < deadline:
        time.sleep(0.01)
    return finished[-1]


def ask(live: LiveProxy, messages: list[Any], *, stream: bool = False) -> Any:
    with live.client() as sdk:
        if stream:
            with sdk.messages.stream(model=CLAUDE, max_tokens=10, messages=messages) as events:
                return events.get_final_message()
        return sdk.messages.create(model=CLAUDE, max_tokens=10, messages=messages)


def upstream_texts(live: LiveProxy) -> list[str]:
    """The text of each message of the last upstream request."""
    texts = []
    for message in live.upstream.chat_requests[-1].body["messages"]:
        content = message.get("content")
        if isinstance(content, list):
            content = "\n".join(part.get("text", "") for part in content)
        texts.append(content or "")
    return texts


# ------------------------------------------------------------------ base64 PDFs


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_pdf_reaches_the_model_as_text(make_proxy: MakeProxy, stream: bool) -> None:
    live = make_proxy()
    finished = finished_records(live)
    messages = [
        {
            "role": "user",
            "content": [pdf_block(REPORT, context="from finance"), {"type": "text", "text": "?"}],
        }
    ]
    reply = ask(live, messages, stream=stream)
    assert reply.stop_reason == "end_turn"
    assert upstream_texts(live) == [
        REPORT_TEXT.replace("Q3 report\n", "Q3 report\nContext: from finance\n") + "\n\n?"
    ]
    record = last_record(finished)
    assert record.repairs == []
    assert record.client_body["messages"][0]["content"][0]["source"]["type"] == "base64"


def test_a_pdf_claude_code_read_reaches_the_model_as_text(make_proxy: MakeProxy) -> None:
    live = make_proxy()
    ask(
        live,
        read_tool_turns(
            [{"type": "text", "text": "PDF file read: /tmp/r.pdf (1KB)"}, pdf_block(REPORT)]
        ),
    )
    tool_message = live.upstream.chat_requests[-1].body["messages"][-1]
    assert tool_message == {
        "role": "tool",
        "tool_call_id": "toolu_1",
        "content": f"PDF file read: /tmp/r.pdf (1KB)\n{REPORT_TEXT}",
    }
    # The next turn sends the same PDF again: read once, remembered.
    ask(live, read_tool_turns([pdf_block(REPORT)]))
    assert live.server.app_state.documents.pdfs_read == 1


@pytest.mark.parametrize(
    ("pdf", "note"),
    [
        pytest.param(
            encrypted(REPORT, "pw"),
            "PDF 'report.pdf' is password-protected: NimBridge cannot open it without the password",
            id="password",
        ),
        pytest.param(
            make_pdf([None, None, None]),
            "PDF 'report.pdf' has no text layer: its 3 pages are images; NimBridge sends text only",
            id="scanned",
        ),
        pytest.param(
            REPORT + b" " * 70_000,
            "PDF 'report.pdf' is 69 KB, over NimBridge's limit of 64 KB for one PDF; it was not "
            "read",
            id="too-big",
        ),
        pytest.param(
            REPORT[:300],
            "PDF 'report.pdf' is damaged: NimBridge could not read it",
            id="damaged",
        ),
    ],
)
def test_a_pdf_without_text_gets_a_note_not_a_400(
    make_proxy: MakeProxy, pdf: bytes, note: str
) -> None:
    live = make_proxy()
    live.server.app_state.documents = DocumentReader(DocumentLimits(max_pdf_bytes=64 * 1024))
    finished = finished_records(live)
    reply = ask(live, [{"role": "user", "content": [pdf_block(pdf, title="report.pdf")]}])
    assert reply.stop_reason == "end_turn"
    [text] = upstream_texts(live)
    assert text.startswith(f"({note}")
    [repair] = last_record(finished).repairs
    assert repair.startswith(f"messages.0.content.0: {note}")


def test_a_long_pdf_is_cut_saying_so(make_proxy: MakeProxy) -> None:
    live = make_proxy()
    live.server.app_state.documents = DocumentReader(DocumentLimits(max_pages=1))
    finished = finished_records(live)
    ask(live, read_tool_turns([pdf_block(REPORT)]))
    note = "NimBridge reads at most 1 page of one PDF; left out: page 2"
    tool_text = live.upstream.chat_requests[-1].body["messages"][-1]["content"]
    assert tool_text.endswith(f"Costs fell.\n\n[… {note}]")
    assert last_record(finished).repairs == [
        f"messages.2.content.0.content.0: PDF 'Q3 report' cut: {note}"
    ]


def test_count_tokens_counts_the_pdfs_text(make_proxy: MakeProxy) -> None:
    live = make_proxy()
    long_pdf = make_pdf(["many words " * 300] * 4)
    with live.client() as sdk:
        counts = []
        for pdf in (make_pdf(["short"]), long_pdf):
            messages: list[Any] = [{"role": "user", "content": [pdf_block(pdf)]}]
            counts.append(sdk.messages.count_tokens(model=CLAUDE, messages=messages).input_tokens)
    assert counts[1] - counts[0] > 12_000 / 3.5 * 0.9  # the long one's text, near enough
    ask(live, [{"role": "user", "content": [pdf_block(long_pdf)]}])
    assert live.server.app_state.documents.pdfs_read == 2  # the message reused the count's


# ------------------------------------------------------------------ documents by URL


@dataclass
class DocumentServer:
    port: int
    hits: list[str] = field(default_factory=list)

    def url(self, path: str, address: str = PUBLIC) -> str:
        return f"http://{address}:{self.port}{path}"


@pytest.fixture(scope="module")
def document_server(loop_thread: LoopThread) -> Iterator[DocumentServer]:
    server = DocumentServer(0)

    def serve(body: bytes, content_type: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            server.hits.append(request.path)
            return web.Response(body=body, headers={"Content-Type": content_type})

        return handler

    app = web.Application()
    app.router.add_get("/report.pdf", serve(REPORT, "application/pdf"))
    app.router.add_get("/download", serve(REPORT, "application/octet-stream"))
    app.router.add_get("/notes.txt", serve("Ünïcode notes".encode(), "text/plain; charset=utf-8"))
    app.router.add_get("/cat.png", serve(b"\x89PNG\r\n\x1a\n", "image/png"))

    async def start() -> web.AppRunner:
        runner = web.AppRunner(app)
        await runner.setup()
        with socket.socket() as probe:
            probe.bind((PRIVATE, 0))
            server.port = probe.getsockname()[1]
        for address in (PUBLIC, PRIVATE):
            await web.TCPSite(runner, address, server.port).start()
        return runner

    runner = loop_thread.run(start())
    yield server
    loop_thread.run(runner.cleanup())


def _public_for_tests(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    return None if str(address) == PUBLIC else public_only(address)


def url_proxy(make_proxy: MakeProxy, image_urls: str = "pass") -> LiveProxy:
    live = make_proxy(image_urls=image_urls)
    live.server.app_state.fetcher = SafeFetcher(
        FetchPolicy(max_bytes=64 * 1024, timeout_s=2.0), check=_public_for_tests
    )
    return live


@pytest.mark.parametrize("image_urls", ["pass", "fetch"])
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/report.pdf", REPORT_TEXT, id="pdf"),
        pytest.param("/download", REPORT_TEXT, id="pdf-by-its-bytes"),
        pytest.param("/notes.txt", "Ünïcode notes", id="text"),
    ],
)
def test_a_document_by_url_is_fetched_and_read(
    make_proxy: MakeProxy,
    document_server: DocumentServer,
    image_urls: str,
    path: str,
    expected: str,
) -> None:
    live = url_proxy(make_proxy, image_urls)
    finished = finished_records(live)
    ask(live, [{"role": "user", "content": [url_block(document_server.url(path))]}])
    assert upstream_texts(live) == [expected]
    assert last_record(finished).repairs == []


@pytest.mark.parametrize(
    ("path", "address", "words"),
    [
        pytest.param("/cat.png", PUBLIC, "is image/png, not a PDF or text", id="not-a-document"),
        pytest.param("/missing", PUBLIC, "could not be fetched: ", id="404"),
        pytest.param(
            "/report.pdf", PRIVATE, "127.0.0.1 is a loopback address (this computer)", id="private"
        ),
    ],
)
def test_a_document_by_url_that_cannot_be_read_gets_a_note(
    make_proxy: MakeProxy, document_server: DocumentServer, path: str, address: str, words: str
) -> None:
    live = url_proxy(make_proxy)
    finished = finished_records(live)
    url = document_server.url(path, address)
    ask(live, read_tool_turns([url_block(url)]))
    tool_text = live.upstream.chat_requests[-1].body["messages"][-1]["content"]
    assert tool_text.startswith(f"(document at {url} ") and words in tool_text
    [repair] = last_record(finished).repairs
    assert repair == f"messages.2.content.0.content.0: {tool_text[1:-1]}"


def test_refuse_fetches_no_document(make_proxy: MakeProxy, document_server: DocumentServer) -> None:
    live = url_proxy(make_proxy, "refuse")
    url = document_server.url("/report.pdf")
    hits = len(document_server.hits)
    reply = ask(live, [{"role": "user", "content": [url_block(url)]}])
    assert reply.stop_reason == "end_turn"
    assert upstream_texts(live) == [
        f"(document at {url} not fetched: this NimBridge does not fetch documents by URL "
        '("image_urls": "refuse" in its settings))'
    ]
    assert len(document_server.hits) == hits


def test_count_tokens_does_not_fetch(
    make_proxy: MakeProxy, document_server: DocumentServer
) -> None:
    live = url_proxy(make_proxy)
    hits = len(document_server.hits)
    messages: list[Any] = [
        {"role": "user", "content": [url_block(document_server.url("/report.pdf"))]}
    ]
    with live.client() as sdk:
        sdk.messages.count_tokens(model=CLAUDE, messages=messages)
    assert len(document_server.hits) == hits


# ------------------------------------------------------------------ search_result blocks


def test_search_results_reach_the_model_with_title_and_source(make_proxy: MakeProxy) -> None:
    live = make_proxy()
    result = {
        "type": "search_result",
        "source": "https://kb.example/refunds",
        "title": "Refund policy",
        "content": [{"type": "text", "text": "Refunds within 30 days."}],
        "citations": {"enabled": True},
    }
    expected = (
        "Search result: Refund policy\nSource: https://kb.example/refunds\n\n"
        "Refunds within 30 days."
    )
    ask(live, [{"role": "user", "content": [result, {"type": "text", "text": "refunds?"}]}])
    assert upstream_texts(live) == [f"{expected}\n\nrefunds?"]
    ask(live, read_tool_turns([result]))
    assert live.upstream.chat_requests[-1].body["messages"][-1]["content"] == expected


# ------------------------------------------------------------------ the real Claude Code


async def pdf_reading_agent(request: web.Request, record: Recorded) -> web.StreamResponse:
    """Reads the PDF named in the prompt with Claude Code's Read tool, then answers."""
    body = record.body
    messages = body.get("messages", [])
    has_read = any(t.get("function", {}).get("name") == "Read" for t in body.get("tools", []))
    if has_read and not any(m.get("role") == "tool" for m in messages):
        path = last_user_text(body).split("READ ", 1)[1].split()[0]
        arguments = json.dumps({"file_path": path})
        call = {"index": 0, "id": "call_pdf_1", "type": "function"}
        items: list[Any] = [
            chunk(body, {"role": "assistant", "content": ""}),
            chunk(body, {"tool_calls": [{**call, "function": {"name": "Read", "arguments": ""}}]}),
            chunk(body, {"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}),
            chunk(body, {}, finish_reason="tool_calls"),
            "[DONE]",
        ]
    else:
        items = text_stream(body, "Sales rose.")
    return await reply_stream(items)(request, record)


def test_claude_code_reads_a_pdf_through_nimbridge(upstream: FakeUpstream, tmp_path: Path) -> None:
    where = require_claude()
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(REPORT)
    upstream.enqueue(*[pdf_reading_agent] * 20)
    _, result = run_nimbridge_code(
        upstream, tmp_path, where, f"READ {pdf} and summarise it", "Read"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tool_texts = [
        m["content"]
        for r in upstream.chat_requests
        for m in r.body["messages"]
        if m["role"] == "tool"
    ]
    assert tool_texts, result.stdout + result.stderr
    assert REPORT_TEXT in tool_texts[-1]
