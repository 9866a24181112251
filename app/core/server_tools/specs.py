"""Anthropic's web server tools (`web_search_*`, `web_fetch_*`) served by NimBridge. No I/O.

The upstream model sees them as ordinary function tools (`web_search {query}`,
`web_fetch {url}`); when it calls one, the server runs it through a `WebSearch` /
`WebFetch` backend and continues, and the client gets what Anthropic sends:
`server_tool_use` blocks, then `web_search_tool_result` / `web_fetch_tool_result`
blocks, then the model's text, with `usage.server_tool_use` counts.

Invariants:
- A call never fails the request: every call gets a result block, an error one
  (`*_tool_result_error` with Anthropic's code) when the input is bad, `max_uses`
  is spent, no backend is set up or the backend failed; the model reads why.
- Result blocks, and what the model reads of them: `server_tool_results.py`.
- Ids of `server_tool_use` blocks start with `srvtoolu_`, as Anthropic's do.
- web_fetch fetches only URLs already in the conversation, as Anthropic's does: given
  by the user (system prompt, user turns, tool results) or found in earlier search or
  fetch results. A URL the model made up could carry the conversation out to a
  server of an attacker's choosing (a prompt injection's way to exfiltrate).
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import SplitResult, urlsplit, urlunsplit

from app.core.anthropic_types import MessagesRequest
from app.core.server_tools.backends import (
    INVALID_INPUT,
    MAX_USES_EXCEEDED,
    UNAVAILABLE,
    URL_NOT_IN_PRIOR_CONTEXT,
    URL_TOO_LONG,
    SearchQuery,
)
from app.core.server_tools.results import ServerToolKind, error_block, error_text

SERVER_TOOL_ID_PREFIX = "srvtoolu_"
# The tool `type`s Anthropic versions by date: web_search_20250305, web_fetch_20250910...
KIND_BY_TYPE_PREFIX: dict[str, ServerToolKind] = {
    "web_search_": "web_search",
    "web_fetch_": "web_fetch",
}
USAGE_KEY_BY_KIND: dict[ServerToolKind, str] = {
    "web_search": "web_search_requests",
    "web_fetch": "web_fetch_requests",
}

DEFAULT_SEARCH_RESULTS = 5
MAX_URL_CHARS = 250  # Anthropic's limit for web_fetch URLs (url_too_long beyond it)
DEFAULT_FETCH_MAX_CHARS = 100_000  # about 25K tokens, when max_content_tokens is not given
CHARS_PER_TOKEN = 4
# Rounds of upstream calls one client request may take, whatever the max_uses:
# a model that keeps calling tools is stopped with `pause_turn`.
MAX_ROUNDS = 8
NOT_CONFIGURED_TEXT_BY_KIND: dict[ServerToolKind, str] = {
    "web_search": (
        "web search is not set up in NimBridge: choose a search backend (Tavily, SearXNG "
        "or Brave) in Settings → Web tools, or in the settings file: web_search_backend. "
        "Answer from what you know and say that you could not search."
    ),
    "web_fetch": (
        "web fetch is not set up in NimBridge: turn it on in Settings → Web tools, or in "
        "the settings file: web_fetch_enabled. Answer from what you know and say that you "
        "could not fetch the page."
    ),
}

URL_NOT_IN_CONTEXT_TEXT = (
    "web_fetch fetches only URLs that are already in the conversation: given by the user "
    "or found in earlier web_search or web_fetch results. Search for the page first, or "
    "answer without it."
)

DESCRIPTION_BY_KIND: dict[ServerToolKind, str] = {
    "web_search": (
        "Search the web for current information. Returns the title, URL and a snippet "
        "of each matching page; cite the URLs you use."
    ),
    "web_fetch": (
        "Fetch a web page or PDF by URL and return its text. Only fetch URLs the user "
        "gave or that came from earlier search or fetch results."
    ),
}
SCHEMA_BY_KIND: dict[ServerToolKind, dict[str, Any]] = {
    "web_search": {
        "type": "object",
        "properties": {"query": {"type": "string", "description": "The search query"}},
        "required": ["query"],
    },
    "web_fetch": {
        "type": "object",
        "properties": {"url": {"type": "string", "description": "The http(s) URL to fetch"}},
        "required": ["url"],
    },
}


@dataclass(frozen=True, slots=True)
class ServerToolSpec:
    """One server tool as the client declared it."""

    kind: ServerToolKind
    name: str
    max_uses: int | None = None
    allowed_domains: tuple[str, ...] = ()
    blocked_domains: tuple[str, ...] = ()
    user_location: Mapping[str, str] = field(default_factory=dict)
    max_content_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class SearchPlan:
    call_id: str
    query: SearchQuery


@dataclass(frozen=True, slots=True)
class FetchPlan:
    call_id: str
    url: str
    max_chars: int
    allowed_domains: tuple[str, ...]
    blocked_domains: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ServerToolCall:
    """A call of a server tool by the model: the `server_tool_use` block's fields."""

    id: str
    name: str
    input: Mapping[str, Any]


