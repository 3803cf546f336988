"""
:func:`write_through`: send to a TCP socket at once when nothing is queued.

A Twisted transport's ``write()`` only queues: the bytes reach the socket on
the next reactor iteration, after an ``epoll_ctl`` to watch for
writability, a wake-up, and another ``epoll_ctl`` to stop watching.  For a
request/response server that answers a whole read at a time, that is one
extra reactor iteration and two system calls per read (asyncio's
transports try ``send()`` at once for the same reason).

The shortcut is taken only when it is certainly safe: the transport is a
plain TCP or UNIX connection from ``twisted.internet.tcp`` (no TLS, no
wrapper), it is connected, and its own write buffers are empty, so our
bytes cannot overtake bytes it still holds.  Whatever ``send()`` does not
take, or any error, goes through ``transport.write()`` as usual, and Twisted
carries on from there.  The check reads two attributes of Twisted's
``FileDescriptor`` (``dataBuffer``/``offset`` are public, ``_tempDataLen``
is not) and ``TLS`` (set by ``startTLS``); if a Twisted version or another
reactor lacks them, the shortcut is simply never taken.  So that this never
happens unnoticed, or worse, that a changed meaning sends bytes ahead of
ones Twisted still holds, ``tests/test_writethrough.py`` pins each
attribute and its meaning over a real TCP connection (and after
``startTLS``), and fails naming the attribute when a Twisted release
changes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["can_write_through", "send_through", "write_through"]


def can_write_through(transport: Any) -> bool:
    """
    :param transport: a connected transport.
    :returns: whether :func:`send_through` may be used on it: a plain TCP
        or UNIX connection of ``twisted.internet.tcp`` with the attributes
        it checks.
    """
    try:
        from twisted.internet import tcp

        return (
            isinstance(transport, tcp.Connection)
            and not getattr(transport, "TLS", False)
            and isinstance(getattr(transport, "_tempDataLen", None), int)
            and isinstance(getattr(transport, "dataBuffer", None), bytes)
            and isinstance(getattr(transport, "offset", None), int)
            and hasattr(transport, "socket")
        )
    except ImportError:  # pragma: no cover - every Twisted has tcp
        return False


def send_through(transport: Any, data: bytes) -> None:
    """
    Write ``data`` to a transport :func:`can_write_through` accepted:
    straight to the socket when nothing is queued, else (and for whatever
    the socket does not take) with ``transport.write``.

    A function of the transport rather than a closure over it, so that a
    connection holds no per-connection function for it (issue 12).
    """
    if (
        transport._tempDataLen
        or transport.offset != len(transport.dataBuffer)
        or not transport.connected
        or transport.disconnecting
        or getattr(transport, "TLS", False)
    ):
        transport.write(data)
        return
    try:
        sent = transport.socket.send(data)
    except BlockingIOError:
        sent = 0
    except OSError:
        # Let Twisted meet the error on its own path and close properly.
        transport.write(data)
        return
    if sent < len(data):
        transport.write(data[sent:])


def write_through(transport: Any) -> Callable[[bytes], None]:
    """
    :param transport: a connected transport.
    :returns: a function that writes bytes to it, straight to the socket
        when that is safe, else with ``transport.write``.
    """
    write: Callable[[bytes], None] = transport.write
    if not can_write_through(transport):
        return write

    def send(data: bytes) -> None:
        send_through(transport, data)

    return send
