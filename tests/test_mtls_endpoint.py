"""
The ``mtls:`` server endpoint string parser (``twisted_reqresp._app.mtls``,
a Twisted plugin through ``twisted/plugins/twisted_reqresp_mtls.py``):
what it builds, and the one-line errors for what it cannot.

No socket is opened: the endpoints are made with a
:class:`~twisted.internet.testing.MemoryReactor`.
``tests/test_e2e_mtls.py`` listens on one for real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from e2e import Certificates, _escape
from OpenSSL import SSL
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.interfaces import IStreamServerEndpointStringParser
from twisted.internet.testing import MemoryReactor
from twisted.plugin import getPlugins
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_reqresp._app.mtls import MutualTLSServerParser, mutual_tls_options
from twisted_reqresp._app.tap import Options


class ParserTests(SynchronousTestCase):
    """mtls: strings become TLS endpoints that require a client certificate."""

    certificates: ClassVar[Certificates]

    @classmethod
    def setUpClass(cls) -> None:
        cls.certificates = Certificates()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.certificates.remove()

    def _string(self, **overrides: str | None) -> str:
        c = self.certificates
        arguments: dict[str, str | None] = {
            "privateKey": _escape(c.key_file),
            "certKey": _escape(c.cert_file),
            "caCerts": _escape(c.ca_file),
        }
        arguments.update(overrides)
        fields = [f"{key}={value}" for key, value in arguments.items() if value is not None]
        return ":".join(["mtls:9443", *fields])

    def _parse(self, description: str) -> Any:
        return serverFromString(MemoryReactor(), description)

    def test_plugin_found(self) -> None:
        """Twisted's plugin system finds the parser under the mtls prefix."""
        prefixes = [p.prefix for p in getPlugins(IStreamServerEndpointStringParser)]
        self.assertIn("mtls", prefixes)

    def test_provides_interface(self) -> None:
        """The parser provides IStreamServerEndpointStringParser."""
        self.assertTrue(verifyObject(IStreamServerEndpointStringParser, MutualTLSServerParser()))

    def test_requires_client_certificate(self) -> None:
        """The endpoint's TLS context verifies the peer and fails without its certificate."""
        endpoint = self._parse(self._string(interface="127.0.0.1", backlog="7"))
        self.assertIsInstance(endpoint, SSL4ServerEndpoint)
        self.assertEqual(
            (endpoint._port, endpoint._interface, endpoint._backlog), (9443, "127.0.0.1", 7)
        )
        context = endpoint._sslContextFactory.getContext()
        required = SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT
        self.assertEqual(context.get_verify_mode() & required, required)

    def test_several_ca_certificates(self) -> None:
        """Every certificate in the caCerts file is trusted, not only the first."""
        c = self.certificates
        both = c.directory / "two-cas.pem"
        other = c.directory / "other-ca.pem"
        # A second CA: the one that signs the untrusted client certificates.
        c.client_certificate("x", trusted=False)
        assert c._other_ca is not None
        Certificates._write(other, c._other_ca[0])
        both.write_bytes(c.ca_file.read_bytes() + other.read_bytes())
        options = mutual_tls_options(
            private_key=str(c.key_file), cert_key=str(c.cert_file), ca_certs=str(both)
        )
        self.assertEqual(len(options.caCerts), 2)

    def test_cert_key_defaults_to_private_key(self) -> None:
        """Without certKey the certificate is read from the privateKey file, as for ssl:."""
        c = self.certificates
        combined = c.directory / "combined.pem"
        combined.write_bytes(c.cert_file.read_bytes() + c.key_file.read_bytes())
        endpoint = self._parse(self._string(privateKey=_escape(combined), certKey=None))
        self.assertIsInstance(endpoint, SSL4ServerEndpoint)

    def test_missing_ca_certs(self) -> None:
        """Without caCerts the error says it is needed."""
        error = self.assertRaises(ValueError, self._parse, self._string(caCerts=None))
        self.assertEqual(str(error), "mtls: needs caCerts=FILE")

    def test_missing_private_key(self) -> None:
        """Without privateKey the error says it is needed."""
        error = self.assertRaises(ValueError, self._parse, self._string(privateKey=None))
        self.assertEqual(str(error), "mtls: needs privateKey=FILE")

    def test_missing_file(self) -> None:
        """A file that does not exist is named with its argument."""
        error = self.assertRaises(ValueError, self._parse, self._string(caCerts="/nonexistent.pem"))
        self.assertEqual(str(error), "caCerts=/nonexistent.pem: No such file or directory")

    def test_no_certificate_in_file(self) -> None:
        """A caCerts file with no PEM certificate in it is refused, naming it."""
        empty = Path(self.certificates.directory, "empty.pem")
        empty.write_text("nothing here\n")
        error = self.assertRaises(ValueError, self._parse, self._string(caCerts=_escape(empty)))
        self.assertEqual(str(error), f"caCerts={empty} holds no PEM certificate")

    def test_key_is_not_pem(self) -> None:
        """A privateKey file that is not a PEM key is refused, naming the files."""
        error = self.assertRaises(
            ValueError, self._parse, self._string(privateKey=_escape(self.certificates.ca_file))
        )
        self.assertIn("not a PEM certificate and key", str(error))

    def test_unknown_argument(self) -> None:
        """A misspelt argument is refused rather than ignored."""
        error = self.assertRaises(ValueError, self._parse, self._string(caCert="x"))
        self.assertEqual(str(error), "mtls: unknown argument 'caCert'")

    def test_port_not_a_number(self) -> None:
        """A port that is not a number is refused."""
        description = self._string().replace("mtls:9443", "mtls:https")
        error = self.assertRaises(ValueError, self._parse, description)
        self.assertIn("must be integers", str(error))

    def test_two_positional_arguments(self) -> None:
        """More than the port before the keyword arguments is refused."""
        description = self._string().replace("mtls:9443", "mtls:9443:127.0.0.1")
        error = self.assertRaises(ValueError, self._parse, description)
        self.assertIn("one positional argument", str(error))

    def test_twistd_port_option(self) -> None:
        """twistd reqresp --port refuses a broken mtls: string in one line, at option time."""
        options = Options()
        error = self.assertRaises(
            UsageError, options.parseOptions, ["--port", self._string(caCerts=None)]
        )
        self.assertIn("mtls: needs caCerts=FILE", str(error))
        self.assertNotIn("\n", str(error))


class ImportLightTests(SynchronousTestCase):
    """Every twistd start imports the plugin module: it must stay light."""

    def test_no_reactor(self) -> None:
        """Loading the plugin file installs no reactor."""
        import subprocess
        import sys

        script = (
            "import sys; from twisted.plugins import twisted_reqresp_mtls; "
            "print(sorted(m for m in ('twisted.internet.reactor',) if m in sys.modules))"
        )
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
        )
        self.assertEqual(result.stdout.strip(), "[]")
