"""
The Channel: reconnection with backoff, power-of-two-choices balancing,
waiting or failing fast while no backend is ready, retries under a policy
and a budget, failure accrual, health checks and a changing endpoint set,
over an in-memory network of servers and a Clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from channel_net import FakeServer, Network
from twisted.internet.defer import CancelledError
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import (
    Backoff,
    Call,
    Channel,
    ConnectionClosed,
    ConnectionInfo,
    DeadlineExceeded,
    EndpointSet,
    OutgoingCall,
    RetryBudget,
    RetryPolicy,
    StatusCode,
    StatusError,
)


def fixed(*values: float) -> Callable[[], float]:
    """:returns: a ``random`` that returns ``values`` in turn, then 0.5 forever."""
    it: Iterator[float] = iter(values)
    return lambda: next(it, 0.5)


class ChannelTestCase(SynchronousTestCase):
    """Builds a network, a channel over it, and checks the clock is clean at the end."""

    def setUp(self) -> None:
        self.net = Network()

    def servers(self, *names: str) -> list[FakeServer]:
        return [self.net.server(name) for name in names]

    def channel(self, endpoints: Any, **kwargs: Any) -> Channel:
        kwargs.setdefault("health_check_interval", None)
        kwargs.setdefault("random", lambda: 0.5)
        channel = Channel(None, endpoints, clock=self.net.clock, **kwargs)
        self.addCleanup(self.closed, channel)
        self.net.pump()
        return channel

    def closed(self, channel: Channel) -> None:
        d = channel.close()
        self.net.pump()
        self.successResultOf(d)
        self.assertEqual(self.net.clock.getDelayedCalls(), [])

    def call(self, channel: Channel, method: str, body: bytes = b"", **kwargs: Any) -> Any:
        d = channel.call(method, body, **kwargs)
        self.net.pump()
        return d


class ReconnectTests(ChannelTestCase):
    """A backend's connection comes back after a loss, with jittered backoff."""

    def test_calls_go_to_the_backend(self) -> None:
        """A channel over one server answers calls once connected."""
        (a,) = self.servers("a")
        channel = self.channel([a])
        self.assertEqual(self.successResultOf(self.call(channel, "echo", b"hi")).body, b"hi")
        self.assertEqual([b.state for b in channel.backends], ["ready"])
        self.assertEqual(channel.stats.calls, 1)
        self.assertEqual(channel.stats.succeeded, 1)

    def test_reconnects_with_backoff(self) -> None:
        """After a drop the backend reconnects after the backoff's delays, jitter included."""
        (a,) = self.servers("a")
        # random() = 1.0 would be +20 %; 0.75 gives +10 %.
        channel = self.channel(
            [a], reconnect=Backoff(initial=1.0, maximum=4.0, multiplier=2.0), random=lambda: 0.75
        )
        self.assertEqual(a.attempts, 1)
        a.refusing = True
        a.drop()
        self.net.pump()
        self.assertEqual([b.state for b in channel.backends], ["connecting"])
        # Delays 1.1, 2.2, 4.4 (capped at 4 before jitter), 4.4.
        for delay in (1.1, 2.2, 4.4, 4.4):
            attempts = a.attempts
            self.net.advance(delay - 0.01)
            self.assertEqual(a.attempts, attempts)
            self.net.advance(0.01)
            self.assertEqual(a.attempts, attempts + 1)
        a.refusing = False
        self.net.advance(4.4)
        self.assertEqual([b.state for b in channel.backends], ["ready"])
        self.assertEqual(channel.stats.reconnects, 5)
        self.assertEqual(self.successResultOf(self.call(channel, "echo", b"x")).body, b"x")

    def test_close_stops_reconnecting(self) -> None:
        """close() while a backend waits to reconnect cancels the retry and completes."""
        (a,) = self.servers("a")
        channel = self.channel([a])
        a.refusing = True
        a.drop()
        self.net.pump()
        self.assertTrue(self.net.clock.getDelayedCalls())
        d = channel.close()
        self.successResultOf(d)
        self.assertEqual(self.net.clock.getDelayedCalls(), [])
        attempts = a.attempts
        self.net.advance(100)
        self.assertEqual(a.attempts, attempts)

    def test_close_lets_pending_calls_finish(self) -> None:
        """close() fails new calls at once, lets the pending one finish, then closes."""
        (a,) = self.servers("a")
        channel = self.channel([a])
        pending = self.call(channel, "wait")
        closing = channel.close()
        self.net.pump()
        self.assertNoResult(closing)
        late = channel.call("echo", b"x")
        self.assertIsInstance(self.failureResultOf(late, ConnectionClosed).value, ConnectionClosed)
        a.answer_waiting()
        self.net.pump()
        self.assertEqual(self.successResultOf(pending).body, b"done")
        self.successResultOf(closing)
        self.assertEqual(a.live, [])

    def test_is_a_service(self) -> None:
        """A channel joins a service hierarchy; stopping the parent closes it."""
        from twisted.application.service import MultiService

        (a,) = self.servers("a")
        channel = self.channel([a])
        parent = MultiService()
        channel.setServiceParent(parent)
        parent.startService()
        self.assertEqual(a.attempts, 1)  # already started: not connected twice
        stopped = parent.stopService()
        self.net.pump()
        self.successResultOf(stopped)
        self.assertEqual(a.live, [])
        self.failureResultOf(channel.call("echo"), ConnectionClosed)


