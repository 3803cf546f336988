"""
Interceptor chains, server side and client side, composed in one place.

Theory of operation (gRPC's interceptors, Finagle's ``Filter.andThen``):

- A chain is a list ``[a, b, c]`` and an innermost function (the
  responder's ``respond``, or the client's send).  ``a`` is outermost: it
  gets the call first, and calls ``proceed(call)`` to hand it to ``b``,
  and so on down to the innermost function.  ``proceed`` always returns a
  Deferred, whatever the next step returned or raised, so every
  interceptor handles one shape of result.
- An interceptor that does not call ``proceed`` answers (or, raising,
  refuses) by itself; one that calls it with ``dataclasses.replace(call,
  ...)`` changes what the rest of the chain sees.
- With no interceptors, :func:`compose_server` returns the responder's
  ``respond`` itself and :func:`compose_client` returns ``None``: the hot
  path is the same code as before interceptors existed
  (``tests/test_interceptors.py`` compares the bytes out).
- Cancellation flows inward: the server cancels the Deferred the outermost
  interceptor returned (a CANCEL, a lost connection, the deadline), and an
  interceptor that returns the Deferred ``proceed`` gave it (with callbacks
  added) passes that on to the responder's Deferred.  The deadline is also
  set on the innermost Deferred, so interceptors see DEADLINE_EXCEEDED, not
  a bare cancellation, when it passes.
- The chain wraps the user's responder only (``ServerProtocol._respond``):
  the server's built-in ``reqresp.`` methods are meant to be answered
  before it, so that an authorization interceptor cannot refuse a load
  balancer's health check and the access log and metrics count only the
  application's calls.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.defer import TimeoutError as DeferTimeout
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface.interface import InterfaceClass

from .._core.call import Call, OutgoingCall, Reply
from .._core.errors import StatusError
from .._core.status import StatusCode, status_name
from ..interfaces import IClientInterceptor, IServerInterceptor
from .giveup import cancel_at_deadline

__all__ = [
    "ClientChain",
    "Outcome",
    "compose_client",
    "compose_server",
    "error_status",
    "interceptor_function",
]

#: The responder's side of a server chain: ``respond(call)`` and what it returns.
Respond = Callable[[Call], Any]
#: The sending side of a client chain.
ClientChain = Callable[[OutgoingCall], "Deferred[Reply]"]


def error_status(error: BaseException | None) -> tuple[int, str]:
    """
    The status and message the server answers a failed call with (a
    :class:`StatusError` also carries ``retry_safe`` and ``details``).

    :param error: what the responder or an interceptor raised.
    :returns: ``(code, message)``; INTERNAL for anything undeclared.
    """
    if isinstance(error, StatusError):
        return error.code, error.message
    if isinstance(error, DeferTimeout):
        return StatusCode.DEADLINE_EXCEEDED, "deadline exceeded"
    if isinstance(error, CancelledError):
        return StatusCode.CANCELLED, "cancelled by the server"
    return StatusCode.INTERNAL, "internal error"


def _body_size(body: Any) -> int | None:
    return len(body) if isinstance(body, bytes) else None


@dataclass(frozen=True, kw_only=True, slots=True)
class Outcome:
    """
    How a call ended, read from what ``proceed(call)``'s Deferred fired
    with: the status the server answers with, and the answer's size.

    In a server interceptor::

        def observe(result):
            outcome = Outcome.of(result)
            print(outcome.status, outcome.response_bytes)
            return result  # pass it on unchanged

        return proceed(call).addBoth(observe)

    A call the client cancelled reads as CANCELLED, one past its deadline
    as DEADLINE_EXCEEDED.  Measure the duration with the clock: note
    ``clock.seconds()`` before calling ``proceed``.
    """

    #: The status code (``0``, OK, for an answer).
    code: int
    #: The error's message; empty for an answer.
    message: str = ""
    #: The answer body's length in bytes: ``0`` for an error (its answer
    #: has no body), ``None`` for a body that is not bytes yet (the server
    #: encodes it after the chain; a :class:`~twisted_reqresp.Router`
    #: always answers bytes).
    response_bytes: int | None = 0
    #: The exception, for a failure.
    error: BaseException | None = None

    @property
    def status(self) -> str:
        """The status's name, such as ``"OK"`` or ``"NOT_FOUND"``."""
        return status_name(self.code)

    @property
    def ok(self) -> bool:
        """Whether the call was answered successfully."""
        return self.error is None

    @classmethod
    def of(cls, result: Any) -> Outcome:
        """
        :param result: what ``proceed(call)``'s Deferred fired with: a
            result (bytes, a value, a :class:`~twisted_reqresp.Reply`) or a
            :class:`~twisted.python.failure.Failure`.
        :returns: the outcome.
        """
        if isinstance(result, Failure):
            error = result.value
            code, message = error_status(error)
            return cls(code=code, message=message, error=error)
        body = result.body if isinstance(result, Reply) else result
        return cls(code=StatusCode.OK, response_bytes=_body_size(body))


