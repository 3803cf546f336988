"""
Typed service contracts (issue 11, item 1): a :class:`Service` declared
once, checked against its implementations at start-up, called through a
typed stub, with bodies validated on both sides and described by
``reqresp.methods``.  In memory, with the public ``connected_pair``;
``tests/test_e2e.py`` serves the same contract with a real ``twistd``, and
``tests/typecheck/`` holds what mypy must accept and reject.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest import mock

import msgspec
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase
from typed_contract import (
    LIMIT,
    AddRequest,
    AddResponse,
    Calculator,
    CountRequest,
    Currency,
    Empty,
    Item,
    NoSuchItem,
    Number,
    Order,
    OrderTotal,
    Overflow,
    add,
    count,
    ping,
    router,
    streams,
    total,
)

from twisted_reqresp import (
    LINE,
    Call,
    CodecError,
    RemoteError,
    Router,
    StatusCode,
    StatusError,
)
from twisted_reqresp.codecs import JSON
from twisted_reqresp.service import (
    MethodKind,
    Service,
    TypedCodec,
    Unary,
    UnaryStub,
    server_stream,
    unary,
)
from twisted_reqresp.testing import CodecConformanceMixin, connected_pair

TESTS = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True)
class Node:
    """A recursive type: its nesting is bounded only by the body."""

    children: list[Node]


def _nested(depth: int) -> bytes:
    return b'{"children":[' * depth + b"]}" * depth


def _status(test: SynchronousTestCase, d: Any) -> RemoteError:
    failure = test.failureResultOf(d, RemoteError)
    error: RemoteError = failure.value
    return error


class DeclarationTests(SynchronousTestCase):
    """A Service class declares its methods and refuses a bad declaration when it is defined."""

    def test_wire_names_and_kinds(self) -> None:
        """Each method is called SERVICE.METHOD on the wire and has its declared kind."""
        self.assertEqual(Calculator.__service_name__, "calc")
        self.assertEqual(
            [(m.full_name, m.kind) for m in Calculator.declarations()],
            [
                ("calc.add", MethodKind.UNARY),
                ("calc.total", MethodKind.UNARY),
                ("calc.ping", MethodKind.UNARY),
                ("calc.count", MethodKind.SERVER_STREAM),
                ("calc.sum", MethodKind.CLIENT_STREAM),
                ("calc.echo", MethodKind.BIDI_STREAM),
            ],
        )

    def test_class_attribute_is_the_declaration(self) -> None:
        """On the class a method is its declaration; on a stub it is a bound callable."""
        self.assertIsInstance(Calculator.add, Unary)
        self.assertIs(Calculator.add.request, AddRequest)
        self.assertEqual(Calculator.add.errors, {Overflow: 1001})
        stub = Calculator(connected_pair(router).client)
        self.assertIsInstance(stub.add, UnaryStub)
        self.assertIs(stub.add, stub.add)

    def test_service_name_defaults_to_the_class_name(self) -> None:
        """Without name=, the service is called by its class's name."""

        class Greeter(Service):
            hello = unary(Empty, Empty)

        self.assertEqual(Greeter.hello.full_name, "Greeter.hello")

    def test_bad_service_names(self) -> None:
        """A service name that is empty, has whitespace or is the reserved 'reqresp' is refused."""
        for name in ("", "my calc", "reqresp"):
            with self.assertRaises(TypeError) as caught:
                type("Bad", (Service,), {}, name=name)
            self.assertIn(repr(name), str(caught.exception))

    def test_bad_method_names(self) -> None:
        """A method named like the Service's own attributes or with a leading '_' is refused."""
        for attr in ("router", "declarations", "_hidden"):
            with self.assertRaises(TypeError) as caught:
                type("Bad", (Service,), {attr: unary(Empty, Empty)}, name="bad")
            self.assertIn(f"Bad.{attr}", str(caught.exception))

    def test_bad_encoding(self) -> None:
        """An encoding other than json or msgpack is refused, naming the choices."""
        with self.assertRaises(TypeError) as caught:
            type("Bad", (Service,), {"m": unary(Empty, Empty)}, name="bad", encoding="xml")
        self.assertIn("json, msgpack", str(caught.exception))

    def test_a_service_is_not_subclassed(self) -> None:
        """Subclassing a declared service is refused: its methods belong to it."""
        with self.assertRaises(TypeError) as caught:
            type("More", (Calculator,), {}, name="more")
        self.assertIn("cannot be subclassed", str(caught.exception))

    def test_one_declaration_in_two_services(self) -> None:
        """A declaration object bound to one service cannot be declared in another."""
        shared = unary(Empty, Empty)
        type("One", (Service,), {"m": shared}, name="one")
        with self.assertRaises(TypeError) as caught:
            type("Two", (Service,), {"m": shared}, name="two")
        self.assertIn("one.m is also declared as Two.m", str(caught.exception))

    def test_unsupported_field_type(self) -> None:
        """A field of a type the JSON codec cannot carry is refused, naming the field."""

        @dataclasses.dataclass
        class Bad:
            ids: set[int]

        with self.assertRaises(TypeError) as caught:
            type("S", (Service,), {"m": unary(Bad, Empty)}, name="s")
        self.assertIn("s.m request: Bad.ids", str(caught.exception))

    def test_object_keys_are_text(self) -> None:
        """A dict field whose keys are not str is refused: JSON object keys are text."""

        @dataclasses.dataclass
        class Bad:
            counts: dict[int, int]

        with self.assertRaises(TypeError) as caught:
            type("S", (Service,), {"m": unary(Empty, Bad)}, name="s")
        self.assertIn("dict[str, ...]", str(caught.exception))

    def test_bad_declared_errors(self) -> None:
        """Errors map exception classes to StatusCodes or codes >= 1000, each code once."""
        cases: list[tuple[dict[Any, Any], str]] = [
            ({"nope": 1001}, "exception classes"),
            ({ValueError: StatusCode.OK}, "OK is not an error status"),
            ({ValueError: StatusCode.PROTOCOL_ERROR}, "PROTOCOL_ERROR is not an error status"),
            ({ValueError: 500}, "not 500"),
            ({ValueError: True}, "not True"),
            ({ValueError: 1001, KeyError: 1001}, "both declared with status 1001"),
            ({StatusError: 1001}, "carries its own code"),
        ]
        for errors, message in cases:
            with self.assertRaises(TypeError) as caught:
                unary(Empty, Empty, errors=errors)
            self.assertIn(message, str(caught.exception))

    def test_a_plain_int_that_is_a_status_code(self) -> None:
        """A declared status given as a plain int that is a StatusCode is accepted as that code."""
        method = unary(Empty, Empty, errors={ValueError: 3})
        self.assertEqual(method.errors, {ValueError: StatusCode.INVALID_ARGUMENT})


