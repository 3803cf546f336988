"""
End to end behind a real HAProxy (Debian's ``haproxy`` package, which
``.ci/run`` installs; under ``CI=true`` these tests fail rather than skip
when it is missing): ``haproxy -f haproxy.cfg -db`` in front of two real
``twistd -n reqresp`` backends on ``haproxy:tcp:`` ports, with the
``haproxy.cfg`` of ``docs/deployment.md`` as written there (only its ports
and its stats socket's path change, so the document and the test cannot
drift apart).

- the PROXY header, version 1 (``send-proxy``) and 2 (``send-proxy-v2``),
  brings the client's own address and port to the responder and to the
  per-peer connection limit;
- HAProxy's health check, one line over the line format, marks a stopping
  (draining) backend DOWN and a restarted one UP, and a backend that
  answers anything but ``OK SERVING`` DOWN;
- SIGTERM on one backend under load loses no call: every call succeeds,
  at once or after a retry-safe refusal on the other backend.

Every wait is bounded in time and in count, every socket is on loopback,
and every process started (haproxy, twistd, the load generator) is killed
at cleanup.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import IO, Any, ClassVar

from e2e import (
    COMMAND_TIMEOUT,
    READ_TIMEOUT,
    START_TIMEOUT,
    STOP_TIMEOUT,
    RawPeer,
    Server,
    clean_env,
    free_port,
    kill,
    responder_env,
    start,
)
from test_examples import ROOT, blocks
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from twisted_reqresp.wire import Response, Settings

DEPLOYMENT_MD = "docs/deployment.md"

#: Seconds for HAProxy to mark a server UP or DOWN: its checks run every
#: 200 ms and two in a row decide (``inter 200ms fall 2 rise 2``), plus a
#: wide margin for a loaded machine.
HEALTH_TIMEOUT = 10.0

#: The backends' endpoint: the PROXY protocol over TCP on loopback.
LISTEN = "haproxy:tcp:{port}:interface=127.0.0.1"


def haproxy_program(search: str | None = None) -> str:
    """
    :param search: where to look (``PATH``, then ``/usr/sbin`` and
        ``/sbin``, which a user's ``PATH`` may lack, by default).
    :returns: the ``haproxy`` program.
    :raises SkipTest: if it is not installed, outside CI.
    :raises AssertionError: if it is not installed, under ``CI=true``.
    """
    if search is None:
        search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    found = shutil.which("haproxy", path=search)
    if found is None:
        if os.environ.get("CI") == "true":
            raise AssertionError(
                "haproxy is missing: .ci/run installs it (apt-get install haproxy)"
            )
        raise SkipTest("haproxy is not installed (apt-get install haproxy)")
    return found


def documented_cfg() -> str:
    """:returns: the ``# haproxy.cfg`` block of docs/deployment.md, as written."""
    for block in blocks(DEPLOYMENT_MD, (ROOT / DEPLOYMENT_MD).read_text()):
        if block.language == "cfg" and block.text.startswith("# haproxy.cfg\n"):
            return block.text
    raise AssertionError(f"no '# haproxy.cfg' block in {DEPLOYMENT_MD}")


def render_cfg(
    text: str, *, front: int, app1: int, app2: int, stats: Path, version: str = "v2"
) -> str:
    """
    :param text: the documented configuration.
    :param version: ``v2`` as documented, or ``v1`` for ``send-proxy``.
    :returns: ``text`` with this test's ports and stats socket (and, for
        ``v1``, ``send-proxy`` for ``send-proxy-v2``).
    :raises AssertionError: if a string the test replaces is not in the
        text exactly once: the document changed under the test.
    """
    replacements = {
        "127.0.0.1:9000": f"127.0.0.1:{front}",
        "127.0.0.1:9001": f"127.0.0.1:{app1}",
        "127.0.0.1:9002": f"127.0.0.1:{app2}",
        "/run/haproxy/reqresp.sock": str(stats),
    }
    if version == "v1":
        replacements["send-proxy-v2"] = "send-proxy"
    for old, new in replacements.items():
        count = text.count(old)
        assert count == 1, f"{DEPLOYMENT_MD}'s haproxy.cfg has {old!r} {count} times, not once"
        text = text.replace(old, new)
    return text


class ProgramTests(SynchronousTestCase):
    """A missing haproxy skips these tests, except under CI, where it fails them."""

    def test_missing_fails_under_ci(self) -> None:
        """Under CI=true a missing haproxy is a failure naming .ci/run."""
        self.patch(os, "environ", {**os.environ, "CI": "true"})
        with self.assertRaises(AssertionError) as raised:
            haproxy_program(search=tempfile.gettempdir())
        self.assertIn(".ci/run installs it", str(raised.exception))

    def test_missing_skips_elsewhere(self) -> None:
        """Outside CI a missing haproxy skips the test."""
        environment = {k: v for k, v in os.environ.items() if k != "CI"}
        self.patch(os, "environ", environment)
        self.assertRaises(SkipTest, haproxy_program, search=tempfile.gettempdir())


class HAProxy:
    """
    A ``haproxy -f CFG -db`` subprocess (in the foreground, logging to a
    temporary file) and its runtime API on a UNIX socket.

    :ivar port: the frontend's port.
    :ivar history: for each server, the states (``UP``, ``DOWN``) that
        :meth:`servers` has seen, in order, each change once.
    """

    def __init__(self, program: str, directory: Path, cfg: str, port: int, stats: Path) -> None:
        self.port = port
        self.stats_socket = stats
        self.cfg_file = directory / "haproxy.cfg"
        self.cfg_file.write_text(cfg)
        self.history: dict[str, list[str]] = {}
        self._log: IO[bytes] = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [program, "-f", str(self.cfg_file), "-db"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )

    def log(self) -> str:
        """:returns: what haproxy wrote so far."""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def servers(self) -> dict[str, dict[str, str]]:
        """
        :returns: ``show stat`` for each server of the ``reqresp`` backend,
            by name (``status``, ``check_status``, ``chkdown``, ...), and
            each server's state recorded in :attr:`history`.
        """
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(READ_TIMEOUT)
            sock.connect(str(self.stats_socket))
            sock.sendall(b"show stat\n")
            received = b""
            for _ in range(10_000):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        lines = received.decode().strip().splitlines()
        header = lines[0].removeprefix("# ").split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:]]
        servers = {
            row["svname"]: row
            for row in rows
            if row["pxname"] == "reqresp" and row["svname"] not in ("FRONTEND", "BACKEND")
        }
        for name, row in servers.items():
            # "DOWN 1/2" is DOWN on its way up: the state is the first word.
            state = row["status"].split()[0]
            seen = self.history.setdefault(name, [])
            if not seen or seen[-1] != state:
                seen.append(state)
        return servers

    def wait_for(self, name: str, status: str, timeout: float = HEALTH_TIMEOUT) -> dict[str, str]:
        """
        Poll the runtime API until server ``name`` is ``status`` (``UP``
        after a passed check, or ``DOWN``).

        :returns: its row of ``show stat``.
        :raises AssertionError: with haproxy's log, if it is not within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        row: dict[str, str] = {}
        for _ in range(10_000):
            if self.process.poll() is not None:
                raise AssertionError(f"haproxy exited {self.process.returncode}:\n{self.log()}")
            try:
                row = self.servers()[name]
            except OSError:
                row = {}  # the stats socket is not there yet
            # UP alone is HAProxy's assumption at start; UP with L7OK is a passed check.
            passed = status != "UP" or row.get("check_status") == "L7OK"
            if row.get("status") == status and passed:
                return row
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        raise AssertionError(f"{name} not {status} in {timeout} s ({row}):\n{self.log()}")

    def stop(self) -> None:
        """Kill haproxy if it still runs, and release its log."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)
        self._log.close()


