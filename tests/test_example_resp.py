r"""
The RESP example (``examples/resp/``): its wire format passes the public
wire-format conformance kit; its codec decodes what ``redis-cli`` and a
person with ``nc`` send, whole and byte by byte, within its limits; and its
store answers the Redis commands it knows, in memory, in the bytes a Redis
client expects.  ``test_e2e_redis.py`` runs the real ``redis-cli`` against it.
"""

# trial's assertion methods carry no annotations.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from examples.resp import (
    ARGC_KEY,
    RESP,
    TYPE_KEY,
    Store,
    arguments,
    pack,
    split_inline,
    unpack,
)
from twisted_reqresp import DEFAULT_LIMITS, Limits, LocalProtocolError, StatusCode
from twisted_reqresp.interfaces import IResponder
from twisted_reqresp.testing import WireFormatConformanceMixin, connected_pair
from twisted_reqresp.wire import (
    ErrorResponse,
    Event,
    ProtocolViolation,
    Rejected,
    Request,
    Response,
    Role,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class RESPConformanceTests(WireFormatConformanceMixin, SynchronousTestCase):
    """The RESP format passes the kit every shipped format passes."""

    wire_format = RESP
    carries_metadata = False
    carries_error_details = False


def _feed(data: bytes, *, role: Role = Role.SERVER, limits: Limits = DEFAULT_LIMITS) -> list[Event]:
    """Decode ``data`` whole and byte by byte; both must give the same events."""
    results = []
    for pieces in ([data], [data[i : i + 1] for i in range(len(data))]):
        codec = RESP.codec(role, limits)
        if role is Role.CLIENT:
            for rid in range(1, 50):
                codec.encode(Request(request_id=rid, method="m"))
        events: list[Event] = []
        for piece in pieces:
            codec.receive_data(piece)
            while (event := codec.next_event()) is not None:
                events.append(event)
        results.append((events, codec.buffered))
    assert results[0] == results[1], results
    return results[0][0]


def _request(rid: int, method: str, *args: bytes) -> Request:
    body = args[0] if len(args) == 1 else pack(args)
    return Request(request_id=rid, method=method, body=body, metadata=((ARGC_KEY, str(len(args))),))


class CommandDecodingTests(SynchronousTestCase):
    """A server codec decodes RESP arrays and inline commands into requests."""

    def test_array_commands(self) -> None:
        """Arrays of bulk strings, as redis-cli sends them, become requests in order."""
        data = (
            b"*1\r\n$4\r\nPING\r\n"
            b"*2\r\n$4\r\nECHO\r\n$5\r\nhi\r\nx\r\n"
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
        )
        self.assertEqual(
            _feed(data),
            [_request(1, "PING"), _request(2, "ECHO", b"hi\r\nx"), _request(3, "SET", b"k", b"")],
        )

    def test_inline_commands(self) -> None:
        """Inline lines split on spaces, with Redis's quoting, CRLF or LF; blank lines ignored."""
        data = b"PING\r\n\r\n  \nset k \"a b\\x41\\n\"\necho 'it\\'s'\r\n"
        self.assertEqual(
            _feed(data),
            [
                _request(1, "PING"),
                _request(2, "set", b"k", b"a bA\n"),
                _request(3, "echo", b"it's"),
            ],
        )

    def test_unbalanced_quotes_rejected(self) -> None:
        """An inline line with unbalanced quotes is answered ERR, and the next line still runs."""
        self.assertEqual(
            _feed(b'echo "a\r\nPING\r\n'),
            [
                Rejected(
                    request_id=1,
                    code=StatusCode.UNKNOWN,
                    message="Protocol error: unbalanced quotes in request",
                ),
                _request(2, "PING"),
            ],
        )

    def test_empty_arrays_ignored(self) -> None:
        """*0 and *-1 are ignored, as Redis ignores them."""
        self.assertEqual(_feed(b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n"), [_request(1, "PING")])

    def test_bad_names_rejected(self) -> None:
        """An empty or non-UTF-8 command name is refused for that command only."""
        self.assertEqual(
            _feed(b"*1\r\n$0\r\n\r\n*1\r\n$1\r\n\xff\r\n"),
            [
                Rejected(
                    request_id=1, code=StatusCode.INVALID_ARGUMENT, message="empty command name"
                ),
                Rejected(
                    request_id=2,
                    code=StatusCode.INVALID_ARGUMENT,
                    message="command name is not valid UTF-8",
                ),
            ],
        )

    def test_not_resp_is_fatal(self) -> None:
        """Bytes that are not RESP end the connection with one protocol error, then nothing."""
        cases = {
            b"*x\r\n": "Protocol error: invalid multibulk length",
            b"*1\r\n:1\r\n": "Protocol error: expected '$', got ':'",
            b"*1\r\n$-2\r\n": "Protocol error: invalid bulk length",
            b"*1\r\n$2\r\nabc\r\n": "Protocol error: bulk string not ended by CRLF",
            b"*1" + b"1" * 40: "Protocol error: '*' line longer than 32 bytes",
        }
        for data, message in cases.items():
            with self.subTest(data=data):
                events = _feed(data + b"PING\r\n")
                self.assertEqual(
                    events, [ProtocolViolation(code=StatusCode.PROTOCOL_ERROR, message=message)]
                )


class CommandLimitTests(SynchronousTestCase):
    """A command is bounded by max_frame_size, an inline line by max_line_length."""

    limits = Limits(max_frame_size=1024, max_line_length=64)

    def _sized(self, payload: int) -> bytes:
        """A SET command whose bulk strings, $N lines included, take 1024 + payload bytes."""
        # "$3\r\nSET\r\n" (9) + "$K\r\n" key "\r\n" (6 + K) + "$999\r\n" value "\r\n" (1007)
        key = b"k" * (2 + payload)
        command = b"*3\r\n" + pack([b"SET", key, b"v" * 999])
        assert len(command) - 4 == 1024 + payload
        return command

    def test_command_size_at_below_above(self) -> None:
        """A command of max_frame_size bytes passes; one byte more is refused and skipped."""
        for extra, refused in ((-1, False), (0, False), (1, True)):
            with self.subTest(extra=extra):
                events = _feed(self._sized(extra) + b"PING\r\n", limits=self.limits)
                self.assertEqual(len(events), 2)
                self.assertEqual(events[1], _request(2, "PING"))
                if refused:
                    self.assertEqual(
                        events[0],
                        Rejected(
                            request_id=1,
                            code=StatusCode.RESOURCE_EXHAUSTED,
                            message="command larger than 1024 bytes",
                        ),
                    )
                else:
                    self.assertIsInstance(events[0], Request)
                    self.assertEqual(events[0].method, "SET")  # type: ignore[union-attr]

    def test_refused_bulk_never_buffered(self) -> None:
        """The bytes of a refused bulk string are dropped as they arrive, not buffered."""
        codec = RESP.codec(Role.SERVER, self.limits)
        codec.receive_data(b"*2\r\n$4\r\nECHO\r\n$1000000\r\n")
        event = codec.next_event()
        self.assertIsInstance(event, Rejected)
        for _ in range(100):
            codec.receive_data(b"x" * 10_000)
            self.assertIsNone(codec.next_event())
            self.assertEqual(codec.buffered, 0)
        codec.receive_data(b"\r\nPING\r\n")
        self.assertEqual(codec.next_event(), _request(2, "PING"))

    def test_array_count_at_limit(self) -> None:
        """An array announcing more elements than max_frame_size could hold is refused at once."""
        most = 1024 // 6
        codec = RESP.codec(Role.SERVER, self.limits)
        codec.receive_data(b"*%d\r\n" % most)
        self.assertIsNone(codec.next_event())
        codec = RESP.codec(Role.SERVER, self.limits)
        codec.receive_data(b"*%d\r\n" % (most + 1))
        self.assertEqual(
            codec.next_event(),
            Rejected(
                request_id=1,
                code=StatusCode.RESOURCE_EXHAUSTED,
                message=f"command of {most + 1} arguments cannot fit in 1024 bytes",
            ),
        )
        # The announced elements are still read, and dropped.
        codec.receive_data(b"$1\r\na\r\n" * (most + 1) + b"PING\r\n")
        self.assertEqual(codec.next_event(), _request(2, "PING"))

    def test_inline_line_at_below_above(self) -> None:
        """An inline line of max_line_length bytes (LF included) passes; one more is refused."""
        for length, refused in ((63, False), (64, False), (65, True)):
            with self.subTest(length=length):
                line = b"ECHO " + b"x" * (length - 6) + b"\n"
                self.assertEqual(len(line), length)
                events = _feed(line + b"PING\n", limits=self.limits)
                self.assertEqual(events[1], _request(2, "PING"))
                if refused:
                    self.assertEqual(
                        events[0],
                        Rejected(
                            request_id=1,
                            code=StatusCode.RESOURCE_EXHAUSTED,
                            message="inline command longer than 64 bytes",
                        ),
                    )
                else:
                    self.assertEqual(events[0], _request(1, "ECHO", b"x" * (length - 6)))


class ReplyTests(SynchronousTestCase):
    """A server codec sends each RESP type; a client codec reads them back."""

    def _server(self) -> object:
        codec = RESP.codec(Role.SERVER, DEFAULT_LIMITS)
        codec.receive_data(b"PING\r\n")
        codec.next_event()
        return codec

    def test_encodings(self) -> None:
        """Each resp-type gives the bytes a Redis client expects, and reads back the same."""
        cases = [
            (Response(request_id=1, body=b"a\r\nb"), b"$4\r\na\r\nb\r\n"),
            (Response(request_id=1, body=b"OK", metadata=((TYPE_KEY, "simple"),)), b"+OK\r\n"),
            (Response(request_id=1, body=b"-42", metadata=((TYPE_KEY, "integer"),)), b":-42\r\n"),
            (Response(request_id=1, metadata=((TYPE_KEY, "null"),)), b"$-1\r\n"),
            (Response(request_id=1, metadata=((TYPE_KEY, "array"),)), b"*0\r\n"),
            (
                Response(request_id=1, body=pack([b"a", b""]), metadata=((TYPE_KEY, "array"),)),
                b"*2\r\n$1\r\na\r\n$0\r\n\r\n",
            ),
            (
                ErrorResponse(request_id=1, code=StatusCode.UNKNOWN, message="unknown command 'x'"),
                b"-ERR unknown command 'x'\r\n",
            ),
            (
                ErrorResponse(request_id=1, code=StatusCode.NOT_FOUND, message="a\nb"),
                b"-NOT_FOUND a b\r\n",
            ),
            (ErrorResponse(request_id=1, code=4242), b"-4242\r\n"),
        ]
        for event, wire in cases:
            with self.subTest(event=event):
                server = RESP.codec(Role.SERVER, DEFAULT_LIMITS)
                self.assertEqual(server.encode(event), wire)
                expected = event
                if isinstance(event, ErrorResponse) and "\n" in event.message:
                    expected = ErrorResponse(request_id=1, code=event.code, message="a b")
                self.assertEqual(_feed(wire, role=Role.CLIENT)[0], expected)

    def test_bad_replies_refused(self) -> None:
        """An answer its RESP type cannot carry raises LocalProtocolError, so INTERNAL is sent."""
        server = RESP.codec(Role.SERVER, DEFAULT_LIMITS)
        for body, kind in ((b"a\r\nb", "simple"), (b"1.5", "integer"), (b"x", "array")):
            with self.subTest(kind=kind):
                event = Response(request_id=1, body=body, metadata=((TYPE_KEY, kind),))
                self.assertRaises(LocalProtocolError, server.encode, event)
        event = Response(request_id=1, metadata=((TYPE_KEY, "map"),))
        error = self.assertRaises(LocalProtocolError, server.encode, event)
        self.assertIn("bulk, simple, integer, null, array", str(error))

    def test_foreign_error_prefix(self) -> None:
        """An error prefix that is no status (Redis's WRONGTYPE) is UNKNOWN with the whole text."""
        self.assertEqual(
            _feed(b"-WRONGTYPE Operation against a key\r\n", role=Role.CLIENT),
            [
                ErrorResponse(
                    request_id=1,
                    code=StatusCode.UNKNOWN,
                    message="WRONGTYPE Operation against a key",
                )
            ],
        )

    def test_protocol_error_last_words(self) -> None:
        """A server's last words on a protocol error are Redis's: -ERR Protocol error: ..."""
        server = RESP.codec(Role.SERVER, DEFAULT_LIMITS)
        self.assertEqual(
            server.encode_fatal(
                StatusCode.PROTOCOL_ERROR, "Protocol error: invalid bulk length", 0
            ),
            b"-ERR Protocol error: invalid bulk length\r\n",
        )
        client = RESP.codec(Role.CLIENT, DEFAULT_LIMITS)
        self.assertEqual(client.encode_fatal(StatusCode.PROTOCOL_ERROR, "x", 0), b"")

    def test_client_sends_packed_arguments(self) -> None:
        """A client request with resp-argc sends each packed argument as its own bulk string."""
        client = RESP.codec(Role.CLIENT, DEFAULT_LIMITS)
        data = client.encode(_request(1, "SET", b"k", b"v"))
        self.assertEqual(data, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n")
        self.assertEqual(_feed(data), [_request(1, "SET", b"k", b"v")])
        bad = Request(request_id=2, method="m", metadata=(("trace", "t"),))
        self.assertRaises(LocalProtocolError, client.encode, bad)


class HelperTests(SynchronousTestCase):
    """pack, unpack, arguments and split_inline."""

    def test_pack_round_trip(self) -> None:
        """unpack undoes pack and refuses anything else."""
        for items in ([], [b""], [b"a", b"\r\n$1\r\n", bytes(range(256))]):
            self.assertEqual(unpack(pack(items)), items)
        for bad in (b"x", b"$1\r\nab\r\n", b"$-1\r\n", b"$1\r\na"):
            self.assertRaises(ValueError, unpack, bad)

    def test_arguments(self) -> None:
        """arguments gives the list back for any count, and a lone body without resp-argc."""
        self.assertEqual(arguments(b"", {ARGC_KEY: "0"}), [])
        self.assertEqual(arguments(b"$1\r\na\r\n", {ARGC_KEY: "1"}), [b"$1\r\na\r\n"])
        self.assertEqual(arguments(pack([b"a", b"b"]), {ARGC_KEY: "2"}), [b"a", b"b"])
        self.assertEqual(arguments(b"x", {}), [b"x"])
        self.assertEqual(arguments(b"", {}), [])
        self.assertRaises(ValueError, arguments, pack([b"a"]), {ARGC_KEY: "2"})

    def test_split_inline(self) -> None:
        """Inline splitting follows Redis's sdssplitargs."""
        cases = {
            b"": [],
            b"  a  b ": [b"a", b"b"],
            b'"a\\tb\\x4a\\""': [b'a\tbJ"'],
            b"'a\\'b'": [b"a'b"],
            b'a"b c"': [b"ab c"],
            b'"a"b': None,
            b'"a': None,
            b"'a": None,
        }
        for line, expected in cases.items():
            with self.subTest(line=line):
                self.assertEqual(split_inline(line), expected)


class StoreTests(SynchronousTestCase):
    """The store answers the Redis commands it knows, through a real server and client."""

    def _call(self, pair: object, *command: bytes) -> object:
        name, *args = command
        body = args[0] if len(args) == 1 else pack(args)
        d = pair.client.call(  # type: ignore[attr-defined]
            name.decode(), body, metadata={ARGC_KEY: str(len(args))}
        )
        pair.pump()  # type: ignore[attr-defined]
        return d

    def test_provides_iresponder(self) -> None:
        """Store provides IResponder."""
        self.assertTrue(verifyObject(IResponder, Store()))

    def test_commands(self) -> None:
        """PING, ECHO, SET, GET, EXISTS, DEL and COMMAND answer as Redis does."""
        pair = connected_pair(Store(), wire=RESP)
        expected = [
            ((b"PING",), b"PONG", "simple"),
            ((b"ping", b"hi"), b"hi", None),
            ((b"ECHO", b"a b"), b"a b", None),
            ((b"GET", b"k"), b"", "null"),
            ((b"SET", b"k", b"v"), b"OK", "simple"),
            ((b"get", b"k"), b"v", None),
            ((b"EXISTS", b"k", b"k", b"nope"), b"2", "integer"),
            ((b"DEL", b"k", b"nope"), b"1", "integer"),
            ((b"COMMAND", b"DOCS"), b"", "array"),
        ]
        for command, body, kind in expected:
            with self.subTest(command=command):
                reply = self.successResultOf(self._call(pair, *command))  # type: ignore[arg-type]
                self.assertEqual(reply.body, body)
                self.assertEqual(reply.metadata.get(TYPE_KEY), kind)

    def test_errors(self) -> None:
        """An unknown command or a wrong argument count is answered -ERR, as Redis does."""
        pair = connected_pair(Store(), wire=RESP)
        pair.server.dataReceived(b"nope a\r\n*1\r\n$3\r\nGET\r\n")
        self.assertEqual(
            pair.server_transport.value(),
            b"-ERR unknown command 'nope'\r\n-ERR wrong number of arguments for 'get' command\r\n",
        )

    def test_pipelined_bytes(self) -> None:
        """Many commands in one read are answered in order, in RESP."""
        pair = connected_pair(Store(), wire=RESP)
        commands = b"".join(b"SET k%d v%d\r\n" % (i, i) for i in range(50))
        commands += b"".join(
            b"*2\r\n$3\r\nGET\r\n$%d\r\nk%d\r\n" % (len(b"k%d" % i), i) for i in range(50)
        )
        pair.server.dataReceived(commands)
        self.assertEqual(
            pair.server_transport.value(),
            b"+OK\r\n" * 50 + b"".join(b"$%d\r\nv%d\r\n" % (len(b"v%d" % i), i) for i in range(50)),
        )


class PublicAPIOnlyTests(SynchronousTestCase):
    """The examples use the public API only."""

    def test_no_private_imports(self) -> None:
        """No module under examples/ imports a twisted_reqresp._* private module."""
        files = sorted(EXAMPLES.rglob("*.py"))
        self.assertTrue(files)
        for path in files:
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                for name in names:
                    parts = name.split(".")
                    with self.subTest(path=path.name, name=name):
                        self.assertFalse(
                            parts[0] == "twisted_reqresp"
                            and any(part.startswith("_") for part in parts[1:]),
                            f"{path} imports the private {name}",
                        )
