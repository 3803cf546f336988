"""
The ``reqresp`` command over two real ``twistd reqresp`` servers: ``bench``
spreads its calls over both and counts them per server, ``health`` answers
for each, and a set with one server down still answers ``call`` and
``stream``.
"""

from __future__ import annotations

import re

from e2e import clean_env, free_port, reqresp, start
from twisted.trial.unittest import SynchronousTestCase


class SeveralServersTests(SynchronousTestCase):
    """reqresp with several --connect against real servers on loopback."""

    def test_bench_call_and_health_over_two_servers(self) -> None:
        """bench counts calls on each of two servers; health prints a line per server."""
        one = start(self)
        two = start(self)
        result = reqresp(
            "bench", "-c", one.endpoint, "-c", two.endpoint, "-C", "2", "-d", "4", "-D", "1"
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        line = next(x for x in result.stdout.splitlines() if x.startswith("backends"))
        counts = {
            name: int(count.replace(",", ""))
            for name, count in re.findall(r"(tcp:127\.0\.0\.1:\d+) ([\d,]+)", line)
        }
        self.assertEqual(set(counts), {one.endpoint, two.endpoint}, result.stdout)
        self.assertTrue(all(count > 0 for count in counts.values()), result.stdout)
        total = re.search(r"requests  ([\d,]+)", result.stdout)
        assert total is not None
        self.assertEqual(sum(counts.values()), int(total.group(1).replace(",", "")))

        env = clean_env(REQRESP_CONNECT=f"{one.endpoint},{two.endpoint}")
        health = reqresp("health", env=env)
        self.assertEqual(
            (health.returncode, health.stdout),
            (0, f"{one.endpoint} SERVING\n{two.endpoint} SERVING\n"),
            health.stderr,
        )

    def test_one_server_down(self) -> None:
        """With one endpoint refusing, call is answered by the other; health says which is down."""
        one = start(self)
        down = f"tcp:127.0.0.1:{free_port()}"
        result = reqresp("call", "-c", down, "-c", one.endpoint, "--raw", "echo", "hi")
        self.assertEqual((result.returncode, result.stdout), (0, "hi"), result.stderr)
        health = reqresp("health", "-c", one.endpoint, "-c", down)
        self.assertEqual(health.returncode, 3, health.stderr)
        self.assertEqual(health.stdout, f"{one.endpoint} SERVING\n{down} connection refused\n")

    def test_stream_over_two_servers(self) -> None:
        """reqresp stream with two --connect, one down, streams from the other and ends OK."""
        one = start(self)
        down = f"tcp:127.0.0.1:{free_port()}"
        result = reqresp("stream", "-c", down, "-c", one.endpoint, "count", "3")
        self.assertEqual(
            (result.returncode, result.stdout, result.stderr), (0, "1\n2\n3\n", "OK\n")
        )
