"""
``reqresp stream``: the server's messages printed as they arrive, the final
status, standard input as the client's stream, over the in-memory pair (no
sockets, no global reactor).  docs/cli.md runs it against a real server.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from channel_net import Network
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import Call, Channel, Client, Limits, Router, StatusCode, StatusError
from twisted_reqresp._app.cli import (
    EXIT_OK,
    EXIT_REMOTE,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    CommandError,
    StdinLines,
    build_parser,
    run,
    run_stream,
    stream_line,
)
from twisted_reqresp._app.service import default_factory
from twisted_reqresp.testing import ConnectedPair, connected_pair

#: Both sides' limits: the defaults, which offer streaming calls.
STREAMING = Limits()


def _pair(limits: Limits = STREAMING) -> ConnectedPair:
    """The default service, with a bidirectional ``shout`` and a ``fail_after`` added;
    ``limits`` are the server's."""
    clock = MemoryReactorClock()
    factory = default_factory(clock=clock, limits=limits)
    router: Router = factory.responder_factory.responder  # type: ignore[attr-defined]

    @router.method("shout", kind="bidi_stream")
    async def shout(call: Call) -> AsyncIterator[bytes]:
        """Send each message back, upper-cased."""
        async for message in call.stream:
            yield message.upper()

    @router.method("fail_after", kind="server_stream")
    async def fail_after(call: Call) -> AsyncIterator[bytes]:
        """Send two messages, then fail."""
        yield b'"one"'
        yield b"two words"
        raise StatusError(StatusCode.ABORTED, "gave up after two")

    return connected_pair(
        factory.responder_factory, factory=factory, clock=clock, client_limits=STREAMING
    )


def _lines(data: bytes) -> Callable[[], Deferred[bytes]]:
    """:returns: a ``read_line`` giving the lines of ``data``, then ``b""``."""
    source = io.BytesIO(data)
    return lambda: succeed(source.readline())


def _parse(*argv: str) -> Any:
    return build_parser({}).parse_args(list(argv))


class _Run:
    """One run_stream over a pair, its output and status line."""

    def __init__(self, test: SynchronousTestCase, pair: ConnectedPair, **kwargs: Any) -> None:
        self.out = io.BytesIO()
        self.err = io.StringIO()
        kwargs.setdefault("clock", pair.clock)
        self.d = run_stream(pair.client, out=self.out, err=self.err, **kwargs)
        pair.pump()


class ParserTests(SynchronousTestCase):
    """The stream command's arguments."""

    def test_defaults(self) -> None:
        """stream takes METHOD and an optional BODY; the call is server streaming."""
        args = _parse("stream", "count", "5")
        self.assertEqual(
            (args.command, args.method, args.body, args.kind, args.raw, args.json),
            ("stream", "count", "5", "server_stream", False, False),
        )
        self.assertIsNone(_parse("stream", "count").body)

    def test_client_stream_and_bidi(self) -> None:
        """--client-stream and --bidi choose the kind, and exclude each other."""
        self.assertEqual(_parse("stream", "--client-stream", "sum").kind, "client_stream")
        self.assertEqual(_parse("stream", "shout", "--bidi").kind, "bidi_stream")
        with self.assertRaises(SystemExit):
            _parse("stream", "--client-stream", "--bidi", "x")

    def test_options(self) -> None:
        """--raw, --json, --metadata and --connect go with stream, before or after METHOD."""
        args = _parse("stream", "count", "--raw", "3 100", "-m", "a=b", "--json", "-c", "unix:s")
        self.assertEqual(
            (args.body, args.raw, args.json, args.metadata, args.connect),
            ("3 100", True, True, [("a", "b")], ["unix:s"]),
        )


class StreamLineTests(SynchronousTestCase):
    """Each message is one line."""

    def test_json_compact(self) -> None:
        """A JSON message is printed compact, whatever its spacing."""
        self.assertEqual(stream_line(b'{"a": [1, 2]}'), b'{"a":[1,2]}\n')
        self.assertEqual(stream_line(b"7"), b"7\n")

    def test_other_bytes(self) -> None:
        """Anything else is printed as it is, with a newline, even an empty message."""
        self.assertEqual(stream_line(b"two words"), b"two words\n")
        self.assertEqual(stream_line(b"\xff\x00"), b"\xff\x00\n")
        self.assertEqual(stream_line(b""), b"\n")


