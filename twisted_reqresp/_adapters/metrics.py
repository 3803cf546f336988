"""
:class:`ServerMetrics`: Prometheus metrics for a server, in a registry of
its own, and the twisted.web resource that serves them.

Theory of operation:

- Per call (requests by method and status, latency by method, calls in
  flight), :class:`ServerMetrics` is a server interceptor, like
  :class:`~twisted_reqresp.AccessLog`: it costs nothing to a server that
  does not put it in its chain.
- Per connection (open, accepted, refused, bytes, GOAWAYs, keepalive
  failures, protocol errors), the server keeps plain integer counters in
  its :class:`~twisted_reqresp.ServerStats` whether or not anyone scrapes
  them, one ``+=`` each, so the hot path has no "are metrics on?" branch;
  a collector reads them at scrape time (:meth:`ServerMetrics.watch`).
- The registry is the object's own, not prometheus_client's global
  ``REGISTRY``: two servers in one process (or one test run) do not
  collide, and a scrape shows only this server.
- The ``method`` label is bounded: a client can send any method name, and
  each label value is a time series kept forever.  See
  :meth:`ServerMetrics.method_label`.

prometheus_client is an optional extra (``twisted-reqresp[metrics]``),
imported only when a :class:`ServerMetrics` is made, so importing
``twisted_reqresp`` never needs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource
from zope.interface import implementer

from .._core.call import Call
from .._core.status import StatusCode
from ..interfaces import IServerInterceptor
from .interceptors import Outcome
from .stats import ServerStats

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric
    from twisted.web.server import Request

    from .server import ServerFactory

__all__ = [
    "DEFAULT_BUCKETS",
    "DEFAULT_MAX_METHODS",
    "METRICS_EXTRA",
    "OTHER_METHOD",
    "MetricsResource",
    "ServerMetrics",
    "require_prometheus",
]

#: What to install for metrics; every "missing prometheus_client" message names it.
METRICS_EXTRA = "pip install 'twisted-reqresp[metrics]'"

#: The ``method`` label of calls whose method gets no label of its own.
OTHER_METHOD = "other"

#: How many method names get their own label by default.  A Router's
#: methods fit many times over; a catch-all responder (one that answers any
#: name) is cut off here rather than growing a series per name a client
#: invents.
DEFAULT_MAX_METHODS = 100

#: Latency buckets in seconds: from half a millisecond (a call answered from
#: memory over loopback) to 10 s (past most deadlines).
DEFAULT_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def require_prometheus() -> Any:
    """
    :returns: the ``prometheus_client`` module.
    :raises ImportError: in one line naming the extra, when it is not installed.
    """
    try:
        return importlib.import_module("prometheus_client")
    except ImportError as e:
        raise ImportError(f"metrics need prometheus_client: {METRICS_EXTRA}") from e


@implementer(IServerInterceptor)
class ServerMetrics:
    """
    Prometheus metrics for one server: a server interceptor for the calls,
    and (once :meth:`watch` is given the factory) the connection counters.
    ::

        metrics = ServerMetrics()
        factory = ServerFactory(router, interceptors=[metrics])
        metrics.watch(factory)
        site = Site(metrics.resource())  # GET returns the Prometheus text format

    Put it first in the interceptor list (outermost) so that it counts what
    the other interceptors answer or refuse too.  It counts the calls that
    reach the chain: not the built-in ``reqresp.`` methods, nor requests
    refused before any responder runs (a deadline already past, a malformed
    request); ``reqresp_protocol_errors_total`` and the server's ``stats``
    count those.

    :param registry: where the metrics go (a
        ``prometheus_client.CollectorRegistry``); a new one of this
        object's own if omitted (not prometheus_client's global one).
    :param clock: the clock for durations; the server's (the one each call
        carries) if omitted.
    :param methods: the method names that get their own ``method`` label;
        every other name is counted as ``other``.  If omitted, see
        :meth:`method_label`.
    :param max_methods: without ``methods``, how many names get a label.
    :param buckets: the latency histogram's bucket bounds, in seconds.
    :raises ImportError: naming the ``metrics`` extra, without prometheus_client.

    :ivar registry: the registry to expose.
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        clock: IReactorTime | None = None,
        methods: Iterable[str] | None = None,
        max_methods: int = DEFAULT_MAX_METHODS,
        buckets: Iterable[float] = DEFAULT_BUCKETS,
    ) -> None:
        prometheus = require_prometheus()
        self.registry: CollectorRegistry = (
            registry if registry is not None else prometheus.CollectorRegistry()
        )
        self.clock = clock
        self.max_methods = max_methods
        self._fixed = methods is not None
        self._labelled: set[str] = set(methods) if methods is not None else set()
        self._stats: list[Callable[[], ServerStats]] = []
        # The method names the watched servers' responders declare (a
        # Router's), read once, when the first unlabelled call is counted.
        self._factories: list[ServerFactory] = []
        self._declared: frozenset[str] | None = None
        self.requests = prometheus.Counter(
            "reqresp_requests",
            "Calls answered, by method and status.",
            ["method", "status"],
            registry=self.registry,
        )
        self.duration = prometheus.Histogram(
            "reqresp_request_duration_seconds",
            "Seconds from a call reaching the interceptors to its outcome, by method.",
            ["method"],
            buckets=tuple(buckets),
            registry=self.registry,
        )
        self.in_flight = prometheus.Gauge(
            "reqresp_requests_in_flight",
            "Calls started and not yet answered.",
            registry=self.registry,
        )
        self.registry.register(_StatsCollector(self._stats))

    def watch(self, factory: ServerFactory) -> ServerMetrics:
        """
        Report ``factory``'s connection counters (its
        :class:`~twisted_reqresp.ServerStats`) too.  Watching several
        factories sums them.

        :param factory: the server.
        :returns: this object.
        """
        self._stats.append(lambda: factory.stats)
        self._factories.append(factory)
        self._declared = None
        return self

    def _declares(self, method: str) -> bool:
        """Whether a watched server's responder declares ``method``."""
        if self._declared is None:
            names: set[str] = set()
            for factory in self._factories:
                responder = getattr(factory.responder_factory, "responder", None)
                describe = getattr(responder, "describe", None)
                if describe is None:
                    continue
                try:
                    names.update(description.name for description in describe())
                except Exception:
                    continue  # a describe() that fails declares nothing
            self._declared = frozenset(names)
        return method in self._declared

    def method_label(self, method: str, code: int) -> str:
        r"""
        The ``method`` label a call is counted under.  With ``methods``,
        the name if it is one of them, else ``other``.  Without: the name
        if the responder of a server this object :meth:`watch`\ es declares
        it (a :class:`~twisted_reqresp.Router`'s methods), or once a call of
        it was answered OK; at most ``max_methods`` names, and a name with a
        label keeps it whatever it answers later.  So a name a client made
        up is ``other`` whoever refused it: a Router (NOT_FOUND) or an
        interceptor in front of it (an authorization interceptor's
        PERMISSION_DENIED cannot be used to fill the labels without
        credentials).

        :param method: the call's method.
        :param code: the status it was answered with.
        :returns: the label.
        """
        labelled = self._labelled
        if method in labelled:
            return method
        if (
            self._fixed
            or len(labelled) >= self.max_methods
            or (code != StatusCode.OK and not self._declares(method))
        ):
            return OTHER_METHOD
        labelled.add(method)
        return method

    def intercept(self, call: Call, proceed: Any) -> Deferred[Any]:
        """
        Pass the call on, and count it when it ends.

        :param call: the call.
        :param proceed: the rest of the chain.
        :returns: the Deferred ``proceed`` returned, with the counting added.
        """
        clock: Any = self.clock if self.clock is not None else call._clock
        started = clock.seconds()
        in_flight = self.in_flight
        in_flight.inc()

        def observe(result: Any) -> Any:
            in_flight.dec()
            outcome = Outcome.of(result)
            label = self.method_label(call.method, outcome.code)
            self.requests.labels(label, outcome.status).inc()
            self.duration.labels(label).observe(max(0.0, clock.seconds() - started))
            return result

        d: Deferred[Any] = proceed(call)
        return d.addBoth(observe)

    def resource(self) -> MetricsResource:
        """:returns: a twisted.web resource serving the registry, for a ``Site``."""
        return MetricsResource(self.registry)


