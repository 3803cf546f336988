"""
End to end over mutual TLS: a ``twistd -n reqresp`` process listening on
the ``mtls:`` endpoint (``twisted/plugins/twisted_reqresp_mtls.py``) with
a certificate authority made at test time, serving ``examples.authorize``
(its router behind its authorization interceptor), called by the client
library in a subprocess through ``tls:`` endpoints with and without client
certificates, and by the ``reqresp`` command.

It pins that a client certificate the CA signed is accepted and its
subject reaches the responder; that a client without a certificate, with
one from another CA, or speaking plaintext is refused with an error that
says why on the client and one log line on the server; and the
authorization example's answers per certificate and per token.

Every wait is bounded in time, and every process is killed at cleanup.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any, ClassVar

from e2e import (
    Certificates,
    ReactorMixin,
    Server,
    clean_env,
    reqresp,
    run_script,
    start,
)
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import StatusCode

ROOT = Path(__file__).resolve().parent.parent

#: Connects to the endpoint in argv[1] and makes the calls in argv[2] (a
#: JSON list of [method, token or null]).  Prints one JSON line: for each
#: call ["ok", body] or [error type, code, message]; or, if connecting
#: fails, {"connect": [error type, message]}.
CALLS = textwrap.dedent(
    """
    import json, sys
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react
    from twisted_reqresp import ConnectionClosed, RemoteError, connect
    from twisted_reqresp.codecs import JSON

    async def main(reactor, endpoint, calls):
        try:
            client = await connect(reactor, endpoint, codec=JSON, timeout=10)
        except ConnectionClosed as e:
            print(json.dumps({"connect": [type(e).__name__, e.message]}))
            return
        results = []
        for method, token in json.loads(calls):
            metadata = {"authorization": token} if token else None
            try:
                reply = await client.call(method, metadata=metadata)
            except RemoteError as e:
                results.append([type(e).__name__, int(e.code), e.message])
            else:
                results.append(["ok", reply.body])
        client.abort()
        print(json.dumps(results))

    react(lambda reactor: Deferred.fromCoroutine(main(reactor, *sys.argv[1:])))
    """
)

ALICE = "CN=alice,O=reqresp tests"


class MutualTLSTests(ReactorMixin, SynchronousTestCase):
    """An mtls: server and clients with good, bad and no certificates."""

    certificates: ClassVar[Certificates]

    @classmethod
    def setUpClass(cls) -> None:
        cls.certificates = Certificates()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.certificates.remove()

    def _start(self) -> Server:
        # The repository's root on the path, for examples.authorize.
        path = [str(ROOT), os.environ.get("PYTHONPATH", "")]
        return start(
            self,
            "--responder",
            "examples.authorize:router",
            "--interceptor",
            "examples.authorize:authorize",
            listen=self.certificates.mtls_listen(),
            reactor=self.reactor,
            env=clean_env(PYTHONPATH=os.pathsep.join(filter(None, path))),
        )

    def _calls(
        self, server: Server, client: tuple[Path, Path] | None, *calls: tuple[str, str | None]
    ) -> Any:
        endpoint = self.certificates.client_endpoint(server.port, client=client)
        return run_script(CALLS, endpoint, _json(calls))

    def _refused(self, server: Server, endpoint: str, client_says: str, server_says: str) -> None:
        """The client fails to connect saying ``client_says``; the server logs one line."""
        result = run_script(CALLS, endpoint, "[]")
        kind, message = result["connect"]
        self.assertEqual(kind, "ConnectionClosed")
        self.assertIn("connection closed during the handshake", message)
        self.assertIn(client_says, message)
        log = server.wait_for_log(f"failed: {server_says}")
        self.assertEqual(log.count("TLS handshake with IPv4Address"), 1, log)
        self.assertNotIn("Traceback", log)

    def test_subject_reaches_responder(self) -> None:
        """A client certificate the CA signed is accepted; its subject reaches the responder."""
        server = self._start()
        alice = self.certificates.client_certificate("alice")
        results = self._calls(server, alice, ("whoami", None), ("shutdown", None))
        self.assertEqual(results, [["ok", ALICE], ["ok", "shutting down (not really)"]])

    def test_authorization_by_subject(self) -> None:
        """bob's certificate allows whoami, not shutdown, which is refused naming him."""
        server = self._start()
        bob = self.certificates.client_certificate("bob")
        results = self._calls(server, bob, ("whoami", None), ("shutdown", None))
        self.assertEqual(
            results,
            [
                ["ok", "CN=bob,O=reqresp tests"],
                [
                    "RemoteError",
                    StatusCode.PERMISSION_DENIED,
                    "CN=bob,O=reqresp tests may not call 'shutdown'",
                ],
            ],
        )

    def test_authorization_by_token(self) -> None:
        """The operator's token in the metadata allows shutdown; a wrong token does not."""
        server = self._start()
        carol = self.certificates.client_certificate("carol")
        results = self._calls(
            server, carol, ("shutdown", "operator-token"), ("shutdown", "guess"), ("whoami", None)
        )
        denied = "CN=carol,O=reqresp tests may not call"
        self.assertEqual(results[0], ["ok", "shutting down (not really)"])
        self.assertEqual(
            results[1], ["RemoteError", StatusCode.PERMISSION_DENIED, f"{denied} 'shutdown'"]
        )
        self.assertEqual(
            results[2], ["RemoteError", StatusCode.PERMISSION_DENIED, f"{denied} 'whoami'"]
        )

    def test_command_line(self) -> None:
        """The reqresp command presents a client certificate with tls:...:certificate=."""
        server = self._start()
        alice = self.certificates.client_certificate("alice")
        endpoint = self.certificates.client_endpoint(server.port, client=alice)
        result = reqresp("call", "--connect", endpoint, "whoami")
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, f'"{ALICE}"\n', ""))

    def test_no_certificate(self) -> None:
        """A client without a certificate is refused: it is told one is required."""
        server = self._start()
        self._refused(
            server,
            self.certificates.client_endpoint(server.port),
            "the server requires a client certificate",
            "peer did not return a certificate",
        )

    def test_untrusted_certificate(self) -> None:
        """A certificate from a CA the server does not know is refused as untrusted."""
        server = self._start()
        mallory = self.certificates.client_certificate("alice", trusted=False)
        self._refused(
            server,
            self.certificates.client_endpoint(server.port, client=mallory),
            "the server does not trust our certificate",
            "certificate verify failed",
        )

    def test_plaintext(self) -> None:
        """A client speaking plaintext to the mtls: port is refused, and the server says why."""
        server = self._start()
        result = run_script(CALLS, f"tcp:127.0.0.1:{server.port}", "[]")
        kind, message = result["connect"]
        self.assertEqual(kind, "ConnectionClosed")
        self.assertIn("without a word (if it is a TLS port, connect with tls:)", message)
        log = server.wait_for_log("failed: wrong version number")
        self.assertNotIn("Traceback", log)


class MutualTLSAsyncioTests(MutualTLSTests):
    """The same on twistd's asyncio reactor."""

    reactor = "asyncio"


def _json(calls: tuple[tuple[str, str | None], ...]) -> str:
    import json

    return json.dumps([list(call) for call in calls])
