"""
Edge cases of the connection lifecycle, each found by a hostile review of
its rewrite and each failing before its fix: bounds that must hold on the
line format and under write backpressure, answers owed whatever the error,
timers that neither leak nor blame the peer for our pauses, refusals,
GOAWAY on the client, half-closed peers that are gone, and the deadline a
queued call carries.
"""

from __future__ import annotations

from typing import Any

from helpers import echo_and_wait_router
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import (
    Call,
    ConnectionClosed,
    Limits,
    Router,
    ServerFactory,
    StatusCode,
    StatusError,
)
from twisted_reqresp._adapters.client_protocol import ClientProtocol
from twisted_reqresp.testing import ConnectedPair, connected_pair
from twisted_reqresp.wire import BinaryFormat, Connection, LineFormat, Ping, Role

_PEER = IPv4Address("TCP", "127.0.0.1", 40000)


def _server(
    limits: Limits, wire: Any = None, clock: MemoryReactorClock | None = None
) -> tuple[Any, StringTransport, list[Any], MemoryReactorClock]:
    router, waiting = echo_and_wait_router()
    clock = clock if clock is not None else MemoryReactorClock()
    factory = ServerFactory(router, wire=wire, limits=limits, clock=clock)
    server = factory.buildProtocol(_PEER)
    transport = StringTransport(peerAddress=_PEER)
    server.makeConnection(transport)
    return server, transport, waiting, clock


def _server_to_client_only(pair: ConnectedPair) -> None:
    """Deliver what the server wrote; drop what the client wrote (a one-way partition)."""
    data = pair.server_transport.value()
    pair.server_transport.clear()
    if data:
        pair.client_protocol.dataReceived(data)
    pair.client_transport.clear()


class ConcurrencyBoundTests(SynchronousTestCase):
    """max_concurrent and the memory bound hold on every format and in every state."""

    def test_line_format_held_answers_count_toward_max_concurrent(self) -> None:
        """Line format: answers held for their turn count toward max_concurrent; the rest park."""
        server, _, _, _ = _server(Limits(max_concurrent=2), wire=LineFormat())
        server.dataReceived(b"wait\n" + b"echo a\n" * 10)
        # ServerProtocol's docstring: at most max_concurrent requests "run (or
        # wait for their turn on the wire, for the line format) at once".
        # Here all 10 echo answers are made and held in memory behind the
        # slow one, and nothing is parked (so max_parked_bytes never applies:
        # 100 MB of lines behind one `sleep` grew a real twistd by 100 MB).
        self.assertEqual(len(server.parked), 9)

    def test_parked_request_not_started_while_peer_not_reading(self) -> None:
        """While the peer does not read our answers, a freed slot starts no parked request."""
        server, transport, waiting, _ = _server(Limits(max_concurrent=1))
        client = Connection(Role.CLIENT, BinaryFormat())
        for _ in range(3):
            client.send_request("wait")
        server.dataReceived(client.data_to_send())
        self.assertEqual((len(waiting), len(server.parked)), (1, 2))
        transport.producer.pauseProducing()  # our write buffer is full
        waiting[0].callback(b"first")
        # _on_write_blocked: "The peer is not reading our answers: stop
        # starting work for it."  Memory is documented as bounded by
        # max_concurrent answers, not max_concurrent + parked answers.
        self.assertEqual((len(waiting), len(server.parked)), (1, 2))
        transport.producer.resumeProducing()
        self.assertEqual((len(waiting), len(server.parked)), (2, 1))


class AnswerOwedTests(SynchronousTestCase):
    """Every request read is answered exactly once, whatever the answer holds."""

    def test_error_details_too_large_for_client_still_answered(self) -> None:
        """An error with details past the client's max_frame_size is still answered."""
        router = Router()

        def big(call: Call) -> bytes:
            raise StatusError(StatusCode.NOT_FOUND, "missing", details=b"d" * (2 * 1024 * 1024))

        router.add("big", big)
        pair = connected_pair(router, client_limits=Limits(max_frame_size=1024 * 1024))
        d = pair.client.call("big")
        pair.pump()
        # _send_error: "never raises (the core makes any status, message and
        # details fit the wire)"; instead the LocalProtocolError is swallowed
        # and the request stays in conn.in_flight forever.
        self.assertEqual(pair.server.conn.unanswered, 0)
        self.failureResultOf(d, StatusError)


