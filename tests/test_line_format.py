"""
Tests for :mod:`twisted_reqresp._core.line`, the line wire format: its syntax in
both directions, its limits, head-of-line answer order, and its behaviour
under the :class:`~twisted_reqresp._core.connection.Connection` state machine.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp._core import line as _line
from twisted_reqresp._core.connection import Connection, ConnectionState
from twisted_reqresp._core.errors import LocalProtocolError
from twisted_reqresp._core.events import (
    Cancel,
    ErrorResponse,
    Event,
    ProtocolViolation,
    Rejected,
    Request,
    Response,
    Role,
    Settings,
)
from twisted_reqresp._core.limits import DEFAULT_LIMITS, Limits
from twisted_reqresp._core.line import LineCodec, LineFormat, decode_body, encode_body
from twisted_reqresp._core.status import StatusCode

LINE = LineFormat()


def _drain(codec: LineCodec | Connection) -> list[Event]:
    events = []
    while (event := codec.next_event()) is not None:
        events.append(event)
    return events


def _server(limits: Limits = DEFAULT_LIMITS) -> LineCodec:
    return LINE.codec(Role.SERVER, limits)


def _decode(data: bytes, limits: Limits = DEFAULT_LIMITS) -> list[Event]:
    codec = _server(limits)
    codec.receive_data(data)
    return _drain(codec)


def _client(outstanding: int, limits: Limits = DEFAULT_LIMITS) -> LineCodec:
    codec = LINE.codec(Role.CLIENT, limits)
    for rid in range(1, outstanding + 1):
        codec.encode(Request(request_id=rid, method="m"))
    return codec


def _req(rid: int, method: str, body: bytes = b"") -> Request:
    return Request(request_id=rid, method=method, body=body)


class FormatTests(SynchronousTestCase):
    """The :class:`LineFormat` object and its codecs' fixed attributes."""

    def test_attributes(self) -> None:
        """The format is called ``line``, is not multiplexed, and makes line codecs."""
        self.assertEqual(LINE.name, "line")
        self.assertFalse(LINE.multiplexed)
        self.assertIsInstance(LINE.codec(Role.CLIENT, DEFAULT_LIMITS), LineCodec)
        self.assertEqual(repr(LINE), "LineFormat()")

    def test_no_handshake(self) -> None:
        """A codec has no handshake, no preface, no overhead and nothing buffered."""
        for role in Role:
            codec = LINE.codec(role, DEFAULT_LIMITS)
            self.assertFalse(codec.handshake)
            self.assertEqual(codec.preface(), b"")
            self.assertEqual(codec.frame_overhead, 0)
            self.assertEqual(codec.buffered, 0)


class BodyFormTests(SynchronousTestCase):
    """A body travels as it is, or in the escaped form when it cannot."""

    def test_plain(self) -> None:
        """A body with no CR or LF that does not start with a backslash is sent as it is."""
        for body in (b"hello world", b'"say \\"hi\\""', b'"a\\nb"', b"a\\b\\\\", b" \t\xff"):
            self.assertEqual(encode_body(body), body)
            self.assertEqual(decode_body(body), body)

    def test_escaped(self) -> None:
        """A body with CR or LF, or one that starts with a backslash, is a backslash and
        the body with backslash, LF and CR escaped."""
        self.assertEqual(encode_body(b"a\\b\nc\rd\te"), b"\\a\\\\b\\nc\\rd\te")
        self.assertEqual(encode_body(b"\\x"), b"\\\\\\x")
        self.assertEqual(encode_body(b"\\"), b"\\\\\\")
        self.assertEqual(encode_body(b"\n"), b"\\\\n")

    def test_decode_escaped(self) -> None:
        """After the leading backslash the three escapes are decoded; any other backslash
        stands for itself."""
        self.assertEqual(decode_body(b"\\a\\\\b\\nc\\rd"), b"a\\b\nc\rd")
        self.assertEqual(decode_body(b"\\\\t\\x\\"), b"\\t\\x\\")
        self.assertEqual(decode_body(b"\\"), b"")
        self.assertEqual(decode_body(b"\\plain"), b"plain")

    @given(st.binary())
    def test_round_trip(self, data: bytes) -> None:
        """Decoding an encoded body gives it back, and the encoded form has no CR or LF."""
        encoded = encode_body(data)
        self.assertNotIn(b"\n", encoded)
        self.assertNotIn(b"\r", encoded)
        self.assertEqual(decode_body(encoded), data)
        if b"\n" not in data and b"\r" not in data and not data.startswith(b"\\"):
            self.assertEqual(encoded, data)


