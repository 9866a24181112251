"""A fake OpenAI-compatible upstream on 127.0.0.1 that behaves like real providers.

Tests queue behaviours (`enqueue`); each request to /chat/completions takes the
next one, or the default: a plain answer echoing the last user text, streamed
the way vLLM / NIM stream (role chunk, content chunks, finish chunk, a
usage-only chunk with `choices: []`, `[DONE]`). Every request is recorded
with its headers and JSON body, and whether the proxy went away mid-response.
"""

import asyncio
import base64
import copy
import json
import re
import ssl
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURES = Path(__file__).parent / "fixtures"
Behaviour = Callable[[web.Request, "Recorded"], Awaitable[web.StreamResponse]]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    received_at: float = field(default_factory=time.monotonic)
    finished: bool = False
    cancelled_at: float | None = None  # the proxy closed the connection mid-response
    peer: object = None  # the proxy's (host, port): equal for requests on one connection
    sent_bytes: int = 0  # body bytes an endless behaviour got written (the proxy read them)
    query: str = ""  # the query string, where it matters (the model search)


def fake_prompt_tokens(body: Any) -> int:
    """A deterministic pseudo-tokenizer (words and punctuation), plus template overhead."""
    text = (
        json.dumps(body.get("messages", []), ensure_ascii=False) if isinstance(body, dict) else ""
    )
    tools = json.dumps(body.get("tools", []), ensure_ascii=False) if isinstance(body, dict) else ""
    return len(re.findall(r"\w+|[^\w\s]", text + tools)) // 2 + 7


def last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content or [] if isinstance(p, dict))
    return ""


