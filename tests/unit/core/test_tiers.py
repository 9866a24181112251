"""Model routing: every claude-* name resolves to a tier (quirks: test_capabilities.py; a
route's quirks come from the provider registry: tests/unit/server/upstream/test_registry.py)."""

import pytest

from app.core.capabilities import ModelQuirks, ReasoningSwitch
from app.core.tiers import (
    DEFAULT_UPSTREAM_MODEL,
    ModelAliases,
    ModelRoute,
    ModelTarget,
    Tier,
    resolve_model,
    tier_of,
)

ALIASES = ModelAliases(
    default="meta/llama-3.3-70b-instruct",
    opus="deepseek-ai/deepseek-v3.1",
    sonnet="qwen/qwen3-coder-480b-a35b-instruct",
    haiku="nvidia/llama-3.3-nemotron-super-49b-v1.5",
    exact={"claude-opus-4-5": "moonshotai/kimi-k2-instruct", "fast": "openai/gpt-oss-120b"},
)

RESOLVE_CASES = [
    # client model -> (tier, upstream model)
    ("claude-opus-4-1-20250805", Tier.OPUS, "deepseek-ai/deepseek-v3.1"),
    ("claude-opus-4-5", None, "moonshotai/kimi-k2-instruct"),  # exact alias wins over the tier
    ("claude-sonnet-4-5-20250929", Tier.SONNET, "qwen/qwen3-coder-480b-a35b-instruct"),
    ("claude-3-5-sonnet-latest", Tier.SONNET, "qwen/qwen3-coder-480b-a35b-instruct"),
    ("claude-3-5-haiku-20241022", Tier.HAIKU, "nvidia/llama-3.3-nemotron-super-49b-v1.5"),
    ("claude-haiku-4-5", Tier.HAIKU, "nvidia/llama-3.3-nemotron-super-49b-v1.5"),
    ("claude-3-opus-20240229", Tier.OPUS, "deepseek-ai/deepseek-v3.1"),
    ("claude-instant-1.2", Tier.DEFAULT, "meta/llama-3.3-70b-instruct"),
    ("claude-2.1", Tier.DEFAULT, "meta/llama-3.3-70b-instruct"),
    ("claude-sonnet-5", Tier.SONNET, "qwen/qwen3-coder-480b-a35b-instruct"),  # future name
    ("claude-future-model", Tier.DEFAULT, "meta/llama-3.3-70b-instruct"),
    ("Claude-Opus-4", Tier.OPUS, "deepseek-ai/deepseek-v3.1"),  # case-insensitive tiers
    ("  claude-haiku-4-5 ", Tier.HAIKU, "nvidia/llama-3.3-nemotron-super-49b-v1.5"),
    ("fast", None, "openai/gpt-oss-120b"),  # exact alias for a non-claude name
    ("meta/llama-3.3-70b-instruct", None, "meta/llama-3.3-70b-instruct"),  # passes through
    ("deepseek-ai/deepseek-r1", None, "deepseek-ai/deepseek-r1"),
]


@pytest.mark.parametrize(("client_model", "tier", "upstream"), RESOLVE_CASES)
def test_resolve_model(client_model: str, tier: Tier | None, upstream: str) -> None:
    route = resolve_model(client_model, ALIASES)
    assert route == ModelTarget(client_model, upstream, tier)


def test_a_target_with_quirks_is_a_route_to_the_same_place() -> None:
    quirks = ModelQuirks(reasoning=ReasoningSwitch.ALWAYS)
    target = ModelTarget("claude-opus-4", "o/o", Tier.OPUS, "nvidia")
    assert target.with_quirks(quirks) == ModelRoute(
        "claude-opus-4", "o/o", quirks, Tier.OPUS, "nvidia"
    )


def test_exact_aliases_are_case_sensitive_and_consulted_first() -> None:
    assert resolve_model("Claude-Opus-4-5", ALIASES).upstream_model == "deepseek-ai/deepseek-v3.1"
    aliases = ModelAliases(exact={"claude-3-5-sonnet-latest": "x/y"})
    assert resolve_model("claude-3-5-sonnet-latest", aliases).upstream_model == "x/y"


def test_unset_tiers_fall_back_to_default() -> None:
    aliases = ModelAliases(opus="o/o")
    assert resolve_model("claude-opus-4", aliases).upstream_model == "o/o"
    for name in ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-2.1"):
        assert resolve_model(name, aliases).upstream_model == DEFAULT_UPSTREAM_MODEL
    assert ModelAliases(haiku="").for_tier(Tier.HAIKU) == DEFAULT_UPSTREAM_MODEL


def test_every_claude_name_resolves_to_an_upstream_model() -> None:
    for name in ("claude", "claude-", "claude-3", "claudeX", "CLAUDE-SONNET"):
        route = resolve_model(name, ModelAliases())
        assert route.tier is not None
        assert route.upstream_model == DEFAULT_UPSTREAM_MODEL
        assert route.client_model == name  # echoed back to the client unchanged


@pytest.mark.parametrize(
    ("name", "tier"),
    [
        ("claude-opus-4", Tier.OPUS),
        ("claude-3-7-sonnet-20250219", Tier.SONNET),
        ("claude-3-haiku-20240307", Tier.HAIKU),
        ("claude-1", Tier.DEFAULT),
        ("gpt-4o", None),
        ("anthropic/claude-sonnet-4.5", None),  # OpenRouter-style id: an upstream name
        ("", None),
        # Gateway ids name one model, whatever tier words the model's id holds.
        ("claude-nim/openrouter/anthropic/claude-3-haiku", None),
        ("Claude-NIM/nvidia/opus-like-sonnet", None),
        ("claude-nim/", Tier.DEFAULT),  # no provider or model: not a gateway id
    ],
)
def test_tier_of(name: str, tier: Tier | None) -> None:
    assert tier_of(name) == tier


def test_tier_models_are_each_named_model_once_default_first() -> None:
    aliases = ModelAliases(default="d", opus="o", sonnet="d", haiku=None, subagent="s")
    assert aliases.tier_models() == ["d", "o", "s"]
    assert ModelAliases(default="d").tier_models() == ["d"]
