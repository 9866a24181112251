"""`PageFetcher`: a web page as readable Markdown for the model (`backends.WebFetch`).

Invariants:
- Downloads go through `SafeFetcher` only: each address connected to is checked (no
  private, loopback or link-local ones unless the user allowed them), size, time and
  redirects are bounded there.
- The domain filters apply to the URL asked for and to where redirects ended.
- Failures leave as `WebToolError` with Anthropic's codes: a filter or a private address
  `url_not_allowed`, anything the site or the network did `url_not_accessible`, a body
  that is not text (nor a PDF with text) `unsupported_content_type`; each in words.
- HTML becomes Markdown with markdownify (beautifulsoup4's stdlib parser, no lxml), the
  page's chrome (navigation, header, footer, scripts) dropped first; the text is cut to
  `max_chars` at a paragraph or word boundary, saying so. PDFs become text with pypdf.
  Both run in a worker thread: they are seconds of CPU for a big page.
"""

import asyncio
import datetime
import io
import logging
from collections.abc import Callable

from yarl import URL

from app.core.server_tools.backends import (
    INVALID_INPUT,
    UNSUPPORTED_CONTENT_TYPE,
    URL_NOT_ACCESSIBLE,
    URL_NOT_ALLOWED,
    URL_TOO_LONG,
    FetchedPage,
    WebToolError,
    domain_matches,
)
from app.server.safe_fetch import AddressRefused, FetchError, SafeFetcher

log = logging.getLogger(__name__)

MAX_URL_CHARS = 2048
HTML_TYPES = ("text/html", "application/xhtml+xml")
TEXT_TYPES = ("application/json", "application/xml", "application/javascript")
MAX_HTML_BYTES = 2 * 1024 * 1024  # parsed of a page (see html_to_markdown)


def _utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class PageFetcher:
    """Fetches through the server's `SafeFetcher` (shared: one pool, one address policy)."""

    def __init__(self, fetcher: SafeFetcher, *, now: Callable[[], str] = _utc_now) -> None:
        self._fetcher = fetcher
        self._now = now

    async def fetch(
        self,
        url: str,
        *,
        max_chars: int,
        allowed_domains: tuple[str, ...] = (),
        blocked_domains: tuple[str, ...] = (),
    ) -> FetchedPage:
        if len(url) > MAX_URL_CHARS:
            raise WebToolError(URL_TOO_LONG, f"the URL is over {MAX_URL_CHARS} characters")
        try:
            parsed = URL(url)
        except ValueError:
            raise WebToolError(INVALID_INPUT, f"{url!r} is not a valid URL") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise WebToolError(INVALID_INPUT, f"{url!r} is not an http(s) URL")
        _check_domain(parsed.host, allowed_domains, blocked_domains)
        try:
            fetched = await self._fetcher.fetch(url)
        except AddressRefused as exc:
            raise WebToolError(
                URL_NOT_ALLOWED,
                f"{exc} (to allow it, turn on fetching from private addresses in NimBridge's "
                "settings)",
            ) from None
        except FetchError as exc:
            raise WebToolError(URL_NOT_ACCESSIBLE, str(exc)) from None
        final = URL(fetched.url)
        if final.host != parsed.host:
            _check_domain(final.host or "", allowed_domains, blocked_domains, redirected=True)
        # Parsing is CPU work (markdownify takes seconds for a megabyte of HTML): off the
        # loop, so the server's streams and pings go on meanwhile.
        title, text = await asyncio.to_thread(_to_text, fetched.body, fetched.content_type, url)
        log.debug(
            "fetched %s: %d bytes, %d chars of text", fetched.url, len(fetched.body), len(text)
        )
        return FetchedPage(
            url=fetched.url,
            title=title,
            text=cut_text(text.strip(), max_chars),
            media_type="text/plain",
            retrieved_at=self._now(),
        )


