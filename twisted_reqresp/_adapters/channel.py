"""
:class:`Channel`: a client over several servers that reconnects, balances,
takes failing servers out and retries.

Theory of operation (gRPC's channel, Finagle's load balancer and failure
accrual, Twisted's ``ClientService``):

- One *backend* per endpoint of an :class:`EndpointSet`.  Each backend is a
  :class:`twisted.application.internet.ClientService` holding at most one
  :class:`ClientProtocol`, which reconnects after a loss or a refusal with
  the channel's jittered :class:`Backoff`.
- A backend takes calls only while it is *ready*: its handshake is done,
  its server sent no GOAWAY, it is not ejected and its last health check
  did not say NOT_SERVING or DRAINING.
- Each call picks a backend by the power of two choices: two distinct ready
  backends at random, the one with fewer calls outstanding (pending and
  queued) wins, and one at its server's MAX_CONCURRENT loses to one below.
- With no ready backend a call waits in a bounded FIFO (``wait_for_ready``)
  until one is ready or its deadline passes, or fails at once.
- A failed attempt is sent again when the :class:`RetryPolicy` allows it
  and the channel's :class:`RetryBudget` has tokens, after the policy's
  backoff, preferably to another backend, never past the call's deadline.
  Every attempt passes the client interceptors, with
  :attr:`OutgoingCall.attempt` telling which it is.
- ``failure_threshold`` failures in a row (UNAVAILABLE, INTERNAL or UNKNOWN
  answers, or a lost connection) eject a backend for ``ejection_time``;
  then one ``reqresp.health`` probe decides whether it comes back.

Timers all run on the injected clock, and :meth:`Channel.close` cancels
every one of them.
"""

from __future__ import annotations

import random as _random
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._core.binary import BinaryFormat
from .._core.call import Call, Reply, metadata_pairs
from .._core.contract import IWireFormat
from .._core.errors import ConnectionClosed, DeadlineExceeded, StatusError
from .._core.limits import DEFAULT_LIMITS, Limits
from .._core.retry import Backoff, RetryBudget, RetryPolicy
from .._core.status import StatusCode
from ..codecs import BYTES
from ..interfaces import ICodec
from .backend import Backend, BackendInfo, endpoint_name
from .client import (
    _NO_BODY,
    decode_replies,
    encode_body,
    metadata_keys,
    open_stream,
    start_call,
)
from .client_protocol import check_timeout
from .interceptors import compose_client
from .propagation import PROPAGATED_METADATA, bind, inherit
from .streams import StreamingCall

__all__ = ["BackendInfo", "Channel", "ChannelStats", "EndpointSet"]

_log = Logger(namespace="twisted_reqresp.channel")


#: How a channel follows its EndpointSet (see EndpointSet._observers).
_Observer = Callable[[Mapping[object, "str | IStreamClientEndpoint"]], Callable[[], None]]


class EndpointSet:
    """
    The backends of a channel, which users may change while it runs.

    An endpoint is a client endpoint string (``"tcp:10.0.0.5:9000"``) or an
    ``IStreamClientEndpoint``.  Strings are their own identity: an update
    that keeps a string keeps its backend and connection; an endpoint
    object is the same backend only as the same object.

    :param endpoints: the first endpoints.
    """

    def __init__(self, endpoints: Iterable[str | IStreamClientEndpoint] = ()) -> None:
        #: Each channel's two steps of following an update: the first
        #: checks the new endpoints (it raises for one it cannot use) and
        #: returns the second, which applies them and cannot fail.
        self._observers: list[_Observer] = []
        self._endpoints = self._parse(endpoints)

    def update(self, endpoints: Iterable[str | IStreamClientEndpoint]) -> None:
        """
        Replace the set.  Each channel over it connects to the new
        endpoints at once; a removed endpoint's backend takes no new calls,
        finishes the calls it has, then closes.

        :param endpoints: the new endpoints, all of them.
        :raises ValueError: for an endpoint string that cannot be parsed;
            then nothing changes, in the set or in any channel over it.
        """
        new = self._parse(endpoints)
        # Every channel checks the new set before any follows it, so that a
        # bad endpoint leaves all of them, and the set, as they were.
        apply = [observer(new) for observer in list(self._observers)]
        self._endpoints = new
        for step in apply:
            step()

    @staticmethod
    def _parse(
        endpoints: Iterable[str | IStreamClientEndpoint],
    ) -> dict[object, str | IStreamClientEndpoint]:
        if isinstance(endpoints, str):
            # A bare string would be read as a set of one-character endpoints.
            raise TypeError("endpoints must be a collection of endpoints, not one string")
        return {endpoint: endpoint for endpoint in endpoints}

    def __iter__(self) -> Iterator[str | IStreamClientEndpoint]:
        return iter(list(self._endpoints.values()))

    def __len__(self) -> int:
        return len(self._endpoints)

    def __repr__(self) -> str:
        return f"EndpointSet({[endpoint_name(e) for e in self]!r})"


