"""
The Twisted streaming API (``docs/guide.md``, "Streaming calls"):
``call.stream`` on the server, ``Client.stream`` on the client, over the
in-memory pair and a fake clock.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Coroutine
from functools import partial
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.protocols.basic import FileSender
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from twisted_reqresp import (
    Call,
    ConnectionClosed,
    DeadlineExceeded,
    Limits,
    LineFormat,
    RemoteError,
    Router,
    StatusCode,
    StatusError,
    StreamingCall,
)
from twisted_reqresp.codecs import JSON
from twisted_reqresp.testing import ConnectedPair, connected_pair

STREAMING = Limits(stream_credit=65536)


def run(coroutine: Coroutine[Any, Any, Any]) -> Deferred[Any]:
    return Deferred.fromCoroutine(coroutine)


def collect(call: StreamingCall) -> Deferred[list[Any]]:
    """:returns: every message of ``call``, read with ``async for``."""

    async def go() -> list[Any]:
        return [message async for message in call]

    return run(go())


def streaming_pair(router: Router, **kwargs: Any) -> ConnectedPair:
    kwargs.setdefault("limits", STREAMING)
    kwargs.setdefault("client_limits", STREAMING)
    return connected_pair(router, **kwargs)


def counting_router() -> Router:
    router = Router()

    @router.method("count", kind="server_stream", codec=JSON)
    async def count(call: Call) -> AsyncIterator[int]:
        """Stream 1..N."""
        for i in range(1, int(call.body) + 1):
            yield i

    @router.method("sum", kind="client_stream", codec=JSON)
    async def total(call: Call) -> int:
        """Add the numbers streamed."""
        return sum([n async for n in call.stream])

    @router.method("echo", kind="bidi_stream")
    async def echo(call: Call) -> AsyncIterator[bytes]:
        """Send each message back, upper-cased."""
        async for message in call.stream:
            yield message.upper()

    return router


class KindsTests(SynchronousTestCase):
    """Each kind of call, end to end over the in-memory pair."""

    def test_server_stream(self) -> None:
        """An async generator's values reach ``async for`` in order, then an empty OK status."""
        pair = streaming_pair(counting_router())
        call = pair.client.stream("count", 5, codec=JSON)
        messages = collect(call)
        pair.pump()
        self.assertEqual(self.successResultOf(messages), [1, 2, 3, 4, 5])
        reply = self.successResultOf(call.result())
        self.assertEqual(reply.body, None)  # an empty body, decoded by JSON
        self.assertEqual(pair.server.streams, {})
        self.assertEqual(pair.server.conn.unacknowledged, 0)

    def test_client_stream(self) -> None:
        """Client messages are decoded by the method's codec; the return value is the result."""
        pair = streaming_pair(counting_router())
        call = pair.client.stream("sum", kind="client_stream", codec=JSON)
        for n in (3, 4, 5):
            call.write(JSON.encode(n))
        call.end()
        pair.pump()
        self.assertEqual(self.successResultOf(call.result()).body, 12)
        self.assertEqual(pair.client_protocol.streams, {})

    def test_bidi_stream(self) -> None:
        """Both sides stream at once: each message is answered as it comes."""
        pair = streaming_pair(counting_router())
        call = pair.client.stream("echo", kind="bidi_stream")
        call.write(b"a")
        pair.pump()
        self.assertEqual(self.successResultOf(call.read()), b"A")
        call.write(b"b")
        call.end()
        pair.pump()
        self.assertEqual(self.successResultOf(call.read()), b"B")
        self.assertIsNone(self.successResultOf(call.read()))
        self.assertEqual(self.successResultOf(call.result()).body, b"")