class ImplementationCheckTests(SynchronousTestCase):
    """Service.router checks the implementations against the declaration at start-up."""

    def test_missing_method(self) -> None:
        """Methods with no implementation, unary or streaming, are refused, naming them."""
        with self.assertRaises(TypeError) as caught:
            Calculator.router(add, ping, count)
        self.assertEqual(
            str(caught.exception),
            "service calc is missing an implementation of calc.total, calc.sum, calc.echo",
        )

    def test_extra_method(self) -> None:
        """An implementation of another service's method is refused, naming both."""

        class Other(Service, name="other"):
            add = unary(AddRequest, AddResponse)

        @Other.add.implement
        def other_add(request: AddRequest, call: Call) -> AddResponse:
            return AddResponse(total=0)

        with self.assertRaises(TypeError) as caught:
            Calculator.router(add, total, ping, *streams, other_add)
        message = str(caught.exception)
        self.assertIn("implements other.add, which is not a method of service calc", message)
        self.assertIn("its methods: add, total, ping, count, sum, echo", message)

    def test_implemented_twice(self) -> None:
        """Two implementations of one method are refused."""
        with self.assertRaises(TypeError) as caught:
            Calculator.router(add, total, ping, *streams, add)
        self.assertEqual(str(caught.exception), "calc.add is implemented twice")

    def test_not_an_implementation(self) -> None:
        """A plain function (not declared with .implement) is refused, saying how to declare it."""
        with self.assertRaises(TypeError) as caught:
            Calculator.router(add, total, ping, *streams, print)  # type: ignore[arg-type]
        self.assertIn("@Calculator.METHOD.implement", str(caught.exception))

    def test_every_method_served(self) -> None:
        """With every method implemented, the router serves each one under its wire name."""
        served = Calculator.router(add, total, ping, *streams)
        self.assertEqual(
            served.methods(),
            ["calc.add", "calc.count", "calc.echo", "calc.ping", "calc.sum", "calc.total"],
        )

    def test_added_to_a_given_router(self) -> None:
        """router= adds the service's methods to an existing router, beside its own."""
        existing = Router()
        existing.add("plain", lambda call: b"ok")
        self.assertIs(Calculator.router(add, total, ping, *streams, router=existing), existing)
        self.assertIn("plain", existing.methods())
        self.assertIn("calc.add", existing.methods())

    def test_implementation_stays_callable(self) -> None:
        """An implementation is still the function: a test may call it directly."""
        self.assertEqual(add(AddRequest(a=2, b=3), None), AddResponse(total=5))  # type: ignore[arg-type]
        self.assertEqual(add.__doc__, "Add the two numbers, up to LIMIT.")

    def test_bound_method_as_implementation(self) -> None:
        """A bound method implements a method too, so an object can hold the state."""

        class Adder:
            def __init__(self, offset: int) -> None:
                self.offset = offset

            def add(self, request: AddRequest, call: Call) -> AddResponse:
                return AddResponse(total=request.a + request.b + self.offset)

        served = Calculator.router(Calculator.add.implement(Adder(100).add), total, ping, *streams)
        pair = connected_pair(served)
        d = Calculator(pair.client).add(AddRequest(a=1, b=2))
        pair.pump()
        self.assertEqual(self.successResultOf(d), AddResponse(total=103))


