"""Everything the server knows about its providers, in one place.

`ProviderRegistry` holds, per provider: where it is, its key (env, keychain or
the client's), its discovered chat and image catalogs (cached with expiry,
`catalog_cache`), what each model was learned to refuse this session, and the
rate governors that pace requests.

Invariants:
- The router always reflects the catalogs fetched so far; a catalog fetch
  never blocks a request that does not need it.
- Governors: one per provider (its budget, e.g. 40/min for NVIDIA's free tier)
  and one per (provider, model) that learns from that model's own 429s, since
  providers limit some models more than others.
"""

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from app.config.secrets import ProviderKeys, SecretStoreUnavailable
from app.config.settings import Settings
from app.core.capabilities import ModelQuirks, quirks_for_model
from app.core.catalog import (
    CLOUDFLARE_SEARCH_PATH,
    CatalogModel,
    catalog_from_cloudflare_search,
    catalog_from_models_list,
)
from app.core.errors import ProxyError, UpstreamProtocolError, upstream_error_from_response
from app.core.governor import GovernorState, RateGovernor, RetryPolicy
from app.core.providers import CatalogStyle, Provider
from app.core.quirk_learning import Rejection, learn
from app.core.routing import Router
from app.core.served_context import served_context_for, served_context_url, served_contexts
from app.core.tiers import ModelRoute, ModelTarget
from app.server.listings import merge_listings
from app.server.network import Network
from app.server.upstream.catalog_cache import CatalogCache
from app.server.upstream.client import MB, UpstreamClient, encode_json_body
from app.tasks import create_task

log = logging.getLogger(__name__)


NO_TOOL_CALL = "answered without calling the tool"  # a probe's detail
_SERVED_CACHE_SIZE = 1024  # models (and routes) kept worked out, as many as the router keeps


@dataclass(slots=True)
class ProbeResult:
    """What one forced tool call told us about a model and this key."""

    entitled: bool  # False: the key may not use this model (401/403/404) or it is unreachable
    tools: bool | None  # None: not known (the probe could not tell)
    detail: str


@dataclass(slots=True)
class _Learned:
    rejections: set[Rejection] = field(default_factory=set)
    max_output_tokens: int | None = None


