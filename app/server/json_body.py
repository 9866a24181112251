"""JSON in and out of the server: bodies read strictly, encoded fast.

Encoding goes through orjson: Claude Code sends its whole conversation each turn, and
for its 76 KB request orjson encodes the upstream body in 0.02 ms where the standard
library takes 0.3 (measured). The standard library stays the fallback for what orjson
refuses (integers beyond 64 bits, lone surrogates).

Parsing reads what the standard library reads, by orjson where that gives the same and
is faster (in half the time or less): bodies of any size and short texts (stream chunks)
without a run of 19 digits (orjson reads an integer beyond 64 bits as a float, silently
losing digits of an ID in a tool's input) that orjson does not refuse (NaN, a lone
surrogate, what is not JSON).
"""

import asyncio
import json
from typing import Any, NoReturn

import orjson
from aiohttp import web

from app.core.errors import ClientRequestError, ProxyError

# A client that sends headers and then trickles its body holds a connection and a slot
# of max_concurrent_requests: this long at most (32 MB on loopback takes well under 1 s).
BODY_TIMEOUT_S = 60.0

# How deeply a client's JSON may nest (objects and arrays; the body itself is level 1).
# Claude Code's requests reach 11; translation and encoding recurse, and a body nested
# a few hundred levels deep ran them out of stack (a 500 with a 3,000-line traceback).
MAX_JSON_DEPTH = 64
_TOO_DEEP = (
    f"body: JSON nested too deeply: more than {MAX_JSON_DEPTH} levels (at {{path}}); "
    f"NimBridge reads at most {MAX_JSON_DEPTH} levels of objects and arrays"
)


def deeper_than(value: Any, limit: int) -> str | None:
    """The path of the first object or array nested deeper than `limit` levels, or None.
    Iterative: it must not itself run out of stack."""
    pending: list[tuple[Any, int, str]] = [(value, 1, "")]
    while pending:
        item, depth, path = pending.pop()
        if isinstance(item, dict):
            children: Any = item.items()
        elif isinstance(item, list):
            children = enumerate(item)
        else:
            continue
        if depth > limit:
            return path or "the top level"
        pending.extend(
            (child, depth + 1, f"{path}.{key}" if path else str(key)) for key, child in children
        )
    return None


# Digits mapped to "0": a run of 19 of them marks a number orjson might read as a float
# (beyond 64 bits). bytes.translate and `find` run in C: 0.1 us on a chunk, where a
# regular expression takes 2 (measured). `find`, not `in`: `bytes in bytes` first tries
# the needle as an integer and clears the TypeError that raises, 0.2 us a chunk.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_NINETEEN_DIGITS = b"0" * 19
# Bytes (request bodies, whole answers) go to orjson at any size: Claude Code's 75 KB
# request reads in 0.09 ms (plus 0.05 for the check above) where json takes 0.15-0.33,
# a 206 KB conversation in 0.35 + 0.13 against 0.69 (measured). A str (an SSE event's
# data) would have to be encoded first: below 1,024 characters only, where orjson's lower
# fixed cost pays for that (a 500-byte answer: 2.0 us with the check, 3.8 by json).
# Nesting: either reader's result is checked for depth after (`nested_too_deep`).
_ORJSON_BELOW_CHARS = 1024
# Walking a body for its depth costs more than counting its brackets below this size.
_COUNT_BRACKETS_BELOW_BYTES = 4096


_UNREAD = object()


def _read_by_orjson(text: str | bytes) -> Any:
    """`text` read by orjson where that gives what json gives, else `_UNREAD`."""
    if isinstance(text, str):
        if len(text) >= _ORJSON_BELOW_CHARS:
            return _UNREAD
        data = text.encode("utf-8", "surrogatepass")
    else:
        data = text
    if data.translate(_DIGITS_AS_ZERO).find(_NINETEEN_DIGITS) >= 0:
        return _UNREAD
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:  # NaN, a lone surrogate, not JSON: json decides
        return _UNREAD


def parse_json_text(text: str | bytes) -> Any:
    """`text` as JSON, read as `json.loads` reads it (ValueError, RecursionError as it
    raises them), by orjson where that gives the same, faster."""
    value = _read_by_orjson(text)
    return json.loads(text) if value is _UNREAD else value


def nested_too_deep(raw: bytes, value: Any) -> str | None:
    """`deeper_than(value, MAX_JSON_DEPTH)` for `value` read from `raw`; no walk when a
    short `raw` has too few brackets to nest that deep."""
    if len(raw) < _COUNT_BRACKETS_BELOW_BYTES and raw.count(b"[") + raw.count(b"{") <= (
        MAX_JSON_DEPTH
    ):
        return None
    return deeper_than(value, MAX_JSON_DEPTH)


def _refuse_constant(name: str) -> NoReturn:
    # Python's json reads NaN and Infinity, which are not JSON: upstreams reject them,
    # or worse, read them differently. Say so here instead.
    raise ValueError(f"{name} is not a JSON value")


def parse_json(raw: bytes) -> Any:
    """`raw` as JSON; ValueError (the standard library's words, with the position) if it
    is not, RecursionError if nested too deeply."""
    value = _read_by_orjson(raw)  # orjson refuses NaN and Infinity too
    return json.loads(raw, parse_constant=_refuse_constant) if value is _UNREAD else value


def encode_json(value: Any) -> bytes:
    """Compact JSON, UTF-8."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: a huge int, a lone surrogate...
        # ASCII escapes keep a lone surrogate valid JSON (as \\ud800), where UTF-8 cannot.
        return json.dumps(value, separators=(",", ":")).encode()


async def read_json_object(request: web.Request) -> dict[str, Any]:
    try:
        if request.content.is_eof():  # all of it has arrived (most requests): no wait
            raw = await request.read()
        else:
            async with asyncio.timeout(BODY_TIMEOUT_S):
                raw = await request.read()
    except TimeoutError:
        raise ProxyError(
            f"body: the request body did not arrive within {BODY_TIMEOUT_S:g} s", status=408
        ) from None
    if not raw:
        raise ClientRequestError("body: the request body is empty; send a JSON object")
    try:
        body = parse_json(raw)
    except ValueError as exc:
        raise ClientRequestError(f"body: invalid JSON ({exc})") from None
    except RecursionError:
        raise ClientRequestError(_TOO_DEEP.format(path="the top level")) from None
    if not isinstance(body, dict):
        raise ClientRequestError("body: expected a JSON object")
    too_deep = nested_too_deep(raw, body)
    if too_deep is not None:
        raise ClientRequestError(_TOO_DEEP.format(path=too_deep[:200]))
    return body
