"""app.config.settings: validated on load, saved atomically, unknown keys kept, no secrets."""

import json
import os
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from app.config.limits import RANGE_BY_SETTING
from app.config.settings import (
    Settings,
    SettingsError,
    TierModels,
    default_settings_path,
    load_settings,
    load_settings_or_set_aside,
    save_settings,
    set_aside,
    settings_from_mapping,
    settings_to_mapping,
    validate_settings,
)
from app.core.providers import ExplicitModel, Provider, ProviderKind

FULL = Settings(
    port=9000,
    require_proxy_key=True,
    providers=(
        Provider(
            "nvidia",
            ProviderKind.NVIDIA,
            "https://integrate.api.nvidia.com/v1",
            requests_per_minute=30,
        ),
        Provider(
            "cf",
            ProviderKind.CLOUDFLARE,
            "https://api.cloudflare.com/client/v4/accounts/abc123/ai/v1",
            account_id="abc123",
        ),
        Provider(
            "box",
            ProviderKind.CUSTOM,
            "http://10.0.0.5:8000/v1",
            models=(ExplicitModel("coder", remote_id="Qwen/Qwen3-Coder", display_name="C"),),
        ),
    ),
    default_provider="nvidia",
    tiers=TierModels(default="qwen/qwen3-coder-480b-a35b-instruct", haiku="box/coder"),
    fallbacks={"opus": "meta/llama-3.3-70b-instruct"},
    model_aliases={"mine": "box/coder"},
    capabilities={"box/coder": {"supports_tools": True}},
    ui={"theme": "dark"},
    web_search_backend="searxng",
    web_search_base_url="http://10.0.0.5:8888",
    web_fetch_enabled=False,
    web_fetch_max_chars=20_000,
    smooth_deltas=False,
)


def test_defaults_when_the_file_is_missing(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "nope.json")
    assert settings == Settings()
    assert settings.default.base_url == "https://integrate.api.nvidia.com/v1"


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "settings.json"
    save_settings(path, FULL)
    assert load_settings(path) == FULL
    text = path.read_text()
    assert json.loads(text)["providers"][1] == {
        "name": "cf",
        "kind": "cloudflare",
        "account_id": "abc123",
    }  # preset URLs are not written out: they follow the preset


def test_unknown_keys_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"port": 9001, "future_feature": {"x": 1}}))
    settings = load_settings(path)
    save_settings(path, validate_settings(Settings(port=9002), "t"))
    data = json.loads(path.read_text())
    assert settings.port == 9001
    assert data["future_feature"] == {"x": 1} and data["port"] == 9002


def test_a_crash_mid_save_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "settings.json"
    save_settings(path, Settings(port=1111))

    def crash(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        save_settings(path, Settings(port=2222))
    assert load_settings(path).port == 1111
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]  # no temp file left


