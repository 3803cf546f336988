"""
Server-wide counters, shared by every connection of a server and reported
by the default service's ``stats`` method.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import IReactorTime

__all__ = ["ServerStats"]


@dataclass
class ServerStats:
    """
    Counters a :class:`~twisted_reqresp.ServerFactory` keeps.

    :ivar clock: the clock ``started`` and ``uptime`` are measured with.
    """

    clock: IReactorTime
    #: Connections open now.
    connections_open: int = 0
    #: Connections accepted since the start.
    connections_total: int = 0
    #: Connections refused by a connection limit (or while draining).
    connections_refused: int = 0
    #: Refused connections not yet closed.
    connections_refusing: int = 0
    #: Requests received (including those answered with an error).
    requests_total: int = 0
    #: Requests answered with an error status.
    errors_total: int = 0
    #: Peers closed for breaking the protocol.
    protocol_errors: int = 0
    #: Bytes read from peers (after TLS, before decoding).
    bytes_received: int = 0
    #: Bytes written to peers (before TLS).
    bytes_sent: int = 0
    #: GOAWAYs sent: one per connection drained, and one per connection
    #: the server gave up on (a handshake timeout, a dead peer).
    goaways_sent: int = 0
    #: Connections closed because the peer did not answer a keepalive PING.
    keepalive_failures: int = 0
    #: Refused connections by reason: ``draining``, ``max_connections``,
    #: ``max_connections_per_peer``.
    refused_by_reason: dict[str, int] = field(default_factory=dict)
    #: When counting started, in the clock's seconds.
    started: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.started = self.clock.seconds()

    def as_dict(self) -> dict[str, Any]:
        """
        :returns: the connection and request counters, the uptime in seconds and the id of the
            process answering (with ``--workers``, each worker counts its
            own connections), as JSON-ready data.
        """
        return {
            "connections_open": self.connections_open,
            "connections_total": self.connections_total,
            "connections_refused": self.connections_refused,
            "requests_total": self.requests_total,
            "errors_total": self.errors_total,
            "protocol_errors": self.protocol_errors,
            "uptime": round(self.clock.seconds() - self.started, 3),
            "pid": os.getpid(),
        }
