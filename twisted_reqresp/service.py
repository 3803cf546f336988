"""
Typed service contracts, declared once and shared by client and server.

A service is a class whose attributes declare its methods; both sides
import it::

    from dataclasses import dataclass
    from twisted_reqresp.service import Service, unary

    @dataclass
    class AddRequest:
        a: int
        b: int

    @dataclass
    class AddResponse:
        total: int

    class Overflow(Exception):
        pass

    class Calculator(Service, name="calc"):
        add = unary(AddRequest, AddResponse, errors={Overflow: 1001})

The server implements each method with a function that mypy checks against
the declaration, and serves the lot with :meth:`Service.router`::

    @Calculator.add.implement
    def add(request: AddRequest, call: Call) -> AddResponse:
        return AddResponse(total=request.a + request.b)

    router = Calculator.router(add)

The client calls through a stub, whose methods mypy checks too::

    calc = Calculator(client)
    response = await calc.add(AddRequest(a=1, b=2))  # an AddResponse

Bodies are JSON by default (dataclasses, with the standard library only);
msgspec ``Struct`` types, and MessagePack bodies (``encoding="msgpack"``),
need the ``msgspec`` extra.  See ``docs/guide.md``, "Typed services".
"""

from ._adapters.services import (
    BidiStreamMethod,
    Caller,
    ClientStreamMethod,
    Implementation,
    Method,
    MethodKind,
    ServerStreamMethod,
    Service,
    UnaryMethod,
    UnaryStub,
    bidi_stream,
    client_stream,
    server_stream,
    unary,
)
from ._adapters.typed import TypedCodec

__all__ = [
    "BidiStreamMethod",
    "Caller",
    "ClientStreamMethod",
    "Implementation",
    "Method",
    "MethodKind",
    "ServerStreamMethod",
    "Service",
    "TypedCodec",
    "UnaryMethod",
    "UnaryStub",
    "bidi_stream",
    "client_stream",
    "server_stream",
    "unary",
]