class FlowControlTests(SynchronousTestCase):
    """Credit is given back only as messages are taken, which bounds memory."""

    def test_unread_messages_stop_the_writer(self) -> None:
        """A client that does not read holds at most its credit plus a frame; the writer waits."""
        router = Router()
        written: list[int] = []

        @router.method("flood", kind="server_stream")
        async def flood(call: Call) -> bytes:
            for i in range(1000):
                await call.stream.send(b"x" * 1000)
                written.append(i)
            return b"done"

        pair = streaming_pair(router)
        call = pair.client.stream("flood")
        pair.pump()
        held = pair.client_protocol.conn.unacknowledged
        self.assertLessEqual(held, 65536 + 1010)
        self.assertGreater(held, 60000)
        # The writer's own buffer fills (64 KiB) and then it waits.
        self.assertLess(len(written), 200)
        self.assertFalse(call.done)
        # Reading everything lets it finish, and gives every byte back.
        messages = collect(call)
        pair.pump()
        self.assertEqual(len(self.successResultOf(messages)), 1000)
        self.assertEqual(self.successResultOf(call.result()).body, b"done")
        self.assertEqual(pair.client_protocol.conn.unacknowledged, 0)

    def test_acknowledged_on_take(self) -> None:
        """A message's credit comes back when the application takes it, not when it arrives."""
        router = Router()
        taken: list[bytes] = []

        @router.method("take", kind="client_stream")
        async def take(call: Call) -> bytes:
            while True:
                message = await call.stream.read()
                if message is None:
                    return b"%d" % len(taken)
                taken.append(message)

        pair = streaming_pair(router)
        call = pair.client.stream("take", kind="client_stream")
        call.write(b"abc")
        pair.pump()
        # Taken at once by the waiting read: acknowledged.
        self.assertEqual(pair.server.conn.unacknowledged, 0)
        call.end()
        pair.pump()
        self.assertEqual(self.successResultOf(call.result()).body, b"1")


@implementer(IPushProducer)
class Producer:
    """A push producer that records what the consumer told it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")


@implementer(IConsumer)
class Consumer:
    """An IConsumer that keeps what it is given and can pause its producer."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.producer: Any = None
        self.unregistered = False

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.unregistered = True

    def write(self, data: bytes) -> None:
        self.data.append(data)


