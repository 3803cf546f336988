"""
TLS without a network: the verified client certificate reaches the
responder through :class:`~twisted_reqresp.ConnectionInfo` once the TLS
handshake is done, a failed handshake is logged on the server with
OpenSSL's reason, and a client whose handshake fails is told why in the
error's message.

The transports are :class:`~twisted.internet.testing.StringTransport`\\ s
that declare :class:`~twisted.internet.interfaces.ISSLTransport`, as
Twisted's TLS transports do; the certificate is made here with
cryptography.  ``tests/test_e2e_mtls.py`` does the same over real sockets.
"""

from __future__ import annotations

import datetime
from typing import Any

from OpenSSL import SSL
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides, implementer

from twisted_reqresp import BINARY, Call, ConnectionClosed, ConnectionInfo, Limits, ServerFactory
from twisted_reqresp._adapters.client_protocol import ClientProtocol
from twisted_reqresp._adapters.tls import failure_text
from twisted_reqresp.interfaces import IResponder, IResponderFactory


def _certificate(common_name: str, organization: str) -> Any:
    """:returns: a self-signed pyOpenSSL certificate with that subject."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from OpenSSL import crypto

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return crypto.X509.from_cryptography(cert)


class _TLSTransport(StringTransport):
    """A StringTransport that says it is TLS and has a peer certificate."""

    def __init__(self, certificate: Any = None) -> None:
        super().__init__()
        directlyProvides(self, ISSLTransport)
        self.certificate = certificate

    def getPeerCertificate(self) -> Any:
        return self.certificate


@implementer(IResponderFactory)
class _Recorder:
    """Remembers the ConnectionInfo of each connection; answers ``whoami``."""

    def __init__(self) -> None:
        self.connections: list[ConnectionInfo] = []

    def responder_for(self, connection: ConnectionInfo) -> IResponder:
        from twisted_reqresp import Router

        self.connections.append(connection)
        router = Router()

        @router.method("whoami")
        def whoami(call: Call) -> bytes:
            return str(call.connection.peer_certificate_subject).encode()

        return router


def _log_events(test: SynchronousTestCase) -> list[LogEvent]:
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    test.addCleanup(globalLogPublisher.removeObserver, events.append)
    return events


class ServerIdentityTests(SynchronousTestCase):
    """The server learns the client certificate after the TLS handshake."""

    def _connect(self, transport: StringTransport) -> tuple[Any, _Recorder]:
        recorder = _Recorder()
        factory = ServerFactory(recorder, clock=MemoryReactorClock())
        protocol = factory.buildProtocol(transport.getPeer())
        assert protocol is not None
        protocol.makeConnection(transport)
        self.addCleanup(protocol.connectionLost, Failure(ConnectionDone()))
        return protocol, recorder

    def test_subject_after_handshake(self) -> None:
        """The verified certificate's subject (RFC 4514) is in ConnectionInfo."""
        certificate = _certificate("alice", "Example")
        protocol, recorder = self._connect(_TLSTransport(certificate))
        protocol.handshakeCompleted()
        (info,) = recorder.connections
        self.assertEqual(info.peer_certificate_subject, "CN=alice,O=Example")
        self.assertEqual(info.peer_certificate, certificate.to_cryptography())

    def test_waits_for_handshake(self) -> None:
        """Over TLS the peer is not counted nor its responder made before the handshake."""
        transport = _TLSTransport(_certificate("alice", "Example"))
        protocol, recorder = self._connect(transport)
        self.assertEqual((recorder.connections, protocol.factory.stats.connections_open), ([], 0))
        protocol.handshakeCompleted()
        self.assertEqual(len(recorder.connections), 1)
        self.assertEqual(protocol.factory.stats.connections_open, 1)

    def test_tls_without_client_certificate(self) -> None:
        """A TLS endpoint that asks no certificate (ssl:) leaves the fields None."""
        protocol, recorder = self._connect(_TLSTransport(None))
        protocol.handshakeCompleted()
        (info,) = recorder.connections
        self.assertEqual((info.peer_certificate_subject, info.peer_certificate), (None, None))

    def test_plain_tcp(self) -> None:
        """A plain transport is identified at once, with no certificate."""
        _, recorder = self._connect(StringTransport())
        (info,) = recorder.connections
        self.assertIsNone(info.peer_certificate_subject)

    def test_handshake_failure_logged(self) -> None:
        """A TLS handshake that fails is logged with the peer and OpenSSL's reason."""
        events = _log_events(self)
        protocol, recorder = self._connect(_TLSTransport(None))
        reason = SSL.Error([("SSL routines", "", "peer did not return a certificate")])
        protocol.connectionLost(Failure(reason))
        messages = [formatEvent(event) for event in events]
        self.assertEqual(
            [m for m in messages if "TLS" in m],
            [
                "TLS handshake with IPv4Address(type='TCP', host='192.168.1.1', port=54321)"
                " failed: peer did not return a certificate"
            ],
        )
        self.assertEqual(recorder.connections, [])

    def test_established_close_not_logged_as_handshake(self) -> None:
        """A TLS connection closed after its handshake logs no handshake failure."""
        events = _log_events(self)
        protocol, _ = self._connect(_TLSTransport(None))
        protocol.handshakeCompleted()
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual([e for e in events if "TLS" in formatEvent(e)], [])


