"""GET /v1/models and /v1/models/{id}: every provider's chat models, merged.

Clients name a model the way this list shows it: the default provider's
models by their own id, other providers' as `provider/id`, which the router
maps back. Each chat model is listed a second time under its gateway id
(`claude-nim/<provider>/<model>`, `core.gateway_ids`) with a name a person
reads, for Claude Code's `/model` picker, which keeps only ids holding
`claude`. Anthropic's shape (paged by `limit`, `after_id`, `before_id`) when
`anthropic-version` is sent, OpenAI's otherwise; both carry a `nimbridge`
object with the provider and capabilities.
"""

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from app.core.capabilities import quirks_for_model
from app.core.catalog import CatalogModel
from app.core.errors import ProxyError
from app.core.gateway_ids import (
    client_model_id,
    from_gateway_id,
    picker_display_name,
    picker_provider_label,
    readable_model_name,
    to_gateway_id,
)
from app.core.images.openai_images import MAX_IMAGES_OPENAI, MAX_IMAGES_WORKERS_AI, ImageApi
from app.core.images.workers_ai import workers_ai_image_model
from app.core.tiers import tier_of
from app.server.auth import authorize
from app.server.images.catalog import ImageCatalogs, image_api_of
from app.server.records import RequestRecord
from app.server.state import STATE, ProxyState, record_of

# `GET /v1/models?protocol=openai-images`: the models `POST /v1/images/generations` takes.
IMAGES_PROTOCOL = "openai-images"

# Claude Code asks for the list once at start-up and gives up after 3 s
# (CLAUDE_CODE_GATEWAY_MODEL_DISCOVERY_TIMEOUT_MS), keeping no models at all. A
# provider whose listing is slower (NVIDIA's can take seconds, or hang when it is
# down) is answered from what is known of it after this wait instead, leaving
# time for the answer to travel.
LISTING_WAIT_S = 2.0
# Anthropic's `GET /v1/models` paging: `limit` defaults to 20 and goes up to 1000.
DEFAULT_PAGE_LIMIT = 20
MAX_PAGE_LIMIT = 1000


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


def gateway_display_name(state: ProxyState, model: CatalogModel) -> str:
    """`Qwen3 Coder 480B A35B Instruct · NVIDIA`: the listing's own name when it gave one."""
    named = model.display_name if model.display_name != model.id else ""
    provider = state.settings.provider(model.provider)
    label = picker_provider_label(model.provider, provider.kind if provider else None)
    return picker_display_name(named or readable_model_name(model.id), label)


def _gateway_description(model: CatalogModel) -> str:
    window = model.quirks.context_window
    context = f" · {window // 1000}K context" if window else ""
    return f"{model.id} on {model.provider}, through NimBridge{context}"


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
    record.path = request.path_qs  # the log line shows Claude Code's `?limit=1000`
    refresh = request.query.get("refresh") == "1"
    if request.query.get("protocol") == IMAGES_PROTOCOL:
        return await _list_image_models(state, record, refresh=refresh)
    if refresh:
        models = await state.registry.merged_catalog(refresh=True)
    else:
        models = await state.registry.merged_catalog_within(LISTING_WAIT_S)
    if "anthropic-version" in request.headers:
        limit = _page_limit(request.query.get("limit"))
        # Gateway ids first: Claude Code reads one page of 1000 and keeps only them.
        data = [_anthropic_gateway_entry(state, m) for m in models] + [
            _anthropic_entry(state, m) for m in models
        ]
        page = anthropic_page(
            data,
            limit=limit,
            after_id=request.query.get("after_id"),
            before_id=request.query.get("before_id"),
        )
        record.status = 200
        return web.json_response(page)
    default = state.settings.default_provider
    data = [_openai_entry(state, client_model_id(m, default), m) for m in models] + [
        _openai_entry(state, to_gateway_id(m.provider, m.id), m) for m in models
    ]
    record.status = 200
    return web.json_response({"object": "list", "data": data})


def anthropic_page(
    data: list[dict[str, Any]], *, limit: int, after_id: str | None, before_id: str | None
) -> dict[str, Any]:
    """One page of Anthropic's list: after `after_id`, else before `before_id`, else the
    first; `has_more` says whether entries lie beyond it in the direction of paging."""
    ids = [entry["id"] for entry in data]
    if after_id is not None:
        start = ids.index(after_id) + 1 if after_id in ids else len(ids)
        page = data[start : start + limit]
        has_more = start + limit < len(data)
    elif before_id is not None:
        end = ids.index(before_id) if before_id in ids else 0
        start = max(0, end - limit)
        page = data[start:end]
        has_more = start > 0
    else:
        page = data[:limit]
        has_more = limit < len(data)
    return {
        "data": page,
        "has_more": has_more,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }


def _page_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE_LIMIT:
        raise ProxyError(
            f"limit: must be a whole number from 1 to {MAX_PAGE_LIMIT}, got {raw!r}", status=400
        )
    return limit


def _anthropic_entry(state: ProxyState, model: CatalogModel) -> dict[str, Any]:
    return {
        **_anthropic_shape(
            client_model_id(model, state.settings.default_provider),
            model.display_name,
            model.created,
        ),
        "nimbridge": capabilities_of(state, model),
    }


def _anthropic_gateway_entry(state: ProxyState, model: CatalogModel) -> dict[str, Any]:
    gateway_id = to_gateway_id(model.provider, model.id)
    return {
        **_anthropic_shape(gateway_id, gateway_display_name(state, model), model.created),
        "description": _gateway_description(model),
        "nimbridge": capabilities_of(state, model),
    }


def _openai_entry(state: ProxyState, model_id: str, model: CatalogModel) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": model.created,
        "owned_by": model.owned_by,
        "nimbridge": capabilities_of(state, model),
    }


async def _list_image_models(
    state: ProxyState, record: RequestRecord, *, refresh: bool
) -> web.Response:
    """OpenAI's list shape; each entry's `nimbridge` says how Workers AI is called."""
    models = await ImageCatalogs(state.registry).merged(refresh=refresh)
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
                "id": client_model_id(model, state.settings.default_provider),
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
    named = from_gateway_id(model_id)
    if tier_of(model_id) is not None or model_id in state.settings.model_aliases:
        return web.json_response(_anthropic_shape(model_id, model_id, 0))
    models = await state.registry.merged_catalog_within(LISTING_WAIT_S)
    for model in models:
        if client_model_id(model, state.settings.default_provider) == model_id:
            return web.json_response(_anthropic_entry(state, model))
        if named is not None and (model.provider, model.id) == named:
            return web.json_response(_anthropic_gateway_entry(state, model))
    if named is not None and state.settings.provider(named[0]) is not None:
        # Not listed (yet), but it routes: to that provider's model of that id.
        provider, upstream_id = state.registry.router.resolve_reference(model_id)
        unlisted = CatalogModel(
            id=upstream_id,
            provider=provider,
            display_name=upstream_id,
            created=0,
            owned_by=provider,
            quirks=quirks_for_model(upstream_id, state.settings.capabilities or None),
        )
        return web.json_response(_anthropic_gateway_entry(state, unlisted))
    raise ProxyError(f"model: {model_id!r} is not in any provider's model list", status=404)
