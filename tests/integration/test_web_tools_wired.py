"""Web search and fetch end to end with the real backends the settings choose: the SDK
asks with Anthropic's server tools, the fake upstream model calls them, NimBridge's
Tavily client searches a Tavily-shaped fake and its page fetcher reads a fake web page,
and the model's next turn carries what they found."""

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from tests.fake_upstream import LoopThread, completion, reply_json
from tests.fake_web import PRIVATE, TAVILY_KEY, FakeWeb, running_fake_web
from tests.integration.conftest import MakeProxy

QUESTION = [{"role": "user", "content": "How does asyncio schedule tasks?"}]


@pytest.fixture(scope="module")
def fake_web(loop_thread: LoopThread) -> Iterator[FakeWeb]:
    context = running_fake_web()
    fake = loop_thread.run(context.__aenter__())
    yield fake
    loop_thread.run(context.__aexit__(None, None, None))


def _call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {"id": "call_1", "type": "function", "function": function}


def _tool_messages(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


def test_tavily_results_reach_the_model_and_the_client(
    make_proxy: MakeProxy, fake_web: FakeWeb
) -> None:
    proxy = make_proxy(web_search_backend="tavily", web_search_base_url=fake_web.url("/tavily"))
    proxy.server.app_state.registry.keys.set_web_search_key("tavily", TAVILY_KEY)
    proxy.upstream.enqueue(
        reply_json(completion({}, None, tool_calls=[_call("web_search", {"query": "asyncio"})])),
        reply_json(completion({}, "The event loop runs one task at a time [1].")),
    )
    with anthropic.Anthropic(base_url=proxy.url, api_key=proxy.client_key, max_retries=0) as sdk:
        message = sdk.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=200,
            messages=QUESTION,  # type: ignore[arg-type]
            tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
        )
    kinds = [block.type for block in message.content]
    assert kinds == ["server_tool_use", "web_search_tool_result", "text"]
    results = message.content[1].model_dump()["content"]
    assert results[0]["url"] == "https://docs.python.org/3/library/asyncio.html"
    assert message.usage.server_tool_use is not None
    assert message.usage.server_tool_use.web_search_requests == 1
    second_round = proxy.upstream.chat_requests[-1].body
    assert "asyncio — Asynchronous I/O" in _tool_messages(second_round)[0]
    sent = fake_web.requests[-1]
    assert sent["api"] == "tavily" and sent["body"]["query"] == "asyncio"


def test_a_fetched_page_reaches_the_model_as_text(make_proxy: MakeProxy, fake_web: FakeWeb) -> None:
    # The fake web listens on loopback: allowed here as a user would allow their LAN.
    proxy = make_proxy(fetch_private_addresses=True)
    page = fake_web.url("/pages/article", PRIVATE)
    proxy.upstream.enqueue(
        reply_json(completion({}, None, tool_calls=[_call("web_fetch", {"url": page})])),
        reply_json(completion({}, "It runs one task at a time.")),
    )
    with anthropic.Anthropic(base_url=proxy.url, api_key=proxy.client_key, max_retries=0) as sdk:
        message = sdk.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=200,
            messages=[{"role": "user", "content": f"Summarise {page}"}],
            tools=[{"type": "web_fetch_20250910", "name": "web_fetch", "max_uses": 1}],
        )
    assert [block.type for block in message.content] == [
        "server_tool_use",
        "web_fetch_tool_result",
        "text",
    ]
    fed = _tool_messages(proxy.upstream.chat_requests[-1].body)[0]
    assert "Understanding asyncio" in fed and "one task" in fed
    assert "Subscribe to our newsletter" not in fed  # the page's chrome is left out


def test_without_a_backend_the_model_is_told_how_to_set_one_up(make_proxy: MakeProxy) -> None:
    proxy = make_proxy()  # web_search_backend "" (the default)
    proxy.upstream.enqueue(
        reply_json(completion({}, None, tool_calls=[_call("web_search", {"query": "x"})])),
        reply_json(completion({}, "I could not search.")),
    )
    with anthropic.Anthropic(base_url=proxy.url, api_key=proxy.client_key, max_retries=0) as sdk:
        message = sdk.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=200,
            messages=QUESTION,  # type: ignore[arg-type]
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
        )
    result = message.content[1].model_dump()["content"]
    assert result["type"] == "web_search_tool_result_error"
    assert result["error_code"] == "unavailable"
    told = _tool_messages(proxy.upstream.chat_requests[-1].body)[0]
    assert "Settings → Web tools" in told and "web_search_backend" in told
