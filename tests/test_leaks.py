"""
Nothing outlives its connection: after hundreds of in-memory connections
with calls that succeed, are cancelled, time out, are queued, are refused
by the concurrency limit and are cut off by a close, no timer, pending
call, running responder or per-connection object remains.

Each connection is exercised inside a helper that returns only weak
references, so that the test's own frame holds nothing; the references
must all be dead after ``gc.collect()``.  When one is not, the failure
message names what holds it (``gc.get_referrers``).
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import (
    AutoFormat,
    BinaryFormat,
    Call,
    ConnectionClosed,
    DeadlineExceeded,
    Limits,
    LineFormat,
    RemoteError,
    Router,
    ServerFactory,
    StatusCode,
    StatusError,
)
from twisted_reqresp.testing import ConnectedPair, connected_pair
from twisted_reqresp.wire import Connection

#: Connections per test: "several hundred".
CONNECTIONS = 300

_SERVER_LIMITS = Limits(max_concurrent=4, ping_interval=20.0, ping_timeout=5.0, max_deadline=60.0)
_CLIENT_LIMITS = Limits(ping_interval=20.0, ping_timeout=5.0, max_queued_calls=3)


class _Service:
    """``echo`` and ``wait`` methods; ``wait``'s Deferreds are tracked weakly."""

    def __init__(self) -> None:
        self.router = Router()
        self.router.add("echo", lambda call: call.body)
        self.router.add("wait", self._wait)
        self.router.add("fail", self._fail)
        #: Deferreds of ``wait`` calls not answered yet.
        self.waiting: list[Deferred[Any]] = []
        #: Weak references to every Deferred ``wait`` ever returned.
        self.made: list[weakref.ref[Deferred[Any]]] = []

    def _wait(self, call: Call) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.waiting.append(d)
        self.made.append(weakref.ref(d))
        return d

    def _fail(self, call: Call) -> None:
        raise StatusError(StatusCode.FAILED_PRECONDITION, "not now")

    def answer_all(self) -> None:
        """Answer every ``wait`` still running (those not cancelled)."""
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            if not d.called:
                d.callback(b"late")


def _live(cls: type) -> set[int]:
    """:returns: the ids of the live instances of exactly ``cls``, after a collection."""
    gc.collect()
    return {id(obj) for obj in gc.get_objects() if type(obj) is cls}


def _holders(obj: object, ignore: list[object], depth: int = 3) -> str:
    """
    Describe what refers to ``obj``, a few levels up, for a failure message
    (the walk's own bookkeeping, frames and ``ignore`` are left out).
    """
    lines: list[str] = []
    todo: list[tuple[object, int]] = [(obj, 0)]
    skip = {id(lines), id(todo), id(ignore), *map(id, ignore)}
    while todo and len(lines) < 40:
        target, level = todo.pop()
        referrers = gc.get_referrers(target)
        skip.add(id(referrers))
        for referrer in referrers:
            if id(referrer) in skip or type(referrer).__name__ in ("frame", "list_iterator"):
                continue
            text = repr(referrer)
            text = text if len(text) <= 160 else text[:160] + "..."
            lines.append("  " * level + f"{type(referrer).__qualname__}: {text}")
            if level < depth:
                todo.append((referrer, level + 1))
        del referrers
    return "\n".join(lines)


