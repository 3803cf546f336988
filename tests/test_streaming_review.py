"""
Streaming calls attacked as a hostile peer and a careless user would
(issue 11 review): each test pins a defect found and fixed.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

from helpers import RawClient
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import Call, Limits, RemoteError, Router, ServerFactory, StatusCode
from twisted_reqresp.testing import connected_pair


def burst_router(messages: int, size: int) -> Router:
    """A router whose ``burst`` streams ``messages`` messages of ``size`` bytes, then OK."""
    router = Router()

    @router.method("burst", kind="server_stream")
    async def burst(call: Call) -> AsyncIterator[bytes]:
        """Stream a fixed burst."""
        for _ in range(messages):
            yield b"x" * size

    return router


class UnreadAfterTheEndTests(SynchronousTestCase):
    """A client's messages left unread when the call ends do not hold the connection's credit."""

    def test_result_only_callers_do_not_stall_the_connection(self) -> None:
        """Forty result()-only callers all finish: none holds connection credit."""
        pair = connected_pair(burst_router(50, 1000))
        for n in range(40):
            call = pair.client.stream("burst")
            result = call.result()
            pair.pump()
            self.assertEqual(self.successResultOf(result).body, b"", f"call {n} stalled")
        self.assertEqual(pair.client_protocol.conn.unacknowledged, 0)

    def test_messages_stay_readable_after_the_end(self) -> None:
        """Messages that came before the final status are still read, in order, after it."""
        pair = connected_pair(burst_router(3, 5))
        call = pair.client.stream("burst")
        pair.pump()
        self.successResultOf(call.result())
        self.assertEqual(pair.client_protocol.conn.unacknowledged, 0)
        read = [self.successResultOf(call.read()) for _ in range(4)]
        self.assertEqual(read, [b"xxxxx"] * 3 + [None])
        self.assertEqual(pair.client_protocol.conn.unacknowledged, 0)

    def test_cancelled_calls_give_their_credit_back(self) -> None:
        """A call cancelled with messages unread gives their connection credit back."""
        seen: list[Call] = []
        router = Router()

        @router.method("hang", kind="server_stream")
        def hang(call: Call) -> Deferred[bytes]:
            seen.append(call)
            call.stream.write(b"y" * 1000)
            return Deferred()

        pair = connected_pair(router)
        for _ in range(1100):
            call = pair.client.stream("hang")
            pair.pump()
            call.cancel()
            call.result().addErrback(lambda _: None)
        pair.pump()
        self.assertEqual(pair.client_protocol.conn.unacknowledged, 0)
        self.assertEqual(len(seen), 1100)
        last = pair.client.stream("hang")
        pair.pump()
        self.assertEqual(self.successResultOf(last.read()), b"y" * 1000)
        last.cancel()


#: Frames kept per allocation: enough to see, from the wire core, the
#: adapter that called it.
_FRAMES = 40


def _held_by_server(open_call: Any) -> tuple[int, int, int]:
    """
    Open calls with ``open_call()`` until the server stops reading; measure
    what the server's protocol allocated for them (tracemalloc, server-side
    modules only: the raw client is the sans-IO core alone).

    :returns: the calls parked, the server's count of parked bytes, and the
        bytes the adapters hold.
    """
    gc.collect()
    tracemalloc.start(_FRAMES)
    try:
        before = tracemalloc.take_snapshot()
        server = open_call(None)
        n = 0
        while server.lifecycle.reading and n < 5000:
            open_call(server)
            n += 1
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    # What the adapters allocate, and what the wire core allocates when the
    # adapters call it: the server's core, not the raw client's.  Compiled,
    # the core has no frames of its own and its allocations show under the
    # adapter that called it; the sum is the same on both paths.
    adapters = tracemalloc.Filter(True, "*twisted_reqresp/_adapters/*")
    core = tracemalloc.Filter(True, "*twisted_reqresp/_core/*")
    called = tracemalloc.Filter(True, "*twisted_reqresp/_adapters/*", all_frames=True)
    grown = [
        diff
        for snapshot_of in (
            lambda snap: snap.filter_traces([adapters]),
            lambda snap: snap.filter_traces([core]).filter_traces([called]),
        )
        for diff in snapshot_of(after).compare_to(snapshot_of(before), "filename")
    ]
    return len(server.parked), server._parked_bytes, sum(diff.size_diff for diff in grown)


class ParkedStreamsTests(SynchronousTestCase):
    """max_parked_bytes bounds what parked streaming calls hold, not only their requests' bytes."""

    def test_parked_streams_counted_at_what_they_hold(self) -> None:
        """Streaming calls parked up to max_parked_bytes hold no more than it (measured)."""
        limits = Limits(max_concurrent=1, max_parked_bytes=256 * 1024)
        router = Router()
        router.add("hang", lambda call: Deferred(), kind="client_stream")
        router.add("unary", lambda call: Deferred())
        for streaming in (False, True):
            raw: list[RawClient] = []

            def open_call(server: Any, streaming: bool = streaming, raw: list[Any] = raw) -> Any:
                if server is None:
                    raw.append(RawClient(ServerFactory(router, limits=limits, clock=Clock())))
                    return raw[0].server
                if streaming:
                    raw[0].conn.start_stream(
                        "hang", b"", (), None, client_stream=True, server_stream=False
                    )
                else:
                    raw[0].conn.send_request("unary", b"")
                raw[0].send()
                return None

            with self.subTest(streaming=streaming):
                parked, counted, held = _held_by_server(open_call)
                self.assertGreater(parked, 50)
                self.assertLessEqual(counted, limits.max_parked_bytes + 4096)
                self.assertLessEqual(held, limits.max_parked_bytes * 1.25, f"{parked} parked")


