"""NimBridge: an Anthropic Messages API front for OpenAI-compatible providers."""

from typing import Any


def __getattr__(name: str) -> Any:
    """`__version__`, read from the installed metadata when first asked: importlib.metadata
    costs ~40 ms, and `nimbridge statusline` (run after every Claude Code turn) needs none."""
    if name != "__version__":
        raise AttributeError(f"module 'app' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("nimbridge")
    except PackageNotFoundError:  # running from a source tree that was never installed
        found = "0.0.0+unknown"
    globals()["__version__"] = found
    return found
