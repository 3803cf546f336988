"""
The ``reqresp`` command: call a server from a shell.

::

    reqresp call echo '"hi"'
    reqresp call --raw echo hello
    reqresp call --metadata trace=abc sleep 2 --timeout 1
    reqresp call --json stats
    reqresp stream count 5                        # 1 2 3 4 5, then OK
    seq 10 | reqresp stream --client-stream sum   # 55, then OK
    reqresp --connect unix:/run/app.sock methods
    reqresp health
    reqresp ping --count 3
    reqresp bench --connections 8 --depth 16 --duration 10 echo
    reqresp -c tcp:10.0.0.1:9000 -c tcp:10.0.0.2:9000 bench   # over a Channel

The work is done by functions that take a connected
:class:`~twisted_reqresp.Client` and a clock (:func:`run_call`,
:func:`run_stream`, :func:`run_methods`, :func:`run_ping`), so tests drive them over
:func:`twisted_reqresp.testing.connected_pair`; :func:`run_health` too;
:func:`main` only parses
arguments, connects, and runs the reactor with
:func:`twisted.internet.task.react`.
"""

from __future__ import annotations

import argparse
import base64
import importlib.metadata
import io
import json
import math
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, BinaryIO, TextIO

from twisted.copyright import version as twisted_version
from twisted.internet import error as ierror
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    gatherResults,
    inlineCallbacks,
)
from twisted.internet.defer import (
    TimeoutError as DeferTimeout,
)
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater, react
from twisted.python.failure import Failure

from .._adapters.channel import Channel
from .._adapters.client import Client, connect
from .._core.call import Reply
from .._core.errors import (
    ConnectionClosed,
    DeadlineExceeded,
    LocalProtocolError,
    RemoteError,
    StatusError,
)
from .._core.hotpath import reason as hot_path
from .._core.status import StatusCode, status_name
from ..codecs import JSON
from .bench import BenchReport, bench, count_backends, format_report

__all__ = [
    "EXIT_CONNECTION",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_REMOTE",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "CommandError",
    "build_parser",
    "encode_body",
    "endpoints_from_env",
    "explain",
    "format_body",
    "json_body",
    "main",
    "new_channel",
    "run",
    "run_call",
    "run_channel",
    "run_health",
    "run_health_each",
    "run_methods",
    "run_ping",
    "run_stream",
    "version_text",
]

#: The call succeeded (``health``: the status is SERVING).
EXIT_OK = 0
#: The server answered with an error status (``health``: or a status other
#: than SERVING).
EXIT_REMOTE = 1
#: The command line was wrong (argparse's own code for usage errors).
EXIT_USAGE = 2
#: The server could not be reached, or the connection was lost.
EXIT_CONNECTION = 3
#: No answer (or no connection) within ``--timeout``.
EXIT_TIMEOUT = 4
#: Interrupted (Ctrl-C): 128 + SIGINT, as shells report it.
EXIT_INTERRUPTED = 128 + signal.SIGINT

#: Where to connect when neither ``--connect`` nor the environment says.
DEFAULT_ENDPOINT = "tcp:127.0.0.1:9000"
#: The environment variable that overrides :data:`DEFAULT_ENDPOINT`.
ENDPOINT_ENV = "REQRESP_CONNECT"
#: Seconds to wait for the connection, and then for each answer
#: (``--timeout 0``: no limit).
DEFAULT_TIMEOUT = 10.0
#: Seconds between two pings of ``reqresp ping --count N``, as ping(8).
PING_INTERVAL = 1.0
#: Seconds to wait for an orderly close before giving up on it: the work is
#: done by then, so a slow close must not delay the exit code.
CLOSE_TIMEOUT = 1.0
#: Over several endpoints, ``bench`` waits this long at most (after the
#: first backend is ready) for the others, so that a down backend delays
#: the run by this, not by ``--timeout``.
BENCH_SETTLE_TIME = 1.0

_EPILOG = f"""\
exit status:
  {EXIT_OK}  success (health: the status is SERVING)
  {EXIT_REMOTE}  the server answered with an error status (printed as CODE: message);
     health: the status is not SERVING
  {EXIT_USAGE}  usage error (bad arguments, body not valid JSON or too large, bad endpoint)
  {EXIT_CONNECTION}  cannot connect, or the connection was lost
  {EXIT_TIMEOUT}  timed out (connecting, or waiting for an answer)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)

--connect and --timeout may come before or after COMMAND.  The endpoint
defaults to ${ENDPOINT_ENV} (several separated by commas), or
{DEFAULT_ENDPOINT} if that is unset.  With several endpoints, call, stream,
methods and bench go through a Channel (balanced, calls that are safe to resend
retried), health asks each server and prints one line per server, and ping
is refused.
"""


class CommandError(Exception):
    """
    The command failed: print ``reqresp: <message>`` and exit with ``code``.

    :ivar message: one line for stderr.
    :ivar code: the exit status.
    """

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message, code)
        self.message = message
        self.code = code


# -- arguments -------------------------------------------------------------------


