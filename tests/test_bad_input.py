"""
A peer's bad input, through the real :class:`ServerProtocol`: what the peer
is told, that its connection closes or stays open as
``docs/operating-limits.md`` ("Bad input") says, that nothing is buffered
beyond the limits, that the server logs one ``info`` line and never a
traceback for it, and that another connection on the same factory is
served as if nothing happened.

Each test drives a raw peer (a :class:`StringTransport` and hand-made
bytes) and, after it, a well-behaved client from
:func:`~twisted_reqresp.testing.connected_pair` on the same factory.  The
regression tests for what the fuzzers under ``fuzz/`` found are at the end.
"""

from __future__ import annotations

import struct
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, LogEvent, LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import provider

from twisted_reqresp import Call, Limits, Router, ServerFactory, StatusCode
from twisted_reqresp.testing import connected_pair
from twisted_reqresp.wire import (
    PREFACE,
    AutoFormat,
    BinaryCodec,
    BinaryFormat,
    Cancel,
    Connection,
    ConnectionState,
    ErrorResponse,
    Event,
    GoAway,
    LineFormat,
    Ping,
    Pong,
    Request,
    Response,
    Role,
    Settings,
)

_HEADER = struct.Struct(">IBBI")
_REQUEST, _RESPONSE, _ERROR, _PING = 0x2, 0x3, 0x4, 0x6
_SERVER_NAMESPACE = "twisted_reqresp.server"
#: The start of a TLS 1.2 ClientHello, as ``openssl s_client`` sends it.
_CLIENT_HELLO = (
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(32)) + b"\x00\x00\x04\x13\x01"
)
_HTTP_REQUEST = b"GET / HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"
_GARBAGE = b"\x00\xff\x13garbage\x07\r\n"
_ENCODER = BinaryCodec(Role.CLIENT, Limits())


def _frame(*events: Event) -> bytes:
    """Encode events as a well-behaved client would."""
    return b"".join(_ENCODER.encode(e) for e in events)


def _request_frame(
    rid: int, method: bytes, body: bytes = b"", flags: int = 0, extra: bytes = b""
) -> bytes:
    """A REQUEST frame built by hand: any method bytes, any flags, ``extra``
    (a deadline or a metadata block) between the method and the body."""
    payload = struct.pack(">H", len(method)) + method + extra + body
    return _HEADER.pack(len(payload), _REQUEST, flags, rid) + payload


def _metadata_block(*pairs: tuple[bytes, bytes]) -> bytes:
    parts = [struct.pack(">H", len(pairs))]
    for key, value in pairs:
        parts.append(struct.pack(">H", len(key)) + key + struct.pack(">I", len(value)) + value)
    return b"".join(parts)


class _RawPeer:
    """
    A peer that writes bytes by hand to one :class:`ServerProtocol` of a
    factory, and reads back what the server wrote.
    """

    def __init__(self, factory: ServerFactory) -> None:
        peer = IPv4Address("TCP", "192.0.2.7", 40000)
        self.protocol = factory.buildProtocol(peer)
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 9000), peerAddress=peer
        )
        self.protocol.makeConnection(self.transport)
        self._lost = False

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def handshake(self) -> None:
        """Send the binary preface and SETTINGS, and check the server's SETTINGS."""
        self.send(PREFACE + _frame(Settings(max_frame_size=1 << 24, max_concurrent=100)))
        events = self.frames()
        assert len(events) == 1 and isinstance(events[0], Settings), events

    def written(self) -> bytes:
        """Every byte the server wrote since the last call."""
        data = self.transport.value()
        self.transport.clear()
        return data

    def frames(self) -> list[Event]:
        """Decode what the server wrote since the last call as binary frames."""
        codec = BinaryCodec(Role.CLIENT, Limits(max_frame_size=1 << 24))
        codec.receive_data(self.written())
        events = []
        while (event := codec.next_event()) is not None:
            events.append(event)
        assert codec.buffered == 0, "the server wrote a partial frame"
        return events

    @property
    def closing(self) -> bool:
        return bool(self.transport.disconnecting)

    def lose(self) -> None:
        """The TCP connection goes away (after the server closed it, or at EOF)."""
        if not self._lost:
            self._lost = True
            self.protocol.connectionLost(Failure(ConnectionDone()))