class ServerStreamTests(SynchronousTestCase):
    """The server's messages, then the final status."""

    def test_count(self) -> None:
        """Each message is a line on out; OK goes to err; status 0."""
        pair = _pair()
        run_ = _Run(self, pair, method="count", body=b"3")
        self.assertEqual(self.successResultOf(run_.d), EXIT_OK)
        self.assertEqual(run_.out.getvalue(), b"1\n2\n3\n")
        self.assertEqual(run_.err.getvalue(), "OK\n")

    def test_printed_as_they_arrive(self) -> None:
        """A message is written as soon as it arrives, before the stream ends."""
        pair = _pair()
        run_ = _Run(self, pair, method="count", body=b"3 1000")
        self.assertEqual(run_.out.getvalue(), b"1\n")
        self.assertNoResult(run_.d)
        pair.clock.advance(1)
        pair.pump()
        self.assertEqual(run_.out.getvalue(), b"1\n2\n")
        pair.clock.advance(1)
        pair.pump()
        self.assertEqual(self.successResultOf(run_.d), EXIT_OK)
        self.assertEqual(run_.out.getvalue(), b"1\n2\n3\n")

    def test_error_status(self) -> None:
        """An error final status is the remote-error exit, nothing printed but the error."""
        pair = _pair()
        run_ = _Run(self, pair, method="count", body=b"-1")
        error = self.failureResultOf(run_.d, CommandError).value
        self.assertEqual(error.code, EXIT_REMOTE)
        self.assertTrue(error.message.startswith("INVALID_ARGUMENT: count takes N"), error)
        self.assertEqual((run_.out.getvalue(), run_.err.getvalue()), (b"", ""))

    def test_error_mid_stream(self) -> None:
        """Messages that came before an error status are printed, then the error is reported."""
        pair = _pair()
        run_ = _Run(self, pair, method="fail_after")
        error = self.failureResultOf(run_.d, CommandError).value
        self.assertEqual((error.code, error.message), (EXIT_REMOTE, "ABORTED: gave up after two"))
        self.assertEqual(run_.out.getvalue(), b'"one"\ntwo words\n')

    def test_timeout(self) -> None:
        """--timeout bounds the whole call: a longer stream times out with status 4."""
        pair = _pair()
        run_ = _Run(self, pair, method="count", body=b"10 1000", timeout=2.5)
        for step in (1, 1, 0.5):
            pair.clock.advance(step)
            pair.pump()
        error = self.failureResultOf(run_.d, CommandError).value
        self.assertEqual((error.code, error.message), (EXIT_TIMEOUT, "timed out after 2.5 s"))
        self.assertEqual(run_.out.getvalue(), b"1\n2\n3\n")
        self.assertEqual(pair.server.running, {})

    def test_wrong_kind(self) -> None:
        """A unary method called with stream is the server's INVALID_ARGUMENT, status 1."""
        pair = _pair()
        run_ = _Run(self, pair, method="echo", body=b"x")
        error = self.failureResultOf(run_.d, CommandError).value
        self.assertEqual(error.code, EXIT_REMOTE)
        self.assertIn("is unary; called as server_stream", error.message)

    def test_server_without_streams(self) -> None:
        """A server that does not offer streaming calls is the remote-error status, saying why."""
        pair = _pair(Limits(stream_credit=None))
        run_ = _Run(self, pair, method="count", body=b"3")
        error = self.failureResultOf(run_.d, CommandError).value
        self.assertEqual(
            (error.code, error.message),
            (
                EXIT_REMOTE,
                "the server does not offer streaming calls (an older server, or one started "
                "with --stream-credit 0)",
            ),
        )

    def test_json(self) -> None:
        """--json prints one object per message, then the final status with the count."""
        pair = _pair()
        run_ = _Run(self, pair, method="fail_after", json_output=True)
        self.failureResultOf(run_.d, CommandError)
        lines = [json.loads(line) for line in run_.out.getvalue().splitlines()]
        self.assertEqual(
            lines[:2],
            [
                {"message": "one", "body_format": "json"},
                {"message": "two words", "body_format": "text"},
            ],
        )
        self.assertEqual(
            {k: lines[2][k] for k in ("status", "code", "message", "messages")},
            {"status": "ABORTED", "code": 10, "message": "gave up after two", "messages": 2},
        )
        self.assertEqual(len(lines), 3)

    def test_json_ok(self) -> None:
        """--json's final object for an OK status has the body, metadata and messages."""
        pair = _pair()
        run_ = _Run(self, pair, method="count", body=b"2", json_output=True)
        self.assertEqual(self.successResultOf(run_.d), EXIT_OK)
        lines = [json.loads(line) for line in run_.out.getvalue().splitlines()]
        self.assertEqual(lines[:2], [{"message": n, "body_format": "json"} for n in (1, 2)])
        final = lines[2]
        del final["elapsed_ms"]
        self.assertEqual(
            final,
            {
                "status": "OK",
                "code": 0,
                "body": "",
                "body_format": "text",
                "metadata": {},
                "messages": 2,
            },
        )
        self.assertEqual(run_.err.getvalue(), "")


