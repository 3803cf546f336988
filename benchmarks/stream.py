"""
Streaming throughput: messages per second and MB/s of a server stream of
64-byte and of 16 KiB messages, beside a unary call per message carrying
the same payload.

    python benchmarks/stream.py            # 3 repetitions of 0.5 s + 3 s per case
    python benchmarks/stream.py --quick    # 1 repetition of 0.25 s + 1 s

The server is ``_servers.py binary --streams`` in its own process, pinned to
the first CPU: our ``ServerFactory`` and ``Router`` with

- ``firehose``, an async generator that yields the same SIZE-byte message
  for ever (each ``yield`` waits for credit, the router's own path), until
  the client cancels;
- ``payload``, a unary method answering SIZE bytes.

The load generator is this process, pinned to the second CPU: raw
non-blocking sockets, one ``selectors`` loop, frames parsed by hand from
their 10-byte headers and nothing decoded past them, as ``_loadgen.py``.

- **stream, 64 KiB credit**: one connection, one server-streaming call.  The generator
  takes each message as it arrives and grants its credit back as the core
  does (on the call once half its 64 KiB is owed, on the connection once
  half of 1 MiB is), so the server is never held back by a slow reader.
- **stream, 1 MiB credit**: the same, the client granting 1 MiB per call
  and 2 MiB on the connection (``Limits(stream_credit=2**20,
  connection_credit=2**21)``): with 16 KiB messages, 64 KiB of credit is
  four messages in flight, and the stream waits on round trips.
- **unary**: one connection with 64 ``payload`` calls in flight (closed
  loop: each answer sends the next request), the best a single connection
  of unary calls does.

For each: messages (or answers) per second, payload MB/s (10^6 bytes), the
server's CPU and the generator's (share of one core, and CPU microseconds
per message).  A generator below 100% was waiting for the server.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (
    ServerProcess,
    cpu_seconds,
    cpus,
    fmt_num,
    fmt_spread,
    machine_busy_seconds,
    machine_info,
    pin_self,
    spread,
    table,
)

_HDR = struct.Struct(">IBBI")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_SETTING = struct.Struct(">HI")

# Frame types and flags (docs/protocol.md, "Frames"); tests/test_bench_stream.py
# checks them against twisted_reqresp._core.binary.
SETTINGS, REQUEST, RESPONSE, ERROR, CANCEL, GOAWAY = 0x1, 0x2, 0x3, 0x4, 0x5, 0x8
STREAM_MESSAGE, CREDIT = 0xA, 0xC
FLAG_SERVER_STREAM = 0x08
PREFACE = b"\x89RQR\r\n\x1a\n" + _U16.pack(1)

#: The credits the generator offers, as a ``twistd reqresp`` client would.
STREAM_CREDIT = 64 * 1024
CONNECTION_CREDIT = 1024 * 1024
#: Message sizes, in bytes.
SIZES = {"64 B": 64, "16 KiB": 16 * 1024}
#: Unary calls in flight on the one connection.
WINDOW = 64
RECV_SIZE = 256 * 1024


class Failure(Exception):
    """The server said something the generator did not expect."""


def _settings_frame(credit: int, connection_credit: int) -> bytes:
    entries = [(0x1, 16 * 1024 * 1024), (0x2, 100), (0x3, credit), (0x4, connection_credit)]
    payload = b"".join(_SETTING.pack(k, v) for k, v in entries)
    return _HDR.pack(len(payload), SETTINGS, 0, 0) + payload


def _request(rid: int, method: bytes, body: bytes, flags: int = 0) -> bytes:
    payload = _U16.pack(len(method)) + method + body
    return _HDR.pack(len(payload), REQUEST, flags, rid) + payload


def _connect(
    port: int, credit: int = STREAM_CREDIT, connection_credit: int = CONNECTION_CREDIT
) -> socket.socket:
    """Connect and finish the handshake; :returns: the socket, non-blocking."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(PREFACE + _settings_frame(credit, connection_credit))
    buf = b""
    while len(buf) < 10 or len(buf) < 10 + _HDR.unpack_from(buf)[0]:
        data = sock.recv(4096)
        if not data:
            raise Failure("the server closed during the handshake")
        buf += data
    length, ftype, _, _ = _HDR.unpack_from(buf)
    settings = buf[10 : 10 + length]
    if ftype != SETTINGS:
        raise Failure(f"expected SETTINGS, got frame type {ftype}")
    keys = {_SETTING.unpack_from(settings, i)[0] for i in range(0, len(settings), 6)}
    if 0x3 not in keys:
        raise Failure("the server does not offer streaming calls")
    sock.setblocking(False)
    return sock