class _BadInputCase(SynchronousTestCase):
    """
    A server with ``echo`` and ``wait`` methods on a fake clock, the log
    events it emits, and the checks every bad-input test makes.
    """

    wire: Any = BinaryFormat()
    limits = Limits(ping_interval=None)

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.router = Router()
        self.waiting: list[Deferred[Any]] = []
        self.router.add("echo", lambda call: call.body)

        def wait(call: Call) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            self.waiting.append(d)
            return d

        self.router.add("wait", wait)
        self.factory = ServerFactory(
            self.router, wire=self.wire, limits=self.limits, clock=self.clock
        )
        self.log_events: list[LogEvent] = []

        @provider(ILogObserver)
        def observe(event: LogEvent) -> None:
            self.log_events.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def peer(self) -> _RawPeer:
        return _RawPeer(self.factory)

    def assertLogged(self, count: int) -> None:
        """
        The server logged ``count`` events, each at ``info``, and nothing
        anywhere was logged with a traceback.
        """
        self.assertEqual([e for e in self.log_events if "log_failure" in e], [])
        mine = [e for e in self.log_events if e.get("log_namespace") == _SERVER_NAMESPACE]
        self.assertEqual(len(mine), count, [e.get("log_format") for e in mine])
        for event in mine:
            self.assertEqual(event["log_level"], LogLevel.info)

    def assertClosedAndForgotten(self, peer: _RawPeer) -> None:
        """The server closed ``peer``; once it is gone nothing of it remains."""
        self.assertTrue(peer.closing)
        peer.lose()
        self.assertEqual(self.factory.connections, set())
        self.assertEqual(self.factory.stats.connections_open, 0)
        self.assertEqual(peer.protocol.running, {})

    def _trickle(self, peer: _RawPeer, data: bytes) -> float:
        """Send ``data`` a byte a second until the server closes; return when it did."""
        for byte in data:
            if peer.closing:
                break
            peer.send(bytes([byte]))
            self.clock.advance(1.0)
        self.assertTrue(peer.closing, "the server never closed the connection")
        return self.clock.seconds()

    def assertOthersServed(self, client_wire: Any = None) -> None:
        """Another connection to the same factory makes a successful call."""
        if client_wire is None:
            client_wire = self.wire if not isinstance(self.wire, AutoFormat) else BinaryFormat()
        pair = connected_pair(self.router, factory=self.factory, clock=self.clock, wire=client_wire)
        d = pair.client.call("echo", b"still here")
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, b"still here")
        pair.disconnect()


# -- not our protocol at all ---------------------------------------------------


class ForeignBinaryTests(_BadInputCase):
    """Garbage, HTTP and TLS instead of the binary preface get one readable line."""

    def test_garbage(self) -> None:
        """Garbage instead of the preface is told what the port expects, and closed."""
        peer = self.peer()
        peer.send(_GARBAGE)
        self.assertEqual(
            peer.written(),
            b"reqresp: expected the reqresp binary protocol preface (see docs/protocol.md)\r\n",
        )
        self.assertClosedAndForgotten(peer)
        self.assertEqual(self.factory.stats.protocol_errors, 1)
        self.assertLogged(1)
        self.assertOthersServed()

    def test_http_request(self) -> None:
        """An HTTP request gets an HTTP 400 response explaining the port, then a close."""
        peer = self.peer()
        peer.send(_HTTP_REQUEST)
        reply = peer.written()
        self.assertTrue(reply.startswith(b"HTTP/1.1 400 Bad Request\r\n"), reply)
        head, _, body = reply.partition(b"\r\n\r\n")
        self.assertIn(b"Connection: close", head)
        self.assertIn(b"Content-Length: %d" % len(body), head)
        self.assertEqual(
            body, b"reqresp: this port speaks the reqresp binary protocol, not HTTP\r\n"
        )
        self.assertClosedAndForgotten(peer)
        self.assertLogged(1)
        self.assertOthersServed()

    def test_tls_client_hello(self) -> None:
        """A TLS ClientHello is told the port has no TLS, and closed."""
        peer = self.peer()
        peer.send(_CLIENT_HELLO)
        self.assertEqual(
            peer.written(), b"reqresp: this port speaks the reqresp binary protocol without TLS\r\n"
        )
        self.assertClosedAndForgotten(peer)
        self.assertLogged(1)
        self.assertOthersServed()

    def test_garbage_after_a_good_start(self) -> None:
        """Bytes that start like the preface and then go wrong are refused at once."""
        peer = self.peer()
        peer.send(PREFACE[:5])
        self.assertFalse(peer.closing)
        peer.send(b"X" * 100)
        self.assertTrue(peer.written().startswith(b"reqresp: expected"))
        self.assertEqual(peer.protocol.conn.buffered, 0)
        self.assertClosedAndForgotten(peer)
        self.assertLogged(1)
        self.assertOthersServed()


class ForeignAutoTests(_BadInputCase):
    """With AutoFormat, HTTP, TLS and garbage are neither format: one line, then close."""

    wire = AutoFormat()

    def test_garbage(self) -> None:
        """Bytes that start neither format are told what the port expects, and closed."""
        peer = self.peer()
        peer.send(_GARBAGE)
        self.assertTrue(peer.written().startswith(b"reqresp: expected the reqresp binary preface"))
        self.assertClosedAndForgotten(peer)
        self.assertLogged(1)
        self.assertOthersServed()
        self.assertOthersServed(LineFormat())

    def test_http_request(self) -> None:
        """An HTTP request gets an HTTP 400 response naming both formats, then a close."""
        peer = self.peer()
        peer.send(_HTTP_REQUEST)
        reply = peer.written()
        self.assertTrue(reply.startswith(b"HTTP/1.1 400 Bad Request\r\n"), reply)
        self.assertTrue(reply.endswith(b"binary and line protocols, not HTTP\r\n"), reply)
        self.assertClosedAndForgotten(peer)
        self.assertLogged(1)
        self.assertOthersServed()

    def test_tls_client_hello(self) -> None:
        """A TLS ClientHello is told the port has no TLS, and closed."""
        peer = self.peer()
        peer.send(_CLIENT_HELLO)
        self.assertEqual(
            peer.written(), b"reqresp: this port speaks the reqresp protocols without TLS\r\n"
        )
        self.assertClosedAndForgotten(peer)
        self.assertLogged(1)
        self.assertOthersServed(LineFormat())


