"""
Timeouts, keepalive, connection limits, deadline caps, graceful drain and
the client's bounded call queue.
"""

from __future__ import annotations

from typing import Any

from helpers import echo_and_wait_router as _router
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import (
    DEFAULT_LIMITS,
    ConnectionClosed,
    DeadlineExceeded,
    Limits,
    RemoteError,
    Router,
    ServerFactory,
    StatusCode,
    StatusError,
)
from twisted_reqresp._core.binary import PREFACE
from twisted_reqresp.testing import connected_pair
from twisted_reqresp.wire import BinaryCodec, GoAway, Role


def _raw_server(
    limits: Limits = DEFAULT_LIMITS,
    host: str = "127.0.0.1",
) -> tuple[ServerFactory, Any, StringTransport, MemoryReactorClock]:
    clock = MemoryReactorClock()
    router, _ = _router()
    factory = ServerFactory(router, limits=limits, clock=clock)
    peer = IPv4Address("TCP", host, 40000)
    protocol = factory.buildProtocol(peer)
    transport = StringTransport(peerAddress=peer)
    protocol.makeConnection(transport)
    return factory, protocol, transport, clock


def _frames(data: bytes) -> list[Any]:
    codec = BinaryCodec(Role.CLIENT, Limits())
    codec.receive_data(data)
    events = []
    while (event := codec.next_event()) is not None:
        events.append(event)
    return events


class TimeoutTests(SynchronousTestCase):
    """Handshake and idle timeouts close connections that hold a socket for nothing."""

    def test_preface_timeout(self) -> None:
        """A peer that never sends the preface is told why and closed."""
        _, _, transport, clock = _raw_server()
        clock.advance(9.9)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"reqresp: no handshake within 10 s\r\n")

    def test_slowloris_preface(self) -> None:
        """Trickling the preface one byte a second does not extend the handshake timeout."""
        _, protocol, transport, clock = _raw_server()
        for byte in PREFACE[:8]:
            protocol.dataReceived(bytes([byte]))
            clock.advance(1.0)
        clock.advance(2.0)
        self.assertTrue(transport.disconnecting)

    def test_idle_timeout(self) -> None:
        """A connection with nothing in flight and no messages is closed with GOAWAY OK."""
        router, _ = _router()
        pair = connected_pair(router, limits=Limits(idle_timeout=30.0, ping_interval=None))
        pair.clock.advance(29.0)
        d = pair.client.call("echo", b"x")
        pair.pump()
        self.successResultOf(d)
        pair.clock.advance(29.0)
        pair.pump()
        self.assertFalse(pair.server_transport.disconnecting)
        pair.clock.advance(1.0)
        pair.pump()
        self.assertIsNotNone(pair.client_protocol.lost)
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_idle_despite_keepalive(self) -> None:
        """Keepalive PINGs and PONGs do not keep an idle connection open."""
        router, _ = _router()
        limits = Limits(idle_timeout=30.0, ping_interval=10.0, ping_timeout=5.0)
        pair = connected_pair(router, limits=limits, client_limits=limits)
        for _ in range(40):
            pair.clock.advance(1.0)
            pair.pump()
        self.assertIsNotNone(pair.client_protocol.lost)
        self.assertEqual(pair.factory.stats.connections_open, 0)

    def test_busy_connection_not_idle(self) -> None:
        """A connection waiting on a slow responder is not idle."""
        router, waiting = _router()
        pair = connected_pair(router, limits=Limits(idle_timeout=5.0, ping_interval=None))
        d = pair.client.call("wait")
        pair.pump()
        pair.clock.advance(20.0)
        pair.pump()
        self.assertIsNone(pair.client_protocol.lost)
        waiting[0].callback(b"done")
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, b"done")


class KeepaliveTests(SynchronousTestCase):
    """Either side pings a quiet peer and gives up on a dead one."""

    def test_server_pings_and_client_answers(self) -> None:
        """A live client answers the server's PING and stays connected."""
        router, _ = _router()
        limits = Limits(ping_interval=10.0, ping_timeout=5.0, idle_timeout=None)
        pair = connected_pair(router, limits=limits, client_limits=Limits(ping_interval=None))
        for _ in range(5):
            pair.clock.advance(10.0)
            pair.pump()
        self.assertIsNone(pair.client_protocol.lost)

    def test_dead_client(self) -> None:
        """A client that stops answering is closed after the ping timeout."""
        router, _ = _router()
        limits = Limits(ping_interval=10.0, ping_timeout=5.0, idle_timeout=None)
        pair = connected_pair(router, limits=limits, client_limits=Limits(ping_interval=None))
        pair.clock.advance(10.0)  # the server pings; nobody pumps the answer back
        pair.clock.advance(5.0)
        self.assertTrue(pair.server_transport.disconnecting)
        self.assertEqual(pair.factory.stats.connections_open, 1)
        pair.pump()
        self.assertEqual(pair.factory.stats.connections_open, 0)

    def test_dead_server_fails_pending_calls(self) -> None:
        """A client whose server stops answering fails its calls with a clear error."""
        router, _ = _router()
        client_limits = Limits(ping_interval=10.0, ping_timeout=5.0)
        pair = connected_pair(router, client_limits=client_limits)
        d = pair.client.call("wait")
        pair.pump()
        pair.clock.advance(10.0)  # the client pings; nobody delivers it
        pair.clock.advance(5.0)
        self.assertTrue(pair.client_transport.disconnecting)
        pair.disconnect()
        error = self.failureResultOf(d, ConnectionClosed).value
        self.assertIn("did not answer a PING", error.message)


