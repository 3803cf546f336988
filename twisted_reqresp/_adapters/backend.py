"""
One backend of a :class:`~twisted_reqresp.Channel`: its connection (a
``ClientService`` that reconnects with backoff), whether it takes calls,
failure accrual with ejection and probes, and periodic health checks.
See ``channel.py`` for the theory of operation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.application.internet import ClientService
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from .._core.call import Reply
from .._core.errors import ConnectionClosed, StatusError
from .._core.status import StatusCode
from .client import (
    ClientFactory,
    _client_endpoint,
    send_outgoing,
)
from .client_protocol import ClientProtocol
from .interceptors import ClientChain, compose_client

if TYPE_CHECKING:
    from .channel import Channel

__all__ = ["Backend", "BackendInfo", "endpoint_name"]

#: Answers that count against a backend's health (Finagle's failure
#: accrual counts the failures that say the server, not the request, is
#: at fault).
_ACCRUED = frozenset({StatusCode.UNAVAILABLE, StatusCode.INTERNAL, StatusCode.UNKNOWN})
#: What a probe or health check may answer from a server with no built-in
#: methods: it answers, so it is up.
_NO_HEALTH_METHOD = frozenset({StatusCode.NOT_FOUND, StatusCode.UNIMPLEMENTED})
_HEALTH = "reqresp.health"


def endpoint_name(endpoint: str | IStreamClientEndpoint) -> str:
    return endpoint if isinstance(endpoint, str) else repr(endpoint)


@dataclass(frozen=True, kw_only=True, slots=True)
class BackendInfo:
    """One backend of a :class:`Channel`, as :attr:`Channel.backends` reports it."""

    #: The endpoint: its string, or the ``repr`` of an endpoint object.
    endpoint: str
    #: ``"connecting"`` (no usable connection yet), ``"ready"``,
    #: ``"draining"`` (its server sent GOAWAY, or it was removed from the
    #: set), ``"ejected"`` (too many failures) or ``"unhealthy"`` (its
    #: health check said NOT_SERVING or DRAINING).
    state: str
    #: Calls sent or queued on its connection and not yet answered.
    outstanding: int
    #: Failed calls in a row, toward ``failure_threshold``.
    failures: int
    #: Its server's MAX_CONCURRENT, or ``None`` while not connected.
    max_concurrent: int | None
    #: Attempts sent to it (retries included) since the channel started.
    calls: int = 0
    #: Of those, the ones it answered successfully.
    succeeded: int = 0
    #: Why its last connection failed or was lost, or ``None``.
    last_error: str | None = None


class _BackendFactory(ClientFactory):
    """Tells its backend about each connection it builds."""

    def __init__(self, backend: Backend, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backend = backend

    def buildProtocol(self, addr: IAddress | None) -> ClientProtocol:
        protocol = super().buildProtocol(addr)
        self.backend.attach(protocol)
        return protocol


@implementer(IStreamClientEndpoint)
class _WatchedEndpoint:
    """An endpoint that tells its backend why each connection attempt failed."""

    def __init__(self, endpoint: IStreamClientEndpoint, backend: Backend) -> None:
        self.endpoint = endpoint
        self.backend = backend

    def connect(self, factory: IProtocolFactory) -> Deferred[Any]:
        self.backend.connecting()
        d: Deferred[Any] = self.endpoint.connect(factory)
        d.addErrback(self.backend.connect_failed)
        return d


class Backend:
    """One endpoint's connection, its state and its timers."""

    def __init__(
        self,
        channel: Channel,
        key: object,
        endpoint: str | IStreamClientEndpoint,
    ) -> None:
        self.channel = channel
        self.key = key
        self.name = endpoint_name(endpoint)
        target = (
            _client_endpoint(channel.reactor, endpoint) if isinstance(endpoint, str) else endpoint
        )
        self.protocol: ClientProtocol | None = None
        #: The protocol's interceptor chain (``None``: no interceptors).
        self.chain: ClientChain | None = None
        self.ready = False
        self.retiring = False
        self.unhealthy = False
        self.ejected = False
        self.failures = 0
        self.ejections_in_a_row = 0
        #: Connections in a row lost before their handshake finished:
        #: ClientService counts only failed TCP connects, so a server that
        #: accepts and then refuses would be reconnected to without backoff.
        self.unready_losses = 0
        self.connects = 0
        self.last_error: str | None = None
        #: Attempts sent to this backend, and the ones answered successfully.
        self.calls = 0
        self.succeeded = 0
        self.probe_due = False
        self.health_timer: IDelayedCall | None = None
        self.eject_timer: IDelayedCall | None = None
        self.health_call: Deferred[Reply] | None = None
        factory = _BackendFactory(
            self, wire=channel.wire, limits=channel.limits, clock=channel.clock
        )
        self.service = ClientService(
            _WatchedEndpoint(target, self),
            factory,
            retryPolicy=self.reconnect_delay,
            clock=channel.clock,
        )

    def reconnect_delay(self, failed: int) -> float:
        return self.channel.reconnect.delay(failed + self.unready_losses, self.channel.random)

    # -- connection ------------------------------------------------------------

    def connecting(self) -> None:
        self.connects += 1
        if self.connects > 1:
            self.channel.stats.reconnects += 1

    def connect_failed(self, failure: Failure) -> Failure:
        if not failure.check(CancelledError):
            self.last_error = f"{self.name}: {failure.getErrorMessage()}"
        return failure

    def attach(self, protocol: ClientProtocol) -> None:
        self.protocol = protocol
        self.chain = compose_client(self.channel.interceptors, self.send)
        protocol.when_ready().addCallbacks(self.handshake_done, lambda _: None)
        protocol.when_closed().addCallback(self.lost, protocol)
        if self.retiring:
            protocol.close()

    def send(self, call: Any) -> Deferred[Reply]:
        assert self.protocol is not None
        return send_outgoing(self.protocol, call)

    def handshake_done(self, protocol: ClientProtocol) -> None:
        if protocol is not self.protocol or self.retiring:
            return
        self.ready = True
        self.unready_losses = 0
        self.unhealthy = False
        self.schedule_health_check()
        if self.probe_due:
            self.probe()
        else:
            self.channel._backend_available()

    def lost(self, _: object, protocol: ClientProtocol) -> None:
        if protocol is not self.protocol:
            return
        was_ready = self.ready
        self.ready = False
        self.protocol = None
        self.chain = None
        self.cancel_health()
        error = protocol.lost.getErrorMessage() if protocol.lost is not None else "closed"
        self.last_error = f"{self.name}: connection lost ({error})"
        if not was_ready:
            self.unready_losses += 1
        elif protocol.conn.peer_goaway is None and not self.retiring:
            # A drop, not a drain: one failure toward ejection.
            self.record_failure()

    # -- state ------------------------------------------------------------------

    @property
    def outstanding(self) -> int:
        protocol = self.protocol
        if protocol is None:
            return 0
        return len(protocol.pending) + len(protocol.queued) + len(protocol.streams)

    @property
    def at_max(self) -> bool:
        protocol = self.protocol
        return (
            protocol is not None
            and len(protocol.pending) + len(protocol.queued) + len(protocol.streams)
            >= protocol.conn.peer_settings.max_concurrent
        )

    @property
    def draining(self) -> bool:
        protocol = self.protocol
        return self.retiring or (protocol is not None and protocol.conn.peer_goaway is not None)

    @property
    def available(self) -> bool:
        """Whether a new call may be sent here."""
        return self.ready and not self.ejected and not self.unhealthy and not self.draining

    @property
    def state(self) -> str:
        if self.draining:
            return "draining"
        if self.ejected:
            return "ejected"
        if not self.ready:
            return "connecting"
        if self.unhealthy:
            return "unhealthy"
        return "ready"

    def info(self) -> BackendInfo:
        protocol = self.protocol
        return BackendInfo(
            endpoint=self.name,
            state=self.state,
            outstanding=self.outstanding,
            failures=self.failures,
            max_concurrent=None if protocol is None else protocol.conn.peer_settings.max_concurrent,
            calls=self.calls,
            succeeded=self.succeeded,
            last_error=self.last_error,
        )

    # -- failure accrual ---------------------------------------------------------

    def record_success(self) -> None:
        self.succeeded += 1
        self.failures = 0
        self.ejections_in_a_row = 0

    def record_error(self, error: BaseException) -> None:
        if isinstance(error, StatusError) and not isinstance(error, ConnectionClosed):
            # A lost connection counts once, in lost(), not once per call.
            if error.code in _ACCRUED:
                self.record_failure()

    def record_failure(self) -> None:
        self.failures += 1
        if not self.ejected and self.failures >= self.channel.failure_threshold:
            self.eject()

    def eject(self) -> None:
        channel = self.channel
        self.ejected = True
        self.ejections_in_a_row += 1
        channel.stats.ejections += 1
        delay = channel.ejection_time.delay(self.ejections_in_a_row, channel.random)
        self.eject_timer = channel.clock.callLater(delay, self.ejection_over)

    def ejection_over(self) -> None:
        self.eject_timer = None
        if self.ready:
            self.probe()
        else:
            # Its next handshake is followed by the probe.
            self.probe_due = True

    def probe(self) -> None:
        self.probe_due = False
        self.check_health(probe=True)

    def probe_result(self, up: bool) -> None:
        if up:
            self.ejected = False
            self.failures = 0
            self.channel._backend_available()
        else:
            self.eject()

    # -- health checks ------------------------------------------------------------

    def schedule_health_check(self) -> None:
        interval = self.channel.health_check_interval
        if interval is not None and self.health_timer is None and not self.retiring:
            self.health_timer = self.channel.clock.callLater(interval, self.health_due)

    def health_due(self) -> None:
        self.health_timer = None
        if self.ejected:
            # The ejection's probe will ask.
            self.schedule_health_check()
            return
        self.check_health(probe=False)

    def check_health(self, *, probe: bool) -> None:
        protocol = self.protocol
        if protocol is None or self.health_call is not None:
            if probe:
                self.probe_due = True
            return
        # Bounded by the interval, so checks never pile up on a stuck server.
        timeout = self.channel.health_check_interval or self.channel.ejection_time.initial
        d = protocol.call(_HEALTH, b"", timeout=timeout)
        self.health_call = d
        d.addBoth(self.health_answered, protocol, probe)

    def health_answered(self, result: object, protocol: ClientProtocol, probe: bool) -> None:
        self.health_call = None
        if protocol is not self.protocol:
            return
        if isinstance(result, Failure):
            error = result.value
            up = isinstance(error, StatusError) and error.code in _NO_HEALTH_METHOD
            serving: bool | None = True if up else None
        else:
            assert isinstance(result, Reply)
            serving = result.body == b"SERVING"
        if probe:
            self.probe_result(serving is True)
        elif serving is not None:
            was = self.unhealthy
            self.unhealthy = not serving
            if was and serving:
                self.channel._backend_available()
        self.schedule_health_check()

    def cancel_health(self) -> None:
        if self.health_timer is not None:
            self.health_timer.cancel()
            self.health_timer = None
        call, self.health_call = self.health_call, None
        if call is not None:
            call.cancel()

    # -- stopping ---------------------------------------------------------------

    def start(self) -> None:
        self.service.startService()

    def retire(self) -> Deferred[None]:
        """Take no new calls, finish the pending ones, close, stop reconnecting."""
        self.retiring = True
        self.cancel_health()
        if self.eject_timer is not None:
            self.eject_timer.cancel()
            self.eject_timer = None
        protocol = self.protocol
        closed = protocol.close() if protocol is not None else succeed(None)
        closed.addCallback(lambda _: self.service.stopService())
        return closed
