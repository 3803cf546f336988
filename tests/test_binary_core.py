"""
The sans-IO wire core with the binary format, without any reactor: property
tests (round trips in any chunking; any bytes give events or a protocol
violation, never an exception) and the protocol's rules one by one
(``docs/protocol.md``).
"""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    chunkings,
    client_events,
    frame_soup,
    server_events,
    split,
)
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp._core.binary import (
    HEADER_SIZE,
    PREFACE,
    BinaryCodec,
    BinaryFormat,
    FrameType,
)
from twisted_reqresp._core.connection import Connection, ConnectionState
from twisted_reqresp._core.errors import LocalProtocolError
from twisted_reqresp._core.events import (
    Cancel,
    CreditGranted,
    ErrorResponse,
    Event,
    GoAway,
    Ping,
    Pong,
    PrefaceReceived,
    ProtocolViolation,
    Rejected,
    Request,
    Response,
    Role,
    Settings,
    StreamEnd,
    StreamMessage,
    StreamRequest,
)
from twisted_reqresp._core.limits import DEFAULT_LIMITS, Limits
from twisted_reqresp._core.status import StatusCode

_HEADER = struct.Struct(">IBBI")
_DEFAULT_SETTINGS = Settings(
    max_frame_size=DEFAULT_LIMITS.max_frame_size,
    max_concurrent=DEFAULT_LIMITS.max_concurrent,
    stream_credit=DEFAULT_LIMITS.stream_credit,
)
#: What a server Connection may hand to its application, besides the final
#: ProtocolViolation.
# A server takes CREDIT frames even without streaming: a grant of connection
# credit is harmless and handed on.  With streaming (the default limits) the
# stream frames are events too.
_SERVER_EVENTS = (
    Settings,
    Request,
    Rejected,
    Cancel,
    Ping,
    Pong,
    GoAway,
    CreditGranted,
    StreamRequest,
    StreamMessage,
    StreamEnd,
)


def frame(ftype: int, rid: int = 0, payload: bytes = b"", flags: int = 0) -> bytes:
    """:returns: a frame built by hand, with an honest length."""
    return _HEADER.pack(len(payload), ftype, flags, rid) + payload


def encode(event: Event, role: Role = Role.CLIENT) -> bytes:
    """:returns: ``event`` encoded by a codec of the sending ``role``."""
    return BinaryCodec(role, DEFAULT_LIMITS).encode(event)


def drain(conn: Connection | BinaryCodec) -> list[Event]:
    """:returns: every event available now."""
    events = []
    while (event := conn.next_event()) is not None:
        events.append(event)
    return events


def decode_frames(data: bytes) -> list[Event]:
    """:returns: the events a client codec decodes from a server's bytes."""
    codec = BinaryCodec(Role.CLIENT, DEFAULT_LIMITS)
    codec.receive_data(data)
    events = drain(codec)
    assert codec.buffered == 0, codec.buffered
    return events


def open_server(limits: Limits = DEFAULT_LIMITS) -> Connection:
    """:returns: a server Connection past the handshake, with nothing queued."""
    server = Connection(Role.SERVER, BinaryFormat(), limits)
    server.receive_data(PREFACE + encode(_DEFAULT_SETTINGS))
    assert drain(server) == [_DEFAULT_SETTINGS]
    server.data_to_send()
    return server


def open_client(peer: Settings = _DEFAULT_SETTINGS) -> Connection:
    """:returns: a client Connection that has the server's SETTINGS, with nothing queued."""
    client = Connection(Role.CLIENT, BinaryFormat())
    client.receive_data(encode(peer, Role.SERVER))
    assert drain(client) == [peer]
    client.data_to_send()
    return client


def feed(target: Connection | BinaryCodec, chunks: list[bytes]) -> list[Event]:
    """:returns: the events given while ``chunks`` are fed one at a time."""
    events: list[Event] = []
    for chunk in chunks:
        target.receive_data(chunk)
        events.extend(drain(target))
    return events


# --- (a) round trips ---------------------------------------------------------


def _round_trip(events: list[Event], sender: Role, data: st.DataObject) -> None:
    receiver = Role.SERVER if sender is Role.CLIENT else Role.CLIENT
    encoder = BinaryCodec(sender, DEFAULT_LIMITS)
    stream = encoder.preface() + b"".join(encoder.encode(e) for e in events)
    expected: list[Event] = list(events)
    if receiver is Role.SERVER:
        expected.insert(0, PrefaceReceived(version=1))
    whole = [stream]
    one_by_one = [stream[i : i + 1] for i in range(len(stream))]
    random_chunks = data.draw(chunkings(stream), label="chunks")
    for chunks in (whole, one_by_one, random_chunks):
        codec = BinaryCodec(receiver, DEFAULT_LIMITS)
        assert feed(codec, chunks) == expected
        assert codec.buffered == 0


