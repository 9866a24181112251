import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.core.anthropic_types import StreamEvent
from app.core.errors import UpstreamProtocolError
from app.core.sse import (
    DONE_LINE,
    MAX_EVENT_BYTES,
    ServerSentEvent,
    SSEDecoder,
    encode_data,
    encode_event,
)

E = ServerSentEvent

TGI_BODY = (
    b'data:{"a":1}\n'
    b'data:{"a":2}\n'
    b'data:{"a":3}\n'  # TGI 1.4.3 ends like this: no blank line, no [DONE]
)

# (body, events, comments)
DECODE_CASES = [
    pytest.param(b"data: hi\n\n", [E("hi")], 0, id="one-event"),
    pytest.param(b"data:hi\n\n", [E("hi")], 0, id="data-no-space"),
    pytest.param(b"data:  hi\n\n", [E(" hi")], 0, id="only-one-space-stripped"),
    pytest.param(b"data: a\r\n\r\ndata: b\r\n\r\n", [E("a"), E("b")], 0, id="crlf"),
    pytest.param(b"data: a\r\rdata: b\r\r", [E("a"), E("b")], 0, id="cr"),
    pytest.param(b"data: a\r\n\ndata: b\n\r\n", [E("a"), E("b")], 0, id="mixed-endings"),
    pytest.param(b"data: a\ndata: b\n\n", [E("a\nb")], 0, id="multi-line-data-joined"),
    pytest.param(b"data\n\n", [E("")], 0, id="field-without-colon"),
    pytest.param(b"data:\n\n", [E("")], 0, id="empty-data"),
    pytest.param(
        b": OPENROUTER PROCESSING\n\n: x\ndata: a\n\n", [E("a")], 2, id="comments-counted"
    ),
    pytest.param(b"event: error\ndata: {}\n\n", [E("{}", "error")], 0, id="event-name"),
    pytest.param(
        b"event: x\ndata: 1\n\ndata: 2\n\n", [E("1", "x"), E("2")], 0, id="event-name-reset"
    ),
    pytest.param(b"event: x\n\ndata: 2\n\n", [E("2")], 0, id="event-without-data-dropped"),
    pytest.param(
        b"id: 7\ndata: 1\n\ndata: 2\n\n", [E("1", None, "7"), E("2", None, "7")], 0, id="id-kept"
    ),
    pytest.param(b"id: a\0b\ndata: 1\n\n", [E("1")], 0, id="id-with-nul-ignored"),
    pytest.param(b"retry: 10\nfoo: bar\ndata: 1\n\n", [E("1")], 0, id="other-fields-ignored"),
    pytest.param(b"\xef\xbb\xbfdata: 1\n\n", [E("1")], 0, id="bom-dropped"),
    pytest.param(b"\xef\xbb\xbf: hi\n\n", [], 1, id="bom-before-comment"),
    pytest.param(b"\n\xef\xbb\xbfdata: 1\n\n", [], 0, id="bom-only-at-start"),
    pytest.param("data: é€😀\n\n".encode(), [E("é€😀")], 0, id="utf8"),
    pytest.param(b"data: \xff\n\n", [E("\ufffd")], 0, id="invalid-utf8-replaced"),
    pytest.param(b"data: 1\n\ndata: 2", [E("1"), E("2")], 0, id="unterminated-last-line"),
    pytest.param(b"data: 1\n\ndata: 2\n", [E("1"), E("2")], 0, id="no-final-blank-line"),
    pytest.param(b"data: [DONE]", [E("[DONE]")], 0, id="done-without-newline"),
    pytest.param(b"", [], 0, id="empty-body"),
    pytest.param(TGI_BODY, [E('{"a":1}'), E('{"a":2}'), E('{"a":3}')], 0, id="tgi-single-newlines"),
    pytest.param(
        b'data:{"a":1}\ndata: [DONE]\n', [E('{"a":1}'), E("[DONE]")], 0, id="tgi-then-done"
    ),
    pytest.param(
        b'data: {"a":\ndata: 1}\n\n', [E('{"a":\n1}')], 0, id="multi-line-json-still-joined"
    ),
    pytest.param(b"data: x\ndata: y\n\n", [E("x\ny")], 0, id="non-json-lines-joined"),
]


def decode(chunks: list[bytes]) -> tuple[list[ServerSentEvent], int]:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.close(), decoder.comments


def split_at(body: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted(cuts), len(body)]
    return [body[a:b] for a, b in zip(points, points[1:], strict=False)]


@pytest.mark.parametrize(("body", "expected", "comments"), DECODE_CASES)
def test_decode_whole(body: bytes, expected: list[ServerSentEvent], comments: int) -> None:
    assert decode([body]) == (expected, comments)