class ServerDecodingTests(SynchronousTestCase):
    """A server codec turns request lines into requests."""

    def test_method_and_argument(self) -> None:
        """The method is everything up to the first space and the argument all the rest."""
        self.assertEqual(_decode(b"say  hello  world \n"), [_req(1, "say", b" hello  world ")])

    def test_method_alone(self) -> None:
        """A line with no space, or a space and nothing after, has an empty body."""
        self.assertEqual(_decode(b"ping\nping \n"), [_req(1, "ping"), _req(2, "ping")])

    def test_crlf_and_lf(self) -> None:
        """A line may end with CRLF or LF; only one CR before the LF is removed."""
        self.assertEqual(
            _decode(b"a x\r\nb y\nc z\r\r\nd a\rb\n"),
            [_req(1, "a", b"x"), _req(2, "b", b"y"), _req(3, "c", b"z\r"), _req(4, "d", b"a\rb")],
        )

    def test_argument_verbatim(self) -> None:
        """An argument that does not start with a backslash is the body, byte for byte:
        JSON escapes typed by a person reach the method unchanged."""
        self.assertEqual(
            _decode(b'echo "say \\"hi\\""\necho "a\\nb"\nx a\\nb\\\\c\\\n'),
            [
                _req(1, "echo", b'"say \\"hi\\""'),
                _req(2, "echo", b'"a\\nb"'),
                _req(3, "x", b"a\\nb\\\\c\\"),
            ],
        )

    def test_escaped_argument(self) -> None:
        """An argument that starts with a backslash is in the escaped form, decoded leniently."""
        self.assertEqual(
            _decode(b"x \\a\\nb\\rc\\\\d\\te\\\n"), [_req(1, "x", b"a\nb\rc\\d\\te\\")]
        )

    def test_raw_argument_bytes(self) -> None:
        """The argument is raw bytes: it need not be UTF-8."""
        self.assertEqual(_decode(b"x \xff\xfe\x00\n"), [_req(1, "x", b"\xff\xfe\x00")])

    def test_unicode_method(self) -> None:
        """A UTF-8 method name is decoded."""
        self.assertEqual(
            _decode("d\u00e9j\u00e0 vu\n".encode()), [_req(1, "d\u00e9j\u00e0", b"vu")]
        )

    def test_blank_lines_ignored(self) -> None:
        """Empty and whitespace-only lines give no event and use no request id."""
        self.assertEqual(_decode(b"\n\r\n   \n\t\x0b\x0c\r\na\n\n"), [_req(1, "a")])

    def test_invalid_utf8_method(self) -> None:
        """A method that is not UTF-8 rejects its line only, with INVALID_ARGUMENT."""
        self.assertEqual(
            _decode(b"\xff\xfe arg\nok\n"),
            [
                Rejected(
                    request_id=1,
                    code=StatusCode.INVALID_ARGUMENT,
                    message="method name is not valid UTF-8",
                ),
                _req(2, "ok"),
            ],
        )

    def test_empty_method(self) -> None:
        """A line starting with a space has an empty method and is rejected."""
        self.assertEqual(
            _decode(b" ping\n"),
            [Rejected(request_id=1, code=StatusCode.INVALID_ARGUMENT, message="empty method name")],
        )

    def test_ids_in_order(self) -> None:
        """Request ids count lines from 1, split across chunks or not."""
        codec = _server()
        events: list[Event] = []
        for chunk in (b"a\nb", b"\nc\n", b"d", b"\n"):
            codec.receive_data(chunk)
            events += _drain(codec)
        self.assertEqual([e.request_id for e in events if isinstance(e, Request)], [1, 2, 3, 4])
        self.assertEqual(codec.buffered, 0)

    def test_partial_line_waits(self) -> None:
        """A line without its LF gives no event and stays buffered."""
        codec = _server()
        codec.receive_data(b"echo hel")
        self.assertIsNone(codec.next_event())
        self.assertEqual(codec.buffered, 8)
        codec.receive_data(b"lo\n")
        self.assertEqual(_drain(codec), [_req(1, "echo", b"hello")])


