"""
For authors of wire formats: the events a wire codec produces and encodes,
the roles, the sans-IO :class:`Connection` that drives a codec, and the two
shipped formats to read as examples.

A wire format is an :class:`~twisted_reqresp.interfaces.IWireFormat`
provider; check yours with
:class:`twisted_reqresp.testing.WireFormatConformanceMixin`.  Nothing here
imports Twisted.
"""

from ._core.auto import AutoCodec, AutoFormat
from ._core.binary import PREFACE, BinaryCodec, BinaryFormat
from ._core.connection import Connection, ConnectionState
from ._core.events import (
    Cancel,
    CreditGranted,
    ErrorResponse,
    Event,
    GoAway,
    Metadata,
    Ping,
    Pong,
    PrefaceReceived,
    ProtocolViolation,
    Rejected,
    Request,
    Response,
    Role,
    Settings,
    StreamEnd,
    StreamMessage,
    StreamRequest,
)
from ._core.line import LineCodec, LineFormat
from ._core.status import parse_status, status_name, to_status

__all__ = [
    "PREFACE",
    "AutoCodec",
    "AutoFormat",
    "BinaryCodec",
    "BinaryFormat",
    "Cancel",
    "Connection",
    "ConnectionState",
    "CreditGranted",
    "ErrorResponse",
    "Event",
    "GoAway",
    "LineCodec",
    "LineFormat",
    "Metadata",
    "Ping",
    "Pong",
    "PrefaceReceived",
    "ProtocolViolation",
    "Rejected",
    "Request",
    "Response",
    "Role",
    "Settings",
    "StreamEnd",
    "StreamMessage",
    "StreamRequest",
    "parse_status",
    "status_name",
    "to_status",
]
