"""
Helpers shared by the protocol tests.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport

from twisted_reqresp import Call, Router, ServerFactory
from twisted_reqresp.wire import Connection, Event, Role

#: The address raw clients come from.
PEER = IPv4Address("TCP", "127.0.0.1", 40000)


def echo_and_wait_router() -> tuple[Router, list[Deferred[Any]]]:
    """
    :returns: a router with ``echo`` (answers the body) and ``wait``
        (answers when the test fires the Deferred it appended to the list),
        and that list.
    """
    router = Router()
    waiting: list[Deferred[Any]] = []
    router.add("echo", lambda call: call.body)

    @router.method("wait")
    def wait(call: Call) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        waiting.append(d)
        return d

    return router, waiting


class RawClient:
    """
    A client that does not keep within the server's MAX_CONCURRENT (the
    sans-IO client connection, driven by hand), talking to one
    :class:`ServerProtocol` over a ``StringTransport``, in the factory's
    wire format.  The handshake is done when it is made.
    """

    def __init__(self, factory: ServerFactory) -> None:
        self.server = factory.buildProtocol(PEER)
        self.transport = StringTransport(peerAddress=PEER)
        self.server.makeConnection(self.transport)
        self.conn = Connection(Role.CLIENT, factory.wire)
        self.send()
        #: What the server said in the handshake (its SETTINGS).
        self.greeting = self.events()

    def send(self) -> None:
        """Deliver what the client connection queued to the server."""
        data = self.conn.data_to_send()
        if data:
            self.server.dataReceived(data)

    def request(self, method: str, body: bytes = b"", deadline_ms: int | None = None) -> int:
        """Send one request at once, whatever the server's limit."""
        rid = self.conn.send_request(method, body, deadline_ms=deadline_ms)
        self.send()
        return rid

    def events(self) -> list[Event]:
        """:returns: the events the server's bytes so far decode to."""
        self.conn.receive_data(self.transport.value())
        self.transport.clear()
        out = []
        while (event := self.conn.next_event()) is not None:
            out.append(event)
        return out
