"""
The server side's Twisted adapter: :class:`ServerFactory` builds one
:class:`ServerProtocol` per accepted connection.

The protocol is plumbing around the sans-IO
:class:`~twisted_reqresp._connection.Connection`: it feeds received bytes in,
runs the responder for each request, owns the responders' Deferreds and
timers, and writes what the connection queues.  It *has* a connection and
*has* a responder (composition, not AMP's mix-ins), so each can be faked
alone.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.defer import TimeoutError as DeferTimeout
from twisted.internet.interfaces import IAddress, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ._binary import BinaryFormat
from ._call import Call, ConnectionInfo, Reply, metadata_pairs
from ._connection import Connection, ConnectionState, WireFormat
from ._errors import LocalProtocolError, StatusError
from ._events import Cancel, ProtocolViolation, Rejected, Request, Role
from ._limits import DEFAULT_LIMITS, Limits
from ._liveness import Liveness
from ._stats import ServerStats
from ._status import StatusCode, status_name
from ._writethrough import write_through
from .codecs import BYTES
from .interfaces import IResponder, IResponderFactory

__all__ = ["ServerFactory", "ServerProtocol", "SharedResponder"]

_log = Logger(namespace="twisted_reqresp.server")

_NO_METADATA: Mapping[str, str] = MappingProxyType({})

#: Seconds a refused connection may wait before sending its first message.
_REFUSED_TIMEOUT = 2.0


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


@implementer(IPushProducer)
class _WriteBackpressure:
    """
    Registered with the transport: Twisted pauses it when the transport's
    write buffer passes its high-water mark and resumes it once drained, and
    the protocol stops reading requests meanwhile.
    """

    def __init__(self, protocol: ServerProtocol) -> None:
        self._protocol = protocol

    def pauseProducing(self) -> None:
        self._protocol._set_paused("writes", True)

    def resumeProducing(self) -> None:
        self._protocol._set_paused("writes", False)

    def stopProducing(self) -> None:
        pass


class ServerProtocol(Protocol):
    """
    One accepted connection.  Built by :class:`ServerFactory`; users do not
    make these themselves.
    """

    def __init__(
        self,
        factory: ServerFactory,
        connection_id: int,
        refusal: tuple[int, str] | None = None,
    ) -> None:
        self.factory = factory
        self.connection_id = connection_id
        self.conn = Connection(Role.SERVER, factory.wire, factory.limits)
        #: Why this connection is refused (a connection limit), if it is.
        self.refusal = refusal
        self._clock = factory.clock
        limits = factory.limits
        handshake_timeout = limits.preface_timeout
        if refusal is not None:
            # A refused peer gets its answer at its first message; it may not
            # hold the socket for long waiting to send one.
            handshake_timeout = min(handshake_timeout or _REFUSED_TIMEOUT, _REFUSED_TIMEOUT)
        self.liveness = Liveness(
            self._clock,
            limits,
            busy=lambda: bool(self.running or self.conn.in_flight),
            can_ping=lambda: self.conn.keepalive,
            send_ping=self._send_ping,
            give_up=self._give_up,
            idle=self._close_idle,
            handshake_timeout=handshake_timeout,
        )
        self._draining = False
        self._lost_waiters: list[Deferred[None]] = []
        cap = factory.limits.max_deadline
        self._max_deadline_ms = None if cap is None else max(1, int(cap * 1000))
        self.responder: IResponder | None = None
        self.info: ConnectionInfo | None = None
        #: Responders still running, by request id.
        self.running: dict[int, Deferred[Any]] = {}
        self._stats = factory.stats
        self._paused: set[str] = set()
        self._batching = False
        self._closed = False

    # -- Twisted plumbing ------------------------------------------------------

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None
        self.info = ConnectionInfo(
            connection_id=self.connection_id,
            peer=transport.getPeer(),
            host=transport.getHost(),
            wire_format=self.factory.wire.name,
        )
        self.liveness.start()
        self._write_through = write_through(transport)
        self.factory._connection_opened(self)
        transport.registerProducer(_WriteBackpressure(self), True)  # type: ignore[attr-defined]
        if self.refusal is not None:
            self.conn.refuse(*self.refusal)
            return
        self.responder = self.factory.responder_factory.responder_for(self.info)
        self.responder.connection_made(self.info)
        self._flush()

    def dataReceived(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self.liveness.last_bytes = self._clock.seconds()
        self._process()

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:  # noqa: B008
        if self._closed:
            return
        self._closed = True
        self.conn.close()
        self.liveness.stop()
        running, self.running = self.running, {}
        for deferred in running.values():
            deferred.cancel()
        if self.responder is not None:
            try:
                self.responder.connection_lost(reason)
            except Exception:
                _log.failure("responder.connection_lost failed")
        self.factory._connection_closed(self)
        waiters, self._lost_waiters = self._lost_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    # -- liveness and drain -------------------------------------------------------

    def _send_ping(self) -> None:
        self.conn.send_ping(b"\0" * 8)
        self._flush()

    def _give_up(self, code: int, message: str) -> None:
        _log.info(
            "closing connection from {peer}: {message}",
            peer=self.info.peer if self.info else None,
            message=message,
        )
        self.conn.close_with_error(code, message)
        self._flush_and_close()

    def _close_idle(self) -> None:
        if self.conn.keepalive:
            self._give_up(StatusCode.OK, "idle timeout")
        elif self.transport is not None:
            self.transport.loseConnection()

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
        self._lost_waiters.append(d)
        if not self._draining:
            self._draining = True
            if self.conn.state is not ConnectionState.CLOSED:
                self.conn.send_goaway(StatusCode.OK, "server shutting down")
            self._flush()
            self._close_if_drained()
        return d

    def _close_if_drained(self) -> None:
        if (
            self._draining
            and not self.running
            and not self.conn.in_flight
            and self.transport is not None
        ):
            self.transport.loseConnection()

    # -- reading ---------------------------------------------------------------

    def _set_paused(self, why: str, paused: bool) -> None:
        was = bool(self._paused)
        if paused:
            self._paused.add(why)
        else:
            self._paused.discard(why)
        if self._closed or self.transport is None:
            return
        if self._paused and not was:
            self.transport.pauseProducing()  # type: ignore[attr-defined]
        elif was and not self._paused:
            self.transport.resumeProducing()  # type: ignore[attr-defined]
            # Requests already received while paused wait in the codec.
            self._process()

    def _process(self) -> None:
        conn = self.conn
        live = self.liveness
        limit = conn.limits.max_concurrent
        now = self._clock.seconds()
        self._batching = True
        try:
            while not self._paused:
                event = conn.next_event()
                if event is None:
                    break
                kind = type(event)
                if kind is Request:
                    # Only requests and cancels count as use: a peer that
                    # just answers our keepalive PINGs is still idle.
                    live.last_message = now
                    assert isinstance(event, Request)
                    self._start(event)
                    if conn.unanswered >= limit:
                        self._set_paused("concurrency", True)
                elif kind is Cancel:
                    assert isinstance(event, Cancel)
                    live.last_message = now
                    self._cancel(event.request_id)
                elif kind is ProtocolViolation:
                    assert isinstance(event, ProtocolViolation)
                    self._violated(event)
                    return
                elif kind is Rejected:
                    assert isinstance(event, Rejected)
                    live.last_message = now
                    self._stats.requests_total += 1
                    self._stats.errors_total += 1
                    _log.info(
                        "rejected request {request_id} from {peer}: {message}",
                        request_id=event.request_id,
                        peer=self.info.peer if self.info else None,
                        message=event.message,
                    )
                # Settings, GoAway, Ping: the connection handled them already.
                if not live.handshaken and conn.state is not ConnectionState.AWAIT_SETTINGS:
                    live.handshaken = True
        finally:
            self._batching = False
        # The answers to a whole read go out in one write, straight to the
        # socket when nothing is queued (see _writethrough.py); answers that
        # finish later are left to Twisted, which coalesces them per
        # reactor iteration.
        data = conn.data_to_send()
        if data and not self._closed:
            self._write_through(data)
        if self._draining:
            self._close_if_drained()

    def _violated(self, event: ProtocolViolation) -> None:
        if self.refusal is None:
            self._stats.protocol_errors += 1
            _log.info(
                "closing connection from {peer}: {code}: {message}",
                peer=self.info.peer if self.info else None,
                code=status_name(event.code),
                message=event.message,
            )
        self._flush_and_close()

    def _flush_and_close(self) -> None:
        """Send the last words the connection queued, then close."""
        self._flush()
        if self.transport is not None:
            self.transport.loseConnection()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self._closed:
            self.transport.write(data)

    # -- running responders --------------------------------------------------------

    def _start(self, request: Request) -> None:
        self._stats.requests_total += 1
        rid = request.request_id
        deadline = None
        deadline_ms = request.deadline_ms
        cap = self._max_deadline_ms
        if cap is not None and (deadline_ms is None or deadline_ms > cap):
            deadline_ms = cap
        if deadline_ms is not None:
            deadline = self._clock.seconds() + deadline_ms / 1000.0
        call = Call(
            method=request.method,
            body=request.body,
            metadata=dict(request.metadata) if request.metadata else _NO_METADATA,
            connection=self.info,  # type: ignore[arg-type]
            request_id=rid,
            deadline=deadline,
            _clock=self._clock,
        )
        assert self.responder is not None
        try:
            result = self.responder.respond(call)
            if type(result) is not bytes and inspect.iscoroutine(result):
                result = Deferred.fromCoroutine(result)
        except BaseException:
            self._failed(Failure(), rid, request.method)
            return
        if type(result) is bytes:  # the common case, straight to the wire
            try:
                self.conn.send_response(rid, result)
            except LocalProtocolError as e:
                self._send_error(rid, e.code, e.message)
            return
        if not isinstance(result, Deferred):
            self._answer(result, rid, request.method)
            return
        self.running[rid] = result
        if deadline_ms is not None:
            result.addTimeout(deadline_ms / 1000.0, self._clock)
        result.addCallbacks(
            self._answer,
            self._failed,
            callbackArgs=(rid, request.method),
            errbackArgs=(rid, request.method),
        )

    def _cancel(self, rid: int) -> None:
        self.conn.forget(rid)
        deferred = self.running.pop(rid, None)
        if deferred is not None:
            deferred.cancel()
        self._request_done()

    def _answer(self, result: Any, rid: int, method: str) -> None:
        self.running.pop(rid, None)
        conn = self.conn
        if rid not in conn.in_flight:
            return  # cancelled by the client, or the connection is gone
        if isinstance(result, Reply):
            body, metadata = result.body, metadata_pairs(result.metadata)
        else:
            body, metadata = result, ()
        try:
            if type(body) is not bytes:
                body = BYTES.encode(body)
            conn.send_response(rid, body, metadata)
        except LocalProtocolError as e:
            self._send_error(rid, e.code, e.message)
        except Exception:
            self._failed(Failure(), rid, method)
            return
        self._request_done()

    def _failed(self, failure: Failure, rid: int, method: str) -> None:
        self.running.pop(rid, None)
        if rid not in self.conn.in_flight:
            return None  # cancelled by the client, or the connection is gone
        error = failure.value
        if isinstance(error, StatusError):
            self._send_error(rid, error.code, error.message, error.details, error.retry_safe)
        elif isinstance(error, DeferTimeout):
            self._send_error(rid, StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")
        elif isinstance(error, CancelledError):
            self._send_error(rid, StatusCode.CANCELLED, "cancelled by the server")
        else:
            _log.failure(
                "responder for {method!r} (request {request_id}) failed",
                failure,
                method=method,
                request_id=rid,
            )
            self._send_error(rid, StatusCode.INTERNAL, "internal error")
        self._request_done()
        return None

    def _send_error(
        self, rid: int, code: int, message: str, details: bytes = b"", retry_safe: bool = False
    ) -> None:
        self._stats.errors_total += 1
        try:
            self.conn.send_error(rid, code, message, details, retry_safe)
        except LocalProtocolError as e:
            # Details too large for the peer: keep the status, drop them.
            self.conn.send_error(rid, code, f"{message} ({e.message})")

    def _request_done(self) -> None:
        if self._batching:
            return
        self._flush()
        if self._draining:
            self._close_if_drained()
        elif (
            "concurrency" in self._paused and self.conn.unanswered < self.conn.limits.max_concurrent
        ):
            self._set_paused("concurrency", False)


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
    """

    protocol = ServerProtocol

    def __init__(
        self,
        responder: IResponder | IResponderFactory,
        *,
        wire: WireFormat | None = None,
        limits: Limits = DEFAULT_LIMITS,
        clock: IReactorTime | None = None,
    ) -> None:
        if IResponderFactory.providedBy(responder):
            self.responder_factory: IResponderFactory = responder
        elif IResponder.providedBy(responder):
            self.responder_factory = SharedResponder(responder)
        else:
            raise TypeError(f"{responder!r} provides neither IResponder nor IResponderFactory")
        self.wire: WireFormat = wire if wire is not None else BinaryFormat()
        self.limits = limits
        self._clock = clock
        self._ids = itertools.count(1)
        self._stats: ServerStats | None = None
        self._per_peer: dict[str, int] = {}
        #: True once :meth:`drain` was called: new connections are refused.
        self.draining = False
        #: The protocols of the connections open now (refused ones included).
        self.connections: set[ServerProtocol] = set()

    @property
    def clock(self) -> IReactorTime:
        """The clock used for deadlines, timeouts and uptime."""
        if self._clock is None:
            from twisted.internet import reactor

            self._clock = reactor
        return self._clock

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
            return StatusCode.UNAVAILABLE, "server is shutting down"
        accepted = len(self.connections) - self.stats.connections_refusing
        if limits.max_connections is not None and accepted >= limits.max_connections:
            return (
                StatusCode.RESOURCE_EXHAUSTED,
                f"too many connections (limit {limits.max_connections})",
            )
        per_peer = limits.max_connections_per_peer
        host = getattr(addr, "host", None)
        if per_peer is not None and host is not None and self._per_peer.get(host, 0) >= per_peer:
            return (
                StatusCode.RESOURCE_EXHAUSTED,
                f"too many connections from {host} (limit {per_peer})",
            )
        return None

    def _peer_host(self, protocol: ServerProtocol) -> str | None:
        return getattr(protocol.info.peer, "host", None) if protocol.info else None

    def _connection_opened(self, protocol: ServerProtocol) -> None:
        self.connections.add(protocol)
        stats = self.stats
        if protocol.refusal is not None:
            stats.connections_refused += 1
            stats.connections_refusing += 1
            return
        stats.connections_open += 1
        stats.connections_total += 1
        host = self._peer_host(protocol)
        if host is not None:
            self._per_peer[host] = self._per_peer.get(host, 0) + 1

    def _connection_closed(self, protocol: ServerProtocol) -> None:
        self.connections.discard(protocol)
        if protocol.refusal is not None:
            self.stats.connections_refusing -= 1
            return
        self.stats.connections_open -= 1
        host = self._peer_host(protocol)
        if host is not None:
            left = self._per_peer.get(host, 1) - 1
            if left:
                self._per_peer[host] = left
            else:
                self._per_peer.pop(host, None)

    def drain(self, grace: float | None = None) -> Deferred[None]:
        """
        Stop serving in order: refuse new connections, send GOAWAY on every
        open one, let the requests already accepted finish, and close each
        connection once it has answered them.  Connections still busy after
        ``grace`` seconds are closed anyway (their remaining calls fail on
        the client).

        Call it after the listening ports stopped (the service returned by
        the twistd plugin does this on ``stopService``).

        :param grace: seconds to wait; ``limits.grace`` if omitted.
        :returns: a Deferred that fires when every connection is closed.
        """
        self.draining = True
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
                if protocol.transport is not None:
                    _log.info(
                        "grace period over: closing connection {id} with {n} requests running",
                        id=protocol.connection_id,
                        n=len(protocol.running),
                    )
                    protocol.transport.abortConnection()  # type: ignore[attr-defined]

        timer = self.clock.callLater(grace, force)
        for d in waiting:
            d.addCallback(closed)
        return done
