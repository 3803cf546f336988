"""
``--workers``: the option, what a worker learns from its supervisor, the
adopting reactor, and the supervisor's restart and drain logic on a fake
reactor (no process is started; ``test_e2e_workers.py`` runs real ones).
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp._app import workers
from twisted_reqresp._app.tap import Options, make_supervisor
from twisted_reqresp._app.workers import (
    MAX_WORKERS,
    RESTART_INITIAL,
    RESTART_MAX,
    RESTART_RESET_AFTER,
    STOP_MARGIN,
    WORKER_ENV,
    AdoptingReactor,
    WorkerSettings,
    WorkerSupervisor,
    parse_workers,
    worker_port,
    worker_settings,
)


class _Transport:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[str] = []
        self.stdin_closed = False

    def closeStdin(self) -> None:
        self.stdin_closed = True

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)


class _SpawningReactor(MemoryReactorClock):
    """A clock that records spawnProcess calls instead of starting processes."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[Any, list[str], dict[str, str], _Transport]] = []

    def spawnProcess(self, protocol: Any, executable: str, args: list[str], **kwargs: Any) -> Any:
        transport = _Transport(1000 + len(self.spawned))
        self.spawned.append((protocol, args, kwargs["env"], transport))
        protocol.makeConnection(transport)
        return transport


def _supervisor(count: int = 2, grace: float = 5.0) -> tuple[WorkerSupervisor, _SpawningReactor]:
    reactor = _SpawningReactor()
    supervisor = WorkerSupervisor(
        count=count,
        ports=[],
        argv=["--responder", "x:y"],
        reactor=reactor,
        grace=grace,
        on_listen_error=lambda description, reason: RuntimeError(description),
    )
    return supervisor, reactor


def _killed(signal: int = 9) -> Failure:
    return Failure(ProcessTerminated(signal=signal))


class OptionTests(SynchronousTestCase):
    """--workers takes 1 to MAX_WORKERS."""

    def test_off_by_default(self) -> None:
        """Without --workers there is no supervisor."""
        self.assertIsNone(parse_workers(None))
        options = Options()
        options.parseOptions([])
        self.assertIsNone(options["workers"])

    def test_bounds(self) -> None:
        """1 and MAX_WORKERS are accepted; 0 and MAX_WORKERS + 1 are usage errors."""
        self.assertEqual(parse_workers("1"), 1)
        self.assertEqual(parse_workers(str(MAX_WORKERS)), MAX_WORKERS)
        for bad in ("0", str(MAX_WORKERS + 1), "-2"):
            error = self.assertRaises(UsageError, parse_workers, bad)
            self.assertIn(f"--workers must be 1 to {MAX_WORKERS}", str(error))

    def test_not_a_number(self) -> None:
        """A --workers that is not an integer is a usage error saying so."""
        error = self.assertRaises(UsageError, Options().parseOptions, ["--workers", "two"])
        self.assertIn("--workers must be an integer, not 'two'", str(error))

    def test_supervisor_passes_arguments(self) -> None:
        """Each worker gets the arguments as given, plus the resolved --app-dir."""
        options = Options()
        argv = ["--workers", "3", "--wire", "line", "-p", "tcp:0:interface=127.0.0.1"]
        options.parseOptions(argv)
        supervisor = make_supervisor(options, MemoryReactorClock())
        self.assertEqual(supervisor.count, 3)
        self.assertEqual(supervisor.argv, [*argv, "--app-dir", options["app_dir"]])
        self.assertEqual(supervisor.grace, options["limits"].grace)

    def test_worker_ignores_workers(self) -> None:
        """In a worker, --workers is ignored and the ports are the supervisor's."""
        settings = WorkerSettings(index=2, ports=("tcp:0",), fds=(3,))
        self.patch(workers.os, "environ", {WORKER_ENV: settings.to_env()})
        options = Options()
        options.parseOptions(["--workers", "2", "-p", "tcp:1"])
        self.assertIsNone(options["workers"])
        self.assertEqual(options["worker"], settings)
        self.assertEqual(options["ports"], ["tcp:0"])


