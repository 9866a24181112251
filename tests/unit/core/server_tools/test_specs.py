"""Server tool specs, the function tools offered upstream, call planning, result blocks and
the text the model reads of them."""

from typing import Any, cast

import pytest

from app.core.anthropic_types import MessagesRequest
from app.core.server_tools.backends import SearchQuery
from app.core.server_tools.specs import (
    DEFAULT_FETCH_MAX_CHARS,
    MAX_ROUNDS,
    NOT_CONFIGURED_TEXT_BY_KIND,
    URL_NOT_IN_CONTEXT_TEXT,
    CallFailure,
    FetchPlan,
    SearchPlan,
    ServerToolCall,
    ServerToolLedger,
    ServerToolSpec,
    context_urls,
    continuation_request,
    max_rounds,
    plan_call,
    server_tool_id,
    server_tool_kind,
    server_tool_specs,
    to_function_tool,
    urls_in,
)

SEARCH = {"type": "web_search_20250305", "name": "web_search"}
FETCH = {"type": "web_fetch_20250910", "name": "web_fetch"}


@pytest.mark.parametrize(
    ("tool", "kind"),
    [
        pytest.param(SEARCH, "web_search", id="search"),
        pytest.param({**SEARCH, "type": "web_search_20260209"}, "web_search", id="search-newer"),
        pytest.param(FETCH, "web_fetch", id="fetch"),
        pytest.param({"type": "bash_20250124", "name": "bash"}, None, id="other-server-tool"),
        pytest.param({"name": "f", "input_schema": {}}, None, id="custom-tool"),
        pytest.param({"type": 3, "name": "x"}, None, id="type-not-str"),
    ],
)
def test_server_tool_kind(tool: dict[str, Any], kind: str | None) -> None:
    assert server_tool_kind(tool) == kind


def test_specs_read_what_the_client_declared() -> None:
    tools: list[dict[str, Any]] = [
        {
            **SEARCH,
            "max_uses": 3,
            "allowed_domains": ["python.org", 7, ""],
            "user_location": {"type": "approximate", "country": "FR", "city": None},
        },
        {**FETCH, "blocked_domains": ["evil.test"], "max_content_tokens": 500, "max_uses": True},
        {"name": "custom", "input_schema": {}},
        {"type": "web_search_20250305", "name": ""},
    ]
    assert server_tool_specs(tools) == {
        "web_search": ServerToolSpec(
            "web_search",
            "web_search",
            max_uses=3,
            allowed_domains=("python.org",),
            user_location={"type": "approximate", "country": "FR"},
        ),
        "web_fetch": ServerToolSpec(
            "web_fetch", "web_fetch", blocked_domains=("evil.test",), max_content_tokens=500
        ),
    }


def test_function_tools_offered_upstream() -> None:
    search = to_function_tool({**SEARCH, "allowed_domains": ["a.org"], "blocked_domains": ["b"]})
    assert search is not None
    function = search["function"]
    assert function["name"] == "web_search"
    assert function["parameters"]["required"] == ["query"]
    assert "Only these sites are allowed: a.org." in function["description"]
    assert "These sites are blocked: b." in function["description"]
    fetch = to_function_tool(FETCH)
    assert fetch is not None and fetch["function"]["parameters"]["required"] == ["url"]
    assert to_function_tool({"type": "bash_20250124", "name": "bash"}) is None


@pytest.mark.parametrize(
    ("tools", "rounds"),
    [
        pytest.param([{**SEARCH, "max_uses": 2}], 3, id="uses-plus-answer"),
        pytest.param([{**SEARCH, "max_uses": 2}, {**FETCH, "max_uses": 1}], 4, id="summed"),
        pytest.param([{**SEARCH, "max_uses": 50}], MAX_ROUNDS, id="capped"),
        pytest.param([SEARCH], MAX_ROUNDS, id="no-max-uses"),
        pytest.param([], MAX_ROUNDS, id="none"),
    ],
)
def test_max_rounds(tools: list[dict[str, Any]], rounds: int) -> None:
    assert max_rounds(server_tool_specs(tools)) == rounds


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        pytest.param(None, None, id="none"),
        pytest.param({"type": "auto"}, {"type": "auto"}, id="auto-kept"),
        pytest.param({"type": "any"}, {"type": "auto"}, id="any-forced-once"),
        pytest.param(
            {"type": "tool", "name": "web_search", "disable_parallel_tool_use": True},
            {"type": "auto", "disable_parallel_tool_use": True},
            id="tool-forced-once",
        ),
    ],
)
def test_continuation_request(choice: dict[str, Any] | None, expected: Any) -> None:
    req: MessagesRequest = {
        "model": "m",
        "max_tokens": 9,
        "messages": [{"role": "user", "content": "hi"}],
    }
    if choice is not None:
        req["tool_choice"] = choice
    content = [{"type": "text", "text": "so far"}]
    out = continuation_request(req, content)
    assert out["messages"] == [*req["messages"], {"role": "assistant", "content": content}]
    assert out.get("tool_choice") == expected
    assert len(req["messages"]) == 1  # not mutated


