"""
The default service (``twistd reqresp`` without ``--responder``), driven
through the in-memory pair: echo, ping, methods, stats and sleep, and the
streaming count and sum.
"""

from __future__ import annotations

import json

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IConsumer
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_reqresp import (
    DeadlineExceeded,
    Limits,
    RemoteError,
    ServerStats,
    StatusCode,
    StreamingCall,
)
from twisted_reqresp._app import service
from twisted_reqresp._app.service import MAX_COUNT, MAX_SLEEP, default_factory, default_router
from twisted_reqresp._core.line import LineFormat
from twisted_reqresp.codecs import JSON
from twisted_reqresp.interfaces import IResponder
from twisted_reqresp.testing import ConnectedPair, connected_pair

#: Both sides offer streaming calls, as ``twistd reqresp`` and ``reqresp stream`` do.
STREAMING = Limits(stream_credit=65536)


def _pair() -> ConnectedPair:
    clock = MemoryReactorClock()
    factory = default_factory(clock=clock, limits=STREAMING)
    return connected_pair(
        factory.responder_factory, factory=factory, clock=clock, client_limits=STREAMING
    )


class DefaultRouterTests(SynchronousTestCase):
    """The router itself, apart from any connection."""

    def test_provides_iresponder(self) -> None:
        """The default router is a valid IResponder provider."""
        router = default_router(lambda: ServerStats(MemoryReactorClock()), MemoryReactorClock())
        self.assertTrue(verifyObject(IResponder, router))

    def test_method_names(self) -> None:
        """The default service has exactly count, echo, methods, ping, sleep, stats and sum."""
        router = default_router(lambda: ServerStats(MemoryReactorClock()), MemoryReactorClock())
        self.assertEqual(
            router.methods(), ["count", "echo", "methods", "ping", "sleep", "stats", "sum"]
        )

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
            ["count", "echo", "methods", "ping", "sleep", "stats", "sum"],
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


def _read_all(test: SynchronousTestCase, pair: ConnectedPair, call: StreamingCall) -> list[bytes]:
    """:returns: every message ``call`` has received so far, up to its end."""
    messages: list[bytes] = []
    for _ in range(MAX_COUNT):
        d = call.read()
        pair.pump()
        message = test.successResultOf(d)
        if message is None:
            return messages
        messages.append(message)
    raise AssertionError("the stream never ended")


