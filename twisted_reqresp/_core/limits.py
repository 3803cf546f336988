"""
Every limit and timeout, in one place.

Wire core: imports nothing from Twisted.

Each default says why it is what it is.  The size limits bound memory: no
buffer grows past them, whatever a peer sends (see
``IntNStringReceiver.MAX_LENGTH`` in ``twisted/protocols/basic.py`` for the
precedent of checking a length prefix before buffering the body).  The
first group is enforced by the wire core; the second by the Twisted
adapters, which own the clocks and the listening ports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "MAX_CREDIT", "Limits"]

_MIB = 1024 * 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """
    The limits one side of a connection enforces on what it receives.

    Both sides have their own; a binary-format peer learns ours from the
    SETTINGS frame and keeps within them when it sends.
    """

    #: The largest frame payload accepted, in bytes.  16 MiB, like gRPC's
    #: default maximum message size order of magnitude (4 MiB) raised so that
    #: values far above AMP's 64 KiB pass; the header is checked before any of
    #: the body is buffered, so a larger announcement costs nothing.
    max_frame_size: int = 16 * _MIB

    #: Requests a server runs at once on one connection (advertised in
    #: SETTINGS; a client keeps within it).  Past it the server parks
    #: requests instead of starting them, and keeps reading.  100, HTTP/2's
    #: recommended minimum for SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113
    #: section 6.5.2).
    max_concurrent: int = 100

    #: Bytes of requests a server holds parked (read past
    #: ``max_concurrent``, not started) on one connection before it stops
    #: reading that connection: the last resort against a client that
    #: ignores MAX_CONCURRENT.  Each parked request counts its method,
    #: body and metadata plus 384 bytes for the objects that hold it (a
    #: streaming call 2,560 more: its stream exists while it is parked).
    #: 1 MiB: a well-behaved client parks nothing, and a misbehaving one
    #: costs at most this plus one frame.
    max_parked_bytes: int = 1024 * 1024

    #: The longest line the line format accepts, in bytes, line end
    #: included.  64 KiB: a person typing never comes close, and it bounds
    #: the buffer a peer that never sends a newline can fill.
    max_line_length: int = 64 * 1024

    #: The most metadata entries in one frame.  64 keeps a frame of many tiny
    #: entries from costing many small objects.
    max_metadata_entries: int = 64

    #: Bytes of credit each streaming call starts with for the messages this
    #: side receives on it (the STREAM_CREDIT setting); ``None`` turns
    #: streaming calls off, and this side's SETTINGS do not offer them.  The
    #: messages of one call this side holds unconsumed stay within this plus
    #: one frame (docs/protocol.md, "Flow control").  65,536, HTTP/2's
    #: initial stream window (RFC 9113 section 6.9.2): enough to keep a
    #: stream of small messages moving over a fast link, small enough that
    #: a thousand stalled calls hold 64 MiB (and the connection credit
    #: bounds them sooner).
    stream_credit: int | None = 65536

    #: Bytes of credit for the messages this side receives on all streaming
    #: calls together (the CONNECTION_CREDIT setting): what the messages held
    #: unconsumed by all calls of one connection stay within, plus one frame,
    #: so that many calls cannot add up to more.  1 MiB, the protocol's
    #: default: sixteen stalled calls at 64 KiB before the others wait.
    connection_credit: int = 1024 * 1024

    # -- enforced by the Twisted adapters ---------------------------------------

    #: Seconds a new connection has to finish its handshake (binary: preface
    #: and SETTINGS; line: its first whole line).  10 s is generous for a
    #: real client and short for a slowloris holding a socket open.
    preface_timeout: float | None = 10.0

    #: Seconds a connection with nothing in flight may go without a whole
    #: message before the server closes it with GOAWAY.  300 s, nginx's
    #: order of magnitude for idle keep-alive connections.
    idle_timeout: float | None = 300.0

    #: Seconds without a byte from the peer before sending a PING (binary
    #: format).  60 s keeps NAT and firewall state alive (many drop idle
    #: flows after 2-5 minutes) at a negligible cost.
    ping_interval: float | None = 60.0

    #: Seconds a PING may go unanswered (no byte at all from the peer)
    #: before the peer is declared dead and the connection closed.  20 s,
    #: gRPC's default keepalive timeout.
    ping_timeout: float = 20.0

    #: The longest deadline a server grants, in seconds; requests asking
    #: for more, or for none, get this one.  ``None``: no cap.
    max_deadline: float | None = None

    #: Connections a server keeps open at once; more are refused with
    #: RESOURCE_EXHAUSTED.  10,000: well below the usual file-descriptor
    #: hard limits, and about 80 MiB of buffers at most.
    max_connections: int | None = 10_000

    #: Connections one peer address may keep open at once (Twisted's
    #: ``LimitConnectionsByPeer`` is broken on current Twisted, so the server
    #: counts itself).  ``None``: no per-peer limit.
    max_connections_per_peer: int | None = None

    #: Seconds a stopping server lets requests already accepted finish
    #: before it closes their connections.  10 s, as Kubernetes' default
    #: termination grace period leaves 30 s for the whole pod.
    grace: float = 10.0

    #: Seconds a closing connection waits for the peer to read what is left
    #: (and, over TLS, to answer the close) before it is aborted.  15 s,
    #: the ``abortTimeout`` of Twisted's HTTP server.  ``None``: no abort.
    close_timeout: float | None = 15.0

    #: Calls a client holds back, while the server is not reading or its
    #: MAX_CONCURRENT is reached, before failing new calls with
    #: RESOURCE_EXHAUSTED (marked retry-safe).
    max_queued_calls: int = 1000

    def __post_init__(self) -> None:
        for name in (
            "max_frame_size",
            "max_concurrent",
            "max_line_length",
            "max_metadata_entries",
            "max_parked_bytes",
            "max_queued_calls",
        ):
            _positive_int(name, getattr(self, name))
        for name in ("max_connections", "max_connections_per_peer"):
            value = getattr(self, name)
            if value is not None:
                _positive_int(name, value)
        for name in (
            "preface_timeout",
            "idle_timeout",
            "ping_interval",
            "max_deadline",
            "close_timeout",
        ):
            value = getattr(self, name)
            if value is not None:
                _positive_number(name, value)
        _positive_number("ping_timeout", self.ping_timeout)
        grace = self.grace
        if not _is_number(grace) or not 0 <= grace < math.inf:
            raise ValueError(f"grace must be a finite number of seconds >= 0, not {grace!r}")
        if self.max_frame_size > 0xFFFF_FFFF:
            raise ValueError("max_frame_size must fit in 32 bits")
        if self.max_frame_size < 1024:
            raise ValueError("max_frame_size must be at least 1024 (docs/protocol.md)")
        if self.max_concurrent > 0xFFFF_FFFF:
            raise ValueError("max_concurrent must fit in 32 bits")
        if self.stream_credit is not None:
            _credit("stream_credit", self.stream_credit)
        _credit("connection_credit", self.connection_credit)


#: The most credit a streaming sender may hold (docs/protocol.md, "Flow
#: control"): credits are signed 32-bit numbers, as HTTP/2's windows.
MAX_CREDIT = 0x7FFF_FFFF


def _credit(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_CREDIT:
        raise ValueError(f"{name} must be an integer from 0 to {MAX_CREDIT}, not {value!r}")


def _positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_number(name: str, value: object) -> None:
    # Finite too: an infinite delay is not a delay a clock can schedule
    # (use None to turn a timeout off).
    if not _is_number(value) or not 0 < value < math.inf:  # type: ignore[operator]
        raise ValueError(f"{name} must be a positive, finite number of seconds, not {value!r}")


#: The limits used when none are given.
DEFAULT_LIMITS = Limits()
