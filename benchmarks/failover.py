"""
Failover: a :class:`~twisted_reqresp.Channel` over three real ``twistd -n
reqresp`` backends under a steady load of ``echo`` calls, while one backend
is killed (SIGKILL) and later restarted on its port, and another is stopped
(SIGTERM, so it drains).  It prints the throughput as a timeline of 250 ms
buckets, the dip (the worst bucket after the kill against the median
bucket before it), what happened to every call, the channel's own
counters, and the CPU the load generator used.

    python benchmarks/failover.py [--callers N] [--scale X] [--reconnect-max S] [--json FILE]

The scenario (:func:`run_scenario`) is also what
``tests/test_e2e_failover.py`` runs, with assertions instead of a report.

The timeline, in seconds after the load starts (times ``--scale``):

- ``kill_at``: SIGKILL backend A.  The calls it had in flight are lost: the
  client cannot know whether A ran them, and ``echo`` is not declared
  idempotent, so they fail with ``ConnectionClosed`` ("connection lost
  before the answer", not retry-safe).  Nothing else may fail.  So that
  "what A had in flight" is an exact bound, the scenario counts it, waits
  (blocking, about a millisecond) until A's process is gone, and holds the
  callers' next calls until the channel has seen the loss (``hold_ms``,
  well under a millisecond): a call sent to a dead backend before its
  client notices is lost the same way, which is correct but would make the
  count a race.
- ``term_at``: SIGTERM backend B.  It sends GOAWAY, finishes what it
  accepted and exits; calls it refused are retry-safe and go elsewhere.
- ``restart_at``: A is started again on the same port; the channel's
  reconnection backoff finds it.
- the load runs ``after_restart`` more seconds once the channel has A
  ready again (``recovered_at``), then stops making calls and waits
  (bounded) for the ones in flight.

Each of ``callers`` callers is a closed loop: when its call fires, it makes
the next one.  A call that fails is followed by the next one 10 ms later,
so that a channel failing calls at once cannot spin the loop.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from _common import TwistdProcess
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall, deferLater
from twisted.python.failure import Failure

#: Seconds a SIGKILLed process may take to be gone.
KILL_TIMEOUT = 2.0
#: What a failure is grouped by: its type and its message up to the first
#: ":" (what follows is the connection's detail) or " (after" (the count of
#: attempts).
_REASON = re.compile(r"^(.*?)(?::| \(after \d+ attempts\)|$)")
#: The channel counters reported (ChannelStats).
STATS_FIELDS = (
    "calls",
    "succeeded",
    "failed",
    "attempts",
    "retries",
    "retries_throttled",
    "ejections",
    "reconnects",
)


@dataclass(frozen=True, kw_only=True)
class Timing:
    """When things happen, in seconds after the load starts."""

    #: SIGKILL backend A.
    kill_at: float = 1.5
    #: SIGTERM backend B.
    term_at: float = 2.5
    #: Start A again on its port.
    restart_at: float = 3.5
    #: Seconds of load once the channel has A ready again.
    after_restart: float = 2.0
    #: The load stops after this long whatever happens (a restart that
    #: never comes).
    max_seconds: float = 20.0
    #: Seconds the calls still in flight when the load stops may take to
    #: fire; one still waiting after that has hung.
    drain: float = 5.0
    #: The width of a throughput bucket.
    bucket: float = 0.25

    def scaled(self, factor: float) -> Timing:
        """:returns: the same timeline, ``factor`` times slower."""
        return Timing(
            kill_at=self.kill_at * factor,
            term_at=self.term_at * factor,
            restart_at=self.restart_at * factor,
            after_restart=self.after_restart * factor,
            max_seconds=self.max_seconds * factor,
            drain=self.drain,
            bucket=self.bucket,
        )


def reason(error: BaseException) -> str:
    """
    :returns: what failures are grouped by: the exception's type and the
        start of its message, such as ``"ConnectionClosed: connection lost
        before the answer"``.
    """
    message = str(getattr(error, "message", None) or error)
    match = _REASON.match(message)
    prefix = match.group(1) if match else message
    return f"{type(error).__name__}: {prefix}"


def process_gone(pid: int) -> bool:
    """
    :returns: whether ``pid`` no longer runs: exited (a zombie, whose
        sockets the kernel has closed) or reaped.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return fields[0] in ("Z", "X")


