"""The search backends against fakes shaped like Tavily, Brave and SearXNG on loopback."""

import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.config.secrets import KeySource, MemorySecretStore, ProviderKeys
from app.config.settings import Settings
from app.core.server_tools.backends import (
    INVALID_INPUT,
    QUERY_TOO_LONG,
    TOO_MANY_REQUESTS,
    UNAVAILABLE,
    SearchQuery,
    SearchResult,
    WebToolError,
)
from app.server.app import make_app
from app.server.safe_fetch import FetchPolicy, SafeFetcher
from app.server.server_tools.backends import make_web_search, make_web_tools
from app.server.server_tools.web_fetch import PageFetcher
from app.server.server_tools.web_search import BraveSearch, SearxngSearch, TavilySearch
from app.server.state import STATE
from app.service import ProxyService
from tests.fake_web import BRAVE_KEY, PRIVATE, RESULTS, TAVILY_KEY, FakeWeb, running_fake_web

Backend = TavilySearch | BraveSearch | SearxngSearch
TAVILY_HINT = "set it in Settings → Web tools, or set TAVILY_API_KEY"


@pytest.fixture
async def fake() -> AsyncIterator[FakeWeb]:
    async with running_fake_web() as fake:
        yield fake


def _backend(fake: FakeWeb, kind: str, key: str | None = None) -> Backend:
    if kind == "tavily":
        return TavilySearch(lambda: key or TAVILY_KEY, fake.url("/tavily", PRIVATE))
    if kind == "brave":
        return BraveSearch(lambda: key or BRAVE_KEY, fake.url("/brave", PRIVATE))
    return SearxngSearch(fake.url("/searx", PRIVATE))


async def _search(backend: Backend, query: SearchQuery) -> list[SearchResult]:
    try:
        return await backend.search(query)
    finally:
        await backend.close()


async def _refusal(backend: Backend, query: SearchQuery) -> WebToolError:
    with pytest.raises(WebToolError) as raised:
        await _search(backend, query)
    return raised.value


KINDS = ["tavily", "brave", "searxng"]


@pytest.mark.parametrize("kind", KINDS)
async def test_results_come_back_as_the_backend_gave_them(fake: FakeWeb, kind: str) -> None:
    results = await _search(_backend(fake, kind), SearchQuery("python asyncio", max_results=3))
    assert [r.url for r in results] == [url for url, _ in RESULTS[:3]]
    assert results[1].title == RESULTS[1][1]
    assert results[1].content == f"About python asyncio: {RESULTS[1][1]}."
    assert results[0].page_age == {"tavily": "2026-11-19", "brave": "2 days ago"}.get(kind)


@pytest.mark.parametrize("kind", KINDS)
async def test_domain_filters_hold_whatever_the_backend_returns(fake: FakeWeb, kind: str) -> None:
    allowed = await _search(
        _backend(fake, kind),
        SearchQuery("asyncio", allowed_domains=("python.org", "https://realpython.com/")),
    )
    assert [r.url for r in allowed] == [
        "https://docs.python.org/3/library/asyncio.html",  # a subdomain counts
        "https://realpython.com/async-io-python/",
        "https://python.org/about/",
    ]
    blocked = await _search(
        _backend(fake, kind),
        SearchQuery("asyncio", max_results=10, blocked_domains=("reddit.com", "example.com")),
    )
    hosts = {r.url.split("/")[2] for r in blocked}
    assert "www.reddit.com" not in hosts and "blog.example.com" not in hosts
    assert len(blocked) == 4


async def test_tavily_gets_the_filters_country_and_key_as_it_documents(fake: FakeWeb) -> None:
    query = SearchQuery(
        "weather",
        max_results=2,
        allowed_domains=("https://Python.org/",),
        blocked_domains=("reddit.com",),
        user_location={"type": "approximate", "country": "gb", "city": "London"},
    )
    await _search(_backend(fake, "tavily"), query)
    sent = fake.requests[-1]
    assert sent["headers"]["Authorization"] == f"Bearer {TAVILY_KEY}"
    assert sent["body"]["include_domains"] == ["python.org"]  # a bare host, as Tavily takes
    assert sent["body"]["exclude_domains"] == ["reddit.com"]
    assert sent["body"]["country"] == "united kingdom"
    assert sent["body"]["max_results"] == 6  # room for the filter, within Tavily's 20
    assert "api_key" not in sent["body"]


