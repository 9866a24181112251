"""Upstream providers: presets as data, and the provider values settings are made of.

Rule: a preset says how a kind of provider is reached (base URL, key variable,
whether it needs a key, its rate budget, how its catalog is read); a
`Provider` is one configured instance of it (a name, a base URL, explicit
models). Nothing here talks to the network or reads a key.
"""

import enum
import ipaddress
import urllib.parse
from dataclasses import dataclass
from typing import Any


class ProviderKind(enum.StrEnum):
    NVIDIA = "nvidia"
    OPENAI = "openai"
    OPENROUTER = "openrouter"
    DEEPSEEK = "deepseek"
    OLLAMA = "ollama"
    LMSTUDIO = "lmstudio"
    VLLM = "vllm"
    LLAMACPP = "llamacpp"
    CLOUDFLARE = "cloudflare"
    CUSTOM = "custom"


class CatalogStyle(enum.StrEnum):
    OPENAI = "openai"  # GET {base}/models -> {"data": [{"id": ...}]}
    CLOUDFLARE = "cloudflare"  # Workers AI model search API tells chat models from the rest


@dataclass(frozen=True, slots=True)
class ProviderPreset:
    kind: ProviderKind
    label: str
    base_url: str  # `{account_id}` is filled in for Cloudflare
    key_env: tuple[str, ...]  # environment variables that override the keychain, in order
    needs_key: bool = True
    requests_per_minute: int | None = None  # a budget the governor starts from
    keys_page: str | None = None  # where a user creates a key
    catalog: CatalogStyle = CatalogStyle.OPENAI
    # `ModelQuirks` fields true of every model this kind of server serves (what its
    # request parser takes), under the settings' per-model overrides.
    server_quirks: tuple[tuple[str, Any], ...] = ()
    # Where the server says how much context it serves, beside /v1 (`served_context`).
    served_context_path: str | None = None


PRESET_BY_KIND: dict[ProviderKind, ProviderPreset] = {
    preset.kind: preset
    for preset in (
        ProviderPreset(
            ProviderKind.NVIDIA,
            "NVIDIA NIM (build.nvidia.com)",
            "https://integrate.api.nvidia.com/v1",
            ("NVIDIA_API_KEY", "NGC_API_KEY"),
            requests_per_minute=40,  # the free tier's advertised budget per key
            keys_page="https://build.nvidia.com/settings/api-keys",
        ),
        ProviderPreset(
            ProviderKind.OPENAI,
            "OpenAI",
            "https://api.openai.com/v1",
            ("OPENAI_API_KEY",),
            keys_page="https://platform.openai.com/api-keys",
        ),
        ProviderPreset(
            ProviderKind.OPENROUTER,
            "OpenRouter",
            "https://openrouter.ai/api/v1",
            ("OPENROUTER_API_KEY",),
            keys_page="https://openrouter.ai/settings/keys",
        ),
        ProviderPreset(
            ProviderKind.DEEPSEEK,
            "DeepSeek",
            "https://api.deepseek.com/v1",
            ("DEEPSEEK_API_KEY",),
            keys_page="https://platform.deepseek.com/api_keys",
        ),
        ProviderPreset(
            ProviderKind.OLLAMA,
            "Ollama",
            "http://127.0.0.1:11434/v1",
            (),
            needs_key=False,
            served_context_path="/api/ps",  # the loaded models, each with context_length
        ),
        ProviderPreset(
            ProviderKind.LMSTUDIO,
            "LM Studio",
            "http://127.0.0.1:1234/v1",
            (),
            needs_key=False,
            served_context_path="/api/v0/models",  # loaded_context_length, max_context_length
        ),
        ProviderPreset(
            ProviderKind.VLLM,
            "vLLM",
            "http://127.0.0.1:8000/v1",
            ("VLLM_API_KEY",),
            needs_key=False,
        ),
        # llama.cpp's llama-server (port 8080) and llama-cpp-python's server (port 8000,
        # which the URL table gives to vLLM: the port cannot tell them apart). Tested
        # against llama-cpp-python 0.3.36 (tests/integration/test_real_model.py): it
        # refuses `"content": null` and tool_choice "required" with a 500.
        ProviderPreset(
            ProviderKind.LLAMACPP,
            "llama.cpp (llama-server, llama-cpp-python)",
            "http://127.0.0.1:8080/v1",
            ("LLAMA_API_KEY",),
            needs_key=False,
            server_quirks=(
                ("accepts_null_content", False),
                ("accepts_required_tool_choice", False),
                ("accepts_top_k", True),
            ),
            served_context_path="/props",  # llama-server: default_generation_settings.n_ctx
        ),
        ProviderPreset(
            ProviderKind.CLOUDFLARE,
            "Cloudflare Workers AI",
            "https://api.cloudflare.com/client/v4/accounts/{account_id}/ai/v1",
            ("CLOUDFLARE_API_TOKEN", "CLOUDFLARE_API_KEY"),
            keys_page="https://dash.cloudflare.com/profile/api-tokens",
            catalog=CatalogStyle.CLOUDFLARE,
        ),
        ProviderPreset(ProviderKind.CUSTOM, "Custom (any OpenAI-compatible URL)", "", ()),
    )
}


