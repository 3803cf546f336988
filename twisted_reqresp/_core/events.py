"""
The events of the wire core: what a wire format decodes bytes into and
encodes back into bytes.

Wire core: imports nothing from Twisted.

Events are immutable, keyword-only value objects (h11's ``_core/events.py``), so
that tests compare them with ``==`` and a wire-format test vector is a pair of
bytes and an event checked in both directions.  The first group are messages
that travel on the wire; the second group are made by the core itself to
report something about the stream (they are never encoded).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .frozen import fast_init
from .status import StatusCode

__all__ = [
    "Cancel",
    "ErrorResponse",
    "Event",
    "GoAway",
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
]

#: Metadata as it travels: ordered ``(key, value)`` text pairs.  A tuple so
#: that events stay hashable and comparable; the public API turns mappings
#: into this and back.
Metadata = tuple[tuple[str, str], ...]


class Role(Enum):
    """Which end of a connection a wire codec or connection serves."""

    CLIENT = "client"
    SERVER = "server"


# --- messages that travel on the wire -------------------------------------


@fast_init
@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """A side's limits, sent once after the preface (binary format only)."""

    #: The largest frame payload, in bytes, that the sender will accept.
    max_frame_size: int
    #: How many requests the sender will process at once on this connection.
    max_concurrent: int


@fast_init
@dataclass(frozen=True, kw_only=True, slots=True)
class Request:
    """A client asks the server to run ``method``."""

    #: The client's id for this call, unique and increasing on a connection.
    request_id: int
    #: The method name.
    method: str
    #: The request body, opaque to the wire.
    body: bytes = b""
    #: Metadata pairs (tracing ids, credentials, ...).
    metadata: Metadata = ()
    #: Milliseconds the client will wait for the answer, counted from when
    #: the server reads the request; ``None`` for no deadline.
    deadline_ms: int | None = None


@fast_init
@dataclass(frozen=True, kw_only=True, slots=True)
class Response:
    """The server's successful answer to request ``request_id``."""

    #: The id of the request this answers.
    request_id: int
    #: The response body, opaque to the wire.
    body: bytes = b""
    #: Metadata pairs.
    metadata: Metadata = ()


@fast_init
@dataclass(frozen=True, kw_only=True, slots=True)
class ErrorResponse:
    """The server's failing answer to request ``request_id``."""

    #: The id of the request this answers.
    request_id: int
    #: The status code (never OK).
    code: int
    #: A short human-readable message.
    message: str = ""
    #: Opaque bytes for machines.
    details: bytes = b""
    #: The server did not start processing the request: sending it again
    #: cannot do it twice.
    retry_safe: bool = False


@fast_init
@dataclass(frozen=True, kw_only=True, slots=True)
class Cancel:
    """The client no longer wants the answer to request ``request_id``."""

    #: The id of the request to cancel.
    request_id: int


@fast_init
@dataclass(frozen=True, kw_only=True, slots=True)
class Ping:
    """A liveness probe; the peer answers with a :class:`Pong`."""

    #: Eight opaque bytes echoed in the answer.
    payload: bytes


@fast_init
@dataclass(frozen=True, kw_only=True, slots=True)
class Pong:
    """The answer to a :class:`Ping`."""

    #: The payload of the ping this answers.
    payload: bytes


@fast_init
@dataclass(frozen=True, kw_only=True, slots=True)
class GoAway:
    """The sender will close the connection and accepts no new requests."""

    #: The highest request id the sender has accepted and will answer.
    #: Requests with higher ids were not processed and are safe to retry.
    last_request_id: int
    #: ``OK`` for an orderly shutdown, otherwise why the connection failed.
    code: int = StatusCode.OK
    #: A short human-readable explanation.
    message: str = ""


# --- events the core makes itself -----------------------------------------


@fast_init
@dataclass(frozen=True, kw_only=True, slots=True)
class PrefaceReceived:
    """A server received a valid client preface (binary format)."""

    #: The protocol version the client asked for.
    version: int


@fast_init
@dataclass(frozen=True, kw_only=True, slots=True)
class Rejected:
    """
    A frame arrived whole but its content was invalid (bad UTF-8, a
    malformed field).  The framing is intact, so only this request fails:
    a server answers it with an error, a client fails the call.
    """

    #: The id of the request concerned.
    request_id: int
    #: The status to answer with.
    code: int
    #: What was wrong.
    message: str


@fast_init
@dataclass(frozen=True, kw_only=True, slots=True)
class ProtocolViolation:
    """
    The peer broke the protocol in a way that ends the connection.  Always
    the last event of a connection.
    """

    #: The status code sent to the peer in the last words.
    code: int
    #: What was wrong.
    message: str


#: Any event a wire codec can produce or encode.
Event = (
    Settings
    | Request
    | Response
    | ErrorResponse
    | Cancel
    | Ping
    | Pong
    | GoAway
    | PrefaceReceived
    | Rejected
    | ProtocolViolation
)