def _metadata_pair(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text!r}")
    return key, value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def _timeout(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more: {text!r}")
    # 0 means "no timeout", as for curl's --max-time and redis-cli's -t.
    return value or None


def version_text() -> str:
    """
    :returns: what ``reqresp --version`` prints: this package's version and
        those of Twisted and Python, and which hot path is active (compiled
        or pure Python, and why), for bug reports.
    """
    try:
        # The installed distribution's: the package's __init__ is a layer above.
        ours = importlib.metadata.version("twisted-reqresp")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        ours = "unknown"
    return (
        f"reqresp {ours} (Twisted {twisted_version}, Python {platform.python_version()})\n"
        f"{hot_path()}"
    )


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """
    Build the ``reqresp`` argument parser.

    :param environ: the environment to read :data:`ENDPOINT_ENV` from
        (``os.environ`` if omitted).
    :returns: the parser; its result has ``command`` set to ``"call"``,
        ``"stream"``, ``"methods"``, ``"health"``, ``"ping"`` or ``"bench"``.
    """
    environ = os.environ if environ is None else environ
    endpoints = endpoints_from_env(environ.get(ENDPOINT_ENV, "")) or [DEFAULT_ENDPOINT]
    shown = ",".join(endpoints)

    def add_common(
        parser: argparse.ArgumentParser, default: Callable[[Any], Any], connect_dest: str
    ) -> None:
        parser.add_argument(
            "--connect",
            "-c",
            metavar="ENDPOINT",
            action="append",
            dest=connect_dest,
            default=default(None),
            help="client endpoint string of a server; repeat it for a set of servers, "
            f"which call, stream, methods and bench balance over [default: {shown}]",
        )
        parser.add_argument(
            "--timeout",
            "-t",
            metavar="S",
            type=_timeout,
            default=default(DEFAULT_TIMEOUT),
            help="seconds to wait to connect, then for each answer; 0 for no limit "
            f"[default: {DEFAULT_TIMEOUT:g}]",
        )

    # Given after COMMAND, an option is parsed by the command's parser, whose
    # defaults would overwrite what was given before COMMAND: SUPPRESS leaves
    # the top-level value alone unless the option is given again.
    common = argparse.ArgumentParser(add_help=False)
    # --connect after COMMAND adds to the endpoints given before it
    # (_EndpointsParser joins the two lists).
    add_common(common, lambda value: argparse.SUPPRESS, "connect_after")
    parser = _EndpointsParser(
        endpoints,
        prog="reqresp",
        description="Call a twisted-reqresp server, or a set of them.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    parser.add_argument("--version", action="version", version=version_text())
    add_common(parser, lambda value: value, "connect")
    commands: Any = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_IntermixedParser
    )

    call = commands.add_parser(
        "call",
        parents=[common],
        help="call a method and print its answer",
        description=(
            "Call METHOD with BODY and print the answer: as JSON if it is JSON "
            "(indented for objects and arrays), else its bytes unchanged."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    call.add_argument(
        "--metadata",
        "-m",
        metavar="KEY=VALUE",
        type=_metadata_pair,
        action="append",
        default=[],
        help="send this metadata entry with the request (repeatable)",
    )
    call.add_argument(
        "--raw",
        action="store_true",
        help="send BODY's UTF-8 bytes unchanged instead of checking it is JSON",
    )
    call.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (status, code, body, metadata, elapsed_ms), for scripts",
    )
    call.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="print the answer's metadata on standard error, one '< key: value' line each",
    )
    call.add_argument("method", metavar="METHOD", help="the method name")
    call.add_argument(
        "body",
        metavar="BODY",
        nargs="?",
        help="the request body: JSON (sent compact), or @PATH to send a file's bytes "
        "(@- for stdin); empty if omitted",
    )

    stream = commands.add_parser(
        "stream",
        parents=[common],
        help="make a streaming call: print each message as it arrives, then the status",
        description=(
            "Call METHOD as a server-streaming call with BODY and print each message as\n"
            "it arrives, one per line (JSON compact, anything else as it is), then the\n"
            "final answer's body if it has one; the final status (OK, or the error)\n"
            "goes to standard error.  With --client-stream or --bidi, standard input is\n"
            "streamed to the server, one message per line, and its end ends the\n"
            "client's stream.  --timeout bounds the whole call."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stream.add_argument(
        "--metadata",
        "-m",
        metavar="KEY=VALUE",
        type=_metadata_pair,
        action="append",
        default=[],
        help="send this metadata entry with the request (repeatable)",
    )
    stream.add_argument(
        "--raw",
        action="store_true",
        help="send BODY and each line of standard input as UTF-8 bytes, unchanged, "
        "instead of checking they are JSON",
    )
    stream.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per message, then one for the final status, for scripts",
    )
    streaming = stream.add_mutually_exclusive_group()
    streaming.add_argument(
        "--client-stream",
        dest="kind",
        action="store_const",
        const="client_stream",
        default="server_stream",
        help="a client-streaming call: send standard input, one message per line",
    )
    streaming.add_argument(
        "--bidi",
        dest="kind",
        action="store_const",
        const="bidi_stream",
        help="a bidirectional call: send standard input as --client-stream does, and print "
        "the server's messages as they arrive",
    )
    stream.add_argument("method", metavar="METHOD", help="the method name")
    stream.add_argument(
        "body",
        metavar="BODY",
        nargs="?",
        help="the request body, as for call; empty if omitted",
    )

    commands.add_parser(
        "methods",
        parents=[common],
        help="list the server's methods",
        description=(
            "Call the built-in method reqresp.methods and print one name per line: the "
            "service's methods, then the built-in ones.  Against a server without built-in "
            "methods, call its own 'methods' method instead."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    health = commands.add_parser(
        "health",
        parents=[common],
        help="print the server's serving status; exit 0 only when SERVING",
        description=(
            "Call the built-in method reqresp.health and print the status: SERVING, "
            "NOT_SERVING or DRAINING.  Exit 0 only when SERVING, so the command can be a "
            "Kubernetes exec probe or any health check."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    health.add_argument(
        "service",
        metavar="SERVICE",
        nargs="?",
        default="",
        help="the service whose status to ask for; the whole server's if omitted",
    )

    ping = commands.add_parser(
        "ping",
        parents=[common],
        help="measure round trips with PING frames",
        description="Send PING frames and print each round-trip time.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ping.add_argument(
        "--count",
        "-n",
        metavar="N",
        type=_count,
        default=1,
        help=f"pings to send, {PING_INTERVAL:g} s apart [default: 1]",
    )
    load = commands.add_parser(
        "bench",
        parents=[common],
        help="load-test a server and report req/s and latency percentiles",
        description=(
            "Keep DEPTH calls to METHOD in flight on each of CONNECTIONS connections "
            "for DURATION seconds, showing a progress line, then report the rate and "
            "the latency percentiles."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    load.add_argument(
        "--connections", "-C", metavar="N", type=_count, default=1,
        help="connections to open [default: 1]",
    )  # fmt: skip
    load.add_argument(
        "--depth", "-d", metavar="N", type=_count, default=1,
        help="calls in flight per connection [default: 1]",
    )  # fmt: skip
    load.add_argument(
        "--duration", "-D", metavar="S", type=_seconds, default=10.0,
        help="seconds to run [default: 10]",
    )  # fmt: skip
    load.add_argument(
        "--size", metavar="BYTES", type=int, default=64,
        help="without BODY, send this many bytes [default: 64]",
    )  # fmt: skip
    load.add_argument(
        "--raw",
        action="store_true",
        help="send BODY's UTF-8 bytes unchanged instead of checking it is JSON",
    )
    load.add_argument("method", metavar="METHOD", nargs="?", default="echo",
                      help="the method to call [default: echo]")  # fmt: skip
    load.add_argument(
        "body", metavar="BODY", nargs="?",
        help="the request body, as for call; --size bytes if omitted",
    )  # fmt: skip
    return parser


# -- bodies ----------------------------------------------------------------------------


def encode_body(
    body: str | None,
    *,
    raw: bool = False,
    read_file: Callable[[str], bytes] | None = None,
) -> bytes:
    """
    Turn the BODY argument into request bytes.

    :param body: the argument, or ``None`` if it was omitted (an empty body).
    :param raw: send ``body``'s UTF-8 bytes unchanged.
    :param read_file: reads ``@PATH`` bodies (``"-"`` means stdin); reads the
        file system and ``sys.stdin`` if omitted.
    :returns: the bytes: compact UTF-8 JSON, a file's bytes, or ``body``'s
        UTF-8 bytes with ``raw``.
    :raises CommandError: with :data:`EXIT_USAGE` if the body is not valid
        JSON or the file cannot be read.
    """
    if body is None:
        return b""
    if raw:
        return body.encode("utf-8")
    if body.startswith("@"):
        path = body[1:]
        try:
            return (read_file or _read_file)(path)
        except OSError as e:
            raise CommandError(f"cannot read {path!r}: {e.strerror or e}", EXIT_USAGE) from e
    try:
        value = json.loads(body)
    except ValueError as e:
        raise CommandError(
            f"BODY is not valid JSON ({e}); use --raw to send it as it is", EXIT_USAGE
        ) from e
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _read_file(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()


def format_body(data: bytes) -> bytes:
    """
    Turn an answer's body into what ``reqresp call`` prints.

    :param data: the body.
    :returns: JSON with a newline if ``data`` is UTF-8 JSON (indented by two
        spaces for objects and arrays, compact for scalars); otherwise
        ``data`` itself, unchanged, so binary answers can be redirected to a
        file.
    """
    try:
        value = json.loads(data.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError is a ValueError too
        return data
    indent = 2 if isinstance(value, (dict, list)) else None
    return json.dumps(value, indent=indent, ensure_ascii=False).encode("utf-8") + b"\n"


# -- the work, on a connected client ------------------------------------------------------


def json_body(data: bytes) -> tuple[Any, str]:
    """
    Put an answer's body in ``--json`` output.

    :param data: the body.
    :returns: the value and its ``body_format``: the decoded value and
        ``"json"`` if ``data`` is UTF-8 JSON, else the text and ``"text"``
        if it is UTF-8, else its base64 and ``"base64"``.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"
    try:
        return json.loads(text), "json"
    except ValueError:
        return text, "text"


def _json_ok(out: BinaryIO, reply: Reply, elapsed_ms: float, **extra: Any) -> None:
    """Write ``--json``'s object for an OK answer (``extra`` before ``elapsed_ms``)."""
    value, body_format = json_body(reply.body)
    _write_json(
        out,
        {
            "status": "OK",
            "code": StatusCode.OK,
            "body": value,
            "body_format": body_format,
            "metadata": dict(reply.metadata),
            **extra,
            "elapsed_ms": elapsed_ms,
        },
    )


def _json_error(out: BinaryIO, error: RemoteError, elapsed_ms: float, **extra: Any) -> None:
    """Write ``--json``'s object for the server's error answer."""
    _write_json(
        out,
        {
            "status": status_name(error.code),
            "code": error.code,
            "message": error.message,
            "details": base64.b64encode(error.details).decode("ascii"),
            "retry_safe": error.retry_safe,
            **extra,
            "elapsed_ms": elapsed_ms,
        },
    )


def _write_json(out: BinaryIO, value: dict[str, Any]) -> None:
    # One line, so that a script can read one object per call.
    out.write(json.dumps(value, ensure_ascii=False).encode("utf-8") + b"\n")
    out.flush()


@inlineCallbacks
def run_call(
    client: Client | Channel,
    method: str,
    body: bytes,
    *,
    out: BinaryIO,
    timeout: float | None = DEFAULT_TIMEOUT,
    metadata: Sequence[tuple[str, str]] = (),
    json_output: bool = False,
    verbose: TextIO | None = None,
    clock: IReactorTime | None = None,
) -> Generator[Deferred[Any], Any, int]:
    """
    Call ``method`` and write the formatted answer to ``out``.

    :param client: a connected client.
    :param method: the method name.
    :param body: the request body's bytes.
    :param out: where the answer goes (binary).  On a terminal, an answer
        that does not end with a newline gets one, so that the prompt
        starts on a line of its own.
    :param timeout: seconds to wait for the answer (``None``: no limit).
    :param metadata: the request's metadata pairs.
    :param json_output: write one JSON object instead (``--json``):
        ``status``, ``code``, ``body`` and ``body_format`` (see
        :func:`json_body`), ``metadata`` and ``elapsed_ms``; for an error
        status, ``status``, ``code``, ``message``, ``details`` (base64),
        ``retry_safe`` and ``elapsed_ms``.
    :param verbose: where to write the answer's metadata, one
        ``< key: value`` line per entry (``--verbose``), or ``None``.
    :param clock: measures ``elapsed_ms`` (the monotonic clock if omitted).
    :returns: a Deferred firing with :data:`EXIT_OK`, or failing with
        :class:`CommandError` (see :func:`explain`).
    """
    now = clock.seconds if clock is not None else time.monotonic
    started = now()
    try:
        reply = yield client.call(method, body, timeout=timeout, metadata=metadata)
    except Exception as e:
        if json_output and isinstance(e, RemoteError) and e.code != StatusCode.DEADLINE_EXCEEDED:
            _json_error(out, e, round((now() - started) * 1000, 3))
        raise explain(e, timeout=timeout) from e
    elapsed_ms = round((now() - started) * 1000, 3)
    if verbose is not None:
        verbose.write("".join(f"< {key}: {value}\n" for key, value in reply.metadata.items()))
        verbose.flush()
    if json_output:
        _json_ok(out, reply, elapsed_ms)
        return EXIT_OK
    text = format_body(reply.body)
    if text and not text.endswith(b"\n") and out.isatty():
        text += b"\n"
    out.write(text)
    out.flush()
    return EXIT_OK


def stream_line(data: bytes) -> bytes:
    """
    Turn one message of a stream into the line ``reqresp stream`` prints.

    :param data: the message.
    :returns: compact JSON and a newline if ``data`` is UTF-8 JSON, so that
        each message is one line; otherwise ``data`` itself and a newline
        (a message that holds newlines spans several lines then: use
        ``--json`` for exact framing).
    """
    try:
        value = json.loads(data.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError is a ValueError too
        return data + b"\n"
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


class StdinLines:
    """
    Standard input, one line at a time, for the reactor thread.

    A daemon thread reads a line only when :meth:`read_line` asks for one,
    so that a server slow to grant credit stops the reading too (at most
    one line is read ahead), and a terminal or a pipe that never ends
    cannot keep the process from exiting.  It works for regular files,
    which a reactor cannot watch.

    :param reactor: the reactor to deliver lines in (``callFromThread``).
    :param stream: the binary stream to read (``sys.stdin.buffer``).
    """

    def __init__(self, reactor: Any, stream: BinaryIO) -> None:
        self._reactor = reactor
        self._stream = stream
        self._asked = threading.Semaphore(0)
        self._waiting: Deferred[bytes] | None = None
        self._thread: threading.Thread | None = None

    def read_line(self) -> Deferred[bytes]:
        """
        :returns: a Deferred firing with the next line, its newline
            included, or ``b""`` at the end of the input.
        """
        assert self._waiting is None, "one line at a time"
        self._waiting = d = Deferred[bytes]()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="reqresp-stdin", daemon=True)
            self._thread.start()
        self._asked.release()
        return d

    def _run(self) -> None:
        while True:
            self._asked.acquire()
            try:
                line = self._stream.readline()
            except (OSError, ValueError):  # a closed or unreadable stdin ends the stream
                line = b""
            self._reactor.callFromThread(self._deliver, line)
            if not line:
                return

    def _deliver(self, line: bytes) -> None:
        d, self._waiting = self._waiting, None
        assert d is not None
        d.callback(line)


def _stream_message(line: bytes, number: int, *, raw: bool) -> bytes | None:
    """
    :returns: the message to send for line ``number`` of standard input
        (without its line ending): its bytes with ``raw``, else its JSON,
        compact; ``None`` for a blank line, which is skipped unless ``raw``.
    :raises CommandError: with :data:`EXIT_USAGE` if the line is not JSON.
    """
    if line.endswith(b"\n"):
        line = line[:-1].removesuffix(b"\r")
    if raw:
        return line
    if not line.strip():
        return None
    try:
        value = json.loads(line.decode("utf-8"))
    except ValueError as e:
        raise CommandError(
            f"line {number} of standard input is not valid JSON ({e}); use --raw to send "
            "lines as they are",
            EXIT_USAGE,
        ) from e
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@inlineCallbacks
def _send_lines(
    call: Any, read_line: Callable[[], Deferred[bytes]], *, raw: bool
) -> Generator[Deferred[Any], Any, None]:
    """Send each line ``read_line`` gives as a message on ``call``, then end its stream."""
    number = 0
    while True:
        line = yield read_line()
        if not line:
            break
        number += 1
        message = _stream_message(line, number, raw=raw)
        if message is not None:
            # send() waits for room: a server that grants no credit stops
            # the reading of standard input too, so nothing piles up here.
            yield call.send(message)
    call.end()


@inlineCallbacks
def run_stream(
    client: Client | Channel,
    method: str,
    body: bytes = b"",
    *,
    out: BinaryIO,
    err: TextIO,
    kind: str = "server_stream",
    read_line: Callable[[], Deferred[bytes]] | None = None,
    raw: bool = False,
    timeout: float | None = DEFAULT_TIMEOUT,
    metadata: Sequence[tuple[str, str]] = (),
    json_output: bool = False,
    clock: IReactorTime | None = None,
) -> Generator[Deferred[Any], Any, int]:
    """
    Make a streaming call to ``method``: write each of the server's
    messages to ``out`` as it arrives (see :func:`stream_line`), then the
    final answer's body if it is not empty (as ``call`` prints it), and
    ``OK`` to ``err``.

    :param client: a connected client, or a channel (:meth:`Channel.stream
        <twisted_reqresp.Channel.stream>`: one backend, never retried once
        sent).
    :param method: the method name.
    :param body: the request body's bytes.
    :param out: where the messages and the final body go (binary).
    :param err: where ``OK`` goes once the final status is OK (text); an
        error status is the :class:`CommandError` the Deferred fails with.
    :param kind: ``"server_stream"``, ``"client_stream"`` or
        ``"bidi_stream"``.
    :param read_line: for ``client_stream`` and ``bidi_stream``: returns a
        Deferred firing with the next line to send, ``b""`` at the end
        (:meth:`StdinLines.read_line`).
    :param raw: send each line as it is (without its line ending), instead
        of checking it is JSON and sending it compact (blank lines are then
        skipped).
    :param timeout: seconds the whole call may take (``None``: no limit).
    :param metadata: the request's metadata pairs.
    :param json_output: write one JSON object per message (``message``
        and ``body_format``, as :func:`json_body` puts them), then one for
        the final status, as ``call --json`` does, with ``messages``, the
        number of messages received.
    :param clock: measures ``elapsed_ms`` (the monotonic clock if omitted).
    :returns: a Deferred firing with :data:`EXIT_OK`, or failing with
        :class:`CommandError` (see :func:`explain`), after the messages that
        came before the error were written.
    """
    now = clock.seconds if clock is not None else time.monotonic
    started = now()
    sends = kind in ("client_stream", "bidi_stream")
    if sends and read_line is None:
        raise CommandError(f"a {kind} call needs lines to send", EXIT_USAGE)
    call = client.stream(method, body, kind=kind, timeout=timeout, metadata=metadata)
    sending: Deferred[None] | None = None
    received = 0
    try:
        if sends:
            assert read_line is not None
            sending = _send_lines(call, read_line, raw=raw)
            # A bad line cancels the call at once; its error is reported.
            sending.addErrback(_cancel_on, call)
        if kind in ("server_stream", "bidi_stream"):
            while True:
                message = yield call.read()
                if message is None:
                    break
                received += 1
                if json_output:
                    value, body_format = json_body(message)
                    _write_json(out, {"message": value, "body_format": body_format})
                else:
                    out.write(stream_line(message))
                    out.flush()
        reply = yield call.result()
        if sending is not None:
            yield sending
    except Exception as e:
        if isinstance(e, CancelledError) and sending is not None and sending.called:
            # The call was cancelled because a line was bad: say so.
            failure = sending.result
            if isinstance(failure, Failure) and isinstance(failure.value, CommandError):
                sending.addErrback(lambda _: None)
                raise failure.value from e
        if (
            isinstance(e, StatusError)
            and not isinstance(e, RemoteError)
            and e.code == StatusCode.UNIMPLEMENTED
        ):
            # Refused on this side because the server's SETTINGS did not
            # offer streaming: the server's doing, not the command line's.
            raise CommandError(
                f"{e.message} (an older server, or one started with --stream-credit 0)",
                EXIT_REMOTE,
            ) from e
        if json_output and isinstance(e, RemoteError) and e.code != StatusCode.DEADLINE_EXCEEDED:
            _json_error(out, e, round((now() - started) * 1000, 3), messages=received)
        raise explain(e, timeout=timeout) from e
    finally:
        if sending is not None and not sending.called:
            sending.cancel()
        if sending is not None:
            sending.addErrback(lambda _: None)
    elapsed_ms = round((now() - started) * 1000, 3)
    if json_output:
        _json_ok(out, reply, elapsed_ms, messages=received)
        return EXIT_OK
    if reply.body:
        text = format_body(reply.body)
        if not text.endswith(b"\n"):
            text += b"\n"
        out.write(text)
        out.flush()
    err.write("OK\n")
    err.flush()
    return EXIT_OK


def _cancel_on(failure: Failure, call: Any) -> Failure:
    call.cancel()
    return failure


@inlineCallbacks
def run_methods(
    client: Client | Channel, *, out: BinaryIO, timeout: float | None = DEFAULT_TIMEOUT
) -> Generator[Deferred[Any], Any, int]:
    """
    Call the built-in ``reqresp.methods`` and write one method name per
    line to ``out``, in the order of the answer.  A server that answers it
    NOT_FOUND (its built-in methods are off) is asked its own ``methods``,
    which must answer a JSON list of names (the default service's does).

    :param client: a connected client.
    :param out: where the names go (binary).
    :param timeout: seconds to wait for each answer.
    :returns: a Deferred firing with :data:`EXIT_OK`, or failing with
        :class:`CommandError`, with :data:`EXIT_REMOTE` as well when the
        answer is not what the method promises.
    """
    try:
        reply = yield client.call("reqresp.methods", None, codec=JSON, timeout=timeout)
    except RemoteError as e:
        if e.code != StatusCode.NOT_FOUND:
            raise explain(e, timeout=timeout) from e
        reply = None
    except Exception as e:
        raise explain(e, timeout=timeout) from e
    if reply is not None:
        names = _method_names(reply.body)
        if names is None:
            raise CommandError(
                "the answer to 'reqresp.methods' is not a JSON object listing named methods",
                EXIT_REMOTE,
            )
    else:
        try:
            reply = yield client.call("methods", None, codec=JSON, timeout=timeout)
        except Exception as e:
            raise explain(e, timeout=timeout) from e
        names = reply.body
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise CommandError("the answer to 'methods' is not a JSON list of names", EXIT_REMOTE)
    out.write("".join(f"{name}\n" for name in names).encode("utf-8"))
    out.flush()
    return EXIT_OK


def _method_names(answer: Any) -> list[str] | None:
    """:returns: the names in a ``reqresp.methods`` answer, or ``None`` if it is malformed."""
    methods = answer.get("methods") if isinstance(answer, dict) else None
    if not isinstance(methods, list):
        return None
    names = [item.get("name") if isinstance(item, dict) else None for item in methods]
    if not all(isinstance(name, str) for name in names):
        return None
    return names  # type: ignore[return-value]


@inlineCallbacks
def run_health(
    client: Client, service: str = "", *, out: BinaryIO, timeout: float | None = DEFAULT_TIMEOUT
) -> Generator[Deferred[Any], Any, int]:
    """
    Call the built-in ``reqresp.health`` and write the status to ``out``.

    :param client: a connected client.
    :param service: the service to ask about; the whole server if empty.
    :param out: where the status goes (binary), with a newline.
    :param timeout: seconds to wait for the answer.
    :returns: a Deferred firing with :data:`EXIT_OK` if the status is
        ``SERVING``, :data:`EXIT_REMOTE` for any other (``NOT_SERVING``,
        ``DRAINING``), or failing with :class:`CommandError` (an unknown
        service is the server's NOT_FOUND, :data:`EXIT_REMOTE`).
    """
    try:
        reply = yield client.call("reqresp.health", service.encode("utf-8"), timeout=timeout)
    except Exception as e:
        raise explain(e, timeout=timeout) from e
    status: bytes = reply.body
    out.write(status + b"\n")
    out.flush()
    return EXIT_OK if status == b"SERVING" else EXIT_REMOTE


@inlineCallbacks
def run_ping(
    client: Client,
    clock: IReactorTime,
    *,
    out: BinaryIO,
    endpoint: str,
    count: int = 1,
    timeout: float | None = DEFAULT_TIMEOUT,
    interval: float = PING_INTERVAL,
) -> Generator[Deferred[Any], Any, int]:
    """
    Send ``count`` PING frames, ``interval`` seconds apart, and write one
    line per pong: ``pong from ENDPOINT: time=0.21 ms``.

    :param client: a connected client.
    :param clock: times the pauses between pings and the timeouts.
    :param out: where the lines go (binary).
    :param endpoint: the server's name in the lines.
    :param count: how many pings.
    :param timeout: seconds to wait for each pong.
    :param interval: seconds between two pings.
    :returns: a Deferred firing with :data:`EXIT_OK` once every pong came
        back, or failing with :class:`CommandError` at the first that did not.
    """
    for n in range(count):
        if n:
            yield deferLater(clock, interval, lambda: None)
        pinging = client.ping()
        if timeout is not None:
            pinging.addTimeout(timeout, clock)
        try:
            seconds = yield pinging
        except Exception as e:
            raise explain(e, timeout=timeout) from e
        out.write(f"pong from {endpoint}: time={seconds * 1000:.2f} ms\n".encode())
        out.flush()
    return EXIT_OK


@inlineCallbacks
def run_bench(
    reactor: Any,
    first: Client,
    args: argparse.Namespace,
    body: bytes,
    *,
    out: BinaryIO,
    connector: Callable[..., Deferred[Client]] = connect,
    progress_to: Any = None,
) -> Generator[Deferred[Any], Any, int]:
    """
    Open the other connections, run :func:`~twisted_reqresp._app.bench.bench`,
    and write its report.

    :param reactor: connects the other clients and times the run.
    :param first: the client already connected.
    :param args: ``connections``, ``depth``, ``duration``, ``method``,
        ``connect`` and ``timeout``.
    :param body: the request body.
    :param out: where the report goes (binary).
    :param connector: :func:`twisted_reqresp.connect`, or a stand-in in tests.
    :param progress_to: a text stream for the live progress line
        (standard error when it is a terminal, else none).
    :returns: a Deferred firing with :data:`EXIT_OK`, or failing with
        :class:`CommandError` when no call succeeded.
    """
    clients = [first]
    try:
        for _ in range(args.connections - 1):
            connecting = connector(reactor, args.connect[0], timeout=args.timeout)
            if args.timeout is not None:
                connecting.addTimeout(args.timeout, reactor, onTimeoutCancel=_timed_out)
            try:
                clients.append((yield connecting))
            except Exception as e:
                raise explain(e, timeout=args.timeout, endpoint=args.connect[0]) from e
        report = yield _bench_and_report(reactor, clients, args, body, out, progress_to)
        if report.requests == 0 and report.first_error is not None:
            raise explain(report.first_error, timeout=args.timeout, endpoint=args.connect[0])
    finally:
        for client in clients[1:]:
            client.abort()
    return EXIT_OK


@inlineCallbacks
def _bench_and_report(
    reactor: Any,
    clients: Sequence[Client | Channel],
    args: argparse.Namespace,
    body: bytes,
    out: BinaryIO,
    progress_to: Any,
    channel: Channel | None = None,
) -> Generator[Deferred[Any], Any, BenchReport]:
    if progress_to is None and sys.stderr.isatty():
        progress_to = sys.stderr

    def progress(elapsed: float, report: BenchReport) -> None:
        if progress_to is not None:
            rate = report.requests / elapsed if elapsed > 0 else 0.0
            errors = sum(report.errors.values())
            progress_to.write(
                f"\r[{elapsed:5.1f} s] {report.requests:,} calls, "
                f"{rate:,.0f} req/s, {errors:,} errors   "
            )
            progress_to.flush()

    before = {info.endpoint: info.succeeded for info in channel.backends} if channel else {}
    report: BenchReport = yield bench(
        clients,
        args.method,
        body,
        depth=args.depth,
        duration=args.duration,
        clock=reactor,
        timeout=args.timeout,
        progress=progress,
    )
    if channel is not None:
        count_backends(channel, before, report)
    if progress_to is not None:
        progress_to.write("\n")
    out.write(format_report(report).encode())
    out.flush()
    return report


# -- several endpoints ---------------------------------------------------------------


def new_channel(reactor: Any, endpoints: Sequence[str], *, timeout: float | None) -> Channel:
    """
    :returns: the :class:`~twisted_reqresp.Channel` that ``reqresp`` uses
        over several endpoints: the library's defaults (calls that are
        retry-safe are sent again, nothing else: the command cannot know
        which methods are idempotent), with ``--timeout`` as every call's.
    """
    return Channel(reactor, list(endpoints), timeout=timeout)


@inlineCallbacks
def _when_ready(
    channel: Channel, clock: IReactorTime, timeout: float | None
) -> Generator[Deferred[Any], Any, None]:
    """Wait for a ready backend, at most ``timeout`` seconds, or fail with
    :data:`EXIT_CONNECTION` and the channel's own account of why not."""
    ready = channel.when_ready()
    if timeout is not None:
        ready.addTimeout(timeout, clock)
    try:
        yield ready
    except (DeferTimeout, CancelledError):
        why = channel.why_not_ready()
        raise CommandError(
            f"no server became ready within {timeout:g} s: {why}", EXIT_CONNECTION
        ) from None


@inlineCallbacks
def _settle(
    channel: Channel, clock: IReactorTime, most: float
) -> Generator[Deferred[Any], Any, None]:
    """Give the other backends up to ``most`` seconds to become ready."""
    waited = 0.0
    step = 0.05
    while waited < most and any(info.state == "connecting" for info in channel.backends):
        yield deferLater(clock, step, lambda: None)
        waited += step


@inlineCallbacks
def run_channel(
    reactor: Any,
    channel: Channel,
    args: argparse.Namespace,
    body: bytes,
    *,
    out: BinaryIO,
    progress_to: Any = None,
) -> Generator[Deferred[Any], Any, int]:
    """
    Run ``call``, ``stream``, ``methods`` or ``bench`` over a channel: wait for a ready
    backend (at most ``--timeout``), then run the command through the
    channel, which balances the calls and resends the retry-safe ones.

    :param reactor: the clock for the waits and the bench run.
    :param channel: the channel over the endpoints (see :func:`new_channel`).
    :param args: what :func:`build_parser` parsed.
    :param body: the request body (``call`` and ``bench``).
    :param out: where the output goes (binary).  ``bench`` adds a line
        ``backends`` with the calls answered by each backend.
    :param progress_to: as for ``run_bench``.
    :returns: a Deferred firing with the exit status, or failing with
        :class:`CommandError`.
    """
    timeout: float | None = args.timeout
    yield _when_ready(channel, reactor, timeout)
    if args.command == "call":
        code = yield run_call(
            channel,
            args.method,
            body,
            out=out,
            timeout=timeout,
            metadata=args.metadata,
            json_output=args.json,
            verbose=sys.stderr if args.verbose else None,
            clock=reactor,
        )
    elif args.command == "stream":
        code = yield _run_stream_command(reactor, channel, args, body, out)
    elif args.command == "methods":
        code = yield run_methods(channel, out=out, timeout=timeout)
    else:
        most = BENCH_SETTLE_TIME if timeout is None else min(timeout, BENCH_SETTLE_TIME)
        yield _settle(channel, reactor, most)
        workers = [channel] * args.connections
        report = yield _bench_and_report(reactor, workers, args, body, out, progress_to, channel)
        if report.requests == 0 and report.first_error is not None:
            raise explain(report.first_error, timeout=timeout)
        code = EXIT_OK
    return int(code)


def _run_stream_command(
    reactor: Any, client: Client | Channel, args: argparse.Namespace, body: bytes, out: BinaryIO
) -> Deferred[int]:
    """``reqresp stream``, with standard input as the client's stream."""
    lines = StdinLines(reactor, sys.stdin.buffer) if args.kind != "server_stream" else None
    return run_stream(
        client,
        args.method,
        body,
        out=out,
        err=sys.stderr,
        kind=args.kind,
        read_line=lines.read_line if lines is not None else None,
        raw=args.raw,
        timeout=args.timeout,
        metadata=args.metadata,
        json_output=args.json,
        clock=reactor,
    )


@inlineCallbacks
def _health_of(
    reactor: Any,
    endpoint: str,
    service: str,
    timeout: float | None,
    connector: Callable[..., Deferred[Client]],
) -> Generator[Deferred[Any], Any, tuple[int, str]]:
    """:returns: one server's health exit status and what to print for it."""
    try:
        connecting = connector(reactor, endpoint, timeout=timeout)
    except (ValueError, TypeError, KeyError) as e:
        return EXIT_USAGE, f"invalid endpoint: {e}"
    if timeout is not None:
        connecting.addTimeout(timeout, reactor, onTimeoutCancel=_timed_out)
    try:
        client = yield connecting
    except Exception as e:
        error = explain(e, timeout=timeout)
        return error.code, error.message
    buffer = io.BytesIO()
    try:
        code = yield run_health(client, service, out=buffer, timeout=timeout)
        text = buffer.getvalue().decode("utf-8", "replace").strip()
    except CommandError as e:
        code, text = e.code, e.message
    finally:
        yield _close(client, reactor)
    return code, text


@inlineCallbacks
def run_health_each(
    reactor: Any,
    endpoints: Sequence[str],
    service: str = "",
    *,
    out: BinaryIO,
    timeout: float | None = DEFAULT_TIMEOUT,
    connector: Callable[..., Deferred[Client]] = connect,
) -> Generator[Deferred[Any], Any, int]:
    """
    Ask each server for its health at once, each over its own connection
    (not through a channel: the point is each server's own answer), and
    write one line per server, in the order given: ``ENDPOINT STATUS``, or
    ``ENDPOINT`` and why it could not say.

    :returns: a Deferred firing with :data:`EXIT_OK` when every server is
        ``SERVING``, else the status of the first server (in the order
        given) that is not, as ``health`` over one server would exit.
    """
    results = yield gatherResults(
        [_health_of(reactor, e, service, timeout, connector) for e in endpoints]
    )
    status = EXIT_OK
    for endpoint, (code, text) in zip(endpoints, results, strict=True):
        out.write(f"{endpoint} {text}\n".encode())
        if status == EXIT_OK:
            status = code
    out.flush()
    return status


def _close(client: Client, reactor: Any) -> Deferred[Any]:
    closing = client.close()
    closing.addTimeout(CLOSE_TIMEOUT, reactor)
    # The outcome is known; a close that fails or hangs must not change it.
    closing.addErrback(lambda _: client.abort())
    return closing


# -- errors ---------------------------------------------------------------------------------


def explain(error: BaseException, *, timeout: float | None, endpoint: str = "") -> CommandError:
    """
    Turn what a connection or a call failed with into a one-line message and
    an exit status.

    :param error: the exception.
    :param timeout: the timeout in force, for the message.
    :param endpoint: the server's endpoint string, for connection messages.
    :returns: the :class:`CommandError` to report.
    """
    where = f": {endpoint}" if endpoint else ""
    if isinstance(error, CommandError):
        return error
    if isinstance(error, (DeadlineExceeded, DeferTimeout, CancelledError)) or (
        # The server's copy of the deadline may fire just before ours.
        isinstance(error, RemoteError) and error.code == StatusCode.DEADLINE_EXCEEDED
    ):
        after = f" after {timeout:g} s" if timeout is not None else ""
        said = ""
        if isinstance(error, StatusError) and error.message.endswith("(at the server)"):
            # The server's copy of the deadline fired first, perhaps raised
            # by the responder itself with a reason: keep the reason (the
            # server's own "deadline exceeded" says nothing more than we do,
            # and which copy fires first is a race).
            reason = error.message.removesuffix(" (at the server)")
            if reason != "deadline exceeded":
                said = f": the server said: {reason}"
        return CommandError(f"timed out{after}{said}", EXIT_TIMEOUT)
    if isinstance(error, LocalProtocolError):
        # This side refused to send it (a body over the server's limit):
        # the caller's to fix, not the server's.
        return CommandError(error.message, EXIT_USAGE)
    if isinstance(error, ierror.ConnectionRefusedError):
        return CommandError(f"connection refused{where}", EXIT_CONNECTION)
    if isinstance(error, ConnectionClosed):
        return CommandError(f"connection lost{where}: {error.message}", EXIT_CONNECTION)
    if isinstance(error, StatusError) and not isinstance(error, RemoteError):
        # Raised on this side, before anything was sent (a body over the
        # server's maximum frame size, a PING the wire format lacks): the
        # caller's to fix, so not the remote-error status.
        return CommandError(f"request not sent: {error}", EXIT_USAGE)
    if isinstance(error, StatusError):
        return CommandError(str(error), EXIT_REMOTE)
    if isinstance(error, (ierror.ConnectError, ierror.ConnectionLost, ierror.ConnectionDone)):
        detail = str(error).strip().rstrip(".")
        return CommandError(f"cannot connect{where}: {detail}", EXIT_CONNECTION)
    if isinstance(error, OSError):
        return CommandError(f"cannot connect{where}: {error.strerror or error}", EXIT_CONNECTION)
    return CommandError(f"unexpected error: {type(error).__name__}: {error}", EXIT_REMOTE)


def _timed_out(result: Any, timeout: float) -> Any:
    # Called only when the timeout fired.  Cancelling an endpoint's connect
    # fails with ConnectingCancelledError, not CancelledError, which
    # addTimeout's default would pass through unconverted.
    if isinstance(result, Failure):
        raise DeferTimeout(f"timed out after {timeout:g} s")
    return result


# -- running ---------------------------------------------------------------------------------


@inlineCallbacks
def run(
    reactor: Any,
    args: argparse.Namespace,
    *,
    out: BinaryIO,
    connector: Callable[..., Deferred[Client]] = connect,
    channel_factory: Callable[..., Channel] = new_channel,
) -> Generator[Deferred[Any], Any, int]:
    """
    Connect as ``args`` says, run its command, and close.

    With one endpoint the command talks to that server over one
    connection, as it always has: no retries or reconnections hide what the
    server does, and a refusal is reported at once.  With several, see
    :func:`run_channel` and :func:`run_health_each`.

    :param reactor: the reactor to connect with (also the clock).
    :param args: what :func:`build_parser` parsed.
    :param out: where the command's output goes (binary).
    :param connector: :func:`twisted_reqresp.connect`, or a stand-in in tests.
    :param channel_factory: :func:`new_channel`, or a stand-in in tests.
    :returns: a Deferred firing with :data:`EXIT_OK` or failing with
        :class:`CommandError`.
    """
    body = b""
    if args.command in ("call", "stream"):
        # Checked before connecting: a typo should not wait for a server.
        body = encode_body(args.body, raw=args.raw)
    elif args.command == "bench":
        if args.size < 0:
            raise CommandError("--size must be 0 or more", EXIT_USAGE)
        body = b"x" * args.size if args.body is None else encode_body(args.body, raw=args.raw)
    endpoints: list[str] = args.connect
    timeout: float | None = args.timeout
    if len(endpoints) > 1:
        if args.command == "ping":
            raise CommandError(
                "ping measures one connection: give one --connect, not several", EXIT_USAGE
            )
        if args.command == "health":
            code = yield run_health_each(
                reactor, endpoints, args.service, out=out, timeout=timeout, connector=connector
            )
            return int(code)
        try:
            channel = channel_factory(reactor, endpoints, timeout=timeout)
        except (ValueError, TypeError, KeyError) as e:
            # The channel's message names the endpoint at fault.
            raise CommandError(str(e), EXIT_USAGE) from e
        try:
            code = yield run_channel(reactor, channel, args, body, out=out)
        finally:
            closing = channel.close()
            closing.addTimeout(CLOSE_TIMEOUT, reactor)
            closing.addErrback(lambda _: None)
            yield closing
        return int(code)
    endpoint = endpoints[0]
    try:
        connecting = connector(reactor, endpoint, timeout=timeout)
    except (ValueError, TypeError, KeyError) as e:
        raise CommandError(f"invalid endpoint {endpoint!r}: {e}", EXIT_USAGE) from e
    if timeout is not None:
        connecting.addTimeout(timeout, reactor, onTimeoutCancel=_timed_out)
    try:
        client = yield connecting
    except Exception as e:
        raise explain(e, timeout=timeout, endpoint=endpoint) from e
    try:
        if args.command == "call":
            code = yield run_call(
                client,
                args.method,
                body,
                out=out,
                timeout=timeout,
                metadata=args.metadata,
                json_output=args.json,
                verbose=sys.stderr if args.verbose else None,
                clock=reactor,
            )
        elif args.command == "stream":
            code = yield _run_stream_command(reactor, client, args, body, out)
        elif args.command == "methods":
            code = yield run_methods(client, out=out, timeout=timeout)
        elif args.command == "health":
            code = yield run_health(client, args.service, out=out, timeout=timeout)
        elif args.command == "bench":
            code = yield run_bench(reactor, client, args, body, out=out, connector=connector)
        else:
            code = yield run_ping(
                client, reactor, out=out, endpoint=endpoint, count=args.count, timeout=timeout
            )
    finally:
        yield _close(client, reactor)
    return int(code)


def endpoints_from_env(value: str) -> list[str]:
    """
    :param value: the value of :data:`ENDPOINT_ENV`: one endpoint string, or
        several separated by commas (an environment variable cannot be
        repeated as ``--connect`` can).  Blanks around each are dropped.
    :returns: the endpoint strings, none empty.
    """
    return [item.strip() for item in value.split(",") if item.strip()]


class _EndpointsParser(argparse.ArgumentParser):
    """The top-level parser: ``connect`` is the list of endpoints given
    before and after COMMAND, or the default ones when none was."""

    def __init__(self, endpoints: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.default_endpoints = list(endpoints)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, rest = super().parse_known_args(args, namespace)
        given = (getattr(parsed, "connect", None) or []) + vars(parsed).pop("connect_after", [])
        parsed.connect = given or list(self.default_endpoints)
        return parsed, rest


class _IntermixedParser(argparse.ArgumentParser):
    """A subcommand parser that lets options come between METHOD and BODY
    (``reqresp call echo --raw text``): plain argparse binds the optional
    BODY as empty as soon as it meets the option."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        # parse_known_intermixed_args calls parse_known_args itself.
        if getattr(self, "_intermixing", False):
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def main(argv: Sequence[str] | None = None) -> int:
    """
    The ``reqresp`` console script.

    :param argv: the arguments after the program name (``sys.argv[1:]`` if
        omitted).
    :returns: the exit status (see the module's exit-status constants).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error argparse already printed
        return int(e.code or 0)
    status = 0
    interrupted = False

    def _main(reactor: Any) -> Deferred[None]:
        def on_interrupt(signum: int, frame: object) -> None:
            # In place of Twisted's SIGINT handler, which stops the reactor
            # silently: a person who pressed Ctrl-C is told, and a script
            # sees 130 as from any command a shell interrupts.
            nonlocal status, interrupted
            if not interrupted:
                interrupted = True
                status = EXIT_INTERRUPTED
                sys.stderr.write("reqresp: interrupted\n")
                sys.stderr.flush()
                reactor.callFromThread(reactor.stop)

        # After startup: Twisted installs its own handlers during it.
        reactor.callWhenRunning(signal.signal, signal.SIGINT, on_interrupt)
        d = run(reactor, args, out=sys.stdout.buffer)

        def report(code: int) -> None:
            nonlocal status
            if not interrupted:
                status = code

        def fail(failure: Failure) -> None:
            nonlocal status
            if interrupted:
                return  # the connection's loss as the reactor stops: no news
            error = failure.value
            assert error is not None
            if not isinstance(error, CommandError):
                error = explain(error, timeout=args.timeout, endpoint=",".join(args.connect))
            sys.stderr.write(f"reqresp: {error.message}\n")
            sys.stderr.flush()
            status = error.code

        return d.addCallbacks(report, fail)

    try:
        react(_main)
    except SystemExit as e:
        # react always exits; the status is what run decided.
        if e.code not in (0, None) and not interrupted:
            return int(e.code) if isinstance(e.code, int) else 1
    except KeyboardInterrupt:
        # Ctrl-C before the reactor's handler is in place.
        sys.stderr.write("reqresp: interrupted\n")
        return EXIT_INTERRUPTED
    return status
