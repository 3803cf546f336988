"""
The compiled load generator (``loadgen.c``), built on demand and run as a
process of its own.

``_loadgen.py`` runs in the harness's Python: its cost per request (a few
microseconds) is small beside our server's, but not beside the ceiling's,
and a Python generator's latency includes its own interpreter.  The C one
speaks the same four protocols with the same bytes, at about a microsecond
of CPU per request, mostly in the kernel, so that the server is what limits
the rate and the table can show it.

The binary is compiled once per source, compiler and flags with ``cc -O2``
(or ``$CC``, ``gcc``, ``clang``) into a cache directory
(``$REQRESP_LOADGEN_CACHE``, else ``$XDG_CACHE_HOME/twisted-reqresp``, else
``~/.cache/twisted-reqresp``); without a compiler, :func:`build` raises
:class:`CompilerMissing` saying what to install.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from _loadgen import ProtocolFailure

SOURCE = Path(__file__).resolve().parent / "loadgen.c"
#: The flags every build uses: C99, optimised, warnings on (not errors: a
#: newer compiler's new warning must not stop a benchmark).
FLAGS = ("-O2", "-std=c99", "-Wall", "-Wextra")


class CompilerMissing(RuntimeError):
    """No C compiler: the C generator cannot be built on this machine."""


class BuildFailed(RuntimeError):
    """The compiler refused ``loadgen.c``; the message holds its output."""


def find_compiler() -> str | None:
    """
    :returns: the C compiler to use: ``$CC`` if set and found, else the
        first of ``cc``, ``gcc`` and ``clang`` on ``PATH``; None if none is.
    """
    names = [os.environ["CC"]] if os.environ.get("CC") else []
    names += ["cc", "gcc", "clang"]
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def cache_dir() -> Path:
    """:returns: where built generators are kept (created if need be)."""
    configured = os.environ.get("REQRESP_LOADGEN_CACHE")
    if configured:
        base = Path(configured)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "twisted-reqresp"
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError:
        # A read-only home (some CI sandboxes): a private temporary one.
        base = Path(tempfile.gettempdir()) / f"twisted-reqresp-{os.getuid()}"
        base.mkdir(mode=0o700, exist_ok=True)
    return base


def build(
    compiler: str | None = None,
    directory: Path | None = None,
    extra_flags: tuple[str, ...] = (),
) -> Path:
    """
    Compile ``loadgen.c`` unless this source was already built with this
    compiler and these flags.

    :param compiler: the compiler; :func:`find_compiler`'s by default.
    :param directory: where to put the binary; :func:`cache_dir` by default.
    :param extra_flags: more compiler flags (the tests add ``-Werror``).
    :returns: the executable.
    :raises CompilerMissing: if there is no C compiler.
    :raises BuildFailed: if compilation fails.
    """
    cc = compiler or find_compiler()
    if cc is None:
        raise CompilerMissing(
            "no C compiler found (looked for $CC, cc, gcc, clang) to build "
            f"{SOURCE.name}: install one (Debian: apt-get install build-essential) "
            "or use the Python generator (--loadgen python)"
        )
    flags = (*FLAGS, *extra_flags)
    source = SOURCE.read_bytes()
    key = hashlib.sha256(
        b"\0".join([source, cc.encode(), " ".join(flags).encode(), platform.machine().encode()])
    ).hexdigest()[:16]
    where = directory if directory is not None else cache_dir()
    target = where / f"loadgen-{key}"
    if target.exists():
        return target
    # Build under a private name and rename: two harnesses building at once
    # never run a half-written binary.
    partial = where / f".loadgen-{key}-{os.getpid()}"
    try:
        done = subprocess.run(
            [cc, *flags, "-o", str(partial), str(SOURCE)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except FileNotFoundError as e:
        raise CompilerMissing(f"the C compiler {cc!r} could not be run: {e}") from e
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BuildFailed(
            f"{cc} failed to build {SOURCE} (exit {done.returncode}):\n{done.stderr.strip()}"
        )
    os.replace(partial, target)
    return target


def compiler_version(cc: str | None = None) -> str:
    """:returns: the first line of ``cc --version``, for the report."""
    cc = cc or find_compiler()
    if cc is None:
        return "none"
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    except OSError:
        return cc
    return (out.stdout.splitlines() or [cc])[0]


def run_load_c(
    kind: str,
    port: int,
    connections: int,
    window: int,
    size: int,
    warmup: float,
    duration: float,
    server_pid: int | None = None,
    cpu: int | None = None,
    stall_timeout: float = 10.0,
    executable: Path | None = None,
    host: str = "127.0.0.1",
) -> dict[str, Any]:
    """
    Run the C generator once, closed loop, and return its report.

    :param kind: ``binary`` (or ``binary-py``), ``line``, ``amp`` or ``ceiling``.
    :param size: the body's bytes (all ``x``, as ``_loadgen.py`` sends).
    :param server_pid: whose CPU to read from ``/proc/PID/stat`` at the
        start and end of the measured window.
    :param cpu: the CPU to pin the generator to, or None.
    :param executable: a built generator; :func:`build`'s by default.
    :returns: the JSON report: ``requests``, ``seconds``, ``rps``,
        ``p50_ms`` ... ``p999_ms``, ``gen_cpu_pct``, ``server_us_per_req``,
        ``errors`` (wrong answers), ...; the keys of
        ``_loadgen.LoadResult.summary`` and more.
    :raises ProtocolFailure: if the server broke the protocol, closed a
        connection or stalled (the generator's reason is the message).
    """
    exe = executable if executable is not None else build()
    # binary-py (our server with its compiled path off) speaks binary.
    args = [str(exe), "binary" if kind == "binary-py" else kind, str(port), "--host", host]
    args += ["--connections", str(connections), "--window", str(window), "--size", str(size)]
    args += ["--warmup", repr(warmup), "--duration", repr(duration)]
    args += ["--stall-timeout", repr(stall_timeout)]
    if server_pid is not None:
        args += ["--server-pid", str(server_pid)]
    if cpu is not None:
        args += ["--cpu", str(cpu)]
    # Connecting and the handshakes take at most stall_timeout each.
    limit = warmup + duration + stall_timeout * (connections + 2) + 10
    done = subprocess.run(args, capture_output=True, text=True, timeout=limit)
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        raise RuntimeError(
            f"{exe.name} exited {done.returncode} without a report: "
            f"{done.stderr.strip() or done.stdout.strip()!r}"
        ) from None
    if report.get("fatal"):
        raise ProtocolFailure(f"{kind} on port {port}: {report['fatal']}")
    if done.returncode != 0:
        raise RuntimeError(f"{exe.name} exited {done.returncode}: {done.stderr.strip()!r}")
    return report
