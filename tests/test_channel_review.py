"""
A hostile review of the Channel (issue 9): sequences in which a call could
hang, a timer outlive close(), a backend stay out for good, or a bad option
surface late, each pinned on the in-memory network of ``channel_net``.
"""

from __future__ import annotations

import random
from typing import Any

from channel_net import FakeServer
from test_channel import ChannelTestCase, fixed
from twisted.internet.defer import CancelledError, Deferred

from twisted_reqresp import (
    Backoff,
    Call,
    Channel,
    ChannelStats,
    ConnectionClosed,
    EndpointSet,
    Limits,
    RetryBudget,
    RetryPolicy,
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


class NeverTwiceTests(ChannelTestCase):
    """
    Under random crashes, drains, restarts, refusals, failures and cancels,
    a call of a method not declared idempotent reaches a responder at most
    once, and every call ends.
    """

    def run_sequence(self, seed: int) -> None:
        rng = random.Random(seed)
        servers = self.servers("a", "b", "c")
        started: dict[bytes, int] = {}
        running: list[Deferred[bytes]] = []

        def once(call: Call) -> Deferred[bytes]:
            if call.method == "once":
                started[call.body] = started.get(call.body, 0) + 1
            d: Deferred[bytes] = Deferred()
            running.append(d)
            return d

        def add_methods(server: FakeServer) -> None:
            server.router.add("once", once)
            server.router.add("again", once)

        for server in servers:
            add_methods(server)
        channel = Channel(
            None,
            servers,
            clock=self.net.clock,
            retry=RetryPolicy(max_attempts=5, idempotent_methods={"again"}),
            budget=RetryBudget(max_tokens=1000),
            reconnect=Backoff(initial=0.1, maximum=1.0),
            failure_threshold=2,
            ejection_time=Backoff(initial=0.5, maximum=2.0),
            health_check_interval=1.0,
            max_waiting_calls=20,
            random=rng.random,
        )
        calls: list[Deferred[Any]] = []
        for step in range(80):
            action = rng.randrange(9)
            server = rng.choice(servers)
            if action <= 2:
                method = "once" if action < 2 else "again"
                timeout = rng.choice([None, 0.5, 3.0])
                d = channel.call(method, f"{seed}-{step}".encode(), timeout=timeout)
                d.addErrback(lambda _: None)
                calls.append(d)
            elif action == 3 and running:
                d = running.pop(rng.randrange(len(running)))
                if not d.called:
                    if rng.random() < 0.5:
                        d.callback(b"ok")
                    else:
                        d.errback(StatusError(StatusCode.UNAVAILABLE, "it may have run"))
            elif action == 4:
                server.drop()
            elif action == 5:
                server.factory.drain(grace=rng.choice([0.2, 5.0]))
                # ... and the restarted server behind the same endpoint.
                server.factory = type(server.factory)(server.router, clock=self.net.clock)
            elif action == 6:
                server.refusing = not server.refusing
            elif action == 7 and calls:
                calls[rng.randrange(len(calls))].cancel()
            self.net.pump()
            self.net.advance(rng.choice([0, 0.01, 0.1, 0.6]))
        for server in servers:
            server.refusing = False
        for _ in range(40):
            for d in running:
                if not d.called:
                    d.callback(b"ok")
            running.clear()
            self.net.advance(0.5)
        self.assertEqual([d for d in calls if not d.called], [], f"seed {seed}: calls hang")
        self.assertEqual({k: n for k, n in started.items() if n > 1}, {}, f"seed {seed}")
        self.stats.append(channel.stats)
        closing = channel.close()
        self.net.pump()
        self.net.advance(10)
        self.successResultOf(closing)
        for server in servers:
            server.drop()
        self.net.advance(100)

    def test_random_sequences(self) -> None:
        """Fifty seeded sequences: no non-idempotent call starts twice, and nothing hangs."""
        self.stats: list[ChannelStats] = []
        for seed in range(50):
            self.run_sequence(seed)
        # The sequences did what they are for: retries, ejections, reconnects.
        for counter in ("retries", "ejections", "reconnects", "succeeded", "failed"):
            self.assertGreater(sum(getattr(s, counter) for s in self.stats), 20, counter)


class WhenReadyTests(ChannelTestCase):
    """when_ready() Deferreds fire once, and a cancelled one never fires with the channel."""

    def test_cancel_a_sibling_waiter(self) -> None:
        """A when_ready() callback that cancels another waiter cancels it cleanly."""
        (a,) = self.servers("a")
        a.refusing = True
        channel = self.channel([a], reconnect=Backoff(initial=1.0, jitter=0.0))
        first, second = channel.when_ready(), channel.when_ready()
        first.addCallback(lambda _: second.cancel())
        a.refusing = False
        self.net.advance(1.0)
        self.assertIs(self.successResultOf(first), None)
        self.failureResultOf(second, CancelledError)

    def test_silent_server_is_given_up(self) -> None:
        """A server that accepts but never sends SETTINGS is given up after preface_timeout."""
        (a,) = self.servers("a")
        a.refusing = True
        channel = self.channel([a], reconnect=Backoff(initial=1.0, jitter=0.0))
        d = self.call(channel, "echo", b"x", timeout=15.0)
        a.refusing = False
        self.net.clock.advance(1.0)  # connects; its greeting is never delivered
        (link,) = a.live
        link.client_transport.pauseProducing()
        self.net.advance(9.99)
        self.assertEqual(channel.backends[0].state, "connecting")
        self.net.advance(0.01)  # 10 s: Limits.preface_timeout
        self.assertEqual(
            channel.why_not_ready(),
            f"{a!r}: UNAVAILABLE: connection closed during the handshake: no handshake within 10 s",
        )
        # A loss before the handshake counts as a failed attempt: 1.6 s, not 1.
        self.net.advance(1.59)
        self.assertNoResult(d)
        self.net.advance(0.01)  # the next connection is a working one
        self.assertEqual(self.successResultOf(d).body, b"x")


class ChurnTests(ChannelTestCase):
    """Endpoints removed and added again, many times, leave nothing behind."""

    def test_remove_and_add_again(self) -> None:
        """A hundred removals and re-additions keep one backend, one connection, no stray timer."""
        a, b = self.servers("a", "b")
        endpoints = EndpointSet([a, b])
        channel = self.channel(endpoints, health_check_interval=1.0)
        for n in range(100):
            endpoints.update([b] if n % 2 == 0 else [a, b])
            self.net.advance(0.3)
        self.assertEqual([i.endpoint for i in channel.backends], [repr(a), repr(b)])
        self.assertEqual(len(a.live), 1)
        self.assertEqual(channel._retiring, [])
        # A health timer per backend, a liveness timer per end of each connection.
        self.assertEqual(len(self.net.clock.getDelayedCalls()), len(self.net.links) * 2 + 2)
        self.assertEqual(self.successResultOf(self.call(channel, "echo", b"x")).body, b"x")


class CrossedGoAwayTests(ChannelTestCase):
    """A request that crossed its server's GOAWAY fails retry-safe at the GOAWAY, as a drain's."""

    def test_crossed_request_resent_at_once_outside_the_budget(self) -> None:
        """A request crossing the GOAWAY is resent at once, charges no budget, accrues nothing."""
        a, b = self.servers("a", "b")
        budget = RetryBudget(max_tokens=2)
        channel = self.channel([a, b], budget=budget, failure_threshold=1, random=fixed(0.0, 0.0))
        # The GOAWAY is on its way when the call goes to a: they cross.
        a.factory.drain()
        d = channel.call("who")
        self.net.pump()
        self.net.advance(0)
        self.assertEqual(self.successResultOf(d).body, b"b")
        self.assertEqual((channel.stats.retries, channel.stats.retries_throttled), (1, 0))
        self.assertEqual(budget.tokens, 2.0)
        self.assertEqual(channel.stats.ejections, 0)
        self.assertEqual(channel.backends[0].failures, 0)
