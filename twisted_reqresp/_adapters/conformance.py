"""
Conformance tests for the pluggable parts: mix one of these classes into a
:class:`twisted.trial.unittest.SynchronousTestCase` subclass, set its
attributes, and the suite every shipped provider passes runs on yours (the
habit of ``IntNTestCaseMixin`` in ``twisted/protocols/test/test_basic.py``)::

    class MyFormatTests(WireFormatConformanceMixin, SynchronousTestCase):
        wire_format = MyFormat()

    class MyCodecTests(CodecConformanceMixin, SynchronousTestCase):
        codec = MyCodec()
        sample_values = [0, "text", [1, 2]]
        invalid_bodies = [b"\\xff"]

Everything here is synchronous and deterministic: random chunkings and
garbage come from seeded generators, and no reactor runs.
"""

# trial's assertion methods carry no annotations; every call to one would
# otherwise be an error under ``--strict``.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from zope.interface.verify import verifyObject

from .._core.connection import Connection
from .._core.errors import CodecError, LocalProtocolError
from .._core.events import (
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
from .._core.limits import DEFAULT_LIMITS, Limits
from .._core.status import StatusCode
from .._core.streams import message_cost
from ..interfaces import ICodec, IWireCodec, IWireFormat

__all__ = ["CodecConformanceMixin", "WireFormatConformanceMixin"]

if TYPE_CHECKING:
    # The mixins call TestCase methods; only the type checker needs to know.
    from twisted.trial.unittest import SynchronousTestCase as _TestCase
else:
    _TestCase = object

_EVENT_TYPES = (
    Settings,
    Request,
    Response,
    ErrorResponse,
    Cancel,
    Ping,
    Pong,
    GoAway,
    PrefaceReceived,
    Rejected,
    ProtocolViolation,
    StreamRequest,
    StreamMessage,
    StreamEnd,
    CreditGranted,
)
# Events that set a connection up rather than carry a call.
_SETUP = (PrefaceReceived, Settings)
# More events than any test here produces: a codec that keeps returning
# events from a finite input is broken, and the test says so.
_MAX_EVENTS = 100_000
_Chunker = Callable[[bytes], Iterator[bytes]]


def _whole(data: bytes) -> Iterator[bytes]:
    yield data


def _bytewise(data: bytes) -> Iterator[bytes]:
    for i in range(len(data)):
        yield data[i : i + 1]


def _random_chunks(seed: int) -> _Chunker:
    def chunks(data: bytes) -> Iterator[bytes]:
        rng = random.Random(seed)
        pos = 0
        while pos < len(data):
            n = rng.randint(1, 64)
            yield data[pos : pos + n]
            pos += n

    return chunks


_CHUNKERS: list[_Chunker] = [_whole, _bytewise, _random_chunks(1), _random_chunks(2)]


def _garbage() -> list[bytes]:
    rng = random.Random(20240601)
    samples = [
        b"\x00" * 64,
        b"\xff" * 64,
        b"\n" * 16,
        b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"\x89RQR\r\n\x1a\n\x00\x01" + b"\xff" * 40,
        b"\x89RQR\r\n\x1a\n\x00\x01" + b"\x00\x00\x00\x00\x02\x00\x00\x00\x00\x01" * 4,
    ]
    samples += [rng.randbytes(rng.randint(1, 300)) for _ in range(40)]
    return samples


class WireFormatConformanceMixin(_TestCase):
    """
    Tests any correct wire format passes, through raw codecs and through
    :class:`~twisted_reqresp._core.connection.Connection` pairs.

    :cvar wire_format: the :class:`~twisted_reqresp.interfaces.IWireFormat`
        provider under test (required).
    :cvar carries_metadata: false for a format that carries neither
        metadata nor deadlines; requests are then compared on id, method
        and body only, and none are sent with metadata.
    :cvar carries_error_details: false for a format that drops an error's
        details and retry-safe flag.
    :cvar carries_streams: true for a format that carries streaming calls
        (docs/protocol.md, "Streaming calls"): its codecs encode and decode
        the stream events and its SETTINGS offer streaming, and the kit
        streams both ways through Connection pairs with small credits.
        False (the default, so that a format written before streaming
        keeps passing) for one that does not: the kit then checks that it
        refuses them cleanly, a client Connection failing
        ``start_stream`` with ``UNIMPLEMENTED`` and sending nothing, as the
        line format does.
    :cvar limits: the limits both ends use (the streaming tests set
        ``stream_credit`` and ``connection_credit`` on a copy).
    """

    wire_format: ClassVar[IWireFormat]
    carries_metadata: ClassVar[bool] = True
    carries_error_details: ClassVar[bool] = True
    carries_streams: ClassVar[bool] = False
    limits: ClassVar[Limits] = DEFAULT_LIMITS

    # -- helpers ---------------------------------------------------------------

    def _codec(self, role: Role) -> IWireCodec:
        return self.wire_format.codec(role, self.limits)

    def _drain(self, codec: IWireCodec | Connection) -> list[Event]:
        events: list[Event] = []
        while (event := codec.next_event()) is not None:
            events.append(event)
            self.assertLess(len(events), _MAX_EVENTS, "the codec never stops")
        return events

    def _requests(self) -> list[Request]:
        bodies = [
            b"",
            b"hello",
            b"line\nbreak\r\nand \\ backslash \\n",
            bytes(range(256)),
            b" leading space",
            b"x" * 5000,
        ]
        methods = ["echo", "d\u00e9j\u00e0.vu", "a/b-c_d.e"]
        requests = []
        for i, body in enumerate(bodies):
            extra: dict[str, Any] = {}
            if self.carries_metadata and i % 2:
                extra = {"metadata": (("trace", "t-1"), ("k\u00e9y", "")), "deadline_ms": 1500}
            requests.append(
                Request(request_id=i + 1, method=methods[i % len(methods)], body=body, **extra)
            )
        return requests

    def _answers(self) -> list[Response | ErrorResponse]:
        details: dict[str, Any] = {}
        if self.carries_error_details:
            details = {"details": b"\x00\x01", "retry_safe": True}
        answers: list[Response | ErrorResponse] = []
        for request in self._requests():
            rid = request.request_id
            if rid % 3 == 0:
                answers.append(
                    ErrorResponse(
                        request_id=rid, code=StatusCode.NOT_FOUND, message=f"no {rid}", **details
                    )
                )
            else:
                answers.append(Response(request_id=rid, body=request.body[::-1]))
        return answers

    def _comparable(self, event: Event) -> object:
        if isinstance(event, Request) and not self.carries_metadata:
            return (event.request_id, event.method, event.body)
        return event

    def _server_after_preface(self, client: IWireCodec) -> IWireCodec:
        server = self._codec(Role.SERVER)
        server.receive_data(client.preface())
        for event in self._drain(server):
            self.assertIsInstance(event, _SETUP)
        return server

    def _request_stream(self) -> tuple[IWireCodec, bytes]:
        client = self._codec(Role.CLIENT)
        data = b"".join(client.encode(request) for request in self._requests())
        return client, data

    def _messages(self, events: list[Event]) -> list[Event]:
        return [event for event in events if not isinstance(event, _SETUP)]

    def _answer_stream(self, order: list[int]) -> tuple[IWireCodec, bytes]:
        """A client codec that sent every request, and the bytes of the
        server's answers given in ``order`` (indexes into the answers)."""
        client, data = self._request_stream()
        server = self._server_after_preface(client)
        server.receive_data(data)
        self._drain(server)
        answers = self._answers()
        return client, b"".join(server.encode(answers[i]) for i in order)

    def _check_answers(self, events: list[Event]) -> None:
        expected = {answer.request_id: answer for answer in self._answers()}
        got: dict[int, Event] = {}
        for event in self._messages(events):
            self.assertIsInstance(event, (Response, ErrorResponse))
            assert isinstance(event, (Response, ErrorResponse))
            self.assertNotIn(event.request_id, got)
            got[event.request_id] = event
        self.assertEqual(got, expected)

    # -- the format and its codecs -------------------------------------------

    def test_provides_interfaces(self) -> None:
        """The format provides IWireFormat and both of its codecs IWireCodec."""
        self.assertTrue(verifyObject(IWireFormat, self.wire_format))
        for role in Role:
            self.assertTrue(verifyObject(IWireCodec, self._codec(role)))

    def test_format_attributes(self) -> None:
        """The format has a non-empty text name and a boolean multiplexed flag."""
        self.assertIsInstance(self.wire_format.name, str)
        self.assertTrue(self.wire_format.name)
        self.assertIsInstance(self.wire_format.multiplexed, bool)

    def test_fresh_codecs_are_empty(self) -> None:
        """A new codec has nothing buffered and no event to give."""
        for role in Role:
            codec = self._codec(role)
            self.assertEqual(codec.buffered, 0)
            self.assertIsNone(codec.next_event())
            self.assertIsInstance(codec.preface(), bytes)

    # -- requests, client to server ---------------------------------------------

    def test_request_round_trip(self) -> None:
        """Requests a client codec encodes decode on a server codec to equal requests."""
        client, data = self._request_stream()
        server = self._server_after_preface(client)
        server.receive_data(data)
        events = self._messages(self._drain(server))
        self.assertEqual(
            [self._comparable(e) for e in events],
            [self._comparable(r) for r in self._requests()],
        )
        self.assertEqual(server.buffered, 0)

    def test_request_chunking(self) -> None:
        """A request stream gives the same events whole, byte by byte and in random chunks."""
        client, data = self._request_stream()
        data = client.preface() + data
        results = []
        for chunker in _CHUNKERS:
            server = self._codec(Role.SERVER)
            events: list[Event] = []
            for piece in chunker(data):
                server.receive_data(piece)
                events += self._drain(server)
            results.append(events)
        for events in results[1:]:
            self.assertEqual(events, results[0])

    def test_refused_request_changes_nothing(self) -> None:
        """A request the client codec refuses to encode leaves later calls unaffected."""
        client = self._codec(Role.CLIENT)
        self.assertRaises(LocalProtocolError, client.encode, Request(request_id=1, method=""))
        server = self._server_after_preface(client)
        server.receive_data(client.encode(Request(request_id=1, method="m", body=b"b")))
        self.assertEqual(
            [self._comparable(e) for e in self._messages(self._drain(server))],
            [self._comparable(Request(request_id=1, method="m", body=b"b"))],
        )
        client.receive_data(server.encode(Response(request_id=1, body=b"ok")))
        self.assertEqual(self._messages(self._drain(client)), [Response(request_id=1, body=b"ok")])

    # -- answers, server to client ----------------------------------------------

    def test_answers_in_order(self) -> None:
        """Answers sent in request order reach the client with the right ids."""
        count = len(self._answers())
        client, data = self._answer_stream(list(range(count)))
        client.receive_data(data)
        self._check_answers(self._drain(client))

    def test_answers_out_of_order(self) -> None:
        """A multiplexed format's answers encoded out of order reach the client with the right ids.

        (A format that is not multiplexed gets its answers in request order
        from the Connection: see test_connection_round_trip.)
        """
        if not self.wire_format.multiplexed:
            return
        count = len(self._answers())
        orders = [list(range(count))[::-1], [2, 0, 5, 1, 4, 3][:count]]
        rng = random.Random(7)
        for _ in range(5):
            order = list(range(count))
            rng.shuffle(order)
            orders.append(order)
        for order in orders:
            client, data = self._answer_stream(order)
            client.receive_data(data)
            self._check_answers(self._drain(client))

    def test_answer_chunking(self) -> None:
        """An answer stream gives the same events whole, byte by byte and in random chunks."""
        count = len(self._answers())
        order = list(range(count))
        if self.wire_format.multiplexed:
            order.reverse()
        results = []
        for chunker in _CHUNKERS:
            client, data = self._answer_stream(order)
            events: list[Event] = []
            for piece in chunker(data):
                client.receive_data(piece)
                events += self._drain(client)
            results.append(events)
        for events in results[1:]:
            self.assertEqual(events, results[0])

    def test_error_round_trip(self) -> None:
        """Error answers keep their status code (known, application or unknown) and message."""
        codes = [
            StatusCode.CANCELLED,
            StatusCode.INVALID_ARGUMENT,
            StatusCode.INTERNAL,
            StatusCode.UNAVAILABLE,
            999,
            1000,
            4242,
            0xFFFF_FFFF,
        ]
        messages = ["", "plain", "caf\u00e9 \u2603", "x" * 500]
        client = self._codec(Role.CLIENT)
        server = self._server_after_preface(client)
        sent = []
        for i, code in enumerate(codes):
            request = Request(request_id=i + 1, method="m")
            server.receive_data(client.encode(request))
            self._drain(server)
            sent.append(
                ErrorResponse(request_id=i + 1, code=code, message=messages[i % len(messages)])
            )
        for answer in sent:
            client.receive_data(server.encode(answer))
        self.assertEqual(self._messages(self._drain(client)), sent)

    # -- garbage ------------------------------------------------------------------

    def _feed_garbage(self, make: Callable[[], IWireCodec]) -> None:
        for sample in _garbage():
            for chunker in (_whole, _bytewise):
                codec = make()
                failed = False
                for piece in chunker(sample):
                    codec.receive_data(piece)
                    for event in self._drain(codec):
                        self.assertFalse(failed, "an event after a ProtocolViolation")
                        self.assertIsInstance(event, _EVENT_TYPES)
                        failed = failed or isinstance(event, ProtocolViolation)
                self.assertGreaterEqual(codec.buffered, 0)

    def test_garbage_to_server_never_raises(self) -> None:
        """Arbitrary bytes make a server codec give events, never an exception."""
        self._feed_garbage(lambda: self._codec(Role.SERVER))

    def test_garbage_to_client_never_raises(self) -> None:
        """Arbitrary bytes make a client codec with requests outstanding give events only."""

        def make() -> IWireCodec:
            client, _ = self._request_stream()
            return client

        self._feed_garbage(make)

    def test_garbage_to_connection_never_raises(self) -> None:
        """Arbitrary bytes make a server connection give events, never an exception."""
        for sample in _garbage():
            server = Connection(Role.SERVER, self.wire_format, self.limits)
            server.receive_data(sample)
            for event in self._drain(server):
                self.assertIsInstance(event, _EVENT_TYPES)
            self.assertIsInstance(server.data_to_send(), bytes)

    # -- connection pairs ---------------------------------------------------------

    def _pump(self, client: Connection, server: Connection, chunker: _Chunker) -> list[Event]:
        """Move bytes both ways until both are quiet; return the server's events."""
        server_events: list[Event] = []
        for _ in range(100):
            to_server = client.data_to_send()
            to_client = server.data_to_send()
            if not to_server and not to_client:
                return server_events
            for piece in chunker(to_server):
                server.receive_data(piece)
                server_events += self._drain(server)
            for piece in chunker(to_client):
                client.receive_data(piece)
                self._client_events += self._drain(client)
        self.fail("the connections never went quiet")

    def _connected(self) -> tuple[Connection, Connection]:
        self._client_events: list[Event] = []
        client = Connection(Role.CLIENT, self.wire_format, self.limits)
        server = Connection(Role.SERVER, self.wire_format, self.limits)
        return client, server

    def test_connection_round_trip(self) -> None:
        """Connection pairs carry requests and out-of-order answers with the right ids."""
        for chunker in _CHUNKERS:
            client, server = self._connected()
            for request in self._requests():
                rid = client.send_request(
                    request.method, request.body, request.metadata, request.deadline_ms
                )
                self.assertEqual(rid, request.request_id)
            received = self._messages(self._pump(client, server, chunker))
            self.assertEqual(
                [self._comparable(e) for e in received],
                [self._comparable(r) for r in self._requests()],
            )
            for answer in reversed(self._answers()):
                if isinstance(answer, Response):
                    server.send_response(answer.request_id, answer.body)
                else:
                    server.send_error(
                        answer.request_id,
                        answer.code,
                        answer.message,
                        answer.details,
                        answer.retry_safe,
                    )
            self._pump(client, server, chunker)
            self._check_answers(self._client_events)
            self.assertEqual(client.in_flight, set())
            self.assertEqual(server.in_flight, set())

    def test_connection_cancelled_answer_dropped(self) -> None:
        """An answer to a cancelled request is dropped quietly; later answers still arrive."""
        client, server = self._connected()
        first = client.send_request("slow")
        second = client.send_request("fast", b"2")
        client.send_cancel(first)
        events = self._pump(client, server, _whole)
        for event in events:
            if isinstance(event, Cancel):
                server.forget(event.request_id)
        for rid in sorted(server.in_flight):
            server.send_response(rid, b"answer %d" % rid)
        self._pump(client, server, _whole)
        self.assertEqual(
            self._messages(self._client_events),
            [Response(request_id=second, body=b"answer %d" % second)],
        )
        self.assertEqual(client.in_flight, set())

    # -- streaming calls ------------------------------------------------------------

    # Credits small enough that every stream below waits for grants many
    # times, on the call and on the connection.
    _STREAM_CREDIT = 64
    _CONNECTION_CREDIT = 160

    def _stream_limits(self) -> Limits:
        return replace(
            self.limits,
            stream_credit=self._STREAM_CREDIT,
            connection_credit=self._CONNECTION_CREDIT,
        )

    def _stream_pair(self) -> tuple[Connection, Connection]:
        """A client and a server Connection offering streams, handshake done."""
        self._client_events = []
        limits = self._stream_limits()
        client = Connection(Role.CLIENT, self.wire_format, limits)
        server = Connection(Role.SERVER, self.wire_format, limits)
        self._pump(client, server, _whole)
        return client, server

    def _stream_bodies(self) -> list[bytes]:
        # Empty, larger than the call credit, larger than the connection
        # credit, and every byte value.
        return [b"", b"m1", bytes(range(256)), b"x" * 1000, b"", b"\n\r\\"] * 3

    def _stream_events(self) -> tuple[list[Event], list[Event]]:
        """Stream events a client sends and a server sends, ids 1 to 4."""
        extra: dict[str, Any] = {}
        if self.carries_metadata:
            extra = {"metadata": (("trace", "t-1"),), "deadline_ms": 2500}
        kinds = [(True, False), (False, True), (True, True), (True, True)]
        requests: list[Event] = [
            StreamRequest(
                request_id=i + 1,
                method="count",
                client_stream=c,
                server_stream=s,
                body=b"3" if i % 2 else b"",
                **(extra if i % 2 else {}),
            )
            for i, (c, s) in enumerate(kinds)
        ]
        to_server: list[Event] = [
            *requests,
            StreamMessage(request_id=1, body=b""),
            StreamMessage(request_id=3, body=bytes(range(256))),
            StreamEnd(request_id=1),
            CreditGranted(request_id=2, increment=1),
            CreditGranted(request_id=0, increment=0x7FFF_FFFF),
            StreamMessage(request_id=4, body=b"x" * 5000),
        ]
        to_client: list[Event] = [
            StreamMessage(request_id=2, body=b"one"),
            CreditGranted(request_id=1, increment=100),
            StreamMessage(request_id=3, body=b""),
            CreditGranted(request_id=0, increment=7),
            StreamMessage(request_id=4, body=b"\x00" * 3000),
        ]
        return to_server, to_client

    def test_stream_frames_round_trip(self) -> None:
        """Stream events one codec encodes decode on the peer's codec to equal events,
        whatever the chunking."""
        if not self.carries_streams:
            return
        to_server, to_client = self._stream_events()
        for chunker in _CHUNKERS:
            client = self._codec(Role.CLIENT)
            server = self._server_after_preface(client)
            got: list[Event] = []
            for piece in chunker(b"".join(client.encode(event) for event in to_server)):
                server.receive_data(piece)
                got += self._drain(server)
            self.assertEqual(self._messages(got), to_server)
            got = []
            for piece in chunker(b"".join(server.encode(event) for event in to_client)):
                client.receive_data(piece)
                got += self._drain(client)
            self.assertEqual(self._messages(got), to_client)
            self.assertEqual((client.buffered, server.buffered), (0, 0))

    def _check_held(self, connection: Connection) -> None:
        # docs/protocol.md, "Flow control": a receiver holds at most its
        # connection credit plus one frame.
        frame = message_cost(max(len(body) for body in self._stream_bodies()))
        self.assertLessEqual(connection.unacknowledged, self._CONNECTION_CREDIT + frame)

    def test_server_stream_flow_control(self) -> None:
        """A server stream far larger than the credits reaches the client whole and in
        order, the client holding no more than its credit allows, whatever the chunking."""
        if not self.carries_streams:
            return
        bodies = self._stream_bodies()
        for chunker in _CHUNKERS:
            client, server = self._stream_pair()
            rid = client.start_stream("count", b"18", client_stream=False, server_stream=True)
            received = self._pump(client, server, chunker)
            self.assertEqual([type(event) for event in self._messages(received)], [StreamRequest])
            got: list[bytes] = []
            to_send = list(bodies)
            answered = False
            for _ in range(10_000):
                while to_send and server.can_send_message(rid):
                    server.send_message(rid, to_send.pop(0))
                if not to_send and not answered:
                    server.send_response(rid, b"done")
                    answered = True
                self._client_events = []
                self._pump(client, server, chunker)
                self._check_held(client)
                for event in self._client_events:
                    if isinstance(event, StreamMessage):
                        got.append(event.body)
                        client.acknowledge(rid, message_cost(len(event.body)))
                if answered:
                    break
            self.assertEqual(got, bodies)
            self.assertEqual(
                self._messages(self._client_events)[-1], Response(request_id=rid, body=b"done")
            )
            self.assertEqual((client.in_flight, server.in_flight), (set(), set()))

    def test_client_stream_flow_control(self) -> None:
        """A client stream far larger than the credits, then its end, reaches the server
        whole and in order, the server holding no more than its credit allows."""
        if not self.carries_streams:
            return
        bodies = self._stream_bodies()
        for chunker in _CHUNKERS:
            client, server = self._stream_pair()
            rid = client.start_stream("sum", client_stream=True, server_stream=False)
            got: list[Event] = []
            to_send = list(bodies)
            ended = False
            for _ in range(10_000):
                while to_send and client.can_send_message(rid):
                    client.send_message(rid, to_send.pop(0))
                if not to_send and not ended:
                    client.end_stream(rid)
                    ended = True
                events = self._messages(self._pump(client, server, chunker))
                self._check_held(server)
                for event in events:
                    if isinstance(event, StreamMessage):
                        server.acknowledge(rid, message_cost(len(event.body)))
                got += events
                if got and isinstance(got[-1], StreamEnd):
                    break
            self.assertEqual(type(got[0]), StreamRequest)
            self.assertEqual(
                [event.body for event in got[1:-1] if isinstance(event, StreamMessage)], bodies
            )
            self.assertEqual(got[-1], StreamEnd(request_id=rid))
            server.send_response(rid, b"%d" % len(bodies))
            self._pump(client, server, chunker)
            self.assertEqual(
                self._messages(self._client_events)[-1],
                Response(request_id=rid, body=b"%d" % len(bodies)),
            )
            self.assertEqual((client.in_flight, server.in_flight), (set(), set()))

    def test_blocked_stream_spares_unary_calls(self) -> None:
        """A stream stalled for want of credit leaves unary calls on the connection answered."""
        if not self.carries_streams:
            return
        client, server = self._stream_pair()
        rid = client.start_stream("count", client_stream=False, server_stream=True)
        self._pump(client, server, _whole)
        while server.can_send_message(rid):
            server.send_message(rid, b"y" * 50)
        unary = client.send_request("echo", b"still here")
        received = self._messages(self._pump(client, server, _whole))
        self.assertEqual(
            [self._comparable(e) for e in received],
            [self._comparable(Request(request_id=unary, method="echo", body=b"still here"))],
        )
        self.assertFalse(server.can_send_message(rid))
        server.send_response(unary, b"still here")
        self._pump(client, server, _whole)
        self.assertIn(
            Response(request_id=unary, body=b"still here"), self._messages(self._client_events)
        )
        self.assertEqual(client.in_flight, {rid})

    def test_stream_frames_without_a_call(self) -> None:
        """Stream frames for calls never opened end a server connection with a
        ProtocolViolation, never an exception."""
        if not self.carries_streams:
            return
        client = self._codec(Role.CLIENT)
        frames: list[Event] = [
            StreamMessage(request_id=9, body=b"stray"),
            StreamEnd(request_id=9),
            CreditGranted(request_id=9, increment=5),
        ]
        for frame in frames:
            server = Connection(Role.SERVER, self.wire_format, self._stream_limits())
            server.receive_data(client.preface() + client.encode(frame))
            events = self._drain(server)
            for event in events:
                self.assertIsInstance(event, _EVENT_TYPES)
            self.assertIsInstance(events[-1], ProtocolViolation, frame)

    def test_streams_unsupported(self) -> None:
        """A format without streaming calls refuses them cleanly: its codecs will not
        encode stream events, and a client Connection fails start_stream with
        UNIMPLEMENTED, sends nothing, and goes on with unary calls."""
        if self.carries_streams:
            return
        client_codec = self._codec(Role.CLIENT)
        stream_events: list[Event] = [
            StreamRequest(request_id=1, method="count", client_stream=False, server_stream=True),
            StreamMessage(request_id=1, body=b"m"),
            StreamEnd(request_id=1),
            CreditGranted(request_id=1, increment=1),
        ]
        for event in stream_events:
            self.assertRaises(LocalProtocolError, client_codec.encode, event)
        client, server = self._stream_pair()
        self.assertFalse(
            client.peer_accepts_streams,
            "the format offers streaming calls: set carries_streams = True",
        )
        with self.assertRaises(LocalProtocolError) as caught:
            client.start_stream("count", client_stream=False, server_stream=True)
        self.assertEqual(caught.exception.code, StatusCode.UNIMPLEMENTED)
        self.assertEqual(client.data_to_send(), b"")
        rid = client.send_request("echo", b"after")
        received = self._messages(self._pump(client, server, _whole))
        self.assertEqual(
            [self._comparable(e) for e in received],
            [self._comparable(Request(request_id=rid, method="echo", body=b"after"))],
        )


class CodecConformanceMixin(_TestCase):
    """
    Tests any correct :class:`~twisted_reqresp.interfaces.ICodec` provider
    passes.

    :cvar codec: the codec under test (required).
    :cvar sample_values: values it must carry unchanged (required).
    :cvar invalid_bodies: bodies its ``decode`` must refuse with
        :class:`~twisted_reqresp.CodecError`.
    """

    codec: ClassVar[Any]
    sample_values: ClassVar[list[Any]]
    invalid_bodies: ClassVar[list[bytes]] = []

    def test_provides_icodec(self) -> None:
        """The codec provides ICodec and has a non-empty text name."""
        self.assertTrue(verifyObject(ICodec, self.codec))
        self.assertIsInstance(self.codec.name, str)
        self.assertTrue(self.codec.name)

    def test_encode_returns_bytes(self) -> None:
        """Encoding any sample value gives bytes."""
        for value in self.sample_values:
            self.assertIs(type(self.codec.encode(value)), bytes)

    def test_round_trip(self) -> None:
        """Decoding the encoding of a sample value gives an equal value."""
        for value in self.sample_values:
            self.assertEqual(self.codec.decode(self.codec.encode(value)), value)

    def test_stream_of_messages(self) -> None:
        """Each message of a stream decodes alone, in any order, after any failure: the
        codec keeps no state between bodies, as streaming calls need."""
        encoded = [self.codec.encode(value) for value in self.sample_values]
        rng = random.Random(11)
        for _ in range(3):
            order = list(range(len(encoded)))
            rng.shuffle(order)
            for i in order:
                for body in self.invalid_bodies[:1]:
                    self.assertRaises(CodecError, self.codec.decode, body)
                self.assertEqual(self.codec.decode(encoded[i]), self.sample_values[i])

    def test_invalid_bodies_raise_codec_error(self) -> None:
        """Decoding each invalid body raises CodecError."""
        for body in self.invalid_bodies:
            self.assertRaises(CodecError, self.codec.decode, body)

    def test_garbage_raises_only_codec_error(self) -> None:
        """Decoding arbitrary bytes gives a value or raises CodecError, nothing else."""
        for body in _garbage():
            try:
                self.codec.decode(body)
            except CodecError:
                pass