class LineLimitTests(SynchronousTestCase):
    """Lines longer than ``max_line_length`` are dropped, never buffered whole."""

    limits = Limits(max_line_length=16)

    def _too_long(self, rid: int, limit: int = 16) -> Rejected:
        return Rejected(
            request_id=rid,
            code=StatusCode.RESOURCE_EXHAUSTED,
            message=f"line too long (limit {limit} bytes)",
        )

    def test_at_the_limit(self) -> None:
        """A line of exactly the limit, its LF included, is accepted."""
        self.assertEqual(_decode(b"m" * 15 + b"\n", self.limits), [_req(1, "m" * 15)])

    def test_over_the_limit(self) -> None:
        """A line one byte over the limit is rejected in its turn and later lines go on."""
        self.assertEqual(
            _decode(b"a\n" + b"m" * 16 + b"\nb\n", self.limits),
            [_req(1, "a"), self._too_long(2), _req(3, "b")],
        )

    def test_line_end_counts(self) -> None:
        """The CR of a CRLF counts against the limit."""
        self.assertEqual(_decode(b"m" * 15 + b"\r\n", self.limits), [self._too_long(1)])

    def test_rejected_when_lf_arrives(self) -> None:
        """The rejection comes once the rest of the line is dropped, not before."""
        codec = _server(self.limits)
        codec.receive_data(b"x" * 40)
        self.assertEqual(_drain(codec), [])
        self.assertEqual(codec.buffered, 0)
        codec.receive_data(b"y" * 40)
        self.assertEqual(_drain(codec), [])
        codec.receive_data(b"z\nnext\n")
        self.assertEqual(_drain(codec), [self._too_long(1), _req(2, "next")])

    def test_megabyte_without_lf_is_bounded(self) -> None:
        """Feeding 1 MiB without a LF never buffers more than the limit plus one chunk."""
        codec = _server()
        chunk = b"a" * 4096
        for _ in range(256):
            codec.receive_data(chunk)
            self.assertLessEqual(codec.buffered, DEFAULT_LIMITS.max_line_length + len(chunk))
            self.assertIsNone(codec.next_event())
        codec.receive_data(b"\nping\n")
        self.assertEqual(
            _drain(codec), [self._too_long(1, DEFAULT_LIMITS.max_line_length), _req(2, "ping")]
        )

    def test_bounded_without_next_event(self) -> None:
        """The buffer stays bounded even when nobody calls next_event."""
        codec = _server(self.limits)
        codec.receive_data(b"a\n")
        for _ in range(1000):
            codec.receive_data(b"b" * 7)
        self.assertLessEqual(codec.buffered, 2 + 16)
        codec.receive_data(b"\n")
        self.assertEqual(_drain(codec), [_req(1, "a"), self._too_long(2)])

    def test_long_line_in_small_chunks(self) -> None:
        """A line near a large limit, in many small chunks, is decoded whole."""
        body = b"x" * (1024 * 1024)
        codec = _server(Limits(max_line_length=2 * 1024 * 1024))
        data = b"m " + body + b"\n"
        for i in range(0, len(data), 256):
            codec.receive_data(data[i : i + 256])
        self.assertEqual(_drain(codec), [_req(1, "m", body)])


