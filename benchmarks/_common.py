"""
What every benchmark script shares: server processes, CPU pinning, file
descriptor limits, /proc readings and summary statistics.

Nothing here imports Twisted: the load generator (``_loadgen.py``) runs in
the same process as this module and stays a plain selectors loop.
"""

from __future__ import annotations

import math
import os
import resource
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVER_SCRIPT = HERE / "_servers.py"

#: Server kinds ``_servers.py`` knows, in the order tables show them.
#: ``binary-py`` is ``binary`` with the compiled hot path switched off
#: (:data:`PURE_PYTHON_ENV`), so one run measures both paths.
ALL_SERVERS = ("binary", "binary-py", "line", "amp", "ceiling")
#: How each kind is labelled in tables.
LABELS = {
    "binary": "ours (binary)",
    "binary-py": "ours (pure Py)",
    "line": "ours (line)",
    "amp": "AMP",
    "ceiling": "ceiling",
}

_CLK_TCK = os.sysconf("SC_CLK_TCK")

#: Set to 1, twisted_reqresp imports its pure-Python modules even where
#: compiled ones are installed.
PURE_PYTHON_ENV = "TWISTED_REQRESP_NO_EXTENSIONS"


def wire_kind(kind: str) -> str:
    """The wire (and ``_servers.py`` kind) a server kind speaks: ``binary-py`` speaks ``binary``."""
    return "binary" if kind == "binary-py" else kind


def server_env(kind: str) -> dict[str, str]:
    """
    The environment for a server process of ``kind``: this one's, with the
    checkout importable, and for ``binary-py`` the compiled path switched off
    (for every other kind, whatever this process was given, so that
    ``binary`` means the compiled path when it is installed).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.pop(PURE_PYTHON_ENV, None)
    if kind == "binary-py":
        env[PURE_PYTHON_ENV] = "1"
    return env


def hot_path(pure: bool = False) -> str:
    """
    Which hot path a ``binary`` (``pure=False``) or ``binary-py`` server runs,
    as ``twisted_reqresp`` describes it, asked in a child process with that
    server's environment.
    """
    code = (
        "import twisted_reqresp as t; "
        "print(getattr(t, 'hot_path', None) or ('compiled' if getattr(t, 'compiled', False) "
        "else 'pure Python'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=server_env("binary-py" if pure else "binary"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return out.stdout.strip() or f"unknown ({out.stderr.strip()[-200:]})"


def line_format_available() -> bool:
    """Whether ``twisted_reqresp._core.line.LineFormat`` can be imported."""
    _importable()
    try:
        from twisted_reqresp._core.line import LineFormat  # noqa: F401
    except ImportError:
        return False
    return True


def _importable() -> None:
    # Let the scripts run from a checkout without an install.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def cpus() -> tuple[int | None, int | None]:
    """
    :returns: ``(server_cpu, load_cpu)``: the first two CPUs this process
        may use, or ``(None, None)`` when there are fewer than two (then
        nothing is pinned).
    """
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    return allowed[0], allowed[1]


def pin_self(cpu: int | None) -> bool:
    """Pin this process to ``cpu``; :returns: whether it was pinned."""
    if cpu is None:
        return False
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        return False
    return True


def raise_nofile() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; :returns: the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pid: int) -> int:
    """A process's resident set size (``VmRSS`` in ``/proc/PID/status``), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a process has used (``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces: the fields start after its ')'.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used (``/proc/stat``),
    idle and I/O wait excluded."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


