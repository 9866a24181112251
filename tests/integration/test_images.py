"""POST /v1/images/generations through the real server, driven by the official `openai`
SDK's `images.generate`, against a fake OpenAI-style images API and a fake Workers AI
(JSON-image, raw-PNG and multipart models) on loopback; and the image model listing.

Three providers: `nvidia` (the default, no image API), `oai` (OpenAI-style) and `cf`
(Workers AI), all served by one fake upstream.
"""

import asyncio
import base64
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from aiohttp import web

from app.config.secrets import MemorySecretStore, ProviderKeys
from app.config.settings import Settings, TierModels
from app.core.providers import ExplicitModel, Provider, ProviderKind
from app.server.app import ProxyServer
from app.server.curl import NO_CALL
from app.service import ProxyService, RequestDetail
from tests.fake_upstream import (
    TINY_JPEG,
    FakeUpstream,
    LoopThread,
    Recorded,
    default_workers_ai_image,
    http_request,
    reply_json,
    tiny_png,
)
from tests.integration.conftest import track

PROXY_KEY = "proxy-key-for-image-tests"
OAI_KEY = "sk-openai-style-key-000000000000"
CF_KEY = "cf-token-0123456789abcdef"
SCHNELL = "@cf/black-forest-labs/flux-1-schnell"
KLEIN = "@cf/black-forest-labs/flux-2-klein-4b"
LIGHTNING = "@cf/bytedance/stable-diffusion-xl-lightning"
RUN_PATH = "/client/v4/accounts/acc123/ai/run/"

CLOUDFLARE_MODELS: list[dict[str, Any]] = [
    {
        "id": "a1",
        "name": "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
        "task": {"name": "Text Generation"},
    },
    {"id": "a2", "name": SCHNELL, "task": {"name": "Text-to-Image"}},
    {"id": "a3", "name": KLEIN, "task": {"name": "Text-to-Image"}},
    {"id": "a4", "name": LIGHTNING, "task": {"name": "Text-to-Image"}},
    {
        "id": "a5",
        "name": "@cf/runwayml/stable-diffusion-v1-5-img2img",
        "task": {"name": "Text-to-Image"},
    },
    {"id": "a6", "name": "@cf/baai/bge-m3", "task": {"name": "Text Embeddings"}},
]
OPENAI_MODELS: list[dict[str, Any]] = [
    {"id": "gpt-4.1-mini", "object": "model", "created": 1_744_000_000, "owned_by": "openai"},
    {"id": "dall-e-3", "object": "model", "created": 1_698_000_000, "owned_by": "system"},
    {"id": "gpt-image-1", "object": "model", "created": 1_745_000_000, "owned_by": "system"},
]


def images_settings(upstream: FakeUpstream) -> Settings:
    root = upstream.base_url.removesuffix("/v1")
    return Settings(
        host="127.0.0.1",
        port=0,
        retry_max_wait_s=3.0,
        providers=(
            Provider("nvidia", ProviderKind.NVIDIA, upstream.base_url),
            Provider("oai", ProviderKind.OPENAI, upstream.base_url),
            Provider(
                "cf",
                ProviderKind.CLOUDFLARE,
                f"{root}/client/v4/accounts/acc123/ai/v1",
                account_id="acc123",
            ),
        ),
        default_provider="nvidia",
        tiers=TierModels(default="meta/llama-3.3-70b-instruct"),
    )


def images_keys() -> ProviderKeys:
    keys = ProviderKeys(MemorySecretStore(), env={})
    keys.set("nvidia", "nvapi-not-used-here-0000000")
    keys.set("oai", OAI_KEY)
    keys.set("cf", CF_KEY)
    return keys


@pytest.fixture
def image_models(upstream: FakeUpstream) -> Iterator[None]:
    saved = (upstream.models, upstream.cloudflare_models)
    upstream.models, upstream.cloudflare_models = OPENAI_MODELS, CLOUDFLARE_MODELS
    yield
    upstream.models, upstream.cloudflare_models = saved


@pytest.fixture
def images_proxy(
    loop_thread: LoopThread, upstream: FakeUpstream, image_models: None
) -> Iterator[str]:
    server = ProxyServer(images_settings(upstream), images_keys(), PROXY_KEY)
    url = loop_thread.run(server.start())
    try:
        yield url
    finally:
        loop_thread.run(server.stop())