def connect_from(source: str, port: int) -> socket.socket:
    """:returns: a socket from ``source`` (a loopback address) to 127.0.0.1:``port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(READ_TIMEOUT)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def read_line(sock: socket.socket) -> bytes:
    """:returns: the next line-format answer on ``sock``, without its CRLF (b"" if closed)."""
    received = b""
    deadline = time.monotonic() + READ_TIMEOUT
    while not received.endswith(b"\r\n") and time.monotonic() < deadline:
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return received.removesuffix(b"\r\n")


def established_ports(remote_ports: set[int]) -> set[int]:
    """
    :returns: the local ports of this machine's established IPv4 TCP
        connections to any of ``remote_ports`` (from ``/proc/net/tcp``):
        HAProxy's outgoing connections to the backends.
    """
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if state == "01" and int(remote.split(":")[1], 16) in remote_ports:
            ports.add(int(local.split(":")[1], 16))
    return ports


class _Deployment(SynchronousTestCase):
    """HAProxy and two backends, as docs/deployment.md sets them up."""

    #: The PROXY protocol version HAProxy sends: ``v2`` as documented, or ``v1``.
    version: ClassVar[str] = "v2"

    def deploy(
        self, *args: str, env: dict[str, str] | None = None
    ) -> tuple[HAProxy, Server, Server]:
        """
        Start two backends with ``args`` and HAProxy in front of them, and
        wait until HAProxy's health checks pass on both.

        :returns: HAProxy, the first backend (``app1``), the second (``app2``).
        """
        program = haproxy_program()
        app1, app2 = (start(self, *args, listen=LISTEN, env=env) for _ in range(2))
        directory = Path(tempfile.mkdtemp(prefix="reqresp-haproxy-"))
        self.addCleanup(shutil.rmtree, directory, True)
        stats = directory / "stats.sock"
        front = free_port()
        cfg = render_cfg(
            documented_cfg(),
            front=front,
            app1=app1.port,
            app2=app2.port,
            stats=stats,
            version=self.version,
        )
        haproxy = HAProxy(program, directory, cfg, front, stats)
        self.addCleanup(haproxy.stop)
        for name in ("app1", "app2"):
            haproxy.wait_for(name, "UP", timeout=START_TIMEOUT + HEALTH_TIMEOUT)
        return haproxy, app1, app2


class ClientAddressTests(_Deployment):
    """Through HAProxy's PROXY header the backends see the client's own address."""

    def test_peer_is_the_client(self) -> None:
        """The responder's peer is the client's address and port, not HAProxy's outgoing port."""
        haproxy, app1, app2 = self.deploy(
            "--responder", "e2e_responder:router", env=responder_env()
        )
        # Two connections, open together: round robin sends them to both backends.
        line = connect_from("127.0.0.1", haproxy.port)
        self.addCleanup(line.close)
        line.sendall(b"peer\n")
        line_answer = read_line(line)

        binary = RawPeer(connect_from("127.0.0.1", haproxy.port))
        self.addCleanup(binary.sock.close)  # type: ignore[union-attr]
        binary.conn.send_request("peer", b"")
        binary.send(binary.handshake_bytes() + binary.conn.data_to_send())
        binary.receive_until(Settings)
        binary_answer: bytes = binary.receive_until(Response).body

        line_port, binary_port = line.getsockname()[1], binary.sock.getsockname()[1]  # type: ignore[union-attr]
        self.assertEqual(line_answer, f"OK 127.0.0.1:{line_port}".encode())
        self.assertEqual(binary_answer, f"127.0.0.1:{binary_port}".encode())
        # While both are open, HAProxy holds one connection to a backend
        # for each: their ports are not the ones the responder reported.
        outgoing = established_ports({app1.port, app2.port})
        self.assertGreaterEqual(len(outgoing), 2, outgoing)
        self.assertNotIn(line_port, outgoing)
        self.assertNotIn(binary_port, outgoing)

    def test_per_peer_limit_counts_clients(self) -> None:
        """--max-connections-per-peer counts each client's address, never HAProxy's."""
        haproxy, _, _ = self.deploy("--max-connections-per-peer", "1")
        served = []
        for n in range(2):
            sock = connect_from("127.0.0.2", haproxy.port)
            self.addCleanup(sock.close)
            sock.sendall(b"echo %d\n" % n)
            served.append(read_line(sock))
        # Round robin put one on each backend: each has its one from 127.0.0.2.
        self.assertEqual(served, [b"OK 0", b"OK 1"])
        third = connect_from("127.0.0.2", haproxy.port)
        self.addCleanup(third.close)
        third.sendall(b"echo 2\n")
        self.assertEqual(
            read_line(third),
            b"ERR RESOURCE_EXHAUSTED too many connections from 127.0.0.2 (limit 1)",
        )
        # Another client is served on the same backends, through the same HAProxy.
        for n in range(2):
            other = connect_from("127.0.0.3", haproxy.port)
            self.addCleanup(other.close)
            other.sendall(b"echo other\n")
            self.assertEqual(read_line(other), b"OK other", n)
        # And HAProxy's own health checks still pass on both.
        for name in ("app1", "app2"):
            self.assertEqual(haproxy.servers()[name]["check_status"], "L7OK", haproxy.log())


