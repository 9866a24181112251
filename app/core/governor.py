"""Rate-limit governor: when the next upstream request may go, and how long to back off.

NVIDIA's free tier allows about 40 requests a minute per key (fewer for some
models) and answers 429 with cool-downs; agent loops hit that all the time
(PROTOCOL.md, "Provider quirks"). `RateGovernor` keeps sends under a sliding
window budget and learns a lower one from 429s; `RetryPolicy` decides whether
and when a failed attempt is retried; `parse_retry_after` reads the header.

No clocks here: every method takes `now`, monotonic seconds from the caller
(`loop.time()`), and `parse_retry_after` takes `now_epoch` (wall-clock seconds).

Invariants of `RateGovernor`:

1. Every live reservation (issued, not cancelled, `send_at + window_s > now`)
   has its `send_at` in `_sends`, sorted, in issue order: FIFO, a later caller
   never gets an earlier `send_at` than a live earlier one. Times only (a float
   each, 32 bytes; a (time, ticket) pair took 116): a busy minute holds tens of
   thousands, and reservations with equal times are interchangeable.
2. A new reservation's `send_at` is >= now, >= the cool-down end, >= the last
   live reservation and >= the `budget`-th latest live send + `window_s`. So
   no interval of `window_s` ever holds more than `budget` sends, and since the
   learned budget never exceeds the configured one, never more than that.
3. `min(min_budget, configured) <= budget <= configured`; `budget is None`
   exactly when the configured budget is None (unlimited: no learning).
4. Memory is the window's timestamps (and queued reservations) only: entries
   with `send_at + window_s <= now` are pruned on every call.
5. `now` never goes back: a `now` below the latest one seen counts as that one.
"""

import calendar
import email.utils
import math
import re
from collections import deque
from dataclasses import dataclass

# Exponential cool-down after a 429 without Retry-After: 2, 4, 8 ... s, capped.
FIRST_COOL_DOWN_S = 2.0
MAX_COOL_DOWN_S = 60.0
# A learned (lowered) budget creeps back up only after this long without a 429.
RECOVER_AFTER_S = 600.0

# RFC 9110 delay-seconds is digits; some providers send a decimal ("1.5").
_DELAY_SECONDS_RE = re.compile(r"\d+(?:\.\d*)?|\.\d+")


@dataclass(frozen=True, slots=True)
class GovernorState:
    """What the UI tooltip shows for one governor."""

    requests_last_minute: int  # sends in the last window (sent, not queued)
    budget_per_minute: int | None  # the budget in force (learned), None = unlimited
    cooling_down_for: float  # seconds left of the cool-down, 0 when none
    queued: int  # reservations whose send time is still ahead
    rate_limited_count: int  # 429s seen since start


@dataclass(frozen=True, slots=True)
class Reservation:
    """A slot: send at `send_at` (monotonic), i.e. after waiting `wait` seconds."""

    send_at: float
    wait: float
    ticket: int  # tells apart reservations with the same send_at (for cancel)


