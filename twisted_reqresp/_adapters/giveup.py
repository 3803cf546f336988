"""
How the server gives up on a running call: it tells the call's
:class:`~twisted_reqresp._core.call.Cancellation` (so ``call.cancelled``
reads true and ``call.on_cancel`` callbacks run), *then* cancels the
responder's Deferred.  In that order, a responder's own ``except
CancelledError`` code already sees ``call.cancelled``, and the calls it made
downstream with ``parent=call`` are cancelled (their CANCELs sent) before
its Deferred unwinds.

The server gives up on a CANCEL, at the deadline, when the connection
closes or is lost, and when a drain's grace period runs out
(``_adapters/server.py``); the deadline is here, shared with the innermost
step of a server interceptor chain (``_adapters/interceptors.py``).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.defer import TimeoutError as DeferTimeout
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._core.call import Cancellation

__all__ = ["cancel_at_deadline", "tell_cancelled"]

_log = Logger(namespace="twisted_reqresp.server")


def tell_cancelled(cancellation: Cancellation) -> None:
    """
    Mark a call given up and run its ``on_cancel`` callbacks; what they
    raise is logged, never raised: the server is busy closing or answering.

    :param cancellation: the call's shared cancellation state.
    """
    for error in cancellation.cancel():
        _log.failure(
            "a call's on_cancel callback failed",
            Failure(error, type(error), error.__traceback__),
        )


def cancel_at_deadline(
    d: Deferred[Any], timeout: float, clock: IReactorTime, cancellation: Cancellation
) -> None:
    """
    ``d.addTimeout(timeout, clock)``, telling ``cancellation`` first.

    When ``timeout`` seconds pass before ``d`` fires, the call is marked
    given up and its callbacks run, then ``d`` is cancelled; a
    ``CancelledError`` it then fails with becomes Twisted's
    ``TimeoutError`` (answered DEADLINE_EXCEEDED), as with ``addTimeout``.

    :param d: the responder's (or the chain's) Deferred.
    :param timeout: seconds left before the call's deadline.
    :param clock: the server's clock.
    :param cancellation: the call's cancellation state.
    """
    expired = [False]

    def expire() -> None:
        expired[0] = True
        tell_cancelled(cancellation)
        d.cancel()

    timer = clock.callLater(timeout, expire)

    def done(result: Any) -> Any:
        if timer.active():
            timer.cancel()
        if expired[0] and isinstance(result, Failure) and result.check(CancelledError):
            raise DeferTimeout(timeout, "Deferred")
        return result

    d.addBoth(done)