class ProducerTests(SynchronousTestCase):
    """Producers and consumers: the IConsumer side of a stream, both ways."""

    def test_push_producer_paused_and_resumed(self) -> None:
        """A registered push producer is paused when the buffer fills, resumed when it drains."""
        router = Router()
        streams: list[Any] = []
        done: Deferred[bytes] = Deferred()

        @router.method("push", kind="server_stream")
        def push(call: Call) -> Deferred[bytes]:
            streams.append(call.stream)
            return done

        pair = streaming_pair(router)
        call = pair.client.stream("push")
        pair.pump()
        (stream,) = streams
        producer = Producer()
        stream.registerProducer(producer, True)
        # 64 KiB of credit go to the wire, then 64 KiB fill the buffer.
        for _ in range(140):
            stream.write(b"x" * 990)
        self.assertEqual(producer.calls, ["pause"])
        messages = collect(call)
        pair.pump()
        self.assertEqual(producer.calls, ["pause", "resume"])
        stream.unregisterProducer()
        done.callback(b"end")
        pair.pump()
        self.assertEqual(len(self.successResultOf(messages)), 140)
        self.assertEqual(self.successResultOf(call.result()).body, b"end")

    def test_file_sender(self) -> None:
        """FileSender (a pull producer) streams a file through the credit, in order and whole."""
        content = bytes(range(256)) * 4096  # 1 MiB
        router = Router()

        @router.method("file", kind="server_stream")
        def send_file(call: Call) -> Deferred[bytes]:
            d = FileSender().beginFileTransfer(io.BytesIO(content), call.stream)
            return d.addCallback(lambda _: b"sent")

        pair = streaming_pair(router)
        call = pair.client.stream("file")
        messages = collect(call)
        pair.pump()
        self.assertEqual(b"".join(self.successResultOf(messages)), content)
        self.assertEqual(self.successResultOf(call.result()).body, b"sent")

    def test_file_sender_waits_for_reader(self) -> None:
        """While the client does not read, FileSender is asked for no more than the bounds."""
        content = b"y" * (4 * 1024 * 1024)
        source = io.BytesIO(content)
        router = Router()

        @router.method("file", kind="server_stream")
        def send_file(call: Call) -> Deferred[bytes]:
            return FileSender().beginFileTransfer(source, call.stream).addCallback(lambda _: b"")

        pair = streaming_pair(router)
        call = pair.client.stream("file")
        pair.pump()
        # The call credit (64 KiB) plus the write buffer (64 KiB) plus a chunk.
        self.assertLess(source.tell(), 3 * 65536)
        messages = collect(call)
        pair.pump()
        self.assertEqual(len(b"".join(self.successResultOf(messages))), len(content))

    def test_client_deliver_to_consumer(self) -> None:
        """A paused consumer stops the credit, so the server; resuming lets the rest through."""
        pair = streaming_pair(counting_router())
        call = pair.client.stream("count", 5000, codec=JSON)
        consumer = Consumer()
        finished = call.deliver_to(consumer)
        consumer.producer.pauseProducing()
        pair.pump()
        self.assertEqual(consumer.data, [])
        self.assertLessEqual(pair.client_protocol.conn.unacknowledged, 65536 + 20)
        consumer.producer.resumeProducing()
        pair.pump()
        self.assertEqual([int(d) for d in consumer.data], list(range(1, 5001)))
        self.successResultOf(finished)
        self.assertTrue(consumer.unregistered)

    def test_server_deliver_to_consumer(self) -> None:
        """A responder can hand the client's messages to an IConsumer and answer when they end."""
        router = Router()
        consumer = Consumer()

        @router.method("upload", kind="client_stream")
        def upload(call: Call) -> Deferred[bytes]:
            return call.stream.deliver_to(consumer).addCallback(
                lambda _: b"%d" % len(b"".join(consumer.data))
            )

        pair = streaming_pair(router)
        call = pair.client.stream("upload", kind="client_stream")
        call.write(b"abc")
        call.write(b"de")
        call.end()
        pair.pump()
        self.assertEqual(self.successResultOf(call.result()).body, b"5")
        self.assertEqual(consumer.data, [b"abc", b"de"])


