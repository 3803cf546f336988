"""
The load generator: raw non-blocking sockets and one ``selectors`` loop,
with every protocol's requests pre-encoded, so that it costs far less CPU
per request than any server it measures.

Closed loop: each connection keeps ``window`` requests in flight; whenever
answers arrive, as many new requests go out, in one ``send``.  Latency is
per request, from the moment its bytes were handed to the kernel to the
moment the read that completed its answer returned (one clock reading per
read or write, shared by the requests it carries).

Per-connection wire helpers, one per server kind:

- ``binary``: our preface and SETTINGS, then REQUEST frames (``>IBBI``
  header, u16 method length, ``echo``, body) with ids 1, 2, 3, ...; answers
  are matched by id from the 10-byte header.
- ``line``: ``echo <body>\\n``; answers ``OK <body>\\r\\n`` in order.
- ``amp``: pre-encoded boxes ``_ask``/``_command: Echo``/``body``, with a
  fresh ``_ask`` each; answer boxes are walked key by key and matched by
  ``_answer``.
- ``ceiling``: 4-byte-length-prefixed frames, answered in order.
"""

from __future__ import annotations

import ctypes
import gc
import selectors
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from _common import cpu_seconds, machine_busy_seconds, percentile

_HDR = struct.Struct(">IBBI")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_SETTING = struct.Struct(">HI")

PREFACE = b"\x89RQR\r\n\x1a\n" + _U16.pack(1)
SETTINGS_FRAME = _HDR.pack(12, 1, 0, 0) + _SETTING.pack(1, 16 * 1024 * 1024) + _SETTING.pack(2, 100)

#: Bytes asked of each recv(); Twisted reads 64 KiB at a time too.
RECV_SIZE = 64 * 1024


def quiet_malloc() -> None:
    """
    Keep glibc from serving large buffers with mmap and giving memory back
    at once: with 16 KiB bodies the generator would otherwise spend more
    time in page faults than the server it measures.  No-op elsewhere.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 * 1024 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 * 1024 * 1024)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


class ProtocolFailure(Exception):
    """The server said something the generator did not expect."""


class BinaryWire:
    """Our binary format, version 1."""

    def __init__(self, body: bytes) -> None:
        method = b"echo"
        self._tail = _U16.pack(len(method)) + method + body
        self._plen = len(self._tail)
        self._blen = len(body)
        self._rid = 0
        self._sent: dict[int, float] = {}
        self._buf = b""
        self.errors = 0

    def handshake(self) -> bytes:
        return PREFACE + SETTINGS_FRAME

    def handshake_done(self, data: bytes) -> bool:
        """Feed handshake bytes; :returns: True once the server's SETTINGS is in."""
        self._buf += data
        if len(self._buf) < 10:
            return False
        length, ftype, _, _ = _HDR.unpack_from(self._buf)
        if ftype != 1:
            raise ProtocolFailure(f"expected SETTINGS, got frame type {ftype}: {self._buf[:80]!r}")
        if len(self._buf) < 10 + length:
            return False
        self._buf = self._buf[10 + length :]
        if self._buf:
            raise ProtocolFailure("bytes after the server's SETTINGS")
        return True

    def requests(self, k: int, now: float) -> bytes:
        rid = self._rid
        sent = self._sent
        pack = _HDR.pack
        plen = self._plen
        tail = self._tail
        parts = []
        append = parts.append
        for _ in range(k):
            rid += 1
            sent[rid] = now
            append(pack(plen, 2, 0, rid))
            append(tail)
        self._rid = rid
        return b"".join(parts)

    def feed(self, data: bytes, now: float, lat: list[float] | None) -> int:
        buf = self._buf + data if self._buf else data
        n = len(buf)
        pos = 0
        done = 0
        sent = self._sent
        unpack_from = _HDR.unpack_from
        blen = self._blen
        while n - pos >= 10:
            length, ftype, _, rid = unpack_from(buf, pos)
            end = pos + 10 + length
            if end > n:
                break
            pos = end
            if ftype == 3 or ftype == 4:
                t0 = sent.pop(rid)
                if ftype != 3 or length != blen:
                    self.errors += 1
                if lat is not None:
                    lat.append(now - t0)
                done += 1
            elif ftype == 8:
                raise ProtocolFailure(f"GOAWAY from the server: {buf[end - length : end]!r}")
        self._buf = buf[pos:] if pos < n else b""
        return done