@dataclass(frozen=True, slots=True)
class ExplicitModel:
    """A model a provider serves, named in settings (the seed Go proxy's model list)."""

    id: str  # what clients call it
    remote_id: str | None = None  # what the provider calls it, when different
    display_name: str | None = None

    @property
    def upstream_id(self) -> str:
        return self.remote_id or self.id


@dataclass(frozen=True, slots=True)
class Provider:
    name: str  # unique; also the `name/` prefix that routes a model name here
    kind: ProviderKind
    base_url: str
    models: tuple[ExplicitModel, ...] = ()
    account_id: str | None = None  # Cloudflare
    requests_per_minute: int | None = None  # None: the preset's budget

    @property
    def preset(self) -> ProviderPreset:
        return PRESET_BY_KIND[self.kind]

    @property
    def budget_per_minute(self) -> int | None:
        return self.requests_per_minute or self.preset.requests_per_minute


def preset_base_url(kind: ProviderKind, account_id: str | None = None) -> str:
    """The preset's base URL, with a Cloudflare account id filled in (escaped: whatever
    it holds stays one path segment)."""
    url = PRESET_BY_KIND[kind].base_url
    if "{account_id}" in url:
        url = url.replace("{account_id}", urllib.parse.quote(account_id or "", safe=""))
    return url


# Which preset a base URL means (`--upstream-url`): a provider's own domain, or for
# servers that run on this computer, their usual port on a loopback address. Anything
# else is `custom`: no pacing or quirks of a provider it is not.
KIND_BY_DOMAIN: dict[str, ProviderKind] = {
    "api.nvidia.com": ProviderKind.NVIDIA,  # integrate.api.nvidia.com, ai.api.nvidia.com
    "api.openai.com": ProviderKind.OPENAI,
    "openrouter.ai": ProviderKind.OPENROUTER,
    "api.deepseek.com": ProviderKind.DEEPSEEK,
    "api.cloudflare.com": ProviderKind.CLOUDFLARE,
}
KIND_BY_LOOPBACK_PORT: dict[int, ProviderKind] = {
    11434: ProviderKind.OLLAMA,
    1234: ProviderKind.LMSTUDIO,
    8000: ProviderKind.VLLM,  # also llama-cpp-python's default: see the llama.cpp preset
    8080: ProviderKind.LLAMACPP,
}
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def provider_kind_for_url(url: str) -> ProviderKind:
    """The preset a base URL belongs to, `custom` when none does."""
    parts = urllib.parse.urlsplit(url.strip())
    host = (parts.hostname or "").rstrip(".")
    try:
        port = parts.port
    except ValueError:  # not a port number: no known server
        return ProviderKind.CUSTOM
    if _is_loopback(host):
        return KIND_BY_LOOPBACK_PORT.get(port or 0, ProviderKind.CUSTOM)
    labels = host.split(".")
    for start in range(len(labels)):  # the host itself, then each parent domain
        kind = KIND_BY_DOMAIN.get(".".join(labels[start:]))
        if kind is not None:
            return kind
    return ProviderKind.CUSTOM


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
