"""
A slow consumer over real sockets: a real ``twistd reqresp`` server asked
for a 1 GiB server stream, read by a client that takes about 1 MiB/s for a
few seconds.  The server's RSS (``VmRSS`` in ``/proc/PID/status``) stays
flat: what it holds is bounded by the call's credit, not by the GiB it was
asked for.  Then the client cancels, and the connection goes on serving.

The client is this process, on a blocking socket through the sans-IO core
(no reactor), so that it reads exactly as slowly as the test says.
docs/performance.md ("Streaming") gives the figures this test prints.
"""

from __future__ import annotations

import select
import socket
import sys
import time
from collections import deque

from e2e import READ_TIMEOUT, ReactorMixin, responder_env, start
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import Limits
from twisted_reqresp.wire import (
    BinaryFormat,
    Connection,
    Response,
    Role,
    Settings,
    StreamMessage,
)

#: What the client asks the server to stream: 1 GiB in 16 KiB messages.
TOTAL = 1024**3
SIZE = 16 * 1024
#: How fast the client takes messages, and for how long.
RATE = 1024 * 1024
SECONDS = 4.0
#: The credit both sides offer per call (twistd's default).
CREDIT = 64 * 1024
#: How much the server's RSS may grow while it streams: room for the
#: allocator's noise and first-use allocations, under a hundredth of what
#: it was asked for.  A server that ignored the credit holds the stream in
#: its write buffers: patched to, it grew by 1.9 GB in these 4 s.
RSS_BOUND_KIB = 8 * 1024


def rss_kib(pid: int) -> int:
    """:returns: the resident set size of process ``pid``, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


class SlowConsumerTests(ReactorMixin, SynchronousTestCase):
    """A client reading a 1 GiB stream at 1 MiB/s keeps the server's memory flat."""

    def setUp(self) -> None:
        self.server = start(
            self,
            "--responder",
            "e2e_stream_responder:router",
            env=responder_env(),
            reactor=self.reactor,
        )
        self.sock = socket.create_connection(("127.0.0.1", self.server.port), READ_TIMEOUT)
        self.addCleanup(self.sock.close)
        self.conn = Connection(Role.CLIENT, BinaryFormat(), Limits(stream_credit=CREDIT))
        self.events: deque[object] = deque()
        self.sock.sendall(self.conn.data_to_send())
        self._read_until(Settings)

    def _pump(self, wait: float) -> None:
        """Send what the core has to send, then read what arrives within ``wait`` seconds."""
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)
        ready, _, _ = select.select([self.sock], [], [], wait)
        if ready:
            data = self.sock.recv(256 * 1024)
            self.assertTrue(data, "the server closed the connection")
            self.conn.receive_data(data)
            while (event := self.conn.next_event()) is not None:
                self.events.append(event)

    def _read_until(self, kind: type) -> object:
        """:returns: the next event of type ``kind``; stream messages before it are taken."""
        deadline = time.monotonic() + READ_TIMEOUT
        while time.monotonic() < deadline:
            while self.events:
                event = self.events.popleft()
                if isinstance(event, kind):
                    return event
                if isinstance(event, StreamMessage):
                    self.conn.acknowledge(event.request_id, len(event.body) + 10)
            self._pump(0.05)
        raise AssertionError(f"no {kind.__name__} within {READ_TIMEOUT} s")

    def test_rss_flat(self) -> None:
        """Over SECONDS of a 1 GiB stream read at 1 MiB/s the server's RSS grows by less
        than RSS_BOUND_KIB, the client never holds more than its credit, and after a
        cancel the connection still answers."""
        pid = self.server.process.pid
        rid = self.conn.start_stream(
            "firehose", b"%d %d" % (TOTAL, SIZE), client_stream=False, server_stream=True
        )
        held: deque[int] = deque()  # the sizes of messages received, not yet taken
        received = consumed = 0
        most_held = 0
        samples: list[tuple[float, int]] = []
        started = time.monotonic()
        next_sample = started
        while (now := time.monotonic()) - started < SECONDS:
            if now >= next_sample:
                samples.append((round(now - started, 2), rss_kib(pid)))
                next_sample += 0.25
            self._pump(0.01)
            while self.events:
                event = self.events.popleft()
                if isinstance(event, StreamMessage):
                    self.assertEqual(event.request_id, rid)
                    held.append(len(event.body))
                    received += len(event.body)
                else:
                    self.fail(f"unexpected {event!r}")
            most_held = max(most_held, self.conn.unacknowledged)
            # Take messages at RATE: only what is taken is given back as credit.
            while held and consumed + held[0] <= RATE * (time.monotonic() - started):
                size = held.popleft()
                consumed += size
                self.conn.acknowledge(rid, size + 10)
        elapsed = time.monotonic() - started
        self.conn.send_cancel(rid)
        again = self.conn.start_stream("firehose", b"3 1", client_stream=False, server_stream=True)
        answer = self._read_until(Response)
        self.assertEqual(answer, Response(request_id=again, body=b""))
        self.assertIsNone(self.server.process.poll())

        baseline = samples[0][1]  # taken before the REQUEST left
        peak = max(kib for _, kib in samples)
        report = (
            f"slow consumer ({self.reactor or 'default'} reactor): asked {TOTAL >> 20} MiB, "
            f"consumed {consumed / 2**20:.2f} MiB in {elapsed:.1f} s "
            f"({consumed / elapsed / 2**20:.2f} MiB/s), received {received / 2**20:.2f} MiB, "
            f"client held at most {most_held} bytes; server RSS {baseline} KiB at start, "
            f"peak {peak} KiB, end {samples[-1][1]} KiB; "
            f"samples {samples}"
        )
        sys.stdout.write(report + "\n")
        # About RATE * SECONDS taken: the consumer was the bottleneck.
        self.assertGreater(consumed, RATE * SECONDS * 0.75, report)
        self.assertLessEqual(consumed, RATE * SECONDS * 1.05, report)
        # The client held at most its call credit plus one frame.
        self.assertLessEqual(most_held, CREDIT + SIZE + 10, report)
        self.assertLessEqual(received, consumed + CREDIT + SIZE, report)
        # And the server's memory stayed flat.
        self.assertLess(peak - baseline, RSS_BOUND_KIB, report)
        self.assertGreater(len(samples), SECONDS * 3, report)


class SlowConsumerAsyncioTests(SlowConsumerTests):
    """The same on twistd's asyncio reactor."""

    reactor = "asyncio"
