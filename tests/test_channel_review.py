"""
A hostile review of the Channel (issue 9): sequences in which a call could
hang, a timer outlive close(), a backend stay out for good, or a bad option
surface late, each pinned on the in-memory network of ``channel_net``.
"""

from __future__ import annotations

from test_channel import ChannelTestCase

from twisted_reqresp import (
    Backoff,
    Channel,
    ConnectionClosed,
    EndpointSet,
    Limits,
    RetryBudget,
    StatusCode,
    StatusError,
)


class ProbeTests(ChannelTestCase):
    """An ejected backend's probe is never lost, whatever health check is in flight."""

    def test_probe_due_during_a_health_check(self) -> None:
        """An ejection that ends while a health check is in flight still probes, and comes back."""
        (a,) = self.servers("a")
        channel = self.channel(
            [a],
            retry=None,
            failure_threshold=1,
            health_check_interval=5.0,
            ejection_time=Backoff(initial=1.0, jitter=0.0),
        )
        doomed = self.call(channel, "wait")
        (link,) = a.live
        self.net.advance(4.9)
        # The server stops reading: the health check sent at 5 s stays in flight.
        link.server_transport.pauseProducing()
        self.net.advance(0.1)
        self.assertIsNotNone(channel._backends[a].health_call)
        # The waiting call fails UNAVAILABLE: ejected until 6.5 s.
        self.net.advance(0.5)
        a.waiting[0].errback(StatusError(StatusCode.UNAVAILABLE, "a is failing"))
        self.net.pump()
        self.failureResultOf(doomed, StatusError)
        self.assertEqual(channel.backends[0].state, "ejected")
        self.net.advance(1.0)  # the ejection ends; the check is still out
        link.server_transport.resumeProducing()
        self.net.pump()  # the check answers SERVING
        self.net.advance(0)
        self.assertEqual(channel.backends[0].state, "ready")
        self.assertEqual(self.successResultOf(self.call(channel, "echo", b"x")).body, b"x")


class CloseTests(ChannelTestCase):
    """close() leaves no timer behind and no call unanswered."""

    def test_failure_after_close_leaves_no_ejection_timer(self) -> None:
        """A call that fails while the channel closes ejects nothing: no timer outlives close()."""
        (a,) = self.servers("a")
        channel = self.channel([a], retry=None, failure_threshold=1)
        d = self.call(channel, "wait")
        closing = channel.close()
        self.net.pump()
        a.waiting[0].errback(StatusError(StatusCode.UNAVAILABLE, "a is failing"))
        self.net.pump()
        self.failureResultOf(d, StatusError)
        self.successResultOf(closing)
        self.assertEqual(self.net.clock.getDelayedCalls(), [])

    def test_retry_safe_failure_while_closing_fails_at_once(self) -> None:
        """A queued call lost while the channel closes fails before close() fires, no timer left."""
        a = self.net.server("a", limits=Limits(max_concurrent=1))
        channel = self.channel([a])
        first = self.call(channel, "wait")
        queued = self.call(channel, "echo", b"q")  # queued behind a's MAX_CONCURRENT of 1
        self.assertEqual(channel.backends[0].outstanding, 2)
        closing = channel.close()
        self.net.pump()
        a.drop()
        self.net.pump()
        self.failureResultOf(first, ConnectionClosed)
        error = self.failureResultOf(queued, ConnectionClosed).value
        self.assertTrue(error.retry_safe)
        self.successResultOf(closing)
        self.assertEqual(self.net.clock.getDelayedCalls(), [])

    def test_close_twice(self) -> None:
        """close() twice gives two Deferreds that both fire once the connections are closed."""
        (a,) = self.servers("a")
        channel = self.channel([a])
        first, second = channel.close(), channel.close()
        self.net.pump()
        self.successResultOf(first)
        self.successResultOf(second)
        self.successResultOf(channel.close())


