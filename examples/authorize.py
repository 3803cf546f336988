"""
Authorization by client certificate or by token, as a server interceptor:
a call goes on to the responder only if its caller may call that method;
otherwise it is refused with PERMISSION_DENIED and the responder never
runs.

A caller is allowed a method by the subject of its verified client
certificate (``call.connection.peer_certificate_subject``, set on an
``mtls:`` port), or by a token in its ``authorization`` metadata.

Serve the demo with mutual TLS::

    twistd -n reqresp --responder examples.authorize:router \\
        --interceptor examples.authorize:authorize \\
        --port mtls:9443:privateKey=key.pem:certKey=cert.pem:caCerts=ca.pem
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Collection, Mapping
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import implementer

from twisted_reqresp import Call, Router, StatusCode, StatusError
from twisted_reqresp.codecs import JSON
from twisted_reqresp.interfaces import IServerInterceptor

__all__ = ["Authorize", "authorize", "router"]


@implementer(IServerInterceptor)
class Authorize:
    """
    A server interceptor that lets through only the calls their caller may
    make.

    :param subjects: the methods each certificate subject (RFC 4514, as in
        :attr:`~twisted_reqresp.ConnectionInfo.peer_certificate_subject`)
        may call.
    :param tokens: the methods each token may call.
    :param metadata_key: the metadata key that carries the token.
    """

    def __init__(
        self,
        *,
        subjects: Mapping[str, Collection[str]] | None = None,
        tokens: Mapping[str, Collection[str]] | None = None,
        metadata_key: str = "authorization",
    ) -> None:
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

    def intercept(self, call: Call, proceed: Callable[[Call], Deferred[Any]]) -> Any:
        """
        :returns: the responder's answer (through ``proceed``), if the call
            is allowed.
        :raises StatusError: PERMISSION_DENIED (naming the caller) if not.
        """
        if not self.allows(call):
            who = call.connection.peer_certificate_subject or "a caller without a certificate"
            raise StatusError(StatusCode.PERMISSION_DENIED, f"{who} may not call {call.method!r}")
        return proceed(call)


router = Router()


@router.method("whoami", codec=JSON)
def whoami(call: Call) -> str:
    """Answer the caller's certificate subject (empty without one)."""
    return call.connection.peer_certificate_subject or ""


@router.method("shutdown", codec=JSON)
def shutdown(call: Call) -> str:
    """Pretend to do something only an operator may do."""
    return "shutting down (not really)"


#: The demo: everyone with a certificate from the CA may ask ``whoami``;
#: alice, or whoever has the operator's token, may call ``shutdown``.
authorize = Authorize(
    subjects={
        "CN=alice,O=reqresp tests": {"whoami", "shutdown"},
        "CN=bob,O=reqresp tests": {"whoami"},
    },
    tokens={"operator-token": {"shutdown"}},
)
