"""
Telling the wire formats apart from a connection's first bytes, for a
server listening with ``--wire auto``.

Wire core: contains no networking code and imports nothing from Twisted.

The rules, in order:

1. No bytes yet: undecided (``None``).
2. The first byte is ``0x89``, the first byte of the binary preface (chosen,
   like PNG's, because nobody types it): ``"binary"``.
3. Leading blank space (SP, HT, CR, LF) is skipped, since the line format
   ignores blank lines and a person may press Enter first.  Nothing else
   yet: undecided.
4. The first other byte cannot start a method name (anything but an ASCII
   letter or digit, ``_``, ``.``, ``-``, ``/``; so TLS's ``0x16`` and
   other control bytes): ``"unknown"``.
5. The first line, once its LF has come, is an HTTP/1 request line,
   ``[A-Z]+ SP \\S+ SP HTTP/\\d.\\d [CR]`` (its method is letters, so
   rule 4 let it through): ``"http"``; any other line: ``"line"``.
6. No LF yet: undecided while the bytes could still grow into such a
   request line, ``"line"`` once they cannot.  ``GET / HTTP/1.1`` waits
   for its line end; ``ping`` or ``echo hello`` is ``"line"`` at once.

Each answer other than ``None`` stands whatever bytes follow, so a caller
may decide as soon as it has one.  The one exception bounds the wait: after
:data:`MAX_UNDECIDED` bytes with no answer, blank space alone is
``"line"`` and a request line still growing is ``"http"``.
"""

from __future__ import annotations

import re
from typing import Literal

from .binary import MAGIC, describe_foreign_bytes, foreign_reply

__all__ = ["MAX_UNDECIDED", "WireGuess", "detect_wire_format", "reply_for_unknown"]

#: What :func:`detect_wire_format` can answer.
WireGuess = Literal["binary", "line", "http", "unknown"]

#: The most bytes without a LF that can leave the guess open: the length of
#: a long HTTP request line (RFC 9112 section 3 recommends servers accept at
#: least 8000 octets).
MAX_UNDECIDED = 8192

_BLANK = b" \t\r\n"
_METHOD_START = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-/")
_HTTP_LINE = re.compile(rb"[A-Z]+ \S+ HTTP/\d\.\d\r?")
# Every prefix of a line that _HTTP_LINE matches.
_HTTP_PREFIX = re.compile(
    rb"[A-Z]+(?: (?:\S+(?: (?:H(?:T(?:T(?:P(?:/(?:\d(?:\.(?:\d\r?)?)?)?)?)?)?)?)?)?)?)?"
)


def detect_wire_format(first_bytes: bytes) -> WireGuess | None:
    """
    Guess the wire format a new connection speaks.

    :param first_bytes: every byte received so far (call again with more
        when the answer is ``None``).
    :returns: ``"binary"``, ``"line"``, ``"http"`` or ``"unknown"``, or
        ``None`` if more bytes are needed.  Never raises.
    """
    data = first_bytes
    if not data:
        return None
    if data[0] == MAGIC[0]:
        return "binary"
    start = len(data) - len(data.lstrip(_BLANK))
    if start == len(data):
        return None if len(data) < MAX_UNDECIDED else "line"
    if data[start] not in _METHOD_START:
        return "unknown"
    lf = data.find(b"\n", start)
    if lf >= 0:
        return "http" if _HTTP_LINE.fullmatch(data, start, lf) else "line"
    if _HTTP_PREFIX.fullmatch(data, start):
        return None if len(data) < MAX_UNDECIDED else "http"
    return "line"


def reply_for_unknown(first_bytes: bytes) -> bytes:
    """
    The last words for a peer that speaks neither wire format: one line of
    text, or an HTTP 400 response for an HTTP client.

    :param first_bytes: what the peer sent (that :func:`detect_wire_format`
        classed as ``"http"`` or ``"unknown"``).
    :returns: the bytes to send before closing.
    """
    kind, _ = describe_foreign_bytes(first_bytes)
    if kind == "http" or detect_wire_format(first_bytes) == "http":
        message = "this port speaks the reqresp binary and line protocols, not HTTP"
        # foreign_reply reads its data only to choose the HTTP 400 wrapping,
        # and knows fewer methods than the request-line rule above.
        return foreign_reply(b"GET ", message)
    if kind == "tls":
        message = "this port speaks the reqresp protocols without TLS"
    else:
        message = (
            "expected the reqresp binary preface or a request line such as "
            "'METHOD argument' (see docs/protocol.md)"
        )
    return foreign_reply(first_bytes, message)
