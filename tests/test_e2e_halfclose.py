"""
End to end: a client that shuts down its write side (a half-close) still
gets every answer, from a real ``twistd -n reqresp``: with the real ``nc -N``
(Debian's netcat-openbsd, which ``.ci/run`` installs) on the line format,
and with a raw socket on the binary format.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from unittest import SkipTest

from e2e import COMMAND_TIMEOUT, ReactorMixin, start
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp.wire import BinaryFormat, Connection, Response, Role


def _nc() -> str:
    nc = shutil.which("nc")
    if nc is None:
        if os.environ.get("CI") == "true":
            raise AssertionError("nc (netcat-openbsd) is missing: .ci/run installs it")
        raise SkipTest("nc (netcat-openbsd) is not installed")
    return nc


class HalfCloseTests(ReactorMixin, SynchronousTestCase):
    """A half-closed client gets every answer, then the server closes."""

    def test_nc_half_close_gets_all_answers(self) -> None:
        """printf 'echo a\\nsleep 1\\necho b\\n' | nc -N prints all three answers in order."""
        nc = _nc()
        server = start(self, reactor=self.reactor)
        started = time.monotonic()
        result = subprocess.run(
            [nc, "-N", "127.0.0.1", str(server.port)],
            input=b"echo a\nsleep 1\necho b\n",
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        self.assertEqual(result.stdout, b"OK a\r\nOK 1\r\nOK b\r\n", result.stderr)
        self.assertEqual(result.returncode, 0)
        # nc exits when the server closes: right after the last answer.
        self.assertLess(time.monotonic() - started, 5.0)

    def test_binary_half_close_gets_all_answers(self) -> None:
        """A binary client that sends its requests and shuts its write side gets every answer."""
        server = start(self, "--wire", "binary", reactor=self.reactor)
        client = Connection(Role.CLIENT, BinaryFormat())
        client.send_request("sleep", b"0.5")
        client.send_request("echo", b'"b"')
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(client.data_to_send())
            sock.shutdown(socket.SHUT_WR)
            answers: list[Response] = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                data = sock.recv(65536)
                if not data:
                    break  # the server closed after answering
                client.receive_data(data)
                while (event := client.next_event()) is not None:
                    if isinstance(event, Response):
                        answers.append(event)
        got = sorted((a.request_id, a.body) for a in answers)
        self.assertEqual(got, [(1, b"0.5"), (2, b'"b"')])


class HalfCloseAsyncioTests(HalfCloseTests):
    """The same under ``twistd --reactor=asyncio``."""

    reactor = "asyncio"
