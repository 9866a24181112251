"""Provider model lists -> the chat models NimBridge offers, with what each can do.

Rules:
- Lists are read leniently: entries that are not objects, lack an id, or repeat
  an id are skipped; missing fields get neutral values. Never an exception
  (settings overrides are trusted here: they were validated when settings loaded).
- Only chat models come out: NVIDIA's /v1/models mixes chat with embedding,
  rerank, reward, guard, parse, speech, image and vision-only models
  (`NON_CHAT_PATTERNS`), and Cloudflare's search returns every task.
- What a listing itself states (a context length, tool support) beats the family
  table in `capabilities`; settings overrides beat both.
- Output is sorted by id within a provider; `merge_catalogs` keeps provider order.
"""

import dataclasses
import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.core.capabilities import ModelQuirks, quirks_for_model

# Workers AI has two bases under one account base
# (https://api.cloudflare.com/client/v4/accounts/{id}): the OpenAI-compatible
# `/ai/v1` (chat/completions; it has no GET /models) and the native REST API,
# whose model search lives at `/ai/models/search`. So the search URL is the
# provider's `/ai/v1` base with that suffix removed, plus this path.
CLOUDFLARE_SEARCH_PATH = "/ai/models/search"
CLOUDFLARE_CHAT_TASK = "text generation"

_B = r"(?<![a-z0-9])"  # a name starts here (after `/`, `-`, `.`, `_` or the start)
_E = r"(?![a-z])"  # and ends here

# A model id (lower-cased) matching any of these is not a chat model. Vision-chat
# models (Llama 3.2 Vision, Phi-4 multimodal, Nemotron VL) are chat; the older
# NVIDIA-hosted vision models below answer only on their own /vlm endpoints.
NON_CHAT_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern)
    for pattern in (
        # embeddings and retrieval: nv-embed, embedqa, arctic-embed, bge, e5, rerank
        r"embed",
        r"rerank",
        r"retriever",
        _B + r"bge" + _E,
        _B + r"e5-",
        # reward, guard and safety classifiers
        r"reward",
        r"guard",  # llama-guard, nemoguard, safety-guard, granite-guardian
        r"safety",
        r"shieldgemma",
        r"topic-control",
        # document parsing and OCR
        _B + r"parse" + _E,
        _B + r"ocr",
        r"paddleocr",
        r"ocdrnet",
        # vision-only models and NIM's older /vlm-endpoint models
        _B + r"(?:nv)?clip" + _E,
        r"deplot",
        r"fuyu",
        r"kosmos",
        r"paligemma",
        _B + r"neva" + _E,
        _B + r"vila" + _E,
        r"grounding-dino",
        r"dinov2",
        r"changenet",
        r"detect",  # ai-synthetic-video-detector, object detection
        r"streampetr",
        r"bevformer",
        r"foundationpose",
        # speech
        r"whisper",
        _B + r"asr" + _E,
        _B + r"tts" + _E,
        r"riva",
        r"parakeet",
        r"canary",
        r"fastpitch",
        r"tacotron",
        r"magpie",
        r"audio2face",
        # image and video generation, world models (Cosmos Reason is a chat VLM)
        r"dall-e",
        r"gpt-image",
        r"stable-diffusion",
        r"stable-video",
        r"sdxl",
        _B + r"flux",
        r"image-gen",
        r"edify",
        r"consistory",
        r"trellis",
        r"cosmos-(?!reason)",
        # biology, chemistry, simulation
        r"diffdock",
        r"genmol",
        r"molmim",
        r"esm2",
        r"esmfold",
        r"alphafold",
        r"openfold",
        r"proteinmpnn",
        r"rfdiffusion",
        _B + r"evo2",
        r"msa-search",
        r"vista3d",
        r"maisi",
        r"cuopt",
        r"fourcastnet",
        r"corrdiff",
        r"usdsearch",
        r"usdvalidate",
    )
)

# Fields some OpenAI-style lists add per model, stating its context window:
# OpenRouter / Together / LM Studio, Groq, vLLM.
CONTEXT_FIELDS: tuple[str, ...] = ("context_length", "context_window", "max_model_len")
# Cloudflare search properties stating the context window, most specific first.
CLOUDFLARE_CONTEXT_PROPERTIES: tuple[str, ...] = ("context_window", "max_total_tokens")


class ModelKind(enum.StrEnum):
    CHAT = "chat"
    IMAGE = "image"  # text-to-image, served through /v1/images/generations (`core.images`)


@dataclass(frozen=True, slots=True)
class CatalogModel:
    id: str  # the provider's id
    provider: str  # provider name
    display_name: str
    created: int
    owned_by: str
    quirks: ModelQuirks
    kind: ModelKind = ModelKind.CHAT


def is_chat_model(model_id: str) -> bool:
    name = model_id.lower()
    return not any(pattern.search(name) for pattern in NON_CHAT_PATTERNS)