def client(url: str) -> openai.OpenAI:
    return track(openai.OpenAI(base_url=url + "/v1", api_key=PROXY_KEY, max_retries=0))


def error_of(exc: openai.APIStatusError) -> dict[str, Any]:
    """The `error` object of an OpenAI-shaped error answer (the SDK unwraps it into `body`)."""
    assert isinstance(exc.body, dict)
    return exc.body


def message_of(exc: openai.APIStatusError) -> str:
    return str(error_of(exc)["message"])


def decoded(b64: str | None) -> bytes:
    assert b64 is not None
    return base64.b64decode(b64)


# ------------------------------------------------------------------ OpenAI-style


def test_openai_style_provider_gets_the_body_as_written(
    images_proxy: str, upstream: FakeUpstream
) -> None:
    answer = client(images_proxy).images.generate(
        model="dall-e-3",  # in oai's list only: routed there by the image catalog
        prompt="a lighthouse at dusk",
        n=2,
        size="1024x1024",
        response_format="b64_json",
        quality="hd",
    )
    assert answer.data is not None
    assert [decoded(image.b64_json) for image in answer.data] == [tiny_png(0), tiny_png(1)]
    sent = upstream.image_requests[-1]
    assert sent.path == "/v1/images/generations"
    assert sent.headers["Authorization"] == f"Bearer {OAI_KEY}"
    assert sent.body == {
        "model": "dall-e-3",
        "prompt": "a lighthouse at dusk",
        "n": 2,
        "size": "1024x1024",
        "response_format": "b64_json",
        "quality": "hd",
    }


def test_openai_style_urls_are_relayed(images_proxy: str, upstream: FakeUpstream) -> None:
    answer = client(images_proxy).images.generate(
        model="oai/gpt-image-1", prompt="a red kite", response_format="url"
    )
    assert answer.data is not None and answer.data[0].url == "https://images.example/0.png"
    assert upstream.image_requests[-1].body["model"] == "gpt-image-1"  # prefix taken off


def test_openai_style_error_is_relayed_without_our_key(
    images_proxy: str, upstream: FakeUpstream
) -> None:
    echoed = f"Incorrect API key provided: {OAI_KEY}."
    upstream.images_queue.append(
        reply_json({"error": {"message": echoed, "type": "invalid_request_error"}}, status=401)
    )
    with pytest.raises(openai.AuthenticationError) as raised:
        client(images_proxy).images.generate(model="dall-e-3", prompt="x")
    text = raised.value.response.text
    assert OAI_KEY not in text and "Incorrect API key provided: ***" in text
    assert message_of(raised.value).startswith("upstream rejected the API key (401)")


# ------------------------------------------------------------------ Workers AI


def test_workers_ai_json_model(images_proxy: str, upstream: FakeUpstream) -> None:
    """FLUX.1 schnell: JSON in, `{"result": {"image": base64}}` out, one call per image."""
    answer = client(images_proxy).images.generate(
        model=SCHNELL, prompt="a cyberpunk lizard", n=2, response_format="b64_json"
    )
    assert answer.data is not None
    assert [decoded(image.b64_json) for image in answer.data] == [TINY_JPEG, TINY_JPEG]
    assert answer.created > 1_700_000_000
    sent = upstream.image_requests
    assert [r.path for r in sent] == [RUN_PATH + SCHNELL] * 2
    assert sent[0].body == {"prompt": "a cyberpunk lizard"}  # no size asked: none sent
    assert sent[0].headers["Authorization"] == f"Bearer {CF_KEY}"
    assert sent[0].headers["Content-Type"] == "application/json"


def test_workers_ai_raw_png_model_as_data_urls(images_proxy: str, upstream: FakeUpstream) -> None:
    """SDXL Lightning answers with PNG bytes; `url` gives data URLs; a seed differs per image."""
    answer = client(images_proxy).images.generate(
        model=f"cf/{LIGHTNING}",
        prompt="a bowl of apples",
        n=2,
        size="512x768",
        response_format="url",
        extra_body={"seed": 7, "negative_prompt": "blurry"},
    )
    assert answer.data is not None
    urls = [image.url or "" for image in answer.data]
    assert all(url.startswith("data:image/png;base64,") for url in urls)
    assert sorted(base64.b64decode(url.split(",", 1)[1]) for url in urls) == sorted(
        [tiny_png(7), tiny_png(8)]
    )
    bodies = sorted((r.body for r in upstream.image_requests), key=lambda body: body["seed"])
    assert bodies == [
        {
            "prompt": "a bowl of apples",
            "negative_prompt": "blurry",
            "seed": seed,
            "width": 512,
            "height": 768,
        }
        for seed in (7, 8)
    ]


