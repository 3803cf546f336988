"""
:class:`Liveness`: one connection's handshake timeout, idle timeout and
keepalive, on one deadline; :class:`LivenessTimers`: the one
``DelayedCall`` that serves the deadlines of many connections.

A Twisted adapter owns one :class:`Liveness` per connection.  Received
bytes and messages only stamp a time (two attribute writes, nothing
scheduled), and the connection's deadline is looked at, and moved to the
nearest one, only when it passes, so a busy connection costs no timer
churn (``TimeoutMixin`` resets a DelayedCall on every read).

The deadlines of every connection of a server sit in one heap under one
``DelayedCall`` armed for the earliest (:class:`LivenessTimers`): a
``DelayedCall`` of its own, with its bound methods and arguments, cost an
idle connection about 600 bytes, a heap entry costs about 100 (issue 12).
Each deadline still fires at its own time, as a ``DelayedCall`` of its own
would: the precision is the clock's.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heapify, heappop, heappush
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from .._core.limits import Limits
from .._core.status import StatusCode

__all__ = ["Liveness", "LivenessBase", "LivenessTimers"]

#: Dropped heap entries kept before the heap is rebuilt without them
#: (besides: more than half of the heap), as asyncio's event loop does with
#: its cancelled timers: a connection that moves its deadline often (reading
#: paused and resumed) must not fill the heap with dead entries.
_COMPACT_AFTER = 64


class LivenessTimers:
    """
    The deadlines of many :class:`LivenessBase` on one clock, under one
    ``DelayedCall`` armed for the earliest.

    An entry is a list ``[when, liveness, due]`` in a heap ordered by
    ``when``: ``liveness._check()`` is called at ``due``.  Moving a deadline
    later (the handshake done, reading resumed) only sets ``due``: the entry
    goes back into the heap, unchecked, when ``when`` comes.  Moving it
    earlier, or dropping it (the connection closed), blanks its
    ``liveness``; a blank is skipped when it comes up, or swept once blanks
    are most of the heap.  When the ``DelayedCall`` fires, every entry due by
    then is taken off the heap (its ``when`` set to None) before any is
    checked, so that a deadline a check sets for now waits for the next turn
    of the reactor, as a ``callLater(0, ...)`` of its own would.

    :param clock: the clock.
    """

    __slots__ = ("_armed", "_call", "_clock", "_dropped", "_heap")

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._heap: list[list[Any]] = []
        # Blank entries still in the heap.
        self._dropped = 0
        self._call: IDelayedCall | None = None
        # When _call fires, in the clock's time.
        self._armed = 0.0

    def __len__(self) -> int:
        """The number of deadlines waiting (blank entries not counted)."""
        return len(self._heap) - self._dropped

    def add(self, when: float, liveness: LivenessBase) -> list[Any]:
        """
        Call ``liveness._check()`` at ``when``.

        :returns: the entry, for :meth:`move` and :meth:`drop`.
        """
        entry = [when, liveness, when]
        self._push(entry)
        return entry

    def move(self, entry: list[Any], when: float, liveness: LivenessBase) -> list[Any]:
        """
        Call ``liveness._check()`` at ``when`` instead of when ``entry``
        said (``entry`` came from :meth:`add` or :meth:`move`, for
        ``liveness``; it may have fired or been dropped).

        :returns: the entry to move or drop next time.
        """
        at = entry[0]
        if at is None:
            # Off the heap (it fired): the same list goes back in.
            entry[0] = entry[2] = when
            entry[1] = liveness
            self._push(entry)
            return entry
        if entry[1] is not None and when >= at:
            entry[2] = when
            return entry
        self.drop(entry)
        return self.add(when, liveness)

    def drop(self, entry: list[Any]) -> None:
        """Forget an entry (it may have fired or been dropped already)."""
        if entry[1] is None:
            return
        entry[1] = None
        if entry[0] is None:
            return  # off the heap: nothing to sweep
        self._dropped += 1
        heap = self._heap
        if self._dropped == len(heap):
            # Nothing left to wait for: leave no DelayedCall behind.
            heap.clear()
            self._dropped = 0
            call, self._call = self._call, None
            if call is not None and call.active():
                call.cancel()
        elif self._dropped > _COMPACT_AFTER and self._dropped * 2 > len(heap):
            heap[:] = [e for e in heap if e[1] is not None]
            heapify(heap)
            self._dropped = 0

    def _push(self, entry: list[Any]) -> None:
        heappush(self._heap, entry)
        if self._call is None or entry[0] < self._armed:
            self._arm(entry[0])

    def _arm(self, when: float) -> None:
        call = self._call
        if call is not None and call.active():
            call.cancel()
        self._armed = when
        self._call = self._clock.callLater(max(0.0, when - self._clock.seconds()), self._fire)

    def _fire(self) -> None:
        self._call = None
        # Due: whatever the clock says, and at least what the call was armed
        # for (a DelayedCall of its own would have fired that entry now).
        now = max(self._clock.seconds(), self._armed)
        heap = self._heap
        due = []
        while heap and heap[0][0] <= now:
            entry = heappop(heap)
            if entry[1] is None:
                self._dropped -= 1
            elif entry[2] > now:
                # Moved later: wait on, unchecked.
                entry[0] = entry[2]
                heappush(heap, entry)
            else:
                entry[0] = None
                due.append(entry)
        for entry in due:
            liveness = entry[1]
            if liveness is not None:  # not dropped by an earlier one's check
                liveness._check()
        # The checks may have armed the call for their own entries: arm it
        # for the earliest of all.
        while heap and heap[0][1] is None:
            heappop(heap)
            self._dropped -= 1
        if heap:
            if self._call is None or heap[0][0] != self._armed:
                self._arm(heap[0][0])
        elif self._call is not None:
            self._call.cancel()
            self._call = None


class LivenessBase:
    """
    The timer and the deadlines; what to ask and whom to tell are the hook
    methods (``_busy`` ... ``_keepalive_failed``) a subclass provides.
    :class:`Liveness` takes them as callables; the server's subclass calls
    its protocol's methods, so that a connection does not pay for seven
    closures and bound methods (``tests/test_memory.py``).

    :param clock: the clock.
    :param limits: ``preface_timeout``, ``idle_timeout``, ``ping_interval``
        and ``ping_timeout`` are read from here; a ``None`` one is off.
    :param idle_timeout: whether to enforce the idle timeout (servers do,
        clients don't).
    :param handshake_timeout: seconds the handshake may take;
        ``limits.preface_timeout`` if omitted.
    :param timers: the :class:`LivenessTimers` (on ``clock``) that keeps
        this connection's deadline with others'; one of its own if omitted.
    """

    # Slots, not a __dict__: one of these per connection (issue 12).
    __slots__ = (
        "__weakref__",
        "_clock",
        "_entry",
        "_handshake_timeout",
        "_idle_timeout",
        "_limits",
        "_ping_sent",
        "_probe_only",
        "_running",
        "_started",
        "_stopped",
        "_timers",
        "handshaken",
        "last_bytes",
        "last_message",
    )

    def __init__(
        self,
        clock: IReactorTime,
        limits: Limits,
        *,
        idle_timeout: bool = True,
        handshake_timeout: float | None = None,
        timers: LivenessTimers | None = None,
    ) -> None:
        self._clock = clock
        self._timers = timers if timers is not None else LivenessTimers(clock)
        self._limits = limits
        self._idle_timeout = limits.idle_timeout if idle_timeout else None
        self._handshake_timeout = (
            handshake_timeout if handshake_timeout is not None else limits.preface_timeout
        )
        now = clock.seconds()
        self._started = now
        self._running = False
        # After the peer's half-close: PINGs go on as probes (a gone peer's
        # kernel answers one with a reset), but no answer is expected.
        self._probe_only = False
        #: When the last byte arrived.
        self.last_bytes = now
        #: When the last whole message arrived.
        self.last_message = now
        #: Whether the handshake is done.
        self.handshaken = False
        self._ping_sent: float | None = None
        # This connection's entry in self._timers, while it has one.
        self._entry: list[Any] | None = None
        self._stopped = False

    # Two deadlines at the same time in LivenessTimers' heap: either may
    # go first.  The heap compares its [when, liveness] entries item by
    # item with ``<``, and a dropped entry holds None (whose ``<`` falls
    # back to our ``>``).
    def __lt__(self, other: object) -> bool:
        return False

    def __gt__(self, other: object) -> bool:
        return False

    # -- the hooks ------------------------------------------------------------

    def _busy(self) -> bool:
        """Whether the connection has anything in flight."""
        raise NotImplementedError

    def _can_ping(self) -> bool:
        """Whether the wire format has PING frames."""
        raise NotImplementedError

    def _reading(self) -> bool:
        """Whether this side is reading the connection."""
        raise NotImplementedError

    def _send_ping(self) -> None:
        """Send a PING."""
        raise NotImplementedError

    def _give_up(self, code: int, message: str) -> None:
        """Close the connection with a status and a message."""
        raise NotImplementedError

    def _idle(self) -> None:
        """Close an idle connection in order."""
        raise NotImplementedError

    def _keepalive_failed(self) -> None:
        """A PING went unanswered (called just before ``_give_up``)."""
        raise NotImplementedError

    def start(self) -> None:
        """Start watching (once: a second call does nothing)."""
        if self._running or self._stopped:
            return
        self._running = True
        self._check()

    def _rearm(self) -> None:
        if self._running and not self._stopped:
            self._check()

    def handshake_done(self) -> None:
        """
        The handshake is over: from now on the idle timeout and keepalive
        run, each on its own schedule counted from now, whatever the
        handshake timeout was (or if there was none).
        """
        if self.handshaken:
            return
        self.handshaken = True
        self.last_message = self._clock.seconds()
        self._rearm()

    def shorten_handshake(self, timeout: float) -> None:
        """
        Give the handshake at most ``timeout`` seconds from the start (a
        connection refused once its peer is known need not wait long).
        """
        current = self._handshake_timeout
        self._handshake_timeout = timeout if current is None else min(current, timeout)
        if not self.handshaken:
            self._rearm()

    def resumed_reading(self) -> None:
        """
        This side reads again after a pause: the peer's silence meanwhile
        was ours, so keepalive counts from now (an unanswered PING gets a
        whole ``ping_timeout`` again).
        """
        self.last_bytes = self._clock.seconds()
        self._ping_sent = None
        self._rearm()

    def peer_closed_writing(self) -> None:
        """
        The peer shut down its write side: it can send no PONG and no
        message any more.  The idle timeout stops; PINGs go on every
        ``ping_interval`` as probes only (writing to a peer that is gone
        makes its kernel reset the connection), never timing out.
        """
        self._probe_only = True
        self._idle_timeout = None
        self._rearm()

    def stop(self) -> None:
        """Stop watching; no timer is left behind."""
        self._stopped = True
        self._cancel_timer()

    def _cancel_timer(self) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            self._timers.drop(entry)

    def _check(self) -> None:
        """Act on whatever deadline passed, and set the next (the timers
        call this at the deadline; a change of state calls it at once)."""
        if self._stopped:
            self._cancel_timer()
            return
        now = self._clock.seconds()
        due: list[float] = []
        if not self.handshaken:
            if self._handshake_timeout is not None:
                deadline = self._started + self._handshake_timeout
                if now >= deadline:
                    self._cancel_timer()
                    self._give_up(
                        StatusCode.DEADLINE_EXCEEDED,
                        f"no handshake within {self._handshake_timeout:g} s",
                    )
                    return
                due.append(deadline)
        else:
            if self._idle_timeout is not None:
                if self._busy():
                    due.append(now + self._idle_timeout)
                else:
                    deadline = self.last_message + self._idle_timeout
                    if now >= deadline:
                        self._cancel_timer()
                        self._idle()
                        return
                    due.append(deadline)
            if self._limits.ping_interval is not None and self._can_ping():
                ping_due = self._keepalive(now)
                if ping_due is None:
                    return
                due.append(ping_due)
        if not due:
            self._cancel_timer()
            return
        entry = self._entry
        if entry is None:
            self._entry = self._timers.add(min(due), self)
        else:
            self._entry = self._timers.move(entry, min(due), self)

    def _keepalive(self, now: float) -> float | None:
        """Send or check a PING; returns when to look again, None if gave up."""
        interval = self._limits.ping_interval
        assert interval is not None
        timeout = self._limits.ping_timeout
        if self._probe_only:
            if now >= self.last_bytes + interval:
                self.last_bytes = now  # the next probe in one interval
                self._send_ping()
            return self.last_bytes + interval
        if not self._reading():
            # We are not reading: a PONG could not reach us.  Look again
            # once reading resumes (checked every interval).
            self._ping_sent = None
            return now + interval
        if self._ping_sent is not None:
            if self.last_bytes >= self._ping_sent:
                self._ping_sent = None  # the peer spoke: it is alive
            elif now >= self._ping_sent + timeout:
                self._cancel_timer()
                self._keepalive_failed()
                self._give_up(
                    StatusCode.UNAVAILABLE, f"peer did not answer a PING within {timeout:g} s"
                )
                return None
            else:
                return self._ping_sent + timeout
        quiet_since = self.last_bytes
        if now >= quiet_since + interval:
            self._ping_sent = now
            self._send_ping()
            return now + timeout
        return quiet_since + interval


def _nothing() -> None:
    pass


def _always() -> bool:
    return True


class Liveness(LivenessBase):
    """
    Watches one connection and calls back when it must be closed or pinged.

    :param clock: the clock.
    :param limits: ``preface_timeout``, ``idle_timeout``, ``ping_interval``
        and ``ping_timeout`` are read from here; a ``None`` one is off.
    :param busy: says whether the connection has anything in flight (an
        idle timeout only runs while it is not busy).
    :param can_ping: says whether the wire format has PING frames.
    :param reading: says whether this side is reading the connection; while
        it is not, the peer's silence is ours, not the peer's: no PING is
        sent and the keepalive timeout does not run.
    :param send_ping: sends a PING.
    :param give_up: closes the connection with a status and a message.
    :param idle: closes an idle connection in order.
    :param idle_timeout: whether to enforce the idle timeout (servers do,
        clients don't).
    :param handshake_timeout: seconds the handshake may take;
        ``limits.preface_timeout`` if omitted.
    :param keepalive_failed: called just before ``give_up`` when a PING
        went unanswered (the server counts these for its metrics).
    :param timers: the :class:`LivenessTimers` (on ``clock``) that keeps
        this connection's deadline with others'; one of its own if omitted.
    """

    # These slots hold the callables, and shadow LivenessBase's hook methods.
    __slots__ = (
        "_busy",
        "_can_ping",
        "_give_up",
        "_idle",
        "_keepalive_failed",
        "_reading",
        "_send_ping",
    )

    def __init__(
        self,
        clock: IReactorTime,
        limits: Limits,
        *,
        busy: Callable[[], bool],
        can_ping: Callable[[], bool],
        reading: Callable[[], bool] = _always,
        send_ping: Callable[[], None],
        give_up: Callable[[int, str], None],
        idle: Callable[[], None],
        idle_timeout: bool = True,
        handshake_timeout: float | None = None,
        keepalive_failed: Callable[[], None] | None = None,
        timers: LivenessTimers | None = None,
    ) -> None:
        super().__init__(
            clock,
            limits,
            idle_timeout=idle_timeout,
            handshake_timeout=handshake_timeout,
            timers=timers,
        )
        self._busy = busy  # type: ignore[method-assign]
        self._can_ping = can_ping  # type: ignore[method-assign]
        self._reading = reading  # type: ignore[method-assign]
        self._send_ping = send_ping  # type: ignore[method-assign]
        self._give_up = give_up  # type: ignore[method-assign, assignment]
        self._idle = idle  # type: ignore[method-assign]
        self._keepalive_failed = (  # type: ignore[method-assign]
            keepalive_failed if keepalive_failed is not None else _nothing
        )
