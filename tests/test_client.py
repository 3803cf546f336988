"""
The client adapter: calls never raise, every pending call fails when the
connection goes, timeouts and cancels share one path, GOAWAY is surfaced.
"""

from __future__ import annotations

from helpers import echo_and_wait_router as _router
from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import (
    CodecError,
    ConnectionClosed,
    DeadlineExceeded,
    Limits,
    Router,
    StatusCode,
    StatusError,
)
from twisted_reqresp.codecs import JSON
from twisted_reqresp.testing import connected_pair


class CallTests(SynchronousTestCase):
    """What a call's Deferred does in each outcome."""

    def test_many_concurrent_calls_share_one_connection(self) -> None:
        """A hundred calls in flight at once each get their own answer."""
        router, _ = _router()
        pair = connected_pair(router)
        calls = [pair.client.call("echo", str(i).encode()) for i in range(100)]
        pair.pump()
        self.assertEqual(
            [self.successResultOf(d).body for d in calls], [str(i).encode() for i in range(100)]
        )
        self.assertEqual(pair.client_protocol.pending, {})

    def test_timeout(self) -> None:
        """A call with no answer by its timeout fails with DeadlineExceeded and sends CANCEL."""
        router, waiting = _router()
        pair = connected_pair(router)
        d = pair.client.call("wait", timeout=0.5)
        pair.pump()
        pair.clock.advance(0.5)
        failure = self.failureResultOf(d, DeadlineExceeded)
        self.assertEqual(failure.value.code, StatusCode.DEADLINE_EXCEEDED)
        self.assertIsInstance(failure.value, TimeoutError)
        pair.pump()
        self.assertTrue(waiting[0].called)
        pair.disconnect()
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_default_timeout(self) -> None:
        """The client's default timeout applies when a call gives none."""
        router, _ = _router()
        pair = connected_pair(router, timeout=3.0)
        d = pair.client.call("wait")
        pair.pump()
        pair.clock.advance(3.0)
        self.failureResultOf(d, DeadlineExceeded)
        pair.pump()

    def test_answer_cancels_timer(self) -> None:
        """An answered call leaves no timer behind."""
        router, _ = _router()
        pair = connected_pair(router)
        d = pair.client.call("echo", b"x", timeout=5)
        pair.pump()
        self.successResultOf(d)
        pair.disconnect()
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_cancel(self) -> None:
        """Cancelling fails the call with CancelledError and forgets it."""
        router, _ = _router()
        pair = connected_pair(router)
        d = pair.client.call("wait")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(pair.client_protocol.pending, {})

    def test_codec_decodes_answer(self) -> None:
        """The call's codec encodes the body and decodes the answer."""
        router = Router()
        router.add("j", lambda call: {"got": call.body}, codec=JSON)
        pair = connected_pair(router, codec=JSON)
        d = pair.client.call("j", [1, "two"])
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, {"got": [1, "two"]})

    def test_no_body_with_a_codec(self) -> None:
        """A call without a body sends an empty body whatever the codec."""
        router = Router()
        router.add("none", lambda call: {"got": call.body}, codec=JSON)
        pair = connected_pair(router, codec=JSON)
        d = pair.client.call("none")
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, {"got": None})

    def test_unencodable_body_fails_not_raises(self) -> None:
        """A body the codec cannot encode fails the Deferred; call does not raise."""
        router, _ = _router()
        pair = connected_pair(router)
        d = pair.client.call("echo", object())
        self.failureResultOf(d, CodecError)

    def test_request_too_large(self) -> None:
        """A request above the server's max frame size fails locally with RESOURCE_EXHAUSTED."""
        router, _ = _router()
        pair = connected_pair(router, limits=Limits(max_frame_size=1024))
        self.assertEqual(pair.client.server_settings.max_frame_size, 1024)
        d = pair.client.call("echo", b"x" * 2000)
        error = self.failureResultOf(d, StatusError).value
        self.assertEqual(error.code, StatusCode.RESOURCE_EXHAUSTED)
        d2 = pair.client.call("echo", b"small")
        pair.pump()
        self.assertEqual(self.successResultOf(d2).body, b"small")

    def test_bad_metadata_fails_not_raises(self) -> None:
        """Metadata that is not text fails the Deferred."""
        router, _ = _router()
        pair = connected_pair(router)
        d = pair.client.call("echo", metadata={"k": 1})  # type: ignore[dict-item]
        self.failureResultOf(d, TypeError)

    def test_ping(self) -> None:
        """ping() fires with the round-trip time measured on the clock."""
        router, _ = _router()
        pair = connected_pair(router)
        d = pair.client.ping()
        pair.clock.advance(0.25)
        pair.pump()
        self.assertEqual(self.successResultOf(d), 0.25)


