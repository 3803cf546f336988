"""
:class:`Liveness`: one connection's handshake timeout, idle timeout and
keepalive, on one timer.

A Twisted adapter owns one per connection.  Received bytes and messages
only stamp a time (two attribute writes, nothing scheduled), and the single
``DelayedCall`` re-arms itself for the nearest deadline when it fires, so a
busy connection costs no timer churn (``TimeoutMixin`` resets a DelayedCall
on every read).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from .._core.limits import Limits
from .._core.status import StatusCode

__all__ = ["Liveness", "LivenessBase"]


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
    """

    # Slots, not a __dict__: one of these per connection (issue 12).
    __slots__ = (
        "__weakref__",
        "_clock",
        "_handshake_timeout",
        "_idle_timeout",
        "_limits",
        "_ping_sent",
        "_probe_only",
        "_running",
        "_started",
        "_stopped",
        "_timer",
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
    ) -> None:
        self._clock = clock
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
        self._timer: IDelayedCall | None = None
        self._stopped = False

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
            self._cancel_timer()
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
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        if self._stopped:
            return
        now = self._clock.seconds()
        due: list[float] = []
        if not self.handshaken:
            if self._handshake_timeout is not None:
                deadline = self._started + self._handshake_timeout
                if now >= deadline:
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
                        self._idle()
                        return
                    due.append(deadline)
            if self._limits.ping_interval is not None and self._can_ping():
                ping_due = self._keepalive(now)
                if ping_due is None:
                    return
                due.append(ping_due)
        if due:
            self._timer = self._clock.callLater(max(0.0, min(due) - now), self._check)

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
    ) -> None:
        super().__init__(
            clock, limits, idle_timeout=idle_timeout, handshake_timeout=handshake_timeout
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
