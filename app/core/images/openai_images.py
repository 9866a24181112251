"""OpenAI's images API (`POST /v1/images/generations`): which providers have it, the
client's request checked, and the answer in OpenAI's shape.

Rules:
- OpenAI-style providers get the client's body as written (only `model` is mapped);
  here it is only checked enough to refuse what no provider takes (no prompt, a bad `n`,
  a malformed `size`, an unknown `response_format`).
- Each image comes back as `b64_json` or, for `url`, a data URL: NimBridge hosts
  nothing, so a data URL is the only URL it can give.
- `response_format` defaults to `b64_json` (what the gpt-image models always return).
"""

import base64
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from app.core.errors import ClientRequestError
from app.core.providers import ProviderKind

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
RESPONSE_FORMATS: tuple[ResponseFormat, ...] = ("b64_json", "url")

# Fields a client may add (through the SDK's `extra_body`) that Workers AI models take.
WORKERS_AI_EXTRA_FIELDS = ("negative_prompt", "steps", "num_steps", "guidance", "seed")

_SIZE_RE = re.compile(r"^(\d{1,5})x(\d{1,5})$")


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


_IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
)


def sniff_image_type(data: bytes) -> str | None:
    for magic, media_type in _IMAGE_MAGIC:
        if data.startswith(magic):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_media_type(data: bytes) -> str:
    """What the bytes are, for a data URL; PNG when they do not say."""
    return sniff_image_type(data) or "image/png"


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
