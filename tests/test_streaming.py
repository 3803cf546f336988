"""
The Twisted streaming API (``docs/guide.md``, "Streaming calls"):
``call.stream`` on the server, ``Client.stream`` on the client, over the
in-memory pair and a fake clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import (
    Call,
    Limits,
    Router,
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
