"""app.core.providers: presets as data, and what a configured provider derives from them."""

import pytest

from app.core.providers import (
    PRESET_BY_KIND,
    CatalogStyle,
    ExplicitModel,
    Provider,
    ProviderKind,
    preset_base_url,
    provider_kind_for_url,
)


def test_every_kind_has_a_preset() -> None:
    assert set(PRESET_BY_KIND) == set(ProviderKind)
    for kind, preset in PRESET_BY_KIND.items():
        assert preset.kind is kind and preset.label
        assert kind is ProviderKind.CUSTOM or preset.base_url.startswith(("http://", "https://"))


@pytest.mark.parametrize(
    ("provider", "budget"),
    [
        pytest.param(Provider("n", ProviderKind.NVIDIA, "https://x/v1"), 40, id="nvidia-free-tier"),
        pytest.param(
            Provider("n", ProviderKind.NVIDIA, "https://x/v1", requests_per_minute=200),
            200,
            id="configured-wins",
        ),
        pytest.param(Provider("o", ProviderKind.OLLAMA, "http://x/v1"), None, id="unlimited"),
    ],
)
def test_budget_per_minute(provider: Provider, budget: int | None) -> None:
    assert provider.budget_per_minute == budget
    assert provider.preset is PRESET_BY_KIND[provider.kind]


def test_an_account_id_stays_one_path_segment() -> None:
    url = preset_base_url(ProviderKind.CLOUDFLARE, "../../user/tokens?x=1#")
    assert url == (
        "https://api.cloudflare.com/client/v4/accounts/..%2F..%2Fuser%2Ftokens%3Fx%3D1%23/ai/v1"
    )


def test_preset_base_url() -> None:
    assert preset_base_url(ProviderKind.CLOUDFLARE, "acc123") == (
        "https://api.cloudflare.com/client/v4/accounts/acc123/ai/v1"
    )
    assert preset_base_url(ProviderKind.NVIDIA) == "https://integrate.api.nvidia.com/v1"
    assert PRESET_BY_KIND[ProviderKind.CLOUDFLARE].catalog is CatalogStyle.CLOUDFLARE


def test_explicit_model_upstream_id() -> None:
    assert ExplicitModel("coder", remote_id="Qwen/Qwen3-Coder").upstream_id == "Qwen/Qwen3-Coder"
    assert ExplicitModel("coder").upstream_id == "coder"


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("https://integrate.api.nvidia.com/v1", ProviderKind.NVIDIA),
        ("https://ai.api.nvidia.com/v1/", ProviderKind.NVIDIA),
        ("https://api.openai.com/v1", ProviderKind.OPENAI),
        ("https://openrouter.ai/api/v1", ProviderKind.OPENROUTER),
        ("https://api.deepseek.com", ProviderKind.DEEPSEEK),
        ("https://api.cloudflare.com/client/v4/accounts/abc/ai/v1", ProviderKind.CLOUDFLARE),
        ("http://127.0.0.1:11434/v1", ProviderKind.OLLAMA),
        ("http://localhost:11434/v1", ProviderKind.OLLAMA),
        ("http://[::1]:1234/v1", ProviderKind.LMSTUDIO),
        ("http://127.0.0.2:8000/v1", ProviderKind.VLLM),
        # a local llama.cpp or vLLM on another port, a LAN box, a look-alike host: custom
        ("http://127.0.0.1:8080/v1", ProviderKind.LLAMACPP),  # llama-server's default port
        ("http://localhost/v1", ProviderKind.CUSTOM),
        ("http://192.168.1.20:11434/v1", ProviderKind.CUSTOM),
        ("https://api.nvidia.com.example.org/v1", ProviderKind.CUSTOM),
        ("https://notopenrouter.ai/v1", ProviderKind.CUSTOM),
        ("http://127.0.0.1:port/v1", ProviderKind.CUSTOM),
        ("not a url", ProviderKind.CUSTOM),
    ],
)
def test_the_url_decides_the_preset(url: str, kind: ProviderKind) -> None:
    assert provider_kind_for_url(url) is kind


@pytest.mark.parametrize("kind", [k for k in ProviderKind if k is not ProviderKind.CUSTOM])
def test_each_presets_own_url_picks_that_preset(kind: ProviderKind) -> None:
    assert provider_kind_for_url(preset_base_url(kind, "account")) is kind


def test_llama_cpp_preset_states_what_its_server_refuses() -> None:
    preset = PRESET_BY_KIND[ProviderKind.LLAMACPP]
    assert preset.base_url == "http://127.0.0.1:8080/v1" and not preset.needs_key
    quirks = dict(preset.server_quirks)
    assert quirks["accepts_null_content"] is False
    assert quirks["accepts_required_tool_choice"] is False
    assert preset.served_context_path == "/props"
    # llama-cpp-python's default port stays vLLM's: the port cannot tell them apart.
    assert provider_kind_for_url("http://127.0.0.1:8000/v1") is ProviderKind.VLLM