class OrderAndErrorTests(SynchronousTestCase):
    """The final status follows every message; errors end one call only."""

    def test_final_status_waits_for_buffered_messages(self) -> None:
        """A responder that returns with messages still waiting for credit has them sent first."""
        router = Router()

        @router.method("burst", kind="server_stream")
        def burst(call: Call) -> bytes:
            for i in range(200):
                call.stream.write(b"%03d" % i + b"z" * 997)
            return b"last"

        pair = streaming_pair(router)
        call = pair.client.stream("burst")
        pair.pump()
        self.assertFalse(call.done)  # 200 KB written, 64 KiB of credit
        self.assertIn(1, pair.server.conn.in_flight)  # still counted
        messages = collect(call)
        pair.pump()
        got = self.successResultOf(messages)
        self.assertEqual([m[:3] for m in got], [b"%03d" % i for i in range(200)])
        self.assertEqual(self.successResultOf(call.result()).body, b"last")

    def test_error_mid_stream(self) -> None:
        """An exception after some messages: they arrive, then the error; other calls go on."""
        router = counting_router()

        @router.method("broken", kind="server_stream")
        async def broken(call: Call) -> AsyncIterator[bytes]:
            yield b"one"
            raise StatusError(StatusCode.FAILED_PRECONDITION, "out of paper")

        pair = streaming_pair(router)
        bad = pair.client.stream("broken")
        good = pair.client.stream("count", 3, codec=JSON)
        pair.pump()
        self.assertEqual(self.successResultOf(bad.read()), b"one")
        error = self.failureResultOf(bad.read(), RemoteError).value
        self.assertEqual((error.code, error.message), (9, "out of paper"))
        self.failureResultOf(bad.result(), RemoteError)
        self.assertEqual(self.successResultOf(collect(good)), [1, 2, 3])
        self.assertEqual(pair.client_protocol.conn.state.name, "OPEN")

    def test_undeclared_exception_is_internal(self) -> None:
        """An undeclared exception mid-stream is logged and answered INTERNAL."""
        router = Router()

        @router.method("oops", kind="client_stream")
        async def oops(call: Call) -> bytes:
            async for _ in call.stream:
                raise ZeroDivisionError("no")
            return b""

        pair = streaming_pair(router)
        call = pair.client.stream("oops", kind="client_stream")
        call.write(b"1")
        pair.pump()
        error = self.failureResultOf(call.result(), RemoteError).value
        self.assertEqual(error.code, StatusCode.INTERNAL)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        # The client's later messages cross the final status: dropped, no error.
        self.assertRaises(RemoteError, call.write, b"2")
        self.assertEqual(pair.server.conn.unacknowledged, 0)

    def test_unread_messages_acknowledged_at_end(self) -> None:
        """Messages the responder never read give their credit back when the call ends."""
        router = Router()

        @router.method("ignore", kind="client_stream")
        def ignore(call: Call) -> Deferred[bytes]:
            d: Deferred[bytes] = Deferred()
            pending.append(d)
            return d

        pending: list[Deferred[bytes]] = []
        pair = streaming_pair(router)
        call = pair.client.stream("ignore", kind="client_stream")
        for _ in range(10):
            call.write(b"m" * 100)
        pair.pump()
        self.assertEqual(pair.server.conn.unacknowledged, 1100)
        pending[0].callback(b"ok")
        pair.pump()
        self.assertEqual(pair.server.conn.unacknowledged, 0)
        self.assertEqual(self.successResultOf(call.result()).body, b"ok")


class KindCheckTests(SynchronousTestCase):
    """A call's kind must match the method's."""

    def test_kind_mismatch(self) -> None:
        """Every wrong kind is answered INVALID_ARGUMENT naming both, without running the method."""
        router = counting_router()
        pair = streaming_pair(router)
        unary = pair.client.call("count", b"1")
        wrong = pair.client.stream("sum", kind="server_stream")
        pair.pump()
        error = self.failureResultOf(unary, RemoteError).value
        self.assertEqual(
            (error.code, error.message),
            (StatusCode.INVALID_ARGUMENT, "method 'count' is server_stream; called as unary"),
        )
        error = self.failureResultOf(wrong.result(), RemoteError).value
        self.assertEqual(error.message, "method 'sum' is client_stream; called as server_stream")
        self.failureResultOf(wrong.read(), RemoteError)

    def test_streaming_call_to_unary_method(self) -> None:
        """A streaming call to a unary method is answered INVALID_ARGUMENT."""
        router = Router()
        router.add("plain", lambda call: b"x")
        pair = streaming_pair(router)
        call = pair.client.stream("plain", kind="bidi_stream")
        pair.pump()
        error = self.failureResultOf(call.result(), RemoteError).value
        self.assertEqual(error.message, "method 'plain' is unary; called as bidi_stream")

    def test_line_format(self) -> None:
        """Over the line format a streaming method answers UNIMPLEMENTED, naming the binary one."""
        pair = streaming_pair(counting_router(), wire=LineFormat())
        d = pair.client.call("count", b"3")
        after = pair.client.call("nothing")
        pair.pump()
        error = self.failureResultOf(d, RemoteError).value
        self.assertEqual(
            (error.code, error.message),
            (StatusCode.UNIMPLEMENTED, "method 'count' streams: use the binary format"),
        )
        self.failureResultOf(after, RemoteError)  # answered in turn: NOT_FOUND

    def test_bad_kind(self) -> None:
        """An unknown kind fails the call before anything is sent, and Router.add refuses one."""
        pair = streaming_pair(counting_router())
        call = pair.client.stream("count", kind="sideways")
        self.assertIn("kind must be one of", str(self.failureResultOf(call.result()).value))
        self.assertEqual(pair.client_transport.value(), b"")
        self.assertRaises(ValueError, Router().add, "x", lambda call: b"", kind="sideways")

    def test_methods_lists_kind(self) -> None:
        """reqresp.methods shows each router method's kind."""
        pair = streaming_pair(counting_router())
        d = pair.client.call("reqresp.methods", codec=JSON)
        pair.pump()
        methods = self.successResultOf(d).body["methods"]
        kinds = {m["name"]: m["kind"] for m in methods if not m["name"].startswith("reqresp.")}
        self.assertEqual(
            kinds, {"count": "server_stream", "sum": "client_stream", "echo": "bidi_stream"}
        )

    def test_server_without_streaming(self) -> None:
        """A server that turned streaming off fails a streaming call UNIMPLEMENTED, nothing sent."""
        pair = connected_pair(counting_router(), limits=Limits(stream_credit=None))
        call = pair.client.stream("count", b"1")
        error = self.failureResultOf(call.result(), StatusError).value
        self.assertEqual(error.code, StatusCode.UNIMPLEMENTED)
        self.assertEqual(pair.client_transport.value(), b"")