def test_workers_ai_multipart_model(images_proxy: str, upstream: FakeUpstream) -> None:
    """FLUX.2 takes multipart/form-data even for a prompt alone."""
    answer = client(images_proxy).images.generate(
        model=KLEIN, prompt="a sunset at the alps", size="1024x768"
    )
    assert answer.data is not None and decoded(answer.data[0].b64_json) == tiny_png(0)
    sent = upstream.image_requests[-1]
    assert sent.path == RUN_PATH + KLEIN
    assert sent.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert sent.body == {"prompt": "a sunset at the alps", "width": "1024", "height": "768"}


@pytest.mark.parametrize(
    ("model", "changes", "words"),
    [
        pytest.param(SCHNELL, {"n": 5}, "at most 4 per request", id="n-over-workers-ai-bound"),
        pytest.param(SCHNELL, {"n": 0}, "n: must be an integer from 1 to 10", id="n-zero"),
        pytest.param(LIGHTNING, {"size": "4096x4096"}, "from 256 to 2048", id="size-too-big"),
        pytest.param(KLEIN, {"size": "2048x1024"}, "from 256 to 1920", id="flux-2-size"),
        pytest.param(SCHNELL, {"size": "512x512"}, "1024x1024 images only", id="fixed-size"),
        pytest.param(SCHNELL, {"size": "big"}, "WIDTHxHEIGHT", id="size-malformed"),
        pytest.param(SCHNELL, {"response_format": "png"}, "response_format", id="format"),
        pytest.param(SCHNELL, {"prompt": " "}, "prompt: Field required", id="blank-prompt"),
    ],
)
def test_limits_are_refused_before_any_upstream_call(
    images_proxy: str, upstream: FakeUpstream, model: str, changes: dict[str, Any], words: str
) -> None:
    body = {"model": model, "prompt": "a cat", **changes}
    status, headers, raw = http_request(
        images_proxy + "/v1/images/generations",
        "POST",
        body=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {PROXY_KEY}", "Content-Type": "application/json"},
    )
    error = json.loads(raw)["error"]
    assert status == 400 and error["type"] == "invalid_request_error", raw
    assert words in error["message"]
    assert "request-id" in headers
    assert upstream.image_requests == []


