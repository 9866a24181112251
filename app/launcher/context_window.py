"""The context window Claude Code and Codex are told to compact at: one owner.

The launchers (the tray's, `nimbridge code`, `nimbridge codex`) and the tray's copied
Codex set-up all take it from here, so the user's `capabilities` overrides in the
settings apply wherever an agent starts (issue 19: `nimbridge code` once ignored them).
"""

import json
import urllib.request

from app.config.settings import Settings
from app.core.capabilities import quirks_for_model


def context_window(model: str, settings: Settings | None) -> int | None:
    """`model`'s window by the name table, the user's override for it applied."""
    overrides = settings.capabilities if settings is not None else None
    return quirks_for_model(model, overrides or None).context_window


def served_context_window(
    base_url: str, proxy_key: str | None, model: str, settings: Settings
) -> int | None:
    """The model's context as the server at `base_url` knows it (what the upstream says
    it serves: vLLM's max_model_len, llama.cpp's n_ctx..., overrides applied), else
    `context_window`, so the agent compacts before the real window is full."""
    headers = {"x-api-key": proxy_key} if proxy_key else {}
    request = urllib.request.Request(f"{base_url}/v1/models/{model}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            facts = json.loads(answer.read()).get("nimbridge") or {}
    except (OSError, ValueError, AttributeError):
        facts = {}
    window = facts.get("context_window") if isinstance(facts, dict) else None
    if isinstance(window, int) and not isinstance(window, bool) and window > 0:
        return window
    return context_window(model, settings)
