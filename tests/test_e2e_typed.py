"""
End to end: a typed service (``tests/typed_contract.py``) served by a real
``twistd reqresp --responder typed_contract:router`` on loopback, called
through its typed stub by the client library (in a subprocess running its
own reactor), by the ``reqresp`` command and over the line format.  Each
class runs on twistd's default reactor and on ``--reactor=asyncio``.
"""

from __future__ import annotations

import json
import socket
import textwrap

from e2e import (
    READ_TIMEOUT,
    TESTS,
    ReactorMixin,
    clean_env,
    reqresp,
    responder_env,
    run_script,
    start,
)
from twisted.trial.unittest import SynchronousTestCase

#: The client: the typed stub over a real connection.  It prints one JSON
#: line of what it saw.
_TYPED_CLIENT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[2])
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react
    from twisted_reqresp import RemoteError, connect
    from typed_contract import AddRequest, Calculator, CountRequest, Item, Number, Order, Overflow

    async def main(reactor, endpoint):
        client = await connect(reactor, endpoint, timeout=10)
        calc = Calculator(client)
        results = {"add": (await calc.add(AddRequest(a=1, b=2))).total}
        try:
            await calc.add(AddRequest(a=10**6, b=1))
        except Overflow as e:
            results["overflow"] = str(e)
        order = Order(items=[Item(name="tea", price=3, quantity=2)], attachment=b"\\0")
        results["total"] = (await calc.total(order)).total
        try:
            await client.call("calc.add", b'{"a": "1", "b": 2}')
        except RemoteError as e:
            results["invalid"] = [int(e.code), e.message]
        results["count"] = [n.value async for n in calc.count(CountRequest(n=3))]
        total = calc.sum()
        for value in range(1, 1001):
            await total.send(Number(value=value))
        total.end()
        results["sum"] = (await total.result()).body.total
        echo = calc.echo()
        await echo.send(Number(value=4))
        results["echo"] = (await echo.read()).value
        echo.end()
        results["echo_end"] = await echo.read()
        results["after"] = (await calc.add(AddRequest(a=2, b=2))).total
        await client.close()
        print(json.dumps(results))

    react(lambda reactor: Deferred.fromCoroutine(main(reactor, sys.argv[1])))
    """
)


class TypedServiceTests(ReactorMixin, SynchronousTestCase):
    """A typed service under twistd answers its stub, the reqresp command and the line format."""

    def start(self) -> str:
        server = start(
            self,
            "--responder",
            "typed_contract:router",
            env=responder_env(),
            reactor=self.reactor,
        )
        return server.endpoint

    def test_stub_over_tcp(self) -> None:
        """The stub gets typed answers and typed streams over TCP, a declared error as its
        class, and the connection survives an invalid body."""
        endpoint = self.start()
        results = run_script(_TYPED_CLIENT, endpoint, str(TESTS))
        self.assertEqual(
            results,
            {
                "add": 3,
                "overflow": "1000001 is more than 1000000",
                "total": 6,
                "invalid": [3, "a: expected int, got str"],
                "count": [1, 2, 3],
                "sum": 500500,
                "echo": 8,
                "echo_end": None,
                "after": 4,
            },
        )

    def test_reqresp_command(self) -> None:
        """reqresp call reaches a typed method with JSON, and reqresp methods shows its kind."""
        endpoint = self.start()
        env = clean_env(REQRESP_CONNECT=endpoint)
        result = reqresp("call", "calc.add", '{"a": 1, "b": 2}', env=env)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(json.loads(result.stdout), {"total": 3})
        bad = reqresp("call", "calc.add", '{"a": [], "b": 2}', env=env)
        self.assertEqual(bad.returncode, 1)
        self.assertIn("INVALID_ARGUMENT: a: expected int, got list", bad.stderr)
        methods = reqresp("call", "reqresp.methods", env=env)
        self.assertEqual(methods.returncode, 0, methods.stderr)
        described = {m["name"]: m for m in json.loads(methods.stdout)["methods"]}
        self.assertEqual(described["calc.count"]["kind"], "server_stream")
        self.assertEqual(described["calc.add"]["request_schema"]["$ref"], "#/$defs/AddRequest")

    def test_line_format(self) -> None:
        """Over the line format, a bad body is answered ERR INVALID_ARGUMENT with its path
        and the next line is answered."""
        endpoint = self.start()
        port = int(endpoint.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT) as sock:
            sock.sendall(b'calc.add {"a": "x", "b": 1}\ncalc.add {"a": 1, "b": 1}\n')
            data = b""
            while data.count(b"\n") < 2:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        self.assertEqual(
            data.splitlines(),
            [b"ERR INVALID_ARGUMENT a: expected int, got str", b'OK {"total":2}'],
        )


class TypedServiceAsyncioTests(TypedServiceTests):
    """The same, on twistd's asyncio reactor."""

    reactor = "asyncio"
