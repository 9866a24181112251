"""What every handler needs, reached through one typed AppKey (no globals)."""

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from app.config.secrets import ServerSecrets
from app.config.settings import Settings
from app.core.models import ModelAliases
from app.core.tokens import TokenEstimator
from app.server.records import RequestRecord
from app.server.upstream import UpstreamClient


@dataclass(slots=True)
class ProxyState:
    settings: Settings
    secrets: ServerSecrets
    upstream: UpstreamClient
    aliases: ModelAliases
    estimator: TokenEstimator = field(default_factory=TokenEstimator)
    started: float = 0.0
    models_cache: tuple[float, list[dict[str, Any]]] | None = None
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)


STATE = web.AppKey("state", ProxyState)
RECORD = web.RequestKey("record", RequestRecord)


def record_of(request: web.Request) -> RequestRecord:
    return request[RECORD]
