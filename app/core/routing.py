"""Which provider, and which of its models, a client's model name means.

Order, first match wins:
1. an exact alias from settings, else the tier of a `claude-*` name, gives a
   model *reference* (anything else, a gateway id too, is its own reference);
   `tier_of` sees no tier in a gateway id, whatever words its model id holds;
2. a gateway id (`claude-nim/<provider>/<model>`, `gateway_ids`) names its
   provider and model outright: that provider's explicit model of that id, else
   the model id as its catalog spells it (case aside), else as written; a
   provider that is not configured (any more) leaves the model id to steps 3-6;
3. a provider's explicit model with that `id` -> that provider, its remote id;
4. a provider's discovered catalog holding the reference (the default
   provider's first);
5. `name/rest` where `name` is a configured provider other than the default ->
   that provider and `rest` (or its explicit model `rest`);
6. the default provider, with the reference as it is.

Step 5 skips the default provider on purpose: NVIDIA's own ids begin with
namespaces such as `nvidia/`, `meta/` or `openai/`, and the default provider
receives every unmatched name whole anyway. Catalogs (step 4) settle the rest
of that ambiguity once they are fetched.

Rule: routing never fails for a non-empty name; a wrong guess is the upstream's
404, worded for the user, never ours.

A route here says where, not what the model can do: quirks change as the session
learns, so the provider registry adds them to each route it hands out.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from app.core.gateway_ids import from_gateway_id
from app.core.providers import Provider
from app.core.tiers import ModelAliases, ModelTarget, resolve_model

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
    _routes: dict[str, ModelTarget] = field(default_factory=dict, compare=False, repr=False)

    def route(self, client_model: str) -> ModelTarget:
        route = self._routes.get(client_model)
        if route is None:
            route = self._route(client_model)
            if len(self._routes) >= _ROUTE_CACHE_SIZE:
                self._routes.clear()
            self._routes[client_model] = route
        return route

    def _route(self, client_model: str) -> ModelTarget:
        by_tier = resolve_model(client_model, self.aliases)
        provider, upstream_id = self.resolve_reference(by_tier.upstream_model)
        return replace(by_tier, upstream_model=upstream_id, provider=provider)

    def resolve_reference(self, reference: str) -> tuple[str, str]:
        """(provider name, the provider's model id) for a model reference."""
        named = from_gateway_id(reference)
        if named is not None:
            return self._gateway_target(*named)
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

    def _gateway_target(self, provider_name: str, model_id: str) -> tuple[str, str]:
        provider = self._provider(provider_name)
        if provider is None:
            return self.resolve_reference(model_id)
        explicit = next((m for m in provider.models if m.id == model_id), None)
        if explicit is not None:
            return provider.name, explicit.upstream_id
        catalog = self.catalogs.get(provider.name, frozenset())
        if model_id not in catalog:
            folded = model_id.casefold()
            model_id = next((m for m in sorted(catalog) if m.casefold() == folded), model_id)
        return provider.name, model_id

    def with_catalog(self, provider: str, model_ids: frozenset[str]) -> "Router":
        return replace(self, catalogs={**self.catalogs, provider: model_ids}, _routes={})

    def _provider(self, name: str) -> Provider | None:
        return next((p for p in self.providers if p.name == name), None)

    def _default_first(self) -> list[str]:
        names = [p.name for p in self.providers]
        return sorted(names, key=lambda name: name != self.default_provider)
