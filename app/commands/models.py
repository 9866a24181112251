"""`nimbridge models`: the merged catalog with capabilities, optionally probed."""

import sys
from typing import TextIO

from app.config.secrets import ProviderKeys
from app.config.settings import Settings
from app.core.catalog import CatalogModel
from app.core.errors import ProxyError
from app.server.providers import ProbeResult, ProviderRegistry
from app.server.upstream import UpstreamClient


def _flag(value: bool | None, word: str) -> str:
    return {True: word, False: f"no-{word}", None: f"{word}?"}[value]


def describe(model: CatalogModel, probe: ProbeResult | None) -> str:
    quirks = model.quirks
    parts = [
        _flag(quirks.supports_tools, "tools"),
        _flag(quirks.supports_images, "vision"),
        f"reasoning={quirks.reasoning.value}",
    ]
    if quirks.context_window:
        parts.append(f"context={quirks.context_window // 1024}K")
    if quirks.max_output_tokens:
        parts.append(f"output={quirks.max_output_tokens // 1024}K")
    if probe is not None:
        verdict = "entitled" if probe.entitled else "NOT entitled"
        parts.append(f"probe: {verdict}, {probe.detail}")
    return " ".join(parts)


async def run_models_command(
    settings: Settings,
    keys: ProviderKeys,
    *,
    provider: str | None,
    probe: bool,
    refresh: bool,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    if provider is not None and settings.provider(provider) is None:
        names = ", ".join(p.name for p in settings.providers)
        print(f"nimbridge: no provider named {provider!r} (configured: {names})", file=err)
        return 1
    upstream = UpstreamClient(
        connect_timeout_s=settings.connect_timeout_s, read_timeout_s=settings.read_timeout_s
    )
    await upstream.start()
    try:
        registry = ProviderRegistry(settings, keys, upstream)
        try:
            if provider is not None:
                models = await registry.catalog(provider, refresh=refresh)
            else:
                models = await registry.merged_catalog(refresh=refresh)
        except ProxyError as exc:
            print(f"nimbridge: could not list models: {exc.message}", file=err)
            return 1
        width = max((len(m.provider) + len(m.id) + 1 for m in models), default=0)
        for model in models:
            result = await registry.probe(model.provider, model.id) if probe else None
            print(
                f"{model.provider + '/' + model.id:<{width}}  {describe(model, result)}", file=out
            )
        print(f"{len(models)} chat model(s)", file=out)
        return 0
    finally:
        await upstream.close()
