"""
Server and client interceptors, through the public in-memory pair: the
order they compose in, answering and refusing without the responder,
error translation, ``async def`` interceptors, metadata injection,
cancellation and deadlines through the chain, the access log, and the
no-interceptor fast path.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from helpers import echo_and_wait_router
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.defer import TimeoutError as DeferTimeout
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_reqresp import (
    LINE,
    AccessLog,
    Call,
    Client,
    DeadlineExceeded,
    Outcome,
    OutgoingCall,
    RemoteError,
    Reply,
    Router,
    ServerFactory,
    StatusCode,
    StatusError,
    connect,
)
from twisted_reqresp.codecs import JSON
from twisted_reqresp.interfaces import IClientInterceptor, IServerInterceptor
from twisted_reqresp.testing import connected_pair

Proceed = Any


@implementer(IServerInterceptor)
class Recorder:
    """Records when it sees each call and each outcome, and passes both on."""

    def __init__(self, name: str, seen: list[str]) -> None:
        self.name = name
        self.seen = seen
        self.outcomes: list[Outcome] = []

    def intercept(self, call: Call, proceed: Proceed) -> Deferred[Any]:
        self.seen.append(f"{self.name} in")

        def observe(result: Any) -> Any:
            self.seen.append(f"{self.name} out")
            self.outcomes.append(Outcome.of(result))
            return result

        d: Deferred[Any] = proceed(call)
        return d.addBoth(observe)


def _recording_router(seen: list[str]) -> Router:
    router = Router()

    def echo(call: Call) -> bytes:
        seen.append("responder")
        body: bytes = call.body
        return body

    router.add("echo", echo)
    return router


class CompositionTests(SynchronousTestCase):
    """Interceptors compose in order and may answer, refuse or change a call."""

    def test_order_outermost_first(self) -> None:
        """The first interceptor sees the call first and the outcome last."""
        seen: list[str] = []
        pair = connected_pair(
            _recording_router(seen), interceptors=[Recorder("a", seen), Recorder("b", seen)]
        )
        d = pair.client.call("echo", b"hi")
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, b"hi")
        self.assertEqual(seen, ["a in", "b in", "responder", "b out", "a out"])

    def test_plain_callable(self) -> None:
        """A plain callable f(call, proceed) is an interceptor too."""
        seen: list[str] = []

        def shout(call: Call, proceed: Proceed) -> Deferred[Any]:
            seen.append("shout")
            d: Deferred[Any] = proceed(call)
            return d.addCallback(lambda body: body.upper())

        pair = connected_pair(_recording_router(seen), interceptors=[shout])
        d = pair.client.call("echo", b"hi")
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, b"HI")
        self.assertEqual(seen, ["shout", "responder"])

    def test_short_circuit_answer(self) -> None:
        """An interceptor that returns without calling proceed answers; the responder never runs."""
        seen: list[str] = []

        def cached(call: Call, proceed: Proceed) -> Reply:
            return Reply(body=b"cached", metadata={"cache": "hit"})

        pair = connected_pair(_recording_router(seen), interceptors=[cached])
        d = pair.client.call("echo", b"hi")
        pair.pump()
        self.assertEqual(self.successResultOf(d), Reply(body=b"cached", metadata={"cache": "hit"}))
        self.assertEqual(seen, [])

    def test_refusal_with_status_error(self) -> None:
        """A StatusError raised by an interceptor is the answer; the responder never runs."""
        seen: list[str] = []

        def deny(call: Call, proceed: Proceed) -> Any:
            if call.metadata.get("token") != "secret":
                raise StatusError(StatusCode.PERMISSION_DENIED, "no token", details=b"why")
            return proceed(call)

        outer = Recorder("outer", seen)
        pair = connected_pair(_recording_router(seen), interceptors=[outer, deny])
        refused = pair.client.call("echo", b"hi")
        allowed = pair.client.call("echo", b"hi", metadata={"token": "secret"})
        pair.pump()
        error = self.failureResultOf(refused, RemoteError).value
        self.assertEqual(
            (error.code, error.message, error.details),
            (StatusCode.PERMISSION_DENIED, "no token", b"why"),
        )
        self.assertEqual(self.successResultOf(allowed).body, b"hi")
        self.assertEqual(seen.count("responder"), 1)
        # The outer interceptor saw the refusal as an outcome.
        self.assertEqual([o.status for o in outer.outcomes], ["PERMISSION_DENIED", "OK"])

    def test_exception_is_internal_and_logged(self) -> None:
        """An interceptor's unexpected exception is logged and answered INTERNAL, no traceback."""

        def broken(call: Call, proceed: Proceed) -> Any:
            raise ZeroDivisionError("secret detail")

        events = _capture(self, "twisted_reqresp.server")
        pair = connected_pair(_recording_router([]), interceptors=[broken])
        d = pair.client.call("echo", b"hi")
        pair.pump()
        error = self.failureResultOf(d, RemoteError).value
        self.assertEqual((error.code, error.message), (StatusCode.INTERNAL, "internal error"))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(events[-1]["what"], "responder or interceptor")

    def test_failed_deferred_after_proceed_is_internal(self) -> None:
        """An interceptor whose callback raises after the responder answered makes it INTERNAL."""

        def spoil(call: Call, proceed: Proceed) -> Deferred[Any]:
            d: Deferred[Any] = proceed(call)
            return d.addCallback(lambda _: 1 / 0)

        pair = connected_pair(_recording_router([]), interceptors=[spoil])
        d = pair.client.call("echo", b"hi")
        pair.pump()
        self.assertEqual(self.failureResultOf(d, RemoteError).value.code, StatusCode.INTERNAL)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_responder_errors_reach_interceptors(self) -> None:
        """A responder's StatusError reaches the interceptor as a failure, then the client."""
        router = Router()

        def missing(call: Call) -> bytes:
            raise StatusError(StatusCode.NOT_FOUND, "nothing here")

        router.add("missing", missing)
        recorder = Recorder("r", [])
        pair = connected_pair(router, interceptors=[recorder])
        d = pair.client.call("missing")
        pair.pump()
        self.assertEqual(self.failureResultOf(d, RemoteError).value.code, StatusCode.NOT_FOUND)
        [outcome] = recorder.outcomes
        self.assertEqual((outcome.status, outcome.message), ("NOT_FOUND", "nothing here"))
        self.assertEqual(outcome.response_bytes, 0)

    def test_async_interceptor(self) -> None:
        """An async def interceptor may await proceed and change the answer."""
        router, waiting = echo_and_wait_router()

        async def wrap(call: Call, proceed: Proceed) -> Reply:
            body = await proceed(call)
            return Reply(body=b"[" + body + b"]", metadata={"wrapped": "yes"})

        pair = connected_pair(router, interceptors=[wrap])
        d = pair.client.call("wait", b"")
        pair.pump()
        self.assertNoResult(d)
        waiting[0].callback(b"late")
        pair.pump()
        self.assertEqual(
            self.successResultOf(d), Reply(body=b"[late]", metadata={"wrapped": "yes"})
        )

    def test_changed_call_reaches_responder(self) -> None:
        """A changed copy of the call passed to proceed is what the responder sees."""
        router = Router()
        router.add("who", lambda call: call.metadata.get("user", "?").encode())

        def authenticate(call: Call, proceed: Proceed) -> Any:
            return proceed(dataclasses.replace(call, metadata={**call.metadata, "user": "ada"}))

        pair = connected_pair(router, interceptors=[authenticate])
        d = pair.client.call("who")
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, b"ada")

    def test_not_an_interceptor(self) -> None:
        """Something that is neither an interceptor nor callable is a TypeError at once."""
        with self.assertRaises(TypeError) as caught:
            ServerFactory(Router(), interceptors=[42])
        self.assertIn("IServerInterceptor", str(caught.exception))

    def test_access_log_provides_interface(self) -> None:
        """AccessLog provides IServerInterceptor."""
        self.assertTrue(verifyObject(IServerInterceptor, AccessLog()))


