"""Which provider, and which of its models, a client's model name means.

Order, first match wins:
1. an exact alias from settings, else the tier of a `claude-*` name, gives a
   model *reference* (anything else is its own reference);
2. a provider's explicit model with that `id` -> that provider, its remote id;
3. a provider's discovered catalog holding the reference (the default
   provider's first);
4. `name/rest` where `name` is a configured provider other than the default ->
   that provider and `rest` (or its explicit model `rest`);
5. the default provider, with the reference as it is.

Step 4 skips the default provider on purpose: NVIDIA's own ids begin with
namespaces such as `nvidia/`, `meta/` or `openai/`, and the default provider
receives every unmatched name whole anyway. Catalogs (step 3) settle the rest
of that ambiguity once they are fetched.

Rule: routing never fails for a non-empty name; a wrong guess is the upstream's
404, worded for the user, never ours.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from app.core.capabilities import quirks_for_model
from app.core.models import ModelAliases, ModelRoute, resolve_model
from app.core.providers import Provider

# Routes remembered per router: clients use a handful of names over and over.
_ROUTE_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class Router:
    """Immutable: a new catalog makes a new router (`with_catalog`), so the routes it
    remembers can never go stale."""

    providers: tuple[Provider, ...]
    default_provider: str
    aliases: ModelAliases = field(default_factory=ModelAliases)
    catalogs: Mapping[str, frozenset[str]] = field(default_factory=dict)
    _routes: dict[str, ModelRoute] = field(default_factory=dict, compare=False, repr=False)

    def route(self, client_model: str) -> ModelRoute:
        route = self._routes.get(client_model)
        if route is None:
            route = self._route(client_model)
            if len(self._routes) >= _ROUTE_CACHE_SIZE:
                self._routes.clear()
            self._routes[client_model] = route
        return route

    def _route(self, client_model: str) -> ModelRoute:
        by_tier = resolve_model(client_model, self.aliases)
        provider, upstream_id = self.resolve_reference(by_tier.upstream_model)
        return replace(
            by_tier,
            upstream_model=upstream_id,
            quirks=quirks_for_model(upstream_id),
            provider=provider,
        )

    def resolve_reference(self, reference: str) -> tuple[str, str]:
        """(provider name, the provider's model id) for a model reference."""
        for configured in self.providers:
            for model in configured.models:
                if model.id == reference:
                    return configured.name, model.upstream_id
        for name in self._default_first():
            if reference in self.catalogs.get(name, ()):
                return name, reference
        prefix, slash, rest = reference.partition("/")
        if slash and rest and prefix != self.default_provider:
            provider = self._provider(prefix)
            if provider is not None:
                explicit = next((m for m in provider.models if m.id == rest), None)
                return provider.name, explicit.upstream_id if explicit else rest
        return self.default_provider, reference

    def with_catalog(self, provider: str, model_ids: frozenset[str]) -> "Router":
        return replace(self, catalogs={**self.catalogs, provider: model_ids}, _routes={})

    def _provider(self, name: str) -> Provider | None:
        return next((p for p in self.providers if p.name == name), None)

    def _default_first(self) -> list[str]:
        names = [p.name for p in self.providers]
        return sorted(names, key=lambda name: name != self.default_provider)
