"""
End to end: a real ``twistd -n reqresp`` on loopback, called by the
``reqresp`` command, by the client library (in a subprocess running its own
reactor, so no test here runs the global reactor), and by a raw socket
speaking the line format; then stopped with SIGTERM.  Each class runs twice:
on twistd's default reactor and, as its ``...AsyncioTests`` subclass, on
``twistd --reactor=asyncio``.

Every wait is bounded in time, and every process is killed at cleanup (the
helpers are in ``e2e.py``).
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import textwrap
import time
from typing import ClassVar

from e2e import (
    BIN,
    CLIENT_CLOSE,
    CLOSE_WITHIN,
    COMMAND_TIMEOUT,
    EARLY_TICK,
    REACTOR_CLASSES,
    READ_TIMEOUT,
    START_TIMEOUT,
    STOP_TIMEOUT,
    WAIT_FOR_CLOSE,
    ReactorMixin,
    Server,
    clean_env,
    free_port,
    kill,
    raw_peer,
    read_line,
    reqresp,
    responder_env,
    run_script,
    spawn,
    start,
)
from twisted.trial.unittest import SynchronousTestCase

import twisted_reqresp
from twisted_reqresp import StatusCode
from twisted_reqresp.wire import GoAway, Ping

#: What every server lists after its own methods.
_BUILTIN_METHODS = ("reqresp.health", "reqresp.methods", "reqresp.stats")


class CommandLineTests(ReactorMixin, SynchronousTestCase):
    """The reqresp command against the default service."""

    server: ClassVar[Server]

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = Server(reactor=cls.reactor)
        try:
            cls.server.wait_ready()
        except BaseException:
            cls.server.stop()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()

    def _command(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return reqresp(*argv, env=clean_env(REQRESP_CONNECT=self.server.endpoint))

    def test_call_echo(self) -> None:
        """reqresp call echo '"hi"' prints "hi" and exits 0."""
        result = self._command("call", "echo", '"hi"')
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, '"hi"\n', ""))

    def test_call_connect_option(self) -> None:
        """--connect names the server as well as the environment does."""
        result = reqresp("call", "--connect", self.server.endpoint, "--raw", "echo", "plain")
        self.assertEqual((result.returncode, result.stdout), (0, "plain"))

    def test_connect_before_command(self) -> None:
        """--connect may come before the command, and --json prints one JSON object."""
        result = reqresp("--connect", self.server.endpoint, "call", "--json", "echo", '"hi"')
        self.assertEqual(result.returncode, 0, result.stderr)
        answer = json.loads(result.stdout)
        self.assertEqual(
            (answer["status"], answer["body"], answer["body_format"], answer["metadata"]),
            ("OK", "hi", "json", {}),
        )
        self.assertGreater(answer["elapsed_ms"], 0)

    def test_version(self) -> None:
        """reqresp --version prints the package version and exits 0."""
        result = self._command("--version")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(result.stdout.startswith(f"reqresp {twisted_reqresp.__version__} ("))

    def test_interrupt(self) -> None:
        """Ctrl-C (SIGINT) during a call exits 130 with 'interrupted' on stderr."""
        before = self._requests_total()
        process = subprocess.Popen(
            [str(BIN / "reqresp"), "call", "sleep", "5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(REQRESP_CONNECT=self.server.endpoint),
        )
        self.addCleanup(kill, process)
        # Each stats call counts itself: one more means the sleep arrived, so
        # the command's reactor runs and its SIGINT handler is in place.
        deadline = time.monotonic() + START_TIMEOUT
        polls = 0
        while True:
            polls += 1
            if self._requests_total() > before + polls:
                break
            self.assertLess(time.monotonic(), deadline, "the sleep call never arrived")
            time.sleep(0.05)
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=COMMAND_TIMEOUT)
        self.assertEqual((process.returncode, stdout, stderr), (130, "", "reqresp: interrupted\n"))
        self.assertLess(time.monotonic() - sent, 4)

    def _requests_total(self) -> int:
        (answer,) = line_exchange(self.server.port, b"stats\n")
        self.assertTrue(answer.startswith(b"OK "), answer)
        total: int = json.loads(answer[3:])["requests_total"]
        return total

    def test_raw_output_on_terminal(self) -> None:
        """Output that does not end with a newline gets one when stdout is a terminal."""
        main, child = pty.openpty()
        try:
            process = subprocess.Popen(
                [str(BIN / "reqresp"), "call", "--raw", "echo", "plain"],
                stdout=child,
                stderr=subprocess.PIPE,
                env=clean_env(REQRESP_CONNECT=self.server.endpoint),
            )
            self.addCleanup(kill, process)
            os.close(child)
            child = -1
            output = read_terminal(main)
            self.assertEqual(process.wait(timeout=COMMAND_TIMEOUT), 0)
        finally:
            os.close(main)
            if child >= 0:
                os.close(child)
        # The terminal turns LF into CR LF (onlcr).
        self.assertEqual(output, b"plain\r\n")

    def test_methods(self) -> None:
        """reqresp methods prints the default service's methods, then the built-in ones."""
        result = self._command("methods")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(
            result.stdout.split(),
            [*("count", "echo", "methods", "ping", "sleep", "stats", "sum"), *_BUILTIN_METHODS],
        )

    def test_ping(self) -> None:
        """reqresp ping prints a round-trip time."""
        result = self._command("ping")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(
            result.stdout, rf"^pong from {re.escape(self.server.endpoint)}: time=\d+\.\d\d ms\n$"
        )

    def test_unknown_method(self) -> None:
        """An unknown method exits 1 with the server's status on stderr."""
        result = self._command("call", "nope")
        self.assertEqual(
            (result.returncode, result.stderr), (1, "reqresp: NOT_FOUND: unknown method 'nope'\n")
        )

    def test_timeout(self) -> None:
        """A call slower than --timeout exits 4."""
        result = self._command("call", "--timeout", "0.3", "sleep", "5")
        self.assertEqual(
            (result.returncode, result.stderr), (4, "reqresp: timed out after 0.3 s\n")
        )

    def test_stats(self) -> None:
        """stats answers a JSON object with the server's counters."""
        result = self._command("call", "stats")
        self.assertEqual(result.returncode, 0, result.stderr)
        stats = json.loads(result.stdout)
        self.assertGreaterEqual(stats["requests_total"], 1)
        self.assertGreaterEqual(stats["connections_open"], 1)

    def test_line_format(self) -> None:
        """A person with nc gets the line format on the same port (--wire auto)."""
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=5) as s:
            s.sendall(b"echo hello\n")
            received = b""
            deadline = time.monotonic() + 5
            while not received.endswith(b"\r\n") and time.monotonic() < deadline:
                chunk = s.recv(4096)
                if not chunk:
                    break
                received += chunk
        self.assertEqual(received, b"OK hello\r\n")

    def test_line_format_json_round_trip(self) -> None:
        """JSON typed into nc reaches echo unchanged and comes back as the same valid JSON,
        its backslash escapes included."""
        typed = [b'"say \\"hi\\""', b'"a\\nb"', b'{"path":"C:\\\\tmp","tab":"\\t"}']
        answers = line_exchange(self.server.port, b"".join(b"echo " + t + b"\n" for t in typed))
        self.assertEqual(answers, [b"OK " + t for t in typed])
        for text, answer in zip(typed, answers, strict=True):
            self.assertEqual(json.loads(answer[3:]), json.loads(text))

    def test_reactor(self) -> None:
        """twistd runs on the reactor this class asked for."""
        match = re.search(r"reactor class: ([\w.]+)\.\n", self.server.log())
        assert match is not None, self.server.log()
        if self.reactor is None:
            self.assertNotIn(match.group(1), REACTOR_CLASSES.values())
        else:
            self.assertEqual(match.group(1), REACTOR_CLASSES[self.reactor])

    def test_startup_log(self) -> None:
        """twistd logs what it serves on each port, with the wire format."""
        self.assertIn(
            f"reqresp: serving the default service (count, echo, methods, ping, sleep, stats, sum) "
            f"on tcp:{self.server.port}:interface=127.0.0.1 (wire format: auto)",
            self.server.log(),
        )

    def test_startup_log_hot_path(self) -> None:
        """twistd logs which hot path the server runs, as reqresp --version prints it."""
        version = reqresp("--version")
        hot_path = version.stdout.splitlines()[-1]
        self.assertRegex(hot_path, r"^hot path: (compiled \(mypyc\)|pure Python \(.+\))$")
        self.assertIn(f"reqresp: {hot_path}", self.server.log())

    def test_startup_log_running(self) -> None:
        """twistd logs "reqresp: running" once its reactor runs, after the serving lines
        (what a supervisor waits for before a signal can drain the server)."""
        log = self.server.log()
        self.assertIn("reqresp: running", log)
        self.assertLess(log.index("reqresp: serving"), log.index("reqresp: running"))


