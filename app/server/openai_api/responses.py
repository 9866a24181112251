"""`POST /v1/responses` (OpenAI Responses API, what Codex CLI speaks).

The request becomes an Anthropic one (`app/core/responses_request.py`) and is served
by `/v1/messages`' own handler (`messages.handler.answer_messages_request`): same routing,
quirks, pacing, retries, server tools, records, masking. Only the way the answer
leaves differs: a stream's events go through `ResponsesStreamTranslator` and the
Responses grammar guard; a whole message becomes one `response` object.
"""

import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from app.core.anthropic_types import Message, StreamEvent
from app.core.request_validation import validate_messages_request
from app.core.responses_guard import ResponsesGrammarError, ResponsesStreamGuard
from app.core.responses_request import ResponsesPlan, to_messages_request
from app.core.responses_stream import (
    ResponsesStreamTranslator,
    encode_responses_event,
    to_response_object,
)
from app.server.auth import authorize
from app.server.json_body import read_json_object
from app.server.messages.handler import ReplyShape, answer_messages_request
from app.server.messages.stream_relay import EventEncoder
from app.server.records import RequestRecord, new_message_id
from app.server.state import STATE, record_of

log = logging.getLogger(__name__)

# Codex calls `{base_url}/responses`: with or without /v1 in the base URL.
RESPONSES_PATHS = ("/v1/responses", "/responses")


def _reply_shape(plan: ResponsesPlan, mask: Callable[[str], str]) -> ReplyShape:
    response_id = f"resp_{new_message_id().removeprefix('msg_')}"
    created_at = int(time.time())

    def new_translator() -> ResponsesStreamTranslator:
        return ResponsesStreamTranslator(
            response_id=response_id,
            created_at=created_at,
            tool_names=plan.tool_names,
            include_encrypted_reasoning=plan.include_encrypted_reasoning,
            mask=mask,  # reasoning it packs; the rest is masked on the way out
        )

    def new_encoder(record: RequestRecord) -> EventEncoder:
        translator, guard = new_translator(), ResponsesStreamGuard()

        def encode(events: list[StreamEvent]) -> bytes:
            out: list[bytes] = []
            for event in events:
                for converted in translator.feed(event):
                    try:
                        guard.check(converted)
                    except ResponsesGrammarError as exc:  # our bug: say it, send no more
                        log.error(
                            "%s NimBridge bug: malformed Responses stream, %s",
                            record.request_id,
                            exc,
                        )
                        record.error = f"NimBridge bug: malformed Responses stream ({exc.reason})"
                        translator.ended = True
                        return b"".join(out)
                    out.append(encode_responses_event(converted))
            return b"".join(out)

        return encode

    def body(message: Message) -> dict[str, Any]:
        return to_response_object(
            message,
            response_id=response_id,
            created_at=created_at,
            tool_names=plan.tool_names,
            include_encrypted_reasoning=plan.include_encrypted_reasoning,
        )

    return ReplyShape(new_encoder, body)


async def create_response(request: web.Request) -> web.StreamResponse:
    state, record = request.app[STATE], record_of(request)
    client_key = authorize(request, state.proxy_key)
    body = await read_json_object(request)
    plan = to_messages_request(body, record.repairs)
    req = validate_messages_request(dict(plan.request))
    shape = _reply_shape(plan, state.masker.mask)
    return await answer_messages_request(request, req, client_key, shape)


def add_responses_routes(app: web.Application) -> None:
    for path in RESPONSES_PATHS:
        app.router.add_post(path, create_response)