class ClientAddressV1Tests(ClientAddressTests):
    """Through HAProxy's PROXY version 1 header (send-proxy) the backends see the client."""

    version = "v1"


class _FakeHealth:
    """
    A backend that answers every health check with one fixed line, after
    reading the PROXY header and the check's line: what a server whose
    status is not SERVING answers.
    """

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.1)
        self.port: int = self.listener.getsockname()[1]
        #: How many checks asked ``reqresp.health``.
        self.checks = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            with sock:
                sock.settimeout(READ_TIMEOUT)
                received = b""
                try:
                    while b"reqresp.health\r\n" not in received and len(received) < 4096:
                        chunk = sock.recv(4096)
                        if not chunk:
                            break
                        received += chunk
                    if b"reqresp.health\r\n" in received:
                        self.checks += 1
                        sock.sendall(self.answer)
                except OSError:
                    pass

    def stop(self) -> None:
        """Stop answering and close the port."""
        self._stopping.set()
        self._thread.join(timeout=STOP_TIMEOUT)
        self.listener.close()


class HealthCheckTests(_Deployment):
    """HAProxy's line-format health check follows each backend's state."""

    def test_draining_backend_down_then_up(self) -> None:
        """A backend is marked DOWN while it drains after SIGTERM, and UP once restarted."""
        haproxy, app1, _ = self.deploy("--grace", "10")
        # A slow call on app1, through HAProxy, keeps its drain going.
        slow = None
        for _ in range(4):  # round robin: app1 within two connections
            sock = connect_from("127.0.0.1", haproxy.port)
            self.addCleanup(sock.close)
            sock.sendall(b"stats\n")
            answer = read_line(sock)
            if json.loads(answer.removeprefix(b"OK "))["pid"] == app1.process.pid:
                slow = sock
                break
        assert slow is not None, "no connection through HAProxy reached app1"
        slow.sendall(b"sleep 2\n")
        time.sleep(0.2)  # the call is running
        app1.process.send_signal(signal.SIGTERM)

        down = haproxy.wait_for("app1", "DOWN")
        self.assertIsNone(app1.process.poll(), "app1 exited before HAProxy marked it DOWN")
        self.assertEqual(down["chkdown"], "1")
        # The call it had accepted is answered all the same.
        self.assertEqual(read_line(slow), b"OK 2")
        self.assertIn(app1.wait_exit(), (0, -signal.SIGTERM), app1.log())
        self.assertEqual(haproxy.servers()["app2"]["status"], "UP")

        start(self, "--grace", "10", listen=LISTEN, port=app1.port)
        up = haproxy.wait_for("app1", "UP")
        self.assertEqual((up["chkdown"], haproxy.servers()["app2"]["chkdown"]), ("1", "0"))
        self.assertEqual(haproxy.history, {"app1": ["UP", "DOWN", "UP"], "app2": ["UP"]})
        print(
            f"\nHAProxy health transitions: app1 {'->'.join(haproxy.history['app1'])} "
            f"(chkdown={up['chkdown']}), app2 {'->'.join(haproxy.history['app2'])}",
            file=sys.stderr,
        )

    def test_only_serving_is_up(self) -> None:
        """A backend answering OK NOT_SERVING or OK DRAINING is DOWN; OK SERVING is UP."""
        program = haproxy_program()
        fakes = {
            "app1": _FakeHealth(b"OK NOT_SERVING\r\n"),
            "app2": _FakeHealth(b"OK DRAINING\r\n"),
        }
        for fake in fakes.values():
            self.addCleanup(fake.stop)
        directory = Path(tempfile.mkdtemp(prefix="reqresp-haproxy-"))
        self.addCleanup(shutil.rmtree, directory, True)
        stats = directory / "stats.sock"
        front = free_port()
        cfg = render_cfg(
            documented_cfg(),
            front=front,
            app1=fakes["app1"].port,
            app2=fakes["app2"].port,
            stats=stats,
        )
        haproxy = HAProxy(program, directory, cfg, front, stats)
        self.addCleanup(haproxy.stop)
        for name, fake in fakes.items():
            row = haproxy.wait_for(name, "DOWN")
            self.assertGreaterEqual(fake.checks, 1, name)
            self.assertEqual(row["check_status"], "L7RSP", (name, row))


