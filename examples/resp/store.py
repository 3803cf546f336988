"""
The responder of the RESP example: a few Redis commands on a dict.

One :class:`Store` serves every connection (``--responder
examples.resp:Store`` makes one), so a key set on one connection is seen on
the others, as with a Redis server.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_reqresp import Call, ConnectionInfo, Reply, StatusCode, StatusError
from twisted_reqresp.interfaces import IResponder

from .wire import NULL, arguments, array, integer, simple

__all__ = ["Store"]

_Command = Callable[[list[bytes]], Reply | bytes]


def _error(message: str) -> StatusError:
    # UNKNOWN is sent as RESP's generic "-ERR" prefix (see wire.py).
    return StatusError(StatusCode.UNKNOWN, message)


@implementer(IResponder)
class Store:
    """
    PING [message], ECHO message, GET key, SET key value, DEL key [key ...],
    EXISTS key [key ...] and COMMAND (an empty array: ``redis-cli`` asks for
    ``COMMAND DOCS`` when it starts an interactive session), on a dict of
    byte strings.  Command names are case-insensitive, as in Redis; any
    other command is answered ``-ERR unknown command 'name'``.

    :ivar data: the keys and their values.
    """

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        # name: (function, fewest arguments, most arguments or None)
        self._commands: dict[str, tuple[_Command, int, int | None]] = {
            "PING": (self._ping, 0, 1),
            "ECHO": (self._echo, 1, 1),
            "GET": (self._get, 1, 1),
            "SET": (self._set, 2, 2),
            "DEL": (self._delete, 1, None),
            "EXISTS": (self._exists, 1, None),
            "COMMAND": (self._command, 0, None),
        }

    def connection_made(self, connection: ConnectionInfo) -> None:
        """Nothing to set up: the store is shared."""

    def connection_lost(self, reason: Failure) -> None:
        """Nothing to tear down: the store is shared."""

    def respond(self, call: Call) -> Reply | bytes:
        """
        Run one command.

        :param call: the command: its name is the method, its arguments
            are packed in the body (:func:`~examples.resp.arguments`).
        :returns: the reply.
        :raises StatusError: UNKNOWN (``-ERR``) for an unknown command or the
            wrong number of arguments.
        """
        entry = self._commands.get(call.method.upper())
        if entry is None:
            raise _error(f"unknown command '{call.method}'")
        function, least, most = entry
        args = arguments(call.body, call.metadata)
        if len(args) < least or (most is not None and len(args) > most):
            raise _error(f"wrong number of arguments for '{call.method.lower()}' command")
        return function(args)

    def _ping(self, args: list[bytes]) -> Reply | bytes:
        return args[0] if args else simple("PONG")

    def _echo(self, args: list[bytes]) -> bytes:
        return args[0]

    def _get(self, args: list[bytes]) -> Reply | bytes:
        value = self.data.get(args[0])
        return NULL if value is None else value

    def _set(self, args: list[bytes]) -> Reply:
        self.data[args[0]] = args[1]
        return simple("OK")

    def _delete(self, args: list[bytes]) -> Reply:
        return integer(sum(self.data.pop(key, None) is not None for key in args))

    def _exists(self, args: list[bytes]) -> Reply:
        return integer(sum(key in self.data for key in args))

    def _command(self, args: list[bytes]) -> Reply:
        return array([])
