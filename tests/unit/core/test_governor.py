"""RateGovernor, RetryPolicy and parse_retry_after, driven by a fake clock (plain floats)."""

import math
from dataclasses import dataclass, field

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.core.governor import (
    FIRST_COOL_DOWN_S,
    MAX_COOL_DOWN_S,
    RECOVER_AFTER_S,
    GovernorState,
    RateGovernor,
    Reservation,
    RetryPolicy,
    parse_retry_after,
)


def window_violations(send_times: list[float], budget: int, window_s: float) -> list[float]:
    """Starts of intervals [s, s + window_s) that hold more than `budget` sends."""
    times = sorted(send_times)
    # Same float expression as the governor (s + window_s), so no rounding slack.
    return [times[i] for i in range(len(times) - budget) if times[i + budget] < times[i] + window_s]


def reserve_all(governor: RateGovernor, times: list[float]) -> list[float]:
    return [governor.reserve(now).send_at for now in times]


# ------------------------------------------------------------------ reserve: budget and FIFO


@pytest.mark.parametrize(
    ("budget", "arrivals", "expected_send_at"),
    [
        pytest.param(3, [0, 0, 0], [0, 0, 0], id="under-budget-goes-now"),
        pytest.param(2, [0, 0, 0, 0, 0], [0, 0, 60, 60, 120], id="burst-queues-fifo"),
        pytest.param(2, [0, 10, 20, 30], [0, 10, 60, 70], id="sliding-not-fixed-window"),
        pytest.param(2, [0, 10, 60, 70, 71], [0, 10, 60, 70, 120], id="slot-frees-at-window-end"),
        pytest.param(1, [0, 59.5, 59.9], [0, 60, 120], id="budget-one"),
        pytest.param(2, [0, 0, 0, 1, 200], [0, 0, 60, 60, 200], id="later-caller-behind-queue"),
    ],
)
def test_reserve_schedule(
    budget: int, arrivals: list[float], expected_send_at: list[float]
) -> None:
    governor = RateGovernor(budget)
    reservations = [governor.reserve(now) for now in arrivals]
    assert [r.send_at for r in reservations] == expected_send_at
    assert [r.wait for r in reservations] == [
        send_at - now for send_at, now in zip(expected_send_at, arrivals, strict=True)
    ]


def test_the_41st_caller_in_a_minute_waits_for_the_first_slot_to_leave() -> None:
    governor = RateGovernor(40)
    send_times = reserve_all(governor, [i * 0.5 for i in range(41)])
    assert send_times[:40] == [i * 0.5 for i in range(40)]
    assert send_times[40] == 60.0  # the first send (t=0) leaves the window at 60
    assert send_times[40] > send_times[39]


def test_custom_window() -> None:
    governor = RateGovernor(2, window_s=10.0)
    assert reserve_all(governor, [0, 0, 0]) == [0, 0, 10]


def test_unlimited_never_waits_outside_a_cool_down() -> None:
    governor = RateGovernor(None)
    assert reserve_all(governor, [0.0] * 1000) == [0.0] * 1000
    assert governor.state(0.0).requests_last_minute == 1000
    end = governor.on_rate_limited(1.0, None)
    assert end == 1.0 + FIRST_COOL_DOWN_S
    assert governor.budget_per_minute is None  # unlimited does not learn
    assert governor.reserve(1.5).send_at == end
    governor.on_success(10_000.0)
    assert governor.budget_per_minute is None
    assert governor.reserve(10_000.0).wait == 0.0


def test_clock_never_goes_back() -> None:
    governor = RateGovernor(5)
    assert governor.reserve(100.0) == Reservation(send_at=100.0, wait=0.0, ticket=0)
    late = governor.reserve(50.0)  # taken as t=100: a stale `now` cannot dodge the window
    assert (late.send_at, late.wait) == (100.0, 0.0)


