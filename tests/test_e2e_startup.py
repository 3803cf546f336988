"""
End to end: what a person meets starting a real ``twistd -n reqresp`` and
pointing the ``reqresp`` command at it: a port that parses but cannot be
listened on, a module in the working directory or under ``--app-dir``, and
a binary client at a line-only port.  Each error is one line, with no
traceback, and a non-zero exit.

Every wait is bounded and every process is killed at cleanup (``e2e.py``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import textwrap
from pathlib import Path

from e2e import BIN, START_TIMEOUT, Server, clean_env, reqresp, start
from twisted.trial.unittest import SynchronousTestCase

#: A module a user writes next to where they run twistd.
_APP = textwrap.dedent(
    """
    from twisted_reqresp import Router
    from twisted_reqresp.codecs import JSON

    router = Router()

    @router.method("add", codec=JSON)
    def add(call):
        a, b = call.body
        return a + b
    """
)


def _exits(test: SynchronousTestCase, server: Server) -> tuple[int, str]:
    """:returns: twistd's exit status and log, once it exits (it must, within the start bound)."""
    test.addCleanup(server.stop)
    try:
        code = server.process.wait(timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired:
        test.fail(f"twistd still running:\n{server.log()}")
    return code, server.log()


def _one_line_error(test: SynchronousTestCase, log: str, text: str) -> None:
    """The log says ``text`` on exactly one line, and shows no traceback."""
    test.assertNotIn("Traceback", log)
    test.assertEqual(len([line for line in log.splitlines() if text in line]), 1, log)


class ListenErrorTests(SynchronousTestCase):
    """A port that parses but cannot be listened on ends twistd with one line."""

    def test_port_out_of_range(self) -> None:
        """--port tcp:99999 exits non-zero saying it cannot listen there and why."""
        code, log = _exits(self, Server(listen="tcp:99999"))
        self.assertNotEqual(code, 0)
        _one_line_error(self, log, "cannot listen on 'tcp:99999': ")
        self.assertIn("port must be 0-65535", log)

    def test_port_in_use(self) -> None:
        """A port another socket listens on exits non-zero saying it is in use."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            listen = f"tcp:{port}:interface=127.0.0.1"
            code, log = _exits(self, Server(listen=listen))
        self.assertNotEqual(code, 0)
        _one_line_error(self, log, f"cannot listen on {listen!r}: ")
        self.assertIn("Address already in use", log)

    def test_second_port_in_use(self) -> None:
        """When one of two ports is taken, twistd still exits, naming that one."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            second = f"tcp:{taken.getsockname()[1]}:interface=127.0.0.1"
            code, log = _exits(self, Server("--port", second))
        self.assertNotEqual(code, 0)
        _one_line_error(self, log, f"cannot listen on {second!r}: ")

    def test_daemon(self) -> None:
        """A daemonizing twistd (no -n) exits 1 saying why, rather than waiting for ever."""
        directory = Path(tempfile.mkdtemp(prefix="reqresp-daemon-"))
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        # The port can never be listened on, so no daemon is left running.
        try:
            result = subprocess.run(
                [
                    str(BIN / "twistd"),
                    "--pidfile=twistd.pid",
                    "--logfile=twistd.log",
                    "reqresp",
                    "--port",
                    "tcp:99999",
                ],
                cwd=directory,
                env=clean_env(),
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            self.fail(f"twistd did not exit within {START_TIMEOUT} s")
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("cannot listen on 'tcp:99999': ", result.stderr)
        self.assertNotIn("Traceback", result.stderr)


class AppDirTests(SynchronousTestCase):
    """--responder finds modules in the working directory, or in --app-dir."""

    def _directory(self) -> Path:
        directory = Path(tempfile.mkdtemp(prefix="reqresp-app-"))
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        return directory

    def _add(self, server: Server) -> None:
        result = reqresp("call", "add", "[1, 2]", env=clean_env(REQRESP_CONNECT=server.endpoint))
        self.assertEqual((result.returncode, result.stdout), (0, "3\n"), result.stderr)

    def test_working_directory(self) -> None:
        """A module beside where twistd runs is found by default, as the README shows."""
        directory = self._directory()
        (directory / "myapp.py").write_text(_APP)
        self._add(start(self, "--responder", "myapp:router", cwd=directory))

    def test_app_dir(self) -> None:
        """--app-dir DIR finds a module in DIR from another working directory."""
        directory = self._directory()
        (directory / "elsewhere_app.py").write_text(_APP)
        self._add(start(self, "--app-dir", str(directory), "--responder", "elsewhere_app:router"))

    def test_missing_app_dir(self) -> None:
        """An --app-dir that is not a directory is a one-line usage error."""
        missing = self._directory() / "nope"
        code, log = _exits(self, Server("--app-dir", str(missing), "--responder", "m:router"))
        self.assertNotEqual(code, 0)
        _one_line_error(self, log, f"--app-dir {str(missing)!r} is not a directory")


class LinePortTests(SynchronousTestCase):
    """The reqresp command at a line-only port says what it reached, in one line."""

    def test_call_line_port(self) -> None:
        """reqresp call against --wire line exits 3 with one line naming the line format."""
        server = start(self, "--wire", "line")
        result = reqresp("call", "echo", '"hi"', env=clean_env(REQRESP_CONNECT=server.endpoint))
        self.assertEqual(result.returncode, 3, result.stderr)
        self.assertEqual(result.stdout, "")
        lines = result.stderr.splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertTrue(lines[0].startswith("reqresp: "), lines)
        self.assertIn("not a reqresp binary server: it speaks the line format", lines[0])
