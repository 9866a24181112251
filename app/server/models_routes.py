"""GET /v1/models and /v1/models/{id}: every provider's chat models, merged.

Clients name a model the way this list shows it: the default provider's
models by their own id, other providers' as `provider/id`, which the router
maps back. Anthropic's shape when `anthropic-version` is sent, OpenAI's
otherwise; both carry a `nimbridge` object with the provider and capabilities.
"""

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from app.core.catalog import CatalogModel
from app.core.errors import ProxyError
from app.core.images import (
    MAX_IMAGES_OPENAI,
    MAX_IMAGES_WORKERS_AI,
    ImageApi,
    workers_ai_image_model,
)
from app.core.models import tier_of
from app.server.auth import authorize
from app.server.image_catalog import image_api_of
from app.server.records import RequestRecord
from app.server.state import STATE, ProxyState, record_of

# `GET /v1/models?protocol=openai-images`: the models `POST /v1/images/generations` takes.
IMAGES_PROTOCOL = "openai-images"


def client_model_id(state: ProxyState, model: CatalogModel) -> str:
    if model.provider == state.settings.default_provider:
        return model.id
    return f"{model.provider}/{model.id}"


def capabilities_of(state: ProxyState, model: CatalogModel) -> dict[str, Any]:
    quirks = model.quirks
    probe = state.registry.probes.get((model.provider, model.id))
    return {
        "provider": model.provider,
        "upstream_id": model.id,
        "tools": quirks.supports_tools,
        "vision": quirks.supports_images,
        "reasoning": quirks.reasoning.value,
        "context_window": quirks.context_window,
        "max_output_tokens": quirks.max_output_tokens,
        "probe": None
        if probe is None
        else {"entitled": probe.entitled, "tools": probe.tools, "detail": probe.detail},
    }


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(max(seconds, 0), UTC).isoformat().replace("+00:00", "Z")


def _anthropic_shape(model_id: str, display_name: str, created: int) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model_id,
        "display_name": display_name,
        "created_at": _iso(created),
    }


async def list_models(request: web.Request) -> web.Response:
    state, record = request.app[STATE], record_of(request)
    authorize(request, state.proxy_key)
    refresh = request.query.get("refresh") == "1"
    if request.query.get("protocol") == IMAGES_PROTOCOL:
        return await _list_image_models(state, record, refresh=refresh)
    models = await state.registry.merged_catalog(refresh=refresh)
    record.status = 200
    if "anthropic-version" in request.headers:
        data = [
            {
                **_anthropic_shape(client_model_id(state, m), m.display_name, m.created),
                "nimbridge": capabilities_of(state, m),
            }
            for m in models
        ]
        return web.json_response(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )
    return web.json_response(
        {
            "object": "list",
            "data": [
                {
                    "id": client_model_id(state, m),
                    "object": "model",
                    "created": m.created,
                    "owned_by": m.owned_by,
                    "nimbridge": capabilities_of(state, m),
                }
                for m in models
            ],
        }
    )


async def _list_image_models(
    state: ProxyState, record: RequestRecord, *, refresh: bool
) -> web.Response:
    """OpenAI's list shape; each entry's `nimbridge` says how Workers AI is called."""
    models = await state.registry.images.merged(refresh=refresh)
    record.status = 200
    data = []
    for model in models:
        provider = state.registry.provider(model.provider)
        api = image_api_of(provider)
        facts: dict[str, Any] = {
            "provider": model.provider,
            "upstream_id": model.id,
            "kind": model.kind.value,
            "api": api.value,
            "max_images": MAX_IMAGES_WORKERS_AI
            if api is ImageApi.WORKERS_AI
            else MAX_IMAGES_OPENAI,
        }
        if api is ImageApi.WORKERS_AI:
            facts["transport"] = workers_ai_image_model(model.id).transport.value
        data.append(
            {
                "id": client_model_id(state, model),
                "object": "model",
                "created": model.created,
                "owned_by": model.owned_by,
                "nimbridge": facts,
            }
        )
    return web.json_response({"object": "list", "data": data})


async def get_model(request: web.Request) -> web.Response:
    """Anthropic's `models.retrieve`; `claude-*` names exist because they always resolve."""
    state, record = request.app[STATE], record_of(request)
    authorize(request, state.proxy_key)
    model_id = request.match_info["model_id"]
    record.status = 200
    if tier_of(model_id) is not None or model_id in state.settings.model_aliases:
        return web.json_response(_anthropic_shape(model_id, model_id, 0))
    for model in await state.registry.merged_catalog():
        if client_model_id(state, model) == model_id:
            return web.json_response(
                {
                    **_anthropic_shape(model_id, model.display_name, model.created),
                    "nimbridge": capabilities_of(state, model),
                }
            )
    raise ProxyError(f"model: {model_id!r} is not in any provider's model list", status=404)
