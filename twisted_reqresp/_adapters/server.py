"""
The server side's Twisted adapter: :class:`ServerFactory` builds one
:class:`ServerProtocol` per accepted connection.

The protocol is plumbing around the sans-IO
:class:`~twisted_reqresp._core.connection.Connection`: it feeds received bytes in,
runs the responder for each request, owns the responders' Deferreds and
timers, and writes what the connection queues.  It *has* a connection and
*has* a responder (composition, not AMP's mix-ins), so each can be faked
alone.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableProtocol,
    IHandshakeListener,
    IReactorTime,
    ISSLTransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .._core.binary import BinaryFormat
from .._core.call import Call, Cancellation, ConnectionInfo, Reply, metadata_pairs, new_call
from .._core.connection import Connection, ConnectionState
from .._core.contract import IWireFormat
from .._core.errors import ConnectionClosed, DeadlineExceeded, LocalProtocolError, StatusError
from .._core.events import (
    Cancel,
    CreditGranted,
    Metadata,
    ProtocolViolation,
    Rejected,
    Request,
    Role,
    StreamEnd,
    StreamMessage,
    StreamRequest,
)
from .._core.limits import DEFAULT_LIMITS, Limits
from .._core.status import StatusCode, status_name
from .._core.streams import message_cost
from ..codecs import BYTES
from ..interfaces import IResponder, IResponderFactory, IServerInterceptor
from .builtins import ANSWERED_WHILE_DRAINING, RESERVED_PREFIX, Builtins, HealthStatus
from .giveup import cancel_at_deadline, tell_cancelled
from .interceptors import compose_server, error_status, interceptor_function
from .lifecycle import TransportLifecycleBase
from .liveness import LivenessBase, LivenessTimers
from .stats import ServerStats
from .streams import MessageReader, MessageWriter, ServerStream, kind_of
from .tls import failure_text, peer_certificate

__all__ = ["ServerFactory", "ServerProtocol", "SharedResponder"]

_log = Logger(namespace="twisted_reqresp.server")

_NO_METADATA: Mapping[str, str] = MappingProxyType({})

#: Seconds a refused connection may wait before sending its first message.
_REFUSED_TIMEOUT = 2.0

#: Why a draining server refuses a new connection.
_DRAINING_REFUSAL = (StatusCode.UNAVAILABLE, "server is shutting down")


@implementer(IResponderFactory)
class SharedResponder:
    """
    An :class:`~twisted_reqresp.interfaces.IResponderFactory` that gives
    every connection the same responder (how a :class:`ServerFactory`
    serves a plain responder such as a :class:`~twisted_reqresp.Router`).

    :param responder: the shared :class:`IResponder` provider.
    """

    def __init__(self, responder: IResponder) -> None:
        self.responder = responder

    def responder_for(self, connection: ConnectionInfo) -> IResponder:
        """:returns: the shared responder."""
        return self.responder


#: How much a parked request counts for beyond its body, method and
#: metadata: the objects that hold it (so a flood of empty requests is
#: bounded too).  Measured with tracemalloc at about 314 bytes on CPython
#: 3.11, counting the wire core's allocations for it (the Request event, its
#: in-flight entry) as well as the adapters'; counted as 128 bytes, a flood
#: of parked empty requests held 2.4 times the bound
#: (tests/test_streaming_review.py, ParkedStreamsTests).
_PARKED_OVERHEAD = 384

#: What a parked *streaming* request counts for besides: its stream's
#: reader and writer (their deques, closures and credit state) exist from
#: the moment it is read, so that its messages can be held.  Measured with
#: tracemalloc at about 2.3 KB on CPython 3.11
#: (tests/test_streaming_review.py, ParkedStreamsTests); counted as 128
#: bytes, a flood of parked streaming calls held eighteen times the bound.
_PARKED_STREAM_OVERHEAD = 2560


class _Unused(dict):  # type: ignore[type-arg]
    """
    The table of an idle connection: one shared, empty and read-only dict,
    which the protocol replaces with its own on the first write (a dict is
    64 bytes, times four tables, on every idle connection: issue 12).
    Writing to it is a bug, and raises rather than sharing the entry with
    every other connection.
    """

    __slots__ = ()

    def _refuse(self, *args: object, **kwargs: object) -> None:
        raise TypeError("the shared empty table is read-only: make the connection its own")

    __setitem__ = setdefault = update = __ior__ = _refuse  # type: ignore[assignment]


#: See :class:`_Unused`.
_UNUSED: dict[Any, Any] = _Unused()


def _parked_size(request: Request | StreamRequest) -> int:
    size = _PARKED_OVERHEAD + len(request.body) + len(request.method)
    if type(request) is StreamRequest:
        size += _PARKED_STREAM_OVERHEAD
    for key, value in request.metadata:
        size += len(key) + len(value)
    return size


def _behind_proxy_header(transport: object) -> bool:
    """
    Whether the transport is Twisted's PROXY-protocol wrapper (a
    ``haproxy:`` endpoint), which reports the proxy's address until the
    PROXY header has been read, and the client's after.  Twisted exports
    only ``proxyEndpoint``, so the wrapper is recognised by its module;
    ``tests/test_e2e_proxy.py`` fails if that ever changes.
    """
    return type(transport).__module__.startswith("twisted.protocols.haproxy")


class _StreamCall:
    """The server's side of one open streaming call: its stream, its
    deadline timer, and its final status while messages still wait for
    credit."""

    __slots__ = ("request_id", "stream", "timer")

    def __init__(self, request_id: int, stream: ServerStream) -> None:
        self.request_id = request_id
        self.stream = stream
        self.timer: Any = None


class _ServerLiveness(LivenessBase):
    """A server connection's :class:`LivenessBase`: its hooks are the
    protocol's methods, reached through one reference rather than seven
    closures and bound methods per connection (issue 12)."""

    __slots__ = ("_protocol",)

    def __init__(
        self, protocol: ServerProtocol, limits: Limits, handshake_timeout: float | None
    ) -> None:
        super().__init__(
            protocol._clock,
            limits,
            handshake_timeout=handshake_timeout,
            timers=protocol.factory._liveness_timers(),
        )
        self._protocol = protocol

    def _busy(self) -> bool:
        protocol = self._protocol
        return bool(protocol.running or protocol.conn.unanswered)

    def _can_ping(self) -> bool:
        return self._protocol.conn.keepalive

    def _reading(self) -> bool:
        return self._protocol.lifecycle.reading

    def _send_ping(self) -> None:
        self._protocol._send_ping()

    def _give_up(self, code: int, message: str) -> None:
        self._protocol._give_up(code, message)

    def _idle(self) -> None:
        self._protocol._close_idle()

    def _keepalive_failed(self) -> None:
        self._protocol._keepalive_failed()


class _ServerLifecycle(TransportLifecycleBase):
    """A server connection's :class:`TransportLifecycleBase`: its hook is
    the protocol's method, reached through one reference rather than a
    bound method per connection (issue 12)."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: ServerProtocol) -> None:
        super().__init__(protocol._clock, protocol._limits.close_timeout)
        self._protocol = protocol

    def _on_write_blocked(self, blocked: bool) -> None:
        self._protocol._on_write_blocked(blocked)


