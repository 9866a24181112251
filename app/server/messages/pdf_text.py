"""A PDF's text for a model that reads text only: `read_pdf`, and `DocumentReader`
around it for the server.

Invariants:
- Never raises: a PDF that is password-protected (the empty password is tried first),
  has no text layer, is damaged or too big reads as `PdfReading.problem`, in words that
  follow the PDF's name ("has no text layer: its 3 pages are images; ...").
- The text is each page's, marked "--- page 3 of 12 ---", bounded by `DocumentLimits`:
  bytes of one PDF, pages read, characters (cut at a word end) and time (checked
  between pages); what a limit left out is said at the end of the text and in
  `PdfReading.cut`.
- pypdf runs in `DocumentReader`'s own two worker threads: never on the event loop,
  never in the default executor (where DNS lookups run), and a page stuck past the
  deadline is waited for no longer than a grace period (its thread cannot be stopped;
  its late result is dropped).
- Claude Code sends the same PDF again on every turn: readings are kept in a small LRU
  keyed by the SHA-256 of the data (failed and slow ones too: no retry every turn), and
  a PDF already being read is read once however many requests ask for it meanwhile.
"""

import asyncio
import base64
import hashlib
import io
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pypdf import PageObject, PdfReader

from app.tasks import create_task

MiB = 1024 * 1024
# Within this many characters of the limit a cut moves back to a word's end.
_CUT_LOOKBACK = 200


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    max_pdf_bytes: int = 32 * MiB  # Anthropic's own limit for a request with PDFs
    max_pages: int = 100  # Anthropic reads at most 100 pages of a PDF too
    max_chars: int = 200_000  # about 50,000 tokens: room left in a 128K context
    timeout_s: float = 20.0


@dataclass(frozen=True, slots=True)
class PdfReading:
    """What one PDF reads as: its text, or (text None) why it has none in words that
    follow its name ("is password-protected: ...")."""

    text: str | None = None  # page-marked, cut to the limits
    title: str | None = None  # the PDF's metadata title
    problem: str = ""  # text None: what happened
    cut: str = ""  # text cut: what was left out


def _size(size: int) -> str:
    return f"{size / MiB:.1f} MB" if size >= MiB else f"{size / 1024:.0f} KB"


def _too_big(size: int, limits: DocumentLimits) -> PdfReading:
    return PdfReading(
        problem=f"is {_size(size)}, over NimBridge's limit of "
        f"{_size(limits.max_pdf_bytes)} for one PDF; it was not read"
    )


def cut_at_word(text: str, room: int) -> str:
    """At most `room` characters of `text`, ending at a word's end where one is near."""
    kept = text[: max(0, room)]
    space = kept.rfind(" ", len(kept) - _CUT_LOOKBACK)
    newline = kept.rfind("\n", len(kept) - _CUT_LOOKBACK)
    end = max(space, newline)
    return kept[:end] if end > 0 else kept


def _has_images(page: "PageObject") -> bool:
    try:
        resources = page.get("/Resources")
        xobjects = resources.get_object().get("/XObject") if resources is not None else None
        if xobjects is None:
            return False
        return any(
            x.get_object().get("/Subtype") == "/Image" for x in xobjects.get_object().values()
        )
    except Exception:  # a damaged resource dictionary: say nothing about images
        return False


def _metadata_title(reader: "PdfReader") -> str | None:
    try:
        title = reader.metadata.title if reader.metadata is not None else None
    except Exception:  # a damaged info dictionary: no title
        return None
    return (title.strip() or None) if isinstance(title, str) else None


def _pages(first: int, last: int) -> str:
    return f"page {first}" if first == last else f"pages {first}-{last}"


def _why(exc: Exception) -> str:
    words = f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
    return words if len(words) <= 120 else words[:119] + "…"


def _no_text(pages_read: int, total: int, image_pages: int) -> str:
    pages = f"its {pages_read} pages" if pages_read == total else f"the first {pages_read} pages"
    if pages_read == 1:
        pages = "its one page"
    if image_pages == pages_read:
        what = "is an image" if pages_read == 1 else "are images"
    else:
        what = "holds no text" if pages_read == 1 else "hold no text"
    return f"has no text layer: {pages} {what}; NimBridge sends text only"