def test_ledger_counts_uses_and_requests() -> None:
    ledger = ServerToolLedger()
    spec = ServerToolSpec("web_search", "web_search", max_uses=1)
    assert ledger.take(spec) and not ledger.take(spec)
    assert ledger.take(ServerToolSpec("web_fetch", "web_fetch"))
    ledger.requests["web_fetch"] += 1
    assert ledger.usage() == {"web_search_requests": 0, "web_fetch_requests": 1}


SEARCH_SPEC = ServerToolSpec("web_search", "web_search", allowed_domains=("a.org",))
FETCH_SPEC = ServerToolSpec("web_fetch", "web_fetch", blocked_domains=("b.org",))


def call(**input_: Any) -> ServerToolCall:
    return ServerToolCall("srvtoolu_1", "x", input_)


@pytest.mark.parametrize(
    ("spec", "the_call", "configured", "expected"),
    [
        pytest.param(
            SEARCH_SPEC,
            call(query=" py "),
            True,
            SearchPlan("srvtoolu_1", SearchQuery("py", allowed_domains=("a.org",))),
            id="search",
        ),
        pytest.param(
            SEARCH_SPEC,
            call(query=""),
            True,
            CallFailure(
                "srvtoolu_1", "web_search", "invalid_tool_input", 'give a non-empty "query" string'
            ),
            id="search-empty-query",
        ),
        pytest.param(
            SEARCH_SPEC,
            call(query="py"),
            False,
            CallFailure(
                "srvtoolu_1", "web_search", "unavailable", NOT_CONFIGURED_TEXT_BY_KIND["web_search"]
            ),
            id="search-not-configured",
        ),
        pytest.param(
            FETCH_SPEC,
            call(url=" https://b.org/x "),
            True,
            FetchPlan("srvtoolu_1", "https://b.org/x", DEFAULT_FETCH_MAX_CHARS, (), ("b.org",)),
            id="fetch",
        ),
        pytest.param(
            ServerToolSpec("web_fetch", "web_fetch", max_content_tokens=10),
            call(url="http://a"),
            True,
            FetchPlan("srvtoolu_1", "http://a", 40, (), ()),
            id="fetch-max-content-tokens",
        ),
        pytest.param(
            FETCH_SPEC,
            call(url="file:///etc/passwd"),
            True,
            CallFailure(
                "srvtoolu_1", "web_fetch", "invalid_tool_input", 'give an http(s) "url" string'
            ),
            id="fetch-not-http",
        ),
        pytest.param(
            FETCH_SPEC,
            call(url=None),
            True,
            CallFailure(
                "srvtoolu_1", "web_fetch", "invalid_tool_input", 'give an http(s) "url" string'
            ),
            id="fetch-no-url",
        ),
        pytest.param(
            FETCH_SPEC,
            call(url="https://a/" + "x" * 300),
            True,
            CallFailure(
                "srvtoolu_1", "web_fetch", "url_too_long", "URLs of at most 250 characters"
            ),
            id="fetch-url-too-long",
        ),
        pytest.param(
            FETCH_SPEC,
            call(url="https://a"),
            False,
            CallFailure(
                "srvtoolu_1", "web_fetch", "unavailable", NOT_CONFIGURED_TEXT_BY_KIND["web_fetch"]
            ),
            id="fetch-not-configured",
        ),
    ],
)
def test_plan_call(
    spec: ServerToolSpec, the_call: ServerToolCall, configured: bool, expected: object
) -> None:
    ledger = ServerToolLedger(known_urls=urls_in(["https://b.org/x", "http://a"]))
    assert plan_call(the_call, spec, ledger, configured=configured) == expected


