"""
The ``reqresp`` command line: argument parsing, bodies, output, and the exit
status of every kind of failure, driven over the in-memory pair and fake
connectors (no sockets, no global reactor).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
from typing import Any

from channel_net import Network
from twisted.internet import error as ierror
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

import twisted_reqresp
from twisted_reqresp import (
    Call,
    Channel,
    Client,
    ConnectionClosed,
    LocalProtocolError,
    RemoteError,
    Reply,
    Router,
    ServerFactory,
    StatusCode,
    StatusError,
)
from twisted_reqresp._adapters.client import connect
from twisted_reqresp._app.cli import (
    DEFAULT_ENDPOINT,
    DEFAULT_TIMEOUT,
    EXIT_CONNECTION,
    EXIT_OK,
    EXIT_REMOTE,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    CommandError,
    build_parser,
    encode_body,
    explain,
    format_body,
    main,
    run,
    run_call,
    run_health,
    run_methods,
    run_ping,
)
from twisted_reqresp._app.service import default_factory
from twisted_reqresp.codecs import JSON
from twisted_reqresp.interfaces import IResponder
from twisted_reqresp.testing import ConnectedPair, connected_pair


def _pair() -> ConnectedPair:
    clock = MemoryReactorClock()
    factory = default_factory(clock=clock)
    factory.responder_factory.responder.add(  # type: ignore[attr-defined]
        "metadata", lambda call: dict(call.metadata), codec=JSON
    )
    return connected_pair(factory.responder_factory, factory=factory, clock=clock)


@implementer(IResponder)
class _Fixed:
    """A responder (not a Router: it answers any name) that answers every call with ``answer``."""

    def __init__(self, answer: Deferred[bytes]) -> None:
        self.answer = answer

    def connection_made(self, connection: Any) -> None:
        """Nothing to keep."""

    def connection_lost(self, reason: Any) -> None:
        """Nothing to drop."""

    def respond(self, call: Call) -> Deferred[bytes]:
        """:returns: the answer given at construction."""
        return self.answer


def _parse(*argv: str, environ: dict[str, str] | None = None) -> Any:
    return build_parser(environ or {}).parse_args(list(argv))


class ParserTests(SynchronousTestCase):
    """The argument parser's defaults, choices and refusals."""

    def test_call_defaults(self) -> None:
        """call takes METHOD and an optional BODY, with the default endpoint and timeout."""
        args = _parse("call", "echo")
        self.assertEqual(
            (args.command, args.method, args.body, args.connect, args.timeout, args.raw),
            ("call", "echo", None, [DEFAULT_ENDPOINT], DEFAULT_TIMEOUT, False),
        )
        self.assertEqual(args.metadata, [])

    def test_options_between_method_and_body(self) -> None:
        """Options may come between METHOD and BODY, as in the docs' examples."""
        args = _parse("call", "echo", "--raw", "plain text", "-m", "k=v")
        self.assertEqual((args.method, args.body, args.raw), ("echo", "plain text", True))
        self.assertEqual(args.metadata, [("k", "v")])

    def test_call_options(self) -> None:
        """--connect, --timeout, repeated --metadata and --raw are parsed."""
        args = _parse(
            "call",
            "--connect",
            "unix:/tmp/s",
            "--timeout",
            "2.5",
            "-m",
            "a=1",
            "-m",
            "b=x=y",
            "--raw",
            "echo",
            "hello",
        )
        self.assertEqual(args.connect, ["unix:/tmp/s"])
        self.assertEqual(args.timeout, 2.5)
        self.assertEqual(args.metadata, [("a", "1"), ("b", "x=y")])
        self.assertTrue(args.raw)
        self.assertEqual(args.body, "hello")

    def test_environment(self) -> None:
        """REQRESP_CONNECT replaces the default endpoint."""
        args = _parse("methods", environ={"REQRESP_CONNECT": "tcp:example.com:1"})
        self.assertEqual(args.connect, ["tcp:example.com:1"])

    def test_connect_before_or_after_command(self) -> None:
        """--connect and --timeout may come before the command as well as after it, for
        every command; endpoints given before and after add up, a timeout after wins."""
        for command in (["call", "echo"], ["methods"], ["ping"], ["bench"], ["health"]):
            args = _parse("--connect", "tcp:h:1", "-t", "3", *command)
            self.assertEqual((args.connect, args.timeout), (["tcp:h:1"], 3.0), command)
            args = _parse("-c", "tcp:h:1", "-t", "3", *command, "-c", "tcp:h:2", "-t", "4")
            self.assertEqual((args.connect, args.timeout), (["tcp:h:1", "tcp:h:2"], 4.0))
            args = _parse(*command, "-c", "tcp:h:2")
            self.assertEqual(args.connect, ["tcp:h:2"], command)
            self.assertFalse(hasattr(args, "connect_after"))
            args = _parse(*command, environ={"REQRESP_CONNECT": "unix:/s"})
            self.assertEqual((args.connect, args.timeout), (["unix:/s"], DEFAULT_TIMEOUT), command)

    def test_connect_repeated(self) -> None:
        """--connect repeated gives the endpoints in order, duplicates kept as given."""
        args = _parse("-c", "tcp:h:1", "--connect", "tcp:h:2", "-c", "tcp:h:1", "methods")
        self.assertEqual(args.connect, ["tcp:h:1", "tcp:h:2", "tcp:h:1"])

    def test_environment_several(self) -> None:
        """REQRESP_CONNECT may hold several endpoints separated by commas, blanks dropped."""
        environ = {"REQRESP_CONNECT": " tcp:h:1 ,tcp:h:2,, "}
        self.assertEqual(_parse("methods", environ=environ).connect, ["tcp:h:1", "tcp:h:2"])
        # --connect replaces the environment's endpoints rather than adding to them.
        args = _parse("methods", "-c", "tcp:h:3", environ=environ)
        self.assertEqual(args.connect, ["tcp:h:3"])
        # Only blanks and commas: the default endpoint.
        self.assertEqual(
            _parse("methods", environ={"REQRESP_CONNECT": " , "}).connect, [DEFAULT_ENDPOINT]
        )

    def test_health(self) -> None:
        """health takes an optional SERVICE: the whole server's status if omitted."""
        self.assertEqual((_parse("health").command, _parse("health").service), ("health", ""))
        self.assertEqual(_parse("health", "db", "-t", "1").service, "db")

    def test_timeout_zero_means_none(self) -> None:
        """--timeout 0 means no timeout."""
        self.assertIsNone(_parse("call", "echo", "--timeout", "0").timeout)
        self.assertIsNone(_parse("-t", "0", "ping").timeout)

    def test_version(self) -> None:
        """--version prints the package version and which hot path is active, and exits 0,
        before or without a command."""
        for argv in (["--version"], ["--version", "call", "echo"]):
            stdout = io.StringIO()
            with contextlib.redirect_stdout(stdout):
                self.assertEqual(main(argv), EXIT_OK)
            hot = r"compiled \(mypyc\)" if twisted_reqresp.compiled else r"pure Python \([^\n]+\)"
            self.assertRegex(
                stdout.getvalue(),
                rf"^reqresp {re.escape(twisted_reqresp.__version__)} "
                r"\(Twisted [\w.]+, Python 3\.\d+\.\d+\S*\)\n"
                rf"hot path: {hot}\n$",
            )

    def test_ping_count(self) -> None:
        """ping takes --count, 1 by default."""
        self.assertEqual(_parse("ping").count, 1)
        self.assertEqual(_parse("ping", "-n", "3").count, 3)

    def _refused(self, *argv: str) -> str:
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            error = self.assertRaises(SystemExit, _parse, *argv)
        self.assertEqual(error.code, EXIT_USAGE)
        return stderr.getvalue()

    def test_bad_arguments(self) -> None:
        """Bad metadata, timeouts, counts and missing arguments exit with the usage status."""
        self.assertIn("KEY=VALUE", self._refused("call", "-m", "novalue", "echo"))
        self.assertIn("0 or more", self._refused("call", "--timeout", "-1", "echo"))
        self.assertIn("0 or more", self._refused("call", "--timeout", "nan", "echo"))
        self.assertIn("positive", self._refused("bench", "--duration", "0"))
        self.assertIn("seconds", self._refused("call", "--timeout", "soon", "echo"))
        self.assertIn("at least 1", self._refused("ping", "--count", "0"))
        self._refused("call")
        self._refused()
        self._refused("frobnicate")

    def test_main_usage_error(self) -> None:
        """main returns the usage status instead of exiting."""
        with contextlib.redirect_stderr(io.StringIO()):
            self.assertEqual(main(["call"]), EXIT_USAGE)

    def test_help_documents_exit_codes(self) -> None:
        """--help exits 0 and its epilog lists every exit status."""
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            self.assertEqual(main(["--help"]), EXIT_OK)
        text = stdout.getvalue()
        for code in (EXIT_OK, EXIT_REMOTE, EXIT_USAGE, EXIT_CONNECTION, EXIT_TIMEOUT):
            self.assertIn(f"  {code}  ", text)
        self.assertIn("REQRESP_CONNECT", text)


