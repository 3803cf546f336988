"""
The pure retry policy (``_core/retry.py``): :class:`Backoff`,
:class:`RetryPolicy` and :class:`RetryBudget`.  Every documented bound is
checked at, below and above its limit; every branch of ``may_retry`` and
``next_delay`` is pinned; the budget's thresholds are checked exactly.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import CancelledError

from twisted_reqresp._core.errors import (
    ConnectionClosed,
    DeadlineExceeded,
    RemoteError,
    StatusError,
)
from twisted_reqresp._core.retry import RETRY_BACKOFF, Backoff, RetryBudget, RetryPolicy
from twisted_reqresp._core.status import StatusCode

NOT_NUMBERS: tuple[object, ...] = (True, False, "1", b"1", None, [1], object())
NOT_FINITE = (math.nan, math.inf, -math.inf)


def fixed(value: float) -> Callable[[], float]:
    """:returns: a ``random`` function that always returns ``value``."""
    return lambda: value


#: The middle of ``[0, 1)``: no jitter at all.
MIDDLE = fixed(0.5)
#: The largest float below 1, the most ``random.random`` can return.
TOP = fixed(math.nextafter(1.0, 0.0))
BOTTOM = fixed(0.0)


# -- Backoff: validation ------------------------------------------------------


def test_backoff_defaults() -> None:
    """The defaults are the documented ones: 0.1 s first, 30 s cap, x1.6, ±20 %."""
    assert Backoff() == Backoff(initial=0.1, maximum=30.0, multiplier=1.6, jitter=0.2)
    assert RETRY_BACKOFF == Backoff(initial=0.05, maximum=1.0, multiplier=2.0, jitter=0.2)


def test_backoff_keyword_only_and_frozen() -> None:
    """A Backoff takes keywords only and cannot be changed after it is made."""
    with pytest.raises(TypeError):
        Backoff(0.1)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Backoff().initial = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("cls", [Backoff, RetryPolicy, RetryBudget])
def test_keyword_only_and_slotted(cls: type) -> None:
    """Each class takes keywords only and has slots (one is made per call or channel)."""
    with pytest.raises(TypeError):
        cls(3)
    assert not hasattr(cls(), "__dict__")


@pytest.mark.parametrize("name", ["initial", "maximum", "multiplier", "jitter"])
@pytest.mark.parametrize("value", [*NOT_NUMBERS, *NOT_FINITE, -1.0, -1e-9])
def test_backoff_rejects_non_numbers(name: str, value: object) -> None:
    """Bools, non-numbers, NaN, infinities and negatives are refused, naming the field."""
    with pytest.raises(ValueError, match=name):
        Backoff(**{name: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["initial", "maximum", "multiplier"])
def test_backoff_rejects_zero(name: str) -> None:
    """initial, maximum and multiplier must be above 0: 0 is refused."""
    with pytest.raises(ValueError, match=f"{name} must be a finite number > 0"):
        Backoff(**{name: 0.0})


def test_backoff_initial_bound() -> None:
    """initial: the smallest positive value is accepted, as is an int."""
    assert Backoff(initial=1e-9).initial == 1e-9
    assert Backoff(initial=1).initial == 1


def test_backoff_maximum_at_below_above_initial() -> None:
    """maximum equal to initial is accepted, above it too, below it is refused."""
    assert Backoff(initial=2.0, maximum=2.0).maximum == 2.0
    assert Backoff(initial=2.0, maximum=2.5).maximum == 2.5
    with pytest.raises(ValueError, match=r"maximum \(1.99\) must not be less than initial"):
        Backoff(initial=2.0, maximum=1.99)


def test_backoff_multiplier_bound() -> None:
    """multiplier: 1 is accepted (constant delays), just below 1 is refused, above is fine."""
    assert Backoff(multiplier=1).multiplier == 1
    assert Backoff(multiplier=1.0001).multiplier == 1.0001
    with pytest.raises(ValueError, match=r"multiplier must be 1 or more, not 0\.999"):
        Backoff(multiplier=0.999)


def test_backoff_jitter_bounds() -> None:
    """jitter: 0 and 1 are accepted; just above 1 and just below 0 are refused."""
    assert Backoff(jitter=0).jitter == 0
    assert Backoff(jitter=1).jitter == 1
    with pytest.raises(ValueError, match=r"jitter must be between 0 and 1, not 1\.0001"):
        Backoff(jitter=1.0001)
    with pytest.raises(ValueError, match="jitter must be a finite number >= 0"):
        Backoff(jitter=-0.0001)


def test_backoff_rejects_ranges_floats_cannot_hold() -> None:
    """A maximum/initial ratio or jittered maximum beyond a float is refused, not overflowed."""
    with pytest.raises(ValueError, match="maximum / initial"):
        Backoff(initial=1e-300, maximum=1e300)
    with pytest.raises(ValueError, match="maximum"):
        Backoff(initial=1.0, maximum=1.7e308, jitter=1.0)


# -- Backoff: delays ----------------------------------------------------------


def test_delay_reaching_cap_does_not_compute_the_power() -> None:
    """At the exponent that reaches the cap the delay is the cap, even where the power overflows."""
    backoff = Backoff(initial=1.0, maximum=1e300, multiplier=1e200, jitter=0)
    assert [backoff.delay(n, MIDDLE) for n in (1, 2, 3, 4)] == [1.0, 1e200, 1e300, 1e300]


def test_largest_jittered_maximum_accepted() -> None:
    """A maximum whose jittered value still fits a float is accepted and gives finite delays."""
    backoff = Backoff(initial=1.0, maximum=1e308, jitter=0.5)
    assert backoff.delay(10**6, TOP) == pytest.approx(1.5e308)


def test_delay_never_negative_even_with_a_bad_random() -> None:
    """A random() outside [0, 1) (a broken injection) still gives no negative delay."""
    backoff = Backoff(initial=1.0, maximum=1.0, jitter=1.0)
    assert backoff.delay(1, fixed(-0.5)) == 0.0


def test_delay_attempt_bound() -> None:
    """Attempt 1 is the first delay; 0 and negative attempts are refused."""
    assert Backoff(jitter=0).delay(1, MIDDLE) == 0.1
    for bad in (0, -1):
        with pytest.raises(ValueError, match=f"attempt must be 1 or more, not {bad}"):
            Backoff().delay(bad, MIDDLE)


def test_delays_grow_then_cap() -> None:
    """Without jitter the delays are initial * multiplier ** (n - 1), then the maximum."""
    backoff = Backoff(initial=0.1, maximum=1.0, multiplier=2.0, jitter=0)
    delays = [backoff.delay(n, MIDDLE) for n in range(1, 8)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0], rel=1e-12)
    assert delays[4:] == [1.0, 1.0, 1.0]


def test_delays_reach_maximum_exactly() -> None:
    """When a step lands on the maximum exactly, that delay is the maximum, and it stays there."""
    backoff = Backoff(initial=1.0, maximum=8.0, multiplier=2.0, jitter=0)
    assert [backoff.delay(n, MIDDLE) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_multiplier_one_is_constant() -> None:
    """With multiplier 1 every delay is initial, however many attempts."""
    backoff = Backoff(initial=0.3, maximum=5.0, multiplier=1, jitter=0)
    assert {backoff.delay(n, MIDDLE) for n in (1, 2, 10, 10**6, 10**100)} == {0.3}


def test_initial_equal_to_maximum() -> None:
    """With initial equal to maximum every delay is that value."""
    backoff = Backoff(initial=2.0, maximum=2.0, multiplier=3.0, jitter=0)
    assert {backoff.delay(n, MIDDLE) for n in (1, 2, 3, 10**9)} == {2.0}


@pytest.mark.parametrize("attempt", [1_500, 10**6, 10**100])
def test_huge_attempts_do_not_overflow(attempt: int) -> None:
    """Attempt numbers far past the cap give the maximum, with no OverflowError."""
    assert Backoff(jitter=0).delay(attempt, MIDDLE) == 30.0
    assert Backoff(multiplier=1e6, jitter=0).delay(attempt, MIDDLE) == 30.0
    assert Backoff(initial=1e-9, maximum=1e9, multiplier=1.0001, jitter=0).delay(
        attempt, MIDDLE
    ) == pytest.approx(min(1e9, 1e-9 * 1.0001 ** (attempt - 1)) if attempt < 10**6 else 1e9)


def test_jitter_extremes() -> None:
    """random() 0 gives base * (1 - jitter), 0.5 base, just under 1 base * (1 + jitter)."""
    backoff = Backoff(initial=1.0, maximum=1.0, jitter=0.2)
    assert backoff.delay(1, BOTTOM) == pytest.approx(0.8)
    assert backoff.delay(1, MIDDLE) == 1.0
    assert backoff.delay(1, TOP) == pytest.approx(1.2)


def test_full_jitter_never_negative() -> None:
    """With jitter 1 the delay ranges over [0, 2 * base): random() 0 gives exactly 0."""
    backoff = Backoff(initial=1.0, maximum=1.0, jitter=1.0)
    assert backoff.delay(1, BOTTOM) == 0.0
    assert backoff.delay(1, TOP) == pytest.approx(2.0)


def test_jitter_applies_to_capped_delay() -> None:
    """The jitter moves the capped delay too: the maximum is the cap before jitter."""
    backoff = Backoff(initial=1.0, maximum=4.0, multiplier=2.0, jitter=0.5)
    assert backoff.delay(10, TOP) == pytest.approx(6.0)
    assert backoff.delay(10, BOTTOM) == pytest.approx(2.0)


def test_delay_calls_random_once() -> None:
    """Each delay draws one random number (so an injected sequence maps one to one)."""
    draws: list[float] = []

    def random() -> float:
        draws.append(0.25)
        return 0.25

    Backoff().delay(3, random)
    assert draws == [0.25]


backoffs = st.builds(
    lambda initial, ratio, multiplier, jitter: Backoff(
        initial=initial, maximum=initial * ratio, multiplier=multiplier, jitter=jitter
    ),
    initial=st.floats(min_value=1e-6, max_value=1e3),
    ratio=st.floats(min_value=1.0, max_value=1e6),
    multiplier=st.floats(min_value=1.0, max_value=100.0),
    jitter=st.floats(min_value=0.0, max_value=1.0),
)


@given(
    backoff=backoffs,
    attempt=st.integers(min_value=1, max_value=10**30),
    r=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_jitter_stays_within_bounds(backoff: Backoff, attempt: int, r: float) -> None:
    """Every delay is finite and within ± jitter of the un-jittered one, which is capped."""
    base = Backoff(
        initial=backoff.initial,
        maximum=backoff.maximum,
        multiplier=backoff.multiplier,
        jitter=0,
    ).delay(attempt, MIDDLE)
    assert backoff.initial <= base <= backoff.maximum
    delay = backoff.delay(attempt, fixed(r))
    assert math.isfinite(delay)
    assert delay >= 0
    slack = 1e-9 * base
    assert base * (1 - backoff.jitter) - slack <= delay <= base * (1 + backoff.jitter) + slack


@given(backoff=backoffs, attempt=st.integers(min_value=1, max_value=10_000))
def test_delays_never_shrink(backoff: Backoff, attempt: int) -> None:
    """Without jitter, a later delay is never shorter than an earlier one."""
    flat = dataclasses.replace(backoff, jitter=0)
    assert flat.delay(attempt, MIDDLE) <= flat.delay(attempt + 1, MIDDLE)


# -- RetryPolicy: validation --------------------------------------------------


def test_policy_defaults() -> None:
    """By default: 3 attempts, RETRY_BACKOFF, UNAVAILABLE retryable, no idempotent methods."""
    policy = RetryPolicy()
    assert policy.max_attempts == 3
    assert policy.backoff == RETRY_BACKOFF
    assert policy.retryable_statuses == frozenset({StatusCode.UNAVAILABLE})
    assert policy.idempotent_methods == frozenset()


@pytest.mark.parametrize("attempts", [1, 2, 5])
def test_max_attempts_accepted(attempts: int) -> None:
    """max_attempts from 1 to 5 is accepted."""
    assert RetryPolicy(max_attempts=attempts).max_attempts == attempts


@pytest.mark.parametrize("attempts", [0, 6, -1, 3.0, True, "3", None])
def test_max_attempts_refused(attempts: object) -> None:
    """max_attempts below 1, above 5, or not an int (bools included) is refused."""
    with pytest.raises(ValueError, match="max_attempts must be an int from 1 to 5"):
        RetryPolicy(max_attempts=attempts)  # type: ignore[arg-type]


def test_backoff_must_be_backoff() -> None:
    """A backoff that is not a Backoff is refused with a TypeError naming its type."""
    with pytest.raises(TypeError, match="backoff must be a Backoff, not float"):
        RetryPolicy(backoff=0.1)  # type: ignore[arg-type]


def test_retryable_statuses_normalised() -> None:
    """retryable_statuses becomes a frozenset, accepting plain ints and application codes."""
    policy = RetryPolicy(retryable_statuses=[14, StatusCode.INTERNAL, 1000, 1000])
    assert policy.retryable_statuses == frozenset({StatusCode.UNAVAILABLE, 13, 1000})
    assert isinstance(policy.retryable_statuses, frozenset)
    assert RetryPolicy(retryable_statuses=()).retryable_statuses == frozenset()


@pytest.mark.parametrize("code", [True, "UNAVAILABLE", 14.0, None])
def test_retryable_statuses_must_be_ints(code: object) -> None:
    """A status that is not an int (bools included) is refused with a TypeError."""
    with pytest.raises(TypeError, match="retryable_statuses must hold status codes"):
        RetryPolicy(retryable_statuses=[code])  # type: ignore[list-item]


@pytest.mark.parametrize("code", [StatusCode.OK, StatusCode.DEADLINE_EXCEEDED, 0, 4])
def test_ok_and_deadline_not_retryable(code: int) -> None:
    """OK and DEADLINE_EXCEEDED cannot be declared retryable."""
    with pytest.raises(ValueError, match=f"{StatusCode(code).name} cannot be retryable"):
        RetryPolicy(retryable_statuses={code})


@pytest.mark.parametrize("code", [-1, 2**32])
def test_retryable_statuses_must_fit_the_wire(code: int) -> None:
    """A status outside the wire's unsigned 32-bit range is refused."""
    with pytest.raises(ValueError, match="retryable_statuses"):
        RetryPolicy(retryable_statuses={code})


