"""Several providers at once: routing, merged catalog, probes, learned quirks, the governor.

Two fake OpenAI upstreams run on loopback as two providers with different keys;
the official SDKs talk to the proxy; each test checks what each upstream got.
The gateway ids (`claude-nim/<provider>/<model>`) for Claude Code's `/model` are
checked here too: listed, paged, answered within 3 s, routed.
"""

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic.types import MessageParam

from app.config.secrets import MemorySecretStore, ProviderKeys
from app.config.settings import Settings, TierModels
from app.core.providers import ExplicitModel, Provider, ProviderKind
from app.server.app import ProxyServer
from tests.anthropic_grammar import assert_anthropic_grammar
from tests.fake_upstream import (
    FIXTURES,
    FakeUpstream,
    LoopThread,
    after,
    completion,
    http_request,
    reply_body,
    reply_json,
)
from tests.integration.conftest import track

HELLO: list[MessageParam] = [{"role": "user", "content": "hello"}]
FIXTURES_BODIES = FIXTURES / "upstream_bodies"
KEY_ONE, KEY_TWO = "nvapi-provider-one-key-0000", "sk-provider-two-key-0000000"


@pytest.fixture(scope="module")
def second_upstream(loop_thread: LoopThread) -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    loop_thread.run(fake.start())
    yield fake
    loop_thread.run(fake.stop())


@pytest.fixture
def two(
    loop_thread: LoopThread, upstream: FakeUpstream, second_upstream: FakeUpstream
) -> Iterator[Any]:
    second_upstream.reset()
    second_upstream.models = [
        {"id": "big-model", "object": "model", "created": 1_750_000_000, "owned_by": "two"},
        {"id": "text-embedding-3-large", "object": "model", "created": 1, "owned_by": "two"},
    ]
    servers: list[ProxyServer] = []

    def make(**overrides: Any) -> tuple[str, ProxyServer]:
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "commit_window_s": 0.3,
            "retry_max_wait_s": 3.0,
            "providers": (
                Provider("nvidia", ProviderKind.NVIDIA, upstream.base_url),
                Provider(
                    "two",
                    ProviderKind.OPENAI,
                    second_upstream.base_url,
                    models=(ExplicitModel("fast", remote_id="big-model-fast"),),
                ),
            ),
            "tiers": TierModels(default="meta/llama-3.3-70b-instruct", opus="two/big-model"),
        }
        values.update(overrides)
        keys = ProviderKeys(MemorySecretStore(), env={})
        keys.set("nvidia", KEY_ONE)
        keys.set("two", KEY_TWO)
        server = ProxyServer(Settings(**values), keys, None)
        url = loop_thread.run(server.start())
        servers.append(server)
        return url, server

    yield make
    for server in servers:
        loop_thread.run(server.stop())


def client(url: str) -> anthropic.Anthropic:
    return track(anthropic.Anthropic(base_url=url, api_key="any", max_retries=0))


def test_routing_by_tier_prefix_and_explicit_model(
    two: Any, upstream: FakeUpstream, second_upstream: FakeUpstream
) -> None:
    url, _ = two()
    sdk = client(url)
    sdk.messages.create(model="claude-opus-4-5", max_tokens=5, messages=HELLO)
    sent = second_upstream.chat_requests[-1]
    assert sent.body["model"] == "big-model"
    assert sent.headers["Authorization"] == f"Bearer {KEY_TWO}"

    sdk.messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=HELLO)
    sent = upstream.chat_requests[-1]
    assert sent.body["model"] == "meta/llama-3.3-70b-instruct"
    assert sent.headers["Authorization"] == f"Bearer {KEY_ONE}"

    sdk.messages.create(model="fast", max_tokens=5, messages=HELLO)
    assert second_upstream.chat_requests[-1].body["model"] == "big-model-fast"
    sdk.messages.create(model="two/anything", max_tokens=5, messages=HELLO)
    assert second_upstream.chat_requests[-1].body["model"] == "anything"


