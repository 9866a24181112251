"""Server settings: a frozen value, loaded from a JSON file and overridden by flags.

Invariant: no secret is ever a field here. The proxy key and the upstream key
travel separately (`app.config.secrets`), so nothing that saves settings can
write one to disk.
"""

import json
import os
import tempfile
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from app.core.models import DEFAULT_UPSTREAM_MODEL, ModelAliases

NVIDIA_BASE_URL = "https://integrate.api.nvidia.com/v1"


class SettingsError(Exception):
    """A settings file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8787
    upstream_url: str = NVIDIA_BASE_URL
    model: str = DEFAULT_UPSTREAM_MODEL  # what claude-* names map to by default
    opus_model: str | None = None
    sonnet_model: str | None = None
    haiku_model: str | None = None
    model_aliases: dict[str, str] = field(default_factory=dict)  # exact client name -> model
    # Retry 429/503/refused connections this long before the first byte goes out.
    commit_window_s: float = 0.8
    connect_timeout_s: float = 10.0
    # Longest silence tolerated from the upstream (reasoning models think for minutes).
    read_timeout_s: float = 600.0
    ping_interval_s: float = 5.0
    shutdown_grace_s: float = 10.0
    log_level: str = "INFO"

    def aliases(self) -> ModelAliases:
        return ModelAliases(
            default=self.model,
            opus=self.opus_model,
            sonnet=self.sonnet_model,
            haiku=self.haiku_model,
            exact=dict(self.model_aliases),
        )

    def with_overrides(self, **overrides: Any) -> "Settings":
        """A copy with the non-None overrides applied (command-line flags)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def validate_settings(settings: Settings, where: str) -> Settings:
    """The same settings, normalised, or a SettingsError naming `where` and the key."""

    def bad(key: str, why: str) -> SettingsError:
        return SettingsError(f"{where}: '{key}' {why}")

    if not 0 <= settings.port <= 65535:
        raise bad("port", f"must be 0..65535, got {settings.port}")
    if not settings.upstream_url.startswith(("http://", "https://")):
        raise bad(
            "upstream_url", f"must start with http:// or https://, got {settings.upstream_url!r}"
        )
    if not settings.model.strip():
        raise bad("model", "must not be empty")
    if settings.commit_window_s < 0:
        raise bad("commit_window_s", f"must be 0 or more seconds, got {settings.commit_window_s}")
    for name in ("connect_timeout_s", "read_timeout_s", "ping_interval_s", "shutdown_grace_s"):
        if getattr(settings, name) <= 0:
            raise bad(name, f"must be a positive number of seconds, got {getattr(settings, name)}")
    if settings.log_level.upper() not in _LOG_LEVELS:
        raise bad("log_level", f"must be one of {', '.join(_LOG_LEVELS)}")
    return replace(settings, log_level=settings.log_level.upper())


def settings_from_mapping(data: object, *, where: str = "settings") -> Settings:
    """Validate a parsed JSON object; unknown keys are ignored here (kept on save)."""
    if not isinstance(data, dict):
        raise SettingsError(f"{where}: expected a JSON object at the top level")
    values: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name not in data:
            continue
        value = data[f.name]
        default = f.default if f.default_factory is MISSING else f.default_factory()
        if not _type_matches(value, default, f.type):
            raise SettingsError(f"{where}: '{f.name}' has the wrong type ({type(value).__name__})")
        values[f.name] = float(value) if isinstance(default, float) else value
    return validate_settings(Settings(**values), where)


def _type_matches(value: object, default: object, declared: object) -> bool:
    if value is None:
        return "None" in str(declared)
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    if isinstance(default, dict):
        return isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        )
    if default is None:  # str | None fields
        return isinstance(value, str)
    return isinstance(value, type(default))


def load_settings(path: Path) -> Settings:
    """Settings from `path`; defaults when it does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Settings()
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SettingsError(f"{path}: not valid JSON ({exc})") from exc
    return settings_from_mapping(data, where=str(path))


def save_settings(path: Path, settings: Settings) -> None:
    """Write atomically (temp file + rename) and keep keys this version does not know."""
    existing: dict[str, Any] = {}
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            existing = loaded
    except (OSError, ValueError):
        pass
    existing.update(asdict(settings))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(existing, out, indent=2, sort_keys=True)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
