"""
The client side: :class:`ClientProtocol` (the Twisted adapter),
:class:`Client` (the API users call) and :func:`connect`.

As in AMP's ``BoxDispatcher``: a per-connection id counter (in the sans-IO
connection), a map of request id to Deferred, every pending call failed at
once when the connection goes, and ``call`` never raises synchronously.
Unlike AMP, each Deferred has a canceller that sends CANCEL to the server,
and a timeout is ``Deferred.addTimeout`` on an injected clock, so a timeout
and a cancellation share one path.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Iterable, Mapping
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IAddress, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from ._binary import BinaryFormat
from ._call import Reply, metadata_pairs
from ._connection import Connection, WireFormat
from ._errors import (
    ConnectionClosed,
    DeadlineExceeded,
    LocalProtocolError,
    RemoteError,
    StatusError,
)
from ._events import ErrorResponse, GoAway, Pong, ProtocolViolation, Response, Role, Settings
from ._limits import DEFAULT_LIMITS, Limits
from ._status import StatusCode
from .codecs import BYTES
from .interfaces import ICodec

__all__ = ["Client", "ClientFactory", "ClientProtocol", "connect"]

_PING = struct.Struct(">Q")


def _deadline_ms(timeout: float) -> int:
    # Round up: a deadline of 0 ms would expire before the server starts.
    return min(0xFFFF_FFFF, max(1, math.ceil(timeout * 1000)))


class ClientProtocol(Protocol):
    """
    One client connection.  :func:`connect` builds it and wraps it in a
    :class:`Client`; use this class directly only to plug the protocol into
    your own Twisted factory.

    :param wire: the wire format.
    :param limits: what this side accepts from the server.
    :param clock: the clock for timeouts and ping round trips.
    """

    def __init__(self, *, wire: WireFormat, limits: Limits, clock: IReactorTime) -> None:
        self.conn = Connection(Role.CLIENT, wire, limits)
        self.clock = clock
        #: Calls waiting for an answer, by request id.
        self.pending: dict[int, Deferred[Reply]] = {}
        self._pings: dict[bytes, tuple[Deferred[float], float]] = {}
        self._ping_ids = itertools.count(1)
        self._ready: Deferred[ClientProtocol] | None = Deferred()
        self._close_waiters: list[Deferred[None]] = []
        self._closing = False
        self.lost: Failure | None = None

    # -- Twisted plumbing ------------------------------------------------------

    def connectionMade(self) -> None:
        self._flush()
        if self.conn.state.value == "open":
            self._fire_ready()

    def when_ready(self) -> Deferred[ClientProtocol]:
        """
        :returns: a Deferred that fires with this protocol once the server's
            SETTINGS arrived (at once for formats without a handshake), or
            fails if the connection closes first.
        """
        if self.lost is not None:
            return fail(ConnectionClosed("connection closed during the handshake", self.lost))
        if self._ready is None:
            return succeed(self)
        d: Deferred[ClientProtocol] = Deferred()
        self._ready.addBoth(_chain, d)
        return d

    def _fire_ready(self) -> None:
        ready, self._ready = self._ready, None
        if ready is not None:
            ready.callback(self)

    def dataReceived(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        pending = self.pending
        while True:
            event = conn.next_event()
            if event is None:
                break
            kind = type(event)
            if kind is Response:
                assert isinstance(event, Response)
                d = pending.pop(event.request_id, None)
                if d is not None:
                    d.callback(Reply(body=event.body, metadata=dict(event.metadata)))
            elif kind is ErrorResponse:
                assert isinstance(event, ErrorResponse)
                d = pending.pop(event.request_id, None)
                if d is not None:
                    d.errback(
                        RemoteError(
                            event.code,
                            event.message,
                            event.details,
                            retry_safe=event.retry_safe,
                        )
                    )
            elif kind is Settings:
                self._fire_ready()
            elif kind is Pong:
                assert isinstance(event, Pong)
                entry = self._pings.pop(event.payload, None)
                if entry is not None:
                    entry[0].callback(self.clock.seconds() - entry[1])
            elif kind is GoAway:
                assert isinstance(event, GoAway)
                self._goaway(event)
            elif kind is ProtocolViolation:
                self._flush()
                if self.transport is not None:
                    self.transport.loseConnection()
                return
        self._flush()
        self._maybe_finish_close()

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:  # noqa: B008
        self.lost = reason
        self.conn.close()
        goaway = self.conn.peer_goaway
        pending, self.pending = self.pending, {}
        for rid, d in sorted(pending.items()):
            safe = goaway is not None and rid > goaway.last_request_id
            d.errback(ConnectionClosed("connection lost before the answer", reason, retry_safe=safe))
        pings, self._pings = self._pings, {}
        for d, _ in pings.values():
            d.errback(ConnectionClosed("connection lost before the pong", reason))
        ready, self._ready = self._ready, None
        if ready is not None:
            ready.errback(ConnectionClosed("connection closed during the handshake", reason))
        waiters, self._close_waiters = self._close_waiters, []
        for w in waiters:
            w.callback(None)

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and self.lost is None:
            self.transport.write(data)

    def _goaway(self, event: GoAway) -> None:
        # Calls the server never accepted fail now, marked safe to retry;
        # the ones it accepted still get their answers.
        for rid in sorted(self.pending):
            if rid > event.last_request_id:
                d = self.pending.pop(rid)
                self.conn.send_cancel(rid)
                d.errback(
                    ConnectionClosed(
                        f"the server is going away: {event.message or 'shutting down'}",
                        retry_safe=True,
                    )
                )

    # -- calls -------------------------------------------------------------------

    def call(
        self,
        method: str,
        body: bytes = b"",
        *,
        metadata: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        timeout: float | None = None,
    ) -> Deferred[Reply]:
        """
        Send a request.  See :meth:`Client.call`; this one takes and gives
        bytes only.
        """
        if self._closing or self.lost is not None:
            return fail(ConnectionClosed("the connection is closed"))
        try:
            rid = self.conn.send_request(
                method,
                body,
                metadata_pairs(metadata),
                _deadline_ms(timeout) if timeout is not None else None,
            )
        except LocalProtocolError as e:
            if e.code == StatusCode.UNAVAILABLE:
                return fail(ConnectionClosed(e.message, retry_safe=True))
            return fail(StatusError(e.code, e.message))
        except Exception:
            return fail()
        d: Deferred[Reply] = Deferred(lambda _: self._cancel(rid))
        self.pending[rid] = d
        if timeout is not None:
            d.addTimeout(timeout, self.clock, onTimeoutCancel=_timed_out)
        self._flush()
        return d

    def _cancel(self, rid: int) -> None:
        if self.pending.pop(rid, None) is not None:
            self.conn.send_cancel(rid)
            self._flush()
            self._maybe_finish_close()

    def ping(self) -> Deferred[float]:
        """
        Send a PING.

        :returns: a Deferred firing with the round-trip time in seconds.
        """
        if self.lost is not None:
            return fail(ConnectionClosed("the connection is closed"))
        if not self.conn.wire.multiplexed:
            return fail(StatusError(StatusCode.UNIMPLEMENTED, "this wire format has no PING"))
        payload = _PING.pack(next(self._ping_ids))
        d: Deferred[float] = Deferred(lambda _: self._pings.pop(payload, None))
        self._pings[payload] = (d, self.clock.seconds())
        self.conn.send_ping(payload)
        self._flush()
        return d

    def close(self) -> Deferred[None]:
        """
        Close in order: no new calls; the pending ones finish (or time out);
        then the connection closes.

        :returns: a Deferred that fires once the connection is closed.
        """
        d: Deferred[None] = Deferred()
        if self.lost is not None:
            d.callback(None)
            return d
        self._close_waiters.append(d)
        self._closing = True
        self._maybe_finish_close()
        return d

    def abort(self) -> None:
        """Close at once; pending calls fail with :class:`ConnectionClosed`."""
        if self.transport is not None and self.lost is None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def _maybe_finish_close(self) -> None:
        if self._closing and not self.pending and self.transport is not None:
            self.transport.loseConnection()


def _timed_out(result: Any, timeout: float) -> Any:
    if isinstance(result, Failure) and result.check(CancelledError):
        raise DeadlineExceeded(f"no answer within {timeout:g} s")
    return result


def _chain(result: Any, d: Deferred[Any]) -> Any:
    if isinstance(result, Failure):
        d.errback(result)
        return None
    d.callback(result)
    return result


class ClientFactory(Factory):
    """
    Builds :class:`ClientProtocol` instances for an endpoint's ``connect``.

    :param wire: the wire format.
    :param limits: what the client accepts from the server.
    :param clock: the clock for timeouts.
    """

    def __init__(self, *, wire: WireFormat, limits: Limits, clock: IReactorTime) -> None:
        self.wire = wire
        self.limits = limits
        self.clock = clock

    def buildProtocol(self, addr: IAddress) -> ClientProtocol:
        """:returns: a new :class:`ClientProtocol`."""
        protocol = ClientProtocol(wire=self.wire, limits=self.limits, clock=self.clock)
        protocol.factory = self
        return protocol


class Client:
    """
    A connection to a server, for making calls.  Get one from
    :func:`connect` (or from :func:`twisted_reqresp.testing.connected_pair`
    in tests).

    Many calls may be in flight at once on one client; with the binary wire
    format their answers may come in any order.

    :param protocol: the connected :class:`ClientProtocol`.
    :param codec: the default codec for call bodies and answers.
    :param timeout: the default timeout of a call, in seconds (``None``: no
        timeout).
    """

    def __init__(
        self,
        protocol: ClientProtocol,
        *,
        codec: ICodec = BYTES,
        timeout: float | None = None,
    ) -> None:
        self.protocol = protocol
        self.codec = codec
        self.timeout = timeout

    def call(
        self,
        method: str,
        body: Any = b"",
        *,
        codec: ICodec | None = None,
        timeout: float | None = None,
        metadata: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> Deferred[Reply]:
        """
        Call ``method`` on the server.

        Never raises: every problem arrives as the Deferred's failure.

        :param method: the method name.
        :param body: the request body, encoded with ``codec``.
        :param codec: the codec for this call (the client's by default).
        :param timeout: seconds to wait for the answer (the client's default
            if omitted).  It travels as the request's deadline, and when it
            passes the call fails with :class:`~twisted_reqresp.DeadlineExceeded`
            and a CANCEL is sent.
        :param metadata: key/value text pairs sent with the request.
        :returns: a Deferred that fires with a :class:`~twisted_reqresp.Reply`
            whose body ``codec`` decoded, or fails with
            :class:`~twisted_reqresp.RemoteError` (the server's error status),
            :class:`~twisted_reqresp.DeadlineExceeded`,
            :class:`~twisted_reqresp.ConnectionClosed`, or
            :class:`~twisted_reqresp.CodecError`.  Cancelling it sends
            CANCEL to the server and fails it with ``CancelledError``.
        """
        codec = codec if codec is not None else self.codec
        try:
            data = body if (codec is BYTES and type(body) is bytes) else codec.encode(body)
        except Exception:
            return fail()
        d = self.protocol.call(
            method,
            data,
            metadata=metadata,
            timeout=timeout if timeout is not None else self.timeout,
        )
        if codec is not BYTES:
            d.addCallback(_decode_reply, codec)
        return d

    def ping(self) -> Deferred[float]:
        """
        Measure the round trip to the server with a PING frame.

        :returns: a Deferred firing with the round-trip time in seconds (it
            fails with UNIMPLEMENTED on the line format).
        """
        return self.protocol.ping()

    def close(self) -> Deferred[None]:
        """
        Close in order: new calls fail at once, pending calls finish, then
        the connection closes.

        :returns: a Deferred that fires when the connection is closed.
        """
        return self.protocol.close()

    def abort(self) -> None:
        """Drop the connection now; pending calls fail with ConnectionClosed."""
        self.protocol.abort()

    @property
    def wire_format(self) -> str:
        """The name of the wire format this client speaks."""
        return self.protocol.conn.wire.name

    @property
    def server_settings(self) -> Settings:
        """The limits the server advertised (defaults for the line format)."""
        return self.protocol.conn.peer_settings


def _decode_reply(reply: Reply, codec: ICodec) -> Reply:
    return Reply(body=codec.decode(reply.body), metadata=reply.metadata)


def connect(
    reactor: Any,
    endpoint: str | IStreamClientEndpoint,
    *,
    wire: WireFormat | None = None,
    codec: ICodec = BYTES,
    limits: Limits = DEFAULT_LIMITS,
    timeout: float | None = None,
    clock: IReactorTime | None = None,
) -> Deferred[Client]:
    """
    Connect to a server.

    :param reactor: the reactor (it also serves as the clock unless
        ``clock`` is given).
    :param endpoint: a client endpoint string such as
        ``"tcp:127.0.0.1:9000"``, ``"unix:/run/app.sock"`` or
        ``"tls:example.com:9000"``, or an ``IStreamClientEndpoint``.
    :param wire: the wire format (:data:`~twisted_reqresp.BINARY` by default).
    :param codec: the client's default codec.
    :param limits: what the client accepts from the server.
    :param timeout: the client's default call timeout, in seconds.
    :param clock: the clock for timeouts, if not the reactor.
    :returns: a Deferred that fires with a :class:`Client` once the
        handshake is done, or fails with the endpoint's error (such as
        ``ConnectionRefusedError``) or :class:`~twisted_reqresp.ConnectionClosed`.
    """
    if isinstance(endpoint, str):
        endpoint = clientFromString(reactor, endpoint)
    factory = ClientFactory(
        wire=wire if wire is not None else BinaryFormat(),
        limits=limits,
        clock=clock if clock is not None else reactor,
    )
    connecting: Deferred[Any] = endpoint.connect(factory)
    connecting.addCallback(lambda protocol: protocol.when_ready())
    connecting.addCallback(lambda protocol: Client(protocol, codec=codec, timeout=timeout))
    return connecting
