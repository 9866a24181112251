"""Search backends behind `app.core.server_tools.backends.WebSearch`: Tavily, SearXNG, Brave.

Invariants:
- Every result list is filtered with `domain_matches` for the query's allowed and
  blocked domains, whatever the backend itself supports: a backend that ignores a
  filter cannot leak a blocked site to the model.
- Every failure leaves as `WebToolError` with one of Anthropic's codes and words that
  say what to do (a refused key: where to set it; a SearXNG without JSON: what to
  enable); nothing else escapes `search`.
- A key is read at each search (so a key set in the tray applies at once), sent only
  in a header, and never logged or quoted: a backend's error text is scrubbed of it.
- Each backend owns one aiohttp session, made on the running loop at first use and
  closed by `close()`.
"""

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from yarl import URL

from app.core.server_tools.backends import (
    INVALID_INPUT,
    QUERY_TOO_LONG,
    TOO_MANY_REQUESTS,
    UNAVAILABLE,
    SearchQuery,
    SearchResult,
    WebToolError,
    domain_matches,
)
from app.server.bounded_read import read_within
from app.server.network import Network, proxy_failure_words, proxy_login_words, route_options

log = logging.getLogger(__name__)

TAVILY_BASE_URL = "https://api.tavily.com"
BRAVE_BASE_URL = "https://api.search.brave.com"
DEFAULT_BASE_URL_BY_BACKEND = {"tavily": TAVILY_BASE_URL, "brave": BRAVE_BASE_URL, "searxng": ""}
WHERE_TO_SET = "set it in Settings → Web tools"
MAX_QUERY_CHARS = 400  # Tavily's and Brave's own limit on a query
# With a domain filter applied after the fact, ask for more so that enough remain.
_FILTER_HEADROOM = 3
_MAX_BODY_BYTES = 4 * 1024 * 1024

KeySource = Callable[[], str | None]

# Countries Brave takes as `country` (its documented list), with the names Tavily's
# `country` parameter takes; a user_location elsewhere is searched without one.
COUNTRY_NAME_BY_CODE = {
    "AR": "argentina",
    "AU": "australia",
    "AT": "austria",
    "BE": "belgium",
    "BR": "brazil",
    "CA": "canada",
    "CL": "chile",
    "CN": "china",
    "DK": "denmark",
    "FI": "finland",
    "FR": "france",
    "DE": "germany",
    "HK": "hong kong",
    "IN": "india",
    "ID": "indonesia",
    "IT": "italy",
    "JP": "japan",
    "KR": "south korea",
    "MY": "malaysia",
    "MX": "mexico",
    "NL": "netherlands",
    "NZ": "new zealand",
    "NO": "norway",
    "PH": "philippines",
    "PL": "poland",
    "PT": "portugal",
    "RU": "russia",
    "SA": "saudi arabia",
    "ZA": "south africa",
    "ES": "spain",
    "SE": "sweden",
    "CH": "switzerland",
    "TW": "taiwan",
    "TR": "turkey",
    "GB": "united kingdom",
    "US": "united states",
}


def _country_code(location: Mapping[str, str]) -> str | None:
    code = str(location.get("country") or "").strip().upper()
    return code if code in COUNTRY_NAME_BY_CODE else None


def filter_results(results: list[SearchResult], query: SearchQuery) -> list[SearchResult]:
    """Only results the query's domain filters let through, at most `max_results`."""
    kept = []
    for result in results:
        host = URL(result.url).host or ""
        if not host:
            continue
        if query.allowed_domains and not domain_matches(host, query.allowed_domains):
            continue
        if domain_matches(host, query.blocked_domains):
            continue
        kept.append(result)
    return kept[: query.max_results]


def bare_domains(domains: tuple[str, ...]) -> list[str]:
    """Host names as APIs take them: "https://docs.python.org/" is docs.python.org."""
    bare = (d.lower().split("://", 1)[-1].split("/", 1)[0].rstrip(".") for d in domains)
    return [domain for domain in bare if domain]


def _site_term(query: SearchQuery) -> str:
    """`site:x` for one allowed domain (engines honour it); more are filtered afterwards."""
    domains = bare_domains(query.allowed_domains)
    return f"{query.query} site:{domains[0]}" if len(domains) == 1 else query.query


def _wanted(query: SearchQuery) -> int:
    filtered = bool(query.allowed_domains or query.blocked_domains)
    return query.max_results * _FILTER_HEADROOM if filtered else query.max_results


