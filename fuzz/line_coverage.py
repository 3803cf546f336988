"""
Line coverage of the wire core reached by a harness's corpus, with the
standard library only (no coverage.py needed): replay every input once,
uninstrumented, under a line tracer, and list the lines never run.

Run: ``/work/venv/bin/python fuzz/line_coverage.py binary`` (or ``line``,
``auto``), after fuzzing has grown ``fuzz/corpus_<name>/``.
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import os
import sys
import trace
from types import FrameType
from typing import Any

import atheris

# Replay without atheris's bytecode instrumentation: plain line events.
atheris.instrument_imports = lambda *a, **k: contextlib.nullcontext()  # type: ignore[assignment]

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

CORE = [
    "_core/binary.py",
    "_core/line.py",
    "_core/detect.py",
    "_core/auto.py",
    "_core/connection.py",
]


def _ranges(lines: list[int]) -> str:
    out = []
    start = prev = None
    for n in lines:
        if start is None:
            start = prev = n
        elif n == prev + 1:  # type: ignore[operator]
            prev = n
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = n
    if start is not None:
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(out)


def main(name: str) -> None:
    package = os.path.join(os.path.dirname(HERE), "twisted_reqresp")
    files = {os.path.join(package, f) for f in CORE}
    hit: set[tuple[str, int]] = set()

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        filename = frame.f_code.co_filename
        if filename not in files:
            return None
        if event == "line":
            hit.add((filename, frame.f_lineno))
        return tracer

    inputs = sorted(glob.glob(os.path.join(HERE, f"corpus_{name}", "*")))
    sys.settrace(tracer)  # before the import, so that module-level lines count
    try:
        harness = importlib.import_module(f"fuzz_{name}")
        for path in inputs:
            with open(path, "rb") as f:
                harness.TestOneInput(f.read())
    finally:
        sys.settrace(None)
    print(f"{len(inputs)} inputs from fuzz/corpus_{name}/")
    total_hit = total = 0
    for filename in sorted(files):
        # (Line 0 is the module's own entry, not a line of source.)
        executable = set(trace._find_executable_linenos(filename)) - {0}  # type: ignore[attr-defined]
        ran = {n for f, n in hit if f == filename} & executable
        missed = sorted(executable - ran)
        total_hit += len(ran)
        total += len(executable)
        print(
            f"  {os.path.basename(filename):16} {len(ran):4}/{len(executable):4} lines "
            f"({100 * len(ran) / len(executable):.0f}%)  not run: {_ranges(missed)}"
        )
    print(f"  {'all':16} {total_hit:4}/{total:4} lines ({100 * total_hit / total:.0f}%)")


if __name__ == "__main__":
    main(sys.argv[1])
