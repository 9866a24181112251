"""Provider model lists -> chat-model catalogs: filtering, lenient reading, facts, merging."""

import json
from pathlib import Path
from typing import Any

import pytest

from app.core.capabilities import ModelQuirks, ReasoningSwitch, quirks_for_model
from app.core.catalog import (
    CLOUDFLARE_SEARCH_PATH,
    CatalogModel,
    catalog_from_cloudflare_search,
    catalog_from_models_list,
    is_chat_model,
    merge_catalogs,
)
from app.core.providers import ProviderKind, preset_base_url

FIXTURES = Path(__file__).parents[2] / "fixtures" / "upstream_bodies"


@pytest.fixture(scope="module")
def nim_models() -> dict[str, Any]:
    # A real answer of https://integrate.api.nvidia.com/v1/models (see PROVENANCE.md).
    body: dict[str, Any] = json.loads((FIXTURES / "nim_models_list.json").read_text("utf-8"))
    return body


CHAT_IDS = [
    "meta/llama-3.3-70b-instruct",
    "meta/llama-3.2-90b-vision-instruct",  # vision chat is chat
    "microsoft/phi-4-multimodal-instruct",
    "nvidia/llama-3.1-nemotron-nano-vl-8b-v1",
    "nvidia/cosmos-reason2-8b",  # Cosmos Reason is a chat VLM, unlike the world models
    "google/diffusiongemma-26b-a4b-it",  # a diffusion *language* model
    "stepfun-ai/step-3.5-flash",
    "nvidia/usdcode-llama-3.1-70b-instruct",
    "meta/avila-7b",  # not NVIDIA's VILA
    "acme/geneva-13b",  # not NeVA
    "neuralmagic/sparse-llama-3.1-8b",  # "parse" inside a word
    "z-ai/glm5",
    "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
]
NON_CHAT_IDS = [
    "nvidia/nv-embedqa-e5-v5",
    "nvidia/llama-3.2-nv-embedqa-1b-v2",
    "nvidia/nemotron-3-embed-1b",
    "snowflake/arctic-embed-l",
    "baai/bge-m3",
    "intfloat/e5-mistral-7b-instruct",
    "nvidia/llama-nemotron-rerank-1b-v2",
    "nvidia/nemotron-4-340b-reward",
    "meta/llama-guard-4-12b",
    "nvidia/llama-3.1-nemoguard-8b-topic-control",
    "nvidia/nemotron-3.5-content-safety",
    "google/shieldgemma-9b",
    "ibm/granite-guardian-3.0-8b",
    "nvidia/nemoretriever-parse",
    "nvidia/nemotron-ocr-v1",
    "baidu/paddleocr",
    "nvidia/ocdrnet",
    "nvidia/nvclip",
    "google/deplot",
    "adept/fuyu-8b",
    "microsoft/kosmos-2",
    "google/paligemma",
    "nvidia/neva-22b",
    "nvidia/vila",
    "nvidia/nv-grounding-dino",
    "nvidia/ai-synthetic-video-detector",
    "nvidia/streampetr",
    "openai/whisper-large-v3",
    "nvidia/parakeet-ctc-1.1b-asr",
    "nvidia/canary-1b-asr",
    "nvidia/magpie-tts-flow",
    "nvidia/riva-translate-4b-instruct-v2",
    "stabilityai/stable-diffusion-3-medium",
    "stabilityai/sdxl-turbo",
    "black-forest-labs/flux.1-dev",
    "dall-e-3",  # OpenAI lists its image models beside its chat models
    "gpt-image-1",
    "nvidia/cosmos-predict1-5b",
    "mit/diffdock",
    "arc/evo2-40b",
    "@cf/baai/bge-base-en-v1.5",
]


@pytest.mark.parametrize("model_id", CHAT_IDS)
def test_chat_models_are_kept(model_id: str) -> None:
    assert is_chat_model(model_id)


@pytest.mark.parametrize("model_id", NON_CHAT_IDS)
def test_other_models_are_filtered(model_id: str) -> None:
    assert not is_chat_model(model_id)
    assert not is_chat_model(model_id.upper())


# ------------------------------------------------------------------ OpenAI-shaped lists