def chunk(
    body: dict[str, Any], delta: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """One `chat.completion.chunk` in the shape vLLM/NIM send."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": None}]
    out = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_760_000_000,
        "model": body.get("model", "fake-model"),
        "choices": choices,
    }
    if "finish_reason" in extra and choices:
        choices[0]["finish_reason"] = extra.pop("finish_reason")
    out.update(extra)
    return out


def text_stream(body: dict[str, Any], text: str, *, pieces: int = 4, **finish: Any) -> list[Any]:
    size = max(1, -(-len(text) // pieces))
    usage = {"prompt_tokens": fake_prompt_tokens(body), "completion_tokens": max(1, len(text) // 4)}
    out: list[Any] = [chunk(body, {"role": "assistant", "content": ""})]
    out += [chunk(body, {"content": text[i : i + size]}) for i in range(0, len(text), size)]
    out.append(chunk(body, {}, finish_reason=finish.get("finish_reason", "stop")))
    out.append(chunk(body, None, usage={**usage, "total_tokens": sum(usage.values())}))
    out.append("[DONE]")
    return out


def completion(
    body: dict[str, Any],
    content: str | None,
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str = "stop",
    reasoning: str | None = None,
    **message_extra: Any,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, **message_extra}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    prompt = fake_prompt_tokens(body)
    completion_tokens = max(1, len(content or "") // 4)
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_760_000_000,
        "model": body.get("model", "fake-model"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
        },
    }


def encode_sse(items: Iterable[Any]) -> list[bytes]:
    out = []
    for item in items:
        if isinstance(item, bytes):
            out.append(item)
        elif item == "[DONE]":
            out.append(b"data: [DONE]\n\n")
        elif isinstance(item, str):
            out.append(item.encode())
        else:
            out.append(b"data: " + json.dumps(item).encode() + b"\n\n")
    return out


# ------------------------------------------------------------------ behaviours


def reply_json(
    payload: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> Behaviour:
    async def behave(request: web.Request, record: Recorded) -> web.StreamResponse:
        return web.json_response(payload, status=status, headers=headers)

    return behave


def reply_body(
    body: bytes | str, *, status: int, content_type: str = "application/json", **headers: str
) -> Behaviour:
    async def behave(request: web.Request, record: Recorded) -> web.StreamResponse:
        data = body.encode() if isinstance(body, str) else body
        return web.Response(body=data, status=status, content_type=content_type, headers=headers)

    return behave


def reply_stream(
    items: Iterable[Any] | Callable[[dict[str, Any]], Iterable[Any]],
    *,
    delay: float = 0.0,
    first_delay: float = 0.0,
    cut: bool = False,
    hang: float = 0.0,
    split: int | None = None,
) -> Behaviour:
    """Stream SSE items (dicts, `[DONE]`, raw str/bytes); optionally cut the connection
    at the end (`cut`), or stay silent for `hang` seconds before ending."""

    async def behave(request: web.Request, record: Recorded) -> web.StreamResponse:
        payload = items(record.body) if callable(items) else items
        items_bytes = encode_sse(payload)
        if split is None:
            pieces = items_bytes  # one write per item, as a real server streams
        else:
            data = b"".join(items_bytes)
            pieces = [data[i : i + split] for i in range(0, len(data), split)]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await asyncio.sleep(first_delay)
        await response.prepare(request)
        for piece in pieces:
            await response.write(piece)
            if delay:
                await asyncio.sleep(delay)
        if hang:
            await asyncio.sleep(hang)
        if cut:
            assert request.transport is not None
            request.transport.abort()  # no chunked terminator: the proxy sees a dropped stream
            return response
        await response.write_eof()
        return response

    return behave


def reply_fixture(name: str, *, split: int | None = None, delay: float = 0.0) -> Behaviour:
    raw = (FIXTURES / "openai_stream" / name).read_bytes()
    return reply_stream([raw], split=split, delay=delay)


def endless(
    piece: Callable[[dict[str, Any], int], bytes],
    *,
    pause: float = 0.0,
    content_type: str = "text/event-stream",
) -> Behaviour:
    """Stream `piece(body, n)` for n = 0, 1, 2... until the proxy goes away, `pause`
    seconds apart (a drip that never trips a read timeout) or as fast as it can.

    `record.sent_bytes` counts what was written: `write` waits while the
    connection's buffers are full, so it shows whether the proxy keeps reading.
    """

    async def behave(request: web.Request, record: Recorded) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        n = 0
        while True:
            data = piece(record.body, n)
            await response.write(data)
            record.sent_bytes += len(data)
            n += 1
            if pause:
                await asyncio.sleep(pause)
            elif n % 64 == 0:
                await asyncio.sleep(0)  # a fast writer still lets the loop breathe

    return behave


def endless_text(body: dict[str, Any], n: int) -> bytes:
    delta = {"role": "assistant", "content": "word "} if n == 0 else {"content": "word "}
    return b"data: " + json.dumps(chunk(body, delta)).encode() + b"\n\n"


def endless_line(body: dict[str, Any], n: int) -> bytes:
    """One SSE line that never ends: 64 KB of it at a time, never a newline."""
    return (b"data: " if n == 0 else b"") + b"x" * 65536


def hang(seconds: float) -> Behaviour:
    """Accept the request and answer nothing (no headers) for `seconds`."""

    async def behave(request: web.Request, record: Recorded) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.json_response(completion(record.body, "late"))

    return behave


def drop_connection() -> Behaviour:
    async def behave(request: web.Request, record: Recorded) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.abort()
        return web.Response()

    return behave


async def default_behaviour(request: web.Request, record: Recorded) -> web.StreamResponse:
    body = record.body
    text = f"You said: {last_user_text(body)}"
    if body.get("stream"):
        return await reply_stream(text_stream(body, text))(request, record)
    return web.json_response(completion(body, text))


def tiny_png(shade: int = 0) -> bytes:
    """A valid 1x1 grey PNG; `shade` tells images apart."""

    def block(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # 1x1, 8-bit greyscale
    pixels = zlib.compress(bytes([0, shade % 256]))
    return (
        b"\x89PNG\r\n\x1a\n" + block(b"IHDR", header) + block(b"IDAT", pixels) + block(b"IEND", b"")
    )


TINY_JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16 + b"\xff\xd9"  # enough to be sniffed as a JPEG


async def default_openai_image(request: web.Request, record: Recorded) -> web.StreamResponse:
    """OpenAI's /images/generations: `n` images as `b64_json`, or hosted `url`s."""
    body = record.body if isinstance(record.body, dict) else {}
    n = int(body.get("n") or 1)
    if body.get("response_format") == "url":
        data = [{"url": f"https://images.example/{i}.png"} for i in range(n)]
    else:
        data = [{"b64_json": base64.b64encode(tiny_png(i)).decode()} for i in range(n)]
    return web.json_response({"created": 1_760_000_000, "data": data})


async def default_workers_ai_image(request: web.Request, record: Recorded) -> web.StreamResponse:
    """Workers AI's run endpoint as its models answer: FLUX.1 schnell base64 JSON, FLUX.2
    (multipart input only) base64 JSON, the Stable Diffusion models raw PNG bytes."""
    model = request.match_info["model"]
    fields = record.body if isinstance(record.body, dict) else {}
    if "flux-2" in model and not record.headers.get("Content-Type", "").startswith(
        "multipart/form-data"
    ):
        return web.json_response(
            {"success": False, "errors": [{"code": 5006, "message": "expected multipart"}]},
            status=400,
        )
    if not fields.get("prompt"):
        return web.json_response(
            {
                "success": False,
                "errors": [{"code": 5006, "message": "required properties at '/' are 'prompt'"}],
                "result": None,
            },
            status=400,
        )
    shade = int(fields.get("seed") or 0)
    if "flux-1-schnell" in model:
        image = base64.b64encode(TINY_JPEG).decode()
        return web.json_response({"result": {"image": image}, "success": True, "errors": []})
    if "flux-2" in model:
        image = base64.b64encode(tiny_png(shade)).decode()
        return web.json_response({"result": {"image": image}, "success": True, "errors": []})
    return web.Response(body=tiny_png(shade), content_type="image/png")


# What the fake lists at /models until a test says otherwise; `reset` brings it back.
DEFAULT_MODELS: list[dict[str, Any]] = [
    {
        "id": "meta/llama-3.3-70b-instruct",
        "object": "model",
        "created": 1_733_000_000,
        "owned_by": "meta",
    },
    {
        "id": "qwen/qwen3-coder-480b-a35b-instruct",
        "object": "model",
        "created": 1_753_000_000,
        "owned_by": "qwen",
    },
]


# ------------------------------------------------------------------ real servers' quirks

# What a real server does that the default behaviour does not; `FakeUpstream.server`
# picks a row. Recorded from llama-cpp-python 0.3.36 (tests/fixtures/PROVENANCE.md).
QUIRKS_BY_SERVER: dict[str, frozenset[str]] = {
    "vllm": frozenset(),
    "llama-cpp-python": frozenset(
        {
            "null_content_500",  # an assistant message with "content": null: 500
            "required_500",  # tool_choice "required": 500 with an empty message
            "tools_need_tool_choice",  # no tool_choice: the tools are left out (recorded)
            "overflow_streams_empty",  # a streamed overflow: 200 and an empty body
            "function_call_beside_tool_calls",  # each streamed delta holds the call twice
            "no_usage_chunk",  # stream_options.include_usage is ignored
            "stop_string_stripped",  # stops at a stop string, says neither which nor that
            "props",  # GET /props states n_ctx (llama.cpp's llama-server)
        }
    ),
}
LLAMA_BODIES = FIXTURES / "upstream_bodies"


def _llama_overflow(body: dict[str, Any], n_ctx: int) -> dict[str, Any]:
    prompt, completion_tokens = fake_prompt_tokens(body), int(body.get("max_tokens") or 0)
    message = (
        f"This model's maximum context length is {n_ctx} tokens. However, you requested "
        f"{prompt + completion_tokens} tokens ({prompt} in the messages, {completion_tokens} "
        "in the completion). Please reduce the length of the messages or completion."
    )
    return {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }


def quirky_behaviour(quirks: frozenset[str], n_ctx: int, body: Any) -> Behaviour | None:
    """The behaviour a real server's quirks force on this request, if any."""
    if not isinstance(body, dict):
        return None
    messages = body.get("messages") or []
    if "null_content_500" in quirks and any(
        m.get("role") == "assistant" and "content" in m and m["content"] is None for m in messages
    ):
        raw = (LLAMA_BODIES / "llama-cpp-python-0.3.36_500_null-content.json").read_text()
        return reply_body(raw, status=500)
    if "required_500" in quirks and body.get("tool_choice") == "required":
        raw = (LLAMA_BODIES / "llama-cpp-python-0.3.36_500_tool-choice-required.json").read_text()
        return reply_body(raw, status=500)
    if "overflow_streams_empty" in quirks and fake_prompt_tokens(body) > n_ctx:
        if body.get("stream"):
            return reply_stream([])
        return reply_json(_llama_overflow(body, n_ctx), status=400)
    if "function_call_beside_tool_calls" in quirks and body.get("stream") and body.get("tools"):
        choice = body.get("tool_choice")
        if isinstance(choice, dict) or ("tools_need_tool_choice" in quirks and choice == "auto"):
            return reply_stream(llama_tool_stream(body))
    if body.get("stream") and ("no_usage_chunk" in quirks or "stop_string_stripped" in quirks):
        return reply_stream(llama_text_stream(body, quirks))
    if "stop_string_stripped" in quirks and body.get("stop"):
        return reply_json(completion(body, llama_text(body, quirks)))
    return None


def llama_tool_stream(body: dict[str, Any]) -> list[Any]:
    """llama-cpp-python's streamed call: `tool_calls` and the legacy `function_call`
    in every delta, no usage chunk."""
    choice = body.get("tool_choice")
    name = (
        choice["function"]["name"]
        if isinstance(choice, dict)
        else body["tools"][0]["function"]["name"]
    )
    out: list[Any] = [chunk(body, {"role": "assistant", "content": None})]
    for index, piece in enumerate(['{"tz": ', '"UTC"}']):
        function = {"name": name, "arguments": piece}
        call: dict[str, Any] = {"index": 0, "function": function}
        if index == 0:
            call |= {"id": f"call__0_{name}_cmpl-fake", "type": "function"}
        out.append(chunk(body, {"content": None, "function_call": function, "tool_calls": [call]}))
    out.append(chunk(body, {}, finish_reason="tool_calls"))
    out.append("[DONE]")
    return out


def llama_text(body: dict[str, Any], quirks: frozenset[str]) -> str:
    text = f"You said: {last_user_text(body)}"
    for stop in body.get("stop") or ():
        if "stop_string_stripped" in quirks and stop in text:
            text = text[: text.index(stop)]  # stopped there; the stop string is not sent
    return text


def llama_text_stream(body: dict[str, Any], quirks: frozenset[str]) -> list[Any]:
    items = text_stream(body, llama_text(body, quirks))
    return [item for item in items if not (isinstance(item, dict) and not item["choices"])]


class FakeUpstream:
    def __init__(
        self,
        *,
        keepalive_s: float = 75.0,
        ssl_context: ssl.SSLContext | None = None,  # https, with a certificate for `host`
        host: str = "127.0.0.1",  # the name in base_url (a proxy maps it to `bind`)
        bind: str = "127.0.0.1",
    ) -> None:
        self.keepalive_s = keepalive_s  # idle connections closed after it (aiohttp's 75 s)
        self.ssl_context = ssl_context
        self.host = host
        self.bind = bind
        self.requests: list[Recorded] = []
        self.queue: deque[Behaviour] = deque()  # for /chat/completions
        self.images_queue: deque[Behaviour] = deque()  # for image generation, both APIs
        self.models_queue: deque[Behaviour] = deque()  # for /models
        self.cloudflare_models: list[dict[str, Any]] = []  # for Workers AI's model search
        self.models = copy.deepcopy(DEFAULT_MODELS)  # for /models
        self.cancelled = threading.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.server = "vllm"  # a row of QUIRKS_BY_SERVER: which real server to behave like
        self.n_ctx = 32768  # the context a quirky server serves (its /props, its overflows)

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}/v1"

    def enqueue(self, *behaviours: Behaviour) -> None:
        self.queue.extend(behaviours)

    def reset(self) -> None:
        self.requests.clear()
        self.queue.clear()
        self.models_queue.clear()
        self.images_queue.clear()
        self.cancelled.clear()
        self.models = copy.deepcopy(DEFAULT_MODELS)  # a test that changed them can't leak
        self.cloudflare_models = []
        self.server, self.n_ctx = "vllm", 32768

    @property
    def chat_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw
        record = Recorded(request.method, request.path, dict(request.headers), body)
        if request.transport is not None:
            record.peer = request.transport.get_extra_info("peername")
        self.requests.append(record)
        quirky = quirky_behaviour(QUIRKS_BY_SERVER[self.server], self.n_ctx, body)
        behaviour = self.queue.popleft() if self.queue else quirky or default_behaviour
        try:
            response = await behaviour(request, record)
            record.finished = True
            return response
        except (asyncio.CancelledError, ConnectionResetError):
            record.cancelled_at = time.monotonic()
            self.cancelled.set()
            raise

    @property
    def image_requests(self) -> list[Recorded]:
        return [r for r in self.requests if "/images/" in r.path or "/ai/run/" in r.path]

    async def _image(self, request: web.Request) -> web.StreamResponse:
        """Both image APIs: the body is recorded as JSON, or multipart fields as a dict."""
        if request.content_type == "multipart/form-data":
            form = await request.post()
            body: Any = {name: str(value) for name, value in form.items()}
        else:
            raw = await request.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw
        record = Recorded(request.method, request.path, dict(request.headers), body)
        record.query = request.query_string
        self.requests.append(record)
        if self.images_queue:
            behaviour = self.images_queue.popleft()
        elif "model" in request.match_info:
            behaviour = default_workers_ai_image
        else:
            behaviour = default_openai_image
        response = await behaviour(request, record)
        record.finished = True
        return response

    async def _models(self, request: web.Request) -> web.Response:
        self.requests.append(Recorded(request.method, request.path, dict(request.headers), None))
        if self.models_queue:
            behaviour = self.models_queue.popleft()
            return await behaviour(request, self.requests[-1])  # type: ignore[return-value]
        return web.json_response({"object": "list", "data": self.models})

    async def _props(self, request: web.Request) -> web.Response:
        """llama.cpp's llama-server: what it serves (only when the server has /props)."""
        self.requests.append(Recorded(request.method, request.path, dict(request.headers), None))
        if "props" not in QUIRKS_BY_SERVER[self.server]:
            raise web.HTTPNotFound()
        settings = {"n_ctx": self.n_ctx, "temperature": 0.8}
        return web.json_response({"default_generation_settings": settings, "total_slots": 1})

    async def _search(self, request: web.Request) -> web.Response:
        record = Recorded(request.method, request.path, dict(request.headers), None)
        record.query = request.query_string  # `task=...` when asked for one task's models
        self.requests.append(record)
        return web.json_response(
            {"success": True, "errors": [], "messages": [], "result": self.cloudflare_models}
        )

    async def start(self) -> str:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/props", self._props)
        # Cloudflare Workers AI's shape: OpenAI API under /ai/v1, model search beside it.
        app.router.add_post("/client/v4/accounts/{account}/ai/v1/chat/completions", self._chat)
        app.router.add_get("/client/v4/accounts/{account}/ai/models/search", self._search)
        app.router.add_post("/v1/images/generations", self._image)
        app.router.add_post("/client/v4/accounts/{account}/ai/run/{model:.+}", self._image)
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, keepalive_timeout=self.keepalive_s
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.bind, 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class LoopThread:
    """An asyncio loop in a daemon thread, so sync SDK clients can call servers on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run[T](self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


def http_request(
    url: str,
    method: str = "GET",
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """A plain HTTP call with the standard library, for raw-wire checks."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def after(seconds: float, behaviour: Behaviour) -> Behaviour:
    """Say nothing for `seconds`, then behave (a slow 429, a late answer...)."""

    async def behave(request: web.Request, record: Recorded) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return await behaviour(request, record)

    return behave
