"""
The binary wire format against its test vectors and against the worked
example in ``docs/protocol.md``, in both directions: each vector's bytes
decode to its event, and its event encodes to its bytes.  The document's
hex dumps are checked too, so the specification cannot drift from the code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp._core.auto import AutoFormat
from twisted_reqresp._core.binary import PREFACE, BinaryCodec, BinaryFormat
from twisted_reqresp._core.connection import Connection, ConnectionState
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
from twisted_reqresp.interfaces import IWireFormat

_ROOT = Path(__file__).resolve().parent.parent
VECTORS_PATH = _ROOT / "tests" / "vectors" / "binary.json"
LINE_VECTORS_PATH = _ROOT / "tests" / "vectors" / "line.json"
PROTOCOL_DOC = _ROOT / "docs" / "protocol.md"

_EVENT_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        Settings,
        Request,
        Response,
        ErrorResponse,
        Cancel,
        Ping,
        Pong,
        GoAway,
        StreamRequest,
        StreamMessage,
        StreamEnd,
        CreditGranted,
    )
}
_BYTES_FIELDS = frozenset({"body", "details", "payload"})
_DIRECTIONS = ("client->server", "server->client", "both")


def event_from_json(data: dict[str, Any]) -> Event:
    """
    Build an event from a vector's ``event`` object.

    :param data: ``{"type": class name, field: value, ...}``, bytes fields
        as hex strings and metadata as a list of pairs.
    :returns: the event.
    """
    fields = dict(data)
    cls = _EVENT_TYPES[fields.pop("type")]
    for name, value in fields.items():
        if name in _BYTES_FIELDS:
            fields[name] = bytes.fromhex(value)
        elif name == "metadata":
            fields[name] = tuple((key, val) for key, val in value)
    event: Event = cls(**fields)
    return event


def decode_all(role: Role, data: bytes) -> list[Event]:
    """
    Decode ``data`` with a fresh codec of ``role`` (a server codec is fed the
    preface first, and its :class:`PrefaceReceived` is checked and dropped).

    :returns: every event decoded.
    """
    codec = BinaryCodec(role, DEFAULT_LIMITS)
    codec.receive_data(PREFACE + data if role is Role.SERVER else data)
    events = []
    while (event := codec.next_event()) is not None:
        events.append(event)
    if role is Role.SERVER:
        assert events[:1] == [PrefaceReceived(version=1)], events
        del events[0]
    assert codec.buffered == 0
    return events


def load_vectors() -> dict[str, Any]:
    """:returns: the parsed vector file."""
    with VECTORS_PATH.open(encoding="utf-8") as f:
        loaded: dict[str, Any] = json.load(f)
    return loaded


def _receivers(direction: str) -> list[Role]:
    return {
        "client->server": [Role.SERVER],
        "server->client": [Role.CLIENT],
        "both": [Role.SERVER, Role.CLIENT],
    }[direction]


def _sender(direction: str) -> Role:
    return Role.SERVER if direction == "server->client" else Role.CLIENT


class VectorFileTests(SynchronousTestCase):
    """The vector file itself is well formed and covers every frame type."""

    def test_shape(self) -> None:
        """The file has a note, the preface and uniquely named, well-formed vectors."""
        data = load_vectors()
        self.assertIn("hex strings", data["note"])
        self.assertEqual(bytes.fromhex(data["preface"]), PREFACE)
        names = [v["name"] for v in data["vectors"]]
        self.assertEqual(len(names), len(set(names)))
        for vector in data["vectors"]:
            self.assertIn(vector["direction"], _DIRECTIONS, vector["name"])
            self.assertEqual(bytes.fromhex(vector["hex"]).hex(), vector["hex"], vector["name"])
            self.assertIn(vector["event"]["type"], _EVENT_TYPES, vector["name"])

    def test_coverage(self) -> None:
        """Every frame type and every defined flag combination has an encodable vector."""
        events = [
            event_from_json(v["event"])
            for v in load_vectors()["vectors"]
            if not v.get("decode_only")
        ]
        self.assertEqual({type(e).__name__ for e in events}, set(_EVENT_TYPES))
        requests = [e for e in events if isinstance(e, Request)]
        self.assertEqual(
            {(r.deadline_ms is not None, bool(r.metadata)) for r in requests},
            {(False, False), (False, True), (True, False), (True, True)},
        )
        self.assertTrue(any(not r.body for r in requests))
        self.assertTrue(any(not r.method.isascii() for r in requests))
        responses = [e for e in events if isinstance(e, Response)]
        self.assertEqual({bool(r.metadata) for r in responses}, {False, True})
        self.assertTrue(any(not r.body for r in responses))
        errors = [e for e in events if isinstance(e, ErrorResponse)]
        self.assertEqual({e.retry_safe for e in errors}, {False, True})
        self.assertIn(4242, [e.code for e in errors])
        self.assertTrue(any(e.details for e in errors))
        settings = [e for e in events if isinstance(e, Settings)]
        self.assertEqual({s.stream_credit is None for s in settings}, {False, True})
        streams = [e for e in events if isinstance(e, StreamRequest)]
        self.assertEqual(
            {(s.client_stream, s.server_stream) for s in streams},
            {(True, False), (False, True), (True, True)},
        )
        self.assertTrue(any(s.deadline_ms is not None and s.metadata for s in streams))
        messages = [e for e in events if isinstance(e, StreamMessage)]
        self.assertEqual({bool(m.body) for m in messages}, {False, True})
        credits = [e for e in events if isinstance(e, CreditGranted)]
        self.assertEqual({c.request_id == 0 for c in credits}, {False, True})
        self.assertIn(2**31 - 1, [c.increment for c in credits])


class VectorTests(SynchronousTestCase):
    """Each vector decodes to its event, and encodes back to its bytes."""

    def test_decode(self) -> None:
        """Each vector's bytes decode to exactly its event, on every receiving role."""
        for vector in load_vectors()["vectors"]:
            expected = event_from_json(vector["event"])
            for role in _receivers(vector["direction"]):
                with self.subTest(vector=vector["name"], role=role.value):
                    self.assertEqual(decode_all(role, bytes.fromhex(vector["hex"])), [expected])

    def test_encode(self) -> None:
        """Each vector's event encodes to exactly its bytes (decode-only vectors excepted)."""
        for vector in load_vectors()["vectors"]:
            if vector.get("decode_only"):
                continue
            codec = BinaryCodec(_sender(vector["direction"]), DEFAULT_LIMITS)
            with self.subTest(vector=vector["name"]):
                self.assertEqual(
                    codec.encode(event_from_json(vector["event"])).hex(), vector["hex"]
                )

    def test_decode_all_at_once_and_byte_by_byte(self) -> None:
        """All vectors of a direction, sent back to back, decode the same whole or byte by byte."""
        vectors = load_vectors()["vectors"]
        for role in (Role.SERVER, Role.CLIENT):
            chosen = [v for v in vectors if role in _receivers(v["direction"])]
            stream = b"".join(bytes.fromhex(v["hex"]) for v in chosen)
            expected = [event_from_json(v["event"]) for v in chosen]
            self.assertEqual(decode_all(role, stream), expected)
            codec = BinaryCodec(role, DEFAULT_LIMITS)
            events: list[Event] = []
            for byte in PREFACE + stream if role is Role.SERVER else stream:
                codec.receive_data(bytes([byte]))
                while (event := codec.next_event()) is not None:
                    events.append(event)
            if role is Role.SERVER:
                events = events[1:]
            self.assertEqual(events, expected)

    def test_status_codes_typed(self) -> None:
        """Known status codes decode as StatusCode members, others as plain integers."""
        for vector in load_vectors()["vectors"]:
            if vector["event"]["type"] not in ("ErrorResponse", "GoAway"):
                continue
            (event,) = decode_all(_receivers(vector["direction"])[-1], bytes.fromhex(vector["hex"]))
            assert isinstance(event, (ErrorResponse, GoAway))
            if event.code in {int(c) for c in StatusCode}:
                self.assertIsInstance(event.code, StatusCode)
            else:
                self.assertIs(type(event.code), int)