class CountTests(SynchronousTestCase):
    """count streams the numbers 1 to N, DELAY_MS apart, within its bounds."""

    def _refused(self, pair: ConnectedPair, body: bytes) -> str:
        call = pair.client.stream("count", body)
        pair.pump()
        error = self.failureResultOf(call.result(), RemoteError).value
        self.assertEqual(error.code, StatusCode.INVALID_ARGUMENT)
        self.failureResultOf(call.read(), RemoteError)
        message: str = error.message
        return message

    def test_count(self) -> None:
        """count 5 sends the messages 1 to 5, then an empty OK."""
        pair = _pair()
        call = pair.client.stream("count", b"5")
        self.assertEqual(_read_all(self, pair, call), [b"1", b"2", b"3", b"4", b"5"])
        self.assertEqual(self.successResultOf(call.result()).body, b"")
        self.assertEqual(pair.server.running, {})

    def test_count_zero(self) -> None:
        """count 0 sends no message and answers OK."""
        pair = _pair()
        call = pair.client.stream("count", b"0")
        self.assertEqual(_read_all(self, pair, call), [])
        self.assertEqual(self.successResultOf(call.result()).body, b"")

    def test_count_bound(self) -> None:
        """MAX_COUNT messages are accepted; one more is INVALID_ARGUMENT naming the bound."""
        self.assertEqual(service._count_arguments(b"%d" % MAX_COUNT), (MAX_COUNT, 0))
        self.assertEqual(service._count_arguments(b"%d" % (MAX_COUNT - 1)), (MAX_COUNT - 1, 0))
        pair = _pair()
        message = self._refused(pair, b"%d" % (MAX_COUNT + 1))
        self.assertEqual(message, f"count sends at most {MAX_COUNT} messages, not {MAX_COUNT + 1}")

    def test_count_bound_streamed(self) -> None:
        """With the bound lowered to 3, count 3 streams 3 messages and count 4 is refused."""
        self.patch(service, "MAX_COUNT", 3)
        pair = _pair()
        for n, expected in [(2, [b"1", b"2"]), (3, [b"1", b"2", b"3"])]:
            call = pair.client.stream("count", b"%d" % n)
            self.assertEqual(_read_all(self, pair, call), expected)
        self.assertIn("at most 3 messages, not 4", self._refused(pair, b"4"))

    def test_delay(self) -> None:
        """count N DELAY_MS sends the first message at once and each next one DELAY_MS later."""
        pair = _pair()
        call = pair.client.stream("count", b"3 250")
        got: list[bytes] = []
        call.deliver_to(_Collector(got))
        pair.pump()
        self.assertEqual(got, [b"1"])
        pair.clock.advance(0.249)
        pair.pump()
        self.assertEqual(got, [b"1"])
        pair.clock.advance(0.001)
        pair.pump()
        self.assertEqual(got, [b"1", b"2"])
        pair.clock.advance(0.25)
        pair.pump()
        self.assertEqual(got, [b"1", b"2", b"3"])
        self.assertEqual(self.successResultOf(call.result()).body, b"")
        self.assertEqual(_timers(pair), [])

    def test_delay_bound(self) -> None:
        """The delays may add up to MAX_SLEEP seconds, not a millisecond more."""
        limit_ms = int(MAX_SLEEP * 1000)
        self.assertEqual(service._count_arguments(b"2 %d" % limit_ms), (2, MAX_SLEEP))
        self.assertEqual(service._count_arguments(b"61 1000"), (61, 1.0))
        self.assertEqual(service._count_arguments(b"1 999999999"), (1, 999999.999))
        pair = _pair()
        message = self._refused(pair, b"2 %d" % (limit_ms + 1))
        self.assertEqual(message, f"count waits at most {MAX_SLEEP:g} s in all, not 1 x 60001 ms")
        self.assertIn("not 61 x 1000 ms", self._refused(pair, b"62 1000"))

    def test_cancel_stops_the_timer(self) -> None:
        """Cancelling a count between two messages stops it and leaves no timer behind."""
        pair = _pair()
        call = pair.client.stream("count", b"10 1000")
        self.assertEqual(self.successResultOf(_first(pair, call)), b"1")
        call.cancel()
        pair.pump()
        self.failureResultOf(call.result(), CancelledError)
        self.assertEqual(pair.server.running, {})
        self.assertEqual(_timers(pair), [])

    def test_deadline(self) -> None:
        """A timeout shorter than the delays fails the call with DeadlineExceeded."""
        pair = _pair()
        call = pair.client.stream("count", b"10 1000", timeout=2.5)
        pair.pump()
        pair.clock.advance(2.5)
        pair.pump()
        self.failureResultOf(call.result(), DeadlineExceeded)
        self.assertEqual(pair.server.running, {})

    def test_bad_arguments(self) -> None:
        """A body that is not N [DELAY_MS] is INVALID_ARGUMENT; the connection stays open."""
        pair = _pair()
        for body in [b"", b"x", b"-1", b"1.5", b"1 2 3", b"1 -5", b"\xff", b"9" * 5000]:
            with self.subTest(body=body):
                self.assertIn("count takes N [DELAY_MS]", self._refused(pair, body))
        d = pair.client.call("ping")
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, b"pong")

    def test_called_as_unary(self) -> None:
        """count called as a unary call is INVALID_ARGUMENT saying its kind, without running."""
        pair = _pair()
        d = pair.client.call("count", b"3")
        pair.pump()
        error = self.failureResultOf(d, RemoteError).value
        self.assertEqual(error.code, StatusCode.INVALID_ARGUMENT)
        self.assertIn("server_stream", error.message)


