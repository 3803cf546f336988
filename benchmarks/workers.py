"""
``--workers``: requests per second of a real ``twistd -n reqresp`` with one
and with two worker processes, at 32 connections x 16 requests in flight
(64-byte ``echo`` over the binary format), through the raw-socket load
generator (``_loadgen.py``).

Each configuration runs in its own ``twistd`` (the default service on a
free 127.0.0.1 port); repetitions alternate between them, so a disturbance
(someone else's job on the machine) spreads over all.  The report gives the
median req/s of each, the 2-worker / 1-worker ratio, and the CPU of the
workers, of the load generator and of every other process on the machine
over the measured window.

    python benchmarks/workers.py [--repeat N] [--duration S] [--warmup S] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from _common import TwistdProcess, cpu_seconds, machine_info, raise_nofile
from _loadgen import run_load

#: What is compared: the label and the extra ``reqresp`` options.
CONFIGS: dict[str, list[str]] = {
    "1 process": [],
    "--workers 1": ["--workers", "1"],
    "--workers 2": ["--workers", "2"],
}
CONNECTIONS, DEPTH, BODY = 32, 16, b"x" * 64
_STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")


class Twistd(TwistdProcess):
    """A binary-format ``twistd -n reqresp`` (with ``--workers N`` in ``extra``, or not)."""

    def __init__(self, extra: list[str]) -> None:
        super().__init__(["--wire", "binary", *extra], label="workers")
        self.workers = int(extra[1]) if extra else 0

    def wait_ready(self, starts: int = 0) -> None:
        """Wait until the supervisor and every worker listen."""
        super().wait_ready(starts or (self.workers + 1 if self.workers else 1))

    def server_pids(self) -> list[int]:
        """:returns: the processes that serve: the workers, or twistd itself."""
        if not self.workers:
            return [self.process.pid]
        latest = {int(i): int(pid) for i, pid in _STARTED.findall(self.log())}
        return sorted(latest.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (3)")
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds (3)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first (1)")
    parser.add_argument("--json", default=None, help="write every measurement here")
    args = parser.parse_args(argv)
    raise_nofile()

    servers = {label: Twistd(extra) for label, extra in CONFIGS.items()}
    results: dict[str, list[dict[str, Any]]] = {label: [] for label in CONFIGS}
    try:
        for server in servers.values():
            server.wait_ready()
        for rep in range(args.repeat):
            for label, server in servers.items():
                pids = server.server_pids()
                before = sum(cpu_seconds(pid) for pid in pids)
                result = run_load(
                    "binary", server.port, CONNECTIONS, DEPTH, BODY, args.warmup, args.duration
                )
                used = sum(cpu_seconds(pid) for pid in pids) - before
                summary = result.summary()
                # The serving processes' CPU over warm-up and window together;
                # the generator counted them among the others.
                summary["server_cpu_pct"] = 100.0 * used / (args.warmup + args.duration)
                summary["other_cpu_pct"] = max(
                    0.0, summary["other_cpu_pct"] - summary["server_cpu_pct"]
                )
                results[label].append(summary)
                print(
                    f"rep {rep + 1}/{args.repeat} {label:<12} {summary['rps']:>9,.0f} req/s  "
                    f"p50 {summary['p50_ms']:.2f} ms  server CPU {summary['server_cpu_pct']:.0f}%  "
                    f"generator CPU {summary['gen_cpu_pct']:.0f}%  "
                    f"others {summary['other_cpu_pct']:.0f}%"
                    + (f"  ERRORS {summary['errors']}" if summary["errors"] else ""),
                    file=sys.stderr,
                )
                time.sleep(0.2)
    finally:
        for server in servers.values():
            server.stop()

    def median(label: str, key: str) -> float:
        return statistics.median(r[key] for r in results[label])

    print(f"\n{CONNECTIONS}x{DEPTH}, 64-byte echo, binary format; median of {args.repeat}:\n")
    print("| server | req/s | server CPU | generator CPU | other processes' CPU |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label in CONFIGS:
        print(
            f"| {label} | {median(label, 'rps'):,.0f} | {median(label, 'server_cpu_pct'):.0f}% | "
            f"{median(label, 'gen_cpu_pct'):.0f}% | {median(label, 'other_cpu_pct'):.0f}% |"
        )
    ratio = median("--workers 2", "rps") / median("--workers 1", "rps")
    print(f"\n2 workers / 1 worker: {ratio:.2f}x  (cores: {os.cpu_count()})")
    if args.json:
        data = {"machine": machine_info(), "results": results, "ratio_2_over_1": ratio}
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    errors = sum(r["errors"] for rs in results.values() for r in rs)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
