"""
Deadline, cancellation and metadata propagation (issue 9, item 4): the
server tells a call when it gives up on it (``call.cancelled``,
``call.on_cancel``), and a call made with ``Client.call(..., parent=call)``
inherits the parent's remaining deadline, its cancellation and chosen
metadata.

Two in-memory pairs on one clock stand for two hops: a client calls a
*frontend* server whose responder calls a *backend* server.
"""

from __future__ import annotations

import dataclasses
import gc
import weakref
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import (
    Call,
    ConnectionClosed,
    ConnectionInfo,
    DeadlineExceeded,
    Limits,
    RemoteError,
    Reply,
    Router,
    StatusCode,
    connect,
)
from twisted_reqresp._adapters.client import Client
from twisted_reqresp._adapters.propagation import PROPAGATED_METADATA, bind, inherit
from twisted_reqresp._core.call import Cancellation
from twisted_reqresp.testing import ConnectedPair, connected_pair

_INFO = ConnectionInfo(connection_id=1, peer=None, host=None, wire_format="binary")


def _call(
    *,
    metadata: dict[str, str] | None = None,
    deadline: float | None = None,
    clock: MemoryReactorClock | None = None,
) -> Call:
    return Call(
        method="m",
        body=b"",
        metadata=metadata or {},
        connection=_INFO,
        deadline=deadline,
        _clock=clock,
    )


class CancellationTests(SynchronousTestCase):
    """The core's per-request cancellation state, as a Call exposes it."""

    def test_not_cancelled(self) -> None:
        """A new call is not cancelled and its callbacks wait."""
        call = _call()
        seen: list[str] = []
        call.on_cancel(lambda: seen.append("a"))
        self.assertFalse(call.cancelled)
        self.assertEqual(seen, [])

    def test_cancel_runs_callbacks_once_in_order(self) -> None:
        """cancel() marks the call cancelled and runs each callback once, in order."""
        call = _call()
        seen: list[str] = []
        call.on_cancel(lambda: seen.append("a"))
        call.on_cancel(lambda: seen.append("b"))
        self.assertEqual(call._cancellation.cancel(), [])
        self.assertEqual(call._cancellation.cancel(), [])
        self.assertTrue(call.cancelled)
        self.assertEqual(seen, ["a", "b"])

    def test_after_cancel_runs_at_once(self) -> None:
        """A callback registered after cancellation runs at once."""
        call = _call()
        call._cancellation.cancel()
        seen: list[str] = []
        unsubscribe = call.on_cancel(lambda: seen.append("late"))
        self.assertEqual(seen, ["late"])
        unsubscribe()  # harmless
        self.assertEqual(call._cancellation.subscribers, 0)

    def test_unsubscribe(self) -> None:
        """An unsubscribed callback never runs and is not held."""
        call = _call()
        seen: list[str] = []
        unsubscribe = call.on_cancel(lambda: seen.append("a"))
        self.assertEqual(call._cancellation.subscribers, 1)
        unsubscribe()
        unsubscribe()
        self.assertEqual(call._cancellation.subscribers, 0)
        call._cancellation.cancel()
        self.assertEqual(seen, [])

    def test_copies_share(self) -> None:
        """Copies of a call (with_body, dataclasses.replace) share its cancellation."""
        call = _call()
        copy = dataclasses.replace(call.with_body(b"x"), method="other")
        seen: list[str] = []
        copy.on_cancel(lambda: seen.append("copy"))
        call._cancellation.cancel()
        self.assertTrue(copy.cancelled)
        self.assertEqual(seen, ["copy"])
        self.assertEqual(copy, dataclasses.replace(call, body=b"x", method="other"))

    def test_errors_returned(self) -> None:
        """A callback that raises does not stop the others; cancel() returns the error."""
        call = _call()
        seen: list[str] = []
        boom = ValueError("boom")

        def fail() -> None:
            raise boom

        call.on_cancel(fail)
        call.on_cancel(lambda: seen.append("b"))
        self.assertEqual(call._cancellation.cancel(), [boom])
        self.assertEqual(seen, ["b"])

    def test_each_call_its_own(self) -> None:
        """Two calls made apart do not share their cancellation."""
        one, two = _call(), _call()
        one._cancellation.cancel()
        self.assertFalse(two.cancelled)
        self.assertIsInstance(two._cancellation, Cancellation)


