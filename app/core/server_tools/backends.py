"""What NimBridge's own web tools take and give: the seam between the server-tool loop
(which offers Anthropic's `web_search_*` / `web_fetch_*` server tools to the model as
function tools and answers the client in Anthropic's block shapes) and the backends that
do the searching and fetching (Tavily, SearXNG, Brave; a bounded page fetcher).

Pure data and the two interfaces; no I/O here. Backends raise `WebToolError` with one of
Anthropic's error codes, which the loop turns into a `*_tool_result_error` block the
model reads, never a 4xx for the whole request.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

# Anthropic's error codes for web_search / web_fetch tool results, spelled as the API
# sends them (the SDKs' generated types; some prose docs say "invalid_input").
INVALID_INPUT = "invalid_tool_input"
UNAVAILABLE = "unavailable"
MAX_USES_EXCEEDED = "max_uses_exceeded"
TOO_MANY_REQUESTS = "too_many_requests"
QUERY_TOO_LONG = "query_too_long"
URL_NOT_ALLOWED = "url_not_allowed"
URL_NOT_IN_PRIOR_CONTEXT = "url_not_in_prior_context"
URL_NOT_ACCESSIBLE = "url_not_accessible"
UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
URL_TOO_LONG = "url_too_long"


class WebToolError(Exception):
    """A search or fetch that failed; `code` is Anthropic's, `message` is for the model
    (and the user reading the transcript): what happened and how to fix it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class SearchQuery:
    query: str
    max_results: int = 5
    allowed_domains: tuple[str, ...] = ()  # only these (and their subdomains)
    blocked_domains: tuple[str, ...] = ()  # never these (and their subdomains)
    # Anthropic's user_location: {"type": "approximate", "city", "region", "country",
    # "timezone"}; a backend uses what it can (a country code, a language...).
    user_location: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SearchResult:
    url: str
    title: str
    content: str  # the snippet or extracted text the backend gave
    page_age: str | None = None  # as the backend says it ("2 days ago", an ISO date...)


@dataclass(frozen=True, slots=True)
class FetchedPage:
    url: str  # after redirects
    title: str | None
    text: str  # readable text or Markdown, cut to the caller's max_chars
    media_type: str  # "text/plain" for pages turned into text, "application/pdf"...
    retrieved_at: str  # ISO 8601, UTC


class WebSearch(Protocol):
    """A search backend. `describe` says which, for logs and the settings dialog."""

    @property
    def describe(self) -> str: ...

    async def search(self, query: SearchQuery) -> list[SearchResult]:
        """Results for `query`, domain filters applied; WebToolError otherwise."""
        ...


class WebFetch(Protocol):
    async def fetch(
        self,
        url: str,
        *,
        max_chars: int,
        allowed_domains: tuple[str, ...] = (),
        blocked_domains: tuple[str, ...] = (),
    ) -> FetchedPage:
        """The page at `url` as readable text; WebToolError (url_not_allowed for a domain
        filter or a private address, url_not_accessible, unsupported_content_type...)."""
        ...


def domain_matches(host: str, domains: tuple[str, ...]) -> bool:
    """True if `host` is one of `domains` or a subdomain of one (case-insensitive;
    entries may carry a scheme or path, as users write them: "https://docs.python.org/")."""
    host = host.lower().rstrip(".")
    for entry in domains:
        domain = entry.lower().split("://", 1)[-1].split("/", 1)[0].rstrip(".")
        if domain and (host == domain or host.endswith("." + domain)):
            return True
    return False
