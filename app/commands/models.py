"""`nimbridge models`: the merged catalog with capabilities, optionally probed."""

import sys
from typing import TextIO

from app.config.secrets import ProviderKeys
from app.config.settings import Settings
from app.core.catalog import CatalogModel
from app.core.errors import ProxyError
from app.server.network import Network, NetworkSetupError
from app.server.upstream.registry import ProbeResult, open_registry

COLUMNS = ("MODEL", "TOOLS", "VISION", "REASONING", "CONTEXT", "OUTPUT")
PROBE_COLUMN = "PROBE"
_WORD_BY_FLAG: dict[bool | None, str] = {True: "yes", False: "no", None: "?"}


def _thousands(tokens: int | None) -> str:
    return f"{tokens // 1024}K" if tokens else "-"


def model_row(model: CatalogModel, probe: ProbeResult | None) -> list[str]:
    """One model's cells under COLUMNS (and PROBE, when probed): what the catalog and
    our tables say, then what the one forced tool call said."""
    quirks = model.quirks
    row = [
        f"{model.provider}/{model.id}",
        _WORD_BY_FLAG[quirks.supports_tools],
        _WORD_BY_FLAG[quirks.supports_images],
        quirks.reasoning.value,
        _thousands(quirks.context_window),
        _thousands(quirks.max_output_tokens),
    ]
    if probe is not None:
        verdict = "entitled" if probe.entitled else "NOT entitled"
        row.append(f"{verdict}, {probe.detail}")
    return row


def table_lines(rows: list[list[str]]) -> list[str]:
    """Rows as aligned columns, two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        + "  "
        + row[-1]
        for row in rows
    ]


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
    try:
        network = Network.from_settings(settings, keys)
    except NetworkSetupError as exc:
        print(f"nimbridge: {exc}", file=err)
        return 1
    async with open_registry(settings, keys, network) as registry:
        try:
            if provider is not None:
                models = await registry.catalog(provider, refresh=refresh)
            else:
                models = await registry.merged_catalog(refresh=refresh)
        except ProxyError as exc:
            print(f"nimbridge: could not list models: {exc.message}", file=err)
            return 1
        rows = [[*COLUMNS, *([PROBE_COLUMN] if probe else [])]]
        for model in models:
            result = await registry.probe(model.provider, model.id) if probe else None
            rows.append(model_row(model, result))
        if models:
            for line in table_lines(rows):
                print(line, file=out)
        print(f"{len(models)} chat model(s)", file=out)
        return 0
