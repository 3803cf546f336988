"""
The values a responder sees and returns: :class:`Call`, :class:`Reply` and
:class:`ConnectionInfo`.

Pure data: imports nothing from Twisted.  A clock is any object with a
``seconds()`` method (``IReactorTime``), passed in, never imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from .events import Metadata
from .frozen import fast_init, twin_of

__all__ = [
    "Call",
    "Cancellation",
    "ConnectionInfo",
    "OutgoingCall",
    "Reply",
    "metadata_pairs",
    "new_call",
]


class _Clock(Protocol):
    def seconds(self) -> float: ...


def metadata_pairs(metadata: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> Metadata:
    """
    Normalise user metadata into the wire's ``((key, value), ...)`` form.

    :param metadata: a mapping, an iterable of pairs, or ``None``.
    :returns: a tuple of ``(str, str)`` pairs.
    :raises TypeError: if a key or value is not a string.
    """
    if not metadata:
        return ()
    items = metadata.items() if isinstance(metadata, Mapping) else metadata
    pairs = tuple((k, v) for k, v in items)
    for k, v in pairs:
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"metadata keys and values must be str, not {k!r}: {v!r}")
    return pairs


class Cancellation:
    """
    Whether the server gave up on one request, and who is to be told when
    it does: one per request, shared by every copy of its :class:`Call`
    (a router's :meth:`Call.with_body`, an interceptor's
    ``dataclasses.replace``), so that a callback registered on any copy
    hears the server's one :meth:`cancel`.

    The server makes one for every request it starts, so making one costs
    one allocation and nothing else (``benchmarks/hotpath.py``): no
    ``__init__``, and the slot stays unset until the first subscriber.
    """

    # _callbacks: unset while nobody listens and the request runs; a dict
    # (key -> callback, in subscription order) once someone does; None once
    # cancelled.
    __slots__ = ("_callbacks",)

    _callbacks: dict[object, Callable[[], object]] | None

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return getattr(self, "_callbacks", True) is None

    def subscribe(self, callback: Callable[[], object]) -> Callable[[], None]:
        """
        :param callback: called with no arguments when :meth:`cancel` is;
            at once if it already was.
        :returns: a function that unsubscribes ``callback`` (doing nothing
            once it ran or was unsubscribed).
        """
        callbacks = getattr(self, "_callbacks", _UNSET)
        if callbacks is None:
            callback()
            return _nothing
        if callbacks is _UNSET:
            callbacks = self._callbacks = {}
        key = object()
        callbacks[key] = callback

        def unsubscribe() -> None:
            now = getattr(self, "_callbacks", None)
            if now is not None:
                now.pop(key, None)

        return unsubscribe

    @property
    def subscribers(self) -> int:
        """How many callbacks wait for :meth:`cancel` (for leak tests)."""
        callbacks = getattr(self, "_callbacks", None)
        return 0 if callbacks is None else len(callbacks)

    def cancel(self) -> list[BaseException]:
        """
        Mark the request given up and call every subscriber once, in the
        order they subscribed; later calls do nothing.

        :returns: what the callbacks raised (each one runs whatever the
            others did; the server logs these).
        """
        callbacks = getattr(self, "_callbacks", _UNSET)
        if callbacks is None:
            return []
        self._callbacks = None
        errors: list[BaseException] = []
        if callbacks is not _UNSET:
            for callback in callbacks.values():
                try:
                    callback()
                except Exception as e:
                    errors.append(e)
        return errors


_UNSET: dict[object, Callable[[], object]] = {}


def _nothing() -> None:
    return None


@fast_init
@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectionInfo:
    """What a responder may know about the connection a call came in on."""

    #: A number unique among this server's connections, for logs.
    connection_id: int
    #: The peer's address (an ``IAddress``), as the transport reports it.
    peer: Any
    #: Our own address on this connection.
    host: Any
    #: The name of the wire format spoken (``"binary"``, ``"line"``, ...).
    wire_format: str
    #: The subject of the client certificate that the TLS layer verified,
    #: as an RFC 4514 string (``"CN=alice,O=Example"``), or ``None``: not
    #: TLS, or an endpoint that asks for no client certificate (only
    #: ``mtls:`` does; see ``docs/twistd.md``).
    peer_certificate_subject: str | None = None
    #: That certificate itself (a ``cryptography.x509.Certificate``, for
    #: its subjectAltName or fingerprint), or ``None``.
    peer_certificate: Any = None
    #: The server's :class:`~twisted_reqresp.HealthStatus`, which
    #: ``reqresp.health`` reports: a responder sets its own services'
    #: statuses on it (``call.connection.health.set("db", "NOT_SERVING")``),
    #: including one served by ``twistd reqresp --responder``.  ``None``
    #: outside a server.
    health: Any = None


@fast_init
@dataclass(frozen=True, kw_only=True, slots=True)
class Reply:
    """
    A successful answer: a body and metadata.

    A responder may return one to send metadata with its answer (returning
    a plain value sends it as the body with no metadata); a client's
    :meth:`~twisted_reqresp.Client.call` fires with one.
    """

    #: The body: bytes on the wire, or the value a codec decoded.
    body: Any = b""
    #: Metadata pairs as a read-only mapping (a later duplicate key wins).
    metadata: Mapping[str, str] = field(default_factory=dict)


@fast_init
@dataclass(frozen=True, kw_only=True, slots=True)
class Call:
    """
    One request, as a responder sees it.
    """

    #: The method name.
    method: str
    #: The body: the raw bytes, or the value the method's codec decoded.
    body: Any
    #: The request's metadata (a later duplicate key wins).
    metadata: Mapping[str, str]
    #: The connection the request came in on.
    connection: ConnectionInfo
    #: The request's id on its connection.
    request_id: int = 0
    #: When the caller stops waiting, in the server clock's seconds, or
    #: ``None`` if the request has no deadline.
    deadline: float | None = None
    #: The call's stream (a :class:`~twisted_reqresp.ServerStream`: read the
    #: client's messages, write the server's), or ``None`` for a unary call.
    stream: Any = field(default=None, compare=False)
    _clock: _Clock | None = field(default=None, repr=False, compare=False)
    #: Shared by every copy of this call (see :class:`Cancellation`).
    _cancellation: Cancellation = field(default_factory=Cancellation, repr=False, compare=False)
    # The call came over the line format, which has no streaming calls (a
    # router answers a streaming method so: docs/protocol.md).
    _line: bool = field(default=False, repr=False, compare=False)

    @property
    def cancelled(self) -> bool:
        """
        Whether the server gave up on this call: the client cancelled it,
        its deadline passed, its connection closed or was lost, or the
        server's shutdown grace period ran out.  Never set once the
        responder has answered.
        """
        return self._cancellation.cancelled

    def on_cancel(self, callback: Callable[[], object]) -> Callable[[], None]:
        """
        Be told when the server gives up on this call (see
        :attr:`cancelled`): to stop work done for it, or to cancel the calls
        it made to other services (``Client.call(..., parent=call)`` does
        that for you).

        :param callback: called with no arguments, once, when the server
            gives up; at once if it already has.  What it raises is logged.
        :returns: a function of no arguments that unsubscribes ``callback``;
            call it when the work is done, so that a call that lives long
            does not hold callbacks it no longer needs.
        """
        return self._cancellation.subscribe(callback)

    def time_remaining(self) -> float | None:
        """
        :returns: seconds left before the deadline (never negative), or
            ``None`` if the request has no deadline.
        """
        if self.deadline is None or self._clock is None:
            return None
        return max(0.0, self.deadline - self._clock.seconds())

    def with_body(self, body: Any) -> Call:
        """
        :param body: the new body.
        :returns: a copy of this call with ``body`` replaced (how a router
            hands a responder the decoded value).
        """
        return replace(self, body=body)


@fast_init
@dataclass(frozen=True, kw_only=True, slots=True)
class OutgoingCall:
    """
    One call as a client interceptor sees it, before it is sent: change it
    with :func:`dataclasses.replace` and pass the copy on.
    """

    #: The method name.
    method: str
    #: The request body, already encoded by the call's codec.
    body: bytes = b""
    #: The request's metadata (a later duplicate key of the caller's wins).
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: Seconds the caller waits for the answer, or ``None`` for no timeout.
    timeout: float | None = None
    #: Which attempt this is: 1 for the first send; a
    #: :class:`~twisted_reqresp.Channel` that sends the call again passes
    #: each retry through the interceptors with 2, 3, ...
    attempt: int = 1


#: See :func:`new_call`.
_CALL_TWIN = twin_of(Call)
_object_new = object.__new__


def new_call(
    method: str,
    body: Any,
    metadata: Mapping[str, str],
    connection: ConnectionInfo,
    request_id: int,
    deadline: float | None,
    clock: _Clock | None,
    cancellation: Cancellation,
    line: bool,
    stream: Any = None,
) -> Call:
    """
    ``Call(method=method, ..., stream=stream, _line=line)``, made about
    three times faster, for the server's once-per-request call.

    A frozen dataclass's ``__init__`` must store each of its ten fields
    through a slot descriptor's ``__set__`` (its ``__setattr__`` refuses);
    this stores them into a plain twin with the same slots and then makes
    the object a :class:`Call`.  The result is a :class:`Call` like any
    other (same type, fields, equality, immutability); where the twin
    cannot become one, the ordinary constructor is used
    (``tests/test_fastpath_differential.py`` proves both equal to it).
    """
    twin = _CALL_TWIN
    if twin is None:
        return Call(
            method=method,
            body=body,
            metadata=metadata,
            connection=connection,
            request_id=request_id,
            deadline=deadline,
            stream=stream,
            _clock=clock,
            _cancellation=cancellation,
            _line=line,
        )
    call = _object_new(twin)
    call.method = method
    call.body = body
    call.metadata = metadata
    call.connection = connection
    call.request_id = request_id
    call.deadline = deadline
    call.stream = stream
    call._clock = clock
    call._cancellation = cancellation
    call._line = line
    call.__class__ = Call
    result: Call = call
    return result
