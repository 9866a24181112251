from typing import Any

import pytest

from app.core.served_context import (
    EVERY_MODEL,
    served_context_for,
    served_context_url,
    served_contexts,
)


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/props"),
        ("http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080/props"),
        ("http://host:8080", "http://host:8080/props"),
    ],
)
def test_url_beside_the_openai_api(base_url: str, expected: str) -> None:
    assert served_context_url(base_url, "/props") == expected


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        pytest.param(
            "/props",
            {"default_generation_settings": {"n_ctx": 32768}, "total_slots": 1},
            {EVERY_MODEL: 32768},
            id="llama-server",
        ),
        pytest.param("/props", {"n_ctx": 4096}, {EVERY_MODEL: 4096}, id="llama-server-top-level"),
        pytest.param("/props", {"default_generation_settings": []}, {}, id="llama-server-odd"),
        pytest.param(
            "/api/v0/models",
            {
                "data": [
                    {"id": "qwen", "loaded_context_length": 8192, "max_context_length": 32768},
                    {"id": "gemma", "max_context_length": 131072},
                    {"id": "broken", "max_context_length": "lots"},
                    "junk",
                ]
            },
            {"qwen": 8192, "gemma": 131072},
            id="lm-studio",
        ),
        pytest.param(
            "/api/ps",
            {
                "models": [
                    {"name": "llama3:latest", "model": "llama3:latest", "context_length": 4096}
                ]
            },
            {"llama3:latest": 4096},
            id="ollama",
        ),
        pytest.param("/api/ps", {"models": None}, {}, id="ollama-nothing-loaded"),
        pytest.param("/elsewhere", {"n_ctx": 1}, {}, id="unknown-path"),
        pytest.param("/props", ["not", "an", "object"], {}, id="not-an-object"),
        pytest.param("/props", {"n_ctx": True}, {}, id="bool-is-no-count"),
    ],
)
def test_served_contexts(path: str, body: Any, expected: dict[str, int]) -> None:
    assert served_contexts(path, body) == expected


def test_a_models_own_context_wins_over_the_servers() -> None:
    contexts = {EVERY_MODEL: 4096, "big": 65536}
    assert served_context_for(contexts, "big") == 65536
    assert served_context_for(contexts, "other") == 4096
    assert served_context_for({}, "other") is None