class BodyTests(SynchronousTestCase):
    """BODY is JSON by default, a file with @, or raw text with --raw."""

    def test_none(self) -> None:
        """No BODY is an empty body."""
        self.assertEqual(encode_body(None), b"")

    def test_json_compact(self) -> None:
        """JSON is re-encoded compact, in UTF-8."""
        self.assertEqual(encode_body('{ "a" : [1, 2],  "é": "ü" }'), '{"a":[1,2],"é":"ü"}'.encode())

    def test_json_scalar(self) -> None:
        """A JSON string keeps its quotes."""
        self.assertEqual(encode_body('"hi"'), b'"hi"')

    def test_invalid_json(self) -> None:
        """Text that is not JSON is a usage error that suggests --raw."""
        error = self.assertRaises(CommandError, encode_body, "hello")
        self.assertEqual(error.code, EXIT_USAGE)
        self.assertIn("not valid JSON", error.message)
        self.assertIn("--raw", error.message)

    def test_raw(self) -> None:
        """--raw sends the UTF-8 bytes unchanged, even if they look like @ or JSON."""
        self.assertEqual(encode_body("héllo", raw=True), "héllo".encode())
        self.assertEqual(encode_body("@file", raw=True), b"@file")
        self.assertEqual(encode_body(" [1, 2] ", raw=True), b" [1, 2] ")

    def test_file(self) -> None:
        """@PATH sends the file's bytes unchanged, not checked as JSON."""
        # Not self.mktemp(): under pytest that writes into the checkout.
        with tempfile.NamedTemporaryFile(delete=False) as f:
            f.write(b"\x00\xffnot json")
        path = f.name
        self.addCleanup(os.remove, path)
        self.assertEqual(encode_body("@" + path), b"\x00\xffnot json")

    def test_stdin(self) -> None:
        """@- reads the body through the reader with the name '-'."""
        self.assertEqual(encode_body("@-", read_file={"-": b"piped"}.__getitem__), b"piped")

    def test_missing_file(self) -> None:
        """An unreadable @PATH is a usage error naming the path."""
        error = self.assertRaises(CommandError, encode_body, "@/nonexistent/body.json")
        self.assertEqual(error.code, EXIT_USAGE)
        self.assertIn("'/nonexistent/body.json'", error.message)


