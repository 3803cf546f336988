"""
Server memory: resident set size with 1,000 and 10,000 idle connections, and
under 32 x 16 load.

    python benchmarks/memory.py                      # ours, AMP, ceiling, line
    python benchmarks/memory.py --servers binary --connections 1000,10000

For each server, in a fresh process (pinned to the first CPU, connection
limit off): one connection makes a few calls and closes, so that lazily
built state is in the baseline; RSS_0 is read (``VmRSS`` in
``/proc/PID/status``).  Then this process (pinned to the second CPU) opens
idle connections up to each count in turn, every one of them proven
accepted: ours finishes the binary handshake (preface, SETTINGS both ways);
the others, which have no handshake, answer one echo.  After a short pause
RSS_N is read, and the cost per connection is (RSS_N - RSS_0) / N.  Then
every connection is closed, and a 32 x 16 load runs while RSS is sampled.
Both processes raise their RLIMIT_NOFILE soft limit to the hard limit.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ALL_SERVERS,
    LABELS,
    ServerProcess,
    cpus,
    fmt_num,
    line_format_available,
    machine_info,
    pin_self,
    raise_nofile,
    table,
)
from _loadgen import WIRES, ProtocolFailure, run_load

BODY = b"x" * 64


def open_idle(kind: str, port: int, count: int, echo: bool, timeout: float = 10.0) -> list[Any]:
    """
    Open ``count`` connections, each proven accepted by the server (the
    binary handshake, or one echo).  :returns: the open sockets.
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            socks.append(sock)
            wire = WIRES[kind](BODY)
            hello = wire.handshake()
            if hello:
                sock.sendall(hello)
                while not wire.handshake_done(_recv(sock)):
                    pass
            if echo or not hello:
                sock.sendall(wire.requests(1, 0.0))
                while not wire.feed(_recv(sock), 0.0, None):
                    pass
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def _recv(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise ProtocolFailure("the server closed an idle connection")
    return data


def settle(server: ServerProcess, seconds: float = 1.0) -> int:
    """Wait for the server to go quiet; :returns: its RSS in KiB."""
    deadline = time.monotonic() + seconds * 5
    last = server.cpu_seconds()
    while time.monotonic() < deadline:
        time.sleep(seconds / 4)
        now = server.cpu_seconds()
        if now - last < 0.01:
            break
        last = now
    time.sleep(seconds / 4)
    return server.rss_kib()


def measure(
    kind: str, counts: list[int], cpu: int | None, echo_each: bool, load_seconds: float
) -> dict[str, Any]:
    server = ServerProcess(kind, cpu=cpu, extra=["--no-conn-limit"])
    server.start()
    result: dict[str, Any] = {"server": kind}
    socks: list[socket.socket] = []
    try:
        result["rss_start_kib"] = server.rss_kib()
        # A few calls on one connection, so that lazily built state counts
        # in the baseline and not against the first idle connections.
        run_load(kind, server.port, 1, 4, BODY, 0.0, 0.3)
        rss0 = settle(server)
        result["rss0_kib"] = rss0
        idle: dict[int, Any] = {}
        for count in sorted(counts):
            t0 = time.monotonic()
            socks += open_idle(kind, server.port, count - len(socks), echo_each)
            opened = time.monotonic() - t0
            rss = settle(server)
            idle[count] = {
                "rss_kib": rss,
                "per_connection_kib": (rss - rss0) / count,
                "open_seconds": round(opened, 2),
            }
            print(
                f"{LABELS[kind]}: {count:,} idle connections: RSS {rss:,} KiB "
                f"({(rss - rss0) / count:.2f} KiB each)",
                file=sys.stderr,
            )
        result["idle"] = idle
        for sock in socks:
            sock.close()
        socks = []
        result["rss_after_close_kib"] = settle(server, 2.0)

        samples: list[int] = []
        load = run_load(
            kind, server.port, 32, 16, BODY, 0.5, load_seconds,
            server_pid=server.pid, tick=lambda: samples.append(server.rss_kib()),
        )  # fmt: skip
        result["load_32x16"] = {
            "rps": load.rps,
            "rss_max_kib": max(samples) if samples else None,
            "rss_end_kib": server.rss_kib(),
        }
        print(
            f"{LABELS[kind]}: under 32x16 load ({load.rps:,.0f} req/s): RSS up to "
            f"{max(samples):,} KiB",
            file=sys.stderr,
        )
    finally:
        for sock in socks:
            sock.close()
        server.stop()
    server.cleanup_log()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Server RSS with idle connections and load.")
    parser.add_argument("--servers", default=",".join(ALL_SERVERS))
    parser.add_argument("--connections", default="1000,10000", help="idle counts, ascending")
    parser.add_argument(
        "--echo-each", action="store_true",
        help="also make one call on each of our idle connections after the handshake",
    )  # fmt: skip
    parser.add_argument("--load-seconds", type=float, default=3.0)
    parser.add_argument("--json", default=None)
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args(argv)
    kinds = [k for k in args.servers.split(",") if k]
    for k in kinds:
        if k not in ALL_SERVERS:
            raise SystemExit(f"unknown server {k!r}")
    if "line" in kinds and not line_format_available():
        kinds.remove("line")
        print("skipping line: LineFormat is not importable", file=sys.stderr)
    counts = sorted(int(c) for c in args.connections.split(",") if c)
    limit = raise_nofile()
    if counts and counts[-1] + 100 > limit:
        raise SystemExit(f"RLIMIT_NOFILE is {limit}: too low for {counts[-1]:,} connections")
    server_cpu, load_cpu = (None, None) if args.no_pin else cpus()
    pin_self(load_cpu)

    results = [
        measure(kind, counts, server_cpu, args.echo_each, args.load_seconds) for kind in kinds
    ]

    print(
        "\nServer RSS (KiB); per connection = (RSS_N - RSS_0) / N, after one warm-up "
        "connection; idle connections proven accepted "
        "(ours: binary handshake; others: one echo)."
    )
    header = ["server", "RSS_0"]
    for count in counts:
        header += [f"RSS {count:,}", f"KiB/conn @{count:,}"]
    header += ["after close", "32x16 max", "32x16 req/s"]
    rows = []
    for r in results:
        row = [LABELS[r["server"]], fmt_num(r["rss0_kib"])]
        for count in counts:
            idle = r["idle"][count]
            row += [fmt_num(idle["rss_kib"]), fmt_num(idle["per_connection_kib"], 2)]
        load = r["load_32x16"]
        row += [
            fmt_num(r["rss_after_close_kib"]),
            fmt_num(load["rss_max_kib"]),
            fmt_num(load["rps"]),
        ]
        rows.append(row)
    print(table(rows, header))
    if args.json:
        data = {"machine": machine_info(), "counts": counts, "results": results}
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