def _snapshot(channel: Any) -> dict[str, dict[str, Any]]:
    return {
        str(b.endpoint): {"state": b.state, "outstanding": b.outstanding} for b in channel.backends
    }


def _stats(channel: Any) -> dict[str, Any]:
    stats = channel.stats
    return {name: getattr(stats, name, None) for name in STATS_FIELDS}


async def run_scenario(
    reactor: Any,
    channel: Any,
    *,
    a: str,
    kill_pid: int,
    term_pid: int,
    restart: Callable[[], Deferred[None]],
    timing: Timing = Timing(),
    callers: int = 16,
    body: bytes = b"x" * 64,
    timeout: float = 10.0,
    limit: int = 1_000_000,
) -> dict[str, Any]:
    """
    Run the failover scenario on a running reactor.

    :param channel: a :class:`~twisted_reqresp.Channel` over the three
        backends; closed at the end.
    :param a: the endpoint string of backend A (the one killed), as the
        channel names it in ``channel.backends``.
    :param kill_pid: A's process, SIGKILLed at ``timing.kill_at``.
    :param term_pid: B's process, SIGTERMed at ``timing.term_at``.
    :param restart: called at ``timing.restart_at``: starts A again on its
        port; its Deferred fires once A listens.
    :param callers: how many calls are in flight at once.
    :param timeout: each call's timeout, in seconds.
    :param limit: the most calls made in all.
    :returns: what happened, as JSON-able data (see the keys below).
    """
    clock = time.monotonic
    await channel.when_ready()
    # Start with the three backends ready, so that the kill finds calls on A.
    for _ in range(400):
        if len(channel.backends) == 3 and all(b.state == "ready" for b in channel.backends):
            break
        await deferLater(reactor, 0.025)
    else:
        raise RuntimeError(f"the backends are not all ready: {_snapshot(channel)}")

    t0 = clock()
    cpu0 = time.process_time()
    bucket = timing.bucket
    counts: Counter[int] = Counter()
    failures: list[dict[str, Any]] = []
    outstanding: set[Deferred[Any]] = set()
    samples: list[dict[str, Any]] = []
    marks: dict[str, float | None] = {
        "kill_at": None,
        "term_at": None,
        "restart_requested_at": None,
        "restarted_at": None,
        "recovered_at": None,
        "end_at": None,
    }
    state: dict[str, Any] = {
        "started": 0,
        "ok": 0,
        "stopping": False,
        "holding": False,
        "held": 0,
        "in_flight_on_a": None,
    }

    def now() -> float:
        return clock() - t0

    def one() -> None:
        if state["stopping"] or state["started"] >= limit:
            return
        if state["holding"]:
            state["held"] += 1
            return
        state["started"] += 1
        d = channel.call("echo", body, timeout=timeout)
        outstanding.add(d)
        d.addBoth(finished, d)

    def finished(result: Any, d: Deferred[Any]) -> None:
        outstanding.discard(d)
        at = now()
        if isinstance(result, Failure):
            error: BaseException = result.value  # type: ignore[assignment]
            failures.append(
                {
                    "at": round(at, 4),
                    "reason": reason(error),
                    "message": str(getattr(error, "message", error)),
                    "retry_safe": bool(getattr(error, "retry_safe", False)),
                    "attempts": getattr(error, "attempts", 1),
                    # A retry-safe failure while another backend could take
                    # the call is a call the channel lost.
                    "others_ready": any(b.state == "ready" for b in channel.backends),
                }
            )
            reactor.callLater(0.01, one)
        else:
            state["ok"] += 1
            counts[int(at / bucket)] += 1
            one()

    def sample() -> None:
        backends = _snapshot(channel)
        at = now()
        samples.append({"at": round(at, 3), "backends": backends})
        if (
            marks["recovered_at"] is None
            and marks["restarted_at"] is not None
            and backends.get(a, {}).get("state") == "ready"
        ):
            marks["recovered_at"] = at

    def kill() -> None:
        # The calls A has in flight now are the most it may lose.  A call
        # sent to A after it died but before the channel noticed would be
        # lost too, and nobody could tell it from one A ran: so the reactor
        # does not run until A is gone (its sockets closed), and the
        # callers hold their next calls until the channel has seen the
        # loss, which is the next reactor iteration or so.
        state["in_flight_on_a"] = _snapshot(channel).get(a, {}).get("outstanding")
        marks["kill_at"] = killed = now()
        os.kill(kill_pid, signal.SIGKILL)
        deadline = clock() + KILL_TIMEOUT
        while not process_gone(kill_pid) and clock() < deadline:
            time.sleep(0.001)
        state["kill_blocked_ms"] = round((now() - killed) * 1000, 2)
        state["holding"] = True
        reactor.callLater(0, release, killed, clock() + KILL_TIMEOUT)

    def release(killed: float, hold_until: float) -> None:
        if _snapshot(channel).get(a, {}).get("state") == "ready" and clock() < hold_until:
            reactor.callLater(0, release, killed, hold_until)
            return
        state["hold_ms"] = round((now() - killed) * 1000 - state["kill_blocked_ms"], 2)
        state["holding"] = False
        held, state["held"] = state["held"], 0
        for _ in range(held):
            one()

    def term() -> None:
        marks["term_at"] = now()
        os.kill(term_pid, signal.SIGTERM)

    def restarted(_: object) -> None:
        marks["restarted_at"] = now()

    def request_restart() -> None:
        marks["restart_requested_at"] = now()
        restart().addCallback(restarted)

    sampler = LoopingCall(sample)
    sampler.clock = reactor
    sampler.start(bucket / 2, now=True)
    reactor.callLater(timing.kill_at, kill)
    reactor.callLater(timing.term_at, term)
    reactor.callLater(timing.restart_at, request_restart)
    for _ in range(callers):
        one()

    # The load runs until A has been back in the channel for after_restart seconds.
    while now() < timing.max_seconds and not (
        marks["recovered_at"] is not None and now() >= marks["recovered_at"] + timing.after_restart
    ):
        await deferLater(reactor, 0.05)
    state["stopping"] = True
    marks["end_at"] = end_at = now()
    drain_until = clock() + timing.drain
    while outstanding and clock() < drain_until:
        await deferLater(reactor, 0.02)
    hung = len(outstanding)
    for d in list(outstanding):
        d.cancel()
    cpu = time.process_time() - cpu0
    elapsed = now()
    sampler.stop()
    stats = _stats(channel)
    closing = channel.close()
    closing.addTimeout(timing.drain, reactor)
    try:
        await closing
        closed = "closed"
    except Exception as e:
        closed = f"close failed: {e!r}"

    end_bucket = int(end_at / bucket)
    return {
        "callers": callers,
        "started": state["started"],
        "ok": state["ok"],
        "failed": len(failures),
        "hung": hung,
        "failures_by_reason": dict(Counter(f["reason"] for f in failures)),
        "failures": failures[:100],
        "lost_retry_safe": sum(1 for f in failures if f["retry_safe"] and f["others_ready"]),
        "retry_safe_none_ready": sum(
            1 for f in failures if f["retry_safe"] and not f["others_ready"]
        ),
        "in_flight_on_a": state["in_flight_on_a"],
        "kill_blocked_ms": state.get("kill_blocked_ms"),
        "hold_ms": state.get("hold_ms"),
        **{k: None if v is None else round(v, 3) for k, v in marks.items()},
        "stats": stats,
        "bucket_seconds": bucket,
        "buckets": [counts.get(i, 0) for i in range(end_bucket)],
        "samples": samples,
        "cpu_seconds": round(cpu, 3),
        "elapsed": round(elapsed, 3),
        "close": closed,
    }


