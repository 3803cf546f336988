"""
The built-in methods every server answers (issue 10, item 2): ``reqresp.health``,
``reqresp.methods`` and ``reqresp.stats``, for any responder, before it,
past its limits, over both wire formats, and off with ``builtins=False``.

In memory (the public pair, or a raw sans-IO client that ignores the
server's MAX_CONCURRENT); ``tests/test_e2e_builtins.py`` runs them against a
real ``twistd`` with ``nc`` and the ``reqresp`` command.
"""

from __future__ import annotations

import json
from typing import Any

from helpers import RawClient, echo_and_wait_router
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from twisted_reqresp import (
    LINE,
    Call,
    ConnectionInfo,
    HealthStatus,
    Limits,
    MethodDescription,
    RemoteError,
    Router,
    ServerFactory,
    ServingStatus,
    StatusCode,
)
from twisted_reqresp.codecs import JSON
from twisted_reqresp.interfaces import IResponder, IResponderFactory
from twisted_reqresp.testing import connected_pair
from twisted_reqresp.wire import (
    Connection,
    ErrorResponse,
    LineFormat,
    Response,
    Role,
)


@implementer(IResponder)
class Plain:
    """A responder that is not a Router: it answers every call with its method name."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def connection_made(self, connection: ConnectionInfo) -> None:
        """Nothing to keep."""

    def connection_lost(self, reason: Failure) -> None:
        """Nothing to drop."""

    def respond(self, call: Call) -> bytes:
        """Answer the method name."""
        self.calls.append(call.method)
        return call.method.encode()


class Described(Plain):
    """A plain responder that says what its methods are."""

    def describe(self) -> list[MethodDescription]:
        """Two methods, unsorted on purpose."""
        return [
            MethodDescription(name="zeta", codec="json", doc="Last."),
            MethodDescription(name="alpha"),
        ]


def _call(pair: Any, method: str, body: bytes = b"") -> Any:
    d = pair.client.call(method, body)
    pair.pump()
    return d


def _names(answer: bytes) -> list[str]:
    return [item["name"] for item in json.loads(answer)["methods"]]


_BUILTIN_NAMES = ["reqresp.health", "reqresp.methods", "reqresp.stats"]


class HealthTests(SynchronousTestCase):
    """reqresp.health answers the serving status, per service, on every server."""

    def test_serving_by_default(self) -> None:
        """A new server's health is SERVING."""
        router, _ = echo_and_wait_router()
        pair = connected_pair(router)
        self.assertEqual(self.successResultOf(_call(pair, "reqresp.health")).body, b"SERVING")

    def test_plain_responder_never_sees_it(self) -> None:
        """A responder that is not a Router gets health answered without being called."""
        responder = Plain()
        pair = connected_pair(responder)
        self.assertEqual(self.successResultOf(_call(pair, "reqresp.health")).body, b"SERVING")
        self.assertEqual(responder.calls, [])

    def test_application_sets_the_server_status(self) -> None:
        """factory.health.set("", "NOT_SERVING") is what health answers, and back."""
        pair = connected_pair(Plain())
        pair.factory.health.set("", "NOT_SERVING")
        self.assertEqual(self.successResultOf(_call(pair, "reqresp.health")).body, b"NOT_SERVING")
        pair.factory.health.set("", ServingStatus.SERVING)
        self.assertEqual(self.successResultOf(_call(pair, "reqresp.health")).body, b"SERVING")

    def test_per_service(self) -> None:
        """A service name in the body gets that service's status, apart from the server's."""
        pair = connected_pair(Plain())
        health = pair.factory.health
        health.set("db", "NOT_SERVING")
        health.set("cache", "SERVING")
        self.assertEqual(
            self.successResultOf(_call(pair, "reqresp.health", b"db")).body, b"NOT_SERVING"
        )
        self.assertEqual(
            self.successResultOf(_call(pair, "reqresp.health", b"cache")).body, b"SERVING"
        )
        self.assertEqual(self.successResultOf(_call(pair, "reqresp.health")).body, b"SERVING")

    def test_unknown_service_is_not_found(self) -> None:
        """A service name nobody set is answered NOT_FOUND naming it, as gRPC's health does."""
        pair = connected_pair(Plain())
        error = self.failureResultOf(_call(pair, "reqresp.health", b"nope"), RemoteError).value
        self.assertEqual(
            (error.code, error.message), (StatusCode.NOT_FOUND, "unknown service 'nope'")
        )

    def test_cleared_service_is_unknown_again(self) -> None:
        """A service cleared is answered NOT_FOUND again; clearing "" puts SERVING back."""
        pair = connected_pair(Plain())
        health = pair.factory.health
        health.set("db", "SERVING")
        health.clear("db")
        health.set("", "NOT_SERVING")
        health.clear("")
        self.failureResultOf(_call(pair, "reqresp.health", b"db"), RemoteError)
        self.assertEqual(self.successResultOf(_call(pair, "reqresp.health")).body, b"SERVING")

    def test_long_unknown_name_is_cut_in_the_message(self) -> None:
        """The NOT_FOUND message quotes at most 100 characters of a peer's service name."""
        pair = connected_pair(Plain())
        error = self.failureResultOf(_call(pair, "reqresp.health", b"x" * 5000), RemoteError).value
        self.assertEqual(error.message, f"unknown service '{'x' * 100}...'")

    def test_service_name_not_utf8(self) -> None:
        """A service name that is not UTF-8 is answered INVALID_ARGUMENT."""
        pair = connected_pair(Plain())
        error = self.failureResultOf(_call(pair, "reqresp.health", b"\xff"), RemoteError).value
        self.assertEqual(error.code, StatusCode.INVALID_ARGUMENT)

    def test_line_format(self) -> None:
        """Over the line format, health is one line answered 'OK SERVING'."""
        factory = ServerFactory(Plain(), wire=LineFormat(), clock=MemoryReactorClock())
        client = RawClient(factory)
        client.request("reqresp.health")
        self.assertEqual(client.transport.value(), b"OK SERVING\r\n")

    def test_line_format_service_name(self) -> None:
        """Over the line format, 'reqresp.health db' asks for the service db."""
        factory = ServerFactory(Plain(), wire=LINE, clock=MemoryReactorClock())
        factory.health.set("db", "NOT_SERVING")
        client = RawClient(factory)
        client.request("reqresp.health", b"db")
        self.assertEqual(client.transport.value(), b"OK NOT_SERVING\r\n")


