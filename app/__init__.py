"""NimBridge: an Anthropic Messages API front for OpenAI-compatible providers."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nimbridge")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
