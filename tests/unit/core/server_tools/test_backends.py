"""app.core.server_tools.backends: the shared domain filter and error type."""

import pytest

from app.core.server_tools.backends import WebToolError, domain_matches


@pytest.mark.parametrize(
    ("host", "domains", "matches"),
    [
        ("docs.python.org", ("python.org",), True),
        ("python.org", ("python.org",), True),
        ("notpython.org", ("python.org",), False),
        ("Docs.Python.Org.", ("python.org",), True),
        ("docs.python.org", ("https://docs.python.org/3/",), True),
        ("python.org", ("docs.python.org",), False),
        ("example.com", (), False),
        ("example.com", ("",), False),
    ],
)
def test_domain_matches(host: str, domains: tuple[str, ...], matches: bool) -> None:
    assert domain_matches(host, domains) is matches


def test_web_tool_error_carries_code_and_words() -> None:
    error = WebToolError("unavailable", "no search backend is configured")
    assert (error.code, error.message, str(error)) == (
        "unavailable",
        "no search backend is configured",
        "no search backend is configured",
    )
