"""app.server.upstream.registry: a route's quirks are worked out once, by the registry."""

from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from app.config.secrets import MemorySecretStore, ProviderKeys
from app.config.settings import Settings, TierModels
from app.core.capabilities import quirks_for_model
from app.core.errors import ProxyError
from app.core.providers import Provider, ProviderKind
from app.core.quirk_learning import Rejection
from app.core.tiers import Tier
from app.server.upstream.client import UpstreamClient
from app.server.upstream.h1_transport import H1Transport
from app.server.upstream.registry import ProviderRegistry, open_registry

NVIDIA = Provider("nvidia", ProviderKind.NVIDIA, "https://integrate.api.nvidia.com/v1")
LLAMA = Provider("llama", ProviderKind.LLAMACPP, "http://127.0.0.1:8080/v1")


def _registry(**settings: Any) -> ProviderRegistry:
    chosen = Settings(providers=(NVIDIA, LLAMA), default_provider="nvidia", **settings)
    upstream = UpstreamClient(connect_timeout_s=1, read_timeout_s=1)  # never started: no call
    return ProviderRegistry(chosen, ProviderKeys(MemorySecretStore(), env={}), upstream)


def test_a_route_has_the_quirks_of_its_upstream_model() -> None:
    registry = _registry(model_aliases={"my-name": "deepseek-ai/deepseek-v3.1"})
    route = registry.route("my-name")
    assert (route.provider, route.upstream_model) == ("nvidia", "deepseek-ai/deepseek-v3.1")
    assert route.quirks.send_reasoning_back  # DeepSeek V3.1's history rule
    assert route.quirks == quirks_for_model("deepseek-ai/deepseek-v3.1")


def test_a_tier_route_keeps_the_client_name_and_tier() -> None:
    registry = _registry(tiers=TierModels(default="m", opus="llama/big"))
    route = registry.route("claude-opus-4-5")
    assert (route.client_model, route.tier, route.provider, route.upstream_model) == (
        "claude-opus-4-5",
        Tier.OPUS,
        "llama",
        "big",
    )


def test_settings_overrides_and_server_quirks_are_in_the_route() -> None:
    registry = _registry(capabilities={"big": {"context_window": 1234}})
    route = registry.route("llama/big")
    assert route.quirks.context_window == 1234
    assert route.quirks.accepts_null_content is False  # llama.cpp's server refuses it
    assert route.quirks == registry.quirks_for(route)


def test_what_is_learned_reaches_later_routes_and_the_current_quirks() -> None:
    registry = _registry()
    route = registry.route("some/model")
    assert route.quirks.accepts_stream_options
    assert registry.learn_rejection(route, Rejection.STREAM_OPTIONS)
    assert not registry.learn_rejection(route, Rejection.STREAM_OPTIONS)  # known: no retry
    registry.learn_output_cap(route, 100)
    assert route.quirks.max_output_tokens != 100  # a route made earlier stays as it was
    for quirks in (registry.quirks_for(route), registry.route("some/model").quirks):
        assert (quirks.accepts_stream_options, quirks.max_output_tokens) == (False, 100)


def test_quirks_worked_out_once_follow_the_settings_and_what_a_server_says() -> None:
    registry = _registry(capabilities={"big": {"context_window": 1234}})
    first = registry.route("llama/big").quirks
    assert registry.route("llama/big").quirks is first  # worked out once, not per request
    registry.update_settings(
        replace(registry.settings, capabilities={"big": {"context_window": 99}})
    )
    assert registry.route("llama/big").quirks.context_window == 99


async def test_quirks_follow_the_context_a_server_says_it_serves() -> None:
    registry = _registry()
    assert registry.route("llama/big").quirks.context_window is None

    async def props(provider: Provider, url: str, key: str | None) -> Any:
        return {"default_generation_settings": {"n_ctx": 8192}}

    registry.get_model_list = props  # type: ignore[method-assign]
    await registry._read_served_context(LLAMA, "/props", None)
    assert registry.route("llama/big").quirks.context_window == 8192


def test_a_client_naming_many_models_keeps_the_quirks_it_keeps_bounded() -> None:
    registry = _registry()
    for index in range(1100):
        assert registry.route(f"llama/m{index}").quirks.accepts_null_content is False
    assert len(registry._served_cache) <= 1024 and len(registry._routes) <= 1024


def test_a_route_is_made_again_only_when_its_target_or_quirks_changed() -> None:
    registry = _registry()
    route = registry.route("some/model")
    assert registry.route("some/model") is route
    registry.learn_rejection(route, Rejection.STREAM_OPTIONS)
    learned = registry.route("some/model")
    assert learned is not route and not learned.quirks.accepts_stream_options
    registry.router = registry.router.with_catalog("llama", frozenset({"some/model"}))
    assert registry.route("some/model").provider == "llama"  # a new router's target


def _session_of(registry: ProviderRegistry) -> aiohttp.ClientSession:
    """aiohttp's session, which proxied URLs go through; the same timeouts as direct ones."""
    transport = registry.upstream.transport
    assert isinstance(transport, H1Transport)
    timeout = transport.proxied.session.timeout
    assert (transport.connect_timeout_s, transport.read_timeout_s) == (
        timeout.sock_connect,
        timeout.sock_read,
    )
    return transport.proxied.session


async def test_an_opened_registry_has_the_settings_timeouts_unless_given() -> None:
    settings = Settings(providers=(NVIDIA,), connect_timeout_s=7, read_timeout_s=90)
    keys = ProviderKeys(MemorySecretStore(), env={})
    async with open_registry(settings, keys, None) as registry:
        timeout = _session_of(registry).timeout
        assert (timeout.sock_connect, timeout.sock_read) == (7, 90)
        assert registry.settings is settings
    async with open_registry(settings, keys, None, connect_timeout_s=10, read_timeout_s=30) as own:
        timeout = _session_of(own).timeout
        assert (timeout.sock_connect, timeout.sock_read) == (10, 30)


async def test_an_opened_registry_closes_its_session_on_leaving_even_on_error() -> None:
    keys = ProviderKeys(MemorySecretStore(), env={})
    with pytest.raises(ProxyError):
        async with open_registry(Settings(providers=(NVIDIA,)), keys, None) as registry:
            raise ProxyError("the errand failed")
    with pytest.raises(RuntimeError, match="start"):
        _session_of(registry)  # noqa: B018 (the property raises once closed)