async def test_brave_gets_the_country_the_site_and_the_token(fake: FakeWeb) -> None:
    query = SearchQuery("weather", allowed_domains=("python.org",), user_location={"country": "DE"})
    await _search(_backend(fake, "brave"), query)
    sent = fake.requests[-1]
    assert sent["headers"]["X-Subscription-Token"] == BRAVE_KEY
    assert sent["query"]["q"] == "weather site:python.org"
    assert sent["query"]["country"] == "DE"
    await _search(_backend(fake, "brave"), SearchQuery("x", user_location={"country": "XX"}))
    assert "country" not in fake.requests[-1]["query"]  # one Brave does not know: none


async def test_searxng_asks_for_json_and_narrows_one_allowed_site(fake: FakeWeb) -> None:
    await _search(_backend(fake, "searxng"), SearchQuery("q", allowed_domains=("python.org",)))
    sent = fake.requests[-1]["query"]
    assert sent["format"] == "json" and sent["q"] == "q site:python.org"
    await _search(_backend(fake, "searxng"), SearchQuery("q", allowed_domains=("a.org", "b.org")))
    assert fake.requests[-1]["query"]["q"] == "q"  # several: filtered afterwards only


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("tavily", "the Tavily key was refused (Unauthorized: missing or invalid API key"),
        ("brave", "the Brave Search key was refused (SUBSCRIPTION_TOKEN_INVALID"),
    ],
)
async def test_a_refused_key_says_where_to_set_it_and_is_never_shown(
    fake: FakeWeb, kind: str, words: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "sk-wrong-canary-0451"
    error = await _refusal(_backend(fake, kind, key=wrong), SearchQuery("q"))
    assert error.code == UNAVAILABLE
    assert words in error.message and "Settings → Web tools" in error.message
    assert wrong not in error.message  # Tavily's fake echoes the key it was sent
    assert wrong not in caplog.text
    assert TAVILY_KEY not in caplog.text and BRAVE_KEY not in caplog.text


@pytest.mark.parametrize("kind", ["tavily", "brave"])
async def test_no_key_says_how_to_set_one(fake: FakeWeb, kind: str) -> None:
    backend = TavilySearch(lambda: None) if kind == "tavily" else BraveSearch(lambda: None)
    error = await _refusal(backend, SearchQuery("q"))
    assert error.code == UNAVAILABLE
    assert "key is set: set it in Settings → Web tools, or set" in error.message
    assert fake.requests == []  # nothing was sent without a key


@pytest.mark.parametrize(
    ("kind", "query", "code", "words"),
    [
        ("tavily", "too many", TOO_MANY_REQUESTS, "Tavily says too many searches (Rate limit"),
        ("tavily", "plan", TOO_MANY_REQUESTS, "search limit is reached (This request exceeds"),
        ("brave", "too many", TOO_MANY_REQUESTS, "(RATE_LIMITED Request rate limit exceeded"),
        ("tavily", "x" * 401, QUERY_TOO_LONG, "the query is 401 characters; the limit is 400"),
    ],
)
async def test_limits_in_words(fake: FakeWeb, kind: str, query: str, code: str, words: str) -> None:
    error = await _refusal(_backend(fake, kind), SearchQuery(query))
    assert error.code == code
    assert words in error.message


async def test_a_searxng_without_json_says_what_to_enable(fake: FakeWeb) -> None:
    error = await _refusal(SearxngSearch(fake.url("/searx-html", PRIVATE)), SearchQuery("q"))
    assert error.code == UNAVAILABLE
    assert "enable it in its settings.yml (search: formats: [html, json])" in error.message


async def test_an_unreachable_backend_is_unavailable_in_words() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # nothing listens once the socket closes
    error = await _refusal(SearxngSearch(f"http://127.0.0.1:{closed}"), SearchQuery("q"))
    assert error.code == UNAVAILABLE
    assert f"could not reach SearXNG at http://127.0.0.1:{closed}" in error.message


async def test_a_silent_backend_times_out_in_words(fake: FakeWeb) -> None:
    backend = TavilySearch(lambda: TAVILY_KEY, fake.url("/tavily", PRIVATE), timeout_s=0.3)
    error = await _refusal(backend, SearchQuery("slow"))
    assert error.code == UNAVAILABLE
    assert error.message == "Tavily did not answer within 0.3 s"


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("boom", "SearXNG failed with HTTP 502 (Bad Gateway)"),
        ("not json", "SearXNG answered something that is not JSON"),
        ("drop", "SearXNG search failed: ServerDisconnectedError"),
    ],
)
async def test_a_broken_backend_is_unavailable_in_words(
    fake: FakeWeb, query: str, words: str
) -> None:
    error = await _refusal(_backend(fake, "searxng"), SearchQuery(query))
    assert (error.code, error.message) == (UNAVAILABLE, words)


