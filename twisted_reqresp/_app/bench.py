"""
``reqresp bench``: load-test a server with the client library.

:func:`bench` keeps ``depth`` calls in flight on each of the clients it is
given for ``duration`` seconds, records every call's latency, and reports
the rate and latency percentiles.  It takes connected clients and a clock,
so tests drive it over :func:`twisted_reqresp.testing.connected_pair`; the
command line connects the clients and prints the report.
"""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from .._adapters.channel import Channel
from .._adapters.client import Client
from .._core.errors import ConnectionClosed

__all__ = ["BenchReport", "bench", "format_report"]

#: The percentiles the report shows.
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


@dataclass
class BenchReport:
    """What a :func:`bench` run measured."""

    #: Calls answered successfully.
    requests: int = 0
    #: Calls that failed, by exception type name.
    errors: dict[str, int] = field(default_factory=dict)
    #: The first failure, for the message when nothing succeeded.
    first_error: BaseException | None = None
    #: Seconds from the first call to the last answer.
    elapsed: float = 0.0
    #: Each successful call's latency, in seconds.
    latencies: array[float] = field(default_factory=lambda: array("d"))
    #: Over a :class:`~twisted_reqresp.Channel`: the calls each backend
    #: (endpoint) answered successfully; empty over plain clients.
    backends: dict[str, int] = field(default_factory=dict)
    #: Over a channel: the attempts that were retries; ``None`` otherwise.
    retries: int | None = None

    @property
    def rate(self) -> float:
        """Successful calls per second."""
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    def percentiles(self, ps: Sequence[float]) -> list[float]:
        """
        :param ps: percentiles, 0 to 100.
        :returns: those percentiles of the latencies, in seconds (nearest
            rank); 0.0 each when there are none.
        """
        if not self.latencies:
            return [0.0 for _ in ps]
        ordered = sorted(self.latencies)
        n = len(ordered)
        return [ordered[max(0, min(n - 1, math.ceil(p / 100.0 * n) - 1))] for p in ps]


#: Starts one call and says which backend it went to (or ``None``).


def bench(
    clients: Sequence[Client | Channel],
    method: str,
    body: bytes,
    *,
    depth: int,
    duration: float,
    clock: IReactorTime,
    timeout: float | None = None,
    timer: Callable[[], float] = time.perf_counter,
    progress: Callable[[float, BenchReport], None] | None = None,
    progress_interval: float = 1.0,
) -> Deferred[BenchReport]:
    """
    Keep ``depth`` calls to ``method`` in flight on each client for
    ``duration`` seconds.

    :param clients: connected clients (one connection each), or a
        :class:`~twisted_reqresp.Channel` (given N times for N workers).
    :param method: the method to call.
    :param body: the request body, as bytes.
    :param depth: calls in flight per client.
    :param duration: seconds to keep starting calls; the calls still in
        flight then are waited for.
    :param clock: measures the duration and paces the progress reports.
    :param timeout: each call's timeout.
    :param timer: measures latencies (a monotonic, high-resolution clock).
    :param progress: called every ``progress_interval`` seconds with the
        seconds elapsed and the report so far.
    :returns: a Deferred firing with the :class:`BenchReport`.
    """
    report = BenchReport()
    done: Deferred[BenchReport] = Deferred()
    started = clock.seconds()
    first_call = timer()
    end = started + duration
    state = {"outstanding": 0}
    ticker: list[IDelayedCall] = []

    def finish() -> None:
        for call in ticker:
            if call.active():
                call.cancel()
        report.elapsed = max(timer() - first_call, 1e-9)
        done.callback(report)

    def issue(client: Client | Channel) -> None:
        state["outstanding"] += 1
        sent = timer()
        settled = [False]
        d = client.call(method, body, timeout=timeout)
        d.addBoth(answered, client, sent, settled)
        settled[0] = True

    def answered(result: Any, client: Client | Channel, sent: float, settled: list[bool]) -> None:
        state["outstanding"] -= 1
        again = clock.seconds() < end
        if isinstance(result, Failure):
            name = type(result.value).__name__
            report.errors[name] = report.errors.get(name, 0) + 1
            if report.first_error is None:
                report.first_error = result.value
            # A call that failed before it was even sent (a closed
            # connection, a body too large) would fail again at once: stop
            # this worker rather than spin.
            if not settled[0] or isinstance(result.value, ConnectionClosed):
                again = False
        else:
            report.requests += 1
            report.latencies.append(timer() - sent)
        if again:
            issue(client)
        elif state["outstanding"] == 0 and not done.called:
            finish()

    def tick() -> None:
        assert progress is not None
        progress(clock.seconds() - started, report)
        if clock.seconds() < end:
            ticker[:] = [clock.callLater(progress_interval, tick)]

    if progress is not None:
        ticker.append(clock.callLater(progress_interval, tick))
    for client in clients:
        for _ in range(depth):
            issue(client)
    if state["outstanding"] == 0 and not done.called:
        finish()
    return done


def count_backends(channel: Channel, before: Mapping[str, int], report: BenchReport) -> None:
    """
    Fill :attr:`BenchReport.backends` and :attr:`BenchReport.retries` from
    a channel's counters.

    :param channel: the channel the run called through.
    :param before: each backend's ``succeeded`` count when the run began.
    :param report: the run's report.
    """
    for info in channel.backends:
        report.backends[info.endpoint] = info.succeeded - before.get(info.endpoint, 0)
    report.retries = channel.stats.retries


def format_report(report: BenchReport) -> str:
    """
    :returns: the report as a few lines of text for people.
    """
    errors = sum(report.errors.values())
    lines = [
        f"requests  {report.requests:,} in {report.elapsed:.2f} s: "
        f"{report.rate:,.1f} req/s, {errors:,} errors"
    ]
    if report.errors:
        lines.append(
            "errors    "
            + ", ".join(f"{name} {count:,}" for name, count in sorted(report.errors.items()))
        )
    if report.latencies:
        values = report.percentiles(PERCENTILES)
        parts = [f"p{p:g} {v * 1000:.3f}" for p, v in zip(PERCENTILES, values, strict=True)]
        parts.append(f"max {max(report.latencies) * 1000:.3f}")
        lines.append("latency   " + "  ".join(parts) + " (ms)")
    if report.backends:
        lines.append(
            "backends  "
            + ", ".join(f"{name} {count:,}" for name, count in sorted(report.backends.items()))
            + ("" if report.retries is None else f" ({report.retries:,} retries)")
        )
    return "\n".join(lines) + "\n"