class CallTests(SynchronousTestCase):
    """The stub calls the implementation over a connection: types in, types out, errors mapped."""

    def setUp(self) -> None:
        self.pair = connected_pair(router)
        self.calc = Calculator(self.pair.client)

    def call(self, d: Any) -> Any:
        self.pair.pump()
        return d

    def test_unary_call(self) -> None:
        """A call returns the declared response type."""
        d = self.call(self.calc.add(AddRequest(a=1, b=2)))
        self.assertEqual(self.successResultOf(d), AddResponse(total=3))

    def test_every_field_kind_round_trips(self) -> None:
        """A request with nested dataclasses, enums, bytes, Optional and Literal arrives intact."""
        order = Order(
            items=[Item(name="tea", price=3, quantity=2), Item(name="cake", price=4)],
            currency=Currency.GBP,
            note=None,
            tags={"gift": "no"},
            attachment=b"\x00\xff",
            priority="high",
            discount=0.5,
            pair=(1, "x"),
            gift=True,
        )
        d = self.call(self.calc.total(order))
        self.assertEqual(
            self.successResultOf(d), OrderTotal(total=10, currency=Currency.GBP, items=2)
        )

    def test_timeout_and_metadata(self) -> None:
        """timeout= and metadata= reach the call as Client.call's do."""
        seen: list[Call] = []

        @Calculator.add.implement
        def spy(request: AddRequest, call: Call) -> AddResponse:
            seen.append(call)
            return AddResponse(total=0)

        pair = connected_pair(Calculator.router(spy, total, ping, *streams))
        d = Calculator(pair.client).add(AddRequest(a=1, b=1), timeout=5, metadata={"k": "v"})
        pair.pump()
        self.successResultOf(d)
        self.assertEqual(seen[0].metadata, {"k": "v"})
        self.assertIsNotNone(seen[0].deadline)

    def test_declared_application_error(self) -> None:
        """A declared error with an application code comes back as its class, with its message."""
        d = self.call(self.calc.add(AddRequest(a=LIMIT, b=1)))
        error = self.failureResultOf(d, Overflow).value
        self.assertEqual(str(error), f"{LIMIT + 1} is more than {LIMIT}")
        self.assertIsInstance(error.__cause__, RemoteError)
        self.assertEqual(error.__cause__.code, 1001)  # type: ignore[union-attr]

    def test_declared_error_on_the_wire(self) -> None:
        """An untyped caller sees a declared error as its status code and str(exception)."""
        d = self.call(self.pair.client.call("calc.add", {"a": LIMIT, "b": 1}, codec=JSON))
        error = _status(self, d)
        self.assertEqual((error.code, error.message), (1001, f"{LIMIT + 1} is more than {LIMIT}"))

    def test_declared_status_code_error(self) -> None:
        """A declared error with a StatusCode (a KeyError here) comes back as its class."""
        order = Order(items=[Item(name="ghost", price=-1)])
        d = self.call(self.calc.total(order))
        error = self.failureResultOf(d, NoSuchItem).value
        self.assertEqual(error.args, ("ghost",))
        self.assertEqual(error.__cause__.code, StatusCode.NOT_FOUND)  # type: ignore[union-attr]

    def test_undeclared_error_is_internal(self) -> None:
        """An undeclared exception is answered INTERNAL, logged, and arrives as RemoteError."""

        @Calculator.add.implement
        def broken(request: AddRequest, call: Call) -> AddResponse:
            raise ZeroDivisionError("secret detail")

        pair = connected_pair(Calculator.router(broken, total, ping, *streams))
        d = Calculator(pair.client).add(AddRequest(a=1, b=2))
        pair.pump()
        error = _status(self, d)
        self.assertEqual(error.code, StatusCode.INTERNAL)
        self.assertNotIn("secret", error.message)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_other_error_status_stays_remote_error(self) -> None:
        """An error status that is not declared for the method stays a RemoteError."""

        @Calculator.add.implement
        def refuse(request: AddRequest, call: Call) -> AddResponse:
            raise StatusError(StatusCode.PERMISSION_DENIED, "no")

        pair = connected_pair(Calculator.router(refuse, total, ping, *streams))
        d = Calculator(pair.client).add(AddRequest(a=1, b=2))
        pair.pump()
        self.assertEqual(_status(self, d).code, StatusCode.PERMISSION_DENIED)

    def test_wrong_answer_type_is_internal(self) -> None:
        """An implementation that returns the wrong type is the server's bug: INTERNAL, logged."""

        @Calculator.add.implement
        def wrong(request: AddRequest, call: Call) -> AddResponse:
            return "three"  # type: ignore[return-value]

        pair = connected_pair(Calculator.router(wrong, total, ping, *streams))
        d = Calculator(pair.client).add(AddRequest(a=1, b=2))
        pair.pump()
        self.assertEqual(_status(self, d).code, StatusCode.INTERNAL)
        self.assertEqual(len(self.flushLoggedErrors(CodecError)), 1)

    def test_reply_with_metadata(self) -> None:
        """An implementation may answer a Reply of the response to send metadata."""
        d = self.call(self.pair.client.call("calc.ping", codec=JSON))
        reply = self.successResultOf(d)
        self.assertEqual((reply.body, reply.metadata), ({}, {"pong": "yes"}))
        d = self.call(self.calc.ping(Empty()))
        self.assertEqual(self.successResultOf(d), Empty())

    def test_stub_validates_the_request_before_sending(self) -> None:
        """A request that does not match its type fails with CodecError and sends nothing."""
        d = self.calc.add(AddRequest(a="1", b=2))  # type: ignore[arg-type]
        self.assertEqual(str(self.failureResultOf(d, CodecError).value), "a: expected int, got str")
        self.assertEqual(self.pair.client_transport.value(), b"")

    def test_stub_validates_the_answer(self) -> None:
        """An answer that does not match the response type fails with CodecError naming the path."""
        impostor = Router()
        impostor.add("calc.add", lambda call: {"total": "3"}, codec=JSON)
        pair = connected_pair(impostor)
        d = Calculator(pair.client).add(AddRequest(a=1, b=2))
        pair.pump()
        self.assertEqual(
            str(self.failureResultOf(d, CodecError).value), "total: expected int, got str"
        )


