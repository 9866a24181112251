"""Image generation: request checks, Workers AI inputs and answers, the OpenAI shape, catalogs."""

import base64
import json
from typing import Any

import pytest

from app.core.catalog import ModelKind
from app.core.errors import ClientRequestError, UpstreamProtocolError
from app.core.images.catalog import (
    explicit_image_models,
    image_catalog_from_cloudflare_search,
    image_catalog_from_models_list,
    is_image_model,
    needs_input_image,
)
from app.core.images.openai_images import (
    IMAGE_API_BY_KIND,
    ImageApi,
    ImageRequest,
    image_media_type,
    parse_size,
    to_openai_images_response,
    validate_image_request,
)
from app.core.images.workers_ai import (
    ImageTransport,
    WorkersAiImageModel,
    encode_multipart,
    image_from_workers_ai,
    to_workers_ai_input,
    workers_ai_image_model,
    workers_ai_model_path,
)
from app.core.providers import ExplicitModel, ProviderKind

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 8
GIF = b"GIF89a" + b"\x00" * 8
WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 "


def test_every_provider_kind_has_an_image_api() -> None:
    assert set(IMAGE_API_BY_KIND) == set(ProviderKind)
    assert IMAGE_API_BY_KIND[ProviderKind.CLOUDFLARE] is ImageApi.WORKERS_AI
    assert IMAGE_API_BY_KIND[ProviderKind.NVIDIA] is ImageApi.NONE


@pytest.mark.parametrize(
    ("model_id", "image"),
    [
        pytest.param("dall-e-3", True, id="dall-e"),
        pytest.param("gpt-image-1", True, id="gpt-image"),
        pytest.param("black-forest-labs/FLUX.1-schnell", True, id="flux-any-case"),
        pytest.param("stabilityai/stable-diffusion-3.5-large", True, id="stable-diffusion"),
        pytest.param("sd3-medium", True, id="sd3"),
        pytest.param("gpt-4.1-mini", False, id="chat"),
        pytest.param("influx-chat", False, id="flux-inside-a-word"),
    ],
)
def test_is_image_model(model_id: str, image: bool) -> None:
    assert is_image_model(model_id) is image


def test_needs_input_image() -> None:
    assert needs_input_image("@cf/runwayml/stable-diffusion-v1-5-img2img")
    assert needs_input_image("@cf/runwayml/stable-diffusion-v1-5-inpainting")
    assert needs_input_image("flux-kontext-pro")
    assert not needs_input_image("@cf/black-forest-labs/flux-1-schnell")


# ------------------------------------------------------------------ request


def test_validate_defaults() -> None:
    req = validate_image_request({"model": "m", "prompt": "a cat", "n": None}, max_images=4)
    assert req == ImageRequest(model="m", prompt="a cat")
    assert req.response_format == "b64_json" and req.extra == {}


def test_validate_keeps_workers_ai_knobs_only() -> None:
    body = {
        "model": "m",
        "prompt": "p",
        "n": 3,
        "size": "512x768",
        "response_format": "url",
        "seed": 1,
        "negative_prompt": "blur",
        "guidance": None,
        "quality": "hd",
    }
    req = validate_image_request(body, max_images=4)
    assert (req.n, req.size, req.response_format) == (3, (512, 768), "url")
    assert req.extra == {"negative_prompt": "blur", "seed": 1}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        pytest.param({"prompt": "p"}, "model: Field required", id="no-model"),
        pytest.param({"model": " ", "prompt": "p"}, "model: Field required", id="blank-model"),
        pytest.param({"model": "m"}, "prompt: Field required", id="no-prompt"),
        pytest.param({"model": "m", "prompt": 3}, "prompt: Field required", id="prompt-number"),
        pytest.param({"model": "m", "prompt": "p", "n": 5}, "from 1 to 4, got 5", id="n-big"),
        pytest.param({"model": "m", "prompt": "p", "n": 0}, "got 0", id="n-zero"),
        pytest.param({"model": "m", "prompt": "p", "n": True}, "got True", id="n-bool"),
        pytest.param({"model": "m", "prompt": "p", "n": "2"}, "got '2'", id="n-string"),
        pytest.param(
            {"model": "m", "prompt": "p", "response_format": "png"},
            "response_format: must be 'b64_json' or 'url', got 'png'",
            id="format",
        ),
        pytest.param({"model": "m", "prompt": "p", "size": "1024"}, "size:", id="size"),
    ],
)
def test_validate_refuses(body: dict[str, Any], words: str) -> None:
    with pytest.raises(ClientRequestError) as raised:
        validate_image_request(body, max_images=4)
    assert words in raised.value.message