class BalancingTests(ChannelTestCase):
    """Power of two choices over the ready backends."""

    def test_picks_the_less_loaded(self) -> None:
        """Of the two backends drawn, the one with fewer calls outstanding gets the call."""
        a, b = self.servers("a", "b")
        # Draws: first index, then second index among the rest.
        channel = self.channel([a, b], random=fixed(0.0, 0.0, 0.0, 0.0, 0.0, 0.0))
        self.call(channel, "wait")  # tie: the first drawn, a
        self.assertEqual((len(a.waiting), len(b.waiting)), (1, 0))
        self.call(channel, "wait")  # a has 1, b has 0: b
        self.assertEqual((len(a.waiting), len(b.waiting)), (1, 1))
        self.assertEqual([i.outstanding for i in channel.backends], [1, 1])
        a.answer_waiting()
        b.answer_waiting()
        self.net.pump()

    def test_respects_max_concurrent(self) -> None:
        """A backend at its server's MAX_CONCURRENT loses to one below it, even with fewer calls."""
        from twisted_reqresp import Limits

        a = self.net.server("a", limits=Limits(max_concurrent=1))
        b = self.net.server("b")
        channel = self.channel([a, b], random=fixed(0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0))
        self.assertEqual([i.max_concurrent for i in channel.backends], [1, 100])
        self.call(channel, "wait")  # tie: a
        self.call(channel, "wait")  # b, less loaded
        self.call(channel, "wait")  # 1 each; a is at its maximum: b
        self.assertEqual((len(a.waiting), len(b.waiting)), (1, 2))
        a.answer_waiting()
        b.answer_waiting()
        self.net.pump()

    def test_one_backend_takes_everything(self) -> None:
        """With one ready backend every call goes to it, the others refusing."""
        a, b = self.servers("a", "b")
        b.refusing = True
        channel = self.channel([a, b], reconnect=Backoff(initial=1.0))
        replies = [self.call(channel, "who") for _ in range(5)]
        self.assertEqual({self.successResultOf(d).body for d in replies}, {b"a"})