class ConnectionEndTests(SynchronousTestCase):
    """Closing and losing the connection."""

    def test_lost_fails_all_pending(self) -> None:
        """Every pending call fails with ConnectionClosed the moment the connection drops."""
        router, _ = _router()
        pair = connected_pair(router)
        calls = [pair.client.call("wait") for _ in range(3)]
        pair.pump()
        ping = pair.client.ping()
        pair.disconnect(Failure(ConnectionLost()))
        for d in calls:
            error = self.failureResultOf(d, ConnectionClosed).value
            self.assertEqual(error.code, StatusCode.UNAVAILABLE)
            self.assertIsInstance(error.reason.value, ConnectionLost)
        self.failureResultOf(ping, ConnectionClosed)

    def test_call_after_loss_fails(self) -> None:
        """A call after the connection dropped fails at once, without raising."""
        router, _ = _router()
        pair = connected_pair(router)
        pair.disconnect()
        self.failureResultOf(pair.client.call("echo"), ConnectionClosed)
        self.failureResultOf(pair.client.ping(), ConnectionClosed)

    def test_close_is_orderly(self) -> None:
        """close() refuses new calls, lets pending ones finish, then closes."""
        router, waiting = _router()
        pair = connected_pair(router)
        d = pair.client.call("wait")
        pair.pump()
        closed = pair.client.close()
        self.failureResultOf(pair.client.call("echo"), ConnectionClosed)
        pair.pump()
        self.assertNoResult(closed)
        waiting[0].callback(b"done")
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, b"done")
        self.assertIsNone(self.successResultOf(closed))
        self.assertEqual(pair.factory.stats.connections_open, 0)

    def test_server_close_seen(self) -> None:
        """The client sees the server close the connection."""
        router, _ = _router()
        pair = connected_pair(router)
        noticed = pair.client.when_closed()
        closed = pair.client.close()
        pair.server_transport.loseConnection()
        pair.pump()
        self.successResultOf(closed)
        self.successResultOf(noticed)
        self.successResultOf(pair.client.when_closed())
        self.assertIsNotNone(pair.client_protocol.lost)

    def test_goaway(self) -> None:
        """After GOAWAY, accepted calls complete, unaccepted ones and new ones fail retry-safe."""
        router, waiting = _router()
        pair = connected_pair(router)
        accepted = pair.client.call("wait")
        pair.pump()
        pair.server.conn.send_goaway(message="maintenance")
        not_accepted = pair.client.call("wait")  # crosses the GOAWAY on the wire
        pair.server_transport.write(pair.server.conn.data_to_send())
        pair.pump()
        error = self.failureResultOf(not_accepted, ConnectionClosed).value
        self.assertTrue(error.retry_safe)
        self.assertIn("maintenance", error.message)
        new = self.failureResultOf(pair.client.call("echo"), ConnectionClosed).value
        self.assertEqual(new.code, StatusCode.UNAVAILABLE)
        self.assertTrue(new.retry_safe)
        waiting[0].callback(b"finished")
        pair.pump()
        self.assertEqual(self.successResultOf(accepted).body, b"finished")

    def test_handshake_failure(self) -> None:
        """A connection lost before SETTINGS fails when_ready with ConnectionClosed."""
        from twisted.internet.testing import MemoryReactorClock, StringTransport

        from twisted_reqresp import BINARY
        from twisted_reqresp._adapters.client_protocol import ClientProtocol

        protocol = ClientProtocol(wire=BINARY, limits=Limits(), clock=MemoryReactorClock())
        protocol.makeConnection(StringTransport())
        ready = protocol.when_ready()
        protocol.connectionLost(Failure(ConnectionLost()))
        self.failureResultOf(ready, ConnectionClosed)
        self.failureResultOf(protocol.when_ready(), ConnectionClosed)

    def test_text_refusal_is_reported(self) -> None:
        """A server that answers the preface with a line of text has that line reported."""
        from twisted.internet.testing import MemoryReactorClock, StringTransport

        from twisted_reqresp import BINARY
        from twisted_reqresp._adapters.client_protocol import ClientProtocol

        protocol = ClientProtocol(wire=BINARY, limits=Limits(), clock=MemoryReactorClock())
        transport = StringTransport()
        protocol.makeConnection(transport)
        ready = protocol.when_ready()
        protocol.dataReceived(b"reqresp: unsupported protocol version 1; this server speaks 2\r\n")
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(ConnectionLost()))
        error = self.failureResultOf(ready, ConnectionClosed).value
        self.assertIn("unsupported protocol version", error.message)
        protocol.liveness.stop()
