"""One thin handler per endpoint: parse -> core -> upstream -> core -> respond."""

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from app import __version__
from app.core.anthropic_stream import StreamTranslator
from app.core.anthropic_types import Message, MessagesRequest
from app.core.deferred_tools import offered_tools
from app.core.errors import UpstreamProtocolError
from app.core.masking import without_credentials
from app.core.request_validation import validate_messages_request
from app.core.response_map import to_anthropic_message
from app.core.server_tools.rounds import ServerToolMessage, ServerToolStream
from app.core.server_tools.specs import (
    ServerToolLedger,
    context_urls,
    max_rounds,
    server_tool_specs,
)
from app.core.thinking_display import ThinkingDisplay, thinking_display
from app.core.tiers import ModelRoute
from app.core.tokens import RequestSize, measure_request
from app.server.auth import authorize
from app.server.images.generation import create_image
from app.server.json_body import MAX_JSON_DEPTH, deeper_than, encode_json, read_json_object
from app.server.messages.documents import documents_as_text
from app.server.messages.image_urls import apply_image_url_policy
from app.server.messages.stream_relay import EventEncoder, stream_messages
from app.server.models_routes import get_model, list_models
from app.server.openai_api.chat_passthrough import chat_completions
from app.server.records import RequestRecord, new_message_id
from app.server.server_tools.runner import (
    NewCall,
    ServerToolRunner,
    complete_rounds,
    stream_next_round,
)
from app.server.state import STATE, ProxyState, record_of
from app.server.status_route import add_status_route
from app.server.upstream.call_policy import Attempts, UpstreamCall, messages_body_builder
from app.server.upstream.client import MB, READ_ERRORS, read_bounded

log = logging.getLogger(__name__)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _route(state: ProxyState, req: MessagesRequest, record: RequestRecord) -> ModelRoute:
    route = state.registry.route(req["model"])
    record.note_route(route)
    return route


@dataclass(frozen=True, slots=True)
class AnswerShape:
    """What a whole upstream answer is read against: the tools offered (deferred ones once
    loaded), to read tool calls leaked into text, and how thinking is shown."""

    tools: Sequence[Mapping[str, Any]]
    thinking_display: ThinkingDisplay
    stop_sequences: Sequence[str] = ()  # the client's, to name the one that matched


def _learn(state: ProxyState, route: ModelRoute, size: RequestSize, usage: dict[str, Any]) -> None:
    """Teach count_tokens this model's ratio from the upstream's own prompt count."""
    prompt = usage.get("input_tokens", 0) + usage.get("cache_read_input_tokens", 0)
    if prompt > 0:
        state.estimator.observe(route.upstream_model, size, prompt)


# ------------------------------------------------------------------ /v1/messages


@dataclass(frozen=True, slots=True)
class ReplyShape:
    """How an answer leaves when the client does not speak Anthropic (`/v1/responses`):
    `new_encoder()` gives one stream's event encoder, `body` shapes a whole message."""

    new_encoder: Callable[[RequestRecord], EventEncoder]
    body: Callable[[Message], dict[str, Any]]


async def create_message(request: web.Request) -> web.StreamResponse:
    client_key = authorize(request, request.app[STATE].proxy_key)
    req = validate_messages_request(await read_json_object(request))
    return await answer_messages_request(request, req, client_key)


