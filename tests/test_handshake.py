"""
The binary handshake as ``docs/protocol.md`` ("Handshake", "Peers that do not
speak the protocol") settles it, on every port that speaks the binary format:
nothing but SETTINGS (or a server's refusing GOAWAY) before the peer's
SETTINGS, whatever the frame's type, and a client that reached a port that
does not speak the binary format fails its handshake at the first bytes.
"""

from __future__ import annotations

import struct

from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp._core.auto import AutoFormat
from twisted_reqresp._core.binary import PREFACE, BinaryCodec, BinaryFormat
from twisted_reqresp._core.connection import Connection, ConnectionState
from twisted_reqresp._core.events import (
    Cancel,
    ErrorResponse,
    Event,
    GoAway,
    Ping,
    Pong,
    ProtocolViolation,
    Request,
    Role,
    Settings,
)
from twisted_reqresp._core.limits import DEFAULT_LIMITS, Limits
from twisted_reqresp._core.line import LineFormat
from twisted_reqresp._core.status import StatusCode
from twisted_reqresp.interfaces import IWireFormat

_HEADER = struct.Struct(">IBBI")
_SETTINGS = Settings(
    max_frame_size=DEFAULT_LIMITS.max_frame_size,
    max_concurrent=DEFAULT_LIMITS.max_concurrent,
    stream_credit=DEFAULT_LIMITS.stream_credit,
)


def _frame(ftype: int, rid: int = 0, payload: bytes = b"") -> bytes:
    return _HEADER.pack(len(payload), ftype, 0, rid) + payload


def _encode(event: Event, role: Role = Role.CLIENT) -> bytes:
    return BinaryCodec(role, DEFAULT_LIMITS).encode(event)


def _drain(conn: Connection) -> list[Event]:
    events = []
    while (event := conn.next_event()) is not None:
        events.append(event)
    return events


#: Frames a client may not send before its SETTINGS, and the name the
#: server's GOAWAY gives each.
_EARLY: list[tuple[str, bytes]] = [
    ("REQUEST", _encode(Request(request_id=1, method="a"))),
    ("CANCEL", _encode(Cancel(request_id=1))),
    ("PING", _encode(Ping(payload=b"12345678"))),
    ("PONG", _encode(Pong(payload=b"12345678"))),
    ("GOAWAY", _encode(GoAway(last_request_id=0))),
    ("frame type 0x00", _frame(0x00, 0, b"x")),
    ("frame type 0x09", _frame(0x09, 7, b"future")),
    ("frame type 0xff", _frame(0xFF)),
]

#: Every server-side wire format that can speak binary.
_FORMATS: list[IWireFormat] = [BinaryFormat(), AutoFormat()]


class BeforeSettingsTests(SynchronousTestCase):
    """Only SETTINGS may follow the preface, on a binary port and an auto port alike."""

    def test_only_settings_before_settings(self) -> None:
        """Any other frame right after the preface gets SETTINGS then GOAWAY PROTOCOL_ERROR."""
        for wire in _FORMATS:
            for name, early in _EARLY:
                with self.subTest(wire=wire.name, frame=name):
                    server = Connection(Role.SERVER, wire)
                    server.receive_data(PREFACE + early)
                    message = f"{name} before SETTINGS"
                    self.assertEqual(
                        _drain(server),
                        [ProtocolViolation(code=StatusCode.PROTOCOL_ERROR, message=message)],
                    )
                    goaway = GoAway(
                        last_request_id=0, code=StatusCode.PROTOCOL_ERROR, message=message
                    )
                    self.assertEqual(
                        server.data_to_send(),
                        _encode(_SETTINGS, Role.SERVER) + _encode(goaway, Role.SERVER),
                    )
                    self.assertIs(server.state, ConnectionState.CLOSED)

    def test_after_settings_anything_goes(self) -> None:
        """After the client's SETTINGS, the same frames are served (or skipped) on both ports."""
        for wire in _FORMATS:
            with self.subTest(wire=wire.name):
                server = Connection(Role.SERVER, wire)
                server.receive_data(
                    PREFACE
                    + _encode(_SETTINGS)
                    + _frame(0x09, 7, b"future")
                    + _encode(Ping(payload=b"12345678"))
                    + _encode(Request(request_id=1, method="a"))
                    + _encode(Cancel(request_id=1))
                )
                self.assertEqual(
                    _drain(server),
                    [
                        _SETTINGS,
                        Ping(payload=b"12345678"),
                        Request(request_id=1, method="a"),
                        Cancel(request_id=1),
                    ],
                )
                self.assertIs(server.state, ConnectionState.OPEN)

    def test_auto_port_awaits_settings_after_preface(self) -> None:
        """An auto port that detected a binary preface waits for SETTINGS as a binary port does."""
        server = Connection(Role.SERVER, AutoFormat())
        self.assertIs(server.state, ConnectionState.OPEN)  # a line peer has no handshake
        server.receive_data(PREFACE)
        self.assertEqual(_drain(server), [])
        self.assertIs(server.state, ConnectionState.AWAIT_SETTINGS)
        server.receive_data(_encode(_SETTINGS))
        self.assertEqual(_drain(server), [_SETTINGS])
        self.assertIs(server.state, ConnectionState.OPEN)

    def test_client_names_early_answers(self) -> None:
        """An answer before the server's SETTINGS is named by its frame, malformed or not."""
        for name, early in (
            ("RESPONSE", _frame(0x03, 1, b"hi")),
            ("ERROR", _encode(ErrorResponse(request_id=1, code=5), Role.SERVER)),
            ("RESPONSE or ERROR", _HEADER.pack(1, 0x03, 0x02, 1) + b"\x00"),
        ):
            with self.subTest(frame=name):
                client = Connection(Role.CLIENT, BinaryFormat())
                client.send_request("a")
                client.data_to_send()
                client.receive_data(early)
                message = f"{name} before SETTINGS"
                self.assertEqual(
                    _drain(client),
                    [ProtocolViolation(code=StatusCode.PROTOCOL_ERROR, message=message)],
                )
                self.assertEqual(
                    client.data_to_send(),
                    _encode(
                        GoAway(last_request_id=1, code=StatusCode.PROTOCOL_ERROR, message=message)
                    ),
                )

    def test_client_refuses_unassigned_frame_first(self) -> None:
        """A server whose first frame has an unassigned type is not a reqresp server."""
        client = Connection(Role.CLIENT, BinaryFormat())
        client.data_to_send()
        client.receive_data(_frame(0x09, 0, b"future") + _encode(_SETTINGS, Role.SERVER))
        (event,) = _drain(client)
        assert isinstance(event, ProtocolViolation)
        self.assertEqual(event.code, StatusCode.PROTOCOL_ERROR)
        self.assertIn("not a reqresp binary server", event.message)
        self.assertIn("0x09", event.message)
        self.assertEqual(client.data_to_send(), b"")