def test_memory_is_the_window_only() -> None:
    governor = RateGovernor(None)
    for second in range(10_000):
        governor.reserve(float(second))
    assert governor.state(9_999.0).requests_last_minute == 60
    assert len(governor._sends) == 60  # pruned on every call


# ------------------------------------------------------------------ cancel


def test_cancel_frees_the_slot_for_the_next_caller() -> None:
    governor = RateGovernor(1)
    governor.reserve(0.0)
    gave_up = governor.reserve(0.0)
    assert gave_up.send_at == 60.0
    governor.cancel(gave_up)
    assert governor.state(1.0).queued == 0
    assert governor.reserve(1.0).send_at == 60.0  # not 120: the slot was given back


def test_cancel_is_idempotent_and_tells_equal_times_apart() -> None:
    governor = RateGovernor(None)
    first, second = governor.reserve(0.0), governor.reserve(0.0)
    assert first.send_at == second.send_at and first != second
    governor.cancel(first)
    governor.cancel(first)  # a second cancel must not drop `second`
    assert governor.state(0.0).requests_last_minute == 1


def test_cancel_after_the_window_is_a_no_op() -> None:
    governor = RateGovernor(1)
    old = governor.reserve(0.0)
    governor.reserve(100.0)  # prunes `old`
    governor.cancel(old)
    assert governor.state(100.0).requests_last_minute == 1


def test_cancel_in_the_middle_keeps_fifo() -> None:
    # Waiters hold their times; a new caller never overtakes a live earlier one.
    governor = RateGovernor(1)
    _, middle, last = (governor.reserve(0.0) for _ in range(3))
    assert (middle.send_at, last.send_at) == (60.0, 120.0)
    governor.cancel(middle)
    assert governor.reserve(1.0).send_at == 180.0


# ------------------------------------------------------------------ cool-down


@pytest.mark.parametrize(
    ("retry_after_s", "expected_end"),
    [
        pytest.param(10.0, 15.0, id="retry-after-honoured"),
        pytest.param(0.0, 5.0, id="retry-after-zero"),
        pytest.param(-3.0, 5.0, id="negative-retry-after-is-zero"),
        pytest.param(None, 5.0 + FIRST_COOL_DOWN_S, id="no-retry-after-exponential"),
        pytest.param(math.nan, 5.0 + FIRST_COOL_DOWN_S, id="nan-is-none"),
        pytest.param(math.inf, 5.0 + FIRST_COOL_DOWN_S, id="inf-is-none"),
    ],
)
def test_cool_down_end(retry_after_s: float | None, expected_end: float) -> None:
    governor = RateGovernor(None)
    assert governor.on_rate_limited(5.0, retry_after_s) == expected_end
    assert governor.reserve(6.0).send_at == max(6.0, expected_end)


def test_exponential_cool_down_doubles_caps_and_resets_on_success() -> None:
    governor = RateGovernor(None)
    lengths = []
    for now in range(0, 1000, 100):
        lengths.append(governor.on_rate_limited(float(now), None) - now)
    assert lengths == [2, 4, 8, 16, 32, 60, 60, 60, 60, 60]
    assert MAX_COOL_DOWN_S == 60
    governor.on_success(1000.0)
    assert governor.on_rate_limited(2000.0, None) == 2002.0


def test_retry_after_429s_count_as_consecutive_for_the_exponential() -> None:
    governor = RateGovernor(None)
    governor.on_rate_limited(0.0, 1.0)
    assert governor.on_rate_limited(100.0, None) == 104.0


def test_a_shorter_cool_down_does_not_cut_a_longer_one() -> None:
    governor = RateGovernor(None)
    assert governor.on_rate_limited(0.0, 30.0) == 30.0
    assert governor.on_rate_limited(1.0, 5.0) == 30.0
    assert governor.reserve(2.0).send_at == 30.0


