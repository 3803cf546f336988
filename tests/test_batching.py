"""
Batching: what one read causes goes out in at most two writes.

The client: calls (and CANCELs, PINGs, stream frames) made while the
protocol dispatches one read's events, from the callbacks it fires, are
encoded at once; the read's first write goes out at once (so the server
works on it while the client makes the rest), the others together when the
read is done, unless they reach ``_BATCH_BYTES`` first; made from anywhere
else, they are written at once.  The server: the answers to one read go out
in one write.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from helpers import PEER, RawClient
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import BINARY, Limits, Router, ServerFactory
from twisted_reqresp._adapters.client_protocol import _BATCH_BYTES, ClientProtocol
from twisted_reqresp.wire import Cancel, Connection, Event, Ping, Request, Response, Role


class CountingTransport(StringTransport):
    """A StringTransport that records each write, and what was written when
    the connection was asked to close."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.written_at_close: bytes | None = None
        #: Pause the registered producer once this many bytes are held,
        #: as a real transport does past its buffer size.
        self.pause_at: int | None = None

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)
        if self.pause_at is not None and len(self.value()) >= self.pause_at and self.producer:
            self.producer.pauseProducing()

    def loseConnection(self) -> None:
        if self.written_at_close is None:
            self.written_at_close = self.value()
        super().loseConnection()


class Peer:
    """
    One client protocol on a counting transport, and the server's side of
    its connection driven by hand (a sans-IO server connection).
    """

    def __init__(self, *, batching: bool = True, limits: Limits | None = None) -> None:
        self.clock = MemoryReactorClock()
        self.protocol = ClientProtocol(wire=BINARY, limits=limits or Limits(), clock=self.clock)
        if not batching:
            self.protocol._batch_reads = False
        self.transport = CountingTransport()
        self.protocol.makeConnection(self.transport)
        self.server = Connection(Role.SERVER, BINARY, limits or Limits())
        self.received()
        self.protocol.dataReceived(self.server.data_to_send())
        self.transport.writes.clear()

    def received(self) -> list[Event]:
        """:returns: the events the server's side reads from what the
        client wrote since the last time."""
        data = self.transport.value()
        self.transport.clear()
        return self.decode(data)

    def decode(self, data: bytes) -> list[Event]:
        """:returns: the events the server's side reads from ``data``."""
        self.server.receive_data(data)
        events = []
        while (event := self.server.next_event()) is not None:
            events.append(event)
        return events

    def answer(self, *rids: int) -> None:
        """Deliver OK answers to ``rids`` in one read."""
        for rid in rids:
            self.server.send_response(rid, b"ok %d" % rid)
        self.protocol.dataReceived(self.server.data_to_send())

    def stop(self) -> None:
        """Stop the client's timers."""
        self.protocol.liveness.stop()


def then(d: Deferred[Any], action: Callable[[], object]) -> None:
    """When ``d`` fires, do ``action`` (what it returns is dropped: a
    Deferred returned from a callback would hold up ``d``'s chain)."""

    def callback(result: Any) -> Any:
        action()
        return result

    d.addCallback(callback)


def _requests(events: list[Event]) -> list[tuple[int, str, bytes]]:
    return [(e.request_id, e.method, e.body) for e in events if isinstance(e, Request)]