async def answer_messages_request(
    request: web.Request,
    req: MessagesRequest,
    client_key: str | None,
    shape: ReplyShape | None = None,
) -> web.StreamResponse:
    """An Anthropic request served: its own, or one another API's handler translated."""
    state, record = request.app[STATE], record_of(request)
    record.client_body = req
    route = _route(state, req, record)
    budget = state.fetcher.request_budget()  # images and documents by URL, together
    req = await apply_image_url_policy(
        req,
        state.settings.image_urls,
        state.fetcher,
        budget,
        model_sees_images=route.quirks.supports_images is not False,
    )
    req = await documents_as_text(
        req,
        state.documents,
        state.fetcher,
        url_policy=state.settings.image_urls,
        notes=record.repairs,
        budget=budget,
    )
    if log.isEnabledFor(logging.DEBUG):  # bodies only at DEBUG; the handlers redact keys
        log.debug("%s client request: %s", record.request_id, _dumps(req))
    size = measure_request(req)
    estimate = state.estimator.estimate(route.upstream_model, size)
    # What the model is offered (deferred tools once loaded), to read leaked tool-call markup.
    tools = offered_tools(req)
    answer = AnswerShape(
        tools, thinking_display(req.get("thinking")), req.get("stop_sequences") or ()
    )
    attempts = Attempts()
    specs = server_tool_specs(req.get("tools") or ())
    fetching = any(spec.kind == "web_fetch" for spec in specs.values())
    runner = (
        ServerToolRunner(
            specs,
            state.web_search,
            state.web_fetch,
            record.request_id,
            fetch_max_chars=state.settings.web_fetch_max_chars,
            ledger=ServerToolLedger(known_urls=context_urls(req) if fetching else set()),
        )
        if specs
        else None
    )

    calls: list[UpstreamCall] = []

    def new_call(round_req: MessagesRequest, round_attempts: Attempts) -> UpstreamCall:
        """The upstream call of one round (the first, or a later one of the server-tool loop)."""
        made = UpstreamCall(
            state.registry,
            runner.body_builder(round_req, record.repairs)
            if runner is not None
            else messages_body_builder(round_req, record.repairs),
            attempts.route or route,  # later rounds stay on the model the first one used
            client_key=client_key,
            prompt_tokens=estimate,
            attempts=round_attempts,
            request_id=record.request_id,
        )
        calls.append(made)
        return made

    call = new_call(req, attempts)
    settings = state.settings
    message_id = new_message_id()
    record.stream = bool(req.get("stream"))
    try:
        if record.stream:

            def new_translator(round_number: int = 1) -> StreamTranslator:
                return StreamTranslator(
                    model=route.client_model,
                    message_id=message_id,
                    input_tokens=estimate,
                    tools=tools,
                    max_output_tokens=req["max_tokens"],  # a runaway upstream stops there
                    server_tool_names=runner.names if runner is not None else frozenset(),
                    thinking_display=thinking_display(req.get("thinking")),
                    stop_sequences=req.get("stop_sequences") or (),
                )

            translator: StreamTranslator | ServerToolStream = new_translator()
            next_round = None
            if runner is not None:
                translator = ServerToolStream(
                    new_translator, runner.ledger, max_rounds=max_rounds(specs)
                )
                next_round = stream_next_round(req, translator, runner, new_call, attempts)
            response = await stream_messages(
                request,
                opening=call.open(),
                attempts=attempts,
                translator=translator,
                record=record,
                commit_window_s=settings.commit_window_s,
                ping_interval_s=settings.ping_interval_s,
                read_failure=state.registry.upstream.read_failure,
                max_upstream_bytes=settings.max_upstream_response_mb * MB,
                masker=state.masker,
                next_round=next_round,
                smooth_deltas=settings.smooth_deltas,
                reask=call.ask_unstreamed,
                encode=shape.new_encoder(record) if shape is not None else None,
            )
            if translator.usage_reported:
                _learn(state, attempts.route or route, size, record.usage)
            return response
        if runner is not None:
            return await _complete_with_server_tools(
                state, record, req, answer, call, message_id, runner, new_call, shape
            )
        return await _complete_message(state, record, answer, call, size, message_id, shape)
    finally:
        record.attempts = attempts.count
        # The inspector shows the last round's body: it holds the earlier rounds' calls
        # and results, and it is what the recorded response answers.
        sent = next((made for made in reversed(calls) if made.last_body is not None), call)
        record.upstream_body, record.upstream_target = sent.last_body, sent.last_target
        if attempts.route is not None:
            record.note_route(attempts.route)


async def _complete_message(
    state: ProxyState,
    record: RequestRecord,
    answer: AnswerShape,
    call: UpstreamCall,
    size: RequestSize,
    message_id: str,
    shape: ReplyShape | None = None,
) -> web.Response:
    message, usage_reported = await _read_message(state, record, answer, call, message_id)
    record.usage = dict(message["usage"])
    if usage_reported:
        _learn(state, call.attempts.route or call.route, size, record.usage)
    return _message_response(record, message, shape)


async def _complete_with_server_tools(
    state: ProxyState,
    record: RequestRecord,
    req: MessagesRequest,
    answer: AnswerShape,
    call: UpstreamCall,
    message_id: str,
    runner: ServerToolRunner,
    new_call: NewCall,
    shape: ReplyShape | None = None,
) -> web.Response:
    """Round after round (server tools run between them) into one message."""
    rounds = ServerToolMessage(runner.names, runner.ledger, max_rounds=max_rounds(runner.specs))

    async def read_round(round_req: MessagesRequest) -> Message:
        if rounds.rounds == 0:
            return (await _read_message(state, record, answer, call, message_id))[0]
        round_attempts = Attempts()
        try:
            round_call = new_call(round_req, round_attempts)
            return (await _read_message(state, record, answer, round_call, message_id))[0]
        finally:
            call.attempts.count += round_attempts.count

    await complete_rounds(req, rounds, runner, read_round)
    assert rounds.message is not None
    record.usage = dict(rounds.message["usage"])
    return _message_response(record, rounds.message, shape)