def dip(result: dict[str, Any]) -> dict[str, Any]:
    """
    :returns: ``median_before``: the median req/s of the whole buckets
        before the kill; ``worst_after``: the worst bucket from the kill to
        the end; ``ratio``: the second over the first; ``phases``: the
        median req/s of each phase (three backends, A down, A and B down,
        A back).
    """
    width = result["bucket_seconds"]
    buckets = result["buckets"]

    def index(key: str) -> int:
        at = result[key]
        return len(buckets) if at is None else int(at / width)

    kill, term, back = index("kill_at"), index("term_at"), index("recovered_at")
    # The first bucket is a ramp, and a bucket with an event in it is
    # partly one phase and partly the next.
    spans = {
        "A, B and C": buckets[1:kill],
        "B and C (A killed)": buckets[kill + 1 : term],
        "C alone (B stopped)": buckets[term + 1 : back],
        "A and C (A back)": buckets[back + 1 :],
    }
    phases = {
        name: statistics.median(span) / width if span else float("nan")
        for name, span in spans.items()
    }
    median = phases["A, B and C"]
    after = buckets[kill:]
    worst = min(after) / width if after else float("nan")
    return {
        "median_before": median,
        "worst_after": worst,
        "ratio": worst / median,
        "phases": phases,
    }