@given(events=st.lists(client_events, max_size=8), data=st.data())
def test_client_frames_round_trip(events: list[Event], data: st.DataObject) -> None:
    """Client frames decode on a server codec to equal events, whole, byte by byte or chunked."""
    _round_trip(events, Role.CLIENT, data)


@given(events=st.lists(server_events, max_size=8), data=st.data())
def test_server_frames_round_trip(events: list[Event], data: st.DataObject) -> None:
    """Server frames decode on a client codec to equal events, whole, byte by byte or chunked."""
    _round_trip(events, Role.SERVER, data)


# --- (b) any bytes -------------------------------------------------------------


def _check_server_survives(stream: bytes, cuts: list[int], handshake: bytes) -> None:
    server = Connection(Role.SERVER, BinaryFormat())
    events = feed(server, split(handshake + stream, cuts))
    sent = server.data_to_send()
    violations = [e for e in events if isinstance(e, ProtocolViolation)]
    for event in events[: len(events) - len(violations)]:
        assert isinstance(event, _SERVER_EVENTS), event
    assert len(violations) <= 1
    if violations:
        assert events[-1] is violations[0]
        assert server.state is ConnectionState.CLOSED
        server.receive_data(encode(Ping(payload=b"x" * 8)))
        assert server.next_event() is None
        last = decode_frames(sent)[-1]
        assert last == GoAway(
            last_request_id=server.last_request_id,
            code=violations[0].code,
            message=violations[0].message[:1000],
        ), last
    else:
        # Whatever the server queued is well-formed frames it may send.
        for answer in decode_frames(sent):
            # (CREDIT: a message on an ended call gives its connection credit back.)
            assert isinstance(answer, (Settings, ErrorResponse, Pong, CreditGranted)), answer


@given(stream=frame_soup(), data=st.data(), with_settings=st.booleans())
def test_server_connection_never_raises(
    stream: bytes, data: st.DataObject, with_settings: bool
) -> None:
    """Any bytes after the preface give events, or one final violation with a GOAWAY queued."""
    handshake = PREFACE + (encode(_DEFAULT_SETTINGS) if with_settings else b"")
    total = len(handshake) + len(stream)
    cuts = data.draw(
        st.lists(st.integers(min_value=1, max_value=max(1, total - 1)), unique=True).map(sorted)
    )
    _check_server_survives(stream, cuts, handshake)


@given(stream=st.binary(max_size=300), data=st.data())
def test_server_connection_random_bytes(stream: bytes, data: st.DataObject) -> None:
    """Uniformly random bytes after the preface never make the server raise."""
    handshake = PREFACE + encode(_DEFAULT_SETTINGS)
    total = len(handshake) + len(stream)
    cuts = data.draw(
        st.lists(st.integers(min_value=1, max_value=max(1, total - 1)), unique=True).map(sorted)
    )
    _check_server_survives(stream, cuts, handshake)


#: How a client's violation begins when the server's first bytes showed it
#: does not speak the binary format: then it sends no GOAWAY.
_NOT_BINARY = ("not a reqresp binary server", "the server answered in text")


@given(stream=frame_soup(), data=st.data())
def test_client_connection_never_raises(stream: bytes, data: st.DataObject) -> None:
    """Any bytes from a server give answers and control events, or a violation sent as GOAWAY."""
    client = Connection(Role.CLIENT, BinaryFormat())
    for method in ("a", "b", "c"):
        client.send_request(method)
    client.data_to_send()
    events = feed(client, data.draw(chunkings(stream)))
    allowed = (Settings, Response, ErrorResponse, Ping, Pong, GoAway)
    for event in events[:-1]:
        assert isinstance(event, allowed), event
    if events and isinstance(events[-1], ProtocolViolation):
        assert client.state is ConnectionState.CLOSED
        assert client.next_event() is None
        # Nothing is sent to a server whose first bytes show it does not speak frames.
        last_words = client.data_to_send()
        if last_words or not events[-1].message.startswith(_NOT_BINARY):
            assert isinstance(decode_frames(last_words)[-1], GoAway)
    elif events:
        assert isinstance(events[-1], allowed), events[-1]


@given(garbage=st.binary(min_size=1, max_size=100).filter(lambda b: b[0] != 0x89))
def test_garbage_without_preface(garbage: bytes) -> None:
    """Bytes that do not start the preface end in a violation answered with text, not a frame."""
    server = Connection(Role.SERVER, BinaryFormat())
    events = feed(server, [garbage[:1], garbage[1:]])
    assert len(events) == 1 and isinstance(events[0], ProtocolViolation), events
    assert events[0].code == StatusCode.PROTOCOL_ERROR
    reply = server.data_to_send()
    assert reply.startswith((b"reqresp: ", b"HTTP/1.1 400 Bad Request\r\n")), reply
    assert reply.endswith(b"\r\n")
    server.receive_data(PREFACE)
    assert server.next_event() is None


