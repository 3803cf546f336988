"""
A typed service contract and its implementation, shared by
``tests/test_service_typed.py``, the mypy checks in ``tests/typecheck/`` and
the ``twistd reqresp --responder typed_contract:router`` end-to-end test.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from twisted.internet.defer import Deferred, succeed

from twisted_reqresp import Call, Reply, StatusCode
from twisted_reqresp.service import Service, bidi_stream, client_stream, server_stream, unary

#: The largest total ``calc.add`` answers; more is its declared Overflow.
LIMIT = 1_000_000


class Currency(enum.Enum):
    """An enum carried by its value."""

    EUR = "EUR"
    GBP = "GBP"


@dataclass(frozen=True)
class AddRequest:
    """Two numbers to add."""

    a: int
    b: int


@dataclass(frozen=True)
class AddResponse:
    """Their sum."""

    total: int


@dataclass(frozen=True)
class Item:
    """One line of an order."""

    name: str
    price: int
    quantity: int = 1


@dataclass(frozen=True)
class Order:
    """Every supported kind of field, nested."""

    items: list[Item]
    currency: Currency = Currency.EUR
    note: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    attachment: bytes = b""
    priority: Literal["low", "high"] = "low"
    discount: float = 0.0
    pair: tuple[int, str] = (0, "")
    gift: bool = False


@dataclass(frozen=True)
class OrderTotal:
    """What an order costs."""

    total: int
    currency: Currency
    items: int


@dataclass(frozen=True)
class Empty:
    """No fields: a method called with no body."""


@dataclass(frozen=True)
class CountRequest:
    """How many to count."""

    n: int


@dataclass(frozen=True)
class Number:
    """One number of a stream."""

    value: int


class Overflow(Exception):
    """The total is more than LIMIT: declared with an application status."""


class NoSuchItem(KeyError):
    """Declared with a StatusCode."""


class Calculator(Service, name="calc"):
    """The contract both sides import."""

    add = unary(AddRequest, AddResponse, errors={Overflow: 1001}, doc="Add two numbers.")
    total = unary(Order, OrderTotal, errors={NoSuchItem: StatusCode.NOT_FOUND})
    ping = unary(Empty, Empty)
    count = server_stream(CountRequest, Number, doc="Count to n.")
    sum = client_stream(Number, AddResponse, errors={Overflow: 1001})
    echo = bidi_stream(Number, Number)


@Calculator.add.implement
def add(request: AddRequest, call: Call) -> AddResponse:
    """Add the two numbers, up to LIMIT."""
    total = request.a + request.b
    if total > LIMIT:
        raise Overflow(f"{total} is more than {LIMIT}")
    return AddResponse(total=total)


@Calculator.total.implement
async def total(request: Order, call: Call) -> OrderTotal:
    """Add up an order (an ``async def`` implementation)."""
    for item in request.items:
        if item.price < 0:
            raise NoSuchItem(item.name)
    return OrderTotal(
        total=sum(item.price * item.quantity for item in request.items),
        currency=request.currency,
        items=len(request.items),
    )


@Calculator.ping.implement
def ping(request: Empty, call: Call) -> Deferred[Reply]:
    """Answer with metadata, through a Deferred of a Reply."""
    return succeed(Reply(body=Empty(), metadata={"pong": "yes"}))


@Calculator.count.implement
async def count(request: CountRequest, call: Call) -> AsyncIterator[Number]:
    """Count from 1 to n (an async generator: each value streamed with flow control)."""
    for value in range(1, request.n + 1):
        yield Number(value=value)


@Calculator.sum.implement
async def sum_(request: None, call: Call) -> AddResponse:
    """Add the numbers streamed (reading ``call.stream``), up to LIMIT."""
    result = 0
    async for number in call.stream:
        result += number.value
        if result > LIMIT:
            raise Overflow(f"{result} is more than {LIMIT}")
    return AddResponse(total=result)


@Calculator.echo.implement
async def echo(request: None, call: Call) -> AsyncIterator[Number]:
    """Answer each number with its double, as it comes."""
    async for number in call.stream:
        yield Number(value=number.value * 2)


#: The streaming implementations, for tests that vary the unary ones.
streams = (count, sum_, echo)

#: What ``twistd reqresp --responder typed_contract:router`` serves.
router = Calculator.router(add, total, ping, *streams)