class ProviderRegistry:
    def __init__(self, settings: Settings, keys: ProviderKeys, upstream: UpstreamClient) -> None:
        self.settings = settings
        self.keys = keys
        self.upstream = upstream
        self.router = Router(settings.providers, settings.default_provider, settings.aliases())
        self._providers = {p.name: p for p in settings.providers}
        self.retry_policy = RetryPolicy(
            max_attempts=settings.retry_max_attempts, max_total_wait_s=settings.retry_max_wait_s
        )
        self._chat_catalogs = CatalogCache()
        # Image models, apart from the chat ones: `images.catalog.ImageCatalogs` reads them.
        self.image_catalogs = CatalogCache()
        self._learned: dict[tuple[str, str], _Learned] = {}
        # provider -> what its server says it serves (`served_context`), once read
        self._served_contexts: dict[str, dict[str, int]] = {}
        # (provider, model) -> `_served_quirks`, worked out once rather than on every
        # request; dropped when what it reads changes (the settings, a served context).
        self._served_cache: dict[tuple[str, str], ModelQuirks] = {}
        self._served_cache_settings = settings
        # client name -> (target, route) last made: the same route again while neither the
        # router's target nor the quirks changed (a frozen route is ~0.7 us to build).
        self._routes: dict[str, tuple[ModelTarget, ModelRoute]] = {}
        self._governors: dict[tuple[str, str | None], RateGovernor] = {}
        self._governor_pairs: dict[tuple[str, str], tuple[RateGovernor, RateGovernor]] = {}
        self.probes: dict[tuple[str, str], ProbeResult] = {}
        self._listing_fetches: set[asyncio.Task[list[CatalogModel]]] = set()

    def update_settings(self, settings: Settings) -> None:
        """Take settings that need no restart (tiers, aliases, fallbacks, capabilities,
        retries) at once; the catalogs fetched so far are kept."""
        self.settings = settings
        self.router = Router(
            settings.providers,
            settings.default_provider,
            settings.aliases(),
            catalogs=self.router.catalogs,
        )
        self.retry_policy = RetryPolicy(
            max_attempts=settings.retry_max_attempts, max_total_wait_s=settings.retry_max_wait_s
        )

    # ------------------------------------------------------------------ providers and keys

    def provider(self, name: str) -> Provider:
        found = self._providers.get(name)
        if found is None:  # routing only names configured providers
            raise ProxyError(f"no provider named {name!r} is configured", status=404)
        return found

    def key_for(self, provider: Provider, client_key: str | None = None) -> str | None:
        """Ours when we hold one; else the client's (pass-through, no proxy key)."""
        try:
            return self.keys.key_for(provider) or client_key
        except SecretStoreUnavailable as exc:
            raise ProxyError(
                f"the key for {provider.name} could not be read from the OS keychain "
                f"({exc.reason}); unlock the keychain, or set "
                f"{' or '.join(provider.preset.key_env) or 'the key in the environment'}",
                status=500,
            ) from exc

    def key_rejected(self, provider: Provider) -> None:
        """An upstream 401: read the key again next time (it may have been changed)."""
        self.keys.forget(provider.name)

    # ------------------------------------------------------------------ routes and quirks

    def route(self, client_model: str) -> ModelRoute:
        """Where a client's model name goes (`router`), with its model's quirks as of now."""
        target = self.router.route(client_model)
        quirks = self.quirks_for(target)
        made = self._routes.get(client_model)
        if made is not None and made[0] is target and made[1].quirks is quirks:
            return made[1]
        if len(self._routes) >= _SERVED_CACHE_SIZE:  # clients may name any model
            self._routes.clear()
        route = target.with_quirks(quirks)
        self._routes[client_model] = (target, route)
        return route

    def quirks_for(self, route: ModelTarget | ModelRoute) -> ModelQuirks:
        """The one place a model's quirks are worked out: built-in table, then the
        provider's server quirks and served context, then settings overrides, then what
        was learned this session. Asked at routing (`route`), and by an upstream call for
        each body it builds: a rejected field learned mid-request changes them."""
        quirks = self._served_quirks(route.provider, route.upstream_model)
        learned = self._learned.get((route.provider, route.upstream_model))
        if learned is None:
            return quirks
        for rejection in sorted(learned.rejections):
            quirks = learn(quirks, rejection)
        if learned.max_output_tokens is not None:
            cap = learned.max_output_tokens
            if quirks.max_output_tokens is None or cap < quirks.max_output_tokens:
                quirks = dataclasses.replace(quirks, max_output_tokens=cap)
        return quirks

    def _served_quirks(self, provider_name: str, model_id: str) -> ModelQuirks:
        """The table's quirks, what the provider's kind of server is known to refuse, and
        the context its server says it serves; settings overrides win over all three."""
        if self._served_cache_settings is not self.settings:
            self._served_cache.clear()
            self._served_cache_settings = self.settings
        key = (provider_name, model_id)
        quirks = self._served_cache.get(key)
        if quirks is None:
            if len(self._served_cache) >= _SERVED_CACHE_SIZE:  # clients may name any model
                self._served_cache.clear()
            quirks = self._served_cache[key] = self._work_out_served_quirks(*key)
        return quirks

    def _work_out_served_quirks(self, provider_name: str, model_id: str) -> ModelQuirks:
        overrides = self.settings.capabilities or None
        table = quirks_for_model(model_id)
        provider = self._providers.get(provider_name)
        stated: dict[str, Any] = dict(provider.preset.server_quirks) if provider else {}
        served = served_context_for(self._served_contexts.get(provider_name, {}), model_id)
        if served is not None:
            stated["context_window"] = served
        if not stated:
            return quirks_for_model(model_id, overrides)
        quirks = dataclasses.replace(table, **stated)
        if overrides and model_id in overrides:
            overridden = quirks_for_model(model_id, overrides)
            fields = {name: getattr(overridden, name) for name in overrides[model_id]}
            quirks = dataclasses.replace(quirks, **fields)
        return quirks

    def learn_rejection(self, route: ModelTarget | ModelRoute, rejection: Rejection) -> bool:
        """Remember for the session; False when it was known already (then don't retry)."""
        learned = self._learned.setdefault((route.provider, route.upstream_model), _Learned())
        if rejection in learned.rejections:
            return False
        learned.rejections.add(rejection)
        return True

    def learn_output_cap(self, route: ModelTarget | ModelRoute, cap: int) -> None:
        learned = self._learned.setdefault((route.provider, route.upstream_model), _Learned())
        learned.max_output_tokens = cap

    # ------------------------------------------------------------------ governors

    def governors_for(self, route: ModelRoute) -> tuple[RateGovernor, RateGovernor]:
        """The provider's budget, and the model's own cool-downs."""
        pair = self._governor_pairs.get((route.provider, route.upstream_model))
        if pair is None:
            provider = self.provider(route.provider)
            pair = (
                self._governor(provider.name, None, provider.budget_per_minute),
                self._governor(provider.name, route.upstream_model, None),
            )
            self._governor_pairs[(route.provider, route.upstream_model)] = pair
        return pair

    def _governor(self, provider: str, model: str | None, budget: int | None) -> RateGovernor:
        key = (provider, model)
        if key not in self._governors:
            # A 429 can come from a neighbour sharing the key: never learn the
            # budget down below a quarter of what the provider advertises.
            floor = max(1, budget // 4) if budget else 1
            self._governors[key] = RateGovernor(budget, min_budget=floor)
        return self._governors[key]

    def governor_states(self) -> dict[str, GovernorState]:
        """Per provider, for the UI: its own budget and the busiest model's cool-down."""
        now = asyncio.get_running_loop().time()
        states: dict[str, GovernorState] = {}
        for (provider, model), governor in self._governors.items():
            state = governor.state(now)
            if model is None:
                states[provider] = state
            elif provider in states and state.cooling_down_for > states[provider].cooling_down_for:
                states[provider] = dataclasses.replace(
                    states[provider], cooling_down_for=state.cooling_down_for
                )
        return states

    # ------------------------------------------------------------------ catalogs

    async def catalog(self, name: str, *, refresh: bool = False) -> list[CatalogModel]:
        """The provider's chat models, from cache unless stale or `refresh`."""
        provider = self.provider(name)

        async def fetch() -> list[CatalogModel]:
            models = await self._fetch_catalog(provider)
            self.router = self.router.with_catalog(name, frozenset(m.id for m in models))
            return models

        return await self._chat_catalogs.get(
            name, fetch, ttl_s=self.settings.catalog_ttl_s, refresh=refresh
        )

    async def merged_catalog(self, *, refresh: bool = False) -> list[CatalogModel]:
        """Every provider's catalog; a provider that fails is logged and left out,
        unless all fail, when the first failure is raised."""
        results = await asyncio.gather(
            *(self.catalog(p.name, refresh=refresh) for p in self.settings.providers),
            return_exceptions=True,
        )
        return merge_listings(self.settings.providers, results, what="models")

    async def merged_catalog_within(self, wait_s: float) -> list[CatalogModel]:
        """`merged_catalog`, but a provider whose listing is not in after `wait_s` is
        answered from what is known of it (`known_catalog`); its fetch goes on in the
        background and fills the cache for the next call."""
        providers = self.settings.providers
        fetches = [
            create_task(self.catalog(p.name), name=f"model list of {p.name}") for p in providers
        ]
        for fetch in fetches:
            # Kept to be cancelled at stop (`cancel_listings`), and their failures always
            # retrieved: the client may go away, and no one else may await them.
            self._listing_fetches.add(fetch)
            fetch.add_done_callback(self._listing_done)
        done, _ = await asyncio.wait(fetches, timeout=wait_s)
        results: list[list[CatalogModel] | BaseException] = []
        for provider, fetch in zip(providers, fetches, strict=True):
            if fetch in done:
                results.append(fetch.exception() or fetch.result())
            else:
                log.info(
                    "the model list of %s is not in after %.1f s: answering with the models "
                    "known so far",
                    provider.name,
                    wait_s,
                )
                results.append(self.known_catalog(provider.name))
        return merge_listings(providers, results, what="models")

    def _listing_done(self, fetch: "asyncio.Task[list[CatalogModel]]") -> None:
        self._listing_fetches.discard(fetch)
        if not fetch.cancelled() and (error := fetch.exception()) is not None:
            log.debug("%s failed: %s", fetch.get_name(), error)

    def cancel_listings(self) -> None:
        """At stop: the listings still being fetched for `merged_catalog_within`."""
        for fetch in list(self._listing_fetches):
            fetch.cancel()

    def known_catalog(self, name: str) -> list[CatalogModel]:
        """A provider's models without asking it: its last listing (even a stale one),
        else its explicit models; plus the tier models routed to it that are missing."""
        provider = self.provider(name)
        overrides = self.settings.capabilities or None
        models = self._chat_catalogs.known(name)
        if models is None:
            models = _explicit_models(provider, [], overrides)
        known = {m.id for m in models} | {m.upstream_id for m in provider.models}
        extra: dict[str, CatalogModel] = {}
        for tier_model in self.settings.aliases().tier_models():
            routed_to, model_id = self.router.resolve_reference(tier_model)
            if routed_to == name and model_id not in known and model_id not in extra:
                extra[model_id] = CatalogModel(
                    id=model_id,
                    provider=name,
                    display_name=model_id,
                    created=0,
                    owned_by=name,
                    quirks=quirks_for_model(model_id, overrides),
                )
        return [*models, *extra.values()]

    async def prefetch(self) -> None:
        """Fill the catalogs in the background at start, so routing by catalog works early."""
        # Failures are logged per provider; requests still route by prefix and default.
        with contextlib.suppress(ProxyError):
            await self.merged_catalog()

    async def get_model_list(self, provider: Provider, url: str, key: str | None) -> Any:
        """A provider's model listing (OpenAI's /models or Workers AI's model search), as
        JSON; a ProxyError in words otherwise."""
        response = await self.upstream.request("GET", url, api_key=key)
        if response.status >= 400:
            raw = await response.read_error_body(self.keys.masker)
            raise upstream_error_from_response(response.status, raw)
        limit = self.settings.max_upstream_response_mb * MB
        try:
            body: Any = _json_or_none(await response.read_body(limit))
        except ValueError as exc:
            raise UpstreamProtocolError(
                f"{provider.name}: the model list is not JSON ({url})"
            ) from exc
        finally:
            response.release()
        return body

    async def _fetch_catalog(self, provider: Provider) -> list[CatalogModel]:
        key = self.key_for(provider)
        overrides = self.settings.capabilities or None
        if provider.preset.catalog is CatalogStyle.CLOUDFLARE:
            url = provider.base_url.removesuffix("/ai/v1") + CLOUDFLARE_SEARCH_PATH
        else:
            url = f"{provider.base_url}/models"
        body = await self.get_model_list(provider, url, key)
        if provider.preset.catalog is CatalogStyle.CLOUDFLARE:
            models = catalog_from_cloudflare_search(
                body, provider=provider.name, overrides=overrides
            )
        else:
            models = catalog_from_models_list(body, provider=provider.name, overrides=overrides)
        models = models + _explicit_models(provider, models, overrides)
        path = provider.preset.served_context_path
        if path is not None:
            await self._read_served_context(provider, path, key)
        if provider.preset.server_quirks or self._served_contexts.get(provider.name):
            models = [
                dataclasses.replace(model, quirks=self._listed_quirks(provider.name, model))
                for model in models
            ]
        return models

    def _listed_quirks(self, provider_name: str, model: CatalogModel) -> ModelQuirks:
        """A listed model's quirks with the server's own facts; what the listing stated
        (vLLM's max_model_len) stays unless the server said otherwise."""
        served = self._served_quirks(provider_name, model.id)
        contexts = self._served_contexts.get(provider_name, {})
        if served_context_for(contexts, model.id) is None:
            served = dataclasses.replace(served, context_window=model.quirks.context_window)
        return served

    async def _read_served_context(self, provider: Provider, path: str, key: str | None) -> None:
        """Ask the server how much context it serves; a server without the endpoint
        (llama-cpp-python has no /props) leaves the name table's guess."""
        url = served_context_url(provider.base_url, path)
        try:
            body = await self.get_model_list(provider, url, key)
        except ProxyError as exc:
            log.debug("%s: no served context at %s: %s", provider.name, url, exc.message)
            return
        self._served_contexts[provider.name] = served_contexts(path, body)
        self._served_cache.clear()

    # ------------------------------------------------------------------ probe

    async def probe(self, provider_name: str, model_id: str) -> ProbeResult:
        """One cheap request that forces a tool call: is this key entitled to the
        model, and do its tool calls work? Remembered for the model list."""
        provider = self.provider(provider_name)
        url = f"{provider.base_url}/chat/completions"
        key = self.key_for(provider)
        result: ProbeResult | None = None
        for tool_choice in ("required", "auto"):  # some servers refuse "required"
            body = {**PROBE_REQUEST, "model": model_id, "tool_choice": tool_choice}
            try:
                response = await self.upstream.request(
                    "POST", url, api_key=key, body=encode_json_body(body)
                )
            except ProxyError as exc:
                result = ProbeResult(False, None, exc.message)
                break
            if response.status >= 400:
                raw = await response.read_error_body(self.keys.masker)
                error = upstream_error_from_response(response.status, raw)
                if response.status == 400 and tool_choice == "required":
                    continue
                entitled = response.status not in (401, 403, 404)
                tools = False if entitled and response.status in (400, 422) else None
                result = ProbeResult(entitled, tools, error.message)
                break
            limit = self.settings.max_upstream_response_mb * MB
            try:
                answer: Any = _json_or_none(await response.read_body(limit))
            except ValueError:
                answer = {}
            finally:
                response.release()
            called = _called_a_tool(answer)
            detail = "tool calls work" if called else NO_TOOL_CALL
            result = ProbeResult(True, called, detail)
            break
        assert result is not None
        self.probes[(provider_name, model_id)] = result
        return result


@contextlib.asynccontextmanager
async def open_registry(
    settings: Settings,
    keys: ProviderKeys,
    network: Network | None,
    *,
    connect_timeout_s: float | None = None,
    read_timeout_s: float | None = None,
) -> AsyncIterator[ProviderRegistry]:
    """A registry of its own for one errand (a command, or the service's listing, probe
    or provider test while no server runs): its upstream session opens here and closes
    on leaving. Timeouts not given are the settings' own."""
    upstream = UpstreamClient(
        connect_timeout_s=settings.connect_timeout_s
        if connect_timeout_s is None
        else connect_timeout_s,
        read_timeout_s=settings.read_timeout_s if read_timeout_s is None else read_timeout_s,
        network=network,
    )
    await upstream.start()
    try:
        yield ProviderRegistry(settings, keys, upstream)
    finally:
        await upstream.close()


def _json_or_none(body: bytes) -> Any:
    """A body as JSON, None when it is empty (as aiohttp's `ClientResponse.json` reads it)."""
    stripped = body.strip()
    return json.loads(stripped.decode()) if stripped else None


PROBE_REQUEST: dict[str, Any] = {
    "messages": [{"role": "user", "content": "Call the ping tool now."}],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "ping",
                "description": "Answer by calling this tool.",
                "parameters": {"type": "object", "properties": {}},
            },
        }
    ],
    "max_tokens": 64,
}


def _called_a_tool(answer: Any) -> bool:
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return False
    message = choices[0].get("message")
    return isinstance(message, dict) and bool(message.get("tool_calls"))


def _explicit_models(
    provider: Provider, discovered: list[CatalogModel], overrides: Any
) -> list[CatalogModel]:
    """Models named in settings (as clients call them) that the provider's list lacks."""
    known = {m.id for m in discovered}
    return [
        CatalogModel(
            id=model.id,
            provider=provider.name,
            display_name=model.display_name or model.id,
            created=0,
            owned_by=provider.name,
            quirks=quirks_for_model(model.upstream_id, overrides),
        )
        for model in provider.models
        if model.id not in known
    ]
