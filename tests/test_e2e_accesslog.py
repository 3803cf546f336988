"""
End to end, with a real ``twistd``: ``--access-log`` in the text log, and
the JSON log recipe of ``docs/twistd.md`` ("JSON logs") run as written
there (its lines are read from the document, so the two cannot drift).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from e2e import (
    BIN,
    COMMAND_TIMEOUT,
    START_TIMEOUT,
    STOP_TIMEOUT,
    clean_env,
    free_port,
    reqresp,
    start,
)
from test_examples import ROOT, blocks, shell_commands
from twisted.trial.unittest import SynchronousTestCase

TWISTD_MD = "docs/twistd.md"


class TextAccessLogTests(SynchronousTestCase):
    """twistd reqresp --access-log writes one line per answered request."""

    def test_one_line_per_request(self) -> None:
        """Each call, answered or refused, is one access line with its method and status."""
        server = start(self, "--access-log")
        echo = reqresp("call", "--connect", server.endpoint, "--raw", "echo", "hi")
        self.assertEqual(echo.returncode, 0, echo.stderr)
        nope = reqresp("call", "--connect", server.endpoint, "nope")
        self.assertNotEqual(nope.returncode, 0)
        lines = server.wait_for_lines("[twisted_reqresp.access#info]", 2)
        self.assertRegex(lines[0], r"\] 127\.0\.0\.1:\d+ echo OK [\d.]+ ms in=2 out=2 \(connection")
        self.assertRegex(lines[1], r"\] 127\.0\.0\.1:\d+ nope NOT_FOUND [\d.]+ ms in=0 out=0 ")

    def test_off_by_default(self) -> None:
        """Without --access-log no access line is written."""
        server = start(self)
        reqresp("call", "--connect", server.endpoint, "--raw", "echo", "hi")
        reqresp("call", "--connect", server.endpoint, "ping")
        server.wait_for_log("reqresp: serving")
        self.assertNotIn("twisted_reqresp.access", server.log())


def _recipe() -> tuple[str, list[str]]:
    """:returns: the ``jsonlog.py`` block of docs/twistd.md and the commands after it."""
    found = blocks(TWISTD_MD, (ROOT / TWISTD_MD).read_text())
    for i, block in enumerate(found):
        if block.language == "python" and block.text.startswith("# jsonlog.py"):
            commands = found[i + 1]
            assert commands.language == "sh", commands.where()
            return block.text, shell_commands(commands.text)
    raise AssertionError(f"no '# jsonlog.py' block in {TWISTD_MD}")


class JSONRecipeTests(SynchronousTestCase):
    """The JSON log recipe of docs/twistd.md works as written."""

    def setUp(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="reqresp-jsonlog-"))
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.port = free_port()
        path = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
        self.env = clean_env(PATH=path, REQRESP_CONNECT=f"tcp:127.0.0.1:{self.port}", PYTHONPATH="")

    def _events(self) -> list[dict[str, Any]]:
        log = self.directory / "reqresp.log.json"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

    def _wait_listening(self, server: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        for _ in range(1000):  # bounded in count as well as in time
            if server.poll() is not None:
                self.fail(f"twistd exited {server.returncode}: {self._events()}")
            listening = f" starting on {self.port}"
            if any(listening in str(e.get("log_text", "")) for e in self._events()):
                return  # Twisted's "ServerFactory starting on PORT" (a legacy event)
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.fail(f"twistd not listening on {self.port} after {START_TIMEOUT} s: {self._events()}")

    def test_recipe(self) -> None:
        """The documented observer logs each access event as one JSON line with its fields."""
        module, commands = _recipe()
        (self.directory / "jsonlog.py").write_text(module)
        server_command, *client_commands = (c.replace("9000", str(self.port)) for c in commands)
        self.assertIn("twistd -n", server_command)
        # "VAR=value exec twistd ...": the signals go to twistd, not a shell.
        assignments = re.match(r"(?:\w+=\S*\s+)*", server_command)
        assert assignments is not None
        split = assignments.end()
        server = subprocess.Popen(
            ["bash", "-c", f"{server_command[:split]}exec {server_command[split:]}"],
            cwd=self.directory,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def stop() -> None:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait(timeout=STOP_TIMEOUT)

        self.addCleanup(stop)
        self._wait_listening(server)
        outputs = []
        for command in client_commands:
            result = subprocess.run(
                ["bash", "-o", "pipefail", "-c", command],
                cwd=self.directory,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
            self.assertEqual(result.returncode, 0, f"{command!r}: {result.stdout}{result.stderr}")
            outputs.append(result.stdout)
        # The last command (grep) printed the access event's JSON line.
        [event] = [json.loads(line) for line in outputs[-1].splitlines() if line.strip()]
        self.assertEqual(event["log_namespace"], "twisted_reqresp.access")
        self.assertEqual(event["log_level"]["name"], "info")
        fields = {
            "method": "echo",
            "status": "OK",
            "code": 0,
            "request_bytes": 2,
            "response_bytes": 2,
            "request_id": 1,
        }
        self.assertEqual({k: event[k] for k in fields}, fields)
        self.assertRegex(event["peer"], r"^127\.0\.0\.1:\d+$")
        self.assertIsInstance(event["duration_ms"], float)
        self.assertIsInstance(event["connection_id"], int)