class RefusedTests(SynchronousTestCase):
    """Nothing listening: the command says so."""

    def test_connection_refused(self) -> None:
        """A closed port exits 3 with 'connection refused' and the endpoint."""
        endpoint = f"tcp:127.0.0.1:{free_port()}"
        result = reqresp("methods", "--connect", endpoint)
        self.assertEqual(
            (result.returncode, result.stdout, result.stderr),
            (3, "", f"reqresp: connection refused: {endpoint}\n"),
        )


_CLIENT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react
    from twisted_reqresp import RemoteError, connect
    from twisted_reqresp.codecs import JSON

    async def main(reactor, endpoint):
        client = await connect(reactor, endpoint, codec=JSON, timeout=10)
        results = {}
        results["echo"] = (await client.call("echo", {"a": [1, "é"]})).body
        results["methods"] = (await client.call("methods", None)).body
        results["rtt"] = await client.ping()
        try:
            await client.call("nope", None)
        except RemoteError as e:
            results["error"] = [int(e.code), e.message]
        results["stats"] = (await client.call("stats", None)).body
        await client.close()
        print(json.dumps(results))

    react(lambda reactor: Deferred.fromCoroutine(main(reactor, sys.argv[1])))
    """
)


class ClientLibraryTests(ReactorMixin, SynchronousTestCase):
    """The Python client library against a real server, in its own process."""

    def test_client(self) -> None:
        """connect, JSON calls, an error status, ping and close all work over TCP."""
        server = start(self, reactor=self.reactor)
        results = run_script(_CLIENT_SCRIPT, server.endpoint)
        self.assertEqual(results["echo"], {"a": [1, "é"]})
        self.assertEqual(
            results["methods"], ["count", "echo", "methods", "ping", "sleep", "stats", "sum"]
        )
        self.assertGreater(results["rtt"], 0)
        self.assertEqual(results["error"], [5, "unknown method 'nope'"])
        self.assertEqual(results["stats"]["errors_total"], 1)


#: Large bodies through real sockets, both ways: several 1 MiB echoes at
#: once (far past Twisted's 64 KiB write buffer high-water mark), each
#: checked byte for byte.
BIG_BODIES = textwrap.dedent(
    """
    import hashlib, json, sys
    from twisted.internet.defer import Deferred, gatherResults
    from twisted.internet.task import react
    from twisted_reqresp import connect

    SIZE, COUNT = 1024 * 1024, 4

    async def main(reactor, endpoint):
        client = await connect(reactor, endpoint, timeout=20)
        bodies = [bytes([i]) * 7 + hashlib.sha256(bytes([i])).digest() * (SIZE // 32)
                  for i in range(COUNT)]
        replies = await gatherResults([client.call("echo", body) for body in bodies])
        results = [[len(reply.body), reply.body == body] for reply, body in zip(replies, bodies)]
        await client.close()
        print(json.dumps(results))

    react(lambda reactor: Deferred.fromCoroutine(main(reactor, sys.argv[1])))
    """
)


class BigBodyTests(ReactorMixin, SynchronousTestCase):
    """Bodies far over 64 KiB through real TCP sockets."""

    def test_one_mebibyte_both_ways(self) -> None:
        """Four 1 MiB echoes at once arrive at the server and come back intact."""
        server = start(self, reactor=self.reactor)
        size = 1024 * 1024 // 32 * 32 + 7
        self.assertEqual(run_script(BIG_BODIES, server.endpoint), [[size, True]] * 4)


class CloseTests(ReactorMixin, SynchronousTestCase):
    """A clean close over plain TCP completes from either side within a second."""

    def test_client_close(self) -> None:
        """close() completes within a second and the server sees the connection go."""
        server = start(self, reactor=self.reactor)
        results = run_script(CLIENT_CLOSE, server.endpoint, str(CLOSE_WITHIN))
        self.assertIsNotNone(results["close_seconds"], results)
        self.assertLess(results["close_seconds"], CLOSE_WITHIN)
        self.assertEqual(results["server_open"], 1)
        self.assertLess(results["server_seconds"], CLOSE_WITHIN)

    def test_server_drain_closes_client(self) -> None:
        """After SIGTERM an idle client sees its connection closed within a second."""
        server = start(self, "--grace", "2", reactor=self.reactor)
        client = spawn(self, WAIT_FOR_CLOSE, server.endpoint, "2")
        self.assertEqual(read_line(client), "ready")
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        lived = json.loads(read_line(client))["lived"]
        self.assertIsInstance(lived, float, server.log())
        self.assertLess(time.monotonic() - signalled, CLOSE_WITHIN, server.log())
        self.assertIn(server.wait_exit(), (0, -signal.SIGTERM), server.log())


class LivenessTests(ReactorMixin, SynchronousTestCase):
    """The idle and ping timeouts over plain TCP."""

    def test_idle_timeout_is_on_time(self) -> None:
        """--idle-timeout 0.5 closes an idle connection about half a second after its last call."""
        server = start(self, "--idle-timeout", "0.5", reactor=self.reactor)
        client = spawn(self, WAIT_FOR_CLOSE, server.endpoint, "2")
        self.assertEqual(read_line(client), "ready")
        lived = json.loads(read_line(client))["lived"]
        self.assertIsInstance(lived, float, server.log())
        self.assertLess(lived, 0.5 + CLOSE_WITHIN)

    def test_idle_timeout_closes(self) -> None:
        """An idle timeout sends GOAWAY and closes; the client sees the close at once."""
        server = start(self, "--idle-timeout", "0.5", *EARLY_TICK, reactor=self.reactor)
        client = spawn(self, WAIT_FOR_CLOSE, server.endpoint, "2")
        self.assertEqual(read_line(client), "ready")
        lived = json.loads(read_line(client))["lived"]
        self.assertIsInstance(lived, float, server.log())
        self.assertGreater(lived, 0.25)
        self.assertLess(lived, 0.5 + CLOSE_WITHIN)
        self.assertIn("idle timeout", server.log())

    def test_call_after_idle_close_is_retry_safe(self) -> None:
        """A call after the server closed an idle connection fails retry-safe."""
        server = start(self, "--idle-timeout", "0.5", *EARLY_TICK, reactor=self.reactor)
        client = spawn(self, WAIT_FOR_CLOSE, server.endpoint, "2")
        self.assertEqual(read_line(client), "ready")
        self.assertEqual(json.loads(read_line(client))["after"], ["ConnectionClosed", True])

    def test_ping_timeout_is_on_time(self) -> None:
        """A peer that stops answering after the handshake is given up on at interval + timeout."""
        server = start(
            self, "--ping-interval", "0.3", "--ping-timeout", "0.5", reactor=self.reactor
        )
        raw_peer(self, server.port, answer=False)
        server.wait_for_log("did not answer a PING within 0.5 s", timeout=0.8 + CLOSE_WITHIN)

    def test_ping_timeout_closes(self) -> None:
        """A peer that never answers a PING gets GOAWAY UNAVAILABLE and is closed."""
        server = start(
            self,
            "--ping-interval",
            "0.3",
            "--ping-timeout",
            "0.5",
            *EARLY_TICK,
            reactor=self.reactor,
        )
        peer = raw_peer(self, server.port, answer=False)
        # The peer reads nothing until the server says it gave up.
        server.wait_for_log("did not answer a PING within 0.5 s", timeout=3.0)
        gave_up = time.monotonic()
        events = peer.receive_until_closed(CLOSE_WITHIN)
        self.assertLess(time.monotonic() - gave_up, CLOSE_WITHIN)
        self.assertIn(Ping(payload=b"\0" * 8), events)
        goaways = [event for event in events if isinstance(event, GoAway)]
        self.assertEqual([goaway.code for goaway in goaways], [StatusCode.UNAVAILABLE])


class ResponderTests(ReactorMixin, SynchronousTestCase):
    """--responder serves a user's module."""

    def test_responder_module(self) -> None:
        """A router named by --responder answers its own methods (and the built-in ones),
        and only those: reqresp methods lists them, the default service's are unknown."""
        server = start(
            self, "--responder", "e2e_responder:router", env=responder_env(), reactor=self.reactor
        )
        run_env = clean_env(REQRESP_CONNECT=server.endpoint)
        result = reqresp("call", "hello", '"world"', env=run_env)
        self.assertEqual((result.returncode, result.stdout), (0, '"hello, world"\n'), result.stderr)
        methods = reqresp("methods", env=run_env)
        self.assertEqual(methods.returncode, 0, methods.stderr)
        self.assertIn("hello", methods.stdout.split())
        self.assertNotIn("sleep", methods.stdout.split())
        self.assertEqual(reqresp("call", "sleep", "0", env=run_env).returncode, 1)
        self.assertIn("serving e2e_responder:router on", server.log())

    def test_line_format_json_method(self) -> None:
        """A JSON-codec method called from nc takes JSON string escapes as JSON and answers
        valid JSON on one line."""
        server = start(
            self, "--responder", "e2e_responder:router", env=responder_env(), reactor=self.reactor
        )
        answers = line_exchange(server.port, b'hello "say \\"hi\\""\nhello "a\\nb"\n')
        self.assertEqual(answers, [b'OK "hello, say \\"hi\\""', b'OK "hello, a\\nb"'])
        self.assertEqual(json.loads(answers[1][3:]), "hello, a\nb")

    def test_bad_responder(self) -> None:
        """A --responder that is not one makes twistd exit non-zero, saying why."""
        server = Server(
            "--responder",
            "e2e_responder:not_a_responder",
            env=responder_env(),
            reactor=self.reactor,
        )
        self.addCleanup(server.stop)
        try:
            code = server.process.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail(f"twistd still running:\n{server.log()}")
        self.assertNotEqual(code, 0)
        self.assertIn("must provide IResponder or IResponderFactory", server.log())


class SignalTests(ReactorMixin, SynchronousTestCase):
    """SIGTERM stops the server cleanly."""

    def test_sigterm(self) -> None:
        """After SIGTERM twistd stops listening, shuts down in order and exits."""
        server = start(self, reactor=self.reactor)
        server.process.send_signal(signal.SIGTERM)
        try:
            code = server.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail(f"twistd still running {STOP_TIMEOUT} s after SIGTERM:\n{server.log()}")
        log = server.log()
        # After an orderly shutdown twistd re-raises the signal on itself
        # (twisted.scripts.twistd.runApp, app._exitWithSignal) so that its
        # parent sees "terminated by SIGTERM", which systemd counts as a clean
        # exit; a twistd without that behaviour exits 0.
        self.assertIn(code, (0, -signal.SIGTERM), log)
        self.assertIn(f"(TCP Port {server.port} Closed)", log)
        self.assertIn("Server Shut Down.", log)
        self.assertIn("draining 0 connection(s)", log)
        self.assertNotIn("Traceback", log)
        self.assertRaises(OSError, socket.create_connection, ("127.0.0.1", server.port), 1)

    def test_sigterm_lets_running_calls_finish(self) -> None:
        """SIGTERM drains: a call already running still gets its answer before twistd exits."""
        server = start(self, reactor=self.reactor)
        env = clean_env(REQRESP_CONNECT=server.endpoint)
        sleeper = subprocess.Popen(
            [str(BIN / "reqresp"), "call", "sleep", "2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.addCleanup(kill, sleeper)
        # Wait for the server to have the sleep call: every stats call counts
        # itself, so one request more than the stats calls made is the sleep.
        deadline = time.monotonic() + START_TIMEOUT
        for polls in range(1, 200):
            result = reqresp("call", "stats", env=env)
            self.assertEqual(result.returncode, 0, result.stderr)
            if json.loads(result.stdout)["requests_total"] > polls:
                break
            self.assertLess(time.monotonic(), deadline, "the sleep call never arrived")
            time.sleep(0.05)
        else:
            self.fail("the sleep call never arrived")
        server.process.send_signal(signal.SIGTERM)
        out, err = sleeper.communicate(timeout=COMMAND_TIMEOUT)
        self.assertEqual((sleeper.returncode, out, err), (0, "2\n", ""))
        try:
            code = server.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail(f"twistd still running {STOP_TIMEOUT} s after SIGTERM:\n{server.log()}")
        self.assertIn(code, (0, -signal.SIGTERM), server.log())
        self.assertIn("draining", server.log())


class CommandLineAsyncioTests(CommandLineTests):
    """The reqresp command against the default service on the asyncio reactor."""

    reactor = "asyncio"


class ClientLibraryAsyncioTests(ClientLibraryTests):
    """The Python client library against a real server on the asyncio reactor."""

    reactor = "asyncio"


class ResponderAsyncioTests(ResponderTests):
    """--responder serves a user's module on the asyncio reactor."""

    reactor = "asyncio"


class BigBodyAsyncioTests(BigBodyTests):
    """Bodies far over 64 KiB through real TCP sockets, on the asyncio reactor."""

    reactor = "asyncio"


class CloseAsyncioTests(CloseTests):
    """A clean close over plain TCP from either side, on the asyncio reactor."""

    reactor = "asyncio"


class LivenessAsyncioTests(LivenessTests):
    """The idle and ping timeouts over plain TCP, on the asyncio reactor."""

    reactor = "asyncio"


class SignalAsyncioTests(SignalTests):
    """SIGTERM stops the server cleanly on the asyncio reactor."""

    reactor = "asyncio"


def line_exchange(port: int, lines: bytes) -> list[bytes]:
    """
    Send ``lines`` to the line format on ``port`` and read one answer per line.

    :returns: the answer lines, CR LF removed.
    """
    want = lines.count(b"\n")
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT) as s:
        s.sendall(lines)
        deadline = time.monotonic() + READ_TIMEOUT
        while received.count(b"\r\n") < want and time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            received += chunk
    return received.split(b"\r\n")[:-1]


def read_terminal(fd: int, timeout: float = COMMAND_TIMEOUT) -> bytes:
    """
    Read what a child writes to a pseudo-terminal until it closes it.

    :param fd: the pty's main end.
    :returns: the bytes read.
    """
    received = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: every writer has closed the terminal
            break
        if not chunk:
            break
        received += chunk
    return received