def test_cool_down_and_window_together() -> None:
    governor = RateGovernor(2)
    reserve_all(governor, [0.0, 0.0])
    governor.on_rate_limited(1.0, 120.0)  # learns 1 too: 2 sends, one of them refused
    assert governor.reserve(2.0).send_at == 121.0


# ------------------------------------------------------------------ learning


def send_at_one_per_second(governor: RateGovernor, count: int) -> None:
    for second in range(count):
        assert governor.reserve(float(second)).wait == 0.0
        governor.on_success(second + 0.5)


def test_learns_a_lower_limit_from_a_429_below_budget() -> None:
    governor = RateGovernor(40)
    send_at_one_per_second(governor, 20)
    refused = governor.reserve(20.0)  # the 21st in a minute: the model allows 20
    assert refused.wait == 0.0
    governor.on_rate_limited(20.5, None)
    assert governor.budget_per_minute == 20
    assert governor.configured_budget_per_minute == 40
    # 21 sends in the window (t=0..20): the next may go when t=1 leaves it.
    assert governor.reserve(23.0).send_at == 61.0


def test_repeated_429s_in_one_window_do_not_ratchet_down() -> None:
    governor = RateGovernor(40)
    send_at_one_per_second(governor, 11)
    for now in (11.0, 12.0, 13.0):
        governor.on_rate_limited(now, None)
    assert governor.budget_per_minute == 10


@pytest.mark.parametrize(
    ("configured", "min_budget", "sends", "learned"),
    [
        pytest.param(40, 1, 1, 1, id="first-request-refused"),
        pytest.param(40, 1, 0, 1, id="unreserved-429-floors-at-min"),
        pytest.param(40, 5, 2, 5, id="min-budget-floor"),
        pytest.param(3, 10, 2, 3, id="min-above-configured-never-raises"),
        pytest.param(10, 1, 10, 9, id="at-budget-learns-one-less"),
    ],
)
def test_learning_bounds(configured: int, min_budget: int, sends: int, learned: int) -> None:
    governor = RateGovernor(configured, min_budget=min_budget)
    send_at_one_per_second(governor, sends)
    governor.on_rate_limited(float(sends), None)
    assert governor.budget_per_minute == learned


def test_only_sends_already_made_count_for_learning() -> None:
    governor = RateGovernor(3)
    reserve_all(governor, [0.0] * 6)  # three go now, three queue at t=60
    governor.on_rate_limited(1.0, None)
    assert governor.budget_per_minute == 2


def test_learned_budget_creeps_back_after_a_quiet_spell() -> None:
    governor = RateGovernor(40)
    send_at_one_per_second(governor, 21)
    governor.on_rate_limited(21.0, None)
    assert governor.budget_per_minute == 20
    governor.on_success(21.0 + RECOVER_AFTER_S - 1)
    assert governor.budget_per_minute == 20  # not quiet for long enough
    governor.on_success(21.0 + RECOVER_AFTER_S)
    assert governor.budget_per_minute == 21  # one per success
    for step in range(100):
        governor.on_success(700.0 + step)
    assert governor.budget_per_minute == 40  # never above the configured budget


def test_a_new_429_restarts_the_quiet_spell() -> None:
    governor = RateGovernor(40, recover_after_s=100.0)
    send_at_one_per_second(governor, 11)
    governor.on_rate_limited(11.0, None)
    governor.on_rate_limited(90.0, None)  # nothing sent in the last minute: the floor
    assert governor.budget_per_minute == 1
    governor.on_success(150.0)
    assert governor.budget_per_minute == 1  # 60 s after the last 429 only
    governor.on_success(190.0)
    assert governor.budget_per_minute == 2


# ------------------------------------------------------------------ state