class SiblingCancelTests(SynchronousTestCase):
    """A waiter cancelled by a sibling waiter's callback is cancelled cleanly, never fired twice."""

    def test_read_cancelled_by_a_sibling_at_the_end(self) -> None:
        """At the end, a read cancelled by an earlier read's callback fails CancelledError."""
        pair = connected_pair(burst_router(0, 0))
        call = pair.client.stream("burst")
        first, second = call.read(), call.read()
        first.addCallback(lambda _: second.cancel())
        pair.pump()
        self.assertIsNone(self.successResultOf(first))
        self.failureResultOf(second, CancelledError)
        self.assertTrue(self.successResultOf(call.result()))

    def test_result_cancelled_by_a_sibling(self) -> None:
        """A result() Deferred cancelled by another result()'s callback does not fire again."""
        pair = connected_pair(burst_router(1, 1))
        call = pair.client.stream("burst")
        first, second = call.result(), call.result()
        first.addCallback(lambda _: second.cancel())
        pair.pump()
        self.successResultOf(first)
        self.failureResultOf(second, CancelledError)
        self.assertEqual(self.successResultOf(call.read()), b"x")

    def test_writable_cancelled_by_a_sibling(self) -> None:
        """When room comes, a writer cancelled by a sibling's callback fails Cancelled, cleanly."""
        seen: list[Call] = []
        router = Router()

        @router.method("hang", kind="server_stream")
        def hang(call: Call) -> Deferred[bytes]:
            seen.append(call)
            return Deferred()

        pair = connected_pair(router)
        call = pair.client.stream("hang")
        pair.pump()
        stream = seen[0].stream
        for _ in range(200):
            stream.write(b"z" * 1000)  # past the client's credit and the writer's bound
        first, second = stream.writable(), stream.writable()
        self.assertNoResult(first)
        first.addCallback(lambda _: second.cancel())
        collected: list[Any] = []

        async def drain() -> None:
            async for message in call:
                collected.append(message)

        Deferred.fromCoroutine(drain())
        pair.pump()
        self.successResultOf(first)
        self.failureResultOf(second, CancelledError)
        self.assertEqual(len(collected), 200)


async def swallow(call: Any) -> None:
    """Read every message of ``call``, dropping them."""
    async for _ in call:
        pass


class ExcessStreamsTests(SynchronousTestCase):
    """Streams past max_parked_bytes are refused: the server never stops reading for them."""

    def test_parked_streams_do_not_stall_the_running_ones(self) -> None:
        """A client opening far more streams than the server runs still gets every call answered."""
        limits = Limits(max_concurrent=1, max_parked_bytes=16 * 1024)
        pair = connected_pair(burst_router(200, 1000), limits=limits)
        first = pair.client.stream("burst")
        received = []

        async def drain() -> None:
            async for message in first:
                received.append(message)

        draining = Deferred.fromCoroutine(drain())
        more = [pair.client.stream("burst") for _ in range(200)]
        results = [call.result() for call in more]
        for call in more:
            Deferred.fromCoroutine(swallow(call)).addErrback(lambda _: None)
        pair.pump()
        self.successResultOf(draining)
        self.assertEqual(len(received), 200)
        refused = 0
        for result in results:
            if result.called and isinstance(result.result, Failure):
                error = result.result.value
                self.assertIsInstance(error, RemoteError)
                self.assertEqual(error.code, StatusCode.RESOURCE_EXHAUSTED)
                self.assertTrue(error.retry_safe)
                self.assertIn("max_parked_bytes", error.message)
                result.addErrback(lambda _: None)
                refused += 1
            else:
                self.successResultOf(result)
        self.assertGreater(refused, 0)
        self.assertLess(refused, 200)
        self.assertTrue(pair.server.lifecycle.reading)
