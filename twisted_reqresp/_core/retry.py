"""
When to send a call again, and when to try a connection again: the pure
policy that :class:`~twisted_reqresp.Channel` applies.

Wire core: imports nothing from Twisted.  Randomness and time come in as
arguments, so every decision is a plain function of its inputs and tests
need no clock.

Three pieces, after gRPC's retry design (gRFC A6):

- :class:`Backoff`: jittered exponential delays, for reconnecting and for
  spacing retries (gRPC's connection backoff: times 1.6, ±20 %).
- :class:`RetryPolicy`: how many attempts, which failures may be sent again.
  A call is sent again only when doing it twice is impossible (the error is
  *retry-safe*: the server or the client promises the request was never
  started) or harmless (the method is declared idempotent and the status is
  one the policy names).  Never past the call's deadline.
- :class:`RetryBudget`: gRPC's retry throttling, a token bucket shared by
  every call of one channel, so that when a backend is down the retries
  stop instead of multiplying the load.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from .errors import StatusError
from .status import STATUS_MAX, StatusCode

__all__ = ["Backoff", "RetryBudget", "RetryPolicy"]


def _check_positive(name: str, value: object, *, allow_zero: bool = False) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        what = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"{name} must be {what}, not {value!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Backoff:
    """
    Jittered exponential backoff: the n-th delay is ``initial *
    multiplier ** (n - 1)``, capped at ``maximum``, then moved uniformly
    within ``± jitter`` of itself so that many clients that lost the same
    server do not come back in step.

    The defaults are gRPC's connection backoff except the first delay and
    the cap (gRPC: 1 s and 120 s), shorter because a reqresp server
    restarts in well under a second and a client should notice soon.
    """

    #: The first delay, in seconds.
    initial: float = 0.1
    #: The longest delay, in seconds, before jitter.
    maximum: float = 30.0
    #: How much each delay grows over the one before (1 or more).
    multiplier: float = 1.6
    #: How far a delay moves at random, as a fraction of it (0 to 1).
    jitter: float = 0.2

    def __post_init__(self) -> None:
        _check_positive("initial", self.initial)
        _check_positive("maximum", self.maximum)
        _check_positive("multiplier", self.multiplier)
        _check_positive("jitter", self.jitter, allow_zero=True)
        if self.maximum < self.initial:
            raise ValueError(
                f"maximum ({self.maximum!r}) must not be less than initial ({self.initial!r})"
            )
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be 1 or more, not {self.multiplier!r}")
        if self.jitter > 1:
            raise ValueError(f"jitter must be between 0 and 1, not {self.jitter!r}")
        # Beyond these a delay is not a float: refuse them here rather than
        # raise OverflowError from the reactor's reconnect timer later.
        if not math.isfinite(self.maximum / self.initial):
            raise ValueError(
                f"maximum / initial ({self.maximum!r} / {self.initial!r}) must be a finite number"
            )
        if not math.isfinite(self.maximum * (1.0 + self.jitter)):
            raise ValueError(f"maximum ({self.maximum!r}) with jitter must be a finite number")

    def delay(self, attempt: int, random: Callable[[], float]) -> float:
        """
        :param attempt: which delay: 1 for the first.
        :param random: a function returning a float in ``[0, 1)``, such as
            :func:`random.random`.
        :returns: the delay in seconds (never negative).
        """
        if attempt < 1:
            raise ValueError(f"attempt must be 1 or more, not {attempt!r}")
        exponent = attempt - 1
        # From the exponent that reaches the cap on, the delay is the cap:
        # the power itself is never computed there, as it only grows (and
        # overflows a float near attempt 1,500 for 1.6, or sooner for a
        # larger multiplier).  Below it, multiplier ** exponent is less than
        # maximum / initial, which __post_init__ keeps finite.
        if self.multiplier > 1 and exponent >= math.ceil(
            math.log(self.maximum / self.initial) / math.log(self.multiplier)
        ):
            base = self.maximum
        else:
            base = min(self.initial * self.multiplier**exponent, self.maximum)
        return max(0.0, base * (1.0 + self.jitter * (2.0 * random() - 1.0)))


#: The backoff between retries of one call: quick, because a retry-safe
#: failure usually means another backend can take the call at once.
RETRY_BACKOFF = Backoff(initial=0.05, maximum=1.0, multiplier=2.0, jitter=0.2)


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """
    Which failed calls a channel sends again, and how often.

    A failed attempt is sent again when all of these hold:

    - fewer than ``max_attempts`` attempts were made;
    - the failure is a :class:`~twisted_reqresp.StatusError` other than
      :class:`~twisted_reqresp.DeadlineExceeded` (or any other
      ``DEADLINE_EXCEEDED``: a late call stays late);
    - either it is *retry-safe* (``error.retry_safe``: the request was never
      sent, was refused by a GOAWAY or by a full queue, or the server says
      it did not start it), or the method is in ``idempotent_methods`` and
      the status is in ``retryable_statuses``;
    - the next attempt would start before the call's deadline.

    :class:`RetryPolicy` ``(max_attempts=1)`` never retries.
    """

    #: Attempts in all, the first included: 3 sends a call at most twice
    #: more.  gRPC caps its own at 5; so do we, to bound the load one call
    #: can make.
    max_attempts: int = 3
    #: The delays between attempts.
    backoff: Backoff = RETRY_BACKOFF
    #: The statuses after which an *idempotent* method is sent again even
    #: though the server may have started it (a retry-safe failure is sent
    #: again whatever its status).
    retryable_statuses: Collection[int] = frozenset({StatusCode.UNAVAILABLE})
    #: Methods that are safe to run twice (reads, or writes keyed by a
    #: request id the server deduplicates).  ``"*"`` declares every method.
    idempotent_methods: Collection[str] = frozenset()

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 5:
            raise ValueError(f"max_attempts must be an int from 1 to 5, not {attempts!r}")
        if not isinstance(self.backoff, Backoff):
            raise TypeError(f"backoff must be a Backoff, not {type(self.backoff).__name__}")
        statuses = frozenset(self.retryable_statuses)
        for code in statuses:
            if isinstance(code, bool) or not isinstance(code, int):
                raise TypeError(f"retryable_statuses must hold status codes, not {code!r}")
            if code in (StatusCode.OK, StatusCode.DEADLINE_EXCEEDED):
                raise ValueError(f"{StatusCode(code).name} cannot be retryable")
            if not 0 <= code <= STATUS_MAX:
                raise ValueError(
                    f"retryable_statuses must hold codes from 0 to {STATUS_MAX}, not {code!r}"
                )
        if isinstance(self.idempotent_methods, str):
            # A bare string would be read as a set of one-letter methods.
            raise TypeError("idempotent_methods must be a collection of names, not one string")
        methods = frozenset(self.idempotent_methods)
        for name in methods:
            if not isinstance(name, str):
                raise TypeError(f"idempotent_methods must hold str names, not {name!r}")
        object.__setattr__(self, "retryable_statuses", statuses)
        object.__setattr__(self, "idempotent_methods", methods)

    def is_idempotent(self, method: str) -> bool:
        """:returns: whether ``method`` is declared safe to run twice."""
        methods = self.idempotent_methods
        return method in methods or "*" in methods

    def may_retry(self, method: str, error: BaseException) -> bool:
        """
        :param method: the call's method.
        :param error: why the last attempt failed.
        :returns: whether that failure allows sending the call again
            (attempts and deadline aside).
        """
        if not isinstance(error, StatusError):
            return False
        if error.code == StatusCode.DEADLINE_EXCEEDED:
            # DeadlineExceeded, or any other status saying so: even marked
            # retry-safe (say, it expired in a server's queue), the call's
            # deadline has passed and another attempt can only be late.
            return False
        if error.retry_safe:
            return True
        return error.code in self.retryable_statuses and self.is_idempotent(method)

    def next_delay(
        self,
        method: str,
        error: BaseException,
        attempt: int,
        time_left: float | None,
        random: Callable[[], float],
    ) -> float | None:
        """
        Decide whether to make attempt ``attempt + 1``.

        :param method: the call's method.
        :param error: why attempt ``attempt`` failed.
        :param attempt: the attempts made so far (1 after the first).
        :param time_left: seconds before the call's deadline, or ``None``.
        :param random: as for :meth:`Backoff.delay`.
        :returns: the delay before the next attempt, in seconds, or
            ``None`` not to retry.
        """
        if attempt >= self.max_attempts or not self.may_retry(method, error):
            return None
        delay = self.backoff.delay(attempt, random)
        # "not delay < time_left" so that a NaN time left (a broken clock)
        # refuses too: the retry could only fail with DEADLINE_EXCEEDED.
        if time_left is not None and not delay < time_left:
            return None
        return delay


#: The budget counts in thousandths of a token, in integers, as gRPC does
#: (its token_ratio has three decimal places): with floats, 5,000 successes
#: of 0.001 add up to a hair over 5 and would reopen a bucket of 10 one
#: success early.
_MILLI = 1000


def _to_milli(name: str, value: float, most: float) -> int:
    _check_positive(name, value)
    if value > most:
        raise ValueError(f"{name} must be at most {most:g}, not {value!r}")
    if value < 1 / _MILLI:
        raise ValueError(f"{name} must be at least 0.001 (three decimal places), not {value!r}")
    return round(value * _MILLI)


@dataclass(kw_only=True, slots=True, repr=False)
class RetryBudget:
    """
    gRPC's retry throttling: a bucket of ``max_tokens`` tokens, full at the
    start, that every failed attempt with a retryable outcome empties by
    one and every success refills by ``token_ratio``.  Retries are allowed
    only while more than half the tokens are left.

    So while a backend answers most calls the bucket stays full and retries
    flow; when every call fails the bucket drains after ``max_tokens / 2``
    failures and calls fail after their first attempt, until successes
    refill it: at most about one retry per ``1 / token_ratio`` successes
    in a steady failure.  One budget is shared by all the calls of a
    channel.

    Both numbers are kept to three decimal places, as gRPC keeps them, so
    that the thresholds are exact.
    """

    #: The bucket's size: from 0.001 to 1000 (gRPC's bounds).
    max_tokens: float = 10.0
    #: Tokens a success returns: from 0.001 to 1 (gRPC: more than 0, at most 1).
    token_ratio: float = 0.1
    _max_milli: int = field(init=False)
    _ratio_milli: int = field(init=False)
    _milli: int = field(init=False)

    def __post_init__(self) -> None:
        self._max_milli = _to_milli("max_tokens", self.max_tokens, 1000)
        self._ratio_milli = _to_milli("token_ratio", self.token_ratio, 1)
        self._milli = self._max_milli

    def __repr__(self) -> str:
        return (
            f"RetryBudget(max_tokens={self.max_tokens!r}, token_ratio={self.token_ratio!r}, "
            f"tokens={self.tokens!r})"
        )

    @property
    def tokens(self) -> float:
        """The tokens left (the bucket starts full)."""
        return self._milli / _MILLI

    def allows_retry(self) -> bool:
        """:returns: whether a retry may be made now."""
        # tokens > max_tokens / 2, in integers.
        return 2 * self._milli > self._max_milli

    def record_failure(self) -> None:
        """An attempt failed with an outcome the policy could retry."""
        self._milli = max(0, self._milli - _MILLI)

    def record_success(self) -> None:
        """An attempt succeeded."""
        self._milli = min(self._max_milli, self._milli + self._ratio_milli)
