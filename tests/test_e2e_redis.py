"""
End to end: the real ``redis-cli`` (Debian's redis-tools, which ``.ci/run``
installs) against ``twistd -n reqresp --wire examples.resp:RESP --responder
examples.resp:Store``: a client nobody here wrote talks to a wire format
plugged in through the public interfaces.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from e2e import COMMAND_TIMEOUT, Server, clean_env, start
from twisted.trial.unittest import SkipTest, SynchronousTestCase

#: The repository root: where ``examples`` is importable from.
ROOT = Path(__file__).resolve().parent.parent


def _redis_cli() -> str:
    found = shutil.which("redis-cli")
    if found is None:
        if os.environ.get("CI") == "true":
            raise AssertionError("redis-cli (redis-tools) is missing: .ci/run installs it")
        raise SkipTest("redis-cli (redis-tools) is not installed")
    return found


class RedisCliTests(SynchronousTestCase):
    """redis-cli gets Redis's answers from the RESP example."""

    def setUp(self) -> None:
        self.redis_cli = _redis_cli()
        path = [str(ROOT), os.environ.get("PYTHONPATH", "")]
        self.server: Server = start(
            self,
            "--wire",
            "examples.resp:RESP",
            "--responder",
            "examples.resp:Store",
            env=clean_env(PYTHONPATH=os.pathsep.join(filter(None, path))),
        )

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """:returns: the finished run of ``redis-cli -h 127.0.0.1 -p PORT args``."""
        return subprocess.run(
            [self.redis_cli, "-h", "127.0.0.1", "-p", str(self.server.port), *args],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )

    def assertOutput(self, result: subprocess.CompletedProcess[str], stdout: str) -> None:
        """Assert that redis-cli exited 0 and printed ``stdout`` and no errors."""
        self.assertEqual(
            (result.returncode, result.stdout, result.stderr),
            (0, stdout, ""),
            self.server.log(),
        )

    def test_ping(self) -> None:
        """redis-cli ping prints PONG; ping with a message prints the message."""
        self.assertOutput(self.cli("ping"), "PONG\n")
        self.assertOutput(self.cli("ping", "hello there"), "hello there\n")

    def test_set_get(self) -> None:
        """set k v prints OK; get k then prints v; a missing key prints nothing (nil)."""
        self.assertOutput(self.cli("set", "k", "v"), "OK\n")
        self.assertOutput(self.cli("get", "k"), "v\n")
        self.assertOutput(self.cli("get", "missing"), "\n")
        self.assertOutput(self.cli("exists", "k", "missing"), "1\n")
        self.assertOutput(self.cli("del", "k"), "1\n")
        self.assertOutput(self.cli("get", "k"), "\n")

    def test_echo(self) -> None:
        """echo hi prints hi; binary-safe arguments come back unchanged."""
        self.assertOutput(self.cli("echo", "hi"), "hi\n")
        self.assertOutput(self.cli("echo", 'a \\ "b" caf\u00e9'), 'a \\ "b" caf\u00e9\n')

    def test_unknown_command(self) -> None:
        """An unknown command prints Redis's ERR unknown command message."""
        result = self.cli("flushall")
        # redis-cli follows an error with a blank line when not on a terminal.
        self.assertEqual(
            (result.stdout.strip(), result.stderr),
            ("ERR unknown command 'flushall'", ""),
            self.server.log(),
        )

    def test_commands_from_stdin(self) -> None:
        """Many commands piped to redis-cli are all answered, in order."""
        commands = "".join(f"set key{i} value{i}\n" for i in range(200))
        commands += "".join(f"get key{i}\n" for i in range(200))
        expected = "OK\n" * 200 + "".join(f"value{i}\n" for i in range(200))
        self.assertOutput(self.cli(stdin=commands), expected)

    def test_pipe_mode(self) -> None:
        """redis-cli --pipe sends 1000 RESP commands at once and counts 1000 replies, no errors."""
        commands = "".join(
            f"*3\r\n$3\r\nSET\r\n${len(f'p{i}')}\r\np{i}\r\n$1\r\nx\r\n" for i in range(1000)
        )
        result = self.cli("--pipe", stdin=commands)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("errors: 0, replies: 1000", result.stdout + result.stderr)
        self.assertOutput(self.cli("get", "p999"), "x\n")
