"""One client request's way to an upstream response: pacing, retries, repairs, fallback.

Order of events for each attempt, all before the first byte to the client:
1. wait for the rate budget (provider and model governors); a wait longer than
   `queue_max_wait_s` fails at once as `rate_limit_error` with `retry-after`;
2. send; a 2xx is returned to the caller (who streams it or reads it);
3. an error is, in this order: a too-large `max_tokens` (clamped to what the
   upstream names, remembered for the model, sent again); a field the model
   rejects (learned for the session, the request translated again without it,
   sent again); a retryable failure (429, 502/503/504, DEGRADED, refused
   connection: backoff honouring `retry-after`, bounded by `RetryPolicy`);
   anything else is final.
4. When a tier's own model is out of retries, its configured fallback model
   gets one more round.

Invariant: once the caller marks the call `committed` (bytes went out), no
retry starts: the failure is the caller's to report as an `error` event.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, cast

from app.core.anthropic_types import MessagesRequest
from app.core.capabilities import ModelQuirks
from app.core.deferred_tools import OfferedTools
from app.core.errors import (
    ProxyError,
    UpstreamError,
    UpstreamUnavailable,
    extract_upstream_message,
    max_tokens_limit,
    upstream_error_from_response,
)
from app.core.governor import Reservation, parse_retry_after
from app.core.providers import Provider
from app.core.quirk_learning import rejection_from_error
from app.core.request_map import to_openai_request
from app.core.tiers import ModelRoute
from app.server.records import RequestRecord, UpstreamTarget
from app.server.upstream.client import UpstreamResponse, encode_json_body
from app.server.upstream.registry import ProviderRegistry

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Attempts:
    """The call's progress, shared with the stream relay and the request log."""

    count: int = 0
    repairs: list[str] = field(default_factory=list)
    committed: bool = False  # set by the relay once bytes went out: no retry after that
    waiting: bool = False  # in a backoff or a budget queue, not an attempt in flight
    attempt_started: float = 0.0  # loop time the attempt in flight was sent
    route: ModelRoute | None = None  # the route finally used (a fallback's, maybe)
    # Set at each step (an attempt sent, a wait begun or over): the stream relay's commit
    # window waits on it rather than polling these fields.
    changed: asyncio.Event = field(default_factory=asyncio.Event)


# Builds the upstream body for a route and the quirks known for it right now.
BodyBuilder = Callable[[ModelRoute, ModelQuirks], dict[str, Any]]
# Where an attempt goes and how its body is written: (url, payload, content type).
RequestTarget = Callable[[Provider, ModelRoute, dict[str, Any]], tuple[str, bytes, str]]
# How a backoff or a budget queue waits (tests give one that returns at once).
Sleep = Callable[[float], Awaitable[None]]


def chat_completions_target(
    provider: Provider, route: ModelRoute, body: dict[str, Any]
) -> tuple[str, bytes, str]:
    return f"{provider.base_url}/chat/completions", encode_json_body(body), "application/json"


def messages_body_builder(
    req: MessagesRequest, notes: list[str], offered: OfferedTools | None = None
) -> BodyBuilder:
    """An Anthropic request translated for whichever route and quirks are current.

    `offered`: the request's `offer_tools`, when its caller worked them out already."""

    def build(route: ModelRoute, quirks: ModelQuirks) -> dict[str, Any]:
        # The quirks passed beside the route, not a copy of the route made for them.
        body = to_openai_request(req, route, notes=notes, quirks=quirks, offered=offered)
        return cast(dict[str, Any], body)  # a fresh dict each build: no copy needed

    return build