class FormatTests(SynchronousTestCase):
    """Answers print as JSON when they are JSON, else as their bytes."""

    def test_object_indented(self) -> None:
        """A JSON object is printed indented, with a newline."""
        self.assertEqual(format_body(b'{"a":[1]}'), b'{\n  "a": [\n    1\n  ]\n}\n')

    def test_scalar_compact(self) -> None:
        """A JSON scalar is printed on one line, non-ASCII kept."""
        self.assertEqual(format_body('"héllo"'.encode()), '"héllo"\n'.encode())
        self.assertEqual(format_body(b"3"), b"3\n")

    def test_not_json(self) -> None:
        """Bytes that are not JSON are written unchanged, with no newline added."""
        self.assertEqual(format_body(b"pong"), b"pong")
        self.assertEqual(format_body(b"\xff\x00"), b"\xff\x00")
        self.assertEqual(format_body(b""), b"")


class CommandTests(SynchronousTestCase):
    """run_call, run_methods and run_ping on a connected client."""

    def test_call_echo(self) -> None:
        """A successful call prints the answer and gives status 0."""
        pair = _pair()
        out = io.BytesIO()
        d = run_call(pair.client, "echo", b'{"x":1}', out=out)
        pair.pump()
        self.assertEqual(self.successResultOf(d), EXIT_OK)
        self.assertEqual(out.getvalue(), b'{\n  "x": 1\n}\n')

    def test_call_metadata(self) -> None:
        """Metadata pairs travel with the call."""
        pair = _pair()
        out = io.BytesIO()
        d = run_call(pair.client, "metadata", b"", out=out, metadata=[("k", "v")])
        pair.pump()
        self.successResultOf(d)
        self.assertEqual(json.loads(out.getvalue()), {"k": "v"})

    def test_call_remote_error(self) -> None:
        """An error status is reported as CODE: message with status 1."""
        pair = _pair()
        out = io.BytesIO()
        d = run_call(pair.client, "x", b"", out=out)
        pair.pump()
        error = self.failureResultOf(d, CommandError).value
        self.assertEqual(
            (error.code, error.message), (EXIT_REMOTE, "NOT_FOUND: unknown method 'x'")
        )
        self.assertEqual(out.getvalue(), b"")

    def test_call_timeout(self) -> None:
        """No answer within the timeout gives status 4 and says how long."""
        pair = _pair()
        d = run_call(pair.client, "sleep", b"30", out=io.BytesIO(), timeout=5)
        pair.pump()
        pair.clock.advance(5)
        pair.pump()
        error = self.failureResultOf(d, CommandError).value
        self.assertEqual((error.code, error.message), (EXIT_TIMEOUT, "timed out after 5 s"))

    def test_call_connection_lost(self) -> None:
        """A connection lost before the answer gives status 3."""
        pair = _pair()
        d = run_call(pair.client, "sleep", b"30", out=io.BytesIO())
        pair.pump()
        pair.disconnect()
        error = self.failureResultOf(d, CommandError).value
        self.assertEqual(error.code, EXIT_CONNECTION)
        self.assertTrue(error.message.startswith("connection lost"), error.message)

    def test_methods(self) -> None:
        """methods prints one name per line: the service's, then the built-in ones."""
        pair = _pair()
        out = io.BytesIO()
        d = run_methods(pair.client, out=out)
        pair.pump()
        self.assertEqual(self.successResultOf(d), EXIT_OK)
        self.assertEqual(
            out.getvalue(),
            b"count\necho\nmetadata\nmethods\nping\nsleep\nstats\nsum\n"
            b"reqresp.health\nreqresp.methods\nreqresp.stats\n",
        )

    def test_methods_of_any_router(self) -> None:
        """methods works against a router with no 'methods' method (it asks reqresp.methods)."""
        router = Router()
        router.add("add", lambda call: b"")
        pair = connected_pair(router)
        out = io.BytesIO()
        d = run_methods(pair.client, out=out)
        pair.pump()
        self.assertEqual(self.successResultOf(d), EXIT_OK)
        self.assertEqual(out.getvalue(), b"add\nreqresp.health\nreqresp.methods\nreqresp.stats\n")

    def test_methods_falls_back(self) -> None:
        """Against a server without built-ins, methods calls the service's own 'methods'."""
        router = Router()
        router.add("methods", lambda call: ["a", "methods"], codec=JSON)
        pair = connected_pair(router, factory=ServerFactory(router, builtins=False))
        out = io.BytesIO()
        d = run_methods(pair.client, out=out)
        pair.pump()
        self.assertEqual(self.successResultOf(d), EXIT_OK)
        self.assertEqual(out.getvalue(), b"a\nmethods\n")

    def test_methods_no_builtins_no_methods(self) -> None:
        """Without built-ins or a 'methods' method, the NOT_FOUND is reported with status 1."""
        router = Router()
        pair = connected_pair(router, factory=ServerFactory(router, builtins=False))
        d = run_methods(pair.client, out=io.BytesIO())
        pair.pump()
        error = self.failureResultOf(d, CommandError).value
        self.assertEqual(
            (error.code, error.message), (EXIT_REMOTE, "NOT_FOUND: unknown method 'methods'")
        )

    def test_methods_bad_answer(self) -> None:
        """An answer to methods that is not a list of names gives status 1."""
        router = Router()
        router.add("methods", lambda call: {"not": "a list"}, codec=JSON)
        pair = connected_pair(router, factory=ServerFactory(router, builtins=False))
        d = run_methods(pair.client, out=io.BytesIO())
        pair.pump()
        self.assertEqual(self.failureResultOf(d, CommandError).value.code, EXIT_REMOTE)

    def test_methods_bad_builtin_answer(self) -> None:
        """An answer to reqresp.methods without a list of named methods gives status 1."""
        responder = _Fixed(succeed(b'{"methods": [{"nom": "x"}]}'))
        pair = connected_pair(responder, factory=ServerFactory(responder, builtins=False))
        d = run_methods(pair.client, out=io.BytesIO())
        pair.pump()
        error = self.failureResultOf(d, CommandError).value
        self.assertEqual(error.code, EXIT_REMOTE)
        self.assertIn("reqresp.methods", error.message)

    def _health(self, pair: ConnectedPair, service: str = "") -> tuple[Deferred[int], bytes]:
        out = io.BytesIO()
        d = run_health(pair.client, service, out=out)
        pair.pump()
        return d, out.getvalue()

    def test_health_serving(self) -> None:
        """health prints SERVING and gives status 0."""
        d, out = self._health(_pair())
        self.assertEqual((self.successResultOf(d), out), (EXIT_OK, b"SERVING\n"))

    def test_health_not_serving(self) -> None:
        """health prints NOT_SERVING and gives status 1: a failed probe."""
        pair = _pair()
        pair.factory.health.set("", "NOT_SERVING")
        d, out = self._health(pair)
        self.assertEqual((self.successResultOf(d), out), (EXIT_REMOTE, b"NOT_SERVING\n"))

    def test_health_draining(self) -> None:
        """health prints DRAINING and gives status 1."""
        pair = _pair()
        pair.factory.health.start_draining()
        d, out = self._health(pair)
        self.assertEqual((self.successResultOf(d), out), (EXIT_REMOTE, b"DRAINING\n"))

    def test_health_service(self) -> None:
        """health SERVICE asks for that service's status."""
        pair = _pair()
        pair.factory.health.set("db", "SERVING")
        pair.factory.health.set("", "NOT_SERVING")
        d, out = self._health(pair, "db")
        self.assertEqual((self.successResultOf(d), out), (EXIT_OK, b"SERVING\n"))

    def test_health_unknown_service(self) -> None:
        """health for a service with no status prints the NOT_FOUND and gives status 1."""
        d, out = self._health(_pair(), "nope")
        error = self.failureResultOf(d, CommandError).value
        self.assertEqual(
            (error.code, error.message), (EXIT_REMOTE, "NOT_FOUND: unknown service 'nope'")
        )
        self.assertEqual(out, b"")

    def test_health_without_builtins(self) -> None:
        """health against a server whose built-ins are off gives status 1 with its NOT_FOUND."""
        router = Router()
        pair = connected_pair(router, factory=ServerFactory(router, builtins=False))
        d, _ = self._health(pair)
        error = self.failureResultOf(d, CommandError).value
        self.assertEqual(
            (error.code, error.message), (EXIT_REMOTE, "NOT_FOUND: unknown method 'reqresp.health'")
        )

    def test_health_timeout(self) -> None:
        """health with no answer within --timeout gives status 4."""
        responder = _Fixed(Deferred())  # a stuck server: nothing answers
        pair = connected_pair(responder, factory=ServerFactory(responder, builtins=False))
        d = run_health(pair.client, "", out=io.BytesIO(), timeout=5)
        pair.pump()
        self.assertNoResult(d)
        pair.clock.advance(5)
        pair.pump()
        self.assertEqual(self.failureResultOf(d, CommandError).value.code, EXIT_TIMEOUT)

    def test_ping(self) -> None:
        """ping prints one line per pong, a second apart."""
        pair = _pair()
        out = io.BytesIO()
        d = run_ping(pair.client, pair.clock, out=out, endpoint="tcp:h:1", count=2)
        pair.pump()
        self.assertNoResult(d)
        pair.clock.advance(1)
        pair.pump()
        self.assertEqual(self.successResultOf(d), EXIT_OK)
        self.assertEqual(out.getvalue(), b"pong from tcp:h:1: time=0.00 ms\n" * 2)

    def test_ping_timeout(self) -> None:
        """A pong that never comes gives status 4."""
        pair = _pair()
        d = run_ping(pair.client, pair.clock, out=io.BytesIO(), endpoint="e", timeout=2)
        # Not pumped: the PING never reaches the server.
        pair.clock.advance(2)
        error = self.failureResultOf(d, CommandError).value
        self.assertEqual((error.code, error.message), (EXIT_TIMEOUT, "timed out after 2 s"))