class ClientStreamTests(SynchronousTestCase):
    """Standard input as the client's stream, one message per line."""

    def test_sum(self) -> None:
        """Each line is a message, blank lines skipped; the final answer is printed."""
        pair = _pair()
        run_ = _Run(
            self,
            pair,
            method="sum",
            body=b"",
            kind="client_stream",
            read_line=_lines(b"1\n2\n\n  \n3.5\r\n"),
        )
        self.assertEqual(self.successResultOf(run_.d), EXIT_OK)
        self.assertEqual(run_.out.getvalue(), b"6.5\n")
        self.assertEqual(run_.err.getvalue(), "OK\n")

    def test_no_newline_at_end(self) -> None:
        """A last line without its newline is a message too; empty input is an empty stream."""
        pair = _pair()
        run_ = _Run(self, pair, method="sum", kind="client_stream", read_line=_lines(b"4\n5"))
        self.assertEqual(run_.out.getvalue(), b"9\n")
        run_ = _Run(self, pair, method="sum", kind="client_stream", read_line=_lines(b""))
        self.assertEqual(run_.out.getvalue(), b"0\n")

    def test_invalid_line(self) -> None:
        """A line that is not JSON is a usage error naming it; the call is cancelled."""
        pair = _pair()
        run_ = _Run(
            self, pair, method="sum", body=b"", kind="client_stream", read_line=_lines(b"1\nx\n3\n")
        )
        error = self.failureResultOf(run_.d, CommandError).value
        self.assertEqual(error.code, EXIT_USAGE)
        self.assertIn("line 2 of standard input is not valid JSON", error.message)
        self.assertEqual(pair.server.running, {})
        self.assertEqual(run_.out.getvalue(), b"")

    def test_raw_lines(self) -> None:
        """With raw, each line is sent as it is, without its line ending, blank ones too."""
        pair = _pair()
        run_ = _Run(
            self,
            pair,
            method="sum",
            kind="client_stream",
            raw=True,
            read_line=_lines(b"1\r\n\n2\n"),
        )
        error = self.failureResultOf(run_.d, CommandError).value
        self.assertEqual(error.message, "INVALID_ARGUMENT: sum takes one JSON number per "
                         "message; message 2 is ''")  # fmt: skip

    def test_server_message_error(self) -> None:
        """The server's refusal of a message is the remote-error status."""
        pair = _pair()
        run_ = _Run(self, pair, method="sum", kind="client_stream", read_line=_lines(b'1\n"a"\n'))
        error = self.failureResultOf(run_.d, CommandError).value
        self.assertEqual(error.code, EXIT_REMOTE)
        self.assertIn("message 2 is", error.message)

    def test_bidi(self) -> None:
        """--bidi sends the lines and prints the server's messages as they come."""
        pair = _pair()
        run_ = _Run(
            self,
            pair,
            method="shout",
            kind="bidi_stream",
            raw=True,
            read_line=_lines(b"ab\ncd\n"),
        )
        self.assertEqual(self.successResultOf(run_.d), EXIT_OK)
        self.assertEqual(run_.out.getvalue(), b"AB\nCD\n")

    def test_lines_needed(self) -> None:
        """A client-streaming call without lines to send is a usage error."""
        pair = _pair()
        run_ = _Run(self, pair, method="sum", kind="client_stream")
        self.assertEqual(self.failureResultOf(run_.d, CommandError).value.code, EXIT_USAGE)