class _FifoWire:
    """
    Answers come in request order and each one is known in advance (an echo
    of a fixed request): a FIFO of (send time, count) runs, one per send.

    A read that holds ``k`` whole expected answers is checked with one
    comparison against the expected bytes repeated ``k`` times, and the
    ``k`` latencies are recorded run by run, so the generator's cost per
    answer is a few C-level operations, not a Python loop iteration.
    Anything else falls back to :meth:`_parse`, which walks the bytes one
    message at a time.
    """

    def __init__(self, request: bytes, answer: bytes) -> None:
        self._request = request
        self._answer = answer
        self._alen = len(answer)
        self._runs: deque[list[Any]] = deque()
        self._buf = b""
        self.errors = 0
        # k -> request * k and answer * k: k never exceeds the window, so
        # these stay small, and sending or checking k messages copies nothing.
        self._requests: dict[int, bytes] = {}
        self._answers: dict[int, bytes] = {}

    def handshake(self) -> bytes:
        return b""

    def handshake_done(self, data: bytes) -> bool:
        raise ProtocolFailure(f"unexpected bytes before any request: {data[:80]!r}")

    def requests(self, k: int, now: float) -> bytes:
        self._runs.append([now, k])
        data = self._requests.get(k)
        if data is None:
            data = self._requests[k] = self._request * k
        return data

    def feed(self, data: bytes, now: float, lat: list[float] | None) -> int:
        buf = self._buf + data if self._buf else data
        n = len(buf)
        k = n // self._alen
        used = k * self._alen
        expected = self._answers.get(k)
        if expected is None and k <= 4096:
            expected = self._answers[k] = self._answer * k
        if k and expected is not None and buf.startswith(expected):
            self._buf = buf[used:] if used < n else b""
        else:
            k, used = self._parse(buf)
            self._buf = buf[used:] if used < n else b""
        if k:
            self._complete(k, now, lat)
        return k

    def _complete(self, k: int, now: float, lat: list[float] | None) -> None:
        runs = self._runs
        while k:
            run = runs[0]
            take = run[1] if run[1] <= k else k
            if lat is not None:
                lat.extend(repeat(now - run[0], take))
            if take == run[1]:
                runs.popleft()
            else:
                run[1] -= take
            k -= take

    def _parse(self, buf: bytes) -> tuple[int, int]:
        """:returns: (whole answers in ``buf``, bytes they take); counts wrong ones."""
        raise NotImplementedError


class CeilingWire(_FifoWire):
    """4-byte big-endian length, then the body; the answer is the request."""

    def __init__(self, body: bytes) -> None:
        frame = _U32.pack(len(body)) + body
        super().__init__(frame, frame)

    def _parse(self, buf: bytes) -> tuple[int, int]:
        n = len(buf)
        pos = 0
        done = 0
        while n - pos >= 4:
            (length,) = _U32.unpack_from(buf, pos)
            end = pos + 4 + length
            if end > n:
                break
            if buf[pos:end] != self._answer:
                self.errors += 1
            pos = end
            done += 1
        return done, pos


class LineWire(_FifoWire):
    """``echo <body>`` LF, answered by ``OK <body>`` CR LF, in order."""

    def __init__(self, body: bytes) -> None:
        if any(c in body for c in b"\\\r\n"):
            raise ValueError("line bodies here must need no escaping")
        super().__init__(b"echo " + body + b"\n", b"OK " + body + b"\r\n")

    def _parse(self, buf: bytes) -> tuple[int, int]:
        pos = 0
        done = 0
        while True:
            lf = buf.find(b"\n", pos)
            if lf < 0:
                break
            if buf[pos : lf + 1] != self._answer:
                self.errors += 1
            pos = lf + 1
            done += 1
        return done, pos


