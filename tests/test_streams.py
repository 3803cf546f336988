"""
Streaming calls in the sans-IO core (docs/protocol.md, "Streaming calls"):
who may open one, the credit rules on both sides, the life of a call, and a
property test that any interleaving of messages, credit and consumption
keeps what a receiver holds within its bound and loses no message.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp._core.binary import BinaryCodec, BinaryFormat
from twisted_reqresp._core.connection import Connection, ConnectionState
from twisted_reqresp._core.errors import LocalProtocolError
from twisted_reqresp._core.events import (
    Cancel,
    CreditGranted,
    ErrorResponse,
    Event,
    ProtocolViolation,
    Response,
    Role,
    Settings,
    StreamEnd,
    StreamMessage,
    StreamRequest,
)
from twisted_reqresp._core.limits import DEFAULT_LIMITS, MAX_CREDIT, Limits
from twisted_reqresp._core.line import LineFormat
from twisted_reqresp._core.status import StatusCode
from twisted_reqresp._core.streams import MESSAGE_OVERHEAD, message_cost

#: Streaming on, with credit small enough to count by hand.
STREAMING = Limits(stream_credit=100, connection_credit=1000)
#: Streaming turned off (it is on by default).
NO_STREAMING = Limits(stream_credit=None)


def pump(client: Connection, server: Connection) -> tuple[list[Event], list[Event]]:
    """
    Carry bytes both ways until both sides are quiet.

    :returns: the events the server and the client got.
    """
    got_server: list[Event] = []
    got_client: list[Event] = []
    while True:
        c2s, s2c = client.data_to_send(), server.data_to_send()
        if not c2s and not s2c:
            return got_server, got_client
        server.receive_data(c2s)
        client.receive_data(s2c)
        while (event := server.next_event()) is not None:
            got_server.append(event)
        while (event := client.next_event()) is not None:
            got_client.append(event)


def pair(
    client_limits: Limits = STREAMING, server_limits: Limits = STREAMING
) -> tuple[Connection, Connection]:
    """:returns: a client and a server Connection, handshake done."""
    client = Connection(Role.CLIENT, BinaryFormat(), client_limits)
    server = Connection(Role.SERVER, BinaryFormat(), server_limits)
    pump(client, server)
    return client, server


def refusal(call: Callable[[], object]) -> tuple[int, str]:
    """:returns: the status and message of the LocalProtocolError ``call`` raises."""
    try:
        call()
    except LocalProtocolError as e:
        return e.code, e.message
    raise AssertionError("no LocalProtocolError raised")


class OfferTests(SynchronousTestCase):
    """A client opens a streaming call only when both SETTINGS offered streaming."""

    def test_settings_bytes(self) -> None:
        """SETTINGS carry STREAM_CREDIT and CONNECTION_CREDIT only when streaming is on."""
        client = Connection(Role.CLIENT, BinaryFormat(), STREAMING)
        plain = Connection(Role.CLIENT, BinaryFormat(), NO_STREAMING)
        self.assertEqual(
            client.data_to_send()[10:].hex(),
            "00000018010000000000000101000000" + "000200000064" + "000300000064" + "0004000003e8",
        )
        self.assertEqual(
            plain.data_to_send()[10:].hex(),
            "0000000c010000000000" + "000101000000" + "000200000064",
        )

    def test_before_server_settings(self) -> None:
        """Before the server's SETTINGS a streaming call fails FAILED_PRECONDITION, unsent."""
        client = Connection(Role.CLIENT, BinaryFormat(), STREAMING)
        sent = client.data_to_send()
        self.assertIsNone(client.peer_accepts_streams)
        code, message = refusal(
            lambda: client.start_stream("s", client_stream=True, server_stream=False)
        )
        self.assertEqual(code, StatusCode.FAILED_PRECONDITION)
        self.assertIn("SETTINGS have not arrived", message)
        self.assertEqual((client.data_to_send(), client.last_request_id), (b"", 0))
        self.assertTrue(sent)

    def test_server_does_not_offer(self) -> None:
        """A server without STREAM_CREDIT: UNIMPLEMENTED locally, the connection untouched."""
        client, server = pair(server_limits=NO_STREAMING)
        self.assertIs(client.peer_accepts_streams, False)
        code, message = refusal(
            lambda: client.start_stream("s", client_stream=False, server_stream=True)
        )
        self.assertEqual((code, message), (12, "the server does not offer streaming calls"))
        self.assertEqual(client.data_to_send(), b"")
        rid = client.send_request("m")
        self.assertEqual(rid, 1)
        events, _ = pump(client, server)
        self.assertEqual([type(e) for e in events], [type(events[0])])
        self.assertIs(client.state, ConnectionState.OPEN)

    def test_client_does_not_offer(self) -> None:
        """A client whose own SETTINGS lacked STREAM_CREDIT opens no streaming call."""
        client, _ = pair(client_limits=NO_STREAMING)
        self.assertIs(client.peer_accepts_streams, True)
        code, message = refusal(
            lambda: client.start_stream("s", client_stream=True, server_stream=True)
        )
        self.assertEqual(code, StatusCode.UNIMPLEMENTED)
        self.assertIn("Limits.stream_credit", message)
        self.assertEqual(client.data_to_send(), b"")

    def test_line_format(self) -> None:
        """The line format never offers streaming: UNIMPLEMENTED."""
        client = Connection(Role.CLIENT, LineFormat(), STREAMING)
        self.assertIs(client.peer_accepts_streams, False)
        code, _ = refusal(lambda: client.start_stream("s", client_stream=True, server_stream=True))
        self.assertEqual(code, StatusCode.UNIMPLEMENTED)

    def test_needs_a_direction_and_a_client(self) -> None:
        """A streaming call streams one way or both, and only a client opens one."""
        client, server = pair()
        refusal(lambda: client.start_stream("s", client_stream=False, server_stream=False))
        refusal(lambda: server.start_stream("s", client_stream=True, server_stream=False))

    def test_refused_like_a_request(self) -> None:
        """Past the last request id, or after the server's GOAWAY, a streaming call is refused
        UNAVAILABLE as a unary request is, and nothing is sent."""
        client, server = pair()
        client.last_request_id = 0xFFFF_FFFF
        client.data_to_send()
        self.assertEqual(
            refusal(lambda: client.start_stream("s", client_stream=True, server_stream=False)),
            (StatusCode.UNAVAILABLE, "request ids exhausted on this connection; open a new one"),
        )
        client, server = pair()
        server.send_goaway()
        pump(client, server)
        client.data_to_send()
        self.assertEqual(
            refusal(lambda: client.start_stream("s", client_stream=True, server_stream=False)),
            (StatusCode.UNAVAILABLE, "the server is going away"),
        )
        self.assertEqual(client.data_to_send(), b"")

    def test_later_settings_change_nothing(self) -> None:
        """A second SETTINGS without STREAM_CREDIT leaves streaming offered and credit as it was."""
        client, _ = pair()
        client.receive_data(
            BinaryCodec(Role.SERVER, DEFAULT_LIMITS).encode(
                Settings(max_frame_size=2048, max_concurrent=5)
            )
        )
        self.assertIsInstance(client.next_event(), Settings)
        self.assertIs(client.peer_accepts_streams, True)
        rid = client.start_stream("s", client_stream=True, server_stream=False)
        self.assertTrue(client.can_send_message(rid))

    def test_settings_credit_range(self) -> None:
        """A credit setting of 2**31-1 decodes; 2**31 is a connection error; encoding refuses it."""
        codec = BinaryCodec(Role.CLIENT, DEFAULT_LIMITS)
        frame = "0000000c010000000000" + "0003{:08x}" + "0004{:08x}"
        codec.receive_data(bytes.fromhex(frame.format(MAX_CREDIT, MAX_CREDIT)))
        self.assertEqual(
            codec.next_event(),
            Settings(
                max_frame_size=16 * 1024 * 1024,
                max_concurrent=100,
                stream_credit=MAX_CREDIT,
                connection_credit=MAX_CREDIT,
            ),
        )
        for bad in ((MAX_CREDIT + 1, 0), (0, MAX_CREDIT + 1)):
            codec = BinaryCodec(Role.CLIENT, DEFAULT_LIMITS)
            codec.receive_data(bytes.fromhex(frame.format(*bad)))
            event = codec.next_event()
            assert isinstance(event, ProtocolViolation)
            self.assertIn("above the maximum", event.message)
            settings = Settings(
                max_frame_size=1024,
                max_concurrent=1,
                stream_credit=bad[0],
                connection_credit=bad[1],
            )
            self.assertRaises(LocalProtocolError, codec.encode, settings)

    def test_encode_refusals(self) -> None:
        """A StreamRequest without a direction and a CREDIT of 0 or 2**31 cannot be encoded."""
        codec = BinaryCodec(Role.CLIENT, DEFAULT_LIMITS)
        no_way = StreamRequest(request_id=1, method="m", client_stream=False, server_stream=False)
        self.assertRaises(LocalProtocolError, codec.encode, no_way)
        for increment in (0, MAX_CREDIT + 1):
            grant = CreditGranted(request_id=0, increment=increment)
            self.assertRaises(LocalProtocolError, codec.encode, grant)
        self.assertEqual(
            codec.encode(CreditGranted(request_id=0, increment=1)).hex(),
            "000000040c000000000000000001",
        )