class InvalidBodyTests(SynchronousTestCase):
    """A body that does not match the declared type gets INVALID_ARGUMENT with its path."""

    def setUp(self) -> None:
        self.pair = connected_pair(router)

    def answer(self, method: str, body: bytes) -> RemoteError:
        d = self.pair.client.call(method, body)
        self.pair.pump()
        return _status(self, d)

    def assert_invalid(self, method: str, body: bytes, message: str) -> None:
        error = self.answer(method, body)
        self.assertEqual((error.code, error.message), (StatusCode.INVALID_ARGUMENT, message))

    def test_field_path(self) -> None:
        """A nested field of the wrong type is named by its path, and the connection stays open."""
        items = [{"name": "a", "price": 1}, {"name": "b", "price": 2}, {"name": "c", "price": "3"}]
        body = json.dumps({"items": items}).encode()
        self.assert_invalid("calc.total", body, "items[2].price: expected int, got str")
        d = Calculator(self.pair.client).add(AddRequest(a=1, b=2))
        self.pair.pump()
        self.assertEqual(self.successResultOf(d), AddResponse(total=3))
        self.assertFalse(self.pair.server_transport.disconnecting)

    def test_each_mismatch(self) -> None:
        """Each kind of mismatch has its message, at its path."""
        cases = [
            (b'{"a": 1}', "b: missing required field"),
            (b'{"a": true, "b": 1}', "a: expected int, got bool"),
            (b'{"a": 1.5, "b": 1}', "a: expected int, got float"),
            (b'{"a": null, "b": 1}', "a: expected int, got null"),
            (b"[1, 2]", "expected object (AddRequest), got list"),
            (b"{nope", "body is not valid JSON: "),
        ]
        for body, message in cases:
            error = self.answer("calc.add", body)
            self.assertEqual(error.code, StatusCode.INVALID_ARGUMENT)
            self.assertTrue(error.message.startswith(message), (body, error.message))

    def test_field_kinds(self) -> None:
        """Enums, Literal, bytes, tuples, dicts and Optional are checked too."""
        item = {"name": "a", "price": 1}
        cases = [
            ({"currency": "USD"}, "currency: expected one of ['EUR', 'GBP'] (Currency), got 'USD'"),
            ({"priority": "urgent"}, "priority: expected one of ['low', 'high'], got 'urgent'"),
            ({"attachment": "!!"}, "attachment: expected bytes (base64 text), got invalid base64"),
            ({"attachment": 1}, "attachment: expected bytes (base64 text), got int"),
            ({"pair": [1]}, "pair: expected 2 items, got 1"),
            ({"pair": [1, 2]}, "pair[1]: expected str, got int"),
            ({"tags": {"a": 1}}, "tags.a: expected str, got int"),
            ({"tags": {"a b": 1}}, 'tags["a b"]: expected str, got int'),
            ({"note": 1}, "note: expected str, got int"),
            ({"gift": 1}, "gift: expected bool, got int"),
            ({"discount": "x"}, "discount: expected float, got str"),
            ({"items": {}}, "items: expected list[Item], got dict"),
        ]
        for extra, message in cases:
            body = json.dumps({"items": [item], **extra}).encode()
            self.assert_invalid("calc.total", body, message)

    def test_accepted_variants(self) -> None:
        """An int where a float is declared, null for an Optional, and unknown keys are accepted."""
        body = {"items": [{"name": "a", "price": 2, "colour": "red"}], "discount": 1, "note": None}
        d = self.pair.client.call("calc.total", body, codec=JSON)
        self.pair.pump()
        self.assertEqual(self.successResultOf(d).body, {"total": 2, "currency": "EUR", "items": 1})

    def test_empty_body_is_an_empty_object(self) -> None:
        """An empty body stands for {}: fields with defaults are filled, required ones named."""
        d = self.pair.client.call("calc.ping")
        self.pair.pump()
        self.assertEqual(self.successResultOf(d).body, b"{}")
        self.assert_invalid("calc.add", b"", "a: missing required field")

    def test_line_format(self) -> None:
        """Over the line format a bad body is answered INVALID_ARGUMENT and the next call works."""
        pair = connected_pair(router, wire=LINE)
        bad = pair.client.call("calc.add", b'{"a":"x","b":1}')
        good = pair.client.call("calc.add", b'{"a":1,"b":2}')
        pair.pump()
        self.assertEqual(_status(self, bad).message, "a: expected int, got str")
        self.assertEqual(self.successResultOf(good).body, b'{"total":3}')