@pytest.mark.parametrize(("body", "expected", "comments"), DECODE_CASES)
def test_decode_one_byte_at_a_time(
    body: bytes, expected: list[ServerSentEvent], comments: int
) -> None:
    assert decode([body[i : i + 1] for i in range(len(body))]) == (expected, comments)


@pytest.mark.parametrize(("body", "expected", "comments"), DECODE_CASES)
def test_decode_every_two_way_split(
    body: bytes, expected: list[ServerSentEvent], comments: int
) -> None:
    for cut in range(len(body) + 1):
        assert decode([body[:cut], b"", body[cut:]]) == (expected, comments), cut


MIXED_BODY = (
    b"\xef\xbb\xbf: keep-alive\r\n\r\n"
    + 'data: {"t": "é😀"}\r\n\r\n'.encode()
    + b"event: error\rdata: a\rdata: b\r\r"
    + TGI_BODY
    + b"\n: bye\n\ndata: [DONE]"
)


@settings(max_examples=200)
@given(st.lists(st.integers(0, len(MIXED_BODY)), max_size=12))
@example([1, 2])  # inside the BOM
@example([len(b"\xef\xbb\xbf: keep-alive\r")])  # "\r" ends one feed, "\n" starts the next
def test_decode_any_split_gives_same_events(cuts: list[int]) -> None:
    assert decode(split_at(MIXED_BODY, cuts)) == decode([MIXED_BODY])


def test_mixed_body_events() -> None:
    events, comments = decode([MIXED_BODY])
    assert comments == 2
    assert events == [
        E('{"t": "é😀"}'),
        E("a\nb", "error"),
        E('{"a":1}'),
        E('{"a":2}'),
        E('{"a":3}'),
        E("[DONE]"),
    ]


def test_cr_then_lf_in_next_feed_is_one_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n") == []  # the pair of the "\r", not a blank line
    assert decoder.feed(b"\r") == [E("a")]
    assert decoder.feed(b"\ndata: b\n\n") == [E("b")]


def test_long_line_in_many_feeds() -> None:
    decoder = SSEDecoder()
    payload = "x" * 100_000
    body = f"data: {payload}\n\n".encode()
    events = [e for i in range(0, len(body), 7) for e in decoder.feed(body[i : i + 7])]
    assert events == [E(payload)]


@pytest.mark.parametrize(
    "pieces",
    [
        pytest.param([b"data: " + b"x" * 60, b"x" * 60], id="fast-path"),
        pytest.param([b"data: a\n\ndata: " + b"x" * 100], id="after-a-line-end"),
    ],
)
def test_a_line_that_never_ends_is_bounded(pieces: list[bytes]) -> None:
    """A line with no end fails once it passes the limit, however it arrives (issue: hardening)."""
    decoder = SSEDecoder(max_event_bytes=100)
    with pytest.raises(UpstreamProtocolError, match="a line longer than 100 bytes"):
        for piece in pieces:
            decoder.feed(piece)


def test_one_event_of_many_data_lines_is_bounded() -> None:
    decoder = SSEDecoder(max_event_bytes=100)
    assert decoder.feed(b"data: " + b"y" * 60 + b"\n") == []
    with pytest.raises(UpstreamProtocolError, match="an event longer than"):
        decoder.feed(b"data: " + b"y" * 60 + b"\n")


def test_one_whole_data_line_past_the_limit_is_bounded() -> None:
    decoder = SSEDecoder(max_event_bytes=100)
    with pytest.raises(UpstreamProtocolError, match="an event longer than 100 bytes"):
        decoder.feed(b"data: " + b"y" * 101 + b"\n")


def test_a_bom_before_an_unterminated_first_line_is_dropped_at_close() -> None:
    decoder = SSEDecoder()
    assert decoder.feed("\ufeffdata: hi".encode()) == []
    assert decoder.close() == [E("hi")]
    decoder = SSEDecoder()
    assert decoder.feed("\ufeff".encode()) == []
    assert decoder.close() == []


def test_decoded_events_are_ordinary_server_sent_events() -> None:
    (event,) = SSEDecoder().feed(b"event: e\nid: 7\ndata: a\ndata: b\n\n")
    assert event == E("a\nb", "e", "7")
    assert hash(event) == hash(E("a\nb", "e", "7"))
    assert repr(event) == repr(E("a\nb", "e", "7"))
    with pytest.raises(AttributeError):
        event.data = "changed"  # type: ignore[misc]


def test_many_events_below_the_limit_pass() -> None:
    decoder = SSEDecoder(max_event_bytes=100)
    line = b"data: " + b"z" * 90 + b"\n\n"
    for _ in range(50):  # the sizes reset after each event and each line end
        assert decoder.feed(line[:50]) == []
        assert decoder.feed(line[50:]) == [E("z" * 90)]
    assert MAX_EVENT_BYTES >= 1024 * 1024


