"""One masking step for every secret NimBridge knows, wherever text leaves it.

Invariant: the server's bytes (every route, every stream) and every log line pass
a `Masker`, which knows every configured secret (provider keys, web search keys,
the proxy key, secrets inside configured URLs) and, in pass-through mode, the last
`CLIENT_KEYS_KEPT` client keys. A secret becomes `MASK` wherever it appears.

Choices made here:
- Mask before cutting (`clip`): a key cut in two escapes an exact match. Where
  text was cut before we saw it, a tail that is the start of a secret, or a head
  that is its end, `MIN_FRAGMENT_CHARS` or longer, is masked too (`mask_edges`).
- A stream written in pieces (`StreamMasker`) holds back a tail that could be the
  start of a secret until the next piece shows whether it is: a key split between
  two writes is still seen whole. SSE pieces end in a newline, so they never wait.
- One compiled alternation of the secrets, rebuilt only when they change; the
  tables are swapped whole, so a reader on another thread never sees half of them.
- The shape rules (`nvapi-…`, `sk-…`, `Bearer …`, `x-api-key`) mask secrets we
  were never told, but would also mask ordinary words ("task-12345678" holds
  "sk-…"): they apply to error messages and log lines (`redact`), not to answers.
"""

import re
import urllib.parse
from collections import OrderedDict
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

MASK = "***"
MASK_BYTES = MASK.encode()
MIN_SECRET_CHARS = 4  # a shorter configured value would mask ordinary words
MIN_CLIENT_KEY_CHARS = 8  # pass-through clients send "dummy", "x"...: not secrets worth masking
MIN_FRAGMENT_CHARS = 6  # a cut piece this long of a secret is masked at a text's edge
CLIENT_KEYS_KEPT = 32  # pass-through client keys remembered (least recently seen dropped)

# Shapes of secrets worth masking even when we were not told the value.
_SECRET_SHAPES = re.compile(
    r"(nvapi-[A-Za-z0-9_\-]{8,}|sk-[A-Za-z0-9_\-]{8,}|"
    r"(?i:bearer)\s+[A-Za-z0-9._~+/\-]{6,}=*|"
    r"(?i:x-api-key)[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9._\-]{6,})"
)


def mask_shapes(text: str) -> str:
    """Secret-shaped strings masked (the value kept to its first six characters)."""
    # Every shape holds one of these words: looking for them first costs a fifth of the
    # pattern's scan (which runs on every log line).
    if "nvapi-" not in text and "sk-" not in text:
        lowered = text.lower()
        if "bearer" not in lowered and "x-api-key" not in lowered:
            return text
    return _SECRET_SHAPES.sub(_mask_shape, text)


def _mask_shape(match: re.Match[str]) -> str:
    text = match.group(0)
    lowered = text.lower()
    if lowered.startswith("bearer"):
        return "Bearer " + MASK
    if lowered.startswith("x-api-key"):
        return "x-api-key: " + MASK
    return text[:6] + MASK


def url_secrets(url: str) -> list[str]:
    """The secrets a configured URL carries: a password, query values (`?key=...`)."""
    parts = urllib.parse.urlsplit(url)
    found = [parts.password] if parts.password else []
    found += [value for _name, value in urllib.parse.parse_qsl(parts.query)]
    return [value for value in found if len(value) >= MIN_SECRET_CHARS]


