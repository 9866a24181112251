"""`claude-nim/<provider>/<model>`: a name for every chat model that Claude Code's `/model` keeps.

Claude Code (2.1.332, with CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1) asks the
gateway `GET /v1/models?limit=1000` once at start-up and keeps only the ids matching
`/(claude|anthropic)/i`, showing each one's `display_name` (and `description`) in its
picker. An upstream id such as `qwen/qwen3-coder-480b-a35b-instruct` never passes
that filter, so each chat model is also listed under a gateway id that does.

Rules:
- Decodable without server state: `claude-nim/`, the provider's name with `%` and
  `/` percent-escaped, `/`, then the provider's model id verbatim (it may hold `/`,
  `:`, `.` or `@`).
- Never a tier: an upstream id may well contain `haiku` or `opus`; `tier_of` and the
  router recognise a gateway id before they look for tier words.
- The prefix is matched case-insensitively (a client may lower-case a model name);
  the provider and model parts are kept as written.

Beside the gateway id, each listed model has a plain client id (`client_model_id`):
the bare id on the default provider, else `provider/id`; the router maps it back.
"""

import re

from app.core.catalog import CatalogModel
from app.core.providers import ProviderKind

GATEWAY_PREFIX = "claude-nim/"

# How a provider of each kind is named in the picker when its configured name is
# just the kind's (a user's own name, e.g. `work-nim`, is shown as written).
PICKER_LABEL_BY_KIND: dict[ProviderKind, str] = {
    ProviderKind.NVIDIA: "NVIDIA",
    ProviderKind.OPENAI: "OpenAI",
    ProviderKind.OPENROUTER: "OpenRouter",
    ProviderKind.DEEPSEEK: "DeepSeek",
    ProviderKind.OLLAMA: "Ollama",
    ProviderKind.LMSTUDIO: "LM Studio",
    ProviderKind.VLLM: "vLLM",
    ProviderKind.LLAMACPP: "llama.cpp",
    ProviderKind.CLOUDFLARE: "Cloudflare",
    ProviderKind.CUSTOM: "Custom",
}

# Words of model ids written in capitals in a readable name.
CAPITALISED_WORDS = frozenset(
    {"ai", "awq", "bf16", "fp4", "fp8", "fp16", "gguf", "glm", "gpt", "gptq", "int4", "int8"}
    | {"it", "moe", "nim", "oss", "vl"}
)
# `480b`, `1.5b`, `8x7b`, `a35b`, `e4b`, `r1`, `v3`, `k2`: sizes and short version tags.
_CAPITALISED_PATTERN = re.compile(r"(?:\d+(?:\.\d+)?(?:x\d+)?[bmkt]|[a-z]\d+(?:\.\d+)?[bm]?)")
# The provider part's escapes, undone in one pass (so `%252F` stays `%2F`).
_ESCAPE = re.compile(r"%(?:25|2[Ff])")
_UNESCAPED = {"%25": "%", "%2F": "/"}


def client_model_id(model: CatalogModel, default_provider: str) -> str:
    """What a client (and a tier) calls a listed model: the bare id on the default
    provider, else `provider/id` (the router's step 5 reads it back)."""
    if model.provider == default_provider:
        return model.id
    return f"{model.provider}/{model.id}"


def to_gateway_id(provider: str, model_id: str) -> str:
    escaped = provider.replace("%", "%25").replace("/", "%2F")
    return f"{GATEWAY_PREFIX}{escaped}/{model_id}"


def from_gateway_id(name: str) -> tuple[str, str] | None:
    """(provider name, the provider's model id) of a gateway id, else None."""
    if name[: len(GATEWAY_PREFIX)].lower() != GATEWAY_PREFIX:
        return None
    escaped, slash, model_id = name[len(GATEWAY_PREFIX) :].partition("/")
    if not slash or not escaped or not model_id:
        return None
    provider = _ESCAPE.sub(lambda found: _UNESCAPED[found[0].upper()], escaped)
    return provider, model_id


def is_gateway_id(name: str) -> bool:
    return from_gateway_id(name) is not None


def readable_model_name(model_id: str) -> str:
    """`qwen/qwen3-coder-480b-a35b-instruct` -> `Qwen3 Coder 480B A35B Instruct`."""
    last = model_id.rstrip("/").rsplit("/", 1)[-1] or model_id
    words = [_readable_word(word) for word in re.split(r"[-_:\s]+", last) if word]
    return " ".join(words) or model_id


def picker_provider_label(provider: str, kind: ProviderKind | None) -> str:
    if kind is not None and provider == kind.value:
        return PICKER_LABEL_BY_KIND[kind]
    return provider


def picker_display_name(model_name: str, provider_label: str) -> str:
    """What `/model` shows: the model, then where it runs."""
    return f"{model_name} · {provider_label}"


def _readable_word(word: str) -> str:
    lower = word.lower()
    if word != lower:
        return word  # already cased by its author (`Qwen3-Coder`, `DeepSeek`)
    if lower in CAPITALISED_WORDS or _CAPITALISED_PATTERN.fullmatch(lower):
        return word.upper().replace("X", "x")  # `8x7B`: the x of experts stays small
    return word[0].upper() + word[1:]