class ServerEncodingTests(SynchronousTestCase):
    """A server codec writes answers as lines, in request order."""

    def _server_with(self, count: int) -> LineCodec:
        codec = _server()
        codec.receive_data(b"m\n" * count)
        self.assertEqual(len(_drain(codec)), count)
        return codec

    def test_ok(self) -> None:
        """A response is ``OK`` and the body (escaped only when it must be), or ``OK`` alone
        when empty."""
        codec = self._server_with(4)
        self.assertEqual(
            codec.encode(Response(request_id=1, body=b"a\nb\\c\r")), b"OK \\a\\nb\\\\c\\r\r\n"
        )
        self.assertEqual(codec.encode(Response(request_id=2)), b"OK\r\n")
        self.assertEqual(
            codec.encode(Response(request_id=3, body=b'"say \\"hi\\""')), b'OK "say \\"hi\\""\r\n'
        )
        self.assertEqual(codec.encode(Response(request_id=4, body=b"\\n")), b"OK \\\\\\n\r\n")

    def test_metadata_dropped(self) -> None:
        """Response metadata is dropped."""
        codec = self._server_with(1)
        response = Response(request_id=1, body=b"x", metadata=(("k", "v"),))
        self.assertEqual(codec.encode(response), b"OK x\r\n")

    def test_err(self) -> None:
        """An error is ``ERR``, the status name and the message on one line."""
        codec = self._server_with(4)
        self.assertEqual(
            codec.encode(
                ErrorResponse(
                    request_id=1,
                    code=StatusCode.NOT_FOUND,
                    message="no such\r\nmethod",
                    details=b"dropped",
                    retry_safe=True,
                )
            ),
            b"ERR NOT_FOUND no such  method\r\n",
        )
        self.assertEqual(
            codec.encode(ErrorResponse(request_id=2, code=1234, message="caf\u00e9")),
            "ERR 1234 caf\u00e9\r\n".encode(),
        )
        self.assertEqual(
            codec.encode(ErrorResponse(request_id=3, code=StatusCode.INTERNAL)), b"ERR INTERNAL\r\n"
        )
        self.assertEqual(
            codec.encode(ErrorResponse(request_id=4, code=5, message="\ud800")),
            b"ERR NOT_FOUND ?\r\n",
        )


