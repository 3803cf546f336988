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
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import (
    Backoff,
    Channel,
    ConnectionClosed,
    DeadlineExceeded,
    OutgoingCall,
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
