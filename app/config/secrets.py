"""The two secrets the server needs, kept apart from `Settings` so no save can leak them.

The OS keychain (keyring) arrives with the providers issue; until then the
upstream key comes from the environment and the proxy key from a flag or env.
"""

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

PROXY_KEY_ENV = "NIMBRIDGE_PROXY_KEY"
UPSTREAM_KEY_ENVS = ("NVIDIA_API_KEY", "NIMBRIDGE_UPSTREAM_KEY")


@dataclass(frozen=True, slots=True, repr=False)
class ServerSecrets:
    """`proxy_key`: what clients must send (None: pass the client's key upstream).
    `upstream_key`: what NimBridge sends to the provider."""

    proxy_key: str | None = None
    upstream_key: str | None = None

    def __iter__(self) -> Iterator[str]:
        """The secret values, for the log redaction filter."""
        return iter(value for value in (self.proxy_key, self.upstream_key) if value)

    def __repr__(self) -> str:  # never print a key, even in a traceback's locals
        return (
            f"ServerSecrets(proxy_key={'set' if self.proxy_key else None}, "
            f"upstream_key={'set' if self.upstream_key else None})"
        )


def secrets_from_env(
    env: Mapping[str, str] | None = None, *, proxy_key: str | None = None
) -> ServerSecrets:
    env = os.environ if env is None else env
    upstream = next((env[name] for name in UPSTREAM_KEY_ENVS if env.get(name)), None)
    return ServerSecrets(
        proxy_key=proxy_key or env.get(PROXY_KEY_ENV) or None, upstream_key=upstream
    )
