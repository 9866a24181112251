"""`thinking.display`: thinking text in the answer, or none and the reasoning in the signature.

Anthropic's API takes `thinking: {"type": "enabled" | "adaptive", "display": ...}`:
`"summarized"` answers thinking blocks with their text; `"omitted"` answers them with
an empty `thinking` and a `signature` that still carries the reasoning (encrypted),
so that it counts when the client sends the turn back. Claude Code 2.1.332 asks for
`"omitted"`.

NimBridge does the same: in omitted mode a thinking block's signature is
`REASONING_SIGNATURE_PREFIX` + base64 of the zlib-compressed UTF-8 reasoning, and the
request mapper reads it back, so the reasoning can still go upstream as
`reasoning_content` to the models that want it (`quirks.send_reasoning_back`).

Invariants:
- Display absent, `"summarized"`, or anything unknown: summarized, as before (never a 400).
- `reasoning_signature` then `reasoning_from_signature` gives back any `str`, lone
  surrogates included (a JSON string may hold them).
- `reasoning_from_signature` never raises: a signature that is not ours (Anthropic's
  own, garbage, a decompression bomb) gives None. What it inflates is bounded by
  `MAX_REASONING_BYTES`.
"""

import base64
import binascii
import zlib
from collections.abc import Mapping
from typing import Any, Literal

ThinkingDisplay = Literal["summarized", "omitted"]

REASONING_SIGNATURE_PREFIX = "nimbridge-reasoning-v1:"
# Millions of tokens: more than any model reasons in one block, little enough to inflate.
MAX_REASONING_BYTES = 16 * 1024 * 1024
_THINKING_TYPES = ("enabled", "adaptive")  # a tuple: a client's [] or {} is unhashable


def thinking_display(thinking: object) -> ThinkingDisplay:
    """The display a request's `thinking` field asks for: omitted only when it says so."""
    if (
        isinstance(thinking, Mapping)
        and thinking.get("type") in _THINKING_TYPES
        and thinking.get("display") == "omitted"
    ):
        return "omitted"
    return "summarized"


def reasoning_signature(reasoning: str) -> str:
    """A thinking block's signature that carries `reasoning` for the next turn."""
    packed = zlib.compress(reasoning.encode("utf-8", "surrogatepass"))
    return REASONING_SIGNATURE_PREFIX + base64.b64encode(packed).decode("ascii")


def reasoning_from_signature(signature: Any) -> str | None:
    """The reasoning one of our signatures carries; None for any other value."""
    if not isinstance(signature, str) or not signature.startswith(REASONING_SIGNATURE_PREFIX):
        return None
    try:
        packed = base64.b64decode(signature[len(REASONING_SIGNATURE_PREFIX) :], validate=True)
        inflater = zlib.decompressobj()
        raw = inflater.decompress(packed, MAX_REASONING_BYTES)
        if not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
            return None  # cut short, past the bound, or something after the end
        return raw.decode("utf-8", "surrogatepass")
    except (binascii.Error, zlib.error, UnicodeDecodeError):
        return None


def block_reasoning(block: Mapping[str, Any]) -> str:
    """A client's thinking block's reasoning: its text, else what our signature carries."""
    thinking = block.get("thinking")
    if isinstance(thinking, str) and thinking:
        return thinking
    return reasoning_from_signature(block.get("signature")) or ""