def _to_text(body: bytes, content_type: str, url: str) -> tuple[str | None, str]:
    """(title, readable text) of a body; WebToolError for what is not text."""
    media_type, charset = _parse_content_type(content_type)
    if media_type in HTML_TYPES or (not media_type and _looks_like_html(body)):
        return html_to_markdown(body, charset)
    if media_type == "application/pdf" or (not media_type and body.startswith(b"%PDF-")):
        return pdf_to_text(body, url)
    if (
        media_type.startswith("text/")
        or media_type in TEXT_TYPES
        or media_type.endswith(("+json", "+xml"))
    ):
        return None, body.decode(charset or "utf-8", "replace")
    if not media_type and _looks_like_text(body):
        return None, body.decode("utf-8")
    kind = media_type or "of no stated type and not text"
    raise WebToolError(
        UNSUPPORTED_CONTENT_TYPE,
        f"{url} is {kind}; NimBridge's web fetch reads web pages, text and PDFs",
    )


def pdf_to_text(body: bytes, url: str) -> tuple[str | None, str]:
    """(title, text) of a PDF's pages, a blank line between pages."""
    from pypdf import PdfReader  # imported with the first PDF: ~7 MB held only when used

    try:
        reader = PdfReader(io.BytesIO(body))
        if reader.is_encrypted and not reader.decrypt(""):
            raise WebToolError(UNSUPPORTED_CONTENT_TYPE, f"{url} is a password-protected PDF")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = reader.metadata.title if reader.metadata is not None else None
    except WebToolError:
        raise
    except Exception as exc:  # pypdf raises many kinds on a damaged file
        raise WebToolError(
            UNSUPPORTED_CONTENT_TYPE,
            f"{url} is a PDF NimBridge could not read ({exc.__class__.__name__})",
        ) from None
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    if not text:
        raise WebToolError(
            UNSUPPORTED_CONTENT_TYPE, f"{url} is a PDF without text (scanned pages, perhaps)"
        )
    return (title.strip() or None) if title else None, text


def _check_domain(
    host: str, allowed: tuple[str, ...], blocked: tuple[str, ...], *, redirected: bool = False
) -> None:
    how = f"the page redirected to {host}, which" if redirected else host
    if domain_matches(host, blocked):
        raise WebToolError(URL_NOT_ALLOWED, f"{how} is among the blocked domains")
    if allowed and not domain_matches(host, allowed):
        raise WebToolError(
            URL_NOT_ALLOWED, f"{how} is not among the allowed domains ({', '.join(allowed)})"
        )


def _parse_content_type(header: str) -> tuple[str, str | None]:
    media_type, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("\"'")
    if charset is not None:
        try:
            "".encode(charset)
        except LookupError:
            charset = None  # a charset Python does not know: guess as if none was given
    return media_type.strip().lower(), charset


def _looks_like_html(body: bytes) -> bool:
    head = body[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


def _looks_like_text(body: bytes) -> bool:
    try:
        body[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\0" not in body[:4096]


def html_to_markdown(body: bytes, charset: str | None = None) -> tuple[str | None, str]:
    """(title, Markdown of the page's main content) of at most MAX_HTML_BYTES of HTML."""
    # beautifulsoup4's stdlib parser takes 2-5 s per megabyte; a page's first megabytes
    # hold far more text than a model is given (the rest would be cut anyway).
    if len(body) > MAX_HTML_BYTES:  # cut before a tag: never inside a UTF-8 character
        body = body[: max(0, body.rfind(b"<", 0, MAX_HTML_BYTES))]
    # Imported with the first page: Beautiful Soup and markdownify are ~5 MB a server
    # that never fetches a page need not hold.
    from app.server.server_tools.page_markdown import page_markdown

    return page_markdown(body, charset)


def cut_text(text: str, max_chars: int) -> str:
    """`text` in at most `max_chars`, cut at a paragraph, line or word end, saying so."""
    if len(text) <= max_chars:
        return text
    note = f"\n\n[… cut here: the page goes on past {max_chars:,} characters]"
    room = max(0, max_chars - len(note))
    if room == 0:
        return text[:max_chars]
    for boundary in ("\n\n", "\n", " "):
        cut = text.rfind(boundary, 0, room + 1)
        if cut >= room // 2:  # no boundary in the second half: cut mid-word instead
            return text[:cut].rstrip() + note
    return text[:room] + note
