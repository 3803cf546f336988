"""
The ``mtls:`` server endpoint: TLS that requires every client to present a
certificate signed by a given certificate authority (mutual TLS).

Twisted's own ``ssl:`` server string cannot ask for client certificates,
so this module ships an endpoint string parser that
``twisted/plugins/twisted_reqresp_mtls.py`` makes a Twisted plugin: any
``--port`` (ours, or any other program's that uses
:func:`twisted.internet.endpoints.serverFromString`) then accepts::

    mtls:9443:privateKey=key.pem:certKey=cert.pem:caCerts=ca.pem

It takes ``ssl:``'s arguments (``privateKey``, ``certKey``, ``interface``,
``backlog``, ``extraCertChain``, ``dhParameters``) and ``caCerts``, a PEM
file with one or more CA certificates; the handshake of a client whose
certificate none of them signed, or that sends none, fails.

Twisted imports this module when it scans its plugins (to rebuild its
plugin cache, or to parse an endpoint type that is not built in), in any
Twisted program: it must not install a reactor, and it imports pyOpenSSL
and the endpoint classes only when an ``mtls:`` string is parsed.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.interfaces import (
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import IPlugin
from zope.interface import implementer

__all__ = ["MutualTLSServerParser", "mutual_tls_options"]

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


def _read(argument: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"{argument}={path}: {e.strerror or e}") from e


def _certificates(argument: str, path: str) -> list[Any]:
    """:returns: every PEM certificate in the file, as pyOpenSSL ``X509`` objects
    (what Twisted's trust store and chain take)."""
    from twisted.internet import ssl

    found = _PEM_CERTIFICATE.findall(_read(argument, path))
    if not found:
        raise ValueError(f"{argument}={path} holds no PEM certificate")
    return [ssl.Certificate.loadPEM(pem).original for pem in found]


def mutual_tls_options(
    *,
    private_key: str,
    cert_key: str | None = None,
    ca_certs: str,
    extra_cert_chain: str | None = None,
    dh_parameters: str | None = None,
) -> Any:
    """
    Build the TLS options of an ``mtls:`` server: our certificate and key,
    and the client certificates required and verified against ``ca_certs``.

    :param private_key: a PEM file with the server's private key (and its
        certificate, if ``cert_key`` is not given).
    :param cert_key: a PEM file with the server's certificate (and maybe
        its chain); ``private_key`` by default, as for ``ssl:``.
    :param ca_certs: a PEM file with the CA certificates that sign the
        client certificates accepted.
    :param extra_cert_chain: a PEM file with intermediate certificates sent
        after ours.
    :param dh_parameters: a file with Diffie-Hellman parameters.
    :returns: a :class:`twisted.internet.ssl.CertificateOptions`.
    :raises ValueError: naming the argument and the file, if a file is
        missing or holds no certificate or key.
    """
    from OpenSSL import crypto
    from twisted.internet import ssl
    from twisted.python.filepath import FilePath

    cert_key = private_key if cert_key is None else cert_key
    key_pem = _read("privateKey", private_key)
    try:
        private = ssl.PrivateCertificate.loadPEM(_read("certKey", cert_key) + b"\n" + key_pem)
    except crypto.Error as e:
        raise ValueError(
            f"privateKey={private_key}, certKey={cert_key}: not a PEM certificate and key ({e})"
        ) from e
    chain = None
    if extra_cert_chain is not None:
        chain = _certificates("extraCertChain", extra_cert_chain)
    dh = None
    if dh_parameters is not None:
        _read("dhParameters", dh_parameters)
        dh = ssl.DiffieHellmanParameters.fromFile(FilePath(dh_parameters))
    # cryptography's objects, not pyOpenSSL's: pyOpenSSL deprecates its own
    # X509 and PKey, and takes either.
    return ssl.CertificateOptions(
        privateKey=private.privateKey.original.to_cryptography_key(),
        certificate=private.original.to_cryptography(),
        extraCertChain=chain,
        dhParameters=dh,
        # Ask for a client certificate, refuse the handshake without one,
        # and verify it against caCerts only (not the system's roots: any
        # public CA's customer would be a client otherwise).
        verify=True,
        requireCertificate=True,
        caCerts=_certificates("caCerts", ca_certs),
    )


@implementer(IPlugin, IStreamServerEndpointStringParser)
class MutualTLSServerParser:
    """
    Parses ``mtls:PORT:privateKey=...:certKey=...:caCerts=...`` server
    endpoint strings (see the module's docstring and ``docs/twistd.md``).
    """

    prefix = "mtls"

    def parseStreamServer(
        self, reactor: Any, *args: object, **kwargs: object
    ) -> IStreamServerEndpoint:
        """
        :param reactor: the reactor to listen with.
        :param args: the port (and nothing else).
        :param kwargs: ``privateKey`` (required), ``caCerts`` (required),
            ``certKey``, ``interface``, ``backlog``, ``extraCertChain``,
            ``dhParameters``.
        :returns: an :class:`~twisted.internet.endpoints.SSL4ServerEndpoint`.
        :raises ValueError: in one line, for a missing or unknown argument
            or an unreadable file.
        """
        from twisted.internet.endpoints import SSL4ServerEndpoint

        if len(args) != 1:
            raise ValueError(
                "mtls: takes one positional argument, the port, "
                "as in mtls:9443:privateKey=key.pem:caCerts=ca.pem"
            )
        port = str(args[0])
        options = {key: str(value) for key, value in kwargs.items()}
        interface = options.pop("interface", "")
        backlog = options.pop("backlog", "50")
        for required in ("privateKey", "caCerts"):
            if required not in options:
                raise ValueError(f"mtls: needs {required}=FILE")
        tls = mutual_tls_options(
            private_key=options.pop("privateKey"),
            cert_key=options.pop("certKey", None),
            ca_certs=options.pop("caCerts"),
            extra_cert_chain=options.pop("extraCertChain", None),
            dh_parameters=options.pop("dhParameters", None),
        )
        if options:
            raise ValueError(f"mtls: unknown argument {sorted(options)[0]!r}")
        try:
            port_number, backlog_number = int(port), int(backlog)
        except ValueError:
            raise ValueError(
                f"mtls: port and backlog must be integers, not {port!r} and {backlog!r}"
            ) from None
        endpoint: IStreamServerEndpoint = SSL4ServerEndpoint(
            reactor, port_number, tls, backlog=backlog_number, interface=interface
        )
        return endpoint
