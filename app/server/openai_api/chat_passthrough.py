"""POST /v1/chat/completions: the provider's own API, with NimBridge's key and routing.

The body is passed on as the client wrote it, except `model`, which routes like
any other name (so `claude-*` names and `provider/model` work here too). The
request is paced and retried before the first byte like a translated one, but
never "repaired": we did not write the body, so we do not rewrite it.

The answer is relayed with only the fields strict clients (the official
`openai` SDKs) require filled in (`app.core.strict_openai`): one decode,
fix and write per upstream read. A stream request answered with a whole JSON
body, or with a body that is no stream at all, still ends as a stream the SDKs
parse: the answer as one chunk, or an error chunk saying what came.
"""

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from app.core.capabilities import ModelQuirks
from app.core.errors import (
    ClientRequestError,
    ProxyError,
    UpstreamProtocolError,
    UpstreamUnavailable,
)
from app.core.sse import SSEDecoder
from app.core.strict_openai import ChunkNormaliser, to_strict_completion
from app.core.tiers import ModelRoute
from app.server.auth import authorize
from app.server.egress import MaskedStream
from app.server.json_body import parse_json_text, read_json_object
from app.server.state import STATE, absorb_stop, record_of
from app.server.upstream.call_policy import open_as_given
from app.server.upstream.client import MB, UpstreamResponse, answered_whole


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state, record = request.app[STATE], record_of(request)
    client_key = authorize(request, state.proxy_key)
    body = await read_json_object(request)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ClientRequestError("model: Field required")
    route = state.registry.route(model)
    record.note_route(route)
    record.stream = bool(body.get("stream"))

    def build(route: ModelRoute, _quirks: ModelQuirks) -> dict[str, Any]:
        return {**body, "model": route.upstream_model}

    upstream = await open_as_given(state.registry, record, build, route, client_key=client_key)
    record.mark_first_byte()
    record.status = upstream.status
    try:
        if not record.stream:
            limit = state.settings.max_upstream_response_mb * MB
            answer = await upstream.read_body(limit, state.masker)
            if upstream.status >= 400:  # "Incorrect API key provided: <our key>"
                answer = state.mask(answer.decode("utf-8", "replace")).encode()
            else:
                answer = _strict_body(answer, model)
            return web.Response(
                body=answer,
                status=upstream.status,
                content_type=upstream.content_type,
                headers=_kept_headers(upstream),
            )
        response = MaskedStream(
            state.masker, status=upstream.status, headers=_kept_headers(upstream)
        )
        response.content_type = upstream.content_type
        await response.prepare(request)
        if upstream.status >= 400:  # an error body, not a stream: relayed as it is
            async for data in upstream.chunks():
                await response.write(data)
            await response.write_eof()
            return response
        decoder = SSEDecoder()
        options = body.get("stream_options")
        normaliser = ChunkNormaliser(
            stream_id=_new_id(),
            created=int(time.time()),
            model=model,
            include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
            loads=parse_json_text,
            mask=state.masker.mask,  # what it quotes cut: the rest is masked on the way out
        )
        limit = state.settings.max_upstream_response_mb * MB
        try:
            if answered_whole(upstream.content_type):
                answer = await upstream.read_body(limit, state.masker)
                await response.write(normaliser.whole(_parsed_or_text(answer)))
            else:
                await _relay_stream(upstream, response, decoder, normaliser, state.masker.redact)
        except UpstreamProtocolError as exc:  # an event past the decoder's bound
            record.error = exc.message
            await response.write(_error_event(exc))
        except UpstreamUnavailable as failure:  # a read that failed, in words
            shown = ProxyError(state.mask(failure.message), status=failure.status)
            record.error = shown.message
            await response.write(_error_event(shown))
        except asyncio.CancelledError:
            if not absorb_stop(record) or record.stopped_by is None:
                raise  # the client went away
            record.error = record.stopped_by.message
            await response.write(_error_event(record.stopped_by))
        await response.write_eof()
        return response
    finally:
        upstream.release()


async def _relay_stream(
    upstream: UpstreamResponse,
    response: web.StreamResponse,
    decoder: SSEDecoder,
    normaliser: ChunkNormaliser,
    redact: Callable[[str], str],
) -> None:
    """Each upstream read decoded, fixed and written as it arrives (masked on its way
    out; the normaliser masks what it quotes). A body in which no event came (an HTML
    page with a 200) is said in words, never a bare [DONE]."""
    start = b""
    events = 0
    async for data in upstream.chunks():
        if len(start) < 512:
            start += data[:512]
        decoded = decoder.feed(data)
        events += len(decoded)
        fixed = b"".join(normaliser.fix(event) for event in decoded)
        if fixed:
            await response.write(fixed)
    decoded = decoder.close()
    events += len(decoded)
    tail = b"".join(normaliser.fix(event) for event in decoded)
    if not events and start.strip() and "event-stream" not in upstream.content_type:
        shown = redact(start.decode("utf-8", "replace"))  # cut at 512: edges too
        tail = normaliser.not_a_stream(upstream.content_type, shown)
    await response.write(tail + normaliser.finish())


def _parsed_or_text(answer: bytes) -> object:
    try:
        return json.loads(answer)
    except ValueError:
        return answer.decode("utf-8", "replace")


def _new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _strict_body(answer: bytes, model: str) -> bytes:
    """The completion with the fields strict clients require; other bodies as they came."""
    try:
        parsed = json.loads(answer)
    except ValueError:
        return answer
    if not isinstance(parsed, dict) or "error" in parsed:
        return answer
    fixed = to_strict_completion(
        parsed, completion_id=_new_id(), created=int(time.time()), model=model
    )
    return _dumps(fixed).encode()


def _error_event(error: ProxyError) -> bytes:
    body = {"error": {"message": error.message, "type": error.error_type}}
    return f"data: {_dumps(body)}\n\n".encode()


def _kept_headers(upstream: UpstreamResponse) -> dict[str, str]:
    kept = ("Retry-After", "x-request-id", "Cache-Control")
    return {name: upstream.headers[name] for name in kept if name in upstream.headers}