class ClientHandshakeErrorTests(SynchronousTestCase):
    """A client whose TLS handshake fails says why in the error's message."""

    def _lost(self, reason: BaseException) -> ConnectionClosed:
        protocol = ClientProtocol(wire=BINARY, limits=Limits(), clock=MemoryReactorClock())
        protocol.makeConnection(StringTransport())
        ready = protocol.when_ready()
        protocol.connectionLost(Failure(reason))
        error: ConnectionClosed = self.failureResultOf(ready, ConnectionClosed).value
        return error

    def test_certificate_required(self) -> None:
        """The server's 'certificate required' alert is explained in the message."""
        error = self._lost(SSL.Error([("SSL routines", "", "tlsv13 alert certificate required")]))
        self.assertEqual(
            error.message,
            "connection closed during the handshake: TLS: the server requires a client"
            " certificate (tlsv13 alert certificate required)",
        )

    def test_unknown_ca(self) -> None:
        """The server's 'unknown ca' alert says our certificate is not trusted."""
        error = self._lost(SSL.Error([("SSL routines", "", "tlsv1 alert unknown ca")]))
        self.assertEqual(
            error.message,
            "connection closed during the handshake: TLS: the server does not trust our"
            " certificate (tlsv1 alert unknown ca)",
        )

    def test_server_not_trusted(self) -> None:
        """A server certificate we cannot verify is named in the message."""
        error = self._lost(SSL.Error([("SSL routines", "", "certificate verify failed")]))
        self.assertEqual(
            error.message,
            "connection closed during the handshake: TLS: we do not trust the server's"
            " certificate (certificate verify failed)",
        )
        self.assertIsInstance(error.reason, Failure)

    def test_plaintext_to_tls_port(self) -> None:
        """A server that closes without a byte of greeting gets the tls: hint."""
        protocol = ClientProtocol(wire=BINARY, limits=Limits(), clock=MemoryReactorClock())
        protocol.makeConnection(StringTransport())
        ready = protocol.when_ready()
        protocol.readConnectionLost()
        protocol.connectionLost(Failure(ConnectionDone()))
        error = self.failureResultOf(ready, ConnectionClosed).value
        self.assertEqual(
            error.message,
            "connection closed during the handshake: the server closed its side of the"
            " connection without a word (if it is a TLS port, connect with tls:)",
        )

    def test_partial_greeting_no_hint(self) -> None:
        """A server that sent part of a greeting before closing gets no tls: hint."""
        protocol = ClientProtocol(wire=BINARY, limits=Limits(), clock=MemoryReactorClock())
        protocol.makeConnection(StringTransport())
        ready = protocol.when_ready()
        protocol.dataReceived(b"\x00")
        protocol.readConnectionLost()
        protocol.connectionLost(Failure(ConnectionDone()))
        error = self.failureResultOf(ready, ConnectionClosed).value
        self.assertEqual(
            error.message,
            "connection closed during the handshake: the server closed its side of the connection",
        )

    def test_other_reasons_unchanged(self) -> None:
        """A close that is not a TLS error keeps the message it had."""
        error = self._lost(ConnectionLost())
        self.assertEqual(error.message, "connection closed during the handshake")


class FailureTextTests(SynchronousTestCase):
    """failure_text turns OpenSSL errors into one line."""

    def test_reasons_joined(self) -> None:
        """Several OpenSSL reasons are joined with '; ', empty ones dropped."""
        error = SSL.Error([("a", "", "first"), ("b", "", ""), ("c", "", "second")])
        self.assertEqual(failure_text(Failure(error)), "first; second")

    def test_not_tls(self) -> None:
        """Anything but an OpenSSL error gives None."""
        self.assertIsNone(failure_text(Failure(ConnectionLost())))
        self.assertIsNone(failure_text(None))

    def test_odd_error_arguments(self) -> None:
        """An OpenSSL error without the usual list of tuples is shown as str()."""
        self.assertEqual(failure_text(Failure(SSL.Error("odd"))), "odd")