class ClientBatchingTests(SynchronousTestCase):
    """The client writes what one read's callbacks send in one write."""

    def test_closed_loops_first_call_at_once_the_rest_in_one_write(self) -> None:
        """N answers in one read whose callbacks each make a call give two writes: the
        first callback's request at once, then the N - 1 others together, in the order
        the callbacks made them."""
        peer = Peer()
        n = 16
        for i in range(n):
            d = peer.protocol.call("loop", b"%d" % i)
            then(d, lambda i=i: peer.protocol.call("next", b"%d" % i))
        self.assertEqual(len(peer.transport.writes), n)  # made from outside a read
        self.assertEqual([r[0] for r in _requests(peer.received())], list(range(1, n + 1)))
        peer.transport.writes.clear()
        first_written: list[int] = []
        # When the second answer's callback runs, the first request is already out.
        then(peer.protocol.pending[2], lambda: first_written.append(len(peer.transport.writes)))
        peer.answer(*range(1, n + 1))
        self.assertEqual(first_written, [1])
        self.assertEqual(len(peer.transport.writes), 2)
        first, rest = peer.transport.writes
        self.assertEqual(_requests(peer.decode(first)), [(n + 1, "next", b"0")])
        self.assertEqual(
            _requests(peer.decode(rest)),
            [(n + 1 + i, "next", b"%d" % i) for i in range(1, n)],
        )
        peer.transport.clear()
        peer.stop()

    def test_one_call_per_read_is_written_at_once(self) -> None:
        """A read whose one answer's callback makes one call writes it once, before the
        callback returns (the closed loop at 1x1 costs one write per call)."""
        peer = Peer()
        d = peer.protocol.call("loop")
        seen: list[int] = []

        def next_call() -> None:
            peer.protocol.call("next")
            seen.append(len(peer.transport.writes))

        then(d, next_call)
        peer.received()
        peer.transport.writes.clear()
        peer.answer(1)
        self.assertEqual(seen, [1])
        self.assertEqual(len(peer.transport.writes), 1)
        self.assertEqual([r[1] for r in _requests(peer.received())], ["next"])
        peer.stop()

    def test_call_outside_a_read_is_written_at_once(self) -> None:
        """A call made outside a read (from the reactor) is written before call() returns."""
        peer = Peer()
        peer.protocol.call("one")
        self.assertEqual(len(peer.transport.writes), 1)
        peer.protocol.call("two")
        self.assertEqual(len(peer.transport.writes), 2)
        self.assertEqual([r[1] for r in _requests(peer.received())], ["one", "two"])
        peer.stop()

    def test_cancels_and_pings_join_the_batch_in_order(self) -> None:
        """CANCELs and PINGs sent from a read's callbacks after its first write share the
        read's second write, in the order they were sent among the calls."""
        peer = Peer()
        first = peer.protocol.call("first")
        other = peer.protocol.call("other")
        other.addErrback(lambda _: None)
        then(first, lambda: peer.protocol.call("a"))
        then(first, lambda: other.cancel())
        then(first, lambda: peer.protocol.ping())
        then(first, lambda: peer.protocol.call("b"))
        peer.received()
        peer.transport.writes.clear()
        peer.answer(1)
        self.assertEqual(len(peer.transport.writes), 2)
        self.assertEqual(_requests(peer.decode(peer.transport.writes[0])), [(3, "a", b"")])
        kinds = [
            (type(e).__name__, getattr(e, "request_id", None))
            for e in peer.decode(peer.transport.writes[1])
            if isinstance(e, (Request, Cancel, Ping))
        ]
        self.assertEqual(kinds, [("Cancel", 2), ("Ping", None), ("Request", 4)])
        peer.stop()

    def test_stream_frames_join_the_batch(self) -> None:
        """A message sent on a client stream from a read's callback after its first write
        shares the read's second write with the calls made there."""
        peer = Peer()
        stream = peer.protocol.stream("upload", kind="client_stream")
        first = peer.protocol.call("first")
        then(first, lambda: peer.protocol.call("lead"))
        then(first, lambda: stream.write(b"chunk"))
        then(first, lambda: peer.protocol.call("after"))
        peer.received()
        peer.transport.writes.clear()
        peer.answer(2)
        self.assertEqual(len(peer.transport.writes), 2)
        self.assertEqual([r[1] for r in _requests(peer.decode(peer.transport.writes[0]))], ["lead"])
        events = peer.decode(peer.transport.writes[1])
        self.assertEqual([type(e).__name__ for e in events], ["StreamMessage", "Request"], events)
        stream.cancel()
        peer.stop()

    def test_batch_bound(self) -> None:
        """The batch after a read's first write is written as soon as it holds
        _BATCH_BYTES: below the bound in one write at the end of the read, at and above it
        at once, before the next call."""
        for extra, writes in ((-1, 2), (0, 3), (1, 3)):
            peer = Peer()
            first = peer.protocol.call("first")
            # A request whose frame is _BATCH_BYTES + extra bytes long.
            encode = peer.protocol.conn._codec.encode
            overhead = len(encode(Request(request_id=3, method="x")))
            body = b"x" * (_BATCH_BYTES + extra - overhead)
            self.assertEqual(
                len(encode(Request(request_id=3, method="x", body=body))), _BATCH_BYTES + extra
            )
            then(first, lambda peer=peer: peer.protocol.call("lead"))
            then(first, lambda peer=peer, body=body: peer.protocol.call("x", body))
            then(first, lambda peer=peer: peer.protocol.call("y"))
            peer.received()
            peer.transport.writes.clear()
            peer.answer(1)
            with self.subTest(extra=extra):
                self.assertEqual(len(peer.transport.writes), writes)
                self.assertEqual([r[1] for r in _requests(peer.received())], ["lead", "x", "y"])
            peer.stop()

    def test_protocol_violation_writes_the_batch_first(self) -> None:
        """Calls made from a read that then breaks the protocol are written before the
        connection is closed."""
        peer = Peer()
        first = peer.protocol.call("first")
        then(first, lambda: peer.protocol.call("late"))
        peer.received()
        peer.server.send_response(1, b"ok")
        peer.protocol.dataReceived(peer.server.data_to_send() + b"\xff" * 16)
        self.assertTrue(peer.transport.disconnecting)
        written = peer.transport.written_at_close
        assert written is not None
        self.assertEqual([r[1] for r in _requests(peer.decode(written))], ["late"])
        peer.stop()

    def test_close_from_a_callback_writes_the_batch_first(self) -> None:
        """A close() that ends the connection from a read's callback writes the CANCEL the
        callback sent before closing."""
        peer = Peer()
        first = peer.protocol.call("first")
        other = peer.protocol.call("other")
        other.addErrback(lambda _: None)
        then(first, lambda: other.cancel())
        then(first, lambda: peer.protocol.close())
        peer.received()
        peer.answer(1)
        self.assertTrue(peer.transport.disconnecting)
        written = peer.transport.written_at_close
        assert written is not None
        self.assertEqual(peer.decode(written), [Cancel(request_id=2)])
        peer.stop()

    def test_write_blocked_queues_after_a_batch(self) -> None:
        """A batch that fills the transport's buffer pauses the client: the next call made
        from the same read waits in the queue, as without batching."""
        peer = Peer()
        peer.transport.pause_at = _BATCH_BYTES
        first = peer.protocol.call("first")
        then(first, lambda: peer.protocol.call("lead"))
        then(first, lambda: peer.protocol.call("big", b"x" * _BATCH_BYTES))
        then(first, lambda: peer.protocol.call("queued"))
        peer.received()
        peer.answer(1)
        self.assertTrue(peer.protocol.write_paused)
        self.assertEqual(len(peer.protocol.queued), 1)
        self.assertEqual([r[1] for r in _requests(peer.received())], ["lead", "big"])
        peer.stop()