class ClientTests(SynchronousTestCase):
    """A client codec writes request lines and maps answer lines to its requests."""

    def test_request_line(self) -> None:
        """A request is its method and its body (escaped only when it must be); an empty
        body leaves the method alone."""
        codec = _client(0)
        self.assertEqual(codec.encode(_req(1, "echo", b"hi\nthere\\")), b"echo \\hi\\nthere\\\\\n")
        self.assertEqual(codec.encode(_req(2, "ping")), b"ping\n")
        self.assertEqual(codec.encode(_req(3, "caf\u00e9", b" x")), "caf\u00e9  x\n".encode())
        self.assertEqual(codec.encode(_req(4, "echo", b'"a\\nb"')), b'echo "a\\nb"\n')

    def test_deadline_dropped(self) -> None:
        """A deadline is not sent: the client times the call out by itself."""
        request = Request(request_id=1, method="m", body=b"b", deadline_ms=10)
        self.assertEqual(_client(0).encode(request), b"m b\n")

    def test_metadata_refused(self) -> None:
        """A request with metadata raises and leaves no request outstanding."""
        codec = _client(0)
        request = Request(request_id=1, method="m", metadata=(("k", "v"),))
        error = self.assertRaises(LocalProtocolError, codec.encode, request)
        self.assertEqual(error.message, "the line format carries no metadata")
        codec.receive_data(b"OK\r\n")
        self.assertIsInstance(codec.next_event(), ProtocolViolation)

    def test_bad_methods(self) -> None:
        """Methods that are empty, hold whitespace or are not Unicode raise."""
        codec = _client(0)
        for method in ("", "a b", "a\nb", "a\rb", "a\tb", "\t", "\ud800"):
            self.assertRaises(LocalProtocolError, codec.encode, _req(1, method))
        codec.receive_data(b"OK\r\n")
        self.assertIsInstance(codec.next_event(), ProtocolViolation)

    def test_too_large(self) -> None:
        """A request longer than the peer's default frame size raises and is not outstanding."""
        self.patch(_line, "MAX_SENT_LINE", 10)
        codec = _client(0)
        self.assertRaises(LocalProtocolError, codec.encode, _req(1, "m", b"x" * 20))
        self.assertEqual(codec.encode(_req(2, "m")), b"m\n")
        codec.receive_data(b"OK\r\n")
        self.assertEqual(_drain(codec), [Response(request_id=2)])

    def test_answers_map_to_oldest(self) -> None:
        """Each answer line answers the oldest request still outstanding."""
        codec = _client(3)
        codec.receive_data(b"OK \\one\\n\r\nERR NOT_FOUND no such method\r\nOK\n")
        self.assertEqual(
            _drain(codec),
            [
                Response(request_id=1, body=b"one\n"),
                ErrorResponse(request_id=2, code=StatusCode.NOT_FOUND, message="no such method"),
                Response(request_id=3),
            ],
        )

    def test_err_codes(self) -> None:
        """ERR lines carry known names, numbers, and may omit the message."""
        codec = _client(3)
        codec.receive_data(b"ERR 1234 app\r\nERR INTERNAL\r\nERR 5 x y\r\n")
        self.assertEqual(
            _drain(codec),
            [
                ErrorResponse(request_id=1, code=1234, message="app"),
                ErrorResponse(request_id=2, code=StatusCode.INTERNAL),
                ErrorResponse(request_id=3, code=StatusCode.NOT_FOUND, message="x y"),
            ],
        )

    def test_unparseable(self) -> None:
        """An unparseable answer line fails only the request it answers."""
        lines = [b"WHAT\r\n", b"ERR\r\n", b"ERR BOGUS x\r\n", b"ERR 99999999999 x\r\n", b"ok\r\n"]
        codec = _client(len(lines) + 1)
        codec.receive_data(b"".join(lines) + b"OK\r\n")
        events = _drain(codec)
        for rid, event in enumerate(events[:-1], start=1):
            self.assertIsInstance(event, Rejected)
            assert isinstance(event, Rejected)
            self.assertEqual((event.request_id, event.code), (rid, StatusCode.INTERNAL))
        self.assertEqual(events[-1], Response(request_id=len(lines) + 1))

    def test_unexpected_answer(self) -> None:
        """An answer line with nothing outstanding ends the connection."""
        codec = _client(1)
        codec.receive_data(b"OK\r\n\r\nOK\r\nOK\r\n")
        self.assertEqual(
            _drain(codec),
            [
                Response(request_id=1),
                ProtocolViolation(
                    code=StatusCode.PROTOCOL_ERROR, message="response line with no request waiting"
                ),
            ],
        )
        codec.receive_data(b"OK\r\n")
        self.assertIsNone(codec.next_event())
        self.assertEqual(codec.buffered, 0)

    def test_cancel_keeps_slot(self) -> None:
        """A cancelled request's answer is still mapped to it, so later ids stay right."""
        codec = _client(2)
        self.assertEqual(codec.encode(Cancel(request_id=1)), b"")
        codec.receive_data(b"OK a\r\nOK b\r\n")
        self.assertEqual(
            _drain(codec), [Response(request_id=1, body=b"a"), Response(request_id=2, body=b"b")]
        )

    def test_blank_lines_ignored(self) -> None:
        """Blank answer lines are ignored."""
        codec = _client(1)
        codec.receive_data(b"\r\n \r\nOK\r\n")
        self.assertEqual(_drain(codec), [Response(request_id=1)])

    def test_answer_too_long(self) -> None:
        """An answer line over the limit ends the connection after the answers before it."""
        codec = _client(3, Limits(max_line_length=16))
        codec.receive_data(b"OK 1\r\n" + b"x" * 100)
        self.assertLessEqual(codec.buffered, 16)
        codec.receive_data(b"\r\nOK 3\r\n")
        self.assertEqual(
            _drain(codec),
            [
                Response(request_id=1, body=b"1"),
                ProtocolViolation(
                    code=StatusCode.RESOURCE_EXHAUSTED,
                    message="response line too long (limit 16 bytes)",
                ),
            ],
        )
        self.assertIsNone(codec.next_event())
        self.assertEqual(codec.buffered, 0)