class RecursiveTypeTests(SynchronousTestCase):
    """A recursive type is carried, described, and too deep a body is refused, not a crash."""

    def test_round_trip_and_schema(self) -> None:
        """A recursive dataclass round-trips and its schema refers to itself in $defs."""
        codec = TypedCodec(Node, Node)
        value = Node(children=[Node(children=[]), Node(children=[Node(children=[])])])
        self.assertEqual(codec.decode(codec.encode(value)), value)
        request_schema, _ = unary(Node, Node).schemas()
        self.assertEqual(
            request_schema["$defs"]["Node"]["properties"]["children"],
            {"type": "array", "items": {"$ref": "#/$defs/Node"}},
        )

    def test_nesting_below_at_and_above_the_bound(self) -> None:
        """Nesting the JSON parser accepts decodes or is refused with CodecError at every depth,
        never RecursionError, and the server answers INVALID_ARGUMENT."""
        codec = TypedCodec(Node, Node)
        outcomes = set()
        for depth in (10, 100, 200, 300, 350, 400, 450, 500, 1000, 5000):
            try:
                codec.decode(_nested(depth))
                outcomes.add("decoded")
            except CodecError as e:
                self.assertIn("nested too deeply", str(e))
                outcomes.add("refused")
        self.assertEqual(outcomes, {"decoded", "refused"})

        class Tree(Service, name="tree"):
            echo = unary(Node, Node)

        pair = connected_pair(Tree.router(Tree.echo.implement(lambda request, call: request)))
        d = pair.client.call("tree.echo", _nested(400))
        pair.pump()
        error = _status(self, d)
        self.assertEqual(error.code, StatusCode.INVALID_ARGUMENT)

    def test_encoding_too_deep(self) -> None:
        """Encoding a value nested past the bound raises CodecError, not RecursionError."""
        value = Node(children=[])
        for _ in range(5000):
            value = Node(children=[value])
        self.assertRaises(CodecError, TypedCodec(Node, Node).encode, value)