def test_merged_model_list_filters_and_describes(two: Any) -> None:
    url, _ = two()
    listed = client(url).models.list()
    ids = [m.id for m in listed.data]
    assert "meta/llama-3.3-70b-instruct" in ids  # the default provider's, by its own id
    assert "two/big-model" in ids and "two/fast" in ids  # others', prefixed
    assert not any("embedding" in i for i in ids)  # cannot chat: filtered out
    raw = json.loads(
        http_request(url + "/v1/models", headers={"anthropic-version": "2023-06-01"})[2]
    )
    llama = next(m for m in raw["data"] if m["id"] == "meta/llama-3.3-70b-instruct")
    assert llama["nimbridge"]["provider"] == "nvidia"
    assert llama["nimbridge"]["context_window"] == 131072
    assert set(llama["nimbridge"]) >= {"tools", "vision", "reasoning", "max_output_tokens"}


def test_catalog_is_cached_then_expires(
    two: Any, upstream: FakeUpstream, second_upstream: FakeUpstream
) -> None:
    url, _ = two(catalog_ttl_s=0.5)
    sdk = client(url)
    time.sleep(0.2)  # let the start-up prefetch finish
    sdk.models.list()
    sdk.models.list()
    listings = [r for r in second_upstream.requests if r.path.endswith("/models")]
    assert len(listings) == 1  # the prefetch's answer served both
    time.sleep(0.6)
    sdk.models.list()
    listings = [r for r in second_upstream.requests if r.path.endswith("/models")]
    assert len(listings) == 2


async def test_probe_reports_entitlement_and_tool_calls(
    upstream: FakeUpstream, second_upstream: FakeUpstream
) -> None:
    from app.server.upstream.client import UpstreamClient
    from app.server.upstream.registry import ProviderRegistry

    settings = Settings(
        providers=(
            Provider("nvidia", ProviderKind.NVIDIA, upstream.base_url),
            Provider("two", ProviderKind.OPENAI, second_upstream.base_url),
        )
    )
    keys = ProviderKeys(MemorySecretStore(), env={})
    client_ = UpstreamClient(connect_timeout_s=2, read_timeout_s=5)
    await client_.start()
    try:
        registry = ProviderRegistry(settings, keys, client_)
        called = {"id": "c1", "type": "function", "function": {"name": "ping", "arguments": "{}"}}
        upstream.enqueue(reply_json(completion({}, None, tool_calls=[called])))
        good = await registry.probe("nvidia", "meta/llama-3.3-70b-instruct")
        assert (good.entitled, good.tools) == (True, True)
        assert upstream.chat_requests[-1].body["tool_choice"] == "required"

        not_mine = (FIXTURES_BODIES / "nim_404_function-not-found-for-account.json").read_text()
        upstream.enqueue(reply_body(not_mine, status=404))
        denied = await registry.probe("nvidia", "moonshotai/kimi-k2.6")
        assert (denied.entitled, denied.tools) == (False, None)
        assert "Not found for account" in denied.detail

        second_upstream.enqueue(reply_json(completion({}, "I'd rather talk.")))
        chatty = await registry.probe("two", "big-model")
        assert (chatty.entitled, chatty.tools) == (True, False)
        assert registry.probes[("two", "big-model")] == chatty
    finally:
        await client_.close()


# ------------------------------------------------------------------ learned quirks


REJECTIONS = [
    pytest.param(
        {"capabilities": {"meta/llama-3.3-70b-instruct": {"accepts_top_k": True}}},
        {"top_k": 5},
        "{\"object\":\"error\",\"message\":\"[{'type': 'extra_forbidden', 'loc': ('body', "
        "'top_k'), 'msg': 'Extra inputs are not permitted', 'input': 5}]\",\"type\":"
        '"BadRequestError","param":null,"code":400}',
        "top_k",
        id="top_k",
    ),
    pytest.param(
        {"tiers": TierModels(default="deepseek-ai/deepseek-v3.1")},
        {"thinking": {"type": "enabled", "budget_tokens": 2048}},
        '{"error":{"message":"Unrecognized request argument supplied: chat_template_kwargs",'
        '"type":"invalid_request_error"}}',
        "chat_template_kwargs",
        id="chat_template_kwargs",
    ),
]