def test_a_crash_while_writing_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "settings.json"
    save_settings(path, Settings(port=1111))

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # the process dies half-way through json.dump

    monkeypatch.setattr(json, "dump", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_settings(path, Settings(port=2222))
    assert load_settings(path).port == 1111
    assert len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        pytest.param([], "expected a JSON object", id="not-an-object"),
        pytest.param({"port": "80"}, "'port' must be a whole number", id="port-type"),
        pytest.param({"port": True}, "'port' must be a whole number", id="port-bool"),
        pytest.param(
            {"port": 70000},
            "'port' must be a whole number from 0 to 65535, got 70000",
            id="port-range",
        ),
        pytest.param(
            {"read_timeout_s": 0},
            "'read_timeout_s' must be a number from 0.1 to 86400 (seconds), got 0",
            id="timeout",
        ),
        pytest.param(
            {"upstream_deadline_s": -5},
            "'upstream_deadline_s' must be a number from 0.1",
            id="deadline",
        ),
        pytest.param(
            {"commit_window_s": -1}, "'commit_window_s' must be a number from 0", id="window"
        ),
        pytest.param({"providers": []}, "'providers' must name at least one", id="no-provider"),
        pytest.param({"providers": [5]}, "'providers[0]' must be an object", id="provider-type"),
        pytest.param({"providers": [{"kind": "nvidia"}]}, "'providers[0].name'", id="no-name"),
        pytest.param({"providers": [{"name": "a/b"}]}, "'providers[0].name'", id="slash-name"),
        pytest.param({"providers": [{"name": "a", "kind": "x"}]}, "'providers[0].kind'", id="kind"),
        pytest.param(
            {"providers": [{"name": "a", "kind": "custom"}]},
            "'providers[0].base_url' is needed",
            id="custom-needs-url",
        ),
        pytest.param(
            {"providers": [{"name": "a", "kind": "cloudflare"}]},
            "'providers[0].account_id'",
            id="cloudflare-needs-account",
        ),
        pytest.param(
            {"providers": [{"name": "a", "base_url": "ftp://x"}]},
            "'providers[0].base_url' must start with http",
            id="url-scheme",
        ),
        pytest.param(
            {"providers": [{"name": "a", "kind": "vllm", "models": [{"x": 1}]}]},
            "'providers[0].models[0].id'",
            id="model-id",
        ),
        pytest.param(
            {"providers": [{"name": "a", "kind": "vllm", "requests_per_minute": 0}]},
            "'providers[0].requests_per_minute'",
            id="budget",
        ),
        pytest.param(
            {"providers": [{"name": "a", "kind": "vllm"}, {"name": "a", "kind": "vllm"}]},
            "names provider 'a' twice",
            id="duplicate",
        ),
        pytest.param(
            {"default_provider": "nope"}, "'default_provider' must be one of", id="default-provider"
        ),
        pytest.param({"tiers": {"giant": "x"}}, "'tiers.giant' is not a tier", id="tier-name"),
        pytest.param({"tiers": {"opus": 1}}, "'tiers.opus' must be a string", id="tier-type"),
        pytest.param(
            {"tiers": {"default": " "}}, "'tiers.default' must not be empty", id="tier-empty"
        ),
        pytest.param(
            {"fallbacks": {"giant": "x"}}, "'fallbacks.giant' is not a tier", id="fallback-tier"
        ),
        pytest.param(
            {"fallbacks": {"opus": ""}}, "'fallbacks.opus' must be a non-empty", id="fallback-empty"
        ),
        pytest.param({"model_aliases": {"a": 3}}, "'model_aliases.a'", id="alias-type"),
        pytest.param(
            {"capabilities": {"m": 3}}, "'capabilities.m' must be an object", id="capabilities"
        ),
        pytest.param(
            {"retry_max_attempts": 0},
            "'retry_max_attempts' must be a whole number from 1",
            id="attempts",
        ),
        pytest.param(
            {"max_upstream_response_mb": 0},
            "'max_upstream_response_mb' must be a whole number from 1",
            id="upstream-response-cap",
        ),
        pytest.param(
            {"max_upstream_response_mb": "64"},
            "'max_upstream_response_mb' must be",
            id="upstream-response-cap-type",
        ),
        pytest.param({"log_level": "LOUD"}, "'log_level' must be one of", id="log-level"),
        pytest.param({"ui": []}, "'ui' must be an object", id="ui"),
        pytest.param(
            {"require_proxy_key": True, "pass_client_keys": True},
            "'pass_client_keys' cannot be true while require_proxy_key is true",
            id="pass-through-and-required-key",
        ),
        pytest.param({"pass_client_keys": "yes"}, "'pass_client_keys'", id="pass-through-type"),
        pytest.param(
            {"web_search_backend": "google"},
            "'web_search_backend' must be one of '', 'tavily', 'searxng', 'brave'",
            id="search-backend",
        ),
        pytest.param(
            {"web_search_backend": "searxng"},
            "'web_search_base_url' must name your SearXNG instance",
            id="searxng-needs-url",
        ),
        pytest.param(
            {"web_search_backend": "tavily", "web_search_base_url": "api.tavily.com"},
            "'web_search_base_url' must start with http",
            id="search-url-scheme",
        ),
        pytest.param({"web_fetch_enabled": "on"}, "'web_fetch_enabled'", id="fetch-enabled-type"),
        pytest.param({"smooth_deltas": 1}, "'smooth_deltas'", id="smooth-deltas-type"),
        pytest.param(
            {"web_fetch_max_chars": 10},
            "'web_fetch_max_chars' must be a whole number from 1000",
            id="fetch",
        ),
        pytest.param(
            {"providers": [{"name": "web-search-tavily", "kind": "vllm"}]},
            "names starting with 'web-search-' are kept for web search keys",
            id="provider-named-like-a-search-key",
        ),
        pytest.param(
            {"image_urls": "download"},
            "'image_urls' must be one of pass, fetch, refuse",
            id="image-urls",
        ),
    ],
)
def test_validation_names_file_and_key(data: object, needle: str) -> None:
    with pytest.raises(SettingsError) as raised:
        settings_from_mapping(data, where="/x/settings.json")
    assert str(raised.value).startswith("/x/settings.json: ")
    assert needle in str(raised.value)


