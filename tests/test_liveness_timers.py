"""
:class:`~twisted_reqresp._adapters.liveness.LivenessTimers`: every server
connection's liveness deadline in one heap under one ``DelayedCall``
(issue 12), each deadline still checked at its own time, as a
``DelayedCall`` of its own would be.

The first tests drive the heap with fake connections that record when they
are checked; the last ones drive real server connections on a ``Clock``.
"""

from __future__ import annotations

from typing import Any

from helpers import PEER
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import Limits, Router, ServerFactory
from twisted_reqresp._adapters.liveness import LivenessTimers
from twisted_reqresp._core.binary import PREFACE, BinaryCodec
from twisted_reqresp._core.events import Role, Settings
from twisted_reqresp._core.limits import DEFAULT_LIMITS


class _Watched:
    """Stands for a connection's liveness: records when it is checked, and
    runs ``then`` (if set) from its check."""

    def __init__(self, timers: LivenessTimers, clock: MemoryReactorClock) -> None:
        self.timers = timers
        self.clock = clock
        self.checked: list[float] = []
        self.entry: list[Any] | None = None
        self.then: Any = None

    # Never compared for order (see LivenessBase.__lt__).
    def __lt__(self, other: object) -> bool:
        return False

    def __gt__(self, other: object) -> bool:
        return False

    def at(self, when: float) -> None:
        if self.entry is None:
            self.entry = self.timers.add(when, self)  # type: ignore[arg-type]
        else:
            self.entry = self.timers.move(self.entry, when, self)  # type: ignore[arg-type]

    def drop(self) -> None:
        if self.entry is not None:
            self.timers.drop(self.entry)
            self.entry = None

    def _check(self) -> None:
        self.checked.append(self.clock.seconds())
        if self.then is not None:
            self.then()


def _timers() -> tuple[LivenessTimers, MemoryReactorClock]:
    clock = MemoryReactorClock()
    return LivenessTimers(clock), clock


def _run(clock: MemoryReactorClock, until: float, step: float = 0.5) -> None:
    while clock.seconds() < until:
        clock.advance(step)


