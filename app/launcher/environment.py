"""The environment Claude Code needs to talk to NimBridge, built by one pure function.

Invariants:
- No provider key is ever in it: Claude Code gets NimBridge's local proxy key
  (or a placeholder when none is required), never the NVIDIA key.
- `ANTHROPIC_API_KEY` is listed in `UNSET`, so a user's real Anthropic key
  cannot take precedence over the token and bypass NimBridge.
- Values go to Claude Code through a settings file readable only by the user
  (`claude --settings FILE`), not the user's global environment or
  ~/.claude/settings.json; the file is removed when Claude Code exits.
"""

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from app.config.settings import TierModels

# Sent when NimBridge requires no proxy key: Claude Code insists on some token.
PLACEHOLDER_TOKEN = "nimbridge"
UNSET = ("ANTHROPIC_API_KEY",)


def claude_code_env(
    *,
    base_url: str,
    proxy_key: str | None,
    tiers: TierModels,
    context_window: int | None,
    timeout_s: float,
) -> dict[str, str]:
    """Every variable Claude Code reads to use NimBridge (PROTOCOL.md, "Claude Code")."""
    env = {
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_AUTH_TOKEN": proxy_key or PLACEHOLDER_TOKEN,
        "ANTHROPIC_MODEL": tiers.default,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": tiers.opus or tiers.default,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": tiers.sonnet or tiers.default,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": tiers.haiku or tiers.default,
        "CLAUDE_CODE_SUBAGENT_MODEL": tiers.subagent or tiers.default,
        # Offline against a local URL: no telemetry, updates or other calls home.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "API_TIMEOUT_MS": str(int(timeout_s * 1000)),
    }
    if context_window:
        # Compact before the model's real window, not Claude's 200K.
        env["CLAUDE_CODE_AUTO_COMPACT_WINDOW"] = str(context_window)
    return env


def process_env(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The environment for the Claude Code process: `base` without `UNSET`, plus `extra`."""
    env = {name: value for name, value in base.items() if name not in UNSET}
    env.update(extra)
    return env


def write_settings_file(env: Mapping[str, str], directory: Path | None = None) -> Path:
    """A `claude --settings` file holding `env`, created 0600 (only the user can read it)."""
    # mkstemp creates the file readable and writable by this user only (0600).
    fd, name = tempfile.mkstemp(prefix="nimbridge-claude-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"env": dict(env)}, out, indent=2)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)