class TimerTests(SynchronousTestCase):
    """No timer outlives its connection; keepalive blames only a peer that could answer."""

    def test_abort_after_close_leaves_no_timer(self) -> None:
        """abort() during an orderly close leaves no abort timer once the connection is lost."""
        router, _ = echo_and_wait_router()
        pair = connected_pair(router)
        pair.client.close()  # schedules the close_timeout abort timer
        pair.client.abort()  # forgets that timer without cancelling it
        pair.pump()
        self.assertIsNotNone(pair.client_protocol.lost)
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_keepalive_not_blamed_for_pong_unread_while_paused(self) -> None:
        """A PONG sent while we were not reading is not blamed on the peer as reading resumes."""
        server, transport, _, clock = _server(
            Limits(ping_interval=1.0, ping_timeout=2.0, idle_timeout=None)
        )
        client = Connection(Role.CLIENT, BinaryFormat())
        server.dataReceived(client.data_to_send())
        clock.advance(1.0)
        client.receive_data(transport.value())
        events = []
        while (event := client.next_event()) is not None:
            events.append(event)
        self.assertEqual(events[-1], Ping(payload=b"\0" * 8))
        clock.advance(0.5)
        transport.producer.pauseProducing()  # we stop reading: the PONG waits in the kernel
        self.assertEqual(transport.producerState, "paused")
        clock.advance(1.4)
        transport.producer.resumeProducing()  # reading again; the PONG is not read yet
        clock.advance(0.1)
        # We were not reading for 1.4 of the 2 s; the peer had no chance.
        self.assertFalse(transport.disconnecting)

    def test_client_without_handshake_runs_one_liveness_timer(self) -> None:
        """A client on a keepalive format without handshake has one liveness timer, none after."""

        class NoHandshakeBinary:
            """The binary format, announced as having no handshake (a user's format)."""

            name = "no-handshake"
            multiplexed = True

            def codec(self, role: Role, limits: Limits) -> Any:
                inner = BinaryFormat().codec(role, limits)

                class Codec:
                    handshake = False
                    keepalive = True

                    def __getattr__(self, name: str) -> Any:
                        return getattr(inner, name)

                return Codec()

        clock = MemoryReactorClock()
        protocol = ClientProtocol(
            wire=NoHandshakeBinary(), limits=Limits(ping_interval=1.0), clock=clock
        )
        protocol.makeConnection(StringTransport())  # type: ignore[no-untyped-call]
        # connectionMade fires ready (Liveness.handshake_done schedules a
        # timer), then calls Liveness.start(), which schedules a second.
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        protocol.connectionLost()
        self.assertEqual(clock.getDelayedCalls(), [])


class RefusalTests(SynchronousTestCase):
    """Every refusal behaves as documented."""

    def test_per_peer_refusal_silent_peer_closed_after_two_seconds(self) -> None:
        """A silent peer refused by max_connections_per_peer is closed after 2 s."""
        clock = MemoryReactorClock()
        router, _ = echo_and_wait_router()
        factory = ServerFactory(router, limits=Limits(max_connections_per_peer=1), clock=clock)
        first = factory.buildProtocol(_PEER)
        first.makeConnection(StringTransport(peerAddress=_PEER))
        refused = factory.buildProtocol(_PEER)
        transport = StringTransport(peerAddress=_PEER)
        refused.makeConnection(transport)
        self.assertIsNotNone(refused.refusal)
        # operating-limits.md: max_connections_per_peer is "as
        # max_connections", whose silent refused peer "is closed after 2 s";
        # the 2 s handshake timeout is chosen in __init__, before the
        # per-peer refusal is known, so this one waits preface_timeout (10 s).
        clock.advance(2.0)
        self.assertTrue(transport.disconnecting)


