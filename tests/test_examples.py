"""
Every example in the README and in ``docs/*.md`` runs, so that an example
cannot break silently.

Each document is one session, run in a fresh temporary directory with the
project's ``bin`` directory first on ``PATH`` and ``.venv`` linked to the
virtualenv running the tests (so ``.venv/bin/reqresp`` works as written).
Its fenced blocks run in order:

- ``python``: a block whose first line is ``# NAME.py`` is written to that
  file (``myapp.py``); a block that defines a ``TestCase`` is written to a
  module and run with trial; any other block runs as a script and must
  exit 0.
- ``sh``: each command line runs with bash and must exit 0.  A command that
  starts a server (``twistd -n ...``, ``twist ...``) runs in the background
  until the session ends (or the next server command), and the following
  commands talk to it.
- ``console``: each ``$ command`` runs; the lines after it, up to the next
  ``$``, are its expected output (standard output and error); with none, it
  must exit 0.  ``...`` in an expected line stands for any text (as
  doctest's ELLIPSIS), for output that differs between runs.

Commands and scripts that need a server and come before any server command
get the default service (``twistd -n reqresp``).  Every port ``9000`` in a
block is rewritten to a free loopback port, ``REQRESP_CONNECT`` points the
``reqresp`` command at it, and ``unix:/tmp/`` sockets move into the
session's directory.

The convention for blocks that cannot run, written on the line before the
fence (see ``docs/index.md``, "Examples in the docs")::

    <!-- example: skip: REASON -->   not run; REASON says why (required)
    <!-- example: ci -->             .ci/run runs this block's commands verbatim

A block in any other language marked as runnable, an unknown directive, or
a skip without a reason fails the test, so a new example is either run or
skipped on purpose.  Blocks in ``text``, ``json`` or no language, and MyST
directives (```` ```{toctree} ````), are not examples.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from e2e import START_TIMEOUT, STOP_TIMEOUT, clean_env, free_port
from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

#: The documents whose examples run: the README and every page of docs/.
DOCUMENTS = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("docs/*.md"))]

#: Fence languages that are examples, by the runner that runs them.
RUNNABLE = {"python": "python", "sh": "sh", "console": "console"}
#: Fence languages that are not examples (data, diagrams, wire dumps).
NOT_EXAMPLES = {"", "text", "json", "toml", "ini", "cfg"}

#: Seconds one command, script or trial run may take.
COMMAND_TIMEOUT = 60.0

_DIRECTIVE = re.compile(r"^<!--\s*example:\s*(?P<body>.*?)\s*-->$")
_FENCE = re.compile(r"^(?P<fence>```+)(?P<info>[^`]*)$")
_FILE_HEADER = re.compile(r"^#\s*(?P<name>[\w./-]+\.py)\s*$")


@dataclass(frozen=True, kw_only=True)
class Block:
    """One fenced block of a document."""

    #: The document, relative to the checkout.
    document: str
    #: The line number of the opening fence (1-based).
    line: int
    #: The fence's language (its info string's first word), lower case.
    language: str
    #: The block's text, without the fences.
    text: str
    #: The directive on the line before the fence (``skip: reason``, ``ci``), or "".
    directive: str

    def where(self) -> str:
        """:returns: ``document:line``, for messages."""
        return f"{self.document}:{self.line}"


def blocks(document: str, text: str) -> list[Block]:
    """
    :param document: the document's name, for messages.
    :param text: its Markdown.
    :returns: its fenced blocks, in order.
    :raises ValueError: for a fence that is never closed.
    """
    lines = text.splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i].strip())
        if opening is None:
            i += 1
            continue
        fence = opening["fence"]
        end = i + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        if end == len(lines):
            raise ValueError(f"{document}:{i + 1}: the fence is never closed")
        previous = next((line.strip() for line in reversed(lines[:i]) if line.strip()), "")
        directive = _DIRECTIVE.match(previous)
        found.append(
            Block(
                document=document,
                line=i + 1,
                language=(opening["info"].split() or [""])[0].lower(),
                text="\n".join(lines[i + 1 : end]) + "\n",
                directive=directive["body"] if directive else "",
            )
        )
        i = end + 1
    return found


def check_marking(block: Block) -> str | None:
    """
    :returns: the runner for the block (``python``, ``sh``, ``console``),
        ``None`` if it is not run (not an example, skipped, or run by CI).
    :raises ValueError: for an unknown language or directive, or a skip
        with no reason: the block must be run or skipped on purpose.
    """
    directive = block.directive
    if directive:
        if directive == "ci":
            return None
        kind, colon, reason = directive.partition(":")
        if kind.strip() != "skip":
            raise ValueError(f"{block.where()}: unknown example directive {directive!r}")
        if not colon or not reason.strip():
            raise ValueError(f"{block.where()}: '<!-- example: skip: REASON -->' needs a reason")
        return None
    if block.language in NOT_EXAMPLES or block.language.startswith("{"):
        # ```{toctree}, ```{eval-rst}: MyST directives for Sphinx, not code.
        return None
    if block.language not in RUNNABLE:
        raise ValueError(
            f"{block.where()}: a ```{block.language} block is neither run nor marked "
            "'<!-- example: skip: REASON -->'"
        )
    return RUNNABLE[block.language]


def output_matches(expected: str, got: str) -> bool:
    """
    :returns: whether an output line matches the expected one, where
        ``...`` stands for any text.
    """
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, got) is not None


def console_commands(text: str) -> list[tuple[str, list[str]]]:
    """
    :param text: a ``console`` block.
    :returns: each ``$ command`` with the output lines that follow it.
    :raises ValueError: if the block does not start with a command.
    """
    commands: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], []))
        elif commands:
            commands[-1][1].append(line)
        elif line.strip():
            raise ValueError(f"console output before any '$ command': {line!r}")
    return commands


def shell_commands(text: str) -> list[str]:
    """:returns: the command lines of an ``sh`` block (no blank or comment-only lines)."""
    return [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


def is_server_command(command: str) -> bool:
    """:returns: whether ``command`` starts a server that runs until stopped."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return False
    if not words:
        return False
    program = os.path.basename(words[0])
    return (program == "twistd" and "-n" in words) or (program == "twist" and len(words) > 1)