@dataclass
class ServerProcess:
    """
    One server started from ``_servers.py`` in its own process.

    Use as a context manager, or call :meth:`stop` in a ``finally``: the
    process is sent SIGTERM, waited for a bounded time, then killed.
    """

    kind: str
    cpu: int | None = None
    profile: str | None = None
    extra: Sequence[str] = ()
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    log_path: str = ""
    _log: Any = field(default=None, repr=False)

    def start(self, timeout: float = 30.0) -> ServerProcess:
        """Start the server and wait for it to say which port it listens on."""
        args = [
            sys.executable, str(SERVER_SCRIPT), wire_kind(self.kind), "--parent", str(os.getpid())
        ]  # fmt: skip
        if self.cpu is not None:
            args += ["--cpu", str(self.cpu)]
        if self.profile:
            args += ["--profile", self.profile]
        args += list(self.extra)
        self._log = tempfile.NamedTemporaryFile(
            prefix=f"reqresp-bench-{self.kind}-", suffix=".log", delete=False
        )
        self.log_path = self._log.name
        env = server_env(self.kind)
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL, env=env
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"{self.kind} server did not start: {self.log_tail()}")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 256)
                if not chunk:
                    continue
                line += chunk
        words = line.split()
        if len(words) != 2 or words[0] != b"PORT":
            self.stop()
            raise RuntimeError(f"{self.kind} server said {line!r}")
        self.port = int(words[1])
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 2000) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL); :returns: its exit code."""
        proc = self.proc
        code = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    code = proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    code = proc.wait(5)
            else:
                code = proc.returncode
            if proc.stdout is not None:
                proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def cleanup_log(self) -> None:
        if self.log_path:
            try:
                os.unlink(self.log_path)
            except OSError:
                pass

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if exc[0] is None:
            self.cleanup_log()


#: Seconds a ``twistd`` gets to say it listens.
TWISTD_START_TIMEOUT = 20.0


def free_port() -> int:
    """:returns: a TCP port on 127.0.0.1 that nothing listens on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class TwistdProcess:
    """
    A ``twistd -n reqresp`` on a loopback port (a free one unless given),
    logging to a temporary file; :meth:`stop` sends SIGTERM, then SIGKILL
    after 15 s.

    :param extra: more ``twistd reqresp`` options.
    :param port: the port to listen on.
    :param label: names the log file (``reqresp-LABEL-*.log``).
    """

    def __init__(self, extra: Sequence[str] = (), *, port: int | None = None, label: str) -> None:
        self.port = free_port() if port is None else port
        self.endpoint = f"tcp:127.0.0.1:{self.port}"
        self.log_file = tempfile.NamedTemporaryFile(prefix=f"reqresp-{label}-", suffix=".log")
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "twistd"),
                "-n",
                "--pidfile=",
                f"--logfile={self.log_file.name}",
                "reqresp",
                "--port",
                f"tcp:{self.port}:interface=127.0.0.1",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            cwd=tempfile.gettempdir(),
        )

    def log(self) -> str:
        """:returns: what twistd logged so far."""
        return Path(self.log_file.name).read_text(errors="replace")

    def starts(self) -> int:
        """:returns: how many processes said they listen on the port (workers each say so)."""
        return self.log().count(f" starting on {self.port}")

    def wait_ready(self, starts: int = 1) -> None:
        """
        Wait until ``starts`` processes listen.

        :raises SystemExit: if twistd exits first or is not ready in time.
        """
        deadline = time.monotonic() + TWISTD_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"twistd exited {self.process.returncode}:\n{self.log()}")
            if self.starts() >= starts:
                return
            time.sleep(0.05)
        raise SystemExit(f"twistd not ready in {TWISTD_START_TIMEOUT} s:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s; closes the log."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()


def stop_all(servers: Sequence[ServerProcess]) -> None:
    """Stop every server, each within a bounded time, whatever fails."""
    for server in servers:
        try:
            server.stop()
        except Exception as e:  # keep stopping the others
            print(f"warning: stopping {server.kind}: {e}", file=sys.stderr)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0-1) of already sorted values, nearest rank."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements."""
    if not values:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan")}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def fmt_num(value: float, digits: int = 0) -> str:
    if value != value:  # NaN
        return "-"
    return f"{value:,.{digits}f}"


def fmt_spread(s: dict[str, float], digits: int = 0, scale: float = 1.0) -> str:
    """``median [min-max]``."""
    return (
        f"{fmt_num(s['median'] * scale, digits)} "
        f"[{fmt_num(s['min'] * scale, digits)}-{fmt_num(s['max'] * scale, digits)}]"
    )


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """Plain text table, columns left-aligned except numbers right-aligned."""
    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = [
        "  ".join(h.ljust(widths[i]) for i, h in enumerate(header)),
        "  ".join("-" * w for w in widths),
    ]
    for row in rows:
        cells = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    import platform

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus_allowed": sorted(os.sched_getaffinity(0)),
        "loadavg_at_start": os.getloadavg(),
    }
    try:
        import twisted

        info["twisted"] = twisted.__version__
    except ImportError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info