class AMPWire:
    """AMP boxes: ``_ask``, ``_command: Echo``, ``body``; answers by ``_answer``."""

    def __init__(self, body: bytes) -> None:
        if len(body) > 0xFFFF:
            raise ValueError("AMP values are at most 65535 bytes")
        self._head = _U16.pack(4) + b"_ask"
        self._rest = (
            _U16.pack(8) + b"_command" + _U16.pack(4) + b"Echo"
            + _U16.pack(4) + b"body" + _U16.pack(len(body)) + body
            + b"\x00\x00"
        )  # fmt: skip
        self._blen = len(body)
        self._n = 0
        self._sent: dict[bytes, float] = {}
        self._buf = b""
        self.errors = 0

    def handshake(self) -> bytes:
        return b""

    def handshake_done(self, data: bytes) -> bool:
        raise ProtocolFailure(f"unexpected bytes before any request: {data[:80]!r}")

    def requests(self, k: int, now: float) -> bytes:
        n = self._n
        sent = self._sent
        head = self._head
        rest = self._rest
        pack = _U16.pack
        parts = []
        append = parts.append
        for _ in range(k):
            n += 1
            ask = b"%x" % n
            sent[ask] = now
            append(head)
            append(pack(len(ask)))
            append(ask)
            append(rest)
        self._n = n
        return b"".join(parts)

    def feed(self, data: bytes, now: float, lat: list[float] | None) -> int:
        buf = self._buf + data if self._buf else data
        n = len(buf)
        pos = 0
        done = 0
        sent = self._sent
        while True:
            # Walk one box: (u16 key length, key, u16 value length, value)*
            # then an empty key.
            p = pos
            answer = None
            ok = False
            complete = False
            while p + 2 <= n:
                klen = (buf[p] << 8) | buf[p + 1]
                p += 2
                if klen == 0:
                    complete = True
                    break
                kend = p + klen
                if kend + 2 > n:
                    break
                vlen = (buf[kend] << 8) | buf[kend + 1]
                vstart = kend + 2
                vend = vstart + vlen
                if vend > n:
                    break
                key = buf[p:kend]
                if key == b"_answer":
                    answer = buf[vstart:vend]
                elif key == b"_error":
                    answer = buf[vstart:vend]
                    self.errors += 1
                elif key == b"body":
                    ok = vlen == self._blen
                p = vend
            if not complete:
                break
            pos = p
            if answer is None:
                raise ProtocolFailure(f"AMP box with no _answer: {buf[:80]!r}")
            if not ok:
                self.errors += 1
            t0 = sent.pop(answer)
            if lat is not None:
                lat.append(now - t0)
            done += 1
        self._buf = buf[pos:] if pos < n else b""
        return done


WIRES: dict[str, Callable[[bytes], Any]] = {
    "binary": BinaryWire,
    "binary-py": BinaryWire,
    "line": LineWire,
    "amp": AMPWire,
    "ceiling": CeilingWire,
}


@dataclass
class _Conn:
    sock: socket.socket
    wire: Any
    out: bytes = b""
    writing: bool = False


def open_connections(
    kind: str, port: int, count: int, body: bytes, timeout: float = 10.0
) -> list[_Conn]:
    """
    Open ``count`` connections and finish each one's handshake (binary).

    :returns: the connections, non-blocking, with nothing in flight.
    """
    conns = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            wire = WIRES[kind](body)
            conns.append(_Conn(sock, wire))
            hello = wire.handshake()
            if hello:
                sock.sendall(hello)
                while True:
                    data = sock.recv(4096)
                    if not data:
                        raise ProtocolFailure("server closed during the handshake")
                    if wire.handshake_done(data):
                        break
            sock.setblocking(False)
    except BaseException:
        close_connections(conns)
        raise
    return conns


def close_connections(conns: list[_Conn]) -> None:
    for conn in conns:
        try:
            conn.sock.close()
        except OSError:
            pass


@dataclass
class LoadResult:
    """What one run measured (the measurement window only)."""

    requests: int
    seconds: float
    latencies: list[float] = field(repr=False)
    gen_cpu: float  # the generator's CPU seconds over the window
    server_cpu: float | None  # the server's, if its pid was given
    errors: int
    other_cpu: float = 0.0  # every other process's (someone else's job on the machine)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 4),
            "rps": self.rps,
            "p50_ms": percentile(lat, 0.50) * 1000,
            "p90_ms": percentile(lat, 0.90) * 1000,
            "p99_ms": percentile(lat, 0.99) * 1000,
            "p999_ms": percentile(lat, 0.999) * 1000,
            "max_ms": (lat[-1] * 1000) if lat else float("nan"),
            "gen_cpu_pct": 100.0 * self.gen_cpu / self.seconds if self.seconds else 0.0,
            "server_cpu_pct": (
                100.0 * self.server_cpu / self.seconds
                if self.server_cpu is not None and self.seconds
                else None
            ),
            "server_us_per_req": (
                1e6 * self.server_cpu / self.requests
                if self.server_cpu is not None and self.requests
                else None
            ),
            "gen_us_per_req": 1e6 * self.gen_cpu / self.requests if self.requests else None,
            "other_cpu_pct": 100.0 * self.other_cpu / self.seconds if self.seconds else 0.0,
            "errors": self.errors,
        }


