"""
``--workers N``: N worker processes serving the same listening sockets.

Theory of operation
-------------------

The process twistd starts becomes a *supervisor*.  It listens on every
``--port`` itself (any Twisted endpoint string: ``tcp:``, ``ssl:``,
``unix:``, ``haproxy:``, ``systemd:``), never accepts on those sockets, and
starts N worker processes (``python -m twisted reqresp ...``, that is
``twist``, with the supervisor's own ``reqresp`` arguments), each inheriting
the listening sockets as file descriptors 3, 4, ...  A worker parses the same
``--port`` strings, so TLS contexts and PROXY-protocol wrapping are built as
usual, but listens through :class:`AdoptingReactor`, which turns
``listenTCP``/``listenSSL``/``listenUNIX``/``adoptStreamPort`` into
``adoptStreamPort`` of the inherited socket (Twisted's ``systemd:`` endpoint
does the same with sockets from systemd).  All workers accept from the one
kernel queue of each socket.

Why a shared socket and not ``SO_REUSEPORT`` (each worker binding its own
socket, the kernel spreading connections): with ``SO_REUSEPORT`` each socket
has its own accept queue, and the connections queued on a worker that stops
(drains, crashes) are reset, so a restart or a drain loses accepted-by-the-
kernel connections; here the queue outlives any worker, because the
supervisor holds the socket.  The shared socket also works on every POSIX
system (``SO_REUSEPORT`` balances only on Linux and FreeBSD) and with every
endpoint type, ``unix:`` and ``systemd:`` included, which ``SO_REUSEPORT``
cannot serve.  gunicorn and nginx work the same way.

The supervisor starts a worker again when it exits while the server runs,
after a delay that doubles with each quick exit (:data:`RESTART_INITIAL` up
to :data:`RESTART_MAX`; a worker that ran :data:`RESTART_RESET_AFTER`
seconds starts the count again).  On SIGTERM (or SIGINT) it tells every
worker to stop, each of which drains as a single server does (GOAWAY,
finish the accepted requests within ``--grace``), waits for them, kills any
still running :data:`STOP_MARGIN` seconds after the grace, and only then
closes the listening sockets.

A worker's standard input is a pipe from the supervisor, and its end is
the worker's signal to drain and exit: the supervisor closes it to stop the
workers, and the kernel closes it when the supervisor dies (even by
SIGKILL), so workers never outlive their supervisor.  Workers ignore
SIGINT (Ctrl-C signals the whole process group; the supervisor decides).
A worker's output is logged by the supervisor, one event per line,
prefixed ``worker N (pid P):``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.usage import UsageError

__all__ = [
    "WORKER_ENV",
    "AdoptingReactor",
    "StdinWatch",
    "WorkerSettings",
    "WorkerSupervisor",
    "ignore_interrupts",
    "parse_workers",
    "worker_port",
    "worker_settings",
]

_log = Logger(namespace="twisted_reqresp.workers")

#: The environment variable that makes a ``reqresp`` process a worker: JSON
#: ``{"index": N, "ports": [...], "fds": [...]}``, set by the supervisor
#: only (like systemd's ``LISTEN_FDS``, it describes inherited sockets).
WORKER_ENV = "REQRESP_WORKER"

#: Seconds before the first restart of a worker that exited: short, so one
#: crash costs little capacity.
RESTART_INITIAL = 0.1
#: Each quick exit in a row multiplies the delay by this.
RESTART_FACTOR = 2.0
#: The longest delay: a worker that cannot start (a database down, a bad
#: deploy) is retried twice a minute rather than in a busy loop.
RESTART_MAX = 30.0
#: Seconds a worker must have run for its next exit to count as the first.
RESTART_RESET_AFTER = 10.0
#: Seconds past ``--grace`` the supervisor waits for draining workers before
#: it kills them: time for a worker to close its connections and exit.
STOP_MARGIN = 5.0
#: The longest line of a worker's output kept whole; longer ones are cut,
#: so a worker printing without newlines cannot grow the supervisor.
MAX_LOG_LINE = 64 * 1024
#: The most workers: far more than any machine has cores, small enough that
#: a typo does not fork a thousand processes.
MAX_WORKERS = 256

#: The first inherited descriptor, as with systemd (0-2 are stdio).
FIRST_FD = 3

# twist's text log lines start with a timestamp; the supervisor's logger
# adds its own.
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+[+-]\d{4} ")


def parse_workers(text: str | None) -> int | None:
    """
    Check ``--workers``.

    :param text: the option's value, or ``None`` if not given.
    :returns: the number of workers, or ``None`` for no supervisor.
    :raises UsageError: unless it is an integer from 1 to :data:`MAX_WORKERS`.
    """
    if text is None:
        return None
    try:
        count = int(text)
    except ValueError:
        raise UsageError(f"--workers must be an integer, not {text!r}") from None
    if not 1 <= count <= MAX_WORKERS:
        raise UsageError(f"--workers must be 1 to {MAX_WORKERS}, not {text!r}")
    return count


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    """What a worker learns from its supervisor (:data:`WORKER_ENV`)."""

    #: Which worker this is, from 1.
    index: int
    #: The endpoint strings to listen on, one per inherited socket.
    ports: tuple[str, ...]
    #: The inherited listening sockets, in the order of :attr:`ports`.
    fds: tuple[int, ...]

    def to_env(self) -> str:
        """:returns: the value of :data:`WORKER_ENV` for this worker."""
        return json.dumps({"index": self.index, "ports": self.ports, "fds": self.fds})


def worker_settings(environ: dict[str, str] | None = None) -> WorkerSettings | None:
    """
    :param environ: the environment (``os.environ`` by default).
    :returns: this process's settings if it is a worker, else ``None``.
    :raises UsageError: if :data:`WORKER_ENV` is set but malformed.
    """
    value = (os.environ if environ is None else environ).get(WORKER_ENV)
    if value is None:
        return None
    try:
        data = json.loads(value)
        settings = WorkerSettings(
            index=int(data["index"]),
            ports=tuple(str(port) for port in data["ports"]),
            fds=tuple(int(fd) for fd in data["fds"]),
        )
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{WORKER_ENV} is malformed ({e}): {value!r}") from e
    if len(settings.ports) != len(settings.fds):
        raise UsageError(f"{WORKER_ENV} names {len(settings.ports)} ports but passes fds")
    return settings


def worker_port(description: str, family: int) -> str:
    """
    The endpoint string a worker parses for one of the supervisor's ports.

    Most are passed unchanged: the worker parses them for their wrapping
    (TLS, PROXY protocol) and :class:`AdoptingReactor` swaps the listen for
    an adoption.  A ``systemd:`` endpoint cannot be parsed in a worker (its
    descriptors are announced to the supervisor's pid only), so it becomes
    a plain endpoint of the socket's family, whose listen is swapped the
    same way.

    :param description: the ``--port`` string.
    :param family: the listening socket's address family.
    :returns: the string for the worker.
    """
    wrappers = ""
    rest = description
    while rest.startswith("haproxy:"):
        wrappers += "haproxy:"
        rest = rest[len("haproxy:") :]
    if not rest.startswith("systemd:"):
        return description
    if family == socket.AF_UNIX:
        plain = "unix:inherited"
    elif family == socket.AF_INET6:
        plain = r"tcp6:0:interface=\:\:"
    else:
        plain = "tcp:0"
    return wrappers + plain


class AdoptingReactor:
    """
    A reactor whose listening methods adopt one inherited listening socket
    instead of binding a new one; everything else is the real reactor's.

    Endpoints only call the reactor's ``listen*`` method with their own
    arguments, so wrapping endpoints (``haproxy:``) and TLS (``ssl:``,
    wrapped here as :meth:`~twisted.internet.posixbase.PosixReactorBase.listenSSL`
    does) work unchanged on the adopted socket.

    :param reactor: the real reactor.
    :param fd: the inherited listening socket.
    """

    def __init__(self, reactor: Any, fd: int) -> None:
        self._reactor = reactor
        self._fd = fd

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def _adopt(self, factory: Any) -> IListeningPort:
        # The family is the socket's own: a socket object made from the
        # descriptor reads it (getsockname), and detach leaves it open.
        probe = socket.socket(fileno=self._fd)
        try:
            family = probe.family
        finally:
            probe.detach()
        port: IListeningPort = self._reactor.adoptStreamPort(self._fd, family, factory)
        return port

    def listenTCP(
        self, port: int, factory: Any, backlog: int = 50, interface: str = ""
    ) -> IListeningPort:
        """:returns: the inherited socket, listening for ``factory``."""
        return self._adopt(factory)

    def listenSSL(
        self,
        port: int,
        factory: Any,
        contextFactory: Any,
        backlog: int = 50,
        interface: str = "",
    ) -> IListeningPort:
        """:returns: the inherited socket, listening for ``factory`` over TLS."""
        from twisted.protocols.tls import TLSMemoryBIOFactory

        return self._adopt(TLSMemoryBIOFactory(contextFactory, False, factory))

    def listenUNIX(
        self, address: str, factory: Any, backlog: int = 50, mode: int = 0o666, wantPID: int = 0
    ) -> IListeningPort:
        """:returns: the inherited socket, listening for ``factory``."""
        return self._adopt(factory)

    def adoptStreamPort(
        self,
        fileDescriptor: int,
        addressFamily: int,
        factory: Any,
    ) -> IListeningPort:
        """:returns: the inherited socket, listening for ``factory``."""
        return self._adopt(factory)


class StdinWatch(Service):
    """
    Stops the reactor (which drains the worker) when standard input ends:
    the supervisor holds the other end of that pipe, so its death, even by
    SIGKILL, ends every worker.

    :param reactor: the reactor to watch with and stop.
    :param fd: the descriptor to watch (standard input).
    """

    def __init__(self, reactor: Any, fd: int = 0) -> None:
        self._reactor = reactor
        self._fd = fd

    def fileno(self) -> int:
        """:returns: the watched descriptor (for the reactor)."""
        return self._fd

    def logPrefix(self) -> str:
        """:returns: what Twisted's logs call this reader."""
        return "StdinWatch"

    def doRead(self) -> Exception | None:
        """Read and ignore what comes; at the end, stop the reactor."""
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return None
        except OSError as e:
            return e
        if data:
            return None
        return EOFError("the supervisor closed the worker's standard input")

    def connectionLost(self, reason: Failure) -> None:
        """Stop the reactor: the supervisor is gone."""
        self._reactor.removeReader(self)
        if self.running:
            _log.info("reqresp worker: the supervisor is gone; stopping")
            self._reactor.stop()

    def startService(self) -> None:
        """Start watching."""
        super().startService()  # type: ignore[no-untyped-call]
        os.set_blocking(self._fd, False)
        self._reactor.addReader(self)

    def stopService(self) -> None:
        """Stop watching."""
        super().stopService()  # type: ignore[no-untyped-call]
        self._reactor.removeReader(self)


class _Held(Factory):
    """The supervisor's factory: it never accepts (it does not read its
    sockets), and would refuse a connection if it ever did."""

    def buildProtocol(self, addr: Any) -> Protocol | None:
        return None


@dataclass
class _Worker:
    """One worker slot."""

    index: int
    protocol: _WorkerProtocol | None = None
    pid: int | None = None
    started: float = 0.0
    quick_exits: int = 0
    restart: IDelayedCall | None = None


class _WorkerProtocol(ProcessProtocol):
    """Logs a worker's output and tells the supervisor when it ends."""

    def __init__(self, supervisor: WorkerSupervisor, worker: _Worker) -> None:
        self._supervisor = supervisor
        self._worker = worker
        self._partial: dict[int, bytes] = {}

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        buffered = self._partial.get(childFD, b"") + data
        *lines, rest = buffered.split(b"\n")
        if len(rest) > MAX_LOG_LINE:
            lines.append(rest[:MAX_LOG_LINE] + b" [cut]")
            rest = b""
        self._partial[childFD] = rest
        for line in lines:
            self._emit(line)

    def _emit(self, line: bytes) -> None:
        text = _TIMESTAMP.sub("", line.decode("utf-8", "replace").rstrip())
        if text:
            _log.info(
                "worker {index} (pid {pid}): {line}",
                index=self._worker.index,
                pid=self._worker.pid,
                line=text,
            )

    def processEnded(self, reason: Failure) -> None:
        for rest in self._partial.values():
            self._emit(rest)
        self._partial.clear()
        self._supervisor._ended(self._worker, reason)


def _describe_end(reason: Failure) -> str:
    value = reason.value
    if isinstance(value, ProcessTerminated):
        if value.signal is not None:
            # twist ends a process stopped by a signal with that signal, as
            # twistd does, so a drained worker ends "by signal 15 (SIGTERM)".
            try:
                name = signal.Signals(value.signal).name
            except ValueError:
                name = "unknown"
            return f"ended by signal {value.signal} ({name})"
        return f"exited with status {value.exitCode}"
    return "exited with status 0"


def _reactor_name(reactor: Any) -> str | None:
    """:returns: the ``--reactor`` name of the running reactor's kind, if it has one."""
    from twisted.application.reactors import getReactorTypes

    module = type(reactor).__module__
    for kind in getReactorTypes():
        if getattr(kind, "moduleName", None) == module:
            return str(kind.shortName)
    return None


class WorkerSupervisor(Service):
    """
    The service ``--workers N`` runs instead of the server: it listens,
    keeps N workers running, and drains them when stopped (see the module
    docstring).

    :param count: how many workers.
    :param ports: the ``--port`` endpoint strings.
    :param argv: the ``reqresp`` arguments each worker gets.
    :param reactor: listens, spawns the workers and times the restarts.
    :param grace: the servers' ``--grace``, in seconds.
    :param on_listen_error: turns a port that cannot be listened on into
        the exception to raise (see :class:`~twisted_reqresp._app.tap.ReqRespService`).
    :param executable: the Python that runs the workers.
    """

    def __init__(
        self,
        *,
        count: int,
        ports: Sequence[str],
        argv: Sequence[str],
        reactor: Any,
        grace: float,
        on_listen_error: Callable[[str, Exception], BaseException],
        executable: str = sys.executable,
    ) -> None:
        self.count = count
        self.ports = list(ports)
        self.argv = list(argv)
        self.grace = grace
        self._reactor = reactor
        self._on_listen_error = on_listen_error
        self._executable = executable
        # The ports' sockets (tcp.Port, unix.Port), held and never read.
        self._listening: list[Any] = []
        self._workers = [_Worker(index) for index in range(1, count + 1)]
        self._stopping = False
        self._all_ended: Deferred[None] | None = None

    def worker_pids(self) -> dict[int, int]:
        """:returns: the pid of each running worker, by index."""
        return {w.index: w.pid for w in self._workers if w.pid is not None}

    def privilegedStartService(self) -> None:
        """Listen on every port (twistd does this before it drops privileges)."""
        super().privilegedStartService()  # type: ignore[no-untyped-call]
        self._listen()

    def startService(self) -> None:
        """Listen if not yet done (``twist``), then start every worker."""
        self._listen()
        super().startService()  # type: ignore[no-untyped-call]
        _log.info(
            "reqresp: supervising {count} worker(s) on {ports}",
            count=self.count,
            ports=", ".join(self.ports),
        )
        for worker in self._workers:
            self._spawn(worker)

    def _listen(self) -> None:
        if self._listening:
            return
        for description in self.ports:
            outcome: list[Any] = []
            endpoint = serverFromString(self._reactor, description)
            endpoint.listen(_Held()).addBoth(outcome.append)
            if not outcome or isinstance(outcome[0], Failure):
                reason = outcome[0].value if outcome else RuntimeError("did not listen at once")
                for port in self._listening:
                    port.stopListening()
                self._listening = []
                raise self._on_listen_error(description, reason)
            port = outcome[0]
            if not hasattr(port, "fileno") or not hasattr(port, "stopReading"):
                raise self._on_listen_error(
                    description, TypeError("its port has no socket to hand to workers")
                )
            # The supervisor holds the socket and never accepts on it.
            port.stopReading()
            self._listening.append(port)

    def _worker_env(self, worker: _Worker) -> dict[str, str]:
        fds = tuple(range(FIRST_FD, FIRST_FD + len(self._listening)))
        ports = tuple(
            worker_port(description, _family(port.fileno()))
            for description, port in zip(self.ports, self._listening, strict=True)
        )
        env = dict(os.environ)
        env[WORKER_ENV] = WorkerSettings(index=worker.index, ports=ports, fds=fds).to_env()
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _spawn(self, worker: _Worker) -> None:
        worker.restart = None
        name = _reactor_name(self._reactor)
        args = [
            self._executable,
            "-m",
            "twisted",
            *([f"--reactor={name}"] if name else []),
            "--log-format=text",
            "--log-file=-",
            "reqresp",
            *self.argv,
        ]
        child_fds: dict[int, int | str] = {0: "w", 1: "r", 2: "r"}
        for offset, port in enumerate(self._listening):
            child_fds[FIRST_FD + offset] = port.fileno()
        protocol = _WorkerProtocol(self, worker)
        worker.started = self._reactor.seconds()
        try:
            transport = self._reactor.spawnProcess(
                protocol,
                self._executable,
                args,
                env=self._worker_env(worker),
                path=os.getcwd(),
                childFDs=child_fds,
            )
        except Exception as e:
            _log.error("reqresp: cannot start worker {index}: {error}", index=worker.index, error=e)
            self._schedule_restart(worker)
            return
        worker.protocol = protocol
        worker.pid = transport.pid
        _log.info("reqresp: worker {index} started (pid {pid})", index=worker.index, pid=worker.pid)

    def _ended(self, worker: _Worker, reason: Failure) -> None:
        pid, worker.pid, worker.protocol = worker.pid, None, None
        how = _describe_end(reason)
        if self._stopping:
            _log.info(
                "reqresp: worker {index} (pid {pid}) {how}", index=worker.index, pid=pid, how=how
            )
            if self._all_ended is not None and not any(w.pid for w in self._workers):
                ended, self._all_ended = self._all_ended, None
                ended.callback(None)
            return
        if self._reactor.seconds() - worker.started >= RESTART_RESET_AFTER:
            worker.quick_exits = 0
        delay = self._schedule_restart(worker)
        _log.warn(
            "reqresp: worker {index} (pid {pid}) {how}; restarting in {delay:g} s",
            index=worker.index,
            pid=pid,
            how=how,
            delay=delay,
        )

    def _schedule_restart(self, worker: _Worker) -> float:
        delay = min(RESTART_MAX, RESTART_INITIAL * RESTART_FACTOR**worker.quick_exits)
        worker.quick_exits += 1
        worker.restart = self._reactor.callLater(delay, self._spawn, worker)
        return delay

    def stopService(self) -> Deferred[None]:
        """
        Drain: tell every worker to stop, wait for all (killing any still
        running :data:`STOP_MARGIN` seconds after the grace), then close the
        sockets.

        The workers are told by closing their standard input
        (:class:`StdinWatch`), not by a signal: a worker may get SIGTERM or
        SIGINT from elsewhere too (Ctrl-C signals the terminal's whole
        process group; systemd signals the whole unit unless
        ``KillMode=mixed``), and a second signal makes Twisted log a
        ``ReactorNotRunning`` traceback, while the end of the pipe, once the
        worker is already stopping, is ignored.

        :returns: a Deferred that fires once every worker has ended.
        """
        super().stopService()  # type: ignore[no-untyped-call]
        self._stopping = True
        for worker in self._workers:
            if worker.restart is not None and worker.restart.active():
                worker.restart.cancel()
            worker.restart = None
        running = [w for w in self._workers if w.pid is not None]
        _log.info(
            "reqresp: stopping {count} worker(s), grace {grace:g} s",
            count=len(running),
            grace=self.grace,
        )
        ended: Deferred[None]
        if running:
            ended = self._all_ended = Deferred()
            for worker in running:
                self._close_stdin(worker)
            killer = self._reactor.callLater(self.grace + STOP_MARGIN, self._kill_all)
            ended.addBoth(_cancel_then_pass, killer)
        else:
            ended = succeed(None)

        def close(_: object) -> None:
            for port in self._listening:
                port.stopListening()
            self._listening = []

        return ended.addCallback(close)

    def _kill_all(self) -> None:
        for worker in self._workers:
            if worker.pid is not None:
                _log.warn(
                    "reqresp: worker {index} (pid {pid}) still running after the grace; killing it",
                    index=worker.index,
                    pid=worker.pid,
                )
                self._signal(worker, "KILL")

    def _close_stdin(self, worker: _Worker) -> None:
        protocol = worker.protocol
        if protocol is not None and protocol.transport is not None:
            protocol.transport.closeStdin()

    def _signal(self, worker: _Worker, name: str) -> None:
        protocol = worker.protocol
        if protocol is None or protocol.transport is None:
            return
        try:
            protocol.transport.signalProcess(name)
        except ProcessExitedAlready:
            pass


def ignore_interrupts() -> None:
    """
    Make a worker ignore SIGINT, before its reactor starts (Twisted then
    leaves SIGINT alone).  Ctrl-C in a terminal signals the supervisor and
    every worker alike; the supervisor alone decides, and drains the
    workers in order.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _cancel_then_pass(result: object, call: IDelayedCall) -> object:
    if call.active():
        call.cancel()
    return result


def _family(fd: int) -> int:
    probe = socket.socket(fileno=fd)
    try:
        return int(probe.family)
    finally:
        probe.detach()