class CancelAndDeadlineTests(SynchronousTestCase):
    """A CANCEL and the deadline reach the responder through the chain."""

    def _waiting_responder(self) -> tuple[Router, list[Deferred[Any]], list[bool]]:
        cancelled: list[bool] = []
        waiting: list[Deferred[Any]] = []
        router = Router()

        def wait(call: Call) -> Deferred[Any]:
            d: Deferred[Any] = Deferred(lambda _: cancelled.append(True))
            waiting.append(d)
            return d

        router.add("wait", wait)
        return router, waiting, cancelled

    def test_cancel_reaches_responder(self) -> None:
        """A client's cancel cancels the responder's Deferred under two interceptors."""
        router, _, cancelled = self._waiting_responder()
        outer, inner = Recorder("a", []), Recorder("b", [])
        pair = connected_pair(router, interceptors=[outer, inner])
        d = pair.client.call("wait")
        pair.pump()
        d.cancel()
        pair.pump()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(cancelled, [True])
        self.assertEqual([o.status for o in outer.outcomes + inner.outcomes], ["CANCELLED"] * 2)

    def test_cancel_through_async_interceptor(self) -> None:
        """A cancel reaches the responder through an async def interceptor awaiting proceed."""
        router, _, cancelled = self._waiting_responder()

        async def passing(call: Call, proceed: Proceed) -> Any:
            return await proceed(call)

        pair = connected_pair(router, interceptors=[passing])
        d = pair.client.call("wait")
        pair.pump()
        d.cancel()
        pair.pump()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(cancelled, [True])
        self.assertEqual(pair.server.running, {})

    def test_deadline_reaches_responder(self) -> None:
        """A passed deadline cancels the responder and interceptors see DEADLINE_EXCEEDED."""
        router, _, cancelled = self._waiting_responder()
        seen_deadline: list[float | None] = []

        def note(call: Call, proceed: Proceed) -> Any:
            seen_deadline.append(call.time_remaining())
            return proceed(call)

        recorder = Recorder("r", [])
        pair = connected_pair(router, interceptors=[recorder, note])
        d = pair.client.call("wait", timeout=2.0)
        pair.pump()
        self.assertEqual(seen_deadline, [2.0])
        # The server's copy of the deadline fires first: the same instant,
        # scheduled earlier.
        pair.clock.advance(2.0)
        pair.pump()
        self.failureResultOf(d, DeadlineExceeded)
        self.assertEqual(cancelled, [True])
        [outcome] = recorder.outcomes
        self.assertEqual(outcome.status, "DEADLINE_EXCEEDED")
        self.assertIsInstance(outcome.error, DeferTimeout)
        # Both timers of the deadline (inner and outer) are gone.
        left = [c for c in pair.clock.getDelayedCalls() if "Liveness" not in repr(c)]
        self.assertEqual(left, [])

    def test_shortened_deadline(self) -> None:
        """An interceptor that shortens the call's deadline shortens the responder's time."""
        router, _, cancelled = self._waiting_responder()

        def hurry(call: Call, proceed: Proceed) -> Any:
            return proceed(dataclasses.replace(call, deadline=pair.clock.seconds() + 1.0))

        pair = connected_pair(router, interceptors=[hurry])
        d = pair.client.call("wait", timeout=10.0)
        pair.pump()
        pair.clock.advance(1.0)
        pair.pump()
        self.assertEqual(cancelled, [True])
        # DEADLINE_EXCEEDED from the server, well before the client's own timer.
        self.failureResultOf(d, DeadlineExceeded)

    def test_short_circuit_deferred_still_times_out(self) -> None:
        """An interceptor's own pending answer is cut off by the deadline too."""
        never: Deferred[Any] = Deferred()
        pair = connected_pair(Router(), interceptors=[lambda call, proceed: never])
        d = pair.client.call("anything", timeout=1.0)
        pair.pump()
        pair.clock.advance(1.0)
        pair.pump()
        self.failureResultOf(d, DeadlineExceeded)
        self.assertTrue(never.called)  # cancelled by the deadline
        self.assertEqual(pair.server.running, {})