class ConnectionTests(SynchronousTestCase):
    """The line format under the generic connection state machine."""

    def test_server_open_at_once(self) -> None:
        """A line-format server is open at once and sends nothing first."""
        server = Connection(Role.SERVER, LINE)
        self.assertIs(server.state, ConnectionState.OPEN)
        self.assertEqual(server.data_to_send(), b"")

    def test_server_answers_rejected_lines_in_order(self) -> None:
        """A rejected line is answered in its turn, after the answers before it."""
        server = Connection(Role.SERVER, LINE, Limits(max_line_length=64))
        server.receive_data(b"echo a\n\xff\n" + b"x" * 100 + b"\nping\n")
        events = _drain(server)
        self.assertEqual([type(e) for e in events], [Request, Rejected, Rejected, Request])
        self.assertEqual(server.data_to_send(), b"")
        server.send_response(4, b"pong")
        self.assertEqual(server.data_to_send(), b"")
        server.send_response(1, b"a")
        self.assertEqual(
            server.data_to_send(),
            b"OK a\r\n"
            b"ERR INVALID_ARGUMENT method name is not valid UTF-8\r\n"
            b"ERR RESOURCE_EXHAUSTED line too long (limit 64 bytes)\r\n"
            b"OK pong\r\n",
        )
        self.assertEqual(server.in_flight, set())

    def test_server_burst_within_frame_size(self) -> None:
        """Held answers released together are not counted against one answer's size."""
        server = Connection(Role.SERVER, LINE)
        server.peer_settings = Settings(max_frame_size=100, max_concurrent=100)
        server.receive_data(b"a\nb\n")
        _drain(server)
        server.send_response(2, b"x" * 80)
        server.send_response(1, b"y" * 80)
        self.assertEqual(len(server.data_to_send()), 2 * (3 + 80 + 2))

    def test_server_goaway(self) -> None:
        """After GOAWAY, nothing is sent for it and later lines are refused in order."""
        server = Connection(Role.SERVER, LINE)
        server.receive_data(b"a\n")
        _drain(server)
        server.send_goaway()
        server.receive_data(b"b\n")
        self.assertEqual(_drain(server), [])
        self.assertEqual(server.data_to_send(), b"")
        server.send_response(1)
        self.assertEqual(
            server.data_to_send(), b"OK\r\nERR UNAVAILABLE server is shutting down\r\n"
        )

    def test_client_round_trip(self) -> None:
        """A line-format client sends request lines and gets answers by id."""
        client = Connection(Role.CLIENT, LINE)
        self.assertIs(client.state, ConnectionState.OPEN)
        self.assertEqual(client.data_to_send(), b"")
        self.assertEqual(client.send_request("echo", b"x"), 1)
        self.assertEqual(client.send_request("nope"), 2)
        self.assertEqual(client.data_to_send(), b"echo x\nnope\n")
        client.receive_data(b"OK x\r\nERR NOT_FOUND no method nope\r\n")
        self.assertEqual(
            _drain(client),
            [
                Response(request_id=1, body=b"x"),
                ErrorResponse(request_id=2, code=StatusCode.NOT_FOUND, message="no method nope"),
            ],
        )

    def test_client_metadata_refused(self) -> None:
        """Sending metadata raises and uses no request id."""
        client = Connection(Role.CLIENT, LINE)
        self.assertRaises(LocalProtocolError, client.send_request, "m", b"", (("k", "v"),))
        self.assertEqual(client.last_request_id, 0)
        self.assertEqual(client.send_request("m"), 1)

    def test_client_cancel(self) -> None:
        """A cancelled call's answer is dropped and the next one still delivered."""
        client = Connection(Role.CLIENT, LINE)
        client.send_request("slow")
        client.send_request("fast")
        client.send_cancel(1)
        client.send_ping(b"12345678")
        self.assertEqual(client.data_to_send(), b"slow\nfast\n")
        client.receive_data(b"OK late\r\nOK fast\r\n")
        self.assertEqual(_drain(client), [Response(request_id=2, body=b"fast")])

    def test_client_unparseable_answer(self) -> None:
        """An unparseable answer fails its call with INTERNAL and the connection stays open."""
        client = Connection(Role.CLIENT, LINE)
        client.send_request("m")
        client.receive_data(b"HUH\r\n")
        [event] = _drain(client)
        self.assertIsInstance(event, ErrorResponse)
        assert isinstance(event, ErrorResponse)
        self.assertEqual((event.request_id, event.code), (1, StatusCode.INTERNAL))
        self.assertIs(client.state, ConnectionState.OPEN)

    def test_client_violation(self) -> None:
        """An unexpected answer closes a client without sending anything."""
        client = Connection(Role.CLIENT, LINE)
        client.receive_data(b"OK\r\n")
        [event] = _drain(client)
        self.assertIsInstance(event, ProtocolViolation)
        self.assertIs(client.state, ConnectionState.CLOSED)
        self.assertEqual(client.data_to_send(), b"")


