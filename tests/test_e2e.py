"""
End to end: a real ``twistd -n reqresp`` on loopback, called by the
``reqresp`` command, by the client library (in a subprocess running its own
reactor, so no test here runs the global reactor), and by a raw socket
speaking the line format; then stopped with SIGTERM.

Every wait is bounded in time, and every process is killed at cleanup.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import IO, ClassVar

from twisted.trial.unittest import SynchronousTestCase

TESTS = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent

#: Seconds for twistd to start listening (a first run also rebuilds the
#: plugin cache).
START_TIMEOUT = 10.0
#: Seconds for twistd to exit after SIGTERM.
STOP_TIMEOUT = 10.0
#: Seconds for one run of the reqresp command or a client script.
COMMAND_TIMEOUT = 30.0


def _free_port() -> int:
    # Bound and closed at once: twistd gets a port nothing else is using, and
    # nothing is listening on it afterwards either (for the refused test).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # The developer's own setting must not redirect the commands under test.
    env.pop("REQRESP_CONNECT", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Server:
    """
    A ``twistd -n reqresp`` subprocess on a free loopback port.

    :ivar port: the TCP port it listens on.
    :ivar endpoint: the client endpoint string to reach it.
    """

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.endpoint = f"tcp:127.0.0.1:{self.port}"
        self._log: IO[bytes] = tempfile.TemporaryFile()
        # twistd writes its pidfile and plugin cache relative to the working
        # directory; a fresh one keeps the checkout clean.
        self._cwd = tempfile.mkdtemp(prefix="reqresp-e2e-")
        self.process = subprocess.Popen(
            [
                str(BIN / "twistd"),
                "-n",
                "--pidfile=",
                "--logfile=-",
                "reqresp",
                "--port",
                f"tcp:{self.port}:interface=127.0.0.1",
                *args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self._cwd,
            env=env if env is not None else _env(),
        )

    def wait_ready(self) -> None:
        """
        Poll until the port accepts connections.

        :raises AssertionError: with twistd's log, if it exits or is not
            listening within :data:`START_TIMEOUT`.
        """
        deadline = time.monotonic() + START_TIMEOUT
        for _ in range(1000):  # a count bound as well as a time bound
            if self.process.poll() is not None:
                raise AssertionError(f"twistd exited {self.process.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        raise AssertionError(f"twistd not listening after {START_TIMEOUT} s:\n{self.log()}")

    def log(self) -> str:
        """:returns: what twistd wrote so far."""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def stop(self) -> None:
        """Kill the process if it still runs, and release its files."""
        if self.process.poll() is None:
            self.process.kill()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        self._log.close()
        shutil.rmtree(self._cwd, ignore_errors=True)


def _start(test: SynchronousTestCase, *args: str, env: dict[str, str] | None = None) -> Server:
    server = Server(*args, env=env)
    test.addCleanup(server.stop)
    server.wait_ready()
    return server


def _reqresp(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "reqresp"), *argv],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env=env if env is not None else _env(),
        check=False,
    )


class CommandLineTests(SynchronousTestCase):
    """The reqresp command against the default service."""

    server: ClassVar[Server]

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = Server()
        try:
            cls.server.wait_ready()
        except BaseException:
            cls.server.stop()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()

    def _command(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return _reqresp(*argv, env=_env(REQRESP_CONNECT=self.server.endpoint))

    def test_call_echo(self) -> None:
        """reqresp call echo '"hi"' prints "hi" and exits 0."""
        result = self._command("call", "echo", '"hi"')
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, '"hi"\n', ""))

    def test_call_connect_option(self) -> None:
        """--connect names the server as well as the environment does."""
        result = _reqresp("call", "--connect", self.server.endpoint, "--raw", "echo", "plain")
        self.assertEqual((result.returncode, result.stdout), (0, "plain"))

    def test_methods(self) -> None:
        """reqresp methods prints the default service's methods, one per line."""
        result = self._command("methods")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.split(), ["echo", "methods", "ping", "sleep", "stats"])

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

    def test_startup_log(self) -> None:
        """twistd logs what it serves on each port, with the wire format."""
        self.assertIn(
            f"reqresp: serving the default service (echo, methods, ping, sleep, stats) "
            f"on tcp:{self.server.port}:interface=127.0.0.1 (wire format: auto)",
            self.server.log(),
        )