class ExplainTests(SynchronousTestCase):
    """Each kind of failure maps to its message and exit status."""

    def test_kinds(self) -> None:
        """Refused, lost, unreachable, timed out and remote errors each get their status."""
        cases: list[tuple[BaseException, int, str]] = [
            (ierror.ConnectionRefusedError(), EXIT_CONNECTION, "connection refused: tcp:h:1"),
            (ConnectionClosed("gone"), EXIT_CONNECTION, "connection lost: tcp:h:1: gone"),
            (ierror.ConnectionLost(), EXIT_CONNECTION, "cannot connect: tcp:h:1: "),
            (ierror.NoRouteError(), EXIT_CONNECTION, "cannot connect: tcp:h:1: "),
            (ierror.DNSLookupError("h"), EXIT_CONNECTION, "cannot connect: tcp:h:1: "),
            (ierror.TimeoutError(), EXIT_CONNECTION, "cannot connect: tcp:h:1: "),
            (RemoteError(StatusCode.INTERNAL, "boom"), EXIT_REMOTE, "INTERNAL: boom"),
            (RemoteError(StatusCode.DEADLINE_EXCEEDED, "x"), EXIT_TIMEOUT, "timed out after 3 s"),
            (RuntimeError("odd"), EXIT_REMOTE, "unexpected error: RuntimeError: odd"),
            (StatusError(StatusCode.UNIMPLEMENTED, "no"), EXIT_USAGE, "request not sent: "),
        ]
        for error, code, message in cases:
            with self.subTest(error=error):
                result = explain(error, timeout=3, endpoint="tcp:h:1")
                self.assertEqual(result.code, code)
                self.assertTrue(result.message.startswith(message), result.message)