class WaitForReadyTests(ChannelTestCase):
    """Calls made while no backend is ready wait, bounded, or fail fast."""

    def down(self, **kwargs: Any) -> tuple[FakeServer, Channel]:
        (a,) = self.servers("a")
        a.refusing = True
        return a, self.channel([a], reconnect=Backoff(initial=1.0, jitter=0.0), **kwargs)

    def test_waits_until_ready(self) -> None:
        """A call made while the only backend is down is sent once it connects."""
        a, channel = self.down()
        d = self.call(channel, "echo", b"late")
        self.assertNoResult(d)
        ready = channel.when_ready()
        self.assertNoResult(ready)
        a.refusing = False
        self.net.advance(1.0)
        self.assertIs(self.successResultOf(ready), channel)
        self.assertEqual(self.successResultOf(d).body, b"late")

    def test_wait_honours_deadline(self) -> None:
        """A waiting call fails with DeadlineExceeded when its timeout passes, naming the cause."""
        _a, channel = self.down()
        d = self.call(channel, "echo", timeout=0.5)
        self.net.advance(0.49)
        self.assertNoResult(d)
        self.net.advance(0.01)
        error = self.failureResultOf(d, DeadlineExceeded).value
        self.assertIn("no backend was ready", str(error))
        self.assertIn("refused", str(error))

    def test_max_waiting_calls(self) -> None:
        """max_waiting_calls wait; the next fails at once with RESOURCE_EXHAUSTED, retry-safe."""
        a, channel = self.down(max_waiting_calls=2)
        first = self.call(channel, "echo", b"1")
        second = self.call(channel, "echo", b"2")
        self.assertNoResult(first)
        self.assertNoResult(second)
        third = self.call(channel, "echo", b"3")
        error = self.failureResultOf(third, StatusError).value
        self.assertEqual(error.code, StatusCode.RESOURCE_EXHAUSTED)
        self.assertTrue(error.retry_safe)
        a.refusing = False
        self.net.advance(1.0)
        self.assertEqual(self.successResultOf(first).body, b"1")
        self.assertEqual(self.successResultOf(second).body, b"2")

    def test_max_waiting_calls_zero(self) -> None:
        """With max_waiting_calls=0 no call waits."""
        _a, channel = self.down(max_waiting_calls=0)
        error = self.failureResultOf(self.call(channel, "echo"), StatusError).value
        self.assertEqual(error.code, StatusCode.RESOURCE_EXHAUSTED)

    def test_fail_fast(self) -> None:
        """wait_for_ready=False fails at once with ConnectionClosed naming the connection error."""
        _a, channel = self.down(wait_for_ready=False)
        error = self.failureResultOf(self.call(channel, "echo"), ConnectionClosed).value
        self.assertTrue(error.retry_safe)
        self.assertIn("no backend is ready", str(error))
        self.assertIn("refused", str(error))

    def test_fail_fast_per_call(self) -> None:
        """A call's wait_for_ready=False overrides the channel's True."""
        _a, channel = self.down()
        self.failureResultOf(self.call(channel, "echo", wait_for_ready=False), ConnectionClosed)


