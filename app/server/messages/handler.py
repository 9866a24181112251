"""`POST /v1/messages` and `/v1/messages/count_tokens`: parse, route, answer.

The path of one request: the key and the body (`auth`, `json_body`, core validation);
what needs I/O before translation (images by URL, documents as text); the route; an
`Exchange` that owns the calls; then the answer, streamed (`stream_relay`) or whole
(`whole_answer`).
"""

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from app.core.anthropic_stream import StreamTranslator
from app.core.anthropic_types import Message, MessagesRequest
from app.core.request_validation import validate_messages_request
from app.core.server_tools.rounds import ServerToolStream
from app.core.server_tools.specs import max_rounds
from app.core.tiers import ModelRoute
from app.core.tokens import measure_request
from app.server.auth import authorize
from app.server.json_body import encode_json, parse_json_text, read_json_object
from app.server.messages.documents import documents_as_text
from app.server.messages.exchange import Exchange
from app.server.messages.image_urls import apply_image_url_policy
from app.server.messages.stream_relay import EventEncoder, stream_messages
from app.server.messages.whole_answer import whole_message
from app.server.records import RequestRecord, new_message_id
from app.server.server_tools.runner import stream_next_round
from app.server.state import STATE, ProxyState, record_of

log = logging.getLogger(__name__)


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
    req = await _fetched_and_read(state, record, req, route)
    if log.isEnabledFor(logging.DEBUG):  # bodies only at DEBUG; the handlers redact keys
        log.debug("%s client request: %s", record.request_id, _dumps(req))
    exchange = Exchange(state, record, req, route, client_key=client_key)
    record.stream = bool(req.get("stream"))
    try:
        if record.stream:
            return await _streamed(request, exchange, shape)
        message = await whole_message(exchange, new_message_id())
        record.status = 200
        # encode_json: an upstream's lone surrogate (invalid in UTF-8) goes out as a JSON
        # escape instead of failing the encode after the tokens were paid for.
        return web.Response(
            body=encode_json(shape.body(message) if shape is not None else message),
            content_type="application/json",
            headers={"request-id": record.request_id},
        )
    finally:
        exchange.close()


async def _streamed(
    request: web.Request, exchange: Exchange, shape: ReplyShape | None
) -> web.StreamResponse:
    state, record, req, runner = exchange.state, exchange.record, exchange.req, exchange.runner
    message_id = new_message_id()

    def new_translator(round_number: int = 1) -> StreamTranslator:
        return StreamTranslator(
            model=exchange.route.client_model,
            message_id=message_id,
            input_tokens=exchange.prompt_tokens,
            tools=exchange.answer.tools,
            max_output_tokens=req["max_tokens"],  # a runaway upstream stops there
            server_tool_names=runner.names if runner is not None else frozenset(),
            thinking_display=exchange.answer.thinking_display,
            stop_sequences=exchange.answer.stop_sequences,
            loads=parse_json_text,
            mask=state.masker.mask,  # what it quotes or cuts: the rest is masked on the way out
        )

    translator: StreamTranslator | ServerToolStream = new_translator()
    next_round = None
    if runner is not None:
        translator = ServerToolStream(
            new_translator, runner.ledger, max_rounds=max_rounds(runner.specs)
        )
        next_round = stream_next_round(req, translator, runner, exchange.open_round)
    response = await stream_messages(
        request,
        record,
        exchange.first,
        translator,
        relay=state.relay,
        masker=state.masker,
        next_round=next_round,
        encode=shape.new_encoder(record) if shape is not None else None,
    )
    if translator.usage_reported:
        exchange.learn_prompt_ratio(record.usage)
    return response


def _route(state: ProxyState, req: MessagesRequest, record: RequestRecord) -> ModelRoute:
    route = state.registry.route(req["model"])
    record.note_route(route)
    return route


async def _fetched_and_read(
    state: ProxyState, record: RequestRecord, req: MessagesRequest, route: ModelRoute
) -> MessagesRequest:
    """What the core cannot do without I/O, done first on a copy: images by URL, and
    documents (PDFs) as text, within one fetch budget for the request."""
    budget = state.fetcher.request_budget()
    req = await apply_image_url_policy(
        req,
        state.settings.image_urls,
        state.fetcher,
        budget,
        model_sees_images=route.quirks.supports_images is not False,
    )
    return await documents_as_text(
        req,
        state.documents,
        state.fetcher,
        url_policy=state.settings.image_urls,
        notes=record.repairs,
        budget=budget,
    )


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


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
