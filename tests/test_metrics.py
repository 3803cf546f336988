"""
:class:`ServerMetrics`: the call metrics (an interceptor, timed with a fake
clock), the method label's bound, the connection counters read from the
server's stats, the twisted.web resource's output, and ``--metrics``.
"""

from __future__ import annotations

import sys
from typing import Any
from unittest import mock

from helpers import echo_and_wait_router
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.testing import MemoryReactorClock
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_reqresp import (
    Call,
    Limits,
    RemoteError,
    Router,
    ServerFactory,
    ServerMetrics,
    StatusCode,
    StatusError,
)
from twisted_reqresp._adapters.metrics import METRICS_EXTRA, OTHER_METHOD, MetricsResource
from twisted_reqresp._app.tap import Options, make_service
from twisted_reqresp.interfaces import IResponder, IServerInterceptor
from twisted_reqresp.testing import connected_pair


def value(metrics: ServerMetrics, name: str, **labels: str) -> float | None:
    """:returns: one sample's value, ``None`` if there is no such sample."""
    return metrics.registry.get_sample_value(name, labels)


@implementer(IResponder)
class AnswersAnything:
    """A catch-all responder: answers every method name, as a proxy might."""

    def connection_made(self, connection: object) -> None:
        pass

    def connection_lost(self, reason: object) -> None:
        pass

    def respond(self, call: Call) -> bytes:
        if call.body == b"missing":
            raise StatusError(StatusCode.NOT_FOUND, "no such record")
        return b"ok"


class CallMetricsTests(SynchronousTestCase):
    """The interceptor counts calls by method and status, times them, and tracks those in flight."""

    def test_provides_interface(self) -> None:
        """ServerMetrics provides IServerInterceptor."""
        self.assertTrue(verifyObject(IServerInterceptor, ServerMetrics()))

    def test_counts_durations_and_in_flight(self) -> None:
        """Each answer is counted under its method and status, with its duration from the clock."""
        metrics = ServerMetrics()
        router, waiting = echo_and_wait_router()
        pair = connected_pair(router, interceptors=[metrics])
        fast = pair.client.call("echo", b"hello")
        slow = pair.client.call("wait", b"abc")
        missing = pair.client.call("nope", b"xy")
        pair.pump()
        self.assertEqual(value(metrics, "reqresp_requests_in_flight"), 1.0)
        pair.clock.advance(0.2)
        waiting[0].callback(b"done")
        pair.pump()
        self.successResultOf(fast)
        self.successResultOf(slow)
        self.failureResultOf(missing, RemoteError)
        self.assertEqual(value(metrics, "reqresp_requests_in_flight"), 0.0)
        total = "reqresp_requests_total"
        self.assertEqual(value(metrics, total, method="echo", status="OK"), 1.0)
        self.assertEqual(value(metrics, total, method="wait", status="OK"), 1.0)
        self.assertEqual(value(metrics, total, method=OTHER_METHOD, status="NOT_FOUND"), 1.0)
        self.assertIsNone(value(metrics, total, method="nope", status="NOT_FOUND"))
        duration = "reqresp_request_duration_seconds"
        self.assertAlmostEqual(value(metrics, f"{duration}_sum", method="wait") or 0, 0.2)
        self.assertEqual(value(metrics, f"{duration}_count", method="wait"), 1.0)
        self.assertEqual(value(metrics, f"{duration}_bucket", method="wait", le="0.1"), 0.0)
        self.assertEqual(value(metrics, f"{duration}_bucket", method="wait", le="0.25"), 1.0)
        self.assertEqual(value(metrics, f"{duration}_bucket", method="echo", le="0.0005"), 1.0)

    def test_errors_and_cancels(self) -> None:
        """A declared error counts under its status, a call the client cancelled as CANCELLED."""
        metrics = ServerMetrics()
        router, _ = echo_and_wait_router()

        @router.method("refuse")
        def refuse(call: Call) -> bytes:
            raise StatusError(StatusCode.PERMISSION_DENIED, "no")

        pair = connected_pair(router, interceptors=[metrics])
        metrics.watch(pair.factory)  # the Router's methods get labels
        refused = pair.client.call("refuse")
        cancelled = pair.client.call("wait")
        pair.pump()
        cancelled.cancel()
        pair.pump()
        self.failureResultOf(refused, RemoteError)
        self.failureResultOf(cancelled)
        total = "reqresp_requests_total"
        self.assertEqual(value(metrics, total, method="refuse", status="PERMISSION_DENIED"), 1.0)
        self.assertEqual(value(metrics, total, method="wait", status="CANCELLED"), 1.0)
        self.assertEqual(value(metrics, "reqresp_requests_in_flight"), 0.0)

    def test_builtins_not_counted(self) -> None:
        """The built-in reqresp. methods do not pass the chain, so they are not counted."""
        metrics = ServerMetrics()
        pair = connected_pair(Router(), interceptors=[metrics])
        d = pair.client.call("reqresp.health")
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, b"SERVING")
        samples = [s for m in metrics.requests.collect() for s in m.samples]
        self.assertEqual(samples, [])

    def test_own_registries(self) -> None:
        """Two ServerMetrics in one process each have their own registry and counts."""
        first, second = ServerMetrics(), ServerMetrics()
        self.assertIsNot(first.registry, second.registry)
        router, _ = echo_and_wait_router()
        pair = connected_pair(router, interceptors=[first])
        d = pair.client.call("echo", b"x")
        pair.pump()
        self.successResultOf(d)
        self.assertEqual(value(first, "reqresp_requests_total", method="echo", status="OK"), 1.0)
        self.assertIsNone(value(second, "reqresp_requests_total", method="echo", status="OK"))


