"""
twisted-reqresp: a request/response protocol framework for Twisted.

A server listens, gives each client a dedicated connection, and answers its
requests with a responder; a client connects, calls methods, and gets each
answer as a Deferred.  Deadlines, cancellation, metadata, status codes,
keepalive and graceful drain travel in a small binary wire protocol (see
``docs/protocol.md``), and a line format serves people at a terminal.

The public surface is this module plus :mod:`twisted_reqresp.interfaces`,
:mod:`twisted_reqresp.codecs`, :mod:`twisted_reqresp.testing` and, for
authors of wire formats, :mod:`twisted_reqresp.wire`.  Everything else is
private.  Importing this package does not install a reactor.
"""

from ._adapters.accesslog import AccessLog
from ._adapters.builtins import HealthStatus, MethodDescription, ServingStatus
from ._adapters.channel import BackendInfo, Channel, ChannelStats, EndpointSet
from ._adapters.client import Client, connect
from ._adapters.interceptors import Outcome
from ._adapters.metrics import ServerMetrics
from ._adapters.router import Router
from ._adapters.server import ServerFactory
from ._adapters.stats import ServerStats
from ._adapters.streams import ServerStream, StreamingCall
from ._core.auto import AutoFormat
from ._core.binary import BinaryFormat
from ._core.call import Call, ConnectionInfo, OutgoingCall, Reply
from ._core.errors import (
    CodecError,
    ConnectionClosed,
    DeadlineExceeded,
    LocalProtocolError,
    ProtocolError,
    RemoteError,
    RemoteProtocolError,
    ReqRespError,
    StatusError,
)
from ._core.hotpath import active as _hot_path_active
from ._core.limits import DEFAULT_LIMITS, Limits
from ._core.line import LineFormat
from ._core.retry import Backoff, RetryBudget, RetryPolicy
from ._core.status import APPLICATION_MIN, StatusCode

__version__ = "0.1.0"

#: Whether the hot path (the binary codec and the connection state machine)
#: runs compiled with mypyc; ``False`` on the pure-Python fallback, chosen
#: when no C compiler was there at install or ``TWISTED_REQRESP_NO_EXTENSIONS``
#: is set.  Both behave the same (docs/performance.md, "Compiled hot path").
compiled: bool = _hot_path_active()

#: The binary wire format (the default): multiplexed, with deadlines,
#: metadata, cancellation, keepalive and graceful drain.
BINARY = BinaryFormat()
#: The line format: one request per line, answers in order, for people.
LINE = LineFormat()

__all__ = [
    "APPLICATION_MIN",
    "BINARY",
    "DEFAULT_LIMITS",
    "LINE",
    "AccessLog",
    "AutoFormat",
    "BackendInfo",
    "Backoff",
    "BinaryFormat",
    "Call",
    "Channel",
    "ChannelStats",
    "Client",
    "CodecError",
    "ConnectionClosed",
    "ConnectionInfo",
    "DeadlineExceeded",
    "EndpointSet",
    "HealthStatus",
    "Limits",
    "LineFormat",
    "LocalProtocolError",
    "MethodDescription",
    "Outcome",
    "OutgoingCall",
    "ProtocolError",
    "RemoteError",
    "RemoteProtocolError",
    "Reply",
    "ReqRespError",
    "RetryBudget",
    "RetryPolicy",
    "Router",
    "ServerFactory",
    "ServerMetrics",
    "ServerStats",
    "ServerStream",
    "ServingStatus",
    "StatusCode",
    "StatusError",
    "StreamingCall",
    "compiled",
    "connect",
]