class RetryTests(ChannelTestCase):
    """Failed attempts sent again under the policy, the deadline and the budget."""

    def test_retry_safe_goes_to_another_backend(self) -> None:
        """A call refused by a GOAWAY (retry-safe) is sent again, to the other backend."""
        a, b = self.servers("a", "b")
        seen: list[tuple[int, str]] = []

        def log(call: OutgoingCall, proceed: Any) -> Any:
            seen.append((call.attempt, call.method))
            return proceed(call)

        channel = self.channel(
            [a, b], random=fixed(0.0, 0.0), interceptors=[log], retry=RetryPolicy()
        )
        # The GOAWAY is on its way when the call goes to a: a refuses it.
        a.factory.drain()
        d = channel.call("who")
        self.net.pump()
        self.assertNoResult(d)  # the retry's backoff
        self.net.advance(0.06)
        self.assertEqual(self.successResultOf(d).body, b"b")
        self.assertEqual(seen, [(1, "who"), (2, "who")])
        self.assertEqual((channel.stats.attempts, channel.stats.retries), (2, 1))

    def test_not_idempotent_not_retried(self) -> None:
        """A call that may have run (UNAVAILABLE, not retry-safe) of an undeclared method fails."""
        a, b = self.servers("a", "b")
        channel = self.channel([a, b])
        error = self.failureResultOf(self.call(channel, "fail"), StatusError).value
        self.assertEqual(error.code, StatusCode.UNAVAILABLE)
        self.assertEqual(error.attempts, 1)
        self.assertNotIn("attempts", str(error))
        self.assertEqual(channel.stats.attempts, 1)

    def test_idempotent_retried_until_max_attempts(self) -> None:
        """An idempotent method failing with a retryable status is retried, then fails saying so."""
        a, b = self.servers("a", "b")
        seen: list[int] = []

        def log(call: OutgoingCall, proceed: Any) -> Any:
            seen.append(call.attempt)
            return proceed(call)

        channel = self.channel(
            [a, b], retry=RetryPolicy(idempotent_methods={"fail"}), interceptors=[log]
        )
        d = self.call(channel, "fail")
        self.net.advance(0.05)  # first backoff: 0.05
        self.net.advance(0.1)  # second: 0.1
        error = self.failureResultOf(d, StatusError).value
        self.assertEqual(seen, [1, 2, 3])
        self.assertEqual(error.attempts, 3)
        self.assertTrue(str(error).endswith("(after 3 attempts)"), str(error))
        self.assertEqual((channel.stats.retries, channel.stats.failed), (2, 1))

    def test_retry_avoids_the_backend_that_failed(self) -> None:
        """Each retry goes to a backend other than the one that just failed."""
        a, b = self.servers("a", "b")
        channel = self.channel([a, b], retry=RetryPolicy(idempotent_methods={"*"}))
        d = self.call(channel, "fail")
        self.net.advance(0.05)
        self.net.advance(0.1)
        self.assertIn("(after 3 attempts)", str(self.failureResultOf(d, StatusError).value))
        served = [a.factory.stats.requests_total, b.factory.stats.requests_total]
        self.assertEqual(sorted(served), [1, 2])

    def test_never_past_the_deadline(self) -> None:
        """No retry is made when its backoff would end at or after the call's deadline."""
        (a,) = self.servers("a")
        channel = self.channel([a], retry=RetryPolicy(idempotent_methods={"fail"}))
        # Backoff 0.05 then 0.1: the third attempt would start at 0.15.
        d = self.call(channel, "fail", timeout=0.15)
        self.net.advance(0.05)
        error = self.failureResultOf(d, StatusError).value
        self.assertEqual(error.attempts, 2)
        # With a little more time the third attempt is made.
        d = self.call(channel, "fail", timeout=0.151)
        self.net.advance(0.05)
        self.net.advance(0.1)
        self.assertEqual(self.failureResultOf(d, StatusError).value.attempts, 3)

    def test_budget_throttles(self) -> None:
        """Once the budget is down to half its tokens, failures are not retried."""
        (a,) = self.servers("a")
        budget = RetryBudget(max_tokens=4)
        channel = self.channel([a], retry=RetryPolicy(idempotent_methods={"fail"}), budget=budget)
        d = self.call(channel, "fail")
        self.net.advance(0.05)
        self.net.advance(0.1)
        # Three failures: 4 -> 1 token; the second retry was refused at 2.
        self.assertEqual(self.failureResultOf(d, StatusError).value.attempts, 2)
        self.assertEqual(channel.stats.retries_throttled, 1)
        d = self.call(channel, "fail")
        self.assertEqual(self.failureResultOf(d, StatusError).value.attempts, 1)
        self.assertEqual(channel.stats.retries_throttled, 2)
        # Successes refill it.
        for _ in range(20):
            self.successResultOf(self.call(channel, "echo"))
        self.assertTrue(budget.allows_retry())

    def test_no_retry_policy(self) -> None:
        """retry=None never sends a call again, even a retry-safe one."""
        a, b = self.servers("a", "b")
        channel = self.channel([a, b], retry=None, random=fixed(0.0, 0.0))
        a.factory.drain()
        d = self.call(channel, "who")
        error = self.failureResultOf(d, ConnectionClosed).value
        self.assertTrue(error.retry_safe)
        self.assertEqual(error.attempts, 1)

    def test_cancel_cancels_the_attempt(self) -> None:
        """Cancelling a call in flight sends CANCEL to its server."""
        (a,) = self.servers("a")
        channel = self.channel([a])
        d = self.call(channel, "wait")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.net.pump()
        self.assertTrue(a.waiting[0].called)  # the server cancelled the responder
        self.assertEqual(channel.backends[0].outstanding, 0)

    def test_cancel_cancels_the_backoff(self) -> None:
        """Cancelling a call between attempts cancels the retry's timer."""
        (a,) = self.servers("a")
        channel = self.channel([a], retry=RetryPolicy(idempotent_methods={"fail"}))
        before = set(self.net.clock.getDelayedCalls())
        d = self.call(channel, "fail")
        (backoff,) = set(self.net.clock.getDelayedCalls()) - before
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertFalse(backoff.active())
        self.net.advance(1.0)
        self.assertEqual(channel.stats.attempts, 1)

    def test_cancel_a_waiting_call(self) -> None:
        """Cancelling a call waiting for a backend takes it out of the queue, its timer off."""
        (a,) = self.servers("a")
        a.refusing = True
        channel = self.channel([a], reconnect=Backoff(initial=1.0))
        d = self.call(channel, "echo", timeout=5.0)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        a.refusing = False
        self.net.advance(1.2)
        self.assertEqual(channel.stats.attempts, 0)
        self.assertEqual(a.factory.stats.requests_total, 0)