# --- rejected and accepted sequences ----------------------------------------

#: The server-side wire formats that speak binary: the same bytes must get
#: the same answer on a binary port and on an auto port.
_SERVER_FORMATS: list[IWireFormat] = [BinaryFormat(), AutoFormat()]

#: The settled rules (docs/protocol.md) and the vectors that pin each one.
SETTLED_RULES: dict[str, list[str]] = {
    "nothing but SETTINGS before the peer's SETTINGS, whatever the type": [
        "request_before_settings",
        "cancel_before_settings",
        "ping_before_settings",
        "pong_before_settings",
        "goaway_before_settings",
        "unassigned_type_before_settings",
        "malformed_request_before_settings",
        "client_ping_before_settings",
        "client_response_before_settings",
    ],
    "the first frame's header: assigned type, then length, then SETTINGS": [
        "unassigned_type_before_settings_checked_before_length",
        "assigned_type_before_settings_too_large",
    ],
    "a side PINGs and sends requests right after its own SETTINGS": [
        "client_settings_then_ping",
        "client_settings_then_request",
    ],
    "unassigned types are skipped after the peer's SETTINGS": [
        "unassigned_types_after_settings_skipped",
        "client_unassigned_type_after_settings_skipped",
    ],
    "a refusing GOAWAY may take the place of SETTINGS": ["client_refusal_goaway_first"],
    "a client recognises a server that does not speak frames and sends it nothing": [
        "client_unassigned_type_first",
        "client_line_port_answer",
        "client_text_refusal",
        "client_http_answer",
    ],
    "each timeout's GOAWAY status": [
        "goaway_handshake_timeout",
        "goaway_ping_timeout",
        "goaway_idle_timeout",
    ],
    "requests still running at grace expiry get ERROR UNAVAILABLE, not retry-safe": [
        "error_grace_expired",
    ],
    "a stream frame before the peer's SETTINGS is refused like any other": [
        "stream_message_before_settings",
        "credit_before_settings",
        "client_stream_message_before_settings",
    ],
    "a message needs call and connection credit of at least 1, whatever its cost": [
        "stream_message_overdraft_accepted",
        "stream_message_without_credit",
        "stream_message_without_connection_credit",
        "client_stream_message_without_credit",
        "stream_message_streaming_off",
    ],
    "messages flow only the ways the REQUEST's flags say, and not after STREAM_END": [
        "stream_message_on_unary_call",
        "stream_message_on_server_stream_call",
        "stream_message_after_end",
        "client_stream_message_on_client_stream_call",
        "stream_end_on_unary_call",
        "stream_end_twice",
        "client_stream_end_from_server",
        "client_stream_request_from_server",
    ],
    "stream frames for ids never sent are connection errors": [
        "stream_message_unknown_id",
        "stream_end_unknown_id",
        "credit_unknown_id",
        "client_stream_message_unknown_id",
    ],
    "stream frames for an ended call are dropped; a message's connection credit goes back": [
        "stream_frames_for_ended_call_dropped",
        "client_stream_frames_for_cancelled_call_dropped",
    ],
    "CREDIT: 1 to 2**31-1, on a call the receiver streams on, never past 2**31-1": [
        "credit_zero",
        "credit_above_max",
        "credit_bad_length",
        "credit_overflow_connection",
        "credit_overflow_call",
        "credit_on_call_without_server_stream",
        "client_credit_overflow_call",
    ],
    "a streaming REQUEST that cannot be served fails alone": [
        "stream_request_streaming_off",
        "stream_request_client_did_not_offer",
    ],
    "a whole streaming call in each direction": [
        "stream_bidirectional_flow",
        "client_stream_server_flow",
    ],
}