#: One step of a script: ``("calls", n)`` n calls from outside a read;
#: ``("read", picks, actions, splits)`` the server answers the pending calls
#: ``picks`` choose, in one read cut at ``splits``, each answer's callback
#: doing the next of ``actions``.
_actions = st.sampled_from(["none", "call", "call2", "cancel", "ping", "close_stream"])
_steps = st.one_of(
    st.tuples(st.just("calls"), st.integers(1, 4)),
    st.tuples(
        st.just("read"),
        st.lists(st.integers(0, 50), min_size=1, max_size=6),
        st.lists(_actions, min_size=1, max_size=6),
        st.lists(st.integers(1, 200), max_size=3),
    ),
)


def _run_script(script: list[Any], batching: bool) -> tuple[bytes, int]:
    """:returns: every byte the client wrote running ``script``, and how many writes."""
    peer = Peer(batching=batching, limits=Limits(max_concurrent=8, max_queued_calls=100))
    protocol = peer.protocol
    out = [peer.transport.value()]
    calls: list[Deferred[Any]] = []
    streams = [protocol.stream("s", kind="client_stream") for _ in range(2)]
    actions: list[str] = []

    def act(result: Any) -> Any:
        action = actions.pop(0) if actions else "none"
        if action in ("call", "call2"):
            for _ in range(1 + (action == "call2")):
                call(b"again")
        elif action == "cancel":
            for d in calls:
                if not d.called:
                    d.cancel()
                    break
        elif action == "ping":
            protocol.ping().addErrback(lambda _: None)
        elif action == "close_stream":
            for s in streams:
                if not s.done:
                    s.write(b"m")
                    s.end()
                    break
        return result

    def call(body: bytes) -> None:
        d = protocol.call("m", body)
        d.addCallback(act)
        d.addErrback(lambda _: None)
        calls.append(d)

    def take() -> None:
        out.append(peer.transport.value())
        peer.server.receive_data(peer.transport.value())
        peer.transport.clear()
        while peer.server.next_event() is not None:
            pass

    take()
    for step in script:
        if step[0] == "calls":
            for _ in range(step[1]):
                call(b"first")
        else:
            _, picks, step_actions, splits = step
            actions[:] = step_actions
            waiting = sorted(peer.server.in_flight - {s.request_id for s in streams})
            chosen = sorted({waiting[p % len(waiting)] for p in picks}) if waiting else []
            for rid in chosen:
                peer.server.send_response(rid, b"r")
            data = peer.server.data_to_send()
            cuts = sorted({c % (len(data) + 1) for c in splits} | {0, len(data)})
            for a, b in itertools.pairwise(cuts):
                if b > a:
                    protocol.dataReceived(data[a:b])
        take()
    writes = len(peer.transport.writes)
    peer.stop()
    return b"".join(out), writes


