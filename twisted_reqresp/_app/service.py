"""
The default service: what ``twistd reqresp`` serves when no ``--responder``
is given.

Its methods let a person at a terminal (or a health check) see that a server
is alive and what it does, without writing any code:

``echo``
    answers with the request body, unchanged (bytes).
``ping``
    answers ``pong`` (bytes); unlike the PING frame it works on every wire
    format, including the line format typed into ``nc``.
``methods``
    the sorted names of this service's methods (JSON list).
``stats``
    the server's :class:`~twisted_reqresp.ServerStats` counters (JSON object).
``sleep``
    waits the given number of seconds (JSON number, at most
    :data:`MAX_SLEEP`) and answers it back: a way to try deadlines and
    cancellation from the command line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from .._adapters.router import Router
from .._adapters.server import ServerFactory
from .._adapters.stats import ServerStats
from .._core.call import Call
from .._core.contract import IWireFormat
from .._core.errors import StatusError
from .._core.limits import DEFAULT_LIMITS, Limits
from .._core.status import StatusCode
from ..codecs import JSON

__all__ = ["MAX_SLEEP", "default_factory", "default_router"]

#: The longest ``sleep`` accepted, in seconds.  A minute is ample to try a
#: deadline or a cancel by hand, and it bounds how long one request of a
#: public demo server can hold a concurrency slot.
MAX_SLEEP = 60.0


def default_router(
    stats: Callable[[], ServerStats],
    clock: IReactorTime | Callable[[], IReactorTime],
) -> Router:
    """
    Build the default service's :class:`~twisted_reqresp.Router`.

    The router needs the counters of the factory that serves it, and the
    factory needs the router first, so both arguments may be resolved late.

    :param stats: returns the server's counters when ``stats`` is called
        (typically ``lambda: factory.stats``).
    :param clock: the clock ``sleep`` waits on, or a function returning it
        (called on each ``sleep``), so that the global reactor is never
        looked up before it is needed.
    :returns: a router with the methods ``echo``, ``methods``, ``ping``,
        ``sleep`` and ``stats``.
    """
    router = Router()

    def get_clock() -> IReactorTime:
        if IReactorTime.providedBy(clock):
            return clock
        return clock()

    @router.method("echo")
    def echo(call: Call) -> bytes:
        """Answer with the request body, unchanged."""
        body: bytes = call.body
        return body

    @router.method("ping")
    def ping(call: Call) -> bytes:
        """Answer ``pong``, whatever the body."""
        return b"pong"

    @router.method("methods", codec=JSON)
    def methods(call: Call) -> list[str]:
        """Answer the sorted names of this router's methods."""
        # Asked of the router on each call, so a method added later shows.
        return router.methods()

    @router.method("stats", codec=JSON)
    def stats_(call: Call) -> dict[str, Any]:
        """Answer the server's counters and uptime."""
        return stats().as_dict()

    @router.method("sleep", codec=JSON)
    def sleep(call: Call) -> Deferred[int | float]:
        """
        Answer the requested number of seconds after that long.

        Cancelling the call (a CANCEL from the client, the request's
        deadline, the connection closing) cancels the timer.
        """
        asked: int | float = call.body
        return deferLater(get_clock(), _sleep_seconds(asked), lambda: asked)

    return router


def _sleep_seconds(value: Any) -> float:
    # bool is an int subclass, and Python's json accepts NaN and Infinity:
    # refuse all three rather than sleep for True or forever.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StatusError(
            StatusCode.INVALID_ARGUMENT,
            f"sleep takes a JSON number of seconds, not {_describe(value)}",
        )
    seconds = float(value)
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_SLEEP:
        raise StatusError(
            StatusCode.INVALID_ARGUMENT,
            f"sleep takes 0 to {MAX_SLEEP:g} seconds, not {value!r}",
        )
    return seconds


def _describe(value: Any) -> str:
    if value is None:
        return "an empty body"
    return type(value).__name__


def default_factory(
    *,
    wire: IWireFormat | None = None,
    limits: Limits = DEFAULT_LIMITS,
    clock: IReactorTime | None = None,
    interceptors: Sequence[object] = (),
    builtins: bool = True,
) -> ServerFactory:
    """
    A :class:`~twisted_reqresp.ServerFactory` serving :func:`default_router`,
    whose ``stats`` method reports that same factory's counters.

    :param wire: the wire format (binary by default).
    :param limits: the server's limits.
    :param clock: the clock for deadlines, ``sleep`` and uptime; the global
        reactor if omitted, looked up only when first needed.
    :param interceptors: the server's interceptors (see
        :class:`~twisted_reqresp.ServerFactory`).
    :param builtins: serve the built-in methods (``reqresp.health``, ...).
    :returns: the factory.
    """
    factory: ServerFactory

    # The router is made before the factory exists; these look it up late.
    def factory_stats() -> ServerStats:
        return factory.stats

    def factory_clock() -> IReactorTime:
        return factory.clock

    factory = ServerFactory(
        default_router(factory_stats, factory_clock),
        wire=wire,
        limits=limits,
        clock=clock,
        interceptors=interceptors,
        builtins=builtins,
    )
    return factory