def test_state_numbers() -> None:
    governor = RateGovernor(2)
    assert governor.state(0.0) == GovernorState(
        requests_last_minute=0,
        budget_per_minute=2,
        cooling_down_for=0.0,
        queued=0,
        rate_limited_count=0,
    )
    reserve_all(governor, [0.0, 0.0, 0.0])
    assert governor.state(0.0) == GovernorState(2, 2, 0.0, 1, 0)
    governor.on_rate_limited(1.0, 50.0)  # 2 sent, one refused: learns 1
    assert governor.state(1.0) == GovernorState(2, 1, 50.0, 1, 1)
    assert governor.state(31.0).cooling_down_for == 20.0
    assert governor.state(60.0) == GovernorState(1, 1, 0.0, 0, 1)  # t=0 sends left, t=60 went
    assert governor.state(500.0) == GovernorState(0, 1, 0.0, 0, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"budget_per_minute": 0}, "budget_per_minute", id="zero-budget"),
        pytest.param({"budget_per_minute": 5, "min_budget": 0}, "min_budget", id="zero-min"),
        pytest.param({"budget_per_minute": 5, "window_s": 0.0}, "window_s", id="zero-window"),
        pytest.param({"budget_per_minute": 5, "window_s": math.nan}, "window_s", id="nan-window"),
    ],
)
def test_governor_rejects_nonsense(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RateGovernor(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------ properties


@dataclass
class Model:
    """What the test knows: live reservations in issue order, the latest cool-down end."""

    live: list[Reservation] = field(default_factory=list)
    cool_down_end: float = -math.inf


STEP = st.one_of(
    st.tuples(st.just("reserve"), st.floats(0, 20)),
    st.tuples(st.just("cancel"), st.integers(0, 1000)),
    st.tuples(st.just("429"), st.one_of(st.none(), st.floats(0, 30))),
    st.tuples(st.just("success"), st.none()),
)


@settings(max_examples=300, deadline=None)
@given(
    budget=st.one_of(st.none(), st.integers(1, 6)),
    window_s=st.sampled_from([1.0, 7.5, 60.0]),
    min_budget=st.integers(1, 3),
    steps=st.lists(st.tuples(st.floats(0, 5), STEP), max_size=80),
)
@example(budget=1, window_s=60.0, min_budget=1, steps=[(0.1, ("reserve", 0.0))] * 3)
def test_random_schedules_keep_every_invariant(
    budget: int | None,
    window_s: float,
    min_budget: int,
    steps: list[tuple[float, tuple[str, object]]],
) -> None:
    governor = RateGovernor(budget, window_s=window_s, min_budget=min_budget)
    model = Model()
    now = 0.0
    for dt, (action, arg) in steps:
        now += dt
        if action == "reserve":
            reservation = governor.reserve(now)
            assert reservation.send_at >= now and reservation.wait == reservation.send_at - now
            assert reservation.send_at >= model.cool_down_end  # cool-down respected
            in_force = governor.budget_per_minute
            earlier = [r for r in model.live if r.send_at + window_s > reservation.send_at]
            assert in_force is None or len(earlier) < in_force  # the learned budget too
            model.live.append(reservation)
        elif action == "cancel":
            waiting = [r for r in model.live if r.send_at > now]
            if waiting:
                gave_up = waiting[int(str(arg)) % len(waiting)]
                governor.cancel(gave_up)
                model.live.remove(gave_up)
        elif action == "429":
            retry_after = arg if isinstance(arg, float) else None
            end = governor.on_rate_limited(now, retry_after)
            assert end >= now + (retry_after if retry_after is not None else 0.0)
            assert end >= model.cool_down_end
            model.cool_down_end = end
        else:
            governor.on_success(now)
        learned = governor.budget_per_minute
        if budget is None:
            assert learned is None
        else:
            assert learned is not None and min(min_budget, budget) <= learned <= budget
        state = governor.state(now)
        in_window = [r for r in model.live if r.send_at <= now < r.send_at + window_s]
        assert state.requests_last_minute == len(in_window)
        assert state.queued == sum(r.send_at > now for r in model.live)
        assert state.cooling_down_for == max(0.0, model.cool_down_end - now)
    send_times = [r.send_at for r in model.live]
    assert send_times == sorted(send_times)  # FIFO among live reservations
    if budget is not None:
        assert window_violations(send_times, budget, window_s) == []


def test_the_window_checker_catches_a_violation() -> None:
    assert window_violations([0.0, 30.0, 59.9], 2, 60.0) == [0.0]
    assert window_violations([0.0, 30.0, 60.0], 2, 60.0) == []


def test_simulated_agent_against_a_20_per_minute_model() -> None:
    # A model limited to 20/min (sliding) behind a key configured for 40: after
    # learning, 429s are rare (one per quiet spell, when the budget creeps up).
    limit, window_s = 20, 60.0
    governor = RateGovernor(40)
    accepted: list[float] = []
    refusals = 0
    now = 0.0
    while now < 3600.0:
        reservation = governor.reserve(now)
        now = reservation.send_at
        if sum(t + window_s > now for t in accepted) < limit:
            accepted.append(now)
            governor.on_success(now + 0.2)
        else:
            refusals += 1
            governor.on_rate_limited(now + 0.2, None)
        now += 0.5  # the agent's next request follows the answer
    assert refusals <= 8
    assert len(accepted) >= 0.9 * limit * 60
    assert window_violations(accepted, limit, window_s) == []


# ------------------------------------------------------------------ RetryPolicy

DEFAULT = RetryPolicy()


@pytest.mark.parametrize(
    ("policy", "attempt", "retry_after_s", "elapsed_s", "expected"),
    [
        pytest.param(DEFAULT, 1, None, 0.0, 0.25, id="first-backoff"),
        pytest.param(DEFAULT, 2, None, 0.3, 0.5, id="doubles"),
        pytest.param(DEFAULT, 3, None, 1.0, 1.0, id="doubles-again"),
        pytest.param(DEFAULT, 4, None, 2.0, None, id="attempts-exhausted"),
        pytest.param(DEFAULT, 0, None, 0.0, 0.25, id="attempt-zero-is-first"),
        pytest.param(RetryPolicy(max_attempts=99), 10, None, 0.0, 8.0, id="backoff-capped"),
        pytest.param(
            RetryPolicy(max_attempts=10**6, max_total_wait_s=1e9),
            10**5,
            None,
            0.0,
            8.0,
            id="huge-attempt-no-overflow",
        ),
        pytest.param(DEFAULT, 1, 3.0, 0.0, 3.0, id="retry-after-honoured"),
        pytest.param(DEFAULT, 3, 0.1, 0.0, 1.0, id="retry-after-shorter-than-backoff"),
        pytest.param(DEFAULT, 1, 0.0, 0.0, 0.25, id="retry-after-zero"),
        pytest.param(DEFAULT, 1, -5.0, 0.0, 0.25, id="retry-after-negative"),
        pytest.param(DEFAULT, 1, math.nan, 0.0, 0.25, id="retry-after-nan"),
        pytest.param(DEFAULT, 1, math.inf, 0.0, None, id="retry-after-inf"),
        pytest.param(DEFAULT, 1, 30.0, 0.0, None, id="retry-after-past-total"),
        pytest.param(DEFAULT, 1, 20.0, 0.0, 20.0, id="retry-after-exactly-total"),
        pytest.param(DEFAULT, 1, None, 19.75, 0.25, id="fits-exactly"),
        pytest.param(DEFAULT, 1, None, 19.9, None, id="would-pass-total"),
        pytest.param(RetryPolicy(max_attempts=1), 1, None, 0.0, None, id="no-retries"),
    ],
)
def test_retry_policy(
    policy: RetryPolicy,
    attempt: int,
    retry_after_s: float | None,
    elapsed_s: float,
    expected: float | None,
) -> None:
    assert policy.delay(attempt, retry_after_s=retry_after_s, elapsed_s=elapsed_s) == expected


@given(
    attempt=st.integers(0, 50),
    retry_after_s=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    elapsed_s=st.floats(0, 100),
)
def test_retry_policy_bounds(attempt: int, retry_after_s: float | None, elapsed_s: float) -> None:
    delay = DEFAULT.delay(attempt, retry_after_s=retry_after_s, elapsed_s=elapsed_s)
    if delay is None:
        return
    assert attempt < DEFAULT.max_attempts
    assert elapsed_s + delay <= DEFAULT.max_total_wait_s
    assert DEFAULT.first_backoff_s <= delay
    if retry_after_s is not None and not math.isnan(retry_after_s):
        assert delay >= retry_after_s  # never sooner than the upstream says
        assert delay <= max(DEFAULT.max_backoff_s, retry_after_s)
    else:
        assert delay <= DEFAULT.max_backoff_s


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"max_attempts": 0}, id="zero-attempts"),
        pytest.param({"max_total_wait_s": -1.0}, id="negative-total"),
        pytest.param({"first_backoff_s": -0.1}, id="negative-backoff"),
    ],
)
def test_retry_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------ parse_retry_after

