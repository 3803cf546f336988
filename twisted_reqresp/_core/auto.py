"""
:class:`AutoFormat`: a server-side wire format that serves binary clients
and people at a terminal on the same port, telling them apart by the first
byte.

Wire core: imports nothing from Twisted.  The binary preface begins with
0x89, which no one types; a line begins with a printable character.  Any
other first bytes (a TLS ClientHello, an HTTP request) get a one-line
explanation and the connection is closed.  See ``docs/protocol.md``,
"Choosing the format".
"""

from __future__ import annotations

from zope.interface import implementer

from .binary import BinaryFormat
from .contract import IWireCodec, IWireFormat
from .detect import detect_wire_format, reply_for_unknown
from .errors import LocalProtocolError
from .events import Event, GoAway, ProtocolViolation, Role
from .limits import Limits
from .line import LineFormat
from .status import StatusCode

__all__ = ["AutoCodec", "AutoFormat"]


@implementer(IWireFormat)
class AutoFormat:
    """
    Detect the wire format of each connection from its first bytes (server
    side only): binary or line by default.

    :param binary: the format for peers whose first byte is 0x89.
    :param line: the format for peers that start with text.
    """

    #: The name used by ``--wire``.
    name = "auto"
    #: Answers may be multiplexed (binary) or in order (line).
    multiplexed = True

    def __init__(self, binary: IWireFormat | None = None, line: IWireFormat | None = None) -> None:
        self._formats: dict[str, IWireFormat] = {
            "binary": binary if binary is not None else BinaryFormat(),
            "line": line if line is not None else LineFormat(),
        }

    def codec(self, role: Role, limits: Limits) -> AutoCodec:
        """
        :param role: must be :attr:`Role.SERVER`: a client knows what it speaks.
        :param limits: passed to the detected format's codec.
        :returns: a codec that picks its format from the first bytes.
        :raises ValueError: for a client role.
        """
        if role is not Role.SERVER:
            raise ValueError("format detection is for servers; a client picks its format")
        return AutoCodec(self._formats, limits)

    def __repr__(self) -> str:
        return "AutoFormat()"


@implementer(IWireCodec)
class AutoCodec:
    """One connection's detecting codec: buffers until the first byte says
    which format to use, then hands everything to that format's codec."""

    #: No handshake of its own: a binary peer's handshake still happens
    #: inside the binary codec.
    handshake = False

    def __init__(self, formats: dict[str, IWireFormat], limits: Limits) -> None:
        self._formats = formats
        self._limits = limits
        self._pending = b""
        self._inner: IWireCodec | None = None
        self._foreign: bytes | None = None
        self._reported = False
        #: The name of the detected format, once known.
        self.detected: str | None = None

    @property
    def frame_overhead(self) -> int:
        """The detected codec's framing overhead (0 until then)."""
        return self._inner.frame_overhead if self._inner is not None else 0

    @property
    def multiplexed(self) -> bool | None:
        """Whether the detected format multiplexes answers; ``None`` until
        it is known (the :class:`~twisted_reqresp._core.connection.Connection`
        holds a line peer's answers for request order)."""
        return None if self.detected is None else self._formats[self.detected].multiplexed

    @property
    def keepalive(self) -> bool:
        """Whether the detected format has PING frames."""
        return bool(getattr(self._inner, "keepalive", False))

    @property
    def buffered(self) -> int:
        """Received bytes not yet decoded."""
        return self._inner.buffered if self._inner is not None else len(self._pending)

    def preface(self) -> bytes:
        """:returns: nothing: only servers detect."""
        return b""

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes until the format is known, then pass them on."""
        if self._inner is not None:
            self._inner.receive_data(data)
            return
        if self._foreign is not None:
            return
        self._pending += data
        kind = detect_wire_format(self._pending)
        if kind is None:
            return
        if kind in self._formats:
            self.detected = kind
            self._inner = self._formats[kind].codec(Role.SERVER, self._limits)
            pending, self._pending = self._pending, b""
            self._inner.receive_data(pending)
        else:
            self._foreign = reply_for_unknown(self._pending)
            self._pending = b""

    def next_event(self) -> Event | None:
        """:returns: the detected codec's next event."""
        if self._inner is not None:
            return self._inner.next_event()
        if self._foreign is not None and not self._reported:
            self._reported = True
            return ProtocolViolation(
                code=StatusCode.PROTOCOL_ERROR, message="peer speaks neither binary nor line format"
            )
        return None

    def encode(self, event: Event) -> bytes:
        """:returns: the event in the detected format."""
        if self._inner is None:
            if isinstance(event, GoAway):
                # A server draining before the peer said a word: there is no
                # format to say it in.  The connection closes with nothing in
                # flight, and a request that still comes is refused.
                return b""
            raise LocalProtocolError("nothing can be sent before the peer's format is known")
        return self._inner.encode(event)

    def encode_fatal(self, code: int, message: str, last_request_id: int) -> bytes:
        """:returns: the last words, in the peer's format if it is known."""
        if self._inner is not None:
            return self._inner.encode_fatal(code, message, last_request_id)
        if self._foreign is not None:
            return self._foreign
        return f"reqresp: {message}\r\n".encode()