class RefusedTests(SynchronousTestCase):
    """Nothing listening: the command says so."""

    def test_connection_refused(self) -> None:
        """A closed port exits 3 with 'connection refused' and the endpoint."""
        endpoint = f"tcp:127.0.0.1:{_free_port()}"
        result = _reqresp("methods", "--connect", endpoint)
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


class ClientLibraryTests(SynchronousTestCase):
    """The Python client library against a real server, in its own process."""

    def test_client(self) -> None:
        """connect, JSON calls, an error status, ping and close all work over TCP."""
        server = _start(self)
        result = subprocess.run(
            [sys.executable, "-c", _CLIENT_SCRIPT, server.endpoint],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            env=_env(),
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        results = json.loads(result.stdout)
        self.assertEqual(results["echo"], {"a": [1, "é"]})
        self.assertEqual(results["methods"], ["echo", "methods", "ping", "sleep", "stats"])
        self.assertGreater(results["rtt"], 0)
        self.assertEqual(results["error"], [5, "unknown method 'nope'"])
        self.assertEqual(results["stats"]["errors_total"], 1)


class ResponderTests(SynchronousTestCase):
    """--responder serves a user's module."""

    def test_responder_module(self) -> None:
        """A router named by --responder answers its own methods, and only those."""
        path = [str(TESTS), os.environ.get("PYTHONPATH", "")]
        env = _env(PYTHONPATH=os.pathsep.join(filter(None, path)))
        server = _start(self, "--responder", "e2e_responder:router", env=env)
        run_env = _env(REQRESP_CONNECT=server.endpoint)
        result = _reqresp("call", "hello", '"world"', env=run_env)
        self.assertEqual((result.returncode, result.stdout), (0, '"hello, world"\n'), result.stderr)
        self.assertEqual(_reqresp("methods", env=run_env).returncode, 1)
        self.assertIn("serving e2e_responder:router on", server.log())

    def test_bad_responder(self) -> None:
        """A --responder that is not one makes twistd exit non-zero, saying why."""
        env = _env(PYTHONPATH=str(TESTS))
        server = Server("--responder", "e2e_responder:not_a_responder", env=env)
        self.addCleanup(server.stop)
        try:
            code = server.process.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail(f"twistd still running:\n{server.log()}")
        self.assertNotEqual(code, 0)
        self.assertIn("must provide IResponder or IResponderFactory", server.log())


class SignalTests(SynchronousTestCase):
    """SIGTERM stops the server cleanly."""

    def test_sigterm(self) -> None:
        """After SIGTERM twistd stops listening, shuts down in order and exits."""
        server = _start(self)
        # wait_ready's probe connection closes asynchronously: wait until
        # the server has seen it go (the stats call counts only itself).
        env = _env(REQRESP_CONNECT=server.endpoint)
        for _ in range(100):
            result = _reqresp("call", "stats", env=env)
            if json.loads(result.stdout)["connections_open"] == 1:
                break
            time.sleep(0.05)
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
        server = _start(self)
        env = _env(REQRESP_CONNECT=server.endpoint)
        sleeper = subprocess.Popen(
            [str(BIN / "reqresp"), "call", "sleep", "2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.addCleanup(_kill, sleeper)
        # Wait for the server to have the sleep call: every stats call counts
        # itself, so one request more than the stats calls made is the sleep.
        deadline = time.monotonic() + START_TIMEOUT
        for polls in range(1, 200):
            result = _reqresp("call", "stats", env=env)
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


def _kill(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()
