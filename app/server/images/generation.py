"""POST /v1/images/generations: OpenAI's image API, to OpenAI-style providers as written
and to Cloudflare Workers AI translated (`app.core.images` says how).

Each upstream call is paced and retried before anything is answered, like a chat
request (`UpstreamCall`); Workers AI makes one image per call, so `n` images are `n`
calls, at most `WORKERS_AI_PARALLEL_IMAGES` at a time, and the first failure ends
the request (the calls still running are cancelled). Errors are OpenAI-shaped
(`app.server.app.error_response`).
"""

import asyncio
import secrets
import time
from typing import Any

from aiohttp import web

from app.core.capabilities import ModelQuirks
from app.core.errors import ClientRequestError, ProxyError
from app.core.images.openai_images import (
    MAX_IMAGES_OPENAI,
    MAX_IMAGES_WORKERS_AI,
    OPENAI_IMAGES_PATH,
    ImageApi,
    ImageRequest,
    to_openai_images_response,
    validate_image_request,
)
from app.core.images.workers_ai import (
    WORKERS_AI_PARALLEL_IMAGES,
    ImageTransport,
    encode_multipart,
    image_from_workers_ai,
    to_workers_ai_input,
    workers_ai_image_model,
    workers_ai_model_path,
)
from app.core.providers import Provider
from app.core.tiers import ModelRoute
from app.server.auth import authorize
from app.server.images.catalog import ImageCatalogs, image_api_of, workers_ai_run_url
from app.server.json_body import read_json_object
from app.server.records import RequestRecord
from app.server.state import STATE, ProxyState, record_of
from app.server.upstream.call_policy import open_as_given
from app.server.upstream.client import MB, UpstreamResponse, encode_json_body

_KEPT_HEADERS = ("Retry-After", "x-request-id", "Cache-Control")


async def create_image(request: web.Request) -> web.Response:
    state, record = request.app[STATE], record_of(request)
    client_key = authorize(request, state.proxy_key)
    body = await read_json_object(request)
    record.client_body = body
    record.stream = False
    req = validate_image_request(body, max_images=MAX_IMAGES_OPENAI)
    route = await ImageCatalogs(state.registry).route(req.model)
    record.note_route(route)
    provider = state.registry.provider(route.provider)
    if image_api_of(provider) is ImageApi.WORKERS_AI:
        if req.n > MAX_IMAGES_WORKERS_AI:
            raise ClientRequestError(
                f"n: Workers AI makes one image per call; NimBridge asks for at most "
                f"{MAX_IMAGES_WORKERS_AI} per request, got {req.n}"
            )
        return await _workers_ai(state, record, req, route, client_key)
    return await _pass_through(state, record, body, route, client_key)


async def _pass_through(
    state: ProxyState,
    record: RequestRecord,
    body: dict[str, Any],
    route: ModelRoute,
    client_key: str | None,
) -> web.Response:
    def build(route: ModelRoute, _quirks: ModelQuirks) -> dict[str, Any]:
        return {**body, "model": route.upstream_model}

    def target(
        provider: Provider, route: ModelRoute, sent: dict[str, Any]
    ) -> tuple[str, bytes, str]:
        url = f"{provider.base_url}{OPENAI_IMAGES_PATH}"
        return url, encode_json_body(sent), "application/json"

    upstream = await open_as_given(
        state.registry, record, build, route, client_key=client_key, target=target
    )
    record.mark_first_byte()
    record.status = upstream.status
    try:
        answer = await _read(state, upstream)
    finally:
        upstream.release()
    return web.Response(
        body=answer,
        status=upstream.status,
        content_type=upstream.content_type,
        headers={k: upstream.headers[k] for k in _KEPT_HEADERS if k in upstream.headers},
    )


async def _workers_ai(
    state: ProxyState,
    record: RequestRecord,
    req: ImageRequest,
    route: ModelRoute,
    client_key: str | None,
) -> web.Response:
    spec = workers_ai_image_model(route.upstream_model)
    # All inputs first: a size the model cannot make, or an id that is no model name,
    # is refused before any call.
    workers_ai_model_path(route.upstream_model)
    inputs = [to_workers_ai_input(req, spec, index=i) for i in range(req.n)]
    record.upstream_body = inputs[0]

    def target(
        provider: Provider, route: ModelRoute, fields: dict[str, Any]
    ) -> tuple[str, bytes, str]:
        url = workers_ai_run_url(provider, route.upstream_model)
        if spec.transport is ImageTransport.MULTIPART:
            payload, content_type = encode_multipart(fields, secrets.token_hex(16))
            return url, payload, content_type
        return url, encode_json_body(fields), "application/json"

    slots = asyncio.Semaphore(WORKERS_AI_PARALLEL_IMAGES)

    async def one_image(fields: dict[str, Any]) -> bytes:
        async with slots:
            upstream = await open_as_given(
                state.registry,
                record,
                lambda _route, _quirks: fields,
                route,
                client_key=client_key,
                target=target,
            )
            try:
                raw = await _read(state, upstream)
            finally:
                upstream.release()
            return image_from_workers_ai(upstream.content_type, raw, model=route.upstream_model)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one_image(fields)) for fields in inputs]
    except ExceptionGroup as failed:
        raise _first_proxy_error(failed) from failed
    record.mark_first_byte()
    record.status = 200
    answer = to_openai_images_response(
        [task.result() for task in tasks], req.response_format, created=int(time.time())
    )
    return web.json_response(answer)


async def _read(state: ProxyState, upstream: UpstreamResponse) -> bytes:
    return await upstream.read_body(state.settings.max_upstream_response_mb * MB)


def _first_proxy_error(group: ExceptionGroup) -> BaseException:
    """The first failure that is ours to word; the group itself when one is a bug."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        item = pending.pop(0)
        if isinstance(item, BaseExceptionGroup):
            pending = list(item.exceptions) + pending
        else:
            leaves.append(item)
    if all(isinstance(leaf, ProxyError) for leaf in leaves):
        return leaves[0]
    return group