@pytest.mark.parametrize(
    ("size", "parsed"),
    [
        pytest.param(None, None, id="none"),
        pytest.param("auto", None, id="auto"),
        pytest.param("1024x768", (1024, 768), id="wxh"),
    ],
)
def test_parse_size(size: object, parsed: tuple[int, int] | None) -> None:
    assert parse_size(size) == parsed


@pytest.mark.parametrize("size", ["1024X768", "x768", "1024x", 1024, "-1x5", "123456x1"])
def test_parse_size_refuses(size: object) -> None:
    with pytest.raises(ClientRequestError, match="WIDTHxHEIGHT"):
        parse_size(size)


# ------------------------------------------------------------------ Workers AI input


def test_models_and_their_transports() -> None:
    schnell = workers_ai_image_model("@cf/black-forest-labs/flux-1-schnell")
    assert schnell.fixed_size == (1024, 1024) and schnell.transport is ImageTransport.JSON
    klein = workers_ai_image_model("@cf/black-forest-labs/FLUX-2-klein-4b")
    assert klein.transport is ImageTransport.MULTIPART and klein.max_side == 1920
    assert workers_ai_image_model("@cf/lykon/dreamshaper-8-lcm") == WorkersAiImageModel()


def request(**changes: Any) -> ImageRequest:
    values: dict[str, Any] = {"model": "m", "prompt": "a cat"}
    values.update(changes)
    return ImageRequest(**values)


def test_input_with_size_and_seed_offset() -> None:
    req = request(size=(512, 768), extra={"seed": 10, "num_steps": 4})
    assert to_workers_ai_input(req, WorkersAiImageModel(), index=2) == {
        "prompt": "a cat",
        "seed": 12,
        "num_steps": 4,
        "width": 512,
        "height": 768,
    }


@pytest.mark.parametrize("seed", ["7", True], ids=["string-seed", "bool-seed"])
def test_input_leaves_odd_seeds_alone(seed: object) -> None:
    fields = to_workers_ai_input(request(extra={"seed": seed}), WorkersAiImageModel(), index=1)
    assert fields == {"prompt": "a cat", "seed": seed}


def test_input_fixed_size_model() -> None:
    spec = WorkersAiImageModel(fixed_size=(1024, 1024))
    assert to_workers_ai_input(request(size=(1024, 1024)), spec) == {"prompt": "a cat"}
    with pytest.raises(ClientRequestError, match="makes 1024x1024 images only"):
        to_workers_ai_input(request(size=(512, 512)), spec)


@pytest.mark.parametrize("size", [(255, 512), (512, 2049)], ids=["too-small", "too-big"])
def test_input_size_out_of_range(size: tuple[int, int]) -> None:
    with pytest.raises(ClientRequestError, match="from 256 to 2048 pixels"):
        to_workers_ai_input(request(size=size), WorkersAiImageModel())


def test_encode_multipart() -> None:
    body, content_type = encode_multipart({"prompt": "a é", "width": 512}, "BOUND")
    assert content_type == "multipart/form-data; boundary=BOUND"
    assert body == (
        b'--BOUND\r\nContent-Disposition: form-data; name="prompt"\r\n\r\n'
        + "a é".encode()
        + b'\r\n--BOUND\r\nContent-Disposition: form-data; name="width"\r\n\r\n512\r\n'
        b"--BOUND--\r\n"
    )


# ------------------------------------------------------------------ Workers AI answers


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("content_type", "body", "image"),
    [
        pytest.param("image/png", b"whatever", b"whatever", id="image-content-type"),
        pytest.param("application/octet-stream", PNG, PNG, id="sniffed-png"),
        pytest.param(
            "application/json",
            json.dumps({"result": {"image": b64(JPEG)}, "success": True}).encode(),
            JPEG,
            id="json-result-image",
        ),
        pytest.param(
            "application/json", json.dumps({"image": b64(PNG)}).encode(), PNG, id="json-bare"
        ),
    ],
)
def test_image_from_workers_ai(content_type: str, body: bytes, image: bytes) -> None:
    assert image_from_workers_ai(content_type, body, model="m") == image


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"[1]", id="json-list"),
        pytest.param(b'{"result": "x"}', id="result-not-object"),
        pytest.param(b'{"result": {"image": ""}}', id="empty-image"),
        pytest.param(b'{"result": {"image": "***not base64***"}}', id="bad-base64"),
    ],
)
def test_image_from_workers_ai_refuses(body: bytes) -> None:
    with pytest.raises(UpstreamProtocolError, match="neither an image nor JSON"):
        image_from_workers_ai("application/json", body, model="m")


