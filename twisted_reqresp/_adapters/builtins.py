"""
The built-in methods every :class:`~twisted_reqresp.ServerFactory` serves,
whatever its responder, in the reserved namespace ``reqresp.``:

``reqresp.health``
    The body is a service name (UTF-8; empty: the whole server).  The answer
    is the bytes ``SERVING``, ``NOT_SERVING`` or ``DRAINING`` (so the line
    format answers ``OK SERVING``, which a load balancer's health check can
    match as a string); a service name nobody set is answered NOT_FOUND.
    gRPC's health protocol (``grpc.health.v1.Health/Check``), with one more
    status: DRAINING, from the moment the server starts to drain.
``reqresp.methods``
    JSON: ``{"methods": [{"name", "codec", "kind", "doc"}, ...]}``, the
    responder's methods (see :func:`describe`) and then these.
``reqresp.stats``
    JSON: the server's :class:`~twisted_reqresp.ServerStats` counters.

They are ordinary requests on the wire (``docs/protocol.md``, "Reserved
method names").  The server answers them as soon as it reads them, before
the responder, its concurrency limit and its parking: a health check must
answer while the application is busy, or it reports the wrong thing.  They
are answered from memory and never wait, so skipping the limits cannot be
used to make the server hold more work.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .._core.errors import StatusError
from .._core.status import StatusCode
from ..codecs import JSON
from .stats import ServerStats

__all__ = [
    "ANSWERED_WHILE_DRAINING",
    "RESERVED_PREFIX",
    "Builtins",
    "HealthStatus",
    "MethodDescription",
    "ServingStatus",
    "describe",
]

#: Method names starting with this belong to the server, not the responder.
RESERVED_PREFIX = "reqresp."

#: The built-in methods a draining connection still answers: a health
#: check on an open connection reads DRAINING rather than a refusal.
ANSWERED_WHILE_DRAINING = frozenset({"reqresp.health"})

#: The longest service name quoted back in a NOT_FOUND message: the peer
#: chose it, and the message is for a person.
_QUOTED_NAME = 100


class ServingStatus(StrEnum):
    """What ``reqresp.health`` answers for a service (gRPC's statuses, plus DRAINING)."""

    #: Ready for requests.
    SERVING = "SERVING"
    #: Up, but not to be sent requests (the application said so).
    NOT_SERVING = "NOT_SERVING"
    #: Shutting down: finishing the requests it has, refusing new ones.
    DRAINING = "DRAINING"


class HealthStatus:
    """
    The serving status of a server and of the services it names, as
    ``reqresp.health`` reports it; every :class:`~twisted_reqresp.ServerFactory`
    has one as its ``health`` attribute.

    The whole server (service name ``""``) starts SERVING; other service
    names are unknown (answered NOT_FOUND) until :meth:`set`.  Once the
    server drains (:meth:`~twisted_reqresp.ServerFactory.drain`), every
    known name reports DRAINING, whatever was set.
    """

    def __init__(self) -> None:
        self._statuses: dict[str, ServingStatus] = {"": ServingStatus.SERVING}
        self._draining = False

    def set(self, service: str, status: ServingStatus | str) -> None:
        """
        Set a service's status (the whole server's with ``""``).

        :param service: the service name.
        :param status: a :class:`ServingStatus` or its name (``"NOT_SERVING"``).
        :raises ValueError: if ``status`` is not one of the statuses.
        """
        try:
            self._statuses[service] = ServingStatus(status)
        except ValueError:
            names = ", ".join(s.value for s in ServingStatus)
            raise ValueError(f"a serving status is one of {names}, not {status!r}") from None

    def clear(self, service: str) -> None:
        """
        Forget a service: ``reqresp.health`` answers NOT_FOUND for it again.
        The whole server's status (``""``) goes back to SERVING instead.

        :param service: the service name.
        """
        if service:
            self._statuses.pop(service, None)
        else:
            self._statuses[""] = ServingStatus.SERVING

    def get(self, service: str = "") -> ServingStatus:
        """
        :param service: the service name; the whole server's if omitted.
        :returns: its status: DRAINING for every known name once the server drains.
        :raises KeyError: if no status was set for ``service``.
        """
        status = self._statuses[service]
        return ServingStatus.DRAINING if self._draining else status

    @property
    def draining(self) -> bool:
        """Whether the server has started to drain."""
        return self._draining

    def start_draining(self) -> None:
        """The server started to drain: every known name reports DRAINING from now on."""
        self._draining = True

    def services(self) -> dict[str, ServingStatus]:
        """:returns: every known service name (``""`` included) and its status now."""
        return {name: self.get(name) for name in self._statuses}


@dataclass(frozen=True, kw_only=True, slots=True)
class MethodDescription:
    """One method, as ``reqresp.methods`` lists it."""

    #: The method name callers use.
    name: str
    #: The name of the codec of its bodies (``"bytes"``, ``"json"``, ...).
    codec: str = "bytes"
    #: How it is called: ``"unary"`` (one request, one answer), or, for a
    #: method of a typed service, ``"server_stream"``, ``"client_stream"``
    #: or ``"bidi_stream"``.
    kind: str = "unary"
    #: What it does, for people: the function's docstring, or empty.
    doc: str = ""
    #: The JSON Schema of its request body, for a method of a typed
    #: service (``twisted_reqresp.service``); ``None`` otherwise.
    request_schema: Mapping[str, Any] | None = None
    #: The JSON Schema of its response body, likewise.
    response_schema: Mapping[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """
        :returns: the description as JSON-ready data: ``name``, ``codec``,
            ``kind`` and ``doc``, and ``request_schema`` and
            ``response_schema`` when it has them.
        """
        described: dict[str, Any] = {
            "name": self.name,
            "codec": self.codec,
            "kind": self.kind,
            "doc": self.doc,
        }
        if self.request_schema is not None:
            described["request_schema"] = self.request_schema
        if self.response_schema is not None:
            described["response_schema"] = self.response_schema
        return described


def describe(*candidates: object) -> list[MethodDescription]:
    """
    What a responder says about its methods: the result of the first
    candidate's ``describe()`` method, for the first candidate that has one
    (a :class:`~twisted_reqresp.Router` has; so may any responder or
    responder factory).  Without one, nothing: a plain responder's methods
    are not known until it is called.

    :param candidates: the connection's responder, then its factory.
    :returns: the descriptions, in the order given.
    :raises TypeError: if ``describe()`` returns anything but
        :class:`MethodDescription` objects (the responder's bug: answered
        INTERNAL and logged).
    """
    for candidate in candidates:
        method = getattr(candidate, "describe", None)
        if callable(method):
            described = list(method())
            for item in described:
                if not isinstance(item, MethodDescription):
                    raise TypeError(
                        f"{candidate!r}.describe() must return MethodDescription objects, "
                        f"not {type(item).__name__}"
                    )
            return described
    return []


def doc_of(function: Callable[..., Any]) -> str:
    """:returns: ``function``'s docstring, dedented, or ``""``."""
    return inspect.getdoc(function) or ""


class Builtins:
    """
    Answers the built-in methods for one :class:`~twisted_reqresp.ServerFactory`.

    :param health: the server's statuses.
    :param stats: returns the server's counters (looked up late: a factory
        makes them on first use).
    """

    def __init__(self, health: HealthStatus, stats: Callable[[], ServerStats]) -> None:
        self.health = health
        self._stats = stats
        self._methods: Mapping[str, tuple[Callable[[bytes, Iterable[object]], bytes], str]] = {
            "reqresp.health": (self._health, "bytes"),
            "reqresp.methods": (self._list_methods, "json"),
            "reqresp.stats": (self._stats_answer, "json"),
        }

    def own_methods(self) -> list[MethodDescription]:
        """:returns: the built-in methods' own descriptions, sorted by name."""
        return [
            MethodDescription(name=name, codec=codec, doc=doc_of(function))
            for name, (function, codec) in sorted(self._methods.items())
        ]

    def answer(self, method: str, body: bytes, responders: Iterable[object] = ()) -> bytes:
        """
        Answer a call to a reserved method.

        :param method: a name starting with :data:`RESERVED_PREFIX`.
        :param body: the request body.
        :param responders: what :func:`describe` asks, for ``reqresp.methods``.
        :returns: the answer's body.
        :raises StatusError: NOT_FOUND for a reserved name that is not a
            built-in method or an unknown service, INVALID_ARGUMENT for a
            service name that is not UTF-8.
        """
        entry = self._methods.get(method)
        if entry is None:
            raise StatusError(
                StatusCode.NOT_FOUND,
                f"unknown method {method!r} (the {RESERVED_PREFIX} namespace is reserved for "
                f"the server's built-in methods: {', '.join(sorted(self._methods))})",
            )
        return entry[0](body, responders)

    def _health(self, body: bytes, responders: Iterable[object]) -> bytes:
        """
        Answer the serving status of the service named in the body (the
        whole server's if it is empty): ``SERVING``, ``NOT_SERVING`` or
        ``DRAINING``; NOT_FOUND for a name with no status.
        """
        try:
            service = body.decode("utf-8")
        except UnicodeDecodeError:
            raise StatusError(StatusCode.INVALID_ARGUMENT, "a service name is UTF-8 text") from None
        try:
            status = self.health.get(service)
        except KeyError:
            shown = service if len(service) <= _QUOTED_NAME else service[:_QUOTED_NAME] + "..."
            raise StatusError(StatusCode.NOT_FOUND, f"unknown service {shown!r}") from None
        return status.value.encode("ascii")

    def _list_methods(self, body: bytes, responders: Iterable[object]) -> bytes:
        """
        Answer the responder's methods, then the built-in ones, as JSON:
        ``{"methods": [{"name", "codec", "kind", "doc"}, ...]}``.
        """
        described = describe(*responders) + self.own_methods()
        return JSON.encode({"methods": [item.as_dict() for item in described]})

    def _stats_answer(self, body: bytes, responders: Iterable[object]) -> bytes:
        """Answer the server's counters and uptime, as JSON."""
        return JSON.encode(self._stats().as_dict())
