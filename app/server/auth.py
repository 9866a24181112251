"""Inbound key check: `x-api-key: K` or `Authorization: Bearer K`, in constant time."""

import hmac

from aiohttp import web

from app.core.errors import InboundAuthError


def client_key(request: web.Request) -> str | None:
    """The key a client sent, if any (Claude Code uses Bearer, the SDKs x-api-key)."""
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    authorization = request.headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def _ascii_key(request: web.Request) -> str | None:
    """`client_key`, refused (401) unless ASCII: aiohttp reads header bytes that are not
    UTF-8 as lone surrogates, which neither compare nor go into an upstream header."""
    key = client_key(request)
    if key is not None and not key.isascii():
        raise InboundAuthError("invalid API key: an API key is ASCII text")
    return key


def check_inbound_key(request: web.Request, proxy_key: str) -> None:
    sent = _ascii_key(request)
    if sent is None:
        raise InboundAuthError(
            "missing API key: send the NimBridge proxy key as x-api-key or Authorization: Bearer"
        )
    if not hmac.compare_digest(sent.encode(), proxy_key.encode("utf-8", "surrogateescape")):
        raise InboundAuthError("invalid x-api-key: this is not the NimBridge proxy key")


def authorize(request: web.Request, proxy_key: str | None) -> str | None:
    """Check the proxy key when one is set (then NimBridge's own keys are used: None);
    without one, the client's own key, which may be passed to the upstream."""
    if proxy_key is not None:
        check_inbound_key(request, proxy_key)
        return None
    return _ascii_key(request)
