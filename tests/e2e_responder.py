"""
Responders for ``--responder`` tests: imported by name, as
``e2e_responder:<object>``, by the tap's unit tests and by the ``twistd``
subprocess of the end-to-end tests (which get ``tests/`` on ``PYTHONPATH``).
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from twisted_reqresp import Call, ConnectionInfo, Router, StatusCode, StatusError
from twisted_reqresp.codecs import JSON
from twisted_reqresp.interfaces import IResponder, IResponderFactory

#: A module-level router: the usual way to name a responder.
router = Router()


#: The largest body ``blob`` makes, in bytes: enough to pass the default
#: frame limit, bounded so that a typo cannot exhaust the test machine.
MAX_BLOB = 64 * 1024 * 1024


@router.method("hello", codec=JSON)
def hello(call: Call) -> str:
    """Greet the name in the body."""
    return f"hello, {call.body}"


@router.method("echo")
def echo(call: Call) -> bytes:
    """Answer the request body, unchanged (for the frame-size tests)."""
    body: bytes = call.body
    return body


@router.method("blob")
def blob(call: Call) -> bytes:
    """Answer as many bytes as the decimal number in the body asks for."""
    size = int(call.body)
    if not 0 <= size <= MAX_BLOB:
        raise StatusError(StatusCode.INVALID_ARGUMENT, f"blob takes 0 to {MAX_BLOB} bytes")
    return b"x" * size


@router.method("peer")
def peer(call: Call) -> bytes:
    """
    Answer the caller's address as the server sees it
    (``call.connection.peer``): ``HOST:PORT`` for an IP address, its
    ``repr`` for anything else.
    """
    address = call.connection.peer
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if host is None or port is None:
        return repr(address).encode()
    return f"{host}:{port}".encode()


def make_router() -> Router:
    """A zero-argument factory function returning a responder."""
    made = Router()
    made.add("made", lambda call: b"by make_router")
    return made


@implementer(IResponderFactory)
class PerConnection:
    """A class providing IResponderFactory: called with no arguments to get one."""

    def responder_for(self, connection: ConnectionInfo) -> IResponder:
        """:returns: a router that knows the connection's id."""
        per = Router()
        per.add("whoami", lambda call: str(connection.connection_id))
        return per


class Holder:
    """Holds a router, for dotted attribute paths after the colon."""

    router = router


#: Not a responder: an int.
not_a_responder = 42

#: Not a responder: a codec, which provides another interface.
a_codec = JSON


def returns_nothing() -> None:
    """A callable whose result is not a responder."""


def broken() -> Any:
    """A callable that fails."""
    raise RuntimeError("no database")


def needs_argument(name: str) -> Router:
    """A callable that cannot be called with no arguments."""
    return Router()