def _set_up(receiver: str, vector: dict[str, Any], wire: IWireFormat) -> Connection:
    """
    :returns: a receiving Connection after the vector's setup (a server fed
        the preface and ``received``, a client that sent ``sent`` requests
        and was fed ``received``), with nothing queued.
    """
    received = bytes.fromhex(vector["received"])
    limits = Limits(**vector.get("limits", {}))
    if receiver == "server":
        conn = Connection(Role.SERVER, wire, limits)
        conn.receive_data(PREFACE + received)
    else:
        conn = Connection(Role.CLIENT, wire, limits)
        for _ in range(vector.get("sent", 0)):
            conn.send_request("m")
        conn.receive_data(received)
    while (event := conn.next_event()) is not None:
        assert not isinstance(event, ProtocolViolation), (vector["name"], event)
    for kind in vector.get("streams", []):
        conn.start_stream("s", client_stream=kind != "server", server_stream=kind != "client")
    for rid in vector.get("answered", []):
        conn.send_response(rid)
    for rid in vector.get("cancelled", []):
        conn.send_cancel(rid)
    conn.receive_data(bytes.fromhex(vector.get("received_after", "")))
    while (event := conn.next_event()) is not None:
        assert not isinstance(event, ProtocolViolation), (vector["name"], event)
    conn.data_to_send()
    return conn


