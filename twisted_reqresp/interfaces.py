"""
The interfaces users implement: responders, responder factories, codecs and
wire formats.

Each shipped provider is checked against its interface with
``zope.interface.verify.verifyObject`` in ``tests/test_interfaces.py``.
The wire-format contract (:class:`IWireFormat`, :class:`IWireCodec`) is
declared once, in the sans-IO core (``_core/contract.py``), where the core's
own formats declare that they implement it and the core's
:class:`~twisted_reqresp.wire.Connection` is typed against it; it is
re-exported here with the others.
"""

from __future__ import annotations

from typing import Any

from twisted.python.failure import Failure
from zope.interface import Attribute, Interface

from ._core.call import Call, ConnectionInfo
from ._core.contract import IWireCodec, IWireFormat

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
