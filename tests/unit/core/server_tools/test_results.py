"""Server tool result blocks in Anthropic's shapes, and the text the model reads of them."""

from typing import Any

import pytest

from app.core.server_tools.backends import FetchedPage, SearchResult
from app.core.server_tools.results import (
    error_block,
    fetch_result_block,
    result_text,
    search_result_block,
)


def test_search_block_and_its_text() -> None:
    block = search_result_block(
        "srvtoolu_1",
        [
            SearchResult("https://a", "A", "snippet é", "2 days ago"),
            SearchResult("https://b", "", ""),
        ],
    )
    first = block["content"][0]
    assert first["type"] == "web_search_result" and first["page_age"] == "2 days ago"
    assert first["encrypted_content"].startswith("nb1.")
    assert result_text(block) == (
        "Web search results:\n\n[1] A\nURL: https://a\nAge: 2 days ago\nsnippet é\n\n"
        "[2] (no title)\nURL: https://b"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param([], "No results found.", id="no-results"),
        pytest.param(
            [{"url": "u", "title": "T", "encrypted_content": "Eo8BCkYIBBgC"}, "junk"],
            "Web search results:\n\n[1] T\nURL: u",
            id="anthropic-opaque-content-and-junk",
        ),
        pytest.param(
            [{"url": "u", "title": "T", "encrypted_content": "nb1.abc"}],
            "Web search results:\n\n[1] T\nURL: u",
            id="ours-but-broken",
        ),
        pytest.param(None, "Error: web_search failed (unavailable)", id="no-content"),
        pytest.param(
            {"type": "web_search_tool_result_error", "error_code": "too_many_requests"},
            "Error: web_search failed (too_many_requests)",
            id="error",
        ),
        pytest.param({}, "Error: web_search failed (unavailable)", id="error-without-code"),
    ],
)
def test_search_result_text(content: Any, expected: str) -> None:
    block = {"type": "web_search_tool_result", "tool_use_id": "s", "content": content}
    assert result_text(block) == expected


def test_fetch_block_and_its_text() -> None:
    page = FetchedPage("https://a/x", "Title", "Body text", "application/pdf", "2026-11-21T10:00Z")
    block = fetch_result_block("srvtoolu_1", page)
    assert block == {
        "type": "web_fetch_tool_result",
        "tool_use_id": "srvtoolu_1",
        "content": {
            "type": "web_fetch_result",
            "url": "https://a/x",
            "content": {
                "type": "document",
                "source": {"type": "text", "media_type": "text/plain", "data": "Body text"},
                "title": "Title",
            },
            "retrieved_at": "2026-11-21T10:00Z",
        },
    }
    assert result_text(block) == (
        "Fetched https://a/x\nTitle: Title\nRetrieved at: 2026-11-21T10:00Z\n\nBody text"
    )
    untitled = fetch_result_block("s", FetchedPage("u", None, "t", "text/plain", "r"))
    assert "title" not in untitled["content"]["content"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(
            {"type": "web_fetch_result", "url": "u", "content": "odd"},
            "Fetched u\n\n(the content is not text and cannot be shown)",
            id="document-not-an-object",
        ),
        pytest.param(
            {
                "type": "web_fetch_result",
                "url": "u",
                "content": {"type": "document", "source": {"type": "base64", "data": 3}},
            },
            "Fetched u\n\n(the content is not text and cannot be shown)",
            id="pdf-from-anthropic",
        ),
        pytest.param(
            {"type": "web_fetch_tool_result_error", "error_code": "url_not_accessible"},
            "Error: web_fetch failed (url_not_accessible)",
            id="error",
        ),
    ],
)
def test_fetch_result_text(content: Any, expected: str) -> None:
    block = {"type": "web_fetch_tool_result", "tool_use_id": "s", "content": content}
    assert result_text(block) == expected


def test_error_block() -> None:
    assert error_block("web_fetch", "s", "unavailable")["content"] == {
        "type": "web_fetch_tool_result_error",
        "error_code": "unavailable",
    }