# -- frames too large ------------------------------------------------------------


class OversizedFrameTests(_BadInputCase):
    """A frame header announcing more than max_frame_size ends the connection at once."""

    limits = Limits(max_frame_size=1024, ping_interval=None)

    def _announce(self, length: int) -> None:
        peer = self.peer()
        peer.handshake()
        # The header and some of the promised payload arrive together.
        peer.send(_HEADER.pack(length, _REQUEST, 0, 1) + b"\x00\x04echo" + b"x" * 900)
        self.assertEqual(peer.protocol.conn.buffered, 0)
        self.assertEqual(
            peer.frames(),
            [
                GoAway(
                    last_request_id=0,
                    code=StatusCode.RESOURCE_EXHAUSTED,
                    message=f"frame of {length} bytes exceeds the maximum of 1024",
                )
            ],
        )
        # What follows is not read, let alone buffered.
        peer.send(b"y" * 4096)
        self.assertEqual(peer.protocol.conn.buffered, 0)
        self.assertEqual(peer.written(), b"")
        self.assertClosedAndForgotten(peer)
        self.assertEqual(self.factory.stats.protocol_errors, 1)
        self.assertEqual(self.factory.stats.requests_total, 0)
        self.assertLogged(1)
        self.assertOthersServed()

    def test_one_byte_over(self) -> None:
        """A header announcing max_frame_size + 1 bytes gets GOAWAY RESOURCE_EXHAUSTED, close."""
        self._announce(1025)

    def test_four_gib(self) -> None:
        """A header announcing 0xFFFFFFFF bytes costs nothing: GOAWAY RESOURCE_EXHAUSTED, close."""
        self._announce(0xFFFF_FFFF)

    def test_header_alone_is_enough(self) -> None:
        """The 10-byte header alone, with no payload, is refused."""
        peer = self.peer()
        peer.handshake()
        peer.send(_HEADER.pack(0xFFFF_FFFF, _REQUEST, 0, 1))
        (goaway,) = peer.frames()
        self.assertIsInstance(goaway, GoAway)
        self.assertEqual(goaway.code, StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(peer.protocol.conn.buffered, 0)
        self.assertClosedAndForgotten(peer)
        self.assertLogged(1)
        self.assertOthersServed()


class OversizedFrameAutoTests(OversizedFrameTests):
    """The same, when AutoFormat detected the binary format."""

    wire = AutoFormat()


# -- truncated frames ---------------------------------------------------------------


class TruncatedFrameTests(_BadInputCase):
    """EOF in the middle of a frame drops the partial frame quietly."""

    def test_truncated_payload(self) -> None:
        """A request frame cut short by EOF is dropped: no answer, no error, no log."""
        peer = self.peer()
        peer.handshake()
        frame = _frame(Request(request_id=1, method="echo", body=b"0123456789"))
        peer.send(frame[:-3])
        self.assertEqual(peer.protocol.conn.buffered, len(frame) - 3)
        self.assertFalse(peer.closing)
        peer.lose()
        self.assertEqual(peer.written(), b"")
        stats = self.factory.stats
        self.assertEqual(
            (stats.requests_total, stats.errors_total, stats.protocol_errors), (0, 0, 0)
        )
        self.assertEqual((stats.connections_open, stats.connections_total), (0, 1))
        self.assertEqual(self.factory.connections, set())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertLogged(0)
        self.assertOthersServed()

    def test_truncated_header(self) -> None:
        """EOF after half a frame header is as quiet."""
        peer = self.peer()
        peer.handshake()
        peer.send(_frame(Request(request_id=1, method="echo"))[:5])
        peer.lose()
        self.assertEqual(self.factory.stats.connections_open, 0)
        self.assertEqual(self.factory.stats.protocol_errors, 0)
        self.assertLogged(0)
        self.assertOthersServed()

    def test_truncated_preface(self) -> None:
        """EOF in the middle of the preface is as quiet."""
        peer = self.peer()
        peer.send(PREFACE[:4])
        peer.lose()
        self.assertEqual(peer.written(), b"")
        self.assertEqual(self.factory.stats.connections_open, 0)
        self.assertLogged(0)
        self.assertOthersServed()

    def test_requests_before_the_cut_are_answered(self) -> None:
        """Whole requests before the truncated one are served before the EOF."""
        peer = self.peer()
        peer.handshake()
        whole = _frame(Request(request_id=1, method="echo", body=b"a"))
        cut = _frame(Request(request_id=2, method="echo", body=b"b"))[:-1]
        peer.send(whole + cut)
        self.assertEqual(peer.frames(), [Response(request_id=1, body=b"a")])
        peer.lose()
        self.assertEqual(self.factory.stats.requests_total, 1)
        self.assertLogged(0)
        self.assertOthersServed()


class TruncatedLineTests(_BadInputCase):
    """EOF in the middle of a line drops the partial line quietly."""

    wire = LineFormat()

    def test_truncated_line(self) -> None:
        """A line without its LF at EOF is not served, and nothing is logged."""
        peer = self.peer()
        peer.send(b"echo one\necho tw")
        self.assertEqual(peer.written(), b"OK one\r\n")
        peer.lose()
        self.assertEqual(self.factory.stats.requests_total, 1)
        self.assertEqual(self.factory.stats.connections_open, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertLogged(0)
        self.assertOthersServed()


# -- frames and flags from a later version ----------------------------------------------


class UnknownFramesTests(_BadInputCase):
    """Unknown frame types are skipped and unknown flags ignored."""

    def test_unknown_frame_type(self) -> None:
        """A frame of an unknown type is skipped, and the next request is served."""
        peer = self.peer()
        peer.handshake()
        for ftype in (0x00, 0x09, 0x42, 0xFF):
            peer.send(_HEADER.pack(5, ftype, 0xFF, 7) + b"hello")
        peer.send(_frame(Request(request_id=1, method="echo", body=b"after")))
        self.assertEqual(peer.frames(), [Response(request_id=1, body=b"after")])
        self.assertFalse(peer.closing)
        self.assertLogged(0)
        self.assertOthersServed()

    def test_unknown_frame_type_in_pieces(self) -> None:
        """An unknown frame arriving a byte at a time is skipped just the same."""
        peer = self.peer()
        peer.handshake()
        data = _HEADER.pack(3, 0x77, 0, 0) + b"abc" + _frame(Request(request_id=1, method="echo"))
        for i in range(len(data)):
            peer.send(data[i : i + 1])
        self.assertEqual(peer.frames(), [Response(request_id=1, body=b"")])
        self.assertLogged(0)
        self.assertOthersServed()

    def test_unknown_request_flags(self) -> None:
        """A request with undefined flag bits set is served as if they were zero."""
        peer = self.peer()
        peer.handshake()
        # 0x04 and 0x08 are the streaming flags; 0x10 and up are undefined.
        peer.send(_request_frame(1, b"echo", b"flags", flags=0xF0))
        peer.send(_request_frame(2, b"echo", b"more", flags=0xF0 | 0x01, extra=b"\x00\x00\x03\xe8"))
        self.assertEqual(
            peer.frames(),
            [Response(request_id=1, body=b"flags"), Response(request_id=2, body=b"more")],
        )
        self.assertLogged(0)
        self.assertOthersServed()

    def test_unknown_flags_on_control_frames(self) -> None:
        """PING and CANCEL with undefined flags are still a PING and a CANCEL."""
        peer = self.peer()
        peer.handshake()
        peer.send(_HEADER.pack(8, _PING, 0xFF, 0) + b"pingpong")
        peer.send(_frame(Request(request_id=1, method="wait")))
        peer.send(_HEADER.pack(0, 0x5, 0xFF, 1))
        self.assertTrue(self.waiting[0].called)  # cancelled by the CANCEL
        peer.send(_frame(Request(request_id=2, method="echo", body=b"x")))
        self.assertEqual(
            peer.frames(), [Pong(payload=b"pingpong"), Response(request_id=2, body=b"x")]
        )
        self.assertLogged(0)
        self.assertOthersServed()

    def test_cancel_unknown_request(self) -> None:
        """A CANCEL for a request id never sent is ignored."""
        peer = self.peer()
        peer.handshake()
        peer.send(_frame(Cancel(request_id=77), Ping(payload=b"12345678")))
        self.assertEqual(peer.frames(), [Pong(payload=b"12345678")])
        self.assertFalse(peer.closing)
        self.assertLogged(0)
        self.assertOthersServed()

    def test_unknown_setting(self) -> None:
        """A SETTINGS frame with an unknown identifier is accepted."""
        peer = self.peer()
        payload = struct.pack(">HI", 0x1, 1 << 20) + struct.pack(">HI", 0x99, 12345)
        peer.send(PREFACE + _HEADER.pack(len(payload), 0x1, 0, 0) + payload)
        peer.send(_frame(Request(request_id=1, method="echo", body=b"ok")))
        events = peer.frames()
        self.assertIsInstance(events[0], Settings)
        self.assertEqual(events[1:], [Response(request_id=1, body=b"ok")])
        self.assertLogged(0)
        self.assertOthersServed()


# -- malformed text ---------------------------------------------------------------


class InvalidUtf8Tests(_BadInputCase):
    """Invalid UTF-8 fails only its request: ERROR INVALID_ARGUMENT, the connection stays open."""

    def _rejected(self, frame: bytes) -> None:
        peer = self.peer()
        peer.handshake()
        peer.send(frame)
        (error,) = peer.frames()
        self.assertIsInstance(error, ErrorResponse)
        self.assertEqual((error.request_id, error.code), (1, StatusCode.INVALID_ARGUMENT))
        self.assertIn("invalid UTF-8", error.message)
        self.assertFalse(peer.closing)
        peer.send(_frame(Request(request_id=2, method="echo", body=b"next")))
        self.assertEqual(peer.frames(), [Response(request_id=2, body=b"next")])
        stats = self.factory.stats
        self.assertEqual(
            (stats.requests_total, stats.errors_total, stats.protocol_errors), (2, 1, 0)
        )
        self.assertLogged(1)
        self.assertOthersServed()

    def test_method_name(self) -> None:
        """A method name that is not UTF-8 gets ERROR INVALID_ARGUMENT; the next one is served."""
        self._rejected(_request_frame(1, b"ech\xff\xfe"))

    def test_truncated_utf8_method_name(self) -> None:
        """A method name ending inside a multi-byte character is invalid UTF-8 too."""
        self._rejected(_request_frame(1, "é".encode()[:1]))

    def test_metadata_key(self) -> None:
        """A metadata key that is not UTF-8 gets ERROR INVALID_ARGUMENT."""
        block = _metadata_block((b"\xc3\x28", b"value"))
        self._rejected(_request_frame(1, b"echo", b"body", flags=0x02, extra=block))

    def test_metadata_value(self) -> None:
        """A metadata value that is not UTF-8 gets ERROR INVALID_ARGUMENT."""
        block = _metadata_block((b"trace", b"ok"), (b"key", b"\xed\xa0\x80"))  # a surrogate
        self._rejected(_request_frame(1, b"echo", b"body", flags=0x02, extra=block))


class InvalidUtf8LineTests(_BadInputCase):
    """In the line format too, invalid UTF-8 fails only its line."""

    wire = LineFormat()

    def test_method_name(self) -> None:
        """A line whose method is not UTF-8 gets ERR INVALID_ARGUMENT; the next is served."""
        peer = self.peer()
        peer.send(b"echo first\n\xff\xfeecho x\necho next\n")
        self.assertEqual(
            peer.written(),
            b"OK first\r\nERR INVALID_ARGUMENT method name is not valid UTF-8\r\nOK next\r\n",
        )
        self.assertFalse(peer.closing)
        self.assertLogged(1)
        self.assertOthersServed()


class MalformedRequestTests(_BadInputCase):
    """A REQUEST whose fields do not fit its length fails only that request."""

    def test_method_overruns_the_frame(self) -> None:
        """A method length beyond the payload gets ERROR INVALID_ARGUMENT; the connection lives."""
        peer = self.peer()
        peer.handshake()
        payload = b"\x00\x50echo"
        peer.send(_HEADER.pack(len(payload), _REQUEST, 0, 1) + payload)
        (error,) = peer.frames()
        self.assertEqual((error.request_id, error.code), (1, StatusCode.INVALID_ARGUMENT))
        self.assertFalse(peer.closing)
        self.assertLogged(1)
        self.assertOthersServed()

    def test_too_much_metadata(self) -> None:
        """More metadata entries than max_metadata_entries get ERROR INVALID_ARGUMENT."""
        peer = self.peer()
        peer.handshake()
        block = _metadata_block(*[(b"k%d" % i, b"v") for i in range(65)])
        peer.send(_request_frame(1, b"echo", flags=0x02, extra=block))
        (error,) = peer.frames()
        self.assertEqual((error.request_id, error.code), (1, StatusCode.INVALID_ARGUMENT))
        self.assertFalse(peer.closing)
        self.assertLogged(1)
        self.assertOthersServed()


# -- protocol violations -----------------------------------------------------------------


class ViolationTests(_BadInputCase):
    """Breaking the protocol's rules ends the connection with GOAWAY PROTOCOL_ERROR."""

    def _violates(self, data: bytes, last_request_id: int = 0, answers: int = 0) -> GoAway:
        peer = self.peer()
        peer.handshake()
        peer.send(data)
        events = peer.frames()
        self.assertEqual(len(events), answers + 1, events)
        goaway = events[-1]
        assert isinstance(goaway, GoAway)
        self.assertEqual(goaway.code, StatusCode.PROTOCOL_ERROR)
        self.assertEqual(goaway.last_request_id, last_request_id)
        # Nothing more is read.
        peer.send(_frame(Request(request_id=99, method="echo")))
        self.assertEqual(peer.written(), b"")
        self.assertClosedAndForgotten(peer)
        self.assertEqual(self.factory.stats.protocol_errors, 1)
        self.assertLogged(1)
        self.assertOthersServed()
        return goaway

    def test_request_id_reused_in_flight(self) -> None:
        """A request id reused while in flight gets GOAWAY PROTOCOL_ERROR and a close."""
        request = _frame(Request(request_id=1, method="wait"))
        goaway = self._violates(request + request, last_request_id=1)
        self.assertEqual(goaway.message, "request id 1 is not above the last one (1)")
        # The responder still running for request 1 was cancelled at the close.
        self.assertTrue(self.waiting[0].called)

    def test_request_id_reused_after_answer(self) -> None:
        """A request id reused after its answer is refused as well: ids only grow."""
        request = _frame(Request(request_id=1, method="echo"))
        self._violates(request + request, last_request_id=1, answers=1)

    def test_request_id_going_down(self) -> None:
        """A request id below the last one gets GOAWAY PROTOCOL_ERROR."""
        self._violates(
            _frame(Request(request_id=5, method="echo"), Request(request_id=3, method="echo")),
            last_request_id=5,
            answers=1,
        )

    def test_request_id_zero(self) -> None:
        """Request id 0 (the connection's own) on a REQUEST gets GOAWAY PROTOCOL_ERROR."""
        self._violates(_frame(Request(request_id=0, method="echo")))

    def test_response_from_client(self) -> None:
        """A RESPONSE frame from a client gets GOAWAY PROTOCOL_ERROR."""
        goaway = self._violates(_HEADER.pack(2, _RESPONSE, 0, 1) + b"hi")
        self.assertEqual(goaway.message, "a server does not accept Response frames")

    def test_error_from_client(self) -> None:
        """An ERROR frame from a client gets GOAWAY PROTOCOL_ERROR."""
        payload = struct.pack(">IH", 5, 2) + b"no"
        goaway = self._violates(_HEADER.pack(len(payload), _ERROR, 0, 1) + payload)
        self.assertEqual(goaway.message, "a server does not accept ErrorResponse frames")

    def test_malformed_error_from_client(self) -> None:
        """A malformed ERROR frame from a client is as fatal as a well-formed one."""
        self._violates(_HEADER.pack(1, _ERROR, 0, 1) + b"x")

    def test_malformed_ping(self) -> None:
        """A PING whose payload is not 8 bytes gets GOAWAY PROTOCOL_ERROR."""
        self._violates(_HEADER.pack(7, _PING, 0, 0) + b"1234567")

    def test_malformed_settings(self) -> None:
        """SETTINGS advertising a max frame size below 1024 gets GOAWAY PROTOCOL_ERROR."""
        payload = struct.pack(">HI", 0x1, 10)
        self._violates(_HEADER.pack(len(payload), 0x1, 0, 0) + payload)

    def test_request_before_settings(self) -> None:
        """A REQUEST right after the preface, before SETTINGS, gets GOAWAY PROTOCOL_ERROR."""
        peer = self.peer()
        peer.send(PREFACE + _frame(Request(request_id=1, method="echo")))
        events = peer.frames()
        self.assertIsInstance(events[0], Settings)
        self.assertEqual(
            events[1:],
            [
                GoAway(
                    last_request_id=0,
                    code=StatusCode.PROTOCOL_ERROR,
                    message="REQUEST before SETTINGS",
                )
            ],
        )
        self.assertClosedAndForgotten(peer)
        self.assertLogged(1)
        self.assertOthersServed()

    def test_unsupported_version(self) -> None:
        """A preface asking for version 2 is told the version this server speaks, and closed."""
        peer = self.peer()
        peer.send(PREFACE[:8] + b"\x00\x02")
        self.assertEqual(
            peer.written(), b"reqresp: unsupported protocol version 2; this server speaks 1\r\n"
        )
        self.assertClosedAndForgotten(peer)
        self.assertLogged(1)
        self.assertOthersServed()


# -- sizes at the edges -------------------------------------------------------------


class BodySizeTests(_BadInputCase):
    """An empty body and a body that fills the largest frame exactly are served."""

    limits = Limits(max_frame_size=1024, ping_interval=None)

    def test_empty_body(self) -> None:
        """A request with an empty body is served, and answered with an empty body."""
        pair = connected_pair(self.router, factory=self.factory, clock=self.clock)
        d = pair.client.call("echo", b"")
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, b"")
        self.assertLogged(0)
        self.assertOthersServed()

    def test_largest_frame(self) -> None:
        """A request whose payload is exactly max_frame_size bytes is served."""
        peer = self.peer()
        peer.handshake()
        body = b"z" * (1024 - 2 - len(b"echo"))
        frame = _request_frame(1, b"echo", body)
        self.assertEqual(len(frame), 10 + 1024)
        peer.send(frame)
        self.assertEqual(peer.frames(), [Response(request_id=1, body=body)])
        self.assertFalse(peer.closing)
        self.assertLogged(0)
        self.assertOthersServed()

    def test_largest_frame_through_the_client(self) -> None:
        """The client sends a body filling the server's max frame size, and gets it back."""
        pair = connected_pair(self.router, factory=self.factory, clock=self.clock)
        body = b"q" * (1024 - 2 - len(b"echo"))
        d = pair.client.call("echo", body)
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, body)
        too_big = pair.client.call("echo", body + b"!")
        self.assertEqual(self.failureResultOf(too_big).value.code, StatusCode.RESOURCE_EXHAUSTED)
        self.assertLogged(0)
        self.assertOthersServed()