@pytest.mark.parametrize(
    ("url", "known"),
    [
        pytest.param("https://docs.python.org/3/library/", True, id="as-given"),
        pytest.param("HTTPS://Docs.Python.org/3/library#top", True, id="case-fragment-slash"),
        pytest.param("https://docs.python.org/3/LIBRARY/", False, id="path-case-matters"),
        pytest.param("https://docs.python.org/3/library/?q=1", False, id="other-query"),
        pytest.param("https://evil.test/?leak=secret", False, id="made-up"),
        pytest.param("https://found.example/page", True, id="learned-from-a-result"),
    ],
)
def test_web_fetch_takes_only_urls_in_the_conversation(url: str, known: bool) -> None:
    ledger = ServerToolLedger(known_urls=urls_in("Read https://docs.python.org/3/library/."))
    ledger.learn_urls(text for text in ["[a result](https://found.example/page)"])
    plan = plan_call(call(url=url), FETCH_SPEC, ledger, configured=True)
    if known:
        assert isinstance(plan, FetchPlan)
    else:
        assert plan == CallFailure(
            "srvtoolu_1", "web_fetch", "url_not_in_prior_context", URL_NOT_IN_CONTEXT_TEXT
        )


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("no link here", set()),
        ("see https://a.org/x.", {"https://a.org/x"}),
        ("(https://a.org/x), 'https://b.org/y?z=1' <https://c.org/>", None),
        ("[md](https://a.org/p/) and https://A.ORG/p#frag!", {"https://a.org/p"}),
        ("ftp://a.org/x and mailto:x@y.z", set()),
        pytest.param("[http://[::1]:8080/x]", {"http://[::1]:8080/x"}, id="ipv6-host"),
        pytest.param("fetch http://[::1 now", {"http://[::1"}, id="unclosed-bracket"),
        pytest.param("http://[zz]/ and http://a:99999/", {"http://[zz]/", "http://a:99999"}),
    ],
)
def test_urls_in_text(text: str, keys: set[str] | None) -> None:
    expected = (
        keys if keys is not None else {"https://a.org/x", "https://b.org/y?z=1", "https://c.org"}
    )
    assert urls_in({"nested": [text, ("tuple",), 5, None]}) == expected


@pytest.mark.parametrize("url", ["http://[::1", "http://[zz]/", "https://[::1]:99999/"])
def test_a_url_that_does_not_split_is_refused_or_matched_as_text(url: str) -> None:
    """Issue 17: `urlsplit` raising on a bracket was a 500 for the whole conversation."""
    ledger = ServerToolLedger(known_urls=urls_in(f"see {url}"))
    plan = plan_call(call(url=url), FETCH_SPEC, ledger, configured=True)
    split_fails = url.endswith("[::1") or "[zz]" in url
    if split_fails:
        assert isinstance(plan, CallFailure) and plan.code == "invalid_tool_input"
    else:
        assert isinstance(plan, FetchPlan)


def test_context_urls_are_the_user_sides_and_earlier_results() -> None:
    req = cast(
        MessagesRequest,
        {
            "model": "m",
            "max_tokens": 5,
            "system": [{"type": "text", "text": "Docs: https://system.example/d"}],
            "messages": [
                {"role": "user", "content": "Read https://user.example/a"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "I made up https://model.example/x"},
                        {
                            "type": "web_search_tool_result",
                            "tool_use_id": "srvtoolu_1",
                            "content": [
                                {"type": "web_search_result", "url": "https://r.example/1"}
                            ],
                        },
                        {
                            "type": "tool_use",
                            "id": "t",
                            "name": "f",
                            "input": {"u": "https://in.example"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t",
                            "content": "https://tool.example/r",
                        }
                    ],
                },
                {"role": "assistant", "content": "plain text https://model.example/y"},
            ],
        },
    )
    assert context_urls(req) == {
        "https://system.example/d",
        "https://user.example/a",
        "https://r.example/1",
        "https://tool.example/r",
    }


def test_plan_call_past_max_uses() -> None:
    spec = ServerToolSpec("web_search", "web_search", max_uses=1)
    ledger = ServerToolLedger()
    assert isinstance(plan_call(call(query="a"), spec, ledger, configured=True), SearchPlan)
    failure = plan_call(call(query="b"), spec, ledger, configured=True)
    assert isinstance(failure, CallFailure)
    assert failure.block == {
        "type": "web_search_tool_result",
        "tool_use_id": "srvtoolu_1",
        "content": {"type": "web_search_tool_result_error", "error_code": "max_uses_exceeded"},
    }
    assert failure.text.startswith("Error: web_search failed (max_uses_exceeded): web_search")


def test_server_tool_ids() -> None:
    assert server_tool_id("call_1") == "srvtoolu_call_1"
    assert server_tool_id("srvtoolu_x") == "srvtoolu_x"
