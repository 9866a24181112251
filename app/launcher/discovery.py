"""Finding Claude Code: `claude` on PATH, then the places its installers put it.

Pure where it can be: the search takes PATH, the home folder, the platform and
the environment as arguments, so tests give it fake trees.
"""

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

INSTALL_COMMAND = "npm install -g @anthropic-ai/claude-code"


@dataclass(frozen=True, slots=True)
class ClaudeCode:
    path: Path
    version: str | None  # what `claude --version` said, None when it would not say


def candidate_paths(*, home: Path, platform: str, env: Mapping[str, str]) -> list[Path]:
    """Where Claude Code's installers put `claude`, beyond PATH, in search order."""
    name = "claude.cmd" if platform == "win32" else "claude"
    places = [home / ".claude" / "local" / name, home / ".local" / "bin" / name]
    prefix = env.get("NPM_CONFIG_PREFIX") or env.get("npm_config_prefix")
    if prefix:
        places.append(Path(prefix) / ("" if platform == "win32" else "bin") / name)
    if platform == "win32":
        appdata = env.get("APPDATA")
        if appdata:
            places.append(Path(appdata) / "npm" / name)
    else:
        places.append(home / ".npm-global" / "bin" / name)
        places.append(Path("/usr/local/bin") / name)
    if platform == "darwin":
        places += [Path("/opt/homebrew/bin") / name, Path("/usr/local/opt/node/bin") / name]
    return places


def find_claude(
    *,
    path: str | None = None,
    home: Path | None = None,
    platform: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Path | None:
    """The `claude` executable, or None."""
    env = os.environ if env is None else env
    platform = platform or sys.platform
    found = shutil.which("claude", path=path if path is not None else env.get("PATH"))
    if found:
        return Path(found)
    for candidate in candidate_paths(home=home or Path.home(), platform=platform, env=env):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def claude_version(executable: Path, timeout_s: float = 15.0) -> str | None:
    try:
        result = subprocess.run(
            [str(executable), "--version"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = result.stdout.strip().splitlines()
    return words[0] if result.returncode == 0 and words else None


def discover(*, path: str | None = None, home: Path | None = None) -> ClaudeCode | None:
    """Claude Code with its version, or None (then say: `INSTALL_COMMAND`)."""
    found = find_claude(path=path, home=home)
    return None if found is None else ClaudeCode(found, claude_version(found))