class _ThreadReactor:
    """Runs what ``callFromThread`` is given when the test says, in the test's thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self.arrived = threading.Event()

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:
        self.calls.append((f, args))
        self.arrived.set()

    def run_calls(self) -> None:
        assert self.arrived.wait(5), "the reading thread delivered nothing within 5 s"
        self.arrived.clear()
        calls, self.calls = self.calls, []
        for f, args in calls:
            f(*args)


class StdinLinesTests(SynchronousTestCase):
    """Standard input is read one line per request, off the reactor thread."""

    def test_lines_then_end(self) -> None:
        """Each read_line gives the next line, then b"" at the end; one line is read per ask."""
        reactor = _ThreadReactor()
        lines = StdinLines(reactor, io.BytesIO(b"a\nb"))
        got = []
        for _ in range(3):
            d = lines.read_line()
            reactor.run_calls()
            got.append(self.successResultOf(d))
            self.assertEqual(len(reactor.calls), 0)
        self.assertEqual(got, [b"a\n", b"b", b""])


class RunTests(SynchronousTestCase):
    """run dispatches stream, over one connection or several."""

    def test_stream_command(self) -> None:
        """run stream prints the messages and closes the connection."""
        pair = _pair()
        out = io.BytesIO()

        def connector(reactor: Any, endpoint: str, *, timeout: float) -> Deferred[Client]:
            return succeed(pair.client)

        d = run(pair.clock, _parse("stream", "count", "2"), out=out, connector=connector)
        pair.pump()
        self.assertEqual(self.successResultOf(d), EXIT_OK)
        self.assertEqual(out.getvalue(), b"1\n2\n")
        self.assertTrue(pair.client_transport.disconnecting)

    def test_bad_body_before_connecting(self) -> None:
        """A BODY that is not JSON is refused before connecting (count '3 100' needs --raw)."""

        def connector(reactor: Any, endpoint: str, *, timeout: float) -> Deferred[Client]:
            raise AssertionError("connected")

        d = run(
            MemoryReactorClock(), _parse("stream", "count", "3 100"), out=io.BytesIO(),
            connector=connector,
        )  # fmt: skip
        self.assertEqual(self.failureResultOf(d, CommandError).value.code, EXIT_USAGE)


class SeveralEndpointsTests(SynchronousTestCase):
    """stream over several --connect goes through Channel.stream, on one server."""

    def test_stream_over_a_channel(self) -> None:
        """The messages of one server's stream are printed, then OK; the channel is closed."""
        net = Network()
        servers = {"a": net.server("a"), "b": net.server("b")}
        for name, server in servers.items():

            async def names(call: Call, name: str = name) -> AsyncIterator[bytes]:
                for _ in range(3):
                    yield name.encode()

            server.router.add("names", names, kind="server_stream")
        made: list[Channel] = []

        def channel_factory(reactor: Any, endpoints: list[str], *, timeout: Any) -> Channel:
            channel = Channel(
                None,
                [servers[name] for name in endpoints],
                clock=net.clock,
                timeout=timeout,
                health_check_interval=None,
            )
            made.append(channel)
            return channel

        out = io.BytesIO()
        d = run(
            net.clock,
            _parse("-c", "a", "-c", "b", "stream", "names"),
            out=out,
            channel_factory=channel_factory,
        )
        net.pump()
        self.assertEqual(self.successResultOf(d), EXIT_OK)
        self.assertIn(out.getvalue(), (b"a\na\na\n", b"b\nb\nb\n"))
        net.pump()
        self.assertEqual(made[0].backends, ())
