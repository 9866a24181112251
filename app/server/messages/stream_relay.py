"""Relay one upstream stream to the client: bytes -> SSEDecoder -> StreamTranslator -> write.

Invariants:
- Nothing is written before the upstream answers 2xx or the commit window ends:
  errors known by then are plain HTTP errors (status, retry-after) the client
  can retry. After the first byte, every failure is an `error` event.
- While nothing has been written for `ping_interval_s`, a `ping` goes out (one
  heartbeat task per stream, never in the middle of a write and never after
  the last event), so idle connections stay open. The clock is the client's
  silence, not the upstream's: with omitted thinking (`thinking.display`) a model
  may reason for minutes, the upstream busy, while the client is sent nothing.
- Chunks are written as they arrive (one write per upstream read), never
  buffered whole; the upstream response is closed in `finally`, which aborts
  the upstream request when the client went away. A slow client slows the
  upstream read (`write` awaits the drain), so memory stays bounded.
- A runaway upstream is bounded: past `max_upstream_bytes` the stream ends with
  an `error` event (something is wrong upstream; a clean stop would pass a
  broken answer off as whole). Past the client's max_tokens the translator ends
  it as a `max_tokens` stop; one SSE event is bounded by the decoder.
- With `smooth_deltas`, a long text or thinking delta (an upstream's burst) goes
  out as several small deltas (`app/core/rechunk.py`). When the burst ends what
  the upstream sent, its pieces are spread over at most `MAX_SPREAD_S`; the moment
  anything else is written (the next upstream event, the end, an error, a ping),
  the pieces still pending go first, at once. So a piece is at most that late
  and the stream's end not at all. The guard checks every piece before any goes.
- Upstream bytes are masked once, on their way out (`MaskedStream`). Whatever cuts
  upstream text before that (an error that quotes it, smoothing) masks it first:
  the translator is given `Masker.mask`, and so is the smoothing here. Only the
  DEBUG log of upstream bytes masks each read as it arrives.
- A stream that ends before any chunk (no data, no `[DONE]`) is asked once more
  without streaming (`reask`): llama-cpp-python answers a streamed context
  overflow with 200 and an empty body, and only the unstreamed answer says why
  (then the client gets "prompt is too long" and can compact).
"""

import asyncio
import json
import logging
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web

from app.core.anthropic_stream import StreamState, StreamTranslator
from app.core.anthropic_stream_guard import StreamGrammarError, StreamGuard
from app.core.anthropic_types import PING_EVENT, StreamEvent
from app.core.errors import ProxyError, UpstreamProtocolError
from app.core.masking import Masker, StreamMasker
from app.core.rechunk import smoothed_and_paced, spread_plan
from app.core.server_tools.rounds import ServerToolStream
from app.core.sse import SSEDecoder, encode_event
from app.core.strict_openai import completion_as_chunk
from app.server.bugs import describe, log_traceback
from app.server.egress import MaskedStream
from app.server.records import RequestRecord
from app.server.state import RelayConfig, absorb_stop
from app.server.upstream.call_policy import Attempts, UpstreamCall
from app.server.upstream.client import UpstreamResponse, answered_whole
from app.tasks import create_task

log = logging.getLogger(__name__)

STREAM_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # tell reverse proxies not to buffer the stream
}
_ENDED = (StreamState.FINISHED, StreamState.FAILED)
EMPTY_STREAM_REPAIR = "upstream ended the stream empty; asked again without streaming"
# The same request once more, unstreamed (`UpstreamCall.ask_unstreamed`).
Reask = Callable[[], Coroutine[Any, Any, UpstreamResponse]]
# Turns a batch of (guarded) Anthropic events into the bytes a client of another API
# reads (`/v1/responses`); stateful, one per stream. None: Anthropic SSE.
EventEncoder = Callable[[list[StreamEvent]], bytes]
# Writes tool result events, gives the next upstream round's response (None: done).
NextRound = Callable[
    [Callable[[list[StreamEvent]], Awaitable[None]]],
    Coroutine[Any, Any, UpstreamResponse | None],
]