class LineBodySizeTests(_BadInputCase):
    """The line format's edges: an empty argument, and a line of exactly max_line_length."""

    wire = LineFormat()
    limits = Limits(max_line_length=1024)

    def test_empty_body(self) -> None:
        """A method alone on its line is served with an empty body."""
        peer = self.peer()
        peer.send(b"echo\n")
        self.assertEqual(peer.written(), b"OK\r\n")
        self.assertLogged(0)
        self.assertOthersServed()

    def test_longest_line(self) -> None:
        """A line of exactly max_line_length bytes, LF included, is served."""
        peer = self.peer()
        body = b"w" * (1024 - len(b"echo \n"))
        peer.send(b"echo " + body + b"\n")
        self.assertEqual(peer.written(), b"OK " + body + b"\r\n")
        self.assertLogged(0)
        self.assertOthersServed()


class LongLineTests(_BadInputCase):
    """An over-long line is answered ERR RESOURCE_EXHAUSTED in its turn; the connection lives."""

    wire = LineFormat()
    limits = Limits(max_line_length=1024)

    def test_long_line(self) -> None:
        """A line one byte too long gets ERR RESOURCE_EXHAUSTED between its neighbours' answers."""
        peer = self.peer()
        long = b"echo " + b"L" * (1024 - len(b"echo \n") + 1)
        peer.send(b"echo before\n" + long + b"\necho after\n")
        self.assertEqual(
            peer.written(),
            b"OK before\r\nERR RESOURCE_EXHAUSTED line too long (limit 1024 bytes)\r\nOK after\r\n",
        )
        self.assertFalse(peer.closing)
        self.assertEqual(self.factory.stats.errors_total, 1)
        # Documented as "none" in operating-limits.md's table; the server logs
        # every rejected request at info (see the report of this test file).
        self.assertLogged(1)
        self.assertOthersServed()

    def test_long_line_is_not_buffered(self) -> None:
        """A line with no LF at all is dropped as it arrives: the buffer stays below the limit."""
        peer = self.peer()
        peer.send(b"echo ")
        for _ in range(100):
            peer.send(b"B" * 1000)
            self.assertLessEqual(peer.protocol.conn.buffered, 1024)
        self.assertEqual(peer.protocol.conn.buffered, 0)
        peer.send(b"\necho after\n")
        self.assertEqual(
            peer.written(),
            b"ERR RESOURCE_EXHAUSTED line too long (limit 1024 bytes)\r\nOK after\r\n",
        )
        self.assertFalse(peer.closing)
        self.assertOthersServed()


