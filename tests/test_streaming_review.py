"""
Streaming calls attacked as a hostile peer and a careless user would
(issue 11 review): each test pins a defect found and fixed.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import Call, Limits, Router, ServerFactory
from twisted_reqresp.testing import connected_pair

from helpers import RawClient


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
        """Forty calls whose caller awaits only result() all finish: none holds connection credit."""
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
