"""The environment Claude Code needs to talk to NimBridge, built by one pure function.

Invariants:
- No provider key is ever in it: Claude Code gets NimBridge's local proxy key
  (or a placeholder when none is required), never the NVIDIA key.
- `ANTHROPIC_API_KEY` is listed in `UNSET`, so a user's real Anthropic key
  cannot take precedence over the token and bypass NimBridge.
- Values go to Claude Code through a settings file readable only by the user
  (`claude --settings FILE`), not the user's global environment or
  ~/.claude/settings.json; the file is removed when Claude Code exits.
- Claude Code reaches NimBridge's loopback URL directly, never through the
  user's HTTP(S)_PROXY: `NO_PROXY` and `no_proxy` hold the loopback names, added
  to (never replacing) the user's own entries. Claude Code 2.1.332 reads the
  proxy and NO_PROXY from its process environment, and a settings file's `env`
  (~/.claude/settings.json, the project's, `--settings`) is copied over that
  environment at start, so the entries settings files give are merged in too.
"""

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import quote

from app.config.settings import TierModels

# The project folder, for the request history (app/server/app.py reads it).
PROJECT_HEADER = "X-NimBridge-Project"
CUSTOM_HEADERS_ENV = "ANTHROPIC_CUSTOM_HEADERS"
STATUS_REFRESH_S = 5
# Sent when NimBridge requires no proxy key: Claude Code insists on some token.
PLACEHOLDER_TOKEN = "nimbridge"
UNSET = ("ANTHROPIC_API_KEY",)
# Both spellings: Claude Code joins the two when they differ, other tools read one.
NO_PROXY_NAMES = ("NO_PROXY", "no_proxy")
# `[::1]` too: Claude Code compares an entry with the URL's hostname, which keeps
# an IPv6 address's brackets (`::1` alone, holding `:`, is taken as host:port).
LOOPBACK_NO_PROXY = ("127.0.0.1", "localhost", "::1", "[::1]")


def claude_code_env(
    *,
    base_url: str,
    proxy_key: str | None,
    tiers: TierModels,
    context_window: int | None,
    timeout_s: float,
    user_no_proxy: Iterable[str | None] = (),
) -> dict[str, str]:
    """Every variable Claude Code reads to use NimBridge (PROTOCOL.md, "Claude Code").

    `user_no_proxy`: the user's own NO_PROXY values (`user_no_proxy_values`), kept.
    """
    no_proxy = merged_no_proxy(*user_no_proxy)
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
        # `/model` lists every NimBridge model: Claude Code asks GET /v1/models at
        # start and offers the `claude-nim/...` ids (`core.gateway_ids`) it finds.
        "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1",
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
    }
    if context_window:
        # Compact before the model's real window, not Claude's 200K.
        env["CLAUDE_CODE_AUTO_COMPACT_WINDOW"] = str(context_window)
    return env


def merged_no_proxy(*values: str | None) -> str:
    """The entries of every value (comma or space separated), once each, in order, then
    the loopback names."""
    entries = [entry for value in values if value for entry in re.split(r"[,\s]+", value)]
    return ",".join(dict.fromkeys([*(e for e in entries if e), *LOOPBACK_NO_PROXY]))


def user_no_proxy_values(environ: Mapping[str, str], folder: Path | None) -> list[str]:
    """The user's NO_PROXY values: the environment's, then the settings files'."""
    values = [environ[name] for name in NO_PROXY_NAMES if environ.get(name)]
    return values + settings_no_proxy_values(environ, folder)


def settings_no_proxy_values(environ: Mapping[str, str], folder: Path | None) -> list[str]:
    """NO_PROXY values in the `env` of Claude Code's user and project settings files,
    which it copies over its environment; unreadable files are skipped."""
    config_dir = Path(environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude")
    files = [config_dir / "settings.json"]
    if folder is not None:
        files += [folder / ".claude" / "settings.json", folder / ".claude" / "settings.local.json"]
    values: list[str] = []
    for file in files:
        try:
            settings = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        env = settings.get("env") if isinstance(settings, dict) else None
        if isinstance(env, dict):
            values += [v for n in NO_PROXY_NAMES if isinstance(v := env.get(n), str) and v]
    return values


def no_proxy_settings_arguments(
    env: Mapping[str, str], *, no_proxy: bool = True, extra: Mapping[str, object] = {}
) -> list[str]:
    """`--settings JSON` holding the NO_PROXY variables (`no_proxy`: a settings file's
    `env` beats the process environment, so where one sets NO_PROXY, ours must come as
    settings too) and `extra` settings (`statusLine`). Not secret: seen in a command line."""
    settings: dict[str, object] = dict(extra)
    if no_proxy and (chosen := {name: env[name] for name in NO_PROXY_NAMES if name in env}):
        settings["env"] = chosen
    return ["--settings", json.dumps(settings)] if settings else []


def process_env(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The environment for the Claude Code process: `base` without `UNSET`, plus `extra`."""
    env = {name: value for name, value in base.items() if name not in UNSET}
    env.update(extra)
    return env


def project_headers(folder: Path, user_headers: str | None = None) -> dict[str, str]:
    """`ANTHROPIC_CUSTOM_HEADERS` naming the project folder to NimBridge (its request
    history groups by it), after the user's own headers (one `Name: value` a line).
    Percent-encoded: a header is ASCII, a folder's name need not be."""
    ours = f"{PROJECT_HEADER}: {quote(str(folder), safe='/')}"
    kept = [line for line in (user_headers or "").splitlines() if line.strip()]
    return {CUSTOM_HEADERS_ENV: "\n".join([*kept, ours])}


def statusline_command(executable: str, *, frozen: bool, windows: bool = False) -> str:
    """The shell command Claude Code runs for its status line: this NimBridge's own."""
    argv = [executable, "statusline"] if frozen else [executable, "-m", "app", "statusline"]
    return subprocess.list2cmdline(argv) if windows else shlex.join(argv)


def own_statusline_command() -> str:
    """This NimBridge's `statusline`: the bundle's binary, else this Python's `-m app`."""
    return statusline_command(
        sys.executable, frozen=bool(getattr(sys, "frozen", False)), windows=os.name == "nt"
    )


def status_line_setting(command: str) -> dict[str, object]:
    """Claude Code's `statusLine` setting; refreshed on a timer too, as the pace moves
    (a cool-down counts down) between turns."""
    return {"type": "command", "command": command, "refreshInterval": STATUS_REFRESH_S}


def user_sets_status_line(environ: Mapping[str, str], folder: Path | None) -> bool:
    """True when the user's or the project's Claude Code settings have a `statusLine`:
    theirs is kept (ours, given with --settings, would win over it)."""
    return any(settings.get("statusLine") for settings in _claude_settings_files(environ, folder))


def _claude_settings_files(
    environ: Mapping[str, str], folder: Path | None
) -> list[dict[str, object]]:
    config_dir = Path(environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude")
    files = [config_dir / "settings.json"]
    if folder is not None:
        files += [folder / ".claude" / "settings.json", folder / ".claude" / "settings.local.json"]
    found = []
    for file in files:
        try:
            settings = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(settings, dict):
            found.append(settings)
    return found


def write_settings_file(
    env: Mapping[str, str], directory: Path | None = None, *, extra: Mapping[str, object] = {}
) -> Path:
    """A `claude --settings` file holding `env` (and `extra` settings: `statusLine`),
    created 0600 (only the user can read it)."""
    # mkstemp creates the file readable and writable by this user only (0600).
    fd, name = tempfile.mkstemp(prefix="nimbridge-claude-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({**extra, "env": dict(env)}, out, indent=2)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)
