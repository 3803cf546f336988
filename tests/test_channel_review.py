"""
A hostile review of the Channel (issue 9): sequences in which a call could
hang, a timer outlive close(), a backend stay out for good, or a bad option
surface late, each pinned on the in-memory network of ``channel_net``.
"""

from __future__ import annotations

from test_channel import ChannelTestCase

from twisted_reqresp import (
    Backoff,
    StatusCode,
    StatusError,
)


class ProbeTests(ChannelTestCase):
    """An ejected backend's probe is never lost, whatever health check is in flight."""

    def test_probe_due_during_a_health_check(self) -> None:
        """An ejection that ends while a health check is in flight still probes, and comes back."""
        (a,) = self.servers("a")
        channel = self.channel(
            [a],
            retry=None,
            failure_threshold=1,
            health_check_interval=5.0,
            ejection_time=Backoff(initial=1.0, jitter=0.0),
        )
        doomed = self.call(channel, "wait")
        (link,) = a.live
        self.net.advance(4.9)
        # The server stops reading: the health check sent at 5 s stays in flight.
        link.server_transport.pauseProducing()
        self.net.advance(0.1)
        self.assertIsNotNone(channel._backends[a].health_call)
        # The waiting call fails UNAVAILABLE: ejected until 6.5 s.
        self.net.advance(0.5)
        a.waiting[0].errback(StatusError(StatusCode.UNAVAILABLE, "a is failing"))
        self.net.pump()
        self.failureResultOf(doomed, StatusError)
        self.assertEqual(channel.backends[0].state, "ejected")
        self.net.advance(1.0)  # the ejection ends; the check is still out
        link.server_transport.resumeProducing()
        self.net.pump()  # the check answers SERVING
        self.net.advance(0)
        self.assertEqual(channel.backends[0].state, "ready")
        self.assertEqual(self.successResultOf(self.call(channel, "echo", b"x")).body, b"x")