@dataclass(slots=True)
class ServerToolLedger:
    """Uses of each server tool within one client request (max_uses counts them all),
    and the requests that reached a backend (what `usage.server_tool_use` reports)."""

    uses: dict[str, int] = field(default_factory=dict)
    requests: dict[ServerToolKind, int] = field(
        default_factory=lambda: {"web_search": 0, "web_fetch": 0}
    )

    def take(self, spec: ServerToolSpec) -> bool:
        """Count one use of `spec`; False when its max_uses is already spent."""
        used = self.uses.get(spec.name, 0)
        if spec.max_uses is not None and used >= spec.max_uses:
            return False
        self.uses[spec.name] = used + 1
        return True

    # What web_fetch may fetch (`url_key`s): the conversation's URLs, then each result's.
    known_urls: set[str] = field(default_factory=set)

    def usage(self) -> dict[str, int]:
        return {USAGE_KEY_BY_KIND[kind]: count for kind, count in self.requests.items()}

    def learn_urls(self, values: Iterable[object]) -> None:
        """Remember the URLs in `values` (strings, or lists and mappings of them)."""
        self.known_urls |= urls_in(list(values))

    def knows(self, url: str) -> bool:
        return url_key(url) in self.known_urls


# ------------------------------------------------------------------ URLs in context

# An http(s) URL in running text, up to a space, a quote or a closing bracket; a
# bracketed IPv6 host (http://[::1]:8080/) is one piece, its `]` not an end.
_URL_IN_TEXT = re.compile(r"https?://(?:\[[0-9a-z:.%_-]*\]|[^\s<>\"'`\])}|\\])+", re.IGNORECASE)
_TRAILING_PUNCTUATION = ".,;:!?*_~"


def split_url(url: str) -> SplitResult | None:
    """`urlsplit`, or None for what it refuses (`http://[::1`, an unclosed bracket)."""
    try:
        return urlsplit(url)
    except ValueError:
        return None


def url_key(url: str) -> str:
    """How URLs are compared: scheme and host in lower case, the fragment and a trailing
    slash dropped, and punctuation that ends a sentence rather than the URL. Text that
    does not split as a URL is its own key: it can match only itself."""
    url = url.strip().rstrip(_TRAILING_PUNCTUATION)
    parts = split_url(url)
    if parts is None:
        return url
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ""))


def urls_in(value: object) -> set[str]:
    """The `url_key` of every http(s) URL in the strings of `value`, however nested."""
    found: set[str] = set()
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "://" in item:
                found.update(url_key(match) for match in _URL_IN_TEXT.findall(item))
        elif isinstance(item, Mapping):
            pending.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            pending.extend(item)
    return found


_RESULT_BLOCK_TYPES = frozenset({"web_search_tool_result", "web_fetch_tool_result"})


def context_urls(req: MessagesRequest) -> set[str]:
    """The URLs web_fetch may fetch at the start of a request: everything the user side
    wrote (system prompt, user turns with their tool results and documents) and earlier
    turns' search and fetch results; never what the model itself wrote."""
    found = urls_in(req.get("system"))
    for message in req["messages"]:
        content = message.get("content")
        if message.get("role") == "user":
            found |= urls_in(content)
        elif isinstance(content, list):
            found |= urls_in(
                [
                    b
                    for b in content
                    if isinstance(b, Mapping) and b.get("type") in _RESULT_BLOCK_TYPES
                ]
            )
    return found


# ------------------------------------------------------------------ the request


def server_tool_kind(tool: Mapping[str, Any]) -> ServerToolKind | None:
    """Which of our server tools an Anthropic tool definition declares, if any."""
    tool_type = tool.get("type")
    if not isinstance(tool_type, str):
        return None
    for prefix, kind in KIND_BY_TYPE_PREFIX.items():
        if tool_type.startswith(prefix):
            return kind
    return None


def _domains(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value if isinstance(item, str) and item)


def _positive_int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def server_tool_specs(tools: Sequence[Mapping[str, Any]]) -> dict[str, ServerToolSpec]:
    """The request's server tools we serve, by the name the model calls them."""
    specs: dict[str, ServerToolSpec] = {}
    for tool in tools:
        kind = server_tool_kind(tool)
        name = tool.get("name")
        if kind is None or not isinstance(name, str) or not name:
            continue
        location = tool.get("user_location")
        specs[name] = ServerToolSpec(
            kind=kind,
            name=name,
            max_uses=_positive_int(tool.get("max_uses")),
            allowed_domains=_domains(tool.get("allowed_domains")),
            blocked_domains=_domains(tool.get("blocked_domains")),
            user_location=(
                {k: v for k, v in location.items() if isinstance(v, str)}
                if isinstance(location, Mapping)
                else {}
            ),
            max_content_tokens=_positive_int(tool.get("max_content_tokens")),
        )
    return specs