class LivenessTimersTests(SynchronousTestCase):
    """The heap of deadlines under one DelayedCall."""

    def test_many_deadlines_one_delayed_call(self) -> None:
        """A thousand deadlines are each checked once, at their own time, under one DelayedCall."""
        timers, clock = _timers()
        watched = []
        for i in range(1000):
            w = _Watched(timers, clock)
            w.at(1.0 + (i * 7919) % 1000 / 10)  # scattered, not in order
            watched.append(w)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        self.assertEqual(len(timers), 1000)
        while clock.getDelayedCalls():  # jump from deadline to deadline
            self.assertEqual(len(clock.getDelayedCalls()), 1)
            clock.advance(clock.getDelayedCalls()[0].getTime() - clock.seconds())
        for i, w in enumerate(watched):
            self.assertEqual(len(w.checked), 1)
            self.assertAlmostEqual(w.checked[0], 1.0 + (i * 7919) % 1000 / 10, places=6)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(len(timers), 0)

    def test_same_time_all_checked(self) -> None:
        """Deadlines at the same instant are all checked when it comes."""
        timers, clock = _timers()
        watched = [_Watched(timers, clock) for _ in range(50)]
        for w in watched:
            w.at(5.0)
        clock.advance(4.999)
        self.assertEqual([w.checked for w in watched], [[]] * 50)
        clock.advance(0.001)
        self.assertEqual([len(w.checked) for w in watched], [1] * 50)

    def test_dropped_is_not_checked(self) -> None:
        """A dropped deadline is never checked; the others still are."""
        timers, clock = _timers()
        a, b = _Watched(timers, clock), _Watched(timers, clock)
        a.at(1.0)
        b.at(2.0)
        a.drop()
        self.assertEqual(len(timers), 1)
        _run(clock, 3.0)
        self.assertEqual((a.checked, b.checked), ([], [2.0]))

    def test_dropping_the_last_leaves_no_delayed_call(self) -> None:
        """Once every deadline is dropped no DelayedCall is left behind."""
        timers, clock = _timers()
        watched = [_Watched(timers, clock) for _ in range(3)]
        for i, w in enumerate(watched):
            w.at(10.0 + i)
        for w in watched:
            w.drop()
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(len(timers), 0)
        # Dropping twice is harmless.
        timers.drop(timers.add(1.0, a := _Watched(timers, clock)))  # type: ignore[arg-type]
        a.entry = None
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_moved_later_is_checked_only_at_the_new_time(self) -> None:
        """A deadline moved later is not checked at its old time, only at the new one."""
        timers, clock = _timers()
        w = _Watched(timers, clock)
        w.at(1.0)
        entry = w.entry
        w.at(5.0)
        self.assertIs(w.entry, entry)  # moved later in place: no new entry
        _run(clock, 6.0)
        self.assertEqual(w.checked, [5.0])

    def test_moved_earlier_is_checked_only_at_the_new_time(self) -> None:
        """A deadline moved earlier is checked at the new time, and not again at the old one."""
        timers, clock = _timers()
        w = _Watched(timers, clock)
        w.at(5.0)
        w.at(1.0)
        self.assertEqual(len(timers), 1)
        _run(clock, 6.0)
        self.assertEqual(w.checked, [1.0])

    def test_check_reschedules_itself(self) -> None:
        """A check that sets its next deadline is checked again then (the entry reused)."""
        timers, clock = _timers()
        w = _Watched(timers, clock)
        w.then = lambda: w.at(clock.seconds() + 2.0) if len(w.checked) < 3 else None
        w.at(1.0)
        _run(clock, 10.0)
        self.assertEqual(w.checked, [1.0, 3.0, 5.0])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_closing_while_queued(self) -> None:
        """A connection dropped by another's check at the same instant is not checked."""
        timers, clock = _timers()
        a, b, c = (_Watched(timers, clock) for _ in range(3))
        for w in (a, b, c):
            w.at(2.0)
        # Whichever of them goes first closes the other two.
        for w in (a, b, c):
            w.then = lambda: [x.drop() for x in (a, b, c)]
        _run(clock, 3.0)
        self.assertEqual(sum(len(w.checked) for w in (a, b, c)), 1)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_closing_itself_from_its_check(self) -> None:
        """A check that drops its own (fired) entry leaves nothing behind."""
        timers, clock = _timers()
        w = _Watched(timers, clock)
        w.then = w.drop
        w.at(1.0)
        _run(clock, 2.0)
        self.assertEqual(w.checked, [1.0])
        self.assertEqual((len(timers), clock.getDelayedCalls()), (0, []))

    def test_deadline_in_the_past(self) -> None:
        """A deadline already past is checked at the clock's next turn, not at once."""
        timers, clock = _timers()
        clock.advance(10.0)
        w = _Watched(timers, clock)
        w.at(3.0)
        self.assertEqual(w.checked, [])
        clock.advance(0)
        self.assertEqual(w.checked, [10.0])

    def test_deadline_for_now_set_by_a_check_waits_a_turn(self) -> None:
        """A check that sets a deadline for now is checked again from a new DelayedCall, not
        within the same firing."""
        timers, clock = _timers()
        w = _Watched(timers, clock)
        armed: list[list[float]] = []

        def again() -> None:
            if len(w.checked) < 3:
                w.at(clock.seconds())
                armed.append([c.getTime() for c in clock.getDelayedCalls()])

        w.then = again
        w.at(1.0)
        clock.advance(1.0)  # Clock.advance runs the calls a call adds for now
        self.assertEqual(w.checked, [1.0, 1.0, 1.0])
        self.assertEqual(armed, [[1.0], [1.0]])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_earlier_deadline_rearms_the_call(self) -> None:
        """A deadline earlier than every other re-arms the one DelayedCall for it."""
        timers, clock = _timers()
        late, early = _Watched(timers, clock), _Watched(timers, clock)
        late.at(100.0)
        early.at(1.0)
        calls = clock.getDelayedCalls()
        self.assertEqual(len(calls), 1)
        self.assertEqual(calls[0].getTime(), 1.0)
        clock.advance(1.0)
        self.assertEqual((early.checked, late.checked), ([1.0], []))
        self.assertEqual([c.getTime() for c in clock.getDelayedCalls()], [100.0])

    def test_float_rounding_fires_the_armed_deadline(self) -> None:
        """A deadline is checked when its call fires even if the clock reads a hair before it."""
        timers, clock = _timers()
        clock.advance(0.1)
        w = _Watched(timers, clock)
        w.at(0.3)  # 0.1 + (0.3 - 0.1) is not 0.3 in floating point
        clock.advance(0.2)
        clock.advance(1e-9)
        self.assertEqual(len(w.checked), 1)

    def test_dropped_entries_are_swept(self) -> None:
        """Deadlines moved earlier over and over do not grow the heap without bound."""
        timers, clock = _timers()
        keep = _Watched(timers, clock)
        keep.at(1_000_000.0)
        w = _Watched(timers, clock)
        for i in range(10_000):
            w.at(500_000.0 - i)  # earlier each time: a new entry, the old one blank
        self.assertEqual(len(timers), 2)
        self.assertLess(len(timers._heap), 200)
        _run(clock, 1_000_001.0, 100_000.0)
        self.assertEqual(len(w.checked), 1)
        self.assertEqual(len(keep.checked), 1)


