"""
The server adapter, driven through the public in-memory pair: responders of
every kind, error translation, deadlines, cancellation, per-connection
state and the concurrency and write-buffer brakes.
"""

from __future__ import annotations

from typing import Any

from helpers import echo_and_wait_router as _router
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from twisted_reqresp import (
    Call,
    ConnectionInfo,
    DeadlineExceeded,
    Limits,
    RemoteError,
    Reply,
    Router,
    ServerFactory,
    StatusCode,
    StatusError,
)
from twisted_reqresp.codecs import JSON
from twisted_reqresp.interfaces import IResponder, IResponderFactory
from twisted_reqresp.testing import connected_pair


class ResponderKindsTests(SynchronousTestCase):
    """Every way a responder may answer reaches the client intact."""

    def test_sync_bytes(self) -> None:
        """A plain return value becomes the response body."""
        router, _ = _router()
        pair = connected_pair(router)
        d = pair.client.call("echo", b"hello")
        pair.pump()
        self.assertEqual(self.successResultOf(d), Reply(body=b"hello", metadata={}))

    def test_text_is_utf8(self) -> None:
        """A responder may return text; it is sent as UTF-8."""
        router = Router()
        router.add("hi", lambda call: "héllo")
        pair = connected_pair(router)
        d = pair.client.call("hi")
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, "héllo".encode())

    def test_reply_with_metadata(self) -> None:
        """Metadata travels from client to responder and from responder back."""
        router = Router()
        router.add("md", lambda call: Reply(body=b"", metadata={"seen": call.metadata["k"]}))
        pair = connected_pair(router)
        d = pair.client.call("md", metadata={"k": "v"})
        pair.pump()
        self.assertEqual(self.successResultOf(d).metadata, {"seen": "v"})

    def test_coroutine(self) -> None:
        """An async def responder's return value is the answer."""
        router = Router()

        @router.method("co")
        async def co(call: Call) -> bytes:
            value = await succeed(b"awaited")
            return value + call.body

        pair = connected_pair(router)
        d = pair.client.call("co", b"!")
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, b"awaited!")

    def test_out_of_order(self) -> None:
        """Deferred answers completing in reverse order reach the right calls."""
        router, waiting = _router()
        pair = connected_pair(router)
        calls = [pair.client.call("wait") for _ in range(5)]
        pair.pump()
        self.assertEqual(len(waiting), 5)
        for i, d in reversed(list(enumerate(waiting))):
            d.callback(str(i).encode())
        pair.pump()
        self.assertEqual(
            [self.successResultOf(c).body for c in calls], [b"0", b"1", b"2", b"3", b"4"]
        )

    def test_json_codec(self) -> None:
        """A JSON method gets decoded values and its result is encoded."""
        router = Router()
        router.add("add", lambda call: sum(call.body), codec=JSON)
        pair = connected_pair(router)
        d = pair.client.call("add", [1, 2, 3], codec=JSON)
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, 6)