def timeline(result: dict[str, Any], a: str, b: str, c: str) -> str:
    """:returns: the per-bucket table: req/s, events, and each backend's state."""
    width = result["bucket_seconds"]
    events: dict[int, list[str]] = {}
    for key, label in (
        ("kill_at", "SIGKILL A"),
        ("term_at", "SIGTERM B"),
        ("restart_requested_at", "start A"),
        ("restarted_at", "A listens"),
        ("recovered_at", "A ready"),
    ):
        if result[key] is not None:
            events.setdefault(int(result[key] / width), []).append(label)
    by_bucket: dict[int, dict[str, Any]] = {}
    for sample in result["samples"]:
        by_bucket.setdefault(int(sample["at"] / width), sample["backends"])
    lines = ["   t (s)      req/s   A (state/outstanding)  B             C             events"]
    for i, n in enumerate(result["buckets"]):
        backends = by_bucket.get(i, {})
        cells = []
        for endpoint in (a, b, c):
            info = backends.get(endpoint)
            cells.append(f"{info['state']}/{info['outstanding']}" if info else "-")
        lines.append(
            f"{i * width:8.2f} {n / width:10,.0f}   {cells[0]:<22} {cells[1]:<13} {cells[2]:<13} "
            + ", ".join(events.get(i, []))
        )
    return "\n".join(lines)


# -- the benchmark's own backends ----------------------------------------------------


class Backend(TwistdProcess):
    """A ``twistd -n reqresp`` that may be killed and started again on its port."""

    def __init__(self, port: int | None = None, extra: Sequence[str] = ()) -> None:
        super().__init__(extra, port=port, label="failover")

    def listening(self) -> bool:
        """:returns: whether twistd says it listens; :raises SystemExit: if it failed."""
        if self.process.poll() is not None and self.process.returncode not in (0, -9, -15):
            raise SystemExit(f"twistd exited {self.process.returncode}:\n{self.log()}")
        return self.starts() > 0


