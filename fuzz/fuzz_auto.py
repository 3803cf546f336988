"""
Fuzz AutoFormat's detection and hand-over through the sans-IO Connection
(server only: a client picks its format).  See ``_harness.py`` for the
input layout and the invariants, and ``README.md`` for how to run it.

The mode byte (the input's first byte): when ``mode & 1``, the binary
preface (and, when ``mode & 2``, a client SETTINGS frame) comes first;
otherwise the fuzzed bytes are the first the server sees, so they choose
binary, line, HTTP or "unknown" themselves.
"""

from __future__ import annotations

import sys

from _harness import LIMITS, Run, atheris, drive, feed, new_run

from twisted_reqresp.wire import PREFACE, BinaryCodec, Role, Settings

CLIENT_SETTINGS = BinaryCodec(Role.CLIENT, LIMITS).encode(
    Settings(max_frame_size=LIMITS.max_frame_size, max_concurrent=LIMITS.max_concurrent)
)


def start(mode: int) -> Run:
    """The connection, past the preface if the mode asks for it."""
    run = new_run("auto", Role.SERVER)
    if mode & 1:
        feed(run, PREFACE + (CLIENT_SETTINGS if mode & 2 else b""))
    return run


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    run = start(fdp.ConsumeUInt(1))
    drive(run, fdp)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
