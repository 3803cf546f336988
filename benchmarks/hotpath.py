"""
The servers' own Python cost per request, without sockets: each server
protocol is connected to a ``StringTransport`` and fed pre-encoded batches
of requests through ``dataReceived``, in this one process.

    python benchmarks/hotpath.py
    python benchmarks/hotpath.py --batch 1 --servers binary,ceiling
    python benchmarks/hotpath.py --servers binary,binary-py   # compiled and pure Python

No kernel, no reactor, no scheduling between two processes: what remains is
the per-request work of each implementation (plus Twisted's
``dataReceived`` plumbing and the transport's write buffer), so the numbers
are far steadier than ``run.py``'s on a busy machine.  Use it to see what an
optimisation of the hot path buys; use ``run.py`` for what it means end to
end.  Each number is the best of ``--repeat`` timings.  ``binary-py`` is
``binary`` with the compiled modules switched off
(``TWISTED_REQRESP_NO_EXTENSIONS=1``), measured in a child process since a
process imports one or the other.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import json
import subprocess

from _common import ALL_SERVERS, LABELS, hot_path, line_format_available, server_env, table
from _loadgen import WIRES
from _protocols import CeilingEcho, EchoAMP
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport

_ADDR = IPv4Address("TCP", "127.0.0.1", 40000)


def build(kind: str) -> Protocol:
    """A connected server protocol of ``kind``, handshake done."""
    if kind in ("binary", "line"):
        from twisted_reqresp import Router, ServerFactory

        router = Router()
        router.add("echo", lambda call: call.body)
        wire = None
        if kind == "line":
            from twisted_reqresp._core.line import LineFormat

            wire = LineFormat()
        factory: Any = ServerFactory(router, wire=wire, clock=MemoryReactorClock())
        protocol = factory.buildProtocol(_ADDR)
    elif kind == "amp":
        protocol = EchoAMP()
    else:
        protocol = CeilingEcho()
    protocol.makeConnection(StringTransport(peerAddress=_ADDR, hostAddress=_ADDR))
    return protocol


def measure(kind: str, batch: int, size: int, requests: int, repeat: int) -> float:
    """:returns: the best time per request, in microseconds."""
    protocol = build(kind)
    transport = protocol.transport
    assert isinstance(transport, StringTransport)
    wire = WIRES[kind](b"x" * size)
    hello = wire.handshake()
    if hello:
        protocol.dataReceived(hello)
    transport.clear()
    batches = max(1, requests // batch)
    # Fresh request ids every time: ours refuses an id it has already seen.
    data = [[wire.requests(batch, 0.0) for _ in range(batches)] for _ in range(repeat)]
    best = float("inf")
    gc.collect()
    for chunks in data:
        t0 = time.perf_counter()
        for chunk in chunks:
            protocol.dataReceived(chunk)
            transport.clear()
        best = min(best, time.perf_counter() - t0)
    # One more batch, checked: a wrong echo would make the numbers meaningless.
    protocol.dataReceived(wire.requests(batch, 0.0))
    if wire.feed(transport.value(), 0.0, None) != batch or wire.errors:
        raise SystemExit(f"{kind}: the answers are not the expected echoes")
    return best / (batches * batch) * 1e6


def _measure_pure(args: argparse.Namespace) -> dict[tuple[int, int], float]:
    """``binary`` measured in a child process with the compiled path off."""
    argv = [sys.executable, __file__, "--servers", "binary", "--emit-json"]
    for name in ("batch", "size", "requests", "repeat"):
        argv += [f"--{name}", str(getattr(args, name))]
    out = subprocess.run(
        argv, env=server_env("binary-py"), capture_output=True, text=True, check=True
    )
    return {(b, s): v for b, s, v in json.loads(out.stdout.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Per-request Python cost, without sockets.")
    parser.add_argument("--servers", default=",".join(ALL_SERVERS))
    parser.add_argument("--batch", default="1,64", help="requests per dataReceived, e.g. 1,64")
    parser.add_argument("--size", default="64,16384", help="body sizes in bytes")
    parser.add_argument("--requests", type=int, default=20_000, help="per timing")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--emit-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    kinds = [k for k in args.servers.split(",") if k]
    for k in kinds:
        if k not in ALL_SERVERS:
            raise SystemExit(f"unknown server {k!r}")
    if "line" in kinds and not line_format_available():
        kinds.remove("line")
    batches = [int(b) for b in args.batch.split(",") if b]
    sizes = [int(s) for s in args.size.split(",") if s]
    columns = [(b, s) for s in sizes for b in batches]
    rows = []
    results: dict[str, dict[tuple[int, int], float]] = {}
    for kind in kinds:
        if kind == "binary-py":
            results[kind] = _measure_pure(args)
        else:
            results[kind] = {}
            for b, s in columns:
                requests = args.requests if s <= 1024 else max(b, args.requests // 10)
                results[kind][(b, s)] = measure(kind, b, s, requests, args.repeat)
        if args.emit_json:
            print(json.dumps([[b, s, v] for (b, s), v in results[kind].items()]))
            return 0
        rows.append([LABELS[kind]] + [f"{results[kind][c]:.2f}" for c in columns])
    header = ["server"] + [f"batch {b}, {s:,} B" for b, s in columns]
    print("Microseconds of Python per request, in process, no sockets (best of "
          f"{args.repeat}):")  # fmt: skip
    print(table(rows, header))
    for kind in ("binary", "binary-py"):
        if kind in kinds:
            print(f"{LABELS[kind]}: hot path {hot_path(pure=kind == 'binary-py')}")
    if "binary" in results and "ceiling" in results:
        print(
            "ours/ceiling cost: "
            + ", ".join(
                f"{b}x{s:,} B {results['binary'][(b, s)] / results['ceiling'][(b, s)]:.1f}x"
                for b, s in columns
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
