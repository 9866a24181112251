"""The one masking step: known secrets, pieces of them at a cut, streams in pieces."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.masking import (
    CLIENT_KEYS_KEPT,
    MASK,
    Masker,
    StreamMasker,
    mask_shapes,
    url_secrets,
    without_credentials,
)

KEY = "Qx9fLmT2vR8kWp4nZc6hYb1sJd5gHa3eUo7i"  # 36 characters of no known shape
OTHER = "CANARYother0123456789"


def test_known_secrets_are_masked_in_text_and_bytes() -> None:
    masker = Masker([KEY, "abc"])  # too short to be masked: would hit ordinary words
    assert masker.mask(f"key {KEY}, abc") == f"key {MASK}, abc"
    assert masker.mask_bytes(f"key {KEY}".encode()) == f"key {MASK}".encode()
    assert masker.mask("nothing here") == "nothing here"
    assert masker.mask_bytes(b"nothing") == b"nothing"
    assert masker.secrets() == [KEY]


def test_nothing_known_masks_nothing() -> None:
    masker = Masker()
    assert masker.mask(KEY) == KEY and masker.mask_bytes(b"x") == b"x"
    assert masker.mask_edges(KEY[:10]) == KEY[:10]
    assert masker.held_from(b"abc") == 3


def test_a_json_escaped_slash_is_the_same_secret() -> None:
    masker = Masker(["abc/def/ghi"])
    assert masker.mask('{"m":"abc\\/def\\/ghi"}') == '{"m":"***"}'


def test_adding_twice_changes_nothing() -> None:
    masker = Masker([KEY])
    masker.add(KEY)
    masker.add_client_key(KEY)  # configured already
    assert masker.secrets() == [KEY]


def test_client_keys_are_bounded_and_short_ones_ignored() -> None:
    masker = Masker()
    masker.add_client_key("dummy")
    keys = [f"client-key-{n:04d}-xyz" for n in range(CLIENT_KEYS_KEPT + 1)]
    for key in keys:
        masker.add_client_key(key)
    masker.add_client_key(keys[1])  # seen again: kept, now the most recent
    masker.add_client_key("client-key-late-xyz")
    kept = masker.secrets()
    assert "dummy" not in kept and keys[0] not in kept and keys[2] not in kept
    assert keys[1] in kept and len(kept) == CLIENT_KEYS_KEPT
    assert masker.mask(f"echo {keys[1]}") == f"echo {MASK}"


def test_pieces_at_the_edges_are_masked() -> None:
    masker = Masker([KEY, OTHER])
    assert masker.mask_edges("provided: " + KEY[:10]) == "provided: " + MASK
    assert masker.mask_edges(KEY[-8:] + " and more") == MASK + " and more"
    assert masker.mask_edges("ends with " + KEY[:5]) == "ends with " + KEY[:5]  # too short
    assert masker.mask_edges("xx" + KEY[:7]) == "xx" + MASK
    assert masker.mask_edges("abc") == "abc"
    assert masker.mask_edges("no secret here at all") == "no secret here at all"


def test_clip_masks_before_the_cut_and_the_cut_piece() -> None:
    masker = Masker([KEY])
    text = "." * 1990 + KEY + "." * 100
    clipped = masker.clip(text, 2000)
    assert KEY[:6] not in clipped and clipped == "." * 1990 + MASK + "." * 7
    assert masker.clip("short", 2000) == "short"
    # The text came cut already (the upstream cut it): the piece left is masked.
    assert masker.clip("." * 10 + KEY[:20], 25).endswith(MASK)


def test_redact_adds_the_shapes() -> None:
    masker = Masker([KEY])
    assert masker.redact(f"{KEY} nvapi-abcdefghijkl") == f"{MASK} nvapi-{MASK}"
    assert mask_shapes("Bearer abcdefgh") == f"Bearer {MASK}"
    assert mask_shapes("x-api-key: abcdefgh") == f"x-api-key: {MASK}"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("req_1 POST /v1/messages 200 total=3ms", "req_1 POST /v1/messages 200 total=3ms"),
        ("key sk-abcdefghij here", f"key sk-abc{MASK} here"),
        ("sk- alone, nvapi- alone", "sk- alone, nvapi- alone"),
        ("BEARER abcdefgh", f"Bearer {MASK}"),
        ("X-Api-Key=abcdefgh", f"x-api-key: {MASK}"),
        ("a bearer of news", "a bearer of news"),
    ],
)
def test_shapes_are_looked_for_only_where_their_words_are(text: str, masked: str) -> None:
    assert mask_shapes(text) == masked


def test_urls_carry_secrets_and_are_shown_without_them() -> None:
    url = "https://user:s3cretpass@example.com:8443/v1?key=querysecret&x=1"
    assert url_secrets(url) == ["s3cretpass", "querysecret"]
    assert url_secrets("https://example.com/v1") == []
    assert without_credentials(url) == "https://example.com:8443/v1"
    assert without_credentials("http://[::1]:9/v1#frag") == "http://[::1]:9/v1"
    assert without_credentials("http://u@host:port/v1") == "http://host/v1"


def test_a_stream_holds_back_what_could_start_a_secret() -> None:
    stream = StreamMasker(Masker([KEY]))
    assert stream.feed(b"data: x\n\n") == b"data: x\n\n"  # an SSE piece never waits
    assert stream.feed(b"abc " + KEY[:9].encode()) == b"abc "
    assert stream.feed(KEY[9:].encode() + b" end") == MASK.encode() + b" end"
    assert stream.feed(b"tail " + KEY[:3].encode()) == b"tail "
    assert stream.close() == KEY[:3].encode()
    assert stream.close() == b""


@settings(max_examples=200, deadline=None)
@given(
    before=st.text(alphabet=".,: \n", max_size=40),
    after=st.text(alphabet=".,: \n", max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=120), max_size=6),
)
def test_a_secret_split_anywhere_in_a_stream_never_passes(
    before: str, after: str, cuts: list[int]
) -> None:
    data = (before + KEY + after + OTHER).encode()
    stream = StreamMasker(Masker([KEY, OTHER]))
    points = sorted({min(cut, len(data)) for cut in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    out = b"".join(stream.feed(piece) for piece in pieces) + stream.close()
    assert out == (before + MASK + after + MASK).encode()
