"""A `/v1/messages` answer read whole (no streaming): one upstream call, or round after
round when server tools run between them, translated into one Anthropic message."""

import logging

from app.core.anthropic_types import Message, MessagesRequest
from app.core.errors import UpstreamProtocolError
from app.core.response_map import to_anthropic_message
from app.core.server_tools.rounds import ServerToolMessage
from app.core.server_tools.specs import max_rounds
from app.server.json_body import MAX_JSON_DEPTH, nested_too_deep, parse_json_text
from app.server.messages.exchange import Exchange
from app.server.server_tools.runner import complete_rounds
from app.server.upstream.call_policy import UpstreamCall

log = logging.getLogger(__name__)


async def whole_message(exchange: Exchange, message_id: str) -> Message:
    record, runner = exchange.record, exchange.runner
    if runner is None:
        message, usage_reported = await _read_message(exchange, exchange.first, message_id)
        record.usage = dict(message["usage"])
        if usage_reported:
            exchange.learn_prompt_ratio(record.usage)
        return message
    rounds = ServerToolMessage(runner.names, runner.ledger, max_rounds=max_rounds(runner.specs))

    async def read_round(round_req: MessagesRequest) -> Message:
        call = exchange.first if rounds.rounds == 0 else exchange.new_call(round_req)
        return (await _read_message(exchange, call, message_id))[0]

    await complete_rounds(exchange.req, rounds, runner, read_round)
    assert rounds.message is not None
    record.usage = dict(rounds.message["usage"])
    return rounds.message


async def _read_message(
    exchange: Exchange, call: UpstreamCall, message_id: str
) -> tuple[Message, bool]:
    """One upstream call, read whole and translated; True when it reported usage."""
    state, record, answer = exchange.state, exchange.record, exchange.answer
    upstream = await call.open()
    route = call.attempts.route or call.route
    record.mark_first_byte()
    try:
        raw = await upstream.read_body(state.relay.max_upstream_bytes, state.masker)
    finally:
        upstream.release()
    try:
        parsed = parse_json_text(raw)
        too_deep = nested_too_deep(raw, parsed)
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