class ClientGoawayTests(SynchronousTestCase):
    """The client reports a server's GOAWAY as documented."""

    def test_new_call_after_goaway_fails_at_once_at_max_concurrent(self) -> None:
        """After GOAWAY a new call fails at once, retry-safe, even at MAX_CONCURRENT pending."""
        router, _ = echo_and_wait_router()
        pair = connected_pair(router, limits=Limits(max_concurrent=1))
        pair.client.call("wait")
        pair.pump()
        pair.factory.drain(grace=100.0)
        pair.pump()
        self.assertIsNotNone(pair.client_protocol.conn.peer_goaway)
        # guide.md: calls the server did not accept "fail at once with a
        # retry-safe ConnectionClosed, and so do new calls".  This one sits
        # in the queue until the running call finishes.
        error = self.failureResultOf(pair.client.call("echo", b"x"), ConnectionClosed).value
        self.assertTrue(error.retry_safe)

    def test_server_goaway_reason_reaches_pending_calls(self) -> None:
        """When the server gives up on the connection, pending calls carry its GOAWAY reason."""
        router, _ = echo_and_wait_router()
        pair = connected_pair(
            router,
            limits=Limits(ping_interval=1.0, ping_timeout=2.0),
            client_limits=Limits(ping_interval=None),
        )
        d = pair.client.call("wait")
        pair.pump()
        pair.clock.advance(1.0)  # the server PINGs; the client's PONG is lost
        _server_to_client_only(pair)
        pair.clock.advance(2.0)  # the server gives up: GOAWAY UNAVAILABLE, close
        self.assertTrue(pair.server_transport.disconnecting)
        _server_to_client_only(pair)
        pair.disconnect()
        # operating-limits.md, ping_timeout: "the client's pending calls fail
        # with ConnectionClosed carrying that message".  They say only
        # "connection lost before the answer".
        error = self.failureResultOf(d, ConnectionClosed).value
        self.assertIn("did not answer a PING", error.message)


class HalfClosedPeerTests(SynchronousTestCase):
    """A peer that half-closes may be gone: the server probes, never gives up on it."""

    def test_probes_after_eof_without_giving_up(self) -> None:
        """After EOF with a request running, PINGs go out every interval; no ping timeout."""
        server, transport, waiting, clock = _server(Limits(ping_interval=1.0, ping_timeout=2.0))
        client = Connection(Role.CLIENT, BinaryFormat())
        client.send_request("wait")
        server.dataReceived(client.data_to_send())
        server.readConnectionLost()
        client.receive_data(transport.value())
        transport.clear()
        while client.next_event() is not None:
            pass
        for _ in range(5):
            clock.advance(1.0)
        client.receive_data(transport.value())
        pings = []
        while (event := client.next_event()) is not None:
            pings.append(event)
        self.assertEqual(pings, [Ping(payload=b"\0" * 8)] * 5)
        self.assertFalse(transport.disconnecting)
        waiting[0].callback(b"done")
        self.assertTrue(transport.disconnecting)


class QueuedDeadlineTests(SynchronousTestCase):
    """A queued call sends what is left of its deadline, not what it was."""

    def test_deadline_counts_time_queued(self) -> None:
        """A 10 s call queued for 4 s leaves with a deadline of 6,000 ms."""
        router, waiting = echo_and_wait_router()
        deadlines: list[float | None] = []

        @router.method("remaining")
        def remaining(call: Call) -> bytes:
            deadlines.append(call.time_remaining())
            return b""

        pair = connected_pair(router, limits=Limits(max_concurrent=1, ping_interval=None))
        first = pair.client.call("wait")
        queued = pair.client.call("remaining", timeout=10.0)
        pair.pump()
        pair.clock.advance(4.0)
        waiting[0].callback(b"")
        pair.pump()
        self.successResultOf(first)
        self.successResultOf(queued)
        self.assertEqual(deadlines, [6.0])
