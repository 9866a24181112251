"""How much context a local server really serves, read from its own answer. No I/O.

A model's name says what its family can take (`capabilities`: Gemma 3 131,072
tokens); the server running it may serve less (llama.cpp's `--ctx-size`, Ollama's
`num_ctx`, LM Studio's load setting). What the server says wins over the name
table; settings overrides still win over both.

Sources, one per preset (`ProviderPreset.served_context_path`), beside /v1:
- llama.cpp's llama-server `GET /props`: `default_generation_settings.n_ctx`
  (newer builds also state `n_ctx` at the top); one model per server.
- LM Studio `GET /api/v0/models`: per model, `loaded_context_length` when loaded,
  else `max_context_length`.
- Ollama `GET /api/ps`: the loaded models, each with its `context_length`.
vLLM states `max_model_len` in its /v1/models list (`catalog.CONTEXT_FIELDS`).
"""

from collections.abc import Mapping
from typing import Any

# The key under which a server's one context applies to every model it serves.
EVERY_MODEL = ""


def served_context_url(base_url: str, path: str) -> str:
    """The server's own endpoint beside its OpenAI API (`http://h:8080/v1` -> `http://h:8080/props`)."""
    root = base_url.rstrip("/")
    return root.removesuffix("/v1") + path


def _count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _llama_server(body: Mapping[str, Any]) -> dict[str, int]:
    settings = body.get("default_generation_settings")
    context = _count(settings.get("n_ctx")) if isinstance(settings, Mapping) else None
    context = context or _count(body.get("n_ctx"))
    return {EVERY_MODEL: context} if context else {}


def _per_model(
    entries: object, id_keys: tuple[str, ...], context_keys: tuple[str, ...]
) -> dict[str, int]:
    found: dict[str, int] = {}
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, Mapping):
            continue
        context = next((c for c in (_count(entry.get(key)) for key in context_keys) if c), None)
        if context is None:
            continue
        for key in id_keys:
            model_id = entry.get(key)
            if isinstance(model_id, str) and model_id:
                found.setdefault(model_id, context)
    return found


def served_contexts(path: str, body: object) -> dict[str, int]:
    """Model id (or `EVERY_MODEL`) -> served context, from the answer of `path`."""
    if not isinstance(body, Mapping):
        return {}
    if path == "/props":
        return _llama_server(body)
    if path == "/api/v0/models":
        keys = ("loaded_context_length", "max_context_length")
        return _per_model(body.get("data"), ("id",), keys)
    if path == "/api/ps":
        return _per_model(body.get("models"), ("model", "name"), ("context_length",))
    return {}


def served_context_for(contexts: Mapping[str, int], model_id: str) -> int | None:
    """The context served for `model_id`: its own, else the server's one, else None."""
    return contexts.get(model_id) or contexts.get(EVERY_MODEL)
