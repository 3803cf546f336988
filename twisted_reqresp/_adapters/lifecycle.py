"""
:class:`TransportLifecycle`: one connection's transport, as the server and
the client protocols both use it.

Each protocol *has* one.  It owns everything about the transport that is
not the protocol's business:

- **Reading.**  Reading stops only for a named reason (``"writes"``: the
  peer is not reading our answers; ``"parked"``: a server holds too many
  requests it has not started) and resumes when the last reason goes.
  Reaching a concurrency limit is *not* a reason to stop reading: control
  frames (CANCEL, PING, PONG, GOAWAY, SETTINGS) must always be read
  (h2 keeps reading while a stream is blocked and refuses excess streams
  instead).
- **Writing.**  One write path, with the write-through shortcut of
  ``_adapters/writethrough.py`` where it is safe.
- **Backpressure.**  The lifecycle registers itself with the transport as a
  streaming producer: Twisted pauses it when the write buffer passes its
  high-water mark and resumes it once drained; the protocol is told through
  ``on_write_blocked``.
- **Closing.**  One operation for every way a connection ends from our
  side (an orderly close, a protocol violation, a refusal, an idle or
  keepalive timeout, grace expiry): unregister the producer (Twisted's TLS
  transport does not start its shutdown while a producer is registered,
  see ``twisted/protocols/tls.py``), ``loseConnection()`` (which writes
  what is buffered first), and ``abortConnection()`` after ``close_timeout``
  seconds if the peer does not read what is left, as Twisted's HTTP server
  does with ``abortTimeout``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from zope.interface import implementer

from .writethrough import can_write_through, send_through

__all__ = ["TransportLifecycle", "TransportLifecycleBase"]

#: No reason to stop reading: shared, as a set would cost 216 bytes per
#: connection (issue 12); the rare pause makes a new frozenset.
_NO_PAUSES: frozenset[str] = frozenset()


@implementer(IPushProducer)
class TransportLifecycleBase:
    """
    The transport side of one connection: pause reasons, writes,
    backpressure and the close operation.  Whom to tell that writes are
    blocked is the hook method ``_on_write_blocked``, which a subclass
    provides: :class:`TransportLifecycle` takes it as a callable; the
    server's subclass calls its protocol's method, so that a connection
    does not pay for a bound method (64 bytes, ``tests/test_memory.py``).

    :param clock: the clock for the abort timer.
    :param close_timeout: seconds a close may wait for the peer to read
        what is left before the connection is aborted; ``None``: wait as
        long as it takes.
    """

    # Slots, not a __dict__: one of these per connection (issue 12).
    __slots__ = (
        "__weakref__",
        "_abort_timer",
        "_clock",
        "_close_timeout",
        "_direct",
        "_pauses",
        "_registered",
        "closed",
        "closing",
        "transport",
        "write_blocked",
    )

    def __init__(self, clock: IReactorTime, close_timeout: float | None) -> None:
        self._clock = clock
        self._close_timeout = close_timeout
        self.transport: Any = None
        # Whether writes may take the write-through shortcut.
        self._direct = False
        self._pauses = _NO_PAUSES
        self._registered = False
        self._abort_timer: IDelayedCall | None = None
        #: True while the peer is not reading (our write buffer is full).
        self.write_blocked = False
        #: True once :meth:`close` or :meth:`abort` was called.
        self.closing = False
        #: True once the transport is gone.
        self.closed = False

    def _on_write_blocked(self, blocked: bool) -> None:
        """
        Called with ``True`` when the transport's write buffer is full (the
        peer is not reading) and ``False`` once it has drained.
        """
        raise NotImplementedError

    def attach(self, transport: Any) -> None:
        """
        Take charge of a newly connected transport.

        :param transport: the protocol's transport.
        """
        self.transport = transport
        self._direct = can_write_through(transport)
        transport.registerProducer(self, True)
        self._registered = True

    # -- IPushProducer: Twisted calls these about our writes ---------------

    def pauseProducing(self) -> None:
        """The transport's write buffer is full: the peer is not reading."""
        if not self.write_blocked:
            self.write_blocked = True
            self._on_write_blocked(True)

    def resumeProducing(self) -> None:
        """The transport's write buffer has drained."""
        if self.write_blocked:
            self.write_blocked = False
            self._on_write_blocked(False)

    def stopProducing(self) -> None:
        """The transport is going away; :meth:`lost` follows."""

    # -- reading -------------------------------------------------------------

    @property
    def reading(self) -> bool:
        """Whether the transport is being read (no pause reason holds)."""
        return not self._pauses

    def pause_reading(self, reason: str) -> None:
        """
        Stop reading for ``reason`` (until :meth:`resume_reading` with the
        same reason, and every other reason gone).
        """
        was_reading = not self._pauses
        self._pauses = self._pauses | {reason}
        if was_reading and self._live():
            self.transport.pauseProducing()

    def resume_reading(self, reason: str) -> bool:
        """
        Drop one reason to stop reading.

        :returns: whether reading resumed now (the caller may have events
            waiting in its codec to process).
        """
        if reason not in self._pauses:
            return False
        self._pauses = (self._pauses - {reason}) or _NO_PAUSES
        if self._pauses or not self._live():
            return False
        self.transport.resumeProducing()
        return True

    # -- writing -------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send bytes, unless the connection is closed or closing."""
        if data and not self.closed:
            transport = self.transport
            if self._direct:
                send_through(transport, data)
            elif transport is not None:
                transport.write(data)

    # -- closing ---------------------------------------------------------------

    def close(self) -> None:
        """
        Close in order: stop producing, let the transport write what it
        holds, close, and abort if that has not happened within
        ``close_timeout``.  Write the last words before calling this.
        Calling it again does nothing.
        """
        if self.closing or self.closed or self.transport is None:
            return
        self.closing = True
        self._unregister()
        if self._pauses:
            # A transport that is not read may never notice the peer's
            # close; resume so that the close can complete.
            self._pauses = _NO_PAUSES
            self.transport.resumeProducing()
        self.transport.loseConnection()
        if self._close_timeout is not None and not self.closed:
            self._abort_timer = self._clock.callLater(self._close_timeout, self.abort)

    def abort(self) -> None:
        """Drop the connection now, writing nothing more."""
        timer, self._abort_timer = self._abort_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        if self.closed or self.transport is None:
            return
        self.closing = True
        self._unregister()
        self.transport.abortConnection()

    def lost(self) -> None:
        """The transport is gone: stop every timer."""
        self.closed = True
        self.closing = True
        self._registered = False
        timer, self._abort_timer = self._abort_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _live(self) -> bool:
        return self.transport is not None and not self.closed and not self.closing

    def _unregister(self) -> None:
        if self._registered:
            self._registered = False
            self.transport.unregisterProducer()


class TransportLifecycle(TransportLifecycleBase):
    """
    A :class:`TransportLifecycleBase` that tells a callable when writes
    block and unblock.

    :param clock: the clock for the abort timer.
    :param close_timeout: seconds a close may wait for the peer to read
        what is left before the connection is aborted; ``None``: wait as
        long as it takes.
    :param on_write_blocked: called with ``True`` when the transport's write
        buffer is full (the peer is not reading) and ``False`` once it has
        drained.
    """

    # The slot holds the callable, and shadows the base's hook method.
    __slots__ = ("_on_write_blocked",)

    def __init__(
        self,
        clock: IReactorTime,
        close_timeout: float | None,
        on_write_blocked: Callable[[bool], None],
    ) -> None:
        super().__init__(clock, close_timeout)
        self._on_write_blocked = on_write_blocked  # type: ignore[method-assign, assignment]
