"""Model resolution: which upstream model a client's model name means.

Rule: every `claude-*` name resolves (through the opus / sonnet / haiku tiers,
dated or not, `-latest` or future names) and never 404s; any other name is
the client naming an upstream model directly and passes through unchanged.
A gateway id (`claude-nim/...`, `gateway_ids`) names one model and is no tier,
whatever words its model id holds.

What the model can do (its quirks) is not worked out here: the provider registry
does that once per route, knowing what the provider's server serves and what the
model was learned to refuse (`ProviderRegistry.route`), and makes the `ModelRoute`.
"""

import enum
from dataclasses import dataclass, field

from app.core.capabilities import ModelQuirks
from app.core.gateway_ids import is_gateway_id

DEFAULT_UPSTREAM_MODEL = "qwen/qwen3-coder-480b-a35b-instruct"


class Tier(enum.Enum):
    OPUS = "opus"
    SONNET = "sonnet"
    HAIKU = "haiku"
    SUBAGENT = "subagent"  # a name NimBridge hands Claude Code for its subagents
    DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class ModelAliases:
    """Tier -> upstream model. A tier left as None uses `default`."""

    default: str = DEFAULT_UPSTREAM_MODEL
    opus: str | None = None
    sonnet: str | None = None
    haiku: str | None = None
    subagent: str | None = None
    # Extra exact names (client name -> upstream model), consulted first.
    exact: dict[str, str] = field(default_factory=dict)

    def for_tier(self, tier: Tier) -> str:
        chosen = {
            Tier.OPUS: self.opus,
            Tier.SONNET: self.sonnet,
            Tier.HAIKU: self.haiku,
            Tier.SUBAGENT: self.subagent,
        }.get(tier)
        return chosen or self.default

    def tier_models(self) -> list[str]:
        """Each model a tier names, once, the default's first."""
        named = (self.default, self.opus, self.sonnet, self.haiku, self.subagent)
        return list(dict.fromkeys(model for model in named if model))


@dataclass(frozen=True, slots=True)
class ModelTarget:
    """Where a client's model name goes, before anyone says what that model can do."""

    client_model: str  # what the client asked for; echoed back in responses
    upstream_model: str  # what is sent upstream
    tier: Tier | None = None  # None when the client named an upstream model directly
    provider: str = ""  # the provider's name ("" where only one upstream is known)

    def with_quirks(self, quirks: ModelQuirks) -> "ModelRoute":
        return ModelRoute(self.client_model, self.upstream_model, quirks, self.tier, self.provider)


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """A `ModelTarget` with what its model can do, as the provider registry knew it."""

    client_model: str  # what the client asked for; echoed back in responses
    upstream_model: str  # what is sent upstream
    quirks: ModelQuirks
    tier: Tier | None = None  # None when the client named an upstream model directly
    provider: str = ""  # the provider's name ("" where only one upstream is known)


def tier_of(client_model: str) -> Tier | None:
    """The tier a `claude*` name belongs to, or None for non-Claude names and gateway ids."""
    name = client_model.strip().lower()
    if not name.startswith("claude") or is_gateway_id(client_model.lstrip()):
        return None
    for tier in (Tier.OPUS, Tier.SONNET, Tier.HAIKU, Tier.SUBAGENT):
        if tier.value in name:
            return tier
    return Tier.DEFAULT


def resolve_model(client_model: str, aliases: ModelAliases) -> ModelTarget:
    """Route a client's model name; never fails for a non-empty name."""
    if client_model in aliases.exact:
        return ModelTarget(client_model, aliases.exact[client_model])
    tier = tier_of(client_model)
    upstream = aliases.for_tier(tier) if tier is not None else client_model
    return ModelTarget(client_model, upstream, tier)
