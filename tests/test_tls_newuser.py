"""
What a new user meets with TLS endpoints, found by following the README and
docs as one: a ``tls:`` endpoint without the ``tls`` extra names the extra,
and the ``reqresp`` command says why a certificate was refused.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from e2e import COMMAND_TIMEOUT, Certificates, clean_env, reqresp, start
from twisted.trial.unittest import SynchronousTestCase

#: Run the ``reqresp`` command's entry point as if pyOpenSSL were not
#: installed, which is the case after the README's first set-up command,
#: ``pip install .`` (the ``tls`` extra is not part of it).
_NO_OPENSSL = textwrap.dedent(
    """
    import sys
    sys.modules["OpenSSL"] = None
    from twisted_reqresp._app.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


class TLSWithoutExtraTests(SynchronousTestCase):
    """docs/cli.md: a bad endpoint is a usage error (exit 2), errors are one readable line."""

    def test_tls_endpoint_without_pyopenssl(self) -> None:
        """
        ``reqresp -c tls:HOST:PORT ...`` without the ``tls`` extra says what is
        missing, with a usage (2) or connection (3) exit status, not
        ``unexpected error: NameError: name 'optionsForClientTLS' is not
        defined`` with status 1 (which means "the server answered with an
        error status").
        """
        result = subprocess.run(
            [sys.executable, "-c", _NO_OPENSSL, "-c", "tls:127.0.0.1:1", "methods"],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            env=clean_env(),
            check=False,
        )
        self.assertNotIn("NameError", result.stderr)
        self.assertIn(result.returncode, (2, 3), result.stderr)


class UntrustedCertificateTests(SynchronousTestCase):
    """
    docs/twistd.md (TLS): a client that does not trust the certificate fails
    with ConnectionClosed whose reason carries OpenSSL's error ("certificate
    verify failed").  The Python client has it; the ``reqresp`` command
    drops it, so its user sees only "connection closed during the handshake".
    """

    def test_command_names_the_certificate_problem(self) -> None:
        certificates = Certificates()
        self.addCleanup(certificates.remove)
        server = start(self, listen=certificates.listen())
        # Trusting the system's roots only: the throwaway CA is not among them.
        result = reqresp("call", "--connect", f"tls:localhost:{server.port}", "echo", '"hi"')
        self.assertEqual(result.returncode, 3, result.stderr)
        self.assertIn("certificate verify failed", result.stderr)


class RequireTLSSupportTests(SynchronousTestCase):
    """TLS endpoint strings without pyOpenSSL fail with the extra's name."""

    def test_without_pyopenssl(self) -> None:
        """ssl:, tls:, mtls: and haproxy:ssl: name the tls extra when pyOpenSSL is missing."""
        from unittest import mock

        from twisted_reqresp._adapters.tls import require_tls_support

        with mock.patch.dict(sys.modules, {"OpenSSL": None}):
            for description in (
                "tls:localhost:9443",
                "ssl:9443:privateKey=k.pem",
                "mtls:9443:caCerts=ca.pem",
                "haproxy:ssl:9443",
            ):
                with self.assertRaises(ValueError) as caught:
                    require_tls_support(description)
                self.assertIn("twisted-reqresp[tls]", str(caught.exception))
            require_tls_support("tcp:127.0.0.1:9000")  # no TLS, no complaint

    def test_with_pyopenssl(self) -> None:
        """With pyOpenSSL installed a TLS endpoint string passes the check."""
        from twisted_reqresp._adapters.tls import require_tls_support

        require_tls_support("tls:localhost:9443")

    def test_twistd_port_without_pyopenssl(self) -> None:
        """twistd reqresp --port ssl:... without pyOpenSSL is a usage error naming the extra."""
        from unittest import mock

        from twisted.python.usage import UsageError

        from twisted_reqresp._app.tap import Options

        with mock.patch.dict(sys.modules, {"OpenSSL": None}):
            options = Options()
            with self.assertRaises(UsageError) as caught:
                options.parseOptions(["--port", "ssl:9443:privateKey=k.pem"])
        self.assertIn("twisted-reqresp[tls]", str(caught.exception))
