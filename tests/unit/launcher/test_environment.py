"""app.launcher.environment: what Claude Code is given, and what it never is."""

import json
import stat
from pathlib import Path

import pytest

from app.config.settings import TierModels
from app.launcher.environment import (
    LOOPBACK_NO_PROXY,
    PLACEHOLDER_TOKEN,
    claude_code_env,
    merged_no_proxy,
    no_proxy_settings_arguments,
    process_env,
    settings_no_proxy_values,
    user_no_proxy_values,
    write_settings_file,
)

TIERS = TierModels(
    default="qwen/qwen3-coder-480b-a35b-instruct",
    opus="deepseek-ai/deepseek-v3.1",
    haiku="meta/llama-3.3-70b-instruct",
    subagent="local/qwen3:8b",
)


def test_every_variable() -> None:
    env = claude_code_env(
        base_url="http://127.0.0.1:8787",
        proxy_key="local-proxy-key",
        tiers=TIERS,
        context_window=262144,
        timeout_s=600,
    )
    assert env == {
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:8787",
        "ANTHROPIC_AUTH_TOKEN": "local-proxy-key",
        "ANTHROPIC_MODEL": "qwen/qwen3-coder-480b-a35b-instruct",
        "ANTHROPIC_DEFAULT_OPUS_MODEL": "deepseek-ai/deepseek-v3.1",
        "ANTHROPIC_DEFAULT_SONNET_MODEL": "qwen/qwen3-coder-480b-a35b-instruct",  # unset tier
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": "meta/llama-3.3-70b-instruct",
        "CLAUDE_CODE_SUBAGENT_MODEL": "local/qwen3:8b",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_AUTO_COMPACT_WINDOW": "262144",
        "API_TIMEOUT_MS": "600000",
        "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1",  # `/model` lists NimBridge's
        "NO_PROXY": "127.0.0.1,localhost,::1,[::1]",
        "no_proxy": "127.0.0.1,localhost,::1,[::1]",
    }


@pytest.mark.parametrize(("proxy_key", "token"), [(None, PLACEHOLDER_TOKEN), ("k-1", "k-1")])
def test_token_is_the_proxy_key_or_a_placeholder(proxy_key: str | None, token: str) -> None:
    env = claude_code_env(
        base_url="http://x",
        proxy_key=proxy_key,
        tiers=TierModels(),
        context_window=None,
        timeout_s=1.5,
    )
    assert env["ANTHROPIC_AUTH_TOKEN"] == token
    assert "CLAUDE_CODE_AUTO_COMPACT_WINDOW" not in env  # unknown window: Claude's own
    assert env["API_TIMEOUT_MS"] == "1500"


def test_the_process_environment_drops_a_real_anthropic_key() -> None:
    base = {"PATH": "/usr/bin", "ANTHROPIC_API_KEY": "sk-ant-real", "NVIDIA_API_KEY": "nvapi-x"}
    extra = claude_code_env(
        base_url="http://x", proxy_key=None, tiers=TierModels(), context_window=None, timeout_s=1
    )
    env = process_env(base, extra)
    assert "ANTHROPIC_API_KEY" not in env and env["PATH"] == "/usr/bin"
    assert env["ANTHROPIC_BASE_URL"] == "http://x"
    assert "nvapi-x" not in json.dumps(extra)  # the provider key is never handed over


def test_settings_file_is_private_and_holds_the_env(tmp_path: Path) -> None:
    env = {"ANTHROPIC_BASE_URL": "http://x", "ANTHROPIC_AUTH_TOKEN": "t"}
    path = write_settings_file(env, tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"env": env}


LOOPBACK = ",".join(LOOPBACK_NO_PROXY)


@pytest.mark.parametrize(
    ("values", "merged"),
    [
        pytest.param((), LOOPBACK, id="none"),
        pytest.param((None, ""), LOOPBACK, id="empty"),
        pytest.param(("corp.example,.internal",), f"corp.example,.internal,{LOOPBACK}", id="kept"),
        pytest.param(
            ("a, b", "b c", "localhost"),
            "a,b,c,localhost,127.0.0.1,::1,[::1]",
            id="commas-spaces-once-each",
        ),
        pytest.param(("127.0.0.1:8080",), f"127.0.0.1:8080,{LOOPBACK}", id="host-port-kept"),
        pytest.param(("*",), f"*,{LOOPBACK}", id="star-kept"),
    ],
)
def test_no_proxy_merges_never_replaces(values: tuple[str | None, ...], merged: str) -> None:
    assert merged_no_proxy(*values) == merged