class BatchingDifferentialTests(SynchronousTestCase):
    """Batching changes how many writes there are, never the bytes."""

    @given(st.lists(_steps, min_size=1, max_size=12))
    def test_same_bytes_with_and_without_batching(self, script: list[Any]) -> None:
        """For any interleaving of calls, answers split into reads, and callbacks that
        call, cancel, ping and stream, the client writes the same bytes in the same order
        with batching as without, in no more writes."""
        batched, batched_writes = _run_script(script, batching=True)
        plain, plain_writes = _run_script(script, batching=False)
        self.assertEqual(batched, plain)
        self.assertLessEqual(batched_writes, plain_writes)


class ServerBatchingTests(SynchronousTestCase):
    """The server answers one read with one write."""

    def test_one_write_per_read(self) -> None:
        """N requests in one read that the responder answers at once give one write
        holding the N answers in order."""
        router = Router()
        router.add("echo", lambda call: call.body)
        server = ServerFactory(router).buildProtocol(PEER)
        transport = CountingTransport()
        server.makeConnection(transport)
        conn = Connection(Role.CLIENT, BINARY)
        server.dataReceived(conn.data_to_send())
        conn.receive_data(transport.value())
        transport.clear()
        transport.writes.clear()
        n = 16
        rids = [conn.send_request("echo", b"%d" % i) for i in range(n)]
        server.dataReceived(conn.data_to_send())
        self.assertEqual(len(transport.writes), 1)
        conn.receive_data(transport.value())
        answers = []
        while (event := conn.next_event()) is not None:
            if isinstance(event, Response):
                answers.append((event.request_id, event.body))
        self.assertEqual(answers, [(rid, b"%d" % i) for i, rid in enumerate(rids)])
        server.connectionLost()

    def test_answers_finishing_later_are_written_when_they_finish(self) -> None:
        """An answer that finishes outside a read is written at once, not held for the
        next read."""
        router = Router()
        waiting: list[Deferred[bytes]] = []

        def wait(call: Any) -> Deferred[bytes]:
            d: Deferred[bytes] = Deferred()
            waiting.append(d)
            return d

        router.add("wait", wait)
        client = RawClient(ServerFactory(router))
        client.request("wait")
        client.request("wait")
        self.assertEqual(client.events(), [])
        waiting[1].callback(b"second")
        self.assertEqual([e.body for e in client.events()], [b"second"])  # type: ignore[attr-defined]
        waiting[0].callback(b"first")
        self.assertEqual([e.body for e in client.events()], [b"first"])  # type: ignore[attr-defined]
