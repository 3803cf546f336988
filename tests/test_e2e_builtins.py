"""
End to end: the built-in methods on a real ``twistd -n reqresp`` serving a
custom ``--responder`` (which has no health or methods of its own): the real
``nc -N`` (Debian's netcat-openbsd, which ``.ci/run`` installs) gets
``OK SERVING`` from one line, as a load balancer's TCP check would, and the
``reqresp health`` and ``reqresp methods`` commands work with the exit
statuses a Kubernetes exec probe relies on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from unittest import SkipTest

from e2e import COMMAND_TIMEOUT, ReactorMixin, free_port, reqresp, responder_env, start
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp._app.cli import EXIT_CONNECTION, EXIT_OK, EXIT_REMOTE


def _nc() -> str:
    nc = shutil.which("nc")
    if nc is None:
        if os.environ.get("CI") == "true":
            raise AssertionError("nc (netcat-openbsd) is missing: .ci/run installs it")
        raise SkipTest("nc (netcat-openbsd) is not installed")
    return nc


def _line(nc: str, port: int, line: bytes) -> bytes:
    """:returns: what ``nc -N`` prints after sending ``line`` and closing its side."""
    result = subprocess.run(
        [nc, "-N", "127.0.0.1", str(port)],
        input=line,
        capture_output=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    return result.stdout


class BuiltinsTests(ReactorMixin, SynchronousTestCase):
    """A custom responder's server answers the built-in methods; --no-builtins turns them off."""

    def _server(self, *args: str) -> tuple[str, int]:
        server = start(
            self,
            "--responder",
            "e2e_responder:router",
            *args,
            env=responder_env(),
            reactor=self.reactor,
        )
        return server.endpoint, server.port

    def test_health_and_methods(self) -> None:
        """nc gets 'OK SERVING'; reqresp health exits 0; reqresp methods lists the router's."""
        nc = _nc()
        endpoint, port = self._server()
        self.assertEqual(_line(nc, port, b"reqresp.health\n"), b"OK SERVING\r\n")
        self.assertEqual(
            _line(nc, port, b"reqresp.health nope\n"),
            b"ERR NOT_FOUND unknown service 'nope'\r\n",
        )
        health = reqresp("health", "--connect", endpoint)
        self.assertEqual((health.returncode, health.stdout), (EXIT_OK, "SERVING\n"), health.stderr)
        unknown = reqresp("health", "nope", "--connect", endpoint)
        self.assertEqual(
            (unknown.returncode, unknown.stderr),
            (EXIT_REMOTE, "reqresp: NOT_FOUND: unknown service 'nope'\n"),
        )
        methods = reqresp("methods", "--connect", endpoint)
        self.assertEqual(methods.returncode, EXIT_OK, methods.stderr)
        names = methods.stdout.splitlines()
        self.assertIn("hello", names)
        self.assertEqual(names[-3:], ["reqresp.health", "reqresp.methods", "reqresp.stats"])

    def test_no_builtins(self) -> None:
        """With --no-builtins the router answers NOT_FOUND, and reqresp health exits 1."""
        nc = _nc()
        endpoint, port = self._server("--no-builtins")
        self.assertEqual(
            _line(nc, port, b"reqresp.health\n"),
            b"ERR NOT_FOUND unknown method 'reqresp.health'\r\n",
        )
        health = reqresp("health", "--connect", endpoint)
        self.assertEqual(
            (health.returncode, health.stdout, health.stderr),
            (EXIT_REMOTE, "", "reqresp: NOT_FOUND: unknown method 'reqresp.health'\n"),
        )

    def test_health_nothing_listening(self) -> None:
        """reqresp health exits 3 when nothing listens: the probe fails."""
        health = reqresp("health", "--connect", f"tcp:127.0.0.1:{free_port()}")
        self.assertEqual(health.returncode, EXIT_CONNECTION, health.stderr)


class BuiltinsAsyncioTests(BuiltinsTests):
    """The same under ``twistd --reactor=asyncio``."""

    reactor = "asyncio"