class RunTests(SynchronousTestCase):
    """run: connect, run the command, close, with every failure mapped."""

    def _run_command(
        self, argv: list[str], connector: Any, clock: MemoryReactorClock | None = None
    ) -> tuple[Deferred[int], io.BytesIO, MemoryReactorClock]:
        clock = clock if clock is not None else MemoryReactorClock()
        out = io.BytesIO()
        d = run(clock, _parse(*argv), out=out, connector=connector)
        return d, out, clock

    def test_success_closes(self) -> None:
        """A successful command prints, closes the connection and gives status 0."""
        pair = _pair()
        seen: list[tuple[Any, str, float]] = []

        def connector(reactor: Any, endpoint: str, *, timeout: float) -> Deferred[Client]:
            seen.append((reactor, endpoint, timeout))
            return succeed(pair.client)

        d, out, _ = self._run_command(
            ["call", "-c", "tcp:h:1", "-t", "3", "echo", '"hi"'], connector, pair.clock
        )
        pair.pump()
        self.assertEqual(self.successResultOf(d), EXIT_OK)
        self.assertEqual(out.getvalue(), b'"hi"\n')
        self.assertEqual(seen, [(pair.clock, "tcp:h:1", 3.0)])
        self.assertTrue(pair.client_transport.disconnecting)

    def test_health_command(self) -> None:
        """run dispatches health SERVICE: its status printed, 1 when not SERVING, closed."""
        pair = _pair()
        pair.factory.health.set("db", "NOT_SERVING")
        d, out, _ = self._run_command(
            ["health", "db"], lambda reactor, endpoint, timeout: succeed(pair.client), pair.clock
        )
        pair.pump()
        self.assertEqual((self.successResultOf(d), out.getvalue()), (EXIT_REMOTE, b"NOT_SERVING\n"))
        self.assertTrue(pair.client_transport.disconnecting)

    def test_refused(self) -> None:
        """A refused connection gives status 3 and names the endpoint."""
        d, _, _ = self._run_command(
            ["methods", "-c", "tcp:127.0.0.1:1"],
            lambda reactor, endpoint, timeout: fail(ierror.ConnectionRefusedError()),
        )
        error = self.failureResultOf(d, CommandError).value
        self.assertEqual(
            (error.code, error.message), (EXIT_CONNECTION, "connection refused: tcp:127.0.0.1:1")
        )

    def test_connect_timeout(self) -> None:
        """A connection that never completes gives status 4 after --timeout."""
        d, _, clock = self._run_command(
            ["ping", "-t", "5"], lambda reactor, endpoint, timeout: Deferred()
        )
        clock.advance(4.9)
        self.assertNoResult(d)
        clock.advance(0.1)
        error = self.failureResultOf(d, CommandError).value
        self.assertEqual((error.code, error.message), (EXIT_TIMEOUT, "timed out after 5 s"))

    def test_connect_timeout_real_connect(self) -> None:
        """With the real connect, a TCP attempt that never completes times out too."""
        d, _, clock = self._run_command(["methods", "-t", "2"], connect)
        self.assertEqual(len(clock.tcpClients), 1)
        clock.advance(2)
        self.assertEqual(self.failureResultOf(d, CommandError).value.code, EXIT_TIMEOUT)

    def test_bad_endpoint(self) -> None:
        """An endpoint string nobody can parse is a usage error."""
        d, _, _ = self._run_command(["methods", "-c", "nosuch:thing"], connect)
        error = self.failureResultOf(d, CommandError).value
        self.assertEqual(error.code, EXIT_USAGE)
        self.assertIn("invalid endpoint 'nosuch:thing'", error.message)

    def test_bad_body_before_connecting(self) -> None:
        """A body that is not JSON is refused without connecting."""
        connected: list[str] = []

        def connector(reactor: Any, endpoint: str, *, timeout: float) -> Deferred[Client]:
            connected.append(endpoint)
            return Deferred()

        d, _, _ = self._run_command(["call", "echo", "{oops"], connector)
        self.assertEqual(self.failureResultOf(d, CommandError).value.code, EXIT_USAGE)
        self.assertEqual(connected, [])

    def test_remote_error_still_closes(self) -> None:
        """After an error status the connection is closed all the same."""
        pair = _pair()
        d, _, _ = self._run_command(
            ["call", "nope"], lambda reactor, endpoint, timeout: succeed(pair.client), pair.clock
        )
        pair.pump()
        self.assertEqual(self.failureResultOf(d, CommandError).value.code, EXIT_REMOTE)
        self.assertTrue(pair.client_transport.disconnecting)

    def test_hung_close_does_not_hang(self) -> None:
        """A close that never completes is abandoned after a second."""
        pair = _pair()
        d, _, clock = self._run_command(
            ["call", "echo"], lambda reactor, endpoint, timeout: succeed(pair.client), pair.clock
        )
        # Deliver the request and the answer, but never the close.
        pair.server.dataReceived(pair.client_transport.value())
        pair.client_transport.clear()
        pair.client_protocol.dataReceived(pair.server_transport.value())
        pair.server_transport.clear()
        self.assertNoResult(d)
        clock.advance(1)
        self.assertEqual(self.successResultOf(d), EXIT_OK)

    def test_sleep_call_uses_timeout(self) -> None:
        """--timeout bounds the call as well as the connection."""
        pair = _pair()
        d, _, clock = self._run_command(
            ["call", "-t", "2", "sleep", "10"],
            lambda reactor, endpoint, timeout: succeed(pair.client),
            pair.clock,
        )
        pair.pump()
        clock.advance(2)
        pair.pump()
        self.assertEqual(self.failureResultOf(d, CommandError).value.code, EXIT_TIMEOUT)


