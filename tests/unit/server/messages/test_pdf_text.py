"""A PDF's text within limits, and the reader's cache, on PDFs made here (tests/pdfs.py)."""

import asyncio
import base64
import itertools
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest

from app.server.messages.pdf_text import DocumentLimits, DocumentReader, read_pdf
from tests.pdfs import encrypted, make_pdf

LIMITS = DocumentLimits()
REPORT = make_pdf(["Sales rose (a lot).\nCosts fell.", "Outlook: good"], title="Q3 report")


def b64(pdf: bytes) -> str:
    return base64.b64encode(pdf).decode()


def test_pages_are_marked_and_the_title_read() -> None:
    reading = read_pdf(REPORT, LIMITS)
    assert reading.text == (
        "--- page 1 of 2 ---\nSales rose (a lot).\nCosts fell.\n\n"
        "--- page 2 of 2 ---\nOutlook: good"
    )
    assert reading.title == "Q3 report"
    assert reading.problem == reading.cut == ""


def test_a_page_without_text_is_marked_among_pages_with_text() -> None:
    reading = read_pdf(make_pdf(["one", None, ""]), LIMITS)
    assert reading.text is not None
    assert "--- page 2 of 3 ---\n(no text on this page: it holds images)" in reading.text
    assert reading.text.endswith("--- page 3 of 3 ---\n(no text on this page)")


