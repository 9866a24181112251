"""Server-sent events: an incremental decoder for upstream bodies, and encoders for ours.

Invariants:
- `SSEDecoder.feed` is sans-IO and split-proof: any split of the same bytes into
  feeds (then `close()`) yields the same events. Lines end at `\\n`, `\\r\\n` or
  `\\r`, also when `\\r` ends one feed and `\\n` starts the next; those bytes never
  occur inside a multi-byte UTF-8 sequence, so only complete lines are decoded.
- Decoding follows the WHATWG event-stream rules (one leading space stripped
  from values, data lines joined with `\\n`, a leading BOM dropped, events with
  no data never emitted) with one documented deviation for TGI (below).
- Comment lines are not events; `SSEDecoder.comments` counts them, so the
  server can tell a silent upstream from one sending keep-alives.
- Memory is bounded: an unterminated line, or the data of one event, longer
  than `max_event_bytes` raises `UpstreamProtocolError` (the stream fails
  cleanly instead of buffering a line that never ends).
"""

import json
from dataclasses import dataclass
from json.encoder import encode_basestring, encode_basestring_ascii

from app.core.anthropic_types import StreamEvent
from app.core.errors import UpstreamProtocolError

DONE_LINE = b"data: [DONE]\n\n"

# Far more than any one chunk a model sends: a whole 128K-token answer is about
# 0.5 MB of text, 1 MB JSON-escaped.
MAX_EVENT_BYTES = 4 * 1024 * 1024

_BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    data: str
    event: str | None = None
    id: str | None = None


