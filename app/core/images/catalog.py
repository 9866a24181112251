"""Which listed models make images: OpenAI-style `/models` lists (by name), Workers AI's
model search (by task), models named in settings. Only prompt-only models are offered:
img2img and inpainting models need an input image the images endpoint does not carry."""

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from app.core.capabilities import quirks_for_model
from app.core.catalog import CatalogModel, ModelKind
from app.core.providers import ExplicitModel

# The Workers AI model search, asked for image models only.
CLOUDFLARE_IMAGE_TASK = "text-to-image"
CLOUDFLARE_IMAGE_SEARCH_QUERY = "task=Text-to-Image&per_page=100"

_B = r"(?<![a-z0-9])"  # a name starts here (after `/`, `-`, `.`, `_` or the start)

# An OpenAI-style /models list does not say what a model does; an id (lower-cased)
# matching one of these is taken for an image generation model.
IMAGE_MODEL_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern)
    for pattern in (
        r"dall-e",
        r"gpt-image",
        _B + r"flux",
        r"stable-diffusion",
        r"sdxl",
        _B + r"sd-?3",
        _B + r"imagen-",
        r"dreamshaper",
        r"kandinsky",
        r"playground-v",
        r"recraft",
        r"ideogram",
        r"hidream",
        r"seedream",
        r"qwen-image",
        r"image-gen",
    )
)
# Text-to-image models that also need an input image: not for this endpoint.
NEEDS_INPUT_IMAGE_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"img2img"),
    re.compile(r"inpaint"),
    re.compile(r"kontext"),  # FLUX Kontext edits an image
)


def is_image_model(model_id: str) -> bool:
    name = model_id.lower()
    return any(pattern.search(name) for pattern in IMAGE_MODEL_PATTERNS)


def needs_input_image(model_id: str) -> bool:
    name = model_id.lower()
    return any(pattern.search(name) for pattern in NEEDS_INPUT_IMAGE_PATTERNS)


def image_catalog_from_models_list(body: object, *, provider: str) -> list[CatalogModel]:
    """An OpenAI-shaped `GET /models` answer, image models only (by `IMAGE_MODEL_PATTERNS`)."""
    entries = body.get("data") if isinstance(body, Mapping) else body
    found: list[CatalogModel] = []
    for entry in _named_entries(entries, key="id"):
        model_id = entry["id"]
        if not is_image_model(model_id) or needs_input_image(model_id):
            continue
        created = entry.get("created")
        owned_by = entry.get("owned_by")
        found.append(
            _image_model(
                model_id,
                provider,
                created=created if isinstance(created, int) and created > 0 else 0,
                owned_by=owned_by if isinstance(owned_by, str) and owned_by else provider,
            )
        )
    return sorted(found, key=lambda model: model.id)


def image_catalog_from_cloudflare_search(body: object, *, provider: str) -> list[CatalogModel]:
    """A Workers AI model search answer, prompt-only text-to-image models only."""
    entries = body.get("result") if isinstance(body, Mapping) else None
    found: list[CatalogModel] = []
    for entry in _named_entries(entries, key="name"):
        name = entry["name"]
        task = entry.get("task")
        task_name = task.get("name") if isinstance(task, Mapping) else None
        if not isinstance(task_name, str) or task_name.strip().lower() != CLOUDFLARE_IMAGE_TASK:
            continue
        if needs_input_image(name):
            continue
        parts = name.split("/")
        owner = parts[1] if len(parts) >= 3 and parts[1] else provider
        found.append(_image_model(name, provider, created=0, owned_by=owner))
    return sorted(found, key=lambda model: model.id)


def explicit_image_models(
    models: Sequence[ExplicitModel], *, provider: str, known: Collection[str] = ()
) -> list[CatalogModel]:
    """Models named in settings whose upstream id is an image model's, as clients call
    them; those in `known` (listed already) left out."""
    return [
        _image_model(model.id, provider, created=0, owned_by=provider)
        for model in models
        if model.id not in known
        and is_image_model(model.upstream_id)
        and not needs_input_image(model.upstream_id)
    ]


def _named_entries(entries: object, *, key: str) -> list[Mapping[str, Any]]:
    """The object entries of a list with a non-empty string `key`, first of each name."""
    seen: set[str] = set()
    named: list[Mapping[str, Any]] = []
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, Mapping):
            continue
        name = entry.get(key)
        if isinstance(name, str) and name and name not in seen:
            seen.add(name)
            named.append(entry)
    return named


def _image_model(model_id: str, provider: str, *, created: int, owned_by: str) -> CatalogModel:
    return CatalogModel(
        id=model_id,
        provider=provider,
        display_name=model_id,
        created=created,
        owned_by=owned_by,
        quirks=quirks_for_model(model_id),
        kind=ModelKind.IMAGE,
    )
