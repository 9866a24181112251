"""Settings files under arbitrary bytes, arbitrary JSON and hostile values in a valid
file: `load_settings` returns Settings whose every number is finite and in its range
and whose every name is plain, or raises SettingsError (one line); never anything else."""

import copy
import json
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from app.config.limits import CAPABILITY_RANGE_PREFIX, RANGE_BY_SETTING
from app.config.settings import Settings, SettingsError, load_settings
from tests.fuzz import FUZZ
from tests.fuzz.strategies import JSON_VALUES

VALID_FILE: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 8787,
    "allowed_hosts": ["my-laptop.lan"],
    "allowed_origins": ["https://app.example"],
    "max_request_mb": 32,
    "commit_window_s": 0.8,
    "read_timeout_s": 600,
    "ping_interval_s": 5.0,
    "retry_max_attempts": 4,
    "web_search_backend": "searxng",
    "web_search_base_url": "http://10.0.0.5:8888",
    "web_fetch_max_chars": 100000,
    "providers": [
        {"name": "nvidia", "kind": "nvidia", "requests_per_minute": 40},
        {
            "name": "box",
            "kind": "custom",
            "base_url": "http://10.0.0.5:8000/v1",
            "models": [{"id": "coder", "remote_id": "Qwen/Qwen3-Coder", "display_name": "C"}],
        },
        {"name": "cf", "kind": "cloudflare", "account_id": "abc123"},
    ],
    "default_provider": "nvidia",
    "tiers": {"default": "qwen/qwen3-coder-480b-a35b-instruct", "haiku": "box/coder"},
    "fallbacks": {"opus": "meta/llama-3.3-70b-instruct"},
    "model_aliases": {"mine": "box/coder"},
    "capabilities": {"box/coder": {"supports_tools": True, "max_output_tokens": 8192}},
    "ui": {"recent_folders": ["/tmp"], "start_server_at_launch": True},
    "log_level": "INFO",
}

# What an adversary puts where a value goes. Raw JSON text, so NaN and 1e400 reach the
# parser as written (json.dumps would write NaN too, but not 1e400 or a 5000-digit number).
HOSTILE_TEXTS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "1e-400",
    "-0.0",
    "0",
    "-1",
    "1" + "0" * 30,
    "9" * 5000,
    "true",
    "null",
    '""',
    '"\\u0000"',
    '"box\\nINFO forged line"',
    '"\\u001b[31mred\\u001b[0m"',
    '"\\u0085"',
    '"\\u007f"',
    '"\\u200b"',
    '"\\u2028"',
    '"\\ud800"',
    '"' + "x" * 5000 + '"',
    '"http://"',
    '"http://h:99999999/v1"',
    '"ftp://h/v1"',
    '"http://h/v1\\r\\nHost: evil"',
    "[" * 60 + "]" * 60,
    "{}",
    "[]",
]
HOSTILE_MARK = "\x00hostile\x00"  # replaced in the dumped text by a hostile text


def places(value: Any) -> Iterator[tuple[dict[str, Any] | list[Any], Any]]:
    """Every (container, key) inside a JSON value, depth first."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield value, key
            yield from places(inner)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield value, index
            yield from places(inner)


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    """The valid file with one to three values replaced: by hostile text, by any JSON,
    or removed; a key may become a hostile string too."""
    data = copy.deepcopy(VALID_FILE)
    hostile: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        container, key = draw(st.sampled_from(list(places(data))))
        action = draw(st.sampled_from(["hostile", "json", "delete", "key"]))
        if action == "hostile":
            container[key] = HOSTILE_MARK
            hostile.append(draw(st.sampled_from(HOSTILE_TEXTS)))
        elif action == "json":
            container[key] = draw(JSON_VALUES)
        elif action == "key" and isinstance(container, dict):
            container[draw(st.sampled_from(["a\nb", "\x1b[2J", "\ud800", ""]))] = container.pop(key)
        else:
            del container[key]
        if not list(places(data)):
            break
    text = json.dumps(data)
    for replacement in hostile:
        text = text.replace(json.dumps(HOSTILE_MARK), replacement, 1)
    return text.encode("utf-8", "surrogatepass")


ANY_JSON_TEXT = JSON_VALUES.map(lambda value: json.dumps(value).encode())
FILES = st.one_of(mutated_files(), mutated_files(), ANY_JSON_TEXT, st.binary(max_size=200))


def numbers_in(value: Any) -> Iterator[int | float]:
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield value
    elif isinstance(value, dict):
        for inner in value.values():
            yield from numbers_in(inner)
    elif isinstance(value, list | tuple):
        for inner in value:
            yield from numbers_in(inner)


def assert_sound(settings: Settings) -> None:
    for name, limits in RANGE_BY_SETTING.items():
        if name.isidentifier():
            assert limits.problem(getattr(settings, name)) is None, name
    rate = RANGE_BY_SETTING["providers[].requests_per_minute"]
    for provider in settings.providers:
        assert provider.requests_per_minute is None or not rate.problem(
            provider.requests_per_minute
        )
        assert provider.name.isprintable() and "/" not in provider.name
        assert provider.base_url.startswith(("http://", "https://"))
        assert provider.base_url.isprintable()
        for model in provider.models:
            assert all(t is None or t.isprintable() for t in (model.id, model.remote_id))
    for model_id, overrides in settings.capabilities.items():
        assert model_id.isprintable()
        for table_key, limits in RANGE_BY_SETTING.items():
            field_name = table_key.removeprefix(CAPABILITY_RANGE_PREFIX)
            if table_key.startswith(CAPABILITY_RANGE_PREFIX) and overrides.get(field_name):
                assert limits.problem(overrides[field_name]) is None
    tiers = [settings.tiers.default, settings.tiers.opus, settings.tiers.haiku]
    models = [*settings.model_aliases, *settings.model_aliases.values()]
    assert all(m is None or m.isprintable() for m in [*tiers, *models])
    assert all(m.isprintable() for m in settings.fallbacks.values())
    assert all(math.isfinite(n) for n in numbers_in(settings.ui))  # kept and saved again


@FUZZ
@given(raw=FILES)
def test_load_settings_returns_sound_settings_or_one_settings_error(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "settings.json"
        path.write_bytes(raw)
        try:
            settings = load_settings(path)
        except SettingsError as exc:
            message = str(exc)
            assert message.startswith(f"{path}: ") and message.isprintable()
            return
    assert_sound(settings)
