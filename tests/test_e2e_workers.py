"""
End to end: ``twistd -n reqresp --workers N``.  A supervising process owns
the listening socket and N worker processes accept on it; connections to the
one port are answered by more than one process, a killed worker is started
again, and SIGTERM under load drains every worker losing no accepted call.

Every wait is bounded and every process is killed at cleanup (``e2e.py``;
the workers also stop when the supervisor is killed, since their standard
input, a pipe from it, then ends).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import textwrap
import time

from e2e import (
    START_TIMEOUT,
    STOP_TIMEOUT,
    Certificates,
    ReactorMixin,
    Server,
    run_script,
    start,
)
from test_e2e_drain import sigterm_under_load
from twisted.trial.unittest import SynchronousTestCase

#: Opens connections (kept open, so each is a new accept) and asks each
#: ``stats`` which process answered, until WANT distinct pids answered or
#: 200 connections were made; prints the sorted pids.
PIDS = textwrap.dedent(
    """
    import json, sys
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react
    from twisted_reqresp import connect
    from twisted_reqresp.codecs import JSON

    async def main(reactor, endpoint, want):
        pids, clients = set(), []
        for _ in range(200):
            client = await connect(reactor, endpoint, codec=JSON, timeout=10)
            clients.append(client)
            pids.add((await client.call("stats")).body["pid"])
            if len(pids) >= int(want):
                break
        for client in clients:
            client.abort()
        print(json.dumps(sorted(pids)))

    react(lambda reactor: Deferred.fromCoroutine(main(reactor, *sys.argv[1:])))
    """
)

_STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")


def start_workers(test: SynchronousTestCase, count: int, *args: str, **kwargs: object) -> Server:
    """
    Start ``twistd -n reqresp --workers COUNT`` and wait until every worker
    listens (each logs Twisted's "starting on PORT", as the supervisor does).
    """
    server = start(test, "--workers", str(count), *args, **kwargs)  # type: ignore[arg-type]
    server.wait_for_lines(f" starting on {server.port}", count + 1, timeout=START_TIMEOUT)
    return server


def worker_pids(server: Server) -> dict[int, int]:
    """:returns: the latest pid of each worker index, from the supervisor's log."""
    return {int(index): int(pid) for index, pid in _STARTED.findall(server.log())}


def served_by_each(
    test: SynchronousTestCase, server: Server, workers: dict[int, int], endpoint: str = ""
) -> None:
    """
    Check that every worker accepts from the shared socket: with all the
    other workers stopped (SIGSTOP), a new connection must be served by the
    one left.  Which worker wins an accept race is the kernel's and
    Twisted's business (a worker accepts up to 100 connections a wakeup),
    so merely counting pids over many connections would be luck.
    """
    pids = sorted(workers.values())
    for pid in pids:
        others = [other for other in pids if other != pid]
        for other in others:
            os.kill(other, signal.SIGSTOP)
        try:
            served = run_script(PIDS, endpoint or server.endpoint, "1")
        finally:
            for other in others:
                os.kill(other, signal.SIGCONT)
        test.assertEqual(served, [pid], server.log())


class WorkersTests(ReactorMixin, SynchronousTestCase):
    """N worker processes serve one port, and the supervisor keeps N running."""

    def test_every_worker_answers(self) -> None:
        """Connections to the one port are answered by both workers, not the supervisor."""
        server = start_workers(self, 2, reactor=self.reactor)
        workers = worker_pids(server)
        self.assertEqual(sorted(workers), [1, 2], server.log())
        self.assertNotIn(server.process.pid, workers.values())
        served_by_each(self, server, workers)

    def test_killed_worker_is_restarted(self) -> None:
        """A worker killed with SIGKILL is started again, and the port keeps answering."""
        server = start_workers(self, 2, reactor=self.reactor)
        before = worker_pids(server)
        os.kill(before[1], signal.SIGKILL)
        server.wait_for_log(
            f"worker 1 (pid {before[1]}) ended by signal 9 (SIGKILL); restarting in"
        )
        server.wait_for_lines(f" starting on {server.port}", 4, timeout=START_TIMEOUT)
        after = worker_pids(server)
        self.assertNotEqual(after[1], before[1])
        self.assertEqual(after[2], before[2])
        served_by_each(self, server, after)

    def test_sigterm_under_load_loses_no_accepted_call(self) -> None:
        """SIGTERM to the supervisor drains every worker: each accepted call is answered."""
        server = start_workers(self, 2, "--grace", "10", reactor=self.reactor)
        workers = worker_pids(server)
        sigterm_under_load(self, server)
        log = server.log()
        for index, pid in workers.items():
            self.assertIn(f"worker {index} (pid {pid}) exited with status 0", log)
        self.assertNotIn("restarting in", log)
        for pid in workers.values():
            self.assertFalse(_alive(pid), f"worker {pid} still runs:\n{log}")

    def test_tls_port(self) -> None:
        """An ssl: port is served over TLS by every worker (each wraps the shared socket)."""
        certificates = Certificates()
        self.addCleanup(certificates.remove)
        server = start_workers(self, 2, listen=certificates.listen(), reactor=self.reactor)
        endpoint = certificates.client_endpoint(server.port)
        served_by_each(self, server, worker_pids(server), endpoint)

    def test_ctrl_c_to_the_process_group(self) -> None:
        """SIGINT to the supervisor and every worker at once (Ctrl-C) stops all cleanly."""
        server = start_workers(self, 2, reactor=self.reactor)
        workers = worker_pids(server)
        for pid in (server.process.pid, *workers.values()):
            os.kill(pid, signal.SIGINT)
        self.assertIn(server.wait_exit(), (0, -signal.SIGINT), server.log())
        log = server.log()
        self.assertNotIn("Traceback", log)
        for index, pid in workers.items():
            self.assertIn(f"worker {index} (pid {pid}) exited with status 0", log)

    def test_workers_stop_when_the_supervisor_is_killed(self) -> None:
        """A supervisor killed with SIGKILL leaves no worker running (their stdin pipe ends)."""
        server = start_workers(self, 2, reactor=self.reactor)
        workers = worker_pids(server)
        server.process.kill()
        server.process.wait(timeout=STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(_alive(pid) for pid in workers.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual([pid for pid in workers.values() if _alive(pid)], [], server.log())


class WorkersAsyncioTests(WorkersTests):
    """N worker processes serve one port, on the asyncio reactor."""

    reactor = "asyncio"


def _alive(pid: int) -> bool:
    """:returns: whether a process with this pid exists (and is not a zombie of ours)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A worker is the supervisor's child, not ours: once the supervisor is
    # gone it is reaped by init, so a zombie does not linger here.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


#: Plays systemd's part in socket activation (sd_listen_fds(3)): moves the
#: listening socket given by number to descriptor 3, sets LISTEN_FDS and
#: LISTEN_PID (this process's pid, which exec keeps), and execs the command.
SYSTEMD = textwrap.dedent(
    """
    import os, sys
    fd = int(sys.argv[1])
    if fd != 3:
        os.dup2(fd, 3)
        os.close(fd)
    os.environ["LISTEN_FDS"] = "1"
    os.environ["LISTEN_FDNAMES"] = "reqresp"
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.execv(sys.argv[2], sys.argv[2:])
    """
)


class SystemdActivationTests(ReactorMixin, SynchronousTestCase):
    """
    The systemd socket-activation recipe of docs/twistd.md, with this test in
    systemd's place: it binds the socket, and twistd adopts it as descriptor 3.
    """

    def _activated(self, *args: str) -> Server:
        listening = socket.socket()
        self.addCleanup(listening.close)
        listening.bind(("127.0.0.1", 0))
        listening.listen(128)
        fd = listening.fileno()
        server = Server(
            *args,
            listen="systemd:domain=INET:index=0",
            port=listening.getsockname()[1],
            launcher=[sys.executable, "-c", SYSTEMD, str(fd)],
            pass_fds=[fd],
            reactor=self.reactor,
        )
        self.addCleanup(server.stop)
        server.wait_ready()
        # The socket is twistd's now: this process's copy is not needed.
        listening.close()
        return server

    def test_socket_activation(self) -> None:
        """twistd serves the socket systemd passed it, and drains on SIGTERM."""
        server = self._activated()
        self.assertEqual(run_script(PIDS, server.endpoint, "1"), [server.process.pid])
        server.process.send_signal(signal.SIGTERM)
        self.assertIn(server.wait_exit(), (0, -signal.SIGTERM), server.log())
        self.assertNotIn("Traceback", server.log())

    def test_socket_activation_with_workers(self) -> None:
        """--workers hands the socket systemd passed to every worker."""
        server = self._activated("--workers", "2")
        server.wait_for_lines(f" starting on {server.port}", 3, timeout=START_TIMEOUT)
        served_by_each(self, server, worker_pids(server))
        server.process.send_signal(signal.SIGTERM)
        self.assertIn(server.wait_exit(), (0, -signal.SIGTERM), server.log())
        self.assertNotIn("Traceback", server.log())


class SystemdActivationAsyncioTests(SystemdActivationTests):
    """The systemd socket-activation recipe, on the asyncio reactor."""

    reactor = "asyncio"
