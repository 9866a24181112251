"""A web page's main content as Markdown (Beautiful Soup with the standard library's HTML
parser, markdownify): its own module so that `web_fetch` imports it only with the first
page fetched."""

import re

from bs4 import BeautifulSoup, Tag
from markdownify import MarkdownConverter

# Page chrome, not the page's content.
_CHROME = (
    "head, title, script, style, noscript, template, svg, canvas, iframe, form, button, "
    "nav, aside, [role=navigation], [role=banner], [role=contentinfo], [aria-hidden=true]"
)
_BLANK_LINES = re.compile(r"\n[ \t]*(\n[ \t]*)+")


class _PageConverter(MarkdownConverter):
    """Markdown without images (the model cannot see them here)."""

    def convert_img(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        alt = str(el.get("alt") or "").strip()
        return f"[image: {alt}]" if alt else ""


def _content_root(soup: BeautifulSoup) -> Tag:
    """The page's article: the longest <article>, else <main>, else the body."""
    articles = soup.find_all("article")
    if articles:
        return max(articles, key=lambda a: len(a.get_text(" ", strip=True)))
    for candidate in (soup.find("main"), soup.select_one("[role=main]"), soup.body):
        if isinstance(candidate, Tag):
            return candidate
    return soup


def page_markdown(body: bytes, charset: str | None = None) -> tuple[str | None, str]:
    """(title, Markdown of the page's main content) of HTML already cut to size."""
    soup = BeautifulSoup(body, "html.parser", from_encoding=charset)
    title = _title(soup)
    for element in soup.select(_CHROME):
        element.decompose()
    for element in soup.select("header, footer"):
        if element.find_parent(["article", "main"]) is None:  # the site's, not the article's
            element.decompose()
    root = _content_root(soup)
    # No escapes: the reader is a model, to which `create\_task` is noise, not safety.
    converter = _PageConverter(
        heading_style="ATX", bullets="-", escape_underscores=False, escape_asterisks=False
    )
    try:
        markdown = converter.convert_soup(root)
    except RecursionError:
        # html.parser nests what browsers close implicitly (a page of unclosed <p>s is
        # valid HTML) and markdownify recurses once per level: plain text then.
        markdown = root.get_text("\n")
    return title, _BLANK_LINES.sub("\n\n", markdown).strip()


def _title(soup: BeautifulSoup) -> str | None:
    """The <title>, else og:title, else the first <h1>."""
    if soup.title is not None and soup.title.string and soup.title.string.strip():
        return " ".join(soup.title.string.split())
    og = soup.find("meta", attrs={"property": "og:title"})
    if isinstance(og, Tag) and str(og.get("content") or "").strip():
        return str(og["content"]).strip()
    heading = soup.find("h1")
    if heading is None:
        return None
    return " ".join(heading.get_text(" ").split()) or None