def test_the_users_no_proxy_from_environment_and_settings_files(tmp_path: Path) -> None:
    config = tmp_path / "claude-config"
    project = tmp_path / "project"
    (project / ".claude").mkdir(parents=True)
    config.mkdir()
    (config / "settings.json").write_text(json.dumps({"env": {"NO_PROXY": "user.example"}}))
    (project / ".claude" / "settings.json").write_text(
        json.dumps({"env": {"no_proxy": "project.example", "HTTPS_PROXY": "http://p:3128"}})
    )
    (project / ".claude" / "settings.local.json").write_text("{not json")  # skipped
    environ = {"CLAUDE_CONFIG_DIR": str(config), "no_proxy": "env.example", "NO_PROXY": ""}
    assert settings_no_proxy_values(environ, project) == ["user.example", "project.example"]
    values = user_no_proxy_values(environ, project)
    assert values == ["env.example", "user.example", "project.example"]
    env = claude_code_env(
        base_url="http://127.0.0.1:1",
        proxy_key=None,
        tiers=TIERS,
        context_window=None,
        timeout_s=1,
        user_no_proxy=values,
    )
    expected = f"env.example,user.example,project.example,{LOOPBACK}"
    assert env["NO_PROXY"] == env["no_proxy"] == expected
    assert settings_no_proxy_values({"CLAUDE_CONFIG_DIR": str(tmp_path / "none")}, None) == []
    (config / "settings.json").write_text(json.dumps(["not", "an", "object"]))
    assert settings_no_proxy_values({"CLAUDE_CONFIG_DIR": str(config)}, None) == []


def test_no_proxy_as_settings_arguments() -> None:
    env = {"NO_PROXY": "a,127.0.0.1", "no_proxy": "a,127.0.0.1", "ANTHROPIC_AUTH_TOKEN": "secret"}
    flag, value = no_proxy_settings_arguments(env)
    assert flag == "--settings"
    assert json.loads(value) == {"env": {"NO_PROXY": "a,127.0.0.1", "no_proxy": "a,127.0.0.1"}}
    assert "secret" not in value  # a command line anyone may read
    assert no_proxy_settings_arguments({"X": "1"}) == []


# ---------------------------------------------------------------- status line, project header


def test_project_header_follows_the_users_own_headers() -> None:
    from urllib.parse import unquote

    from app.launcher.environment import CUSTOM_HEADERS_ENV, project_headers

    headers = project_headers(Path("/home/ü/my project"), "X-Team: a\n\n")
    lines = headers[CUSTOM_HEADERS_ENV].split("\n")
    assert lines[0] == "X-Team: a"
    name, _, value = lines[1].partition(": ")
    assert name == "X-NimBridge-Project" and value.isascii()
    assert unquote(value) == "/home/ü/my project"


def test_status_line_is_ours_unless_the_user_has_one(tmp_path: Path) -> None:
    from app.launcher.environment import (
        no_proxy_settings_arguments,
        status_line_setting,
        statusline_command,
        user_sets_status_line,
    )

    environ = {"CLAUDE_CONFIG_DIR": str(tmp_path / "config")}
    project = tmp_path / "project"
    (project / ".claude").mkdir(parents=True)
    assert not user_sets_status_line(environ, project)
    (project / ".claude" / "settings.local.json").write_text('{"statusLine": {"command": "x"}}')
    assert user_sets_status_line(environ, project)
    command = statusline_command("/opt/py 3/python", frozen=False)
    assert command == "'/opt/py 3/python' -m app statusline"
    assert statusline_command("/opt/nimbridge/nimbridge", frozen=True).endswith(" statusline")
    extra = {"statusLine": status_line_setting(command)}
    args = no_proxy_settings_arguments({"NO_PROXY": "a"}, no_proxy=False, extra=extra)
    assert json.loads(args[1]) == extra  # no env: NO_PROXY not asked for
    both = json.loads(no_proxy_settings_arguments({"NO_PROXY": "a"}, extra=extra)[1])
    assert both["env"] == {"NO_PROXY": "a"} and both["statusLine"]["command"] == command
    assert no_proxy_settings_arguments({}, no_proxy=False) == []
