"""
End to end, client library included: our client (``connect`` and
``Client.call``) against our binary server, beside AMP's own client
(``callRemote``) against the AMP server.

    python benchmarks/client_bench.py            # 3 repetitions of 0.5 s + 3 s
    python benchmarks/client_bench.py --quick
    python benchmarks/client_bench.py --clients ours,channel --no-batch --count-writes

Both clients run in this process, on Twisted's default reactor, pinned to
the second CPU; the servers run in their own processes on the first.  Each
in-flight slot is a closed loop: when a call's Deferred fires, the slot
makes the next call.  Here the client is usually the bottleneck, which is
the point: it measures what a Twisted application calling us gets.

``channel`` is the same closed loop through a :class:`Channel` (one channel
over one connection per "connection" of the case).  ``--no-batch`` turns off
the client's batching (what one read's callbacks send goes out in two
writes: the first at once, the rest at the end of the read) for a
before/after; ``--count-writes`` counts the client's writes
(about one ``send()`` each) per completed call.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (
    LABELS,
    ServerProcess,
    cpu_seconds,
    cpus,
    fmt_num,
    fmt_spread,
    machine_busy_seconds,
    machine_info,
    percentile,
    pin_self,
    raise_nofile,
    spread,
    stop_all,
    table,
)
from _protocols import Echo
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater, react
from twisted.protocols import amp

#: name -> (connections, calls in flight per connection); 64-byte bodies.
CASES: dict[str, tuple[int, int]] = {
    "1x1": (1, 1),
    "1x64": (1, 64),
    "32x16": (32, 16),
    # Not run by default: the closed loops of issue 12's client profile.
    "1x16": (1, 16),
}
DEFAULT_CASES = ("1x1", "1x64", "32x16")
BODY = b"x" * 64
#: client name -> the server kind it talks to.
CLIENTS = {"ours": "binary", "channel": "binary", "amp": "amp"}
CLIENT_LABELS = {
    "ours": "ours: Client.call",
    "channel": "ours: Channel.call",
    "amp": "AMP: callRemote",
}
#: With --count-writes: our client's transport writes so far.
WRITES = [0]


class ClosedLoop:
    """
    ``slots`` independent loops of calls made by ``issue``; measures the
    calls that complete between ``warmup`` and ``warmup + duration``.
    """

    def __init__(
        self,
        reactor: Any,
        issues: list[Callable[[], Deferred[Any]]],
        warmup: float,
        duration: float,
        server_pid: int,
    ) -> None:
        self.reactor = reactor
        self.issues = issues
        self.warmup = warmup
        self.duration = duration
        self.server_pid = server_pid
        self.measuring = False
        self.stopping = False
        self.completed = 0
        self.errors = 0
        self.first_error: str | None = None
        self.outstanding = 0
        self.latencies: list[float] = []
        self.finished: Deferred[dict[str, Any]] = Deferred()

    def start(self) -> Deferred[dict[str, Any]]:
        for issue in self.issues:
            self._launch(issue)
        self.reactor.callLater(self.warmup, self._begin)
        return self.finished

    def _launch(self, issue: Callable[[], Deferred[Any]]) -> None:
        self.outstanding += 1
        t0 = time.perf_counter()
        d = issue()
        d.addCallbacks(self._ok, self._bad, callbackArgs=(issue, t0), errbackArgs=(issue, t0))

    def _ok(self, result: Any, issue: Callable[[], Deferred[Any]], t0: float) -> None:
        if self.measuring:
            self.latencies.append(time.perf_counter() - t0)
            self.completed += 1
        self._next(issue)

    def _bad(self, failure: Any, issue: Callable[[], Deferred[Any]], t0: float) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = failure.getErrorMessage()
        self._next(issue)

    def _next(self, issue: Callable[[], Deferred[Any]]) -> None:
        self.outstanding -= 1
        if not self.stopping:
            self._launch(issue)
        elif self.outstanding == 0 and not self.finished.called:
            self.finished.callback(self.result)

    def _begin(self) -> None:
        self.measuring = True
        self.t0 = time.perf_counter()
        self.cpu0 = time.process_time()
        self.writes0 = WRITES[0]
        self.server_cpu0 = cpu_seconds(self.server_pid)
        self.busy0 = machine_busy_seconds()
        self.reactor.callLater(self.duration, self._end)

    def _end(self) -> None:
        seconds = time.perf_counter() - self.t0
        cpu = time.process_time() - self.cpu0
        server_cpu = cpu_seconds(self.server_pid) - self.server_cpu0
        other = max(0.0, machine_busy_seconds() - self.busy0 - cpu - server_cpu)
        self.measuring = False
        self.stopping = True
        lat = sorted(self.latencies)
        n = self.completed
        self.result = {
            "requests": n,
            "seconds": round(seconds, 4),
            "rps": n / seconds,
            "p50_ms": percentile(lat, 0.5) * 1000,
            "p99_ms": percentile(lat, 0.99) * 1000,
            "client_cpu_pct": 100 * cpu / seconds,
            "client_us_per_req": 1e6 * cpu / n if n else None,
            "server_cpu_pct": 100 * server_cpu / seconds,
            "server_us_per_req": 1e6 * server_cpu / n if n else None,
            "other_cpu_pct": 100 * other / seconds,
            "errors": self.errors,
            "first_error": self.first_error,
            "writes_per_call": (WRITES[0] - self.writes0) / n if n and COUNT_WRITES else None,
        }
        if self.outstanding == 0:
            self.finished.callback(self.result)


async def run_ours(
    reactor: Any, server: ServerProcess, conns: int, window: int, warmup: float, duration: float
) -> dict[str, Any]:
    from twisted_reqresp import connect

    clients = await gatherResults(
        [connect(reactor, f"tcp:127.0.0.1:{server.port}") for _ in range(conns)]
    )
    if NODELAY:
        for c in clients:
            c.protocol.transport.setTcpNoDelay(True)
    try:
        issues = [(lambda c=c: c.call("echo", BODY)) for c in clients for _ in range(window)]
        loop = ClosedLoop(reactor, issues, warmup, duration, server.pid)
        return await _bounded(reactor, loop.start(), warmup + duration + 30)
    finally:
        await gatherResults([_bounded(reactor, c.close(), 10, None) for c in clients])


async def run_channel(
    reactor: Any, server: ServerProcess, conns: int, window: int, warmup: float, duration: float
) -> dict[str, Any]:
    from twisted_reqresp import Channel

    channels = [Channel(reactor, [f"tcp:127.0.0.1:{server.port}"]) for _ in range(conns)]
    await gatherResults([c.when_ready() for c in channels])
    try:
        issues = [(lambda c=c: c.call("echo", BODY)) for c in channels for _ in range(window)]
        loop = ClosedLoop(reactor, issues, warmup, duration, server.pid)
        return await _bounded(reactor, loop.start(), warmup + duration + 30)
    finally:
        await gatherResults([_bounded(reactor, c.close(), 10, None) for c in channels])


async def run_amp(
    reactor: Any, server: ServerProcess, conns: int, window: int, warmup: float, duration: float
) -> dict[str, Any]:
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", server.port)
    protocols = await gatherResults([connectProtocol(endpoint, amp.AMP()) for _ in range(conns)])
    if NODELAY:
        for p in protocols:
            p.transport.setTcpNoDelay(True)
    try:
        issues = [
            (lambda p=p: p.callRemote(Echo, body=BODY)) for p in protocols for _ in range(window)
        ]
        loop = ClosedLoop(reactor, issues, warmup, duration, server.pid)
        return await _bounded(reactor, loop.start(), warmup + duration + 30)
    finally:
        for p in protocols:
            p.transport.loseConnection()
        await deferLater(reactor, 0.1, lambda: None)


def _bounded(reactor: Any, d: Deferred[Any], seconds: float, default: Any = ...) -> Deferred[Any]:
    """``d``, failing with TimeoutError after ``seconds`` (or firing ``default``)."""
    d.addTimeout(seconds, reactor)
    if default is not ...:
        d.addErrback(lambda _: default)
    return d


RUNNERS = {"ours": run_ours, "channel": run_channel, "amp": run_amp}
#: Set from --nodelay: both ends set TCP_NODELAY (Twisted leaves Nagle on).
NODELAY = False
#: Set from --count-writes.
COUNT_WRITES = False


def _count_writes() -> None:
    """Count every write our client makes to its transport."""
    from twisted_reqresp._adapters.lifecycle import TransportLifecycle

    write = TransportLifecycle.write

    def counting(self: Any, data: bytes) -> None:
        WRITES[0] += 1
        write(self, data)

    TransportLifecycle.write = counting  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Our client library against AMP's, end to end.")
    parser.add_argument("--quick", action="store_true", help="1 repetition, 0.25 s + 1 s per run")
    parser.add_argument("--repeat", type=int, default=None, help="repetitions (default 3)")
    parser.add_argument("--duration", type=float, default=None, help="measured seconds (3)")
    parser.add_argument("--warmup", type=float, default=None, help="unmeasured seconds first (0.5)")
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES), help=f"from {', '.join(CASES)}")
    parser.add_argument("--clients", default="ours,amp", help="from ours, channel, amp")
    parser.add_argument(
        "--no-batch", action="store_true",
        help="our client writes each call at once, even from a read's callbacks (before/after)",
    )  # fmt: skip
    parser.add_argument(
        "--count-writes", action="store_true", help="count our client's writes per call"
    )
    parser.add_argument("--json", default=None, help="write every measurement here")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument(
        "--nodelay", action="store_true",
        help="set TCP_NODELAY on both ends (Twisted, and so both libraries, leave Nagle on)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    global NODELAY, COUNT_WRITES
    NODELAY = args.nodelay
    COUNT_WRITES = args.count_writes
    if args.no_batch:
        from twisted_reqresp._adapters.client_protocol import ClientProtocol

        ClientProtocol._batch_reads = False
    if COUNT_WRITES:
        _count_writes()
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    duration = args.duration if args.duration is not None else (1.0 if args.quick else 3.0)
    warmup = args.warmup if args.warmup is not None else (0.25 if args.quick else 0.5)
    cases = [c for c in args.cases.split(",") if c]
    clients = [c for c in args.clients.split(",") if c]
    for c in cases:
        if c not in CASES:
            raise SystemExit(f"unknown case {c!r}")
    for c in clients:
        if c not in CLIENTS:
            raise SystemExit(f"unknown client {c!r}")

    server_cpu, load_cpu = (None, None) if args.no_pin else cpus()
    raise_nofile()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        case: {c: [] for c in clients} for case in cases
    }
    servers: dict[str, ServerProcess] = {}
    try:
        for c in clients:
            kind = CLIENTS[c]
            extra = ["--nodelay"] if args.nodelay else []
            servers[kind] = ServerProcess(kind, cpu=server_cpu, extra=extra).start()
        pinned = pin_self(load_cpu)

        async def body(reactor: Any) -> None:
            for rep in range(repeat):
                for case in cases:
                    conns, window = CASES[case]
                    for c in clients:
                        server = servers[CLIENTS[c]]
                        r = await RUNNERS[c](reactor, server, conns, window, warmup, duration)
                        results[case][c].append(r)
                        print(
                            f"rep {rep + 1}/{repeat} {case:<6} {CLIENT_LABELS[c]:<18} "
                            f"{r['rps']:>9,.0f} calls/s  p50 {r['p50_ms']:.3f} ms  "
                            f"p99 {r['p99_ms']:.3f} ms  client CPU {r['client_cpu_pct']:.0f}%  "
                            f"server CPU {r['server_cpu_pct']:.0f}%  "
                            f"others {r['other_cpu_pct']:.0f}%"
                            + (
                                f"  writes/call {r['writes_per_call']:.3f}"
                                if r.get("writes_per_call") is not None
                                else ""
                            )
                            + (
                                f"  ERRORS {r['errors']}: {r['first_error']}" if r["errors"] else ""
                            ),
                            file=sys.stderr,
                        )
                        await deferLater(reactor, 0.1, lambda: None)

        try:
            react(lambda reactor: Deferred.fromCoroutine(body(reactor)))
        except SystemExit as e:
            if e.code:
                raise
    finally:
        stop_all(list(servers.values()))
    for server in servers.values():
        server.cleanup_log()

    where = f"servers on CPU {server_cpu}, clients on CPU {load_cpu}" if pinned else "not pinned"
    print(
        f"\nEnd to end with the client libraries, 64 B bodies: median [min-max] of {repeat} "
        f"run(s) of {duration:g} s after {warmup:g} s; {where}."
    )
    print(
        "client/server CPU: share of one core; us/call: CPU microseconds per completed call;\n"
        "others: the most CPU other processes used during a run (high: distrust the row).\n"
    )
    summary: dict[str, Any] = {}
    for case in cases:
        conns, window = CASES[case]
        print(f"{case}: {conns} connection(s) x {window} call(s) in flight")
        rows = []
        summary[case] = {}
        for c in clients:
            runs = results[case][c]
            s = {
                m: spread([r[m] for r in runs if r[m] is not None])
                for m in (
                    "rps",
                    "p50_ms",
                    "p99_ms",
                    "client_cpu_pct",
                    "client_us_per_req",
                    "server_cpu_pct",
                    "server_us_per_req",
                    "other_cpu_pct",
                )
            }
            summary[case][c] = s
            rows.append(
                [
                    f"{CLIENT_LABELS[c]} -> {LABELS[CLIENTS[c]]}",
                    fmt_spread(s["rps"]),
                    fmt_spread(s["p50_ms"], 3),
                    fmt_spread(s["p99_ms"], 3),
                    fmt_num(s["client_cpu_pct"]["median"]) + "%",
                    fmt_num(s["client_us_per_req"]["median"], 1),
                    fmt_num(s["server_cpu_pct"]["median"]) + "%",
                    fmt_num(s["server_us_per_req"]["median"], 1),
                    fmt_num(s["other_cpu_pct"]["max"]) + "%",
                ]
            )
        header = ["client", "calls/s", "p50 ms", "p99 ms", "cli CPU", "cli us/call"]
        print(table(rows, [*header, "srv CPU", "srv us/call", "others"]))
        if "ours" in summary[case] and "amp" in summary[case]:
            ratio = summary[case]["ours"]["rps"]["median"] / summary[case]["amp"]["rps"]["median"]
            summary[case]["ours/AMP"] = ratio
            print(f"ours/AMP: {ratio:.2f}x")
        print()
    if args.json:
        data = {
            "machine": machine_info(),
            "settings": {"repeat": repeat, "duration": duration, "warmup": warmup},
            "results": results,
            "summary": summary,
        }
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    bad = sum(r["errors"] for c in results.values() for k in c.values() for r in k)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
