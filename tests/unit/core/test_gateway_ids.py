"""app.core.gateway_ids: the `claude-nim/...` ids Claude Code's `/model` keeps."""

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from app.core.capabilities import ModelQuirks
from app.core.catalog import CatalogModel
from app.core.gateway_ids import (
    GATEWAY_PREFIX,
    client_model_id,
    from_gateway_id,
    is_gateway_id,
    picker_display_name,
    picker_provider_label,
    readable_model_name,
    to_gateway_id,
)
from app.core.providers import Provider, ProviderKind
from app.core.routing import Router
from app.core.tiers import tier_of

# Claude Code 2.1.332 keeps a discovered model only when its id matches this.
CLAUDE_CODE_FILTER = re.compile(r"(claude|anthropic)", re.IGNORECASE)

ODD_MODEL_IDS = [
    "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
    "nvidia/llama-3.1-nemotron-70b",
    "qwen3:8b",
    "deepseek-ai/deepseek-v3.1",
    "anthropic/claude-3-haiku",  # tier words inside must not make a tier
    "a//b/",
    "%2F",
    "Qwen/Qwen3-Coder-480B-A35B-Instruct",
]


@pytest.mark.parametrize(
    ("provider", "model_id", "gateway_id"),
    [
        ("nvidia", "qwen/qwen3-coder-480b-a35b-instruct",
         "claude-nim/nvidia/qwen/qwen3-coder-480b-a35b-instruct"),
        ("cf", "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
         "claude-nim/cf/@cf/meta/llama-3.3-70b-instruct-fp8-fast"),
        ("local", "qwen3:8b", "claude-nim/local/qwen3:8b"),
        ("my/provider", "m", "claude-nim/my%2Fprovider/m"),
        ("100%", "m", "claude-nim/100%25/m"),
        ("a%2Fb", "m", "claude-nim/a%252Fb/m"),
    ],
)  # fmt: skip
def test_encoding_table(provider: str, model_id: str, gateway_id: str) -> None:
    assert to_gateway_id(provider, model_id) == gateway_id
    assert from_gateway_id(gateway_id) == (provider, model_id)


@pytest.mark.parametrize(
    ("name", "decoded"),
    [
        ("CLAUDE-NIM/nvidia/m", ("nvidia", "m")),  # a client may lower- or upper-case
        ("claude-nim/a%2fb/m", ("a/b", "m")),
        ("claude-nim/", None),
        ("claude-nim/nvidia", None),
        ("claude-nim/nvidia/", None),
        ("claude-nim//m", None),
        ("claude-nimble/x/y", None),
        ("claude-opus-4-5", None),
        ("nvidia/m", None),
        ("", None),
    ],
)
def test_decoding_table(name: str, decoded: tuple[str, str] | None) -> None:
    assert from_gateway_id(name) == decoded
    assert is_gateway_id(name) is (decoded is not None)


@given(
    provider=st.text(min_size=1, max_size=20),
    model_id=st.text(min_size=1, max_size=60),
)
@example(provider="nvidia", model_id="nvidia/llama-3.1-nemotron-70b")
@example(provider="cf", model_id="@cf/meta/llama-3.3-70b-instruct-fp8-fast")
@example(provider="%25", model_id="x:y.z")
@example(provider="a/%2F/", model_id="/")
def test_round_trip_for_any_provider_and_model(provider: str, model_id: str) -> None:
    gateway_id = to_gateway_id(provider, model_id)
    assert from_gateway_id(gateway_id) == (provider, model_id)
    assert CLAUDE_CODE_FILTER.search(gateway_id)  # Claude Code keeps it
    assert tier_of(gateway_id) is None  # and NimBridge never takes it for a tier


@pytest.mark.parametrize("model_id", ODD_MODEL_IDS)
def test_odd_model_ids_survive(model_id: str) -> None:
    gateway_id = to_gateway_id("nvidia", model_id)
    assert gateway_id.startswith(GATEWAY_PREFIX)
    assert from_gateway_id(gateway_id) == ("nvidia", model_id)


@pytest.mark.parametrize(
    ("model_id", "readable"),
    [
        ("qwen/qwen3-coder-480b-a35b-instruct", "Qwen3 Coder 480B A35B Instruct"),
        ("@cf/meta/llama-3.3-70b-instruct-fp8-fast", "Llama 3.3 70B Instruct FP8 Fast"),
        ("nvidia/llama-3.1-nemotron-70b", "Llama 3.1 Nemotron 70B"),
        ("openai/gpt-oss-120b", "GPT OSS 120B"),
        ("mistralai/mixtral-8x7b-instruct-v0.1", "Mixtral 8x7B Instruct V0.1"),
        ("google/gemma-3-27b-it", "Gemma 3 27B IT"),
        ("deepseek-ai/deepseek-r1", "Deepseek R1"),
        ("qwen3:8b", "Qwen3 8B"),
        ("Qwen/Qwen3-Coder-480B", "Qwen3 Coder 480B"),  # words cased by the author: kept
        ("moonshotai/kimi-k2-instruct", "Kimi K2 Instruct"),
        ("model/", "Model"),
        ("---", "---"),
    ],
)
def test_readable_model_name(model_id: str, readable: str) -> None:
    assert readable_model_name(model_id) == readable


@pytest.mark.parametrize(
    ("provider", "kind", "label"),
    [
        ("nvidia", ProviderKind.NVIDIA, "NVIDIA"),
        ("lmstudio", ProviderKind.LMSTUDIO, "LM Studio"),
        ("work-nim", ProviderKind.NVIDIA, "work-nim"),  # the user's own name, as written
        ("gone", None, "gone"),
    ],
)
def test_picker_provider_label(provider: str, kind: ProviderKind | None, label: str) -> None:
    assert picker_provider_label(provider, kind) == label


def test_picker_display_name() -> None:
    assert (
        picker_display_name("Qwen3 Coder 480B A35B Instruct", "NVIDIA")
        == "Qwen3 Coder 480B A35B Instruct · NVIDIA"
    )


# Moved from tests/ui/test_model_picker.py with `client_model_id` (issue 19: one owner
# for the server's model list and the UI's model picker).
@pytest.mark.parametrize(
    ("provider", "model_id", "client_id"),
    [
        ("nvidia", "qwen/qwen3-coder-480b-a35b-instruct", "qwen/qwen3-coder-480b-a35b-instruct"),
        ("openai", "gpt-4.1-mini", "openai/gpt-4.1-mini"),
        ("local", "qwen3:8b", "local/qwen3:8b"),
    ],
)
def test_client_model_id_routes_back_to_the_model(
    provider: str, model_id: str, client_id: str
) -> None:
    model = CatalogModel(model_id, provider, model_id, 0, provider, ModelQuirks())
    assert client_model_id(model, "nvidia") == client_id
    router = Router(
        (
            Provider("nvidia", ProviderKind.NVIDIA, "https://integrate.api.nvidia.com/v1"),
            Provider("openai", ProviderKind.OPENAI, "https://api.openai.com/v1"),
            Provider("local", ProviderKind.OLLAMA, "http://127.0.0.1:11434/v1"),
        ),
        "nvidia",
    )
    assert router.resolve_reference(client_id) == (provider, model_id)
