"""One thin handler per endpoint: parse -> core -> upstream -> core -> respond."""

import asyncio
import json
import logging
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from app import __version__
from app.core.anthropic_types import MessagesRequest
from app.core.errors import (
    ClientRequestError,
    ProxyError,
    UpstreamProtocolError,
    upstream_error_from_response,
)
from app.core.models import ModelRoute, resolve_model, tier_of
from app.core.request_map import to_openai_request
from app.core.request_validation import validate_messages_request
from app.core.response_map import to_anthropic_message
from app.core.stream import StreamTranslator
from app.core.tokens import RequestSize, measure_request
from app.server.auth import upstream_key_for
from app.server.records import RequestRecord, new_message_id
from app.server.state import STATE, ProxyState, record_of
from app.server.streaming import stream_messages
from app.server.upstream import READ_ERRORS, Attempts, ErrorContext, read_error_body

log = logging.getLogger(__name__)

MODELS_CACHE_S = 60.0


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


async def read_json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        raise ClientRequestError("body: the request body is empty; send a JSON object")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ClientRequestError(f"body: invalid JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise ClientRequestError("body: expected a JSON object")
    return body


def _route(state: ProxyState, req: MessagesRequest, record: RequestRecord) -> ModelRoute:
    route = resolve_model(req["model"], state.aliases)
    record.client_model, record.upstream_model = route.client_model, route.upstream_model
    return route


def _learn(state: ProxyState, route: ModelRoute, size: RequestSize, usage: dict[str, Any]) -> None:
    """Teach count_tokens this model's ratio from the upstream's own prompt count."""
    prompt = usage.get("input_tokens", 0) + usage.get("cache_read_input_tokens", 0)
    if prompt > 0:
        state.estimator.observe(route.upstream_model, size, prompt)


# ------------------------------------------------------------------ /v1/messages


async def create_message(request: web.Request) -> web.StreamResponse:
    state, record = request.app[STATE], record_of(request)
    api_key = upstream_key_for(request, state.secrets.proxy_key, state.secrets.upstream_key)
    req = validate_messages_request(await read_json_object(request))
    route = _route(state, req, record)
    chat = to_openai_request(req, route, notes=record.repairs)
    if log.isEnabledFor(logging.DEBUG):  # bodies only at DEBUG; the handlers redact keys
        log.debug("%s client request: %s", record.request_id, _dumps(req))
        log.debug("%s upstream request: %s", record.request_id, _dumps(chat))
    size = measure_request(req)
    estimate = state.estimator.estimate(route.upstream_model, size)
    attempts = Attempts()
    settings = state.settings

    def on_retry(error: ProxyError) -> None:
        log.info("%s retrying upstream after: %s", record.request_id, error.message)

    opening = state.upstream.post_chat(
        chat,
        api_key=api_key,
        window_s=settings.commit_window_s,
        context=ErrorContext(route.quirks.context_window, estimate),
        attempts=attempts,
        on_retry=on_retry,
    )
    message_id = new_message_id()
    record.stream = bool(req.get("stream"))
    try:
        if record.stream:
            translator = StreamTranslator(
                model=route.client_model,
                message_id=message_id,
                input_tokens=estimate,
                tools=req.get("tools") or (),
            )
            response = await stream_messages(
                request,
                opening=opening,
                translator=translator,
                record=record,
                commit_window_s=settings.commit_window_s,
                ping_interval_s=settings.ping_interval_s,
                read_failure=state.upstream.read_failure,
            )
            if translator.usage_reported:
                _learn(state, route, size, record.usage)
            return response
        return await _complete_message(state, record, req, route, size, opening, message_id)
    finally:
        record.attempts = attempts.count
        record.repairs.extend(r for r in attempts.repairs if r not in record.repairs)


async def _complete_message(
    state: ProxyState,
    record: RequestRecord,
    req: MessagesRequest,
    route: ModelRoute,
    size: RequestSize,
    opening: Coroutine[Any, Any, aiohttp.ClientResponse],
    message_id: str,
) -> web.Response:
    upstream = await opening
    record.mark_first_byte()
    try:
        raw = await upstream.read()
    except READ_ERRORS as exc:
        raise state.upstream.read_failure(exc) from exc
    finally:
        upstream.release()
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        snippet = raw[:200].decode("utf-8", "replace")
        raise UpstreamProtocolError(
            f"upstream answered with a body that is not JSON: {snippet!r}"
        ) from exc
    if not isinstance(parsed, dict):
        raise UpstreamProtocolError("upstream answered with JSON that is not an object")
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s upstream response: %s", record.request_id, raw.decode("utf-8", "replace"))
    message = to_anthropic_message(
        parsed,
        model=route.client_model,
        message_id=message_id,
        repairs=record.repairs,
        tools=req.get("tools") or (),
    )
    record.usage = dict(message["usage"])
    if isinstance(parsed.get("usage"), dict):
        _learn(state, route, size, record.usage)
    record.status = 200
    return web.json_response(message, dumps=_dumps, headers={"request-id": record.request_id})


async def count_tokens(request: web.Request) -> web.Response:
    state, record = request.app[STATE], record_of(request)
    upstream_key_for(request, state.secrets.proxy_key, state.secrets.upstream_key)
    body = await read_json_object(request)
    body.setdefault("max_tokens", 1)  # not part of count_tokens' contract
    req = validate_messages_request(body)
    route = _route(state, req, record)
    tokens = state.estimator.estimate(route.upstream_model, measure_request(req))
    record.status = 200
    return web.json_response({"input_tokens": tokens}, headers={"request-id": record.request_id})


# ------------------------------------------------------------------ /v1/models


async def _upstream_models(state: ProxyState, api_key: str | None) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    if state.models_cache is not None and loop.time() - state.models_cache[0] < MODELS_CACHE_S:
        return state.models_cache[1]
    response = await state.upstream.request("GET", "/models", api_key=api_key)
    if response.status >= 400:
        raise upstream_error_from_response(response.status, await read_error_body(response))
    try:
        body = await response.json(content_type=None)
    except (ValueError, aiohttp.ClientError) as exc:
        raise UpstreamProtocolError("upstream /models answered something that is not JSON") from exc
    finally:
        response.release()
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise UpstreamProtocolError("upstream /models answered without a 'data' list")
    models = [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
    state.models_cache = (loop.time(), models)
    return models


def _anthropic_model(model_id: str, created: object) -> dict[str, Any]:
    seconds = created if isinstance(created, int) and created > 0 else 0
    return {
        "type": "model",
        "id": model_id,
        "display_name": model_id,
        "created_at": datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z"),
    }


async def list_models(request: web.Request) -> web.Response:
    state, record = request.app[STATE], record_of(request)
    api_key = upstream_key_for(request, state.secrets.proxy_key, state.secrets.upstream_key)
    models = await _upstream_models(state, api_key)
    record.status = 200
    if "anthropic-version" in request.headers:
        data = [_anthropic_model(m["id"], m.get("created")) for m in models]
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
                    "id": m["id"],
                    "object": "model",
                    "created": m.get("created") if isinstance(m.get("created"), int) else 0,
                    "owned_by": m.get("owned_by") or "upstream",
                }
                for m in models
            ],
        }
    )


