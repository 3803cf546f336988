"""
Every limit the wire core enforces, in one place.

Wire core: imports nothing from Twisted.

Each default says why it is what it is.  The limits bound memory: no buffer
the core keeps grows past them, whatever a peer sends (see
``IntNStringReceiver.MAX_LENGTH`` in ``twisted/protocols/basic.py`` for the
precedent of checking a length prefix before buffering the body).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits", "DEFAULT_LIMITS"]

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

    #: Requests in flight on one connection before the server stops reading
    #: more.  100, HTTP/2's recommended minimum for
    #: SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 section 6.5.2).
    max_concurrent: int = 100

    #: The longest line the line format accepts, in bytes, line end
    #: included.  64 KiB: a person typing never comes close, and it bounds
    #: the buffer a peer that never sends a newline can fill.
    max_line_length: int = 64 * 1024

    #: The most metadata entries in one frame.  64 keeps a frame of many tiny
    #: entries from costing many small objects.
    max_metadata_entries: int = 64

    def __post_init__(self) -> None:
        for name in (
            "max_frame_size",
            "max_concurrent",
            "max_line_length",
            "max_metadata_entries",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if self.max_frame_size > 0xFFFF_FFFF:
            raise ValueError("max_frame_size must fit in 32 bits")
        if self.max_concurrent > 0xFFFF_FFFF:
            raise ValueError("max_concurrent must fit in 32 bits")


#: The limits used when none are given.
DEFAULT_LIMITS = Limits()
