"""
The connection lifecycle (issue 7): control frames are always read, the
concurrency limit parks requests instead of pausing the socket, every close
goes through one operation that unregisters the producer and aborts a peer
that will not read, half-closes are answered, timers run on their own
schedules, grace expiry is visible, and the client keeps its promises.

In memory (``StringTransport`` and a ``Clock``); the same behaviour over
real sockets, TLS and ``nc`` is in the end-to-end tests.
"""

from __future__ import annotations

from typing import Any

from helpers import PEER as _PEER
from helpers import RawClient as _RawClient
from helpers import echo_and_wait_router
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import (
    ConnectionClosed,
    DeadlineExceeded,
    Limits,
    Router,
    ServerFactory,
    StatusCode,
    StatusError,
)
from twisted_reqresp._adapters.client import ClientFactory, connect
from twisted_reqresp._adapters.lifecycle import TransportLifecycle
from twisted_reqresp.testing import connected_pair
from twisted_reqresp.wire import (
    BinaryFormat,
    Connection,
    ErrorResponse,
    GoAway,
    LineFormat,
    Ping,
    Pong,
    Response,
    Role,
)


def RawClient(test: SynchronousTestCase, factory: ServerFactory) -> _RawClient:
    """A raw binary client, its handshake checked: the server's SETTINGS alone."""
    client = _RawClient(factory)
    test.assertEqual(client.greeting, [client.conn.peer_settings])
    return client


def _factory(limits: Limits, router: Router | None = None) -> tuple[ServerFactory, Any, Any]:
    if router is None:
        router, waiting = echo_and_wait_router()
    else:
        waiting = None
    clock = MemoryReactorClock()
    return ServerFactory(router, limits=limits, clock=clock), waiting, clock


class ControlFramesTests(SynchronousTestCase):
    """At max_concurrent the server stops starting requests, never reading."""

    def test_ping_answered_past_the_limit(self) -> None:
        """A PING sent behind more requests than MAX_CONCURRENT gets its PONG at once."""
        factory, waiting, _ = _factory(Limits(max_concurrent=2))
        client = RawClient(self, factory)
        for _ in range(5):
            client.request("wait")
        client.conn.send_ping(b"12345678")
        client.send()
        self.assertEqual(client.events(), [Pong(payload=b"12345678")])
        self.assertEqual(len(waiting), 2)
        self.assertEqual(len(client.server.parked), 3)
        self.assertEqual(client.transport.producerState, "producing")

    def test_cancel_of_parked_request_drops_it(self) -> None:
        """A CANCEL of a parked request drops it: it never runs, and nothing answers it."""
        factory, waiting, _ = _factory(Limits(max_concurrent=1))
        client = RawClient(self, factory)
        client.request("wait")
        parked = client.request("echo", b"never")
        client.conn.send_cancel(parked)
        client.send()
        self.assertEqual(client.server.parked, {})
        waiting[0].callback(b"done")
        self.assertEqual(client.events(), [Response(request_id=1, body=b"done")])
        self.assertEqual(client.server.conn.unanswered, 0)

    def test_cancel_of_running_request_cancels_it(self) -> None:
        """A CANCEL of a running request reaches the responder while others are parked."""
        factory, waiting, _ = _factory(Limits(max_concurrent=1))
        client = RawClient(self, factory)
        running = client.request("wait")
        client.request("echo", b"next")
        client.conn.send_cancel(running)
        client.send()
        self.assertTrue(waiting[0].called)
        self.assertNotIn(running, client.server.running)
        # The slot freed starts the parked request.
        self.assertEqual(client.events(), [Response(request_id=2, body=b"next")])

    def test_exactly_max_concurrent_is_well_behaved(self) -> None:
        """A client keeping exactly MAX_CONCURRENT in flight parks nothing and gets PONGs."""
        router, waiting = echo_and_wait_router()
        pair = connected_pair(router, limits=Limits(max_concurrent=3))
        calls = [pair.client.call("wait") for _ in range(3)]
        pair.pump()
        self.assertEqual(len(waiting), 3)
        self.assertEqual(pair.server.parked, {})
        rtt = pair.client.ping()
        pair.pump()
        self.assertEqual(self.successResultOf(rtt), 0.0)
        calls[0].cancel()
        self.failureResultOf(calls[0], CancelledError)
        pair.pump()
        self.assertTrue(waiting[0].called)
        self.assertEqual(len(pair.server.running), 2)
        self.assertEqual(pair.server_transport.producerState, "producing")

    def test_parked_start_in_order(self) -> None:
        """Parked requests start in arrival order as running ones finish."""
        factory, waiting, _ = _factory(Limits(max_concurrent=2))
        client = RawClient(self, factory)
        for _ in range(5):
            client.request("wait")
        for expected in (3, 4, 5):
            self.assertEqual(len(waiting), expected - 1)
            waiting[expected - 3].callback(b"x")
            self.assertEqual(len(waiting), expected)
        self.assertEqual(client.server.parked, {})

    def test_parked_request_past_its_deadline_is_not_run(self) -> None:
        """A parked request whose deadline passed while parked is answered DEADLINE_EXCEEDED."""
        factory, waiting, clock = _factory(Limits(max_concurrent=1))
        client = RawClient(self, factory)
        client.request("wait")
        late = client.request("wait", deadline_ms=1000)
        clock.advance(2.0)
        waiting[0].callback(b"first")
        events = client.events()
        self.assertEqual(events[0], Response(request_id=1, body=b"first"))
        self.assertIsInstance(events[1], ErrorResponse)
        assert isinstance(events[1], ErrorResponse)
        self.assertEqual((events[1].request_id, events[1].code), (late, 4))
        self.assertEqual(len(waiting), 1)  # never started