class CreditTests(SynchronousTestCase):
    """The sender stops without credit; the receiver grants it back as it consumes."""

    def test_credit_at_one_zero_and_below(self) -> None:
        """With call credit 1 a message goes; at 0 or below, send_message refuses, nothing sent."""
        client, server = pair(server_limits=Limits(stream_credit=40, connection_credit=1000))
        rid = client.start_stream("s", client_stream=True, server_stream=False)
        client.send_message(rid, b"x" * 19)  # cost 29: credit 11
        client.send_message(rid, b"")  # cost 10: credit 1, at the bound
        self.assertTrue(client.can_send_message(rid))
        client.send_message(rid, b"y")  # cost 11: credit -10
        self.assertFalse(client.can_send_message(rid))
        queued = client.data_to_send()
        code, message = refusal(lambda: client.send_message(rid, b"z"))
        self.assertEqual(code, StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("no call credit", message)
        self.assertEqual(client.data_to_send(), b"")
        client2, _ = pair(server_limits=Limits(stream_credit=20, connection_credit=1000))
        rid2 = client2.start_stream("s", client_stream=True, server_stream=False)
        client2.send_message(rid2, b"x" * 10)  # cost 20: credit exactly 0
        self.assertFalse(client2.can_send_message(rid2))
        server.receive_data(queued)
        got = []
        while (event := server.next_event()) is not None:
            got.append(event)
        self.assertEqual(
            [e for e in got if isinstance(e, StreamMessage)],
            [
                StreamMessage(request_id=rid, body=b"x" * 19),
                StreamMessage(request_id=rid, body=b""),
                StreamMessage(request_id=rid, body=b"y"),
            ],
        )
        self.assertEqual(server.unacknowledged, 29 + 10 + 11)

    def test_grant_unblocks(self) -> None:
        """Acknowledging what was consumed sends CREDIT, and the blocked sender may go on."""
        client, server = pair(server_limits=Limits(stream_credit=20, connection_credit=1000))
        rid = client.start_stream("s", client_stream=True, server_stream=False)
        client.send_message(rid, b"x" * 30)  # a message larger than the credit: no deadlock
        self.assertFalse(client.can_send_message(rid))
        got, _ = pump(client, server)
        self.assertEqual(got[-1], StreamMessage(request_id=rid, body=b"x" * 30))
        server.acknowledge(rid, message_cost(30))
        _, events = pump(client, server)
        # The call was overdrawn: its credit goes back at once.  The connection
        # owes 40 of 1000, under half, and the client still has 960: batched.
        self.assertEqual(events, [CreditGranted(request_id=rid, increment=40)])
        self.assertTrue(client.can_send_message(rid))
        self.assertEqual(server.unacknowledged, 0)

    def test_connection_credit_shared(self) -> None:
        """One call that uses the connection credit blocks the others until CREDIT on id 0."""
        client, server = pair(server_limits=Limits(stream_credit=1000, connection_credit=30))
        first = client.start_stream("a", client_stream=True, server_stream=False)
        second = client.start_stream("b", client_stream=True, server_stream=False)
        client.send_message(first, b"x" * 20)  # cost 30: the connection credit is 0
        for rid in (first, second):
            self.assertFalse(client.can_send_message(rid))
        code, message = refusal(lambda: client.send_message(second, b""))
        self.assertEqual(code, StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("no connection credit", message)
        pump(client, server)
        server.acknowledge(first, 30)
        _, events = pump(client, server)
        self.assertIn(CreditGranted(request_id=0, increment=30), events)
        self.assertTrue(client.can_send_message(second))

    def test_acknowledge_batches(self) -> None:
        """Credit goes back once half the initial credit is owed, not per message."""
        client, server = pair(server_limits=Limits(stream_credit=100, connection_credit=1000))
        rid = client.start_stream("s", client_stream=True, server_stream=False)
        for _ in range(5):
            client.send_message(rid, b"")  # cost 10 each
        pump(client, server)
        server.acknowledge(rid, 40)
        self.assertEqual(server.data_to_send(), b"")  # 40 owed: under half of 100
        server.acknowledge(rid, 10)
        codec = BinaryCodec(Role.SERVER, DEFAULT_LIMITS)
        self.assertEqual(
            server.data_to_send(), codec.encode(CreditGranted(request_id=rid, increment=50))
        )

    def test_acknowledge_bound(self) -> None:
        """Acknowledging exactly what is held works; one byte more, or a negative count, raises."""
        client, server = pair()
        rid = client.start_stream("s", client_stream=True, server_stream=False)
        client.send_message(rid, b"abc")
        pump(client, server)
        self.assertEqual(server.unacknowledged, 13)
        self.assertRaises(LocalProtocolError, server.acknowledge, rid, 14)
        self.assertRaises(LocalProtocolError, server.acknowledge, rid, -1)
        server.acknowledge(rid, 13)
        self.assertEqual(server.unacknowledged, 0)

    def test_grant_credit_bounds(self) -> None:
        """grant_credit takes 1 to 2**31-1, never past 2**31-1, only where the peer streams."""
        client, server = pair()
        rid = client.start_stream("s", client_stream=True, server_stream=False)
        pump(client, server)
        for bad in (0, MAX_CREDIT + 1):
            self.assertRaises(LocalProtocolError, server.grant_credit, rid, bad)
        # The client's view of its own credit is 100: 2**31-1 - 100 reaches the most.
        server.grant_credit(rid, MAX_CREDIT - 100)
        self.assertRaises(LocalProtocolError, server.grant_credit, rid, 1)
        self.assertRaises(LocalProtocolError, client.grant_credit, rid, 1)  # client sends here
        server.grant_credit(0, MAX_CREDIT - 1000)
        self.assertRaises(LocalProtocolError, server.grant_credit, 0, 1)
        _, events = pump(client, server)
        self.assertEqual(len(events), 2)
        self.assertIs(client.state, ConnectionState.OPEN)


class CallTests(SynchronousTestCase):
    """A streaming call from REQUEST to final status, with both half-closes."""

    def test_bidirectional_call(self) -> None:
        """Messages both ways (empty ones too), STREAM_END, then RESPONSE with trailing metadata."""
        client, server = pair()
        rid = client.start_stream(
            "chat", b"hello", (("k", "v"),), 5000, client_stream=True, server_stream=True
        )
        client.send_message(rid, b"one")
        client.send_message(rid, b"")
        client.end_stream(rid)
        got, _ = pump(client, server)
        self.assertEqual(
            got,
            [
                StreamRequest(
                    request_id=rid,
                    method="chat",
                    client_stream=True,
                    server_stream=True,
                    body=b"hello",
                    metadata=(("k", "v"),),
                    deadline_ms=5000,
                ),
                StreamMessage(request_id=rid, body=b"one"),
                StreamMessage(request_id=rid, body=b""),
                StreamEnd(request_id=rid),
            ],
        )
        self.assertRaises(LocalProtocolError, client.send_message, rid, b"late")
        self.assertRaises(LocalProtocolError, client.end_stream, rid)
        self.assertRaises(LocalProtocolError, server.end_stream, rid)
        server.send_message(rid, b"a")
        server.send_message(rid, b"")
        server.send_response(rid, b"", (("count", "2"),))
        self.assertRaises(LocalProtocolError, server.send_message, rid, b"after")
        _, events = pump(client, server)
        self.assertEqual(
            events,
            [
                StreamMessage(request_id=rid, body=b"a"),
                StreamMessage(request_id=rid, body=b""),
                Response(request_id=rid, body=b"", metadata=(("count", "2"),)),
            ],
        )
        for conn in (client, server):
            self.assertFalse(conn.can_send_message(rid))
            self.assertEqual(conn.in_flight, set())

    def test_each_side_streams_only_its_way(self) -> None:
        """The client sends only on client-streaming calls, the server only on server-streaming."""
        client, server = pair()
        down = client.start_stream("d", client_stream=False, server_stream=True)
        up = client.start_stream("u", client_stream=True, server_stream=False)
        unary = client.send_request("m")
        pump(client, server)
        for conn, rid in ((client, down), (server, up), (client, unary), (server, unary)):
            with self.subTest(role=conn.role, rid=rid):
                self.assertFalse(conn.can_send_message(rid))
                self.assertRaises(LocalProtocolError, conn.send_message, rid, b"x")
        self.assertRaises(LocalProtocolError, client.end_stream, down)

    def test_early_answer_drops_crossing_messages(self) -> None:
        """An answer before STREAM_END: crossing messages are dropped, their credit given back."""
        client, server = pair()
        rid = client.start_stream("sum", client_stream=True, server_stream=False)
        pump(client, server)
        client.send_message(rid, b"12")  # crosses the answer on the wire
        server.send_error(rid, StatusCode.INVALID_ARGUMENT, "enough")
        server.receive_data(client.data_to_send())
        self.assertIsNone(server.next_event())
        answer = server.data_to_send()
        self.assertTrue(
            answer.endswith(
                BinaryCodec(Role.SERVER, DEFAULT_LIMITS).encode(
                    CreditGranted(request_id=0, increment=12)
                )
            )
        )
        client.receive_data(answer)
        events = [client.next_event(), client.next_event(), client.next_event()]
        self.assertEqual(
            events,
            [
                ErrorResponse(request_id=rid, code=StatusCode.INVALID_ARGUMENT, message="enough"),
                CreditGranted(request_id=0, increment=12),
                None,
            ],
        )
        self.assertRaises(LocalProtocolError, client.send_message, rid, b"3")
        self.assertIs(server.state, ConnectionState.OPEN)

    def test_cancel_ends_call_on_both_sides(self) -> None:
        """CANCEL ends a streaming call: neither side may send on it after."""
        client, server = pair()
        rid = client.start_stream("s", client_stream=True, server_stream=True)
        pump(client, server)
        client.send_cancel(rid)
        self.assertFalse(client.can_send_message(rid))
        got, _ = pump(client, server)
        self.assertEqual(got, [Cancel(request_id=rid)])
        server.forget(rid)
        self.assertRaises(LocalProtocolError, server.send_message, rid, b"x")

    def test_goaway_spares_open_calls(self) -> None:
        """After the server's GOAWAY, open calls go on streaming; new ones fail UNAVAILABLE."""
        client, server = pair()
        rid = client.start_stream("s", client_stream=True, server_stream=False)
        pump(client, server)
        server.send_goaway()
        pump(client, server)
        client.send_message(rid, b"more")
        client.end_stream(rid)
        got, _ = pump(client, server)
        self.assertEqual(
            got, [StreamMessage(request_id=rid, body=b"more"), StreamEnd(request_id=rid)]
        )
        code, _ = refusal(lambda: client.start_stream("s", client_stream=True, server_stream=False))
        self.assertEqual(code, StatusCode.UNAVAILABLE)

    def test_draining_server_refuses_stream_request(self) -> None:
        """A streaming REQUEST that crosses the GOAWAY is refused UNAVAILABLE, retry-safe."""
        client, server = pair()
        server.send_goaway()
        server.data_to_send()
        rid = client.start_stream("s", client_stream=True, server_stream=False)
        client.send_message(rid, b"x")
        got, events = pump(client, server)
        self.assertEqual(got, [])
        self.assertIn(
            ErrorResponse(
                request_id=rid,
                code=StatusCode.UNAVAILABLE,
                message="server is shutting down",
                retry_safe=True,
            ),
            events,
        )
        self.assertIs(server.state, ConnectionState.DRAINING)


# --- the property: bounded memory, no message lost, no deadlock --------------------

_FRAME = 1024  # both sides' max frame size: the largest message body


@given(
    stream_credit=st.integers(min_value=1, max_value=400),
    connection_credit=st.integers(min_value=1, max_value=800),
    ops=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "client_send",
                    "server_send",
                    "client_burst",
                    "server_burst",
                    "c2s",
                    "s2c",
                    "client_take",
                    "server_take",
                ]
            ),
            st.integers(min_value=0, max_value=2),
            st.integers(min_value=0, max_value=60) | st.integers(min_value=0, max_value=_FRAME),
        ),
        min_size=10,
        max_size=150,
    ),
)
def test_flow_control_property(
    stream_credit: int, connection_credit: int, ops: list[tuple[str, int, int]]
) -> None:
    """Any interleaving of sends, partial deliveries and consumption keeps each receiver within
    its credit plus one frame, and every message arrives, in order, once."""
    limits = Limits(
        max_frame_size=_FRAME, stream_credit=stream_credit, connection_credit=connection_credit
    )
    client = Connection(Role.CLIENT, BinaryFormat(), limits)
    server = Connection(Role.SERVER, BinaryFormat(), limits)
    pump(client, server)
    rids = [client.start_stream("s", client_stream=True, server_stream=True) for _ in range(3)]
    conns = {"client": client, "server": server}
    wire = {"c2s": bytearray(), "s2c": bytearray()}
    sent: dict[str, dict[int, list[bytes]]] = {side: {r: [] for r in rids} for side in conns}
    held: dict[str, dict[int, deque[bytes]]] = {side: {r: deque() for r in rids} for side in conns}
    taken: dict[str, dict[int, list[bytes]]] = {side: {r: [] for r in rids} for side in conns}
    bound = MESSAGE_OVERHEAD + _FRAME - 1

    def receive(side: str, data: bytes) -> None:
        conn = conns[side]
        conn.receive_data(data)
        while (event := conn.next_event()) is not None:
            assert not isinstance(event, ProtocolViolation), event
            if isinstance(event, StreamMessage):
                held[side][event.request_id].append(event.body)
        assert conn.unacknowledged <= connection_credit + bound
        for rid in rids:
            on_call = sum(message_cost(len(body)) for body in held[side][rid])
            assert on_call <= stream_credit + bound

    def take(side: str, rid: int) -> None:
        body = held[side][rid].popleft()
        taken[side][rid].append(body)
        conns[side].acknowledge(rid, message_cost(len(body)))

    def move(direction: str, limit: int | None) -> None:
        sender, receiver = ("client", "server") if direction == "c2s" else ("server", "client")
        wire[direction] += conns[sender].data_to_send()
        n = len(wire[direction]) if limit is None else limit
        chunk = bytes(wire[direction][:n])
        del wire[direction][:n]
        receive(receiver, chunk)

    for op, index, size in ops:
        rid = rids[index]
        if op.endswith(("_send", "_burst")):
            # A burst sends until the credit runs out: it finds the bounds fast.
            side = op.split("_")[0]
            for _ in range(1 if op.endswith("_send") else 100):
                if not conns[side].can_send_message(rid):
                    break
                body = bytes([index]) * size
                conns[side].send_message(rid, body)
                sent[side][rid].append(body)
        elif op in ("c2s", "s2c"):
            move(op, size or None)  # 0: all there is (hypothesis favours 0)
        else:
            # The application consumes up to ``size`` messages of the call (0: all).
            side = op.split("_")[0]
            for _ in range(size or len(held[side][rid])):
                if not held[side][rid]:
                    break
                take(side, rid)
    # Drain: deliver everything and consume everything until both sides are quiet.
    while True:
        for side in conns:
            for rid in rids:
                while held[side][rid]:
                    take(side, rid)
        wire["c2s"] += client.data_to_send()
        wire["s2c"] += server.data_to_send()
        if not any(wire.values()):
            break
        move("c2s", None)
        move("s2c", None)
    for rid in rids:
        assert taken["server"][rid] == sent["client"][rid]
        assert taken["client"][rid] == sent["server"][rid]
        # No deadlock: with everything consumed, every direction may send again.
        assert client.can_send_message(rid) and server.can_send_message(rid)
    assert client.unacknowledged == server.unacknowledged == 0
    # Credit is conserved: with nothing in flight or held, what the sender may
    # send plus what the receiver owes but has not granted back yet is exactly
    # the initial credit, per call and for the connection, both ways.
    for sender, receiver in ((client, server), (server, client)):
        for rid in rids:
            owed = receiver._streams[rid].pending
            assert sender._streams[rid].send_credit + owed == stream_credit
        assert sender._send_conn_credit + receiver._conn_pending == connection_credit


