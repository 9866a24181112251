"""Token counts for `/v1/messages/count_tokens`, estimated and calibrated per model.

There is no offline tokenizer for the upstream models (tiktoken fetches its
files at run time), so the count is an estimate:

    tokens = BASE + per_message * messages + per_tool * tools + image_tokens
             + text_chars / chars_per_token(model)

`measure_request` reads the sizes off an Anthropic request; `TokenEstimator`
turns them into tokens and learns each model's `chars_per_token` from the
`prompt_tokens` the upstream reports for real requests.

Invariants:
- `measure_request` never serialises the whole body: it sums string lengths
  and `json.dumps` only tool schemas and tool inputs (what a chat template
  renders as JSON), so the 76 KB Claude Code request measures in well under
  a millisecond.
- `RequestSize.text_chars` counts system, message and tool-result text,
  thinking text, the names, descriptions and compact-JSON schemas of the
  tools offered upstream (`offered_tools`: a deferred tool only once loaded),
  and tool_use inputs as compact JSON; redacted thinking, signatures, ids, cache_control
  and base64 payloads are not text and are not counted.
- A document counts by its text: title, context and the text of a text, content
  or base64 text/* source; a PDF by the text the server read from it first (what
  the model will see), a URL document as URL_DOCUMENT_CHARS (never fetched to count).
- The request is parsed JSON: its objects are checked as `dict` (an ABC check costs
  ten times more, on every value of a big request).
- Images cost Anthropic's `width * height / 750` tokens after scaling to fit
  1568 px, capped at 1600; the size comes from the first bytes of the base64
  data (PNG, JPEG, GIF, WebP) and an unreadable or URL image counts 1600.
- The estimator keeps at most `max_models` models (least recently observed
  evicted first) and ignores observations that cannot be right.
"""

import base64
import json
import math
import struct
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.core.deferred_tools import offered_tools, tool_reference_text

MAX_IMAGE_TOKENS = 1600
# A document by URL, unread: about three pages of text (count_tokens fetches nothing).
URL_DOCUMENT_CHARS = 9000
_MAX_IMAGE_EDGE = 1568
_PIXELS_PER_TOKEN = 750

# Reply priming the chat template adds once (e.g. `<|im_start|>assistant\n`).
_BASE_OVERHEAD = 3

# Learning: chars/token outside this range is a wrong observation (a cached
# prompt reported as 0, a count for another request), not a tokenizer.
_MIN_CHARS_PER_TOKEN = 0.8
_MAX_CHARS_PER_TOKEN = 12.0
# Below this much text the fixed overheads, which we only guess, dominate.
_MIN_OBSERVED_CHARS = 200
# Weight of the default ratio before any observation, in tokens: a small
# request's worth, so the first full-weight observation moves the ratio most of the way.
_PRIOR_TOKENS = 250.0
# An observation of this much text counts fully; a smaller one by the square of
# its share (1,000 characters: a quarter; 300: 2%). A short prompt's count is
# mostly the chat template's own tokens (llama-cpp-python's function-calling
# template adds hundreds), which the fixed overheads only guess: a few of them
# once moved a Claude Code estimate by +67%.
_FULL_WEIGHT_CHARS = 2000
# A fully weighted observation keeps this share of the earlier evidence (~10 requests of memory).
_DECAY = 0.9

# Block keys that never reach the model as text.
_NON_TEXT_KEYS = frozenset(
    {
        "type",
        "id",
        "tool_use_id",
        "cache_control",
        "signature",
        "media_type",
        "citations",
        "encrypted_content",
        "encrypted_index",
    }
)


@dataclass(frozen=True, slots=True)
class RequestSize:
    """What an Anthropic request costs, in units the estimator converts to tokens."""

    text_chars: int = 0
    images: int = 0
    image_tokens: int = 0
    messages: int = 0
    tools: int = 0


# `json.dumps(value, separators=(",", ":"), ensure_ascii=False)`, without building an
# encoder for each value (a Claude Code request has dozens of schemas and tool inputs).
_compact_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


# ------------------------------------------------------------------ images


class _Base64Window:
    """Random access to the bytes of a base64 string, decoding only what is read."""

    def __init__(self, data: str) -> None:
        self._data = data

    def read(self, start: int, length: int) -> bytes:
        first_group, end_group = start // 3, -(-(start + length) // 3)
        raw = base64.b64decode(self._data[first_group * 4 : end_group * 4])
        offset = start - first_group * 3
        return raw[offset : offset + length]