def to_function_tool(tool: Mapping[str, Any]) -> dict[str, Any] | None:
    """The OpenAI function tool that stands for a server tool we serve, else None."""
    kind = server_tool_kind(tool)
    if kind is None:
        return None
    spec = server_tool_specs([tool]).get(str(tool.get("name")))
    description = DESCRIPTION_BY_KIND[kind]
    if spec is not None and spec.allowed_domains:
        description += " Only these sites are allowed: " + ", ".join(spec.allowed_domains) + "."
    if spec is not None and spec.blocked_domains:
        description += " These sites are blocked: " + ", ".join(spec.blocked_domains) + "."
    return {
        "type": "function",
        "function": {
            "name": tool["name"],
            "description": description,
            "parameters": SCHEMA_BY_KIND[kind],
        },
    }


def max_rounds(specs: Mapping[str, ServerToolSpec]) -> int:
    """Upstream calls one request may take: every allowed use plus the answer, capped."""
    if not specs or any(spec.max_uses is None for spec in specs.values()):
        return MAX_ROUNDS
    return min(sum(spec.max_uses or 0 for spec in specs.values()) + 1, MAX_ROUNDS)


def continuation_request(req: MessagesRequest, content: list[Any]) -> MessagesRequest:
    """The request for the next round: the message so far as an assistant turn.

    A forced tool choice (`any`, `tool`) forced the first call only; later rounds
    may answer, or the model would search forever.
    """
    out = cast(
        MessagesRequest,
        {**req, "messages": [*req["messages"], {"role": "assistant", "content": content}]},
    )
    choice = req.get("tool_choice")
    if isinstance(choice, Mapping) and choice.get("type") in ("any", "tool"):
        out["tool_choice"] = {
            "type": "auto",
            **{k: v for k, v in choice.items() if k == "disable_parallel_tool_use"},
        }
    return out


# ------------------------------------------------------------------ one call


def server_tool_id(call_id: str) -> str:
    return call_id if call_id.startswith(SERVER_TOOL_ID_PREFIX) else SERVER_TOOL_ID_PREFIX + call_id


@dataclass(frozen=True, slots=True)
class CallFailure:
    """A call answered with an error without reaching a backend."""

    call_id: str
    kind: ServerToolKind
    code: str
    message: str

    @property
    def block(self) -> dict[str, Any]:
        return error_block(self.kind, self.call_id, self.code)

    @property
    def text(self) -> str:
        return error_text(self.kind, self.code, self.message)


def plan_call(
    call: ServerToolCall,
    spec: ServerToolSpec,
    ledger: ServerToolLedger,
    *,
    configured: bool,
) -> SearchPlan | FetchPlan | CallFailure:
    """What to ask the backend for, or the error the model gets instead."""
    if not ledger.take(spec):
        return CallFailure(
            call.id,
            spec.kind,
            MAX_USES_EXCEEDED,
            f"{spec.name} may be used at most {spec.max_uses} times in this request; "
            "answer with what you have",
        )
    if spec.kind == "web_search":
        query = call.input.get("query")
        if not isinstance(query, str) or not query.strip():
            return CallFailure(call.id, spec.kind, INVALID_INPUT, 'give a non-empty "query" string')
        if not configured:
            return CallFailure(
                call.id, spec.kind, UNAVAILABLE, NOT_CONFIGURED_TEXT_BY_KIND["web_search"]
            )
        return SearchPlan(
            call.id,
            SearchQuery(
                query=query.strip(),
                max_results=DEFAULT_SEARCH_RESULTS,
                allowed_domains=spec.allowed_domains,
                blocked_domains=spec.blocked_domains,
                user_location=spec.user_location,
            ),
        )
    url = call.input.get("url")
    parts = split_url(url.strip()) if isinstance(url, str) else None
    if not isinstance(url, str) or parts is None or parts.scheme not in ("http", "https"):
        return CallFailure(call.id, spec.kind, INVALID_INPUT, 'give an http(s) "url" string')
    url = url.strip()
    if len(url) > MAX_URL_CHARS:
        return CallFailure(
            call.id, spec.kind, URL_TOO_LONG, f"URLs of at most {MAX_URL_CHARS} characters"
        )
    if not configured:
        return CallFailure(
            call.id, spec.kind, UNAVAILABLE, NOT_CONFIGURED_TEXT_BY_KIND["web_fetch"]
        )
    if not ledger.knows(url):
        return CallFailure(call.id, spec.kind, URL_NOT_IN_PRIOR_CONTEXT, URL_NOT_IN_CONTEXT_TEXT)
    tokens = spec.max_content_tokens
    return FetchPlan(
        call.id,
        url,
        max_chars=tokens * CHARS_PER_TOKEN if tokens else DEFAULT_FETCH_MAX_CHARS,
        allowed_domains=spec.allowed_domains,
        blocked_domains=spec.blocked_domains,
    )
