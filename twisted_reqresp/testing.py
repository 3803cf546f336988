"""
Test helpers for code built on twisted-reqresp: an in-memory, connected
client/server pair driven by hand, with a fake clock.  No sockets, no
reactor: call :meth:`ConnectedPair.pump` to move the bytes, advance
the pair's ``clock`` to make time pass, and check results with
trial's ``successResultOf`` / ``failureResultOf``.

Built on public Twisted API only (``twisted.internet.testing``), like treq's
``StubTreq``.  Example::

    from twisted.trial.unittest import SynchronousTestCase
    from twisted_reqresp import Router
    from twisted_reqresp.testing import connected_pair

    class EchoTests(SynchronousTestCase):
        def test_echo(self):
            router = Router()
            router.add("echo", lambda call: call.body)
            pair = connected_pair(router)
            d = pair.client.call("echo", b"hi")
            pair.pump()
            self.assertEqual(self.successResultOf(d).body, b"hi")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from ._adapters.client import Client
from ._adapters.client_protocol import ClientProtocol
from ._adapters.conformance import CodecConformanceMixin, WireFormatConformanceMixin
from ._adapters.server import ServerFactory, ServerProtocol
from ._core.binary import BinaryFormat
from ._core.contract import IWireFormat
from ._core.limits import DEFAULT_LIMITS, Limits
from .codecs import BYTES
from .interfaces import ICodec, IResponder, IResponderFactory

__all__ = [
    "CodecConformanceMixin",
    "ConnectedPair",
    "WireFormatConformanceMixin",
    "connected_pair",
]

#: The most rounds :meth:`ConnectedPair.pump` runs before deciding the two
#: sides talk forever (a bug in the code under test).
MAX_PUMP_ROUNDS = 10_000


class ConnectedPair:
    """
    A client and a server protocol joined by two
    :class:`~twisted.internet.testing.StringTransport` objects.

    :ivar client: the :class:`~twisted_reqresp.Client`.
    :ivar server: the server's :class:`ServerProtocol` for this connection.
    :ivar factory: the :class:`~twisted_reqresp.ServerFactory`.
    :ivar clock: the fake clock both sides use; ``clock.advance(seconds)``.
    :ivar client_transport: what the client writes to.
    :ivar server_transport: what the server writes to.
    """

    def __init__(
        self,
        client: Client,
        server: ServerProtocol,
        factory: ServerFactory,
        clock: MemoryReactorClock,
        client_transport: StringTransport,
        server_transport: StringTransport,
    ) -> None:
        self.client = client
        self.server = server
        self.factory = factory
        self.clock = clock
        self.client_transport = client_transport
        self.server_transport = server_transport
        self._lost = False

    @property
    def client_protocol(self) -> ClientProtocol:
        """The client's :class:`ClientProtocol`."""
        return self.client.protocol

    def pump(self, rounds: int | None = None) -> int:
        """
        Deliver the bytes each side wrote to the other until both are quiet,
        then deliver the close if either side closed.

        A side whose transport is paused (``pauseProducing``: it stopped
        reading) receives nothing until it resumes, as with a real socket.

        :param rounds: deliver at most this many rounds (one batch each way)
            and stop, quiet or not: for code that never goes quiet, such as
            a load generator.  ``None``: until quiet.
        :returns: the number of bytes moved.
        :raises RuntimeError: if ``rounds`` is ``None`` and the sides are
            still talking after ``MAX_PUMP_ROUNDS`` (10,000) rounds.
        """
        moved = 0
        for _ in range(MAX_PUMP_ROUNDS if rounds is None else rounds):
            step = self._move(self.client_transport, self.server) + self._move(
                self.server_transport, self.client_protocol
            )
            moved += step
            if not step:
                break
        else:
            if rounds is None:
                raise RuntimeError(f"still pumping after {MAX_PUMP_ROUNDS} rounds")
        if not self._lost and (
            self.client_transport.disconnecting or self.server_transport.disconnecting
        ):
            self.disconnect()
        return moved

    #: treq's name for the same thing.
    flush = pump

    def _move(self, source: StringTransport, target: Any) -> int:
        if self._lost or target.transport.producerState != "producing":
            return 0
        data = source.value()
        if not data:
            return 0
        source.clear()
        target.dataReceived(data)
        return len(data)

    def disconnect(self, reason: Failure | None = None) -> None:
        """
        Close the connection under both sides, as a dropped TCP connection
        would, without delivering bytes still in flight.

        :param reason: the failure both sides see; ``ConnectionDone`` if
            omitted.
        """
        if self._lost:
            return
        self._lost = True
        reason = reason if reason is not None else Failure(ConnectionDone())
        self.client_protocol.connectionLost(reason)
        self.server.connectionLost(reason)


def connected_pair(
    responder: IResponder | IResponderFactory,
    *,
    wire: IWireFormat | None = None,
    limits: Limits = DEFAULT_LIMITS,
    client_limits: Limits = DEFAULT_LIMITS,
    codec: ICodec = BYTES,
    timeout: float | None = None,
    clock: MemoryReactorClock | None = None,
    factory: ServerFactory | None = None,
    interceptors: Sequence[object] = (),
    client_interceptors: Sequence[object] = (),
) -> ConnectedPair:
    """
    Connect a client to a server serving ``responder``, in memory, and pump
    the handshake.

    :param responder: what the server serves (see :class:`ServerFactory`).
    :param wire: the wire format (binary by default).
    :param limits: the server's limits.
    :param client_limits: the client's limits.
    :param codec: the client's default codec.
    :param timeout: the client's default call timeout.
    :param clock: the clock for both sides (a new
        :class:`~twisted.internet.testing.MemoryReactorClock` by default).
    :param factory: a ready :class:`ServerFactory` to use instead of
        building one from ``responder``, ``wire``, ``limits`` and
        ``interceptors``.  One made without a clock gets the pair's, so
        that no timer of the test lands on the global reactor.
    :param interceptors: the server's interceptors, the first outermost
        (see :class:`~twisted_reqresp.interfaces.IServerInterceptor`).
    :param client_interceptors: the client's interceptors, the first
        outermost (see :class:`~twisted_reqresp.interfaces.IClientInterceptor`).
    :returns: a :class:`ConnectedPair`, handshake done.
    """
    clock = clock if clock is not None else MemoryReactorClock()
    wire = wire if wire is not None else BinaryFormat()
    if factory is None:
        factory = ServerFactory(
            responder, wire=wire, limits=limits, clock=clock, interceptors=interceptors
        )
    elif factory._clock is None:
        # Its keepalive, deadlines and timeouts would run on the global
        # reactor, which a unit test never runs: left behind, they dirty
        # whatever trial test does run it next.
        factory._clock = clock
    server_address = IPv4Address("TCP", "127.0.0.1", 9000)
    client_address = IPv4Address("TCP", "127.0.0.1", 54321)
    server = factory.buildProtocol(client_address)
    server_transport = StringTransport(hostAddress=server_address, peerAddress=client_address)
    client_protocol = ClientProtocol(wire=wire, limits=client_limits, clock=clock)
    client_transport = StringTransport(hostAddress=client_address, peerAddress=server_address)
    server.makeConnection(server_transport)  # type: ignore[no-untyped-call]
    client_protocol.makeConnection(client_transport)  # type: ignore[no-untyped-call]
    pair = ConnectedPair(
        Client(client_protocol, codec=codec, timeout=timeout, interceptors=client_interceptors),
        server,
        factory,
        clock,
        client_transport,
        server_transport,
    )
    pair.pump()
    return pair