@pytest.mark.allow_warnings  # each repair is logged at WARNING, on purpose
@pytest.mark.parametrize(("settings", "extra", "error", "field"), REJECTIONS)
def test_rejected_field_is_learned_and_not_sent_again(
    two: Any,
    upstream: FakeUpstream,
    settings: dict[str, Any],
    extra: dict[str, Any],
    error: str,
    field: str,
) -> None:
    url, _ = two(**settings)
    upstream.enqueue(reply_body(error, status=400))
    sdk = client(url)
    first = sdk.messages.create(
        model="claude-sonnet-4-6", max_tokens=50, messages=HELLO, extra_body=extra
    )
    assert first.content[0].type == "text"
    rejected, retried = upstream.chat_requests[-2:]
    assert field in rejected.body and field not in retried.body
    sdk.messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=HELLO, extra_body=extra)
    assert field not in upstream.chat_requests[-1].body  # remembered: no second mistake
    assert len(upstream.chat_requests) == 3


@pytest.mark.allow_warnings
def test_too_large_max_tokens_is_learned_per_model(two: Any, upstream: FakeUpstream) -> None:
    url, _ = two(tiers=TierModels(default="fake/uncapped-model"))  # no known output cap
    upstream.enqueue(
        reply_body(
            '{"error":{"message":"max_tokens must be less than or equal to 4096"}}', status=400
        )
    )
    sdk = client(url)
    with sdk.messages.stream(model="claude-sonnet-4-6", max_tokens=32000, messages=HELLO) as s:
        s.get_final_message()
    with sdk.messages.stream(model="claude-sonnet-4-6", max_tokens=32000, messages=HELLO) as s:
        s.get_final_message()
    assert [r.body["max_tokens"] for r in upstream.chat_requests] == [32000, 4096, 4096]


# ------------------------------------------------------------------ governor and retries


NIM_429 = '{"status":429,"title":"Too Many Requests"}'


def test_short_rate_limit_is_waited_out(two: Any, upstream: FakeUpstream) -> None:
    url, _ = two()
    upstream.enqueue(reply_body(NIM_429, status=429, **{"Retry-After": "1"}))
    started = time.monotonic()
    message = client(url).messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=HELLO)
    assert message.content[0].type == "text"
    assert 0.9 < time.monotonic() - started < 3
    assert len(upstream.chat_requests) == 2


@pytest.mark.allow_warnings
def test_long_rate_limit_is_a_proper_error_with_retry_after(
    two: Any, upstream: FakeUpstream
) -> None:
    url, _ = two()
    upstream.enqueue(reply_body(NIM_429, status=429, **{"Retry-After": "120"}))
    with pytest.raises(anthropic.RateLimitError) as raised:
        client(url).messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=HELLO)
    assert raised.value.response.headers["retry-after"] == "120"
    assert len(upstream.chat_requests) == 1
    # The model now cools down: the next request is refused by NimBridge itself,
    # without spending another upstream request.
    with pytest.raises(anthropic.RateLimitError) as again:
        client(url).messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=HELLO)
    assert "pacing requests to nvidia" in again.value.message
    assert int(again.value.response.headers["retry-after"]) > 100
    assert len(upstream.chat_requests) == 1


@pytest.mark.allow_warnings
def test_provider_budget_queues_then_refuses(two: Any, upstream: FakeUpstream) -> None:
    providers = (Provider("nvidia", ProviderKind.NVIDIA, upstream.base_url, requests_per_minute=2),)
    url, _ = two(providers=providers, queue_max_wait_s=1.0)
    sdk = client(url)
    for _ in range(2):
        sdk.messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=HELLO)
    with pytest.raises(anthropic.RateLimitError) as raised:
        sdk.messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=HELLO)
    assert "2 requests a minute" in raised.value.message
    assert 50 < int(raised.value.response.headers["retry-after"]) <= 60
    assert len(upstream.chat_requests) == 2