class WorkerSettingsTests(SynchronousTestCase):
    """What a worker reads from REQRESP_WORKER."""

    def test_round_trip(self) -> None:
        """Settings written by the supervisor read back equal."""
        settings = WorkerSettings(index=1, ports=("tcp:0", "unix:inherited"), fds=(3, 4))
        self.assertEqual(worker_settings({WORKER_ENV: settings.to_env()}), settings)

    def test_not_a_worker(self) -> None:
        """Without the variable a process is not a worker."""
        self.assertIsNone(worker_settings({}))

    def test_malformed(self) -> None:
        """A malformed variable is a usage error naming it."""
        for value in ("{", '{"index": 1}', '{"index": 1, "ports": ["a"], "fds": []}'):
            error = self.assertRaises(UsageError, worker_settings, {WORKER_ENV: value})
            self.assertIn(WORKER_ENV, str(error))


class WorkerPortTests(SynchronousTestCase):
    """The endpoint string a worker parses for each port."""

    def test_unchanged(self) -> None:
        """tcp:, ssl:, unix: and haproxy: strings are parsed by the worker as given."""
        for description in ("tcp:9000", "ssl:9443:privateKey=k.pem", "haproxy:tcp:9000"):
            self.assertEqual(worker_port(description, socket.AF_INET), description)

    def test_systemd(self) -> None:
        """A systemd: port becomes a plain one of the socket's family, wrappers kept."""
        self.assertEqual(worker_port("systemd:domain=INET:index=0", socket.AF_INET), "tcp:0")
        self.assertEqual(
            worker_port("haproxy:systemd:domain=INET6:index=0", socket.AF_INET6),
            r"haproxy:tcp6:0:interface=\:\:",
        )
        self.assertEqual(
            worker_port("systemd:domain=UNIX:index=1", socket.AF_UNIX), "unix:inherited"
        )


class AdoptingReactorTests(SynchronousTestCase):
    """Every way of listening adopts the inherited socket instead."""

    def _reactor(self) -> tuple[AdoptingReactor, MemoryReactorClock, socket.socket]:
        real = MemoryReactorClock()
        listening = socket.socket(socket.AF_INET6)
        self.addCleanup(listening.close)
        return AdoptingReactor(real, listening.fileno()), real, listening

    def test_listen_methods_adopt(self) -> None:
        """listenTCP, listenUNIX and adoptStreamPort adopt the socket with its own family."""
        adopting, real, listening = self._reactor()
        factory = object()
        adopting.listenTCP(9000, factory, interface="127.0.0.1")
        adopting.listenUNIX("/nowhere", factory)
        adopting.adoptStreamPort(99, socket.AF_UNIX, factory)
        self.assertEqual(
            [(fd, family, f) for fd, family, f in real.adoptedPorts],
            [(listening.fileno(), socket.AF_INET6, factory)] * 3,
        )
        self.assertEqual(real.tcpServers, [])
        self.assertEqual(real.unixServers, [])

    def test_listen_ssl_wraps(self) -> None:
        """listenSSL adopts the socket with the factory wrapped in TLS."""
        from twisted.internet.ssl import CertificateOptions
        from twisted.protocols.tls import TLSMemoryBIOFactory

        adopting, real, _ = self._reactor()
        factory = object()
        adopting.listenSSL(9443, factory, CertificateOptions())
        [(_, _, wrapped)] = real.adoptedPorts
        self.assertIsInstance(wrapped, TLSMemoryBIOFactory)
        self.assertIs(wrapped.wrappedFactory, factory)

    def test_everything_else_is_the_reactor(self) -> None:
        """Other attributes are the real reactor's (the clock, for one)."""
        adopting, real, _ = self._reactor()
        self.assertEqual(adopting.seconds(), real.seconds())


