"""
The protocols we compare ourselves with, shared by the server processes
(``_servers.py``), the AMP client (``client_bench.py``) and ``hotpath.py``:

- AMP with an ``Echo`` command equivalent to our ``echo`` method (one
  ``String`` argument, one ``String`` answer);
- the ceiling: the least a Twisted protocol can do to echo framed messages.
"""

from __future__ import annotations

import struct

from twisted.internet.protocol import Protocol
from twisted.protocols import amp


class Echo(amp.Command):
    """Send ``body``, get it back."""

    arguments = [(b"body", amp.String())]
    response = [(b"body", amp.String())]


class EchoAMP(amp.AMP):
    """An AMP protocol that answers :class:`Echo`."""

    @Echo.responder
    def echo(self, body: bytes) -> dict[str, bytes]:
        return {"body": body}


_U32 = struct.Struct(">I")

#: The ceiling server's bound on one frame: the length is checked before the
#: body is buffered, like IntNStringReceiver.MAX_LENGTH (16 MiB as ours).
CEILING_MAX_FRAME = 16 * 1024 * 1024


class CeilingEcho(Protocol):
    """Echo 4-byte-length-prefixed frames, doing as little as possible."""

    def __init__(self) -> None:
        self._buf = b""

    def dataReceived(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        n = len(buf)
        pos = 0
        out = []
        unpack_from = _U32.unpack_from
        pack = _U32.pack
        while n - pos >= 4:
            (length,) = unpack_from(buf, pos)
            if length > CEILING_MAX_FRAME:
                self.transport.loseConnection()  # type: ignore[union-attr]
                return
            end = pos + 4 + length
            if end > n:
                break
            out.append(pack(length))
            out.append(buf[pos + 4 : end])
            pos = end
        self._buf = buf[pos:] if pos < n else b""
        if out:
            self.transport.writeSequence(out)  # type: ignore[union-attr]