@pytest.mark.allow_warnings
def test_no_retry_after_bytes_were_sent(two: Any, upstream: FakeUpstream) -> None:
    """Committed (message_start out) while the upstream was silent: its later 429 is an
    error event, and it is not retried behind the client's back."""
    url, _ = two(commit_window_s=0.1)
    upstream.enqueue(after(0.5, reply_body(NIM_429, status=429, **{"Retry-After": "1"})))
    status, _, raw = http_request(
        url + "/v1/messages",
        "POST",
        body=json.dumps(
            {"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": HELLO, "stream": True}
        ).encode(),
        headers={"content-type": "application/json"},
    )
    events = [
        json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")
    ]
    assert status == 200
    assert_anthropic_grammar(events)
    assert events[-1]["type"] == "error" and events[-1]["error"]["type"] == "rate_limit_error"
    assert len(upstream.chat_requests) == 1


@pytest.mark.allow_warnings
def test_tier_fallback_when_retries_run_out(
    two: Any, upstream: FakeUpstream, second_upstream: FakeUpstream
) -> None:
    url, _ = two(retry_max_attempts=2, fallbacks={"opus": "meta/llama-3.3-70b-instruct"})
    overloaded = '{"error":{"message":"overloaded"}}'
    second_upstream.enqueue(reply_body(overloaded, status=503), reply_body(overloaded, status=503))
    message = client(url).messages.create(model="claude-opus-4-5", max_tokens=5, messages=HELLO)
    assert message.content[0].type == "text"
    assert message.model == "claude-opus-4-5"
    assert len(second_upstream.chat_requests) == 2
    assert upstream.chat_requests[-1].body["model"] == "meta/llama-3.3-70b-instruct"


@pytest.mark.allow_warnings
def test_a_fallback_is_said_in_the_request_line(
    two: Any, upstream: FakeUpstream, second_upstream: FakeUpstream
) -> None:
    """The fallback is a repair like any other: the request's one line (its record's
    summary) names it and the model that answered; it used to be noted where nothing
    read it."""
    url, server = two(retry_max_attempts=1, fallbacks={"opus": "meta/llama-3.3-70b-instruct"})
    second_upstream.enqueue(reply_body('{"error":{"message":"overloaded"}}', status=503))
    finished: list[str] = []
    server.app_state.on_request_finished.append(lambda record: finished.append(record.summary()))
    client(url).messages.create(model="claude-opus-4-5", max_tokens=5, messages=HELLO)
    deadline = time.monotonic() + 5  # the line is written as the response goes out
    while not finished and time.monotonic() < deadline:
        time.sleep(0.01)
    line = next(text for text in finished if "POST /v1/messages" in text)
    assert "-> meta/llama-3.3-70b-instruct@nvidia" in line
    assert "repairs=[fell back to meta/llama-3.3-70b-instruct after: " in line


def test_cloudflare_workers_ai_catalog_and_chat(
    loop_thread: LoopThread, second_upstream: FakeUpstream
) -> None:
    """Workers AI: the account id goes into the URL; its model search API tells chat
    models from the rest; chat goes to the OpenAI-compatible /ai/v1 beside it."""
    second_upstream.reset()
    second_upstream.cloudflare_models = [
        {
            "id": "a1",
            "name": "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
            "task": {"name": "Text Generation"},
            "properties": [
                {"property_id": "context_window", "value": "24000"},
                {"property_id": "function_calling", "value": "true"},
            ],
        },
        {
            "id": "a2",
            "name": "@cf/black-forest-labs/flux-1-schnell",
            "task": {"name": "Text-to-Image"},
        },
        {"id": "a3", "name": "@cf/baai/bge-m3", "task": {"name": "Text Embeddings"}},
    ]
    root = second_upstream.base_url.removesuffix("/v1")
    cf = Provider(
        "cf",
        ProviderKind.CLOUDFLARE,
        f"{root}/client/v4/accounts/acc123/ai/v1",
        account_id="acc123",
    )
    keys = ProviderKeys(MemorySecretStore(), env={})
    keys.set("cf", "cf-token-0123456789")
    settings = Settings(
        host="127.0.0.1",
        port=0,
        providers=(cf,),
        default_provider="cf",
        tiers=TierModels(default="@cf/meta/llama-3.3-70b-instruct-fp8-fast"),
    )
    server = ProxyServer(settings, keys, None)
    url = loop_thread.run(server.start())
    try:
        raw = json.loads(
            http_request(url + "/v1/models", headers={"anthropic-version": "2023-06-01"})[2]
        )
        assert [m["id"] for m in raw["data"]] == [
            "claude-nim/cf/@cf/meta/llama-3.3-70b-instruct-fp8-fast",  # for Claude Code's picker
            "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
        ]
        assert raw["data"][1]["nimbridge"]["context_window"] == 24000
        assert raw["data"][1]["nimbridge"]["tools"] is True
        searches = [r for r in second_upstream.requests if r.path.endswith("/ai/models/search")]
        assert searches[0].path == "/client/v4/accounts/acc123/ai/models/search"
        assert searches[0].headers["Authorization"] == "Bearer cf-token-0123456789"

        client(url).messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=HELLO)
        sent = second_upstream.chat_requests[-1]
        assert sent.path == "/client/v4/accounts/acc123/ai/v1/chat/completions"
        assert sent.body["model"] == "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
    finally:
        loop_thread.run(server.stop())


