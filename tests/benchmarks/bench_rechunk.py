"""What smoothing costs per delta: `app.core.rechunk.smoothed` on small and burst deltas.

    .venv/bin/python -m tests.benchmarks.bench_rechunk

A small delta (the usual case) is only looked at; a 600-character burst is split
into pieces of at most 24 characters. Also prints the relay's core work on every
recorded upstream stream with and without smoothing (those stream in small
deltas, so the two should match). Standard library only; not collected by pytest.
"""

from app.core.anthropic_types import StreamEvent
from app.core.rechunk import smoothed
from app.core.sse import encode_event
from tests.benchmarks.bench_stream_guard import BODIES, best_of, relay_core

BURSTS = {
    "10 chars (not split)": "Hello, wor",
    "600 chars, English": ("The quick brown fox jumps over the lazy dog, again and again. " * 10)[
        :600
    ],
    "600 chars, accents+emoji": ("Café au lait, naïve façade: 👩‍💻 works 🇫🇷 and 👍🏽 ok. " * 12)[
        :600
    ],
    "600 chars, one word": "x" * 600,
}


def text_delta(text: str) -> StreamEvent:
    return {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": text},
    }


def time_one(text: str) -> tuple[int, float, float]:
    """Deltas out, seconds to smooth one delta, seconds to smooth and encode it."""
    events = [text_delta(text)]
    split_s = best_of(lambda: smoothed(events), 2000)
    encode_s = best_of(lambda: [encode_event(e) for e in smoothed(events)], 2000)
    return len(smoothed(events)), split_s, encode_s


def main() -> None:
    for name, text in BURSTS.items():
        pieces, split_s, encode_s = time_one(text)
        print(
            f"{name:26} -> {pieces:2} deltas: smoothed {split_s * 1e6:6.1f} us, "
            f"+ encode {encode_s * 1e6:6.1f} us"
        )
    streams = [relay_core(body) for body in BODIES]
    count = sum(map(len, streams))
    plain_s = best_of(lambda: [relay_core(body) for body in BODIES], 50)
    smooth_s = best_of(lambda: [smoothed(relay_core(body)) for body in BODIES], 50)
    print(
        f"recorded streams ({count} events): relay core {plain_s / count * 1e9:.0f} ns/event, "
        f"with smoothing {smooth_s / count * 1e9:.0f} ns/event"
    )


if __name__ == "__main__":
    main()
