"""
The client's own Python cost per call, without sockets: our
:class:`Client` and :class:`Channel` and AMP's ``callRemote``, each on a ``StringTransport``,
run ``window`` closed loops (each answer's callback makes the next call)
fed pre-encoded answers, ``window`` of them per ``dataReceived``, in this
one process.

    python benchmarks/client_hotpath.py
    python benchmarks/client_hotpath.py --window 1,64 --profile ours

No kernel, no reactor, no server: what remains is each client's work per
call (encode, id, Deferred, timeout, match the answer, fire the callback),
so the numbers are far steadier than ``client_bench.py``'s on a busy
machine.  Each number is the best of ``--repeat`` timings of CPU time (the
process's, so that another process on the same CPU counts less).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import table
from _protocols import Echo
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols import amp

BODY = b"x" * 64


def _ours(window: int, rounds: int, timeout: float | None) -> Callable[[], int]:
    """:returns: a function running ``rounds`` reads of ``window`` answers on a new client."""
    from twisted_reqresp import BINARY, Client, Limits
    from twisted_reqresp._adapters.client_protocol import ClientProtocol
    from twisted_reqresp.wire import Connection, Role

    clock = _clock(timeout)
    protocol = ClientProtocol(wire=BINARY, limits=Limits(), clock=clock)
    transport = StringTransport()
    protocol.makeConnection(transport)
    server = Connection(Role.SERVER, BINARY, Limits())
    server.receive_data(transport.value())
    while server.next_event() is not None:
        pass
    transport.clear()
    protocol.dataReceived(server.data_to_send())
    client = Client(protocol, timeout=timeout)
    # The answers to ids 1.. in reads of ``window``: the ids a closed loop uses.
    reads = []
    for r in range(rounds):
        first = 1 + r * window
        reads.append(
            b"".join(
                server._codec.encode_response(rid, BODY) for rid in range(first, first + window)
            )
        )
    return _loop(lambda: client.call("echo", BODY), protocol.dataReceived, transport, reads, window)


def _clock(timeout: float | None) -> Any:
    """:returns: the clock for timeouts: the reactor's own heap of timers (never run, so
    none fires) when calls have one, as in production; else a test clock."""
    if timeout is None:
        return MemoryReactorClock()
    from twisted.internet import reactor

    return reactor


class _Endpoint:
    """An endpoint that connects at once to a ``StringTransport``."""

    def __init__(self) -> None:
        self.transport = StringTransport()
        self.protocol: Any = None

    def connect(self, factory: Any) -> Any:
        from twisted.internet.address import IPv4Address
        from twisted.internet.defer import succeed

        self.protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 9000))
        self.protocol.makeConnection(self.transport)
        return succeed(self.protocol)


def _channel(window: int, rounds: int, timeout: float | None) -> Callable[[], int]:
    """As :func:`_ours`, through a :class:`Channel` over one connection."""
    from twisted_reqresp import BINARY, Channel, Limits
    from twisted_reqresp.wire import Connection, Role

    clock = _clock(timeout)
    endpoint = _Endpoint()
    channel = Channel(None, [endpoint], clock=clock, health_check_interval=None, timeout=timeout)
    transport = endpoint.transport
    server = Connection(Role.SERVER, BINARY, Limits())
    server.receive_data(transport.value())
    while server.next_event() is not None:
        pass
    transport.clear()
    endpoint.protocol.dataReceived(server.data_to_send())
    assert channel.backends[0].state == "ready", channel.backends
    reads = []
    for r in range(rounds):
        first = 1 + r * window
        reads.append(
            b"".join(
                server._codec.encode_response(rid, BODY) for rid in range(first, first + window)
            )
        )
    return _loop(
        lambda: channel.call("echo", BODY), endpoint.protocol.dataReceived, transport, reads, window
    )


def _amp(window: int, rounds: int, timeout: float | None) -> Callable[[], int]:
    """As :func:`_ours`, for AMP's ``callRemote``."""
    protocol = amp.AMP()
    transport = StringTransport()
    protocol.makeConnection(transport)
    reads = []
    for r in range(rounds):
        first = 1 + r * window
        reads.append(
            b"".join(
                amp.AmpBox({b"_answer": b"%x" % tag, b"body": BODY}).serialize()
                for tag in range(first, first + window)
            )
        )
    issue = lambda: protocol.callRemote(Echo, body=BODY)  # noqa: E731
    return _loop(issue, protocol.dataReceived, transport, reads, window)


def _loop(
    issue: Callable[[], Any],
    feed: Callable[[bytes], None],
    transport: StringTransport,
    reads: list[bytes],
    window: int,
) -> Callable[[], int]:
    done = [0]

    def again(result: Any) -> None:
        done[0] += 1
        issue().addCallback(again)

    def run() -> int:
        for _ in range(window):
            issue().addCallback(again)
        for data in reads:
            feed(data)
            transport.clear()
        assert done[0] == len(reads) * window, done
        return done[0]

    return run


CLIENTS = {"ours": _ours, "channel": _channel, "amp": _amp}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", default="1,16,64", help="calls in flight (comma-separated)")
    parser.add_argument("--clients", default="ours,channel,amp")
    parser.add_argument("--calls", type=int, default=64 * 400, help="calls per timing")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--timeout", type=float, default=None,
        help="a timeout on every call (timers on the reactor, which is never run)",
    )  # fmt: skip
    parser.add_argument("--profile", default=None, help="profile this client (window: the last)")
    args = parser.parse_args(argv)
    windows = [int(w) for w in args.window.split(",")]
    clients = args.clients.split(",")
    if args.profile:
        window = windows[-1]
        run = CLIENTS[args.profile](window, args.calls // window, args.timeout)
        prof = cProfile.Profile()
        prof.runcall(run)
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return 0
    rows = []
    for window in windows:
        best = {}
        for name in clients:
            times = []
            for _ in range(args.repeat):
                run = CLIENTS[name](window, args.calls // window, args.timeout)
                gc.collect()
                t0 = time.process_time()
                run()
                times.append(time.process_time() - t0)
            best[name] = min(times) * 1e6 / (args.calls // window * window)
        row = [str(window)] + [f"{best[n]:.2f}" for n in clients]
        if "ours" in best and "amp" in best:
            row.append(f"{best['amp'] / best['ours']:.2f}x")
        rows.append(row)
    header = ["window"] + [f"{n} us/call" for n in clients]
    if "ours" in clients and "amp" in clients:
        header.append("AMP/ours")
    print(
        f"Client CPU per call, in process (best of {args.repeat} runs of {args.calls} calls,"
        f" timeout={args.timeout}):"
    )
    print(table(rows, header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