class MethodLabelTests(SynchronousTestCase):
    """The method label is bounded whatever names clients send."""

    def _call_all(self, metrics: ServerMetrics, calls: list[tuple[str, bytes]]) -> None:
        pair = connected_pair(AnswersAnything(), interceptors=[metrics])
        results = [pair.client.call(method, body) for method, body in calls]
        pair.pump()
        for d in results:
            d.addErrback(lambda _: None)
            self.successResultOf(d)

    def _labels(self, metrics: ServerMetrics) -> dict[tuple[str, str], float]:
        return {
            (s.labels["method"], s.labels["status"]): s.value
            for m in metrics.requests.collect()
            for s in m.samples
            if s.name == "reqresp_requests_total"
        }

    def test_below_at_and_above_max_methods(self) -> None:
        """Below and at max_methods names get their own label; the names above are 'other'."""
        metrics = ServerMetrics(max_methods=2)
        self._call_all(metrics, [("a", b""), ("b", b""), ("c", b""), ("d", b""), ("a", b"")])
        self.assertEqual(
            self._labels(metrics),
            {("a", "OK"): 2.0, ("b", "OK"): 1.0, (OTHER_METHOD, "OK"): 2.0},
        )

    def test_not_found_takes_no_label(self) -> None:
        """A name answered NOT_FOUND gets no label, unless it already had one."""
        metrics = ServerMetrics(max_methods=10)
        self._call_all(
            metrics,
            [("get", b"missing"), ("get", b"there"), ("get", b"missing"), ("x", b"missing")],
        )
        self.assertEqual(
            self._labels(metrics),
            {
                (OTHER_METHOD, "NOT_FOUND"): 2.0,
                ("get", "OK"): 1.0,
                ("get", "NOT_FOUND"): 1.0,
            },
        )

    def test_many_invented_names(self) -> None:
        """A thousand invented names against a Router make one 'other' series."""
        metrics = ServerMetrics()
        pair = connected_pair(Router(), interceptors=[metrics])
        calls = [pair.client.call(f"m{i}") for i in range(1000)]
        pair.pump()
        for d in calls:
            self.failureResultOf(d, RemoteError)
        self.assertEqual(self._labels(metrics), {(OTHER_METHOD, "NOT_FOUND"): 1000.0})

    def test_fixed_methods(self) -> None:
        """With methods given, only those names get a label, whatever they answer."""
        metrics = ServerMetrics(methods=["a"])
        self._call_all(metrics, [("a", b"missing"), ("b", b"")])
        self.assertEqual(
            self._labels(metrics), {("a", "NOT_FOUND"): 1.0, (OTHER_METHOD, "OK"): 1.0}
        )