def test_a_large_limit_is_said_in_mb() -> None:
    decoder = SSEDecoder(max_event_bytes=2 * 1024 * 1024)
    with pytest.raises(UpstreamProtocolError, match="a line longer than 2 MB"):
        decoder.feed(b"data: " + b"x" * (2 * 1024 * 1024))


def test_data_ending_in_a_brace_that_is_not_json_still_joins() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: {not json}\ndata: more\n\n") == [E("{not json}\nmore")]


def test_close_twice_and_reuse() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: 1") == []
    assert decoder.close() == [E("1")]
    assert decoder.close() == []


ENCODE_CASES = [
    pytest.param({"type": "ping"}, b'event: ping\ndata: {"type":"ping"}\n\n', id="ping"),
    pytest.param(
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "é"}},
        'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        '"delta":{"type":"text_delta","text":"é"}}\n\n'.encode(),
        id="utf8-not-escaped",
    ),
    pytest.param(
        {"type": "error", "error": {"type": "api_error", "message": "a\nb"}},
        b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"a\\nb"}}\n\n',
        id="newline-escaped",
    ),
    pytest.param(
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "\ud83d"},
        },
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"\\ud83d"}}\n\n',
        id="lone-surrogate-escaped",
    ),
]


@pytest.mark.parametrize(("event", "expected"), ENCODE_CASES)
def test_encode_event(event: dict[str, object], expected: bytes) -> None:
    encoded = encode_event(event)  # type: ignore[arg-type]
    assert encoded == expected
    (decoded,), _ = decode([encoded])
    assert decoded.event == event["type"]
    assert json.loads(decoded.data) == event


def test_encode_data_and_done_line() -> None:
    assert encode_data({"a": "é", "b": [1, 2]}) == 'data: {"a":"é","b":[1,2]}\n\n'.encode()
    assert decode([encode_data({"x": 1}) + DONE_LINE]) == ([E('{"x":1}'), E("[DONE]")], 0)


def _generic_encoding(event: StreamEvent) -> bytes:
    """What the template fast path must reproduce byte for byte."""
    try:
        data = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        data = json.dumps(event, separators=(",", ":")).encode()
    return b"event: " + event["type"].encode() + b"\ndata: " + data + b"\n\n"


@given(
    kind=st.sampled_from(
        [
            ("text_delta", "text"),
            ("thinking_delta", "thinking"),
            ("input_json_delta", "partial_json"),
            ("signature_delta", "signature"),
        ]
    ),
    text=st.text(),
    index=st.integers(min_value=0, max_value=10_000),
)
@example(kind=("text_delta", "text"), text="\ud83d", index=0)  # a lone surrogate
@example(kind=("text_delta", "text"), text='quote " back\\slash \n\t\x00 \u2028 é 😀', index=3)
def test_delta_fast_path_is_byte_identical(kind: tuple[str, str], text: str, index: int) -> None:
    event: StreamEvent = {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": kind[0], kind[1]: text},
    }
    assert encode_event(event) == _generic_encoding(event)
    decoded = json.loads(encode_event(event).split(b"data: ", 1)[1])
    assert decoded == event or "\ud83d" in text  # a lone surrogate only round-trips escaped


@pytest.mark.parametrize("index", [-1, 0, 63, 64, 10**6])
def test_delta_indexes_past_the_made_prefixes_encode_alike(index: int) -> None:
    event: StreamEvent = {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "thinking_delta", "thinking": "x"},
    }
    assert encode_event(event) == _generic_encoding(event)


@pytest.mark.parametrize(
    "event",
    [
        {"type": "ping"},
        {"type": "message_stop"},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_stop", "index": 12345},
        {"type": "content_block_stop", "index": -1},
        {"index": 2, "type": "content_block_stop"},  # another key order: kept
        {"type": "content_block_stop", "index": True},
        {"type": "content_block_stop", "index": "2"},
        {"type": "content_block_stop", "index": 2, "extra": None},
        {"type": "message_delta", "delta": {}, "usage": {}},
    ],
)
def test_events_made_from_templates_encode_alike(event: StreamEvent) -> None:
    assert encode_event(event) == _generic_encoding(event)


def test_generic_encoding_escapes_a_lone_surrogate() -> None:
    event: StreamEvent = {"type": "error", "error": {"type": "api_error", "message": "\ud83d!"}}
    encoded = encode_event(event)
    assert b"\\ud83d!" in encoded
    assert json.loads(encoded.split(b"data: ", 1)[1]) == event


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "citations_delta", "citation": {"x": 1}},
            },
            id="unknown-delta-type",
        ),
        pytest.param(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": None},
            },
            id="non-string-value",
        ),
        pytest.param(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "a", "extra": 1},
            },
            id="extra-key",
        ),
    ],
)
def test_unusual_deltas_take_the_generic_path(event: StreamEvent) -> None:
    assert encode_event(event) == _generic_encoding(event)