class EventWriter:
    """Encodes Anthropic events and writes each batch in one `write`, except a burst's
    tail under `smooth_deltas`, which a pacing task sends in steps (`catch_up` sends
    what is left at once; every `write` calls it first, so order is kept). The batch
    that ends the stream (message_stop, error) goes out by `write_eof`: one write for
    both instead of two (the relay's own `write_eof` after it then does nothing).

    Also the heartbeat: `keep_alive()` runs beside the relay and writes a
    `ping` whenever nothing was written for `ping_interval_s` and no write is in
    progress, so the relay's reads need no timer of their own.

    Every event passes a `StreamGuard` first. An event the grammar refuses is
    our bug: it is not sent, the stream is closed grammatically instead, one
    error line is logged, and everything after it is dropped (`broken`).
    """

    def __init__(
        self,
        response: web.StreamResponse,
        ping_interval_s: float,
        record: RequestRecord,
        mask: Callable[[str], str] = str,
        *,
        smooth_deltas: bool = False,
        encode: EventEncoder | None = None,
        mask_before_cut: Callable[[str], str] = str,
    ) -> None:
        self._response = response
        self._encode = encode
        self._smooth_deltas = smooth_deltas
        self._mask = mask  # error events quote upstreams, which may echo the key back
        # A delta cut in pieces could split a key past what the way out recognises.
        self._mask_before_cut = mask_before_cut
        self._loop = asyncio.get_running_loop()
        self._ping_interval_s = ping_interval_s
        self._record = record
        self._guard = StreamGuard()
        self.last_write = self._loop.time()
        self._busy = False
        self._pacer: asyncio.Task[None] | None = None  # spreading a burst's tail
        self._hurry = asyncio.Event()  # set: send the pending pieces now
        self.closed = False  # the stream's last event is out: no ping may follow it
        self.broken = False  # the guard refused an event: relay nothing more

    async def write(self, events: list[StreamEvent]) -> None:
        if not events:
            return  # an upstream chunk with nothing to show: a burst keeps its pace
        if self._pacer is not None:
            await self.catch_up()
        later: list[StreamEvent] = []
        if self._smooth_deltas:
            events, later = smoothed_and_paced(events, mask=self._mask_before_cut)
        now = len(events)
        events = self._guarded(events + later)
        if len(events) == now + len(later):  # all passed: the burst's tail can be spread
            events, later = events[:now], events[now:]
        else:
            later = []  # the guard closed the stream: everything goes now
        if events:
            if events[-1]["type"] == "error":  # only ever last; once per stream at most
                events[-1] = _masked_error(events[-1], self._mask)
            await self._send(events)
        if later:
            self._hurry.clear()
            self._pacer = create_task(
                self._pace(later, *spread_plan(len(later))),
                name=f"pace {self._record.request_id}",
            )

    @property
    def spreading(self) -> bool:
        """A burst's pieces are still going out over time."""
        return self._pacer is not None and not self._pacer.done()

    async def _send(self, events: list[StreamEvent]) -> None:
        self._busy = True
        try:
            if self._encode is not None:
                data = self._encode(events)
            else:
                data = b"".join(map(encode_event, events))
            if self.closed:
                await self._response.write_eof(data)
            else:
                await self._response.write(data)
        finally:
            self._busy = False
        self.last_write = self._loop.time()

    async def _pace(self, pieces: list[StreamEvent], per_step: int, step_s: float) -> None:
        for start in range(0, len(pieces), per_step):
            try:
                await asyncio.wait_for(self._hurry.wait(), step_s)
            except TimeoutError:
                await self._send(pieces[start : start + per_step])
                continue
            await self._send(pieces[start:])  # something else is due: no more waiting
            return

    async def catch_up(self) -> None:
        """Send the pieces still being spread, at once; re-raises what their write raised
        (a client that went away)."""
        pacer = self._pacer
        if pacer is None:
            return
        self._hurry.set()
        await asyncio.wait({pacer})
        if self._pacer is pacer:
            self._pacer = None
        if not pacer.cancelled() and (failure := pacer.exception()) is not None:
            raise failure

    def abandon(self) -> None:
        """The stream is over without a last write (the client left, the task was
        cancelled): stop spreading, leave no task behind."""
        pacer, self._pacer = self._pacer, None
        if pacer is None:
            return
        if pacer.done():
            if not pacer.cancelled():
                pacer.exception()  # retrieved: a reset client is not worth a log line
        else:
            pacer.cancel()

    def _guarded(self, events: list[StreamEvent]) -> list[StreamEvent]:
        if self.broken:
            return []
        checked_before = self._guard.position
        try:
            self._guard.check_all(events)
        except StreamGrammarError as exc:
            self.broken = True
            self.closed = True
            log.error("%s NimBridge bug: malformed stream, %s", self._record.request_id, exc)
            self._record.error = f"NimBridge bug: malformed stream ({exc.reason})"
            return events[: exc.position - checked_before] + self._guard.closing_events()
        if self._guard.ended:
            self.closed = True  # e.g. while the relay drains the upstream after [DONE]
        return events

    async def keep_alive(self) -> None:
        while not self.closed:
            idle = self._loop.time() - self.last_write
            if idle < self._ping_interval_s or self._busy or self.spreading:
                await asyncio.sleep(max(self._ping_interval_s - idle, 0.01))
                continue
            try:
                await self.write([PING_EVENT])
            except ConnectionResetError:
                return  # the client left; the relay finds out at its next write


