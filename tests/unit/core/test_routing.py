"""app.core.routing: which provider and model a client's name means (table-driven)."""

import pytest

from app.core.providers import ExplicitModel, Provider, ProviderKind
from app.core.routing import Router
from app.core.tiers import ModelAliases, Tier

NVIDIA = Provider("nvidia", ProviderKind.NVIDIA, "https://integrate.api.nvidia.com/v1")
OPENAI = Provider(
    "openai",
    ProviderKind.OPENAI,
    "https://api.openai.com/v1",
    models=(ExplicitModel("fast", remote_id="gpt-4.1-mini", display_name="Fast one"),),
)
LOCAL = Provider("local", ProviderKind.OLLAMA, "http://127.0.0.1:11434/v1")
ROUTER = Router(
    (NVIDIA, OPENAI, LOCAL),
    "nvidia",
    ModelAliases(
        default="qwen/qwen3-coder-480b-a35b-instruct",
        opus="openai/gpt-5",
        haiku="fast",
        subagent="local/qwen3:8b",
        exact={
            "my-name": "deepseek-ai/deepseek-v3.1",
            "claude-nim/nvidia/aliased": "claude-nim/openai/gpt-5",
        },
    ),
    catalogs={
        "nvidia": frozenset({"nvidia/llama-3.3-nemotron-super-49b-v1", "openai/gpt-oss-120b"}),
        "local": frozenset({"llama3.2:3b"}),
    },
)


@pytest.mark.parametrize(
    ("client", "provider", "upstream", "tier"),
    [
        pytest.param(
            "claude-sonnet-4-6",
            "nvidia",
            "qwen/qwen3-coder-480b-a35b-instruct",
            Tier.SONNET,
            id="tier-falls-to-default-model",
        ),
        pytest.param(
            "claude-opus-4-5-20251101", "openai", "gpt-5", Tier.OPUS, id="tier-to-prefixed-provider"
        ),
        pytest.param(
            "claude-haiku-4-5", "openai", "gpt-4.1-mini", Tier.HAIKU, id="tier-to-explicit-model"
        ),
        pytest.param("claude-subagent", "local", "qwen3:8b", Tier.SUBAGENT, id="subagent-tier"),
        pytest.param("my-name", "nvidia", "deepseek-ai/deepseek-v3.1", None, id="exact-alias"),
        pytest.param("fast", "openai", "gpt-4.1-mini", None, id="explicit-id"),
        pytest.param("openai/fast", "openai", "gpt-4.1-mini", None, id="prefix-then-explicit"),
        pytest.param(
            "openai/gpt-oss-120b", "nvidia", "openai/gpt-oss-120b", None, id="catalog-beats-prefix"
        ),
        pytest.param(
            "nvidia/llama-3.3-nemotron-super-49b-v1",
            "nvidia",
            "nvidia/llama-3.3-nemotron-super-49b-v1",
            None,
            id="default-namespace",
        ),
        pytest.param(
            "nvidia/not-in-catalog",
            "nvidia",
            "nvidia/not-in-catalog",
            None,
            id="default-provider-prefix-kept-whole",
        ),
        pytest.param("llama3.2:3b", "local", "llama3.2:3b", None, id="other-catalog"),
        pytest.param("local/anything", "local", "anything", None, id="prefix"),
        pytest.param(
            "meta/llama-3.3-70b-instruct",
            "nvidia",
            "meta/llama-3.3-70b-instruct",
            None,
            id="unknown-goes-to-default",
        ),
        pytest.param("unknown/x", "nvidia", "unknown/x", None, id="unknown-prefix"),
        # Gateway ids (`claude-nim/<provider>/<model>`): that provider and model, no tier.
        pytest.param(
            "claude-nim/nvidia/qwen/qwen3-coder-480b-a35b-instruct",
            "nvidia",
            "qwen/qwen3-coder-480b-a35b-instruct",
            None,
            id="gateway-default-provider",
        ),
        pytest.param(
            "claude-nim/openai/gpt-5", "openai", "gpt-5", None, id="gateway-other-provider"
        ),
        pytest.param(
            "claude-nim/openai/claude-opus-haiku", "openai", "claude-opus-haiku", None,
            id="gateway-never-a-tier",
        ),
        pytest.param(
            "claude-nim/openai/fast", "openai", "gpt-4.1-mini", None, id="gateway-explicit-model"
        ),
        pytest.param(
            "claude-nim/local/llama3.2:3b", "local", "llama3.2:3b", None, id="gateway-colon-dot"
        ),
        pytest.param(
            "claude-nim/nvidia/openai/gpt-oss-120b", "nvidia", "openai/gpt-oss-120b", None,
            id="gateway-namespaced-id",
        ),
        pytest.param(
            "claude-nim/local/LLAMA3.2:3B", "local", "llama3.2:3b", None,
            id="gateway-case-from-catalog",
        ),
        pytest.param(
            "claude-nim/local/not-listed", "local", "not-listed", None, id="gateway-unlisted"
        ),
        pytest.param(
            "CLAUDE-NIM/openai/gpt-5", "openai", "gpt-5", None, id="gateway-prefix-any-case"
        ),
        pytest.param(
            "claude-nim/gone/llama3.2:3b", "local", "llama3.2:3b", None,
            id="gateway-unknown-provider-routes-the-model",
        ),
        pytest.param(
            "claude-nim/gone/x", "nvidia", "x", None, id="gateway-unknown-provider-default"
        ),
        pytest.param(
            "claude-nim/nvidia/aliased", "openai", "gpt-5", None, id="exact-alias-beats-gateway"
        ),
    ],
)  # fmt: skip
def test_route(client: str, provider: str, upstream: str, tier: Tier | None) -> None:
    route = ROUTER.route(client)
    assert (route.provider, route.upstream_model, route.tier) == (provider, upstream, tier)
    assert route.client_model == client


def test_with_catalog_adds_without_mutating() -> None:
    grown = ROUTER.with_catalog("openai", frozenset({"o3"}))
    assert grown.route("o3").provider == "openai"
    assert ROUTER.route("o3").provider == "nvidia"


def test_route_cache_stays_bounded() -> None:
    router = Router((NVIDIA,), "nvidia")
    for i in range(2000):
        router.route(f"model-{i}")
    assert len(router._routes) <= 1024
    assert router.route("model-1999").upstream_model == "model-1999"


def test_a_tier_may_name_a_gateway_id() -> None:
    router = Router((NVIDIA, OPENAI), "nvidia", ModelAliases(opus="claude-nim/openai/gpt-5-codex"))
    route = router.route("claude-opus-4-5")
    assert (route.provider, route.upstream_model, route.tier) == (
        "openai",
        "gpt-5-codex",
        Tier.OPUS,
    )