def test_health_shows_the_pacing(two: Any, upstream: FakeUpstream) -> None:
    url, _ = two()
    client(url).messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=HELLO)
    health = json.loads(http_request(url + "/health")[2])
    assert health["providers"] == ["nvidia", "two"]
    nvidia = health["pacing"]["nvidia"]
    assert nvidia["budget_per_minute"] == 40 and nvidia["requests_last_minute"] == 1
    assert nvidia["cooling_down_for_s"] == 0


# ------------------------------------------------------------------ gateway ids
# `claude-nim/<provider>/<model>` (core.gateway_ids): each chat model under an id
# Claude Code's `/model` keeps, with a readable name; paged as Anthropic's list.

ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}
GATEWAY_NAMES = {
    "claude-nim/nvidia/meta/llama-3.3-70b-instruct": "Llama 3.3 70B Instruct · NVIDIA",
    "claude-nim/nvidia/qwen/qwen3-coder-480b-a35b-instruct": (
        "Qwen3 Coder 480B A35B Instruct · NVIDIA"
    ),
    "claude-nim/two/big-model": "Big Model · two",  # a provider's own name, as configured
    "claude-nim/two/fast": "Fast · two",
}
# The upstream ids stay listed as before, named as their provider names them.
UPSTREAM_NAMES = {
    "meta/llama-3.3-70b-instruct": "meta/llama-3.3-70b-instruct",
    "qwen/qwen3-coder-480b-a35b-instruct": "qwen/qwen3-coder-480b-a35b-instruct",
    "two/big-model": "big-model",
    "two/fast": "fast",
}


def listing(url: str, query: str = "") -> dict[str, Any]:
    status, _, body = http_request(f"{url}/v1/models{query}", headers=ANTHROPIC_HEADERS)
    assert status == 200, body
    parsed: dict[str, Any] = json.loads(body)
    return parsed


def test_sdk_lists_and_retrieves_gateway_ids(two: Any) -> None:
    url, _ = two()
    sdk = client(url)
    models = list(sdk.models.list())  # the SDK pages on by itself
    assert {m.id: m.display_name for m in models} == {
        **GATEWAY_NAMES,
        **UPSTREAM_NAMES,
    }
    retrieved = sdk.models.retrieve("claude-nim/two/big-model")
    assert retrieved.display_name == "Big Model · two"
    unlisted = sdk.models.retrieve("claude-nim/two/not-listed")  # it routes, so it exists
    assert unlisted.display_name == "Not Listed · two"
    with pytest.raises(anthropic.NotFoundError):
        sdk.models.retrieve("claude-nim/gone/model")


