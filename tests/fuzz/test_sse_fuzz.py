"""SSEDecoder: any bytes decode without an exception, and every chunking of the same
bytes gives the same events (and comments)."""

from hypothesis import example, given
from hypothesis import strategies as st

from app.core.sse import ServerSentEvent, SSEDecoder
from tests.fuzz import FUZZ
from tests.fuzz.test_stream_fuzz import FIXTURE_BODIES, split_at

# Bytes that mean something to the decoder, so random streams are more than one long line.
SSE_PIECES = [
    b"data: ",
    b"data:",
    b"event: error\n",
    b"id: 7\n",
    b"id: a\x00b\n",
    b"retry: 10\n",
    b": PROCESSING\n",
    b"\n",
    b"\r",
    b"\r\n",
    b"\n\n",
    b'{"a": 1}',
    b'{"a":',
    b" 2}",
    b"[DONE]",
    b"\xef\xbb\xbf",  # a BOM
    "é€😀".encode(),
    b"\xf0\x9f",  # half an emoji
    b"\xff",
]
SSE_BYTES = st.lists(st.sampled_from(SSE_PIECES) | st.binary(max_size=6), max_size=30).map(b"".join)


def decode(pieces: list[bytes]) -> tuple[list[ServerSentEvent], int]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for piece in pieces:
        events += decoder.feed(piece)
    events += decoder.close()
    return events, decoder.comments


@FUZZ
@given(body=SSE_BYTES | st.binary(max_size=200), cuts=st.lists(st.integers(0, 1 << 16)))
@example(body=b"data: x\r\ndata: y\r\n\r\n", cuts=[8])  # "\r" | "\n" across two feeds
@example(body=b"data: \xf0\x9f\x98\x80\n\n", cuts=[7, 8])  # an emoji split across feeds
@example(body=b'data: {"a":' + b"[" * 100_000 + b"\ndata: 1\n\n", cuts=[])  # RecursionError
def test_any_chunking_gives_the_same_events(body: bytes, cuts: list[int]) -> None:
    whole = decode([body])
    assert decode(split_at(body, cuts)) == whole
    assert decode([body[i : i + 1] for i in range(len(body))]) == whole
    for event in whole[0]:  # line ends never leak into values
        assert "\r" not in event.data and "\r" not in (event.event or "") + (event.id or "")
        assert "\n" not in (event.event or "") + (event.id or "")


@FUZZ
@given(
    stem=st.sampled_from(sorted(FIXTURE_BODIES)),
    cuts=st.lists(st.integers(0, 1 << 20), max_size=30),
    crlf=st.booleans(),
)
def test_recorded_streams_any_chunking_and_line_ends(
    stem: str, cuts: list[int], crlf: bool
) -> None:
    body = FIXTURE_BODIES[stem]
    if crlf:  # the same stream from a server that ends lines with CRLF
        body = body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    events, _ = decode(split_at(body, cuts))
    assert events == decode([FIXTURE_BODIES[stem]])[0]


DATA_LINES = st.text(
    st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]), max_size=12
).filter(lambda line: not line.startswith("{"))  # TGI's rule splits only at `{...}` lines


@FUZZ
@given(
    events=st.lists(
        st.tuples(
            st.lists(DATA_LINES, min_size=1, max_size=3),
            st.none() | st.sampled_from(["error", "message", "ping"]),
        ),
        max_size=6,
    ),
    line_end=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(0, 1 << 16), max_size=10),
)
def test_well_formed_events_come_back_as_sent(
    events: list[tuple[list[str], str | None]], line_end: str, cuts: list[int]
) -> None:
    text = ""
    for lines, name in events:
        if name is not None:
            text += f"event: {name}{line_end}"
        text += "".join(f"data: {line}{line_end}" for line in lines) + line_end
    decoded, _ = decode(split_at(text.encode(), cuts))
    assert [(e.data, e.event) for e in decoded] == [("\n".join(d), n) for d, n in events]
