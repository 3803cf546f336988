"""
End to end over real TLS: a ``twistd -n reqresp`` process listening on an
``ssl:`` endpoint with a certificate from a throwaway CA (made at test time,
valid for ``localhost`` and ``127.0.0.1``), called by the client library in
a subprocess through a ``tls:`` endpoint that verifies that certificate, and
by raw TLS sockets that misbehave on purpose.

It pins what TLS must not change: calls, bodies at the 16 MiB frame limit
and one byte over, closes that complete from either side, the idle and ping
timeouts, and a drain that answers every accepted call.  Each class runs on
twistd's default reactor and, as its ``...AsyncioTests`` subclass, on
``twistd --reactor=asyncio``.

Every wait is bounded in time, and every process is killed at cleanup.
"""

from __future__ import annotations

import json
import signal
import struct
import textwrap
import time
from typing import Any, ClassVar

from e2e import (
    CLIENT_CLOSE,
    CLOSE_WITHIN,
    EARLY_TICK,
    STOP_TIMEOUT,
    WAIT_FOR_CLOSE,
    Certificates,
    RawPeer,
    ReactorMixin,
    Server,
    raw_peer,
    read_line,
    reqresp,
    responder_env,
    run_script,
    spawn,
    start,
)
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import DEFAULT_LIMITS, StatusCode
from twisted_reqresp.wire import GoAway

#: The default frame limit, which every test here runs with.
MAX_FRAME = DEFAULT_LIMITS.max_frame_size

#: Calls over both names in the certificate; a client that does not trust
#: the test CA must be refused.  Prints one JSON line.
CALLS = textwrap.dedent(
    """
    import json, sys
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react
    from twisted_reqresp import ConnectionClosed, RemoteError, connect
    from twisted_reqresp.codecs import JSON

    async def main(reactor, by_name, by_address, untrusted):
        results = {}
        for key, endpoint in (("name", by_name), ("address", by_address)):
            client = await connect(reactor, endpoint, codec=JSON, timeout=10)
            results[key] = {
                "echo": (await client.call("echo", {"a": [1, "é"]})).body,
                "methods": (await client.call("methods")).body,
                "rtt": await client.ping(),
            }
            try:
                await client.call("nope")
            except RemoteError as e:
                results[key]["error"] = [int(e.code), e.message]
            client.abort()
        try:
            client = await connect(reactor, untrusted, timeout=10)
        except ConnectionClosed as e:
            results["untrusted"] = [type(e).__name__, str(e), str(e.reason)]
        else:
            client.abort()
            results["untrusted"] = "connected"
        print(json.dumps(results))

    react(lambda reactor: Deferred.fromCoroutine(main(reactor, *sys.argv[1:])))
    """
)

#: Bodies at the frame limit and one byte over, both ways.  Prints one JSON
#: line.
FRAME_LIMIT = textwrap.dedent(
    """
    import hashlib, json, sys, time
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react
    from twisted_reqresp import RemoteError, StatusError, connect

    MAX = int(sys.argv[2])
    # A REQUEST's payload is the method's length (2 bytes), the method, the
    # deadline (4 bytes, the call has a timeout) and the body.
    AT_LIMIT = MAX - 2 - len("echo") - 4

    async def main(reactor, endpoint):
        client = await connect(reactor, endpoint, timeout=20)
        results = {"advertised": client.server_settings.max_frame_size}
        body = bytes(range(256)) * (AT_LIMIT // 256) + b"z" * (AT_LIMIT % 256)
        reply = await client.call("echo", body)
        results["echo_at_limit"] = [len(reply.body), reply.body == body]
        started = time.monotonic()
        try:
            await client.call("echo", body + b"!")
        except StatusError as e:
            results["echo_over"] = [type(e).__name__, int(e.code), e.message]
        results["echo_over_seconds"] = time.monotonic() - started
        reply = await client.call("blob", str(MAX).encode())
        results["blob_at_limit"] = [len(reply.body), reply.body == b"x" * MAX]
        try:
            await client.call("blob", str(MAX + 1).encode())
        except RemoteError as e:
            results["blob_over"] = [type(e).__name__, int(e.code), e.message]
        results["after"] = (await client.call("echo", b"still open")).body.decode()
        client.abort()
        print(json.dumps(results))

    react(lambda reactor: Deferred.fromCoroutine(main(reactor, sys.argv[1])))
    """
)