def _receive(conn: Connection, data: bytes, whole: bool) -> list[Event]:
    """:returns: the events ``conn`` gives for ``data``, fed whole or byte by byte."""
    events: list[Event] = []
    for chunk in [data] if whole else [data[i : i + 1] for i in range(len(data))]:
        conn.receive_data(chunk)
        while (event := conn.next_event()) is not None:
            events.append(event)
    return events


def _wires(receiver: str) -> list[IWireFormat]:
    return _SERVER_FORMATS if receiver == "server" else [BinaryFormat()]


class SequenceVectorTests(SynchronousTestCase):
    """The rejected and accepted sequences, run through a real Connection of each format."""

    def test_shape(self) -> None:
        """Each sequence vector names its receiver and says what it expects, under a unique name."""
        data = load_vectors()
        names = [v["name"] for v in data["vectors"] + data["rejected"] + data["accepted"]]
        self.assertEqual(len(names), len(set(names)))
        for vector in data["rejected"] + data["accepted"]:
            self.assertIn(vector["receiver"], ("server", "client"), vector["name"])
            for field in ("received", "hex", "reply"):
                self.assertEqual(bytes.fromhex(vector[field]).hex(), vector[field])
        for vector in data["rejected"]:
            self.assertEqual(set(vector["error"]), {"code", "message"}, vector["name"])

    def test_settled_rules_covered(self) -> None:
        """Every rule the specification settles has at least one vector, and each exists."""
        data = load_vectors()
        names = {v["name"] for v in data["vectors"] + data["rejected"] + data["accepted"]}
        for rule, pinned in SETTLED_RULES.items():
            with self.subTest(rule=rule):
                self.assertTrue(pinned)
                self.assertLessEqual(set(pinned), names)

    def test_rejected(self) -> None:
        """Each rejected vector is a connection error whose last words are exactly its reply."""
        for vector in load_vectors()["rejected"]:
            receiver = vector["receiver"]
            expected = ProtocolViolation(
                code=vector["error"]["code"], message=vector["error"]["message"]
            )
            for wire in _wires(receiver):
                for whole in (True, False):
                    with self.subTest(vector=vector["name"], wire=wire.name, whole=whole):
                        conn = _set_up(receiver, vector, wire)
                        events = _receive(conn, bytes.fromhex(vector["hex"]), whole)
                        self.assertEqual(events, [expected])
                        self.assertEqual(conn.data_to_send().hex(), vector["reply"])
                        self.assertIs(conn.state, ConnectionState.CLOSED)

    def test_rejected_reply_is_goaway(self) -> None:
        """A non-empty reply decodes, at the peer, to one GOAWAY with the error's status."""
        for vector in load_vectors()["rejected"]:
            if not vector["reply"]:
                # Only a server that showed it does not speak frames gets nothing.
                self.assertEqual(vector["receiver"], "client", vector["name"])
                continue
            peer = Role.CLIENT if vector["receiver"] == "server" else Role.SERVER
            (goaway,) = decode_all(peer, bytes.fromhex(vector["reply"]))
            with self.subTest(vector=vector["name"]):
                assert isinstance(goaway, GoAway)
                self.assertEqual(goaway.code, vector["error"]["code"])
                self.assertEqual(goaway.message, vector["error"]["message"])

    def test_accepted(self) -> None:
        """Each accepted sequence gives exactly its events and reply, and the connection stays."""
        for vector in load_vectors()["accepted"]:
            receiver = vector["receiver"]
            expected = [event_from_json(e) for e in vector["events"]]
            for wire in _wires(receiver):
                for whole in (True, False):
                    with self.subTest(vector=vector["name"], wire=wire.name, whole=whole):
                        conn = _set_up(receiver, vector, wire)
                        events = _receive(conn, bytes.fromhex(vector["hex"]), whole)
                        self.assertEqual(events, expected)
                        self.assertEqual(conn.data_to_send().hex(), vector["reply"])
                        self.assertIsNot(conn.state, ConnectionState.CLOSED)