class TakenOutTests(ChannelTestCase):
    """Backends that drain, fail or report themselves unhealthy get no calls."""

    def test_goaway_takes_a_backend_out(self) -> None:
        """After a GOAWAY a backend is draining, gets no new calls, and comes back reconnected."""
        a, b = self.servers("a", "b")
        channel = self.channel(
            [a, b], reconnect=Backoff(initial=1.0, jitter=0.0), random=fixed(0.0, 0.0)
        )
        pending = self.call(channel, "wait")  # to a (ties go to the first drawn)
        self.assertEqual(len(a.waiting), 1)
        a.factory.drain()
        self.net.pump()
        self.assertEqual([i.state for i in channel.backends], ["draining", "ready"])
        replies = [self.call(channel, "who") for _ in range(4)]
        self.assertEqual({self.successResultOf(d).body for d in replies}, {b"b"})
        # The accepted call still gets its answer; then the connection closes.
        a.answer_waiting()
        self.net.pump()
        self.assertEqual(self.successResultOf(pending).body, b"done")
        self.assertEqual([i.state for i in channel.backends], ["connecting", "ready"])
        self.assertEqual([i.failures for i in channel.backends], [0, 0])

    def test_unaccepted_calls_retried_elsewhere(self) -> None:
        """Calls above a GOAWAY's last id fail retry-safe and are retried on the other backend."""
        a, b = self.servers("a", "b")
        channel = self.channel([a, b], random=fixed(*[0.0] * 6))
        first = channel.call("wait")  # a
        second = channel.call("wait")  # b
        self.net.pump()
        third = channel.call("who")  # a: sent, but a drains before reading it
        self.assertEqual([i.outstanding for i in channel.backends], [2, 1])
        a.factory.drain()  # the GOAWAY's last id is the first call's
        self.net.pump()
        self.net.advance(0.05)
        self.assertEqual(self.successResultOf(third).body, b"b")
        self.assertEqual(channel.stats.retries, 1)
        a.answer_waiting()
        b.answer_waiting()
        self.net.pump()
        self.successResultOf(first)
        self.successResultOf(second)

    def test_unaccepted_calls_retried_at_once_outside_the_budget(self) -> None:
        """A GOAWAY refusal is resent at once, even with the budget spent, and charges nothing."""
        a, b = self.servers("a", "b")
        budget = RetryBudget(max_tokens=2)
        budget.record_failure()
        budget.record_failure()
        self.assertFalse(budget.allows_retry())
        channel = self.channel([a, b], budget=budget, random=fixed(*[0.0] * 6))
        first = channel.call("wait")  # a
        second = channel.call("wait")  # b
        self.net.pump()
        third = channel.call("who")  # a, refused by its GOAWAY
        a.factory.drain()
        self.net.pump()
        self.net.advance(0)
        self.assertEqual(self.successResultOf(third).body, b"b")
        self.assertEqual((channel.stats.retries, channel.stats.retries_throttled), (1, 0))
        # Only the success's refill: the refusal charged nothing.
        self.assertAlmostEqual(budget.tokens, 0.1)
        a.answer_waiting()
        b.answer_waiting()
        self.net.pump()
        self.successResultOf(first)
        self.successResultOf(second)

    def test_lost_call_not_retried_unless_idempotent(self) -> None:
        """A call lost with its connection fails unless its method is idempotent."""
        a, b = self.servers("a", "b")
        channel = self.channel(
            [a, b], retry=RetryPolicy(idempotent_methods={"echo"}), random=fixed(0.0, 0.0)
        )
        lost = self.call(channel, "wait")  # a
        a.drop()
        self.net.pump()
        error = self.failureResultOf(lost, ConnectionClosed).value
        self.assertFalse(error.retry_safe)
        self.assertEqual(error.attempts, 1)

    def test_lost_idempotent_call_retried(self) -> None:
        """An idempotent call lost with its connection is sent again to another backend."""
        a, b = self.servers("a", "b")
        channel = self.channel(
            [a, b], retry=RetryPolicy(idempotent_methods={"wait"}), random=fixed(0.0, 0.0)
        )
        d = self.call(channel, "wait")  # a
        a.drop()
        self.net.advance(0.05)
        self.assertEqual(len(b.waiting), 1)
        b.answer_waiting()
        self.net.pump()
        self.assertEqual(self.successResultOf(d).body, b"done")