class ConnectionLimitTests(SynchronousTestCase):
    """Connection limits refuse newcomers clearly and spare the others."""

    def test_max_connections(self) -> None:
        """Past max_connections a client is refused with RESOURCE_EXHAUSTED; others keep working."""
        router, _ = _router()
        clock = MemoryReactorClock()
        factory = ServerFactory(router, limits=Limits(max_connections=1), clock=clock)
        first = connected_pair(router, factory=factory, clock=clock)
        second = connected_pair(router, factory=factory, clock=clock)
        ready = second.client_protocol.when_ready()
        second.pump()
        error = self.failureResultOf(ready, ConnectionClosed).value
        self.assertIn("too many connections", error.message)
        self.assertEqual(factory.stats.connections_refused, 1)
        d = first.client.call("echo", b"still here")
        first.pump()
        self.assertEqual(self.successResultOf(d).body, b"still here")

    def test_refusal_is_a_goaway(self) -> None:
        """A refused binary client reads a GOAWAY, not SETTINGS."""
        factory, _, _, _ = _raw_server(Limits(max_connections=1))
        second = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40001))
        second_transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40001))
        second.makeConnection(second_transport)
        second.dataReceived(PREFACE)
        events = _frames(second_transport.value())
        self.assertEqual(len(events), 1)
        self.assertIsInstance(events[0], GoAway)
        self.assertEqual(events[0].code, StatusCode.RESOURCE_EXHAUSTED)
        self.assertTrue(second_transport.disconnecting)

    def test_per_peer_limit_counts_by_address(self) -> None:
        """The per-peer limit counts each peer address separately."""
        limits = Limits(max_connections_per_peer=1)
        factory, _, _, _ = _raw_server(limits)
        protocols = []
        for host, port in (("127.0.0.2", 1), ("127.0.0.1", 2)):
            address = IPv4Address("TCP", host, port)
            protocol = factory.buildProtocol(address)
            protocol.makeConnection(StringTransport(peerAddress=address))
            protocols.append(protocol)
        other, same = protocols
        self.assertIsNone(other.refusal)
        self.assertIsNotNone(same.refusal)
        self.assertEqual(factory.stats.connections_refused, 1)

    def test_refused_connection_times_out_fast(self) -> None:
        """A refused peer that says nothing is closed within two seconds."""
        factory, _, _, clock = _raw_server(Limits(max_connections=1))
        refused = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 2))
        transport = StringTransport()
        refused.makeConnection(transport)
        clock.advance(2.0)
        self.assertTrue(transport.disconnecting)


class DeadlineCapTests(SynchronousTestCase):
    """The server caps the deadlines clients ask for."""

    def test_max_deadline_caps_and_defaults(self) -> None:
        """With max_deadline, requests with a longer or no deadline get the cap."""
        router = Router()
        router.add("left", lambda call: repr(call.time_remaining()).encode())
        pair = connected_pair(router, limits=Limits(max_deadline=2.0))
        long = pair.client.call("left", timeout=60)
        none = pair.client.call("left")
        short = pair.client.call("left", timeout=1)
        pair.pump()
        self.assertEqual(
            [self.successResultOf(d).body for d in (long, none, short)],
            [b"2.0", b"2.0", b"1.0"],
        )

    def test_capped_deadline_expires(self) -> None:
        """A request without a deadline is answered DEADLINE_EXCEEDED at the cap."""
        router, waiting = _router()
        pair = connected_pair(router, limits=Limits(max_deadline=2.0))
        d = pair.client.call("wait")
        pair.pump()
        pair.clock.advance(2.0)
        pair.pump()
        error = self.failureResultOf(d, DeadlineExceeded).value
        self.assertEqual(error.code, StatusCode.DEADLINE_EXCEEDED)
        self.assertIn("at the server", error.message)
        self.assertTrue(waiting[0].called)