class ParkedBoundTests(SynchronousTestCase):
    """Reading pauses only when parked bytes pass max_parked_bytes (a documented bound)."""

    def _park(self, body_sizes: list[int], bound: int) -> RawClient:
        factory, _, _ = _factory(Limits(max_concurrent=1, max_parked_bytes=bound))
        client = RawClient(self, factory)
        client.request("wait")
        for size in body_sizes:
            client.request("echo", b"x" * size)
        return client

    def test_below_and_at_the_bound_keeps_reading(self) -> None:
        """Parked bytes at the bound (method + body + 384 each) keep the socket read."""
        size = 384 + len("echo") + 1000
        client = self._park([1000, 1000], bound=2 * size)
        self.assertEqual(client.server._parked_bytes, 2 * size)
        self.assertEqual(client.transport.producerState, "producing")

    def test_above_the_bound_pauses_then_resumes(self) -> None:
        """One byte past the bound pauses reading; it resumes once parked requests start."""
        size = 384 + len("echo") + 1000
        client = self._park([1000, 1001], bound=2 * size)
        self.assertEqual(client.transport.producerState, "paused")
        # PINGs now wait: the documented last resort.
        client.server.running[1].callback(b"first")
        self.assertEqual(client.transport.producerState, "producing")
        self.assertEqual(client.server.parked, {})
        self.assertEqual(len(client.events()), 3)


