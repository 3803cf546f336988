"""
Soak: a large number of mixed calls through our client library against a
real server process, watching the server's memory.

    python benchmarks/soak.py                        # 1,000,000 calls
    python benchmarks/soak.py --requests 50000       # a short one

The server is ours (binary format, the ``echo`` router of the other
benchmarks, plus ``sleep`` and ``stats`` methods) in its own process.  This
process keeps ``--connections`` connections with ``--window`` calls in
flight each, and draws every call from this mix (``--seed`` fixes it):

====  ===========================================================  ==========
 %    call                                                          expected
====  ===========================================================  ==========
 80   ``echo`` with a body of 0-1024 bytes                          same body
  8   an unknown method                                             NOT_FOUND
  4   ``sleep`` 50 ms with a 5 ms timeout                           timeout [1]_
  4   ``sleep`` 50 ms, cancelled with ``d.cancel()`` after 0-2 ms   cancelled
  4   ``sleep`` 1 ms with a 5 s timeout                             success
====  ===========================================================  ==========

.. [1] DeadlineExceeded, from the client's timer or from the server's
   DEADLINE_EXCEEDED answer when its copy of the deadline fires first (the
   client raises the same exception for both).

Connections come and go: each one makes a random number of calls (about
``--calls-per-connection``) and then closes in order, or, one time in five,
is aborted with calls in flight (those fail with ConnectionClosed, as
expected).  Server RSS is read at the start, after a warm-up (5% of the
calls), every ``--report-every`` seconds, and at the end once every
connection is closed; the server's own counters (connections open,
responders running, requests in flight) must be back to zero at the end.
Exits 1 on any unexpected outcome or leftover server state.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import ServerProcess, cpus, pin_self, raise_nofile
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater, react

from twisted_reqresp import (
    ConnectionClosed,
    DeadlineExceeded,
    RemoteError,
    StatusCode,
    connect,
)

#: (weight, kind): see the module docstring.
MIX = [(80, "echo"), (8, "unknown"), (4, "timeout"), (4, "cancel"), (4, "slow")]
#: kind -> the outcomes that are right for it.  ("server_deadline", a
#: RemoteError with DEADLINE_EXCEEDED, is what clients before the deadline
#: race was unified reported; it is still accepted so old results compare.)
EXPECTED = {
    "echo": {"ok"},
    "unknown": {"not_found"},
    "timeout": {"timed_out", "server_deadline"},
    "cancel": {"cancelled"},
    "slow": {"ok"},
}


class Soak:
    def __init__(self, reactor: Any, server: ServerProcess, args: argparse.Namespace) -> None:
        self.reactor = reactor
        self.server = server
        self.args = args
        self.rng = random.Random(args.seed)
        self.bodies = [self.rng.randbytes(self.rng.randint(0, 1024)) for _ in range(256)]
        kinds: list[str] = []
        for weight, kind in MIX:
            kinds += [kind] * weight
        self.kinds = kinds
        self.issued = 0
        self.finished = 0
        self.outcomes: Counter[str] = Counter()
        self.unexpected: Counter[str] = Counter()
        self.examples: list[str] = []
        self.connections = 0
        self.aborts = 0
        self.stopping = False
        self.rss: list[tuple[float, int, int]] = []  # (seconds, calls done, KiB)
        self.started = time.monotonic()
        self.warm_rss: int | None = None
        self.warm_at = max(1, args.requests // 20)
        self.baseline: Deferred[str] | None = None

    def want_more(self) -> bool:
        return not self.stopping and self.issued < self.args.requests

    async def worker(self) -> None:
        endpoint = f"tcp:127.0.0.1:{self.server.port}"
        while self.want_more():
            client = await connect(self.reactor, endpoint)
            self.connections += 1
            quota = self.rng.randint(
                self.args.calls_per_connection // 2, self.args.calls_per_connection * 3 // 2
            )
            abort_at = self.rng.randint(1, quota) if self.rng.random() < 0.2 else None
            await Connection(self, client, quota, abort_at).run()

    def record(self, kind: str, outcome: str, detail: str = "") -> None:
        self.finished += 1
        if outcome in EXPECTED[kind] or outcome == "aborted":
            self.outcomes[outcome] += 1
        else:
            key = f"{kind}->{outcome}"
            self.unexpected[key] += 1
            if len(self.examples) < 10:
                self.examples.append(f"{key}: {detail}")
        if self.warm_rss is None and self.finished >= self.warm_at:
            self.warm_rss = self.server.rss_kib()
            self.sample()
            if self.args.tracemalloc:
                self.baseline = Deferred.fromCoroutine(memtop(self.reactor, self.server.port))

    def sample(self) -> None:
        self.rss.append(
            (round(time.monotonic() - self.started, 1), self.finished, self.server.rss_kib())
        )

    def progress(self) -> None:
        self.sample()
        t, done, rss = self.rss[-1]
        rate = done / t if t else 0.0
        print(
            f"{t:7.1f} s  {done:>10,} calls ({rate:,.0f}/s)  {self.connections:,} connections  "
            f"server RSS {rss:,} KiB  unexpected {sum(self.unexpected.values())}",
            file=sys.stderr,
        )
        if t > self.args.max_seconds and not self.stopping:
            print("time limit reached: stopping early", file=sys.stderr)
            self.stopping = True


class Connection:
    """One client connection's share of the soak: ``quota`` calls, ``window`` at a time."""

    def __init__(self, soak: Soak, client: Any, quota: int, abort_at: int | None) -> None:
        self.soak = soak
        self.client = client
        self.quota = quota
        self.abort_at = abort_at
        self.issued = 0
        self.outstanding = 0
        self.aborted = False
        self.filling = False
        self.done: Deferred[None] = Deferred()

    async def run(self) -> None:
        self.fill()
        if self.outstanding:
            await self.done
        if not self.aborted:
            await self.client.close()

    def fill(self) -> None:
        if self.filling:
            return  # a call that failed at once: the outer loop goes on
        self.filling = True
        try:
            soak = self.soak
            while (
                self.outstanding < soak.args.window
                and self.issued < self.quota
                and not self.aborted
                and soak.want_more()
            ):
                self.issue()
                if self.abort_at is not None and self.issued >= self.abort_at:
                    self.aborted = True
                    soak.aborts += 1
                    self.client.abort()
        finally:
            self.filling = False
        if self.outstanding == 0 and not self.done.called:
            self.done.callback(None)

    def issue(self) -> None:
        soak = self.soak
        rng = soak.rng
        kind = rng.choice(soak.kinds)
        client = self.client
        expect: bytes | None = None
        if kind == "echo":
            body = rng.choice(soak.bodies)
            d = client.call("echo", body)
            expect = body
        elif kind == "unknown":
            d = client.call("no-such-method", b"?")
        elif kind == "timeout":
            d = client.call("sleep", b"50", timeout=0.005)
        elif kind == "cancel":
            d = client.call("sleep", b"50")
            soak.reactor.callLater(rng.random() * 0.002, d.cancel)
        else:
            d = client.call("sleep", b"1", timeout=5.0)
            expect = b"slept"
        self.issued += 1
        soak.issued += 1
        self.outstanding += 1
        d.addCallbacks(self.ok, self.failed, callbackArgs=(kind, expect), errbackArgs=(kind,))

    def ok(self, reply: Any, kind: str, expect: bytes | None) -> None:
        if reply.body == expect:
            self.soak.record(kind, "ok")
        else:
            self.soak.record(kind, "wrong_body", repr(reply.body[:40]))
        self.completed()

    def failed(self, failure: Any, kind: str) -> None:
        error = failure.value
        if isinstance(error, DeadlineExceeded):
            outcome = "timed_out"
        elif isinstance(error, CancelledError):
            outcome = "cancelled"
        elif isinstance(error, ConnectionClosed):
            outcome = "aborted" if self.aborted else "connection_closed"
        elif isinstance(error, RemoteError) and error.code == StatusCode.NOT_FOUND:
            outcome = "not_found"
        elif isinstance(error, RemoteError) and error.code == StatusCode.DEADLINE_EXCEEDED:
            outcome = "server_deadline"
        else:
            outcome = type(error).__name__
        self.soak.record(kind, outcome, failure.getErrorMessage())
        self.completed()

    def completed(self) -> None:
        self.outstanding -= 1
        self.fill()


