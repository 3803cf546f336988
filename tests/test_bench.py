"""
``reqresp bench``: the load loop over the in-memory pair, its report, and
its command-line parsing.
"""

from __future__ import annotations

import itertools
from array import array
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import Call, Router
from twisted_reqresp._app.bench import BenchReport, bench, format_report
from twisted_reqresp._app.cli import build_parser
from twisted_reqresp.testing import ConnectedPair, connected_pair


def _pairs(n: int) -> list[ConnectedPair]:
    router = Router()
    router.add("echo", lambda call: call.body)
    pairs = [connected_pair(router)]
    for _ in range(n - 1):
        pairs.append(connected_pair(router, factory=pairs[0].factory, clock=pairs[0].clock))
    return pairs


def _run(pairs: list[ConnectedPair], done: Deferred[Any], step: float = 0.1) -> None:
    for _ in range(1000):
        if done.called:
            return
        for pair in pairs:
            pair.pump(rounds=1)
        pairs[0].clock.advance(step)
    raise AssertionError("bench never finished")


class BenchTests(SynchronousTestCase):
    """The load loop keeps the depth asked for and reports what happened."""

    def test_counts_and_depth(self) -> None:
        """Every connection keeps depth calls in flight until the duration passes."""
        pairs = _pairs(2)
        ticks = itertools.count()
        seen: list[int] = []
        done = bench(
            [p.client for p in pairs],
            "echo",
            b"x",
            depth=4,
            duration=1.0,
            clock=pairs[0].clock,
            timer=lambda: next(ticks) * 0.001,
            progress=lambda elapsed, report: seen.append(report.requests),
        )
        self.assertEqual([len(p.client_protocol.pending) for p in pairs], [4, 4])
        _run(pairs, done)
        report = self.successResultOf(done)
        self.assertGreater(report.requests, 8)
        self.assertEqual(report.errors, {})
        self.assertEqual(len(report.latencies), report.requests)
        self.assertTrue(seen)
        self.assertEqual([len(p.client_protocol.pending) for p in pairs], [0, 0])
        for pair in pairs:
            pair.disconnect()
        self.assertEqual(pairs[0].clock.getDelayedCalls(), [])

    def test_errors_counted(self) -> None:
        """Failed calls are counted by type and the first one kept."""
        pairs = _pairs(1)
        done = bench([pairs[0].client], "nope", b"", depth=1, duration=0.3, clock=pairs[0].clock)
        _run(pairs, done)
        report = self.successResultOf(done)
        self.assertEqual(report.requests, 0)
        self.assertGreater(report.errors["RemoteError"], 0)
        self.assertIn("unknown method", str(report.first_error))

    def test_closed_connection_stops(self) -> None:
        """A worker whose connection is gone stops instead of spinning."""
        pairs = _pairs(1)
        pairs[0].disconnect()
        done = bench([pairs[0].client], "echo", b"", depth=3, duration=5, clock=pairs[0].clock)
        report = self.successResultOf(done)
        self.assertEqual(report.errors, {"ConnectionClosed": 3})

    def test_slow_method_waits_for_in_flight(self) -> None:
        """Calls still in flight at the end are waited for and counted."""
        router = Router()
        waiting: list[Deferred[bytes]] = []

        @router.method("slow")
        def slow(call: Call) -> Deferred[bytes]:
            d: Deferred[bytes] = Deferred()
            waiting.append(d)
            return d

        pair = connected_pair(router)
        done = bench([pair.client], "slow", b"", depth=2, duration=1.0, clock=pair.clock)
        pair.pump()
        self.assertEqual(len(waiting), 2)
        pair.clock.advance(2.0)
        self.assertNoResult(done)
        for d in waiting:
            d.callback(b"ok")
        pair.pump()
        self.assertEqual(self.successResultOf(done).requests, 2)


class ReportTests(SynchronousTestCase):
    """The report's arithmetic and text."""

    def test_percentiles(self) -> None:
        """Percentiles are nearest-rank over the latencies."""
        report = BenchReport(requests=100, elapsed=2.0, latencies=array("d", range(1, 101)))
        self.assertEqual(report.percentiles([50, 90, 99, 100]), [50, 90, 99, 100])
        self.assertEqual(report.rate, 50.0)
        self.assertEqual(BenchReport().percentiles([50]), [0.0])

    def test_format(self) -> None:
        """The text names the rate, the errors and the percentiles in milliseconds."""
        report = BenchReport(
            requests=3, elapsed=1.0, errors={"RemoteError": 2}, latencies=array("d", [0.001] * 3)
        )
        text = format_report(report)
        self.assertIn("3 in 1.00 s: 3.0 req/s, 2 errors", text)
        self.assertIn("RemoteError 2", text)
        self.assertIn("p50 1.000", text)


class ParserTests(SynchronousTestCase):
    """The bench subcommand's arguments."""

    def test_defaults(self) -> None:
        """bench calls echo on one connection, one call deep, for ten seconds."""
        args = build_parser({}).parse_args(["bench"])
        self.assertEqual(
            (args.method, args.body, args.connections, args.depth, args.duration, args.size),
            ("echo", None, 1, 1, 10.0, 64),
        )

    def test_options(self) -> None:
        """Connections, depth, duration and a method with a body are parsed."""
        args = build_parser({}).parse_args(
            ["bench", "-C", "8", "--depth", "16", "--duration", "2.5", "add", "[1, 2]"]
        )
        self.assertEqual(
            (args.method, args.body, args.connections, args.depth, args.duration),
            ("add", "[1, 2]", 8, 16, 2.5),
        )
