"""The route table: which handler answers which path; and the liveness check."""

import time

from aiohttp import web

from app import __version__
from app.core.masking import without_credentials
from app.server.images.generation import create_image
from app.server.messages.handler import count_tokens, create_message
from app.server.models_routes import get_model, list_models
from app.server.openai_api.chat_passthrough import chat_completions
from app.server.state import STATE, record_of
from app.server.status_route import add_status_route

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