def test_image_from_workers_ai_without_content_type() -> None:
    with pytest.raises(UpstreamProtocolError, match="no content type, 3 bytes"):
        image_from_workers_ai("", b"abc", model="m")


@pytest.mark.parametrize(
    ("data", "media_type"),
    [
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (GIF, "image/gif"),
        (WEBP, "image/webp"),
        (b"RIFF\x00\x00\x00\x00WAVE", "image/png"),
        (b"", "image/png"),
    ],
    ids=["png", "jpeg", "gif", "webp", "riff-not-webp", "unknown"],
)
def test_image_media_type(data: bytes, media_type: str) -> None:
    assert image_media_type(data) == media_type


def test_openai_images_response() -> None:
    assert to_openai_images_response([PNG, JPEG], "b64_json", created=5) == {
        "created": 5,
        "data": [{"b64_json": b64(PNG)}, {"b64_json": b64(JPEG)}],
    }
    assert to_openai_images_response([JPEG], "url", created=5)["data"] == [
        {"url": f"data:image/jpeg;base64,{b64(JPEG)}"}
    ]


# ------------------------------------------------------------------ catalogs


def test_image_catalog_from_models_list() -> None:
    body = {
        "data": [
            {"id": "gpt-image-1", "created": 1_745_000_000, "owned_by": "system"},
            {"id": "dall-e-3", "created": "soon", "owned_by": ""},
            {"id": "dall-e-3"},  # repeated: the first wins
            {"id": "gpt-4.1"},
            {"id": "flux-kontext-pro"},  # edits an image
            {"id": ""},
            {"name": "no id"},
            "not an object",
        ]
    }
    models = image_catalog_from_models_list(body, provider="oai")
    assert [(m.id, m.created, m.owned_by, m.kind) for m in models] == [
        ("dall-e-3", 0, "oai", ModelKind.IMAGE),
        ("gpt-image-1", 1_745_000_000, "system", ModelKind.IMAGE),
    ]
    bare = image_catalog_from_models_list([{"id": "sdxl-turbo"}], provider="p")
    assert [m.id for m in bare] == ["sdxl-turbo"]
    assert image_catalog_from_models_list({"data": "nope"}, provider="p") == []


def test_image_catalog_from_cloudflare_search() -> None:
    body = {
        "result": [
            {"name": "@cf/black-forest-labs/flux-1-schnell", "task": {"name": "Text-to-Image"}},
            {
                "name": "@cf/runwayml/stable-diffusion-v1-5-img2img",
                "task": {"name": "Text-to-Image"},
            },
            {"name": "@cf/meta/llama-3.3-70b", "task": {"name": "Text Generation"}},
            {"name": "@cf/no/task"},
            {"name": "plain-name", "task": {"name": " text-to-image "}},
        ]
    }
    models = image_catalog_from_cloudflare_search(body, provider="cf")
    assert [(m.id, m.owned_by) for m in models] == [
        ("@cf/black-forest-labs/flux-1-schnell", "black-forest-labs"),
        ("plain-name", "cf"),
    ]
    assert all(m.kind is ModelKind.IMAGE for m in models)
    assert image_catalog_from_cloudflare_search([], provider="cf") == []


def test_explicit_image_models() -> None:
    named = (
        ExplicitModel("painter", remote_id="stable-diffusion-3.5-large"),
        ExplicitModel("dall-e-3"),
        ExplicitModel("writer", remote_id="gpt-4.1"),
        ExplicitModel("editor", remote_id="flux-kontext-pro"),
    )
    models = explicit_image_models(named, provider="p", known={"dall-e-3"})
    assert [(m.id, m.provider, m.kind) for m in models] == [("painter", "p", ModelKind.IMAGE)]


@pytest.mark.parametrize(
    "model",
    [
        "@cf/black-forest-labs/flux-1-schnell",
        "@hf/thebloke/model-v1.5:q4",
        "@cf/bytedance/stable-diffusion-xl-lightning",
    ],
)
def test_a_workers_ai_model_id_goes_into_the_path_as_it_is(model: str) -> None:
    assert workers_ai_model_path(model) == model


@pytest.mark.parametrize(
    "model",
    [
        "../../../../user/tokens",  # issue 17: POSTed the user's token to /user/tokens
        "@cf/a/../../b",
        "./x",
        "x?y=1",
        "a#b",
        "a%2F..",
        "a//b",
        "/abs",
        "a/",
        "",
        "a b",
        "x" * 201,
    ],
)
def test_a_workers_ai_model_id_cannot_leave_the_run_path(model: str) -> None:
    with pytest.raises(ClientRequestError, match="not a Workers AI model id"):
        workers_ai_model_path(model)
