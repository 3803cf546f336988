"""
The interfaces users implement: responders, responder factories, codecs and
wire formats.

Each shipped provider is checked against its interface with
``zope.interface.verify.verifyObject`` in ``tests/test_interfaces.py``.
The wire core may not import this module (it imports nothing above itself),
so the core's providers are declared here, at the bottom.
"""

from __future__ import annotations

from typing import Any

from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, classImplements

from ._core.auto import AutoCodec, AutoFormat
from ._core.binary import BinaryCodec, BinaryFormat
from ._core.call import Call, ConnectionInfo
from ._core.events import Event, Role
from ._core.limits import Limits
from ._core.line import LineCodec, LineFormat

__all__ = [
    "ICodec",
    "IResponder",
    "IResponderFactory",
    "IWireCodec",
    "IWireFormat",
]


class IResponder(Interface):
    """
    Answers the requests of one connection (or of all of them, when one
    responder is shared).

    The server calls :meth:`connection_made` once the connection is up,
    :meth:`respond` for each request, and :meth:`connection_lost` once at
    the end.
    """

    def connection_made(connection: ConnectionInfo) -> None:
        """
        A connection this responder serves is up.

        :param connection: a :class:`twisted_reqresp.ConnectionInfo`.
        """

    def respond(call: Call) -> Any:
        """
        Answer one request.

        :param call: a :class:`twisted_reqresp.Call`.
        :returns: the answer's body (bytes, or what the method's codec
            encodes), a :class:`twisted_reqresp.Reply`, a Deferred of
            either, or a coroutine (``async def``) returning either.
        :raises twisted_reqresp.StatusError: to answer with that status;
            any other exception is logged and answered with INTERNAL.
        """

    def connection_lost(reason: Failure) -> None:
        """
        The connection is gone; calls still running on it were cancelled.

        :param reason: a :class:`twisted.python.failure.Failure`.
        """


class IResponderFactory(Interface):
    """Makes a responder for each new connection (per-connection state)."""

    def responder_for(connection: ConnectionInfo) -> IResponder:
        """
        :param connection: a :class:`twisted_reqresp.ConnectionInfo`.
        :returns: an :class:`IResponder` provider for that connection.
        """


class ICodec(Interface):
    """Turns values into body bytes and back (bytes, JSON, msgpack, ...)."""

    name = Attribute("A short name for the codec, such as ``'json'``.")

    def encode(value: Any) -> bytes:
        """
        :param value: a value of the kind this codec carries.
        :returns: bytes.
        :raises twisted_reqresp.CodecError: if the value cannot be encoded.
        """

    def decode(data: bytes) -> Any:
        """
        :param data: a body, as bytes.
        :returns: the value.
        :raises twisted_reqresp.CodecError: if the bytes are not a valid
            encoding (the server answers INVALID_ARGUMENT).
        """


class IWireCodec(Interface):
    """
    One connection's sans-IO wire codec: bytes to events, events to bytes.

    It imports no networking code.  It never raises on received bytes: a
    problem it can confine to one request is a
    :class:`~twisted_reqresp.wire.Rejected` event, anything else a
    :class:`~twisted_reqresp.wire.ProtocolViolation`, after which it
    returns no more events.
    """

    handshake = Attribute(
        "True if the client sends a preface and both sides exchange "
        "Settings before the connection is open."
    )
    frame_overhead = Attribute(
        "Bytes of each encoded message not counted against the peer's max frame size."
    )
    buffered = Attribute("Received bytes not yet decoded.")
    keepalive = Attribute("True if the format carries PING and PONG frames.")

    def preface() -> bytes:
        """:returns: bytes a client sends first (``b''`` if none)."""

    def receive_data(data: bytes) -> None:
        """Buffer received bytes (any chunking)."""

    def next_event() -> Event | None:
        """:returns: the next decoded event, or ``None`` if more bytes are needed."""

    def encode(event: Event) -> bytes:
        """
        :param event: a message event (``Request``, ``Response``, ...).
        :returns: its bytes; ``b''`` for a message the format cannot carry
            and can do without (a format with no pings).
        :raises twisted_reqresp.LocalProtocolError: if it cannot be encoded.
        """

    def encode_fatal(code: int, message: str, last_request_id: int) -> bytes:
        """
        :returns: the last bytes sent before closing a connection because of
            a protocol violation: what tells the peer why.
        """


class IWireFormat(Interface):
    """A wire format: a name, whether it multiplexes, and a codec factory."""

    name = Attribute("The name used by ``--wire`` and in logs.")
    multiplexed = Attribute(
        "True if answers carry request ids and may come in any order; "
        "False if they come in request order (the Connection then holds an "
        "answer ready early and gives the server codec its answers in order)."
    )

    def codec(role: Role, limits: Limits) -> Any:
        """
        :param role: a :class:`twisted_reqresp.wire.Role`.
        :param limits: a :class:`twisted_reqresp.Limits`.
        :returns: a fresh :class:`IWireCodec` provider for one connection.
        """


classImplements(BinaryFormat, IWireFormat)
classImplements(BinaryCodec, IWireCodec)
classImplements(LineFormat, IWireFormat)
classImplements(LineCodec, IWireCodec)
classImplements(AutoFormat, IWireFormat)
classImplements(AutoCodec, IWireCodec)