def read_pdf(
    body: bytes, limits: DocumentLimits, *, clock: Callable[[], float] = time.monotonic
) -> PdfReading:
    """A PDF's text, page by page within `limits`; where it has none, why (never raises)."""
    if len(body) > limits.max_pdf_bytes:
        return _too_big(len(body), limits)
    deadline = clock() + limits.timeout_s
    # Imported with the first PDF (in a worker thread): pypdf is ~7 MB a server that is
    # never sent one need not hold.
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(body))
        if reader.is_encrypted and not reader.decrypt(""):
            return PdfReading(
                problem="is password-protected: NimBridge cannot open it without the password"
            )
        title = _metadata_title(reader)
        total = len(reader.pages)
    except Exception as exc:  # pypdf raises many kinds on a damaged file
        return PdfReading(problem=f"is damaged: NimBridge could not read it ({_why(exc)})")
    if total == 0:
        return PdfReading(title=title, problem="has no pages")
    pieces: list[str] = []
    chars = pages_read = image_pages = failed_pages = 0
    has_text = False
    cut = ""
    for number in range(1, min(total, limits.max_pages) + 1):
        if clock() > deadline:
            cut = f"NimBridge stopped reading after {limits.timeout_s:g} s; left out: "
            cut += _pages(number, total)
            break
        page: PageObject | None = None
        try:
            page = reader.pages[number - 1]
            text = (page.extract_text() or "").strip()
        except Exception as exc:  # one damaged page: the others may still read
            text, failed = "", f"(this page could not be read: {_why(exc)})"
            failed_pages += 1
        else:
            failed = "(no text on this page)"
        pages_read += 1
        if text:
            has_text = True
        elif page is not None and _has_images(page):
            image_pages += 1
            failed = "(no text on this page: it holds images)"
        piece = f"--- page {number} of {total} ---\n{text or failed}"
        room = limits.max_chars - chars
        if len(piece) > room:
            kept = cut_at_word(piece, room)
            pieces.append(kept)
            more = f" and {_pages(number + 1, total)}" if number < total else ""
            cut = (
                f"NimBridge sends at most {limits.max_chars:,} characters of one PDF; left out: "
                f"the last {len(piece) - len(kept):,} characters of page {number}{more}"
            )
            break
        pieces.append(piece)
        chars += len(piece) + 2
    else:
        if total > limits.max_pages:
            cut = (
                f"NimBridge reads at most {limits.max_pages} page{'s' * (limits.max_pages != 1)} "
                "of one PDF; left out: "
                f"{_pages(limits.max_pages + 1, total)}"
            )
    if not has_text:
        if pages_read == 0:
            return PdfReading(
                title=title, problem=f"took over {limits.timeout_s:g} s to open; it was not read"
            )
        if failed_pages == pages_read:
            return PdfReading(
                title=title, problem=f"is damaged: no page of it could be read ({failed})"
            )
        return PdfReading(title=title, problem=_no_text(pages_read, total, image_pages))
    text = "\n\n".join(pieces)
    if cut:
        text += f"\n\n[… {cut}]"
    return PdfReading(text=text, title=title, cut=cut)


def _read_base64_pdf(data: str, limits: DocumentLimits) -> PdfReading:
    try:
        body = base64.b64decode(data)
    except ValueError:  # binascii.Error, or characters that are not ASCII
        return PdfReading(problem="is not valid base64: NimBridge could not read it")
    return read_pdf(body, limits)


def _digest(data: str | bytes) -> str:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


class DocumentReader:
    """Reads PDFs off the event loop, within limits, remembering the last few readings."""

    def __init__(
        self,
        limits: DocumentLimits | None = None,
        *,
        cache_size: int = 16,
        workers: int = 2,
        grace_s: float = 5.0,  # a worker this late past its own deadline is stuck in a page
    ) -> None:
        self.limits = limits or DocumentLimits()
        self._grace_s = grace_s
        self._cache_size = cache_size
        self._cache: OrderedDict[str, PdfReading] = OrderedDict()
        self._reading: dict[str, asyncio.Task[PdfReading]] = {}
        self._workers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pdf-reader")
        self.pdfs_read = 0  # readings made (not from the cache): how tests see the cache work

    def close(self) -> None:
        """Stop taking work; a page being read finishes in its thread."""
        self._workers.shutdown(wait=False, cancel_futures=True)

    async def read(self, data: str | bytes) -> PdfReading:
        """The reading of a PDF given as base64 (str) or as its bytes."""
        size = len(data) * 3 // 4 if isinstance(data, str) else len(data)
        if size > self.limits.max_pdf_bytes:
            return _too_big(size, self.limits)
        key = await asyncio.to_thread(_digest, data)  # milliseconds per megabyte
        known = self._cache.get(key)
        if known is not None:
            self._cache.move_to_end(key)
            return known
        task = self._reading.get(key)
        if task is None:
            task = create_task(self._read_once(key, data), name="read PDF")
            self._reading[key] = task
        # Shielded: a client that leaves does not end a reading others may wait for.
        return await asyncio.shield(task)

    async def _read_once(self, key: str, data: str | bytes) -> PdfReading:
        loop = asyncio.get_running_loop()
        try:
            if isinstance(data, str):
                work = loop.run_in_executor(self._workers, _read_base64_pdf, data, self.limits)
            else:
                work = loop.run_in_executor(self._workers, read_pdf, data, self.limits)
            try:
                # The worker checks its deadline between pages; this bounds one stuck page
                # (and time queued behind other PDFs). The thread cannot be stopped: its
                # late result is dropped.
                async with asyncio.timeout(self.limits.timeout_s + self._grace_s):
                    reading = await work
            except TimeoutError:
                reading = PdfReading(
                    problem=f"took over {self.limits.timeout_s:g} s to read; it was not read"
                )
            self.pdfs_read += 1
            self._cache[key] = reading  # slow and failed readings too: no retry every turn
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return reading
        finally:
            del self._reading[key]