class _Terminal(io.BytesIO):
    """Standard output as a terminal."""

    def isatty(self) -> bool:
        return True


def _tagged_pair() -> ConnectedPair:
    router = Router()
    router.add("tagged", lambda call: Reply(body=b"tagged", metadata={"served-by": "s1"}))
    router.add("json", lambda call: Reply(body=b'{"a":[1]}', metadata={"k": "v"}))
    router.add("bytes", lambda call: b"\xff\x00")
    router.add("nope", lambda call: _raise(RemoteError(4242, "out of stock", b"\x01")))
    return connected_pair(router)


def _raise(error: Exception) -> None:
    raise error


class OutputOptionTests(SynchronousTestCase):
    """--json, --verbose and the final newline on a terminal."""

    def test_json_output(self) -> None:
        """--json prints one JSON object: status, code, the decoded body, metadata, elapsed."""
        pair = _tagged_pair()
        out = io.BytesIO()
        d = run_call(pair.client, "json", b"", out=out, json_output=True, clock=pair.clock)
        pair.pump()
        self.assertEqual(self.successResultOf(d), EXIT_OK)
        self.assertTrue(out.getvalue().endswith(b"}\n"))
        self.assertEqual(out.getvalue().count(b"\n"), 1)
        self.assertEqual(
            json.loads(out.getvalue()),
            {
                "status": "OK",
                "code": 0,
                "body": {"a": [1]},
                "body_format": "json",
                "metadata": {"k": "v"},
                "elapsed_ms": 0.0,
            },
        )

    def test_json_output_text_and_bytes(self) -> None:
        """A body that is not JSON is given as text, or as base64 when it is not UTF-8."""
        pair = _tagged_pair()
        outs = [io.BytesIO(), io.BytesIO()]
        calls = [
            run_call(pair.client, method, b"", out=out, json_output=True)
            for method, out in zip(("tagged", "bytes"), outs, strict=True)
        ]
        pair.pump()
        for d in calls:
            self.assertEqual(self.successResultOf(d), EXIT_OK)
        text, binary = (json.loads(out.getvalue()) for out in outs)
        self.assertEqual((text["body"], text["body_format"]), ("tagged", "text"))
        self.assertEqual((binary["body"], binary["body_format"]), ("/wA=", "base64"))

    def test_json_output_remote_error(self) -> None:
        """With --json an error status is printed as a JSON object too, and still exits 1."""
        pair = _tagged_pair()
        out = io.BytesIO()
        d = run_call(pair.client, "nope", b"", out=out, json_output=True, clock=pair.clock)
        pair.pump()
        error = self.failureResultOf(d, CommandError).value
        self.assertEqual((error.code, error.message), (EXIT_REMOTE, "4242: out of stock"))
        self.assertEqual(
            json.loads(out.getvalue()),
            {
                "status": "4242",
                "code": 4242,
                "message": "out of stock",
                "details": "AQ==",
                "retry_safe": False,
                "elapsed_ms": 0.0,
            },
        )

    def test_metadata_shown_on_request(self) -> None:
        """--verbose writes the reply metadata to its stream, one entry per line, and the
        body alone to standard output."""
        pair = _tagged_pair()
        out, err = io.BytesIO(), io.StringIO()
        d = run_call(pair.client, "tagged", b"", out=out, verbose=err)
        pair.pump()
        self.assertEqual(self.successResultOf(d), EXIT_OK)
        self.assertEqual((out.getvalue(), err.getvalue()), (b"tagged", "< served-by: s1\n"))

    def test_metadata_not_shown_by_default(self) -> None:
        """Without --verbose the reply metadata is not printed."""
        pair = _tagged_pair()
        out = io.BytesIO()
        d = run_call(pair.client, "tagged", b"", out=out)
        pair.pump()
        self.successResultOf(d)
        self.assertEqual(out.getvalue(), b"tagged")

    def test_newline_on_terminal(self) -> None:
        """Output that does not end with a newline gets one on a terminal, and only there."""
        pair = _tagged_pair()
        terminal, piped = _Terminal(), io.BytesIO()
        calls = [run_call(pair.client, "tagged", b"", out=out) for out in (terminal, piped)]
        calls.append(run_call(pair.client, "json", b"", out=terminal))
        pair.pump()
        for d in calls:
            self.successResultOf(d)
        self.assertEqual(terminal.getvalue(), b'tagged\n{\n  "a": [\n    1\n  ]\n}\n')
        self.assertEqual(piped.getvalue(), b"tagged")

    def test_parsed(self) -> None:
        """call takes --json and --verbose (-v), both off by default."""
        args = _parse("call", "echo")
        self.assertEqual((args.json, args.verbose), (False, False))
        args = _parse("call", "--json", "-v", "echo")
        self.assertEqual((args.json, args.verbose), (True, True))