def _pump(client: Connection, server: Connection) -> list[Event]:
    """Run a client and a server against each other; :returns: the client's events."""
    got: list[Event] = []
    for _ in range(20):
        c2s, s2c = client.data_to_send(), server.data_to_send()
        if not c2s and not s2c:
            break
        server.receive_data(c2s)
        _drain(server)
        client.receive_data(s2c)
        got.extend(_drain(client))
    return got


class LinePortTests(SynchronousTestCase):
    """A binary client that reached a line-only port says so at once."""

    _MESSAGE = "not a reqresp binary server: it speaks the line format and answered "

    def test_binary_client_to_line_port(self) -> None:
        """The line port's first ERR line fails the client's handshake, naming the line format."""
        client = Connection(Role.CLIENT, BinaryFormat())
        server = Connection(Role.SERVER, LineFormat())
        events = _pump(client, server)
        self.assertEqual(
            events,
            [
                ProtocolViolation(
                    code=StatusCode.PROTOCOL_ERROR,
                    message=self._MESSAGE + "'ERR INVALID_ARGUMENT method name is not valid UTF-8'",
                )
            ],
        )
        self.assertIs(client.state, ConnectionState.CLOSED)
        # Nothing more is sent: a GOAWAY would be one more bad line to the server.
        self.assertEqual(client.data_to_send(), b"")

    def test_line_answer_byte_by_byte(self) -> None:
        """A line answer arriving a byte at a time is reported at its line end, quoted whole."""
        client = Connection(Role.CLIENT, BinaryFormat())
        client.data_to_send()
        reply = b"ERR INVALID_ARGUMENT x\r\n"
        events: list[Event] = []
        for i in range(len(reply) - 1):
            client.receive_data(reply[i : i + 1])
            events.extend(_drain(client))
        self.assertEqual(events, [])
        client.receive_data(reply[-1:])
        self.assertEqual(
            _drain(client),
            [
                ProtocolViolation(
                    code=StatusCode.PROTOCOL_ERROR,
                    message=self._MESSAGE + "'ERR INVALID_ARGUMENT x'",
                )
            ],
        )

    def test_endless_text_bounded(self) -> None:
        """Text without a line end is reported once 200 bytes are in, quoting those."""
        client = Connection(Role.CLIENT, BinaryFormat())
        client.data_to_send()
        client.receive_data(b"ERR " + b"x" * 195)
        self.assertEqual(_drain(client), [])
        client.receive_data(b"y" * 100_000)
        (event,) = _drain(client)
        assert isinstance(event, ProtocolViolation)
        self.assertEqual(event.message, self._MESSAGE + repr("ERR " + "x" * 195 + "y"))
        self.assertEqual(client.buffered, 0)

    def test_short_ok_line(self) -> None:
        """An OK line is a line-format answer too."""
        client = Connection(Role.CLIENT, BinaryFormat())
        client.data_to_send()
        client.receive_data(b"OK\r\nOK hello\r\n")
        self.assertEqual(
            _drain(client),
            [ProtocolViolation(code=StatusCode.PROTOCOL_ERROR, message=self._MESSAGE + "'OK'")],
        )

    def test_recognised_whatever_the_frame_limit(self) -> None:
        """A client accepting 4 GiB frames still fails at once rather than await 'ERR ' bytes."""
        limits = Limits(max_frame_size=0xFFFF_FFFF)
        client = Connection(Role.CLIENT, BinaryFormat(), limits)
        server = Connection(Role.SERVER, LineFormat())
        (event,) = _pump(client, server)
        assert isinstance(event, ProtocolViolation)
        self.assertTrue(event.message.startswith(self._MESSAGE), event.message)

    def test_text_refusal_still_reported(self) -> None:
        """A binary port's own text refusal is reported with its line, and nothing is sent back."""
        client = Connection(Role.CLIENT, BinaryFormat())
        client.data_to_send()
        client.receive_data(b"reqresp: unsupported protocol version 1; this server speaks 2\r\n")
        self.assertEqual(
            _drain(client),
            [
                ProtocolViolation(
                    code=StatusCode.PROTOCOL_ERROR,
                    message="the server answered in text: "
                    "reqresp: unsupported protocol version 1; this server speaks 2",
                )
            ],
        )
        self.assertEqual(client.data_to_send(), b"")