class ErrorTranslationTests(SynchronousTestCase):
    """Responder failures become status answers and never close the connection."""

    def _call(self, router: Router, method: str, body: bytes = b"") -> Any:
        pair = connected_pair(router)
        d = pair.client.call(method, body)
        pair.pump()
        error = self.failureResultOf(d, RemoteError).value
        # The connection survives: a second call still works.
        if "alive" not in router.methods():
            router.add("alive", lambda call: b"yes")
        d2 = pair.client.call("alive")
        pair.pump()
        self.assertEqual(self.successResultOf(d2).body, b"yes")
        self.assertFalse(pair.server_transport.disconnecting)
        return error

    def test_unknown_method(self) -> None:
        """An unknown method is answered NOT_FOUND."""
        error = self._call(Router(), "nope")
        self.assertEqual(error.code, StatusCode.NOT_FOUND)
        self.assertIn("nope", error.message)

    def test_declared_status(self) -> None:
        """A StatusError keeps its code, message and details."""
        router = Router()

        @router.method("fail")
        def fail(call: Call) -> None:
            raise StatusError(4242, "application says no", b"\x00\x01")

        error = self._call(router, "fail")
        self.assertEqual(
            (error.code, error.message, error.details), (4242, "application says no", b"\x00\x01")
        )

    def test_declared_exception_mapping(self) -> None:
        """An exception type declared with errors= is answered with its status."""
        router = Router()

        def lookup(call: Call) -> bytes:
            raise KeyError("no such user")

        router.add("get", lookup, errors={KeyError: StatusCode.NOT_FOUND})
        error = self._call(router, "get")
        self.assertEqual(error.code, StatusCode.NOT_FOUND)
        self.assertIn("no such user", error.message)

    def _declared(self, error: Exception) -> Any:
        router = Router()

        def lookup(call: Call) -> bytes:
            raise error

        router.add("get", lookup, errors={LookupError: StatusCode.NOT_FOUND, ValueError: 4000})
        return self._call(router, "get")

    def test_key_error_message_is_the_key(self) -> None:
        """A declared KeyError('ada') is answered with the message ada, not the key's repr."""
        error = self._declared(KeyError("ada"))
        self.assertEqual((error.code, error.message), (StatusCode.NOT_FOUND, "ada"))

    def test_key_error_non_text_key(self) -> None:
        """A declared KeyError(42) is answered with the message 42."""
        self.assertEqual(self._declared(KeyError(42)).message, "42")

    def test_key_error_subclass(self) -> None:
        """A subclass of KeyError is answered with its key, as KeyError is."""

        class MissingUser(KeyError):
            pass

        self.assertEqual(self._declared(MissingUser("ada")).message, "ada")

    def test_key_error_many_arguments(self) -> None:
        """A KeyError with several arguments is answered with str() of them, as Python shows it."""
        self.assertEqual(self._declared(KeyError("a", "b")).message, "('a', 'b')")

    def test_empty_message_is_type_name(self) -> None:
        """A declared exception with no text is answered with its type's name."""
        self.assertEqual(self._declared(KeyError()).message, "KeyError")
        self.assertEqual(self._declared(IndexError()).message, "IndexError")

    def test_other_declared_message(self) -> None:
        """Other declared exceptions are answered with str(exception), unchanged."""
        error = self._declared(ValueError("'quoted' stays"))
        self.assertEqual((error.code, error.message), (4000, "'quoted' stays"))

    def test_key_error_from_async_method(self) -> None:
        """A KeyError failing an async method's Deferred is answered with the key too."""
        router = Router()

        async def lookup(call: Call) -> bytes:
            raise KeyError("ada")

        router.add("get", lookup, errors={KeyError: StatusCode.NOT_FOUND})
        error = self._call(router, "get")
        self.assertEqual((error.code, error.message), (StatusCode.NOT_FOUND, "ada"))

    def test_unexpected_exception(self) -> None:
        """An undeclared exception is logged and answered INTERNAL, without the traceback."""
        router = Router()

        @router.method("boom")
        def boom(call: Call) -> None:
            raise ZeroDivisionError("secret detail")

        error = self._call(router, "boom")
        self.assertEqual(error.code, StatusCode.INTERNAL)
        self.assertNotIn("secret", error.message)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_deferred_failure(self) -> None:
        """A Deferred that fails with a StatusError answers with that status."""
        router = Router()
        router.add("late", lambda call: _failed(StatusError(StatusCode.ABORTED, "x")))
        error = self._call(router, "late")
        self.assertEqual(error.code, StatusCode.ABORTED)

    def test_undecodable_body(self) -> None:
        """A body the method's codec cannot decode is answered INVALID_ARGUMENT."""
        router = Router()
        router.add("j", lambda call: call.body, codec=JSON)
        error = self._call(router, "j", b"{not json")
        self.assertEqual(error.code, StatusCode.INVALID_ARGUMENT)

    def test_unencodable_result(self) -> None:
        """A result the codec cannot encode is logged and answered INTERNAL."""
        router = Router()
        router.add("j", lambda call: object(), codec=JSON)
        error = self._call(router, "j", b"1")
        self.assertEqual(error.code, StatusCode.INTERNAL)
        self.assertEqual(len(self.flushLoggedErrors()), 1)

    def test_response_too_large_for_client(self) -> None:
        """An answer above the client's max frame size becomes RESOURCE_EXHAUSTED."""
        router = Router()
        router.add("big", lambda call: b"x" * 5000)
        pair = connected_pair(router, client_limits=Limits(max_frame_size=1024))
        d = pair.client.call("big")
        pair.pump()
        self.assertEqual(
            self.failureResultOf(d, RemoteError).value.code, StatusCode.RESOURCE_EXHAUSTED
        )


def _failed(error: Exception) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.errback(error)
    return d


