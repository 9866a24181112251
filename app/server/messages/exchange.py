"""One Anthropic request's way through NimBridge, and the one owner of what it decides.

`Exchange` owns the route answers come from (the tier's own, or its fallback's once
one is used), the upstream calls (one per server-tool round) and their attempts,
and writes what happened into the request record once, when the request ends: the
attempts summed, the route, the last body sent. Repairs (a clamped `max_tokens`, a
fallback, a field the model refused) go straight into the record, so every one of
them reaches the log line and the request inspector.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.core.anthropic_types import MessagesRequest
from app.core.deferred_tools import offer_tools
from app.core.server_tools.specs import ServerToolLedger, context_urls, server_tool_specs
from app.core.thinking_display import ThinkingDisplay, thinking_display
from app.core.tiers import ModelRoute
from app.core.tokens import RequestSize, measure_request
from app.server.records import RequestRecord
from app.server.server_tools.runner import ServerToolRunner
from app.server.state import ProxyState
from app.server.upstream.call_policy import Attempts, UpstreamCall, messages_body_builder
from app.server.upstream.client import UpstreamResponse


@dataclass(frozen=True, slots=True)
class AnswerShape:
    """What an upstream answer is read against: the tools offered (deferred ones once
    loaded), to read tool calls leaked into text, and how thinking is shown."""

    tools: Sequence[Mapping[str, Any]]
    thinking_display: ThinkingDisplay
    stop_sequences: Sequence[str] = ()  # the client's, to name the one that matched


class Exchange:
    def __init__(
        self,
        state: ProxyState,
        record: RequestRecord,
        req: MessagesRequest,
        route: ModelRoute,
        *,
        client_key: str | None,
    ) -> None:
        self.state, self.record, self.req = state, record, req
        self.client_key = client_key
        # What the model is offered (deferred tools once loaded), worked out once: the
        # size, the first round's body and the answer (leaked tool-call markup) share it.
        self.offered = offer_tools(req)
        self.size: RequestSize = measure_request(req, self.offered.tools)
        self.prompt_tokens = state.estimator.estimate(route.upstream_model, self.size)
        self.answer = AnswerShape(
            self.offered.tools,
            thinking_display(req.get("thinking")),
            req.get("stop_sequences") or (),
        )
        specs = server_tool_specs(req.get("tools") or ())
        fetching = any(spec.kind == "web_fetch" for spec in specs.values())
        # Runs web_search / web_fetch between upstream rounds; None: no server tools asked.
        self.runner = (
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
        self._routed = route
        self.calls: list[UpstreamCall] = []
        self.first = self.new_call(req)

    @property
    def route(self) -> ModelRoute:
        """The route answers come from: the first call's, a fallback's once it fell back."""
        if not self.calls:  # the first call is being made
            return self._routed
        return self.first.attempts.route or self._routed

    def new_call(self, req: MessagesRequest) -> UpstreamCall:
        """The upstream call of one round: the first, or a later one of the server-tool
        loop, which stays on the model the first one used."""
        build = (
            self.runner.body_builder(req, self.record.repairs)
            if self.runner is not None
            else messages_body_builder(
                req, self.record.repairs, self.offered if req is self.req else None
            )
        )
        call = UpstreamCall(
            self.state.registry,
            build,
            self.route,
            client_key=self.client_key,
            prompt_tokens=self.prompt_tokens,
            attempts=Attempts(repairs=self.record.repairs),
            request_id=self.record.request_id,
        )
        self.calls.append(call)
        return call

    async def open_round(self, req: MessagesRequest) -> UpstreamResponse:
        """A later round's upstream response (server tools ran in between)."""
        return await self.new_call(req).open()

    def learn_prompt_ratio(self, usage: Mapping[str, Any]) -> None:
        """Teach count_tokens this model's ratio from the upstream's own prompt count."""
        prompt = usage.get("input_tokens", 0) + usage.get("cache_read_input_tokens", 0)
        if prompt > 0:
            self.state.estimator.observe(self.route.upstream_model, self.size, prompt)

    def close(self) -> None:
        """What the request did, into its record, once."""
        record = self.record
        record.attempts = sum(call.attempts.count for call in self.calls)
        # The inspector shows the last round's body: it holds the earlier rounds' calls
        # and results, and it is what the recorded response answers.
        sent = next((call for call in reversed(self.calls) if call.last_body is not None), None)
        if sent is not None:
            record.upstream_body, record.upstream_target = sent.last_body, sent.last_target
        record.note_route(self.route)