def catalog_from_models_list(
    body: object,
    *,
    provider: str,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[CatalogModel]:
    """An OpenAI-shaped `GET /models` answer (`{"data": [...]}` or a bare list)."""
    entries = body.get("data") if isinstance(body, Mapping) else body
    models: dict[str, CatalogModel] = {}
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, Mapping):
            continue
        model_id = entry.get("id")
        if not isinstance(model_id, str) or not model_id or model_id in models:
            continue
        if not is_chat_model(model_id):
            continue
        stated: dict[str, Any] = {}
        context = _first_count(entry.get(name) for name in CONTEXT_FIELDS)
        if context is not None:
            stated["context_window"] = context
        stated.update(_openrouter_facts(entry))
        models[model_id] = CatalogModel(
            id=model_id,
            provider=provider,
            display_name=_text(entry.get("name")) or _text(entry.get("display_name")) or model_id,
            created=_count(entry.get("created")) or 0,
            owned_by=_text(entry.get("owned_by")) or provider,
            quirks=_quirks(model_id, stated, overrides),
        )
    return sorted(models.values(), key=lambda model: model.id)


def catalog_from_cloudflare_search(
    body: object,
    *,
    provider: str,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[CatalogModel]:
    """A Workers AI model search answer: `{"success": true, "result": [...]}`.

    Each result: `{"id", "name": "@cf/...", "task": {"name": "Text Generation"},
    "properties": [{"property_id": "context_window", "value": "131072"}, ...]}`.
    """
    entries = body.get("result") if isinstance(body, Mapping) else None
    models: dict[str, CatalogModel] = {}
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, Mapping):
            continue
        name = entry.get("name")
        if not isinstance(name, str) or not name or name in models:
            continue
        task = entry.get("task")
        task_name = task.get("name") if isinstance(task, Mapping) else None
        if isinstance(task_name, str) and task_name.strip().lower() != CLOUDFLARE_CHAT_TASK:
            continue
        if not is_chat_model(name):
            continue
        properties = _cloudflare_properties(entry.get("properties"))
        stated: dict[str, Any] = {}
        context = _first_count(properties.get(key) for key in CLOUDFLARE_CONTEXT_PROPERTIES)
        if context is not None:
            stated["context_window"] = context
        if str(properties.get("function_calling")).lower() == "true":
            stated["supports_tools"] = True
        parts = name.split("/")
        models[name] = CatalogModel(
            id=name,
            provider=provider,
            display_name=name,
            created=0,
            owned_by=parts[1] if len(parts) >= 3 and parts[1] else provider,
            quirks=_quirks(name, stated, overrides),
        )
    return sorted(models.values(), key=lambda model: model.id)


def merge_catalogs(catalogs: Sequence[Sequence[CatalogModel]]) -> list[CatalogModel]:
    """All catalogs in order; a (provider, id) seen before is dropped."""
    seen: set[tuple[str, str]] = set()
    merged: list[CatalogModel] = []
    for catalog in catalogs:
        for model in catalog:
            key = (model.provider, model.id)
            if key not in seen:
                seen.add(key)
                merged.append(model)
    return merged


# ------------------------------------------------------------------ helpers


def _quirks(
    model_id: str,
    stated: dict[str, Any],
    overrides: Mapping[str, Mapping[str, Any]] | None,
) -> ModelQuirks:
    """Table, then what the listing states, then settings overrides (which win)."""
    quirks = quirks_for_model(model_id)
    if stated:
        quirks = dataclasses.replace(quirks, **stated)
    if overrides and model_id in overrides:
        overridden = quirks_for_model(model_id, overrides)
        keys = overrides[model_id].keys()
        quirks = dataclasses.replace(quirks, **{k: getattr(overridden, k) for k in keys})
    return quirks


def _openrouter_facts(entry: Mapping[str, Any]) -> dict[str, Any]:
    """OpenRouter lists say which parameters and inputs each model takes."""
    facts: dict[str, Any] = {}
    parameters = entry.get("supported_parameters")
    if isinstance(parameters, list):
        facts["supports_tools"] = "tools" in parameters
    architecture = entry.get("architecture")
    modalities = architecture.get("input_modalities") if isinstance(architecture, Mapping) else None
    if isinstance(modalities, list):
        facts["supports_images"] = "image" in modalities
    return facts


def _cloudflare_properties(properties: object) -> dict[str, object]:
    found: dict[str, object] = {}
    for item in properties if isinstance(properties, list) else ():
        if isinstance(item, Mapping) and isinstance(item.get("property_id"), str):
            found.setdefault(item["property_id"], item.get("value"))
    return found


def _first_count(values: Any) -> int | None:
    for value in values:
        count = _count(value)
        if count is not None:
            return count
    return None


def _count(value: object) -> int | None:
    """A positive integer, also from a digit string (Cloudflare sends `"131072"`)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and value > 0:
        return value
    return None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