class ClientConcurrencyTests(SynchronousTestCase):
    """The client honours the server's advertised MAX_CONCURRENT."""

    def test_client_queues_past_server_limit(self) -> None:
        """Calls past the server's MAX_CONCURRENT wait on the client, then go in order."""
        router, waiting = echo_and_wait_router()
        pair = connected_pair(router, limits=Limits(max_concurrent=2))
        self.assertEqual(pair.client.server_settings.max_concurrent, 2)
        calls = [pair.client.call("wait") for _ in range(4)]
        pair.pump()
        self.assertEqual(len(pair.client_protocol.pending), 2)
        self.assertEqual(len(pair.client_protocol.queued), 2)
        self.assertEqual(pair.server.parked, {})
        waiting[0].callback(b"a")
        pair.pump()
        self.assertEqual(len(waiting), 3)
        for d in waiting[1:]:
            d.callback(b"b")
        pair.pump()
        waiting[3].callback(b"c")
        pair.pump()
        self.assertEqual([self.successResultOf(c).body for c in calls], [b"a", b"b", b"b", b"c"])

    def test_queue_bound(self) -> None:
        """Past max_queued_calls a new call fails at once, RESOURCE_EXHAUSTED, retry-safe."""
        router, _ = echo_and_wait_router()
        pair = connected_pair(
            router, limits=Limits(max_concurrent=1), client_limits=Limits(max_queued_calls=2)
        )
        calls = [pair.client.call("wait") for _ in range(3)]
        for call in calls:
            self.assertNoResult(call)
        error = self.failureResultOf(pair.client.call("wait"), StatusError).value
        self.assertEqual(error.code, StatusCode.RESOURCE_EXHAUSTED)
        self.assertTrue(error.retry_safe)
        self.assertIn("MAX_CONCURRENT of 1", error.message)


class CloseOperationTests(SynchronousTestCase):
    """Every close unregisters the producer, then closes, then aborts on a timer."""

    def assertClosing(self, transport: StringTransport, clock: MemoryReactorClock) -> None:
        self.assertIsNone(transport.producer)
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.disconnected)
        clock.advance(Limits().close_timeout or 0)
        self.assertTrue(transport.disconnected, "not aborted after close_timeout")

    def test_protocol_violation(self) -> None:
        """A protocol violation closes through the close operation."""
        factory, _, clock = _factory(Limits())
        client = RawClient(self, factory)
        client.server.dataReceived(b"\xff" * 16)
        self.assertIsInstance(client.events()[-1], GoAway)
        self.assertClosing(client.transport, clock)

    def test_refusal(self) -> None:
        """A refused connection closes through the close operation."""
        factory, _, clock = _factory(Limits(max_connections=1))
        RawClient(self, factory)
        refused = factory.buildProtocol(_PEER)
        transport = StringTransport(peerAddress=_PEER)
        refused.makeConnection(transport)
        refused.dataReceived(b"echo hi\n")
        self.assertClosing(transport, clock)

    def test_idle_timeout(self) -> None:
        """An idle close sends GOAWAY and closes through the close operation."""
        factory, _, clock = _factory(Limits(idle_timeout=5.0, ping_interval=None))
        client = RawClient(self, factory)
        clock.advance(5.0)
        self.assertIsInstance(client.events()[-1], GoAway)
        self.assertClosing(client.transport, clock)

    def test_ping_timeout(self) -> None:
        """A peer that answers no PING is closed through the close operation."""
        factory, _, clock = _factory(Limits(ping_interval=1.0, ping_timeout=2.0))
        client = RawClient(self, factory)
        clock.advance(1.0)
        self.assertIsInstance(client.events()[-1], Ping)
        clock.advance(2.0)
        goaway = client.events()[-1]
        assert isinstance(goaway, GoAway)
        self.assertEqual(goaway.code, StatusCode.UNAVAILABLE)
        self.assertClosing(client.transport, clock)

    def test_grace_expiry(self) -> None:
        """Grace expiry answers running and parked requests, then uses the close operation."""
        factory, _, clock = _factory(Limits(max_concurrent=1, grace=3.0))
        client = RawClient(self, factory)
        client.request("wait")
        client.request("wait")
        factory.drain()
        clock.advance(3.0)
        answers = [e for e in client.events() if isinstance(e, ErrorResponse)]
        self.assertEqual(
            [(a.request_id, a.code, a.retry_safe) for a in answers],
            [(2, StatusCode.UNAVAILABLE, True), (1, StatusCode.UNAVAILABLE, False)],
        )
        self.assertClosing(client.transport, clock)

    def test_client_close(self) -> None:
        """Client.close() unregisters its producer before loseConnection."""
        router, _ = echo_and_wait_router()
        pair = connected_pair(router)
        self.assertIsNotNone(pair.client_transport.producer)
        pair.client.close()
        self.assertClosing(pair.client_transport, pair.clock)

    def test_peer_that_reads_closes_without_abort(self) -> None:
        """A close that completes leaves no abort timer behind."""
        router, _ = echo_and_wait_router()
        pair = connected_pair(router)
        closed = pair.client.close()
        pair.pump()
        self.successResultOf(closed)
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_close_timeout_none_never_aborts(self) -> None:
        """With close_timeout=None a close waits for the transport however long."""
        clock = MemoryReactorClock()
        lifecycle = TransportLifecycle(clock, None, lambda blocked: None)
        transport = StringTransport()
        lifecycle.attach(transport)
        lifecycle.close()
        self.assertTrue(transport.disconnecting)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_close_resumes_a_paused_transport(self) -> None:
        """Closing a transport paused for any reason resumes reading so the close can finish."""
        lifecycle = TransportLifecycle(MemoryReactorClock(), 1.0, lambda blocked: None)
        transport = StringTransport()
        lifecycle.attach(transport)
        lifecycle.pause_reading("parked")
        self.assertEqual(transport.producerState, "paused")
        lifecycle.close()
        self.assertEqual(transport.producerState, "producing")
        self.assertTrue(lifecycle.reading)


