"""Providers' model listings, cached per provider: the one cache of chat and image catalogs.

Invariants:
- A listing is fresh for `ttl_s` (settings may change it, so each read names it);
  a stale or missing one is fetched again, and `refresh` always fetches.
- One fetch at a time per provider: callers arriving meanwhile wait for it and,
  when it left a fresh listing, take that one instead of asking again.
- `known` never fetches: the last listing, stale or not, or None when there is none.
- A fetch that fails leaves the cache as it was (the failure is the caller's).
"""

import asyncio
from collections.abc import Awaitable, Callable

from app.core.catalog import CatalogModel

# Fetches one provider's listing (already turned into catalog models).
ListingFetch = Callable[[], Awaitable[list[CatalogModel]]]


class CatalogCache:
    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        # None: the running loop's clock (a fake one in tests).
        self._clock = clock
        self._listings: dict[str, tuple[float, list[CatalogModel]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(
        self, provider: str, fetch: ListingFetch, *, ttl_s: float, refresh: bool = False
    ) -> list[CatalogModel]:
        """The provider's listing from cache while fresh, else the one `fetch` brings."""
        lock = self._locks.setdefault(provider, asyncio.Lock())
        async with lock:
            cached = self._listings.get(provider)
            if cached is not None and not refresh and self._now() - cached[0] < ttl_s:
                return cached[1]
            models = await fetch()
            self._listings[provider] = (self._now(), models)
            return models

    def known(self, provider: str) -> list[CatalogModel] | None:
        cached = self._listings.get(provider)
        return None if cached is None else cached[1]

    def known_ids(self) -> dict[str, frozenset[str]]:
        """Per provider listed so far, the ids of its models."""
        listings = self._listings.items()
        return {name: frozenset(m.id for m in models) for name, (_, models) in listings}

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()
