"""
:class:`AccessLog`: the access log, a server interceptor that emits one
structured :mod:`twisted.logger` event per call.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from .._core.call import Call
from ..interfaces import IServerInterceptor
from .interceptors import Outcome

__all__ = ["ACCESS_LOG_NAMESPACE", "AccessLog", "peer_text"]

#: The log namespace of access log events, to filter them with
#: ``twisted.logger.LogLevelFilterPredicate`` or pick them out of a JSON log.
ACCESS_LOG_NAMESPACE = "twisted_reqresp.access"

_FORMAT = (
    "{peer} {method} {status} {duration_ms:.3f} ms "
    "in={request_bytes} out={response_bytes} (connection {connection_id}, request {request_id})"
)


def peer_text(peer: object) -> str:
    """
    :param peer: an ``IAddress``.
    :returns: ``host:port`` (``[host]:port`` for IPv6), a UNIX socket's
        path (``unix`` when the peer has none), or ``str(peer)``.
    """
    if isinstance(peer, IPv4Address):
        return f"{peer.host}:{peer.port}"
    if isinstance(peer, IPv6Address):
        return f"[{peer.host}]:{peer.port}"
    if isinstance(peer, UNIXAddress):
        name: bytes | str | None = peer.name
        if isinstance(name, bytes):
            return name.decode("utf-8", "replace") or "unix"
        return name or "unix"
    return str(peer)


@implementer(IServerInterceptor)
class AccessLog:
    """
    A server interceptor that logs one ``info`` event per call once it is
    answered (or cancelled), in the namespace
    ``twisted_reqresp.access``, with these fields:

    ``peer``
        the client's address as text (``host:port``; behind a PROXY
        header, the real client's).
    ``method``
        the method name.
    ``status``, ``code``
        the answer's status name (``OK``, ``NOT_FOUND``, ...) and code.
    ``duration_ms``
        milliseconds from when the call reached the interceptor to its
        outcome.
    ``request_bytes``, ``response_bytes``
        the body sizes (``response_bytes`` is ``0`` for an error, ``None``
        for an answer the server had still to encode).
    ``request_id``, ``connection_id``
        the request's id on its connection, and the connection's.

    Put it first in the list (outermost) so that it sees what the other
    interceptors answer or refuse too.  Requests refused before any
    responder runs (a deadline already past, a malformed request) are
    not logged here; the server logs those itself.

    :param clock: the clock for durations; the server's (the one the call
        carries) if omitted.
    """

    def __init__(self, clock: IReactorTime | None = None) -> None:
        self.clock = clock
        self.log = Logger(namespace=ACCESS_LOG_NAMESPACE)

    def intercept(self, call: Call, proceed: Any) -> Deferred[Any]:
        """
        Pass the call on and log its outcome.

        :param call: the call.
        :param proceed: the rest of the chain.
        :returns: the Deferred ``proceed`` returned, with the logging added.
        """
        clock: Any = self.clock if self.clock is not None else call._clock
        started = clock.seconds() if clock is not None else 0.0

        def observe(result: Any) -> Any:
            outcome = Outcome.of(result)
            ended = clock.seconds() if clock is not None else 0.0
            self.log.info(
                _FORMAT,
                peer=peer_text(call.connection.peer),
                method=call.method,
                status=outcome.status,
                code=int(outcome.code),
                duration_ms=round((ended - started) * 1000.0, 3),
                request_bytes=len(call.body) if isinstance(call.body, bytes) else None,
                response_bytes=outcome.response_bytes,
                request_id=call.request_id,
                connection_id=call.connection.connection_id,
            )
            return result

        d: Deferred[Any] = proceed(call)
        return d.addBoth(observe)
