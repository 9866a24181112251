"""`GET /v1/nimbridge/status[?session=ID]`: what `nimbridge statusline` shows, authenticated.

/health stays unauthenticated and says nothing of sessions; this endpoint needs the
proxy key (Claude Code's own token, which the status line command is handed in its
environment), and answers from memory: the session's tokens since this server
started, seeded once from the request history for a session it has not seen.
"""

import asyncio

from aiohttp import web

from app import __version__
from app.config.history import session_totals
from app.core.governor import GovernorState
from app.server.auth import authorize
from app.server.history import SessionTally
from app.server.records import upstream_label
from app.server.state import STATE, ProxyState, record_of

STATUS_PATH = "/v1/nimbridge/status"


async def nimbridge_status(request: web.Request) -> web.Response:
    state = request.app[STATE]
    authorize(request, state.proxy_key)
    record_of(request).status = 200
    session_id = request.query.get("session", "").strip()[:128]
    tally = await _session_tally(state, session_id) if session_id else None
    if tally is not None and tally.upstream_model:
        model, provider = tally.upstream_model, tally.provider
    else:
        route = state.registry.router.route(state.settings.tiers.default)
        model, provider = route.upstream_model, route.provider or None
    upstream = upstream_label(model, provider)
    provider = provider or state.settings.default_provider
    pacing = state.registry.governor_states().get(provider)
    configured = state.settings.provider(provider)
    if pacing is None and configured is not None:  # no request yet: the budget, unused
        pacing = GovernorState(0, configured.budget_per_minute, 0.0, 0, 0)
    return web.json_response(
        {
            "version": __version__,
            "upstream_model": upstream,
            "provider": provider,
            "pacing": None
            if pacing is None
            else {
                "requests_last_minute": pacing.requests_last_minute,
                "budget_per_minute": pacing.budget_per_minute,
                "cooling_down_for_s": round(pacing.cooling_down_for, 1),
                "queued": pacing.queued,
            },
            "session": None
            if tally is None
            else {
                "requests": tally.requests,
                "input_tokens": tally.input_tokens,
                "output_tokens": tally.output_tokens,
            },
        }
    )


async def _session_tally(state: ProxyState, session_id: str) -> SessionTally | None:
    tally = state.sessions.get(session_id)
    if tally is not None or state.history_path is None:
        return tally
    # A session from before this server started: its totals so far, read off the loop.
    totals = await asyncio.to_thread(session_totals, state.history_path, session_id)
    if totals is None:
        return None
    return state.sessions.seed(
        session_id,
        SessionTally(
            requests=totals.requests,
            input_tokens=totals.input_tokens,
            output_tokens=totals.output_tokens,
            upstream_model=totals.last_upstream_model,
            provider=totals.last_provider,
        ),
    )


def add_status_route(app: web.Application) -> None:
    app.router.add_get(STATUS_PATH, nimbridge_status)