def hanging_router(seen: list[Call]) -> Router:
    """A router whose methods of each kind run until given up on."""
    router = Router()

    def hang(call: Call) -> Deferred[bytes]:
        seen.append(call)
        return Deferred()

    for kind in ("server_stream", "client_stream", "bidi_stream"):
        router.add(kind, hang, kind=kind)
    return router


class GivingUpTests(SynchronousTestCase):
    """Cancel, deadline and connection loss end a streaming call at every stage."""

    def assert_given_up(self, pair: ConnectedPair, call: Call, error: type[Exception]) -> None:
        self.assertTrue(call.cancelled)
        self.assertEqual(pair.server.streams, {})
        self.assertEqual(pair.server.running, {})
        if call.stream._reader is not None:
            self.failureResultOf(call.stream.read(), error)
        if call.stream._writer is not None:
            self.assertRaises(error, call.stream.write, b"late")

    def test_cancel_while_running(self) -> None:
        """call.cancel() sends CANCEL: on_cancel fires, reads and writes fail, no answer is sent."""
        for kind in ("server_stream", "client_stream", "bidi_stream"):
            with self.subTest(kind=kind):
                seen: list[Call] = []
                pair = streaming_pair(hanging_router(seen))
                call = pair.client.stream(kind, kind=kind)
                pair.pump()
                fired: list[bool] = []
                seen[0].on_cancel(partial(fired.append, True))
                result = call.result()
                call.cancel()
                self.failureResultOf(result, CancelledError)
                if kind != "client_stream":
                    self.failureResultOf(call.read(), CancelledError)
                self.failureResultOf(call.result(), CancelledError)
                pair.pump()
                self.assertEqual(fired, [True])
                self.assert_given_up(pair, seen[0], CancelledError)
                self.assertEqual(pair.server.conn.in_flight, set())
                self.assertEqual(pair.client_protocol.streams, {})

    def test_cancel_while_parked(self) -> None:
        """A streaming call parked past max_concurrent and cancelled never starts."""
        seen: list[Call] = []
        limits = Limits(max_concurrent=1)
        pair = streaming_pair(hanging_router(seen), limits=limits)
        first = pair.client.stream("server_stream")
        # The client keeps to the server's MAX_CONCURRENT for unary calls; a
        # streaming call past it is parked by the server.
        second = pair.client.stream("client_stream", kind="client_stream")
        second.write(b"held")
        pair.pump()
        self.assertEqual(len(seen), 1)
        self.assertIn(2, pair.server.parked)
        self.assertEqual(pair.server.conn.unacknowledged, 14)
        second.cancel()
        pair.pump()
        self.assertEqual(pair.server.parked, {})
        self.assertEqual(pair.server.conn.unacknowledged, 0)
        first.cancel()
        pair.pump()
        self.assertEqual(len(seen), 1)

    def test_parked_call_starts_when_one_ends(self) -> None:
        """A streaming call counts against max_concurrent for its whole life."""
        seen: list[Call] = []
        pair = streaming_pair(hanging_router(seen), limits=Limits(max_concurrent=1))
        first = pair.client.stream("server_stream")
        pair.client.stream("server_stream")
        pair.pump()
        self.assertEqual(len(seen), 1)
        seen[0].stream.write(b"m")
        pair.pump()
        self.assertEqual(len(seen), 1)
        first.cancel()
        pair.pump()
        self.assertEqual(len(seen), 2)

    def test_deadline_while_streaming(self) -> None:
        """The deadline ends the whole call at both ends, whatever it was doing."""
        seen: list[Call] = []
        pair = streaming_pair(hanging_router(seen))
        call = pair.client.stream("bidi_stream", kind="bidi_stream", timeout=5)
        call.write(b"a")
        pair.pump()
        seen[0].stream.write(b"b")
        pair.pump()
        self.assertEqual(self.successResultOf(call.read()), b"b")
        pair.clock.advance(4.9)
        pair.pump()
        self.assertFalse(call.done)
        pair.clock.advance(0.2)
        pair.pump()
        self.failureResultOf(call.result(), DeadlineExceeded)
        self.failureResultOf(call.read(), DeadlineExceeded)
        self.assert_given_up(pair, seen[0], Exception)
        # Both sides' deadline timers are gone (keepalive timers stay).
        timers = [c for c in pair.clock.getDelayedCalls() if "Liveness" not in repr(c)]
        self.assertEqual(timers, [])

    def test_server_deadline_after_responder_returned(self) -> None:
        """Messages waiting for credit after the responder returned are bounded by the deadline."""
        router = Router()

        @router.method("burst", kind="server_stream")
        def burst(call: Call) -> bytes:
            for _ in range(200):
                call.stream.write(b"z" * 1000)
            return b"done"

        # The server caps every deadline at 2 s; the client has none.
        pair = streaming_pair(router, limits=Limits(stream_credit=65536, max_deadline=2))
        call = pair.client.stream("burst")
        pair.pump()
        self.assertEqual(len(pair.server.streams), 1)
        self.assertEqual(pair.server.running, {})  # the responder returned
        pair.clock.advance(2)
        pair.pump()
        error = self.failureResultOf(call.result(), DeadlineExceeded).value
        self.assertIn("at the server", str(error))
        self.assertEqual(pair.server.streams, {})

    def test_connection_lost(self) -> None:
        """Losing the connection fails the client's reads and result and gives up the server's."""
        seen: list[Call] = []
        pair = streaming_pair(hanging_router(seen))
        call = pair.client.stream("bidi_stream", kind="bidi_stream")
        pair.pump()
        reading = call.read()
        pair.disconnect()
        self.failureResultOf(reading, ConnectionClosed)
        self.failureResultOf(call.result(), ConnectionClosed)
        self.assertRaises(ConnectionClosed, call.write, b"x")
        self.assert_given_up(pair, seen[0], ConnectionClosed)

    def test_grace_expiry(self) -> None:
        """A drain's grace period ends open streaming calls UNAVAILABLE, not retry-safe."""
        seen: list[Call] = []
        pair = streaming_pair(hanging_router(seen))
        call = pair.client.stream("server_stream")
        pair.pump()
        pair.factory.drain(grace=1)
        pair.pump()
        seen[0].stream.write(b"still going")
        pair.pump()
        self.assertEqual(self.successResultOf(call.read()), b"still going")  # GOAWAY spares it
        pair.clock.advance(1)
        pair.pump()
        error = self.failureResultOf(call.result(), RemoteError).value
        self.assertEqual(error.code, StatusCode.UNAVAILABLE)
        self.assertFalse(error.retry_safe)
        self.assertTrue(seen[0].cancelled)

    def test_goaway_spares_open_streams(self) -> None:
        """After the server's GOAWAY an accepted streaming call goes on to its end."""
        router = Router()
        streams: list[Call] = []
        done: Deferred[bytes] = Deferred()

        def upload(call: Call) -> Deferred[bytes]:
            streams.append(call)
            return done

        router.add("upload", upload, kind="client_stream")
        pair = streaming_pair(router)
        call = pair.client.stream("upload", kind="client_stream")
        pair.pump()
        drained = pair.factory.drain(grace=10)
        pair.pump()
        call.write(b"after goaway")
        call.end()
        pair.pump()
        self.assertEqual(self.successResultOf(streams[0].stream.read()), b"after goaway")
        done.callback(b"ok")
        pair.pump()
        self.assertEqual(self.successResultOf(call.result()).body, b"ok")
        self.successResultOf(drained)
        refused = pair.client.stream("upload", kind="client_stream")
        self.failureResultOf(refused.result(), ConnectionClosed)