def _masked_error(event: StreamEvent, mask: Callable[[str], str]) -> StreamEvent:
    error = dict(event["error"])
    error["message"] = mask(str(error.get("message", "")))
    return {**event, "error": error}  # type: ignore[typeddict-item]


async def stream_messages(
    request: web.Request,
    record: RequestRecord,
    call: UpstreamCall,
    translator: StreamTranslator | ServerToolStream,
    *,
    relay: RelayConfig,
    masker: Masker,
    next_round: NextRound | None = None,
    encode: EventEncoder | None = None,
) -> web.StreamResponse:
    """`call`'s answer relayed as a stream. `next_round`: for server tools, called after
    each upstream body; it writes what it must (tool results) and gives the next
    upstream response, or None when done."""
    attempts = call.attempts
    max_upstream_bytes = relay.max_upstream_bytes
    opening = call.open()
    mask = masker.redact
    opening_task = create_task(opening, name=f"upstream-open {record.request_id}")
    upstream: UpstreamResponse | None = None
    pinger: asyncio.Task[None] | None = None
    writer: EventWriter | None = None
    try:
        if await _answered_within_window(opening_task, attempts, relay.commit_window_s):
            upstream = opening_task.result()  # a ProxyError here is still a plain HTTP error
        attempts.committed = True  # from here on a failure is an `error` event, never a retry
        response = MaskedStream(masker, status=200, headers=STREAM_HEADERS)
        response.headers["request-id"] = record.request_id
        await response.prepare(request)
        record.status = 200
        writer = EventWriter(
            response,
            relay.ping_interval_s,
            record,
            mask,
            smooth_deltas=relay.smooth_deltas,
            encode=encode,
            mask_before_cut=masker.mask,
        )
        await writer.write(translator.start())
        pinger = create_task(writer.keep_alive(), name=f"ping {record.request_id}")
        try:
            if upstream is None:  # committed before the upstream answered
                upstream = await opening_task
            await _relay_body(
                upstream,
                translator,
                writer,
                record,
                max_upstream_bytes,
                masker,
                call.ask_unstreamed,
            )
            while next_round is not None and not writer.broken:
                upstream.release()
                following = await next_round(writer.write)
                if following is None:
                    break
                upstream = following
                await _relay_body(upstream, translator, writer, record, max_upstream_bytes, masker)
        except ProxyError as exc:
            record.error = mask(exc.message)
            await writer.write(translator.fail(exc.to_error_body()))
        except ConnectionResetError:
            raise  # the client went away: nothing left to tell it
        except asyncio.CancelledError:
            if not absorb_stop(record):
                raise  # the client went away
            # The server stops and the grace is over: end the stream well, with the reason.
            assert record.stopped_by is not None
            record.error = record.stopped_by.message
            if translator.state not in _ENDED:
                await writer.write(translator.fail(record.stopped_by.to_error_body()))
        except Exception as exc:  # the boundary: our bug, still a well-formed end of stream
            # The request's summary line says it (record.error); the traceback at DEBUG.
            log_traceback(log, record.request_id, exc)
            record.error = f"internal error mid-stream ({describe(exc)})"
            if translator.state not in _ENDED:
                failure = ProxyError(f"internal error in NimBridge ({exc.__class__.__name__})")
                await writer.write(translator.fail(failure.to_error_body()))
        await writer.catch_up()
        writer.closed = True
        await response.write_eof()
        return response
    finally:
        if pinger is not None:
            pinger.cancel()
        if writer is not None:
            writer.abandon()
        record.repairs.extend(r for r in translator.repairs if r not in record.repairs)
        if record.error is None:  # the translator failed it (garbled chunk, upstream error event)
            record.error = mask(translator.failure) if translator.failure else None
        record.usage = dict(translator.usage)
        if not opening_task.done():
            opening_task.cancel()
        if upstream is not None:
            # Back to the pool when read to the end; otherwise the connection is
            # closed, which is what aborts the upstream request on a disconnect.
            upstream.release()