class FailureAccrualTests(ChannelTestCase):
    """failure_threshold failures in a row eject a backend; a probe brings it back."""

    def accrue(self, **kwargs: Any) -> tuple[FakeServer, Channel]:
        a, b = self.servers("a", "b")
        channel = self.channel(
            [a, b],
            retry=None,
            failure_threshold=3,
            ejection_time=Backoff(initial=1.0, jitter=0.0),
            random=fixed(*[0.0] * 6),  # three calls to a
            **kwargs,
        )
        return a, channel

    def test_threshold(self) -> None:
        """Two failures leave a backend in; the third ejects it and calls go elsewhere."""
        _a, channel = self.accrue()
        for n in (1, 2):
            self.failureResultOf(self.call(channel, "fail"), StatusError)
            self.assertEqual(channel.backends[0].failures, n)
            self.assertEqual(channel.backends[0].state, "ready")
        self.failureResultOf(self.call(channel, "fail"), StatusError)
        self.assertEqual([i.state for i in channel.backends], ["ejected", "ready"])
        self.assertEqual(channel.stats.ejections, 1)
        replies = [self.call(channel, "who") for _ in range(3)]
        self.assertEqual({self.successResultOf(d).body for d in replies}, {b"b"})

    def test_success_resets_the_count(self) -> None:
        """An answer between failures starts the count again."""
        _a, channel = self.accrue()
        self.failureResultOf(self.call(channel, "fail"), StatusError)
        self.failureResultOf(self.call(channel, "fail"), StatusError)
        self.successResultOf(self.call(channel, "echo"))
        self.assertEqual(channel.backends[0].failures, 0)

    def test_probe_brings_it_back(self) -> None:
        """After ejection_time one health probe answering SERVING puts the backend back."""
        _a, channel = self.accrue()
        for _ in range(3):
            self.failureResultOf(self.call(channel, "fail"), StatusError)
        self.net.advance(0.99)
        self.assertEqual(channel.backends[0].state, "ejected")
        self.net.advance(0.01)
        self.assertEqual([i.state for i in channel.backends], ["ready", "ready"])
        self.assertEqual(channel.backends[0].failures, 0)

    def test_failed_probe_ejects_longer(self) -> None:
        """A probe answering NOT_SERVING ejects again for the next, longer delay."""
        a, channel = self.accrue()
        for _ in range(3):
            self.failureResultOf(self.call(channel, "fail"), StatusError)
        a.factory.health.set("", "NOT_SERVING")
        self.net.advance(1.0)
        self.assertEqual(channel.backends[0].state, "ejected")
        self.assertEqual(channel.stats.ejections, 2)
        a.factory.health.set("", "SERVING")
        self.net.advance(1.58)
        self.assertEqual(channel.backends[0].state, "ejected")
        self.net.advance(0.02)
        self.assertEqual(channel.backends[0].state, "ready")

    def test_probe_without_builtins(self) -> None:
        """A server without the built-in methods answers the probe NOT_FOUND: it is up."""
        a = self.net.server("a", builtins=False)
        b = self.net.server("b")
        channel = self.channel(
            [a, b],
            retry=None,
            failure_threshold=1,
            ejection_time=Backoff(initial=1.0, jitter=0.0),
            random=fixed(0.0, 0.0),
        )
        self.failureResultOf(self.call(channel, "fail"), StatusError)
        self.assertEqual(channel.backends[0].state, "ejected")
        self.net.advance(1.0)
        self.assertEqual(channel.backends[0].state, "ready")

    def test_remote_errors_of_the_caller_do_not_count(self) -> None:
        """An answer that blames the request (NOT_FOUND) is no failure of the backend."""
        _a, channel = self.accrue()
        for _ in range(3):
            self.failureResultOf(self.call(channel, "no-such-method"), StatusError)
        self.assertEqual(channel.backends[0].failures, 0)
        self.assertEqual(channel.backends[0].state, "ready")


class HealthCheckTests(ChannelTestCase):
    """reqresp.health on each connection takes NOT_SERVING and DRAINING backends out."""

    def test_not_serving_and_back(self) -> None:
        """A check saying NOT_SERVING or DRAINING takes a backend out; SERVING puts it back."""
        a, b = self.servers("a", "b")
        channel = self.channel([a, b], health_check_interval=5.0)
        for status in ("NOT_SERVING", "DRAINING"):
            a.factory.health.set("", status)
            self.net.advance(4.99)
            self.assertEqual(channel.backends[0].state, "ready")
            self.net.advance(0.01)
            self.assertEqual([i.state for i in channel.backends], ["unhealthy", "ready"])
            replies = [self.call(channel, "who") for _ in range(3)]
            self.assertEqual({self.successResultOf(d).body for d in replies}, {b"b"})
            a.factory.health.set("", "SERVING")
            self.net.advance(5.0)
            self.assertEqual([i.state for i in channel.backends], ["ready", "ready"])

    def test_unhealthy_only_backend_makes_calls_wait(self) -> None:
        """With the only backend unhealthy, calls wait until a check says SERVING."""
        (a,) = self.servers("a")
        channel = self.channel([a], health_check_interval=1.0)
        a.factory.health.set("", "NOT_SERVING")
        self.net.advance(1.0)
        d = self.call(channel, "echo", b"x")
        self.assertNoResult(d)
        a.factory.health.set("", "SERVING")
        self.net.advance(1.0)
        self.assertEqual(self.successResultOf(d).body, b"x")