def without_credentials(url: str) -> str:
    """`url` fit to show anyone: no user or password, no query, no fragment."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: the URL is not usable anyway
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(frozen=True, slots=True)
class _Tables:
    """What masking reads, built from the secrets at once (see `Masker._rebuild`)."""

    text: re.Pattern[str] | None
    data: re.Pattern[bytes] | None
    # The first characters of each secret: a substring search for them (fast, in C)
    # skips the pattern on text that cannot hold a secret, nearly every stream chunk.
    starts: tuple[str, ...]
    data_starts: tuple[bytes, ...]
    heads: frozenset[str]  # every proper prefix of a secret, MIN_FRAGMENT_CHARS and longer
    tails: frozenset[str]  # every proper suffix, likewise
    data_heads: frozenset[bytes]  # every proper prefix of a secret's bytes, any length
    alphabet: str  # the characters secrets are made of
    data_alphabet: bytes
    longest: int


_EMPTY = _Tables(None, None, (), (), frozenset(), frozenset(), frozenset(), "", b"", 0)


class Masker:
    """Every secret we know, and the one way to mask them.

    Readers never lock (the tables are swapped whole); writers take `lock`, which the
    owner hands in (a `threading.Lock` where keys are added from several threads: the
    core itself owns no threads)."""

    def __init__(
        self,
        secrets: Iterable[str] = (),
        *,
        lock: AbstractContextManager[object] | None = None,
    ) -> None:
        self._lock: AbstractContextManager[object] = lock if lock is not None else nullcontext()
        self._configured: dict[str, None] = {}
        self._clients: OrderedDict[str, None] = OrderedDict()
        self._tables = _EMPTY
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """A configured secret (a key read or stored, the proxy key, a URL's password)."""
        if len(secret) < MIN_SECRET_CHARS:
            return
        with self._lock:
            if secret in self._configured:
                return
            self._configured[secret] = None
            self._rebuild()

    def add_client_key(self, key: str) -> None:
        """A key a pass-through client sent: kept among the `CLIENT_KEYS_KEPT` last seen."""
        if len(key) < MIN_CLIENT_KEY_CHARS:
            return
        with self._lock:
            if key in self._clients:
                self._clients.move_to_end(key)
                return
            if key in self._configured:
                return
            self._clients[key] = None
            while len(self._clients) > CLIENT_KEYS_KEPT:
                self._clients.popitem(last=False)
            self._rebuild()

    def secrets(self) -> list[str]:
        with self._lock:
            return [*self._configured, *self._clients]

    def _rebuild(self) -> None:
        secrets = sorted({*self._configured, *self._clients}, key=len, reverse=True)
        # A JSON writer may escape "/" as "\/" (PHP's does): that spelling is masked too.
        spellings = sorted(
            {*secrets, *(s.replace("/", "\\/") for s in secrets)}, key=len, reverse=True
        )
        encoded = [s.encode() for s in spellings]
        self._tables = _Tables(
            text=re.compile("|".join(map(re.escape, spellings))),
            data=re.compile(b"|".join(map(re.escape, encoded))),
            starts=tuple({s[:MIN_SECRET_CHARS] for s in spellings}),
            data_starts=tuple({e[:MIN_SECRET_CHARS] for e in encoded}),
            heads=frozenset(s[:n] for s in secrets for n in range(MIN_FRAGMENT_CHARS, len(s))),
            tails=frozenset(s[-n:] for s in secrets for n in range(MIN_FRAGMENT_CHARS, len(s))),
            data_heads=frozenset(e[:n] for e in encoded for n in range(1, len(e))),
            alphabet="".join(sorted(set("".join(spellings)))),
            data_alphabet=bytes(sorted(set(b"".join(encoded)))),
            longest=len(encoded[0]),
        )

    def mask(self, text: str) -> str:
        """`text` with every known secret replaced by `MASK`."""
        tables = self._tables
        pattern = tables.text
        if pattern is None:
            return text
        for start in tables.starts:  # a loop, not any(...): this runs on every chunk
            if start in text:
                return pattern.sub(MASK, text)
        return text

    def mask_bytes(self, data: bytes) -> bytes:
        tables = self._tables
        pattern = tables.data
        if pattern is None:
            return data
        for start in tables.data_starts:
            if data.find(start) >= 0:  # bytes `in` first tries an int (a TypeError cleared)
                return pattern.sub(MASK_BYTES, data)
        return data

    def mask_edges(self, text: str) -> str:
        """A tail that is the start of a secret, or a head that is its end (a secret
        cut before we saw the text), masked: `MIN_FRAGMENT_CHARS` or longer."""
        tables = self._tables
        if not tables.heads or len(text) < MIN_FRAGMENT_CHARS:
            return text
        run = len(text) - len(text.rstrip(tables.alphabet))
        for size in range(min(run, tables.longest - 1), MIN_FRAGMENT_CHARS - 1, -1):
            if text[-size:] in tables.heads:
                text = text[:-size] + MASK
                break
        run = len(text) - len(text.lstrip(tables.alphabet))
        for size in range(min(run, tables.longest - 1), MIN_FRAGMENT_CHARS - 1, -1):
            if text[:size] in tables.tails:
                return MASK + text[size:]
        return text

    def clip(self, text: str, limit: int) -> str:
        """At most about `limit` characters of `text`, masked before the cut."""
        masked = self.mask(text)
        if len(masked) <= limit:
            return masked
        return self.mask_edges(masked[:limit])

    def redact(self, text: str) -> str:
        """For words (error messages, log lines): known secrets, cut pieces of them at
        the edges, and secret-shaped strings."""
        return mask_shapes(self.mask_edges(self.mask(text)))

    def held_from(self, data: bytes) -> int:
        """Where a tail of `data` that could be the start of a secret begins
        (`len(data)` when none): what a stream waits to see completed."""
        tables = self._tables
        run = len(data) - len(data.rstrip(tables.data_alphabet)) if tables.data_heads else 0
        for size in range(min(run, tables.longest - 1), 0, -1):
            if data[-size:] in tables.data_heads:
                return len(data) - size
        return len(data)


class StreamMasker:
    """Masks a byte stream that arrives or leaves in pieces; `close` gives what is held."""

    def __init__(self, masker: Masker) -> None:
        self._masker = masker
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        if self._held:
            data, self._held = self._held + data, b""
        data = self._masker.mask_bytes(data)
        cut = self._masker.held_from(data)
        if cut == len(data):
            return data
        self._held = data[cut:]
        return data[:cut]

    def close(self) -> bytes:
        held, self._held = self._held, b""
        return held