class LongLineAutoTests(LongLineTests):
    """The same, when AutoFormat detected the line format."""

    wire = AutoFormat()

    def assertOthersServed(self, client_wire: Any = None) -> None:
        super().assertOthersServed(LineFormat())
        super().assertOthersServed(BinaryFormat())


# -- slowloris ------------------------------------------------------------------------


class SlowlorisTests(_BadInputCase):
    """A peer trickling one byte a second is closed at the handshake or idle timeout."""

    limits = Limits(idle_timeout=30.0, ping_interval=None)

    def test_preface(self) -> None:
        """A preface trickled a byte a second, after 1 s of silence, is closed at 10 s in text."""
        peer = self.peer()
        self.clock.advance(1.0)
        self.assertEqual(self._trickle(peer, PREFACE), 10.0)
        self.assertEqual(peer.written(), b"reqresp: no handshake within 10 s\r\n")
        self.assertClosedAndForgotten(peer)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertLogged(1)
        self.assertOthersServed()

    def test_preface_and_settings(self) -> None:
        """Trickling the preface and SETTINGS is closed at the 10 s handshake timeout."""
        peer = self.peer()
        data = PREFACE + _frame(Settings(max_frame_size=1 << 20, max_concurrent=10))
        self.assertEqual(self._trickle(peer, data), 10.0)
        events = peer.frames()
        self.assertIsInstance(events[0], Settings)
        self.assertEqual(events[1].code, StatusCode.DEADLINE_EXCEEDED)
        self.assertClosedAndForgotten(peer)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertLogged(1)
        self.assertOthersServed()

    def test_settings_after_preface(self) -> None:
        """A whole preface then a trickled SETTINGS is told so in a GOAWAY DEADLINE_EXCEEDED."""
        peer = self.peer()
        peer.send(PREFACE)
        self.clock.advance(1.0)
        self._trickle(peer, _frame(Settings(max_frame_size=1 << 20, max_concurrent=10)) * 2)
        events = peer.frames()
        self.assertIsInstance(events[0], Settings)
        self.assertEqual(
            events[1:],
            [
                GoAway(
                    last_request_id=0,
                    code=StatusCode.DEADLINE_EXCEEDED,
                    message="no handshake within 10 s",
                )
            ],
        )
        self.assertClosedAndForgotten(peer)
        self.assertLogged(1)
        self.assertOthersServed()

    def test_after_handshake(self) -> None:
        """After the handshake, a frame trickled a byte a second is closed at the idle timeout."""
        peer = self.peer()
        peer.handshake()
        frame = _frame(Request(request_id=1, method="echo", body=b"s" * 100))
        self.assertEqual(self._trickle(peer, frame), 30.0)
        self.assertEqual(
            peer.frames(), [GoAway(last_request_id=0, code=StatusCode.OK, message="idle timeout")]
        )
        self.assertClosedAndForgotten(peer)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertLogged(1)
        self.assertOthersServed()

    def test_whole_messages_keep_it_open(self) -> None:
        """A slow peer that completes a message now and then is not idle."""
        peer = self.peer()
        peer.handshake()
        for i in range(1, 6):
            frame = _frame(Request(request_id=i, method="echo", body=b"x" * 10))
            for byte in frame:  # 26 s per request, below the 30 s idle timeout
                peer.send(bytes([byte]))
                self.clock.advance(1.0)
        self.assertFalse(peer.closing)
        self.assertEqual(len(peer.frames()), 5)
        self.assertLogged(0)
        self.assertOthersServed()


