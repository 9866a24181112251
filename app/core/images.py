"""OpenAI image generation (`POST /v1/images/generations`) for OpenAI-style providers
and Cloudflare Workers AI. No I/O: the server sends what this builds and hands back
what came.

Rules:
- OpenAI-style providers get the client's body as written (only `model` is mapped);
  here it is only checked enough to refuse what no provider takes (no prompt, a bad `n`,
  a malformed `size`, an unknown `response_format`).
- Workers AI runs text-to-image models natively (`POST .../ai/run/<model>`), one image
  per call: JSON input for most models, multipart/form-data for the FLUX.2 family; the
  answer is either JSON (`{"result": {"image": "<base64>"}}`) or the raw image bytes
  (the Stable Diffusion models). Each image comes back as `b64_json` or, for `url`, a
  data URL: NimBridge hosts nothing, so a data URL is the only URL it can give.
- Only prompt-only models are offered: img2img and inpainting models need an input
  image this endpoint does not carry.
- `response_format` defaults to `b64_json` (what the gpt-image models always return).
"""

import base64
import binascii
import enum
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from app.core.capabilities import quirks_for_model
from app.core.catalog import CatalogModel, ModelKind
from app.core.errors import ClientRequestError, UpstreamProtocolError
from app.core.providers import ExplicitModel, ProviderKind

type ResponseFormat = Literal["b64_json", "url"]


class ImageApi(enum.StrEnum):
    OPENAI = "openai"  # POST {base}/images/generations, OpenAI's own shape
    WORKERS_AI = "workers-ai"  # POST {account}/ai/run/<model>, translated here
    NONE = "none"


# Which image API each kind of provider has. NVIDIA hosts image models on its own
# per-model endpoints (ai.api.nvidia.com), OpenRouter makes images through chat
# completions, DeepSeek, vLLM and LM Studio have none; Ollama's /v1/images/generations
# is OpenAI-shaped; a custom URL (LocalAI, Together...) may have it: the upstream decides.
IMAGE_API_BY_KIND: dict[ProviderKind, ImageApi] = {
    ProviderKind.NVIDIA: ImageApi.NONE,
    ProviderKind.OPENAI: ImageApi.OPENAI,
    ProviderKind.OPENROUTER: ImageApi.NONE,
    ProviderKind.DEEPSEEK: ImageApi.NONE,
    ProviderKind.OLLAMA: ImageApi.OPENAI,
    ProviderKind.LMSTUDIO: ImageApi.NONE,
    ProviderKind.VLLM: ImageApi.NONE,
    ProviderKind.LLAMACPP: ImageApi.NONE,
    ProviderKind.CLOUDFLARE: ImageApi.WORKERS_AI,
    ProviderKind.CUSTOM: ImageApi.OPENAI,
}

OPENAI_IMAGES_PATH = "/images/generations"
MAX_IMAGES_OPENAI = 10  # OpenAI's own bound on `n`
MAX_IMAGES_WORKERS_AI = 4  # one upstream call per image: keep a request's cost bounded
WORKERS_AI_PARALLEL_IMAGES = 2  # calls in flight at once for one request
RESPONSE_FORMATS: tuple[ResponseFormat, ...] = ("b64_json", "url")

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

# Fields a client may add (through the SDK's `extra_body`) that Workers AI models take.
WORKERS_AI_EXTRA_FIELDS = ("negative_prompt", "steps", "num_steps", "guidance", "seed")

_SIZE_RE = re.compile(r"^(\d{1,5})x(\d{1,5})$")


def is_image_model(model_id: str) -> bool:
    name = model_id.lower()
    return any(pattern.search(name) for pattern in IMAGE_MODEL_PATTERNS)


def needs_input_image(model_id: str) -> bool:
    name = model_id.lower()
    return any(pattern.search(name) for pattern in NEEDS_INPUT_IMAGE_PATTERNS)


# ------------------------------------------------------------------ the request


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """The client's request, checked; `size` is None for "auto" or none given."""

    model: str
    prompt: str
    n: int = 1
    size: tuple[int, int] | None = None
    response_format: ResponseFormat = "b64_json"
    extra: Mapping[str, Any] = field(default_factory=dict)  # Workers AI knobs passed on