def test_the_real_nim_list(nim_models: dict[str, Any]) -> None:
    models = catalog_from_models_list(nim_models, provider="nvidia")
    ids = [m.id for m in models]
    assert ids == sorted(ids)
    assert len(ids) == len(set(ids))  # gpt-oss-120b and -20b are listed twice
    assert len(nim_models["data"]) == 185 and len(ids) == 150
    for expected in (
        "deepseek-ai/deepseek-v3.2",
        "moonshotai/kimi-k2.5",
        "openai/gpt-oss-120b",
        "qwen/qwen3-coder-480b-a35b-instruct",
        "z-ai/glm4.7",
        "meta/llama-3.2-11b-vision-instruct",
    ):
        assert expected in ids
    for filtered in ("nvidia/nv-embedqa-e5-v5", "meta/llama-guard-4-12b", "nvidia/vila"):
        assert filtered not in ids
    gpt = next(m for m in models if m.id == "openai/gpt-oss-120b")
    assert gpt == CatalogModel(
        id="openai/gpt-oss-120b",
        provider="nvidia",
        display_name="openai/gpt-oss-120b",
        created=735790403,
        owned_by="openai",
        quirks=quirks_for_model("openai/gpt-oss-120b"),
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(None, id="none"),
        pytest.param("not json", id="text"),
        pytest.param({"object": "list"}, id="no-data"),
        pytest.param({"data": {"id": "x"}}, id="data-not-a-list"),
        pytest.param(
            {"data": [1, None, "m", {"id": 3}, {"id": ""}, {"object": "model"}]},
            id="bad-entries",
        ),
    ],
)
def test_unusable_lists_give_nothing(body: object) -> None:
    assert catalog_from_models_list(body, provider="p") == []


def test_missing_fields_get_neutral_values() -> None:
    body = [{"id": "b/model"}, {"id": "a/model", "created": True, "owned_by": 7}]  # a bare list
    models = catalog_from_models_list(body, provider="local")
    assert [(m.id, m.created, m.owned_by, m.display_name) for m in models] == [
        ("a/model", 0, "local", "a/model"),
        ("b/model", 0, "local", "b/model"),
    ]


def test_first_of_duplicates_wins() -> None:
    body = {"data": [{"id": "m", "owned_by": "first"}, {"id": "m", "owned_by": "second"}]}
    [model] = catalog_from_models_list(body, provider="p")
    assert model.owned_by == "first"


@pytest.mark.parametrize(
    ("entry", "context"),
    [
        pytest.param({"context_length": 32768}, 32768, id="openrouter"),
        pytest.param({"context_window": 131072}, 131072, id="groq"),
        pytest.param({"max_model_len": "16384"}, 16384, id="vllm-as-string"),
        pytest.param({"context_length": 0, "max_model_len": 8192}, 8192, id="first-usable"),
        pytest.param({"context_length": True}, 131072, id="bool-ignored"),
        pytest.param({"context_length": "lots"}, 131072, id="text-ignored"),
    ],
)
def test_a_stated_context_window_beats_the_family_table(
    entry: dict[str, Any], context: int
) -> None:
    body = {"data": [{"id": "meta/llama-3.3-70b-instruct", **entry}]}
    [model] = catalog_from_models_list(body, provider="p")
    assert model.quirks.context_window == context
    assert model.quirks.max_output_tokens == 4096  # the rest stays the table's


def test_openrouter_states_tools_and_images() -> None:
    body = {
        "data": [
            {
                "id": "qwen/qwen3-235b-a22b",
                "name": "Qwen: Qwen3 235B A22B",
                "supported_parameters": ["max_tokens", "temperature"],
                "architecture": {"input_modalities": ["text", "image"]},
            },
            {"id": "x/y", "supported_parameters": ["tools"], "architecture": "text->text"},
        ]
    }
    qwen, other = catalog_from_models_list(body, provider="openrouter")
    assert qwen.display_name == "Qwen: Qwen3 235B A22B"
    assert (qwen.quirks.supports_tools, qwen.quirks.supports_images) == (False, True)
    assert qwen.quirks.reasoning is ReasoningSwitch.TEMPLATE_ENABLE_THINKING
    assert (other.quirks.supports_tools, other.quirks.supports_images) == (True, None)


def test_settings_overrides_beat_what_the_list_states() -> None:
    body = {"data": [{"id": "x/y", "context_length": 32768, "supported_parameters": ["tools"]}]}
    overrides: dict[str, dict[str, Any]] = {
        "x/y": {"context_window": 8000},
        "other/model": {"supports_tools": False},
    }
    [model] = catalog_from_models_list(body, provider="p", overrides=overrides)
    assert model.quirks == ModelQuirks(context_window=8000, supports_tools=True)


# ------------------------------------------------------------------ Cloudflare


def cf_model(name: str, task: str | None = "Text Generation", **extra: Any) -> dict[str, Any]:
    # The shape of one `result` entry of GET /accounts/{id}/ai/models/search.
    entry: dict[str, Any] = {
        "id": "1f55679f-009e-4456-aa4f-049a62b4b6a0",
        "source": 1,
        "name": name,
        "description": "...",
        "tags": [],
        **extra,
    }
    if task is not None:
        entry["task"] = {"id": "c329a1f9", "name": task, "description": "..."}
    return entry