class LocalErrorTests(SynchronousTestCase):
    """Errors that are the caller's, not the server's, exit with the usage status."""

    def test_body_over_the_limit(self) -> None:
        """A body larger than the server's maximum frame size exits 2, saying so."""
        pair = _pair()
        pair.pump()
        body = b"x" * (16 * 1024 * 1024)
        d = run_call(pair.client, "echo", body, out=io.BytesIO())
        pair.pump()
        error = self.failureResultOf(d, CommandError).value
        self.assertEqual(error.code, EXIT_USAGE)
        self.assertRegex(
            error.message,
            r"^request not sent: RESOURCE_EXHAUSTED: message of 16777226 bytes exceeds "
            r"the peer's maximum frame size of 16777216$",
        )

    def test_explain_server_deadline_keeps_its_reason(self) -> None:
        """A DEADLINE_EXCEEDED the server answered keeps its reason; a local one says only when."""
        from twisted_reqresp import DeadlineExceeded

        server = explain(DeadlineExceeded("no time left (at the server)"), timeout=0.05)
        self.assertEqual(
            (server.code, server.message),
            (EXIT_TIMEOUT, "timed out after 0.05 s: the server said: no time left"),
        )
        local = explain(DeadlineExceeded("no answer within 0.05 s"), timeout=0.05)
        self.assertEqual((local.code, local.message), (EXIT_TIMEOUT, "timed out after 0.05 s"))
        # The server's own deadline firing first says nothing more: the
        # same message whichever copy of the deadline wins the race.
        plain = explain(DeadlineExceeded("deadline exceeded (at the server)"), timeout=0.05)
        self.assertEqual((plain.code, plain.message), (EXIT_TIMEOUT, "timed out after 0.05 s"))

    def test_explain_local_protocol_error(self) -> None:
        """explain maps a local protocol error to the usage status with its message."""
        error = explain(LocalProtocolError("too big", StatusCode.RESOURCE_EXHAUSTED), timeout=None)
        self.assertEqual((error.code, error.message), (EXIT_USAGE, "too big"))


class NoTimeoutTests(SynchronousTestCase):
    """--timeout 0: no timeout, connecting or calling."""

    def test_call_without_timeout(self) -> None:
        """A call with no timeout waits as long as the answer takes."""
        pair = _pair()
        out = io.BytesIO()
        d = run_call(pair.client, "sleep", b"60", out=out, timeout=None)
        pair.pump()
        pair.clock.advance(59)
        pair.pump()
        self.assertNoResult(d)
        pair.clock.advance(1)
        pair.pump()
        self.assertEqual(self.successResultOf(d), EXIT_OK)
        self.assertEqual(out.getvalue(), b"60\n")

    def test_connect_without_timeout(self) -> None:
        """With --timeout 0 a connection attempt is not timed out, and connect is given
        no timeout."""
        seen: list[float | None] = []

        def connector(reactor: Any, endpoint: str, *, timeout: float | None) -> Deferred[Client]:
            seen.append(timeout)
            return Deferred()

        clock = MemoryReactorClock()
        d = run(clock, _parse("-t", "0", "methods"), out=io.BytesIO(), connector=connector)
        clock.advance(3600)
        self.assertNoResult(d)
        self.assertEqual(seen, [None])
        self.assertEqual(clock.getDelayedCalls(), [])


class SeveralEndpointsTests(SynchronousTestCase):
    """Several --connect: call, methods and bench through a Channel, health per server."""

    def setUp(self) -> None:
        self.net = Network()
        self.a = self.net.server("a")
        self.b = self.net.server("b")
        self.made: list[Channel] = []

    def channel_factory(self, reactor: Any, endpoints: list[str], *, timeout: Any) -> Channel:
        """A Channel over the in-memory servers named by the endpoints ("a", "b")."""
        servers = {"a": self.a, "b": self.b}
        channel = Channel(
            None,
            [servers[name] for name in endpoints],
            clock=self.net.clock,
            timeout=timeout,
            health_check_interval=None,
            random=lambda: 0.5,
        )
        self.made.append(channel)
        return channel

    def run_command(self, *argv: str) -> tuple[Deferred[int], io.BytesIO]:
        out = io.BytesIO()
        d = run(
            self.net.clock,
            _parse(*argv),
            out=out,
            connector=lambda *a, **k: fail(AssertionError("no single connection expected")),
            channel_factory=self.channel_factory,
        )
        self.net.pump()
        return d, out

    def assert_closed(self) -> None:
        """Every channel made is closed, its connections gone, no timer left."""
        self.net.pump()
        self.assertTrue(self.made)
        for channel in self.made:
            self.assertEqual(channel.backends, ())
        self.assertEqual([link for link in self.net.links if not link.lost], [])
        self.assertEqual(self.net.clock.getDelayedCalls(), [])

    def test_call_over_a_channel(self) -> None:
        """call with two endpoints answers through a channel over both, then closes it."""
        d, out = self.run_command("-c", "a", "-c", "b", "call", "--raw", "echo", "hi")
        self.assertEqual((self.successResultOf(d), out.getvalue()), (EXIT_OK, b"hi"))
        self.assertEqual(self.made[0].stats.succeeded, 1)
        self.assert_closed()

    def test_call_skips_a_down_server(self) -> None:
        """With one server refusing, call is answered by the other."""
        self.a.refusing = True
        d, out = self.run_command("-c", "a", "-c", "b", "call", "who")
        self.assertEqual((self.successResultOf(d), out.getvalue()), (EXIT_OK, b"b"))
        self.assert_closed()

    def test_all_down_fails_after_timeout(self) -> None:
        """With every server refusing, the command fails with status 3 after --timeout,
        saying why."""
        self.a.refusing = self.b.refusing = True
        d, _ = self.run_command("-c", "a", "-c", "b", "-t", "2", "call", "who")
        self.net.advance(1.9)
        self.assertNoResult(d)
        self.net.advance(0.2)
        error = self.failureResultOf(d, CommandError).value
        self.assertEqual(error.code, EXIT_CONNECTION)
        self.assertIn("no server became ready within 2 s", error.message)
        self.assertIn("refused", error.message)
        self.assert_closed()

    def test_methods_over_a_channel(self) -> None:
        """methods with two endpoints lists the methods of the set's servers."""
        d, out = self.run_command("-c", "a", "-c", "b", "methods")
        self.assertEqual(self.successResultOf(d), EXIT_OK)
        self.assertEqual(
            out.getvalue(),
            b"echo\nfail\nwait\nwho\nreqresp.health\nreqresp.methods\nreqresp.stats\n",
        )
        self.assert_closed()

    def test_remote_error_over_a_channel(self) -> None:
        """A server's error status through the channel gives status 1 and its message."""
        d, _ = self.run_command("-c", "a", "-c", "b", "call", "nope")
        error = self.failureResultOf(d, CommandError).value
        self.assertEqual(
            (error.code, error.message), (EXIT_REMOTE, "NOT_FOUND: unknown method 'nope'")
        )
        self.assert_closed()

    def test_bench_counts_per_backend(self) -> None:
        """bench over two endpoints reports the calls each backend answered, summing to all."""
        d, out = self.run_command(
            "-c", "a", "-c", "b", "bench", "-C", "2", "-d", "3", "-D", "1", "wait", "--raw", "x"
        )
        # The servers answer every 0.1 s, so the clock moves while the calls flow.
        for _ in range(15):
            self.a.answer_waiting()
            self.b.answer_waiting()
            self.net.advance(0.1)
        code = self.successResultOf(d)
        self.assertEqual(code, EXIT_OK)
        text = out.getvalue().decode()
        line = next(line for line in text.splitlines() if line.startswith("backends"))
        counts = dict(
            (name, int(count.replace(",", "")))
            for name, count in re.findall(r"(<FakeServer \w>) ([\d,]+)", line)
        )
        self.assertEqual(set(counts), {"<FakeServer a>", "<FakeServer b>"})
        self.assertTrue(all(count > 0 for count in counts.values()), counts)
        total = int(re.search(r"requests  ([\d,]+)", text).group(1).replace(",", ""))  # type: ignore[union-attr]
        self.assertEqual(sum(counts.values()), total)
        self.assert_closed()

    def test_ping_refused(self) -> None:
        """ping with several endpoints is a usage error, before connecting."""
        d, _ = self.run_command("-c", "a", "-c", "b", "ping")
        error = self.failureResultOf(d, CommandError).value
        self.assertEqual(error.code, EXIT_USAGE)
        self.assertIn("one --connect", error.message)
        self.assertEqual(self.made, [])

    def test_invalid_endpoint(self) -> None:
        """An endpoint string the channel cannot parse is a usage error naming that endpoint."""
        out = io.BytesIO()
        d = run(
            MemoryReactorClock(), _parse("-c", "tcp:h:1", "-c", "nonsense:x", "methods"), out=out
        )
        error = self.failureResultOf(d, CommandError).value
        self.assertEqual(error.code, EXIT_USAGE)
        self.assertRegex(error.message, r"^invalid endpoint 'nonsense:x': ")