async def server_stats(reactor: Any, port: int) -> dict[str, Any]:
    return json.loads(await _call(reactor, port, "stats"))


async def memtop(reactor: Any, port: int) -> str:
    return (await _call(reactor, port, "memtop", 120.0)).decode()


async def _call(reactor: Any, port: int, method: str, timeout: float = 10.0) -> bytes:
    client = await connect(reactor, f"tcp:127.0.0.1:{port}", timeout=timeout)
    try:
        reply = await client.call(method)
        return reply.body
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Soak our server through our client library.")
    parser.add_argument("--requests", type=int, default=1_000_000, help="calls in all")
    parser.add_argument("--connections", type=int, default=8, help="connections at once")
    parser.add_argument("--window", type=int, default=16, help="calls in flight per connection")
    parser.add_argument("--calls-per-connection", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="stop early after")
    parser.add_argument("--report-every", type=float, default=10.0)
    parser.add_argument("--json", default=None)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument(
        "--tracemalloc", action="store_true",
        help="trace the server's allocations (slow) and print the lines that grew since warm-up",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.requests < 1 or args.connections < 1 or args.window < 1:
        raise SystemExit("--requests, --connections and --window must be positive")
    if args.calls_per_connection < 2:
        raise SystemExit("--calls-per-connection must be at least 2")

    raise_nofile()
    server_cpu, load_cpu = (None, None) if args.no_pin else cpus()
    extra = ["--soak", "--tracemalloc"] if args.tracemalloc else ["--soak"]
    server = ServerProcess("binary", cpu=server_cpu, extra=extra)
    report: dict[str, Any] = {}
    server.start()
    try:
        pin_self(load_cpu)
        report["rss_start_kib"] = server.rss_kib()

        async def body(reactor: Any) -> None:
            soak = Soak(reactor, server, args)
            soak.sample()
            ticker = _every(reactor, args.report_every, soak.progress)
            workers = [Deferred.fromCoroutine(soak.worker()) for _ in range(args.connections)]
            for w in workers:
                await w
            ticker.stop()
            await deferLater(reactor, 1.0, lambda: None)
            stats = await server_stats(reactor, server.port)
            if soak.baseline is not None:
                await soak.baseline
                report["memtop"] = await memtop(reactor, server.port)
            await deferLater(reactor, 0.5, lambda: None)
            soak.sample()
            elapsed = time.monotonic() - soak.started
            report.update(
                {
                    "requests": soak.finished,
                    "seconds": round(elapsed, 1),
                    "rate": soak.finished / elapsed,
                    "connections": soak.connections,
                    "aborted_connections": soak.aborts,
                    "outcomes": dict(soak.outcomes),
                    "unexpected": dict(soak.unexpected),
                    "examples": soak.examples,
                    "rss_warm_kib": soak.warm_rss,
                    "rss_end_kib": server.rss_kib(),
                    "rss_samples": soak.rss,
                    "server_stats": stats,
                    "stopped_early": soak.stopping,
                }
            )

        try:
            react(lambda reactor: Deferred.fromCoroutine(body(reactor)))
        except SystemExit as e:
            if e.code:
                raise
    finally:
        server.stop()
    if not report.get("requests"):
        print(server.log_tail(), file=sys.stderr)
        return 1
    log = server.log_tail()

    stats = report["server_stats"]
    leftovers = {
        # The stats call's own connection is the one left open.
        "connections": stats["connections"] - 1,
        "protocols_alive": stats["protocols_alive"] - 1,
        "running": stats["running"],
        "in_flight": stats["in_flight"] - 1,
    }
    report["leftovers"] = leftovers
    growth = report["rss_end_kib"] - (report["rss_warm_kib"] or report["rss_start_kib"])
    print()
    print(
        f"{report['requests']:,} calls in {report['seconds']:,} s ({report['rate']:,.0f}/s) over "
        f"{report['connections']:,} connections ({report['aborted_connections']:,} aborted)"
    )
    print("outcomes: " + ", ".join(f"{k} {v:,}" for k, v in sorted(report["outcomes"].items())))
    print(f"unexpected: {report['unexpected'] or 'none'}")
    for example in report["examples"]:
        print(f"  e.g. {example}")
    print(
        f"server RSS: start {report['rss_start_kib']:,} KiB, after warm-up "
        f"{report['rss_warm_kib'] or 0:,} KiB, end {report['rss_end_kib']:,} KiB "
        f"(growth since warm-up {growth:+,} KiB)"
    )
    print(
        "server state at the end (beyond the stats call): "
        + ", ".join(f"{k} {v}" for k, v in leftovers.items())
    )
    print(f"server counters: {stats}")
    if report.get("memtop"):
        print(f"server allocations grown since warm-up (tracemalloc):\n{report['memtop']}")
    if log.strip():
        print(f"server log (tail):\n{log}")
    if report["stopped_early"]:
        print("STOPPED EARLY at the time limit")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    server.cleanup_log()
    bad = bool(report["unexpected"]) or any(leftovers.values())
    return 1 if bad else 0


def _every(reactor: Any, seconds: float, f: Any) -> Any:
    from twisted.internet.task import LoopingCall

    loop = LoopingCall(f)
    loop.clock = reactor
    loop.start(seconds, now=False)
    return loop


if __name__ == "__main__":
    sys.exit(main())
