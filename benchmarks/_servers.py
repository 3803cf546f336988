"""
One benchmark server in its own process: ``python benchmarks/_servers.py KIND``.

Kinds:

``binary``
    ours: :class:`twisted_reqresp.ServerFactory` with the binary wire format
    and a :class:`~twisted_reqresp.Router` whose ``echo`` returns
    ``call.body``, the path the default service takes (through the router).
    With ``--streams``, the router adds ``firehose`` (server streaming: the body is a
    size in bytes; messages of that size, for ever, until the client
    cancels) and ``payload`` (unary: answers that many bytes), for
    ``stream.py``.
``line``
    the same factory and router with the line wire format.
``amp``
    Twisted AMP with an ``Echo`` command of one ``String`` argument and one
    ``String`` answer.
``ceiling``
    the least a Twisted protocol can do: parse 4-byte-length-prefixed frames
    in ``dataReceived`` and write each one back.  No request/response layer
    can beat it on the same reactor, so it is the ceiling.

The server listens on 127.0.0.1, port 0, and prints ``PORT <n>`` on one line
of stdout once it listens.  It stops on SIGTERM, when its parent process
goes away, or after ``--max-seconds``, so that a crashed harness never leaves
it behind.  ``--profile FILE`` runs the reactor under cProfile and writes the
stats to FILE on the way out.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import socket
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _protocols import CeilingEcho, EchoAMP
from twisted.internet import reactor as _reactor
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

reactor: Any = _reactor


def _binary_factory(kind: str, args: argparse.Namespace) -> Factory:
    from twisted_reqresp import DEFAULT_LIMITS, Router, ServerFactory
    from twisted_reqresp._adapters.server import ServerProtocol

    router = Router()
    router.add("echo", lambda call: call.body)
    factory: Any = None
    if args.soak:
        # Slow calls for timeouts and cancellations, and the server's own
        # view of itself for the soak's final checks.
        def sleep(call: Any) -> Any:
            ms = int(call.body or b"0")
            return deferLater(reactor, ms / 1000.0, lambda: b"slept")

        def stats(call: Any) -> bytes:
            # Closed connections may wait in reference cycles for the
            # collector: collect first, so that what is counted is alive.
            data = factory.stats.as_dict()
            data["gc_unreachable"] = gc.collect()
            data["protocols_alive"] = sum(
                1 for o in gc.get_objects() if isinstance(o, ServerProtocol)
            )
            data["connections"] = len(factory.connections)
            data["running"] = sum(len(p.running) for p in factory.connections)
            data["in_flight"] = sum(len(p.conn.in_flight) for p in factory.connections)
            data["rss_kib"] = _rss_kib()
            return json.dumps(data).encode()

        baseline: list[Any] = []

        def memtop(call: Any) -> bytes:
            # The first call takes the baseline snapshot; later ones answer
            # the 15 source lines whose live allocations grew most since.
            import tracemalloc

            gc.collect()
            if not tracemalloc.is_tracing():
                return b"tracemalloc is off (start the server with --tracemalloc)"
            snapshot = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)]
            )
            if not baseline:
                baseline.append(snapshot)
                return b"baseline taken"
            diff = snapshot.compare_to(baseline[0], "lineno")[:15]
            return "\n".join(str(d) for d in diff).encode()

        router.add("sleep", sleep)
        router.add("stats", stats)
        router.add("memtop", memtop)
    limits = DEFAULT_LIMITS
    if args.no_conn_limit:
        from dataclasses import replace

        limits = replace(DEFAULT_LIMITS, max_connections=None)
    if args.streams:
        # Streaming calls are on by default (64 KiB of credit per call).
        payloads: dict[bytes, bytes] = {}

        def payload_of(body: bytes) -> bytes:
            # One bytes object per size: the benchmark measures the
            # protocol, not the making of payloads.
            if body not in payloads:
                payloads[body] = b"x" * int(body)
            return payloads[body]

        async def firehose(call: Any) -> Any:
            message = payload_of(call.body)
            while True:
                yield message

        router.add("firehose", firehose, kind="server_stream")
        router.add("payload", lambda call: payload_of(call.body))
    wire = None
    if kind == "line":
        from twisted_reqresp._core.line import LineFormat

        wire = LineFormat()
    factory = ServerFactory(router, wire=wire, limits=limits, clock=reactor)
    return factory


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def build_factory(kind: str, args: argparse.Namespace) -> Factory:
    if kind in ("binary", "line"):
        return _binary_factory(kind, args)
    if kind == "amp":
        return Factory.forProtocol(EchoAMP)
    if kind == "ceiling":
        return Factory.forProtocol(CeilingEcho)
    raise SystemExit(f"unknown server kind {kind!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("binary", "line", "amp", "ceiling"))
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    parser.add_argument("--profile", default=None, help="write cProfile stats here")
    parser.add_argument("--parent", type=int, default=None, help="stop when this pid is gone")
    parser.add_argument("--max-seconds", type=float, default=3 * 3600)
    parser.add_argument("--backlog", type=int, default=1024)
    parser.add_argument("--no-conn-limit", action="store_true", help="max_connections=None")
    parser.add_argument(
        "--soak", action="store_true", help="add the soak's sleep, stats and memtop methods"
    )
    parser.add_argument("--tracemalloc", action="store_true", help="trace allocations (slow)")
    parser.add_argument(
        "--streams", action="store_true",
        help="offer streaming calls; add firehose (server streaming) and payload (unary)",
    )  # fmt: skip
    parser.add_argument(
        "--nodelay", action="store_true",
        help="set TCP_NODELAY on the listening socket (accepted sockets inherit it on Linux)",
    )  # fmt: skip
    args = parser.parse_args()

    if args.cpu is not None:
        try:
            os.sched_setaffinity(0, {args.cpu})
        except OSError as e:
            print(f"could not pin to CPU {args.cpu}: {e}", file=sys.stderr)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # Warnings and errors only, to stderr (a file the harness gave us):
    # left alone, the logging system would buffer every event in memory.
    globalLogBeginner.beginLoggingTo(
        [
            FilteringLogObserver(
                textFileLogObserver(sys.stderr),
                [LogLevelFilterPredicate(LogLevel.warn)],
            )
        ],
        redirectStandardIO=False,
    )

    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start(1)
    factory = build_factory(args.kind, args)
    factory.noisy = False
    port = reactor.listenTCP(0, factory, backlog=args.backlog, interface="127.0.0.1")
    if args.nodelay:
        port.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    if args.parent is not None:

        def orphaned() -> None:
            if os.getppid() != args.parent:
                reactor.stop()

        LoopingCall(orphaned).start(1.0, now=False)
    reactor.callLater(args.max_seconds, reactor.stop)

    sys.stdout.write(f"PORT {port.getHost().port}\n")
    sys.stdout.flush()

    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            reactor.run()
        finally:
            profiler.disable()
            profiler.dump_stats(args.profile)
    else:
        reactor.run()


if __name__ == "__main__":
    main()