@dataclass(kw_only=True)
class ChannelStats:
    """What a :class:`Channel` has done since it was made."""

    #: Calls made (each counted once, however many attempts).
    calls: int = 0
    #: Calls answered successfully.
    succeeded: int = 0
    #: Calls that failed in the end (cancelled ones included).
    failed: int = 0
    #: Attempts sent to a backend, retries included.
    attempts: int = 0
    #: Attempts that were retries.
    retries: int = 0
    #: Retries the policy allowed but the budget refused.
    retries_throttled: int = 0
    #: Backends taken out by failure accrual.
    ejections: int = 0
    #: Connection attempts made after a backend's first.
    reconnects: int = 0


class _ChannelCall:
    """One call of a channel, across its attempts."""

    __slots__ = (
        "attempts",
        "backend",
        "body",
        "current",
        "deadline",
        "deferred",
        "metadata",
        "method",
        "timer",
        "wait_for_ready",
        "waiting",
    )

    def __init__(
        self,
        method: str,
        body: bytes,
        metadata: Mapping[str, str],
        deadline: float | None,
        wait_for_ready: bool,
        canceller: Callable[[_ChannelCall], None],
    ) -> None:
        self.method = method
        self.body = body
        self.metadata = metadata
        self.deadline = deadline
        self.wait_for_ready = wait_for_ready
        self.attempts = 0
        #: The backend of the last attempt (a retry avoids it).
        self.backend: Backend | None = None
        #: The attempt in flight.
        self.current: Deferred[Reply] | None = None
        #: A retry's backoff, or a waiting call's deadline.
        self.timer: IDelayedCall | None = None
        self.waiting = False
        self.deferred: Deferred[Reply] = Deferred(lambda _: canceller(self))