def test_retryable_statuses_wire_range_edges() -> None:
    """The largest wire status (2**32 - 1) and CANCELLED (1) are accepted."""
    assert RetryPolicy(retryable_statuses={2**32 - 1, 1}).retryable_statuses == {2**32 - 1, 1}


def test_idempotent_methods_not_a_string() -> None:
    """A bare string is refused (it would read as one-letter methods)."""
    with pytest.raises(TypeError, match="not one string"):
        RetryPolicy(idempotent_methods="get")


def test_idempotent_methods_must_be_str() -> None:
    """A method name that is not a str is refused with a TypeError."""
    with pytest.raises(TypeError, match="idempotent_methods must hold str names, not b'get'"):
        RetryPolicy(idempotent_methods=[b"get"])  # type: ignore[list-item]


def test_idempotent_methods_normalised() -> None:
    """idempotent_methods becomes a frozenset; the policy is hashable and frozen."""
    policy = RetryPolicy(idempotent_methods=["get", "get", "list"])
    assert policy.idempotent_methods == frozenset({"get", "list"})
    assert isinstance(policy.idempotent_methods, frozenset)
    assert hash(policy) == hash(RetryPolicy(idempotent_methods={"list", "get"}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_attempts = 4  # type: ignore[misc]


def test_is_idempotent() -> None:
    """A listed method is idempotent, another is not; "*" declares every method."""
    policy = RetryPolicy(idempotent_methods={"get"})
    assert policy.is_idempotent("get")
    assert not policy.is_idempotent("put")
    assert not policy.is_idempotent("*get")
    assert RetryPolicy(idempotent_methods={"*"}).is_idempotent("put")
    assert not RetryPolicy().is_idempotent("get")


# -- RetryPolicy.may_retry ----------------------------------------------------

UNSAFE_UNAVAILABLE = RemoteError(StatusCode.UNAVAILABLE, "server stopped")
SAFE_INTERNAL = RemoteError(StatusCode.INTERNAL, "refused", retry_safe=True)


@pytest.mark.parametrize(
    ("error", "idempotent", "expected"),
    [
        # retry-safe: any status, idempotent or not
        (SAFE_INTERNAL, set(), True),
        (StatusError(StatusCode.RESOURCE_EXHAUSTED, "queue full", retry_safe=True), set(), True),
        (ConnectionClosed("never sent", retry_safe=True), set(), True),
        (StatusError(1234, "app", retry_safe=True), set(), True),
        # not retry-safe: only idempotent methods with a retryable status
        (UNSAFE_UNAVAILABLE, set(), False),
        (UNSAFE_UNAVAILABLE, {"get"}, True),
        (UNSAFE_UNAVAILABLE, {"other"}, False),
        (UNSAFE_UNAVAILABLE, {"*"}, True),
        (ConnectionClosed("lost"), {"get"}, True),
        (ConnectionClosed("lost"), set(), False),
        (RemoteError(StatusCode.INTERNAL, "boom"), {"get"}, False),
        (RemoteError(StatusCode.INTERNAL, "boom"), {"*"}, False),
        # never: deadlines, and anything that is not a StatusError
        (DeadlineExceeded(), {"*"}, False),
        (DeadlineExceeded("(at the server)"), {"get"}, False),
        (ValueError("bad"), {"*"}, False),
        (CancelledError(), {"*"}, False),
        (ConnectionError("refused"), {"*"}, False),
    ],
)
def test_may_retry(error: BaseException, idempotent: set[str], expected: bool) -> None:
    """may_retry follows the table: retry-safe always, idempotent x retryable, never otherwise."""
    policy = RetryPolicy(idempotent_methods=idempotent)
    assert policy.may_retry("get", error) is expected


def test_may_retry_custom_statuses() -> None:
    """With retryable_statuses={INTERNAL}, idempotent INTERNAL is retried, UNAVAILABLE not."""
    policy = RetryPolicy(retryable_statuses={StatusCode.INTERNAL}, idempotent_methods={"get"})
    assert policy.may_retry("get", RemoteError(StatusCode.INTERNAL))
    assert not policy.may_retry("get", UNSAFE_UNAVAILABLE)
    assert policy.may_retry("get", ConnectionClosed("never sent", retry_safe=True))
    assert not policy.may_retry("put", RemoteError(StatusCode.INTERNAL))


def test_deadline_never_retried_even_if_marked_safe() -> None:
    """A DeadlineExceeded, or any DEADLINE_EXCEEDED status, is never retried, retry-safe or not."""
    policy = RetryPolicy(idempotent_methods={"*"})
    late = DeadlineExceeded()
    late.retry_safe = True
    assert policy.may_retry("get", late) is False
    assert (
        policy.may_retry(
            "get", StatusError(StatusCode.DEADLINE_EXCEEDED, "queued too long", retry_safe=True)
        )
        is False
    )
    assert policy.may_retry("get", RemoteError(StatusCode.DEADLINE_EXCEEDED, "late")) is False


# -- RetryPolicy.next_delay ---------------------------------------------------

SAFE = ConnectionClosed("never sent", retry_safe=True)


def test_next_delay_uses_attempt_th_backoff() -> None:
    """After attempt n the delay is backoff.delay(n): 0.05 s, then 0.1 s, ... with RETRY_BACKOFF."""
    policy = RetryPolicy(max_attempts=5)
    assert [policy.next_delay("m", SAFE, n, None, MIDDLE) for n in (1, 2, 3, 4)] == [
        0.05,
        0.1,
        0.2,
        0.4,
    ]
    assert policy.next_delay("m", SAFE, 1, None, BOTTOM) == pytest.approx(0.04)


@pytest.mark.parametrize("max_attempts", [1, 2, 3, 5])
def test_next_delay_stops_at_max_attempts(max_attempts: int) -> None:
    """A retry is offered below max_attempts, and refused at and above it."""
    policy = RetryPolicy(max_attempts=max_attempts)
    for attempt in range(1, max_attempts):
        assert policy.next_delay("m", SAFE, attempt, None, MIDDLE) is not None
    for attempt in (max_attempts, max_attempts + 1):
        assert policy.next_delay("m", SAFE, attempt, None, MIDDLE) is None


def test_next_delay_refuses_what_may_retry_refuses() -> None:
    """With attempts left, a failure may_retry refuses gets no retry."""
    policy = RetryPolicy(max_attempts=5)
    assert policy.next_delay("m", UNSAFE_UNAVAILABLE, 1, None, MIDDLE) is None
    assert policy.next_delay("m", DeadlineExceeded(), 1, 10.0, MIDDLE) is None
    assert policy.next_delay("m", ValueError(), 1, 10.0, MIDDLE) is None


def test_next_delay_deadline_at_below_above() -> None:
    """A retry whose delay ends before the deadline is offered; at or past it, refused."""
    policy = RetryPolicy(backoff=Backoff(initial=0.5, maximum=0.5, jitter=0))
    assert policy.next_delay("m", SAFE, 1, math.nextafter(0.5, 1.0), MIDDLE) == 0.5
    assert policy.next_delay("m", SAFE, 1, 10.0, MIDDLE) == 0.5
    assert policy.next_delay("m", SAFE, 1, 0.5, MIDDLE) is None
    assert policy.next_delay("m", SAFE, 1, 0.4999, MIDDLE) is None
    assert policy.next_delay("m", SAFE, 1, 0.0, MIDDLE) is None
    assert policy.next_delay("m", SAFE, 1, -1.0, MIDDLE) is None


def test_next_delay_zero_delay_with_time_left() -> None:
    """A zero delay (full jitter) is offered while any time is left, not when none is."""
    policy = RetryPolicy(backoff=Backoff(initial=1.0, maximum=1.0, jitter=1.0))
    assert policy.next_delay("m", SAFE, 1, 1e-9, BOTTOM) == 0.0
    assert policy.next_delay("m", SAFE, 1, 0.0, BOTTOM) is None


def test_next_delay_deadline_nan_refused() -> None:
    """A NaN time_left (a broken clock) gets no retry rather than one past the deadline."""
    assert RetryPolicy().next_delay("m", SAFE, 1, math.nan, MIDDLE) is None


# -- RetryBudget --------------------------------------------------------------


def test_budget_defaults() -> None:
    """By default the bucket holds 10 tokens, starts full, and a success returns 0.1."""
    budget = RetryBudget()
    assert (budget.max_tokens, budget.token_ratio, budget.tokens) == (10.0, 0.1, 10.0)
    assert budget.allows_retry()


def test_budget_repr() -> None:
    """The repr shows the settings and the tokens left, not internal counters."""
    budget = RetryBudget(max_tokens=4, token_ratio=0.5)
    budget.record_failure()
    assert repr(budget) == "RetryBudget(max_tokens=4, token_ratio=0.5, tokens=3.0)"


def test_budget_tokens_not_an_argument() -> None:
    """tokens is not a constructor argument: the bucket always starts full."""
    with pytest.raises(TypeError):
        RetryBudget(tokens=1.0)  # type: ignore[call-arg]
    assert RetryBudget(max_tokens=7).tokens == 7.0


@pytest.mark.parametrize("name", ["max_tokens", "token_ratio"])
@pytest.mark.parametrize("value", [*NOT_NUMBERS, *NOT_FINITE, 0, 0.0, -1.0])
def test_budget_rejects_bad_numbers(name: str, value: object) -> None:
    """Bools, non-numbers, NaN, infinities, zero and negatives are refused, naming the field."""
    with pytest.raises(ValueError, match=name):
        RetryBudget(**{name: value})  # type: ignore[arg-type]


def test_max_tokens_bounds() -> None:
    """max_tokens from 0.001 to 1000 is accepted; 1000.001 and below 0.001 are refused."""
    for good in (0.001, 1, 10, 999.999, 1000):
        assert RetryBudget(max_tokens=good).max_tokens == good
    for bad in (1000.001, 1001, 0.0009):
        with pytest.raises(ValueError, match="max_tokens must be"):
            RetryBudget(max_tokens=bad)


def test_token_ratio_bounds() -> None:
    """token_ratio from 0.001 to 1 is accepted; above 1 and below 0.001 are refused."""
    for good in (0.001, 0.1, 1):
        assert RetryBudget(token_ratio=good).token_ratio == good
    for bad in (1.001, 2, 0.0009):
        with pytest.raises(ValueError, match="token_ratio must be"):
            RetryBudget(token_ratio=bad)


@pytest.mark.parametrize(
    ("max_tokens", "failures"), [(1, 1), (2, 1), (3, 2), (7, 4), (10, 5), (11, 6), (1000, 500)]
)
def test_budget_drains_after_half(max_tokens: float, failures: int) -> None:
    """Retries stop at the first failure that leaves half the tokens or fewer, not before."""
    budget = RetryBudget(max_tokens=max_tokens)
    for _ in range(failures - 1):
        budget.record_failure()
        assert budget.allows_retry()
    budget.record_failure()
    assert not budget.allows_retry()
    assert budget.tokens == max_tokens - failures


def test_budget_never_below_zero() -> None:
    """Failures past an empty bucket leave it at 0, not negative."""
    budget = RetryBudget(max_tokens=3)
    for _ in range(10):
        budget.record_failure()
    assert budget.tokens == 0.0
    budget.record_success()
    assert budget.tokens == pytest.approx(0.1)


def test_budget_success_caps_at_max() -> None:
    """A success on a full bucket leaves it full; a partial refill stops at max_tokens."""
    budget = RetryBudget(max_tokens=10, token_ratio=0.7)
    budget.record_success()
    assert budget.tokens == 10.0
    budget.record_failure()
    budget.record_success()
    budget.record_success()
    assert budget.tokens == 10.0


def test_budget_refills_one_success_past_half() -> None:
    """Drained to exactly half, one success lifts it over half and retries are allowed again."""
    budget = RetryBudget()
    for _ in range(5):
        budget.record_failure()
    assert budget.tokens == 5.0
    assert not budget.allows_retry()
    budget.record_success()
    assert budget.allows_retry()
    assert budget.tokens == pytest.approx(5.1)
    budget.record_failure()
    assert not budget.allows_retry()


@pytest.mark.parametrize(
    ("token_ratio", "successes"),
    [(0.1, 51), (0.3, 17), (0.7, 8), (1, 6), (0.01, 501), (0.001, 5001), (0.125, 41)],
)
def test_budget_refill_exact(token_ratio: float, successes: int) -> None:
    """From empty, retries resume after exactly the successes that put it over half, no sooner."""
    budget = RetryBudget(max_tokens=10, token_ratio=token_ratio)
    for _ in range(10):
        budget.record_failure()
    for _ in range(successes - 1):
        budget.record_success()
    assert not budget.allows_retry()
    budget.record_success()
    assert budget.allows_retry()


@given(
    max_milli=st.integers(min_value=1, max_value=1_000_000),
    ratio_milli=st.integers(min_value=1, max_value=1000),
    outcomes=st.lists(st.booleans(), max_size=300),
)
def test_budget_matches_exact_model(max_milli: int, ratio_milli: int, outcomes: list[bool]) -> None:
    """Any run of successes and failures leaves the budget where exact arithmetic does."""
    max_tokens = Fraction(max_milli, 1000)
    ratio = Fraction(ratio_milli, 1000)
    budget = RetryBudget(max_tokens=max_milli / 1000, token_ratio=ratio_milli / 1000)
    tokens = max_tokens
    for success in outcomes:
        if success:
            budget.record_success()
            tokens = min(max_tokens, tokens + ratio)
        else:
            budget.record_failure()
            tokens = max(Fraction(0), tokens - 1)
        assert budget.tokens == float(tokens)
        assert budget.allows_retry() is (tokens > max_tokens / 2)