class HealthStatusTests(SynchronousTestCase):
    """The HealthStatus object the application sets statuses on."""

    def test_bad_status(self) -> None:
        """Setting anything but the three statuses is a ValueError naming them."""
        health = HealthStatus()
        with self.assertRaises(ValueError) as caught:
            health.set("", "UP")
        self.assertIn("SERVING, NOT_SERVING, DRAINING", str(caught.exception))
        self.assertEqual(health.get(), ServingStatus.SERVING)

    def test_draining_overrides_everything(self) -> None:
        """Once draining, every known name reports DRAINING; unknown ones stay unknown."""
        health = HealthStatus()
        health.set("db", "NOT_SERVING")
        health.start_draining()
        self.assertTrue(health.draining)
        self.assertEqual(
            health.services(), {"": ServingStatus.DRAINING, "db": ServingStatus.DRAINING}
        )
        with self.assertRaises(KeyError):
            health.get("nope")

    def test_drain_sets_draining(self) -> None:
        """ServerFactory.drain() makes the health DRAINING at once, before connections close."""
        router, waiting = echo_and_wait_router()
        pair = connected_pair(router)
        pair.client.call("wait")
        pair.pump()
        self.assertEqual(pair.factory.health.get(), ServingStatus.SERVING)
        done = pair.factory.drain()
        self.assertNoResult(done)
        self.assertEqual(pair.factory.health.get(), ServingStatus.DRAINING)
        waiting[0].callback(b"")
        pair.pump()
        self.successResultOf(done)