class DrainTests(SynchronousTestCase):
    """Graceful drain answers what was accepted and refuses the rest, retry-safe."""

    def test_drain_finishes_accepted_calls(self) -> None:
        """Calls accepted before drain complete; the connection closes after the last answer."""
        router, waiting = _router()
        pair = connected_pair(router)
        accepted = [pair.client.call("wait") for _ in range(3)]
        pair.pump()
        drained = pair.factory.drain()
        pair.pump()
        late = self.failureResultOf(pair.client.call("echo"), ConnectionClosed).value
        self.assertTrue(late.retry_safe)
        self.assertNoResult(drained)
        for d in waiting:
            d.callback(b"ok")
        pair.pump()
        self.assertEqual([self.successResultOf(d).body for d in accepted], [b"ok"] * 3)
        self.successResultOf(drained)
        self.assertIsNotNone(pair.client_protocol.lost)
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_requests_crossing_goaway(self) -> None:
        """A request that crosses the GOAWAY is answered UNAVAILABLE, retry-safe."""
        router, waiting = _router()
        pair = connected_pair(router)
        first = pair.client.call("wait")
        pair.pump()
        pair.factory.drain()
        crossing = pair.client.call("echo", b"x")  # the GOAWAY is not delivered yet
        pair.pump()
        error = self.failureResultOf(crossing, StatusError).value
        self.assertEqual(error.code, StatusCode.UNAVAILABLE)
        self.assertTrue(error.retry_safe)
        waiting[0].callback(b"fine")
        pair.pump()
        self.assertEqual(self.successResultOf(first).body, b"fine")

    def test_grace_period(self) -> None:
        """At grace expiry a running call is answered UNAVAILABLE, not retry-safe, then closed."""
        router, _ = _router()
        pair = connected_pair(router)
        d = pair.client.call("wait")
        pair.pump()
        drained = pair.factory.drain(grace=5.0)
        pair.pump()
        pair.clock.advance(5.0)
        pair.pump()
        error = self.failureResultOf(d, RemoteError).value
        self.assertEqual(error.code, StatusCode.UNAVAILABLE)
        self.assertFalse(error.retry_safe)
        self.assertIn("stopped before the request finished", error.message)
        self.successResultOf(drained)
        self.assertEqual(pair.factory.connections, set())
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_draining_factory_refuses(self) -> None:
        """A connection arriving during drain is refused with UNAVAILABLE."""
        router, _ = _router()
        clock = MemoryReactorClock()
        factory = ServerFactory(router, clock=clock)
        factory.drain()
        pair_ready = connected_pair(router, factory=factory, clock=clock)
        ready = pair_ready.client_protocol.when_ready()
        self.assertIn("shutting down", self.failureResultOf(ready, ConnectionClosed).value.message)


class ClientQueueTests(SynchronousTestCase):
    """A client whose server stops reading queues calls, boundedly."""

    def test_queue_while_paused(self) -> None:
        """Calls made while the write buffer is full wait, then go out in order."""
        router, _ = _router()
        pair = connected_pair(router, client_limits=Limits(max_queued_calls=2))
        pair.client_transport.producer.pauseProducing()
        a = pair.client.call("echo", b"a")
        b = pair.client.call("echo", b"b")
        c = pair.client.call("echo", b"c")
        error = self.failureResultOf(c, StatusError).value
        self.assertEqual(error.code, StatusCode.RESOURCE_EXHAUSTED)
        self.assertTrue(error.retry_safe)
        pair.pump()
        self.assertNoResult(a)
        pair.client_transport.producer.resumeProducing()
        pair.pump()
        self.assertEqual([self.successResultOf(d).body for d in (a, b)], [b"a", b"b"])

    def test_cancel_queued_and_timeout(self) -> None:
        """A queued call can be cancelled or time out without ever being sent."""
        router, _ = _router()
        pair = connected_pair(router)
        pair.client_transport.producer.pauseProducing()
        a = pair.client.call("echo", b"a")
        b = pair.client.call("echo", b"b", timeout=1.0)
        a.cancel()
        self.failureResultOf(a, CancelledError)
        pair.clock.advance(1.0)
        self.assertEqual(list(pair.client_protocol.queued), [])
        pair.client_transport.producer.resumeProducing()
        pair.pump()
        self.assertEqual(pair.server.conn.last_request_id, 0)
        self.failureResultOf(b)

    def test_queued_calls_fail_on_loss(self) -> None:
        """Queued calls fail retry-safe when the connection drops."""
        router, _ = _router()
        pair = connected_pair(router)
        pair.client_transport.producer.pauseProducing()
        d = pair.client.call("echo")
        pair.disconnect()
        self.assertTrue(self.failureResultOf(d, ConnectionClosed).value.retry_safe)