def interceptor_function(interceptor: object, interface: InterfaceClass) -> Callable[..., Any]:
    """
    :param interceptor: a provider of ``interface`` or a plain callable.
    :param interface: :class:`IServerInterceptor` or :class:`IClientInterceptor`.
    :returns: the function to call as ``f(call, proceed)``.
    :raises TypeError: if ``interceptor`` is neither.
    """
    if interface.providedBy(interceptor):
        return interceptor.intercept  # type: ignore[no-any-return, unused-ignore]
    if callable(interceptor):
        return interceptor
    raise TypeError(
        f"{interceptor!r} is not an interceptor: it neither provides "
        f"{interface.__name__} nor is a callable f(call, proceed)"
    )


def _invoke(function: Callable[[Any], Any], call: Any) -> Deferred[Any]:
    """Run one step of a chain; whatever it returns or raises, a Deferred."""
    try:
        result = function(call)
    except BaseException:
        return fail()
    if isinstance(result, Deferred):
        return result
    if inspect.iscoroutine(result):
        return Deferred.fromCoroutine(result)
    return succeed(result)


def _link(
    intercept: Callable[..., Any], proceed: Callable[[Any], Deferred[Any]]
) -> Callable[[Any], Any]:
    return lambda call: intercept(call, proceed)


def _proceed_to(step: Callable[[Any], Any]) -> Callable[[Any], Deferred[Any]]:
    return lambda call: _invoke(step, call)


def compose_server(
    interceptors: Sequence[object], respond: Respond, clock: IReactorTime
) -> Respond:
    """
    Wrap ``respond`` in ``interceptors``, the first outermost.

    :param interceptors: :class:`IServerInterceptor` providers or plain
        callables ``f(call, proceed)``.
    :param respond: the responder's ``respond``.
    :param clock: the clock for the call's deadline on the innermost
        Deferred.
    :returns: ``respond`` itself when there are no interceptors; otherwise
        a function of a call returning what the outermost interceptor
        returns (the server accepts anything a responder may return).
    :raises TypeError: if one of ``interceptors`` is not an interceptor.
    """
    if not interceptors:
        return respond
    functions = [interceptor_function(i, IServerInterceptor) for i in interceptors]

    def innermost(call: Call) -> Deferred[Any]:
        d = _invoke(respond, call)
        remaining = call.time_remaining()
        if remaining is not None and not d.called:
            # Timed out here, the Deferred fails with TimeoutError on its way
            # out through every interceptor (DEADLINE_EXCEEDED), rather than
            # with the CancelledError the server's own timeout on the
            # outermost Deferred would send through them.  The call hears
            # it first (call.cancelled, call.on_cancel).
            cancel_at_deadline(d, remaining, clock, call._cancellation)
        return d

    step: Callable[[Any], Any] = innermost
    for function in reversed(functions):
        step = _link(function, _proceed_to(step))
    return step


def compose_client(
    interceptors: Sequence[object] | None, send: Callable[[OutgoingCall], Deferred[Reply]]
) -> ClientChain | None:
    """
    Wrap ``send`` in ``interceptors``, the first outermost.

    :param interceptors: :class:`IClientInterceptor` providers or plain
        callables ``f(call, proceed)``.
    :param send: sends an :class:`OutgoingCall`; never raises.
    :returns: ``None`` when there are no interceptors (the client calls
        the protocol directly); otherwise a function of an outgoing call
        that returns a Deferred and never raises.
    :raises TypeError: if one of ``interceptors`` is not an interceptor.
    """
    if not interceptors:
        return None
    functions = [interceptor_function(i, IClientInterceptor) for i in interceptors]
    step: Callable[[OutgoingCall], Any] = send
    for function in reversed(functions):
        step = _link(function, _proceed_to(step))
    outermost = step
    return lambda call: _invoke(outermost, call)