class LimitsTests(SynchronousTestCase):
    """The built-in methods count in no user limit and are answered at once."""

    def test_answered_at_max_concurrent(self) -> None:
        """With every slot taken and a request parked, health is answered at once, unparked."""
        router, waiting = echo_and_wait_router()
        factory = ServerFactory(router, limits=Limits(max_concurrent=1), clock=MemoryReactorClock())
        client = RawClient(factory)
        client.request("wait")
        client.request("wait")
        rid = client.request("reqresp.health")
        self.assertEqual(client.events(), [Response(request_id=rid, body=b"SERVING")])
        self.assertEqual(len(waiting), 1)
        self.assertEqual(list(client.server.parked), [2])
        self.assertEqual(client.server.running.keys(), {1})

    def test_parked_requests_still_start_in_turn(self) -> None:
        """A built-in answered past the limit leaves the parked request's turn unchanged."""
        router, waiting = echo_and_wait_router()
        factory = ServerFactory(router, limits=Limits(max_concurrent=1), clock=MemoryReactorClock())
        client = RawClient(factory)
        client.request("wait")
        client.request("echo", b"parked")
        client.request("reqresp.stats")
        client.events()
        waiting[0].callback(b"first")
        self.assertEqual(
            client.events(),
            [Response(request_id=1, body=b"first"), Response(request_id=2, body=b"parked")],
        )
        self.assertEqual(client.server.conn.unanswered, 0)

    def test_line_format_answers_in_turn(self) -> None:
        """Over the line format the health answer waits for the lines before it (order)."""
        router, waiting = echo_and_wait_router()
        factory = ServerFactory(router, wire=LINE, clock=MemoryReactorClock())
        client = RawClient(factory)
        client.request("wait")
        client.request("reqresp.health")
        self.assertEqual(client.transport.value(), b"")
        waiting[0].callback(b"done")
        self.assertEqual(client.transport.value(), b"OK done\r\nOK SERVING\r\n")

    def test_counted_in_stats(self) -> None:
        """Built-ins are counted as requests in the server's stats, like any other."""
        pair = connected_pair(Plain())
        _call(pair, "reqresp.health")
        self.successResultOf(_call(pair, "reqresp.health", b"nope").addErrback(lambda _: None))
        stats = pair.factory.stats
        self.assertEqual((stats.requests_total, stats.errors_total), (2, 1))


