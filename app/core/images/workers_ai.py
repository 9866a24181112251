"""Cloudflare Workers AI's text-to-image models, called natively
(`POST .../ai/run/<model>`), one image per call: JSON input for most models,
multipart/form-data for the FLUX.2 family; the answer is either JSON
(`{"result": {"image": "<base64>"}}`) or the raw image bytes (the Stable Diffusion
models)."""

import base64
import binascii
import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.core.errors import ClientRequestError, UpstreamProtocolError
from app.core.images.openai_images import ImageRequest, sniff_image_type

WORKERS_AI_PARALLEL_IMAGES = 2  # calls in flight at once for one request


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
    if content_type.startswith("image/") or sniff_image_type(body) is not None:
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