class LineSlowlorisTests(_BadInputCase):
    """The same for the line format, where the first whole line is the handshake."""

    wire = LineFormat()
    limits = Limits(idle_timeout=30.0)

    def test_preface(self) -> None:
        """Trickling a first line with no LF is closed at the 10 s handshake timeout."""
        peer = self.peer()
        self.assertEqual(self._trickle(peer, b"echo " + b"a" * 100), 10.0)
        self.assertEqual(peer.written(), b"ERR DEADLINE_EXCEEDED no handshake within 10 s\r\n")
        self.assertClosedAndForgotten(peer)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertLogged(1)
        self.assertOthersServed()

    def test_after_handshake(self) -> None:
        """After a first whole line, a line trickled a byte a second is closed when idle."""
        peer = self.peer()
        peer.send(b"echo hi\n")
        self.assertEqual(peer.written(), b"OK hi\r\n")
        self.assertEqual(self._trickle(peer, b"echo " + b"b" * 100), 30.0)
        # The line format has no GOAWAY: its last words are an ERR line.
        self.assertEqual(peer.written(), b"ERR UNAVAILABLE idle timeout\r\n")
        self.assertClosedAndForgotten(peer)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertLogged(1)
        self.assertOthersServed()

    def test_whole_messages_keep_it_open(self) -> None:
        """A slow peer that completes a line now and then is not idle."""
        peer = self.peer()
        peer.send(b"echo first\n")  # the handshake: a first whole line in time
        self.assertEqual(peer.written(), b"OK first\r\n")
        for _ in range(5):
            for byte in b"echo " + b"x" * 20 + b"\n":  # 26 s per line
                peer.send(bytes([byte]))
                self.clock.advance(1.0)
        self.assertFalse(peer.closing)
        self.assertEqual(peer.written(), b"OK xxxxxxxxxxxxxxxxxxxx\r\n" * 5)
        self.assertLogged(0)
        self.assertOthersServed()