class EndpointSetTests(ChannelTestCase):
    """A channel follows the changes of its EndpointSet."""

    def test_add_and_remove(self) -> None:
        """An added endpoint connects; a removed one finishes its calls, then closes."""
        a, b = self.servers("a", "b")
        endpoints = EndpointSet([a])
        channel = self.channel(endpoints)
        pending = self.call(channel, "wait")
        endpoints.update([a, b])
        self.net.pump()
        self.assertEqual(len(endpoints), 2)
        self.assertEqual([i.state for i in channel.backends], ["ready", "ready"])
        endpoints.update([b])
        self.net.pump()
        self.assertEqual([i.endpoint for i in channel.backends], [repr(b)])
        replies = [self.call(channel, "who") for _ in range(3)]
        self.assertEqual({self.successResultOf(d).body for d in replies}, {b"b"})
        self.assertEqual(len(a.live), 1)  # still answering its call
        a.answer_waiting()
        self.net.pump()
        self.assertEqual(self.successResultOf(pending).body, b"done")
        self.assertEqual(a.live, [])
        self.net.advance(60)
        self.assertEqual(a.attempts, 1)  # no reconnecting to a removed backend

    def test_kept_endpoint_keeps_its_connection(self) -> None:
        """An update that keeps an endpoint keeps its backend's connection."""
        a, b = self.servers("a", "b")
        endpoints = EndpointSet([a])
        channel = self.channel(endpoints)
        endpoints.update([b, a])
        self.net.pump()
        self.assertEqual(a.attempts, 1)
        self.assertEqual(len(channel.backends), 2)

    def test_one_string_is_refused(self) -> None:
        """A bare string is refused, not read as one endpoint per character."""
        self.assertRaises(TypeError, EndpointSet, "tcp:localhost:9000")

    def test_empty_set_then_filled(self) -> None:
        """A channel over an empty set makes calls wait until an endpoint is added."""
        (a,) = self.servers("a")
        endpoints = EndpointSet()
        channel = self.channel(endpoints)
        d = self.call(channel, "echo", b"x")
        self.assertNoResult(d)
        endpoints.update([a])
        self.net.pump()
        self.assertEqual(self.successResultOf(d).body, b"x")


class ParentTests(ChannelTestCase):
    """Channel.call(parent=call): the deadline, cancellation and trace metadata travel on."""

    def parent(self, *, deadline: float | None = None, **metadata: str) -> Call:
        info = ConnectionInfo(connection_id=1, peer=None, host=None, wire_format="binary")
        return Call(
            method="front",
            body=b"",
            metadata=metadata,
            connection=info,
            deadline=deadline,
            _clock=self.net.clock,
        )

    def test_parent_cancelled_cancels_the_call(self) -> None:
        """The server giving up on the parent cancels the channel call and sends CANCEL."""
        (a,) = self.servers("a")
        channel = self.channel([a])
        parent = self.parent()
        d = self.call(channel, "wait", parent=parent)
        self.assertEqual(len(a.waiting), 1)
        parent._cancellation.cancel()
        self.net.pump()
        self.failureResultOf(d, CancelledError)
        # The backend read the CANCEL: its responder's Deferred was cancelled.
        self.assertTrue(a.waiting[0].called)
        self.assertEqual(channel.stats.retries, 0)

    def test_deadline_and_trace_travel(self) -> None:
        """The attempt carries what is left of the parent's deadline and its traceparent."""
        (a,) = self.servers("a")
        seen: list[Call] = []
        a.router.add("look", lambda call: seen.append(call) or b"")
        channel = self.channel([a], timeout=30.0)
        parent = self.parent(deadline=2.0, traceparent="00-abc-01", other="no")
        self.net.advance(0.5)
        self.successResultOf(self.call(channel, "look", parent=parent))
        self.assertEqual(seen[0].time_remaining(), 1.5)
        self.assertEqual(dict(seen[0].metadata), {"traceparent": "00-abc-01"})

    def test_past_deadline_sends_nothing(self) -> None:
        """A parent whose deadline passed fails the call with no attempt made."""
        (a,) = self.servers("a")
        channel = self.channel([a])
        parent = self.parent(deadline=1.0)
        self.net.advance(1.0)
        self.failureResultOf(self.call(channel, "echo", parent=parent), DeadlineExceeded)
        self.assertEqual(channel.stats.attempts, 0)

    def test_no_subscription_left(self) -> None:
        """Answered calls unsubscribe from the parent's cancellation."""
        (a,) = self.servers("a")
        channel = self.channel([a])
        parent = self.parent()
        for _ in range(50):
            self.successResultOf(self.call(channel, "echo", b"x", parent=parent))
        self.assertEqual(parent._cancellation.subscribers, 0)