#: The load generator: WORKERS connections through HAProxy, each making
#: one ``sleep 0.02`` call after another for DURATION seconds.  A call that
#: fails retry-safe (refused after a GOAWAY, or its connection closed
#: before the server took it) is sent again on a new connection, up to
#: ATTEMPTS times.  It prints "ready", then one JSON line with the counts.
LOAD = textwrap.dedent(
    """
    import json, sys, time
    from twisted.internet.defer import Deferred, gatherResults
    from twisted.internet.task import react
    from twisted_reqresp import ConnectionClosed, RemoteError, connect
    from twisted_reqresp.codecs import JSON

    WORKERS, ATTEMPTS = 16, 5
    outcome = {"calls": 0, "ok": 0, "retried": 0, "connect_failed": 0,
               "gave_up": 0, "lost": [], "other": []}

    async def worker(reactor, endpoint, until):
        client = None
        while time.monotonic() < until:
            outcome["calls"] += 1
            for attempt in range(ATTEMPTS):
                if client is None:
                    try:
                        client = await connect(reactor, endpoint, codec=JSON, timeout=10)
                    except Exception:
                        # HAProxy found no backend: nothing was sent.
                        outcome["connect_failed"] += 1
                        continue
                try:
                    await client.call("sleep", 0.02)
                except (RemoteError, ConnectionClosed) as e:
                    client.abort()
                    client = None
                    if not e.retry_safe:
                        outcome["lost"].append(repr(e))
                        break
                    outcome["retried"] += 1
                except Exception as e:
                    outcome["other"].append(repr(e))
                    break
                else:
                    outcome["ok"] += 1
                    break
            else:
                outcome["gave_up"] += 1
        if client is not None:
            client.abort()

    async def main(reactor, endpoint, duration):
        # Connected before "ready", so the load is steady when the test signals.
        probe = await connect(reactor, endpoint, timeout=10)
        probe.abort()
        print("ready", flush=True)
        until = time.monotonic() + float(duration)
        await gatherResults(
            [Deferred.fromCoroutine(worker(reactor, endpoint, until)) for _ in range(WORKERS)]
        )
        print(json.dumps(outcome), flush=True)

    react(lambda reactor: Deferred.fromCoroutine(main(reactor, *sys.argv[1:])))
    """
)