class LeakTests(SynchronousTestCase):
    """Connections that come and go leave nothing behind."""

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.service = _Service()

    # -- one connection's life -------------------------------------------------------------

    def _pair(self, factory: ServerFactory, client_wire: Any) -> ConnectedPair:
        return connected_pair(
            self.service.router,
            factory=factory,
            clock=self.clock,
            wire=client_wire,
            client_limits=_CLIENT_LIMITS,
        )

    def _calls(self, pair: ConnectedPair, binary: bool) -> None:
        """Calls that succeed, fail, are cancelled, time out and are queued."""
        client = pair.client
        service = self.service
        echoes = [client.call("echo", b"%d" % n) for n in range(3)]
        failing = client.call("fail")
        missing = client.call("no-such-method")
        pair.pump()
        self.assertEqual([self.successResultOf(d).body for d in echoes], [b"0", b"1", b"2"])
        failed = self.failureResultOf(failing, RemoteError).value
        self.assertEqual(failed.code, StatusCode.FAILED_PRECONDITION)
        missed = self.failureResultOf(missing, RemoteError).value
        self.assertEqual(missed.code, StatusCode.NOT_FOUND)
        del failed, missed

        if binary:
            ping = client.ping()
            pair.pump()
            self.successResultOf(ping)

        # Cancelled by the client (the binary format tells the server, whose
        # responder is cancelled; the line format cannot).
        cancelled = client.call("wait")
        pair.pump()
        cancelled.cancel()
        self.failureResultOf(cancelled, CancelledError)
        pair.pump()

        # Timed out by the client (and, in the binary format, by the
        # server, since the timeout travels as the deadline).
        timed_out = client.call("wait", timeout=2.0)
        pair.pump()
        self.clock.advance(2.0)
        pair.pump()
        self.failureResultOf(timed_out, DeadlineExceeded)

        # Answered by the server later; the line format, which answers in
        # order, needs the abandoned calls answered first.
        later = client.call("wait")
        pair.pump()
        service.answer_all()
        pair.pump()
        self.assertEqual(self.successResultOf(later).body, b"late")

        # Queued while the server is not reading, one of them cancelled.
        producer = pair.client_transport.producer
        producer.pauseProducing()
        queued = [client.call("echo", b"q%d" % n) for n in range(3)]
        overflow = client.call("echo", b"too many")
        refused = self.failureResultOf(overflow, StatusError).value
        self.assertEqual(refused.code, StatusCode.RESOURCE_EXHAUSTED)
        del refused
        self.assertEqual(len(pair.client_protocol.queued), 3)
        queued[1].cancel()
        self.failureResultOf(queued[1], CancelledError)
        producer.resumeProducing()
        pair.pump()
        self.assertEqual(self.successResultOf(queued[0]).body, b"q0")
        self.assertEqual(self.successResultOf(queued[2]).body, b"q2")
        self.assertEqual(pair.client_protocol.queued, type(pair.client_protocol.queued)())

    def _end(self, pair: ConnectedPair, how: int, binary: bool) -> None:
        """
        Close the connection one of four ways, with more calls running
        than the server's concurrency limit: the TCP connection drops; the
        client closes in order; (binary) the server gives up on garbage or
        (line) closes an idle connection; (binary) both sides give up on a
        peer that stopped answering PINGs or (line) the client aborts.
        """
        client = pair.client
        running = [client.call("wait") for _ in range(6)]
        pair.pump()
        self.assertEqual(len(pair.server.running), 4)
        if how == 0:
            pair.disconnect()  # the TCP connection drops
        elif how == 1:
            # In order: the close waits for the running calls to finish (the
            # server reads the last two once the first four are answered).
            closed = client.close()
            pair.pump()
            self.assertNoResult(closed)
            for _ in range(2):
                self.service.answer_all()
                pair.pump()
            self.successResultOf(closed)
        elif how == 2 and binary:
            # The server reads nothing while at its concurrency limit: answer
            # four calls so that it reads again (and starts the last two).
            self.service.answer_all()
            pair.pump()
            self.assertEqual(len(pair.server.running), 2)
            pair.server.dataReceived(b"\xff" * 20)  # garbage: the server gives up
            pair.pump()
        elif how == 2 or binary:
            for _ in range(2):
                self.service.answer_all()
                pair.pump()
            if binary:
                # Neither side reads: each pings, hears nothing and gives up.
                for _ in range(3):
                    self.clock.advance(10.0)
            else:
                # The server closes an idle line-format connection.
                self.clock.advance(_SERVER_LIMITS.idle_timeout or 0)
            pair.pump()
        else:
            client.abort()
            pair.pump()
        self.assertIsNotNone(pair.client_protocol.lost, (how, binary))
        finished = 0 if how == 0 or (how == 3 and not binary) else 4 if how == 2 and binary else 6
        for d in running[:finished]:
            self.assertEqual(self.successResultOf(d).body, b"late")
        for d in running[finished:]:
            self.failureResultOf(d, ConnectionClosed)
        self.service.answer_all()
        late = client.call("echo")
        self.failureResultOf(late, ConnectionClosed)

    def _one_connection(
        self, factory: ServerFactory, client_wire: Any, how: int
    ) -> list[tuple[str, weakref.ref[Any]]]:
        """Open, use and close one connection; return weak references to its parts."""
        pair = self._pair(factory, client_wire)
        binary = isinstance(client_wire, BinaryFormat)
        self._calls(pair, binary)
        self._end(pair, how, binary)

        # Nothing of this connection is left running or pending.
        self.assertEqual(pair.server.running, {})
        self.assertEqual(pair.server.conn.in_flight, set())
        self.assertEqual(pair.client_protocol.pending, {})
        self.assertEqual(len(pair.client_protocol.queued), 0)
        self.assertEqual(pair.client_protocol.conn.in_flight, set())
        self.assertNotIn(pair.server, factory.connections)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.service.waiting, [])

        parts: dict[str, Any] = {
            "ServerProtocol": pair.server,
            "server Connection": pair.server.conn,
            "server Liveness": pair.server.liveness,
            "ClientProtocol": pair.client_protocol,
            "client Connection": pair.client_protocol.conn,
            "client Liveness": pair.client_protocol.liveness,
            "Client": pair.client,
            "ConnectedPair": pair,
            "server transport": pair.server_transport,
            "client transport": pair.client_transport,
        }
        refs = []
        for name, obj in parts.items():
            try:
                refs.append((name, weakref.ref(obj)))
            except TypeError:
                # A class compiled with mypyc (the hot path's Connection)
                # takes no weak references: _many counts its live instances
                # instead, which the garbage collector tracks.
                self.assertIs(type(obj), Connection, name)
                self.assertTrue(gc.is_tracked(obj), name)
                self.unreferenced.add(id(obj))
        return refs

    # -- the tests -----------------------------------------------------------------------

    def _many(self, wire: Any, client_wires: list[Any]) -> None:
        factory = ServerFactory(
            self.service.router, wire=wire, limits=_SERVER_LIMITS, clock=self.clock
        )
        refs: list[tuple[str, weakref.ref[Any]]] = []
        self.unreferenced: set[int] = set()
        for i in range(CONNECTIONS):
            client_wire = client_wires[i % len(client_wires)]
            refs += self._one_connection(factory, client_wire, (i // len(client_wires)) % 4)

        self.assertEqual(factory.connections, set())
        stats = factory.stats
        self.assertEqual(stats.connections_open, 0)
        self.assertEqual(stats.connections_total, CONNECTIONS)
        self.assertEqual(factory._per_peer, {})
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.service.waiting, [])
        self.assertGreaterEqual(len(self.service.made), CONNECTIONS * 7)
        refs += [("responder Deferred", r) for r in self.service.made]
        self.assertAllDead(refs)
        # An id is unique among live objects: a Connection alive now with the
        # id of one made here is that one (those made later here are dead too,
        # or caught the same way).
        self.assertEqual(self.unreferenced & _live(Connection), set(), "Connections survived")

    def assertAllDead(self, refs: list[tuple[str, weakref.ref[Any]]]) -> None:
        """Every weakly referenced object is gone after a collection."""
        gc.collect()
        alive = [(name, r) for name, r in refs if r() is not None]
        if alive:
            name, ref = alive[0]
            obj = ref()
            report = _holders(obj, [refs, alive, obj])
            del obj
            self.fail(
                f"{len(alive)} of {len(refs)} objects survived, "
                f"{sorted({n for n, _ in alive})}; the first ({name}) is held by:\n{report}"
            )

    def test_binary(self) -> None:
        """Hundreds of binary connections, used every way and closed every way, leave nothing."""
        self._many(BinaryFormat(), [BinaryFormat()])

    def test_line(self) -> None:
        """Hundreds of line-format connections leave nothing."""
        self._many(LineFormat(), [LineFormat()])

    def test_auto(self) -> None:
        """Hundreds of connections to an AutoFormat server, in both formats, leave nothing."""
        self._many(AutoFormat(), [BinaryFormat(), LineFormat()])


class PairClockTests(SynchronousTestCase):
    """connected_pair never leaves a timer on the global reactor."""

    def test_factory_without_clock_gets_the_pairs(self) -> None:
        """A ServerFactory made without a clock runs its timers on the pair's clock."""
        from twisted.internet import reactor

        from twisted_reqresp import Router, ServerFactory
        from twisted_reqresp.testing import connected_pair

        before = set(map(id, reactor.getDelayedCalls()))  # type: ignore[attr-defined]
        router = Router()
        router.add("echo", lambda call: call.body)
        pair = connected_pair(router, factory=ServerFactory(router))
        d = pair.client.call("echo", b"x")
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, b"x")
        after = [
            c
            for c in reactor.getDelayedCalls()  # type: ignore[attr-defined]
            if id(c) not in before
        ]
        self.assertEqual(after, [])
        self.assertTrue(pair.clock.getDelayedCalls())  # the keepalive, on the pair's clock
        pair.disconnect()