_REQUESTS = st.lists(
    st.tuples(
        st.text(st.characters(blacklist_categories=("Cs", "Zs", "Cc")), min_size=1, max_size=10),
        st.binary(max_size=40),
    ),
    max_size=10,
)


class PropertyTests(SynchronousTestCase):
    """Properties of the codec over generated input."""

    @given(st.binary(max_size=400), st.lists(st.integers(1, 50), min_size=1))
    @settings(deadline=None)
    def test_server_never_raises(self, data: bytes, sizes: list[int]) -> None:
        """Any bytes in any chunking give a server only requests and rejections, ids in order."""
        codec = _server(Limits(max_line_length=32))
        events: list[Event] = []
        pos = 0
        i = 0
        while pos < len(data):
            size = sizes[i % len(sizes)]
            codec.receive_data(data[pos : pos + size])
            events += _drain(codec)
            self.assertLessEqual(codec.buffered, 32 + size)
            pos += size
            i += 1
        for rid, event in enumerate(events, start=1):
            self.assertIsInstance(event, (Request, Rejected))
            assert isinstance(event, (Request, Rejected))
            self.assertEqual(event.request_id, rid)

    @given(st.binary(max_size=400), st.integers(0, 5))
    @settings(deadline=None)
    def test_client_never_raises(self, data: bytes, outstanding: int) -> None:
        """Any bytes give a client answers, rejections or one final violation."""
        codec = _client(outstanding, Limits(max_line_length=32))
        for i in range(len(data)):
            codec.receive_data(data[i : i + 1])
        events = _drain(codec)
        answers = (Response, ErrorResponse, Rejected)
        for event in events[:-1]:
            self.assertIsInstance(event, answers)
        if events:
            self.assertIsInstance(events[-1], (*answers, ProtocolViolation))
        self.assertIsNone(codec.next_event())

    @given(_REQUESTS)
    @settings(deadline=None)
    def test_valid_streams(self, calls: list[tuple[str, bytes]]) -> None:
        """Valid request streams give the same requests whole and byte by byte."""
        client = _client(0)
        requests = [_req(i + 1, method, body) for i, (method, body) in enumerate(calls)]
        data = b"".join(client.encode(request) for request in requests)
        self.assertEqual(_decode(data), requests)
        codec = _server()
        events: list[Event] = []
        for i in range(len(data)):
            codec.receive_data(data[i : i + 1])
            events += _drain(codec)
        self.assertEqual(events, requests)


@given(
    st.binary(max_size=64) | st.sampled_from([b"", b"\\", b"\\x", b"a\\", b"\r", b"\n", b"a\rb"])
)
def test_encode_body_matches_the_rule(data: bytes) -> None:
    """encode_body escapes exactly the bodies a line cannot hold as they are (the spec's rule)."""
    import re

    needs = re.search(rb"\A\\|[\r\n]", data) is not None  # the rule, as the spec states it
    encoded = encode_body(data)
    assert (encoded == data) == (not needs)
    assert b"\n" not in encoded and b"\r" not in encoded
    assert decode_body(encoded) == data