class Channel(Service):
    """
    A client over one or more servers: it keeps a connection to each,
    reconnecting with backoff, picks a server per call by the power of two
    choices, takes failing or draining servers out, and retries calls that
    are safe to send again.  A :class:`~twisted.application.service.Service`:
    it starts connecting when made, ``setServiceParent`` works, and
    ``stopService`` is :meth:`close`.

    :param reactor: the reactor (for endpoint strings; the clock too unless
        ``clock`` is given).
    :param endpoints: endpoint strings or ``IStreamClientEndpoint``
        providers, or an :class:`EndpointSet` to change them while running.
    :param wire: the wire format (:data:`~twisted_reqresp.BINARY` by default).
    :param codec: the default codec of call bodies and answers.
    :param limits: what each connection accepts from its server.
    :param timeout: the default call timeout in seconds (``None``: none); it
        bounds the whole call, waiting and retries included.
    :param clock: the clock for timeouts, backoff and health checks.
    :param interceptors: client interceptors, run once per attempt, the
        first outermost.
    :param retry: which failed calls are sent again; ``None`` never retries.
    :param budget: the retry budget (a new :class:`RetryBudget` if ``None``).
    :param reconnect: the delays between connection attempts to a backend.
    :param wait_for_ready: whether a call made while no backend is ready
        waits for one (bounded by its deadline and ``max_waiting_calls``)
        rather than failing at once.
    :param max_waiting_calls: the most calls that wait for a ready backend.
    :param health_check_interval: seconds between ``reqresp.health`` checks
        on each connection (``None``: no checks).
    :param failure_threshold: failed calls in a row that eject a backend.
    :param ejection_time: how long an ejected backend stays out, the k-th
        ejection in a row waiting the k-th delay, before one probe.
    :param propagate_metadata: the metadata keys a call made with
        ``parent=`` takes from its parent unless it sets them itself (the
        W3C trace context by default; ``()``: none).
    :param random: a function returning floats in ``[0, 1)``, for the
        jitter and the choice of backends.
    :raises TypeError: if one of ``interceptors`` is not an interceptor, or
        an option is not of its type (``retry``, ``budget``, ``reconnect``,
        ``ejection_time``, ``wait_for_ready``, ``random``).
    :raises ValueError: for an endpoint string that cannot be parsed, or a
        bad value (``timeout``, ``max_waiting_calls``,
        ``health_check_interval``, ``failure_threshold``).
    """

    def __init__(
        self,
        reactor: Any,
        endpoints: Sequence[str | IStreamClientEndpoint] | EndpointSet,
        *,
        wire: IWireFormat | None = None,
        codec: ICodec = BYTES,
        limits: Limits = DEFAULT_LIMITS,
        timeout: float | None = None,
        clock: IReactorTime | None = None,
        interceptors: Sequence[object] = (),
        retry: RetryPolicy | None = RetryPolicy(),  # noqa: B008 (frozen)
        budget: RetryBudget | None = None,
        reconnect: Backoff = Backoff(),  # noqa: B008 (frozen)
        wait_for_ready: bool = True,
        max_waiting_calls: int = 1000,
        health_check_interval: float | None = 5.0,
        failure_threshold: int = 5,
        ejection_time: Backoff = Backoff(initial=1.0, maximum=30.0),  # noqa: B008 (frozen)
        propagate_metadata: Collection[str] = PROPAGATED_METADATA,
        random: Callable[[], float] = _random.random,
    ) -> None:
        # Checked now: a wrong type met later, inside a callback or a
        # reconnect timer, would leave a call that never fires.
        _check_type("retry", retry, RetryPolicy, optional=True)
        _check_type("budget", budget, RetryBudget, optional=True)
        _check_type("reconnect", reconnect, Backoff)
        _check_type("ejection_time", ejection_time, Backoff)
        _check_type("wait_for_ready", wait_for_ready, bool)
        if not callable(random):
            raise TypeError(f"random must be a function returning floats, not {random!r}")
        check_timeout(timeout)
        _check_count("max_waiting_calls", max_waiting_calls, minimum=0)
        _check_count("failure_threshold", failure_threshold, minimum=1)
        if health_check_interval is not None and not (
            isinstance(health_check_interval, (int, float)) and health_check_interval > 0
        ):
            raise ValueError(
                "health_check_interval must be a positive number of seconds or None, "
                f"not {health_check_interval!r}"
            )
        self.reactor = reactor
        self.clock: IReactorTime = clock if clock is not None else reactor
        self.wire: IWireFormat = wire if wire is not None else BinaryFormat()
        self.codec = codec
        self.limits = limits
        self.timeout = timeout
        #: The client interceptors, outermost first.
        self.interceptors: tuple[object, ...] = tuple(interceptors)
        compose_client(self.interceptors, lambda call: fail(Exception()))  # checks them now
        self.retry = retry
        self.budget = budget if budget is not None else RetryBudget()
        self.reconnect = reconnect
        self.wait_for_ready = wait_for_ready
        self.max_waiting_calls = max_waiting_calls
        self.health_check_interval = health_check_interval
        self.failure_threshold = failure_threshold
        self.ejection_time = ejection_time
        #: The metadata keys a call with ``parent=`` takes from its parent.
        self.propagate_metadata = metadata_keys(propagate_metadata)
        self.random = random
        #: Counters of calls, attempts, retries, ejections and reconnects.
        self.stats = ChannelStats()
        self._endpoints = (
            endpoints if isinstance(endpoints, EndpointSet) else EndpointSet(endpoints)
        )
        self._backends: dict[object, Backend] = {}
        self._retiring: list[Deferred[None]] = []
        self._waiting: deque[_ChannelCall] = deque()
        self._calls: set[_ChannelCall] = set()
        self._ready_waiters: list[Deferred[Channel]] = []
        self._closing = False
        self._closed: Deferred[None] | None = None
        self._prepare(self._endpoints._endpoints)()
        self._endpoints._observers.append(self._prepare)
        self.startService()

    # -- the service ------------------------------------------------------------

    def startService(self) -> None:
        """Start connecting (done when the channel is made)."""
        if self.running or self._closing:
            return
        super().startService()  # type: ignore[no-untyped-call]
        for backend in list(self._backends.values()):
            backend.start()

    def stopService(self) -> Deferred[None]:
        """The same as :meth:`close`."""
        super().stopService()  # type: ignore[no-untyped-call]
        return self.close()

    # -- backends ---------------------------------------------------------------

    def _prepare(self, wanted: Mapping[object, str | IStreamClientEndpoint]) -> Callable[[], None]:
        """
        Make the backends of the endpoints in ``wanted`` that are new (which
        raises for one that cannot be parsed, changing nothing).

        :returns: what follows the set: it starts the new backends and
            retires the removed ones.
        """
        new: dict[object, Backend] = {}
        for key, endpoint in wanted.items():
            if key not in self._backends and key not in new:
                try:
                    new[key] = Backend(self, key, endpoint)
                except (ValueError, TypeError, KeyError) as e:
                    # clientFromString's own errors do not say which endpoint.
                    raise ValueError(f"invalid endpoint {endpoint_name(endpoint)!r}: {e}") from e

        def apply() -> None:
            if self._closing:
                return
            backends = {key: self._backends.get(key) or new[key] for key in wanted}
            for key in [key for key in self._backends if key not in wanted]:
                self._retire(self._backends.pop(key))
            self._backends = backends  # in the set's order
            for backend in new.values():
                if self.running:
                    backend.start()

        return apply

    def _retire(self, backend: Backend) -> None:
        d = backend.retire()
        self._retiring.append(d)
        d.addBoth(lambda _: self._retiring.remove(d))

    @property
    def backends(self) -> tuple[BackendInfo, ...]:
        """The backends now, in the endpoint set's order."""
        return tuple(backend.info() for backend in self._backends.values())

    def _backend_available(self) -> None:
        """A backend may take calls: send the waiting ones, tell when_ready's waiters."""
        waiters, self._ready_waiters = self._ready_waiters, []
        for d in waiters:
            if not d.called:
                d.callback(self)
        waiting = self._waiting
        while waiting and self._pick(None) is not None:
            call = waiting.popleft()
            call.waiting = False
            if call.timer is not None:
                call.timer.cancel()
                call.timer = None
            self._attempt(call)

    def _pick(self, avoid: Backend | None) -> Backend | None:
        """The power of two choices among the available backends."""
        backends = self._backends
        if len(backends) == 1:
            # One endpoint, the common case: no list to build per call.
            for only in backends.values():
                return only if only.available else None
        ready = [b for b in backends.values() if b.available]
        if len(ready) > 1 and avoid is not None and avoid in ready:
            ready.remove(avoid)
        if not ready:
            return None
        if len(ready) == 1:
            return ready[0]
        count = len(ready)
        first = min(int(self.random() * count), count - 1)
        second = min(int(self.random() * (count - 1)), count - 2)
        if second >= first:
            second += 1
        a, b = ready[first], ready[second]
        return a if (a.at_max, a.outstanding) <= (b.at_max, b.outstanding) else b

    def when_ready(self) -> Deferred[Channel]:
        """
        :returns: a Deferred that fires with this channel once a backend is
            ready (at once if one is), or fails with
            :class:`~twisted_reqresp.ConnectionClosed` if the channel closes first.
        """
        if self._closing:
            return fail(ConnectionClosed("the channel is closed"))
        if self._pick(None) is not None:
            return succeed(self)
        d: Deferred[Channel] = Deferred(self._forget_ready_waiter)
        self._ready_waiters.append(d)
        return d

    def _forget_ready_waiter(self, d: Deferred[Channel]) -> None:
        # Not in the list once _backend_available() or close() took it, to
        # fire it: a sibling's callback may cancel it then.
        if d in self._ready_waiters:
            self._ready_waiters.remove(d)

    # -- calls -------------------------------------------------------------------

    def call(
        self,
        method: str,
        body: Any = _NO_BODY,
        *,
        codec: ICodec | None = None,
        timeout: float | None = None,
        metadata: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        parent: Call | None = None,
        wait_for_ready: bool | None = None,
    ) -> Deferred[Reply]:
        """
        Call ``method`` on one of the backends, sending it again after a
        failure that the retry policy and budget allow.

        Never raises: every problem arrives as the Deferred's failure.

        :param method: the method name.
        :param body: the request body, encoded with ``codec`` (empty if
            omitted).
        :param codec: the codec for this call (the channel's by default).
        :param timeout: seconds for the whole call, waiting and retries
            included (the channel's default if omitted); each attempt sends
            what is left as its deadline.
        :param metadata: key/value text pairs sent with each attempt.
        :param parent: the :class:`~twisted_reqresp.Call` a responder is
            serving, when it makes this call on that call's behalf: as for
            :meth:`Client.call <twisted_reqresp.Client.call>`, the call (all
            its attempts) gets at most what is left of the parent's
            deadline, is cancelled when the server gives up on the parent,
            and passes on the parent's ``propagate_metadata`` keys.
        :param wait_for_ready: overrides the channel's ``wait_for_ready``.
        :returns: a Deferred firing with a :class:`~twisted_reqresp.Reply`,
            or failing with the last attempt's error, which has an
            ``attempts`` attribute (and says "after N attempts" when N > 1);
            or with :class:`~twisted_reqresp.ConnectionClosed` when no
            backend is ready and the call does not wait, or
            :class:`~twisted_reqresp.StatusError` RESOURCE_EXHAUSTED when
            ``max_waiting_calls`` wait already.  Cancelling it cancels the
            attempt in flight (sending CANCEL) and any backoff.
        """
        codec = codec if codec is not None else self.codec
        self.stats.calls += 1
        if self._closing:
            d: Deferred[Reply] = fail(ConnectionClosed("the channel is closed", retry_safe=True))
        else:
            timeout = timeout if timeout is not None else self.timeout
            try:
                data = encode_body(body, codec)
                if parent is not None:
                    timeout, metadata = inherit(parent, timeout, metadata, self.propagate_metadata)
                pairs = dict(metadata_pairs(metadata)) if metadata else {}
                check_timeout(timeout)
            except Exception:
                d = fail()
            else:
                deadline = None if timeout is None else self.clock.seconds() + timeout
                wait = self.wait_for_ready if wait_for_ready is None else wait_for_ready
                call = _ChannelCall(method, data, pairs, deadline, wait, self._cancel)
                d = call.deferred
                self._calls.add(call)
                self._attempt(call)
        d.addBoth(self._count)
        if codec is not BYTES:
            d = decode_replies(d, codec)
        if parent is not None:
            bind(parent, d)
        return d

    def stream(
        self,
        method: str,
        body: Any = _NO_BODY,
        *,
        kind: str = "server_stream",
        codec: ICodec | None = None,
        timeout: float | None = None,
        metadata: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        parent: Call | None = None,
        result_codec: ICodec | None = None,
    ) -> StreamingCall[Any, Any]:
        """
        Open a streaming call (see :meth:`Client.stream
        <twisted_reqresp.Client.stream>`) on one of the backends, chosen as
        for :meth:`call` among those ready now.

        A streaming call is never sent again: once its REQUEST is out, its
        messages may have been consumed, and the channel keeps no copy of
        them.  It does not wait for a backend either: with none ready it
        fails at once with :class:`~twisted_reqresp.ConnectionClosed`
        (retry-safe), and the client interceptors do not see it.

        :returns: the :class:`~twisted_reqresp.StreamingCall`; never raises.
        """
        codec = codec if codec is not None else self.codec
        self.stats.calls += 1
        timeout = timeout if timeout is not None else self.timeout
        backend = None if self._closing else self._pick(None)
        if backend is None:
            why = "the channel is closed" if self._closing else self.why_not_ready()
            call = StreamingCall.failed(kind, Failure(ConnectionClosed(why, retry_safe=True)))
        else:
            backend.calls += 1
            self.stats.attempts += 1
            assert backend.protocol is not None
            call = open_stream(
                backend.protocol,
                method,
                body,
                kind=kind,
                codec=codec,
                result_codec=result_codec,
                timeout=timeout,
                metadata=metadata,
                parent=parent,
                propagate=self.propagate_metadata,
            )
        call._on_done.append(lambda: self._count(call._outcome))
        if call.done:
            self._count(call._outcome)
        return call

    def _count(self, result: object) -> object:
        if isinstance(result, Failure):
            self.stats.failed += 1
        else:
            self.stats.succeeded += 1
        return result

    def _time_left(self, call: _ChannelCall) -> float | None:
        if call.deadline is None:
            return None
        return call.deadline - self.clock.seconds()

    def _attempt(self, call: _ChannelCall) -> None:
        call.timer = None
        if call.deferred.called:
            return
        if self._closing:
            self._finish(call, Failure(ConnectionClosed("the channel is closed", retry_safe=True)))
            return
        time_left = self._time_left(call)
        if time_left is not None and time_left <= 0:
            self._finish(call, Failure(DeadlineExceeded("the deadline passed before a retry")))
            return
        backend = self._pick(call.backend)
        if backend is None:
            self._wait(call, time_left)
            return
        call.attempts += 1
        call.backend = backend
        backend.calls += 1
        self.stats.attempts += 1
        if call.attempts > 1:
            self.stats.retries += 1
        protocol = backend.protocol
        assert protocol is not None
        if backend.chain is None:
            # No interceptors: straight to the protocol (what start_call does then).
            d = protocol.call(call.method, call.body, metadata=call.metadata, timeout=time_left)
        else:
            d = start_call(
                protocol,
                backend.chain,
                call.method,
                call.body,
                call.metadata,
                time_left,
                call.attempts,
            )
        call.current = d
        d.addCallbacks(
            self._answered,
            self._attempt_failed,
            callbackArgs=(call, backend),
            errbackArgs=(call, backend),
        )

    def _wait(self, call: _ChannelCall, time_left: float | None) -> None:
        if not call.wait_for_ready:
            why = self.why_not_ready()
            self._finish(
                call, Failure(ConnectionClosed(f"no backend is ready: {why}", retry_safe=True))
            )
            return
        if len(self._waiting) >= self.max_waiting_calls:
            error = StatusError(
                StatusCode.RESOURCE_EXHAUSTED,
                f"no backend is ready and {len(self._waiting)} calls wait for one "
                "(max_waiting_calls)",
                retry_safe=True,
            )
            self._finish(call, Failure(error))
            return
        call.waiting = True
        self._waiting.append(call)
        if time_left is not None:
            call.timer = self.clock.callLater(time_left, self._waited_too_long, call)

    def why_not_ready(self) -> str:
        """
        :returns: why no backend takes calls, for people: the last
            connection error, or else each backend's state.
        """
        states = [b.info() for b in self._backends.values()]
        if not states:
            return "the channel has no endpoints"
        errors = [b.last_error for b in self._backends.values() if b.last_error]
        if errors:
            return errors[-1]
        return ", ".join(f"{s.endpoint} is {s.state}" for s in states)

    def _waited_too_long(self, call: _ChannelCall) -> None:
        call.timer = None
        self._unwait(call)
        why = self.why_not_ready()
        self._finish(call, Failure(DeadlineExceeded(f"no backend was ready in time: {why}")))

    def _unwait(self, call: _ChannelCall) -> None:
        if call.waiting:
            call.waiting = False
            self._waiting.remove(call)

    def _answered(self, reply: Reply, call: _ChannelCall, backend: Backend) -> None:
        call.current = None
        backend.record_success()
        self.budget.record_success()
        self._calls.discard(call)
        if not call.deferred.called:
            call.deferred.callback(reply)

    def _attempt_failed(self, failure: Failure, call: _ChannelCall, backend: Backend) -> None:
        call.current = None
        if call.deferred.called:
            return  # cancelled by the caller: the attempt's cancellation
        error = failure.value
        assert error is not None
        backend.record_error(error)
        retry = self.retry
        if retry is None or not retry.may_retry(call.method, error):
            self._finish(call, failure)
            return
        # A call the server never received (refused by a GOAWAY, or on a
        # connection closed before it was sent) is sent again at once and
        # outside the budget, as gRPC's transparent retries are: it says
        # nothing about the backends' health (a drain is not a failure),
        # and resending it costs one request, not a second run.
        if isinstance(error, ConnectionClosed) and error.retry_safe:
            if call.attempts >= retry.max_attempts:
                self._finish(call, failure)
            else:
                self._attempt_later(call, 0, backend, error)
            return
        self.budget.record_failure()
        delay = retry.next_delay(
            call.method, error, call.attempts, self._time_left(call), self.random
        )
        if delay is None:
            self._finish(call, failure)
            return
        if not self.budget.allows_retry():
            self.stats.retries_throttled += 1
            self._finish(call, failure)
            return
        self._attempt_later(call, delay, backend, error)

    def _attempt_later(
        self, call: _ChannelCall, delay: float, backend: Backend, error: BaseException
    ) -> None:
        # Debug, not info: the channel's counters say how many; this says
        # which call and why, for whoever is chasing one.
        _log.debug(
            "retrying {method!r} in {delay:.3g} s (attempt {attempt} failed on {backend}: {error})",
            method=call.method,
            delay=delay,
            attempt=call.attempts,
            backend=backend.name,
            error=error,
        )
        if self._closing:
            # No backend is left for it: fail it now ("the channel is
            # closed"), not from a timer that close()'s Deferred would not wait for.
            self._attempt(call)
        else:
            call.timer = self.clock.callLater(delay, self._attempt, call)

    def _finish(self, call: _ChannelCall, failure: Failure) -> None:
        self._calls.discard(call)
        if call.deferred.called:
            return
        error = failure.value
        attempts = call.attempts
        try:
            error.attempts = attempts  # type: ignore[union-attr]
            if attempts > 1 and isinstance(error, StatusError):
                error.message = f"{error.message} (after {attempts} attempts)"
                error.args = (error.code, error.message, error.details)
        except AttributeError:
            pass
        call.deferred.errback(failure)

    def _cancel(self, call: _ChannelCall) -> None:
        self._calls.discard(call)
        self._unwait(call)
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None
        current, call.current = call.current, None
        if current is not None:
            current.cancel()

    # -- closing -------------------------------------------------------------------

    def close(self) -> Deferred[None]:
        """
        Close in order: stop reconnecting; new calls, waiting calls and
        calls between retries fail with
        :class:`~twisted_reqresp.ConnectionClosed`; calls in flight finish;
        then every connection closes.

        :returns: a Deferred that fires once every connection is closed.
        """
        if self._closed is None:
            self._closing = True
            if self.running:
                Service.stopService(self)
            if self._prepare in self._endpoints._observers:
                self._endpoints._observers.remove(self._prepare)
            for backend in list(self._backends.values()):
                self._retire(backend)
            self._backends.clear()
            for call in list(self._calls):
                if call.current is None:
                    self._unwait(call)
                    if call.timer is not None:
                        call.timer.cancel()
                    self._attempt(call)
            waiters, self._ready_waiters = self._ready_waiters, []
            for d in waiters:
                d.errback(ConnectionClosed("the channel is closed"))
            done = DeferredList(list(self._retiring), consumeErrors=True)
            self._closed = Deferred()
            closed = self._closed
            done.addCallback(lambda _: closed.callback(None))
        result: Deferred[None] = Deferred()
        self._closed.addCallback(lambda _: result.callback(None))
        return result


def _check_count(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, not {value!r}")


def _check_type(name: str, value: object, kind: type, *, optional: bool = False) -> None:
    if not (isinstance(value, kind) or (optional and value is None)):
        what = f"a {kind.__name__} or None" if optional else f"a {kind.__name__}"
        raise TypeError(f"{name} must be {what}, not {value!r}")
