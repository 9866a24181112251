"""UpstreamCall's policy over an in-memory transport: retries and backoff, repairs,
fallback, pacing and the unstreamed re-ask, with waits recorded instead of slept."""

import logging
from dataclasses import replace
from typing import Any

import pytest

from app.config.secrets import MemorySecretStore, ProviderKeys
from app.config.settings import Settings, TierModels
from app.core.anthropic_types import MessagesRequest
from app.core.deferred_tools import offer_tools
from app.core.errors import ProxyError, UpstreamError, UpstreamUnavailable
from app.core.providers import Provider, ProviderKind
from app.core.quirk_learning import Rejection
from app.core.request_map import to_openai_request
from app.server.upstream.call_policy import Attempts, UpstreamCall, messages_body_builder
from app.server.upstream.client import UpstreamClient, UpstreamResponse
from app.server.upstream.registry import ProviderRegistry
from tests.unit.server.upstream.memory_transport import (
    MemoryTransport,
    Reply,
    error_reply,
    json_reply,
)

NIM = "http://127.0.0.1:9/v1"  # never dialled: the wire is in memory
TWO = "http://127.0.0.2:9/v1"
NIM_KEY = "nvapi-s3cret-key-0123456789"
OWN_MODEL = "big-model"  # the opus tier's own model, on provider "two"
FALLBACK_MODEL = "meta/llama-3.3-70b-instruct"  # on "nvidia"
OK = json_reply({"id": "c1", "choices": []})