class ConnectionMetricsTests(SynchronousTestCase):
    """Connection counters come from the watched server's stats, read at scrape time."""

    def test_unwatched(self) -> None:
        """Before watch() the connection metrics are there, at zero."""
        metrics = ServerMetrics()
        self.assertEqual(value(metrics, "reqresp_connections_open"), 0.0)
        self.assertEqual(
            value(metrics, "reqresp_connections_refused_total", reason="max_connections"), 0.0
        )

    def test_open_bytes_and_goaway(self) -> None:
        """Open connections, bytes each way exactly, and the drain's GOAWAY are counted."""
        metrics = ServerMetrics()
        router, _ = echo_and_wait_router()
        factory = ServerFactory(router, clock=MemoryReactorClock(), interceptors=[metrics])
        metrics.watch(factory)
        pair = connected_pair(router, factory=factory, clock=factory.clock)  # type: ignore[arg-type]
        self.assertEqual(value(metrics, "reqresp_connections_open"), 1.0)
        self.assertEqual(value(metrics, "reqresp_connections_accepted_total"), 1.0)
        received = value(metrics, "reqresp_received_bytes_total") or 0
        sent = value(metrics, "reqresp_sent_bytes_total") or 0
        d = pair.client.call("echo", b"hello")
        request = pair.client_transport.value()
        pair.client_transport.clear()
        pair.server.dataReceived(request)
        answer = pair.server_transport.value()
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, b"hello")
        self.assertEqual(value(metrics, "reqresp_received_bytes_total"), received + len(request))
        self.assertEqual(value(metrics, "reqresp_sent_bytes_total"), sent + len(answer))
        self.assertEqual(value(metrics, "reqresp_goaways_sent_total"), 0.0)
        factory.drain()
        pair.pump()
        self.assertEqual(value(metrics, "reqresp_goaways_sent_total"), 1.0)
        self.assertEqual(value(metrics, "reqresp_connections_open"), 0.0)

    def test_refused_by_reason(self) -> None:
        """Refused connections are counted by reason: each limit, and draining."""
        metrics = ServerMetrics()
        clock = MemoryReactorClock()
        limits = Limits(max_connections=2, max_connections_per_peer=1)
        factory = ServerFactory(Router(), clock=clock, limits=limits, interceptors=[metrics])
        metrics.watch(factory)
        connected_pair(Router(), factory=factory, clock=clock)
        connected_pair(Router(), factory=factory, clock=clock)  # same peer: per-peer limit
        refused = "reqresp_connections_refused_total"
        self.assertEqual(value(metrics, refused, reason="max_connections_per_peer"), 1.0)
        self.assertEqual(value(metrics, refused, reason="max_connections"), 0.0)
        self.assertEqual(value(metrics, refused, reason="draining"), 0.0)
        factory.drain()
        connected_pair(Router(), factory=factory, clock=clock)
        self.assertEqual(value(metrics, refused, reason="draining"), 1.0)

    def test_refused_max_connections(self) -> None:
        """A connection past max_connections is counted under max_connections."""
        metrics = ServerMetrics()
        clock = MemoryReactorClock()
        factory = ServerFactory(Router(), clock=clock, limits=Limits(max_connections=1))
        metrics.watch(factory)
        connected_pair(Router(), factory=factory, clock=clock)
        connected_pair(Router(), factory=factory, clock=clock)
        refused = "reqresp_connections_refused_total"
        self.assertEqual(value(metrics, refused, reason="max_connections"), 1.0)
        self.assertEqual(value(metrics, "reqresp_connections_open"), 1.0)

    def test_keepalive_failure(self) -> None:
        """A client that does not answer a PING is one keepalive failure and one GOAWAY."""
        metrics = ServerMetrics()
        clock = MemoryReactorClock()
        limits = Limits(ping_interval=1.0, ping_timeout=1.0)
        factory = ServerFactory(Router(), clock=clock, limits=limits)
        metrics.watch(factory)
        pair = connected_pair(Router(), factory=factory, clock=clock)
        pair.client_protocol.liveness.stop()  # a client that never pings
        clock.advance(1.0)  # the server's PING; never delivered
        self.assertEqual(value(metrics, "reqresp_keepalive_failures_total"), 0.0)
        clock.advance(1.0)
        self.assertEqual(value(metrics, "reqresp_keepalive_failures_total"), 1.0)
        self.assertEqual(value(metrics, "reqresp_goaways_sent_total"), 1.0)

    def test_protocol_errors(self) -> None:
        """A client that breaks the protocol is counted in reqresp_protocol_errors_total."""
        metrics = ServerMetrics()
        factory = ServerFactory(Router(), clock=MemoryReactorClock())
        metrics.watch(factory)
        pair = connected_pair(Router(), factory=factory, clock=factory.clock)  # type: ignore[arg-type]
        pair.server.dataReceived(b"\xff" * 64)
        self.assertEqual(value(metrics, "reqresp_protocol_errors_total"), 1.0)


class FakeRequest:
    """The part of a twisted.web request MetricsResource uses."""

    def __init__(self, accept: str | None) -> None:
        self.accept = accept
        self.headers: dict[str, str] = {}

    def getHeader(self, name: str) -> str | None:
        return self.accept if name == "accept" else None

    def setHeader(self, name: str, value: str) -> None:
        self.headers[name] = value


