"""app.launcher.environment: what Claude Code is given, and what it never is."""

import json
import stat
from pathlib import Path

import pytest

from app.config.settings import TierModels
from app.launcher.environment import (
    PLACEHOLDER_TOKEN,
    claude_code_env,
    process_env,
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