class TypedStreamingTests(SynchronousTestCase):
    """Typed streaming methods: stubs send and read values of the declared types."""

    def test_server_stream(self) -> None:
        """A server-streaming stub yields decoded responses; its result carries no value."""
        pair = connected_pair(router)
        call = Calculator(pair.client).count(CountRequest(n=3))
        got: list[Number] = []

        async def read() -> None:
            async for number in call:
                got.append(number)

        reading = Deferred.fromCoroutine(read())
        pair.pump()
        self.successResultOf(reading)
        self.assertEqual(got, [Number(value=1), Number(value=2), Number(value=3)])
        self.assertIsNone(self.successResultOf(call.result()).body)

    def test_client_stream(self) -> None:
        """A client-streaming stub sends typed requests; the result is the typed response."""
        pair = connected_pair(router)
        call = Calculator(pair.client).sum()
        for value in (1, 2, 3):
            call.send(Number(value=value))
        call.end()
        pair.pump()
        self.assertEqual(self.successResultOf(call.result()).body, AddResponse(total=6))

    def test_bidi_stream(self) -> None:
        """A bidirectional stub sends and receives typed messages, interleaved."""
        pair = connected_pair(router)
        call = Calculator(pair.client).echo()
        call.send(Number(value=21))
        pair.pump()
        self.assertEqual(self.successResultOf(call.read()), Number(value=42))
        call.end()
        pair.pump()
        self.assertIsNone(self.successResultOf(call.read()))

    def test_declared_error(self) -> None:
        """A declared error raised mid-stream reaches the stub as its exception class."""
        pair = connected_pair(router)
        call = Calculator(pair.client).sum()
        call.send(Number(value=LIMIT))
        call.send(Number(value=1))
        pair.pump()
        error = self.failureResultOf(call.result(), Overflow).value
        self.assertEqual(str(error), f"{LIMIT + 1} is more than {LIMIT}")

    def test_message_of_the_wrong_type(self) -> None:
        """A streamed message not of the declared type ends the call INVALID_ARGUMENT."""
        pair = connected_pair(router)
        call = pair.client.stream("calc.sum", kind="client_stream")
        call.write(b'{"value": "two"}')
        pair.pump()
        error = _status(self, call.result())
        self.assertEqual(error.code, StatusCode.INVALID_ARGUMENT)
        self.assertEqual(error.message, "stream message: value: expected int, got str")
        after = Calculator(pair.client).ping(Empty())
        pair.pump()
        self.assertEqual(self.successResultOf(after), Empty())

    def test_stub_sends_wrong_type(self) -> None:
        """A stub refuses to send a value that is not of the declared request type."""
        pair = connected_pair(router)
        call = Calculator(pair.client).sum()
        self.failureResultOf(call.send(AddRequest(a=1, b=2)), CodecError)  # type: ignore[arg-type]

    def test_unary_call_to_streaming_method(self) -> None:
        """A unary call to a streaming method is answered INVALID_ARGUMENT; the connection stays."""
        pair = connected_pair(router)
        d = pair.client.call("calc.count", b'{"n": 3}')
        ok = pair.client.call("calc.ping")
        pair.pump()
        error = _status(self, d)
        self.assertEqual(error.code, StatusCode.INVALID_ARGUMENT)
        self.assertEqual(error.message, "method 'calc.count' is server_stream; called as unary")
        self.successResultOf(ok)