def _png_size(window: _Base64Window) -> tuple[int, int] | None:
    head = window.read(0, 24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _gif_size(window: _Base64Window) -> tuple[int, int] | None:
    head = window.read(0, 10)
    if len(head) < 10 or head[:6] not in (b"GIF87a", b"GIF89a"):
        return None
    width, height = struct.unpack("<HH", head[6:10])
    return width, height


def _webp_size(window: _Base64Window) -> tuple[int, int] | None:
    head = window.read(0, 30)
    if len(head) < 30 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    chunk = head[12:16]
    if chunk == b"VP8 ":  # lossy: 14-bit sizes after the 0x9d012a start code
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":  # lossless: 14-bit (size - 1) fields packed after 0x2f
        (bits,) = struct.unpack("<I", head[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit (size - 1) fields
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return width, height
    return None


# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG), CC (DAC) do not.
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_MAX_SEGMENTS = 64  # EXIF, ICC, XMP... a real file reaches SOF long before


def _jpeg_size(window: _Base64Window) -> tuple[int, int] | None:
    if window.read(0, 2) != b"\xff\xd8":
        return None
    position = 2
    for _ in range(_JPEG_MAX_SEGMENTS):
        header = window.read(position, 9)
        if len(header) < 4 or header[0] != 0xFF:
            return None
        marker = header[1]
        if marker in _JPEG_SOF_MARKERS:
            if len(header) < 9:
                return None
            height, width = struct.unpack(">HH", header[5:9])
            return width, height
        if marker == 0xDA:  # image data begins: no frame header was found
            return None
        (length,) = struct.unpack(">H", header[2:4])
        position += 2 + length
    return None


def image_tokens_for_size(width: int, height: int) -> int:
    """Anthropic's estimate for an image of this size."""
    if width <= 0 or height <= 0:
        return MAX_IMAGE_TOKENS
    scale = min(1.0, _MAX_IMAGE_EDGE / max(width, height))
    tokens = math.ceil(width * scale * height * scale / _PIXELS_PER_TOKEN)
    return max(1, min(MAX_IMAGE_TOKENS, tokens))


def image_size(data: str) -> tuple[int, int] | None:
    """(width, height) from the header of base64 image data, or None when unreadable."""
    if data.startswith("data:"):  # tolerate a data URL where raw base64 belongs
        data = data.partition(",")[2]
    window = _Base64Window(data)
    try:
        for reader in (_png_size, _jpeg_size, _gif_size, _webp_size):
            size = reader(window)
            if size is not None:
                return size
    except ValueError:  # binascii.Error: not base64 at all
        return None
    return None


def _image_tokens(block: Mapping[str, Any]) -> int:
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "base64":
        data = source.get("data")
        size = image_size(data) if isinstance(data, str) else None
        if size is not None:
            return image_tokens_for_size(*size)
    return MAX_IMAGE_TOKENS  # URL, file id or unreadable: assume the largest


# ------------------------------------------------------------------ text


class _Tally:
    """Running totals while walking a request."""

    __slots__ = ("chars", "image_tokens", "images")

    def __init__(self) -> None:
        self.chars = 0
        self.images = 0
        self.image_tokens = 0

    def add_content(self, content: Any) -> None:
        """A `content` / tool-result content value: a string or a list of blocks."""
        if isinstance(content, str):
            self.chars += len(content)
        elif isinstance(content, list):
            for block in content:
                if isinstance(block, dict):
                    self.add_block(block)
                elif isinstance(block, str):
                    self.chars += len(block)

    def add_block(self, block: Mapping[str, Any]) -> None:
        kind = block.get("type")
        if kind == "text":
            self.add_strings(block.get("text"))
        elif kind == "thinking":
            self.add_strings(block.get("thinking"))
        elif kind == "redacted_thinking":
            pass  # encrypted; never sent upstream as text
        elif kind == "image":
            self.images += 1
            self.image_tokens += _image_tokens(block)
        elif kind in ("tool_use", "server_tool_use"):
            self.add_strings(block.get("name"))
            self.chars += len(_compact_json(block.get("input", {})))
        elif kind == "tool_result":
            self.add_content(block.get("content"))
        elif kind == "document":
            self.add_document(block)
        elif kind == "tool_reference":
            self.chars += len(tool_reference_text(block))
        else:  # search_result and future kinds: whatever text they hold
            self.add_strings(block)

    def add_document(self, block: Mapping[str, Any]) -> None:
        self.add_strings(block.get("title"), block.get("context"))
        source = block.get("source")
        if not isinstance(source, dict):
            return
        kind, data = source.get("type"), source.get("data")
        if kind == "text":
            self.add_strings(data)
        elif kind == "content":
            self.add_content(source.get("content"))
        elif kind == "base64" and str(source.get("media_type")).startswith("text/"):
            if isinstance(data, str):
                self.chars += len(data) * 3 // 4  # the decoded text's size, near enough
        elif kind == "url":
            # count_tokens never fetches: a document by URL counts as a few pages of text.
            # (A message's own count is taken after the server fetched and read it.)
            self.chars += URL_DOCUMENT_CHARS
        # A base64 PDF counts by its text: the server reads it before measuring
        # (app/server/messages/documents.py); one still here goes upstream as a short note.

    def add_strings(self, *values: Any) -> None:
        """Sum string lengths inside values (nested dicts and lists included)."""
        stack: list[Any] = list(values)
        while stack:
            value = stack.pop()
            if isinstance(value, str):
                self.chars += len(value)
            elif isinstance(value, dict):
                stack.extend(v for k, v in value.items() if k not in _NON_TEXT_KEYS)
            elif isinstance(value, list):
                stack.extend(value)


def _tool_chars(tools: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
    count = chars = 0
    for tool in tools:
        count += 1
        for key in ("name", "description"):
            value = tool.get(key)
            if isinstance(value, str):
                chars += len(value)
        if "input_schema" in tool:
            chars += len(_compact_json(tool["input_schema"]))
    return count, chars


def measure_request(
    req: Mapping[str, Any], tools: Sequence[Mapping[str, Any]] | None = None
) -> RequestSize:
    """The countable size of an Anthropic Messages request (see module docstring).

    `messages` counts the system prompt as one message when it has text: it
    becomes a system message upstream and pays the same template overhead.
    `tools`: the request's `offered_tools`, when the caller has them already.
    """
    tally = _Tally()
    tally.add_content(req.get("system"))
    messages = 1 if tally.chars else 0
    raw_messages = req.get("messages")
    if isinstance(raw_messages, list):
        for message in raw_messages:
            if isinstance(message, dict):
                messages += 1
                tally.add_content(message.get("content"))
    tool_count, tool_chars = _tool_chars(offered_tools(req) if tools is None else tools)
    # Positional: a frozen dataclass is built ~0.2 us faster without keywords.
    return RequestSize(
        tally.chars + tool_chars, tally.images, tally.image_tokens, messages, tool_count
    )


# ------------------------------------------------------------------ estimator


class TokenEstimator:
    """Tokens from a `RequestSize`, with a chars-per-token ratio learned per model.

    Learning: the ratio is (decayed sum of text chars) / (decayed sum of text
    tokens) over observations, where text tokens = reported prompt_tokens minus
    our fixed overheads and image estimate. A ratio of sums, not an average of
    ratios: big requests, where the guessed overheads matter least, weigh most,
    and a single small request barely moves the estimate. Each observation is
    weighted by its size, `min(1, chars / 2000) ** 2`: a 300-character prompt
    counts 2%, any Claude Code request fully; decay (0.9 per full weight) lets
    the ratio follow an upstream that changes the model behind a name. A prior
    worth 250 tokens at the default ratio starts it: one real request moves the
    ratio most of the way, many short prompts hardly (tests/unit/core/test_tokens.py
    measures both on the 2.1.332 request). A least-
    squares fit of intercept and slope was not used: with a few observations
    of similar requests it is ill-conditioned and can produce negative slopes.
    """

    def __init__(
        self,
        *,
        default_chars_per_token: float = 3.5,
        per_message_overhead: int = 4,
        per_tool_overhead: int = 8,
        max_models: int = 256,
    ) -> None:
        if not _MIN_CHARS_PER_TOKEN <= default_chars_per_token <= _MAX_CHARS_PER_TOKEN:
            raise ValueError(f"default_chars_per_token out of range: {default_chars_per_token}")
        if per_message_overhead < 0 or per_tool_overhead < 0 or max_models < 1:
            raise ValueError("overheads must be >= 0 and max_models >= 1")
        self._default = default_chars_per_token
        self._per_message = per_message_overhead
        self._per_tool = per_tool_overhead
        self._max_models = max_models
        # model -> (decayed text chars, decayed text tokens); oldest first.
        self._evidence: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _fixed_tokens(self, size: RequestSize) -> int:
        return (
            _BASE_OVERHEAD
            + self._per_message * size.messages
            + self._per_tool * size.tools
            + size.image_tokens
        )

    def chars_per_token(self, model: str) -> float:
        evidence = self._evidence.get(model)
        if evidence is None:
            return self._default
        chars, tokens = evidence
        return chars / tokens

    def estimate(self, model: str, size: RequestSize) -> int:
        text_tokens = size.text_chars / self.chars_per_token(model)
        return max(1, math.ceil(self._fixed_tokens(size) + text_tokens))

    def observe(self, model: str, size: RequestSize, prompt_tokens: int) -> None:
        """Learn from the `prompt_tokens` (cached ones included) reported for `size`."""
        if size.text_chars < _MIN_OBSERVED_CHARS:
            return
        text_tokens = prompt_tokens - self._fixed_tokens(size)
        if text_tokens <= 0:
            return
        if not _MIN_CHARS_PER_TOKEN <= size.text_chars / text_tokens <= _MAX_CHARS_PER_TOKEN:
            return
        chars, tokens = self._evidence.pop(model, (self._default * _PRIOR_TOKENS, _PRIOR_TOKENS))
        weight = min(1.0, size.text_chars / _FULL_WEIGHT_CHARS) ** 2
        keep = _DECAY**weight
        self._evidence[model] = (
            chars * keep + size.text_chars * weight,
            tokens * keep + text_tokens * weight,
        )
        if len(self._evidence) > self._max_models:
            self._evidence.popitem(last=False)

    def models(self) -> list[str]:
        """Models with learned ratios, least recently observed first."""
        return list(self._evidence)