# --- the worked example in docs/protocol.md --------------------------------

#: The marker that precedes each checked dump in docs/protocol.md.
_MARKER = re.compile(r"^<!-- wire-example: ([a-z0-9-]+) -->\s*\n```[a-z]*\n(.*?)^```", re.M | re.S)

_C2S, _S2C = "client->server", "server->client"
_SERVER_LIMITS = Limits(max_frame_size=1024 * 1024, max_concurrent=32)
_PING_PAYLOAD = bytes.fromhex("0000000000000001")

#: The session the worked example shows: (marker, direction, event); the
#: preface is the one step that is not an event.
EXAMPLE: list[tuple[str, str, Event | None]] = [
    ("client-preface", _C2S, None),
    (
        "client-settings",
        _C2S,
        Settings(max_frame_size=16 * 1024 * 1024, max_concurrent=100, stream_credit=65536),
    ),
    (
        "server-settings",
        _S2C,
        Settings(max_frame_size=1024 * 1024, max_concurrent=32, stream_credit=65536),
    ),
    (
        "request-echo",
        _C2S,
        Request(request_id=1, method="echo", body=b"hi", metadata=(("trace-id", "abc123"),)),
    ),
    ("response-echo", _S2C, Response(request_id=1, body=b"hi")),
    (
        "request-lookup",
        _C2S,
        Request(request_id=2, method="lookup", body=b"user:42", deadline_ms=5000),
    ),
    (
        "error-not-found",
        _S2C,
        ErrorResponse(request_id=2, code=StatusCode.NOT_FOUND, message="no such user"),
    ),
    ("ping", _C2S, Ping(payload=_PING_PAYLOAD)),
    ("pong", _S2C, Pong(payload=_PING_PAYLOAD)),
    ("goaway", _S2C, GoAway(last_request_id=2, code=StatusCode.OK, message="server shutting down")),
]


_STREAM_CLIENT = Limits(stream_credit=16)
_STREAM_SERVER = Limits(max_frame_size=1024 * 1024, max_concurrent=32, stream_credit=65536)

#: The second session, with streaming calls: (marker, direction, event).
STREAM_EXAMPLE: list[tuple[str, str, Event]] = [
    (
        "streaming-client-settings",
        _C2S,
        Settings(max_frame_size=16 * 1024 * 1024, max_concurrent=100, stream_credit=16),
    ),
    (
        "streaming-server-settings",
        _S2C,
        Settings(max_frame_size=1024 * 1024, max_concurrent=32, stream_credit=65536),
    ),
    (
        "streaming-request-count",
        _C2S,
        StreamRequest(
            request_id=1, method="count", client_stream=False, server_stream=True, body=b"2"
        ),
    ),
    ("streaming-message-1", _S2C, StreamMessage(request_id=1, body=b"1")),
    ("streaming-message-2", _S2C, StreamMessage(request_id=1, body=b"2")),
    ("streaming-credit", _C2S, CreditGranted(request_id=1, increment=22)),
    ("streaming-response-count", _S2C, Response(request_id=1)),
    (
        "streaming-request-sum",
        _C2S,
        StreamRequest(request_id=2, method="sum", client_stream=True, server_stream=False),
    ),
    ("streaming-message-3", _C2S, StreamMessage(request_id=2, body=b"3")),
    ("streaming-message-4", _C2S, StreamMessage(request_id=2, body=b"4")),
    ("streaming-end", _C2S, StreamEnd(request_id=2)),
    ("streaming-response-sum", _S2C, Response(request_id=2, body=b"7")),
]