class RateGovernor:
    """Sliding-window request budget with FIFO reservations, cool-downs and learning."""

    def __init__(
        self,
        budget_per_minute: int | None,
        *,
        window_s: float = 60.0,
        min_budget: int = 1,
        recover_after_s: float = RECOVER_AFTER_S,
    ) -> None:
        if budget_per_minute is not None and budget_per_minute < 1:
            raise ValueError(f"budget_per_minute must be >= 1 or None, got {budget_per_minute}")
        if min_budget < 1:
            raise ValueError(f"min_budget must be >= 1, got {min_budget}")
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self._configured = budget_per_minute
        self._budget = budget_per_minute
        self._window_s = window_s
        self._min_budget = min_budget
        self._recover_after_s = recover_after_s
        self._sends: deque[float] = deque()  # send_at of each live reservation, sorted
        self._next_ticket = 0
        self._cancelled: dict[int, float] = {}  # ticket -> send_at, while in the window
        self._now = -math.inf
        self._cool_down_until = -math.inf
        self._next_cool_down_s = FIRST_COOL_DOWN_S
        self._last_rate_limited = -math.inf
        self._rate_limited_count = 0

    @property
    def budget_per_minute(self) -> int | None:
        """The budget in force: the configured one, or lower when learned from 429s."""
        return self._budget

    @property
    def configured_budget_per_minute(self) -> int | None:
        return self._configured

    def reserve(self, now: float) -> Reservation:
        """The earliest slot after every live reservation that keeps the window in budget."""
        # Every request passes here twice: comparisons rather than max() calls, and the
        # reservation built positionally (a frozen dataclass: keywords cost ~0.2 us more).
        now = self._advance(now)
        cool_down_until = self._cool_down_until
        send_at = cool_down_until if cool_down_until > now else now
        sends = self._sends
        if sends:
            last = sends[-1]
            if last > send_at:  # FIFO: behind everyone queued
                send_at = last
            if self._budget is not None and len(sends) >= self._budget:
                send_at = max(send_at, sends[-self._budget] + self._window_s)
        ticket = self._next_ticket
        self._next_ticket += 1
        sends.append(send_at)
        return Reservation(send_at, send_at - now, ticket)

    def cancel(self, reservation: Reservation) -> None:
        """A waiter gave up before sending: its slot goes to the next caller. Idempotent.

        Waiters queued behind it keep their times (FIFO); only new callers gain.
        """
        if reservation.ticket in self._cancelled:
            return
        self._cancelled[reservation.ticket] = reservation.send_at
        if reservation.send_at in self._sends:  # any entry of that time: all are alike
            self._sends.remove(reservation.send_at)

    def on_rate_limited(self, now: float, retry_after_s: float | None) -> float:
        """Record a 429; return when the cool-down ends (monotonic).

        The cool-down is `retry_after_s` when given, else 2, 4, 8 ... s (capped
        at 60) over consecutive 429s; an earlier, longer cool-down is kept.
        Learning: the 429'd request is one of the window's sends and the
        provider took the others, so its real limit is their number; when that
        is below the budget, the budget drops to it (never below `min_budget`).
        Unlimited governors do not learn. Reservations already handed out keep
        their times: a waiter that wakes inside the new cool-down should cancel
        and reserve again.
        """
        now = self._advance(now)
        self._rate_limited_count += 1
        self._last_rate_limited = now
        exponential = self._next_cool_down_s
        self._next_cool_down_s = min(MAX_COOL_DOWN_S, exponential * 2)
        if retry_after_s is not None and math.isfinite(retry_after_s):
            cool_down = max(0.0, retry_after_s)
        else:
            cool_down = exponential
        self._cool_down_until = max(self._cool_down_until, now + cool_down)
        if self._budget is not None:
            accepted = self._sent_in_window(now) - 1
            self._budget = min(self._budget, max(self._min_budget, accepted))
        return self._cool_down_until

    def on_success(self, now: float) -> None:
        """Reset the exponential cool-down; after a quiet spell, grow the budget by one."""
        now = self._advance(now)
        self._next_cool_down_s = FIRST_COOL_DOWN_S
        if (
            self._budget is not None
            and self._configured is not None
            and self._budget < self._configured
            and now - self._last_rate_limited >= self._recover_after_s
        ):
            self._budget += 1

    def state(self, now: float) -> GovernorState:
        now = self._advance(now)
        sent = self._sent_in_window(now)
        return GovernorState(
            requests_last_minute=sent,
            budget_per_minute=self._budget,
            cooling_down_for=max(0.0, self._cool_down_until - now),
            queued=len(self._sends) - sent,
            rate_limited_count=self._rate_limited_count,
        )

    def _advance(self, now: float) -> float:
        """Take the clock forward (never back) and drop sends that left the window."""
        if now > self._now:  # max(), without the call
            self._now = now
        sends = self._sends
        while sends and sends[0] + self._window_s <= self._now:
            sends.popleft()
        if self._cancelled:  # rare: forget cancellations once their time left the window
            gone = self._now - self._window_s
            self._cancelled = {t: at for t, at in self._cancelled.items() if at > gone}
        return self._now

    def _sent_in_window(self, now: float) -> int:
        # Sorted, and pruned to the window: the sent ones are a prefix.
        count = 0
        for send_at in self._sends:
            if send_at > now:
                break
            count += 1
        return count


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry a retryable failure before giving the client it."""

    max_attempts: int = 4
    max_total_wait_s: float = 20.0
    first_backoff_s: float = 0.25
    max_backoff_s: float = 8.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if min(self.max_total_wait_s, self.first_backoff_s, self.max_backoff_s) < 0:
            raise ValueError("waits and backoffs must not be negative")

    def delay(self, attempt: int, *, retry_after_s: float | None, elapsed_s: float) -> float | None:
        """Seconds to wait before the next attempt, or None to give up.

        Args:
            attempt: how many attempts were made so far (1 after the first failure).
            retry_after_s: the upstream's Retry-After, if any: never retry sooner.
            elapsed_s: seconds spent on this request so far (waits included).
        """
        if attempt >= self.max_attempts:
            return None
        exponent = min(max(attempt - 1, 0), 64)  # capped: 2.0**1100 would overflow
        wait = min(self.max_backoff_s, self.first_backoff_s * 2.0**exponent)
        if retry_after_s is not None and not math.isnan(retry_after_s):
            wait = max(wait, retry_after_s)
        if elapsed_s + wait > self.max_total_wait_s:
            return None
        return wait


def parse_retry_after(value: str | None, *, now_epoch: float) -> float | None:
    """Retry-After as seconds from `now_epoch`: delay-seconds or an HTTP-date; never negative.

    None for a missing or unreadable header.
    """
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS_RE.fullmatch(text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None  # 400 digits make inf
    try:
        when = email.utils.parsedate_to_datetime(text)
        # Naive (no zone, or "-0000") is read as UTC, as HTTP-dates always are.
        epoch = calendar.timegm(when.utctimetuple())
    except (ValueError, TypeError, IndexError, OverflowError):
        return None
    return max(0.0, epoch - now_epoch)