async def test_a_wrong_base_url_says_to_check_it(fake: FakeWeb) -> None:
    backend = SearxngSearch(fake.url("/nowhere", PRIVATE))
    error = await _refusal(backend, SearchQuery("q"))
    assert error.code == UNAVAILABLE
    assert f"SearXNG has no search at {fake.url('/nowhere', PRIVATE)} (HTTP 404" in error.message
    assert "check the base URL in Settings → Web tools" in error.message


async def test_a_refused_search_is_invalid_input(fake: FakeWeb) -> None:
    error = await _refusal(_backend(fake, "tavily"), SearchQuery("bad request"))
    assert error.code == INVALID_INPUT
    assert error.message == "Tavily refused the search (Invalid search depth.)"


# ------------------------------------------------------------------ the factory


async def test_the_factory_follows_the_settings_and_reads_keys_at_each_search(
    fake: FakeWeb,
) -> None:
    keys = ProviderKeys(MemorySecretStore(), env={})
    fetcher = SafeFetcher(FetchPolicy())
    search, page = make_web_tools(Settings(), keys, fetcher)
    assert search is None and isinstance(page, PageFetcher)  # fetch is on by default
    search, page = make_web_tools(Settings(web_fetch_enabled=False), keys, fetcher)
    assert search is None and page is None

    settings = Settings(web_search_backend="tavily", web_search_base_url=fake.url("/tavily"))
    backend = make_web_search(settings, keys)
    assert isinstance(backend, TavilySearch)
    assert backend.describe == f"Tavily ({fake.url('/tavily')})"
    backend.base_url = fake.url("/tavily", PRIVATE)  # the fake lives on loopback
    error = await _refusal(backend, SearchQuery("q"))
    assert "no Tavily key is set" in error.message and "TAVILY_API_KEY" in error.message
    keys.set_web_search_key("tavily", TAVILY_KEY)  # set in the tray: no restart needed
    assert len(await _search(backend, SearchQuery("q"))) == 5

    brave = make_web_search(Settings(web_search_backend="brave"), keys)
    assert isinstance(brave, BraveSearch) and brave.base_url == "https://api.search.brave.com"
    searx = make_web_search(
        Settings(web_search_backend="searxng", web_search_base_url="http://nas:8888"), keys
    )
    assert isinstance(searx, SearxngSearch) and searx.base_url == "http://nas:8888"
    await fetcher.close()


# ------------------------------------------------------------------ the tray's door


async def test_the_service_tests_a_backend_with_a_typed_or_stored_key(
    fake: FakeWeb, tmp_path: Path
) -> None:
    keys = ProviderKeys(MemorySecretStore(), env={})
    service = ProxyService(Settings(), keys, settings_path=tmp_path / "settings.json")
    url = fake.url("/tavily", PRIVATE)
    ok, words = await service.test_web_search("tavily", url, None)
    assert (ok, words) == (False, "no Tavily key is set: " + TAVILY_HINT)
    ok, words = await service.test_web_search("tavily", url, TAVILY_KEY)  # typed, not stored
    assert ok and words == f"Tavily ({url}) answers (3 results for a test search)"
    assert service.web_search_key_status("tavily").source is KeySource.NONE
    service.set_web_search_key("tavily", TAVILY_KEY)
    assert service.web_search_key_status("tavily").source is KeySource.MEMORY
    assert (await service.test_web_search("tavily", url, None))[0]
    assert service.delete_web_search_key("tavily")
    ok, words = await service.test_web_search("searxng", " ", None)
    assert (ok, words) == (False, "enter your SearXNG instance's URL (http://host:8888)")
    ok, words = await service.test_web_search("searxng", fake.url("/searx-html", PRIVATE), None)
    assert not ok and "search: formats: [html, json]" in words


async def test_the_server_state_holds_the_tools_the_settings_ask_for() -> None:
    keys = ProviderKeys(MemorySecretStore(), env={})
    state = make_app(Settings(web_search_backend="brave"), keys, None)[STATE]
    assert isinstance(state.web_search, BraveSearch)
    assert isinstance(state.web_fetch, PageFetcher)
    state = make_app(Settings(web_fetch_enabled=False), keys, None)[STATE]
    assert state.web_search is None and state.web_fetch is None


async def test_a_long_echoed_key_is_masked_before_the_detail_is_cut(fake: FakeWeb) -> None:
    """Tavily quotes the key it was sent; the detail is cut at 300 characters. Masked
    after the cut, a key running past it would leave all but its end in the message."""
    wrong = "canary-" + "x9" * 150  # no known key shape: only the exact value can mask it
    error = await _refusal(_backend(fake, "tavily", key=wrong), SearchQuery("q"))
    assert not any(wrong[i : i + 12] in error.message for i in range(len(wrong) - 12))
    assert "***" in error.message