@pytest.mark.parametrize(
    ("pdf", "problem"),
    [
        pytest.param(
            make_pdf([None, None, None]),
            "has no text layer: its 3 pages are images; NimBridge sends text only",
            id="scanned",
        ),
        pytest.param(
            make_pdf([None]),
            "has no text layer: its one page is an image; NimBridge sends text only",
            id="scanned-one-page",
        ),
        pytest.param(
            make_pdf(["", None]),
            "has no text layer: its 2 pages hold no text; NimBridge sends text only",
            id="blank",
        ),
        pytest.param(
            encrypted(REPORT, "secret"),
            "is password-protected: NimBridge cannot open it without the password",
            id="password",
        ),
        pytest.param(
            b"%PDF-1.4\nnot really a PDF",
            "is damaged: NimBridge could not read it (PdfStreamError: Stream has ended "
            "unexpectedly)",
            id="garbage",
        ),
        pytest.param(REPORT[: len(REPORT) // 2], "is damaged: NimBridge could not", id="cut-off"),
        pytest.param(make_pdf([]), "has no pages", id="no-pages"),
        pytest.param(
            REPORT + b"\0" * (2 * 1024 * 1024),
            "is 2.0 MB, over NimBridge's limit of 1.0 MB for one PDF; it was not read",
            id="too-big",
        ),
    ],
)
def test_what_has_no_text_says_why(pdf: bytes, problem: str) -> None:
    reading = read_pdf(pdf, DocumentLimits(max_pdf_bytes=1024 * 1024))
    assert reading.text is None
    assert reading.problem.startswith(problem)


def test_an_empty_user_password_is_tried() -> None:
    reading = read_pdf(encrypted(REPORT, ""), LIMITS)
    assert reading.text is not None and "Outlook: good" in reading.text


def test_pages_past_the_limit_are_left_out_saying_so() -> None:
    reading = read_pdf(make_pdf([f"page {n}" for n in range(1, 6)]), DocumentLimits(max_pages=2))
    assert reading.text is not None
    assert "page 2" in reading.text and "page 3" not in reading.text.split("[…")[0]
    assert reading.cut == "NimBridge reads at most 2 pages of one PDF; left out: pages 3-5"
    assert reading.text.endswith(f"\n\n[… {reading.cut}]")


def test_text_past_the_limit_is_cut_at_a_word_saying_how_much() -> None:
    pdf = make_pdf(["alpha " * 30, "beta " * 30, "gamma"])
    reading = read_pdf(pdf, DocumentLimits(max_chars=250))
    assert reading.text is not None
    kept = reading.text.split("\n\n[…")[0]
    assert len(kept) <= 250 and kept.endswith("beta")
    assert reading.cut.startswith("NimBridge sends at most 250 characters of one PDF; left out: ")
    assert reading.cut.endswith(" characters of page 2 and page 3")
    left_out = int(reading.cut.split("the last ")[1].split(" ")[0])
    assert left_out == len("--- page 2 of 3 ---\n" + ("beta " * 30).strip()) - len(
        kept.split("\n\n")[1]
    )


def test_the_last_page_cut_names_no_pages_after_it() -> None:
    reading = read_pdf(make_pdf(["word " * 100]), DocumentLimits(max_chars=100))
    assert reading.cut.endswith(" characters of page 1")
    assert "pages" not in reading.cut


def test_reading_stops_at_the_time_limit_between_pages() -> None:
    ticks = itertools.count()  # each look at the clock: one second later
    reading = read_pdf(
        make_pdf(["one", "two", "three", "four"]),
        DocumentLimits(timeout_s=2.5),
        clock=lambda: float(next(ticks)),
    )
    assert reading.text is not None and "two" in reading.text and "three" not in reading.text
    assert reading.cut == "NimBridge stopped reading after 2.5 s; left out: pages 3-4"


def test_no_time_even_for_the_first_page() -> None:
    ticks = itertools.count(step=10)
    reading = read_pdf(REPORT, DocumentLimits(timeout_s=1), clock=lambda: float(next(ticks)))
    assert reading.problem == "took over 1 s to open; it was not read"


# ------------------------------------------------------------------ DocumentReader


@pytest.fixture
async def reader() -> AsyncIterator[DocumentReader]:
    made = DocumentReader()
    yield made
    made.close()


async def test_a_pdf_sent_again_is_not_read_again(reader: DocumentReader) -> None:
    first = await reader.read(b64(REPORT))
    assert first.text is not None and reader.pdfs_read == 1
    assert await reader.read(b64(REPORT)) is first
    assert reader.pdfs_read == 1
    await reader.read(REPORT)  # the same PDF as bytes (fetched): a key of its own
    await reader.read(b64(make_pdf(["other"])))
    assert reader.pdfs_read == 3


async def test_requests_at_once_share_one_reading(reader: DocumentReader) -> None:
    readings = await asyncio.gather(*(reader.read(b64(REPORT)) for _ in range(4)))
    assert reader.pdfs_read == 1
    assert all(reading is readings[0] for reading in readings)


async def test_the_cache_is_bounded() -> None:
    reader = DocumentReader(cache_size=1)
    try:
        for pdf in (REPORT, make_pdf(["b"]), REPORT):
            await reader.read(pdf)
        assert reader.pdfs_read == 3  # the first was forgotten for the second
    finally:
        reader.close()


async def test_base64_over_the_limit_is_not_even_decoded() -> None:
    reader = DocumentReader(DocumentLimits(max_pdf_bytes=1000))
    try:
        reading = await reader.read("A" * 4000)
        assert reading.problem.startswith("is 3 KB, over NimBridge's limit of 1 KB")
        assert reader.pdfs_read == 0
    finally:
        reader.close()


async def test_not_base64(reader: DocumentReader) -> None:
    reading = await reader.read("JVBERi0xA")  # padding missing
    assert reading.problem == "is not valid base64: NimBridge could not read it"


async def test_a_page_that_takes_too_long_is_given_up_on() -> None:
    slow_page = make_pdf(["\n".join(["w"] * 30000)])  # about 1.5 s of pypdf
    reader = DocumentReader(DocumentLimits(timeout_s=0.05), grace_s=0.1)
    try:
        started = time.monotonic()
        reading = await reader.read(slow_page)
        assert time.monotonic() - started < 1.0
        assert reading.text is None
        assert reading.problem.startswith("took over 0.05 s to")
        assert await reader.read(slow_page) is reading  # not tried again every turn
    finally:
        reader.close()


def test_the_server_imports_pypdf_and_the_page_converter_only_when_used() -> None:
    """pypdf, Beautiful Soup and markdownify (~12 MB together) are imported with the first
    PDF or fetched page: a server that is never sent one does not hold them."""
    probe = (
        "import sys, app.server.app; "
        "print(sorted(m for m in ('pypdf', 'bs4', 'markdownify') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