class MethodsTests(SynchronousTestCase):
    """reqresp.methods lists the responder's methods (codec, kind, doc), then the built-ins."""

    def test_router(self) -> None:
        """A Router's methods come sorted, with codec, kind and docstring, then the built-ins."""
        router = Router()

        @router.method("greet", codec=JSON)
        def greet(call: Call) -> str:
            """
            Greet someone.

            By name.
            """
            return f"hi {call.body}"

        router.add("echo", lambda call: call.body)
        pair = connected_pair(router)
        answer = json.loads(self.successResultOf(_call(pair, "reqresp.methods")).body)
        methods = answer["methods"]
        self.assertEqual([m["name"] for m in methods], ["echo", "greet", *_BUILTIN_NAMES])
        self.assertEqual(
            methods[:2],
            [
                {"name": "echo", "codec": "bytes", "kind": "unary", "doc": ""},
                {
                    "name": "greet",
                    "codec": "json",
                    "kind": "unary",
                    "doc": "Greet someone.\n\nBy name.",
                },
            ],
        )
        self.assertEqual(methods[2]["codec"], "bytes")
        self.assertTrue(methods[2]["doc"].startswith("Answer the serving status"), methods[2])
        self.assertEqual([m["codec"] for m in methods[3:]], ["json", "json"])

    def test_router_describe(self) -> None:
        """Router.describe() returns MethodDescription objects sorted by name."""
        router = Router()
        router.add("b", lambda call: b"", codec=JSON)
        router.add("a", lambda call: b"")
        self.assertEqual(
            router.describe(),
            [MethodDescription(name="a"), MethodDescription(name="b", codec="json")],
        )

    def test_plain_responder(self) -> None:
        """A responder without describe() lists no methods of its own, only the built-ins."""
        responder = Plain()
        pair = connected_pair(responder)
        self.assertEqual(
            _names(self.successResultOf(_call(pair, "reqresp.methods")).body), _BUILTIN_NAMES
        )
        self.assertEqual(responder.calls, [])

    def test_responder_describe(self) -> None:
        """A responder's own describe() is listed as it returns it, then the built-ins."""
        pair = connected_pair(Described())
        answer = json.loads(self.successResultOf(_call(pair, "reqresp.methods")).body)
        self.assertEqual(
            answer["methods"][:2],
            [
                {"name": "zeta", "codec": "json", "kind": "unary", "doc": "Last."},
                {"name": "alpha", "codec": "bytes", "kind": "unary", "doc": ""},
            ],
        )

    def test_responder_factory(self) -> None:
        """Behind an IResponderFactory, the connection's responder describes itself."""

        @implementer(IResponderFactory)
        class PerConnection:
            def responder_for(self, connection: ConnectionInfo) -> IResponder:
                return Described()

        pair = connected_pair(PerConnection())
        self.assertEqual(
            _names(self.successResultOf(_call(pair, "reqresp.methods")).body),
            ["zeta", "alpha", *_BUILTIN_NAMES],
        )

    def test_responder_factory_describes(self) -> None:
        """A factory's describe() is used when its responders have none."""

        @implementer(IResponderFactory)
        class PerConnection:
            def responder_for(self, connection: ConnectionInfo) -> IResponder:
                return Plain()

            def describe(self) -> list[MethodDescription]:
                return [MethodDescription(name="one")]

        pair = connected_pair(PerConnection())
        self.assertEqual(
            _names(self.successResultOf(_call(pair, "reqresp.methods")).body),
            ["one", *_BUILTIN_NAMES],
        )

    def test_bad_describe_is_internal(self) -> None:
        """A describe() returning anything but MethodDescription is logged and answered INTERNAL."""

        class Bad(Plain):
            def describe(self) -> list[Any]:
                return [{"name": "x"}]

        pair = connected_pair(Bad())
        error = self.failureResultOf(_call(pair, "reqresp.methods"), RemoteError).value
        self.assertEqual(error.code, StatusCode.INTERNAL)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)

    def test_answer_too_large_for_a_line(self) -> None:
        """A methods answer too long for a line is an error answer, not a close."""
        router = Router()
        for n in range(20):
            router.add(f"m{n}", lambda call: b"")
        factory = ServerFactory(
            router, wire=LINE, limits=Limits(max_line_length=256), clock=MemoryReactorClock()
        )
        client = RawClient(factory)
        client.request("reqresp.methods")
        client.request("reqresp.health")
        error, health = client.events()
        self.assertIsInstance(error, ErrorResponse)
        self.assertEqual(error.code, StatusCode.RESOURCE_EXHAUSTED)  # type: ignore[union-attr]
        self.assertEqual(health, Response(request_id=2, body=b"SERVING"))
        self.assertTrue(client.server.connected)

    def test_router_refuses_reserved_names(self) -> None:
        """Router.add refuses a name in the reserved reqresp. namespace."""
        with self.assertRaises(ValueError) as caught:
            Router().add("reqresp.health", lambda call: b"")
        self.assertIn("reserved", str(caught.exception))


class StatsAndNamespaceTests(SynchronousTestCase):
    """reqresp.stats, and reserved names that are not built-in methods."""

    def test_stats(self) -> None:
        """reqresp.stats answers the server's counters as JSON, on any responder."""
        pair = connected_pair(Plain())
        _call(pair, "anything")
        stats = json.loads(self.successResultOf(_call(pair, "reqresp.stats")).body)
        self.assertEqual(stats["requests_total"], 2)
        self.assertEqual(stats["connections_open"], 1)

    def test_unknown_reserved_name(self) -> None:
        """A reqresp. name that is no built-in is NOT_FOUND, and the responder is not asked."""
        responder = Plain()
        pair = connected_pair(responder)
        error = self.failureResultOf(_call(pair, "reqresp.nope"), RemoteError).value
        self.assertEqual(error.code, StatusCode.NOT_FOUND)
        self.assertIn("reserved", error.message)
        self.assertEqual(responder.calls, [])


