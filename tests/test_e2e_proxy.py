"""
End to end behind the PROXY protocol: a ``twistd -n reqresp`` process on a
``haproxy:tcp:`` endpoint, reached by raw sockets that send a PROXY header
by hand (version 1, text, and version 2, binary) before the protocol's own
bytes, as HAProxy or a cloud load balancer would.

Behind such a port the peer is the address in the header, not the proxy's:
``ConnectionInfo.peer`` (what ``call.connection.peer`` shows a responder),
the per-peer connection limit and the logs must all use it.  The sources
named in the headers are documentation addresses (RFC 5737): only strings
in a header, never connected to.  Each class runs on twistd's default
reactor and, as its ``...AsyncioTests`` subclass, on
``twistd --reactor=asyncio``.

Every wait is bounded in time, and every process is killed at cleanup.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import ClassVar

from e2e import READ_TIMEOUT, RawPeer, ReactorMixin, Server, responder_env, start
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp.wire import GoAway, Response, Settings

#: The server endpoint: the PROXY protocol over TCP on loopback.
LISTEN = "haproxy:tcp:{port}:interface=127.0.0.1"

#: The signature that starts every PROXY protocol version 2 header.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v1(source: str, source_port: int, destination_port: int) -> bytes:
    """:returns: a PROXY protocol version 1 (text) header for a TCP over IPv4 connection."""
    return f"PROXY TCP4 {source} 127.0.0.1 {source_port} {destination_port}\r\n".encode()


def proxy_v2(source: str, source_port: int, destination_port: int) -> bytes:
    """:returns: a PROXY protocol version 2 (binary) header for a TCP over IPv4 connection."""
    addresses = (
        socket.inet_aton(source)
        + socket.inet_aton("127.0.0.1")
        + struct.pack(">HH", source_port, destination_port)
    )
    # Version 2, command PROXY (0x21); family INET, protocol STREAM (0x11).
    return V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack(">H", len(addresses)) + addresses


#: The header versions, by name.
HEADERS = {"v1": proxy_v1, "v2": proxy_v2}


class _Proxied(ReactorMixin, SynchronousTestCase):
    """Connections through a fake proxy to a ``haproxy:`` port."""

    def _start(self, *args: str) -> Server:
        return start(
            self,
            "--responder",
            "e2e_responder:router",
            *args,
            listen=LISTEN,
            reactor=self.reactor,
            env=responder_env(),
        )

    def _connect(self, server: Server, header: bytes, first: bytes) -> socket.socket:
        """
        :returns: a socket to ``server`` that sent ``header`` and then
            ``first``, in one write: Twisted's PROXY parser wants the whole
            signature in the connection's first read.
        """
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=READ_TIMEOUT)
        self.addCleanup(sock.close)
        sock.sendall(header + first)
        return sock

    def _line(self, sock: socket.socket) -> bytes:
        """:returns: the next line the server sends (line format), without its CRLF."""
        received = b""
        deadline = time.monotonic() + READ_TIMEOUT
        while not received.endswith(b"\r\n") and time.monotonic() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
        return received.removesuffix(b"\r\n")

    def _line_peer(self, server: Server, header: bytes) -> bytes:
        """:returns: the line format's answer to ``peer`` on a new proxied connection."""
        return self._line(self._connect(server, header, b"peer\n"))

    def _binary_peer(self, server: Server, header: bytes) -> bytes:
        """:returns: the binary format's answer to ``peer`` on a new proxied connection."""
        peer = RawPeer()
        handshake = peer.handshake_bytes()
        peer.conn.send_request("peer", b"")
        request = peer.conn.data_to_send()
        peer.sock = self._connect(server, header, handshake + request)
        peer.receive_until(Settings)
        response: Response = peer.receive_until(Response)
        return response.body