def run_streaming_session() -> dict[str, bytes]:
    """
    Play the streaming example with a real client and server
    :class:`Connection`, checking each side's events on the way.

    :returns: the bytes each side sent after its preface, by direction.
    """
    client = Connection(Role.CLIENT, BinaryFormat(), _STREAM_CLIENT)
    server = Connection(Role.SERVER, BinaryFormat(), _STREAM_SERVER)
    sent = {_C2S: b"", _S2C: b""}
    by_name = {name: event for name, _, event in STREAM_EXAMPLE}

    def expect(to_server: list[str], to_client: list[str]) -> None:
        got_server: list[Event] = []
        got_client: list[Event] = []
        while True:
            c2s, s2c = client.data_to_send(), server.data_to_send()
            if not c2s and not s2c:
                break
            sent[_C2S] += c2s
            sent[_S2C] += s2c
            server.receive_data(c2s)
            client.receive_data(s2c)
            while (event := server.next_event()) is not None:
                got_server.append(event)
            while (event := client.next_event()) is not None:
                got_client.append(event)
        want = ([by_name[n] for n in to_server], [by_name[n] for n in to_client])
        assert (got_server, got_client) == want, ((got_server, got_client), want)

    expect(["streaming-client-settings"], ["streaming-server-settings"])
    sent[_C2S] = sent[_C2S][len(PREFACE) :]
    count = client.start_stream("count", b"2", client_stream=False, server_stream=True)
    expect(["streaming-request-count"], [])
    server.send_message(count, b"1")
    server.send_message(count, b"2")  # credit 5: sent, leaving -6
    assert not server.can_send_message(count)
    expect([], ["streaming-message-1", "streaming-message-2"])
    client.acknowledge(count, 22)  # the call is overdrawn: the grant goes at once
    expect(["streaming-credit"], [])
    server.send_response(count)
    expect([], ["streaming-response-count"])
    total = client.start_stream("sum", client_stream=True, server_stream=False)
    client.send_message(total, b"3")
    client.send_message(total, b"4")
    client.end_stream(total)
    expect(
        ["streaming-request-sum", "streaming-message-3", "streaming-message-4", "streaming-end"], []
    )
    server.acknowledge(total, 22)  # 22 of 65536 owed: batched, nothing sent
    server.send_response(total, b"7")
    expect([], ["streaming-response-sum"])
    return sent


def parse_hex_dump(text: str) -> bytes:
    """
    Read a dump from the document: on each line, hex byte pairs separated by
    blanks, then optionally ``#`` and a comment.

    :returns: the bytes.
    """
    out = bytearray()
    for line in text.splitlines():
        hex_part = line.split("#", 1)[0]
        for token in hex_part.split():
            if not re.fullmatch(r"[0-9a-f]{2}", token):
                raise ValueError(f"not a hex byte: {token!r} in {line!r}")
            out.append(int(token, 16))
    return bytes(out)


def doc_dumps() -> dict[str, bytes]:
    """:returns: the checked dumps of docs/protocol.md, by marker, in order."""
    text = PROTOCOL_DOC.read_text(encoding="utf-8")
    dumps: dict[str, bytes] = {}
    for match in _MARKER.finditer(text):
        name = match.group(1)
        assert name not in dumps, f"marker {name} used twice"
        dumps[name] = parse_hex_dump(match.group(2))
    return dumps


def run_example_session() -> dict[str, bytes]:
    """
    Play the example with a real client and server :class:`Connection`.

    :returns: the bytes each side sent, as ``{direction: bytes}``.
    """
    client = Connection(Role.CLIENT, BinaryFormat())
    server = Connection(Role.SERVER, BinaryFormat(), _SERVER_LIMITS)
    sent = {_C2S: b"", _S2C: b""}

    def pump() -> tuple[list[Event], list[Event]]:
        got_server: list[Event] = []
        got_client: list[Event] = []
        while True:
            c2s, s2c = client.data_to_send(), server.data_to_send()
            if not c2s and not s2c:
                return got_server, got_client
            sent[_C2S] += c2s
            sent[_S2C] += s2c
            server.receive_data(c2s)
            client.receive_data(s2c)
            while (event := server.next_event()) is not None:
                got_server.append(event)
            while (event := client.next_event()) is not None:
                got_client.append(event)

    def expect(to_server: list[str], to_client: list[str]) -> None:
        # Each side sees the events of the steps named, and nothing else.
        by_name = {name: event for name, _, event in EXAMPLE}
        got = pump()
        want = ([by_name[n] for n in to_server], [by_name[n] for n in to_client])
        assert got == want, (got, want)

    expect(["client-settings"], ["server-settings"])
    rid = client.send_request("echo", b"hi", (("trace-id", "abc123"),))
    expect(["request-echo"], [])
    server.send_response(rid, b"hi")
    expect([], ["response-echo"])
    rid = client.send_request("lookup", b"user:42", deadline_ms=5000)
    expect(["request-lookup"], [])
    server.send_error(rid, StatusCode.NOT_FOUND, "no such user")
    expect([], ["error-not-found"])
    client.send_ping(_PING_PAYLOAD)
    expect(["ping"], ["pong"])  # the server's Connection answers the PING itself
    server.send_goaway(StatusCode.OK, "server shutting down")
    expect([], ["goaway"])
    return sent


