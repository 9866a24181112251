"""`PageFetcher` against a fake web on loopback: 127.0.0.2 stands for the internet (the
fetcher is told to count it as public), 127.0.0.1 for the user's own network."""

import ipaddress
import re
from collections.abc import AsyncIterator

import pytest

from app.core.server_tools.backends import (
    INVALID_INPUT,
    UNSUPPORTED_CONTENT_TYPE,
    URL_NOT_ACCESSIBLE,
    URL_NOT_ALLOWED,
    URL_TOO_LONG,
    FetchedPage,
    WebToolError,
)
from app.server.safe_fetch import FetchPolicy, SafeFetcher, public_only
from app.server.server_tools import web_fetch
from app.server.server_tools.web_fetch import PageFetcher, cut_text
from tests.fake_web import PRIVATE, PUBLIC, FakeWeb, running_fake_web

NOW = "2026-11-21T10:00:00Z"


def _public_for_tests(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    return None if str(address) == PUBLIC else public_only(address)


@pytest.fixture
async def fake() -> AsyncIterator[FakeWeb]:
    async with running_fake_web() as fake:
        yield fake


@pytest.fixture
async def pages() -> AsyncIterator[PageFetcher]:
    policy = FetchPolicy(max_bytes=256 * 1024, timeout_s=1.0, max_redirects=3)
    fetcher = SafeFetcher(policy, check=_public_for_tests)
    yield PageFetcher(fetcher, now=lambda: NOW)
    await fetcher.close()


async def _refusal(pages: PageFetcher, url: str, **kwargs: tuple[str, ...]) -> WebToolError:
    with pytest.raises(WebToolError) as raised:
        await pages.fetch(url, max_chars=10_000, **kwargs)
    return raised.value


async def test_an_article_becomes_markdown_without_the_site_around_it(
    fake: FakeWeb, pages: PageFetcher
) -> None:
    page = await pages.fetch(fake.url("/pages/article"), max_chars=10_000)
    assert page == FetchedPage(
        url=fake.url("/pages/article"),
        title="Understanding asyncio | Example Blog",
        text=page.text,
        media_type="text/plain",
        retrieved_at=NOW,
    )
    assert page.text == (
        "# Understanding asyncio\n\n"
        "The event loop runs **one task** at a time; see\n"
        "[the docs](https://docs.python.org/3/library/asyncio.html).\n\n"
        "[image: A diagram of the loop]\n\n"
        "## Tasks\n\n"
        "- create_task schedules\n- await yields\n\n"
        "```\nasyncio.run(main())\n```\n\n"
        "Café society loves coroutines."
    )
    for chrome in ("Home", "About us", "newsletter", "Copyright", "trackEverything", "color"):
        assert chrome not in page.text


async def test_charset_plain_text_and_redirects(fake: FakeWeb, pages: PageFetcher) -> None:
    latin = await pages.fetch(fake.url("/pages/latin1"), max_chars=1000)
    assert (latin.title, latin.text) == ("Olé", "Señor")
    plain = await pages.fetch(fake.url("/pages/plain"), max_chars=1000)
    assert (plain.title, plain.text) == (None, "line one\nline two")
    moved = await pages.fetch(fake.url("/pages/redirect/2"), max_chars=1000)
    assert moved.url == fake.url("/pages/article")  # where the redirects ended
    assert moved.title == "Understanding asyncio | Example Blog"


@pytest.mark.parametrize(
    ("path", "title", "text"),
    [
        ("/pages/titled/og", "From Open Graph", "# From the h1\n\nx"),
        ("/pages/titled/h1", "From the h1", "# From the h1\n\nx"),
        ("/pages/untyped/html", "Sniffed", "hi"),  # no Content-Type: looked at
        ("/pages/untyped/text", None, "just text"),
        ("/pages/odd-charset", None, "café"),  # a charset Python lacks: UTF-8 then
        ("/pages/paper.pdf", "A Paper", "Hello from a PDF"),
    ],
)
async def test_titles_and_types_found_where_they_are(
    fake: FakeWeb, pages: PageFetcher, path: str, title: str | None, text: str
) -> None:
    page = await pages.fetch(fake.url(path), max_chars=1000)
    assert (page.title, page.text) == (title, text)


async def test_a_long_page_is_cut_at_a_paragraph_saying_so(
    fake: FakeWeb, pages: PageFetcher
) -> None:
    page = await pages.fetch(fake.url("/pages/long"), max_chars=5000)
    assert len(page.text) <= 5000
    body, _, note = page.text.rpartition("\n\n")
    assert note == "[… cut here: the page goes on past 5,000 characters]"
    assert body.endswith("says something.")  # a whole paragraph, not half of one


async def test_a_page_nested_too_deep_for_markdown_still_gives_its_text(
    fake: FakeWeb, pages: PageFetcher
) -> None:
    page = await pages.fetch(fake.url("/pages/unclosed"), max_chars=100_000)
    assert page.title == "Deep"
    assert page.text.startswith("Paragraph 0.") and page.text.endswith("Paragraph 2999.")


def test_only_the_first_megabytes_of_html_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_fetch, "MAX_HTML_BYTES", 102)
    page = "<p>Café crème</p>" * 20  # 19 bytes each: byte 102 is inside the sixth "é"
    title, text = web_fetch.html_to_markdown(page.encode())
    assert text.split("\n\n") == ["Café crème"] * 5  # UTF-8 still, not mojibake


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        pytest.param("short", 10, "short", id="fits"),
        pytest.param("abc def ghi", 5, "abc d", id="no-room-for-the-note"),
    ],
)
def test_cut_text(text: str, limit: int, expected: str) -> None:
    assert cut_text(text, limit) == expected