class HealthEachTests(SynchronousTestCase):
    """health with several endpoints asks each server over its own connection."""

    def run_health(
        self, argv: list[str], servers: dict[str, Any]
    ) -> tuple[Deferred[int], io.BytesIO, list[ConnectedPair]]:
        clock = MemoryReactorClock()
        pairs: list[ConnectedPair] = []

        def connector(reactor: Any, endpoint: str, *, timeout: Any) -> Deferred[Client]:
            server = servers[endpoint]
            if isinstance(server, Exception):
                return fail(server)
            if server is None:
                return Deferred()
            pair = _pair()
            pair.factory.health.set("", server)
            pairs.append(pair)
            return succeed(pair.client)

        out = io.BytesIO()
        d = run(clock, _parse(*argv), out=out, connector=connector)
        for _ in range(3):
            for pair in pairs:
                pair.pump()
        self.clock = clock
        return d, out, pairs

    def test_all_serving(self) -> None:
        """Every server SERVING: one 'ENDPOINT SERVING' line each, in order, status 0."""
        d, out, pairs = self.run_health(
            ["-c", "tcp:h:2", "-c", "tcp:h:1", "health"],
            {"tcp:h:1": "SERVING", "tcp:h:2": "SERVING"},
        )
        self.assertEqual(self.successResultOf(d), EXIT_OK)
        self.assertEqual(out.getvalue(), b"tcp:h:2 SERVING\ntcp:h:1 SERVING\n")
        self.assertTrue(all(pair.client_transport.disconnecting for pair in pairs))

    def test_first_failure_decides(self) -> None:
        """Each server's line says its status or error; the status is the first non-SERVING's."""
        d, out, _ = self.run_health(
            ["-c", "tcp:h:1", "-c", "tcp:h:2", "-c", "tcp:h:3", "health"],
            {
                "tcp:h:1": "SERVING",
                "tcp:h:2": ierror.ConnectionRefusedError(),
                "tcp:h:3": "DRAINING",
            },
        )
        self.assertEqual(self.successResultOf(d), EXIT_CONNECTION)
        self.assertEqual(
            out.getvalue(),
            b"tcp:h:1 SERVING\ntcp:h:2 connection refused\ntcp:h:3 DRAINING\n",
        )

    def test_not_serving_first(self) -> None:
        """A NOT_SERVING server before a refused one gives status 1."""
        d, _, _ = self.run_health(
            ["-c", "tcp:h:1", "-c", "tcp:h:2", "health"],
            {"tcp:h:1": "NOT_SERVING", "tcp:h:2": ierror.ConnectionRefusedError()},
        )
        self.assertEqual(self.successResultOf(d), EXIT_REMOTE)

    def test_timeout_per_server(self) -> None:
        """A server that never answers the connection times out on its own line, status 4."""
        d, out, _ = self.run_health(
            ["-c", "tcp:h:1", "-c", "tcp:h:2", "-t", "2", "health"],
            {"tcp:h:1": "SERVING", "tcp:h:2": None},
        )
        self.assertNoResult(d)
        self.clock.advance(2)
        self.assertEqual(self.successResultOf(d), EXIT_TIMEOUT)
        self.assertEqual(out.getvalue(), b"tcp:h:1 SERVING\ntcp:h:2 timed out after 2 s\n")
