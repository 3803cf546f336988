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
``count`` (server streaming)
    the body is ``N [DELAY_MS]``: sends the messages ``1``, ``2``, ...
    ``N`` (decimal text, which is JSON too), waiting ``DELAY_MS``
    milliseconds before each after the first, then an empty OK.  At most
    :data:`MAX_COUNT` messages, and at most :data:`MAX_SLEEP` seconds of
    delays in all.
``sum`` (client streaming)
    adds the numbers the client streams, one JSON number per message, and
    answers the total (JSON) once the client ends its stream.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable, Sequence
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

__all__ = ["MAX_COUNT", "MAX_SLEEP", "default_factory", "default_router"]

#: The longest ``sleep`` accepted, in seconds.  A minute is ample to try a
#: deadline or a cancel by hand, and it bounds how long one request of a
#: public demo server can hold a concurrency slot.
MAX_SLEEP = 60.0

#: The most messages one ``count`` sends.  A million messages of at most
#: 17 bytes each (a 10-byte frame header and 7 digits) is about 17 MB on the
#: wire: plenty to watch flow control work, and a bound on what one call
#: can make a public demo server do.
MAX_COUNT = 1_000_000


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
    :returns: a router with the methods ``count``, ``echo``, ``methods``,
        ``ping``, ``sleep``, ``stats`` and ``sum``.
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

    @router.method("count", kind="server_stream")
    async def count(call: Call) -> AsyncIterator[bytes]:
        """
        Send the numbers 1 to N, one per message, DELAY_MS milliseconds
        apart (the body: ``N [DELAY_MS]``).

        The router sends each with flow control: a client that reads slowly
        holds this generator at its ``yield``, so nothing piles up here.
        """
        n, delay = _count_arguments(call.body)
        for i in range(1, n + 1):
            if delay and i > 1:
                await deferLater(get_clock(), delay)
            yield b"%d" % i

    @router.method("sum", kind="client_stream")
    async def sum_(call: Call) -> bytes:
        """Answer the sum of the JSON numbers the client streams, one per message."""
        total: int | float = 0
        index = 0
        async for message in call.stream:
            index += 1
            total += _number(message, index)
        if not math.isfinite(total):
            raise StatusError(
                StatusCode.INVALID_ARGUMENT,
                f"sum: the total of the {index} numbers overflows a double",
            )
        return json.dumps(total).encode("ascii")

    return router


def _count_arguments(body: bytes) -> tuple[int, float]:
    """:returns: ``count``'s N and its delay in seconds, from ``N [DELAY_MS]``."""
    usage = f"count takes N [DELAY_MS]: 0 to {MAX_COUNT} messages, a delay in milliseconds"
    words = body.split()
    try:
        if not 1 <= len(words) <= 2 or not all(word.isdigit() for word in words):
            raise ValueError
        n = int(words[0])
        delay_ms = int(words[1]) if len(words) == 2 else 0
    except ValueError:
        shown = body[:40].decode("utf-8", "replace")
        raise StatusError(StatusCode.INVALID_ARGUMENT, f"{usage}, not {shown!r}") from None
    if n > MAX_COUNT:
        raise StatusError(
            StatusCode.INVALID_ARGUMENT, f"count sends at most {MAX_COUNT} messages, not {n}"
        )
    # The delays, not the count, are what hold a call (and a concurrency
    # slot) open: bound their total as sleep bounds its one wait.
    waited = max(n - 1, 0) * delay_ms
    if waited > MAX_SLEEP * 1000:
        raise StatusError(
            StatusCode.INVALID_ARGUMENT,
            f"count waits at most {MAX_SLEEP:g} s in all, not {n - 1} x {delay_ms} ms",
        )
    return n, delay_ms / 1000


def _number(message: bytes, index: int) -> int | float:
    """:returns: the JSON number in ``sum``'s message ``index`` (counted from 1)."""
    try:
        value = json.loads(message)
    except (ValueError, RecursionError):
        value = message
    # As for sleep: bool is an int, and Python's json takes NaN and Infinity.
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        shown = message[:40].decode("utf-8", "replace")
        raise StatusError(
            StatusCode.INVALID_ARGUMENT,
            f"sum takes one JSON number per message; message {index} is {shown!r}",
        )
    return value


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