class _Held:
    """A responder whose calls wait until the test answers them."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.deferreds: list[Deferred[Any]] = []
        #: What ``call.cancelled`` read when each responder Deferred was cancelled.
        self.cancelled_when_cancelled: list[bool] = []
        self.router = Router()
        self.router.add("wait", self.wait)
        self.router.add("now", lambda call: b"now")

    def wait(self, call: Call) -> Deferred[bytes]:
        self.calls.append(call)
        d: Deferred[bytes] = Deferred(
            lambda _: self.cancelled_when_cancelled.append(call.cancelled)
        )
        self.deferreds.append(d)
        return d


class ServerGivesUpTests(SynchronousTestCase):
    """The server tells the call when it gives up on it, and only then."""

    def _pair(self, **kwargs: Any) -> tuple[ConnectedPair, _Held]:
        held = _Held()
        return connected_pair(held.router, **kwargs), held

    def _started(self, pair: ConnectedPair, held: _Held, **kwargs: Any) -> Deferred[Reply]:
        d = pair.client.call("wait", **kwargs)
        pair.pump()
        self.assertEqual(len(held.calls), 1)
        self.assertFalse(held.calls[0].cancelled)
        return d

    def test_client_cancel(self) -> None:
        """The client's CANCEL marks the call cancelled before its Deferred is cancelled."""
        pair, held = self._pair()
        d = self._started(pair, held)
        seen: list[bool] = []
        held.calls[0].on_cancel(lambda: seen.append(held.deferreds[0].called))
        d.cancel()
        pair.pump()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(held.calls[0].cancelled)
        self.assertEqual(seen, [False])
        self.assertEqual(held.cancelled_when_cancelled, [True])
        self.assertEqual(pair.server._cancellations, {})

    def test_deadline(self) -> None:
        """The deadline passing marks the call cancelled; the answer is DEADLINE_EXCEEDED."""
        pair, held = self._pair()
        d = pair.client.call("wait", timeout=2.0)
        pair.pump()
        call = held.calls[0]
        pair.clock.advance(1.999)
        self.assertFalse(call.cancelled)
        pair.clock.advance(0.001)
        self.assertTrue(call.cancelled)
        self.assertEqual(held.cancelled_when_cancelled, [True])
        pair.pump()
        self.failureResultOf(d, DeadlineExceeded)

    def test_deadline_answers_deadline_exceeded(self) -> None:
        """At the server's own deadline the client is answered DEADLINE_EXCEEDED by the server."""
        pair, held = self._pair(limits=Limits(max_deadline=1.0))
        d = pair.client.call("wait")
        pair.pump()
        pair.clock.advance(1.0)
        self.assertTrue(held.calls[0].cancelled)
        pair.pump()
        error = self.failureResultOf(d, DeadlineExceeded).value
        self.assertIn("(at the server)", str(error))

    def test_deadline_with_interceptor(self) -> None:
        """With a server interceptor (its own deadline timer), the call is told too."""
        outcomes: list[str] = []

        def observe(call: Call, proceed: Any) -> Deferred[Any]:
            return proceed(call).addBoth(lambda r: outcomes.append(type(r).__name__) or r)

        pair, held = self._pair(limits=Limits(max_deadline=1.0), interceptors=[observe])
        d = pair.client.call("wait")
        pair.pump()
        pair.clock.advance(1.0)
        self.assertTrue(held.calls[0].cancelled)
        self.assertEqual(held.cancelled_when_cancelled, [True])
        pair.pump()
        self.failureResultOf(d, DeadlineExceeded)
        self.assertEqual(outcomes, ["Failure"])

    def test_connection_lost(self) -> None:
        """A lost connection marks every running call cancelled."""
        pair, held = self._pair()
        d1 = self._started(pair, held)
        d2 = pair.client.call("wait")
        d2.addErrback(lambda f: None)
        pair.pump()
        pair.disconnect()
        self.assertEqual([c.cancelled for c in held.calls], [True, True])
        self.assertEqual(held.cancelled_when_cancelled, [True, True])
        self.failureResultOf(d1, ConnectionClosed)

    def test_server_closes(self) -> None:
        """A connection the server closes (a protocol violation) tells running calls at once."""
        pair, held = self._pair()
        d = self._started(pair, held)
        pair.server.dataReceived(b"\xff" * 64)  # garbage: the server closes
        self.assertTrue(pair.server_transport.disconnecting)
        self.assertTrue(held.calls[0].cancelled)
        pair.pump()
        self.failureResultOf(d, ConnectionClosed)

    def test_grace_expired(self) -> None:
        """At a drain's grace expiry, calls still running are told."""
        pair, held = self._pair()
        d = self._started(pair, held)
        pair.factory.drain(grace=5.0)
        pair.pump()
        pair.clock.advance(4.9)
        self.assertFalse(held.calls[0].cancelled)
        pair.clock.advance(0.1)
        self.assertTrue(held.calls[0].cancelled)
        pair.pump()
        self.assertEqual(self.failureResultOf(d, RemoteError).value.code, StatusCode.UNAVAILABLE)

    def test_answered_never_cancelled(self) -> None:
        """An answered call is never marked cancelled, even when its connection goes."""
        pair, held = self._pair(limits=Limits(max_deadline=1.0))
        d = self._started(pair, held)
        seen: list[str] = []
        held.calls[0].on_cancel(lambda: seen.append("cancelled"))
        held.deferreds[0].callback(b"done")
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, b"done")
        pair.clock.advance(5)
        pair.disconnect()
        self.assertFalse(held.calls[0].cancelled)
        self.assertEqual(seen, [])
        self.assertEqual(pair.server._cancellations, {})

    def test_on_cancel_error_logged(self) -> None:
        """A callback that raises is logged; the server still cancels the responder."""
        pair, held = self._pair()
        d = self._started(pair, held)

        def fail() -> None:
            raise ValueError("boom")

        held.calls[0].on_cancel(fail)
        d.cancel()
        pair.pump()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(held.cancelled_when_cancelled, [True])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class InheritTests(SynchronousTestCase):
    """inherit(): the downstream call's timeout and metadata."""

    def test_no_deadline(self) -> None:
        """A parent without a deadline leaves the caller's timeout as it is."""
        self.assertEqual(inherit(_call(), None, None), (None, {}))
        self.assertEqual(inherit(_call(), 3.0, None), (3.0, {}))

    def test_deadline_shrinks(self) -> None:
        """The timeout is the smaller of the caller's and what is left of the parent's."""
        clock = MemoryReactorClock()
        clock.advance(100)
        parent = _call(deadline=102.5, clock=clock)
        self.assertEqual(inherit(parent, None, None)[0], 2.5)
        self.assertEqual(inherit(parent, 10.0, None)[0], 2.5)
        self.assertEqual(inherit(parent, 1.0, None)[0], 1.0)
        clock.advance(2.4)
        self.assertAlmostEqual(inherit(parent, None, None)[0], 0.1)  # type: ignore[arg-type]

    def test_deadline_passed(self) -> None:
        """At and after the parent's deadline, DeadlineExceeded."""
        clock = MemoryReactorClock()
        parent = _call(deadline=1.0, clock=clock)
        clock.advance(1.0)
        self.assertRaises(DeadlineExceeded, inherit, parent, None, None)
        clock.advance(1.0)
        self.assertRaises(DeadlineExceeded, inherit, parent, 5.0, None)

    def test_cancelled_parent(self) -> None:
        """A parent the server gave up on: CancelledError."""
        parent = _call()
        parent._cancellation.cancel()
        self.assertRaises(CancelledError, inherit, parent, None, None)

    def test_metadata(self) -> None:
        """Chosen keys are copied from the parent; the caller's own values win; others stay."""
        parent = _call(metadata={"traceparent": "00-a-b-01", "tracestate": "x=1", "secret": "s"})
        self.assertEqual(PROPAGATED_METADATA, ("traceparent", "tracestate"))
        self.assertEqual(
            inherit(parent, None, None)[1], {"traceparent": "00-a-b-01", "tracestate": "x=1"}
        )
        self.assertEqual(
            inherit(parent, None, [("tracestate", "mine"), ("k", "v")])[1],
            {"traceparent": "00-a-b-01", "tracestate": "mine", "k": "v"},
        )
        self.assertEqual(inherit(parent, None, {"k": "v"}, ())[1], {"k": "v"})
        self.assertEqual(inherit(parent, None, None, ["secret"])[1], {"secret": "s"})

    def test_metadata_checked(self) -> None:
        """The caller's metadata is still checked for text."""
        self.assertRaises(TypeError, inherit, _call(), None, {"k": 1})