class SharedCreditTests(SynchronousTestCase):
    """The connection credit bounds what many calls hold together."""

    def test_many_streams_share_connection_credit(self) -> None:
        """Thirty unread streams hold no more than the connection credit plus a frame, all told."""
        router = Router()

        @router.method("flood", kind="server_stream")
        async def flood(call: Call) -> AsyncIterator[bytes]:
            for _ in range(200):
                yield b"f" * 1000

        pair = streaming_pair(router)
        calls = [pair.client.stream("flood") for _ in range(30)]
        pair.pump()
        held = pair.client_protocol.conn.unacknowledged
        self.assertLessEqual(held, 1024 * 1024 + 1010)
        self.assertGreater(held, 1000 * 1000)
        # Each server writer's buffer is bounded too.
        for entry in pair.server.streams.values():
            self.assertLess(entry.stream._writer.buffered, 65536 + 1010)
        results = [collect(call) for call in calls]
        pair.pump()
        for result in results:
            self.assertEqual(len(self.successResultOf(result)), 200)
        self.assertEqual(pair.client_protocol.conn.unacknowledged, 0)

    def test_client_writer_bounded_when_server_never_reads(self) -> None:
        """A client sending to a responder that never reads waits; both buffers stay bounded."""
        seen: list[Call] = []
        pair = streaming_pair(hanging_router(seen))
        call = pair.client.stream("client_stream", kind="client_stream")
        sent = 0

        async def upload() -> None:
            nonlocal sent
            for _ in range(1000):
                await call.send(b"u" * 1000)
                sent += 1

        uploading = run(upload())
        pair.pump()
        self.assertNoResult(uploading)
        self.assertLess(sent, 140)
        self.assertLessEqual(pair.server.conn.unacknowledged, 65536 + 1010)
        self.assertLess(call._writer.buffered, 65536 + 1010)
        # The responder starts reading: everything flows.
        received = collect_stream(seen[0])
        pair.pump()
        self.successResultOf(uploading)
        call.end()
        pair.pump()
        self.assertEqual(len(self.successResultOf(received)), 1000)

    def test_producer_stopped_when_call_ends(self) -> None:
        """A producer still registered when the call is cancelled is stopped."""
        seen: list[Call] = []
        pair = streaming_pair(hanging_router(seen))
        call = pair.client.stream("server_stream")
        pair.pump()
        producer = Producer()
        seen[0].stream.registerProducer(producer, True)
        call.cancel()
        pair.pump()
        self.assertEqual(producer.calls, ["stop"])


def collect_stream(call: Call) -> Deferred[list[Any]]:
    """:returns: every message a responder's ``call.stream`` receives."""

    async def go() -> list[Any]:
        return [message async for message in call.stream]

    return run(go())