def test_claude_codes_discovery_request(two: Any) -> None:
    """What Claude Code 2.1.332 sends: one page of up to 1000, Bearer token, anthropic-version."""
    url, _ = two()
    answer = listing(url, "?limit=1000")
    ids = [m["id"] for m in answer["data"]]
    assert ids[: len(GATEWAY_NAMES)] == list(GATEWAY_NAMES)  # first: Claude Code reads one page
    assert answer["has_more"] is False
    kept = [m for m in answer["data"] if "claude" in m["id"].lower()]  # Claude Code's filter
    assert {m["id"]: m["display_name"] for m in kept} == GATEWAY_NAMES
    assert all(m["description"] for m in kept)
    assert kept[0]["nimbridge"]["upstream_id"] == "meta/llama-3.3-70b-instruct"


def test_paging_as_anthropic_does(two: Any) -> None:
    url, _ = two()
    everything = [m["id"] for m in listing(url, "?limit=1000")["data"]]
    assert len(everything) == 8
    first = listing(url, "?limit=3")
    assert [m["id"] for m in first["data"]] == everything[:3]
    assert (first["has_more"], first["first_id"], first["last_id"]) == (
        True,
        everything[0],
        everything[2],
    )
    rest = listing(url, f"?limit=5&after_id={first['last_id']}")
    assert [m["id"] for m in rest["data"]] == everything[3:]
    assert rest["has_more"] is False
    before = listing(url, f"?limit=2&before_id={everything[5]}")
    assert [m["id"] for m in before["data"]] == everything[3:5]
    assert before["has_more"] is True
    assert listing(url, f"?before_id={everything[0]}")["data"] == []
    assert len(listing(url)["data"]) == 8  # default limit 20
    status, _, body = http_request(f"{url}/v1/models?limit=0", headers=ANTHROPIC_HEADERS)
    assert status == 400 and b"limit" in body


def test_messages_with_gateway_ids_reach_that_provider_and_model(
    two: Any, upstream: FakeUpstream, second_upstream: FakeUpstream
) -> None:
    url, _ = two()
    sdk = client(url)
    answer = sdk.messages.create(model="claude-nim/two/big-model", max_tokens=5, messages=HELLO)
    assert answer.model == "claude-nim/two/big-model"  # echoed as the client named it
    sent = second_upstream.chat_requests[-1]
    assert (sent.body["model"], sent.headers["Authorization"]) == ("big-model", f"Bearer {KEY_TWO}")

    sdk.messages.create(
        model="claude-nim/nvidia/qwen/qwen3-coder-480b-a35b-instruct", max_tokens=5, messages=HELLO
    )
    sent = upstream.chat_requests[-1]
    assert sent.body["model"] == "qwen/qwen3-coder-480b-a35b-instruct"
    assert sent.headers["Authorization"] == f"Bearer {KEY_ONE}"

    sdk.messages.create(model="claude-nim/two/fast", max_tokens=5, messages=HELLO)
    assert second_upstream.chat_requests[-1].body["model"] == "big-model-fast"


def test_slow_listing_is_answered_from_what_is_known_within_claude_codes_3_s(
    two: Any, second_upstream: FakeUpstream
) -> None:
    late = {"object": "list", "data": [{"id": "late-model", "object": "model", "created": 1}]}
    # The start-up prefetch and anything after it wait 4 s for provider two's list.
    second_upstream.models_queue.extend([after(4.0, reply_json(late))] * 3)
    url, _ = two()
    started = time.monotonic()
    answer = listing(url, "?limit=1000")
    assert time.monotonic() - started < 3.0
    ids = [m["id"] for m in answer["data"]]
    # nvidia answered in full; two from what is known: its explicit model and a tier's.
    assert "claude-nim/nvidia/qwen/qwen3-coder-480b-a35b-instruct" in ids
    assert "claude-nim/two/fast" in ids and "claude-nim/two/big-model" in ids
    assert "claude-nim/two/late-model" not in ids
    deadline = time.monotonic() + 8
    while "claude-nim/two/late-model" not in ids and time.monotonic() < deadline:
        time.sleep(0.3)  # the fetch went on in the background and fills the cache
        ids = [m["id"] for m in listing(url, "?limit=1000")["data"]]
    assert "claude-nim/two/late-model" in ids