class IntrospectionTests(SynchronousTestCase):
    """reqresp.methods shows each typed method's kind and request/response JSON Schemas."""

    def methods(self) -> dict[str, dict[str, Any]]:
        pair = connected_pair(router)
        d = pair.client.call("reqresp.methods", codec=JSON)
        pair.pump()
        return {m["name"]: m for m in self.successResultOf(d).body["methods"]}

    def test_kinds_and_docs(self) -> None:
        """Each method is listed with its kind, codec and doc (doc= or the function's docstring)."""
        methods = self.methods()
        self.assertEqual(
            {name: (m["kind"], m["codec"]) for name, m in methods.items() if name[:5] == "calc."},
            {
                "calc.add": ("unary", "json"),
                "calc.total": ("unary", "json"),
                "calc.ping": ("unary", "json"),
                "calc.count": ("server_stream", "json"),
                "calc.sum": ("client_stream", "json"),
                "calc.echo": ("bidi_stream", "json"),
            },
        )
        self.assertEqual(methods["calc.add"]["doc"], "Add two numbers.")
        self.assertEqual(
            methods["calc.total"]["doc"], "Add up an order (an ``async def`` implementation)."
        )
        self.assertEqual(methods["calc.count"]["doc"], "Count to n.")
        self.assertNotIn("request_schema", methods["reqresp.health"])

    def test_schemas(self) -> None:
        """The schemas are JSON Schema: nested dataclasses and enums in $defs, defaults optional."""
        add_schema = self.methods()["calc.add"]
        self.assertEqual(
            add_schema["request_schema"],
            {
                "$ref": "#/$defs/AddRequest",
                "$defs": {
                    "AddRequest": {
                        "title": "AddRequest",
                        "type": "object",
                        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                        "required": ["a", "b"],
                    }
                },
            },
        )
        order = self.methods()["calc.total"]["request_schema"]
        self.assertEqual(set(order["$defs"]), {"Order", "Item", "Currency"})
        props = order["$defs"]["Order"]["properties"]
        self.assertEqual(props["currency"], {"$ref": "#/$defs/Currency"})
        self.assertEqual(order["$defs"]["Currency"]["enum"], ["EUR", "GBP"])
        self.assertEqual(props["note"], {"anyOf": [{"type": "string"}, {"type": "null"}]})
        self.assertEqual(props["attachment"], {"type": "string", "contentEncoding": "base64"})
        self.assertEqual(props["priority"], {"enum": ["low", "high"]})
        self.assertEqual(props["tags"]["additionalProperties"], {"type": "string"})
        self.assertEqual(props["pair"]["prefixItems"], [{"type": "integer"}, {"type": "string"}])
        self.assertEqual(order["$defs"]["Order"]["required"], ["items"])
        self.assertEqual(order["$defs"]["Item"]["required"], ["name", "price"])


# -- msgspec ----------------------------------------------------------------------


class Point(msgspec.Struct, frozen=True):
    """A msgspec Struct request."""

    x: int
    y: int


class Path_(msgspec.Struct, frozen=True):
    """A msgspec Struct with a nested list."""

    points: list[Point]


class Length(msgspec.Struct, frozen=True):
    """A msgspec Struct response."""

    squared: int


class Geometry(Service, name="geo", encoding="msgpack"):
    """A msgspec service over MessagePack."""

    length = unary(Path_, Length)
    stream = server_stream(Point, Point)


class GeometryJSON(Service, name="geojson"):
    """The same types over JSON, through msgspec."""

    length = unary(Path_, Length)


def _length(request: Path_, call: Call) -> Length:
    return Length(squared=sum(p.x * p.x + p.y * p.y for p in request.points))


@Geometry.stream.implement
async def _mirror(request: Point, call: Call) -> AsyncIterator[Point]:
    yield Point(x=request.y, y=request.x)


class MsgspecTests(SynchronousTestCase):
    """msgspec Structs work as request and response types, over MessagePack or JSON."""

    def test_msgpack_round_trip(self) -> None:
        """A msgpack service carries Structs and answers the declared type."""
        pair = connected_pair(Geometry.router(Geometry.length.implement(_length), _mirror))
        d = Geometry(pair.client).length(Path_(points=[Point(x=3, y=4)]))
        pair.pump()
        self.assertEqual(self.successResultOf(d), Length(squared=25))
        raw = pair.client.call("geo.length", msgspec.msgpack.encode({"points": [{"x": 1, "y": 0}]}))
        pair.pump()
        self.assertEqual(msgspec.msgpack.decode(self.successResultOf(raw).body), {"squared": 1})

    def test_msgpack_invalid_body(self) -> None:
        """A msgpack body that does not match gets INVALID_ARGUMENT with the field path."""
        pair = connected_pair(Geometry.router(Geometry.length.implement(_length), _mirror))
        body = msgspec.msgpack.encode({"points": [{"x": 1, "y": 0}, {"x": "1", "y": 0}]})
        d = pair.client.call("geo.length", body)
        pair.pump()
        error = _status(self, d)
        self.assertEqual(
            (error.code, error.message),
            (StatusCode.INVALID_ARGUMENT, "points[1].x: expected int, got str"),
        )

    def test_json_through_msgspec(self) -> None:
        """Struct types on a JSON service are encoded by msgspec's JSON codec, validated alike."""
        pair = connected_pair(GeometryJSON.router(GeometryJSON.length.implement(_length)))
        d = GeometryJSON(pair.client).length(Path_(points=[Point(x=1, y=1)]))
        bad = pair.client.call("geojson.length", b'{"points": [{"x": 1}]}')
        pair.pump()
        self.assertEqual(self.successResultOf(d), Length(squared=2))
        self.assertEqual(_status(self, bad).message, "points[0]: object missing required field y")

    def test_schema_from_msgspec(self) -> None:
        """reqresp.methods describes Struct types with msgspec's JSON Schema, and msgpack's kind."""
        described = {
            m.name: m
            for m in Geometry.router(Geometry.length.implement(_length), _mirror).describe()
        }
        self.assertEqual(described["geo.length"].codec, "msgpack")
        self.assertEqual(described["geo.length"].request_schema, msgspec.json.schema(Path_))
        self.assertEqual(described["geo.stream"].kind, "server_stream")

    def test_wrong_type_to_encode(self) -> None:
        """The msgspec codec refuses to encode a value that is not of the declared type."""
        d = Geometry(
            connected_pair(Geometry.router(Geometry.length.implement(_length), _mirror)).client
        ).length(
            Point(x=1, y=1)  # type: ignore[arg-type]
        )
        self.assertEqual(
            str(self.failureResultOf(d, CodecError).value), "expected Path_, got Point"
        )


