"""
Deadline, cancellation and metadata propagation: what a call made from a
responder takes from the call it serves (its *parent*), as gRPC's context
propagation and Finagle's ``Deadline`` do.

- The downstream call waits no longer than the parent's caller still waits:
  its timeout is the smaller of its own and what is left of the parent's
  deadline.  A parent whose deadline has passed, or that the server has
  already given up on, sends nothing.
- When the server gives up on the parent (``call.on_cancel``: its client
  cancelled, its deadline passed, its connection closed), the downstream
  Deferred is cancelled, which sends CANCEL downstream.
- Chosen metadata keys (by default the W3C trace context, ``traceparent``
  and ``tracestate``) are copied from the parent unless the caller set them.

:meth:`twisted_reqresp.Client.call` uses :func:`inherit` and :func:`bind`
for its ``parent=``; any client that sends calls may.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from twisted.internet.defer import CancelledError, Deferred

from .._core.call import Call, metadata_pairs
from .._core.errors import DeadlineExceeded

__all__ = ["PROPAGATED_METADATA", "bind", "inherit"]

#: The metadata keys a downstream call takes from its parent by default:
#: the W3C Trace Context headers (https://www.w3.org/TR/trace-context/),
#: which tracing systems expect every hop to pass on.
PROPAGATED_METADATA: tuple[str, ...] = ("traceparent", "tracestate")


def inherit(
    parent: Call,
    timeout: float | None,
    metadata: Mapping[str, str] | Iterable[tuple[str, str]] | None,
    keys: Collection[str] = PROPAGATED_METADATA,
) -> tuple[float | None, dict[str, str]]:
    """
    The timeout and metadata of a call made on behalf of ``parent``.

    :param parent: the call being served.
    :param timeout: the caller's own timeout for the downstream call
        (``None``: none).
    :param metadata: the caller's own metadata for it.
    :param keys: which of the parent's metadata keys to pass on.
    :returns: ``(timeout, metadata)``: the smaller of ``timeout`` and what
        is left of the parent's deadline (``None`` if neither has one), and
        the caller's metadata (a later duplicate key wins) plus the parent's
        values for ``keys`` the caller did not set.
    :raises DeadlineExceeded: if the parent's deadline has passed: the
        downstream answer would come too late to be of use.
    :raises CancelledError: if the server has already given up on the parent.
    :raises TypeError: for metadata that is not text.
    """
    if parent.cancelled:
        raise CancelledError("the server gave up on the parent call; not sent")
    remaining = parent.time_remaining()
    if remaining is not None:
        if remaining <= 0:
            raise DeadlineExceeded("the parent call's deadline has passed; not sent")
        if timeout is None or remaining < timeout:
            timeout = remaining
    outgoing = dict(metadata_pairs(metadata))
    inherited = parent.metadata
    for key in keys:
        if key not in outgoing and key in inherited:
            outgoing[key] = inherited[key]
    return timeout, outgoing


def bind(parent: Call, deferred: Deferred[Any]) -> None:
    """
    Cancel ``deferred`` when the server gives up on ``parent``, and forget
    it once it fires: a parent that makes many calls holds none of the
    finished ones (``tests/test_propagation.py`` pins that).

    :param parent: the call being served.
    :param deferred: the downstream call's Deferred.
    """
    if deferred.called:
        return
    unsubscribe = parent.on_cancel(deferred.cancel)

    def forget(result: Any) -> Any:
        unsubscribe()
        return result

    deferred.addBoth(forget)