class StopUnderLoadTests(_Deployment):
    """SIGTERM on one backend under load, behind HAProxy, loses no call."""

    def test_no_call_lost(self) -> None:
        """Every call succeeds, at once or retried after a retry-safe refusal; none is lost."""
        haproxy, app1, app2 = self.deploy("--grace", "10")
        load = subprocess.Popen(
            [sys.executable, "-c", LOAD, f"tcp:127.0.0.1:{haproxy.port}", "3"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        self.addCleanup(kill, load)
        assert load.stdout is not None
        self.assertEqual(load.stdout.readline().strip(), "ready", haproxy.log())
        time.sleep(1.0)  # a second of steady load on both backends
        app1.process.send_signal(signal.SIGTERM)
        try:
            out, err = load.communicate(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail(f"the load generator did not finish:\n{haproxy.log()}")
        self.assertEqual(load.returncode, 0, err)
        outcome: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        report = (
            f"calls={outcome['calls']} ok={outcome['ok']} retried={outcome['retried']} "
            f"lost={len(outcome['lost'])} other={len(outcome['other'])} "
            f"gave_up={outcome['gave_up']} connect_failed={outcome['connect_failed']}"
        )
        print(f"\nHAProxy under SIGTERM: {report}", file=sys.stderr)
        self.assertEqual(outcome["lost"], [], report)
        self.assertEqual(outcome["other"], [], report)
        self.assertEqual(outcome["gave_up"], 0, report)
        self.assertEqual(outcome["ok"], outcome["calls"], report)
        self.assertGreater(outcome["ok"], 200, report)
        # The signal came mid-stream: some calls were refused retry-safe and resent.
        self.assertGreater(outcome["retried"], 0, report)
        self.assertIn(app1.wait_exit(), (0, -signal.SIGTERM), app1.log())
        self.assertNotIn("Traceback", app1.log() + app2.log())
        self.assertEqual(haproxy.wait_for("app1", "DOWN")["chkdown"], "1")
        # What came after the signal was served by app2 alone.
        for _ in range(2):
            sock = connect_from("127.0.0.1", haproxy.port)
            self.addCleanup(sock.close)
            sock.sendall(b"stats\n")
            answer = json.loads(read_line(sock).removeprefix(b"OK "))
            self.assertEqual(answer["pid"], app2.process.pid)