def main(argv: list[str] | None = None) -> int:
    from _common import machine_busy_seconds, machine_info
    from twisted.internet.task import react

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--callers", type=int, default=16, help="calls in flight (16)")
    parser.add_argument(
        "--scale", type=float, default=2.0, help="stretch the timeline by this factor (2)"
    )
    parser.add_argument(
        "--reconnect-max",
        type=float,
        default=None,
        help="cap the channel's reconnection backoff at this many seconds "
        "(default: the Channel's default, Backoff())",
    )
    parser.add_argument("--json", default=None, help="write the whole result here")
    args = parser.parse_args(argv)
    timing = Timing().scaled(args.scale)

    backends = [Backend() for _ in range(3)]
    restarted: list[Backend] = []
    result: dict[str, Any] = {}
    busy: list[float] = []
    try:
        for backend in backends:
            backend.wait_ready()
        a, b, c = backends

        async def scenario(reactor: Any) -> None:
            from twisted_reqresp import Backoff, Channel

            def restart() -> Deferred[None]:
                a.process.wait(timeout=KILL_TIMEOUT)  # reaped
                again = Backend(port=a.port)
                restarted.append(again)
                listening: Deferred[None] = Deferred()

                def poll() -> None:
                    if again.listening():
                        poller.stop()
                        listening.callback(None)

                poller = LoopingCall(poll)
                poller.clock = reactor
                poller.start(0.02)
                return listening

            options: dict[str, Any] = {}
            if args.reconnect_max is not None:
                options["reconnect"] = Backoff(
                    initial=min(0.1, args.reconnect_max), maximum=args.reconnect_max
                )
            channel = Channel(reactor, [x.endpoint for x in backends], timeout=10.0, **options)
            busy.append(machine_busy_seconds())
            result.update(
                await run_scenario(
                    reactor,
                    channel,
                    a=a.endpoint,
                    kill_pid=a.process.pid,
                    term_pid=b.process.pid,
                    restart=restart,
                    timing=timing,
                    callers=args.callers,
                )
            )
            busy.append(machine_busy_seconds())

        react(lambda reactor: Deferred.fromCoroutine(scenario(reactor)))
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    finally:
        for backend in [*backends, *restarted]:
            backend.stop()

    a, b, c = backends
    print(timeline(result, a.endpoint, b.endpoint, c.endpoint))
    d = dip(result)
    reconnect = "default" if args.reconnect_max is None else f"capped at {args.reconnect_max:g} s"
    print(
        f"\n{args.callers} callers, 64-byte echo, reconnection backoff {reconnect}; "
        f"timeline x{args.scale:g}: SIGKILL A at {result['kill_at']:.2f} s, SIGTERM B at "
        f"{result['term_at']:.2f} s, A listening again at {result['restarted_at']:.2f} s, "
        f"ready in the channel at {result['recovered_at'] or float('nan'):.2f} s, "
        f"load stopped at {result['end_at']:.2f} s"
    )
    print(
        f"req/s: median before the kill {d['median_before']:,.0f}, worst bucket after "
        f"{d['worst_after']:,.0f}: dip to {d['ratio']:.0%}"
    )
    print("median req/s by phase: " + ", ".join(f"{k} {v:,.0f}" for k, v in d["phases"].items()))
    print(
        f"calls: {result['started']:,} made, {result['ok']:,} succeeded, {result['failed']} "
        f"failed, {result['hung']} hung; in flight on A when killed: {result['in_flight_on_a']}"
    )
    for why, n in sorted(result["failures_by_reason"].items()):
        retry_safe = sum(1 for f in result["failures"] if f["reason"] == why and f["retry_safe"])
        print(f"  failed: {n} x {why} ({retry_safe} retry-safe)")
    print(
        f"lost retry-safe calls: {result['lost_retry_safe']}; channel counters: "
        + ", ".join(f"{k} {v}" for k, v in result["stats"].items())
    )
    elapsed = result["elapsed"]
    machine = 100 * (busy[1] - busy[0]) / elapsed if len(busy) == 2 else float("nan")
    print(
        f"load generator CPU: {result['cpu_seconds']:.2f} s over {elapsed:.2f} s "
        f"({100 * result['cpu_seconds'] / elapsed:.0f}% of a core, "
        f"{1e6 * result['cpu_seconds'] / max(1, result['started']):.0f} us per call); "
        f"the whole machine: {machine:.0f}% of {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    if args.json:
        data = {
            "machine": machine_info(),
            "timing": asdict(timing),
            "reconnect_max": args.reconnect_max,
            "dip": d,
            "result": result,
        }
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    return 1 if result["hung"] or result["lost_retry_safe"] else 0


if __name__ == "__main__":
    sys.exit(main())