class WorkedExampleTests(SynchronousTestCase):
    """The hex dumps in docs/protocol.md are what the code sends."""

    def test_markers(self) -> None:
        """The document holds exactly the example's dumps, in session order, plus both streams."""
        names = list(doc_dumps())
        expected = [name for name, _, _ in EXAMPLE]
        expected += ["stream-client-to-server", "stream-server-to-client"]
        expected += [name for name, _, _ in STREAM_EXAMPLE]
        self.assertEqual(names, expected)

    def test_streaming_frames(self) -> None:
        """Each dump of the streaming session is the encoding of the event it describes."""
        dumps = doc_dumps()
        for name, direction, event in STREAM_EXAMPLE:
            with self.subTest(step=name):
                codec = BinaryCodec(_sender(direction), DEFAULT_LIMITS)
                self.assertEqual(dumps[name].hex(" "), codec.encode(event).hex(" "))

    def test_streaming_session(self) -> None:
        """A real client and server Connection send exactly the streaming session's dumps."""
        dumps = doc_dumps()
        sent = run_streaming_session()
        for direction in (_C2S, _S2C):
            steps = b"".join(dumps[name] for name, d, _ in STREAM_EXAMPLE if d == direction)
            self.assertEqual(sent[direction].hex(" "), steps.hex(" "))

    def test_each_frame(self) -> None:
        """Each annotated dump is the encoding of the event the document describes."""
        dumps = doc_dumps()
        for name, direction, event in EXAMPLE:
            with self.subTest(step=name):
                if event is None:
                    self.assertEqual(dumps[name], PREFACE)
                    continue
                codec = BinaryCodec(_sender(direction), DEFAULT_LIMITS)
                self.assertEqual(dumps[name].hex(" "), codec.encode(event).hex(" "))

    def test_streams(self) -> None:
        """The whole-session dumps are what a real client and server Connection send."""
        dumps = doc_dumps()
        sent = run_example_session()
        self.assertEqual(dumps["stream-client-to-server"].hex(" "), sent[_C2S].hex(" "))
        self.assertEqual(dumps["stream-server-to-client"].hex(" "), sent[_S2C].hex(" "))
        streams = ((_C2S, "stream-client-to-server"), (_S2C, "stream-server-to-client"))
        for direction, stream in streams:
            steps = b"".join(dumps[name] for name, d, _ in EXAMPLE if d == direction)
            self.assertEqual(dumps[stream], steps)

    def test_json_example(self) -> None:
        """The vectors shown in the document's "Test vectors" section are the ones in the
        files."""
        text = PROTOCOL_DOC.read_text(encoding="utf-8")
        blocks = re.findall(r"^```json\n(.*?)^```", text, re.M | re.S)
        self.assertTrue(blocks)
        data = load_vectors()
        vectors = {v["name"]: v for v in data["vectors"] + data["rejected"] + data["accepted"]}
        line_vectors = json.loads(LINE_VECTORS_PATH.read_text(encoding="utf-8"))["vectors"]
        vectors.update((v["name"], v) for v in line_vectors)
        for block in blocks:
            shown = json.loads(block)
            self.assertEqual(shown, vectors[shown["name"]])

    def test_parse_hex_dump(self) -> None:
        """The dump reader takes hex pairs, skips comments and refuses anything else."""
        self.assertEqual(parse_hex_dump("00 01  # two\n\nff # x 12\n"), b"\x00\x01\xff")
        self.assertRaises(ValueError, parse_hex_dump, "0g")