class BindTests(SynchronousTestCase):
    """bind(): the downstream Deferred follows the parent's cancellation."""

    def test_cancel_parent_cancels(self) -> None:
        """Cancelling the parent cancels the bound Deferred."""
        parent = _call()
        d: Deferred[None] = Deferred()
        bind(parent, d)
        parent._cancellation.cancel()
        self.failureResultOf(d, CancelledError)

    def test_fired_unsubscribes(self) -> None:
        """A bound Deferred that fires leaves no callback on the parent."""
        parent = _call()
        d: Deferred[str] = Deferred()
        bind(parent, d)
        self.assertEqual(parent._cancellation.subscribers, 1)
        d.callback("x")
        self.assertEqual(parent._cancellation.subscribers, 0)
        parent._cancellation.cancel()
        self.assertEqual(self.successResultOf(d), "x")

    def test_already_fired(self) -> None:
        """Binding a Deferred that already fired subscribes nothing."""
        parent = _call()
        bind(parent, succeed(None))
        self.assertEqual(parent._cancellation.subscribers, 0)

    def test_parent_already_cancelled(self) -> None:
        """Binding to a parent already given up cancels at once."""
        parent = _call()
        parent._cancellation.cancel()
        d: Deferred[None] = Deferred()
        bind(parent, d)
        self.failureResultOf(d, CancelledError)


