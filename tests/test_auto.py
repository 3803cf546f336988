"""
AutoFormat: one server port for binary clients and people at a terminal.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import AutoFormat, Limits, Router, ServerFactory
from twisted_reqresp.testing import connected_pair
from twisted_reqresp.wire import Role

_ROUTER = Router()
_ROUTER.add("echo", lambda call: call.body)


def _factory() -> tuple[ServerFactory, MemoryReactorClock]:
    clock = MemoryReactorClock()
    return ServerFactory(_ROUTER, wire=AutoFormat(), clock=clock), clock


def _feed(factory: ServerFactory, *chunks: bytes) -> StringTransport:
    protocol = factory.buildProtocol(None)  # type: ignore[arg-type]
    transport = StringTransport()
    protocol.makeConnection(transport)
    for chunk in chunks:
        protocol.dataReceived(chunk)
    return transport


class AutoFormatTests(SynchronousTestCase):
    """The first bytes decide the format, per connection."""

    def test_binary_client(self) -> None:
        """A binary client is served the binary format."""
        factory, clock = _factory()
        pair = connected_pair(_ROUTER, factory=factory, clock=clock)
        d = pair.client.call("echo", b"bin", metadata={"k": "v"})
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, b"bin")

    def test_line_client(self) -> None:
        """Typed text is served the line format, on the same factory."""
        factory, _ = _factory()
        transport = _feed(factory, b"echo hello\r\n", b"nope\n")
        self.assertEqual(transport.value(), b"OK hello\r\nERR NOT_FOUND unknown method 'nope'\r\n")
        self.assertFalse(transport.disconnecting)

    def test_split_first_byte(self) -> None:
        """Detection waits for the first byte, however the bytes are chunked."""
        factory, _ = _factory()
        transport = _feed(factory, b"", b"e", b"cho x\n")
        self.assertEqual(transport.value(), b"OK x\r\n")

    def test_tls_client(self) -> None:
        """A TLS ClientHello gets one readable line and is closed."""
        factory, _ = _factory()
        transport = _feed(factory, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        self.assertIn(b"TLS", transport.value())
        self.assertTrue(transport.value().startswith(b"reqresp: "))
        self.assertTrue(transport.disconnecting)

    def test_http_client(self) -> None:
        """An HTTP request gets an HTTP 400 answer and is closed."""
        factory, _ = _factory()
        transport = _feed(factory, b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 Bad Request\r\n"))
        self.assertTrue(transport.disconnecting)

    def test_silent_peer_times_out(self) -> None:
        """A peer that sends nothing is closed at the handshake timeout."""
        factory, clock = _factory()
        transport = _feed(factory)
        clock.advance(10.0)
        self.assertEqual(transport.value(), b"reqresp: no handshake within 10 s\r\n")
        self.assertTrue(transport.disconnecting)

    def test_client_role_refused(self) -> None:
        """A client cannot detect: it must know what it speaks."""
        self.assertRaises(ValueError, AutoFormat().codec, Role.CLIENT, Limits())