class Session:
    """
    One document's run: a temporary directory, the servers started for it,
    and the free port its ``9000`` becomes.
    """

    def __init__(self, test: SynchronousTestCase) -> None:
        self.test = test
        self.directory = Path(tempfile.mkdtemp(prefix="reqresp-examples-"))
        test.addCleanup(shutil.rmtree, self.directory, ignore_errors=True)
        # ".venv/bin/reqresp", as the README writes it, from the session's directory.
        (self.directory / ".venv").symlink_to(BIN.parent)
        # "From the repository root": the example packages are there too.
        (self.directory / "examples").symlink_to(ROOT / "examples")
        self.port = free_port()
        self.server: subprocess.Popen[bytes] | None = None
        self._server_log: IO[bytes] | None = None
        self._module_count = 0
        test.addCleanup(self.stop_server)
        path = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
        self.env = clean_env(PATH=path, REQRESP_CONNECT=f"tcp:127.0.0.1:{self.port}", PYTHONPATH="")

    def rewrite(self, text: str, *, server: bool = False) -> str:
        """
        :param server: whether ``text`` is a server command, whose TCP port
            is then made to listen on loopback only.
        :returns: ``text`` with port 9000 and ``unix:/tmp/`` sockets made
            this session's.
        """
        if server:
            loopback = f"tcp:{self.port}:interface=127.0.0.1"
            text = re.sub(r"(--port|-p)(\s+|=)9000(?=\s|$)", rf"\1\2{loopback}", text)
            text = re.sub(r"tcp:9000(?=\s|$)", loopback, text)
        text = re.sub(r"(?<![\d.])9000(?!\d)", str(self.port), text)
        return text.replace("unix:/tmp/", f"unix:{self.directory}/")

    def _fail(self, block: Block, what: str, result: subprocess.CompletedProcess[str]) -> None:
        self.test.fail(
            f"{block.where()}: {what} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )

    def _run(self, argv: list[str], block: Block) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                argv,
                cwd=self.directory,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            self.test.fail(f"{block.where()}: {argv} ran over {COMMAND_TIMEOUT} s")

    # -- servers ---------------------------------------------------------------------

    def start_server(self, command: str, block: Block) -> None:
        """Start ``command`` (rewritten) in the background and wait until it listens."""
        self.stop_server()
        self._server_log = tempfile.TemporaryFile(dir=self.directory)
        self.server = subprocess.Popen(
            ["bash", "-c", f"exec {self.rewrite(command, server=True)}"],
            cwd=self.directory,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._server_log,
            stderr=subprocess.STDOUT,
        )
        listening = re.compile(rf" starting on {self.port}\b")
        deadline = time.monotonic() + START_TIMEOUT
        for _ in range(1000):  # bounded in count as well as in time
            if self.server.poll() is not None:
                self.test.fail(
                    f"{block.where()}: {command!r} exited {self.server.returncode}:\n"
                    + self.server_log()
                )
            if listening.search(self.server_log()):
                return
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.test.fail(f"{block.where()}: {command!r} not listening:\n{self.server_log()}")

    def ensure_server(self, block: Block) -> None:
        """Start the default service unless a server already runs."""
        if self.server is None:
            self.start_server("twistd -n --pidfile= reqresp --port 9000", block)

    def server_log(self) -> str:
        """:returns: what the current server wrote."""
        if self._server_log is None:
            return ""
        self._server_log.seek(0)
        return self._server_log.read().decode("utf-8", "replace")

    def stop_server(self) -> None:
        """Stop the current server (SIGTERM, then SIGKILL), if there is one."""
        if self.server is not None:
            if self.server.poll() is None:
                self.server.send_signal(signal.SIGTERM)
                try:
                    self.server.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.server.kill()
                    self.server.wait(timeout=STOP_TIMEOUT)
            self.server = None
        if self._server_log is not None:
            self._server_log.close()
            self._server_log = None

    # -- the runners -----------------------------------------------------------------

    def run_sh(self, block: Block) -> None:
        """Run each command; a server command runs in the background."""
        for command in shell_commands(block.text):
            if is_server_command(command):
                self.start_server(command, block)
                continue
            self.ensure_server(block)
            result = self._run(["bash", "-o", "pipefail", "-c", self.rewrite(command)], block)
            if result.returncode != 0:
                self._fail(block, repr(command), result)

    def run_console(self, block: Block) -> None:
        """Run each ``$ command`` and compare its output with the block's."""
        for command, expected in console_commands(block.text):
            if is_server_command(command):
                self.start_server(command, block)
                continue
            self.ensure_server(block)
            result = self._run(["bash", "-o", "pipefail", "-c", self.rewrite(command)], block)
            want = [line.rstrip() for line in expected if line.strip()]
            if not want:
                if result.returncode != 0:
                    self._fail(block, repr(command), result)
                continue
            got = [line.rstrip() for line in (result.stdout + result.stderr).splitlines()]
            if len(got) == len(want) and all(map(output_matches, want, got)):
                continue
            self.test.assertEqual(got, want, f"{block.where()}: {command!r} printed something else")

    def run_python(self, block: Block) -> None:
        """Write a named file, run a TestCase module with trial, or run a script."""
        text = self.rewrite(block.text)
        first = text.splitlines()[0] if text.strip() else ""
        named = _FILE_HEADER.match(first)
        if named is not None:
            (self.directory / named["name"]).write_text(text)
            return
        self._module_count += 1
        if re.search(r"^class \w+\(.*TestCase\):", text, re.MULTILINE):
            module = f"test_example_{self._module_count}"
            (self.directory / f"{module}.py").write_text(text)
            result = self._run([sys.executable, "-m", "twisted.trial", module], block)
            if result.returncode != 0 or "PASSED" not in result.stdout:
                self._fail(block, f"trial {module}", result)
            return
        self.ensure_server(block)
        script = self.directory / f"example_{self._module_count}.py"
        script.write_text(text)
        result = self._run([sys.executable, script.name], block)
        if result.returncode != 0:
            self._fail(block, "the script", result)

    def run(self, block: Block, runner: str) -> None:
        """Run ``block`` with the runner :func:`check_marking` chose."""
        runners: dict[str, Callable[[Block], None]] = {
            "python": self.run_python,
            "sh": self.run_sh,
            "console": self.run_console,
        }
        runners[runner](block)


def _document_blocks(document: str) -> Iterator[Block]:
    yield from blocks(document, (ROOT / document).read_text())


def _run_document(test: SynchronousTestCase, document: str) -> None:
    marked = [(block, check_marking(block)) for block in _document_blocks(document)]
    session = Session(test)
    for block, runner in marked:
        if runner is not None:
            session.run(block, runner)


class DocumentExampleTests(SynchronousTestCase):
    """Each document's examples run as written (one test per document)."""


def _add_document_test(document: str) -> None:
    def test(self: SynchronousTestCase) -> None:
        _run_document(self, document)

    name = re.sub(r"\W", "_", document.removesuffix(".md").lower())
    test.__name__ = f"test_{name}"
    test.__doc__ = f"Every python, sh and console block of {document} runs or is marked skipped."
    setattr(DocumentExampleTests, test.__name__, test)


for _document in DOCUMENTS:
    _add_document_test(_document)


class ConventionTests(SynchronousTestCase):
    """The marking convention: every example is run, skipped with a reason, or run by CI."""

    def _block(self, language: str, directive: str = "") -> Block:
        return Block(document="d.md", line=1, language=language, text="x\n", directive=directive)

    def test_runnable_languages(self) -> None:
        """python, sh and console blocks are run by their runner."""
        for language, runner in [("python", "python"), ("sh", "sh"), ("console", "console")]:
            self.assertEqual(check_marking(self._block(language)), runner)

    def test_not_examples(self) -> None:
        """text, json and unlabelled blocks are not examples."""
        for language in ("text", "json", ""):
            self.assertIsNone(check_marking(self._block(language)))

    def test_unknown_language_fails(self) -> None:
        """A block in a language the test cannot run must be marked skipped."""
        with self.assertRaises(ValueError) as caught:
            check_marking(self._block("ruby"))
        self.assertIn("neither run nor marked", str(caught.exception))

    def test_skip_needs_reason(self) -> None:
        """A skip directive without a reason is refused."""
        for directive in ("skip", "skip:", "skip:   "):
            with self.assertRaises(ValueError):
                check_marking(self._block("sh", directive))

    def test_skip_with_reason(self) -> None:
        """A skip directive with a reason keeps the block from running."""
        self.assertIsNone(check_marking(self._block("sh", "skip: starts a blocking server")))

    def test_unknown_directive(self) -> None:
        """A misspelt directive is refused rather than ignored."""
        with self.assertRaises(ValueError):
            check_marking(self._block("sh", "skpi: typo"))

    def test_directive_on_previous_line(self) -> None:
        """The directive is read from the nearest non-blank line before the fence."""
        text = "intro\n<!-- example: skip: why -->\n\n```sh\nls\n```\n```python\nx = 1\n```\n"
        first, second = blocks("d.md", text)
        self.assertEqual((first.directive, first.line, first.text), ("skip: why", 4, "ls\n"))
        self.assertEqual((second.directive, second.language), ("", "python"))

    def test_unclosed_fence(self) -> None:
        """A fence that is never closed is an error, not a silently ignored example."""
        with self.assertRaises(ValueError):
            blocks("d.md", "```sh\nls\n")

    def test_output_matches(self) -> None:
        """``...`` in an expected console line matches any text, and only there."""
        self.assertTrue(output_matches('{"a": 1, ...}', '{"a": 1, "b": 2}'))
        self.assertTrue(output_matches("exact", "exact"))
        self.assertFalse(output_matches("exact", "exactly"))
        self.assertFalse(output_matches('{"a": 1, ...}', '{"a": 2, "b": 2}'))

    def test_console_commands(self) -> None:
        """A console block splits into commands and the output each expects."""
        self.assertEqual(
            console_commands("$ a\none\ntwo\n$ b\n"), [("a", ["one", "two"]), ("b", [])]
        )
        with self.assertRaises(ValueError):
            console_commands("output first\n$ a\n")

    def test_server_commands(self) -> None:
        """twistd -n and twist commands are servers; twistd --help and others are not."""
        self.assertTrue(is_server_command(".venv/bin/twistd -n reqresp --port 9000"))
        self.assertTrue(is_server_command("twist reqresp --port tcp:9000"))
        self.assertFalse(is_server_command("twistd --help"))
        self.assertFalse(is_server_command("reqresp call echo '\"hi\"'"))

    def test_ci_blocks_are_in_ci_script(self) -> None:
        """Each command of a block marked 'ci' is in .ci/run verbatim."""
        script = (ROOT / ".ci" / "run").read_text()
        ci_blocks = [
            block
            for document in DOCUMENTS
            for block in _document_blocks(document)
            if block.directive == "ci"
        ]
        self.assertTrue(ci_blocks, "the README's test command is marked 'ci'")
        for block in ci_blocks:
            for command in shell_commands(block.text):
                self.assertIn(command, script, f"{block.where()}: not in .ci/run")

    def test_every_document_marked(self) -> None:
        """No document has a block that is neither runnable nor marked."""
        for document in DOCUMENTS:
            for block in _document_blocks(document):
                check_marking(block)