async def _answered_within_window(
    opening: "asyncio.Task[UpstreamResponse]", attempts: Attempts, window_s: float
) -> bool:
    """Wait for the upstream's answer (True) or for an attempt to stay unanswered for
    `window_s` (False: commit). Time spent in a backoff or a budget queue does not
    count: a retry must stay possible, so nothing may be written yet."""
    loop = asyncio.get_running_loop()
    while not opening.done():
        attempts.changed.clear()
        if attempts.waiting or attempts.count == 0:
            timeout = None  # nothing in flight: the window starts with the next attempt
        else:
            timeout = attempts.attempt_started + window_s - loop.time()
            if timeout <= 0:
                return False
        changed = create_task(attempts.changed.wait(), name="attempt changed")
        try:
            await asyncio.wait({opening, changed}, timeout=timeout, return_when=FIRST_COMPLETED)
        finally:
            changed.cancel()
    return True


async def _relay_body(
    upstream: UpstreamResponse,
    translator: StreamTranslator | ServerToolStream,
    writer: EventWriter,
    record: RequestRecord,
    max_upstream_bytes: int,
    masker: Masker,
    reask: Reask | None = None,
) -> None:
    if answered_whole(upstream.headers.get("Content-Type", "")):
        whole = await _translate_whole_body(upstream, translator, max_upstream_bytes, masker)
        await writer.write(whole)
        return
    decoder = SSEDecoder()
    # Only the DEBUG log shows reads as they come: each masked (a key split between
    # two reads is held back until it is whole), since the log masks line by line.
    logged = StreamMasker(masker) if log.isEnabledFor(logging.DEBUG) else None
    async for data in upstream.chunks(max_upstream_bytes, name_host=False):
        record.mark_first_byte()
        if logged is not None:
            log.debug("%s upstream bytes: %r", record.request_id, logged.feed(data))
        events: list[StreamEvent] = []
        for sse in decoder.feed(data):
            if translator.state in _ENDED:
                break
            events += translator.feed_sse(sse)
        await writer.write(events)
        if writer.broken:
            return  # our bug, already logged: release() drops the upstream connection
        if translator.state in _ENDED:
            await upstream.drain()
            return
    tail: list[StreamEvent] = []
    if logged is not None and (held := logged.close()):
        log.debug("%s upstream bytes: %r", record.request_id, held)
    for sse in decoder.close():
        if translator.state not in _ENDED:
            tail += translator.feed_sse(sse)
    if (
        reask is not None
        and isinstance(translator, StreamTranslator)
        and translator.received_chunks == 0
        and translator.state not in _ENDED
    ):
        record.repairs.append(EMPTY_STREAM_REPAIR)
        log.info("%s %s", record.request_id, EMPTY_STREAM_REPAIR)
        again = await reask()  # its error (a context overflow) ends the stream as such
        try:
            whole = await _translate_whole_body(again, translator, max_upstream_bytes, masker)
        finally:
            again.release()
        await writer.write(tail + whole)
        return
    await writer.write(tail + translator.finish())


async def _translate_whole_body(
    upstream: UpstreamResponse,
    translator: StreamTranslator | ServerToolStream,
    max_upstream_bytes: int,
    masker: Masker,
) -> list[StreamEvent]:
    try:
        body = json.loads(await upstream.read_body(max_upstream_bytes, masker, name_host=False))
    except ValueError as exc:
        raise UpstreamProtocolError("upstream answered a stream request with invalid JSON") from exc
    if not isinstance(body, dict):
        raise UpstreamProtocolError("upstream answered a stream request with a non-object body")
    return translator.feed(completion_as_chunk(body)) + translator.finish()
