"""
The wire-format contract: what a wire format and its per-connection codec
provide, declared once with ``zope.interface``.

Wire core: imports nothing from Twisted.  ``zope.interface`` is not
networking code; declaring the contract here lets the core's own formats
say ``@implementer(IWireFormat)``, lets :class:`~.connection.Connection` be
type-checked against the same declaration users implement (mypy's zope
plugin), and leaves no second, structural copy to drift.  The public name
is :mod:`twisted_reqresp.interfaces`.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface

from .events import Event, Role
from .limits import Limits

__all__ = ["IWireCodec", "IWireFormat"]


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
            and can do without: PING, PONG, CANCEL and GOAWAY in a format
            without them, and ``Settings``, which a
            :class:`~twisted_reqresp.wire.Connection` encodes on every
            connection, ``handshake`` or not (a format without a handshake
            returns ``b''`` for it, never raises).
        :raises twisted_reqresp.LocalProtocolError: if it cannot be encoded;
            in particular a ``Request`` with an empty method name (the
            conformance kit checks this), and nothing changes in the codec
            when it raises.
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

    def codec(role: Role, limits: Limits) -> IWireCodec:
        """
        :param role: a :class:`twisted_reqresp.wire.Role`.
        :param limits: a :class:`twisted_reqresp.Limits`.
        :returns: a fresh :class:`IWireCodec` provider for one connection.
        """
