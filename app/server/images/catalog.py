"""Every provider's image models, and which provider a client's image model name means.

Kept apart from the chat catalogs (`ProviderRegistry.catalog`): the same provider
lists them differently (Workers AI's model search by task; an OpenAI-style /models
list filtered by `core.images.IMAGE_MODEL_PATTERNS`), and a chat model must never
route here nor an image model to a chat tier.

Invariants: lists are cached per provider for `catalog_ttl_s`, one fetch at a time
per provider, in the registry's `image_catalogs` (so they outlive this view, which
callers make per use); a provider whose list fails is left out (logged) unless all fail.
"""

import asyncio
import contextlib
import logging

from app.core.catalog import CLOUDFLARE_SEARCH_PATH, CatalogModel
from app.core.errors import (
    ClientRequestError,
    ProxyError,
)
from app.core.images.catalog import (
    CLOUDFLARE_IMAGE_SEARCH_QUERY,
    explicit_image_models,
    image_catalog_from_cloudflare_search,
    image_catalog_from_models_list,
    is_image_model,
    needs_input_image,
)
from app.core.images.openai_images import IMAGE_API_BY_KIND, ImageApi
from app.core.images.workers_ai import workers_ai_model_path
from app.core.providers import Provider
from app.core.routing import Router
from app.core.tiers import ModelAliases, ModelRoute, ModelTarget
from app.server.listings import merge_listings
from app.server.upstream.registry import ProviderRegistry

log = logging.getLogger(__name__)

LISTING_HINT = "the image models are listed by GET /v1/models?protocol=openai-images"


def image_api_of(provider: Provider) -> ImageApi:
    return IMAGE_API_BY_KIND.get(provider.kind, ImageApi.NONE)


def workers_ai_run_url(provider: Provider, model: str) -> str:
    """Workers AI's native run endpoint beside its OpenAI-compatible `/ai/v1` base."""
    return f"{provider.base_url.removesuffix('/ai/v1')}/ai/run/{workers_ai_model_path(model)}"


class ImageCatalogs:
    def __init__(self, registry: ProviderRegistry) -> None:
        self._registry = registry
        self._cache = registry.image_catalogs

    def _image_providers(self) -> list[Provider]:
        providers = self._registry.settings.providers
        return [p for p in providers if image_api_of(p) is not ImageApi.NONE]

    async def catalog(self, provider: Provider, *, refresh: bool = False) -> list[CatalogModel]:
        return await self._cache.get(
            provider.name,
            lambda: self._fetch(provider),
            ttl_s=self._registry.settings.catalog_ttl_s,
            refresh=refresh,
        )

    async def merged(self, *, refresh: bool = False) -> list[CatalogModel]:
        """Every image-capable provider's image models, in provider order."""
        providers = self._image_providers()
        results = await asyncio.gather(
            *(self.catalog(p, refresh=refresh) for p in providers), return_exceptions=True
        )
        return merge_listings(providers, results, what="image models")

    async def route(self, client_model: str) -> ModelRoute:
        """The provider and upstream id of an image model, checked to be one; lists are
        fetched first when the name is not in those already known."""
        if not any(client_model in ids for ids in self._cache.known_ids().values()):
            # On failure: routed by prefix or default; the upstream's answer will say.
            with contextlib.suppress(ProxyError):
                await self.merged()
        settings = self._registry.settings
        router = Router(
            settings.providers, settings.default_provider, ModelAliases(), self._cache.known_ids()
        )
        provider_name, upstream_id = router.resolve_reference(client_model)
        provider = self._registry.provider(provider_name)
        target = ModelTarget(client_model, upstream_id, provider=provider_name)
        await self._check(provider, upstream_id)
        return target.with_quirks(self._registry.quirks_for(target))

    async def _check(self, provider: Provider, upstream_id: str) -> None:
        """Clear words for a model that is not an image model this provider can make."""
        api = image_api_of(provider)
        if api is ImageApi.NONE:
            raise ClientRequestError(
                f"model: {upstream_id!r} routes to {provider.name} ({provider.preset.label}), "
                f"which has no OpenAI-style image generation API; {LISTING_HINT}"
            )
        if needs_input_image(upstream_id):
            raise ClientRequestError(
                f"model: {upstream_id} needs an input image (img2img, inpainting or editing); "
                "only prompt-only text-to-image models work here"
            )
        listed = self._cache.known(provider.name)
        if listed is not None and upstream_id in {m.id for m in listed}:
            return
        if not is_image_model(upstream_id) and upstream_id in await self._chat_ids(provider):
            raise ClientRequestError(
                f"model: {upstream_id} is a chat model of {provider.name}, not an image model; "
                f"{LISTING_HINT}"
            )
        # Workers AI lists every image model it has: a name not there is not one. An
        # OpenAI-style list only hints by name, so there the upstream decides.
        if api is ImageApi.WORKERS_AI and listed:
            raise ProxyError(
                f"model: {provider.name} has no text-to-image model {upstream_id!r}; "
                f"{LISTING_HINT}",
                status=404,
            )

    async def _chat_ids(self, provider: Provider) -> set[str]:
        """The provider's chat models (its cached list), to word a refusal; none on failure."""
        try:
            return {m.id for m in await self._registry.catalog(provider.name)}
        except ProxyError:
            return set()

    async def _fetch(self, provider: Provider) -> list[CatalogModel]:
        registry = self._registry
        if image_api_of(provider) is ImageApi.WORKERS_AI:
            base = provider.base_url.removesuffix("/ai/v1")
            url = f"{base}{CLOUDFLARE_SEARCH_PATH}?{CLOUDFLARE_IMAGE_SEARCH_QUERY}"
        else:
            url = f"{provider.base_url}/models"
        body = await registry.get_model_list(provider, url, registry.key_for(provider))
        if image_api_of(provider) is ImageApi.WORKERS_AI:
            return image_catalog_from_cloudflare_search(body, provider=provider.name)
        listed = image_catalog_from_models_list(body, provider=provider.name)
        known = {m.id for m in listed}
        return listed + explicit_image_models(provider.models, provider=provider.name, known=known)