class HalfCloseTests(SynchronousTestCase):
    """A peer's half-close is answered, then the connection closes."""

    def _half_close(self, wire: Any, data: bytes) -> tuple[StringTransport, Any, Any]:
        router, waiting = echo_and_wait_router()
        clock = MemoryReactorClock()
        factory = ServerFactory(router, wire=wire, clock=clock)
        server = factory.buildProtocol(_PEER)
        transport = StringTransport(peerAddress=_PEER)
        server.makeConnection(transport)
        server.dataReceived(data)
        server.readConnectionLost()
        return transport, server, waiting

    def test_line_format(self) -> None:
        """Every line read before the half-close is answered, in order, then the server closes."""
        transport, _, waiting = self._half_close(LineFormat(), b"echo a\nwait\necho b\n")
        self.assertEqual(transport.value(), b"OK a\r\n")
        self.assertFalse(transport.disconnecting)
        waiting[0].callback(b"slow")
        self.assertEqual(transport.value(), b"OK a\r\nOK slow\r\nOK b\r\n")
        self.assertTrue(transport.disconnecting)

    def test_binary_format(self) -> None:
        """Binary requests read before the half-close are answered, then the server closes."""
        client = Connection(Role.CLIENT, BinaryFormat())
        client.send_request("wait")
        client.send_request("echo", b"b")
        transport, _, waiting = self._half_close(BinaryFormat(), client.data_to_send())
        self.assertFalse(transport.disconnecting)
        waiting[0].callback(b"a")
        client.receive_data(transport.value())
        events = []
        while (event := client.next_event()) is not None:
            events.append(event)
        self.assertEqual([type(e).__name__ for e in events], ["Settings", "Response", "Response"])
        self.assertTrue(transport.disconnecting)

    def test_idle_half_close_closes_at_once(self) -> None:
        """A half-close with nothing in flight closes at once."""
        transport, server, _ = self._half_close(LineFormat(), b"")
        self.assertTrue(transport.disconnecting)
        server.readConnectionLost()  # Twisted may say it twice: harmless
        self.assertTrue(transport.disconnecting)

    def test_client_sees_server_half_close(self) -> None:
        """A client whose server shuts its write side closes and fails what is pending."""
        router, _ = echo_and_wait_router()
        pair = connected_pair(router)
        d = pair.client.call("wait")
        pair.pump()
        pair.client_protocol.readConnectionLost()
        self.assertTrue(pair.client_transport.disconnecting)
        pair.pump()
        error = self.failureResultOf(d, ConnectionClosed).value
        self.assertIn("closed its side", error.message)


