"""
The connection state machine: one end of one connection, for any wire format.

Wire core: this module contains no networking code and imports nothing from
Twisted.  Bytes go in through :meth:`Connection.receive_data`, events come
out one at a time from :meth:`Connection.next_event`; calls such as
:meth:`Connection.send_request` queue bytes that :meth:`Connection.data_to_send`
hands back.  The Twisted protocols in ``_adapters`` are plumbing around it.

Theory of operation
===================

A connection has a role (client or server) and a wire codec (binary or line,
or a user's).  The codec turns bytes into message events and back; this
module decides what those messages mean and whether they are allowed.

Connection states::

    AWAIT_SETTINGS --peer Settings--> OPEN --send_goaway()--> DRAINING
          |                            |                          |
          +----------- ProtocolViolation / close() ---------------+--> CLOSED

A codec without a handshake (the line format) starts in OPEN; a detecting
codec (an auto port) starts there too, and goes back to AWAIT_SETTINGS when
it reads a binary preface, so a binary peer meets the same rules.  In
AWAIT_SETTINGS a client may already send requests: it assumes the default
limits until the server's SETTINGS arrive (``docs/protocol.md``).  What a
peer may send before its own SETTINGS is the table ``_BEFORE_SETTINGS``;
anything else then is a violation.

Which peer may send which message is the table ``_INBOUND`` below: a pair
that is missing there is a protocol violation, never a silent pass.

Request ids (binary format): the client numbers its requests 1, 2, 3, ...;
a server treats a REQUEST whose id is not above every id it has seen as a
violation, which also rejects an id reused while in flight.  A client drops
an answer whose id it sent but no longer waits for (the call was cancelled
or timed out) and treats an answer to an id it never sent as a violation.

Requests a server receives after it sent GOAWAY are answered with
UNAVAILABLE, marked retry-safe, and never reach the application.

Streaming calls (binary format, both sides' SETTINGS carrying
STREAM_CREDIT): a client opens one with :meth:`Connection.start_stream`; the
call has a :class:`~twisted_reqresp._core.streams.CallStream` in
``_streams`` while it is open, that is while its id is in ``in_flight``.
Ending the call (the final answer, CANCEL, a server's refusal) drops it.
A stream frame for a call without one is judged by the id alone: never
sent (a violation), open but not streaming that way (a violation), or
ended (dropped; a message's connection credit goes straight back).  While
a client has streaming calls open, its inline RESPONSE shortcut is off, so
that the general path ends the call's stream too; unary traffic on a
connection without streams costs nothing more than it did.

Answer order: a wire format that is not ``multiplexed`` (the line format)
carries no request ids, so a server writes its answers in request order.
The connection holds an answer that is ready early until every request
received before it is answered (its refusals included), then writes them
together.  Held answers still count in :attr:`Connection.unanswered`, which
is what a server compares with its ``max_concurrent``: one slow request
followed by fast ones stops the reading, instead of holding answers without
bound.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Final

from .binary import BinaryCodec
from .contract import IWireCodec, IWireFormat
from .errors import LocalProtocolError
from .events import (
    DEFAULT_CONNECTION_CREDIT,
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
from .limits import DEFAULT_LIMITS, MAX_CREDIT, Limits
from .status import STATUS_BY_VALUE, STATUS_MAX, StatusCode, status_name, utf8_prefix
from .streams import CallStream, message_cost

__all__ = ["Connection", "ConnectionState"]

#: The largest request id: ids are unsigned 32-bit numbers.
MAX_REQUEST_ID = 0xFFFF_FFFF
#: The longest ERROR message in bytes: its length is a u16
#: (docs/protocol.md, "ERROR").
MAX_ERROR_MESSAGE = 0xFFFF
# Status codes an ERROR never carries (docs/protocol.md, "Status codes").
_NOTHING: frozenset[str] = frozenset()
_NO_IDS: frozenset[int] = frozenset()
# Shared empty tables of a connection that has held no answer and opened no
# streaming call (64 bytes each per idle connection: issue 12).  Nothing is
# ever stored in them: the one place that adds to each replaces it with a
# dict of the connection's own first (tests/test_memory.py checks they
# stay empty).
_NO_HELD: dict[int, bytes] = {}
_NO_STREAMS: dict[int, CallStream] = {}
# The SETTINGS the last peer sent: the next connection whose peer sends
# equal ones holds this same (frozen) event rather than its own 150 bytes
# (issue 12); only one is kept, so a peer varying them costs nothing.
_last_peer_settings: Settings | None = None


def _shared_settings(settings: Settings) -> Settings:
    """:returns: ``settings``, or an equal event already held."""
    global _last_peer_settings
    if settings == _last_peer_settings:
        return _last_peer_settings
    _last_peer_settings = settings
    return settings


_NOT_ERRORS = frozenset({StatusCode.OK, StatusCode.PROTOCOL_ERROR})


def _error_status(code: object, message: str) -> tuple[int, str]:
    """
    :returns: ``code`` and ``message`` if an ERROR can carry the code;
        otherwise INTERNAL and a message that names the refused code.
    """
    if isinstance(code, int) and 0 < code <= STATUS_MAX and code not in _NOT_ERRORS:
        return code, message
    if not isinstance(code, int):
        shown = f"of type {type(code).__name__}"
    elif 0 <= code <= STATUS_MAX:
        shown = status_name(code)
    else:
        # Not str(code): a huge int has more digits than str() will print.
        shown = "out of range" if abs(code) > 2**64 else str(int(code))
    return (
        StatusCode.INTERNAL,
        f"status {shown} cannot be sent in an error answer: {message}"
        if message
        else f"status {shown} cannot be sent in an error answer",
    )


def _notes(notes: list[str]) -> bytes:
    """:returns: what ``send_error`` appends to a message it had to change."""
    return "".join(f" ({note})" for note in notes).encode()


class ConnectionState(Enum):
    """Where a :class:`Connection` is in its life."""

    AWAIT_SETTINGS = "await-settings"
    OPEN = "open"
    DRAINING = "draining"
    CLOSED = "closed"


_OPEN: Final = ConnectionState.OPEN
#: The peer's limits until its SETTINGS arrive (shared: events are frozen).
_DEFAULT_PEER_SETTINGS = Settings(
    max_frame_size=DEFAULT_LIMITS.max_frame_size,
    max_concurrent=DEFAULT_LIMITS.max_concurrent,
)
_AWAIT_SETTINGS: Final = ConnectionState.AWAIT_SETTINGS
_CLOSED: Final = ConnectionState.CLOSED
# next_event's two common event types, as Final constants: compiled, an
# imported name is a module-dict lookup per use, a Final one a C static.
_REQUEST: Final = Request
_RESPONSE: Final = Response

# What a peer may send before its SETTINGS (docs/protocol.md, "Handshake"):
# a client its preface, then SETTINGS; a server SETTINGS, or a GOAWAY
# refusing the connection.  Anything else, of any type, is a violation; the
# binary codec vets the unassigned types, which it never hands on.
_BEFORE_SETTINGS: dict[Role, frozenset[type]] = {
    Role.SERVER: frozenset({PrefaceReceived, Settings, ProtocolViolation}),
    Role.CLIENT: frozenset({Settings, GoAway, ProtocolViolation}),
}
# How "NAME before SETTINGS" names an event: by its frame type.  A Rejected
# event is a malformed REQUEST at a server, a malformed answer at a client.
_STREAM_FRAME_NAMES: dict[type, str] = {
    StreamRequest: "REQUEST",
    StreamMessage: "STREAM_MESSAGE",
    StreamEnd: "STREAM_END",
    CreditGranted: "CREDIT",
}
_FRAME_NAMES: dict[Role, dict[type, str]] = {
    Role.SERVER: {Rejected: "REQUEST", GoAway: "GOAWAY", **_STREAM_FRAME_NAMES},
    Role.CLIENT: {
        ErrorResponse: "ERROR",
        Rejected: "RESPONSE or ERROR",
        GoAway: "GOAWAY",
        **_STREAM_FRAME_NAMES,
    },
}

# (our role, type of the received event) -> name of the method that handles
# it.  Anything not listed is a protocol violation.
_INBOUND: dict[tuple[Role, type], str] = {
    (Role.SERVER, PrefaceReceived): "_on_preface",
    (Role.SERVER, Settings): "_on_settings",
    (Role.SERVER, Request): "_on_request",
    (Role.SERVER, StreamRequest): "_on_request",
    (Role.SERVER, StreamMessage): "_on_stream_message",
    (Role.SERVER, StreamEnd): "_on_stream_end",
    (Role.SERVER, CreditGranted): "_on_credit",
    (Role.SERVER, Rejected): "_on_request",
    (Role.SERVER, Cancel): "_on_cancel",
    (Role.SERVER, Ping): "_on_ping",
    (Role.SERVER, Pong): "_on_pass",
    (Role.SERVER, GoAway): "_on_pass",
    (Role.CLIENT, Settings): "_on_settings",
    (Role.CLIENT, Response): "_on_answer",
    (Role.CLIENT, ErrorResponse): "_on_answer",
    (Role.CLIENT, Rejected): "_on_answer",
    (Role.CLIENT, Ping): "_on_ping",
    (Role.CLIENT, Pong): "_on_pass",
    (Role.CLIENT, GoAway): "_on_goaway",
    (Role.CLIENT, StreamMessage): "_on_stream_message",
    (Role.CLIENT, CreditGranted): "_on_credit",
}


class Connection:
    """
    One end of a request/response connection, as a sans-IO state machine.

    :param role: :attr:`Role.CLIENT` or :attr:`Role.SERVER`.
    :param wire: the wire format (an
        :class:`~twisted_reqresp.interfaces.IWireFormat` provider).
    :param limits: what this side accepts from its peer.
    :param shortcuts: take the inline hot paths for a valid request (server)
        and an awaited response (client), and the codec's
        ``encode_request``/``encode_response`` if it has them (the default);
        ``False`` runs the general path only, with the same results
        (``tests/test_fastpath_differential.py`` proves it).
    """

    # Slots, not a __dict__: one of these per connection (issue 12).
    __slots__ = (
        "__weakref__",
        "_codec",
        "_conn_pending",
        "_dispatch",
        "_encode_request",
        "_encode_response",
        "_held",
        "_in_order",
        "_out",
        "_peer_settled",
        "_peer_stream_credit",
        "_receive_conn_credit",
        "_refusal",
        "_request_shortcut",
        "_response_shortcut",
        "_response_shortcut_allowed",
        "_send_conn_credit",
        "_streams",
        "_unacknowledged",
        "answered_while_draining",
        "in_flight",
        "last_request_id",
        "limits",
        "peer_goaway",
        "peer_settings",
        "role",
        "state",
        "wire",
    )

    def __init__(
        self,
        role: Role,
        wire: IWireFormat,
        limits: Limits = DEFAULT_LIMITS,
        *,
        shortcuts: bool = True,
    ) -> None:
        self.role = role
        self.wire = wire
        self.limits = limits
        # Typed with the binary codec first: compiled, mypyc calls its methods
        # directly when the codec is one (the hot path), and by name otherwise.
        self._codec: BinaryCodec | IWireCodec = wire.codec(role, limits)
        self._out: list[bytes] = []
        self.state = (
            ConnectionState.AWAIT_SETTINGS if self._codec.handshake else ConnectionState.OPEN
        )
        #: The peer's limits; the defaults until its SETTINGS arrive.
        self.peer_settings = _DEFAULT_PEER_SETTINGS
        #: Request ids waiting for an answer: sent (client) or received and
        #: not yet answered (server).  A shared empty frozenset until the
        #: first request, then a set of this connection's own: an empty set
        #: costs 216 bytes on every idle connection (issue 12).  Typed as
        #: either, so that the compiled core (mypyc checks attribute types)
        #: accepts the frozenset.
        self.in_flight: set[int] | frozenset[int] = _NO_IDS
        #: Methods a draining server still passes to the application instead
        #: of refusing them (a health check that should read DRAINING).
        self.answered_while_draining: frozenset[str] = _NOTHING
        # Server, answers in request order: encoded answers waiting for the
        # requests before them, by request id.
        self._held = _NO_HELD
        # Whether answers go out in request order; None while an AutoFormat
        # codec has not yet seen which format the peer speaks.
        self._in_order = self._answers_in_order()
        #: The highest request id sent (client) or received (server).
        self.last_request_id = 0
        #: Set when the peer sent GOAWAY: no new requests may be sent.
        self.peer_goaway: GoAway | None = None
        self._refusal: ProtocolViolation | None = None
        # Which of next_event's inline checks apply (see there).
        self._request_shortcut = shortcuts and role is Role.SERVER
        # The response shortcut is off while streaming calls are open (see
        # the module docstring); this says whether it may be on at all.
        self._response_shortcut_allowed = shortcuts and role is Role.CLIENT
        self._response_shortcut = self._response_shortcut_allowed
        # -- streaming calls (docs/protocol.md, "Streaming calls") --
        # The open streaming calls, by request id.
        self._streams = _NO_STREAMS
        # The peer's STREAM_CREDIT from its first SETTINGS (None: it takes no
        # part in streaming calls); _peer_settled once that SETTINGS is in.
        self._peer_stream_credit: int | None = None
        self._peer_settled = False
        # What this side may send on all calls together (the peer's
        # CONNECTION_CREDIT and grants, less what was sent), and what the peer
        # may send to it as this side counts it; a side that offers no
        # streaming grants nothing.
        self._send_conn_credit = 0
        self._receive_conn_credit = (
            limits.connection_credit if limits.stream_credit is not None else 0
        )
        # Bytes of messages received and not yet acknowledged by the
        # application (what it holds), and consumed bytes not yet granted back
        # on the connection (batched).
        self._unacknowledged = 0
        self._conn_pending = 0
        # A codec may offer encode_response(request_id, body, metadata): the
        # bytes of encode(Response(...)) without making the event, for the
        # server's hot path.
        # Each is bound only for the role that uses it (a bound method is 64
        # bytes per connection).
        self._encode_response: Callable[[int, bytes, Metadata], bytes] | None = (
            getattr(self._codec, "encode_response", None)
            if shortcuts and role is Role.SERVER
            else None
        )
        # Likewise encode_request(request_id, method, body, metadata,
        # deadline_ms) for the client's.
        self._encode_request: Callable[[int, str, bytes, Metadata, int | None], bytes] | None = (
            getattr(self._codec, "encode_request", None)
            if shortcuts and role is Role.CLIENT
            else None
        )
        # One table per role, shared by every connection (a bound-method dict
        # per connection would cost memory for nothing).
        self._dispatch = _DISPATCH[role]
        if role is Role.CLIENT:
            self._out.append(self._codec.preface())
            self._out.append(self._codec.encode(self._our_settings()))

    def _add_in_flight(self, rid: int) -> None:
        in_flight = self.in_flight
        if isinstance(in_flight, set):
            in_flight.add(rid)
        else:
            self.in_flight = {rid}

    def _answers_in_order(self) -> bool | None:
        # A codec that learns its format from the peer (AutoCodec) says
        # itself whether it multiplexes, once it knows.
        multiplexed = getattr(self._codec, "multiplexed", self.wire.multiplexed)
        return None if multiplexed is None else not multiplexed

    @property
    def multiplexed(self) -> bool | None:
        """
        Whether the format answers out of request order (binary: ``True``;
        line: ``False``), or ``None`` while an auto-detecting codec has not
        yet seen which format the peer speaks.
        """
        return None if self._in_order is None else not self._in_order

    @property
    def unanswered(self) -> int:
        """
        Requests received and not yet written to the wire (server): running,
        or answered and held for order.  A server compares this with its
        ``max_concurrent``.  With a multiplexed format it equals
        ``len(in_flight)``.
        """
        return len(self.in_flight) + len(self._held)

    def _our_settings(self) -> Settings:
        limits = self.limits
        streaming = limits.stream_credit is not None
        return Settings(
            max_frame_size=limits.max_frame_size,
            max_concurrent=limits.max_concurrent,
            stream_credit=limits.stream_credit,
            connection_credit=(
                limits.connection_credit if streaming else DEFAULT_CONNECTION_CREDIT
            ),
        )

    # -- receiving ----------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """
        Take bytes from the peer.  Call :meth:`next_event` to decode them.

        :param data: the bytes, in any chunking.
        """
        if self.state is not ConnectionState.CLOSED:
            self._codec.receive_data(data)
            if self._in_order is None:
                self._in_order = self._answers_in_order()

    @property
    def keepalive(self) -> bool:
        """Whether the wire format carries PING frames."""
        return bool(self._codec.keepalive)

    @property
    def buffered(self) -> int:
        """Received bytes not yet decoded (a truncated frame at EOF)."""
        buffered: int = self._codec.buffered
        return buffered

    def next_event(self) -> Event | None:
        """
        Decode and vet the next event.

        Messages the core answers by itself (PING, requests after GOAWAY,
        a server's SETTINGS) are handled here and not returned.

        :returns: the next event for the application, or ``None`` when more
            bytes are needed.  After a :class:`ProtocolViolation` it always
            returns ``None``; the bytes to send before closing are queued.
        """
        codec = self._codec
        while self.state is not _CLOSED:
            event = codec.next_event()
            if event is None:
                return None
            kind = type(event)
            # The two common cases, checked inline: exactly what the general
            # path below does for them (the refusal check and the
            # _BEFORE_SETTINGS table pass only in OPEN, and refuse() turns
            # the shortcuts off).
            if (
                kind is _REQUEST
                and self._request_shortcut
                and self.state is _OPEN
                # (The id read once: compiled, each read is a lookup by name.)
                and (rid := event.request_id) > self.last_request_id  # type: ignore[union-attr]
            ):
                # _on_request, for a valid request on an open server connection.
                self.last_request_id = rid
                in_flight = self.in_flight
                if isinstance(in_flight, set):
                    in_flight.add(rid)
                else:
                    self.in_flight = {rid}
                return event
            if (
                kind is _RESPONSE
                and self._response_shortcut
                and self.state is _OPEN
                and (rid := event.request_id) in self.in_flight  # type: ignore[union-attr]
            ):
                # _on_answer, for an answer the client awaits (so in_flight
                # is a set, not the shared frozenset).
                in_flight = self.in_flight
                if isinstance(in_flight, set):
                    in_flight.discard(rid)
                return event
            if self._refusal is not None and kind is not ProtocolViolation:
                return self._violation(self._refusal)
            if self.state is _AWAIT_SETTINGS and kind not in _BEFORE_SETTINGS[self.role]:
                name = _FRAME_NAMES[self.role].get(kind, kind.__name__.upper())
                return self._protocol_error(f"{name} before SETTINGS")
            handler = self._dispatch.get(kind)
            if handler is None:
                if isinstance(event, ProtocolViolation):
                    return self._violation(event)
                name = type(event).__name__
                return self._violation(
                    ProtocolViolation(
                        code=StatusCode.PROTOCOL_ERROR,
                        message=f"a {self.role.value} does not accept {name} frames",
                    )
                )
            result = handler(self, event)
            if result is not None:
                return result
        return None

    def _violation(self, event: ProtocolViolation) -> ProtocolViolation:
        self._out.append(self._codec.encode_fatal(event.code, event.message, self.last_request_id))
        self.state = ConnectionState.CLOSED
        return event

    def _protocol_error(self, message: str) -> ProtocolViolation:
        return self._violation(ProtocolViolation(code=StatusCode.PROTOCOL_ERROR, message=message))

    def _on_preface(self, event: Event) -> Event | None:
        if self.state is _OPEN:
            # A codec that found its handshake late (an auto port that just
            # detected a binary client) waits for SETTINGS as a binary port
            # does: the same bytes get the same answer on both.
            self.state = _AWAIT_SETTINGS
        self._out.append(self._codec.encode(self._our_settings()))
        return None

    def _on_settings(self, event: Event) -> Event | None:
        assert isinstance(event, Settings)
        self.peer_settings = _shared_settings(event)
        if self.state is ConnectionState.AWAIT_SETTINGS:
            self.state = ConnectionState.OPEN
        if not self._peer_settled:
            # Only the first SETTINGS counts for streaming (docs/protocol.md,
            # "SETTINGS"): the credit already spent was counted against it.
            self._peer_settled = True
            self._peer_stream_credit = event.stream_credit
            if event.stream_credit is not None:
                self._send_conn_credit = event.connection_credit
        return event

    def _on_request(self, event: Event) -> Event | None:
        assert isinstance(event, (Request, StreamRequest, Rejected))
        rid = event.request_id
        if self.state is ConnectionState.AWAIT_SETTINGS:
            return self._protocol_error("REQUEST before SETTINGS")
        if rid <= self.last_request_id:
            return self._protocol_error(
                f"request id {rid} is not above the last one ({self.last_request_id})"
            )
        self.last_request_id = rid
        self._add_in_flight(rid)
        if isinstance(event, Rejected):
            self.send_error(rid, event.code, event.message)
            return event
        if (
            self.state is ConnectionState.DRAINING
            and event.method not in self.answered_while_draining
        ):
            self.send_error(rid, StatusCode.UNAVAILABLE, "server is shutting down", retry_safe=True)
            return None
        if isinstance(event, StreamRequest):
            return self._open_received_stream(event)
        return event

    def _open_received_stream(self, event: StreamRequest) -> Event | None:
        """A server's streaming REQUEST: refused here, or its call opened."""
        rid = event.request_id
        ours = self.limits.stream_credit
        if ours is None:
            self.send_error(
                rid,
                StatusCode.UNIMPLEMENTED,
                "streaming calls are turned off on this server",
                retry_safe=True,
            )
            return None
        if self._peer_stream_credit is None:
            self.send_error(
                rid,
                StatusCode.INVALID_ARGUMENT,
                "a streaming REQUEST from a client that did not offer streaming",
            )
            return None
        if self._streams is _NO_STREAMS:
            self._streams = {}
        self._streams[rid] = CallStream(
            sends=event.server_stream,
            receives=event.client_stream,
            send_credit=self._peer_stream_credit,
            receive_credit=ours,
        )
        return event

    # -- streaming calls, received ------------------------------------------------

    def _never_sent(self, rid: int) -> bool:
        return not 0 < rid <= self.last_request_id

    def _not_toward_us(self, rid: int) -> ProtocolViolation:
        side = self.role.value
        return self._protocol_error(
            f"STREAM_MESSAGE on request {rid}, which does not stream to the {side}"
        )

    def _on_stream_message(self, event: Event) -> Event | None:
        assert isinstance(event, StreamMessage)
        rid = event.request_id
        cost = message_cost(len(event.body))
        call = self._streams.get(rid)
        if call is None:
            if self._never_sent(rid):
                return self._protocol_error(
                    f"STREAM_MESSAGE on request {rid}, which was never sent"
                )
            if rid in self.in_flight:
                return self._not_toward_us(rid)
            # The call ended: the message crossed its end on the wire.  It still
            # needed connection credit, which goes straight back.
            if self._receive_conn_credit <= 0:
                return self._protocol_error("STREAM_MESSAGE without connection credit")
            self._out.append(self._codec.encode(CreditGranted(request_id=0, increment=cost)))
            return None
        if not call.receives:
            return self._not_toward_us(rid)
        if call.received_end:
            return self._protocol_error(f"STREAM_MESSAGE on request {rid} after its STREAM_END")
        if call.receive_credit <= 0:
            return self._protocol_error(f"STREAM_MESSAGE on request {rid} without credit")
        if self._receive_conn_credit <= 0:
            return self._protocol_error("STREAM_MESSAGE without connection credit")
        call.receive_credit -= cost
        self._receive_conn_credit -= cost
        self._unacknowledged += cost
        return event

    def _on_stream_end(self, event: Event) -> Event | None:
        assert isinstance(event, StreamEnd)
        rid = event.request_id
        call = self._streams.get(rid)
        if call is None:
            if self._never_sent(rid):
                return self._protocol_error(f"STREAM_END on request {rid}, which was never sent")
            if rid in self.in_flight:
                return self._protocol_error(
                    f"STREAM_END on request {rid}, which has no client stream"
                )
            return None  # the call ended; the STREAM_END crossed its end
        if not call.receives:
            return self._protocol_error(f"STREAM_END on request {rid}, which has no client stream")
        if call.received_end:
            return self._protocol_error(f"second STREAM_END on request {rid}")
        call.received_end = True
        return event

    def _on_credit(self, event: Event) -> Event | None:
        assert isinstance(event, CreditGranted)
        rid = event.request_id
        if rid == 0:
            credit = self._send_conn_credit + event.increment
            if credit > MAX_CREDIT:
                return self._protocol_error(
                    f"CREDIT takes the connection credit to {credit}, past {MAX_CREDIT}"
                )
            self._send_conn_credit = credit
            return event
        call = self._streams.get(rid)
        if call is None or not call.sends:
            if self._never_sent(rid):
                return self._protocol_error(f"CREDIT on request {rid}, which was never sent")
            if rid in self.in_flight:
                return self._protocol_error(
                    f"CREDIT on request {rid}, on which the {self.role.value} does not stream"
                )
            return None  # the call ended; the grant crossed its end
        credit = call.send_credit + event.increment
        if credit > MAX_CREDIT:
            return self._protocol_error(
                f"CREDIT takes request {rid}'s credit to {credit}, past {MAX_CREDIT}"
            )
        call.send_credit = credit
        return event

    def _on_cancel(self, event: Event) -> Event | None:
        assert isinstance(event, Cancel)
        # A cancel that crosses our answer on the wire is normal: ignore it.
        return event if event.request_id in self.in_flight else None

    def _on_answer(self, event: Event) -> Event | None:
        assert isinstance(event, (Response, ErrorResponse, Rejected))
        rid = event.request_id
        in_flight = self.in_flight
        if rid in in_flight and isinstance(in_flight, set):
            in_flight.discard(rid)
            if self._streams:
                self._end_stream_state(rid)
            if isinstance(event, Rejected):
                return ErrorResponse(
                    request_id=rid,
                    code=StatusCode.INTERNAL,
                    message=f"the server's answer could not be decoded: {event.message}",
                )
            return event
        if 0 < rid <= self.last_request_id:
            return None  # a late answer to a call we gave up on
        return self._protocol_error(f"answer to request id {rid}, which was never sent")

    def _on_ping(self, event: Event) -> Event | None:
        assert isinstance(event, Ping)
        self._out.append(self._codec.encode(Pong(payload=event.payload)))
        return event

    def _on_pass(self, event: Event) -> Event | None:
        return event

    def _on_goaway(self, event: Event) -> Event | None:
        assert isinstance(event, GoAway)
        self.peer_goaway = event
        return event

    # -- sending -------------------------------------------------------------

    def _check_open(self) -> None:
        if self.state is ConnectionState.CLOSED:
            raise LocalProtocolError("the connection is closed", StatusCode.UNAVAILABLE)

    def _next_request_id(self) -> int:
        """
        :returns: the id for the next request or streaming call (a client's).
        :raises LocalProtocolError: UNAVAILABLE if the server is going away
            or the ids are used up.
        """
        if self.peer_goaway is not None:
            raise LocalProtocolError("the server is going away", StatusCode.UNAVAILABLE)
        rid = self.last_request_id + 1
        if rid > MAX_REQUEST_ID:
            raise LocalProtocolError(
                "request ids exhausted on this connection; open a new one",
                StatusCode.UNAVAILABLE,
            )
        return rid

    def send_request(
        self,
        method: str,
        body: bytes = b"",
        metadata: Metadata = (),
        deadline_ms: int | None = None,
    ) -> int:
        """
        Queue a request.

        :returns: the new request's id.
        :raises LocalProtocolError: if this is not a client, the connection
            is closed or going away, the request is larger than the peer
            accepts, or a field cannot be encoded.
        """
        if self.role is not Role.CLIENT:
            raise LocalProtocolError("only a client sends requests")
        self._check_open()
        rid = self._next_request_id()
        encode = self._encode_request
        if encode is not None:
            data = encode(rid, method, body, metadata, deadline_ms)
        else:
            data = self._codec.encode(
                Request(
                    request_id=rid,
                    method=method,
                    body=body,
                    metadata=metadata,
                    deadline_ms=deadline_ms,
                )
            )
        self._check_size(data)
        self.last_request_id = rid
        in_flight = self.in_flight
        if isinstance(in_flight, set):
            in_flight.add(rid)
        else:
            self.in_flight = {rid}
        self._out.append(data)
        return rid

    def _check_size(self, frame: bytes) -> None:
        # The framing is not counted: the limit is on the payload.
        size = len(frame) - self._codec.frame_overhead
        if size > self.peer_settings.max_frame_size:
            raise LocalProtocolError(
                f"message of {size} bytes exceeds the peer's maximum frame size "
                f"of {self.peer_settings.max_frame_size}",
                StatusCode.RESOURCE_EXHAUSTED,
            )

    def send_cancel(self, request_id: int) -> None:
        """
        Give up on a request (client).  Its answer, if it still comes, is
        dropped.

        :param request_id: a request sent and not yet answered; anything
            else is ignored.
        """
        in_flight = self.in_flight
        if (
            request_id in in_flight
            and isinstance(in_flight, set)
            and self.state is not ConnectionState.CLOSED
        ):
            in_flight.discard(request_id)
            if self._streams:
                self._end_stream_state(request_id)
            self._out.append(self._codec.encode(Cancel(request_id=request_id)))

    def _check_awaited(self, request_id: int) -> None:
        if request_id not in self.in_flight:
            raise LocalProtocolError(f"request {request_id} is not awaiting an answer")

    def _answer(self, request_id: int, data: bytes) -> None:
        """Queue an encoded answer; the request no longer awaits one."""
        self._check_size(data)
        in_flight = self.in_flight
        if isinstance(in_flight, set):  # awaited: not the shared frozenset
            in_flight.discard(request_id)
        if self._streams:
            self._end_stream_state(request_id)
        if self.state is ConnectionState.CLOSED:
            return
        if not self._in_order:
            self._out.append(data)
            return
        held = self._held
        if held is _NO_HELD:
            held = self._held = {}
        held[request_id] = data
        # Every answer older than the oldest request still running can go.
        oldest = min(self.in_flight, default=None)
        for rid in sorted(held):
            if oldest is not None and rid > oldest:
                break
            self._out.append(held.pop(rid))

    def send_response(self, request_id: int, body: bytes = b"", metadata: Metadata = ()) -> None:
        """
        Answer a request successfully (server).

        :raises LocalProtocolError: if the request is not awaiting an answer
            or the response is larger than the peer accepts (then the request
            is still awaiting an answer, and an error can be sent instead).
        """
        encode = self._encode_response
        if encode is not None and self._in_order is False and not self._streams:
            # The server's hot path: _check_awaited, _check_size and _answer
            # inline for a multiplexed connection with no streaming calls.
            # Anything unusual (not awaited, too large) is left to the
            # general path below to refuse (tests/test_fastpath_differential.py).
            in_flight = self.in_flight
            # (Awaited means in a set: the shared empty frozenset holds nothing.)
            if request_id in in_flight and isinstance(in_flight, set):
                data = encode(request_id, body, metadata)
                if len(data) - self._codec.frame_overhead <= self.peer_settings.max_frame_size:
                    in_flight.discard(request_id)
                    if self.state is not _CLOSED:
                        self._out.append(data)
                    return
        self._check_awaited(request_id)
        if encode is not None:
            data = encode(request_id, body, metadata)
        else:
            data = self._codec.encode(Response(request_id=request_id, body=body, metadata=metadata))
        self._answer(request_id, data)

    def send_error(
        self,
        request_id: int,
        # Typed object: whatever a responder's error carries is answered
        # (below), and compiled with mypyc a narrower annotation would be a
        # TypeError at the call instead.
        code: object,
        message: object = "",
        details: object = b"",
        retry_safe: object = False,
    ) -> None:
        """
        Answer a request with an error status (server).

        Whatever the arguments, an awaited request gets a valid ERROR
        (``docs/protocol.md``, "ERROR"), so that a responder's bad error
        never costs its caller the answer:

        - a code an ERROR cannot carry (OK, PROTOCOL_ERROR, below 0 or above
          2**32 - 1, not an integer) is sent as INTERNAL, the message saying
          which code was refused;
        - a message is cut, on a UTF-8 character boundary, to what its field
          (65,535 bytes) and the peer's maximum frame size leave room for;
          characters UTF-8 cannot carry (lone surrogates) become ``?``;
        - details that do not fit the peer's maximum frame size (or are not
          bytes) are dropped, and the message says so.

        :param request_id: a request awaiting an answer.
        :param code: the status code.
        :param message: for people.
        :param details: opaque bytes for programs.
        :param retry_safe: the request was not processed.
        :raises LocalProtocolError: only if the request is not awaiting an
            answer.
        """
        self._check_awaited(request_id)
        notes: list[str] = []
        if not isinstance(message, str):
            notes.append(f"message of type {type(message).__name__} dropped: not text")
            message = ""
        code, message = _error_status(code, message)
        if isinstance(details, (bytearray, memoryview)):
            details = bytes(details)
        elif not isinstance(details, bytes):
            notes.append(f"details of type {type(details).__name__} dropped: not bytes")
            details = b""
        codec = self._codec
        retry_safe = bool(retry_safe)
        bare = ErrorResponse(request_id=request_id, code=code, retry_safe=retry_safe)
        # What the frame costs without message and details (6 bytes in the
        # binary format), measured rather than assumed: any codec, any status.
        room = self.peer_settings.max_frame_size - (len(codec.encode(bare)) - codec.frame_overhead)
        if len(details) + len(_notes(notes)) > room:
            notes.append(
                f"details of {len(details)} bytes dropped: over the peer's maximum frame size"
            )
            details = b""
        note = _notes(notes)
        text = utf8_prefix(
            message.encode("utf-8", "replace"),
            min(MAX_ERROR_MESSAGE, room - len(details)) - len(note),
        )
        error = ErrorResponse(
            request_id=request_id,
            code=code,
            message=(text + note).decode("utf-8"),
            details=details,
            retry_safe=retry_safe,
        )
        self._answer(request_id, codec.encode(error))

    def forget(self, request_id: int) -> None:
        """
        Drop a request without answering it (server): the client cancelled
        it, so no answer is owed.  With answers in request order (a format
        without CANCEL) every request is answered, so a forgotten one is
        answered CANCELLED, and the answers after it are not held forever.
        """
        if request_id in self.in_flight:
            if self._in_order:
                self.send_error(request_id, StatusCode.CANCELLED, "cancelled")
            in_flight = self.in_flight
            if isinstance(in_flight, set):
                in_flight.discard(request_id)
        if self._streams:
            self._end_stream_state(request_id)

    # -- streaming calls, sent -------------------------------------------------

    @property
    def peer_accepts_streams(self) -> bool | None:
        """
        Whether the peer's SETTINGS offered streaming calls (STREAM_CREDIT);
        ``None`` until its SETTINGS arrive.  A format without SETTINGS (the
        line format) never offers them: ``False``.
        """
        if self._peer_settled:
            return self._peer_stream_credit is not None
        return None if self.state is ConnectionState.AWAIT_SETTINGS else False

    def start_stream(
        self,
        method: str,
        body: bytes = b"",
        metadata: Metadata = (),
        deadline_ms: int | None = None,
        *,
        client_stream: bool,
        server_stream: bool,
    ) -> int:
        """
        Open a streaming call (client): queue a REQUEST with the
        CLIENT_STREAM and SERVER_STREAM flags asked for.

        The call then takes :meth:`send_message` and :meth:`end_stream`
        (client streaming), gives :class:`StreamMessage` events (server
        streaming), and ends with a :class:`Response` or
        :class:`ErrorResponse`, or :meth:`send_cancel`.

        :param method: the method name.
        :param body: the request body, apart from any stream.
        :param metadata: metadata for the whole call.
        :param deadline_ms: the deadline for the whole call.
        :param client_stream: the client sends a stream of messages.
        :param server_stream: the server sends a stream of messages.
        :returns: the new call's request id.
        :raises LocalProtocolError: as :meth:`send_request`; with status
            ``UNIMPLEMENTED`` if the server or this side did not offer
            streaming calls, ``FAILED_PRECONDITION`` if the server's SETTINGS
            have not arrived yet, and nothing is sent.
        """
        if self.role is not Role.CLIENT:
            raise LocalProtocolError("only a client opens streaming calls")
        if not (client_stream or server_stream):
            raise LocalProtocolError("a streaming call streams one way or both: use send_request")
        self._check_open()
        accepts = self.peer_accepts_streams
        if accepts is None:
            raise LocalProtocolError(
                "the server's SETTINGS have not arrived: streaming support is not known yet",
                StatusCode.FAILED_PRECONDITION,
            )
        if not accepts:
            raise LocalProtocolError(
                "the server does not offer streaming calls", StatusCode.UNIMPLEMENTED
            )
        ours = self.limits.stream_credit
        if ours is None:
            raise LocalProtocolError(
                "streaming is turned off on this side (Limits.stream_credit)",
                StatusCode.UNIMPLEMENTED,
            )
        rid = self._next_request_id()
        data = self._codec.encode(
            StreamRequest(
                request_id=rid,
                method=method,
                client_stream=client_stream,
                server_stream=server_stream,
                body=body,
                metadata=metadata,
                deadline_ms=deadline_ms,
            )
        )
        self._check_size(data)
        self.last_request_id = rid
        self._add_in_flight(rid)
        assert self._peer_stream_credit is not None
        if self._streams is _NO_STREAMS:
            self._streams = {}
        self._streams[rid] = CallStream(
            sends=client_stream,
            receives=server_stream,
            send_credit=self._peer_stream_credit,
            receive_credit=ours,
        )
        self._response_shortcut = False
        self._out.append(data)
        return rid

    def _end_stream_state(self, request_id: int) -> None:
        """The call ended: forget its stream (its ungranted credit too)."""
        if self._streams.pop(request_id, None) is not None and not self._streams:
            self._response_shortcut = self._response_shortcut_allowed

    def _sending_stream(self, request_id: int, what: str) -> CallStream:
        self._check_open()
        call = self._streams.get(request_id)
        if call is None:
            raise LocalProtocolError(
                f"cannot {what}: request {request_id} is not an open streaming call"
            )
        if not call.sends:
            raise LocalProtocolError(
                f"cannot {what}: the {self.role.value} does not stream on request {request_id}"
            )
        if call.sent_end:
            raise LocalProtocolError(f"cannot {what}: request {request_id}'s stream has ended")
        return call

    def can_send_message(self, request_id: int) -> bool:
        """
        :param request_id: an open streaming call this side streams on.
        :returns: whether :meth:`send_message` would not be blocked for want
            of credit: both the call's credit and the connection's are at
            least 1.  ``False`` for any other id, and once the connection is
            closed.  When it is ``False`` on an open call, wait for a
            :class:`CreditGranted` event.
        """
        call = self._streams.get(request_id)
        return (
            call is not None
            and self.state is not ConnectionState.CLOSED
            and call.sends
            and not call.sent_end
            and call.send_credit > 0
            and self._send_conn_credit > 0
        )

    def send_message(self, request_id: int, body: bytes = b"") -> None:
        """
        Send one message on a streaming call: a client on a call it opened
        with ``client_stream``, a server on one whose request asked for
        ``server_stream``.  It costs ``10 + len(body)`` bytes of credit, which
        may leave the credit below zero (docs/protocol.md, "Flow control").

        :param request_id: the call.
        :param body: the message; possibly empty.
        :raises LocalProtocolError: if the call is not open or this side does
            not stream on it, its stream has ended, the message is larger than
            the peer's maximum frame size (``RESOURCE_EXHAUSTED``), or there is
            no credit (``RESOURCE_EXHAUSTED``: see :meth:`can_send_message`);
            nothing is sent then.
        """
        call = self._sending_stream(request_id, "send a message")
        if call.send_credit <= 0 or self._send_conn_credit <= 0:
            which = "call" if call.send_credit <= 0 else "connection"
            raise LocalProtocolError(
                f"no {which} credit to send on request {request_id}: wait for CreditGranted",
                StatusCode.RESOURCE_EXHAUSTED,
            )
        data = self._codec.encode(StreamMessage(request_id=request_id, body=body))
        self._check_size(data)
        cost = message_cost(len(body))
        call.send_credit -= cost
        self._send_conn_credit -= cost
        self._out.append(data)

    def end_stream(self, request_id: int) -> None:
        """
        End the client's stream on a call it opened with ``client_stream``
        (client): queue STREAM_END.  The call stays open for the server's
        messages and final answer.

        :raises LocalProtocolError: if the call is not open, does not stream
            from the client, or its stream has already ended.
        """
        if self.role is not Role.CLIENT:
            raise LocalProtocolError("a server ends its stream with its final answer")
        call = self._sending_stream(request_id, "end the stream")
        self._out.append(self._codec.encode(StreamEnd(request_id=request_id)))
        call.sent_end = True

    def acknowledge(self, request_id: int, nbytes: int) -> None:
        """
        The application is done with messages received on ``request_id``
        (consumed, or discarded because the call ended): give their credit
        back.  ``nbytes`` is their cost, ``10 + len(body)`` each.

        Grants go out in batches (docs/protocol.md, "Flow control"): on the
        call when half its initial credit is owed, on the connection when
        half of the connection credit is, and at once when the peer's credit
        would otherwise be 0 or less, so that it never waits on a grant this
        side holds back.  Credit owed to a call that has ended is not
        granted; its connection credit is.

        :param request_id: the call the messages came on.
        :param nbytes: their total cost.
        :raises LocalProtocolError: if ``nbytes`` is negative or more than
            this side received and has not acknowledged.
        """
        if not 0 <= nbytes <= self._unacknowledged:
            raise LocalProtocolError(
                f"cannot acknowledge {nbytes} bytes: {self._unacknowledged} received "
                "and not yet acknowledged"
            )
        if self.state is ConnectionState.CLOSED or not nbytes:
            return
        self._unacknowledged -= nbytes
        grants: list[CreditGranted] = []
        call = self._streams.get(request_id)
        if call is not None and call.receives and not call.received_end:
            call.pending += nbytes
            initial = self.limits.stream_credit or 0
            if call.pending * 2 >= initial or call.receive_credit <= 0:
                grants.append(CreditGranted(request_id=request_id, increment=call.pending))
                call.receive_credit += call.pending
                call.pending = 0
        self._conn_pending += nbytes
        if (
            self._conn_pending * 2 >= self.limits.connection_credit
            or self._receive_conn_credit <= 0
        ):
            grants.append(CreditGranted(request_id=0, increment=self._conn_pending))
            self._receive_conn_credit += self._conn_pending
            self._conn_pending = 0
        for grant in grants:
            self._out.append(self._codec.encode(grant))

    @property
    def unacknowledged(self) -> int:
        """
        Bytes of stream messages received and not yet given back with
        :meth:`acknowledge`, counted as their cost: what the application
        holds.  It stays within this side's connection credit plus one frame.
        """
        return self._unacknowledged

    def grant_credit(self, request_id: int, increment: int) -> None:
        """
        Grant the peer more credit than :meth:`acknowledge` gives back (a
        larger window for one call, or for the connection).

        :param request_id: an open streaming call on which the peer streams
            to this side, or 0 for the connection.
        :param increment: bytes, 1 to 2**31 - 1.
        :raises LocalProtocolError: if the call is not open or does not
            stream to this side, or the peer's credit would pass 2**31 - 1,
            now or once everything received is given back.
        """
        self._check_open()
        if not isinstance(increment, int) or not 1 <= increment <= MAX_CREDIT:
            raise LocalProtocolError(f"credit increment {increment!r} (must be 1 to {MAX_CREDIT})")
        # What the peer's credit comes to once everything received is given
        # back (held by the application, or owed in a batch) must fit too:
        # acknowledge() would otherwise take it past the most later on.
        owed = self._unacknowledged
        if request_id == 0:
            if self._receive_conn_credit + self._conn_pending + owed + increment > MAX_CREDIT:
                raise LocalProtocolError(f"the connection credit would pass {MAX_CREDIT}")
            data = self._codec.encode(CreditGranted(request_id=0, increment=increment))
            self._receive_conn_credit += increment
        else:
            call = self._streams.get(request_id)
            if call is None or not call.receives or call.received_end:
                raise LocalProtocolError(
                    f"request {request_id} is not an open call streaming to the {self.role.value}"
                )
            if call.receive_credit + call.pending + owed + increment > MAX_CREDIT:
                raise LocalProtocolError(
                    f"the credit of request {request_id} would pass {MAX_CREDIT}"
                )
            data = self._codec.encode(CreditGranted(request_id=request_id, increment=increment))
            call.receive_credit += increment
        self._out.append(data)

    def send_ping(self, payload: bytes) -> None:
        """Queue a PING with an 8-byte payload (binary format only)."""
        self._check_open()
        self._out.append(self._codec.encode(Ping(payload=payload)))

    def send_goaway(self, code: int = StatusCode.OK, message: str = "") -> None:
        """
        Announce that this side accepts no new requests (server).  Requests
        already accepted may still be answered; later ones are refused with
        UNAVAILABLE, marked retry-safe.
        """
        self._check_open()
        if self.state is ConnectionState.DRAINING:
            return
        # Encoded first: a codec that cannot encode it leaves the state as it was.
        data = self._codec.encode(
            GoAway(last_request_id=self.last_request_id, code=code, message=message)
        )
        self.state = ConnectionState.DRAINING
        self._out.append(data)

    def refuse(self, code: int, message: str) -> None:
        """
        Refuse this connection (server): at the peer's first message, queue
        the last words in the peer's own format (after a binary preface, a
        GOAWAY with ``code`` and ``message``) and close.
        :meth:`next_event` then returns the :class:`ProtocolViolation`.
        """
        # The code as a StatusCode member where one is defined, as the
        # codecs decode it (compiled, an int-typed argument is a plain int).
        self._refusal = ProtocolViolation(code=STATUS_BY_VALUE.get(code, code), message=message)
        self._request_shortcut = self._response_shortcut = False
        self._response_shortcut_allowed = False

    def close_with_error(self, code: int, message: str) -> None:
        """
        Give up on the connection from this side (a timeout, a dead peer):
        queue the last words (a GOAWAY, or a text line to a peer that never
        finished its preface) and close.
        """
        if self.state is not ConnectionState.CLOSED:
            self._out.append(self._codec.encode_fatal(code, message, self.last_request_id))
            self.state = ConnectionState.CLOSED
            self.in_flight = _NO_IDS
            self._held.clear()
            self._streams.clear()

    def close(self) -> None:
        """Mark the connection closed (the transport is gone): nothing is
        awaiting an answer any more and nothing more will be sent."""
        self.state = ConnectionState.CLOSED
        self.in_flight = _NO_IDS
        self._held.clear()
        self._out.clear()
        self._streams.clear()

    def data_to_send(self) -> bytes:
        """
        :returns: every byte queued since the last call (possibly ``b""``).
        """
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data


#: _INBOUND, resolved: role -> received event type -> handler function.
_DISPATCH: dict[Role, dict[type, Callable[[Connection, Event], Event | None]]] = {
    role: {kind: getattr(Connection, name) for (r, kind), name in _INBOUND.items() if r is role}
    for role in Role
}