class ResourceTests(SynchronousTestCase):
    """MetricsResource serves the registry in the Prometheus text format."""

    def test_text_format(self) -> None:
        """GET answers the text format with every documented metric family."""
        metrics = ServerMetrics()
        router, _ = echo_and_wait_router()
        pair = connected_pair(router, interceptors=[metrics])
        metrics.watch(pair.factory)
        d = pair.client.call("echo", b"x")
        pair.pump()
        self.successResultOf(d)
        request = FakeRequest(None)
        body = metrics.resource().render_GET(request)  # type: ignore[arg-type]
        self.assertTrue(request.headers["content-type"].startswith("text/plain; version=0.0.4"))
        text = body.decode()
        self.assertIn('reqresp_requests_total{method="echo",status="OK"} 1.0\n', text)
        self.assertIn("reqresp_connections_open 1.0\n", text)
        for family in DOCUMENTED:
            self.assertIn(f"# TYPE {family} ", text)

    def test_openmetrics(self) -> None:
        """A scraper asking for OpenMetrics gets it."""
        resource = MetricsResource(ServerMetrics().registry)
        request = FakeRequest("application/openmetrics-text; version=1.0.0")
        body = resource.render_GET(request)  # type: ignore[arg-type]
        self.assertIn("openmetrics", request.headers["content-type"])
        self.assertTrue(body.endswith(b"# EOF\n"))


#: The metric families docs/twistd.md lists ("Metrics").
DOCUMENTED = (
    "reqresp_requests_total",
    "reqresp_request_duration_seconds",
    "reqresp_requests_in_flight",
    "reqresp_connections_open",
    "reqresp_connections_accepted_total",
    "reqresp_connections_refused_total",
    "reqresp_received_bytes_total",
    "reqresp_sent_bytes_total",
    "reqresp_goaways_sent_total",
    "reqresp_keepalive_failures_total",
    "reqresp_protocol_errors_total",
)


def _parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


class OptionTests(SynchronousTestCase):
    """twistd reqresp --metrics ENDPOINT."""

    def test_off_by_default(self) -> None:
        """Without --metrics there is no metrics interceptor and no extra port."""
        service = make_service(_parse("-p", "tcp:0"), MemoryReactorClock())
        self.assertIsNone(service.metrics_endpoint)
        self.assertEqual(service.factory.interceptors, ())
        self.assertEqual(len(list(service)), 1)

    def test_metrics(self) -> None:
        """--metrics puts ServerMetrics outermost, watching the factory, and serves it."""
        service = make_service(
            _parse("-p", "tcp:0", "--metrics", "9100", "--access-log"), MemoryReactorClock()
        )
        self.assertEqual(service.metrics_endpoint, "tcp:9100")
        metrics, _ = service.factory.interceptors
        assert isinstance(metrics, ServerMetrics)
        self.assertEqual(value(metrics, "reqresp_connections_open"), 0.0)
        endpoints: list[Any] = list(service)
        self.assertEqual(len(endpoints), 2)
        self.assertIsInstance(endpoints[0], StreamServerEndpointService)
        self.assertIsInstance(endpoints[0].factory.resource, MetricsResource)

    def test_bad_endpoint(self) -> None:
        """An endpoint string Twisted cannot parse is a usage error naming --metrics."""
        with self.assertRaises(UsageError) as caught:
            _parse("--metrics", "nonsense:1")
        self.assertTrue(str(caught.exception).startswith("--metrics 'nonsense:1': "))

    def test_with_workers(self) -> None:
        """--metrics with --workers is a usage error saying why."""
        with self.assertRaises(UsageError) as caught:
            _parse("--metrics", "tcp:9100", "--workers", "2")
        self.assertIn("cannot be used with --workers", str(caught.exception))

    def test_without_prometheus_client(self) -> None:
        """Without prometheus_client, --metrics is a one-line usage error naming the extra."""
        with mock.patch.dict(sys.modules, {"prometheus_client": None}):
            with self.assertRaises(UsageError) as caught:
                _parse("--metrics", "tcp:9100")
            with self.assertRaises(ImportError) as made:
                ServerMetrics()
        message = str(caught.exception)
        self.assertEqual(message, f"--metrics: metrics need prometheus_client: {METRICS_EXTRA}")
        self.assertNotIn("\n", message)
        self.assertIn("twisted-reqresp[metrics]", str(made.exception))