class PeerAddressTests(_Proxied):
    """``call.connection.peer`` behind a ``haproxy:`` port."""

    server: ClassVar[Server]

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = Server(
            "--responder",
            "e2e_responder:router",
            listen=LISTEN,
            reactor=cls.reactor,
            env=responder_env(),
        )
        try:
            cls.server.wait_ready()
        except BaseException:
            cls.server.stop()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()

    def test_served(self) -> None:
        """A connection that starts with a PROXY header of either version is served."""
        for version, header in HEADERS.items():
            sock = self._connect(
                self.server, header("198.51.100.7", 40001, self.server.port), b"echo hi\n"
            )
            self.assertEqual(self._line(sock), b"OK hi", version)

    def test_v1_line(self) -> None:
        """Behind a v1 header a line-format caller's peer is the header's source."""
        header = proxy_v1("198.51.100.7", 40001, self.server.port)
        self.assertEqual(self._line_peer(self.server, header), b"OK 198.51.100.7:40001")

    def test_v1_binary(self) -> None:
        """Behind a v1 header a binary-format caller's peer is the header's source."""
        header = proxy_v1("198.51.100.8", 40002, self.server.port)
        self.assertEqual(self._binary_peer(self.server, header), b"198.51.100.8:40002")

    def test_v2_line(self) -> None:
        """Behind a v2 header a line-format caller's peer is the header's source."""
        header = proxy_v2("203.0.113.9", 40003, self.server.port)
        self.assertEqual(self._line_peer(self.server, header), b"OK 203.0.113.9:40003")

    def test_v2_binary(self) -> None:
        """Behind a v2 header a binary-format caller's peer is the header's source."""
        header = proxy_v2("203.0.113.10", 40004, self.server.port)
        self.assertEqual(self._binary_peer(self.server, header), b"203.0.113.10:40004")


class PerPeerLimitTests(_Proxied):
    """``--max-connections-per-peer`` behind a ``haproxy:`` port counts the header's source."""

    def _first(self, server: Server, header: bytes) -> socket.socket:
        """:returns: an open proxied connection that has been served a call."""
        sock = self._connect(server, header, b"echo first\n")
        self.assertEqual(self._line(sock), b"OK first")
        return sock

    def test_other_sources_served(self) -> None:
        """Two connections from different proxied sources are both served under a limit of 1."""
        for version, header in HEADERS.items():
            server = self._start("--max-connections-per-peer", "1")
            self._first(server, header("198.51.100.7", 40001, server.port))
            second = self._connect(server, header("198.51.100.8", 40001, server.port), b"echo 2\n")
            self.assertEqual(self._line(second), b"OK 2", version)

    def test_same_source_refused(self) -> None:
        """A second connection from the same proxied source is refused under a limit of 1."""
        for version, header in HEADERS.items():
            server = self._start("--max-connections-per-peer", "1")
            self._first(server, header("198.51.100.7", 40001, server.port))
            second = self._connect(server, header("198.51.100.7", 40002, server.port), b"echo 2\n")
            answer = self._line(second)
            self.assertTrue(
                answer.startswith(b"ERR RESOURCE_EXHAUSTED too many connections from "),
                (version, answer),
            )

    def test_refusal_names_source(self) -> None:
        """The refusal names the proxied source, not the proxy."""
        for version, header in HEADERS.items():
            server = self._start("--max-connections-per-peer", "1")
            self._first(server, header("198.51.100.7", 40001, server.port))
            second = self._connect(server, header("198.51.100.7", 40002, server.port), b"echo 2\n")
            self.assertEqual(
                self._line(second),
                b"ERR RESOURCE_EXHAUSTED too many connections from 198.51.100.7 (limit 1)",
                version,
            )


class ProxyLogTests(_Proxied):
    """The server's log lines name the proxied address."""

    def test_violation_logged_with_source(self) -> None:
        """A protocol violation behind a PROXY header is logged with the header's source."""
        server = self._start()
        for done, (version, header) in enumerate(HEADERS.items()):
            source = {"v1": "198.51.100.7", "v2": "203.0.113.9"}[version]
            peer = RawPeer()
            handshake = peer.handshake_bytes()
            # A RESPONSE (type 0x3) is a server's frame: from a client it is
            # a PROTOCOL_ERROR, which the server logs and closes on.
            response = struct.pack(">IBBI", 0, 0x3, 0, 1)
            peer.sock = self._connect(
                server, header(source, 40001, server.port), handshake + response
            )
            peer.receive_until(GoAway)
            lines = server.wait_for_lines("closing connection from", done + 1)
            self.assertIn(source, lines[-1], f"{version}: {lines[-1]}")


class PeerAddressAsyncioTests(PeerAddressTests):
    """``call.connection.peer`` behind a ``haproxy:`` port, on the asyncio reactor."""

    reactor = "asyncio"


class PerPeerLimitAsyncioTests(PerPeerLimitTests):
    """The per-peer limit behind a ``haproxy:`` port, on the asyncio reactor."""

    reactor = "asyncio"


class ProxyLogAsyncioTests(ProxyLogTests):
    """The log behind a ``haproxy:`` port, on the asyncio reactor."""

    reactor = "asyncio"