def run_load(
    kind: str,
    port: int,
    connections: int,
    window: int,
    body: bytes,
    warmup: float,
    duration: float,
    server_pid: int | None = None,
    tick: Callable[[], None] | None = None,
    tick_interval: float = 0.25,
    stall_timeout: float = 10.0,
) -> LoadResult:
    """
    Drive ``connections`` x ``window`` requests in flight for ``warmup``
    then ``duration`` seconds and measure the second part.

    :param tick: called about every ``tick_interval`` seconds (memory
        sampling).
    :raises ProtocolFailure: if the server misbehaves or stalls.
    """
    quiet_malloc()
    conns = open_connections(kind, port, connections, body)
    sel = selectors.EpollSelector()
    perf = time.perf_counter
    lat: list[float] = []
    gc_was = gc.isenabled()
    gc.disable()  # the loop makes no cycles; keep collector pauses out of latencies
    try:
        for conn in conns:
            sel.register(conn.sock, selectors.EVENT_READ, conn)
        start = perf()
        measure_at = start + warmup
        end_at = measure_at + duration
        measuring = False
        completed = 0
        cpu0 = 0.0
        busy0 = 0.0
        server_cpu0 = 0.0
        window_start = 0.0
        last_progress = start
        next_tick = start
        for conn in conns:
            _send(sel, conn, conn.wire.requests(window, perf()))
        recv_size = RECV_SIZE
        while True:
            events = sel.select(0.05)
            now = perf()
            if not measuring and now >= measure_at:
                measuring = True
                window_start = now
                cpu0 = time.process_time()
                busy0 = machine_busy_seconds()
                if server_pid is not None:
                    server_cpu0 = cpu_seconds(server_pid)
            if now >= end_at:
                break
            if tick is not None and now >= next_tick:
                tick()
                next_tick = now + tick_interval
            if not events:
                if now - last_progress > stall_timeout:
                    raise ProtocolFailure(f"no answer for {stall_timeout} s")
                continue
            record = lat if measuring else None
            for key, mask in events:
                conn = key.data
                if mask & selectors.EVENT_WRITE:
                    _flush(sel, conn)
                if mask & selectors.EVENT_READ:
                    try:
                        data = conn.sock.recv(recv_size)
                    except BlockingIOError:
                        continue
                    if not data:
                        raise ProtocolFailure("the server closed a connection")
                    now = perf()
                    done = conn.wire.feed(data, now, record)
                    if done:
                        last_progress = now
                        if measuring:
                            completed += done
                        _send(sel, conn, conn.wire.requests(done, perf()))
        window_end = perf()
        cpu1 = time.process_time()
        server_cpu = cpu_seconds(server_pid) - server_cpu0 if server_pid is not None else None
        busy = machine_busy_seconds() - busy0
        other = max(0.0, busy - (cpu1 - cpu0) - (server_cpu or 0.0))
        errors = sum(conn.wire.errors for conn in conns)
        return LoadResult(
            requests=completed,
            seconds=window_end - window_start,
            latencies=lat,
            gen_cpu=cpu1 - cpu0,
            server_cpu=server_cpu,
            errors=errors,
            other_cpu=other,
        )
    finally:
        if gc_was:
            gc.enable()
        sel.close()
        close_connections(conns)


def _send(sel: selectors.BaseSelector, conn: _Conn, data: bytes) -> None:
    if conn.out:
        conn.out += data
        return
    try:
        sent = conn.sock.send(data)
    except BlockingIOError:
        sent = 0
    if sent < len(data):
        conn.out = data[sent:]
        if not conn.writing:
            conn.writing = True
            sel.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)


def _flush(sel: selectors.BaseSelector, conn: _Conn) -> None:
    if conn.out:
        try:
            sent = conn.sock.send(conn.out)
        except BlockingIOError:
            return
        conn.out = conn.out[sent:]
    if not conn.out and conn.writing:
        conn.writing = False
        sel.modify(conn.sock, selectors.EVENT_READ, conn)