class TurnedOffTests(SynchronousTestCase):
    """ServerFactory(builtins=False) serves no built-in method."""

    def test_reaches_the_responder(self) -> None:
        """With builtins=False, reqresp.health is an ordinary call the responder answers."""
        responder = Plain()
        factory = ServerFactory(responder, builtins=False, clock=MemoryReactorClock())
        pair = connected_pair(responder, factory=factory)
        self.assertEqual(
            self.successResultOf(_call(pair, "reqresp.health")).body, b"reqresp.health"
        )
        self.assertEqual(responder.calls, ["reqresp.health"])
        self.assertIsNone(factory.builtins)

    def test_router_answers_not_found(self) -> None:
        """With builtins=False, a Router answers reqresp.methods NOT_FOUND, as any unknown name."""
        router, _ = echo_and_wait_router()
        factory = ServerFactory(router, builtins=False, clock=MemoryReactorClock())
        pair = connected_pair(router, factory=factory)
        error = self.failureResultOf(_call(pair, "reqresp.methods"), RemoteError).value
        self.assertEqual(
            (error.code, error.message), (StatusCode.NOT_FOUND, "unknown method 'reqresp.methods'")
        )

    def test_on_by_default(self) -> None:
        """A factory serves the built-in methods unless told otherwise."""
        self.assertIsNotNone(ServerFactory(Plain()).builtins)

    def test_binary_raw_client_gets_error(self) -> None:
        """Not a built-in when off: over a raw binary client the router's NOT_FOUND arrives."""
        router, _ = echo_and_wait_router()
        factory = ServerFactory(router, builtins=False, clock=MemoryReactorClock())
        client = RawClient(factory)
        rid = client.request("reqresp.health")
        [event] = client.events()
        self.assertIsInstance(event, ErrorResponse)
        self.assertEqual(event.request_id, rid)  # type: ignore[union-attr]


class DrainingHealthTests(SynchronousTestCase):
    """A draining server answers reqresp.health with DRAINING on its open connections."""

    def test_line_connection_reads_draining(self) -> None:
        """After drain() starts, a health line on an open line connection answers OK DRAINING."""
        from twisted_reqresp import LINE

        router, waiting = echo_and_wait_router()
        pair = connected_pair(router, wire=LINE)
        busy = pair.client.call("wait")
        pair.pump()
        pair.factory.drain()
        health = pair.client.call("reqresp.health")
        refused = pair.client.call("echo", b"x")
        pair.pump()
        waiting[0].callback(b"done")
        pair.pump()
        self.assertEqual(self.successResultOf(busy).body, b"done")
        self.assertEqual(self.successResultOf(health).body, b"DRAINING")
        self.failureResultOf(refused, RemoteError)

    def test_only_health_passes_a_draining_core(self) -> None:
        """The core refuses other requests after GOAWAY but passes the ones it is told to."""
        from twisted_reqresp.wire import BinaryFormat, Request

        client = Connection(Role.CLIENT, BinaryFormat())
        server = Connection(Role.SERVER, BinaryFormat())
        server.answered_while_draining = frozenset({"reqresp.health"})
        server.receive_data(client.data_to_send())
        while server.next_event() is not None:
            pass
        server.send_goaway()
        client.send_request("reqresp.health")
        client.send_request("echo")
        server.receive_data(client.data_to_send())
        events = []
        while (event := server.next_event()) is not None:
            events.append(event)
        self.assertEqual([type(e) for e in events], [Request])
        assert isinstance(events[0], Request)
        self.assertEqual(events[0].method, "reqresp.health")
        self.assertEqual(server.in_flight, {1})


class ResponderSetsHealthTests(SynchronousTestCase):
    """A responder reaches its server's HealthStatus through call.connection.health."""

    def test_set_from_a_call(self) -> None:
        """A method that sets a service NOT_SERVING changes what reqresp.health answers."""
        router = Router()

        @router.method("db-down")
        def db_down(call: Call) -> bytes:
            call.connection.health.set("db", "NOT_SERVING")
            return b""

        pair = connected_pair(router)
        self.successResultOf(_called(pair, "db-down"))
        self.assertEqual(
            self.successResultOf(_called(pair, "reqresp.health", b"db")).body, b"NOT_SERVING"
        )
        self.assertIs(pair.server.info.health, pair.factory.health)


def _called(pair: Any, method: str, body: bytes = b"") -> Any:
    d = pair.client.call(method, body)
    pair.pump()
    return d
