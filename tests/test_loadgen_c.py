"""
``benchmarks/loadgen.c``, the compiled load generator behind
``benchmarks/run.py --loadgen c``: it builds warning-free, sends the same
bytes as the Python generator, drives each of the four benchmark servers
with every answer counted and no protocol error, parses the server's
SETTINGS generically, answers PING, skips unassigned frames, counts wrong
answers, and stops with a clear reason when the server refuses or breaks
the protocol.

It needs a C compiler: without one these tests skip, except under
``CI=true``, where ``.ci/run`` installs ``build-essential`` and a missing
compiler fails.  The network tests use 127.0.0.1 only, bounded waits, and
stop every process and thread they start.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import SkipTest, mock

from twisted.trial.unittest import SynchronousTestCase

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
#: Seconds a fake server waits for the generator's next bytes.
READ_TIMEOUT = 5.0
_HDR = struct.Struct(">IBBI")
_SETTING = struct.Struct(">HI")
#: The generator's preface and SETTINGS: 10 + 10 + 12 bytes.
HELLO_LEN = 32


def _bench(name: str) -> ModuleType:
    """:returns: the module ``benchmarks/NAME.py`` (the scripts import each other flat)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


_built: list[Path] = []


def executable() -> Path:
    """
    :returns: the generator, built once per test run into a private directory.
    :raises SkipTest: without a C compiler, outside CI.
    :raises AssertionError: without a C compiler, under ``CI=true``.
    """
    cloadgen = _bench("_cloadgen")
    if cloadgen.find_compiler() is None:
        if os.environ.get("CI") == "true":
            raise AssertionError(
                "no C compiler: .ci/run installs one (apt-get install build-essential)"
            )
        raise SkipTest("no C compiler (apt-get install build-essential)")
    if not _built:
        where = tempfile.mkdtemp(prefix="reqresp-loadgen-")
        atexit.register(shutil.rmtree, where, True)
        _built.append(cloadgen.build(directory=Path(where)))
    return _built[0]


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _frame(ftype: int, rid: int, payload: bytes) -> bytes:
    return _HDR.pack(len(payload), ftype, 0, rid) + payload


def _settings(*entries: tuple[int, int]) -> bytes:
    return _frame(1, 0, b"".join(_SETTING.pack(k, v) for k, v in entries))


class FakeServer:
    """
    One connection's worth of a scripted server on a free loopback port, in
    a thread: ``script(sock)`` runs on the accepted socket, and whatever it
    returns is kept in :attr:`result`.
    """

    def __init__(self, script: Callable[[socket.socket], Any]) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(READ_TIMEOUT)
        self.port = self._listener.getsockname()[1]
        self.result: Any = None
        self.error: BaseException | None = None
        self._script = script
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            sock, _ = self._listener.accept()
            with sock:
                sock.settimeout(READ_TIMEOUT)
                self.result = self._script(sock)
        except BaseException as e:
            self.error = e
        finally:
            self._listener.close()

    def join(self) -> Any:
        """:returns: the script's result, once it is done (at most 10 s)."""
        self._thread.join(2 * READ_TIMEOUT)
        if self._thread.is_alive():
            raise AssertionError("the fake server did not finish")
        if self.error is not None:
            raise self.error
        return self.result


