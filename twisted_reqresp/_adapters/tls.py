"""
What the adapters need to know about TLS, without importing pyOpenSSL:
OpenSSL's reasons for a failed handshake in one line, and the verified
peer certificate of a TLS transport.

pyOpenSSL is looked up in :data:`sys.modules` only: a failure can hold an
``OpenSSL.SSL.Error`` only if something imported it already, and a plain
TCP server should not pay for the import.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.interfaces import ISSLTransport
from twisted.python.failure import Failure

__all__ = ["client_hint", "failure_text", "peer_certificate", "require_tls_support"]

#: What OpenSSL's reason means for the client, for the reasons a client of
#: a mutual-TLS server meets most (TLS 1.3 and 1.2 alert names).
_CLIENT_HINTS = (
    ("alert certificate required", "the server requires a client certificate"),
    ("alert handshake failure", "the server refused the handshake (a client certificate?)"),
    ("alert unknown ca", "the server does not trust our certificate"),
    ("alert bad certificate", "the server does not accept our certificate"),
    ("alert certificate expired", "the server says our certificate expired"),
    ("alert certificate revoked", "the server says our certificate was revoked"),
    ("certificate verify failed", "we do not trust the server's certificate"),
    ("wrong version number", "the server does not speak TLS"),
    ("packet length too long", "the server does not speak TLS"),
)


#: Endpoint types that need pyOpenSSL, anywhere in an endpoint string
#: (``haproxy:ssl:...`` included).
_TLS_ENDPOINTS = ("ssl", "tls", "mtls")


def require_tls_support(description: str) -> None:
    """
    Check that a TLS endpoint string can be used here.

    Without pyOpenSSL (the ``tls`` extra), Twisted's endpoint parsers fail
    with a ``NameError`` deep inside (``optionsForClientTLS`` is not
    defined) or a bare ``No module named 'OpenSSL'``; say what to install
    instead.

    :param description: a client or server endpoint string.
    :raises ValueError: naming the extra, if the string uses TLS and
        pyOpenSSL cannot be imported.
    """
    kinds = {part.strip().lower() for part in description.split(":")}
    if not kinds.intersection(_TLS_ENDPOINTS):
        return
    import importlib.util

    try:
        found = importlib.util.find_spec("OpenSSL") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ValueError(
            f"{description.split(':', 1)[0]}: endpoints need pyOpenSSL and service_identity: "
            "pip install 'twisted-reqresp[tls]'"
        )


def failure_text(reason: Failure | None) -> str | None:
    """
    :param reason: why a connection was lost.
    :returns: OpenSSL's reasons in one line, if the connection was lost to
        an ``OpenSSL.SSL.Error``; ``None`` otherwise.
    """
    ssl = sys.modules.get("OpenSSL.SSL")
    if reason is None or ssl is None or not isinstance(reason.value, ssl.Error):
        return None
    args = reason.value.args
    # OpenSSL.SSL.Error carries a list of (library, function, reason) tuples.
    if len(args) == 1 and isinstance(args[0], list):
        parts = [str(entry[-1]) for entry in args[0] if isinstance(entry, tuple) and entry[-1]]
        if parts:
            return "; ".join(parts)
    return str(reason.value)


def client_hint(reason: Failure | None) -> str | None:
    """
    :param reason: why a client's connection was lost.
    :returns: ``"TLS: what it means (OpenSSL's reason)"`` for a TLS
        failure, ``None`` otherwise.
    """
    text = failure_text(reason)
    if text is None:
        return None
    for needle, meaning in _CLIENT_HINTS:
        if needle in text:
            return f"TLS: {meaning} ({text})"
    return f"TLS: {text}"


def peer_certificate(transport: object) -> tuple[Any, str | None]:
    """
    :param transport: a connected transport.
    :returns: the peer's certificate as a ``cryptography`` ``x509.Certificate``
        and its subject as an RFC 4514 string, or ``(None, None)`` if the
        transport is not TLS or the peer sent no certificate.  The TLS
        layer verified it if the endpoint asks for one (``mtls:``);
        endpoints that do not (``ssl:``) get none.
    """
    if not ISSLTransport.providedBy(transport):
        return None, None
    getter = getattr(transport, "getPeerCertificate", None)
    certificate = getter() if getter is not None else None
    if certificate is None:
        return None, None
    certificate = certificate.to_cryptography()
    return certificate, certificate.subject.rfc4514_string()
