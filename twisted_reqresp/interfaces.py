"""
The interfaces users implement: responders, responder factories,
interceptors, codecs and wire formats.

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

from ._core.call import Call, ConnectionInfo, OutgoingCall
from ._core.contract import IWireCodec, IWireFormat

__all__ = [
    "IClientInterceptor",
    "ICodec",
    "IResponder",
    "IResponderFactory",
    "IServerInterceptor",
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


class IServerInterceptor(Interface):
    """
    Sees each call on its way to the responder and its outcome on the way
    back, as gRPC's server interceptors and Finagle's filters do: for
    metrics, logs, authorization and other cross-cutting concerns.  Give a
    list of them to :class:`twisted_reqresp.ServerFactory`
    (``interceptors=[a, b]``): ``a`` is outermost, it sees the call first
    and the outcome last.  A plain callable ``f(call, proceed)`` works as
    well as a provider.  See ``docs/guide.md``, "Interceptors".
    """

    def intercept(call: Call, proceed: Any) -> Any:
        """
        Handle one call.

        :param call: a :class:`twisted_reqresp.Call`, its body the raw
            request bytes.
        :param proceed: ``proceed(call)`` runs the next interceptor and, at
            the end of the chain, the responder, and returns a Deferred
            firing with the responder's result (bytes, a value or a
            :class:`twisted_reqresp.Reply`) or failing with its exception.
            Pass a changed copy (``dataclasses.replace(call, ...)``) to change
            what the rest of the chain sees.  Return that Deferred itself
            (with callbacks added) so that a CANCEL or the deadline, which
            cancel the Deferred this method returns, reach the responder.
            :class:`twisted_reqresp.Outcome` reads its result.
        :returns: the answer, as :meth:`IResponder.respond` does: usually
            what ``proceed`` returned; or an answer of its own without
            calling ``proceed``.  May be a Deferred, or a coroutine
            (``async def``).
        :raises twisted_reqresp.StatusError: to refuse the call with that
            status; any other exception is logged and answered with
            INTERNAL, as a responder's would be.
        """


class IClientInterceptor(Interface):
    """
    Sees each call a :class:`twisted_reqresp.Client` makes and its result:
    for metadata injection, logging, metrics, retries.  Give a list to
    :func:`twisted_reqresp.connect` or :class:`twisted_reqresp.Client`
    (``interceptors=[a, b]``): ``a`` is outermost.  A plain callable
    ``f(call, proceed)`` works as well as a provider.
    """

    def intercept(call: OutgoingCall, proceed: Any) -> Any:
        """
        Handle one outgoing call.

        :param call: a :class:`twisted_reqresp.OutgoingCall`, its body
            already encoded.
        :param proceed: ``proceed(call)`` runs the next interceptor and, at
            the end of the chain, sends the call; it returns a Deferred
            firing with a :class:`twisted_reqresp.Reply` whose body is the
            raw answer bytes (the call's codec decodes it after the chain),
            or failing as :meth:`twisted_reqresp.Client.call` does.
        :returns: a Deferred firing with a :class:`twisted_reqresp.Reply`
            (or the Reply itself, or a coroutine returning one).  Return the
            Deferred ``proceed`` gave (with callbacks added) so that
            cancelling the call reaches the connection.
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