NOW_EPOCH = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("120", 120.0, id="seconds"),
        pytest.param(" 5 ", 5.0, id="padded"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param("1.5", 1.5, id="float"),
        pytest.param("2.", 2.0, id="trailing-dot"),
        pytest.param(".5", 0.5, id="leading-dot"),
        pytest.param("-5", None, id="negative"),
        pytest.param("+5", None, id="plus-sign"),
        pytest.param("1e3", None, id="exponent"),
        pytest.param("1_000", None, id="underscores"),
        pytest.param("inf", None, id="inf"),
        pytest.param("nan", None, id="nan"),
        pytest.param("9" * 400, None, id="too-big"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("Wed, 21 Oct 2015 07:28:30 GMT", 30.0, id="date-future"),
        pytest.param("Wed, 21 Oct 2015 07:27:00 GMT", 0.0, id="date-past"),
        pytest.param("Wed, 21 Oct 2015 07:28:00 GMT", 0.0, id="date-now"),
        pytest.param("Wed, 21 Oct 2015 08:28:30 +0100", 30.0, id="date-with-offset"),
        pytest.param("Wed, 21 Oct 2015 07:28:30 -0000", 30.0, id="date-minus-zero-is-utc"),
        pytest.param("Wed, 21 Oct 2015 07:28:30", 30.0, id="date-no-zone-is-utc"),
        pytest.param("Wednesday, 21-Oct-15 07:28:30 GMT", 30.0, id="date-rfc850"),
        pytest.param("Wed Oct 21 07:28:30 2015", 30.0, id="date-asctime"),
        pytest.param("Wed, 31 Feb 2015 07:28:00 GMT", None, id="date-out-of-range"),
        pytest.param("Fri, 31 Dec 9999 23:59:59 -2359", None, id="date-overflow"),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now_epoch=NOW_EPOCH) == expected


@given(st.text(max_size=40))
def test_parse_retry_after_never_negative_nor_raises(value: str) -> None:
    seconds = parse_retry_after(value, now_epoch=NOW_EPOCH)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


def test_cancelling_twice_frees_one_slot_among_reservations_of_the_same_time() -> None:
    governor = RateGovernor(None)
    governor.on_rate_limited(0.0, 10.0)  # everyone waits for the cool-down's end
    first, second, third = (governor.reserve(1.0) for _ in range(3))
    assert first.send_at == second.send_at == third.send_at == 10.0
    governor.cancel(first)
    governor.cancel(first)  # idempotent: the others keep their slots
    assert governor.state(1.0).queued == 2
    governor.state(50.0)
    assert governor._cancelled  # kept while its time is in the window...
    governor.state(100.0)
    assert not governor._cancelled  # ...and forgotten after
