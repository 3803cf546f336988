"""
The client's call timeouts: one clock timer per connection for the
earliest deadline (not a ``DelayedCall`` per call), with the outcome of
``Deferred.addTimeout``: at its deadline an unanswered call is cancelled
(CANCEL sent) and fails with DeadlineExceeded; answered or cancelled first,
its timeout is forgotten.  A differential test runs random schedules
through both and requires the same outcomes at the same times and the same
bytes.
"""

from __future__ import annotations

from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import BINARY, DeadlineExceeded, Limits, Reply
from twisted_reqresp._adapters.client_protocol import ClientProtocol
from twisted_reqresp.wire import Cancel, Connection, Request, Role


def _timed_out(result: Any, timeout: float) -> Any:
    if isinstance(result, Failure) and result.check(CancelledError):
        raise DeadlineExceeded(f"no answer within {timeout:g} s")
    return result


class AddTimeoutProtocol(ClientProtocol):
    """The reference: a timer per call, with ``Deferred.addTimeout``."""

    def _time_out(self, d: Deferred[Reply], timeout: float) -> None:
        d.addTimeout(timeout, self.clock, onTimeoutCancel=_timed_out)


class Peer:
    """A client protocol on a StringTransport and the server's side, by hand."""

    def __init__(self, cls: type[ClientProtocol] = ClientProtocol) -> None:
        self.clock = MemoryReactorClock()
        limits = Limits(max_concurrent=4, max_queued_calls=100)
        self.protocol = cls(wire=BINARY, limits=limits, clock=self.clock)
        self.protocol.liveness.stop()
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.protocol.liveness.stop()
        self.server = Connection(Role.SERVER, BINARY, limits)
        self.events()
        self.protocol.dataReceived(self.server.data_to_send())
        self.protocol.liveness.stop()
        self.transport.clear()

    def events(self) -> list[Any]:
        """:returns: what the server reads of what the client wrote since last time."""
        self.server.receive_data(self.transport.value())
        self.transport.clear()
        out = []
        while (event := self.server.next_event()) is not None:
            out.append(event)
        return out

    def answer(self, rid: int) -> None:
        """Answer ``rid`` OK."""
        self.server.send_response(rid, b"ok")
        self.protocol.dataReceived(self.server.data_to_send())


def _outcome(d: Deferred[Any]) -> list[Any]:
    """:returns: a list that gets the Deferred's outcome when it fires."""
    seen: list[Any] = []

    def record(result: Any) -> None:
        if isinstance(result, Failure):
            seen.append((result.type.__name__, result.getErrorMessage()))
        else:
            seen.append(("ok", result.body))

    d.addBoth(record)
    return seen


class TimeoutTests(SynchronousTestCase):
    """Timed calls share one timer and fail as with Deferred.addTimeout."""

    def test_one_timer_for_many_calls(self) -> None:
        """Many calls with a timeout leave one delayed call on the clock; each fails
        with DeadlineExceeded at its own deadline, with a CANCEL sent, and none is left."""
        peer = Peer()
        outcomes = []
        for _ in range(3):
            outcomes.append(_outcome(peer.protocol.call("m", timeout=2.0)))
            peer.clock.advance(0.5)
        self.assertEqual(len(peer.clock.getDelayedCalls()), 1)
        peer.events()
        peer.clock.advance(0.5)  # t = 2.0: the first call's deadline
        self.assertEqual(
            outcomes[0], [("DeadlineExceeded", "DEADLINE_EXCEEDED: no answer within 2 s")]
        )
        self.assertEqual(outcomes[1:], [[], []])
        self.assertEqual(peer.events(), [Cancel(request_id=1)])
        peer.clock.advance(1.0)
        self.assertEqual([o[0][0] for o in outcomes], ["DeadlineExceeded"] * 3)
        self.assertEqual(peer.clock.getDelayedCalls(), [])

    def test_shorter_timeout_made_later_fires_first(self) -> None:
        """A call made later with a shorter timeout fails at its own deadline, before
        the earlier call's."""
        peer = Peer()
        long = _outcome(peer.protocol.call("long", timeout=10.0))
        short = _outcome(peer.protocol.call("short", timeout=1.0))
        peer.clock.advance(1.0)
        self.assertEqual(short, [("DeadlineExceeded", "DEADLINE_EXCEEDED: no answer within 1 s")])
        self.assertEqual(long, [])
        peer.clock.advance(9.0)
        self.assertEqual(long, [("DeadlineExceeded", "DEADLINE_EXCEEDED: no answer within 10 s")])
        self.assertEqual(peer.clock.getDelayedCalls(), [])

    def test_answered_calls_leave_no_timer(self) -> None:
        """Once every timed call is answered, no delayed call is left and nothing is
        cancelled later."""
        peer = Peer()
        d1 = _outcome(peer.protocol.call("a", timeout=1.0))
        d2 = _outcome(peer.protocol.call("b", timeout=1.0))
        peer.events()
        peer.answer(1)
        self.assertEqual(len(peer.clock.getDelayedCalls()), 1)
        peer.answer(2)
        self.assertEqual(peer.clock.getDelayedCalls(), [])
        peer.clock.advance(5)
        self.assertEqual((d1, d2), ([("ok", b"ok")], [("ok", b"ok")]))
        self.assertEqual(peer.events(), [])

    def test_cancelled_before_the_timeout_is_a_cancellation(self) -> None:
        """A timed call the caller cancels fails with CancelledError, not
        DeadlineExceeded."""
        peer = Peer()
        d = peer.protocol.call("m", timeout=1.0)
        seen = _outcome(d)
        d.cancel()
        self.assertEqual(seen[0][0], "CancelledError")
        self.assertEqual(peer.clock.getDelayedCalls(), [])

    def test_sibling_cancelled_by_a_timed_out_call(self) -> None:
        """Two calls due at the same time: the first one's timeout callback cancels the
        second, which fails with CancelledError, as with a timer per call."""
        for cls in (ClientProtocol, AddTimeoutProtocol):
            peer = Peer(cls)
            first = peer.protocol.call("a", timeout=1.0)
            second = peer.protocol.call("b", timeout=1.0)
            first.addErrback(lambda _, second=second: second.cancel())
            seen = _outcome(second)
            peer.clock.advance(1.0)
            with self.subTest(cls=cls.__name__):
                self.assertEqual(seen[0][0], "CancelledError")
                self.assertEqual(peer.clock.getDelayedCalls(), [])

    def test_deadline_heap_is_bounded(self) -> None:
        """Answered calls' deadlines are dropped: with one call left waiting, the heap
        holds at most 64 more entries than twice the calls still timed."""
        peer = Peer()
        waiting = peer.protocol.call("wait", timeout=100.0)
        waiting.addErrback(lambda _: None)
        peer.events()
        for _ in range(500):
            d = peer.protocol.call("m", timeout=100.0)
            rid = peer.events()[0].request_id
            peer.answer(rid)
            self.assertTrue(d.called)
            self.assertLessEqual(len(peer.protocol._deadlines), 64 + 2 * 1 + 1)
        peer.clock.advance(100)
        self.assertTrue(waiting.called)
        self.assertEqual(peer.clock.getDelayedCalls(), [])

    def test_connection_lost_leaves_no_timer(self) -> None:
        """Timed calls failed by a lost connection leave no delayed call."""
        peer = Peer()
        seen = _outcome(peer.protocol.call("m", timeout=1.0))
        peer.protocol.connectionLost(Failure(ConnectionError("gone")))
        self.assertEqual(seen[0][0], "ConnectionClosed")
        self.assertEqual(peer.clock.getDelayedCalls(), [])