def _message_response(
    record: RequestRecord, message: Message, shape: ReplyShape | None = None
) -> web.Response:
    record.status = 200
    # encode_json: an upstream's lone surrogate (invalid in UTF-8) goes out as a JSON
    # escape instead of failing the encode after the tokens were paid for.
    return web.Response(
        body=encode_json(shape.body(message) if shape is not None else message),
        content_type="application/json",
        headers={"request-id": record.request_id},
    )


async def _read_message(
    state: ProxyState,
    record: RequestRecord,
    answer: AnswerShape,
    call: UpstreamCall,
    message_id: str,
) -> tuple[Message, bool]:
    """One upstream call, read whole and translated; True when it reported usage."""
    upstream = await call.open()
    route = call.attempts.route or call.route
    record.mark_first_byte()
    try:
        raw = await read_bounded(
            upstream, state.settings.max_upstream_response_mb * MB, masker=state.masker
        )
    except READ_ERRORS as exc:
        raise state.registry.upstream.read_failure(exc, str(upstream.url)) from exc
    finally:
        upstream.release()
    try:
        parsed = json.loads(raw)
        too_deep = deeper_than(parsed, MAX_JSON_DEPTH)
    except RecursionError:
        too_deep = "the top level"
    except ValueError as exc:
        snippet = state.masker.clip(raw.decode("utf-8", "replace"), 200)
        raise UpstreamProtocolError(
            f"upstream answered with a body that is not JSON: {snippet!r}"
        ) from exc
    if too_deep is not None:
        raise UpstreamProtocolError(
            f"upstream answered with JSON nested more than {MAX_JSON_DEPTH} levels deep"
        )
    if not isinstance(parsed, dict):
        raise UpstreamProtocolError("upstream answered with JSON that is not an object")
    record.upstream_response = raw
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s upstream response: %s", record.request_id, raw.decode("utf-8", "replace"))
    message = to_anthropic_message(
        parsed,
        model=route.client_model,
        message_id=message_id,
        repairs=record.repairs,
        tools=answer.tools,
        thinking_display=answer.thinking_display,
        stop_sequences=answer.stop_sequences,
    )
    return message, isinstance(parsed.get("usage"), dict)


async def count_tokens(request: web.Request) -> web.Response:
    state, record = request.app[STATE], record_of(request)
    authorize(request, state.proxy_key)
    body = await read_json_object(request)
    body.setdefault("max_tokens", 1)  # not part of count_tokens' contract
    req = validate_messages_request(body)
    route = _route(state, req, record)
    # PDFs count by the text the model will see (read once: the message reuses the
    # reading); documents by URL are not fetched to be counted (tokens.URL_DOCUMENT_CHARS).
    req = await documents_as_text(req, state.documents, state.fetcher, url_policy=None, notes=[])
    tokens = state.estimator.estimate(route.upstream_model, measure_request(req))
    record.status = 200
    return web.json_response({"input_tokens": tokens}, headers={"request-id": record.request_id})


# ------------------------------------------------------------------ liveness


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    record_of(request).status = 200
    return web.json_response(
        {
            "status": "ok",
            "version": __version__,
            # Unauthenticated: the URL without `user:PASS@` or `?key=...`.
            "upstream": without_credentials(state.settings.default.base_url),
            "providers": [p.name for p in state.settings.providers],
            "uptime_s": round(time.monotonic() - state.started, 3),
            # The rate governors' view, for the tray and for people debugging 429s.
            "pacing": {
                name: {
                    "requests_last_minute": governor.requests_last_minute,
                    "budget_per_minute": governor.budget_per_minute,
                    "cooling_down_for_s": round(governor.cooling_down_for, 1),
                    "queued": governor.queued,
                    "rate_limited": governor.rate_limited_count,
                }
                for name, governor in state.registry.governor_states().items()
            },
        }
    )


def add_routes(app: web.Application) -> None:
    for prefix in ("", "/api/anthropic"):
        app.router.add_post(f"{prefix}/v1/messages", create_message)
        app.router.add_post(f"{prefix}/v1/messages/count_tokens", count_tokens)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model_id:.+}", get_model)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/images/generations", create_image)
    app.router.add_get("/health", health)
    app.router.add_get("/", health)  # also answers HEAD (Claude Code's reachability check)
    add_status_route(app)