class TimerTests(SynchronousTestCase):
    """Keepalive and idle timeouts start after the handshake, on their own schedule."""

    def test_keepalive_starts_after_handshake(self) -> None:
        """With ping_interval 1 and idle_timeout 3 the first PING goes out at 1 s, not 10 s."""
        factory, _, clock = _factory(Limits(ping_interval=1.0, idle_timeout=3.0))
        client = RawClient(self, factory)
        clock.advance(1.0)
        self.assertEqual(client.events(), [Ping(payload=b"\0" * 8)])
        client.conn.receive_data(b"")
        client.server.dataReceived(client.conn.data_to_send())  # the PONG
        clock.advance(2.0)
        goaway = client.events()[-1]
        assert isinstance(goaway, GoAway)
        self.assertEqual(goaway.message, "idle timeout")

    def test_no_preface_timeout_still_reaps_dead_peer(self) -> None:
        """With preface_timeout=None a peer that stops answering is still reaped by keepalive."""
        factory, _, clock = _factory(
            Limits(preface_timeout=None, ping_interval=1.0, ping_timeout=2.0, idle_timeout=None)
        )
        client = RawClient(self, factory)
        clock.advance(1.0)
        clock.advance(2.0)
        self.assertTrue(client.transport.disconnecting)

    def test_keepalive_spares_busy_connection(self) -> None:
        """A connection busy with long requests whose peer answers PINGs is kept open."""
        router, waiting = echo_and_wait_router()
        limits = Limits(max_concurrent=2, ping_interval=1.0, ping_timeout=2.0)
        pair = connected_pair(router, limits=limits, client_limits=limits)
        calls = [pair.client.call("wait") for _ in range(3)]
        for _ in range(60):
            pair.clock.advance(0.5)
            pair.pump()
        self.assertFalse(pair.server_transport.disconnecting)
        for d in waiting:
            d.callback(b"ok")
        pair.pump()
        waiting[-1].callback(b"ok")
        pair.pump()
        self.assertEqual([self.successResultOf(c).body for c in calls], [b"ok"] * 3)