def report_against(
    script: Callable[[socket.socket], Any], kind: str, window: int = 1
) -> dict[str, Any]:
    """
    Run the generator (8-byte bodies, no warm-up, 5 s at most) against a
    :class:`FakeServer` running ``script``.

    :returns: the generator's JSON report, whether the run was fatal or not.
    """
    server = FakeServer(script)
    done = subprocess.run(
        [str(executable()), kind, str(server.port), "--window", str(window), "--size", "8",
         "--warmup", "0", "--duration", "5", "--stall-timeout", "5"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    server.join()
    report: dict[str, Any] = json.loads(done.stdout)
    return report


class BuildTests(SynchronousTestCase):
    """Building the generator, and not being able to."""

    def test_builds_warning_free(self) -> None:
        """loadgen.c compiles as C99 with -Wall -Wextra -pedantic -Werror."""
        executable()
        cloadgen = _bench("_cloadgen")
        with tempfile.TemporaryDirectory() as where:
            built = cloadgen.build(directory=Path(where), extra_flags=("-pedantic", "-Werror"))
            self.assertTrue(os.access(built, os.X_OK))

    def test_build_is_cached(self) -> None:
        """A second build of the same source, compiler and flags reuses the binary."""
        executable()
        cloadgen = _bench("_cloadgen")
        with tempfile.TemporaryDirectory() as where:
            first = cloadgen.build(directory=Path(where))
            stamp = first.stat().st_mtime_ns
            second = cloadgen.build(directory=Path(where))
            self.assertEqual((second, second.stat().st_mtime_ns), (first, stamp))
            self.assertEqual(sorted(p.name for p in Path(where).iterdir()), [first.name])

    def test_no_compiler_is_a_clear_error(self) -> None:
        """Without a compiler, build() says what to install and what to use instead."""
        cloadgen = _bench("_cloadgen")
        with mock.patch.dict(os.environ, {"PATH": "/nonexistent", "CC": ""}):
            self.assertIsNone(cloadgen.find_compiler())
            with self.assertRaises(cloadgen.CompilerMissing) as caught:
                cloadgen.build(directory=Path(tempfile.gettempdir()))
        self.assertIn("build-essential", str(caught.exception))
        self.assertIn("--loadgen python", str(caught.exception))

    def test_missing_compiler_fails_under_ci(self) -> None:
        """Under CI=true a missing compiler fails the test, naming .ci/run; outside, it skips."""
        with mock.patch.dict(os.environ, {"PATH": "/nonexistent", "CC": "", "CI": "true"}):
            with self.assertRaises(AssertionError) as caught:
                executable()
        self.assertIn(".ci/run installs one", str(caught.exception))
        with mock.patch.dict(os.environ, {"PATH": "/nonexistent", "CC": "", "CI": ""}):
            self.assertRaises(SkipTest, executable)

    def test_usage_error(self) -> None:
        """An unknown protocol is a usage error (exit 1) naming the four it speaks."""
        done = subprocess.run(
            [str(executable()), "http", "1"], capture_output=True, text=True, timeout=30
        )
        self.assertEqual(done.returncode, 1)
        self.assertIn("binary, line, amp or ceiling", done.stderr)


class SameBytesTests(SynchronousTestCase):
    """The C generator sends what the Python generator sends, byte for byte."""

    def _first_bytes(self, kind: str, window: int, size: int) -> tuple[bytes, bytes]:
        """:returns: what the C generator sent first, and what _loadgen.py would."""
        wire = _bench("_loadgen").WIRES[kind](b"x" * size)
        expected = wire.handshake() + wire.requests(window, 0.0)

        def script(sock: socket.socket) -> bytes:
            hello = b""
            if kind == "binary":
                hello = _read_exactly(sock, HELLO_LEN)
                sock.sendall(_settings((1, 16 * 1024 * 1024), (2, 100)))
            return hello + _read_exactly(sock, len(expected) - len(hello))

        server = FakeServer(script)
        with self.assertRaises(_bench("_loadgen").ProtocolFailure):
            _bench("_cloadgen").run_load_c(
                kind, server.port, 1, window, size, 0.0, 5.0, stall_timeout=5.0,
                executable=executable(),
            )  # fmt: skip
        return server.join(), expected

    def test_same_requests(self) -> None:
        """For each protocol, 64 B and 16 KiB bodies, the first requests are _loadgen.py's."""
        for kind in ("binary", "line", "amp", "ceiling"):
            for size in (64, 16 * 1024):
                sent, expected = self._first_bytes(kind, 3, size)
                self.assertEqual(sent, expected, f"{kind}, {size} B")


class ServerTests(SynchronousTestCase):
    """Each benchmark server driven for half a second: answers counted, no error."""

    def _drive(self, kind: str, connections: int, window: int, size: int) -> dict[str, Any]:
        common = _bench("_common")
        server = common.ServerProcess(kind).start()
        self.addCleanup(server.stop)
        report: dict[str, Any] = _bench("_cloadgen").run_load_c(
            kind, server.port, connections, window, size, 0.1, 0.5,
            server_pid=server.pid, executable=executable(),
        )  # fmt: skip
        return report

    def _check(self, report: dict[str, Any], kind: str) -> None:
        self.assertEqual((report["kind"], report["fatal"], report["errors"]), (kind, None, 0))
        self.assertGreater(report["requests"], 0)
        self.assertGreater(report["rps"], 0)
        self.assertTrue(0.4 <= report["seconds"] <= 1.0, report["seconds"])
        lat = [report[k] for k in ("min_ms", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")]
        self.assertEqual(lat, sorted(lat))
        self.assertGreater(lat[0], 0)
        self.assertGreaterEqual(report["gen_cpu_s"], 0)
        self.assertIsNotNone(report["server_us_per_req"])

    def test_each_protocol(self) -> None:
        """binary, line, amp and ceiling: pipelined 64 B and 16 KiB echoes all come back right."""
        kinds = ["binary", "amp", "ceiling"]
        if _bench("_common").line_format_available():
            kinds.append("line")
        executable()
        for kind in kinds:
            with self.subTest(kind=kind):
                self._check(self._drive(kind, 2, 8, 64), kind)
                self._check(self._drive(kind, 2, 2, 16 * 1024), kind)

    def test_binary_settings_reported(self) -> None:
        """The binary server's SETTINGS (MAX_FRAME_SIZE, MAX_CONCURRENT 100) are in the report."""
        executable()
        report = self._drive("binary", 1, 1, 64)
        self.assertEqual(dict(map(tuple, report["server_settings"]))[2], 100)
        self.assertIn(1, dict(map(tuple, report["server_settings"])))


def _echo_server(
    settings: bytes,
    answer: Callable[[socket.socket, int, bytes], None] | None = None,
    requests: int = 20,
) -> Callable[[socket.socket], list[bytes]]:
    """
    :returns: a fake binary server's script: handshake with ``settings``,
        then answer ``requests`` REQUEST frames with ``answer(sock, id,
        body)`` (an echo by default), then end the connection.  The script returns the
        payloads of the PONG frames it received.
    """

    def echo(sock: socket.socket, rid: int, body: bytes) -> None:
        sock.sendall(_frame(3, rid, body))

    def script(sock: socket.socket) -> list[bytes]:
        _read_exactly(sock, HELLO_LEN)
        sock.sendall(settings)
        pongs = []
        answered = 0
        while answered < requests:
            header = _read_exactly(sock, 10)
            if len(header) < 10:
                break
            length, ftype, _, rid = _HDR.unpack(header)
            payload = _read_exactly(sock, length)
            if ftype == 7:
                pongs.append(payload)
                continue
            mlen = struct.unpack_from(">H", payload)[0]
            (answer or echo)(sock, rid, payload[2 + mlen :])
            answered += 1
        # Close our side only and read until the generator closes: closing
        # with its next requests unread would send a reset, not an end.
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
        return pongs

    return script


class BinaryPeerTests(SynchronousTestCase):
    """The generator against a scripted binary server: what it accepts, counts and refuses."""

    def _against(self, script: Callable[[socket.socket], Any], window: int = 1) -> tuple[Any, Any]:
        """:returns: (the generator's report or ProtocolFailure, the script's result)."""
        server = FakeServer(script)
        try:
            outcome: Any = _bench("_cloadgen").run_load_c(
                "binary", server.port, 1, window, 8, 0.0, 5.0, stall_timeout=5.0,
                executable=executable(),
            )  # fmt: skip
        except _bench("_loadgen").ProtocolFailure as e:
            outcome = e
        return outcome, server.join()

    def _report(self, script: Callable[[socket.socket], Any], window: int = 1) -> Any:
        """:returns: the generator's JSON report, fatal or not."""
        return report_against(script, "binary", window)

    def test_settings_parsed_generically(self) -> None:
        """STREAM_CREDIT, CONNECTION_CREDIT and unknown SETTINGS ids are skipped, in any order."""
        entries = ((0x3, 65536), (0x77, 5), (2, 100), (0x4, 1 << 20), (1, 1024))
        report = self._report(_echo_server(_settings(*entries)))
        self.assertEqual([tuple(e) for e in report["server_settings"]], list(entries))
        self.assertEqual((report["requests"], report["errors"]), (20, 0))
        self.assertEqual(report["fatal"], "the server closed a connection")

    def test_ping_answered_unassigned_skipped(self) -> None:
        """A PING gets a PONG with its payload; frames of unassigned types are skipped."""

        def answer(sock: socket.socket, rid: int, body: bytes) -> None:
            if rid == 2:
                sock.sendall(_frame(0x9, 0, b"future") + _frame(6, 0, b"12345678"))
            sock.sendall(_frame(3, rid, body))

        report = self._report(_echo_server(_settings(), answer, requests=5))
        self.assertIn("closed a connection", report["fatal"])
        self.assertEqual((report["requests"], report["errors"]), (5, 0))

        pongs = FakeServer(_echo_server(_settings(), answer, requests=5))
        with self.assertRaises(_bench("_loadgen").ProtocolFailure):
            _bench("_cloadgen").run_load_c(
                "binary", pongs.port, 1, 1, 8, 0.0, 5.0, stall_timeout=5.0,
                executable=executable(),
            )  # fmt: skip
        self.assertEqual(pongs.join(), [b"12345678"])

    def test_wrong_answers_counted(self) -> None:
        """An ERROR frame and a RESPONSE that is not the echo each count as one error."""

        def answer(sock: socket.socket, rid: int, body: bytes) -> None:
            if rid == 2:
                message = b"nope"
                sock.sendall(_frame(4, rid, struct.pack(">IH", 5, len(message)) + message))
            elif rid == 3:
                sock.sendall(_frame(3, rid, b"not the body"))
            else:
                sock.sendall(_frame(3, rid, body))

        report = self._report(_echo_server(_settings(), answer, requests=6))
        self.assertEqual((report["requests"], report["errors"]), (6, 2))
        self.assertEqual(report["first_error"], "ERROR 2: status 5: nope")

    def test_answer_never_asked_for(self) -> None:
        """An answer to an id not in flight stops the run with that reason."""
        report = self._report(
            _echo_server(_settings(), lambda s, rid, body: s.sendall(_frame(3, rid + 7, body)))
        )
        self.assertEqual(report["fatal"], "RESPONSE for request id 8, which is not in flight")

    def test_refusal(self) -> None:
        """A GOAWAY instead of SETTINGS is reported as a refusal, with its status and reason."""

        def script(sock: socket.socket) -> None:
            _read_exactly(sock, HELLO_LEN)
            reason = b"too many connections (limit 1)"
            sock.sendall(_frame(8, 0, struct.pack(">IH", 8, len(reason)) + reason))

        outcome, _ = self._against(script)
        self.assertIsInstance(outcome, _bench("_loadgen").ProtocolFailure)
        self.assertIn(
            "refused the connection: GOAWAY status 8: too many connections (limit 1)",
            str(outcome),
        )

    def test_window_against_max_concurrent(self) -> None:
        """A window below or at the server's MAX_CONCURRENT runs; one above stops, named."""
        for window in (1, 3):
            report = self._report(_echo_server(_settings((2, 3)), requests=4), window=window)
            self.assertEqual(report["fatal"], "the server closed a connection")
            self.assertEqual(report["requests"], 4)
        report = self._report(_echo_server(_settings((2, 3)), requests=4), window=4)
        self.assertEqual(report["fatal"], "--window 4 exceeds the server's MAX_CONCURRENT 3")
        self.assertEqual(report["requests"], 0)


def _read_request(sock: socket.socket, kind: str) -> bytes | None:
    """:returns: the next request's id (AMP's ``_ask``) or its bytes; None at the end."""
    if kind == "line":
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(1)
            if not chunk:
                return None
            data += chunk
        return data
    if kind == "ceiling":
        head = _read_exactly(sock, 4)
        if len(head) < 4:
            return None
        return head + _read_exactly(sock, struct.unpack(">I", head)[0])
    ask = None
    while True:
        klen = _read_exactly(sock, 2)
        if len(klen) < 2:
            return None
        if klen == b"\0\0":
            return ask
        key = _read_exactly(sock, struct.unpack(">H", klen)[0])
        value = _read_exactly(sock, struct.unpack(">H", _read_exactly(sock, 2))[0])
        if key == b"_ask":
            ask = value


def _amp_box(**values: bytes) -> bytes:
    return (
        b"".join(
            struct.pack(">H", len(k)) + k.encode() + struct.pack(">H", len(v)) + v
            for k, v in values.items()
        )
        + b"\0\0"
    )


class InOrderPeerTests(SynchronousTestCase):
    """line, ceiling and AMP peers: a wrong answer counts as one error and the run goes on."""

    def _count(self, kind: str, answer: Callable[[int, bytes], bytes]) -> dict[str, Any]:
        """:returns: the report of a run whose 6 answers are ``answer(n, request)``, n from 1."""

        def script(sock: socket.socket) -> None:
            for n in range(1, 7):
                request = _read_request(sock, kind)
                assert request is not None, "the generator stopped early"
                sock.sendall(answer(n, request))
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass

        report = report_against(script, kind)
        self.assertEqual(report["fatal"], "the server closed a connection")
        return report

    def test_line(self) -> None:
        """An ERR line is one error; a blank line is no answer at all."""

        def answer(n: int, request: bytes) -> bytes:
            self.assertEqual(request, b"echo xxxxxxxx\n")
            return {2: b"ERR NOT_FOUND nope\r\n", 3: b"  \r\nOK xxxxxxxx\r\n"}.get(
                n, b"OK xxxxxxxx\r\n"
            )

        report = self._count("line", answer)
        self.assertEqual((report["requests"], report["errors"]), (6, 1))
        self.assertEqual(report["first_error"], "line answer ERR NOT_FOUND nope\\x0d\\x0a")

    def test_ceiling(self) -> None:
        """A frame that is not the echo of the request is one error."""
        report = self._count("ceiling", lambda n, req: b"\0\0\0\x02no" if n == 4 else req)
        self.assertEqual((report["requests"], report["errors"]), (6, 1))
        self.assertEqual(report["first_error"], "an answer of 2 bytes, not the echo of the 8 sent")

    def test_amp(self) -> None:
        """An _error box is one error, matched to its request by _ask like an answer."""

        def answer(n: int, ask: bytes) -> bytes:
            if n == 5:
                return _amp_box(_error=ask, _error_code=b"UNKNOWN", _error_description=b"nope")
            return _amp_box(_answer=ask, body=b"xxxxxxxx")

        report = self._count("amp", answer)
        self.assertEqual((report["requests"], report["errors"]), (6, 1))
        self.assertEqual(report["first_error"], "AMP _error: nope")


class RunScriptTests(SynchronousTestCase):
    """``benchmarks/run.py --loadgen``: the one command that makes the table."""

    def _run_py(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(BENCHMARKS / "run.py"), *args],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip

    def test_c_generator_table(self) -> None:
        """--loadgen c fills the table (p99.9, server CPU per answer, the generator's CPU), for
        our server on its compiled and its pure-Python path too."""
        executable()
        with tempfile.TemporaryDirectory() as where:
            out = Path(where) / "out.json"
            env = dict(os.environ, REQRESP_LOADGEN_CACHE=where)
            done = self._run_py(
                "--loadgen", "c", "--servers", "binary,binary-py,ceiling", "--cases", "1x64",
                "--repeat", "1", "--warmup", "0.1", "--duration", "0.3", "--json", str(out),
                env=env,
            )  # fmt: skip
            self.assertEqual(done.returncode, 0, done.stderr)
            data = json.loads(out.read_text())
        self.assertIn("Load generator: c (loadgen.c", done.stdout)
        self.assertIn("p99.9 ms", done.stdout)
        self.assertIn("ceiling cpu/ours", done.stdout)
        self.assertIn("pure/ceiling", done.stdout)
        self.assertIn("ours (pure Py): hot path pure Python", done.stdout)
        self.assertTrue(data["settings"]["loadgen"].startswith("c (loadgen.c"))
        for kind in ("binary", "binary-py", "ceiling"):
            (run,) = data["results"]["1x64"][kind]
            self.assertEqual((run["generator"], run["errors"]), ("c", 0))
            self.assertGreater(run["requests"], 0)
            self.assertIsNotNone(run["server_us_per_req"])

    def test_c_generator_without_compiler(self) -> None:
        """--loadgen c without a compiler stops before starting a server, saying what to do."""
        env = dict(os.environ, PATH="/nonexistent", CC="")
        done = self._run_py("--loadgen", "c", "--cases", "1x1", env=env)
        self.assertEqual(done.returncode, 1)
        self.assertIn("--loadgen c: no C compiler found", done.stderr)
        self.assertIn("build-essential", done.stderr)