class TwoHops:
    """A client, a frontend and a backend, in memory, on one clock."""

    def __init__(self, *, client_interceptors: list[Any] | None = None, **client: Any) -> None:
        self.clock = MemoryReactorClock()
        self.backend = _Held()
        self.backend_pair = connected_pair(
            self.backend.router, clock=self.clock, client_interceptors=client_interceptors or []
        )
        self.downstream: Client = self.backend_pair.client
        for name, value in client.items():
            setattr(self.downstream, name, value)
        #: The frontend's calls, and the downstream Deferreds they made.
        self.calls: list[Call] = []
        self.outgoing: list[Deferred[Reply]] = []
        #: What each of front's downstream calls ended with.
        self.results: list[Any] = []
        router = Router()
        router.add("front", self.front)
        router.add("front_many", self.front_many)
        router.add("front_later", self.front_later)
        self.front_pair = connected_pair(router, clock=self.clock)

    def front(self, call: Call) -> Deferred[Any]:
        self.calls.append(call)
        metadata = {"tracestate": "frontend"} if call.body == b"override" else None
        d = self.downstream.call("wait", b"down", parent=call, metadata=metadata)
        self.outgoing.append(d)
        # Answered through a Deferred of its own, which cancelling does not
        # pass on to ``d``: only propagation (bind) cancels the backend call.
        answer: Deferred[Any] = Deferred()

        def settle(result: Any) -> None:
            self.results.append(result)
            if isinstance(result, Failure):
                answer.errback(result)
            else:
                answer.callback(result)

        d.addBoth(settle)
        return answer

    def front_later(self, call: Call) -> Deferred[Any]:
        # The downstream call leaves half a second after the request came.
        return deferLater(self.clock, 0.5, self.front, call)

    def front_many(self, call: Call) -> bytes:
        # Many downstream calls from one parent, each answered at once.
        self.calls.append(call)
        for _ in range(int(call.body)):
            d = self.downstream.call("now", parent=call)
            self.outgoing.append(d)
            self.backend_pair.pump()
        return b"done"

    def pump(self) -> None:
        for _ in range(10):
            if not (self.front_pair.pump() + self.backend_pair.pump()):
                return