@pytest.mark.parametrize(
    ("model", "error", "words"),
    [
        pytest.param(
            "cf/@cf/nobody/nothing-like-this",
            openai.NotFoundError,
            "cf has no text-to-image model '@cf/nobody/nothing-like-this'",
            id="unknown-workers-ai-model",
        ),
        pytest.param(
            "cf/@cf/meta/llama-3.3-70b-instruct-fp8-fast",
            openai.BadRequestError,
            "is a chat model of cf, not an image model",
            id="chat-model",
        ),
        pytest.param(
            "cf/@cf/runwayml/stable-diffusion-v1-5-img2img",
            openai.BadRequestError,
            "needs an input image",
            id="img2img-model",
        ),
        pytest.param(
            "meta/llama-3.3-70b-instruct",
            openai.BadRequestError,
            "routes to nvidia (NVIDIA NIM (build.nvidia.com)), which has no OpenAI-style image",
            id="provider-without-images",
        ),
        pytest.param(
            "oai/gpt-4.1-mini",
            openai.BadRequestError,
            "gpt-4.1-mini is a chat model of oai",
            id="openai-style-chat-model",
        ),
    ],
)
def test_models_that_cannot_make_images_are_told_in_words(
    images_proxy: str, upstream: FakeUpstream, model: str, error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as raised:
        client(images_proxy).images.generate(model=model, prompt="a cat")
    assert words in str(raised.value)
    assert "GET /v1/models?protocol=openai-images" in str(raised.value) or "input" in words
    assert upstream.image_requests == []


def test_workers_ai_failure_ends_the_request_in_words(
    images_proxy: str, upstream: FakeUpstream
) -> None:
    refusal = {"success": False, "errors": [{"code": 3030, "message": "Prompt was flagged"}]}
    upstream.images_queue.extend([default_workers_ai_image, reply_json(refusal, status=400)])
    with pytest.raises(openai.BadRequestError) as raised:
        client(images_proxy).images.generate(model=SCHNELL, prompt="a cat", n=2)
    assert message_of(raised.value) == "upstream returned 400: Prompt was flagged"
    assert error_of(raised.value)["type"] == "invalid_request_error"


def test_workers_ai_images_are_made_two_at_a_time(
    images_proxy: str, upstream: FakeUpstream
) -> None:
    in_flight: list[int] = [0, 0]  # now, most seen

    async def slow(request: web.Request, record: Recorded) -> web.StreamResponse:
        in_flight[0] += 1
        in_flight[1] = max(in_flight)
        try:
            await asyncio.sleep(0.05)
            return await default_workers_ai_image(request, record)
        finally:
            in_flight[0] -= 1

    upstream.images_queue.extend([slow] * 4)
    answer = client(images_proxy).images.generate(model=LIGHTNING, prompt="a cat", n=4)
    assert answer.data is not None and len(answer.data) == 4
    assert len(upstream.image_requests) == 4 and 1 <= in_flight[1] <= 2


def test_workers_ai_rate_limit_is_retried_before_answering(
    images_proxy: str, upstream: FakeUpstream
) -> None:
    """Image calls are paced and retried like chat ones: a 429 with Retry-After: 0."""
    busy = {
        "success": False,
        "errors": [{"code": 3040, "message": "Capacity temporarily exceeded"}],
    }
    upstream.images_queue.append(reply_json(busy, status=429, headers={"Retry-After": "0"}))
    answer = client(images_proxy).images.generate(model=LIGHTNING, prompt="a cat")
    assert answer.data is not None and decoded(answer.data[0].b64_json) == tiny_png(0)
    assert len(upstream.image_requests) == 2


def test_explicit_image_model_and_client_key_pass_through(
    loop_thread: LoopThread, upstream: FakeUpstream
) -> None:
    """No proxy key: the client's own key goes upstream; a model named in settings routes."""
    oai = Provider(
        "oai",
        ProviderKind.CUSTOM,
        upstream.base_url,
        models=(ExplicitModel("painter", remote_id="stable-diffusion-3.5-large"),),
    )
    settings = Settings(host="127.0.0.1", port=0, providers=(oai,), default_provider="oai")
    server = ProxyServer(settings, ProviderKeys(MemorySecretStore(), env={}), None)
    url = loop_thread.run(server.start())
    try:
        own = track(openai.OpenAI(base_url=url + "/v1", api_key="sk-clients-own", max_retries=0))
        listed = own.models.list(extra_query={"protocol": "openai-images"}).data
        assert [m.id for m in listed] == ["painter"]
        own.images.generate(model="painter", prompt="a cat")
        sent = upstream.image_requests[-1]
        assert sent.body["model"] == "stable-diffusion-3.5-large"
        assert sent.headers["Authorization"] == "Bearer sk-clients-own"
    finally:
        loop_thread.run(server.stop())


@pytest.mark.allow_warnings  # a 502 is logged as a warning
def test_workers_ai_answer_without_an_image_is_a_502(
    images_proxy: str, upstream: FakeUpstream
) -> None:
    upstream.images_queue.append(reply_json({"result": {"text": "no"}, "success": True}))
    with pytest.raises(openai.InternalServerError) as raised:
        client(images_proxy).images.generate(model=SCHNELL, prompt="a cat")
    assert raised.value.status_code == 502
    assert "neither an image nor JSON holding one" in message_of(raised.value)


def test_images_need_the_proxy_key(images_proxy: str) -> None:
    bad = track(openai.OpenAI(base_url=images_proxy + "/v1", api_key="wrong", max_retries=0))
    with pytest.raises(openai.AuthenticationError):
        bad.images.generate(model=SCHNELL, prompt="a cat")


# ------------------------------------------------------------------ listing


def test_image_models_are_listed_apart(images_proxy: str, upstream: FakeUpstream) -> None:
    oa = client(images_proxy)
    listed = oa.models.list(extra_query={"protocol": "openai-images"}).data
    assert [m.id for m in listed] == [
        "oai/dall-e-3",
        "oai/gpt-image-1",
        f"cf/{SCHNELL}",
        f"cf/{KLEIN}",
        f"cf/{LIGHTNING}",
    ]
    facts = {m.id: m.model_extra["nimbridge"] for m in listed if m.model_extra}
    assert facts[f"cf/{KLEIN}"] == {
        "provider": "cf",
        "upstream_id": KLEIN,
        "kind": "image",
        "api": "workers-ai",
        "max_images": 4,
        "transport": "multipart",
    }
    assert facts["oai/dall-e-3"]["api"] == "openai" and listed[0].owned_by == "system"
    search = [r for r in upstream.requests if r.path.endswith("/ai/models/search")][-1]
    assert "task=Text-to-Image" in search.query

    chat = [m.id for m in oa.models.list().data]  # the default listing: chat models only
    assert "oai/dall-e-3" not in chat and f"cf/{SCHNELL}" not in chat
    assert "cf/@cf/meta/llama-3.3-70b-instruct-fp8-fast" in chat


# ------------------------------------------------------------------ request inspector


def test_copy_as_curl_repeats_each_image_call_as_it_was_made(
    loop_thread: LoopThread, upstream: FakeUpstream, image_models: None
) -> None:
    """The inspector's curl goes where NimBridge went (images API, a Workers AI model's run
    endpoint), and run as it is, sends the upstream the same body NimBridge sent."""
    service = ProxyService(
        images_settings(upstream), images_keys(), settings_path=None, proxy_key=PROXY_KEY
    )

    async def start() -> str | None:
        await service.start()
        return service.status().base_url  # the service lives on its loop's thread

    base_url = loop_thread.run(start())
    assert base_url
    try:
        sdk = client(base_url)
        tricky = "a sunset 'at' the alps\n$HOME `date` <<'JSON'\nJSON"  # shell-hostile prompt
        sdk.images.generate(model="dall-e-3", prompt=tricky, n=1, size="1024x1024")
        sdk.images.generate(model=SCHNELL, prompt=tricky)
        sdk.images.generate(model=KLEIN, prompt=tricky, size="1024x768")
        with pytest.raises(openai.BadRequestError):  # refused before any upstream call
            sdk.images.generate(model=SCHNELL, prompt="x", size="512x512")

        async def details() -> list[RequestDetail]:
            rows = service.recent_requests()
            found = [service.request_detail(row.request_id) for row in rows]
            return [detail for detail in found if detail is not None]

        curls = [detail.curl for detail in loop_thread.run(details())]
    finally:
        loop_thread.run(service.stop())

    root = upstream.base_url.removesuffix("/v1")
    assert len(curls) == 4
    assert curls[0].startswith(f"curl -sS {upstream.base_url}/images/generations \\\n")
    assert '"Authorization: Bearer $OPENAI_API_KEY"' in curls[0]
    assert curls[1].startswith(f"curl -sS {root}{RUN_PATH}{SCHNELL} \\\n")
    assert curls[2].splitlines()[:2] == [
        "# multipart/form-data, as this model takes it: one --form-string per field",
        f"curl -sS {root}{RUN_PATH}{KLEIN} \\",
    ]
    assert all('"Authorization: Bearer $CLOUDFLARE_API_TOKEN"' in c for c in curls[1:3])
    assert curls[3] == NO_CALL
    assert not any(key in curl for curl in curls for key in (OAI_KEY, CF_KEY, PROXY_KEY))

    def sent() -> list[tuple[str, Any, str, str]]:
        return [
            (r.path, r.body, r.headers["Authorization"], r.headers["Content-Type"].split(";")[0])
            for r in upstream.image_requests
        ]

    made_by_nimbridge = sent()
    assert len(made_by_nimbridge) == 3 and made_by_nimbridge[2][3] == "multipart/form-data"
    upstream.requests.clear()
    env = {"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": OAI_KEY, "CLOUDFLARE_API_TOKEN": CF_KEY}
    for curl in curls[:3]:
        ran = subprocess.run(
            ["bash", "-c", curl], env=env, capture_output=True, text=True, timeout=30, check=False
        )
        assert ran.returncode == 0 and ran.stdout, ran.stderr
    assert sent() == made_by_nimbridge
