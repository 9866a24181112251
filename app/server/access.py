"""Who may talk to the proxy at all: checks that run before any route.

A local proxy holding a paid key is reachable by every program on the machine and
by every web page the user opens. So:

- Host: only names we answer to (localhost, IP addresses, `allowed_hosts`). A page
  that reaches 127.0.0.1 through DNS rebinding still sends its own name, and is refused.
- Origin: browsers send it; a page whose origin is not in `allowed_origins` is refused
  (CORS is off unless origins are listed, and then answered only for those).
- Load: more than `max_concurrent_requests` at once get 529 overloaded with retry-after,
  which the SDKs and Claude Code retry.
- Listening beyond loopback only with a proxy key (`check_bind`).
"""

import ipaddress
import logging

from aiohttp import web

from app.config.settings import LOOPBACK_NAMES, Settings, is_loopback
from app.core.errors import ProxyError
from app.server.state import STATE

log = logging.getLogger(__name__)

CORS_METHODS = "GET, POST, HEAD, OPTIONS"
CORS_MAX_AGE_S = "600"
# Paths exempt from the load limit: a health probe must answer while we are busy.
UNLIMITED_PATHS = frozenset({"/", "/health"})


class UnsafeBindError(ValueError):
    """Listening on a network address without a proxy key would open the upstream key to it."""


def check_bind(host: str, proxy_key: str | None) -> None:
    """Refuse a non-loopback address without a proxy key; warn with one."""
    if is_loopback(host):
        return
    if not proxy_key:
        raise UnsafeBindError(
            f"refusing to listen on {host} without a proxy key: anyone who can reach this "
            "machine could spend your provider key. Set a proxy key (--proxy-key, "
            "NIMBRIDGE_PROXY_KEY or Settings) or listen on 127.0.0.1"
        )
    log.warning("listening on %s: other machines can reach NimBridge with the proxy key", host)


def _host_name(header: str) -> str:
    """`Host` without its port: 'localhost:8787' -> 'localhost', '[::1]:8787' -> '::1'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    name, _, port = header.rpartition(":")
    return name if name and port.isdigit() else header


def host_allowed(header: str | None, settings: Settings) -> bool:
    if not header:  # HTTP/1.0 without Host: not a browser, nothing to rebind
        return True
    name = _host_name(header)
    if name in LOOPBACK_NAMES or name in (h.lower() for h in settings.allowed_hosts):
        return True
    if name == settings.host.lower():
        return True
    try:
        ipaddress.ip_address(name)  # a rebinding attack carries a name, never an address
    except ValueError:
        return False
    return True


def _normalised_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def origin_allowed(origin: str, settings: Settings) -> bool:
    wanted = _normalised_origin(origin)
    return any(_normalised_origin(o) == wanted for o in settings.allowed_origins)


def check_request(request: web.Request, settings: Settings, in_flight: int) -> web.Response | None:
    """Raise a ProxyError for a request we must refuse; a response for a CORS preflight."""
    host = request.headers.get("Host")
    if not host_allowed(host, settings):
        raise ProxyError(
            f"host {host!r} is not allowed: NimBridge answers to localhost and IP addresses "
            "(a guard against DNS rebinding); add the name to allowed_hosts in the settings "
            "to use it",
            status=403,
        )
    origin = request.headers.get("Origin")
    if origin is not None:
        if not origin_allowed(origin, settings):
            raise ProxyError(
                f"origin {origin!r} is not allowed: web pages may not use NimBridge unless "
                "their origin is listed in allowed_origins in the settings",
                status=403,
            )
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return web.Response(status=204, headers=_preflight_headers(request, origin))
    if in_flight > settings.max_concurrent_requests and request.path not in UNLIMITED_PATHS:
        raise ProxyError(
            f"NimBridge is handling {settings.max_concurrent_requests} requests at once "
            "(max_concurrent_requests); retry shortly",
            status=529,
            retry_after="1",
        )
    return None


def _preflight_headers(request: web.Request, origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": CORS_METHODS,
        "Access-Control-Allow-Headers": request.headers.get(
            "Access-Control-Request-Headers", "content-type, x-api-key, authorization"
        ),
        "Access-Control-Max-Age": CORS_MAX_AGE_S,
        "Vary": "Origin",
    }


def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """As a response is prepared (app.py's hook): an allowed origin may read the answer
    (streams included)."""
    origin = request.headers.get("Origin")
    if origin is None or "Access-Control-Allow-Origin" in response.headers:
        return
    if origin_allowed(origin, request.app[STATE].settings):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "request-id, retry-after"
        response.headers.add("Vary", "Origin")
