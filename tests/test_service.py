"""
The default service (``twistd reqresp`` without ``--responder``), driven
through the in-memory pair: echo, ping, methods, stats and sleep.
"""

from __future__ import annotations

import json

from twisted.internet.defer import CancelledError
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_reqresp import DeadlineExceeded, RemoteError, ServerStats, StatusCode
from twisted_reqresp._app.service import MAX_SLEEP, default_factory, default_router
from twisted_reqresp.codecs import JSON
from twisted_reqresp.interfaces import IResponder
from twisted_reqresp.testing import ConnectedPair, connected_pair


def _pair() -> ConnectedPair:
    clock = MemoryReactorClock()
    factory = default_factory(clock=clock)
    return connected_pair(factory.responder_factory, factory=factory, clock=clock)


class DefaultRouterTests(SynchronousTestCase):
    """The router itself, apart from any connection."""

    def test_provides_iresponder(self) -> None:
        """The default router is a valid IResponder provider."""
        router = default_router(lambda: ServerStats(MemoryReactorClock()), MemoryReactorClock())
        self.assertTrue(verifyObject(IResponder, router))

    def test_method_names(self) -> None:
        """The default service has exactly echo, methods, ping, sleep and stats."""
        router = default_router(lambda: ServerStats(MemoryReactorClock()), MemoryReactorClock())
        self.assertEqual(router.methods(), ["echo", "methods", "ping", "sleep", "stats"])

    def test_clock_resolved_late(self) -> None:
        """A clock given as a function is looked up only when sleep is called."""
        clock = MemoryReactorClock()
        looked_up: list[int] = []

        def get_clock() -> MemoryReactorClock:
            looked_up.append(1)
            return clock

        router = default_router(lambda: ServerStats(clock), get_clock)
        pair = connected_pair(router, clock=clock)
        self.assertEqual(looked_up, [])
        d = pair.client.call("sleep", 1, codec=JSON)
        pair.pump()
        self.assertEqual(looked_up, [1])
        clock.advance(1)
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, 1)


class EchoPingMethodsTests(SynchronousTestCase):
    """The simple methods answer at once."""

    def test_echo(self) -> None:
        """echo answers with the request's bytes, unchanged."""
        pair = _pair()
        body = bytes(range(256))
        d = pair.client.call("echo", body)
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, body)

    def test_echo_empty(self) -> None:
        """echo of an empty body is an empty body."""
        pair = _pair()
        d = pair.client.call("echo")
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, b"")

    def test_ping(self) -> None:
        """ping answers pong whatever the body."""
        pair = _pair()
        d = pair.client.call("ping", b"anything")
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, b"pong")

    def test_methods(self) -> None:
        """methods answers the sorted method names as a JSON list."""
        pair = _pair()
        d = pair.client.call("methods")
        pair.pump()
        self.assertEqual(
            json.loads(self.successResultOf(d).body),
            ["echo", "methods", "ping", "sleep", "stats"],
        )

    def test_methods_follows_router(self) -> None:
        """A method added to the router later appears in methods' answer."""
        clock = MemoryReactorClock()
        router = default_router(lambda: ServerStats(clock), clock)
        router.add("zzz", lambda call: b"")
        router.add("aaa", lambda call: b"")
        pair = connected_pair(router, clock=clock)
        d = pair.client.call("methods", None, codec=JSON)
        pair.pump()
        names = self.successResultOf(d).body
        self.assertEqual(names, sorted(names))
        self.assertEqual(names[0], "aaa")
        self.assertEqual(names[-1], "zzz")

    def test_unknown_method(self) -> None:
        """A method the default service lacks is answered NOT_FOUND."""
        pair = _pair()
        d = pair.client.call("nope")
        pair.pump()
        self.assertEqual(self.failureResultOf(d, RemoteError).value.code, StatusCode.NOT_FOUND)


