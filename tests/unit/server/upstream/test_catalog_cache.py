"""app.server.upstream.catalog_cache: fresh for a TTL, one fetch at a time, known without asking."""

import asyncio

import pytest

from app.core.capabilities import ModelQuirks
from app.core.catalog import CatalogModel
from app.server.upstream.catalog_cache import CatalogCache


def _model(model_id: str) -> CatalogModel:
    return CatalogModel(model_id, "p", model_id, 0, "p", ModelQuirks())


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Listing:
    """A provider's listing that answers a new model list on each fetch."""

    def __init__(self) -> None:
        self.fetches = 0

    async def __call__(self) -> list[CatalogModel]:
        self.fetches += 1
        await asyncio.sleep(0)  # let other callers arrive while it is in flight
        return [_model(f"m{self.fetches}")]


async def test_fresh_listing_is_reused_until_its_ttl_runs_out() -> None:
    clock, listing = Clock(), Listing()
    cache = CatalogCache(clock)
    assert await cache.get("p", listing, ttl_s=10) == [_model("m1")]
    clock.now += 9.9
    assert await cache.get("p", listing, ttl_s=10) == [_model("m1")]
    clock.now += 0.1
    assert await cache.get("p", listing, ttl_s=10) == [_model("m2")]
    assert listing.fetches == 2


async def test_refresh_always_fetches() -> None:
    listing = Listing()
    cache = CatalogCache(Clock())
    await cache.get("p", listing, ttl_s=60)
    assert await cache.get("p", listing, ttl_s=60, refresh=True) == [_model("m2")]


async def test_callers_during_a_fetch_take_its_answer() -> None:
    listing = Listing()
    cache = CatalogCache(Clock())
    answers = await asyncio.gather(*(cache.get("p", listing, ttl_s=60) for _ in range(5)))
    assert answers == [[_model("m1")]] * 5
    assert listing.fetches == 1


async def test_providers_are_cached_apart() -> None:
    first, second = Listing(), Listing()
    cache = CatalogCache(Clock())
    await cache.get("a", first, ttl_s=60)
    await cache.get("b", second, ttl_s=60)
    assert (first.fetches, second.fetches) == (1, 1)
    assert cache.known_ids() == {"a": frozenset({"m1"}), "b": frozenset({"m1"})}


async def test_known_never_fetches_and_keeps_a_stale_listing() -> None:
    clock, listing = Clock(), Listing()
    cache = CatalogCache(clock)
    assert cache.known("p") is None
    await cache.get("p", listing, ttl_s=1)
    clock.now += 5
    assert cache.known("p") == [_model("m1")]
    assert listing.fetches == 1


async def test_a_failed_fetch_leaves_the_cache_as_it_was() -> None:
    clock = Clock()
    cache = CatalogCache(clock)
    await cache.get("p", Listing(), ttl_s=1)
    clock.now += 5

    async def failing() -> list[CatalogModel]:
        raise OSError("down")

    with pytest.raises(OSError):
        await cache.get("p", failing, ttl_s=1)
    assert cache.known("p") == [_model("m1")]


async def test_the_loop_clock_is_the_default() -> None:
    cache = CatalogCache()
    listing = Listing()
    await cache.get("p", listing, ttl_s=60)
    await cache.get("p", listing, ttl_s=60)
    assert listing.fetches == 1
