"""
Status codes carried by ERROR and GOAWAY frames.

Wire core: imports nothing from Twisted.

The numbering follows gRPC's canonical codes (``google.rpc.Code``) so that
people who know one know the other, and so a gateway can map them one to one.
Codes 0-999 are reserved for the protocol; codes 1000 and above belong to
applications.  A code this module does not know is kept as a plain ``int``
(h2's habit): an unknown code from a newer peer is information, not an error.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Final

__all__ = [
    "APPLICATION_MIN",
    "STATUS_MAX",
    "StatusCode",
    "parse_status",
    "status_name",
    "to_status",
    "utf8_prefix",
]

#: The first status code available to applications.
APPLICATION_MIN = 1000

#: The largest status code the wire can carry (an unsigned 32-bit field).
STATUS_MAX = 0xFFFF_FFFF


class StatusCode(IntEnum):
    """
    The status of a finished call, as carried on the wire.

    ``OK`` never appears in an ERROR frame; it is the status of a GOAWAY that
    announces an orderly shutdown.
    """

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16
    #: The peer broke the wire protocol (GOAWAY only).
    PROTOCOL_ERROR = 100


_BY_VALUE = {int(code): code for code in StatusCode}
#: :func:`to_status` as a table whose values are typed ``Any``, for the
#: modules compiled with mypyc: there a value typed ``int`` (which
#: ``StatusCode | int`` simplifies to) becomes a plain int, and decoded codes
#: must stay StatusCode members as they do in pure Python.
STATUS_BY_VALUE: Final[dict[int, Any]] = dict(_BY_VALUE)
_BY_NAME = {code.name: code for code in StatusCode}


def to_status(value: int) -> StatusCode | int:
    """
    Turn a wire value into a :class:`StatusCode` where one is defined.

    :param value: an integer read from the wire.
    :returns: the matching :class:`StatusCode`, or ``value`` itself when the
        code is an application code or one this version does not know.
    """
    return _BY_VALUE.get(value, value)


def status_name(code: int) -> str:
    """
    A short printable name for a status code.

    :param code: any status code.
    :returns: ``"NOT_FOUND"`` for a known code, the decimal number otherwise.
    """
    known = _BY_VALUE.get(int(code))
    return known.name if known is not None else str(int(code))


def parse_status(text: str) -> StatusCode | int:
    """
    Parse what :func:`status_name` prints.

    :param text: a code name such as ``"NOT_FOUND"`` or a decimal number.
    :returns: the status code.
    :raises ValueError: if ``text`` is neither.
    """
    if text in _BY_NAME:
        return _BY_NAME[text]
    if text.isdigit() and text.isascii():
        value = int(text)
        if value <= STATUS_MAX:
            return to_status(value)
    raise ValueError(f"not a status code: {text!r}")


def utf8_prefix(data: bytes, limit: int) -> bytes:
    """
    Cut UTF-8 text to fit a field, never inside a character (status
    messages are cut to fit an ERROR frame or a line).

    :param data: valid UTF-8.
    :param limit: the most bytes wanted; ``b""`` if it is 0 or less.
    :returns: the longest prefix of ``data`` of at most ``limit`` bytes that
        ends on a character boundary.
    """
    if len(data) <= limit:
        return data
    cut = max(limit, 0)
    # data[cut] is the first byte left out: while it continues a character
    # (0b10xxxxxx), that character would be split.
    while cut > 0 and data[cut] & 0xC0 == 0x80:
        cut -= 1
    return data[:cut]