#: ("call", timeout index) | ("answer", pick) | ("cancel", pick) | ("advance", tenths)
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("call"), st.integers(0, 3)),
        st.tuples(st.just("answer"), st.integers(0, 20)),
        st.tuples(st.just("cancel"), st.integers(0, 20)),
        st.tuples(st.just("advance"), st.integers(0, 6)),
        st.tuples(st.just("chain"), st.integers(0, 3)),
    ),
    max_size=30,
)
_TIMEOUTS = (None, 0.5, 1.0, 2.5)


def _run(cls: type[ClientProtocol], steps: list[tuple[str, int]]) -> tuple[list[Any], bytes]:
    """:returns: each call's outcome with the clock time it came, and the bytes sent."""
    peer = Peer(cls)
    protocol = peer.protocol
    calls: list[Deferred[Any]] = []
    outcomes: list[list[Any]] = []
    wire = [b""]

    def make(timeout: float | None, then_call: bool) -> None:
        d = protocol.call("m", timeout=timeout)
        seen: list[Any] = []

        def record(result: Any) -> None:
            if isinstance(result, Failure):
                seen.append((peer.clock.seconds(), result.type.__name__, result.getErrorMessage()))
            else:
                seen.append((peer.clock.seconds(), "ok"))
            if then_call:
                # A timed-out call's callback makes a timed call, as a retry would.
                make(1.0, False)

        d.addBoth(record)
        calls.append(d)
        outcomes.append(seen)

    for kind, arg in steps:
        if kind == "call":
            make(_TIMEOUTS[arg], False)
        elif kind == "chain":
            make(_TIMEOUTS[arg], True)
        elif kind == "answer":
            waiting = sorted(peer.server.in_flight)
            if waiting:
                peer.server.send_response(waiting[arg % len(waiting)], b"r")
                protocol.dataReceived(peer.server.data_to_send())
        elif kind == "cancel":
            live = [d for d in calls if not d.called]
            if live:
                live[arg % len(live)].cancel()
        else:
            peer.clock.advance(arg / 10)
        wire[0] += peer.transport.value()
        peer.events()
    peer.clock.advance(10)
    peer.clock.advance(10)  # the calls the last timeouts' callbacks made
    wire[0] += peer.transport.value()
    left = peer.clock.getDelayedCalls()
    return [outcomes, len(left)], wire[0]


class TimeoutDifferentialTests(SynchronousTestCase):
    """The one-timer timeouts behave as Deferred.addTimeout's timer per call."""

    @given(_steps)
    @example([("call", 1), ("advance", 1), ("call", 1), ("advance", 4), ("advance", 1)])
    def test_same_outcomes_as_add_timeout(self, steps: list[tuple[str, int]]) -> None:
        """For any schedule of timed and untimed calls, answers, cancellations, clock
        advances and callbacks that make timed calls, every call ends the same way at
        the same clock time, the same bytes are sent, and no delayed call is left."""
        ours = _run(ClientProtocol, steps)
        reference = _run(AddTimeoutProtocol, steps)
        self.assertEqual(ours, reference)
        self.assertEqual(ours[0][1], 0)

    def test_request_and_cancel_bytes_match(self) -> None:
        """A timed call that times out sends the same REQUEST (its deadline included)
        and CANCEL as with Deferred.addTimeout."""
        seen = []
        for cls in (ClientProtocol, AddTimeoutProtocol):
            peer = Peer(cls)
            peer.protocol.call("m", timeout=0.5).addErrback(lambda _: None)
            peer.clock.advance(0.5)
            seen.append(peer.events())
        self.assertEqual(seen[0], seen[1])
        self.assertEqual(
            seen[0], [Request(request_id=1, method="m", deadline_ms=500), Cancel(request_id=1)]
        )