class TwoHopTests(SynchronousTestCase):
    """Client.call(..., parent=call) across two in-memory hops."""

    def test_cancel_upstream_cancels_downstream(self) -> None:
        """The client's CANCEL to the frontend sends a CANCEL to the backend."""
        hops = TwoHops()
        d = hops.front_pair.client.call("front")
        hops.pump()
        self.assertEqual(len(hops.backend.calls), 1)
        d.cancel()
        hops.pump()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(hops.results[0].check(CancelledError))
        # The backend read a CANCEL: its responder was cancelled.
        self.assertTrue(hops.backend.calls[0].cancelled)
        self.assertEqual(hops.backend_pair.server.running, {})
        self.assertEqual(hops.backend_pair.client_protocol.pending, {})

    def test_deadline_shrinks(self) -> None:
        """The backend gets what is left of the frontend's deadline, not the client's default."""
        hops = TwoHops(timeout=30.0)
        d = hops.front_pair.client.call("front_later", timeout=2.0)
        hops.front_pair.pump()
        hops.clock.advance(0.5)
        hops.pump()
        backend_call = hops.backend.calls[0]
        self.assertEqual(backend_call.time_remaining(), 1.5)
        hops.clock.advance(1.5)
        hops.pump()
        self.assertTrue(backend_call.cancelled)
        self.assertTrue(hops.results[0].check(DeadlineExceeded, CancelledError))
        self.failureResultOf(d, DeadlineExceeded)
        self.assertEqual(hops.backend_pair.client_protocol.pending, {})

    def test_caller_timeout_shorter(self) -> None:
        """A caller's own timeout shorter than the parent's remaining deadline is kept."""
        hops = TwoHops(timeout=0.25)
        hops.front_pair.client.call("front", timeout=2.0).addErrback(lambda f: None)
        hops.pump()
        self.assertEqual(hops.backend.calls[0].time_remaining(), 0.25)

    def test_past_deadline_not_sent(self) -> None:
        """A parent whose deadline has passed fails the downstream call without sending it."""
        hops = TwoHops()
        clock = hops.clock
        parent = _call(deadline=1.0, clock=clock)
        clock.advance(1.0)
        hops.backend_pair.client_transport.clear()
        d = hops.downstream.call("wait", parent=parent)
        error = self.failureResultOf(d, DeadlineExceeded).value
        self.assertIn("parent", str(error))
        self.assertEqual(hops.backend_pair.client_transport.value(), b"")
        self.assertEqual(hops.backend_pair.client_protocol.pending, {})

    def test_cancelled_parent_not_sent(self) -> None:
        """A parent the server already gave up on fails the downstream call without sending it."""
        hops = TwoHops()
        parent = _call()
        parent._cancellation.cancel()
        hops.backend_pair.client_transport.clear()
        d = hops.downstream.call("wait", parent=parent)
        self.failureResultOf(d, CancelledError)
        self.assertEqual(hops.backend_pair.client_transport.value(), b"")

    def test_connection_lost_upstream(self) -> None:
        """The client's connection to the frontend dropping cancels the backend call."""
        hops = TwoHops()
        hops.front_pair.client.call("front").addErrback(lambda f: None)
        hops.pump()
        hops.front_pair.disconnect()
        hops.pump()
        self.assertTrue(hops.results[0].check(CancelledError))
        self.assertTrue(hops.backend.calls[0].cancelled)
        self.assertEqual(hops.backend_pair.server.running, {})

    def test_metadata(self) -> None:
        """traceparent and tracestate reach the backend; other keys do not; the caller's win."""
        hops = TwoHops()
        metadata = {"traceparent": "00-abc-def-01", "tracestate": "client", "auth": "secret"}
        hops.front_pair.client.call("front", metadata=metadata).addErrback(lambda f: None)
        hops.front_pair.client.call("front", b"override", metadata=metadata).addErrback(
            lambda f: None
        )
        hops.pump()
        first, second = (dict(c.metadata) for c in hops.backend.calls)
        self.assertEqual(first, {"traceparent": "00-abc-def-01", "tracestate": "client"})
        self.assertEqual(second, {"traceparent": "00-abc-def-01", "tracestate": "frontend"})

    def test_metadata_keys_chosen(self) -> None:
        """A client's propagate_metadata chooses the keys; () passes none."""
        hops = TwoHops(propagate_metadata=("auth",))
        metadata = {"traceparent": "00-abc-def-01", "auth": "secret"}
        hops.front_pair.client.call("front", metadata=metadata).addErrback(lambda f: None)
        hops.pump()
        self.assertEqual(dict(hops.backend.calls[0].metadata), {"auth": "secret"})
        hops.downstream.propagate_metadata = ()
        hops.front_pair.client.call("front", metadata=metadata).addErrback(lambda f: None)
        hops.pump()
        self.assertEqual(dict(hops.backend.calls[1].metadata), {})

    def test_metadata_through_interceptor(self) -> None:
        """A client interceptor sees the inherited metadata and timeout."""
        seen: list[Any] = []

        def observe(call: Any, proceed: Any) -> Deferred[Any]:
            seen.append((dict(call.metadata), call.timeout))
            return proceed(call)

        hops = TwoHops(client_interceptors=[observe])
        hops.front_pair.client.call("front", timeout=3.0, metadata={"traceparent": "t"}).addErrback(
            lambda f: None
        )
        hops.pump()
        self.assertEqual(seen, [({"traceparent": "t"}, 3.0)])

    def test_cancel_through_interceptor(self) -> None:
        """With client interceptors, the upstream CANCEL still reaches the backend."""
        hops = TwoHops(client_interceptors=[lambda call, proceed: proceed(call)])
        d = hops.front_pair.client.call("front")
        hops.pump()
        d.cancel()
        hops.pump()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(hops.results[0].check(CancelledError))
        self.assertTrue(hops.backend.calls[0].cancelled)

    def test_no_subscriber_left(self) -> None:
        """Many downstream calls from one parent leave no callback, Deferred or pending call."""
        hops = TwoHops()
        d = hops.front_pair.client.call("front_many", b"500")
        hops.pump()
        self.assertEqual(self.successResultOf(d).body, b"done")
        parent = hops.calls[0]
        self.assertEqual(len(hops.outgoing), 500)
        for reply in hops.outgoing:
            self.assertEqual(self.successResultOf(reply).body, b"now")
        self.assertEqual(parent._cancellation.subscribers, 0)
        probe = weakref.ref(hops.outgoing[0])
        del hops.outgoing[:], reply
        gc.collect()
        self.assertIsNone(probe())
        self.assertEqual(hops.backend_pair.client_protocol.pending, {})
        self.assertEqual(hops.front_pair.server._cancellations, {})

    def test_no_subscriber_left_long_lived(self) -> None:
        """Many parents on one long-lived connection leave nothing behind on the server."""
        hops = TwoHops()
        for i in range(200):
            d = hops.front_pair.client.call("front")
            hops.pump()
            hops.backend.deferreds[i].callback(b"ok")
            hops.pump()
            self.assertEqual(self.successResultOf(d).body, b"ok")
        self.assertEqual({c._cancellation.subscribers for c in hops.calls}, {0})
        self.assertEqual(hops.front_pair.server._cancellations, {})
        self.assertEqual(hops.front_pair.server.running, {})
        self.assertEqual(hops.backend_pair.client_protocol.pending, {})

    def test_backend_error_passes_up(self) -> None:
        """A backend error is the frontend's failure, answered to the client."""
        hops = TwoHops()
        d = hops.front_pair.client.call("front")
        hops.pump()
        hops.backend.deferreds[0].errback(RuntimeError("no"))
        hops.pump()
        self.assertEqual(self.failureResultOf(d, RemoteError).value.code, StatusCode.INTERNAL)
        self.flushLoggedErrors(RuntimeError)


class ConnectOptionTests(SynchronousTestCase):
    """propagate_metadata on connect() and Client."""

    def test_string_refused(self) -> None:
        """A lone string for propagate_metadata is refused at once, not split into letters."""
        pair = connected_pair(Router())
        with self.assertRaises(TypeError):
            Client(pair.client_protocol, propagate_metadata="traceparent")
        with self.assertRaises(TypeError):
            connect(MemoryReactorClock(), "tcp:127.0.0.1:1", propagate_metadata="traceparent")

    def test_default(self) -> None:
        """By default a client passes on the W3C trace context."""
        pair = connected_pair(Router())
        self.assertEqual(pair.client.propagate_metadata, ("traceparent", "tracestate"))