def validate_image_request(body: Mapping[str, Any], *, max_images: int) -> ImageRequest:
    """Refuse, in words naming the field, what no provider would take."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ClientRequestError(
            "model: Field required (an image model; see GET /v1/models?protocol=openai-images)"
        )
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ClientRequestError("prompt: Field required (a non-empty string)")
    n = body.get("n", 1)
    if n is None:
        n = 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= max_images:
        raise ClientRequestError(f"n: must be an integer from 1 to {max_images}, got {n!r}")
    response_format = body.get("response_format") or "b64_json"
    if response_format not in RESPONSE_FORMATS:
        raise ClientRequestError(
            f"response_format: must be 'b64_json' or 'url', got {response_format!r}"
        )
    return ImageRequest(
        model=model,
        prompt=prompt,
        n=n,
        size=parse_size(body.get("size")),
        response_format=response_format,
        extra={k: body[k] for k in WORKERS_AI_EXTRA_FIELDS if body.get(k) is not None},
    )


def parse_size(size: object) -> tuple[int, int] | None:
    """`"1024x768"` -> (1024, 768); `"auto"` or nothing -> None."""
    if size is None or size == "auto":
        return None
    match = _SIZE_RE.match(size) if isinstance(size, str) else None
    if match is None:
        raise ClientRequestError(
            f"size: must be 'auto' or WIDTHxHEIGHT in pixels (e.g. '1024x1024'), got {size!r}"
        )
    return int(match.group(1)), int(match.group(2))


# ------------------------------------------------------------------ Workers AI models


class ImageTransport(enum.StrEnum):
    JSON = "json"
    MULTIPART = "multipart"


@dataclass(frozen=True, slots=True)
class WorkersAiImageModel:
    """How one Workers AI text-to-image model is called, and the sizes it makes."""

    transport: ImageTransport = ImageTransport.JSON
    min_side: int = 256
    max_side: int = 2048
    fixed_size: tuple[int, int] | None = None  # takes no width/height: always this size


# First match wins; the last entry is every other model (the Stable Diffusion family,
# DreamShaper, Leonardo's): JSON in, width and height 256..2048.
WORKERS_AI_IMAGE_MODELS: tuple[tuple[re.Pattern[str], WorkersAiImageModel], ...] = (
    # FLUX.1 [schnell]: prompt and steps only, a 1024x1024 JPEG as base64 JSON.
    (re.compile(r"flux-1-schnell"), WorkersAiImageModel(fixed_size=(1024, 1024))),
    # FLUX.2 [dev] / [klein]: multipart/form-data even for a prompt alone; 256..1920.
    (
        re.compile(r"flux-2"),
        WorkersAiImageModel(transport=ImageTransport.MULTIPART, max_side=1920),
    ),
    (re.compile(r""), WorkersAiImageModel()),
)


# A Workers AI model id as it goes into the run URL's path: slash-separated names of
# letters, digits and `@ . _ : + -`, none starting with a dot (no `..` segment, no `?`,
# `#` or `%`). Anything else would leave /ai/run/ with the user's Cloudflare token.
_WORKERS_AI_MODEL_ID = re.compile(
    r"[A-Za-z0-9@_][A-Za-z0-9@._:+-]*(?:/[A-Za-z0-9@_][A-Za-z0-9@._:+-]*)*"
)


def workers_ai_model_path(model_id: str) -> str:
    """`model_id` as the tail of Workers AI's /ai/run/ URL; ClientRequestError for an id
    that is not a model name (it would reach another Cloudflare API)."""
    if len(model_id) > 200 or _WORKERS_AI_MODEL_ID.fullmatch(model_id) is None:
        raise ClientRequestError(
            f"model: {model_id[:200]!r} is not a Workers AI model id (names like "
            "@cf/black-forest-labs/flux-1-schnell: letters, digits, @ . _ : + - between slashes)"
        )
    return model_id


def workers_ai_image_model(model_id: str) -> WorkersAiImageModel:
    name = model_id.lower()
    return next(spec for pattern, spec in WORKERS_AI_IMAGE_MODELS if pattern.search(name))


def to_workers_ai_input(
    req: ImageRequest, spec: WorkersAiImageModel, *, index: int = 0
) -> dict[str, Any]:
    """The model's input for image number `index` of the request (0-based).

    A client's `seed` is offset by `index`: the same seed n times would make n copies.
    """
    fields: dict[str, Any] = {"prompt": req.prompt, **req.extra}
    if isinstance(fields.get("seed"), int) and not isinstance(fields["seed"], bool):
        fields["seed"] += index
    if req.size is None:
        return fields
    width, height = req.size
    if spec.fixed_size is not None:
        if req.size != spec.fixed_size:
            raise ClientRequestError(
                f"size: {req.model} makes {spec.fixed_size[0]}x{spec.fixed_size[1]} images "
                f"only; ask for that size or 'auto', got '{width}x{height}'"
            )
        return fields
    for side in (width, height):
        if not spec.min_side <= side <= spec.max_side:
            raise ClientRequestError(
                f"size: {req.model} takes widths and heights from {spec.min_side} to "
                f"{spec.max_side} pixels, got '{width}x{height}'"
            )
    return {**fields, "width": width, "height": height}


def encode_multipart(fields: Mapping[str, Any], boundary: str) -> tuple[bytes, str]:
    """multipart/form-data of text fields: (body, content type). The caller picks a
    random `boundary` (no clock or randomness here)."""
    parts: list[bytes] = []
    for name, value in fields.items():
        text = value if isinstance(value, str) else json.dumps(value)
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + text.encode()
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def image_from_workers_ai(content_type: str, body: bytes, *, model: str) -> bytes:
    """The image bytes in a Workers AI answer: raw image bytes, or base64 in JSON."""
    if content_type.startswith("image/") or _sniff_image_type(body) is not None:
        return body
    try:
        parsed: Any = json.loads(body)
    except (ValueError, RecursionError):
        parsed = None
    result = parsed.get("result", parsed) if isinstance(parsed, dict) else None
    encoded = result.get("image") if isinstance(result, dict) else None
    if isinstance(encoded, str) and encoded:
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            pass
    raise UpstreamProtocolError(
        f"Workers AI answered {model} with neither an image nor JSON holding one "
        f"({content_type or 'no content type'}, {len(body)} bytes)"
    )


_IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
)


def _sniff_image_type(data: bytes) -> str | None:
    for magic, media_type in _IMAGE_MAGIC:
        if data.startswith(magic):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_media_type(data: bytes) -> str:
    """What the bytes are, for a data URL; PNG when they do not say."""
    return _sniff_image_type(data) or "image/png"


def to_openai_images_response(
    images: list[bytes], response_format: ResponseFormat, *, created: int
) -> dict[str, Any]:
    """OpenAI's `ImagesResponse`: `b64_json`, or a data URL in `url`."""
    data: list[dict[str, str]] = []
    for image in images:
        encoded = base64.b64encode(image).decode("ascii")
        if response_format == "url":
            data.append({"url": f"data:{image_media_type(image)};base64,{encoded}"})
        else:
            data.append({"b64_json": encoded})
    return {"created": created, "data": data}


# ------------------------------------------------------------------ catalogs


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