class Sleeps(list[float]):
    """The policy's sleep: records each wait and returns at once."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _request(**fields: Any) -> MessagesRequest:
    req: dict[str, Any] = {
        "model": "claude-opus-4-5",
        "max_tokens": 32000,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }
    return MessagesRequest(**{**req, **fields})  # type: ignore[typeddict-item]


class Harness:
    """A registry over a memory transport, and calls made as the routes make them."""

    def __init__(self, *replies: Reply | UpstreamUnavailable, **settings: Any) -> None:
        values: dict[str, Any] = {
            "providers": (
                Provider("nvidia", ProviderKind.NVIDIA, NIM),
                Provider("two", ProviderKind.OPENAI, TWO),
            ),
            "tiers": TierModels(default=FALLBACK_MODEL, opus=f"two/{OWN_MODEL}"),
            **settings,
        }
        keys = ProviderKeys(MemorySecretStore(), env={})
        keys.set("nvidia", NIM_KEY)
        keys.set("two", "sk-two-0123456789abcdef")
        self.transport = MemoryTransport(*replies)
        client = UpstreamClient(
            connect_timeout_s=1, read_timeout_s=2, deadline_s=30, transport=self.transport
        )
        self.registry = ProviderRegistry(Settings(**values), keys, client)
        self.sleeps = Sleeps()
        self.notes: list[str] = []

    def call(self, req: MessagesRequest | None = None, *, learn: bool = True) -> UpstreamCall:
        req = req or _request()
        return UpstreamCall(
            self.registry,
            messages_body_builder(req, self.notes),
            self.registry.route(req["model"]),
            client_key=None,
            prompt_tokens=10,
            attempts=Attempts(),
            request_id="req_test",
            learn=learn,
            sleep=self.sleeps,
        )

    def sent_models(self) -> list[str]:
        return [sent.json()["model"] for sent in self.transport.sent]


async def _opened(call: UpstreamCall) -> UpstreamResponse:
    response = await call.open()
    response.release()
    return response


# ------------------------------------------------------------------ retries


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_a_retryable_status_is_sent_again(status: int) -> None:
    harness = Harness(error_reply(status, "busy"), OK)
    call = harness.call()
    response = await _opened(call)
    assert response.status == 200
    assert call.attempts.count == 2
    assert harness.sent_models() == [OWN_MODEL, OWN_MODEL]
    assert harness.transport.responses[0].released  # the error body was read and let go


async def test_backoff_doubles_up_to_the_attempts_the_policy_allows() -> None:
    harness = Harness(*[error_reply(503, "busy")] * 4, retry_max_attempts=4)
    call = harness.call()
    with pytest.raises(UpstreamError) as raised:
        await call.open()
    assert harness.sleeps == [0.25, 0.5, 1.0]
    assert call.attempts.count == 4
    assert (raised.value.status, raised.value.upstream_status) == (529, 503)  # overloaded
    assert raised.value.message == "upstream returned 503: busy"


async def test_retry_after_is_honoured_when_longer_than_the_backoff() -> None:
    harness = Harness(error_reply(503, "busy", **{"Retry-After": "3"}), OK)
    await _opened(harness.call())
    assert harness.sleeps[0] == 3.0


async def test_a_429_waits_its_retry_after_and_cools_the_model_down() -> None:
    harness = Harness(error_reply(429, "slow down", **{"Retry-After": "2"}), OK)
    call = harness.call()
    await _opened(call)
    backoff, queued = harness.sleeps
    assert backoff == 2.0
    # The model's governor learned the cool-down: the retry queued for it too (the
    # recorded sleeps do not move the loop's clock, so the whole of it is left).
    assert 1.5 < queued <= 2.0


async def test_no_retry_when_retry_after_passes_the_policy_s_total_wait() -> None:
    harness = Harness(error_reply(429, "slow down", **{"Retry-After": "60"}), retry_max_wait_s=20)
    with pytest.raises(UpstreamError) as raised:
        await harness.call(_request(model=FALLBACK_MODEL)).open()
    assert harness.sleeps == [] and len(harness.transport.sent) == 1
    assert (raised.value.status, raised.value.retry_after) == (429, "60")


async def test_no_retry_once_the_call_is_committed() -> None:
    """Bytes went out to the client: the failure is the relay's to report, not retried,
    and no fallback either."""
    harness = Harness(error_reply(503, "busy"), fallbacks={"opus": FALLBACK_MODEL})
    call = harness.call()
    call.attempts.committed = True
    with pytest.raises(UpstreamError, match="503"):
        await call.open()
    assert len(harness.transport.sent) == 1 and harness.sleeps == []
    assert call.attempts.repairs == []


async def test_a_refused_connection_is_retried_and_a_final_failure_is_not() -> None:
    refused = UpstreamUnavailable("connection refused", retryable=True)
    harness = Harness(refused, OK)
    await _opened(harness.call())
    assert len(harness.transport.sent) == 2

    rejected_tls = UpstreamUnavailable("TLS certificate of 127.0.0.1 was rejected")
    harness = Harness(rejected_tls)
    with pytest.raises(UpstreamUnavailable) as raised:
        await harness.call().open()
    assert raised.value is rejected_tls and harness.sleeps == []


async def test_an_error_body_is_masked_before_it_is_quoted() -> None:
    harness = Harness(error_reply(401, f"Incorrect API key provided: {NIM_KEY}"))
    with pytest.raises(UpstreamError) as raised:
        await harness.call(_request(model=FALLBACK_MODEL)).open()
    assert NIM_KEY not in raised.value.message
    assert "upstream rejected the API key (401)" in raised.value.message


# ------------------------------------------------------------------ repairs


async def test_max_tokens_is_clamped_to_what_the_upstream_names_and_sent_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    too_many = error_reply(400, "max_tokens must be <= 8192")
    harness = Harness(too_many, OK)
    call = harness.call()
    with caplog.at_level(logging.WARNING, "app.server.upstream.call_policy"):
        await _opened(call)
    first, second = (sent.json() for sent in harness.transport.sent)
    assert (first["max_tokens"], second["max_tokens"]) == (32000, 8192)
    assert call.attempts.repairs == ["max_tokens clamped to 8192 after upstream 400"]
    assert harness.registry.quirks_for(call.route).max_output_tokens == 8192  # remembered
    assert harness.sleeps == []  # a repair goes again at once
    assert "max_tokens clamped to 8192" in caplog.text


async def test_a_rejected_field_is_learned_and_the_request_sent_again_without_it() -> None:
    refusal = "Unsupported parameter: 'stream_options' is not supported with this model."
    harness = Harness(error_reply(400, refusal), OK)
    call = harness.call()
    await _opened(call)
    first, second = (sent.json() for sent in harness.transport.sent)
    assert "stream_options" in first and "stream_options" not in second
    assert call.attempts.repairs == ["upstream rejected stream_options; sent again without it"]
    assert harness.registry.quirks_for(call.route).accepts_stream_options is False
    assert Rejection.STREAM_OPTIONS.value in call.attempts.repairs[0]


async def test_a_pass_through_body_is_never_repaired() -> None:
    harness = Harness(error_reply(400, "max_tokens must be <= 8192"))
    call = harness.call(learn=False)
    with pytest.raises(UpstreamError, match="upstream returned 400"):
        await call.open()
    assert len(harness.transport.sent) == 1 and call.attempts.repairs == []


# ------------------------------------------------------------------ fallback


async def test_the_tier_s_fallback_model_gets_a_round_after_the_own_model_s_retries() -> None:
    overloaded = error_reply(503, "overloaded")
    harness = Harness(
        overloaded, overloaded, OK, retry_max_attempts=2, fallbacks={"opus": FALLBACK_MODEL}
    )
    call = harness.call()
    await _opened(call)
    assert harness.sent_models() == [OWN_MODEL, OWN_MODEL, FALLBACK_MODEL]
    assert [sent.url for sent in harness.transport.sent] == [
        f"{TWO}/chat/completions",
        f"{TWO}/chat/completions",
        f"{NIM}/chat/completions",
    ]
    assert call.attempts.repairs == [
        f"fell back to {FALLBACK_MODEL} after: upstream returned 503: overloaded"
    ]
    used = call.attempts.route
    assert used is not None and (used.provider, used.upstream_model) == ("nvidia", FALLBACK_MODEL)
    assert used.client_model == "claude-opus-4-5"  # the client is answered as it asked


async def test_no_fallback_for_a_final_error_or_a_tier_without_one() -> None:
    harness = Harness(error_reply(403, "not entitled"), fallbacks={"opus": FALLBACK_MODEL})
    with pytest.raises(UpstreamError, match="403"):
        await harness.call().open()
    assert harness.sent_models() == [OWN_MODEL]

    harness = Harness(error_reply(503, "overloaded"), retry_max_attempts=1)
    with pytest.raises(UpstreamError, match="503"):
        await harness.call().open()
    assert harness.sent_models() == [OWN_MODEL]


# ------------------------------------------------------------------ pacing


async def test_a_budget_wait_past_queue_max_wait_fails_at_once_as_a_429() -> None:
    harness = Harness(
        OK,
        providers=(Provider("nvidia", ProviderKind.NVIDIA, NIM, requests_per_minute=1),),
        tiers=TierModels(default=FALLBACK_MODEL),
        queue_max_wait_s=20,
    )
    await _opened(harness.call(_request(model=FALLBACK_MODEL)))
    with pytest.raises(UpstreamError) as raised:
        await harness.call(_request(model=FALLBACK_MODEL)).open()
    error = raised.value
    assert error.status == 429 and error.retry_after == "60"
    assert error.message == (
        "NimBridge is pacing requests to nvidia (1 requests a minute) after rate limits; "
        f"the next slot for {FALLBACK_MODEL} is in 60 s"
    )
    assert len(harness.transport.sent) == 1 and harness.sleeps == []


async def test_a_budget_wait_within_queue_max_wait_is_waited_then_sent() -> None:
    harness = Harness(
        OK,
        OK,
        providers=(Provider("nvidia", ProviderKind.NVIDIA, NIM, requests_per_minute=1),),
        tiers=TierModels(default=FALLBACK_MODEL),
        queue_max_wait_s=90,
    )
    await _opened(harness.call(_request(model=FALLBACK_MODEL)))
    await _opened(harness.call(_request(model=FALLBACK_MODEL)))
    assert len(harness.sleeps) == 1 and 59 < harness.sleeps[0] <= 60
    assert len(harness.transport.sent) == 2


# ------------------------------------------------------------------ the unstreamed re-ask


async def test_ask_unstreamed_sends_the_last_body_without_streaming() -> None:
    harness = Harness(OK, OK)
    call = harness.call()
    await _opened(call)
    again = await call.ask_unstreamed()
    again.release()
    streamed, unstreamed = (sent.json() for sent in harness.transport.sent)
    assert streamed["stream"] is True and "stream_options" in streamed
    assert unstreamed == {
        k: v for k, v in streamed.items() if k not in ("stream", "stream_options")
    }
    assert call.attempts.count == 2


async def test_ask_unstreamed_tries_a_closed_connection_once_more_and_raises_errors() -> None:
    closed = UpstreamUnavailable("closed before answering", retryable=True)
    overflow = error_reply(400, "This model's maximum context length is 4096 tokens.")
    harness = Harness(OK, closed, overflow)
    call = harness.call()
    await _opened(call)
    with pytest.raises(ProxyError) as raised:
        await call.ask_unstreamed()
    assert raised.value.status == 400 and "prompt is too long" in raised.value.message
    assert len(harness.transport.sent) == 3 and harness.transport.responses[-1].released


# ------------------------------------------------------------------ the body builder


def test_the_body_builder_takes_the_quirks_given_and_the_tools_worked_out_once() -> None:
    harness = Harness()
    loaded = {"type": "tool_result", "tool_use_id": "t1", "content": "<functions>\nx\n</functions>"}
    req = _request(
        messages=[
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "s", "input": {}}],
            },
            {"role": "user", "content": [loaded]},
        ],
        tools=[{"name": "s", "input_schema": {"type": "object"}}],
        top_k=3,
    )
    route = harness.registry.route(req["model"])
    quirks = replace(route.quirks, accepts_top_k=not route.quirks.accepts_top_k)
    alone: list[str] = []
    shared: list[str] = []
    body = messages_body_builder(req, alone)(route, quirks)
    assert messages_body_builder(req, shared, offer_tools(req))(route, quirks) == body
    assert shared == alone and any("malformed <function>" in note for note in alone)
    assert ("top_k" in body) is quirks.accepts_top_k  # the quirks given, not the route's
    assert body == to_openai_request(req, replace(route, quirks=quirks))