def test_web_tools_are_off_until_a_backend_is_chosen() -> None:
    defaults = Settings()
    assert defaults.web_search_backend == "" and defaults.web_search_base_url == ""
    assert defaults.web_fetch_enabled and defaults.web_fetch_max_chars == 100_000
    chosen = settings_from_mapping(
        {"web_search_backend": "brave", "web_search_base_url": " https://search.example/ "}
    )
    assert chosen.web_search_base_url == "https://search.example"  # no trailing slash


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text("{nope")
    with pytest.raises(SettingsError, match=f"{path}: not valid JSON"):
        load_settings(path)


def test_command_line_overrides() -> None:
    changed = Settings().with_overrides(upstream_url="http://127.0.0.1:9/v1", model="m", port=1)
    assert changed.default.base_url == "http://127.0.0.1:9/v1"
    assert changed.tiers.default == "m" and changed.port == 1
    assert changed.default.kind is ProviderKind.NVIDIA  # no kind given: the preset stays
    repointed = Settings().with_overrides(
        upstream_url="http://127.0.0.1:9/v1", upstream_kind=ProviderKind.CUSTOM
    )
    assert repointed.default.kind is ProviderKind.CUSTOM and repointed.default.name == "nvidia"
    with pytest.raises(SettingsError, match="'upstream_url'"):
        validate_settings(Settings().with_overrides(upstream_url="ftp://x"), "command line")