class SumTests(SynchronousTestCase):
    """sum adds the JSON numbers the client streams and answers the total."""

    def _sum(self, pair: ConnectedPair, *messages: bytes) -> StreamingCall:
        call = pair.client.stream("sum", kind="client_stream")
        for message in messages:
            call.write(message)
        call.end()
        pair.pump()
        return call

    def test_sum(self) -> None:
        """Integers and floats add up; the total is the answer, as JSON."""
        pair = _pair()
        call = self._sum(pair, b"1", b"2.5", b"-3", b" 10 ")
        self.assertEqual(json.loads(self.successResultOf(call.result()).body), 10.5)

    def test_empty_stream(self) -> None:
        """No message sums to 0."""
        pair = _pair()
        self.assertEqual(self.successResultOf(self._sum(pair).result()).body, b"0")

    def test_big_integers_exact(self) -> None:
        """Integers add exactly, past what a double holds."""
        pair = _pair()
        call = self._sum(pair, b"%d" % 2**60, b"1")
        self.assertEqual(self.successResultOf(call.result()).body, b"%d" % (2**60 + 1))

    def test_not_a_number(self) -> None:
        """A message that is not a JSON number is INVALID_ARGUMENT naming its index, from 1."""
        pair = _pair()
        for bad in [b"abc", b"true", b'"1"', b"NaN", b"Infinity", b"1e400", b"[1]", b"", b"\xff"]:
            with self.subTest(message=bad):
                call = self._sum(pair, b"1", b"2", bad, b"4")
                error = self.failureResultOf(call.result(), RemoteError).value
                self.assertEqual(error.code, StatusCode.INVALID_ARGUMENT)
                self.assertIn("message 3 is", error.message)
        self.assertEqual(pair.server.running, {})
        self.assertEqual(pair.server.conn.unacknowledged, 0)

    def test_overflow(self) -> None:
        """A total past the largest double is INVALID_ARGUMENT, not Infinity."""
        pair = _pair()
        call = self._sum(pair, b"1e308", b"1e308")
        error = self.failureResultOf(call.result(), RemoteError).value
        self.assertEqual(error.code, StatusCode.INVALID_ARGUMENT)
        self.assertIn("overflows", error.message)

    def test_many_messages_bounded(self) -> None:
        """A stream far larger than the credit is summed, the server holding within its credit."""
        pair = _pair()
        call = pair.client.stream("sum", kind="client_stream")
        total = 0
        for i in range(20_000):
            call.write(b"%d" % i)
            total += i
            if i % 1000 == 0:
                pair.pump()
                self.assertLessEqual(pair.server.conn.unacknowledged, 65536 + 1024)
        call.end()
        pair.pump()
        self.assertEqual(self.successResultOf(call.result()).body, b"%d" % total)


class MethodKindsTests(SynchronousTestCase):
    """reqresp.methods lists the streaming methods with their kinds."""

    def test_kinds(self) -> None:
        """count is server_stream, sum client_stream, and the others unary."""
        pair = _pair()
        d = pair.client.call("reqresp.methods", None, codec=JSON)
        pair.pump()
        kinds = {m["name"]: m["kind"] for m in self.successResultOf(d).body["methods"]}
        self.assertEqual(kinds["count"], "server_stream")
        self.assertEqual(kinds["sum"], "client_stream")
        self.assertEqual(
            {kinds[name] for name in ("echo", "methods", "ping", "sleep", "stats")}, {"unary"}
        )


def _timers(pair: ConnectedPair) -> list[object]:
    """:returns: the clock's pending timers, but the connections' liveness checks."""
    return [c for c in pair.clock.getDelayedCalls() if "Liveness" not in repr(c)]


def _first(pair: ConnectedPair, call: StreamingCall) -> Deferred[bytes]:
    d = call.read()
    pair.pump()
    return d


@implementer(IConsumer)
class _Collector:
    """An IConsumer that keeps what it is written."""

    def __init__(self, into: list[bytes]) -> None:
        self.into = into
        self.producer: object = None

    def registerProducer(self, producer: object, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.into.append(data)


class LineFormatTests(SynchronousTestCase):
    """Over the line format, the streaming methods say to use the binary format."""

    def test_count_and_sum_unimplemented(self) -> None:
        """count and sum are answered UNIMPLEMENTED naming the binary format; echo still works."""
        clock = MemoryReactorClock()
        factory = default_factory(clock=clock, limits=STREAMING, wire=LineFormat())
        pair = connected_pair(
            factory.responder_factory, factory=factory, clock=clock, wire=LineFormat()
        )
        for method in ("count", "sum"):
            d = pair.client.call(method, b"3")
            pair.pump()
            error = self.failureResultOf(d, RemoteError).value
            self.assertEqual(
                (error.code, error.message),
                (
                    StatusCode.UNIMPLEMENTED,
                    f"method '{method}' streams: use the binary format",
                ),
            )
        d = pair.client.call("echo", b"still open")
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, b"still open")