class OptionTests(ChannelTestCase):
    """Every option refuses a bad value when the channel is made, naming the option."""

    def bad(self, exception: type[Exception], option: str, value: object) -> None:
        error = self.assertRaises(
            exception, Channel, None, [], clock=self.net.clock, **{option: value}
        )
        self.assertIn(option, str(error))

    def test_reconnect_must_be_a_backoff(self) -> None:
        """reconnect=5 (seconds, not a Backoff) is a TypeError naming reconnect."""
        self.bad(TypeError, "reconnect", 5)

    def test_ejection_time_must_be_a_backoff(self) -> None:
        """ejection_time=30 is a TypeError naming ejection_time."""
        self.bad(TypeError, "ejection_time", 30)

    def test_retry_must_be_a_policy(self) -> None:
        """retry=3 is a TypeError naming retry."""
        self.bad(TypeError, "retry", 3)

    def test_budget_must_be_a_budget(self) -> None:
        """budget=10 is a TypeError naming budget."""
        self.bad(TypeError, "budget", 10)

    def test_timeout_checked_when_made(self) -> None:
        """A channel timeout of 0, below 0, infinite or not a number is refused when made."""
        for value in (0, -1, float("inf"), float("nan"), "5", True):
            self.bad(ValueError, "timeout", value)
        for value in (0.001, 1, 2.5):
            channel = Channel(None, [], clock=self.net.clock, timeout=value)
            self.successResultOf(channel.close())

    def test_wait_for_ready_must_be_a_bool(self) -> None:
        """wait_for_ready="no" (truthy) is a TypeError naming wait_for_ready."""
        self.bad(TypeError, "wait_for_ready", "no")

    def test_random_must_be_callable(self) -> None:
        """random=0.5 is a TypeError naming random."""
        self.bad(TypeError, "random", 0.5)

    def test_none_where_allowed(self) -> None:
        """retry=None and budget=None are accepted: never retry, and a new budget."""
        channel = Channel(None, [], clock=self.net.clock, retry=None, budget=None)
        self.assertIsInstance(channel.budget, RetryBudget)
        self.successResultOf(channel.close())


class GoAwayTests(ChannelTestCase):
    """A backend that sent GOAWAY comes back even if its server never closes."""

    def test_goaway_then_silence_reconnects(self) -> None:
        """After a GOAWAY the channel closes the connection once its calls end, and reconnects."""
        (a,) = self.servers("a")
        channel = self.channel([a], reconnect=Backoff(initial=1.0, jitter=0.0))
        pending = self.call(channel, "wait")
        (link,) = a.live
        # A server that announces its drain but never closes the connection.
        link.server_transport.loseConnection = lambda: None  # type: ignore[method-assign]
        link.server_transport.abortConnection = lambda: None  # type: ignore[method-assign]
        a.factory.drain()
        self.net.pump()
        self.assertEqual(channel.backends[0].state, "draining")
        a.factory = type(a.factory)(a.router, clock=self.net.clock)  # the restarted server
        a.answer_waiting()
        self.net.pump()
        self.assertEqual(self.successResultOf(pending).body, b"done")
        self.assertEqual(link.lost, True)  # closed by the client, the call answered
        self.net.advance(1.0)
        self.assertEqual(channel.backends[0].state, "ready")
        self.assertEqual(self.successResultOf(self.call(channel, "echo", b"x")).body, b"x")


class EndpointUpdateTests(ChannelTestCase):
    """A bad endpoint in an update changes nothing and says which endpoint it is."""

    def test_bad_update_changes_nothing(self) -> None:
        """A bad update() raises ValueError naming the endpoint; set and channels are unchanged."""
        a, b = self.servers("a", "b")
        endpoints = EndpointSet([a, b])
        first = self.channel(endpoints)
        second = Channel(None, endpoints, clock=self.net.clock, health_check_interval=None)
        self.net.pump()
        error = self.assertRaises(ValueError, endpoints.update, [a, "nonsense:x"])
        self.assertIn("'nonsense:x'", str(error))
        self.assertEqual(list(endpoints), [a, b])
        for channel in (first, second):
            self.assertEqual([i.endpoint for i in channel.backends], [repr(a), repr(b)])
            self.assertEqual([i.state for i in channel.backends], ["ready", "ready"])
        endpoints.update([b])  # a good update still works afterwards
        self.net.pump()
        for channel in (first, second):
            self.assertEqual([i.endpoint for i in channel.backends], [repr(b)])
        closing = second.close()
        self.net.pump()
        self.successResultOf(closing)

    def test_bad_endpoint_when_made(self) -> None:
        """A channel over "tcp:localhost" (no port) is a ValueError naming the endpoint."""
        error = self.assertRaises(ValueError, Channel, None, ["tcp:localhost"])
        self.assertIn("'tcp:localhost'", str(error))

    def test_backends_follow_the_set_order(self) -> None:
        """channel.backends lists the backends in the set's order after an update reorders it."""
        a, b, c = self.servers("a", "b", "c")
        endpoints = EndpointSet([a, b])
        channel = self.channel(endpoints)
        endpoints.update([c, b, a])
        self.net.pump()
        self.assertEqual([i.endpoint for i in channel.backends], [repr(c), repr(b), repr(a)])
        self.assertEqual(a.attempts, 1)