class SSEDecoder:
    """Bytes in, `ServerSentEvent`s out, with no I/O.

    TGI deviation: TGI 1.4 separates events with a single `\\n`, so by the spec
    consecutive `data:` lines would join into one unparseable value. A `data:`
    line therefore starts a new event when the data gathered so far already is
    a complete JSON object. Legitimate multi-line JSON is never complete before
    its last line, so real SSE multi-line data still joins as the spec says.
    """

    def __init__(self, *, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self.comments = 0
        self._max_event_bytes = max_event_bytes
        self._partial: list[bytes] = []  # an unterminated line, in pieces
        self._partial_size = 0
        self._data_size = 0  # characters in `_data`
        self._skip_lf = False  # the last feed ended in "\r": a leading "\n" is its pair
        self._at_stream_start = True
        self._data: list[str] = []
        self._event: str | None = None
        self._last_id: str | None = None  # persists across events, as the spec says

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        if self._skip_lf and data:
            self._skip_lf = False
            if data[:1] == b"\n":
                data = data[1:]
        # `find`, not `in`: `bytes in bytes` first tries the needle as an integer and
        # clears the TypeError that raises (0.2 us each time, on every read).
        has_cr = data.find(b"\r") >= 0  # the partial line held has no line end at all
        # Fast path: no line end yet, only remember the bytes (no quadratic joins).
        if not has_cr and data.find(b"\n") < 0:
            if data:
                self._keep_partial(data)
            return []
        if self._partial:
            self._partial.append(data)
            data = b"".join(self._partial)
            self._partial.clear()
            self._partial_size = 0
        if has_cr:
            self._skip_lf = data.endswith(b"\r")
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        last_lf = data.rfind(b"\n")
        if last_lf + 1 < len(data):
            self._keep_partial(data[last_lf + 1 :])
        text = data[:last_lf].decode("utf-8", "replace")
        if self._at_stream_start:
            self._at_stream_start = False
            if text.startswith(_BOM):
                text = text[1:]
        events: list[ServerSentEvent] = []
        for line in text.split("\n"):
            # The two lines of nearly every event, taken here without a call each:
            # its one `data: ` line, and the blank line that ends it.
            if not line:
                if self._data:
                    events.append(_event(self._joined_data(), self._event, self._last_id))
                self._event = None
            elif line[:6] == "data: " and not self._data:
                self._data.append(line[6:])
                self._data_size = len(line) - 6
                if self._data_size > self._max_event_bytes:
                    raise self._too_large("an event")
            else:
                self._take_line(line, events)
        return events

    def close(self) -> list[ServerSentEvent]:
        """End of stream: flush an unterminated last line and last event."""
        events: list[ServerSentEvent] = []
        if self._partial:
            self._take_line(b"".join(self._partial).decode("utf-8", "replace"), events)
            self._partial.clear()
            self._partial_size = 0
        self._dispatch(events)
        self._skip_lf = False
        return events

    def _keep_partial(self, data: bytes) -> None:
        self._partial.append(data)
        self._partial_size += len(data)
        if self._partial_size > self._max_event_bytes:
            raise self._too_large("a line")

    def _too_large(self, what: str) -> UpstreamProtocolError:
        size = self._max_event_bytes
        limit = f"{size / 1024 / 1024:g} MB" if size >= 1024 * 1024 else f"{size} bytes"
        return UpstreamProtocolError(
            f"upstream sent {what} longer than {limit} in its event stream; stopped reading it"
        )

    def _take_line(self, line: str, events: list[ServerSentEvent]) -> None:
        if self._at_stream_start:
            self._at_stream_start = False
            if line.startswith(_BOM):
                line = line[1:]
        if not line:
            self._dispatch(events)
            return
        if line[0] == ":":
            self.comments += 1
            return
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            if self._data and _is_complete_json_object(self._data):
                self._dispatch(events)  # TGI: no blank line between events
            self._data.append(value)
            self._data_size += len(value)
            if self._data_size > self._max_event_bytes:
                raise self._too_large("an event")
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        # "retry" and unknown fields are ignored, as the spec says.

    def _dispatch(self, events: list[ServerSentEvent]) -> None:
        if self._data:
            events.append(_event(self._joined_data(), self._event, self._last_id))
        self._event = None

    def _joined_data(self) -> str:
        """The data gathered for the event being dispatched; the next one starts empty."""
        data = self._data
        self._data = []
        self._data_size = 0
        return data[0] if len(data) == 1 else "\n".join(data)


# `ServerSentEvent(...)` runs the frozen dataclass's __init__ (object.__setattr__ per
# field); setting the slots directly gives the same object in about half the time.
_new_object = object.__new__
_set_data = vars(ServerSentEvent)["data"].__set__  # the slots' descriptors
_set_event = vars(ServerSentEvent)["event"].__set__
_set_id = vars(ServerSentEvent)["id"].__set__


def _event(data: str, event: str | None, last_id: str | None) -> ServerSentEvent:
    made: ServerSentEvent = _new_object(ServerSentEvent)
    _set_data(made, data)
    _set_event(made, event)
    _set_id(made, last_id)
    return made


def _is_complete_json_object(lines: list[str]) -> bool:
    # A complete object ends in "}": checked first, so the lines of a long
    # multi-line event are not each parsed with everything gathered before them.
    if not lines[0].startswith("{") or not lines[-1].rstrip().endswith("}"):
        return False
    try:
        json.loads("\n".join(lines))
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return False
    return True


# What json.dumps(payload, separators=(",", ":"), ensure_ascii=...) encodes with, made
# once: json.dumps builds a new encoder for every call with arguments of its own.
_COMPACT_UTF8 = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_COMPACT_ASCII = json.JSONEncoder(separators=(",", ":"))


def _compact_json_bytes(payload: object) -> bytes:
    try:
        return _COMPACT_UTF8.encode(payload).encode()
    except UnicodeEncodeError:
        # A lone surrogate (an emoji split across chunks as \ud83d + \ude00)
        # has no UTF-8 form; as a JSON escape it survives and rejoins on the client.
        return _COMPACT_ASCII.encode(payload).encode()


# Deltas are nearly every event of a stream: they are encoded from a template
# around one JSON string instead of dumping nested dicts (about 3x faster), and
# the part before the string is made once for the first block indexes.
# The output is byte-identical to the generic path (tests/unit/core/test_sse.py).
_DELTA_HEAD = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
_PREFIXES_MADE = 64  # block indexes whose prefixes are made once; later ones each time


def _delta_template(kind: str, field: str) -> tuple[str, bytes, tuple[bytes, ...]]:
    delta_head = b'"delta":{"type":"' + kind.encode() + b'","' + field.encode() + b'":'
    prefixes = tuple(
        _DELTA_HEAD + str(index).encode() + b"," + delta_head for index in range(_PREFIXES_MADE)
    )
    return field, delta_head, prefixes


_DELTA_TEMPLATE_BY_TYPE: dict[str, tuple[str, bytes, tuple[bytes, ...]]] = {
    kind: _delta_template(kind, field)
    for kind, field in (
        ("text_delta", "text"),
        ("thinking_delta", "thinking"),
        ("input_json_delta", "partial_json"),
        ("signature_delta", "signature"),
    )
}


# Events with nothing or only an index to fill in, as the generic path encodes them.
_BARE_EVENTS = {
    kind: b"event: " + kind.encode() + b'\ndata: {"type":"' + kind.encode() + b'"}\n\n'
    for kind in ("ping", "message_stop")
}
_BLOCK_STOP = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n'


def _json_string_bytes(text: str) -> bytes:
    try:
        return encode_basestring(text).encode()
    except UnicodeEncodeError:  # a lone surrogate: escaped, as in _compact_json_bytes
        return encode_basestring_ascii(text).encode()


def encode_event(event: StreamEvent) -> bytes:
    """One Anthropic stream event as `event: TYPE` + `data: JSON` + blank line."""
    if event["type"] == "content_block_delta" and len(event) == 3:
        delta = event["delta"]
        template = _DELTA_TEMPLATE_BY_TYPE.get(delta.get("type", ""))
        if template is not None and len(delta) == 2:
            field, delta_head, prefixes = template
            value = delta.get(field)
            index = event["index"]
            if isinstance(value, str) and type(index) is int:
                if 0 <= index < _PREFIXES_MADE:
                    prefix = prefixes[index]
                else:
                    prefix = _DELTA_HEAD + str(index).encode() + b"," + delta_head
                return prefix + _json_string_bytes(value) + b"}}\n\n"
    elif len(event) == 1 and event["type"] in _BARE_EVENTS:
        return _BARE_EVENTS[event["type"]]
    elif event["type"] == "content_block_stop" and tuple(event) == ("type", "index"):
        index = event["index"]
        if type(index) is int:
            return _BLOCK_STOP % index
    return b"event: " + event["type"].encode() + b"\ndata: " + _compact_json_bytes(event) + b"\n\n"


def encode_data(payload: object) -> bytes:
    """A data-only event (OpenAI pass-through)."""
    return b"data: " + _compact_json_bytes(payload) + b"\n\n"