# --- (c) the rules, one by one ---------------------------------------------


class FrameSizeTests(SynchronousTestCase):
    """A frame's length is checked from its header alone."""

    def _announce(self, limits: Limits, length: int) -> tuple[Connection, list[Event]]:
        server = open_server(limits)
        events = feed(server, [_HEADER.pack(length, FrameType.REQUEST, 0, 1)])
        return server, events

    def test_four_gib_announcement(self) -> None:
        """A header announcing 4 GiB - 1 bytes fails with RESOURCE_EXHAUSTED before any payload."""
        server, events = self._announce(DEFAULT_LIMITS, 0xFFFF_FFFF)
        self.assertEqual(len(events), 1)
        self.assertIsInstance(events[0], ProtocolViolation)
        self.assertEqual(events[0].code, StatusCode.RESOURCE_EXHAUSTED)  # type: ignore[union-attr]
        self.assertEqual(server.buffered, 0)
        server.receive_data(b"\0" * 65536)
        self.assertEqual(server.buffered, 0)
        self.assertIsNone(server.next_event())
        (goaway,) = decode_frames(server.data_to_send())
        self.assertEqual(
            goaway,
            GoAway(
                last_request_id=0,
                code=StatusCode.RESOURCE_EXHAUSTED,
                message="frame of 4294967295 bytes exceeds the maximum of 16777216",
            ),
        )

    def test_max_plus_one(self) -> None:
        """A header announcing one byte over max_frame_size is refused at once."""
        server, events = self._announce(Limits(max_frame_size=1024), 1025)
        self.assertEqual(
            events,
            [
                ProtocolViolation(
                    code=StatusCode.RESOURCE_EXHAUSTED,
                    message="frame of 1025 bytes exceeds the maximum of 1024",
                )
            ],
        )
        self.assertEqual(server.buffered, 0)

    def test_exactly_max_is_accepted(self) -> None:
        """A payload of exactly max_frame_size bytes is a normal frame."""
        server = open_server(Limits(max_frame_size=1024))
        body = b"b" * (1024 - 2 - len("m"))
        data = encode(Request(request_id=1, method="m", body=body))
        self.assertEqual(len(data), HEADER_SIZE + 1024)
        self.assertEqual(feed(server, [data]), [Request(request_id=1, method="m", body=body)])

    def test_unknown_type_also_limited(self) -> None:
        """Even a frame of an unknown type may not announce more than the limit."""
        server = open_server(Limits(max_frame_size=1024))
        events = feed(server, [_HEADER.pack(5000, 0x42, 0, 0)])
        self.assertIsInstance(events[0], ProtocolViolation)

    def test_truncated_frame_stays_buffered(self) -> None:
        """A frame missing its last byte gives no event and waits; the byte completes it."""
        server = open_server()
        data = encode(Request(request_id=1, method="echo", body=b"hello"))
        self.assertEqual(feed(server, [data[:-1]]), [])
        self.assertEqual(server.buffered, len(data) - 1)
        self.assertEqual(server.state, ConnectionState.OPEN)
        self.assertEqual(
            feed(server, [data[-1:]]), [Request(request_id=1, method="echo", body=b"hello")]
        )
        self.assertEqual(server.buffered, 0)

    def test_truncated_header_stays_buffered(self) -> None:
        """Fewer than ten bytes of a header give no event."""
        server = open_server()
        self.assertEqual(feed(server, [b"\0" * (HEADER_SIZE - 1)]), [])
        self.assertEqual(server.buffered, HEADER_SIZE - 1)