#: Starts CALLS sleep calls, makes sure the server has read them all (a PING
#: sent after them comes back), says "ready", then reports every outcome.
IN_FLIGHT = textwrap.dedent(
    """
    import json, sys
    from twisted.internet.defer import Deferred, DeferredList
    from twisted.internet.task import react
    from twisted_reqresp import connect
    from twisted_reqresp.codecs import JSON

    CALLS = 10

    async def main(reactor, endpoint):
        client = await connect(reactor, endpoint, codec=JSON, timeout=10)
        calls = [client.call("sleep", 0.5) for _ in range(CALLS)]
        await client.ping()
        print("ready", flush=True)
        outcomes = []
        for ok, value in await DeferredList(calls, consumeErrors=True):
            outcomes.append(value.body if ok else repr(value.value))
        client.abort()
        print(json.dumps(outcomes), flush=True)

    react(lambda reactor: Deferred.fromCoroutine(main(reactor, sys.argv[1])))
    """
)


class TLSTests(ReactorMixin, SynchronousTestCase):
    """The server and the client library over real TLS sockets."""

    certificates: ClassVar[Certificates]

    @classmethod
    def setUpClass(cls) -> None:
        cls.certificates = Certificates()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.certificates.remove()

    def _start(self, *args: str, **kwargs: Any) -> Server:
        return start(self, *args, listen=self.certificates.listen(), reactor=self.reactor, **kwargs)

    def _endpoint(self, server: Server, host: str = "localhost") -> str:
        return self.certificates.client_endpoint(server.port, host)

    def _raw(self, server: Server, *, answer: bool = True) -> RawPeer:
        """:returns: a raw binary-format peer over a verified TLS socket, handshaken."""
        return raw_peer(self, server.port, self.certificates.client_context(), answer=answer)

    def _exits_cleanly(self, server: Server) -> None:
        """Wait for twistd to exit after the SIGTERM already sent, cleanly."""
        code = server.wait_exit(STOP_TIMEOUT)
        self.assertIn(code, (0, -signal.SIGTERM), server.log())
        self.assertNotIn("Traceback", server.log())

    # -- calls -----------------------------------------------------------------

    def test_calls(self) -> None:
        """Calls, an error status and ping work over TLS, verified by name and by address."""
        server = self._start()
        untrusted = f"tls:localhost:{server.port}"  # the system's roots only
        results = run_script(
            CALLS, self._endpoint(server), self._endpoint(server, "127.0.0.1"), untrusted
        )
        for key in ("name", "address"):
            self.assertEqual(results[key]["echo"], {"a": [1, "é"]})
            self.assertEqual(
                results[key]["methods"],
                ["count", "echo", "methods", "ping", "sleep", "stats", "sum"],
            )
            self.assertGreater(results[key]["rtt"], 0)
            self.assertEqual(results[key]["error"], [5, "unknown method 'nope'"])
        kind, message, reason = results["untrusted"]
        self.assertEqual(kind, "ConnectionClosed")
        self.assertIn("handshake", message)
        self.assertIn("TLS: we do not trust the server's certificate", message)
        self.assertIn("certificate verify failed", reason)

    def test_command_line(self) -> None:
        """The reqresp command calls over a verified tls: endpoint."""
        server = self._start()
        result = reqresp("call", "--connect", self._endpoint(server), "echo", '"hi"')
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, '"hi"\n', ""))

    def test_frame_limit(self) -> None:
        """A body exactly at the 16 MiB frame limit passes both ways; one byte more is refused."""
        server = self._start("--responder", "e2e_responder:router", env=responder_env())
        results = run_script(FRAME_LIMIT, self._endpoint(server), str(MAX_FRAME))
        self.assertEqual(results["advertised"], MAX_FRAME)
        self.assertEqual(results["echo_at_limit"], [MAX_FRAME - 10, True])
        # Too large to send: the client refuses it at once, saying why.
        kind, code, message = results["echo_over"]
        self.assertEqual((kind, code), ("StatusError", StatusCode.RESOURCE_EXHAUSTED))
        self.assertIn(str(MAX_FRAME), message)
        self.assertLess(results["echo_over_seconds"], 1.0)
        self.assertEqual(results["blob_at_limit"], [MAX_FRAME, True])
        # Too large to answer: the server sends an error in its place.
        kind, code, message = results["blob_over"]
        self.assertEqual((kind, code), ("RemoteError", StatusCode.RESOURCE_EXHAUSTED))
        self.assertIn(str(MAX_FRAME), message)
        self.assertEqual(results["after"], "still open")

    def test_oversized_frame_is_refused(self) -> None:
        """A frame header announcing one byte over the limit gets GOAWAY RESOURCE_EXHAUSTED."""
        server = self._start()
        peer = self._raw(server)
        # length, type REQUEST (0x2), no flags, request id 1: docs/protocol.md.
        peer.send(struct.pack(">IBBI", MAX_FRAME + 1, 0x2, 0, 1))
        goaway = peer.receive_until(GoAway)
        self.assertEqual(goaway.code, StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn(f"exceeds the maximum of {MAX_FRAME}", goaway.message)

    def test_oversized_frame_closes(self) -> None:
        """After the GOAWAY for an oversized frame the server closes the TLS connection."""
        server = self._start()
        peer = self._raw(server)
        peer.send(struct.pack(">IBBI", MAX_FRAME + 1, 0x2, 0, 1))
        peer.receive_until(GoAway)
        peer.receive_until_closed(CLOSE_WITHIN)

    # -- closing -----------------------------------------------------------------

    def test_client_close(self) -> None:
        """close() completes within a second and the server sees the connection go."""
        server = self._start()
        results = run_script(CLIENT_CLOSE, self._endpoint(server), str(CLOSE_WITHIN))
        self.assertIsNotNone(results["close_seconds"], results)
        self.assertLess(results["close_seconds"], CLOSE_WITHIN)
        self.assertEqual(results["server_open"], 1)
        self.assertLess(results["server_seconds"], CLOSE_WITHIN)

    def test_server_drain_closes_client(self) -> None:
        """After SIGTERM an idle client sees its connection closed within a second."""
        server = self._start("--grace", "2")
        client = spawn(self, WAIT_FOR_CLOSE, self._endpoint(server), "2")
        self.assertEqual(read_line(client), "ready")
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        read_line(client)
        self.assertLess(time.monotonic() - signalled, CLOSE_WITHIN, server.log())
        self._exits_cleanly(server)

    def test_idle_timeout(self) -> None:
        """--idle-timeout closes an idle client's TLS connection, and the client sees it."""
        server = self._start("--idle-timeout", "0.5", *EARLY_TICK)
        client = spawn(self, WAIT_FOR_CLOSE, self._endpoint(server), "2")
        self.assertEqual(read_line(client), "ready")
        results = json.loads(read_line(client))
        self.assertIsInstance(results["lived"], float, server.log())
        self.assertGreater(results["lived"], 0.25)
        self.assertLess(results["lived"], 0.5 + CLOSE_WITHIN)
        self.assertIn("idle timeout", server.log())

    def test_ping_timeout_logged(self) -> None:
        """A TLS peer that handshakes and then never answers is given up on after the PING."""
        server = self._start("--ping-interval", "0.3", "--ping-timeout", "0.5", *EARLY_TICK)
        self._raw(server, answer=False)
        # The peer reads nothing from now on; the server logs when it gives up.
        server.wait_for_log("did not answer a PING within 0.5 s", timeout=3.0)

    def test_ping_timeout_closes(self) -> None:
        """The server closes the TLS connection of a peer that never answers its PING."""
        server = self._start("--ping-interval", "0.3", "--ping-timeout", "0.5", *EARLY_TICK)
        peer = self._raw(server, answer=False)
        server.wait_for_log("did not answer a PING within 0.5 s", timeout=3.0)
        gave_up = time.monotonic()
        events = peer.receive_until_closed(CLOSE_WITHIN)
        self.assertLess(time.monotonic() - gave_up, CLOSE_WITHIN)
        goaways = [event for event in events if isinstance(event, GoAway)]
        self.assertEqual([goaway.code for goaway in goaways], [StatusCode.UNAVAILABLE])

    # -- drain -----------------------------------------------------------------

    def test_drain_answers_calls_in_flight(self) -> None:
        """SIGTERM with calls running over TLS: every accepted call is answered."""
        server = self._start("--grace", "2")
        client = spawn(self, IN_FLIGHT, self._endpoint(server))
        self.assertEqual(read_line(client), "ready")
        server.process.send_signal(signal.SIGTERM)

        self.assertEqual(json.loads(read_line(client)), [0.5] * 10, server.log())
        self._exits_cleanly(server)


class TLSAsyncioTests(TLSTests):
    """The server on the asyncio reactor and the client library over real TLS sockets."""

    reactor = "asyncio"