class TypedStubTests(ChannelTestCase):
    """A typed service's stub calls through a Channel as through a Client."""

    def test_stub_over_channel(self) -> None:
        """Typed calls balance over the channel's backends; declared errors keep their class."""
        from typed_contract import (
            AddRequest,
            AddResponse,
            Calculator,
            Overflow,
            add,
            ping,
            streams,
            total,
        )

        a, b = self.servers("a", "b")
        for server in (a, b):
            Calculator.router(add, total, ping, *streams, router=server.router)
        channel = self.channel([a, b])
        calc = Calculator(channel)
        d = calc.add(AddRequest(a=1, b=2))
        self.net.pump()
        self.assertEqual(self.successResultOf(d), AddResponse(total=3))
        d = calc.add(AddRequest(a=10**9, b=10**9))
        self.net.pump()
        self.failureResultOf(d, Overflow)
        self.assertEqual(channel.stats.retries, 0)

    def test_stream_over_channel(self) -> None:
        """A streaming stub goes through the channel to one backend; with none ready it fails."""
        from typed_contract import Calculator, CountRequest, Number, add, ping, streams, total

        empty = self.channel([])  # made first: closed last, when the clock is clean
        (a,) = self.servers("a")
        Calculator.router(add, total, ping, *streams, router=a.router)
        channel = self.channel([a])
        call = Calculator(channel).count(CountRequest(n=2))
        got = [call.read(), call.read(), call.read()]
        self.net.pump()
        self.assertEqual(
            [self.successResultOf(d) for d in got], [Number(value=1), Number(value=2), None]
        )
        self.assertEqual((channel.stats.calls, channel.stats.succeeded), (1, 1))
        refused = empty.stream("calc.count", b"{}")
        error = self.failureResultOf(refused.result(), ConnectionClosed).value
        self.assertTrue(error.retry_safe)
        self.assertEqual(empty.stats.failed, 1)


class BackendCountersTests(ChannelTestCase):
    """Channel.backends counts each backend's attempts and successes, and its last error."""

    def test_counts_attempts_and_successes(self) -> None:
        """A retried call counts one attempt on each backend and one success on the second."""
        a, b = self.servers("a", "b")
        channel = self.channel([a, b], random=fixed(*[0.0] * 6))
        first = channel.call("wait")  # a
        second = channel.call("wait")  # b
        self.net.pump()
        third = channel.call("who")  # a, refused by its GOAWAY, then b
        a.factory.drain()
        self.net.pump()
        self.net.advance(0)
        self.assertEqual(self.successResultOf(third).body, b"b")
        a.answer_waiting()
        b.answer_waiting()
        self.net.pump()
        self.successResultOf(first)
        self.successResultOf(second)
        counts = {info.endpoint: (info.calls, info.succeeded) for info in channel.backends}
        self.assertEqual(counts, {"<FakeServer a>": (2, 1), "<FakeServer b>": (2, 2)})

    def test_last_error_and_why_not_ready(self) -> None:
        """A refused connection is the backend's last_error and the channel's why_not_ready."""
        (a,) = self.servers("a")
        a.refusing = True
        channel = self.channel([a])
        (info,) = channel.backends
        self.assertIsNotNone(info.last_error)
        self.assertIn("<FakeServer a>", str(info.last_error))
        self.assertEqual(channel.why_not_ready(), info.last_error)