# -- what the fuzzers found ------------------------------------------------------------


class FuzzRegressionTests(_BadInputCase):
    """Inputs found by the atheris harnesses in ``fuzz/``."""

    wire = AutoFormat()

    def test_drain_before_the_format_is_known(self) -> None:
        """Draining an AutoFormat server whose peer has not shown its format closes it quietly."""
        # fuzz_auto found that Connection.send_goaway() before detection
        # raised LocalProtocolError ("nothing can be sent before the peer's
        # format is known"), which escaped from ServerFactory.drain().
        # Smallest input: 004745860100 (mode 0, the bytes "GE", then GOAWAY).
        for first in (b"", b"GE", b"\r\n", b"GET / HTTP/1.1"):
            factory = ServerFactory(self.router, wire=AutoFormat(), clock=self.clock)
            peer = _RawPeer(factory)
            if first:
                peer.send(first)
            d = factory.drain()
            self.assertEqual(peer.written(), b"")
            self.assertTrue(peer.closing)
            peer.lose()
            self.assertIsNone(self.successResultOf(d))
            self.assertEqual(factory.connections, set())
            self.assertEqual(factory.stats.connections_open, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertLogged(0)
        self.assertOthersServed()

    def test_core_goaway_before_the_format_is_known(self) -> None:
        """The core sends nothing for a GOAWAY before detection and refuses later requests."""
        conn = Connection(Role.SERVER, AutoFormat())
        conn.receive_data(b"GE")
        conn.send_goaway()
        self.assertEqual(conn.data_to_send(), b"")
        self.assertEqual(conn.state, ConnectionState.DRAINING)
        conn.receive_data(b"T\n")
        self.assertIsNone(conn.next_event())
        self.assertEqual(conn.data_to_send(), b"ERR UNAVAILABLE server is shutting down\r\n")
