"""
What mypy --strict must accept: a typed service used from both sides
(checked by tests/test_service_typed.py, TypeCheckTests).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from typed_contract import AddRequest, AddResponse, Calculator, CountRequest, Empty, Number

from twisted_reqresp import Call, Channel, Client, Reply, Router
from twisted_reqresp.service import Implementation, UnaryMethod


@Calculator.add.implement
def add(request: AddRequest, call: Call) -> AddResponse:
    return AddResponse(total=request.a + request.b)


@Calculator.add.implement
async def add_later(request: AddRequest, call: Call) -> AddResponse:
    return AddResponse(total=request.a)


@Calculator.add.implement
def add_deferred(request: AddRequest, call: Call) -> Deferred[AddResponse]:
    return succeed(AddResponse(total=0))


@Calculator.ping.implement
def ping(request: Empty, call: Call) -> Reply:
    return Reply(body=Empty(), metadata={"k": "v"})


declaration: UnaryMethod[AddRequest, AddResponse] = Calculator.add
implementation: Implementation[AddRequest, AddResponse] = add


def serve() -> Router:
    return Calculator.router(add, ping)


async def use(client: Client) -> int:
    calc = Calculator(client)
    response: AddResponse = await calc.add(AddRequest(a=1, b=2), timeout=1.0, metadata={"k": "v"})
    pending: Deferred[AddResponse] = calc.add(AddRequest(a=1, b=2))
    await pending
    return response.total


async def use_channel(channel: Channel, parent: Call) -> int:
    # A Channel is a Caller too, and stubs pass parent= on.
    calc = Calculator(channel)
    response: AddResponse = await calc.add(AddRequest(a=1, b=2), parent=parent)
    return response.total


async def use_streams(client: Client) -> int:
    # Streaming stubs are typed too: messages read are of the declared
    # response type, messages sent of the declared request type.
    calc = Calculator(client)
    total = 0
    async for number in calc.count(CountRequest(n=3)):
        total += number.value
    adding = calc.sum()
    await adding.send(Number(value=1))
    adding.end()
    reply = await adding.result()
    response: AddResponse = reply.body
    return total + response.total