class _StatsCollector:
    """Reads the watched servers' :class:`ServerStats` at scrape time."""

    def __init__(self, sources: list[Callable[[], ServerStats]]) -> None:
        self._sources = sources

    def describe(self) -> list[Metric]:
        # The same families, so that the registry refuses a second collector
        # with these names instead of exposing them twice.
        return list(self.collect())

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = [source() for source in self._sources]

        def total(name: str) -> float:
            return float(sum(getattr(s, name) for s in stats))

        yield GaugeMetricFamily(
            "reqresp_connections_open", "Connections open now.", value=total("connections_open")
        )
        yield CounterMetricFamily(
            "reqresp_connections_accepted",
            "Connections accepted and served.",
            value=total("connections_total"),
        )
        refused = CounterMetricFamily(
            "reqresp_connections_refused",
            "Connections refused, by reason: draining, max_connections, max_connections_per_peer.",
            labels=["reason"],
        )
        reasons: dict[str, int] = dict.fromkeys(
            ("draining", "max_connections", "max_connections_per_peer"), 0
        )
        for s in stats:
            for reason, count in s.refused_by_reason.items():
                reasons[reason] = reasons.get(reason, 0) + count
        for reason, count in sorted(reasons.items()):
            refused.add_metric([reason], float(count))
        yield refused
        for name, field, documentation in (
            ("reqresp_received_bytes", "bytes_received", "Bytes read from clients (after TLS)."),
            ("reqresp_sent_bytes", "bytes_sent", "Bytes written to clients (before TLS)."),
            (
                "reqresp_goaways_sent",
                "goaways_sent",
                "GOAWAYs sent: connections drained, or given up on (a timeout, a dead peer).",
            ),
            (
                "reqresp_keepalive_failures",
                "keepalive_failures",
                "Connections closed because the client did not answer a keepalive PING.",
            ),
            (
                "reqresp_protocol_errors",
                "protocol_errors",
                "Connections closed because the client broke the protocol.",
            ),
        ):
            yield CounterMetricFamily(name, documentation, value=total(field))


class MetricsResource(Resource):
    """
    A twisted.web resource answering GET with the registry's metrics in the
    Prometheus text format (or OpenMetrics, if the scraper asks for it).

    prometheus_client ships its own (``prometheus_client.twisted``), but it
    imports the global reactor at import time and renders in a thread pool
    through WSGI; rendering a registry takes microseconds, so this one does
    it in the reactor thread.

    :param registry: what to serve.
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        """:returns: the metrics, encoded as the ``Accept`` header asks."""
        from prometheus_client.exposition import choose_encoder

        accept = request.getHeader("accept")
        encoder, content_type = choose_encoder(accept or "")
        request.setHeader("content-type", content_type)
        body: bytes = encoder(self.registry)
        return body