class StatsTests(SynchronousTestCase):
    """stats reports the counters of the factory serving it."""

    def test_counts(self) -> None:
        """Connections, requests and errors are counted, and uptime follows the clock."""
        pair = _pair()
        pair.clock.advance(5)
        pair.client.call("echo", b"x")
        unknown = pair.client.call("nope")
        pair.pump()
        self.failureResultOf(unknown, RemoteError)
        d = pair.client.call("stats", None, codec=JSON)
        pair.pump()
        stats = self.successResultOf(d).body
        self.assertEqual(stats["connections_open"], 1)
        self.assertEqual(stats["connections_total"], 1)
        # The stats call itself is the third request.
        self.assertEqual(stats["requests_total"], 3)
        self.assertEqual(stats["errors_total"], 1)
        self.assertEqual(stats["uptime"], 5.0)

    def test_as_dict_keys(self) -> None:
        """The answer carries exactly the keys of ServerStats.as_dict()."""
        pair = _pair()
        d = pair.client.call("stats", None, codec=JSON)
        pair.pump()
        self.assertEqual(set(self.successResultOf(d).body), set(pair.factory.stats.as_dict()))

    def test_second_connection(self) -> None:
        """A second connection to the same factory is counted too."""
        first = _pair()
        second = connected_pair(
            first.factory.responder_factory, factory=first.factory, clock=first.clock
        )
        first.disconnect()
        d = second.client.call("stats", None, codec=JSON)
        second.pump()
        stats = self.successResultOf(d).body
        self.assertEqual((stats["connections_open"], stats["connections_total"]), (1, 2))


class SleepTests(SynchronousTestCase):
    """sleep answers after the given time, and can be cancelled."""

    def tearDown(self) -> None:
        # Nothing may be left scheduled once the connection is gone: a leaked
        # timer is a leaked request.
        for pair in getattr(self, "pairs", []):
            pair.disconnect()
            self.assertEqual(pair.clock.getDelayedCalls(), [])

    def _pair(self) -> ConnectedPair:
        pair = _pair()
        self.pairs = [*getattr(self, "pairs", []), pair]
        return pair

    def test_sleep(self) -> None:
        """sleep answers its argument once that many seconds have passed."""
        pair = self._pair()
        d = pair.client.call("sleep", 2.5, codec=JSON)
        pair.pump()
        pair.clock.advance(2.4)
        pair.pump()
        self.assertNoResult(d)
        pair.clock.advance(0.1)
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, 2.5)

    def test_sleep_zero(self) -> None:
        """sleep 0 answers on the next clock tick."""
        pair = self._pair()
        d = pair.client.call("sleep", 0, codec=JSON)
        pair.pump()
        pair.clock.advance(0)
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, 0)

    def test_sleep_cancelled(self) -> None:
        """Cancelling the call cancels the server's timer."""
        pair = self._pair()
        d = pair.client.call("sleep", 30, codec=JSON)
        pair.pump()
        timers = len(pair.clock.getDelayedCalls())
        self.assertEqual(len(pair.server.running), 1)
        d.cancel()
        pair.pump()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(pair.server.running, {})
        self.assertEqual(len(pair.clock.getDelayedCalls()), timers - 1)

    def test_sleep_deadline(self) -> None:
        """A call timeout shorter than the sleep fails the call and stops the timer."""
        pair = self._pair()
        d = pair.client.call("sleep", 30, codec=JSON, timeout=1)
        pair.pump()
        pair.clock.advance(1)
        pair.pump()
        self.failureResultOf(d, DeadlineExceeded)
        self.assertEqual(pair.server.running, {})

    def test_sleep_connection_lost(self) -> None:
        """A lost connection cancels a sleep in progress."""
        pair = self._pair()
        pair.client.call("sleep", 30, codec=JSON).addErrback(lambda _: None)
        pair.pump()
        pair.disconnect()
        self.assertEqual(pair.server.running, {})

    def test_sleep_max(self) -> None:
        """The longest sleep allowed is accepted."""
        pair = self._pair()
        d = pair.client.call("sleep", MAX_SLEEP, codec=JSON)
        pair.pump()
        pair.clock.advance(MAX_SLEEP)
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, MAX_SLEEP)

    def test_sleep_bad_arguments(self) -> None:
        """Anything but a number from 0 to MAX_SLEEP is answered INVALID_ARGUMENT."""
        pair = self._pair()
        for body in [b"", b'"1"', b"true", b"[1]", b"-1", b"61", b"NaN", b"Infinity", b"{"]:
            with self.subTest(body=body):
                d = pair.client.call("sleep", body)
                pair.pump()
                error = self.failureResultOf(d, RemoteError).value
                self.assertEqual(error.code, StatusCode.INVALID_ARGUMENT)
        self.assertEqual(pair.server.running, {})