class SupervisorTests(SynchronousTestCase):
    """The supervisor keeps N workers running and drains them on stop."""

    def test_starts_count_workers(self) -> None:
        """Starting spawns one twist process per worker, each told its index."""
        supervisor, reactor = _supervisor(count=3)
        supervisor.startService()
        self.assertEqual(len(reactor.spawned), 3)
        for index, (_, args, env, _) in enumerate(reactor.spawned, start=1):
            self.assertEqual(args[1:3], ["-m", "twisted"])
            self.assertEqual(args[-3:], ["reqresp", "--responder", "x:y"])
            settings = worker_settings(env)
            assert settings is not None
            self.assertEqual(settings.index, index)
        self.assertEqual(supervisor.worker_pids(), {1: 1000, 2: 1001, 3: 1002})

    def test_restart_backs_off(self) -> None:
        """A worker that keeps dying is restarted after 0.1, 0.2, 0.4 ... seconds, up to the cap."""
        supervisor, reactor = _supervisor(count=1)
        supervisor.startService()
        delay = RESTART_INITIAL
        for attempt in range(12):
            protocol = reactor.spawned[-1][0]
            protocol.processEnded(_killed())
            self.assertEqual(supervisor.worker_pids(), {})
            expected = min(RESTART_MAX, delay)
            reactor.advance(expected * 0.99)
            self.assertEqual(len(reactor.spawned), attempt + 1, f"attempt {attempt}")
            reactor.advance(expected * 0.02)
            self.assertEqual(len(reactor.spawned), attempt + 2, f"attempt {attempt}")
            delay *= 2
        self.assertEqual(min(RESTART_MAX, delay / 2), RESTART_MAX)

    def test_long_lived_worker_resets_backoff(self) -> None:
        """A worker that ran RESTART_RESET_AFTER seconds is restarted after the first delay."""
        supervisor, reactor = _supervisor(count=1)
        supervisor.startService()
        for _ in range(3):
            reactor.spawned[-1][0].processEnded(_killed())
            reactor.advance(RESTART_MAX)
        reactor.advance(RESTART_RESET_AFTER)
        reactor.spawned[-1][0].processEnded(Failure(ProcessDone(0)))
        before = len(reactor.spawned)
        reactor.advance(RESTART_INITIAL)
        self.assertEqual(len(reactor.spawned), before + 1)

    def test_stop_closes_stdin_and_waits(self) -> None:
        """Stopping closes each worker's stdin, sends no signal, and fires once all ended."""
        supervisor, reactor = _supervisor(count=2)
        supervisor.startService()
        stopped = supervisor.stopService()
        transports = [spawned[3] for spawned in reactor.spawned]
        self.assertEqual([t.stdin_closed for t in transports], [True, True])
        self.assertEqual([t.signals for t in transports], [[], []])
        reactor.spawned[0][0].processEnded(_killed(15))
        self.assertNoResult(stopped)
        reactor.spawned[1][0].processEnded(_killed(15))
        self.successResultOf(stopped)
        reactor.advance(RESTART_MAX)
        self.assertEqual(len(reactor.spawned), 2)
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_stop_kills_after_grace(self) -> None:
        """A worker still running STOP_MARGIN seconds after the grace gets SIGKILL."""
        supervisor, reactor = _supervisor(count=1, grace=3.0)
        supervisor.startService()
        stopped = supervisor.stopService()
        transport = reactor.spawned[0][3]
        reactor.advance(3.0 + STOP_MARGIN - 0.01)
        self.assertEqual(transport.signals, [])
        reactor.advance(0.02)
        self.assertEqual(transport.signals, ["KILL"])
        reactor.spawned[0][0].processEnded(_killed(9))
        self.successResultOf(stopped)

    def test_stop_cancels_pending_restart(self) -> None:
        """A restart waiting when the stop comes never happens."""
        supervisor, reactor = _supervisor(count=1)
        supervisor.startService()
        reactor.spawned[0][0].processEnded(_killed())
        self.successResultOf(supervisor.stopService())
        reactor.advance(RESTART_MAX)
        self.assertEqual(len(reactor.spawned), 1)

    def test_output_is_logged_by_line_and_bounded(self) -> None:
        """A worker's output is logged one event per line; an endless line is cut."""
        from twisted.logger import capturedLogs

        supervisor, reactor = _supervisor(count=1)
        supervisor.startService()
        protocol = reactor.spawned[0][0]
        with capturedLogs() as events:
            protocol.childDataReceived(1, b"2026-01-01T00:00:00+0000 [x#info] one\ntw")
            protocol.childDataReceived(1, b"o\n")
            protocol.childDataReceived(2, b"y" * (workers.MAX_LOG_LINE + 10))
        lines = [e["line"] for e in events if "line" in e]
        self.assertEqual(lines[:2], ["[x#info] one", "two"])
        self.assertEqual(len(lines), 3)
        self.assertTrue(lines[2].endswith(" [cut]"))
