"""
End to end, with a real ``twistd``: ``--metrics`` serves the Prometheus
text format over HTTP, scraped with urllib after real calls.
"""

from __future__ import annotations

import urllib.request

from e2e import READ_TIMEOUT, free_port, reqresp, start
from twisted.trial.unittest import SynchronousTestCase


def scrape(port: int) -> tuple[str, dict[str, float]]:
    """:returns: the Content-Type and each sample (``name{labels}``) with its value."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=READ_TIMEOUT) as response:
        content_type = response.headers["Content-Type"]
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, number = line.rpartition(" ")
            samples[name] = float(number)
    return content_type, samples


class MetricsEndpointTests(SynchronousTestCase):
    """twistd reqresp --metrics ENDPOINT."""

    def test_scrape(self) -> None:
        """Calls, errors, connections and bytes show in the scraped counters."""
        port = free_port()
        server = start(self, "--metrics", f"tcp:{port}:interface=127.0.0.1")
        server.wait_for_log(f"reqresp: serving Prometheus metrics on tcp:{port}")
        for _ in range(3):
            echo = reqresp("call", "--connect", server.endpoint, "--raw", "echo", "hi")
            self.assertEqual(echo.returncode, 0, echo.stderr)
        nope = reqresp("call", "--connect", server.endpoint, "no-such-method")
        self.assertNotEqual(nope.returncode, 0)
        content_type, samples = scrape(port)
        self.assertTrue(content_type.startswith("text/plain; version=0.0.4"), content_type)
        self.assertEqual(samples['reqresp_requests_total{method="echo",status="OK"}'], 3.0)
        self.assertEqual(samples['reqresp_requests_total{method="other",status="NOT_FOUND"}'], 1.0)
        self.assertEqual(samples['reqresp_request_duration_seconds_count{method="echo"}'], 3.0)
        self.assertEqual(samples["reqresp_requests_in_flight"], 0.0)
        self.assertEqual(samples["reqresp_connections_accepted_total"], 4.0)
        self.assertGreater(samples["reqresp_received_bytes_total"], 0.0)
        self.assertGreater(samples["reqresp_sent_bytes_total"], 0.0)
        self.assertEqual(samples['reqresp_connections_refused_total{reason="draining"}'], 0.0)
        # A scrape is not logged: Prometheus scrapes every few seconds, for ever.
        self.assertNotIn("GET /metrics", server.log())

    def test_off_by_default(self) -> None:
        """Without --metrics nothing serves HTTP and nothing is said about metrics."""
        server = start(self)
        server.wait_for_log("reqresp: serving")
        self.assertNotIn("metrics on", server.log())