@implementer(IClientInterceptor)
class AddToken:
    """Adds a metadata token to every outgoing call and records each reply."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[OutgoingCall] = []
        self.results: list[Any] = []

    def intercept(self, call: OutgoingCall, proceed: Proceed) -> Deferred[Reply]:
        call = dataclasses.replace(call, metadata={**call.metadata, "token": self.token})
        self.calls.append(call)

        def observe(result: Any) -> Any:
            self.results.append(result)
            return result

        d: Deferred[Reply] = proceed(call)
        return d.addBoth(observe)


class ClientInterceptorTests(SynchronousTestCase):
    """Client interceptors see each outgoing call and its result."""

    def _token_router(self) -> Router:
        router = Router()
        router.add("token", lambda call: call.metadata.get("token", "-").encode())
        router.add("json", lambda call: {"got": call.body}, codec=JSON)
        return router

    def test_metadata_injection_seen_by_server(self) -> None:
        """Metadata a client interceptor adds reaches the server's responder."""
        token = AddToken("t0k3n")
        pair = connected_pair(self._token_router(), client_interceptors=[token])
        d = pair.client.call("token", metadata={"other": "x"})
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, b"t0k3n")
        [call] = token.calls
        self.assertEqual(call.metadata, {"other": "x", "token": "t0k3n"})
        self.assertEqual(token.results, [Reply(body=b"t0k3n", metadata={})])

    def test_order_and_raw_bytes(self) -> None:
        """The first client interceptor is outermost; interceptors see encoded bytes."""
        seen: list[str] = []

        def named(name: str) -> Any:
            def intercept(call: OutgoingCall, proceed: Proceed) -> Deferred[Reply]:
                seen.append(f"{name} {call.body!r}")
                d: Deferred[Reply] = proceed(call)
                return d.addCallback(lambda reply: seen.append(f"{name} out") or reply)

            return intercept

        pair = connected_pair(self._token_router(), client_interceptors=[named("a"), named("b")])
        d = pair.client.call("json", [1], codec=JSON)
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, {"got": [1]})
        self.assertEqual(seen, ["a b'[1]'", "b b'[1]'", "b out", "a out"])

    def test_errors_reach_client_interceptor(self) -> None:
        """A failed call reaches the client interceptor as a Failure, then the caller."""
        token = AddToken("x")
        pair = connected_pair(self._token_router(), client_interceptors=[token])
        d = pair.client.call("nope")
        pair.pump()
        self.assertEqual(self.failureResultOf(d, RemoteError).value.code, StatusCode.NOT_FOUND)
        [result] = token.results
        self.assertIsInstance(result, Failure)
        self.assertEqual(Outcome.of(result).status, "NOT_FOUND")

    def test_raising_interceptor_fails_the_deferred(self) -> None:
        """A client interceptor that raises fails the call's Deferred; call() never raises."""

        def broken(call: OutgoingCall, proceed: Proceed) -> Any:
            raise ValueError("broken interceptor")

        pair = connected_pair(self._token_router(), client_interceptors=[broken])
        d = pair.client.call("token")
        self.failureResultOf(d, ValueError)
        self.assertEqual(pair.client_transport.value(), b"")

    def test_async_client_interceptor_short_circuit(self) -> None:
        """An async def client interceptor may answer without sending anything."""

        async def offline(call: OutgoingCall, proceed: Proceed) -> Reply:
            return Reply(body=b"local")

        pair = connected_pair(self._token_router(), client_interceptors=[offline])
        d = pair.client.call("token")
        self.assertEqual(self.successResultOf(d).body, b"local")
        self.assertEqual(pair.client_transport.value(), b"")

    def test_bad_metadata_fails_the_deferred(self) -> None:
        """Bad metadata fails the Deferred before any interceptor runs, as without them."""
        token = AddToken("x")
        pair = connected_pair(self._token_router(), client_interceptors=[token])
        d = pair.client.call("token", metadata={"k": 1})  # type: ignore[dict-item]
        self.failureResultOf(d, TypeError)
        self.assertEqual(token.calls, [])

    def test_cancel_reaches_server(self) -> None:
        """Cancelling a call made through a client interceptor sends CANCEL to the server."""
        router, waiting = echo_and_wait_router()
        pair = connected_pair(router, client_interceptors=[AddToken("x")])
        d = pair.client.call("wait")
        pair.pump()
        d.cancel()
        pair.pump()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(waiting[0].called)  # cancelled at the server
        self.assertEqual(pair.server.running, {})

    def test_timeout_reaches_server(self) -> None:
        """A client interceptor sees the call's timeout and may change it."""
        seen: list[float | None] = []

        def longer(call: OutgoingCall, proceed: Proceed) -> Any:
            seen.append(call.timeout)
            return proceed(dataclasses.replace(call, timeout=5.0))

        router, _ = echo_and_wait_router()
        pair = connected_pair(router, client_interceptors=[longer], timeout=1.0)
        d = pair.client.call("wait")
        pair.pump()
        pair.clock.advance(1.0)
        self.assertNoResult(d)
        pair.clock.advance(4.0)
        pair.pump()
        self.failureResultOf(d, DeadlineExceeded)
        self.assertEqual(seen, [1.0])

    def test_not_an_interceptor(self) -> None:
        """Client and connect refuse something that is not an interceptor with a TypeError."""
        pair = connected_pair(Router())
        with self.assertRaises(TypeError):
            Client(pair.client_protocol, interceptors=[object()])
        with self.assertRaises(TypeError):
            connect(MemoryReactorClock(), "tcp:127.0.0.1:1", interceptors=["nope"])