@implementer(IHalfCloseableProtocol, IHandshakeListener)
class ServerProtocol(Protocol):
    """
    One accepted connection.  Built by :class:`ServerFactory`; users do not
    make these themselves.

    Theory of operation:

    - Every received byte is decoded at once, whatever the load: control
      frames (CANCEL, PING, PONG, GOAWAY, SETTINGS) are never left unread
      behind requests.
    - At most ``limits.max_concurrent`` requests run (or wait for their
      turn on the wire, for the line format) at once.  A request past the
      limit is *parked*: read and accepted, not started.  A CANCEL drops a
      parked request without running it.  Parked requests start in arrival
      order as running ones finish.
    - Reading stops only when the parked requests pass
      ``limits.max_parked_bytes``, or when the peer does not read our
      answers (the transport's write buffer is full); see
      ``docs/operating-limits.md``.
    - Every close from this side goes through
      :meth:`~twisted_reqresp._adapters.lifecycle.TransportLifecycleBase.close`.
    - A peer that shuts down its write side (a half-close) gets every
      request already read answered, then the connection closes.
    - The server *gives up* on a running request when the client cancels
      it, its deadline passes, the connection closes or is lost, or a
      drain's grace period runs out: it marks the request's
      :class:`~twisted_reqresp._core.call.Cancellation` (``call.cancelled``,
      ``call.on_cancel``) and then cancels the responder's Deferred
      (``_adapters/giveup.py``).  A request the responder answered is never
      given up.
    - A streaming call (``docs/protocol.md``, "Streaming calls") is a
      request with a :class:`~twisted_reqresp.ServerStream` attached
      (``call.stream``): it counts against ``max_concurrent`` and may be
      parked like any request, until its final status is sent, which waits
      for the messages the responder wrote; its deadline covers its whole
      life.  Its messages are acknowledged as the responder takes them,
      and every one left unread when the call ends.
    - Over TLS the peer is identified (its verified certificate read, the
      per-peer limit applied, the responder made, the greeting sent) once
      the TLS handshake completes, not at ``connectionMade``.
    """

    # Slots, not a __dict__ (issue 12): on CPython 3.11 an instance dict
    # past 29 attributes leaves the class's shared keys and costs about
    # 1,300 bytes more per connection; slots cost 8 bytes each, with no
    # such cliff.  A new attribute goes here.
    __slots__ = (
        "_builtins",
        "_cancellations",
        "_clock",
        "_closed",
        "_counted",
        "_draining",
        "_eof",
        "_limits",
        "_lost_waiters",
        "_max_deadline_ms",
        "_parked_bytes",
        "_peer_host",
        "_processing",
        "_respond",
        "_stats",
        "_tls_handshaking",
        "conn",
        "connected",
        "connection_id",
        "factory",
        "info",
        "lifecycle",
        "liveness",
        "parked",
        "refusal",
        "responder",
        "running",
        "streams",
        "transport",
    )

    def __init__(
        self,
        factory: ServerFactory,
        connection_id: int,
        refusal: tuple[int, str] | None = None,
    ) -> None:
        self.factory = factory
        # Protocol's class defaults, which the slots hide.
        self.transport = None
        self.connected = 0
        self.connection_id = connection_id
        self.conn = Connection(Role.SERVER, factory.wire, factory.limits)
        if factory.builtins is not None:
            self.conn.answered_while_draining = ANSWERED_WHILE_DRAINING
        #: Why this connection is refused (a connection limit), if it is.
        self.refusal = refusal
        self._clock = factory.clock
        limits = factory.limits
        self._limits = limits
        handshake_timeout = limits.preface_timeout
        if refusal is not None:
            # A refused peer gets its answer at its first message; it may not
            # hold the socket for long waiting to send one.
            handshake_timeout = min(handshake_timeout or _REFUSED_TIMEOUT, _REFUSED_TIMEOUT)
        self.lifecycle: TransportLifecycleBase = _ServerLifecycle(self)
        self.liveness: LivenessBase = _ServerLiveness(self, limits, handshake_timeout)
        self._draining = False
        self._lost_waiters: tuple[Deferred[None], ...] = ()
        cap = limits.max_deadline
        self._max_deadline_ms = None if cap is None else max(1, int(cap * 1000))
        self.responder: IResponder | None = None
        #: The responder's ``respond``, wrapped in the factory's
        #: interceptors (the same function when there are none).
        self._respond: Callable[[Call], Any] | None = None
        self.info: ConnectionInfo | None = None
        # The four tables below start as the shared _UNUSED and get their
        # own dict at their first entry: an idle connection holds none.
        #: Responders still running, by request id.
        self.running: dict[int, Deferred[Any]] = _UNUSED
        #: The cancellation state of each request in :attr:`running`, to
        #: tell its call when the server gives up on it.
        self._cancellations: dict[int, Cancellation] = _UNUSED
        #: Requests read but not started (past ``max_concurrent``), in
        #: arrival order, with when each arrived.
        self.parked: dict[int, tuple[Request | StreamRequest, float]] = _UNUSED
        #: The open streaming calls (parked ones too), by request id.
        self.streams: dict[int, _StreamCall] = _UNUSED
        self._parked_bytes = 0
        self._stats = factory.stats
        #: The factory's built-in methods, or ``None`` when they are off.
        self._builtins = factory.builtins
        self._processing = False
        self._closed = False
        #: True once the peer shut down its write side.
        self._eof = False
        # What the factory counted for this connection: None, "open" or
        # "refusing" (see ServerFactory._identified).
        self._counted: str | None = None
        self._peer_host: str | None = None
        #: True from a TLS connection's start until its handshake completes.
        self._tls_handshaking = False

    # -- Twisted plumbing ------------------------------------------------------

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None
        self.lifecycle.attach(transport)
        self.liveness.start()
        self.factory._connection_made(self)
        if _behind_proxy_header(transport):
            # Behind a PROXY header the peer is known only once the header is
            # read: Twisted hands us the first bytes after it (after the TLS
            # handshake too, for haproxy:ssl:).
            return
        if ISSLTransport.providedBy(transport):
            # Twisted connects the protocol before the TLS handshake; the
            # client certificate is known at handshakeCompleted.
            self._tls_handshaking = True
            return
        self._identify()

    def handshakeCompleted(self) -> None:
        """The TLS handshake completed: the peer's certificate is known."""
        self._tls_handshaking = False
        if self.info is None and not self._closed:
            self._identify()

    def _identify(self) -> None:
        """Learn who the peer is, apply the per-peer limit, greet."""
        transport = self.transport
        assert transport is not None
        certificate, subject = peer_certificate(transport)
        self.info = ConnectionInfo(
            connection_id=self.connection_id,
            peer=transport.getPeer(),
            host=self.factory._shared_host(transport.getHost()),
            wire_format=self.factory.wire.name,
            peer_certificate_subject=subject,
            peer_certificate=certificate,
            health=self.factory.health,
        )
        refused_before = self.refusal is not None
        self.factory._identified(self)
        if self.refusal is not None:
            if not refused_before:
                # Refused by the per-peer limit: as quick as any refusal.
                self.liveness.shorten_handshake(_REFUSED_TIMEOUT)
            self.conn.refuse(*self.refusal)
            return
        self.responder = self.factory.responder_factory.responder_for(self.info)
        self.responder.connection_made(self.info)
        self._respond = self.factory._respond_with(self.responder)
        self._flush()

    def dataReceived(self, data: bytes) -> None:
        if self.info is None:
            self._identify()
        self._stats.bytes_received += len(data)
        self.conn.receive_data(data)
        self.liveness.last_bytes = now = self._clock.seconds()
        self._process(now)

    def readConnectionLost(self) -> None:
        """
        The peer shut down its write side: nothing more will arrive.  Answer
        every request already read, then close.
        """
        if self._eof:
            return
        self._eof = True
        # The peer can no longer answer PINGs; keep sending them as probes,
        # so that a peer that is gone (not just half-closed) resets the
        # connection and its running requests are cancelled.
        self.liveness.peer_closed_writing()
        if self.conn.buffered:
            _log.info(
                "peer {peer} closed its side with {n} bytes of an unfinished message",
                peer=self._peer(),
                n=self.conn.buffered,
            )
        self._process()

    def writeConnectionLost(self) -> None:
        """Our write side is shut: nothing more can be answered."""
        self._give_up_all()
        self.lifecycle.close()

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:  # noqa: B008
        if self._closed:
            return
        self._closed = True
        if self._tls_handshaking:
            # A client without a certificate, with an untrusted one, or
            # speaking plaintext to a TLS port ends here: say why once.
            assert self.transport is not None
            _log.info(
                "TLS handshake with {peer} failed: {why}",
                peer=self.transport.getPeer(),
                why=failure_text(reason) or reason.getErrorMessage(),
            )
        self.lifecycle.lost()
        self.conn.close()
        self.liveness.stop()
        self.parked.clear()
        self._parked_bytes = 0
        self._give_up_all()
        self._end_streams(ConnectionClosed("the connection was lost"))
        running, self.running = self.running, _UNUSED
        for deferred in running.values():
            deferred.cancel()
        if self.responder is not None:
            try:
                self.responder.connection_lost(reason)
            except Exception:
                _log.failure("responder.connection_lost failed")
        self.factory._connection_closed(self)
        waiters, self._lost_waiters = self._lost_waiters, ()
        for waiter in waiters:
            waiter.callback(None)

    def _peer(self) -> object:
        return self.info.peer if self.info is not None else None

    # -- liveness, drain and closing -------------------------------------------------

    def _send_ping(self) -> None:
        self.conn.send_ping(b"\0" * 8)
        self._flush()

    def _keepalive_failed(self) -> None:
        self._stats.keepalive_failures += 1

    def _give_up(self, code: int, message: str) -> None:
        """Close from this side with last words: a timeout, a dead peer."""
        _log.info("closing connection from {peer}: {message}", peer=self._peer(), message=message)
        if self.conn.state is not ConnectionState.CLOSED:
            self._stats.goaways_sent += 1
        self.conn.close_with_error(code, message)
        self._close()

    def _close_idle(self) -> None:
        self._give_up(StatusCode.OK, "idle timeout")

    def _close(self) -> None:
        """Send what the connection queued, then close (the one close path)."""
        # Whatever still runs can no longer be answered: its calls hear it
        # now, not when the peer has read the last bytes (connectionLost).
        self._give_up_all()
        self._flush()
        self.lifecycle.close()

    def _give_up_all(self) -> None:
        """Tell every running request's call that the server gave up on it."""
        cancellations, self._cancellations = self._cancellations, _UNUSED
        for cancellation in cancellations.values():
            tell_cancelled(cancellation)

    def drain(self) -> Deferred[None]:
        """
        Stop in order: send GOAWAY, answer the requests already accepted,
        then close.  Requests that arrive later are refused with
        UNAVAILABLE, marked retry-safe.

        :returns: a Deferred that fires when the connection is closed.
        """
        d: Deferred[None] = Deferred()
        if self._closed:
            d.callback(None)
            return d
        self._lost_waiters += (d,)
        if not self._draining:
            self._draining = True
            if self.conn.state is not ConnectionState.CLOSED:
                self.conn.send_goaway(StatusCode.OK, "server shutting down")
                self._stats.goaways_sent += 1
            self._process()
        return d

    def grace_expired(self) -> None:
        """
        The drain's grace period is over: answer every request still
        running with UNAVAILABLE (not retry-safe: it may have run) and every
        parked one with UNAVAILABLE (retry-safe: it never started), then
        close.
        """
        if self._closed:
            return
        conn = self.conn
        _log.info(
            "grace period over: closing connection {id} with {n} requests running",
            id=self.connection_id,
            n=len(self.running),
        )
        parked, self.parked = self.parked, _UNUSED
        self._parked_bytes = 0
        for rid in parked:
            self._send_error(
                rid, StatusCode.UNAVAILABLE, "server stopped before the request started", True
            )
        self._give_up_all()
        running, self.running = self.running, _UNUSED
        # Streaming calls whose responder returned still wait for credit to
        # send their last messages: they did not finish either.
        for rid in sorted({*running, *self.streams}):
            if rid in conn.in_flight:
                self._send_error(
                    rid, StatusCode.UNAVAILABLE, "server stopped before the request finished"
                )
        self._end_streams(CancelledError("the server stopped before the call finished"))
        for deferred in running.values():
            deferred.cancel()  # its answer is no longer owed: dropped
        self._close()

    def _done(self) -> bool:
        """Whether nothing is owed to the peer any more."""
        return not self.running and not self.parked and not self.conn.unanswered

    def _close_if_done(self) -> None:
        if (self._draining or self._eof) and self._done():
            self._close()

    # -- reading ---------------------------------------------------------------

    def _on_write_blocked(self, blocked: bool) -> None:
        # The peer is not reading our answers: stop starting work for it
        # (reading, and starting parked requests) until it does.
        if blocked:
            self.lifecycle.pause_reading("writes")
        else:
            self._resume_reading("writes")
            self._process()

    def _resume_reading(self, reason: str) -> bool:
        if self.lifecycle.resume_reading(reason):
            self.liveness.resumed_reading()
            return True
        return False

    def _process(self, now: float | None = None) -> None:
        """Decode what was read, start what may start, write the answers.

        :param now: the clock's time, if the caller just read it (the
            bytes arrived then).
        """
        if self._processing or self._closed:
            return
        self._processing = True
        lifecycle = self.lifecycle
        try:
            while True:
                if lifecycle.reading and not self._read_events(now):
                    return  # a protocol violation: the connection is closing
                now = None  # resumed later: read the clock again
                if self.parked:
                    self._start_parked()
                # Reading resumes only if it was paused (for the parked
                # requests): a connection that reads has nothing to resume.
                if (
                    not lifecycle.reading
                    and self._parked_bytes <= self._limits.max_parked_bytes
                    and self._resume_reading("parked")
                ):
                    continue
                break
        finally:
            self._processing = False
        # The answers to a whole read go out in one write, straight to the
        # socket when nothing is queued (see _adapters/writethrough.py); answers that
        # finish later are left to Twisted, which coalesces them per
        # reactor iteration.
        self._flush()
        if self._draining or self._eof:
            self._close_if_done()

    def _read_events(self, now: float | None = None) -> bool:
        """
        Handle every event the bytes read so far hold, while reading.

        :param now: the clock's time, if the caller just read it.
        :returns: ``False`` after a protocol violation.
        """
        conn = self.conn
        live = self.liveness
        lifecycle = self.lifecycle
        limit = self._limits.max_concurrent
        stats = self._stats
        builtins = self._builtins
        if now is None:
            now = self._clock.seconds()
        while lifecycle.reading:
            event = conn.next_event()
            if event is None:
                break
            if type(event) is Request:  # the common case first, narrowed without a call
                # Only requests and cancels count as use: a peer that just
                # answers our keepalive PINGs is still idle.
                live.last_message = now
                stats.requests_total += 1
                if builtins is not None and event.method.startswith(RESERVED_PREFIX):
                    # Before the limits: answered from memory, at once.
                    self._answer_builtin(event)
                elif not self.parked and conn.unanswered <= limit:
                    self._start(event, now)
                else:
                    self._park(event, now)
            elif (kind := type(event)) is StreamMessage:
                assert isinstance(event, StreamMessage)
                self._stream_message(event)
            elif kind is CreditGranted:
                assert isinstance(event, CreditGranted)
                self._credit(event)
            elif kind is StreamEnd:
                assert isinstance(event, StreamEnd)
                live.last_message = now
                entry = self.streams.get(event.request_id)
                if entry is not None and entry.stream._reader is not None:
                    entry.stream._reader.finish()
            elif kind is StreamRequest:
                assert isinstance(event, StreamRequest)
                live.last_message = now
                self._stats.requests_total += 1
                self._stream_request(event, now, limit)
            elif kind is Cancel:
                assert isinstance(event, Cancel)
                live.last_message = now
                self._cancel(event.request_id)
            elif kind is ProtocolViolation:
                assert isinstance(event, ProtocolViolation)
                self._violated(event)
                return False
            elif kind is Rejected:
                assert isinstance(event, Rejected)
                live.last_message = now
                self._stats.requests_total += 1
                self._stats.errors_total += 1
                _log.info(
                    "rejected request {request_id} from {peer}: {message}",
                    request_id=event.request_id,
                    peer=self._peer(),
                    message=event.message,
                )
            # Settings, GoAway, Ping, Pong: the connection handled them.
            if not live.handshaken and conn.state is not ConnectionState.AWAIT_SETTINGS:
                live.handshake_done()
        return True

    def _stream_request(self, event: StreamRequest, now: float, limit: int) -> None:
        """A streaming call opened: make its stream, then start or park it."""
        rid = event.request_id
        kind = kind_of(event.client_stream, event.server_stream)
        if self._builtins is not None and event.method.startswith(RESERVED_PREFIX):
            self._send_error(
                rid,
                StatusCode.INVALID_ARGUMENT,
                f"method {event.method!r} is unary; called as {kind}",
            )
            return
        conn = self.conn
        starts = not self.parked and conn.unanswered <= limit
        if not starts and self._parked_bytes + _parked_size(event) > self._limits.max_parked_bytes:
            # Refused, not parked past the bound: pausing the reading would
            # hold back the CREDIT frames the running streams need to
            # finish, and so the slots the parked calls wait for (h2 refuses
            # excess streams with REFUSED_STREAM for the same reason).
            # Never started, so safe to retry.
            self._send_error(
                rid,
                StatusCode.RESOURCE_EXHAUSTED,
                f"too many calls waiting on this connection: {limit} run at once "
                f"(max_concurrent) and the rest wait up to max_parked_bytes "
                f"({self._limits.max_parked_bytes}); retry once some have finished",
                retry_safe=True,
            )
            return
        reader = writer = None
        if event.client_stream:

            def acknowledge(nbytes: int) -> None:
                conn.acknowledge(rid, nbytes)
                if not self._processing:
                    self._flush()

            reader = MessageReader(acknowledge, _identity)
        if event.server_stream:

            def send(data: bytes) -> None:
                conn.send_message(rid, data)
                if not self._processing:
                    self._flush()

            writer = MessageWriter(
                lambda: conn.can_send_message(rid),
                send,
                lambda: conn.peer_settings.max_frame_size,
            )
        streams = self.streams
        if streams is _UNUSED:
            self.streams = streams = {}
        streams[rid] = _StreamCall(rid, ServerStream(kind, reader, writer))
        if starts:
            self._start(event, now)
        else:
            self._park(event, now)

    def _stream_message(self, event: StreamMessage) -> None:
        entry = self.streams.get(event.request_id)
        reader = entry.stream._reader if entry is not None else None
        if reader is not None:
            reader.feed(event.body)
        else:  # the core yields messages only on open calls that read: not reached
            self.conn.acknowledge(event.request_id, message_cost(len(event.body)))

    def _credit(self, event: CreditGranted) -> None:
        """Credit arrived: let the writers it concerns send what waits."""
        if event.request_id == 0:
            entries = list(self.streams.values())
        else:
            one = self.streams.get(event.request_id)
            entries = [one] if one is not None else []
        for entry in entries:
            writer = entry.stream._writer
            if writer is not None:
                writer.pump()

    def _end_stream(self, rid: int, why: BaseException) -> None:
        """A streaming call is over: stop its timer, fail its readers and
        writers with ``why``, and give back the credit of unread messages."""
        entry = self.streams.pop(rid, None)
        if entry is None:
            return
        if entry.timer is not None and entry.timer.active():
            entry.timer.cancel()
        stream = entry.stream
        if stream._writer is not None:
            stream._writer.fail(why)
        if stream._reader is not None:
            stream._reader.discard(Failure(why))

    def _end_streams(self, why: BaseException) -> None:
        for rid in list(self.streams):
            self._end_stream(rid, why)

    def _stream_deadline(self, rid: int) -> None:
        """A streaming call's deadline passed, whatever it was doing."""
        cancellation = self._cancellations.pop(rid, None)
        if cancellation is not None:
            tell_cancelled(cancellation)
        self._send_error(rid, StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")
        self._end_stream(rid, DeadlineExceeded("the call's deadline passed"))
        deferred = self.running.pop(rid, None)
        if deferred is not None:
            deferred.cancel()
        self._request_done()

    def _park(self, request: Request | StreamRequest, now: float) -> None:
        parked = self.parked
        if parked is _UNUSED:
            self.parked = parked = {}
        parked[request.request_id] = (request, now)
        self._parked_bytes += _parked_size(request)
        if self._parked_bytes > self._limits.max_parked_bytes:
            # The last resort: the peer sends far past MAX_CONCURRENT.
            self.lifecycle.pause_reading("parked")

    def _start_parked(self) -> None:
        if self.lifecycle.write_blocked:
            return  # the peer is not reading: its answers would only pile up
        parked = self.parked
        limit = self._limits.max_concurrent
        conn = self.conn
        # Parked requests are counted in conn.unanswered.
        while parked and conn.unanswered - len(parked) < limit:
            rid = next(iter(parked))
            request, received = parked.pop(rid)
            self._parked_bytes -= _parked_size(request)
            self._start(request, received)

    def _violated(self, event: ProtocolViolation) -> None:
        if self.refusal is None:
            self._stats.protocol_errors += 1
            _log.info(
                "closing connection from {peer}: {code}: {message}",
                peer=self._peer(),
                code=status_name(event.code),
                message=event.message,
            )
        self._close()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self._stats.bytes_sent += len(data)
            self.lifecycle.write(data)

    # -- running responders --------------------------------------------------------

    def _start(self, request: Request | StreamRequest, received: float) -> None:
        rid = request.request_id
        deadline = None
        deadline_ms = request.deadline_ms
        cap = self._max_deadline_ms
        if cap is not None and (deadline_ms is None or deadline_ms > cap):
            deadline_ms = cap
        timeout = None
        if deadline_ms is not None:
            # Counted from when the request was read, parked time included.
            deadline = received + deadline_ms / 1000.0
            timeout = deadline - self._clock.seconds()
            if timeout <= 0:
                self._send_error(rid, StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")
                self._end_stream(rid, DeadlineExceeded("the call's deadline passed"))
                return
        if type(request) is StreamRequest:
            entry = self.streams.get(rid)
            if entry is not None:
                self._start_stream(request, entry, deadline, timeout)
                return
        cancellation = Cancellation()
        call = self._call(request, deadline, cancellation)
        respond = self._respond
        assert respond is not None
        try:
            result = respond(call)
            if type(result) is not bytes and inspect.iscoroutine(result):
                result = Deferred.fromCoroutine(result)
        except BaseException:
            self._failed(Failure(), rid, request.method)
            return
        if type(result) is bytes:  # the common case, straight to the wire
            # (_send_response, inline: once per request.)
            try:
                self.conn.send_response(rid, result)
            except LocalProtocolError as e:
                self._send_error(rid, e.code, e.message)
            return
        if not isinstance(result, Deferred):
            self._answer(result, rid, request.method)
            return
        self._keep(rid, result, cancellation)
        if timeout is not None:
            cancel_at_deadline(result, timeout, self._clock, cancellation)
        result.addCallbacks(
            self._answer,
            self._failed,
            callbackArgs=(rid, request.method),
            errbackArgs=(rid, request.method),
        )

    def _call(
        self,
        request: Request | StreamRequest,
        deadline: float | None,
        cancellation: Cancellation,
        stream: ServerStream | None = None,
    ) -> Call:
        """The :class:`Call` a responder sees for ``request`` (once per
        request: through :func:`new_call`)."""
        info = self.info
        assert info is not None
        metadata = request.metadata
        return new_call(
            request.method,
            request.body,
            dict(metadata) if metadata else _NO_METADATA,
            info,
            request.request_id,
            deadline,
            self._clock,
            cancellation,
            # conn.multiplexed is False, without the property's call.
            self.conn._in_order is True,
            stream,
        )

    def _start_stream(
        self,
        request: Request | StreamRequest,
        entry: _StreamCall,
        deadline: float | None,
        timeout: float | None,
    ) -> None:
        """Run a streaming call's responder; its deadline covers the whole
        call, not only the responder's Deferred."""
        rid = request.request_id
        cancellation = Cancellation()
        call = self._call(request, deadline, cancellation, entry.stream)
        self._keep(rid, None, cancellation)
        if timeout is not None:
            entry.timer = self._clock.callLater(timeout, self._stream_deadline, rid)
        assert self._respond is not None
        try:
            result = self._respond(call)
            if inspect.iscoroutine(result):
                result = Deferred.fromCoroutine(result)
        except BaseException:
            self._failed(Failure(), rid, request.method)
            return
        if not isinstance(result, Deferred):
            self._answer(result, rid, request.method)
            return
        self._keep(rid, result, None)
        result.addCallbacks(
            self._answer,
            self._failed,
            callbackArgs=(rid, request.method),
            errbackArgs=(rid, request.method),
        )

    def _keep(
        self, rid: int, running: Deferred[Any] | None, cancellation: Cancellation | None
    ) -> None:
        """Record a started request's Deferred and its cancellation state,
        giving the connection its own tables at its first."""
        if running is not None:
            table = self.running
            if table is _UNUSED:
                self.running = table = {}
            table[rid] = running
        if cancellation is not None:
            cancellations = self._cancellations
            if cancellations is _UNUSED:
                self._cancellations = cancellations = {}
            cancellations[rid] = cancellation

    def _after_messages(self, rid: int, send: Callable[[], None]) -> bool:
        """
        A streaming call's final status is ready: send it once the messages
        the responder wrote have gone (they wait for credit).

        :returns: ``False`` if ``rid`` is not a streaming call (send now).
        """
        entry = self.streams.get(rid)
        if entry is None:
            return False
        writer = entry.stream._writer

        def final() -> None:
            if rid not in self.conn.in_flight:
                return  # given up meanwhile (cancel, deadline, grace)
            self._cancellations.pop(rid, None)
            send()
            self._end_stream(rid, RuntimeError("the call is over: its final status was sent"))
            self._request_done()

        if writer is None:
            final()
        else:
            writer.close(RuntimeError("the responder has answered: the stream is over"), final)
        return True

    def _answer_builtin(self, request: Request) -> None:
        """
        Answer a call to a reserved method (``_adapters/builtins.py``)
        without the responder, the concurrency limit or parking: a health
        check must answer while the application is busy.
        """
        rid = request.request_id
        assert self._builtins is not None
        try:
            body = self._builtins.answer(
                request.method,
                request.body,
                (self.responder, self.factory.responder_factory),
            )
        except BaseException:
            self._failed(Failure(), rid, request.method)
            return
        self._send_response(rid, body)

    def _cancel(self, rid: int) -> None:
        self.conn.forget(rid)
        parked = self.parked.pop(rid, None)
        if parked is not None:
            # Never started: dropped without running.
            self._parked_bytes -= _parked_size(parked[0])
            self._end_stream(rid, CancelledError("the client cancelled the call"))
            return
        # A streaming call whose responder returned may still wait for
        # credit: it is given up all the same.
        cancellation = self._cancellations.pop(rid, None)
        if cancellation is not None:
            tell_cancelled(cancellation)
        self._end_stream(rid, CancelledError("the client cancelled the call"))
        deferred = self.running.pop(rid, None)
        if deferred is not None:
            deferred.cancel()

    def _answer(self, result: Any, rid: int, method: str) -> None:
        self.running.pop(rid, None)
        conn = self.conn
        if rid not in conn.in_flight:
            return  # cancelled by the client, or the connection is gone
        try:
            if isinstance(result, Reply):
                body, metadata = result.body, metadata_pairs(result.metadata)
            else:
                body, metadata = result, ()
            if type(body) is not bytes:
                body = BYTES.encode(body)
        except Exception:
            self._failed(Failure(), rid, method)
            return
        if self.streams and self._after_messages(
            rid, lambda: self._send_response(rid, body, metadata)
        ):
            return
        self._cancellations.pop(rid, None)
        self._send_response(rid, body, metadata)
        self._request_done()

    def _failed(self, failure: Failure, rid: int, method: str) -> None:
        self.running.pop(rid, None)
        if rid not in self.conn.in_flight:
            self._cancellations.pop(rid, None)
            return None  # cancelled by the client, or the connection is gone
        error = failure.value
        if isinstance(error, StatusError):
            status = (error.code, error.message, error.retry_safe, error.details)
        else:
            code, message = error_status(error)
            if code == StatusCode.INTERNAL:
                _log.failure(
                    "{what} for {method!r} (request {request_id}) failed",
                    failure,
                    what="responder or interceptor" if self.factory.interceptors else "responder",
                    method=method,
                    request_id=rid,
                )
            status = (code, message, False, b"")
        if self.streams and self._after_messages(rid, lambda: self._send_error(rid, *status)):
            return None
        self._cancellations.pop(rid, None)
        self._send_error(rid, *status)
        self._request_done()
        return None

    def _send_response(self, rid: int, body: bytes, metadata: Metadata = ()) -> None:
        """Answer successfully; an answer the peer cannot take (too large
        for its frames, or for a line) is answered with the error instead."""
        try:
            self.conn.send_response(rid, body, metadata)
        except LocalProtocolError as e:
            self._send_error(rid, e.code, e.message)

    def _send_error(
        self,
        rid: int,
        code: int,
        message: str,
        retry_safe: bool = False,
        details: bytes = b"",
    ) -> None:
        """Answer with an error; never raises (the core makes any status,
        message and details fit the wire)."""
        self._stats.errors_total += 1
        try:
            self.conn.send_error(rid, code, message, details, retry_safe)
        except LocalProtocolError:
            # Only for a request no longer awaiting an answer: nothing owed.
            pass

    def _request_done(self) -> None:
        # An answer inside _process is flushed with the whole read's.
        if not self._processing:
            self._process()


def _identity(data: bytes) -> bytes:
    return data


class ServerFactory(Factory):
    """
    Serves a responder on every connection accepted.

    :param responder: an :class:`~twisted_reqresp.interfaces.IResponder`
        shared by every connection (a :class:`~twisted_reqresp.Router`, for
        instance), or an
        :class:`~twisted_reqresp.interfaces.IResponderFactory` that makes one
        per connection.
    :param wire: the wire format (:data:`~twisted_reqresp.BINARY` by default).
    :param limits: what the server accepts from each client, its timeouts
        and its connection limits.
    :param clock: the clock for deadlines and timeouts; the global reactor
        if omitted, looked up only when first needed.
    :param interceptors: :class:`~twisted_reqresp.interfaces.IServerInterceptor`
        providers (or plain callables ``f(call, proceed)``) every call
        passes through on its way to the responder, the first outermost;
        see ``docs/guide.md``, "Interceptors".
    :param builtins: serve the built-in methods ``reqresp.health``,
        ``reqresp.methods`` and ``reqresp.stats`` before the responder
        (``docs/guide.md``, "Health and introspection"); with ``False``,
        calls to those names reach the responder like any other.
    :raises TypeError: if ``responder`` is not a responder, or one of
        ``interceptors`` is not an interceptor.

    :ivar health: the :class:`~twisted_reqresp.HealthStatus` that
        ``reqresp.health`` reports; the application sets its own statuses
        on it, and :meth:`drain` makes it DRAINING.
    :ivar builtins: what answers the built-in methods, or ``None`` when
        they are off.
    """

    protocol = ServerProtocol

    def __init__(
        self,
        responder: IResponder | IResponderFactory,
        *,
        wire: IWireFormat | None = None,
        limits: Limits = DEFAULT_LIMITS,
        clock: IReactorTime | None = None,
        interceptors: Sequence[object] = (),
        builtins: bool = True,
    ) -> None:
        if IResponderFactory.providedBy(responder):
            self.responder_factory: IResponderFactory = responder
        elif IResponder.providedBy(responder):
            self.responder_factory = SharedResponder(responder)
        else:
            raise TypeError(f"{responder!r} provides neither IResponder nor IResponderFactory")
        self.wire: IWireFormat = wire if wire is not None else BinaryFormat()
        self.limits = limits
        for interceptor in interceptors:
            interceptor_function(interceptor, IServerInterceptor)  # fail here, not per connection
        #: The server interceptors, outermost first.
        self.interceptors: tuple[object, ...] = tuple(interceptors)
        self._clock = clock
        self._ids = itertools.count(1)
        # A shared responder's respond, composed with the interceptors once,
        # not once per connection (issue 12).
        self._composed: Callable[[Call], Any] | None = None
        self._stats: ServerStats | None = None
        # Every connection's liveness deadline, under one DelayedCall.
        self._timers: LivenessTimers | None = None
        # The local address the last connection reported (_shared_host).
        self._last_host: IAddress | None = None
        self._per_peer: dict[str, int] = {}
        #: True once :meth:`drain` was called: new connections are refused.
        self.draining = False
        #: The protocols of the connections open now (refused ones included).
        self.connections: set[ServerProtocol] = set()
        self.health = HealthStatus()
        self.builtins: Builtins | None = (
            Builtins(self.health, lambda: self.stats) if builtins else None
        )

    def _respond_with(self, responder: IResponder) -> Callable[[Call], Any]:
        """:returns: ``responder.respond`` wrapped in the interceptors."""
        shared = self.responder_factory
        if isinstance(shared, SharedResponder) and responder is shared.responder:
            if self._composed is None:
                self._composed = compose_server(self.interceptors, responder.respond, self.clock)
            return self._composed
        # A responder per connection: composed for it alone, so that the
        # factory keeps no reference to it after its connection.
        return compose_server(self.interceptors, responder.respond, self.clock)

    @property
    def clock(self) -> IReactorTime:
        """The clock used for deadlines, timeouts and uptime."""
        if self._clock is None:
            from twisted.internet import reactor

            self._clock = reactor
        return self._clock

    def _shared_host(self, host: IAddress) -> IAddress:
        """
        :returns: ``host``, or an equal address already held: the connections
            of one listening port share their local address (a new one from
            ``getHost()`` is about 190 bytes per connection; issue 12).
            Twisted's addresses are values (compared by their fields, never
            changed once made).
        """
        last = self._last_host
        if last is not None and type(last) is type(host) and last == host:
            return last
        self._last_host = host
        return host

    def _liveness_timers(self) -> LivenessTimers:
        """:returns: the timers of the connections' liveness (issue 12: one
        ``DelayedCall`` for them all, not one each)."""
        if self._timers is None:
            self._timers = LivenessTimers(self.clock)
        return self._timers

    @property
    def stats(self) -> ServerStats:
        """The server's :class:`ServerStats` counters."""
        if self._stats is None:
            self._stats = ServerStats(self.clock)
        return self._stats

    def buildProtocol(self, addr: IAddress | None) -> ServerProtocol:
        """
        :returns: a new :class:`ServerProtocol` for one connection; one that
            refuses the peer (at its first message, in its own format) when
            a connection limit is reached or the server is draining.
        """
        return ServerProtocol(self, next(self._ids), self._refusal(addr))

    def _refusal(self, addr: IAddress | None) -> tuple[int, str] | None:
        limits = self.limits
        if self.draining:
            return _DRAINING_REFUSAL
        accepted = len(self.connections) - self.stats.connections_refusing
        if limits.max_connections is not None and accepted >= limits.max_connections:
            return (
                StatusCode.RESOURCE_EXHAUSTED,
                f"too many connections (limit {limits.max_connections})",
            )
        # The per-peer limit waits for ServerProtocol._identify: behind a
        # PROXY header, ``addr`` is the proxy's address, not the client's.
        return None

    def _connection_made(self, protocol: ServerProtocol) -> None:
        self.connections.add(protocol)
        refusal = protocol.refusal
        if refusal is not None:
            self._count(
                protocol,
                "refusing",
                "draining" if refusal == _DRAINING_REFUSAL else "max_connections",
            )

    def _identified(self, protocol: ServerProtocol) -> None:
        """The peer's address is known: count the connection, or refuse it
        if its peer has too many open."""
        if protocol._counted is not None:
            return
        per_peer = self.limits.max_connections_per_peer
        host = getattr(protocol.info.peer, "host", None) if protocol.info else None
        if per_peer is not None and host is not None and self._per_peer.get(host, 0) >= per_peer:
            protocol.refusal = (
                StatusCode.RESOURCE_EXHAUSTED,
                f"too many connections from {host} (limit {per_peer})",
            )
            self._count(protocol, "refusing", "max_connections_per_peer")
            return
        self._count(protocol, "open")
        stats = self.stats
        stats.connections_total += 1
        if host is not None:
            protocol._peer_host = host
            self._per_peer[host] = self._per_peer.get(host, 0) + 1

    def _count(self, protocol: ServerProtocol, what: str, reason: str = "") -> None:
        protocol._counted = what
        stats = self.stats
        if what == "refusing":
            stats.connections_refused += 1
            stats.connections_refusing += 1
            by_reason = stats.refused_by_reason
            by_reason[reason] = by_reason.get(reason, 0) + 1
        else:
            stats.connections_open += 1

    def _connection_closed(self, protocol: ServerProtocol) -> None:
        self.connections.discard(protocol)
        counted, protocol._counted = protocol._counted, None
        if counted == "refusing":
            self.stats.connections_refusing -= 1
        elif counted == "open":
            self.stats.connections_open -= 1
            host = protocol._peer_host
            if host is not None:
                left = self._per_peer.get(host, 1) - 1
                if left:
                    self._per_peer[host] = left
                else:
                    self._per_peer.pop(host, None)

    def drain(self, grace: float | None = None) -> Deferred[None]:
        """
        Stop serving in order: report DRAINING (``health``), refuse
        new connections, send GOAWAY on every
        open one, let the requests already accepted finish, and close each
        connection once it has answered them.  When ``grace`` seconds have
        passed, requests still running are answered UNAVAILABLE (not
        retry-safe: they may have run), requests not yet started UNAVAILABLE
        marked retry-safe, and the connections closed (see
        :meth:`ServerProtocol.grace_expired`).

        Call it after the listening ports stopped (the service returned by
        the twistd plugin does this on ``stopService``).

        :param grace: seconds to wait; ``limits.grace`` if omitted.
        :returns: a Deferred that fires when every connection is closed.
        """
        self.draining = True
        self.health.start_draining()
        grace = self.limits.grace if grace is None else grace
        waiting = [protocol.drain() for protocol in list(self.connections)]
        done: Deferred[None] = Deferred()
        if not waiting:
            done.callback(None)
            return done
        remaining = [len(waiting)]

        def closed(_: object) -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                if timer.active():
                    timer.cancel()
                done.callback(None)

        def force() -> None:
            for protocol in list(self.connections):
                protocol.grace_expired()

        timer = self.clock.callLater(grace, force)
        for d in waiting:
            d.addCallback(closed)
        return done