async def get_model(request: web.Request) -> web.Response:
    """Anthropic's `models.retrieve`; `claude-*` names exist because they always resolve."""
    state, record = request.app[STATE], record_of(request)
    api_key = upstream_key_for(request, state.secrets.proxy_key, state.secrets.upstream_key)
    model_id = request.match_info["model_id"]
    record.status = 200
    if tier_of(model_id) is not None or model_id in state.aliases.exact:
        return web.json_response(_anthropic_model(model_id, 0))
    for model in await _upstream_models(state, api_key):
        if model["id"] == model_id:
            return web.json_response(_anthropic_model(model_id, model.get("created")))
    raise ProxyError(f"model: {model_id!r} is not in the upstream's model list", status=404)


# ------------------------------------------------------------------ OpenAI pass-through


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """The provider's own API with our key injected; `claude-*` model names still resolve."""
    state, record = request.app[STATE], record_of(request)
    api_key = upstream_key_for(request, state.secrets.proxy_key, state.secrets.upstream_key)
    body = await read_json_object(request)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ClientRequestError("model: Field required")
    route = resolve_model(model, state.aliases)
    record.client_model, record.upstream_model = model, route.upstream_model
    record.stream = bool(body.get("stream"))
    body["model"] = route.upstream_model
    upstream = await state.upstream.request(
        "POST", "/chat/completions", api_key=api_key, body=_dumps(body).encode()
    )
    record.mark_first_byte()
    record.status = upstream.status
    try:
        if not record.stream or upstream.status >= 400:
            return web.Response(
                body=await upstream.read(),
                status=upstream.status,
                content_type=upstream.content_type,
                headers=_kept_headers(upstream),
            )
        response = web.StreamResponse(status=upstream.status, headers=_kept_headers(upstream))
        response.content_type = upstream.content_type
        await response.prepare(request)
        try:
            async for data in upstream.content.iter_any():
                await response.write(data)
        except (aiohttp.ClientPayloadError, aiohttp.ServerTimeoutError) as exc:
            record.error = f"upstream stream broke: {exc.__class__.__name__}"
            error = {
                "error": {"message": "upstream stream broke mid-response", "type": "api_error"}
            }
            await response.write(f"data: {_dumps(error)}\n\n".encode())
        await response.write_eof()
        return response
    finally:
        upstream.release()


def _kept_headers(upstream: aiohttp.ClientResponse) -> dict[str, str]:
    kept = ("Retry-After", "x-request-id", "Cache-Control")
    return {name: upstream.headers[name] for name in kept if name in upstream.headers}


# ------------------------------------------------------------------ liveness


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    record_of(request).status = 200
    return web.json_response(
        {
            "status": "ok",
            "version": __version__,
            "upstream": state.upstream.base_url,
            "uptime_s": round(time.monotonic() - state.started, 3),
        }
    )


def add_routes(app: web.Application) -> None:
    for prefix in ("", "/api/anthropic"):
        app.router.add_post(f"{prefix}/v1/messages", create_message)
        app.router.add_post(f"{prefix}/v1/messages/count_tokens", count_tokens)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model_id:.+}", get_model)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/health", health)
    app.router.add_get("/", health)  # also answers HEAD (Claude Code's reachability check)
