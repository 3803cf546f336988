"""
Authorization by client certificate or by token: a responder that lets a
call through to the responder it wraps only if the caller may call that
method, and refuses it with PERMISSION_DENIED otherwise.

A caller is allowed a method by the subject of its verified client
certificate (``call.connection.peer_certificate_subject``, set on an
``mtls:`` port), or by a token in its ``authorization`` metadata.

Written as a responder wrapper; once server interceptors exist it is the
body of one (``intercept(call, proceed)`` calling ``proceed(call)`` where
this calls ``self.responder.respond(call)``).

Serve the demo with mutual TLS::

    twistd -n reqresp --responder examples.authorize:responder \\
        --port mtls:9443:privateKey=key.pem:certKey=cert.pem:caCerts=ca.pem
"""

from __future__ import annotations

import hmac
from collections.abc import Collection, Mapping
from typing import Any

from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_reqresp import Call, ConnectionInfo, Router, StatusCode, StatusError
from twisted_reqresp.codecs import JSON
from twisted_reqresp.interfaces import IResponder

__all__ = ["Authorize", "responder"]


@implementer(IResponder)
class Authorize:
    """
    Wraps a responder; answers only the calls their caller may make.

    :param responder: the responder that answers allowed calls.
    :param subjects: the methods each certificate subject (RFC 4514, as in
        :attr:`~twisted_reqresp.ConnectionInfo.peer_certificate_subject`)
        may call.
    :param tokens: the methods each token may call.
    :param metadata_key: the metadata key that carries the token.
    """

    def __init__(
        self,
        responder: IResponder,
        *,
        subjects: Mapping[str, Collection[str]] | None = None,
        tokens: Mapping[str, Collection[str]] | None = None,
        metadata_key: str = "authorization",
    ) -> None:
        self.responder = responder
        self.subjects = dict(subjects or {})
        self.tokens = dict(tokens or {})
        self.metadata_key = metadata_key

    def allows(self, call: Call) -> bool:
        """:returns: whether the caller of ``call`` may call its method."""
        subject = call.connection.peer_certificate_subject
        if subject is not None and call.method in self.subjects.get(subject, ()):
            return True
        token = call.metadata.get(self.metadata_key)
        if token is None:
            return False
        # Compare every token in constant time, so that timing does not
        # tell how much of a guess was right.
        allowed = False
        for known, methods in self.tokens.items():
            if hmac.compare_digest(token.encode(), known.encode()) and call.method in methods:
                allowed = True
        return allowed

    def connection_made(self, connection: ConnectionInfo) -> None:
        """Tell the wrapped responder."""
        self.responder.connection_made(connection)

    def respond(self, call: Call) -> Any:
        """
        :returns: the wrapped responder's answer, if the call is allowed.
        :raises StatusError: PERMISSION_DENIED (naming the caller) if not.
        """
        if not self.allows(call):
            who = call.connection.peer_certificate_subject or "a caller without a certificate"
            raise StatusError(StatusCode.PERMISSION_DENIED, f"{who} may not call {call.method!r}")
        return self.responder.respond(call)

    def connection_lost(self, reason: Failure) -> None:
        """Tell the wrapped responder."""
        self.responder.connection_lost(reason)


_router = Router()


@_router.method("whoami", codec=JSON)
def whoami(call: Call) -> str:
    """Answer the caller's certificate subject (empty without one)."""
    return call.connection.peer_certificate_subject or ""


@_router.method("shutdown", codec=JSON)
def shutdown(call: Call) -> str:
    """Pretend to do something only an operator may do."""
    return "shutting down (not really)"


#: The demo: everyone with a certificate from the CA may ask ``whoami``;
#: alice, or whoever has the operator's token, may call ``shutdown``.
responder = Authorize(
    _router,
    subjects={
        "CN=alice,O=reqresp tests": {"whoami", "shutdown"},
        "CN=bob,O=reqresp tests": {"whoami"},
    },
    tokens={"operator-token": {"shutdown"}},
)