def _hello() -> bytes:
    codec = BinaryCodec(Role.CLIENT, DEFAULT_LIMITS)
    return PREFACE + codec.encode(
        Settings(
            max_frame_size=DEFAULT_LIMITS.max_frame_size,
            max_concurrent=DEFAULT_LIMITS.max_concurrent,
            stream_credit=DEFAULT_LIMITS.stream_credit,
            connection_credit=DEFAULT_LIMITS.connection_credit,
        )
    )


class ServerConnectionsShareOneTimerTests(SynchronousTestCase):
    """Real server connections on one clock: one DelayedCall, each timeout at its time."""

    def _connect(self, factory: ServerFactory, hello: bytes = b"") -> tuple[Any, StringTransport]:
        protocol = factory.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        if hello:
            protocol.dataReceived(hello)
        return protocol, transport

    def _factory(self, **limits: Any) -> tuple[ServerFactory, MemoryReactorClock]:
        clock = MemoryReactorClock()
        return ServerFactory(Router(), clock=clock, limits=Limits(**limits)), clock

    def test_handshake_timeouts_each_at_its_time(self) -> None:
        """Connections that never finish the handshake are each closed preface_timeout after
        they opened, under one DelayedCall."""
        factory, clock = self._factory(preface_timeout=10.0, ping_interval=None)
        opened = []
        for _ in range(5):
            opened.append(self._connect(factory)[1])
            clock.advance(1.0)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(4.0)  # t = 9: the first opened at 0
        self.assertEqual([t.disconnecting for t in opened], [False] * 5)
        for i in range(5):
            clock.advance(1.0)  # t = 10 + i
            closed = [t.disconnecting for t in opened]
            self.assertEqual(closed, [True] * (i + 1) + [False] * (4 - i))

    def test_idle_timeouts_each_at_its_time(self) -> None:
        """Idle connections are each closed idle_timeout after their handshake."""
        factory, clock = self._factory(idle_timeout=30.0, ping_interval=None)
        opened = []
        for _ in range(3):
            opened.append(self._connect(factory, _hello())[1])
            clock.advance(5.0)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(14.9)  # t = 29.9
        self.assertEqual([t.disconnecting for t in opened], [False] * 3)
        clock.advance(0.1)
        self.assertEqual([t.disconnecting for t in opened], [True, False, False])
        clock.advance(10.0)
        self.assertEqual([t.disconnecting for t in opened], [True, True, True])

    def test_lost_connection_leaves_no_timer(self) -> None:
        """Once every connection is lost the shared DelayedCall is gone too."""
        factory, clock = self._factory()
        protocols = [self._connect(factory, _hello())[0] for _ in range(4)]
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        for protocol in protocols:
            protocol.connectionLost()
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(len(factory._liveness_timers()), 0)
