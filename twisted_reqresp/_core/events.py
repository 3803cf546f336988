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

from .frozen import fast_init, twin_of
from .status import StatusCode

__all__ = [
    "DEFAULT_CONNECTION_CREDIT",
    "Cancel",
    "CreditGranted",
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
    "StreamEnd",
    "StreamMessage",
    "StreamRequest",
    "new_request",
    "new_response",
]

#: Metadata as it travels: ordered ``(key, value)`` text pairs.  A tuple so
#: that events stay hashable and comparable; the public API turns mappings
#: into this and back.
Metadata = tuple[tuple[str, str], ...]

#: The connection credit a side grants when its SETTINGS offer streaming but
#: do not say (docs/protocol.md, "SETTINGS"): a protocol constant, 1 MiB.
DEFAULT_CONNECTION_CREDIT = 1024 * 1024


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
    #: The credit, in bytes, each streaming call starts with for the messages
    #: the sender receives on it; ``None``: the sender does not take part in
    #: streaming calls (its SETTINGS lack STREAM_CREDIT).
    stream_credit: int | None = None
    #: The sender's initial credit, in bytes, for the messages it receives on
    #: all streaming calls together.
    connection_credit: int = DEFAULT_CONNECTION_CREDIT


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
class StreamRequest:
    """
    A client opens a streaming call to ``method``: a REQUEST frame with the
    CLIENT_STREAM or SERVER_STREAM flag, or both (docs/protocol.md,
    "Streaming calls").  Its final answer is a :class:`Response` or an
    :class:`ErrorResponse`, as for a :class:`Request`.
    """

    #: The client's id for this call, unique and increasing on a connection.
    request_id: int
    #: The method name.
    method: str
    #: Whether the client sends a stream of messages, ended by STREAM_END.
    client_stream: bool
    #: Whether the server sends a stream of messages before its final answer.
    server_stream: bool
    #: The request body, opaque to the wire, apart from any stream.
    body: bytes = b""
    #: Metadata pairs for the whole call.
    metadata: Metadata = ()
    #: Milliseconds the client will wait for the final answer, counted from
    #: when the server reads the request; ``None`` for no deadline.
    deadline_ms: int | None = None


@fast_init
@dataclass(frozen=True, kw_only=True, slots=True)
class StreamMessage:
    """
    One message of a streaming call's stream, from either side.

    It cost the sender ``10 + len(body)`` bytes of credit, its whole frame;
    the receiving application gives that back with
    :meth:`~twisted_reqresp.wire.Connection.acknowledge` once it has
    consumed or discarded the message.
    """

    #: The id of the streaming call.
    request_id: int
    #: The message, opaque to the wire; possibly empty.
    body: bytes = b""


@fast_init
@dataclass(frozen=True, kw_only=True, slots=True)
class StreamEnd:
    """The client sends no more messages on streaming call ``request_id``."""

    #: The id of the streaming call.
    request_id: int


@fast_init
@dataclass(frozen=True, kw_only=True, slots=True)
class CreditGranted:
    """
    The peer grants credit: this side may send that many more bytes of
    messages on call ``request_id``, or on the connection when it is 0.
    """

    #: The id of the streaming call, or 0 for the connection credit.
    request_id: int
    #: The bytes of credit added, 1 to 2**31 - 1.
    increment: int


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
    | StreamRequest
    | StreamMessage
    | StreamEnd
    | CreditGranted
    | PrefaceReceived
    | Rejected
    | ProtocolViolation
)


#: See :func:`new_request` and :func:`new_response`.
_REQUEST_TWIN = twin_of(Request)
_RESPONSE_TWIN = twin_of(Response)
_object_new = object.__new__


def new_request(request_id: int, method: str, body: bytes) -> Request:
    """
    ``Request(request_id=request_id, method=method, body=body)``, made
    through a twin class (:func:`~twisted_reqresp._core.frozen.twin_of`):
    the binary codec's once-per-request event, about twice as fast.
    ``tests/test_fastpath_differential.py`` proves it equal to the
    constructor's, and the constructor is used where the twin cannot
    become a :class:`Request`.
    """
    twin = _REQUEST_TWIN
    if twin is None:
        return Request(request_id=request_id, method=method, body=body)
    request = _object_new(twin)
    request.request_id = request_id
    request.method = method
    request.body = body
    request.metadata = ()
    request.deadline_ms = None
    request.__class__ = Request
    result: Request = request
    return result


def new_response(request_id: int, body: bytes) -> Response:
    """
    ``Response(request_id=request_id, body=body)``, made through a twin
    class as :func:`new_request` is: the binary codec's once-per-answer
    event at a client.
    """
    twin = _RESPONSE_TWIN
    if twin is None:
        return Response(request_id=request_id, body=body)
    response = _object_new(twin)
    response.request_id = request_id
    response.body = body
    response.metadata = ()
    response.__class__ = Response
    result: Response = response
    return result
