"""
Fuzz the binary wire format through the sans-IO Connection, as a server
and as a client.  See ``_harness.py`` for the input layout and the
invariants, and ``README.md`` for how to run it.

The mode byte (the input's first byte):

- ``mode % 4 == 3``: play the client.  Send ``(mode >> 2) % 8`` requests
  first, and, unless ``mode >= 0xF0``, feed a valid server SETTINGS frame
  before the fuzzed bytes.
- otherwise play the server.  Unless ``mode >= 0xF0``, feed the client
  preface first (so most inputs get past it), and when ``mode & 4``, a
  valid client SETTINGS frame too.
"""

from __future__ import annotations

import sys

from _harness import LIMITS, Run, atheris, drive, feed, new_run

from twisted_reqresp.wire import PREFACE, BinaryCodec, Role, Settings


def _settings(role: Role) -> bytes:
    return BinaryCodec(role, LIMITS).encode(
        Settings(
            max_frame_size=LIMITS.max_frame_size,
            max_concurrent=LIMITS.max_concurrent,
            stream_credit=LIMITS.stream_credit,
            connection_credit=LIMITS.connection_credit,
        )
    )


SERVER_SETTINGS = _settings(Role.SERVER)
CLIENT_SETTINGS = _settings(Role.CLIENT)


def start(mode: int) -> Run:
    """The connection, past the part of the handshake the mode asks for."""
    prefixed = mode < 0xF0
    if mode % 4 == 3:
        run = new_run("binary", Role.CLIENT)
        for i in range((mode >> 2) % 8):
            run.conn.send_request(f"m{i}", b"x" * i)
        if prefixed:
            feed(run, SERVER_SETTINGS)
        return run
    run = new_run("binary", Role.SERVER)
    if prefixed:
        feed(run, PREFACE + (CLIENT_SETTINGS if mode & 4 else b""))
    return run


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    run = start(fdp.ConsumeUInt(1))
    drive(run, fdp)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