def test_cut_text_cuts_mid_word_when_no_boundary_is_near() -> None:
    cut = cut_text("x" * 500, 200)
    assert len(cut) <= 200 and cut.startswith("x" * 100) and cut.endswith("past 200 characters]")


@pytest.mark.parametrize(
    ("path", "code", "words"),
    [
        ("/pages/scan.pdf", UNSUPPORTED_CONTENT_TYPE, "is a PDF without text (scanned pages"),
        ("/pages/broken.pdf", UNSUPPORTED_CONTENT_TYPE, "is a PDF NimBridge could not read ("),
        ("/pages/blob", UNSUPPORTED_CONTENT_TYPE, "is of no stated type and not text"),
        ("/pages/huge", URL_NOT_ACCESSIBLE, "is over 262,144 bytes"),
        ("/pages/slow", URL_NOT_ACCESSIBLE, "did not answer within 1 s"),
        ("/pages/missing", URL_NOT_ACCESSIBLE, "answered 404 Not Found"),
        ("/pages/redirect/9", URL_NOT_ACCESSIBLE, "more than 3 redirects"),
    ],
)
async def test_failures_in_words(
    fake: FakeWeb, pages: PageFetcher, path: str, code: str, words: str
) -> None:
    error = await _refusal(pages, fake.url(path))
    assert error.code == code
    assert words in error.message


async def test_private_addresses_are_not_allowed_unless_the_user_allows_them(
    fake: FakeWeb, pages: PageFetcher
) -> None:
    for url in (fake.url("/pages/article", PRIVATE), fake.url("/pages/to-private")):
        error = await _refusal(pages, url)
        assert error.code == URL_NOT_ALLOWED
        assert f"{PRIVATE} is a loopback address (this computer)" in error.message
        assert "turn on fetching from private addresses" in error.message

    trusting = SafeFetcher(FetchPolicy(allow_private=True))
    try:
        page = await PageFetcher(trusting).fetch(fake.url("/pages/to-private"), max_chars=500)
    finally:
        await trusting.close()
    assert page.url == fake.url("/pages/article", PRIVATE)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", page.retrieved_at)


async def test_domain_filters_apply_before_fetching_and_after_redirects(
    fake: FakeWeb, pages: PageFetcher
) -> None:
    url = fake.url("/pages/article")
    error = await _refusal(pages, url, blocked_domains=(PUBLIC,))
    assert (error.code, error.message) == (
        URL_NOT_ALLOWED,
        f"{PUBLIC} is among the blocked domains",
    )
    error = await _refusal(pages, url, allowed_domains=("python.org",))
    assert error.code == URL_NOT_ALLOWED
    assert "is not among the allowed domains (python.org)" in error.message
    assert await pages.fetch(url, max_chars=100, allowed_domains=(PUBLIC,))

    trusting = PageFetcher(SafeFetcher(FetchPolicy(allow_private=True)))
    error = await _refusal(trusting, fake.url("/pages/to-private"), allowed_domains=(PUBLIC,))
    assert error.code == URL_NOT_ALLOWED
    assert f"the page redirected to {PRIVATE}, which is not among the allowed" in error.message
    await trusting._fetcher.close()


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://example.com/file", INVALID_INPUT),
        ("not a url", INVALID_INPUT),
        ("http://[::1", INVALID_INPUT),
        ("https://example.com/" + "a" * 2100, URL_TOO_LONG),
    ],
)
async def test_urls_refused_before_any_request(pages: PageFetcher, url: str, code: str) -> None:
    assert (await _refusal(pages, url)).code == code