class _Measure:
    """The measurement window: messages, bytes and CPU between two instants."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.messages = 0
        self.payload = 0
        self.measuring = False

    def start(self) -> None:
        self.measuring = True
        self.messages = self.payload = 0
        self.t0 = time.perf_counter()
        self.cpu0 = time.process_time()
        self.server0 = cpu_seconds(self.server_pid)
        self.busy0 = machine_busy_seconds()

    def result(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.t0
        gen = time.process_time() - self.cpu0
        server = cpu_seconds(self.server_pid) - self.server0
        other = max(0.0, machine_busy_seconds() - self.busy0 - gen - server)
        n = self.messages or 1
        return {
            "messages": self.messages,
            "seconds": seconds,
            "msgs_per_s": self.messages / seconds,
            "mb_per_s": self.payload / seconds / 1e6,
            "server_cpu_pct": 100 * server / seconds,
            "gen_cpu_pct": 100 * gen / seconds,
            "other_cpu_pct": 100 * other / seconds,
            "server_us_per_msg": 1e6 * server / n,
            "gen_us_per_msg": 1e6 * gen / n,
        }


def _read_for(
    sock: socket.socket,
    measure: _Measure,
    warmup: float,
    duration: float,
    what: str,
    on_data: Callable[[bytes], int],
) -> None:
    """
    Read ``sock`` for ``warmup + duration`` seconds, starting ``measure``
    after the warm-up; ``on_data(buffer)`` takes the whole frames at the
    buffer's start and returns how many bytes it used.

    :raises Failure: if the server closes, or sends no ``what`` for 10 s.
    """
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    buf = b""
    start = last = time.perf_counter()
    while True:
        now = time.perf_counter()
        if not measure.measuring and now >= start + warmup:
            measure.start()
        if now >= start + warmup + duration:
            return
        if not sel.select(0.05):
            if now - last > 10:
                raise Failure(f"no {what} for 10 s")
            continue
        try:
            data = sock.recv(RECV_SIZE)
        except BlockingIOError:
            continue
        if not data:
            raise Failure("the server closed the connection")
        last = now
        buf = buf + data if buf else data
        buf = buf[on_data(buf) :]


def run_stream(
    port: int,
    server_pid: int,
    size: int,
    warmup: float,
    duration: float,
    credit: int = STREAM_CREDIT,
    connection_credit: int = CONNECTION_CREDIT,
) -> Any:
    """One server-streaming call of SIZE-byte messages, read as fast as they come."""
    sock = _connect(port, credit, connection_credit)
    measure = _Measure(server_pid)
    try:
        sock.sendall(_request(1, b"firehose", b"%d" % size, FLAG_SERVER_STREAM))
        owed_call = owed_conn = 0

        def on_data(buf: bytes) -> int:
            nonlocal owed_call, owed_conn
            pos, n = 0, len(buf)
            count = payload = 0
            while n - pos >= 10:
                length, ftype, _, _ = _HDR.unpack_from(buf, pos)
                end = pos + 10 + length
                if end > n:
                    break
                if ftype == STREAM_MESSAGE:
                    count += 1
                    payload += length
                elif ftype in (ERROR, GOAWAY, RESPONSE):
                    raise Failure(f"frame type {ftype} from the server: {buf[pos:end][:200]!r}")
                pos = end
            if measure.measuring:
                measure.messages += count
                measure.payload += payload
            # Give the credit back at once, in the core's batches.
            cost = payload + 10 * count
            owed_call += cost
            owed_conn += cost
            grants = b""
            if owed_call * 2 >= credit:
                grants += _HDR.pack(4, CREDIT, 0, 1) + _U32.pack(owed_call)
                owed_call = 0
            if owed_conn * 2 >= connection_credit:
                grants += _HDR.pack(4, CREDIT, 0, 0) + _U32.pack(owed_conn)
                owed_conn = 0
            if grants:
                sock.setblocking(True)
                sock.sendall(grants)
                sock.setblocking(False)
            return pos

        _read_for(sock, measure, warmup, duration, "message", on_data)
        result = measure.result()
        sock.setblocking(True)
        sock.sendall(_HDR.pack(0, CANCEL, 0, 1))
        return result
    finally:
        sock.close()


def run_unary(port: int, server_pid: int, size: int, warmup: float, duration: float) -> Any:
    """WINDOW ``payload`` calls in flight on one connection, closed loop."""
    sock = _connect(port)
    measure = _Measure(server_pid)
    body = b"%d" % size
    try:
        rid = 0

        def requests(k: int) -> bytes:
            nonlocal rid
            parts = []
            for _ in range(k):
                rid += 1
                parts.append(_request(rid, b"payload", body))
            return b"".join(parts)

        sock.setblocking(True)
        sock.sendall(requests(WINDOW))
        sock.setblocking(False)

        def on_data(buf: bytes) -> int:
            pos, n = 0, len(buf)
            done = payload = 0
            while n - pos >= 10:
                length, ftype, _, _ = _HDR.unpack_from(buf, pos)
                end = pos + 10 + length
                if end > n:
                    break
                if ftype != RESPONSE or length != size:
                    raise Failure(f"frame type {ftype} from the server: {buf[pos:end][:200]!r}")
                done += 1
                payload += length
                pos = end
            if measure.measuring:
                measure.messages += done
                measure.payload += payload
            if done:
                # The window is small: a blocking send never waits long.
                sock.setblocking(True)
                sock.sendall(requests(done))
                sock.setblocking(False)
            return pos

        _read_for(sock, measure, warmup, duration, "answer", on_data)
        return measure.result()
    finally:
        sock.close()


def run_stream_1m(port: int, server_pid: int, size: int, warmup: float, duration: float) -> Any:
    """As :func:`run_stream`, the client granting 1 MiB per call and 2 MiB per connection."""
    return run_stream(port, server_pid, size, warmup, duration, 1024 * 1024, 2 * 1024 * 1024)


RUNNERS = {"stream": run_stream, "stream_1m": run_stream_1m, "unary": run_unary}
LABELS = {
    "stream": "stream, 64 KiB credit",
    "stream_1m": "stream, 1 MiB credit",
    "unary": f"unary, {WINDOW} in flight",
}


def _median(runs: list[dict[str, Any]]) -> float:
    return spread([r["msgs_per_s"] for r in runs])["median"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 repetition, 0.25 s + 1 s per run")
    parser.add_argument("--repeat", type=int, default=None, help="repetitions (default 3)")
    parser.add_argument("--duration", type=float, default=None, help="measured seconds (3)")
    parser.add_argument("--warmup", type=float, default=None, help="unmeasured seconds first (0.5)")
    parser.add_argument("--json", default=None, help="write every measurement here")
    parser.add_argument("--no-pin", action="store_true", help="leave both processes unpinned")
    args = parser.parse_args(argv)
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    duration = args.duration if args.duration is not None else (1.0 if args.quick else 3.0)
    warmup = args.warmup if args.warmup is not None else (0.25 if args.quick else 0.5)

    server_cpu, load_cpu = (None, None) if args.no_pin else cpus()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        size: {kind: [] for kind in RUNNERS} for size in SIZES
    }
    server = ServerProcess("binary", cpu=server_cpu, extra=["--streams"]).start()
    try:
        pinned = pin_self(load_cpu)
        for rep in range(repeat):
            for size_name, size in SIZES.items():
                for kind, runner in RUNNERS.items():
                    r = runner(server.port, server.pid, size, warmup, duration)
                    results[size_name][kind].append(r)
                    print(
                        f"rep {rep + 1}/{repeat} {size_name:<6} {LABELS[kind]:<22} "
                        f"{r['msgs_per_s']:>9,.0f} msg/s {r['mb_per_s']:>8,.1f} MB/s  "
                        f"server CPU {r['server_cpu_pct']:.0f}%  "
                        f"generator CPU {r['gen_cpu_pct']:.0f}%  others {r['other_cpu_pct']:.0f}%",
                        file=sys.stderr,
                    )
                    time.sleep(0.1)
    finally:
        server.stop()
    server.cleanup_log()

    where = f"server on CPU {server_cpu}, generator on CPU {load_cpu}" if pinned else "not pinned"
    print(
        f"\nStreaming vs a unary call per message, one connection: median [min-max] of "
        f"{repeat} run(s) of {duration:g} s after {warmup:g} s; {where}."
    )
    rows = []
    for size_name in SIZES:
        for kind in RUNNERS:
            runs = results[size_name][kind]

            def s(key: str, runs: list[dict[str, Any]] = runs) -> dict[str, float]:
                return spread([r[key] for r in runs])

            rows.append(
                [
                    f"{size_name}, {LABELS[kind]}",
                    fmt_spread(s("msgs_per_s")),
                    fmt_spread(s("mb_per_s"), 1),
                    f"{fmt_num(s('server_cpu_pct')['median'])}%",
                    fmt_num(s("server_us_per_msg")["median"], 2),
                    f"{fmt_num(s('gen_cpu_pct')['median'])}%",
                    fmt_num(s("gen_us_per_msg")["median"], 2),
                ]
            )
    print(
        table(
            rows,
            [
                "case",
                "messages/s",
                "MB/s",
                "server CPU",
                "server us/msg",
                "generator CPU",
                "generator us/msg",
            ],
        )
    )
    for size_name in SIZES:
        unary = spread([r["msgs_per_s"] for r in results[size_name]["unary"]])["median"]
        ratios = ", ".join(
            f"{LABELS[kind]} {_median(results[size_name][kind]) / unary:.2f}x"
            for kind in ("stream", "stream_1m")
        )
        print(f"{size_name}, messages/s against unary calls: {ratios}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": machine_info(), "results": results}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
