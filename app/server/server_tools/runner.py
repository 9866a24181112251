"""The server-tool loop: run the model's web_search / web_fetch calls and call the upstream
again, all within one client request (the blocks and rounds: `app/core/server_tools/rounds.py`).

Invariants:
- Every call gets a result block; a backend that fails, or none set up, gives an
  error result the model reads, never a failed request.
- Calls of one round run concurrently; rounds are bounded (`max_rounds`).
- Each round is its own `UpstreamCall`, with its own retries: later rounds start
  after the stream is committed, yet nothing of them has been sent yet.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from app.core.anthropic_types import MessagesRequest, StreamEvent
from app.core.capabilities import ModelQuirks
from app.core.request_map import to_openai_request
from app.core.server_tools.backends import UNAVAILABLE, WebFetch, WebSearch, WebToolError
from app.core.server_tools.results import (
    ServerToolKind,
    error_block,
    error_text,
    fetch_result_block,
    result_text,
    search_result_block,
)
from app.core.server_tools.rounds import ServerToolMessage, ServerToolStream
from app.core.server_tools.specs import (
    CallFailure,
    FetchPlan,
    SearchPlan,
    ServerToolCall,
    ServerToolLedger,
    ServerToolSpec,
    continuation_request,
    plan_call,
)
from app.core.tiers import ModelRoute
from app.server.bugs import describe, log_traceback
from app.server.messages.stream_relay import NextRound
from app.server.upstream.call_policy import BodyBuilder
from app.server.upstream.client import UpstreamResponse

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ServerToolRunner:
    """Runs one request's server tool calls against the configured backends."""

    specs: dict[str, ServerToolSpec]
    search: WebSearch | None
    fetch: WebFetch | None
    request_id: str
    fetch_max_chars: int | None = None  # the settings' ceiling (web_fetch_max_chars)
    ledger: ServerToolLedger = field(default_factory=ServerToolLedger)
    # What the model read of each result where the block says less (errors' reasons).
    texts: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.specs)

    async def run(self, calls: list[ServerToolCall]) -> list[dict[str, Any]]:
        """The result block of each call, in order; the calls run concurrently."""
        plans = []
        for call in calls:
            spec = self.specs[call.name]
            backend = self.search if spec.kind == "web_search" else self.fetch
            plans.append(plan_call(call, spec, self.ledger, configured=backend is not None))
        return list(await asyncio.gather(*(self._run_one(plan) for plan in plans)))

    async def _run_one(self, plan: SearchPlan | FetchPlan | CallFailure) -> dict[str, Any]:
        if isinstance(plan, CallFailure):
            self.texts[plan.call_id] = plan.text
            return plan.block
        kind: ServerToolKind = "web_search" if isinstance(plan, SearchPlan) else "web_fetch"
        try:
            if isinstance(plan, SearchPlan):
                assert self.search is not None  # plan_call checked it
                results = await self.search.search(plan.query)
                self.ledger.requests["web_search"] += 1
                self.ledger.learn_urls(result.url for result in results)
                log.info("%s web_search: %d results", self.request_id, len(results))
                block = search_result_block(plan.call_id, results)
            else:
                assert self.fetch is not None
                page = await self.fetch.fetch(
                    plan.url,
                    max_chars=min(plan.max_chars, self.fetch_max_chars or plan.max_chars),
                    allowed_domains=plan.allowed_domains,
                    blocked_domains=plan.blocked_domains,
                )
                self.ledger.requests["web_fetch"] += 1
                self.ledger.learn_urls([page.url, page.text])  # the page's own links too
                log.info("%s web_fetch: %d characters", self.request_id, len(page.text))
                block = fetch_result_block(plan.call_id, page)
        except WebToolError as exc:
            log.info("%s %s failed: %s (%s)", self.request_id, kind, exc.code, exc.message)
            self.texts[plan.call_id] = error_text(kind, exc.code, exc.message)
            return error_block(kind, plan.call_id, exc.code)
        except Exception as exc:  # a backend's bug must not fail the whole request
            log.error("%s %s backend failed: %s", self.request_id, kind, describe(exc))
            log_traceback(log, self.request_id, exc)
            message = f"internal error in NimBridge's {kind} ({exc.__class__.__name__})"
            self.texts[plan.call_id] = error_text(kind, UNAVAILABLE, message)
            return error_block(kind, plan.call_id, UNAVAILABLE)
        self.texts[plan.call_id] = result_text(block)
        return block

    def body_builder(self, req: MessagesRequest, notes: list[str]) -> BodyBuilder:
        """Like `messages_body_builder`, with this request's richer result texts."""

        def build(route: ModelRoute, quirks: ModelQuirks) -> dict[str, Any]:
            return dict(
                to_openai_request(
                    req, replace(route, quirks=quirks), notes=notes, server_tool_texts=self.texts
                )
            )

        return build


def stream_next_round(
    req: MessagesRequest,
    stream: ServerToolStream,
    runner: ServerToolRunner,
    open_round: Callable[[MessagesRequest], Awaitable[UpstreamResponse]],
) -> NextRound:
    """The relay's hook after each upstream body: run the pending calls, write their
    result blocks, and open the next round (None: the message is over)."""

    async def next_round(
        write: Callable[[list[StreamEvent]], Awaitable[None]],
    ) -> UpstreamResponse | None:
        if not stream.pending_calls:
            return None
        blocks = await runner.run(stream.pending_calls)
        await write(stream.add_results(blocks))
        if stream.ended:
            return None  # the message ended after the results
        stream.next_round()
        return await open_round(continuation_request(req, stream.content))

    return next_round


async def complete_rounds(
    req: MessagesRequest,
    message: ServerToolMessage,
    runner: ServerToolRunner,
    read_round: Callable[[MessagesRequest], Awaitable[Any]],
) -> None:
    """Non-streamed: round after round until the message ends. `read_round` calls the
    upstream for a request and returns its translated message."""
    current = req
    while not message.add_round(await read_round(current)):
        if message.add_results(await runner.run(message.pending_calls)):
            return
        current = continuation_request(req, message.content)