class ExtensibilityTests(SynchronousTestCase):
    """Unknown frame types, flags and settings are not errors."""

    def test_unknown_frame_type_skipped(self) -> None:
        """Frames of unassigned types (0, 9, 0xFF) are skipped, whatever their id and flags."""
        server = open_server()
        data = (
            frame(0x00, 0, b"x")
            + frame(0x09, 7, b"\xff" * 20, flags=0xFF)
            + frame(0xFF, 0xFFFF_FFFF)
            + encode(Request(request_id=1, method="m"))
        )
        self.assertEqual(feed(server, [data]), [Request(request_id=1, method="m")])
        self.assertEqual(server.data_to_send(), b"")

    def test_many_unknown_frames_in_one_chunk(self) -> None:
        """20000 unknown frames in one chunk are skipped without recursion."""
        server = open_server()
        data = frame(0x42, 0, b"ab") * 20000 + encode(Ping(payload=b"p" * 8))
        self.assertEqual(feed(server, [data]), [Ping(payload=b"p" * 8)])
        self.assertEqual(server.buffered, 0)

    def test_many_unknown_frames_byte_by_byte(self) -> None:
        """Unknown frames arriving a byte at a time are skipped as they complete."""
        server = open_server()
        data = frame(0x42, 0, b"ab") * 50 + encode(Request(request_id=1, method="m"))
        chunks = [data[i : i + 1] for i in range(len(data))]
        self.assertEqual(feed(server, chunks), [Request(request_id=1, method="m")])

    def test_unknown_flags_ignored(self) -> None:
        """Undefined flag bits are ignored on every frame type."""
        server = open_server()
        data = (
            # 0x04 and 0x08 are the streaming flags; 0x10 and up are undefined.
            frame(FrameType.REQUEST, 1, b"\x00\x01m" + b"body", flags=0xF0)
            + frame(FrameType.CANCEL, 1, flags=0xFF)
            + frame(FrameType.PING, 0, b"12345678", flags=0xFF)
            + frame(FrameType.SETTINGS, 0, flags=0xFF)
        )
        self.assertEqual(
            feed(server, [data]),
            [
                Request(request_id=1, method="m", body=b"body"),
                Cancel(request_id=1),
                Ping(payload=b"12345678"),
                # An empty SETTINGS frame: the protocol's defaults, no streaming.
                Settings(max_frame_size=16 * 1024 * 1024, max_concurrent=100),
            ],
        )
        client = open_client()
        client.send_request("a")
        client.send_request("b")
        client.data_to_send()
        data = frame(FrameType.RESPONSE, 1, b"ok", flags=0xFD) + frame(
            FrameType.ERROR, 2, struct.pack(">IH", 5, 0), flags=0xFE
        )
        self.assertEqual(
            feed(client, [data]),
            [
                Response(request_id=1, body=b"ok"),
                ErrorResponse(request_id=2, code=StatusCode.NOT_FOUND),
            ],
        )

    def test_unknown_settings_ignored(self) -> None:
        """Unknown SETTINGS identifiers are ignored and missing ones keep their defaults."""
        codec = BinaryCodec(Role.CLIENT, DEFAULT_LIMITS)
        codec.receive_data(frame(FrameType.SETTINGS, 0, struct.pack(">HIHI", 0x99, 7, 2, 3)))
        self.assertEqual(
            drain(codec), [Settings(max_frame_size=DEFAULT_LIMITS.max_frame_size, max_concurrent=3)]
        )

    def test_unknown_status_code_kept(self) -> None:
        """An ERROR with a code this version does not know keeps the number."""
        client = open_client()
        client.send_request("a")
        client.receive_data(frame(FrameType.ERROR, 1, struct.pack(">IH", 777, 0)))
        (event,) = drain(client)
        assert isinstance(event, ErrorResponse)
        self.assertIs(type(event.code), int)
        self.assertEqual(event.code, 777)


class PerRequestErrorTests(SynchronousTestCase):
    """A malformed REQUEST fails that request only."""

    def _rejected_then_next(self, payload: bytes, flags: int = 0) -> None:
        server = open_server()
        events = feed(server, [frame(FrameType.REQUEST, 1, payload, flags)])
        self.assertEqual(len(events), 1)
        (event,) = events
        assert isinstance(event, Rejected)
        self.assertEqual((event.request_id, event.code), (1, StatusCode.INVALID_ARGUMENT))
        (answer,) = decode_frames(server.data_to_send())
        assert isinstance(answer, ErrorResponse)
        self.assertEqual((answer.request_id, answer.code), (1, StatusCode.INVALID_ARGUMENT))
        self.assertFalse(answer.retry_safe)
        self.assertEqual(server.state, ConnectionState.OPEN)
        self.assertEqual(
            feed(server, [encode(Request(request_id=2, method="ok"))]),
            [Request(request_id=2, method="ok")],
        )

    def test_invalid_utf8_method(self) -> None:
        """A method that is not UTF-8 gets ERROR INVALID_ARGUMENT and the connection stays open."""
        self._rejected_then_next(b"\x00\x02\xff\xfe")

    def test_empty_method(self) -> None:
        """An empty method name is refused for that request only."""
        self._rejected_then_next(b"\x00\x00body")

    def test_method_overruns_frame(self) -> None:
        """A method length past the end of the frame is refused for that request only."""
        self._rejected_then_next(b"\x00\x09abc")

    def test_empty_payload(self) -> None:
        """A REQUEST with no payload at all is refused for that request only."""
        self._rejected_then_next(b"")

    def test_truncated_deadline(self) -> None:
        """A DEADLINE flag with fewer than four bytes left is refused for that request only."""
        self._rejected_then_next(b"\x00\x01m\x00\x01", flags=0x01)

    def test_invalid_utf8_metadata(self) -> None:
        """A metadata value that is not UTF-8 is refused for that request only."""
        self._rejected_then_next(b"\x00\x01m\x00\x01\x00\x01k\x00\x00\x00\x01\xff", flags=0x02)

    def test_empty_metadata_key(self) -> None:
        """An empty metadata key is refused for that request only."""
        self._rejected_then_next(b"\x00\x01m\x00\x01\x00\x00\x00\x00\x00\x00", flags=0x02)

    def test_too_many_metadata_entries(self) -> None:
        """More metadata entries than the receiver's limit are refused for that request only."""
        entries = b"".join(b"\x00\x01k\x00\x00\x00\x00" for _ in range(65))
        self._rejected_then_next(b"\x00\x01m" + struct.pack(">H", 65) + entries, flags=0x02)

    def test_malformed_answer_fails_the_call(self) -> None:
        """A malformed RESPONSE fails only its call, with INTERNAL."""
        client = open_client()
        client.send_request("a")
        client.send_request("b")
        client.receive_data(frame(FrameType.RESPONSE, 1, b"\x00\x01", flags=0x02))
        client.receive_data(encode(Response(request_id=2, body=b"fine"), Role.SERVER))
        events = drain(client)
        self.assertEqual([type(e) for e in events], [ErrorResponse, Response])
        assert isinstance(events[0], ErrorResponse)
        self.assertEqual((events[0].request_id, events[0].code), (1, StatusCode.INTERNAL))