def _capture(case: SynchronousTestCase, namespace: str) -> list[LogEvent]:
    """Collect the log events of ``namespace`` until the test ends."""
    events: list[LogEvent] = []

    def observer(event: LogEvent) -> None:
        if event.get("log_namespace") == namespace:
            events.append(event)

    globalLogPublisher.addObserver(observer)
    case.addCleanup(globalLogPublisher.removeObserver, observer)
    return events


class AccessLogTests(SynchronousTestCase):
    """AccessLog emits one structured event per answered call."""

    _FIELDS = (
        "peer",
        "method",
        "status",
        "code",
        "duration_ms",
        "request_bytes",
        "response_bytes",
        "request_id",
        "connection_id",
    )

    maxDiff = None

    def _fields(self, event: LogEvent) -> dict[str, Any]:
        return {name: event[name] for name in self._FIELDS}

    def test_fields(self) -> None:
        """Each answer, success or error, is one event with every documented field."""
        events = _capture(self, "twisted_reqresp.access")
        router, waiting = echo_and_wait_router()
        pair = connected_pair(router, interceptors=[AccessLog()])
        fast = pair.client.call("echo", b"hello")
        slow = pair.client.call("wait", b"abc")
        missing = pair.client.call("nope", b"xy")
        pair.pump()
        pair.clock.advance(0.25)
        waiting[0].callback(b"done!!")
        pair.pump()
        for d in (fast, slow):
            self.successResultOf(d)
        self.failureResultOf(missing, RemoteError)
        common = {"peer": "127.0.0.1:54321", "connection_id": pair.server.connection_id}
        self.assertEqual(
            [self._fields(e) for e in events],
            [
                {
                    **common,
                    "method": "echo",
                    "status": "OK",
                    "code": 0,
                    "duration_ms": 0.0,
                    "request_bytes": 5,
                    "response_bytes": 5,
                    "request_id": 1,
                },
                {
                    **common,
                    "method": "nope",
                    "status": "NOT_FOUND",
                    "code": int(StatusCode.NOT_FOUND),
                    "duration_ms": 0.0,
                    "request_bytes": 2,
                    "response_bytes": 0,
                    "request_id": 3,
                },
                {
                    **common,
                    "method": "wait",
                    "status": "OK",
                    "code": 0,
                    "duration_ms": 250.0,
                    "request_bytes": 3,
                    "response_bytes": 6,
                    "request_id": 2,
                },
            ],
        )
        self.assertEqual({e["log_level"].name for e in events}, {"info"})

    def test_format(self) -> None:
        """The event's text names the peer, method, status, duration and sizes."""
        from twisted.logger import formatEvent

        events = _capture(self, "twisted_reqresp.access")
        router, _ = echo_and_wait_router()
        pair = connected_pair(router, interceptors=[AccessLog()])
        pair.client.call("echo", b"hello")
        pair.pump()
        self.assertEqual(
            formatEvent(events[0]),
            "127.0.0.1:54321 echo OK 0.000 ms in=5 out=5 (connection 1, request 1)",
        )

    def test_line_format_and_cancel(self) -> None:
        """The line format is logged too, and a cancelled call is logged as CANCELLED."""
        events = _capture(self, "twisted_reqresp.access")
        router, _ = echo_and_wait_router()
        pair = connected_pair(router, wire=LINE, interceptors=[AccessLog()])
        d = pair.client.call("echo", b"hi")
        pair.pump()
        self.successResultOf(d)
        pair2 = connected_pair(router, interceptors=[AccessLog()])
        w = pair2.client.call("wait")
        pair2.pump()
        w.cancel()
        pair2.pump()
        self.failureResultOf(w, CancelledError)
        self.assertEqual(
            [(e["method"], e["status"]) for e in events], [("echo", "OK"), ("wait", "CANCELLED")]
        )

    def test_off_by_default(self) -> None:
        """A server without the AccessLog interceptor logs no access events."""
        events = _capture(self, "twisted_reqresp.access")
        router, _ = echo_and_wait_router()
        pair = connected_pair(router)
        pair.client.call("echo", b"x")
        pair.pump()
        self.assertEqual(events, [])