class ClosedTests(SynchronousTestCase):
    """A closed connection streams nothing, whatever its calls' credit."""

    def test_no_sending_after_a_violation(self) -> None:
        """After a protocol violation, can_send_message is False and send_message raises."""
        client, server = pair()
        rid = client.start_stream("s", client_stream=True, server_stream=False)
        pump(client, server)
        self.assertTrue(client.can_send_message(rid))
        client.receive_data(b"\x00\x00\x00\x00\x0b\x00\x00\x00\x00\x01")  # STREAM_END from a server
        self.assertIsInstance(client.next_event(), ProtocolViolation)
        self.assertFalse(client.can_send_message(rid))
        code, message = refusal(lambda: client.send_message(rid, b"x"))
        self.assertEqual((code, message), (StatusCode.UNAVAILABLE, "the connection is closed"))


class GrantWithHeldTests(SynchronousTestCase):
    """A grant leaves room for the credit of what the application still holds."""

    def test_grant_counts_what_is_held(self) -> None:
        """With 13 bytes held, a grant may bring the credit to 2**31-1 less 13, not further."""
        client, server = pair()
        rid = client.start_stream("s", client_stream=True, server_stream=False)
        client.send_message(rid, b"abc")  # cost 13: the server's view of the credit is 87
        pump(client, server)
        room = MAX_CREDIT - 87 - 13
        self.assertRaises(LocalProtocolError, server.grant_credit, rid, room + 1)
        server.grant_credit(rid, room)
        server.acknowledge(rid, 13)  # owed, batched: giving it back reaches the most exactly
        self.assertRaises(LocalProtocolError, server.grant_credit, rid, 1)
        _, events = pump(client, server)
        self.assertEqual(events, [CreditGranted(request_id=rid, increment=room)])
        self.assertIs(client.state, ConnectionState.OPEN)