def test_the_default_path_is_the_platforms(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_settings_path() == tmp_path / "nimbridge" / "settings.json"


def test_no_secret_field_exists() -> None:
    """Keys live in the keychain: nothing in the settings' JSON form can hold one."""
    text = json.dumps(settings_to_mapping(FULL)).lower()
    for word in ("api_key", "apikey", "token", "secret", "password"):
        assert word not in text


# ------------------------------------------------------------------ broken files


@pytest.mark.parametrize(
    "text",
    ['{"port": 8787,', '{"port": "eighty"}', "[]", '{"providers": []}'],
    ids=["truncated JSON", "wrong type", "not an object", "invalid value"],
)
def test_a_broken_file_is_set_aside_and_the_app_starts_on_defaults(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "settings.json"
    path.write_text(text)
    settings, warning = load_settings_or_set_aside(path)
    assert settings == Settings()
    kept = list(tmp_path.glob("settings.json.broken-*"))
    assert len(kept) == 1 and kept[0].read_text() == text  # nothing lost
    assert not path.exists()
    assert warning is not None and str(path) in warning and kept[0].name in warning
    # A second broken file in the same second never overwrites the first copy.
    path.write_text(text)
    load_settings_or_set_aside(path)
    assert len(list(tmp_path.glob("settings.json.broken-*"))) == 2


def test_a_good_file_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    save_settings(path, Settings(port=9999))
    settings, warning = load_settings_or_set_aside(path)
    assert settings.port == 9999 and warning is None
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]


def test_saving_over_a_file_that_is_not_json_keeps_that_file(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text('{"port": 8787, "my_note": "hand-edited but broken",')
    save_settings(path, Settings(port=9000))
    assert json.loads(path.read_text())["port"] == 9000
    (kept,) = tmp_path.glob("settings.json.broken-*")
    assert "hand-edited" in kept.read_text()


def test_set_aside_names_the_time(tmp_path: Path) -> None:
    import datetime

    path = tmp_path / "settings.json"
    path.write_text("{")
    when = datetime.datetime(2026, 11, 21, 8, 30, 5, tzinfo=datetime.UTC)
    assert set_aside(path, now=when).name == "settings.json.broken-20261121T083005Z"


# ------------------------------------------------------------------ hostile files (issue 17)

GOOD_PROVIDER = {"name": "box", "kind": "vllm", "base_url": "http://10.0.0.5:8000/v1"}
HOSTILE_TEXTS = {
    "nan-ping": '{"ping_interval_s": NaN}',
    "infinite-timeout": '{"read_timeout_s": Infinity}',
    "negative-infinity": '{"retry_max_wait_s": -Infinity}',
    "1e400-deadline": '{"upstream_deadline_s": 1e400}',
    "huge-whole-number": '{"port": 1' + "0" * 1000 + "}",
    "huge-float-as-int": '{"connect_timeout_s": 1' + "0" * 400 + "}",
    "tiny-ping": '{"ping_interval_s": 0.0001}',
    "many-attempts": '{"retry_max_attempts": 1000000}',
    "huge-request-limit": '{"max_request_mb": 100000000}',
    "nan-in-ui": '{"ui": {"zoom": NaN}}',
    "duplicate-key": '{"port": 8787, "port": 1}',
    "deep-nesting": "[" * 100_000 + "]" * 100_000,
    "deep-ui": '{"ui": {"a": ' + "[" * 200 + "]" * 200 + "}}",  # saving it would recurse
    "lone-surrogate": '{"ui": {"note": "\\ud800"}}',
    "not-an-object": "[1, 2]",
    "newline-in-provider-name": json.dumps(
        {"providers": [{**GOOD_PROVIDER, "name": "box\nINFO forged line"}]}
    ),
    "ansi-in-provider-name": json.dumps({"providers": [{**GOOD_PROVIDER, "name": "\x1b[31mbox"}]}),
    "c1-in-provider-name": json.dumps({"providers": [{**GOOD_PROVIDER, "name": "box\x85"}]}),
    "del-in-provider-name": json.dumps({"providers": [{**GOOD_PROVIDER, "name": "box\x7f"}]}),
    "zero-width-in-provider-name": json.dumps(
        {"providers": [{**GOOD_PROVIDER, "name": "box\u200b"}]}
    ),
    "long-provider-name": json.dumps({"providers": [{**GOOD_PROVIDER, "name": "b" * 65}]}),
    "newline-in-tier": json.dumps({"tiers": {"default": "m\r\nINFO forged"}}),
    "escape-in-alias-name": json.dumps({"model_aliases": {"a\x1b[2J": "m"}}),
    "escape-in-fallback": json.dumps({"fallbacks": {"opus": "m\x1b]0;title\x07"}}),
    "escape-in-model-id": json.dumps({"providers": [{**GOOD_PROVIDER, "models": [{"id": "m\n"}]}]}),
    "escape-in-capability-model": json.dumps({"capabilities": {"m\n": {"supports_tools": True}}}),
    "huge-capability-number": json.dumps({"capabilities": {"m": {"max_output_tokens": 10**15}}}),
    "huge-rate": json.dumps({"providers": [{**GOOD_PROVIDER, "requests_per_minute": 10**12}]}),
    "url-without-host": json.dumps({"providers": [{**GOOD_PROVIDER, "base_url": "http:///v1"}]}),
    "url-with-bad-port": json.dumps(
        {"providers": [{**GOOD_PROVIDER, "base_url": "http://h:99999999/v1"}]}
    ),
    "url-with-newline": json.dumps(
        {"providers": [{**GOOD_PROVIDER, "base_url": "http://h/v1\nHost: evil"}]}
    ),
    "account-id-with-path": json.dumps(
        {"providers": [{"name": "cf", "kind": "cloudflare", "account_id": "../../x?"}]}
    ),
    "search-url-with-escape": json.dumps(
        {"web_search_backend": "searxng", "web_search_base_url": "http://h\x1b[0m"}
    ),
    "host-with-newline": json.dumps({"host": "127.0.0.1\n"}),
    "allowed-host-with-escape": json.dumps({"allowed_hosts": ["a\x1b"]}),
}


@pytest.mark.parametrize("text", HOSTILE_TEXTS.values(), ids=HOSTILE_TEXTS.keys())
def test_a_hostile_file_is_one_settings_error_line_naming_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "settings.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    with pytest.raises(SettingsError) as raised:
        load_settings(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ")
    assert message.isprintable() and len(message) <= 600  # one line, nothing forged


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        pytest.param(
            b'{"port": "\xff\xfe"}', "not UTF-8 text \\(byte 0xff at offset 10\\)", id="utf8"
        ),
        pytest.param(b"\xff\xfe{\x00}\x00", "not UTF-8 text", id="utf16"),
        pytest.param(b" " * (2 * 1024 * 1024) + b"{}", "too large", id="huge"),
    ],
)
def test_bytes_that_are_no_settings_file_are_refused(
    tmp_path: Path, raw: bytes, needle: str
) -> None:
    path = tmp_path / "settings.json"
    path.write_bytes(raw)
    with pytest.raises(SettingsError, match=needle):
        load_settings(path)


def test_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_bytes(b'\xef\xbb\xbf{"port": 9001}')  # Notepad's UTF-8
    assert load_settings(path).port == 9001


def test_a_directory_or_a_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    folder = tmp_path / "settings.json"
    folder.mkdir()
    with pytest.raises(SettingsError, match="not a regular file"):
        load_settings(folder)
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "fifo.json"
        os.mkfifo(fifo)  # opening it would block until a writer came
        with pytest.raises(SettingsError, match="not a regular file"):
            load_settings(fifo)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads all")
def test_an_unreadable_file_is_a_settings_error(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text("{}")
    path.chmod(0)
    try:
        with pytest.raises(SettingsError, match="cannot read"):
            load_settings(path)
    finally:
        path.chmod(0o600)


@pytest.mark.parametrize(
    "text",
    [HOSTILE_TEXTS[name] for name in ("nan-ping", "deep-nesting", "duplicate-key")],
    ids=["nan", "deep", "duplicate"],
)
def test_the_tray_sets_a_hostile_file_aside(tmp_path: Path, text: str) -> None:
    path = tmp_path / "settings.json"
    path.write_text(text)
    settings, warning = load_settings_or_set_aside(path)
    assert settings == Settings() and warning is not None and "\n" not in warning
    (kept,) = tmp_path.glob("settings.json.broken-*")
    assert kept.read_text() == text


def test_the_tray_sets_aside_bytes_that_are_not_text_and_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_bytes(b"\xff{}")
    assert load_settings_or_set_aside(path)[0] == Settings()
    path.mkdir()
    settings, warning = load_settings_or_set_aside(path)
    assert settings == Settings() and warning is not None and "not a regular file" in warning
    assert len(list(tmp_path.glob("settings.json.broken-*"))) == 2


def _numeric_fields() -> list[str]:
    defaults = Settings()
    return [
        f.name
        for f in fields(Settings)
        if isinstance(getattr(defaults, f.name), int | float)
        and not isinstance(getattr(defaults, f.name), bool)
    ]


def test_every_number_in_settings_has_a_range_in_the_table() -> None:
    assert set(_numeric_fields()) <= set(RANGE_BY_SETTING)
    assert "providers[].requests_per_minute" in RANGE_BY_SETTING
    for name in ("max_output_tokens", "context_window"):
        assert f"capabilities.*.{name}" in RANGE_BY_SETTING
    for name in _numeric_fields():  # the defaults themselves are in range
        assert RANGE_BY_SETTING[name].problem(getattr(Settings(), name)) is None


@pytest.mark.parametrize("name", _numeric_fields())
def test_each_number_takes_its_range_and_refuses_the_rest(name: str) -> None:
    limits = RANGE_BY_SETTING[name]
    low, high = limits.minimum, limits.maximum
    assert getattr(settings_from_mapping({name: low}), name) == low
    assert getattr(settings_from_mapping({name: high}), name) == high
    step = 1 if limits.whole else 0.01
    for bad in (low - step, high + step, float("nan"), float("inf"), -float("inf")):
        with pytest.raises(SettingsError) as raised:
            settings_from_mapping({name: bad}, where="f")
        message = str(raised.value)
        assert f"'{name}' must be" in message and limits.words() in message
        assert f"got {bad!r}" in message  # the value and the range, named
        with pytest.raises(SettingsError):  # built in code (the dialog, a flag): the same
            changed: dict[str, Any] = {name: bad}
            validate_settings(replace(Settings(), **changed), "dialog")


def test_numbers_come_back_as_their_kind() -> None:
    loaded = settings_from_mapping({"read_timeout_s": 30, "port": 9000})
    assert isinstance(loaded.read_timeout_s, float) and loaded.read_timeout_s == 30.0
    with pytest.raises(SettingsError, match="'port' must be a whole number"):
        settings_from_mapping({"port": 80.5})
    with pytest.raises(SettingsError, match="'port' must be a whole number"):
        validate_settings(Settings(port=80.5), "dialog")  # type: ignore[arg-type]


def test_command_line_flags_meet_the_files_rules() -> None:
    with pytest.raises(SettingsError, match="'port' must be a whole number from 0 to 65535"):
        Settings().with_overrides(port=70000)
    with pytest.raises(SettingsError, match="'upstream_url'"):
        Settings().with_overrides(upstream_url="http://h/v1\r\nX: y")
    with pytest.raises(SettingsError, match="'tiers.default'"):
        Settings().with_overrides(model="m\x1b[31m")


def test_a_settings_error_is_always_one_line() -> None:
    error = SettingsError("a\nb\x1b[31mc\u2028d" + "x" * 5000)
    assert str(error).isprintable() and str(error).startswith("a\\nb\\x1b[31mc\\u2028d")
    assert len(str(error)) <= 600


def test_names_may_be_unicode_and_hold_spaces() -> None:
    settings = settings_from_mapping(
        {
            "providers": [{**GOOD_PROVIDER, "name": "mein Rechner é"}],
            "tiers": {"default": "mein Rechner é/qwen3:8b"},
        }
    )
    assert settings.default_provider == "mein Rechner é"


def test_many_providers_validate_in_linear_time() -> None:
    providers = [{**GOOD_PROVIDER, "name": f"p{i}"} for i in range(20_000)]
    settings = settings_from_mapping({"providers": providers})  # quadratic: minutes
    assert len(settings.providers) == 20_000
