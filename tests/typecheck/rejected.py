"""
What mypy --strict must reject: each line whose comment is "reject:"
followed by a word is an error whose message contains that word, and no
other line is
(checked by tests/test_service_typed.py, TypeCheckTests).
"""

from __future__ import annotations

from typed_contract import AddRequest, AddResponse, Calculator, CountRequest, Empty, Number

from twisted_reqresp import Call, Client


@Calculator.add.implement  # reject: arg-type
def takes_the_wrong_request(request: Empty, call: Call) -> AddResponse:
    return AddResponse(total=0)


@Calculator.add.implement  # reject: arg-type
def returns_the_wrong_response(request: AddRequest, call: Call) -> Empty:
    return Empty()


@Calculator.add.implement  # reject: arg-type
def forgets_the_call(request: AddRequest) -> AddResponse:
    return AddResponse(total=0)


async def use(client: Client) -> None:
    calc = Calculator(client)
    await calc.add(Empty())  # reject: arg-type
    response = await calc.add(AddRequest(a=1, b=2))
    text: str = response.total  # reject: assignment
    print(text)
    await calc.add(AddRequest(a=1, b=2), deadline=3)  # reject: call-arg
    await calc.subtract(AddRequest(a=1, b=2))  # reject: attr-defined


async def use_streams(client: Client) -> None:
    calc = Calculator(client)
    async for number in calc.count(CountRequest(n=3)):
        name: str = number.value  # reject: assignment
        print(name)
    adding = calc.sum()
    await adding.send(AddRequest(a=1, b=2))  # reject: arg-type
    await adding.send(Number(value=1))
