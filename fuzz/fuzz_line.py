"""
Fuzz the line wire format through the sans-IO Connection, as a server and
as a client.  See ``_harness.py`` for the input layout and the invariants,
and ``README.md`` for how to run it.

The mode byte (the input's first byte): ``mode % 4 == 3`` plays the
client, which sends ``(mode >> 2) % 8 + 1`` requests before the fuzzed
answers arrive; anything else plays the server.
"""

from __future__ import annotations

import sys

from _harness import Run, atheris, drive, new_run

from twisted_reqresp.wire import Role


def start(mode: int) -> Run:
    """The connection, with requests already sent if it is a client."""
    if mode % 4 == 3:
        run = new_run("line", Role.CLIENT)
        for i in range((mode >> 2) % 8 + 1):
            run.conn.send_request(f"m{i}", b"x\n\\" * i)
        return run
    return new_run("line", Role.SERVER)


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    run = start(fdp.ConsumeUInt(1))
    drive(run, fdp)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