CLOUDFLARE_SEARCH = {
    "success": True,
    "errors": [],
    "messages": [],
    "result": [
        cf_model(
            "@cf/meta/llama-4-scout-17b-16e-instruct",
            properties=[
                {"property_id": "context_window", "value": "131000"},
                {"property_id": "function_calling", "value": "true"},
            ],
        ),
        cf_model(
            "@cf/openai/gpt-oss-120b",
            properties=[
                {"property_id": "max_total_tokens", "value": "8192"},
                {"property_id": "price", "value": [{"unit": "per M input tokens", "price": 0.35}]},
                {"property_id": "reasoning_effort", "value": {"default_effort": "medium"}},
            ],
        ),
        cf_model(
            "@cf/deepseek-ai/deepseek-r1-distill-qwen-32b",
            properties=[
                {"property_id": "context_window", "value": 80000},
                {"property_id": "max_total_tokens", "value": "8192"},  # the window wins
                {"property_id": "function_calling", "value": "false"},
                "junk",
                {"value": "no id"},
            ],
        ),
        cf_model("@cf/qwen/qwq-32b", properties="not a list"),
        cf_model("@cf/meta/llama-3.3-70b-instruct-fp8-fast"),
        cf_model("@cf/meta/llama-3.3-70b-instruct-fp8-fast", properties=[]),  # duplicate
        cf_model("@cf/meta/llama-guard-3-8b"),  # "Text Generation", but a classifier
        cf_model("@cf/baai/bge-m3", task="Text Embeddings"),
        cf_model("@cf/openai/whisper", task="Automatic Speech Recognition"),
        cf_model("@cf/black-forest-labs/flux-1-schnell", task="Text-to-Image"),
        cf_model("@cf/mistral/mistral-7b-instruct-v0.1", task=None),  # no task: kept if chat
        cf_model("@cf/baai/bge-small-en-v1.5", task=None),
        cf_model("gpt-local", task=" text generation "),
        {"name": ""},
        {"task": {"name": "Text Generation"}},
        "junk",
    ],
    "result_info": {"page": 1, "per_page": 100, "count": 16, "total_count": 16},
}


def test_cloudflare_search_keeps_text_generation_models() -> None:
    models = catalog_from_cloudflare_search(CLOUDFLARE_SEARCH, provider="cf")
    assert [(m.id, m.owned_by) for m in models] == [
        ("@cf/deepseek-ai/deepseek-r1-distill-qwen-32b", "deepseek-ai"),
        ("@cf/meta/llama-3.3-70b-instruct-fp8-fast", "meta"),
        ("@cf/meta/llama-4-scout-17b-16e-instruct", "meta"),
        ("@cf/mistral/mistral-7b-instruct-v0.1", "mistral"),
        ("@cf/openai/gpt-oss-120b", "openai"),
        ("@cf/qwen/qwq-32b", "qwen"),
        ("gpt-local", "cf"),
    ]
    assert all(m.provider == "cf" and m.created == 0 and m.display_name == m.id for m in models)


def test_cloudflare_properties_fill_the_quirks() -> None:
    by_id = {
        m.id: m.quirks for m in catalog_from_cloudflare_search(CLOUDFLARE_SEARCH, provider="cf")
    }
    scout = by_id["@cf/meta/llama-4-scout-17b-16e-instruct"]
    assert (scout.context_window, scout.supports_tools, scout.supports_images) == (
        131000,
        True,
        True,
    )
    assert by_id["@cf/openai/gpt-oss-120b"].context_window == 8192
    r1 = by_id["@cf/deepseek-ai/deepseek-r1-distill-qwen-32b"]
    assert (r1.context_window, r1.supports_tools) == (80000, None)  # "false" is not a fact we use
    assert by_id["@cf/qwen/qwq-32b"] == quirks_for_model("@cf/qwen/qwq-32b")


def test_cloudflare_overrides_win() -> None:
    overrides = {"@cf/openai/gpt-oss-120b": {"context_window": 131072}}
    models = catalog_from_cloudflare_search(CLOUDFLARE_SEARCH, provider="cf", overrides=overrides)
    assert next(m for m in models if m.id == "@cf/openai/gpt-oss-120b").quirks.context_window == (
        131072
    )


@pytest.mark.parametrize("body", [None, [], {"result": None}, {"success": False, "errors": [{}]}])
def test_unusable_cloudflare_answers_give_nothing(body: object) -> None:
    assert catalog_from_cloudflare_search(body, provider="cf") == []


def test_cloudflare_search_url_sits_beside_the_openai_base() -> None:
    base = preset_base_url(ProviderKind.CLOUDFLARE, "acct")
    assert base.removesuffix("/ai/v1") + CLOUDFLARE_SEARCH_PATH == (
        "https://api.cloudflare.com/client/v4/accounts/acct/ai/models/search"
    )


# ------------------------------------------------------------------ merging


def model(provider: str, model_id: str) -> CatalogModel:
    return CatalogModel(model_id, provider, model_id, 0, provider, ModelQuirks())


def test_merge_keeps_provider_order_and_drops_repeats() -> None:
    nvidia = [model("nvidia", "b"), model("nvidia", "a")]
    local = [model("local", "a"), model("nvidia", "b"), model("local", "c"), model("local", "a")]
    merged = merge_catalogs([nvidia, local, []])
    assert [(m.provider, m.id) for m in merged] == [
        ("nvidia", "b"),
        ("nvidia", "a"),
        ("local", "a"),
        ("local", "c"),
    ]
    assert merge_catalogs([]) == []