class UpstreamCall:
    def __init__(
        self,
        registry: ProviderRegistry,
        build_body: BodyBuilder,
        route: ModelRoute,
        *,
        client_key: str | None,
        prompt_tokens: int | None,
        attempts: Attempts,
        request_id: str,
        learn: bool = True,  # False for bodies we pass through untranslated
        target: RequestTarget = chat_completions_target,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.registry = registry
        self._wait = sleep
        self.target = target
        self.build_body = build_body
        self.learn = learn
        self.route = route
        self.client_key = client_key
        self.prompt_tokens = prompt_tokens
        self.attempts = attempts
        self.request_id = request_id
        self.last_body: dict[str, Any] | None = None
        self.last_target: UpstreamTarget | None = None  # where `last_body` was sent
        self.policy = registry.retry_policy

    def body_for(self, route: ModelRoute) -> dict[str, Any]:
        """The upstream request for `route`, with every quirk learned so far applied."""
        body = self.build_body(route, self.registry.quirks_for(route))
        self.last_body = body  # for the request detail view (a reference, not a copy)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s upstream request: %s", self.request_id, body)
        return body

    async def open(self) -> UpstreamResponse:
        try:
            return await self._open(self.route)
        except UpstreamError as exc:
            fallback = self._fallback_route()
            if not exc.retryable or self.attempts.committed or fallback is None:
                raise
            self.attempts.repairs.append(
                f"fell back to {fallback.upstream_model} after: {exc.message}"
            )
            return await self._open(fallback)

    def _fallback_route(self) -> ModelRoute | None:
        if self.route.tier is None:
            return None
        reference = self.registry.settings.fallbacks.get(self.route.tier.value)
        if not reference:
            return None
        fallback = self.registry.route(reference)
        return replace(fallback, client_model=self.route.client_model, tier=self.route.tier)

    async def _open(self, route: ModelRoute) -> UpstreamResponse:
        self.attempts.route = route
        provider = self.registry.provider(route.provider)
        api_key = self.registry.key_for(provider, self.client_key)
        loop = asyncio.get_running_loop()
        started = loop.time()
        body = self.body_for(route)
        failures = 0
        while True:
            await self._wait_for_budget(route)
            self.attempts.count += 1
            self.attempts.attempt_started = loop.time()
            self.attempts.changed.set()
            url, payload, content_type = self.target(provider, route, body)
            self.last_target = UpstreamTarget("POST", url, content_type)
            try:
                response = await self.registry.upstream.request(
                    "POST", url, api_key=api_key, body=payload, content_type=content_type
                )
            except UpstreamUnavailable as exc:
                error: ProxyError = exc
                retryable, retry_after_s = exc.retryable, None
            else:
                if response.status < 400:
                    for governor in self.registry.governors_for(route):
                        governor.on_success(loop.time())
                    return response
                raw = await response.read_error_body(self.registry.keys.masker)
                repaired = self._repair(route, body, response.status, raw)
                if repaired is not None:
                    body = repaired
                    continue
                retry_after = response.headers.get("Retry-After")
                error = upstream_error_from_response(
                    response.status,
                    raw,
                    retry_after=retry_after,
                    context_window=self.registry.quirks_for(route).context_window,
                    prompt_tokens=self.prompt_tokens,
                )
                retryable = isinstance(error, UpstreamError) and error.retryable
                retry_after_s = parse_retry_after(retry_after, now_epoch=time.time())
                if response.status == 401:
                    self.registry.key_rejected(provider)
                if response.status == 429:
                    for governor in self.registry.governors_for(route):
                        governor.on_rate_limited(loop.time(), retry_after_s)
            failures += 1
            delay = self.policy.delay(
                failures, retry_after_s=retry_after_s, elapsed_s=loop.time() - started
            )
            if not retryable or delay is None or self.attempts.committed:
                raise error
            log.info(
                "%s retrying %s in %.2g s after: %s",
                self.request_id,
                route.provider,
                delay,
                error.message,
            )
            await self._sleep(delay)

    def _repair(
        self, route: ModelRoute, body: dict[str, Any], status: int, raw: bytes
    ) -> dict[str, Any] | None:
        """A corrected body to send again at once, or None when the error is not ours to fix."""
        # 500: llama-cpp-python answers what its request parser refuses with one
        # (`quirk_learning.REJECTIONS_READ_FROM_500`).
        if status not in (400, 404, 422, 500) or not self.learn:
            return None
        message = extract_upstream_message(raw)
        limit = max_tokens_limit(message) if status in (400, 422) else None
        requested = body.get("max_tokens")
        if limit is not None and isinstance(requested, int) and limit < requested:
            self.registry.learn_output_cap(route, limit)
            self._note(f"max_tokens clamped to {limit} after upstream 400", route)
            return {**body, "max_tokens": limit}
        rejection = rejection_from_error(status, message, body)
        if rejection is not None and self.registry.learn_rejection(route, rejection):
            self._note(f"upstream rejected {rejection.value}; sent again without it", route)
            return self.body_for(route)
        return None

    async def ask_unstreamed(self) -> UpstreamResponse:
        """The last body sent again, not streamed, once: what a server meant that answered
        a stream with 200 and nothing (llama-cpp-python on a context overflow: its error
        comes only unstreamed). Its error raises as usual; a 2xx is the caller's to read."""
        route = self.attempts.route or self.route
        assert self.last_body is not None  # a stream was opened with it
        body = {
            key: value
            for key, value in self.last_body.items()
            if key not in ("stream", "stream_options")
        }
        provider = self.registry.provider(route.provider)
        url, payload, content_type = self.target(provider, route, body)
        for attempt in (1, 2):
            self.attempts.count += 1
            try:
                response = await self.registry.upstream.request(
                    "POST",
                    url,
                    api_key=self.registry.key_for(provider, self.client_key),
                    body=payload,
                    content_type=content_type,
                )
                break
            except UpstreamUnavailable as exc:
                # The connection the failed stream left may be the one that is closed.
                if attempt == 2 or not exc.retryable:
                    raise
        if response.status < 400:
            return response
        raw = await response.read_error_body(self.registry.keys.masker)
        raise upstream_error_from_response(
            response.status,
            raw,
            retry_after=response.headers.get("Retry-After"),
            context_window=self.registry.quirks_for(route).context_window,
            prompt_tokens=self.prompt_tokens,
        )

    def _note(self, repair: str, route: ModelRoute) -> None:
        self.attempts.repairs.append(repair)
        log.warning("%s %s: %s", self.request_id, route.upstream_model, repair)

    async def _wait_for_budget(self, route: ModelRoute) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        governors = self.registry.governors_for(route)
        reservations: list[Reservation] = [g.reserve(now) for g in governors]
        wait = max([r.wait for r in reservations])
        if wait <= 0:
            return
        if wait > self.registry.settings.queue_max_wait_s:
            for governor, reservation in zip(governors, reservations, strict=True):
                governor.cancel(reservation)
            budget = self.registry.provider(route.provider).budget_per_minute
            per_minute = f" ({budget} requests a minute)" if budget else ""
            raise UpstreamError(
                f"NimBridge is pacing requests to {route.provider}{per_minute} after rate "
                f"limits; the next slot for {route.upstream_model} is in {wait:.0f} s",
                status=429,
                retry_after=str(max(1, round(wait))),
            )
        try:
            await self._sleep(wait)
        except asyncio.CancelledError:  # the client gave up while queued: free the slots
            for governor, reservation in zip(governors, reservations, strict=True):
                governor.cancel(reservation)
            raise

    async def _sleep(self, seconds: float) -> None:
        self.attempts.waiting = True
        self.attempts.changed.set()
        try:
            await self._wait(seconds)
        finally:
            self.attempts.waiting = False
            self.attempts.changed.set()


async def open_as_given(
    registry: ProviderRegistry,
    record: RequestRecord,
    build: BodyBuilder,
    route: ModelRoute,
    *,
    client_key: str | None,
    target: RequestTarget = chat_completions_target,
) -> UpstreamResponse:
    """One call of a body we pass on untranslated (the OpenAI pass-through, images):
    the same retries and pacing as chat, nothing learned, attempts added to the record,
    and the body with where it went, for the request inspector."""
    attempts = Attempts()
    call = UpstreamCall(
        registry,
        build,
        route,
        client_key=client_key,
        prompt_tokens=None,
        attempts=attempts,
        request_id=record.request_id,
        learn=False,
        target=target,
    )
    try:
        return await call.open()
    finally:
        record.attempts += attempts.count
        if call.last_target is not None:  # a pair: parallel image calls each write theirs
            record.upstream_body, record.upstream_target = call.last_body, call.last_target