class TypedJSONCodecConformanceTests(CodecConformanceMixin, SynchronousTestCase):
    """The stdlib typed codec passes the codec conformance kit."""

    codec = TypedCodec(Order, Order)
    sample_values = [
        Order(items=[]),
        Order(
            items=[Item(name="é", price=-1, quantity=0)],
            currency=Currency.GBP,
            note="n",
            tags={"k": "v"},
            attachment=bytes(range(256)),
            priority="high",
            discount=1e300,
            pair=(-1, ""),
            gift=True,
        ),
    ]
    invalid_bodies = [b"[]", b'{"items": 1}', b"null", b'{"items": [{"name": 1}]}']


class TypedMsgpackCodecConformanceTests(CodecConformanceMixin, SynchronousTestCase):
    """The msgspec MessagePack typed codec passes the codec conformance kit."""

    codec = TypedCodec(Path_, Path_, "msgpack")
    sample_values = [Path_(points=[]), Path_(points=[Point(x=1, y=-2)])]
    invalid_bodies = [b"\xc1", msgspec.msgpack.encode({"points": 1})]


# -- mypy -------------------------------------------------------------------------

#: A line mypy must reject ends with this comment, naming a word of the error.
_EXPECT = re.compile(r"\S.*#\s*reject:\s*(?P<word>.+)$")


class TypeCheckTests(SynchronousTestCase):
    """mypy checks both sides against the declaration: it accepts the good file, rejects the bad."""

    def test_mypy(self) -> None:
        """mypy passes typecheck/accepted.py and flags only the marked lines of rejected.py."""
        from mypy import api

        cache = tempfile.mkdtemp(prefix="reqresp-mypy-")
        self.addCleanup(shutil.rmtree, cache, True)
        accepted = TESTS / "typecheck" / "accepted.py"
        rejected = TESTS / "typecheck" / "rejected.py"
        # The typing files import the contract from tests/, as the tests do.
        with mock.patch.dict(os.environ, {"MYPYPATH": str(TESTS)}):
            stdout, stderr, _ = api.run(
                [
                    "--config-file",
                    str(TESTS.parent / "pyproject.toml"),
                    "--cache-dir",
                    cache,
                    "--no-error-summary",
                    "--show-error-codes",
                    str(accepted),
                    str(rejected),
                ]
            )
        errors: dict[tuple[str, int], str] = {}
        for line in stdout.splitlines():
            match = re.match(r"^(?P<file>[^:]+):(?P<line>\d+): error: (?P<text>.*)$", line)
            if match:
                key = (Path(match["file"]).name, int(match["line"]))
                errors[key] = errors.get(key, "") + match["text"]
        self.assertFalse([key for key in errors if key[0] == "accepted.py"], f"{stdout}\n{stderr}")
        expected = {
            ("rejected.py", number): m["word"].strip()
            for number, text in enumerate(rejected.read_text().splitlines(), 1)
            if (m := _EXPECT.search(text))
        }
        self.assertGreaterEqual(len(expected), 5)
        flagged = {key for key in errors if key[0] == "rejected.py"}
        self.assertEqual(flagged, set(expected), f"{stdout}\n{stderr}")
        for key, word in expected.items():
            self.assertIn(word, errors[key], key)
        self.assertEqual({key[0] for key in errors} - {"rejected.py"}, set(), stdout)