class DeadlineAndCancelTests(SynchronousTestCase):
    """Deadlines and cancels reach the responder's Deferred on the server."""

    def test_time_remaining(self) -> None:
        """A responder sees how long the caller will still wait."""
        router = Router()
        router.add("left", lambda call: repr(call.time_remaining()).encode())
        pair = connected_pair(router)
        d = pair.client.call("left", timeout=2.5)
        d2 = pair.client.call("left")
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, b"2.5")
        self.assertEqual(self.successResultOf(d2).body, b"None")

    def test_deadline_cancels_coroutine(self) -> None:
        """At the deadline the coroutine sees CancelledError and the caller DEADLINE_EXCEEDED."""
        router = Router()
        seen: list[str] = []
        forever: Deferred[None] = Deferred()

        @router.method("slow")
        async def slow(call: Call) -> bytes:
            try:
                await forever
            except CancelledError:
                seen.append("cancelled")
                raise
            return b""

        pair = connected_pair(router)
        d = pair.client.call("slow", timeout=1.0)
        pair.pump()
        pair.clock.advance(1.0)
        pair.pump()
        self.failureResultOf(d, DeadlineExceeded)
        self.assertEqual(seen, ["cancelled"])
        self.assertEqual(pair.server.running, {})
        pair.disconnect()
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_server_deadline_answer(self) -> None:
        """A server whose deadline passes first answers DEADLINE_EXCEEDED."""
        router, waiting = _router()
        pair = connected_pair(router)
        d = pair.client.protocol.call("wait", timeout=1.0)
        pair.pump()
        self.assertEqual(len(waiting), 1)
        pair.clock.advance(1.0)
        pair.pump()
        self.assertTrue(waiting[0].called)
        # Whichever copy of the deadline fires first, the caller sees one type.
        error = self.failureResultOf(d, DeadlineExceeded).value
        self.assertEqual(error.code, StatusCode.DEADLINE_EXCEEDED)

    def test_cancel_reaches_server(self) -> None:
        """Cancelling a call's Deferred cancels the responder on the server."""
        router, waiting = _router()
        pair = connected_pair(router)
        d = pair.client.call("wait")
        pair.pump()
        d.cancel()
        pair.pump()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(waiting[0].called)
        self.assertEqual(pair.server.running, {})
        self.assertEqual(pair.server.conn.in_flight, set())

    def test_late_answer_dropped(self) -> None:
        """An answer that crosses the CANCEL on the wire is dropped quietly."""
        router, waiting = _router()
        pair = connected_pair(router)
        d = pair.client.call("wait")
        pair.pump()
        waiting[0].callback(b"too late")  # the answer is now on the wire
        d.cancel()
        pair.pump()
        self.failureResultOf(d, CancelledError)
        d2 = pair.client.call("echo", b"still fine")
        pair.pump()
        self.assertEqual(self.successResultOf(d2).body, b"still fine")

    def test_client_disconnect_cancels(self) -> None:
        """When the client goes, the server cancels that connection's running responders."""
        router, waiting = _router()
        pair = connected_pair(router)
        pair.client.call("wait").addErrback(lambda f: None)
        pair.client.call("wait").addErrback(lambda f: None)
        pair.pump()
        pair.disconnect()
        self.assertTrue(all(d.called for d in waiting))
        self.assertEqual(pair.server.running, {})
        self.assertEqual(pair.factory.stats.connections_open, 0)


@implementer(IResponder)
class _Session:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.count = 0

    def connection_made(self, connection: ConnectionInfo) -> None:
        self.log.append(f"made {connection.connection_id}")

    def respond(self, call: Call) -> bytes:
        self.count += 1
        return str(self.count).encode()

    def connection_lost(self, reason: Failure) -> None:
        self.log.append("lost")


@implementer(IResponderFactory)
class _Sessions:
    def __init__(self) -> None:
        self.log: list[str] = []

    def responder_for(self, connection: ConnectionInfo) -> IResponder:
        return _Session(self.log)


class PerConnectionTests(SynchronousTestCase):
    """A responder factory gives each connection its own state."""

    def test_separate_state(self) -> None:
        """Two connections count their calls separately and see made/lost once each."""
        sessions = _Sessions()
        factory = ServerFactory(sessions)
        one = connected_pair(sessions, factory=factory)
        two = connected_pair(sessions, factory=factory)
        results = []
        for pair in (one, one, two):
            d = pair.client.call("count")
            pair.pump()
            results.append(self.successResultOf(d).body)
        self.assertEqual(results, [b"1", b"2", b"1"])
        one.disconnect()
        self.assertEqual(sessions.log, ["made 1", "made 2", "lost"])
        self.assertEqual(factory.stats.connections_total, 2)

    def test_rejects_non_responder(self) -> None:
        """ServerFactory refuses an object that is neither responder nor factory."""
        self.assertRaises(TypeError, ServerFactory, object())


class BackpressureTests(SynchronousTestCase):
    """The server stops reading instead of queueing without bound."""

    def test_write_backpressure_pauses_reading(self) -> None:
        """When the transport's write buffer is full the server reads nothing more."""
        router, _ = _router()
        pair = connected_pair(router)
        pair.server_transport.producer.pauseProducing()
        self.assertEqual(pair.server_transport.producerState, "paused")
        d = pair.client.call("echo", b"x")
        pair.pump()
        self.assertNoResult(d)
        pair.server_transport.producer.resumeProducing()
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, b"x")
