"""
An in-memory network of reqresp servers for :class:`~twisted_reqresp.Channel`
tests: each :class:`FakeServer` is an ``IStreamClientEndpoint`` whose
``connect`` joins the client protocol to a new server protocol over two
``StringTransport`` objects (public Twisted API only), so that a test can
make a backend refuse, drop, drain, report NOT_SERVING and come back, and
pump bytes with :meth:`Network.pump` while a ``Clock`` stands in for time.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_reqresp import Call, Router, ServerFactory, StatusCode, StatusError

CLIENT = IPv4Address("TCP", "127.0.0.1", 50000)


class Link:
    """One connection: a client protocol and a server protocol, joined."""

    def __init__(self, client: Any, server: Any, address: IPv4Address) -> None:
        self.client = client
        self.server = server
        self.client_transport = StringTransport(hostAddress=CLIENT, peerAddress=address)
        self.server_transport = StringTransport(hostAddress=address, peerAddress=CLIENT)
        self.lost = False
        server.makeConnection(self.server_transport)
        client.makeConnection(self.client_transport)

    def step(self) -> int:
        """Deliver one batch each way; close if either side closed."""
        if self.lost:
            return 0
        moved = _move(self.client_transport, self.server) + _move(
            self.server_transport, self.client
        )
        if not moved and (
            self.client_transport.disconnecting or self.server_transport.disconnecting
        ):
            self.drop()
            return 1
        return moved

    def drop(self, reason: Failure | None = None) -> None:
        """Close under both sides at once, as a dropped TCP connection."""
        if self.lost:
            return
        self.lost = True
        reason = reason if reason is not None else Failure(ConnectionDone())
        self.client.connectionLost(reason)
        self.server.connectionLost(reason)


def _move(source: StringTransport, target: Any) -> int:
    if target.transport.producerState != "producing":
        return 0
    data = source.value()
    if not data:
        return 0
    source.clear()
    target.dataReceived(data)
    return len(data)


class Network:
    """The servers of a test and the clock everyone uses."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.links: list[Link] = []

    def server(self, name: str, **kwargs: Any) -> FakeServer:
        """:returns: a new backend called ``name``."""
        return FakeServer(self, name, **kwargs)

    def pump(self) -> None:
        """Deliver bytes on every connection until all are quiet."""
        for _ in range(10_000):
            if not sum(link.step() for link in list(self.links)):
                break
            self.links = [link for link in self.links if not link.lost]
        else:
            raise RuntimeError("still pumping")

    def advance(self, seconds: float) -> None:
        """Let time pass, then pump."""
        self.clock.advance(seconds)
        self.pump()


def backend_router(name: str) -> tuple[Router, list[Deferred[Any]]]:
    """
    :returns: a router with ``echo`` (the body), ``who`` (the server's
        name), ``wait`` (answers when the test fires the Deferred appended
        to the list) and ``fail`` (UNAVAILABLE, not retry-safe), and that list.
    """
    router = Router()
    waiting: list[Deferred[Any]] = []
    router.add("echo", lambda call: call.body)
    router.add("who", lambda call: name.encode())

    @router.method("wait")
    def wait(call: Call) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        waiting.append(d)
        return d

    @router.method("fail")
    def failing(call: Call) -> bytes:
        raise StatusError(StatusCode.UNAVAILABLE, f"{name} is failing")

    return router, waiting


@implementer(IStreamClientEndpoint)
class FakeServer:
    """
    A backend: a :class:`ServerFactory` behind an endpoint.

    :ivar refusing: while true, ``connect`` fails with ConnectionRefusedError.
    :ivar attempts: how many times a client connected or tried to.
    """

    def __init__(self, network: Network, name: str, **kwargs: Any) -> None:
        self.network = network
        self.name = name
        self.router, self.waiting = backend_router(name)
        self.factory = ServerFactory(self.router, clock=network.clock, **kwargs)
        self.refusing = False
        self.attempts = 0
        self.links: list[Link] = []
        self.address = IPv4Address("TCP", "127.0.0.1", 9000 + len(network.links))

    def __repr__(self) -> str:
        return f"<FakeServer {self.name}>"

    def connect(self, factory: IProtocolFactory) -> Deferred[Any]:
        """Connect at once, or refuse."""
        self.attempts += 1
        if self.refusing:
            return fail(ConnectionRefusedError())
        client = factory.buildProtocol(self.address)
        server = self.factory.buildProtocol(CLIENT)
        link = Link(client, server, self.address)
        self.links.append(link)
        self.network.links.append(link)
        return succeed(client)

    @property
    def live(self) -> list[Link]:
        """The connections open now."""
        return [link for link in self.links if not link.lost]

    def drop(self) -> None:
        """Drop every connection, as a crash would."""
        for link in self.live:
            link.drop()

    def answer_waiting(self, body: bytes = b"done") -> None:
        """Answer every ``wait`` call so far."""
        waiting, self.waiting[:] = list(self.waiting), []
        for d in waiting:
            if not d.called:
                d.callback(body)