class _HttpBackend:
    """The session, the timeout and the error words every backend shares."""

    name = ""  # "Tavily", for the words

    def __init__(self, base_url: str, *, timeout_s: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        # The proxy and the CAs; `make_web_search` hands in the server's (None: the
        # proxy variables and the OS trust store, made at first use).
        self.network: Network | None = None

    @property
    def describe(self) -> str:
        return f"{self.name} ({self.base_url})"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _network(self) -> Network:
        if self.network is None:
            self.network = Network()
        return self.network

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._network().ssl_context),
                timeout=aiohttp.ClientTimeout(total=self._timeout_s),
                headers={"User-Agent": "NimBridge (web search for a local client)"},
            )
        return self._session

    async def _call(
        self,
        method: str,
        url: str,
        *,
        secret: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """The JSON body of a 2xx answer; WebToolError in words otherwise."""
        started = time.monotonic()
        route = self._network().proxy_for(url)
        try:
            async with self._client().request(
                method,
                url,
                **route_options(route, url, kwargs.pop("headers", None)),
                **kwargs,
            ) as response:
                body = await _read_bounded(response)
                status = response.status
        except TimeoutError:
            raise WebToolError(
                UNAVAILABLE, f"{self.name} did not answer within {self._timeout_s:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            words = proxy_failure_words(exc, route, URL(url).host or url)
            if words is not None:
                raise WebToolError(UNAVAILABLE, f"{self.name}: {words}") from None
            if isinstance(exc, aiohttp.ClientConnectorError):
                cause = exc.os_error.strerror or exc.os_error
                raise WebToolError(
                    UNAVAILABLE, f"could not reach {self.name} at {self.base_url}: {cause}"
                ) from None
            raise WebToolError(
                UNAVAILABLE, f"{self.name} search failed: {exc.__class__.__name__}"
            ) from None
        except asyncio.IncompleteReadError as exc:
            raise WebToolError(
                UNAVAILABLE, f"{self.name} search failed: {exc.__class__.__name__}"
            ) from None
        log.debug(
            "%s answered %d in %.0f ms", self.name, status, (time.monotonic() - started) * 1e3
        )
        if route is not None and status == 407:
            raise WebToolError(UNAVAILABLE, f"{self.name}: {proxy_login_words(route)}")
        if status >= 400:
            if secret:  # before the detail is cut short: a key cut in two would get through
                body = body.replace(secret.encode(), b"***")
            raise self._error_for(status, self._error_detail(body))
        try:
            return json.loads(body)
        except ValueError:
            raise WebToolError(
                UNAVAILABLE, f"{self.name} answered something that is not JSON"
            ) from None

    def _error_detail(self, body: bytes) -> str:
        """The backend's own words for an error, short."""
        try:
            data = json.loads(body)
        except ValueError:
            text = body.decode("utf-8", "replace").strip()
        else:
            text = _error_text(data)
        return text if len(text) <= 300 else text[:297] + "..."

    def _error_for(self, status: int, detail: str) -> WebToolError:
        said = f" ({detail})" if detail else ""
        if status in (401, 403):
            return WebToolError(
                UNAVAILABLE, f"the {self.name} key was refused{said}: {WHERE_TO_SET}"
            )
        if status == 429:
            return WebToolError(
                TOO_MANY_REQUESTS, f"{self.name} says too many searches{said}; wait and retry"
            )
        if status in (404, 405):
            return WebToolError(
                UNAVAILABLE,
                f"{self.name} has no search at {self.base_url} (HTTP {status}): "
                f"check the base URL in Settings → Web tools",
            )
        if 400 <= status < 500:
            return WebToolError(INVALID_INPUT, f"{self.name} refused the search{said}")
        return WebToolError(UNAVAILABLE, f"{self.name} failed with HTTP {status}{said}")

    def _key(self, key_source: KeySource, env_name: str) -> str:
        key = key_source()
        if not key:
            raise WebToolError(
                UNAVAILABLE,
                f"no {self.name} key is set: {WHERE_TO_SET}, or set {env_name}",
            )
        return key


def _error_text(data: Any) -> str:
    """Tavily: {"detail": {"error": ...}}; Brave: {"error": {"detail", "code"}}; else a string."""
    if isinstance(data, dict):
        for key in ("detail", "error", "message"):
            if key in data:
                return _error_text(data[key])
        return ""
    return str(data) if data is not None else ""


class TavilySearch(_HttpBackend):
    """POST {base}/search with the key as a Bearer token (Tavily's current API)."""

    name = "Tavily"

    def __init__(
        self, key: KeySource, base_url: str = TAVILY_BASE_URL, *, timeout_s: float = 15.0
    ) -> None:
        super().__init__(base_url or TAVILY_BASE_URL, timeout_s=timeout_s)
        self._key_source = key

    async def search(self, query: SearchQuery) -> list[SearchResult]:
        _check_length(query)
        key = self._key(self._key_source, "TAVILY_API_KEY")
        body: dict[str, Any] = {
            "query": query.query,
            "max_results": min(_wanted(query), 20),
            "search_depth": "basic",
            "topic": "general",
        }
        if query.allowed_domains:
            body["include_domains"] = bare_domains(query.allowed_domains)
        if query.blocked_domains:
            body["exclude_domains"] = bare_domains(query.blocked_domains)
        country = _country_code(query.user_location)
        if country is not None:
            body["country"] = COUNTRY_NAME_BY_CODE[country]
        data = await self._call(
            "POST",
            f"{self.base_url}/search",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            secret=key,
        )
        results = [
            SearchResult(
                url=str(item.get("url") or ""),
                title=str(item.get("title") or ""),
                content=str(item.get("content") or ""),
                page_age=item.get("published_date") or None,
            )
            for item in _items(data, "results")
        ]
        return filter_results(results, query)

    def _error_for(self, status: int, detail: str) -> WebToolError:
        if status in (432, 433):  # Tavily's own: the plan's or the pay-as-you-go limit
            return WebToolError(
                TOO_MANY_REQUESTS,
                f"Tavily says the account's search limit is reached ({detail}); "
                "raise it on tavily.com or wait",
            )
        return super()._error_for(status, detail)


class BraveSearch(_HttpBackend):
    """GET {base}/res/v1/web/search with `X-Subscription-Token`."""

    name = "Brave Search"

    def __init__(
        self, key: KeySource, base_url: str = BRAVE_BASE_URL, *, timeout_s: float = 15.0
    ) -> None:
        super().__init__(base_url or BRAVE_BASE_URL, timeout_s=timeout_s)
        self._key_source = key

    async def search(self, query: SearchQuery) -> list[SearchResult]:
        _check_length(query)
        key = self._key(self._key_source, "BRAVE_API_KEY")
        params = {"q": _site_term(query), "count": str(min(_wanted(query), 20))}
        country = _country_code(query.user_location)
        if country is not None:
            params["country"] = country
        data = await self._call(
            "GET",
            f"{self.base_url}/res/v1/web/search",
            params=params,
            headers={"X-Subscription-Token": key, "Accept": "application/json"},
            secret=key,
        )
        web = data.get("web") if isinstance(data, dict) else None
        results = [
            SearchResult(
                url=str(item.get("url") or ""),
                title=str(item.get("title") or ""),
                content=str(item.get("description") or ""),
                page_age=item.get("age") or item.get("page_age") or None,
            )
            for item in _items(web, "results")
        ]
        return filter_results(results, query)

    def _error_for(self, status: int, detail: str) -> WebToolError:
        # Brave answers a bad token with 422 and a SUBSCRIPTION_TOKEN_INVALID code.
        if status == 422 and "token" in detail.lower():
            return super()._error_for(401, detail)
        return super()._error_for(status, detail)

    def _error_detail(self, body: bytes) -> str:
        try:
            error = json.loads(body).get("error") or {}
            words = " ".join(str(error[k]) for k in ("code", "detail") if error.get(k))
        except (ValueError, AttributeError):
            words = ""
        return words or super()._error_detail(body)


class SearxngSearch(_HttpBackend):
    """A self-hosted SearXNG: GET {base}/search?q=...&format=json, no key.

    SearXNG has no country parameter (only a result language, which a location does
    not tell), so user_location is not used.
    """

    name = "SearXNG"

    async def search(self, query: SearchQuery) -> list[SearchResult]:
        data = await self._call(
            "GET",
            f"{self.base_url}/search",
            params={"q": _site_term(query), "format": "json", "safesearch": "0"},
            headers={"Accept": "application/json"},
        )
        results = [
            SearchResult(
                url=str(item.get("url") or ""),
                title=str(item.get("title") or ""),
                content=str(item.get("content") or ""),
                page_age=item.get("publishedDate") or None,
            )
            for item in _items(data, "results")
        ]
        return filter_results(results, query)

    def _error_for(self, status: int, detail: str) -> WebToolError:
        if status == 403:  # its default settings.yml serves HTML only
            return WebToolError(
                UNAVAILABLE,
                f"the SearXNG instance at {self.base_url} refused a JSON search: enable it in "
                "its settings.yml (search: formats: [html, json]) and restart it",
            )
        return super()._error_for(status, detail)


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    return await read_within(
        response.content.iter_any(),
        _MAX_BODY_BYTES,
        lambda: WebToolError(UNAVAILABLE, "the search backend sent an answer over 4 MB"),
    )


def _items(data: Any, key: str) -> list[dict[str, Any]]:
    items = data.get(key) if isinstance(data, dict) else None
    return [item for item in items or () if isinstance(item, dict)]


def _check_length(query: SearchQuery) -> None:
    if len(query.query) > MAX_QUERY_CHARS:
        raise WebToolError(
            QUERY_TOO_LONG,
            f"the query is {len(query.query)} characters; the limit is {MAX_QUERY_CHARS}",
        )
