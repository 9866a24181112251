"""Which web search backend and page fetcher the settings ask for: `make_web_tools`.

None stands for "not set up": the server-tool loop still accepts the tools and answers
the model with a tool error saying how to set them up (`app.core.server_tools.specs`).
"""

from app.config.secrets import ProviderKeys, SecretStoreUnavailable
from app.config.settings import Settings
from app.server.network import Network
from app.server.safe_fetch import SafeFetcher
from app.server.server_tools.web_fetch import PageFetcher
from app.server.server_tools.web_search import BraveSearch, SearxngSearch, TavilySearch

SearchBackend = TavilySearch | BraveSearch | SearxngSearch


def make_web_search(
    settings: Settings, keys: ProviderKeys, network: Network | None = None
) -> SearchBackend | None:
    """The backend the settings name (None: none chosen), reaching it through `network`
    (None: the proxy variables and the OS trust store). Keys are read at each search."""
    made = _make_web_search(settings, keys)
    if made is not None:
        made.network = network
    return made


def _make_web_search(settings: Settings, keys: ProviderKeys) -> SearchBackend | None:
    backend, base_url = settings.web_search_backend, settings.web_search_base_url
    if backend == "searxng":
        return SearxngSearch(base_url)
    if backend not in ("tavily", "brave"):
        return None

    def key() -> str | None:
        try:
            return keys.web_search_key(backend)
        except SecretStoreUnavailable:
            return None  # the backend then says no key is set, and where to set it

    return TavilySearch(key, base_url) if backend == "tavily" else BraveSearch(key, base_url)


def make_web_tools(
    settings: Settings, keys: ProviderKeys, fetcher: SafeFetcher, network: Network | None = None
) -> tuple[SearchBackend | None, PageFetcher | None]:
    """(search backend, page fetcher) as the settings ask; None where not set up.

    Typed concretely (each is a `WebSearch` / `WebFetch`) because the search backend owns
    a session the caller must `close()` at shutdown; the fetcher shares `fetcher`'s."""
    page_fetcher = PageFetcher(fetcher) if settings.web_fetch_enabled else None
    return make_web_search(settings, keys, network), page_fetcher
