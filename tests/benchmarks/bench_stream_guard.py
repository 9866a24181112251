"""What the stream guard costs per event, beside the work it guards.

    .venv/bin/python -m tests.benchmarks.bench_stream_guard

Replays every recorded upstream stream in tests/fixtures/openai_stream through
SSEDecoder -> StreamTranslator -> encode_event (the relay's core work), then
times StreamGuard.check over the same events. Standard library only; not
collected by pytest.
"""

import timeit
from collections.abc import Callable
from pathlib import Path

from app.core.anthropic_stream import StreamTranslator
from app.core.anthropic_stream_guard import StreamGuard
from app.core.anthropic_types import StreamEvent
from app.core.sse import SSEDecoder, encode_event

FIXTURES = Path(__file__).parents[1] / "fixtures" / "openai_stream"
BODIES = [path.read_bytes() for path in sorted(FIXTURES.glob("*.sse"))]


def relay_core(body: bytes) -> list[StreamEvent]:
    translator = StreamTranslator(model="claude-bench", message_id="msg_bench")
    events = translator.start()
    decoder = SSEDecoder()
    for sse in decoder.feed(body) + decoder.close():
        events += translator.feed_sse(sse)
    events += translator.finish()
    for event in events:
        encode_event(event)
    return events


def guard(streams: list[list[StreamEvent]]) -> None:
    for events in streams:
        checker = StreamGuard()
        for event in events:
            checker.check(event)
        checker.finish()


def best_of(statement: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(statement, number=number, repeat=7)) / number


def main() -> None:
    streams = [relay_core(body) for body in BODIES]
    events = sum(map(len, streams))
    relay_s = best_of(lambda: [relay_core(body) for body in BODIES], 50)
    guard_s = best_of(lambda: guard(streams), 200)
    delta: StreamEvent = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "hello world"},
    }
    checker = StreamGuard()  # a text block open, for the deltas
    checker.check(StreamTranslator(model="m", message_id="msg").start()[0])
    text_block = {"type": "text", "text": ""}
    checker.check({"type": "content_block_start", "index": 0, "content_block": text_block})
    one_delta_s = best_of(lambda: checker.check(delta), 200_000)
    one_encode_s = best_of(lambda: encode_event(delta), 200_000)
    print(f"{len(streams)} recorded streams, {events} Anthropic events")
    print(f"decode + translate + encode: {relay_s / events * 1e9:7.0f} ns/event")
    print(
        f"StreamGuard.check:           {guard_s / events * 1e9:7.0f} ns/event "
        f"({guard_s / relay_s:.1%} of the above)"
    )
    print(f"one text delta: check {one_delta_s * 1e9:.0f} ns, encode {one_encode_s * 1e9:.0f} ns")


if __name__ == "__main__":
    main()