class ViolationTests(SynchronousTestCase):
    """What ends a connection: GOAWAY with a code, then close."""

    def _assert_fatal(
        self, conn: Connection, data: bytes, code: int = StatusCode.PROTOCOL_ERROR
    ) -> str:
        events = feed(conn, [data])
        self.assertTrue(events, "no event")
        violation = events[-1]
        assert isinstance(violation, ProtocolViolation), events
        self.assertEqual(violation.code, code)
        self.assertEqual(conn.state, ConnectionState.CLOSED)
        last = decode_frames(conn.data_to_send())[-1]
        assert isinstance(last, GoAway), last
        self.assertEqual((last.code, last.last_request_id), (code, conn.last_request_id))
        self.assertIsNone(conn.next_event())
        return violation.message

    def test_request_id_reused(self) -> None:
        """A request id used again is a connection error."""
        server = open_server()
        feed(server, [encode(Request(request_id=1, method="a"))])
        self._assert_fatal(server, encode(Request(request_id=1, method="a")))

    def test_request_id_decreasing(self) -> None:
        """A request id below the last one is a connection error, even once that one is answered."""
        server = open_server()
        feed(server, [encode(Request(request_id=5, method="a"))])
        server.send_response(5)
        server.data_to_send()
        message = self._assert_fatal(server, encode(Request(request_id=3, method="a")))
        self.assertIn("not above the last one (5)", message)

    def test_request_id_gaps_allowed(self) -> None:
        """Ids need only increase: a client may skip numbers."""
        server = open_server()
        data = encode(Request(request_id=2, method="a")) + encode(Request(request_id=9, method="b"))
        self.assertEqual([e.request_id for e in feed(server, [data])], [2, 9])  # type: ignore[union-attr]

    def test_request_id_zero(self) -> None:
        """Request id 0 is reserved for the connection and refused on a REQUEST."""
        self._assert_fatal(open_server(), encode(Request(request_id=0, method="a")))

    def test_malformed_request_with_id_zero(self) -> None:
        """A malformed REQUEST with id 0 cannot be answered, so it is a connection error."""
        self._assert_fatal(open_server(), frame(FrameType.REQUEST, 0, b"\x00\x02\xff\xff"))

    def test_rejected_request_id_counts(self) -> None:
        """A rejected request's id is used up: sending it again is a connection error."""
        server = open_server()
        feed(server, [frame(FrameType.REQUEST, 4, b"\x00\x02\xff\xff")])
        self._assert_fatal(server, encode(Request(request_id=4, method="a")))

    def test_response_from_client(self) -> None:
        """A RESPONSE sent by a client is a connection error."""
        self._assert_fatal(open_server(), encode(Response(request_id=1), Role.SERVER))

    def test_malformed_response_from_client(self) -> None:
        """A malformed RESPONSE sent by a client is as fatal as a well-formed one."""
        self._assert_fatal(open_server(), frame(FrameType.RESPONSE, 1, b"\x00\x01", flags=0x02))

    def test_error_from_client(self) -> None:
        """An ERROR sent by a client, well-formed or not, is a connection error."""
        self._assert_fatal(open_server(), encode(ErrorResponse(request_id=1, code=5), Role.SERVER))
        self._assert_fatal(open_server(), frame(FrameType.ERROR, 1, b"\x00"))

    def test_request_to_client(self) -> None:
        """A REQUEST sent by a server, well-formed or not, is a connection error."""
        client = open_client()
        client.send_request("a")
        client.data_to_send()
        self._assert_fatal(client, encode(Request(request_id=1, method="a")))
        client = open_client()
        client.send_request("a")
        client.data_to_send()
        self._assert_fatal(client, frame(FrameType.REQUEST, 1, b"\x00\x02\xff\xff"))

    def test_cancel_to_client(self) -> None:
        """A CANCEL sent by a server is a connection error."""
        self._assert_fatal(open_client(), encode(Cancel(request_id=1)))

    def test_request_before_settings(self) -> None:
        """A REQUEST before the client's SETTINGS is a connection error."""
        server = Connection(Role.SERVER, BinaryFormat())
        events = feed(server, [PREFACE + encode(Request(request_id=1, method="a"))])
        self.assertEqual(
            events,
            [ProtocolViolation(code=StatusCode.PROTOCOL_ERROR, message="REQUEST before SETTINGS")],
        )
        sent = decode_frames(server.data_to_send())
        self.assertIsInstance(sent[0], Settings)
        self.assertIsInstance(sent[-1], GoAway)

    def test_only_settings_before_settings(self) -> None:
        """PING, CANCEL and GOAWAY before the client's SETTINGS are connection errors too."""
        for early, name in (
            (Ping(payload=b"12345678"), "PING"),
            (Cancel(request_id=1), "CANCEL"),
            (GoAway(last_request_id=0), "GOAWAY"),
        ):
            server = Connection(Role.SERVER, BinaryFormat())
            events = feed(server, [PREFACE + encode(early)])
            self.assertEqual(
                events,
                [
                    ProtocolViolation(
                        code=StatusCode.PROTOCOL_ERROR, message=f"{name} before SETTINGS"
                    )
                ],
            )

    def test_client_accepts_refusal_before_settings(self) -> None:
        """A client accepts a GOAWAY in place of SETTINGS (a refused connection)."""
        client = Connection(Role.CLIENT, BinaryFormat())
        refusal = GoAway(last_request_id=0, code=StatusCode.RESOURCE_EXHAUSTED, message="full")
        self.assertEqual(feed(client, [encode(refusal)]), [refusal])

    def test_malformed_ping(self) -> None:
        """A PING whose payload is not 8 bytes, or whose id is not 0, is a connection error."""
        self._assert_fatal(open_server(), frame(FrameType.PING, 0, b"1234567"))
        self._assert_fatal(open_server(), frame(FrameType.PING, 1, b"12345678"))
        self._assert_fatal(open_server(), frame(FrameType.PONG, 0, b""))

    def test_malformed_settings(self) -> None:
        """SETTINGS with an id, a partial entry or an out-of-range value is a connection error."""
        good = struct.pack(">HI", 1, 4096)
        self._assert_fatal(open_server(), frame(FrameType.SETTINGS, 1, good))
        self._assert_fatal(open_server(), frame(FrameType.SETTINGS, 0, good[:-1]))
        self._assert_fatal(open_server(), frame(FrameType.SETTINGS, 0, struct.pack(">HI", 1, 1023)))
        self._assert_fatal(open_server(), frame(FrameType.SETTINGS, 0, struct.pack(">HI", 2, 0)))

    def test_malformed_goaway(self) -> None:
        """A GOAWAY too short for its code and message length is a connection error."""
        self._assert_fatal(open_server(), frame(FrameType.GOAWAY, 0, b"\x00\x00\x00\x00\x00"))
        self._assert_fatal(open_server(), frame(FrameType.GOAWAY, 0, b"\x00\x00\x00\x00\x00\x05ab"))

    def test_unsupported_version(self) -> None:
        """A preface with another version is answered with a text line, not a frame."""
        server = Connection(Role.SERVER, BinaryFormat())
        events = feed(server, [PREFACE[:8] + b"\x00\x02"])
        self.assertIsInstance(events[0], ProtocolViolation)
        self.assertEqual(
            server.data_to_send(),
            b"reqresp: unsupported protocol version 2; this server speaks 1\r\n",
        )

    def test_http_client(self) -> None:
        """An HTTP request instead of the preface gets an HTTP/1.1 400 response."""
        server = Connection(Role.SERVER, BinaryFormat())
        events = feed(server, [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"])
        self.assertIsInstance(events[0], ProtocolViolation)
        reply = server.data_to_send()
        self.assertTrue(reply.startswith(b"HTTP/1.1 400 Bad Request\r\n"), reply)
        head, _, body = reply.partition(b"\r\n\r\n")
        self.assertIn(b"Content-Length: %d" % len(body), head)
        self.assertTrue(body.startswith(b"reqresp: "))

    def test_partial_preface_waits(self) -> None:
        """A correct partial preface waits for the rest."""
        server = Connection(Role.SERVER, BinaryFormat())
        self.assertEqual(feed(server, [PREFACE[:5]]), [])
        self.assertEqual(server.data_to_send(), b"")
        self.assertEqual(feed(server, [PREFACE[5:]]), [])
        self.assertEqual(decode_frames(server.data_to_send()), [_DEFAULT_SETTINGS])


class DrainTests(SynchronousTestCase):
    """GOAWAY, PING and the handshake as the connection handles them itself."""

    def test_goaway_then_request(self) -> None:
        """A request after the server's GOAWAY gets UNAVAILABLE, retry-safe, unseen by the app."""
        server = open_server()
        feed(server, [encode(Request(request_id=1, method="a"))])
        server.send_goaway(StatusCode.OK, "bye")
        self.assertEqual(
            decode_frames(server.data_to_send()),
            [GoAway(last_request_id=1, code=StatusCode.OK, message="bye")],
        )
        self.assertEqual(feed(server, [encode(Request(request_id=2, method="b"))]), [])
        self.assertEqual(
            decode_frames(server.data_to_send()),
            [
                ErrorResponse(
                    request_id=2,
                    code=StatusCode.UNAVAILABLE,
                    message="server is shutting down",
                    retry_safe=True,
                )
            ],
        )
        server.send_response(1, b"still answered")
        self.assertEqual(
            decode_frames(server.data_to_send()), [Response(request_id=1, body=b"still answered")]
        )

    def test_client_after_goaway(self) -> None:
        """A client refuses to send new requests once the server said GOAWAY."""
        client = open_client()
        client.receive_data(encode(GoAway(last_request_id=0), Role.SERVER))
        self.assertEqual(drain(client), [GoAway(last_request_id=0)])
        with self.assertRaises(LocalProtocolError) as caught:
            client.send_request("a")
        self.assertEqual(caught.exception.code, StatusCode.UNAVAILABLE)

    def test_ping_answered(self) -> None:
        """Either side answers a PING with a PONG carrying the same payload, at once."""
        for conn in (open_server(), open_client()):
            sender = Role.CLIENT if conn.role is Role.SERVER else Role.SERVER
            self.assertEqual(
                feed(conn, [encode(Ping(payload=b"abcdefgh"), sender)]),
                [Ping(payload=b"abcdefgh")],
            )
            self.assertEqual(decode_frames(conn.data_to_send()), [Pong(payload=b"abcdefgh")])

    def test_client_sends_preface_and_settings(self) -> None:
        """A new client queues the preface and its SETTINGS at once, and may send requests."""
        client = Connection(Role.CLIENT, BinaryFormat(), Limits(max_frame_size=2048))
        rid = client.send_request("early")
        data = client.data_to_send()
        self.assertTrue(data.startswith(PREFACE))
        server = Connection(Role.SERVER, BinaryFormat())
        self.assertEqual(
            feed(server, [data]),
            [
                Settings(max_frame_size=2048, max_concurrent=100, stream_credit=65536),
                Request(request_id=rid, method="early"),
            ],
        )
        self.assertEqual(rid, 1)


class BodySizeTests(SynchronousTestCase):
    """Empty bodies and bodies up to the peer's limit."""

    def test_empty_bodies(self) -> None:
        """A request and a response with empty bodies travel as such."""
        server = open_server()
        self.assertEqual(
            feed(server, [encode(Request(request_id=1, method="m"))]),
            [Request(request_id=1, method="m", body=b"")],
        )
        server.send_response(1)
        self.assertEqual(decode_frames(server.data_to_send()), [Response(request_id=1, body=b"")])

    def test_largest_request(self) -> None:
        """A client sends a request of exactly the peer's max frame size, and not one byte more."""
        client = open_client(Settings(max_frame_size=1024, max_concurrent=1))
        fields = 2 + len("m")
        rid = client.send_request("m", b"x" * (1024 - fields))
        data = client.data_to_send()
        self.assertEqual(len(data), HEADER_SIZE + 1024)
        server = open_server(Limits(max_frame_size=1024))
        self.assertEqual(
            feed(server, [data]), [Request(request_id=rid, method="m", body=b"x" * (1024 - fields))]
        )
        with self.assertRaises(LocalProtocolError) as caught:
            client.send_request("m", b"x" * (1024 - fields + 1))
        self.assertEqual(caught.exception.code, StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(client.data_to_send(), b"")
        self.assertEqual(client.send_request("m"), rid + 1)

    def test_largest_response(self) -> None:
        """A server refuses to send a response larger than the client's max frame size."""
        client = Connection(Role.CLIENT, BinaryFormat(), Limits(max_frame_size=1024))
        server = Connection(Role.SERVER, BinaryFormat())
        server.receive_data(client.data_to_send())
        drain(server)
        client.send_request("m")
        server.receive_data(client.data_to_send())
        drain(server)
        with self.assertRaises(LocalProtocolError) as caught:
            server.send_response(1, b"x" * 1025)
        self.assertEqual(caught.exception.code, StatusCode.RESOURCE_EXHAUSTED)
        server.send_response(1, b"x" * 1024)


class ClientRuleTests(SynchronousTestCase):
    """How a client treats answers."""

    def test_late_answer_to_cancelled_call_dropped(self) -> None:
        """An answer to a cancelled request is dropped quietly; later answers still arrive."""
        client = open_client()
        first = client.send_request("a")
        second = client.send_request("b")
        client.send_cancel(first)
        self.assertEqual(client.data_to_send()[-HEADER_SIZE:], frame(FrameType.CANCEL, first))
        answers = encode(Response(request_id=first), Role.SERVER) + encode(
            ErrorResponse(request_id=first, code=StatusCode.CANCELLED), Role.SERVER
        )
        answers += encode(Response(request_id=second, body=b"ok"), Role.SERVER)
        self.assertEqual(feed(client, [answers]), [Response(request_id=second, body=b"ok")])
        self.assertEqual(client.state, ConnectionState.OPEN)

    def test_cancel_frame(self) -> None:
        """Cancelling sends one CANCEL frame with the request's id and an empty payload."""
        client = open_client()
        rid = client.send_request("a")
        client.data_to_send()
        client.send_cancel(rid)
        self.assertEqual(client.data_to_send(), frame(FrameType.CANCEL, rid))
        client.send_cancel(rid)
        self.assertEqual(client.data_to_send(), b"")

    def test_server_ignores_cancel_it_does_not_know(self) -> None:
        """A CANCEL for an id already answered (or never sent) is ignored by the server."""
        server = open_server()
        feed(server, [encode(Request(request_id=1, method="a"))])
        server.send_response(1)
        server.data_to_send()
        self.assertEqual(
            feed(server, [encode(Cancel(request_id=1)) + encode(Cancel(request_id=9))]), []
        )
        self.assertEqual(server.state, ConnectionState.OPEN)

    def test_answer_to_never_sent_id(self) -> None:
        """An answer to an id the client never sent is a connection error."""
        client = open_client()
        client.send_request("a")
        client.data_to_send()
        events = feed(client, [encode(Response(request_id=2), Role.SERVER)])
        self.assertEqual(
            events,
            [
                ProtocolViolation(
                    code=StatusCode.PROTOCOL_ERROR,
                    message="answer to request id 2, which was never sent",
                )
            ],
        )
        (goaway,) = decode_frames(client.data_to_send())
        self.assertEqual(
            goaway,
            GoAway(last_request_id=1, code=StatusCode.PROTOCOL_ERROR, message=events[0].message),
        )  # type: ignore[union-attr]

    def test_answer_to_id_zero(self) -> None:
        """An answer with id 0 is a connection error."""
        client = open_client()
        events = feed(client, [encode(ErrorResponse(request_id=0, code=2), Role.SERVER)])
        self.assertIsInstance(events[-1], ProtocolViolation)

    def test_request_ids_count_up(self) -> None:
        """A client numbers its requests 1, 2, 3, ..."""
        client = open_client()
        self.assertEqual([client.send_request("m") for _ in range(3)], [1, 2, 3])

    def test_request_ids_exhausted(self) -> None:
        """After id 2**32 - 1 a client refuses new requests: a new connection is needed."""
        client = open_client()
        client.last_request_id = 0xFFFF_FFFE
        self.assertEqual(client.send_request("m"), 0xFFFF_FFFF)
        with self.assertRaises(LocalProtocolError) as caught:
            client.send_request("m")
        self.assertEqual(caught.exception.code, StatusCode.UNAVAILABLE)

    def test_encoding_errors_are_local(self) -> None:
        """Fields that cannot be encoded raise LocalProtocolError, not struct or Unicode errors."""
        codec = BinaryCodec(Role.CLIENT, DEFAULT_LIMITS)
        for event in [
            Request(request_id=1, method=""),
            Request(request_id=1, method="\ud800"),
            Request(request_id=1, method="m", metadata=(("k", "\udc00"),)),
            Request(request_id=1, method="m", metadata=(("", "v"),)),
            Request(request_id=1, method="m", metadata=(("k", "v"),) * 65536),
            Request(request_id=1, method="m" * 65536),
            Request(request_id=1, method="m", deadline_ms=-1),
            Request(request_id=2**32, method="m"),
            ErrorResponse(request_id=1, code=2**32),
            ErrorResponse(request_id=1, code=-1),
            GoAway(last_request_id=1, message="x" * 65536),
            Ping(payload=b"short"),
            Rejected(request_id=1, code=3, message=""),
        ]:
            with self.subTest(event=repr(event)[:60]):
                self.assertRaises(LocalProtocolError, codec.encode, event)
