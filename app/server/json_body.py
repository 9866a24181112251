"""The one way a client's JSON body is read: an object, strict JSON, or a clear 400."""

import json
from typing import Any, NoReturn

from aiohttp import web

from app.core.errors import ClientRequestError


def _refuse_constant(name: str) -> NoReturn:
    # Python's json reads NaN and Infinity, which are not JSON: upstreams reject them,
    # or worse, read them differently. Say so here instead.
    raise ValueError(f"{name} is not a JSON value")


async def read_json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        raise ClientRequestError("body: the request body is empty; send a JSON object")
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise ClientRequestError(f"body: invalid JSON ({exc})") from None
    except RecursionError:
        raise ClientRequestError("body: invalid JSON (nested too deeply)") from None
    if not isinstance(body, dict):
        raise ClientRequestError("body: expected a JSON object")
    return body
