"""What smoothing costs per delta: `app.core.rechunk.smoothed` on small and burst deltas.

    .venv/bin/python -m tests.benchmarks.bench_rechunk

A small delta (the usual case) is only looked at; a 600-character burst is split
into pieces of at most 24 characters. Also prints the relay's core work on every
recorded upstream stream with and without smoothing (those stream in small
deltas, so the two should match), and the stream writer's CPU time for one burst
sent at once and spread over time (a timer and a write per piece). Not collected
by pytest.
"""

import asyncio
import time
from typing import cast

from aiohttp import web

from app.core.anthropic_stream import StreamTranslator
from app.core.anthropic_types import StreamEvent
from app.core.rechunk import smoothed
from app.core.sse import encode_event
from app.server.messages.stream_relay import EventWriter
from app.server.records import RequestRecord
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


class _NullResponse:
    async def write(self, data: bytes) -> None:
        pass

    async def write_eof(self, data: bytes = b"") -> None:
        pass


async def writer_cpu_per_burst(text: str, *, spread: bool, rounds: int = 50) -> float:
    """CPU seconds the stream writer spends on one burst: smoothing, the guard, encoding,
    and (`spread`) the timer and wake-up of each paced piece."""
    record = RequestRecord(request_id="req_bench", method="POST", path="/v1/messages")
    translator = StreamTranslator(model="m", message_id="msg_bench")
    opening = translator.start() + translator.feed({"choices": [{"delta": {"content": "Hi"}}]})
    used = 0.0
    for _ in range(rounds):
        response = cast(web.StreamResponse, _NullResponse())
        writer = EventWriter(response, 600, record, smooth_deltas=True)
        await writer.write(opening)
        before = time.process_time()
        await writer.write([text_delta(text)])
        while spread and writer.spreading:
            await asyncio.sleep(0.06)  # longer than a spread: the loop idles between steps
        await writer.catch_up()
        used += time.process_time() - before
    return used / rounds


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
    burst = BURSTS["600 chars, English"]
    at_once = asyncio.run(writer_cpu_per_burst(burst, spread=False))
    paced = asyncio.run(writer_cpu_per_burst(burst, spread=True))
    print(
        f"stream writer, one 600-char burst: {at_once * 1e6:.0f} us CPU sent at once, "
        f"{paced * 1e6:.0f} us CPU spread over time (incl. the idle loop's own wake-ups)"
    )


if __name__ == "__main__":
    main()