class ClientPromiseTests(SynchronousTestCase):
    """The client API keeps its promises."""

    def test_sibling_cancelled_by_errback_is_not_fired_twice(self) -> None:
        """When a lost connection fails all calls, an errback that cancels a sibling is safe."""
        router, _ = echo_and_wait_router()
        pair = connected_pair(router)
        first = pair.client.call("wait")
        second = pair.client.call("wait")
        pair.pump()
        errors: list[Any] = []
        first.addErrback(lambda f: (errors.append(f), second.cancel()))
        pair.disconnect()
        self.assertTrue(errors[0].check(ConnectionClosed))
        self.failureResultOf(second, CancelledError)

    def test_goaway_errback_cancelling_sibling(self) -> None:
        """A GOAWAY failing unaccepted calls tolerates an errback that cancels a sibling."""
        router, _ = echo_and_wait_router()
        pair = connected_pair(router)
        first = pair.client.call("wait")
        second = pair.client.call("wait")
        errors: list[Any] = []
        first.addErrback(lambda f: (errors.append(f), second.cancel()))
        # GOAWAY naming no accepted request, before the server reads either.
        goaway = GoAway(last_request_id=0, code=StatusCode.OK, message="bye")
        pair.client_transport.clear()
        pair.client_protocol.dataReceived(
            BinaryFormat().codec(Role.SERVER, Limits()).encode(goaway)
        )
        self.assertTrue(errors[0].check(ConnectionClosed))
        self.failureResultOf(second, CancelledError)

    def test_negative_timeout_fails_the_deferred(self) -> None:
        """call(timeout=-1) fails its Deferred and sends nothing."""
        router, _ = echo_and_wait_router()
        pair = connected_pair(router)
        pair.client_transport.clear()
        for bad in (-1, 0, float("nan"), float("inf"), True):
            self.failureResultOf(pair.client.call("echo", timeout=bad), ValueError)
        self.assertEqual(pair.client_transport.value(), b"")

    def test_bytes_method_on_queued_call(self) -> None:
        """A bytes method name fails its Deferred, even when the call would queue."""
        router, _ = echo_and_wait_router()
        pair = connected_pair(router, limits=Limits(max_concurrent=1))
        pair.client.call("wait")
        self.failureResultOf(pair.client.call(b"echo"), TypeError)  # type: ignore[arg-type]
        pair.client_transport.producer.pauseProducing()
        self.failureResultOf(pair.client.call(b"echo"), TypeError)  # type: ignore[arg-type]

    def test_cancel_connect_during_handshake_closes(self) -> None:
        """Cancelling connect()'s Deferred while waiting for SETTINGS closes the connection."""
        clock = MemoryReactorClock()
        d = connect(clock, _FakeEndpoint(clock), clock=clock)
        transport = _FakeEndpoint.transport
        self.assertNoResult(d)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(transport.disconnecting)

    def test_close_completes_when_last_queued_call_is_cancelled(self) -> None:
        """close() fires once the last queued call is cancelled."""
        router, _ = echo_and_wait_router()
        pair = connected_pair(router)
        pair.client_transport.producer.pauseProducing()
        queued = pair.client.call("echo")
        closed = pair.client.close()
        self.assertNoResult(closed)
        queued.cancel()
        self.failureResultOf(queued, CancelledError)
        pair.pump()
        self.successResultOf(closed)

    def test_close_completes_when_queued_call_times_out(self) -> None:
        """close() fires once the last queued call times out."""
        router, _ = echo_and_wait_router()
        pair = connected_pair(router)
        pair.client_transport.producer.pauseProducing()
        queued = pair.client.call("echo", timeout=1.0)
        closed = pair.client.close()
        self.assertNoResult(closed)
        pair.clock.advance(1.0)
        self.failureResultOf(queued, DeadlineExceeded)
        pair.pump()
        self.successResultOf(closed)

    def test_call_on_closed_connection_is_retry_safe(self) -> None:
        """A call made after the connection closed was never sent: it is retry-safe."""
        router, _ = echo_and_wait_router()
        pair = connected_pair(router)
        pair.disconnect()
        error = self.failureResultOf(pair.client.call("echo"), ConnectionClosed).value
        self.assertTrue(error.retry_safe)

    def test_call_while_closing_is_retry_safe(self) -> None:
        """A call made while the connection closes was never sent: it is retry-safe."""
        router, _ = echo_and_wait_router()
        pair = connected_pair(router)
        pair.client.close()
        error = self.failureResultOf(pair.client.call("echo"), ConnectionClosed).value
        self.assertTrue(error.retry_safe)


class LinePortTests(SynchronousTestCase):
    """A binary client that reaches a line-only port says so."""

    def test_connect_to_line_port(self) -> None:
        """The handshake fails with ConnectionClosed naming the line format, no "broke" blame."""
        clock = MemoryReactorClock()
        protocol = ClientFactory(wire=BinaryFormat(), limits=Limits(), clock=clock).buildProtocol(
            None
        )
        transport = StringTransport()
        protocol.makeConnection(transport)
        ready = protocol.when_ready()
        protocol.dataReceived(b"ERR INVALID_ARGUMENT method name is not valid UTF-8\r\n")
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(ConnectionDone()))
        error = self.failureResultOf(ready, ConnectionClosed).value
        self.assertIn("not a reqresp binary server: it speaks the line format", error.message)
        self.assertNotIn("broke the protocol", error.message)


class _FakeEndpoint:
    """A client endpoint that connects at once to a StringTransport."""

    transport: StringTransport

    def __init__(self, clock: MemoryReactorClock) -> None:
        self.clock = clock

    def connect(self, factory: ClientFactory) -> Deferred[Any]:
        protocol = factory.buildProtocol(None)
        _FakeEndpoint.transport = StringTransport()
        protocol.makeConnection(_FakeEndpoint.transport)
        d: Deferred[Any] = Deferred()
        d.callback(protocol)
        return d
