"""
Throughput and latency of our server against Twisted AMP and a minimal
Twisted echo (the ceiling), with a raw-socket load generator.

    python benchmarks/run.py                 # 3 repetitions of 0.5 s + 3 s per case
    python benchmarks/run.py --quick         # 1 repetition of 0.25 s + 1 s
    python benchmarks/run.py --cases 1x64 --servers binary,ceiling --json out.json
    python benchmarks/run.py --cases 1x64 --servers binary --profile /tmp/prof
    python benchmarks/run.py --loadgen python   # the generator in this process

Each server runs in its own process pinned to the first CPU this process may
use; the load generator is pinned to the second: by default the compiled
one (``loadgen.c``, built on demand) when a C compiler exists, else the
Python one (``_loadgen.py``) in this process.  See ``benchmarks/README.md``
for the method.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cloadgen import (
    BuildFailed,
    CompilerMissing,
    build,
    compiler_version,
    find_compiler,
    run_load_c,
)
from _common import (
    ALL_SERVERS,
    LABELS,
    ServerProcess,
    cpus,
    fmt_num,
    fmt_spread,
    hot_path,
    line_format_available,
    machine_info,
    pin_self,
    raise_nofile,
    spread,
    stop_all,
    table,
)
from _loadgen import run_load

#: name -> (connections, in flight per connection, body bytes)
CASES: dict[str, tuple[int, int, int]] = {
    "1x1": (1, 1, 64),
    "1x64": (1, 64, 64),
    "32x1": (32, 1, 64),
    "32x16": (32, 16, 64),
    "32x4-16KiB": (32, 4, 16 * 1024),
}


def describe(case: str) -> str:
    conns, window, size = CASES[case]
    return f"{conns} conn x {window} in flight, {size:,} B bodies"


def parse_list(text: str, known: tuple[str, ...] | list[str], what: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    for item in items:
        if item not in known:
            raise SystemExit(f"unknown {what} {item!r}; known: {', '.join(known)}")
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark our server against AMP and a minimal Twisted echo.",
    )
    parser.add_argument("--quick", action="store_true", help="1 repetition, 0.25 s + 1 s per run")
    parser.add_argument("--repeat", type=int, default=None, help="repetitions (default 3)")
    parser.add_argument("--duration", type=float, default=None, help="measured seconds (3)")
    parser.add_argument("--warmup", type=float, default=None, help="unmeasured seconds first (0.5)")
    parser.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}"
    )
    parser.add_argument(
        "--servers", default=",".join(ALL_SERVERS), help=f"from {', '.join(ALL_SERVERS)}"
    )
    parser.add_argument("--json", default=None, help="write every measurement here")
    parser.add_argument(
        "--profile", default=None, metavar="DIR",
        help="run the servers under cProfile; write DIR/<server>.prof and print the top entries",
    )  # fmt: skip
    parser.add_argument(
        "--loadgen", choices=("auto", "c", "python"), default="auto",
        help="the load generator: c (loadgen.c, built with cc -O2), python (_loadgen.py, in "
        "this process) or auto (default: c when a C compiler exists, else python)",
    )  # fmt: skip
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--nodelay", action="store_true",
        help="servers set TCP_NODELAY (Twisted leaves Nagle on by default; so do we)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    duration = args.duration if args.duration is not None else (1.0 if args.quick else 3.0)
    warmup = args.warmup if args.warmup is not None else (0.25 if args.quick else 0.5)
    cases = parse_list(args.cases, list(CASES), "case")
    kinds = parse_list(args.servers, ALL_SERVERS, "server")
    skipped: dict[str, str] = {}
    if "line" in kinds and not line_format_available():
        kinds.remove("line")
        skipped["line"] = "twisted_reqresp._core.line.LineFormat is not importable"
    if repeat < 1 or duration <= 0 or warmup < 0:
        raise SystemExit("--repeat must be >= 1, --duration > 0, --warmup >= 0")

    loadgen, executable = choose_loadgen(args.loadgen)
    server_cpu, load_cpu = (None, None) if args.no_pin else cpus()
    raise_nofile()
    profile_dir = Path(args.profile) if args.profile else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)

    info = machine_info()
    est = repeat * len(cases) * len(kinds) * (warmup + duration + 0.3)
    print(
        f"{len(kinds)} servers x {len(cases)} cases x {repeat} repetitions of "
        f"{warmup:g} s + {duration:g} s: about {est:.0f} s",
        file=sys.stderr,
    )

    servers: dict[str, ServerProcess] = {}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        case: {kind: [] for kind in kinds} for case in cases
    }
    pinned = False
    try:
        for kind in kinds:
            profile = str(profile_dir / f"{kind}.prof") if profile_dir else None
            extra = ["--nodelay"] if args.nodelay else []
            servers[kind] = ServerProcess(
                kind, cpu=server_cpu, profile=profile, extra=extra
            ).start()
        pinned = pin_self(load_cpu)
        # Repetition-major order: a disturbance (someone else's job on the
        # machine) spreads over every server instead of hitting one.
        for rep in range(repeat):
            for case in cases:
                conns, window, size = CASES[case]
                body = b"x" * size
                for kind in kinds:
                    server = servers[kind]
                    if executable is not None:
                        summary = run_load_c(
                            kind, server.port, conns, window, size, warmup, duration,
                            server_pid=server.pid, cpu=load_cpu if pinned else None,
                            executable=executable,
                        )  # fmt: skip
                    else:
                        summary = run_load(
                            kind, server.port, conns, window, body, warmup, duration,
                            server_pid=server.pid,
                        ).summary()  # fmt: skip
                    results[case][kind].append(summary)
                    print(
                        f"rep {rep + 1}/{repeat} {case:<11} {LABELS[kind]:<14} "
                        f"{summary['rps']:>10,.0f} req/s  p50 {summary['p50_ms']:.3f} ms  "
                        f"p99 {summary['p99_ms']:.3f} ms  server CPU "
                        f"{summary['server_cpu_pct']:.0f}%  generator CPU "
                        f"{summary['gen_cpu_pct']:.0f}%  others {summary['other_cpu_pct']:.0f}%"
                        + (f"  ERRORS {summary['errors']}" if summary["errors"] else ""),
                        file=sys.stderr,
                    )
                    time.sleep(0.1)  # let the server close the connections
    except BaseException:
        for server in servers.values():
            if server.log_tail().strip():
                print(f"--- {server.kind} server log ({server.log_path}):", file=sys.stderr)
                print(server.log_tail(), file=sys.stderr)
        raise
    finally:
        stop_all(list(servers.values()))

    for server in servers.values():
        server.cleanup_log()

    report = render(
        results, cases, kinds, repeat, duration, warmup, pinned, server_cpu, load_cpu, loadgen
    )
    if skipped:
        report += "\n" + "\n".join(f"skipped {k}: {why}" for k, why in skipped.items()) + "\n"
    print(report)

    if profile_dir is not None:
        print_profiles(profile_dir, kinds)

    if args.json:
        data = {
            "machine": info,
            "settings": {
                "repeat": repeat,
                "duration": duration,
                "warmup": warmup,
                "pinned": pinned,
                "server_cpu": server_cpu,
                "load_cpu": load_cpu,
                "profiled": profile_dir is not None,
                "nodelay": args.nodelay,
                "loadgen": loadgen,
                "compiler": compiler_version() if executable is not None else None,
            },
            "cases": {case: describe(case) for case in cases},
            "skipped": skipped,
            "results": results,
            "summary": summarise(results, cases, kinds),
        }
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    bad = sum(r["errors"] for c in results.values() for k in c.values() for r in k)
    return 1 if bad else 0


def choose_loadgen(wanted: str) -> tuple[str, Any]:
    """
    :param wanted: ``c``, ``python`` or ``auto``.
    :returns: the generator's description for the report, and the built C
        generator or None for the Python one.
    :raises SystemExit: if ``c`` was asked for and cannot be built.
    """
    if wanted == "python":
        return "python (_loadgen.py, in the harness)", None
    if wanted == "auto" and find_compiler() is None:
        print(
            "no C compiler found: using the Python load generator (_loadgen.py); "
            "install one (Debian: apt-get install build-essential) for loadgen.c",
            file=sys.stderr,
        )
        return "python (_loadgen.py, in the harness; no C compiler)", None
    try:
        executable = build()
    except (CompilerMissing, BuildFailed) as e:
        raise SystemExit(f"--loadgen {wanted}: {e}") from None
    return f"c (loadgen.c, {compiler_version()})", executable


def summarise(
    results: dict[str, dict[str, list[dict[str, Any]]]], cases: list[str], kinds: list[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for case in cases:
        per: dict[str, Any] = {}
        for kind in kinds:
            runs = results[case][kind]
            per[kind] = {
                metric: spread([r[metric] for r in runs if r[metric] is not None])
                for metric in (
                    "rps",
                    "p50_ms",
                    "p90_ms",
                    "p99_ms",
                    "p999_ms",
                    "gen_cpu_pct",
                    "server_cpu_pct",
                    "server_us_per_req",
                    "gen_us_per_req",
                    "other_cpu_pct",
                )
            }
        ratios = {}
        if "binary" in per:
            ours = per["binary"]["rps"]["median"]
            for other, name in (("amp", "ours/AMP"), ("ceiling", "ours/ceiling")):
                if other in per:
                    ratios[name] = ours / per[other]["rps"]["median"]
        if "binary-py" in per:
            py = per["binary-py"]["rps"]["median"]
            for other, name in (("amp", "pure/AMP"), ("ceiling", "pure/ceiling")):
                if other in per:
                    ratios[name] = py / per[other]["rps"]["median"]
            if "binary" in per:
                ratios["ours/pure"] = per["binary"]["rps"]["median"] / py
        if "line" in per and "amp" in per:
            ratios["line/AMP"] = per["line"]["rps"]["median"] / per["amp"]["rps"]["median"]
        # Server CPU per answer, as the multiple of ours: steadier than
        # req/s when other jobs share the machine.
        if "binary" in per:
            ours_us = per["binary"]["server_us_per_req"]["median"]
            for other, name in (("amp", "AMP cpu/ours"), ("ceiling", "ceiling cpu/ours")):
                if other in per and ours_us:
                    ratios[name] = per[other]["server_us_per_req"]["median"] / ours_us
        per["ratios"] = ratios
        out[case] = per
    return out


def render(
    results: dict[str, dict[str, list[dict[str, Any]]]],
    cases: list[str],
    kinds: list[str],
    repeat: int,
    duration: float,
    warmup: float,
    pinned: bool,
    server_cpu: int | None,
    load_cpu: int | None,
    loadgen: str = "python",
) -> str:
    summary = summarise(results, cases, kinds)
    where = (
        f"servers on CPU {server_cpu}, generator on CPU {load_cpu}"
        if pinned
        else "processes not pinned"
    )
    lines = [
        "",
        f"Median [min-max] of {repeat} run(s) of {duration:g} s after {warmup:g} s of warm-up; "
        f"{where}.",
        f"Load generator: {loadgen}.",
        *(
            f"{LABELS[k]}: hot path {hot_path(pure=k == 'binary-py')}."
            for k in ("binary", "binary-py")
            if k in kinds
        ),
        "req/s: answers per second; p50/p99/p99.9: per-request latency; srv/gen CPU: share of "
        "one core used by the server / the load generator over the measured window;",
        "srv us/req: server CPU microseconds per answer (steadier than req/s on a busy machine);",
        "others: the most CPU that other processes used during any of the runs (100% = one "
        "core): when it is high, distrust the row.",
        "",
    ]
    for case in cases:
        lines.append(f"{case}: {describe(case)}")
        rows = []
        for kind in kinds:
            s = summary[case][kind]
            rows.append(
                [
                    LABELS[kind],
                    fmt_spread(s["rps"]),
                    fmt_spread(s["p50_ms"], 3),
                    fmt_spread(s["p99_ms"], 3),
                    fmt_num(s["p999_ms"]["median"], 3),
                    fmt_num(s["server_cpu_pct"]["median"]) + "%",
                    fmt_num(s["server_us_per_req"]["median"], 1),
                    fmt_num(s["gen_cpu_pct"]["median"]) + "%",
                    fmt_num(s["other_cpu_pct"]["max"]) + "%",
                ]
            )
        header = [
            "server", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "srv CPU", "srv us/req",
            "gen CPU", "others",
        ]  # fmt: skip
        lines.append(table(rows, header))
        lines.append("")
    names = [
        "ours/AMP", "ours/ceiling", "pure/AMP", "pure/ceiling", "ours/pure", "line/AMP",
        "AMP cpu/ours", "ceiling cpu/ours",
    ]  # fmt: skip
    present = [n for n in names if any(n in summary[c]["ratios"] for c in cases)]
    if present:
        lines.append(
            "Ratios of the medians: throughput (x/y: req/s of x over y), and server CPU per "
            "answer (x cpu/ours: x's srv us/req over ours; above 1, ours costs less):"
        )
        rows = [
            [case] + [_ratio(summary[case]["ratios"].get(n)) for n in present] for case in cases
        ]
        lines.append(table(rows, ["case", *present]))
        lines.append("")
    if "ceiling" in kinds:
        lines.append(
            "Generator check: against the ceiling the generator used "
            + ", ".join(
                f"{case} {fmt_num(summary[case]['ceiling']['gen_cpu_pct']['median'])}%"
                for case in cases
            )
            + " of its core; below 100% it is not what limits the rate."
        )
    busiest = max(
        (summary[case][kind]["gen_cpu_pct"]["max"], case, kind) for case in cases for kind in kinds
    )
    lines.append(
        f"The generator's busiest run used {fmt_num(busiest[0])}% of its core "
        f"({busiest[1]}, {LABELS[busiest[2]]})."
    )
    return "\n".join(lines) + "\n"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def print_profiles(profile_dir: Path, kinds: list[str], top: int = 25) -> None:
    import pstats

    for kind in kinds:
        path = profile_dir / f"{kind}.prof"
        if not path.exists():
            print(f"no profile for {kind} at {path}")
            continue
        print(f"\n=== cProfile of the {LABELS[kind]} server, top {top} by own time ({path}) ===")
        stats = pstats.Stats(str(path))
        stats.sort_stats("tottime").print_stats(top)


if __name__ == "__main__":
    sys.exit(main())