class OutcomeTests(SynchronousTestCase):
    """Outcome.of reads a result or a failure as the server answers it."""

    def test_results(self) -> None:
        """Bytes and a Reply of bytes are OK with their size; another value has no size yet."""
        self.assertEqual(Outcome.of(b"abc"), Outcome(code=0, response_bytes=3))
        self.assertEqual(Outcome.of(Reply(body=b"ab")).response_bytes, 2)
        self.assertIsNone(Outcome.of("text").response_bytes)
        self.assertTrue(Outcome.of(b"").ok)

    def test_failures(self) -> None:
        """Failures map to the status the server answers with."""
        cases = [
            (StatusError(StatusCode.ABORTED, "m"), "ABORTED", "m"),
            (DeferTimeout(), "DEADLINE_EXCEEDED", "deadline exceeded"),
            (CancelledError(), "CANCELLED", "cancelled by the server"),
            (KeyError("x"), "INTERNAL", "internal error"),
        ]
        for error, status, message in cases:
            outcome = Outcome.of(Failure(error))
            self.assertEqual(
                (outcome.status, outcome.message, outcome.ok), (status, message, False)
            )
            self.assertIs(outcome.error, error)


class FastPathTests(SynchronousTestCase):
    """With no interceptors the server runs the responder directly, with the same bytes out."""

    def test_no_interceptors_is_the_responder_itself(self) -> None:
        """An empty interceptor list leaves the responder's respond as the call path."""
        router = Router()
        for interceptors in ((), []):
            pair = connected_pair(router, interceptors=interceptors)
            self.assertEqual(pair.server._respond, router.respond)

    def _session(self, wire: Any, **kwargs: Any) -> bytes:
        """Run one fixed session and return every byte the server sent."""
        router, waiting = echo_and_wait_router()

        def fail(call: Call) -> bytes:
            raise StatusError(StatusCode.ABORTED, "no", details=b"d")

        router.add("fail", fail)
        router.add("md", lambda call: Reply(body=b"m", metadata={"a": "b"}))
        router.add("boom", lambda call: 1 / 0)
        pair = connected_pair(router, wire=wire, clock=MemoryReactorClock(), **kwargs)
        received: list[bytes] = []
        client = pair.client_protocol
        original = client.dataReceived

        def record(data: bytes) -> None:
            received.append(data)
            original(data)

        client.dataReceived = record  # type: ignore[method-assign]
        calls = [
            pair.client.call("echo", b"one"),
            pair.client.call("fail"),
            pair.client.call("md", metadata={"k": "v"}),
            pair.client.call("nope"),
            pair.client.call("wait", b"x"),
            pair.client.call("boom"),
        ]
        pair.pump()
        waiting[0].callback(b"later")
        pair.pump()
        for d in calls:
            d.addErrback(lambda _: None)
        self.flushLoggedErrors(ZeroDivisionError)
        return b"".join(received)

    def test_same_bytes_out(self) -> None:
        """No interceptors, an empty list, and a pass-through interceptor send identical bytes."""

        def passing(call: Call, proceed: Proceed) -> Any:
            return proceed(call)

        for wire in (None, LINE):
            baseline = self._session(wire)
            self.assertTrue(baseline)
            self.assertEqual(self._session(wire, interceptors=[]), baseline)
            self.assertEqual(self._session(wire, interceptors=[passing]), baseline)
