"""
:class:`Router`: an :class:`~twisted_reqresp.interfaces.IResponder` that
dispatches each call to a function registered for its method name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from .._core.call import Call, ConnectionInfo, Reply
from .._core.errors import CodecError, StatusError
from .._core.status import StatusCode
from ..codecs import BYTES
from ..interfaces import ICodec, IResponder
from .builtins import RESERVED_PREFIX, MethodDescription, doc_of

__all__ = ["Router"]

_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class _Method:
    function: Callable[[Call], Any]
    codec: ICodec
    errors: tuple[tuple[type[BaseException], int], ...]
    kind: str = "unary"
    #: ``None``: the function's docstring.
    doc: str | None = None
    #: The request's and the response's JSON Schemas, for a typed method.
    schemas: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None
    #: A unary method with the BYTES codec: a unary call to it has no kind
    #: to check and nothing to decode (:meth:`Router.respond`'s shortcut;
    #: ``False`` takes the general path, which
    #: tests/test_fastpath_differential.py proves equal).
    plain: bool = False


@implementer(IResponder)
class Router:
    """
    Routes calls to functions by method name.

    Register functions with the :meth:`method` decorator or with
    :meth:`add`.  Each function takes a :class:`~twisted_reqresp.Call` whose
    ``body`` is the value the method's codec decoded, and returns the answer
    (a value for the codec to encode, or a :class:`~twisted_reqresp.Reply`),
    a Deferred of one, or is an ``async def`` function.

    A call to a method nobody registered is answered NOT_FOUND; a body the
    codec cannot decode is answered INVALID_ARGUMENT.

    One router may serve every connection; for per-connection state, see
    :class:`~twisted_reqresp.interfaces.IResponderFactory`.
    """

    def __init__(self) -> None:
        self._methods: dict[str, _Method] = {}

    def add(
        self,
        name: str,
        function: Callable[[Call], Any],
        *,
        codec: ICodec = BYTES,
        errors: Mapping[type[BaseException], int] | None = None,
        kind: str = "unary",
    ) -> None:
        """
        Register ``function`` as method ``name``.

        :param name: the method name callers use.
        :param function: called with a :class:`~twisted_reqresp.Call`.
        :param codec: decodes the request body and encodes the answer.
        :param errors: exception types the function may raise, mapped to the
            status each is answered with (its message is ``str(exception)``,
            but a ``KeyError``'s key without quotes, and the type's name if
            that is empty), like AMP's declared errors.  Anything else undeclared is logged
            and answered INTERNAL.
        :param kind: ``"unary"``, or a streaming call (``docs/guide.md``,
            "Streaming calls"): ``"server_stream"``, ``"client_stream"`` or
            ``"bidi_stream"``.  A streaming method reads and writes
            ``call.stream``, whose messages ``codec`` decodes and encodes;
            for ``server_stream`` and ``bidi_stream`` ``function`` may be an
            async generator function, each value it yields streamed with
            flow control, its end an OK final status with an empty body.
            A call of another kind is answered INVALID_ARGUMENT without
            running ``function``.
        :raises ValueError: if ``name`` is empty, contains whitespace, starts
            with ``reqresp.`` (reserved for the server's built-in methods),
            is already registered, or ``kind`` is not one of these.
        """
        self._add(name, function, codec=codec, errors=errors or {}, kind=kind)

    def _add(
        self,
        name: str,
        function: Callable[[Call], Any],
        *,
        codec: ICodec,
        errors: Mapping[Any, int],
        kind: str = "unary",
        doc: str | None = None,
        schemas: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None,
    ) -> None:
        """
        :meth:`add`, with what a typed service (``twisted_reqresp.service``)
        also says about a method: its kind, doc and JSON Schemas.
        """
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"method names are non-empty with no whitespace: {name!r}")
        if name.startswith(RESERVED_PREFIX):
            raise ValueError(
                f"method names starting with {RESERVED_PREFIX!r} are reserved for the "
                f"server's built-in methods: {name!r}"
            )
        if name in self._methods:
            raise ValueError(f"method {name!r} is already registered")
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {', '.join(_KINDS)}, not {kind!r}")
        if inspect.isasyncgenfunction(function):
            if kind not in ("server_stream", "bidi_stream"):
                raise ValueError(
                    f"method {name!r}: an async generator streams the server's messages, "
                    f"so its kind is server_stream or bidi_stream, not {kind}"
                )
            function = _streamed(function)
        declared = tuple((error, int(code)) for error, code in errors.items())
        plain = kind == "unary" and codec is BYTES
        self._methods[name] = _Method(function, codec, declared, kind, doc, schemas, plain)

    def method(
        self,
        name: str | None = None,
        *,
        codec: ICodec = BYTES,
        errors: Mapping[type[BaseException], int] | None = None,
        kind: str = "unary",
    ) -> Callable[[_F], _F]:
        """
        A decorator that registers a function; see :meth:`add`.

        :param name: the method name; the function's own name if omitted.
        :returns: the decorator, which returns the function unchanged.
        """

        def register(function: _F) -> _F:
            self.add(name or function.__name__, function, codec=codec, errors=errors, kind=kind)
            return function

        return register

    def methods(self) -> list[str]:
        """
        :returns: the registered method names, sorted.
        """
        return sorted(self._methods)

    def describe(self) -> list[MethodDescription]:
        """
        What the built-in method ``reqresp.methods`` lists for this router.

        :returns: one :class:`~twisted_reqresp.MethodDescription` per
            method, sorted by name: its codec's name, its kind (``"unary"``
            unless a typed service declared another), the function's
            docstring, and a typed method's JSON Schemas.
        """
        return [
            MethodDescription(
                name=name,
                codec=str(entry.codec.name),
                kind=entry.kind,
                doc=doc_of(entry.function) if entry.doc is None else entry.doc,
                request_schema=None if entry.schemas is None else entry.schemas[0],
                response_schema=None if entry.schemas is None else entry.schemas[1],
            )
            for name, entry in sorted(self._methods.items())
        ]

    # -- IResponder -------------------------------------------------------------

    def connection_made(self, connection: ConnectionInfo) -> None:
        """A router keeps no per-connection state: nothing to do."""

    def connection_lost(self, reason: Failure) -> None:
        """A router keeps no per-connection state: nothing to do."""

    def respond(self, call: Call) -> Any:
        """
        Dispatch ``call`` to the function registered for its method.

        :returns: bytes, a :class:`~twisted_reqresp.Reply` with bytes, or a
            Deferred of either.
        :raises StatusError: NOT_FOUND, INVALID_ARGUMENT, or what the
            function raised or declared.
        """
        entry = self._methods.get(call.method)
        if entry is None:
            raise StatusError(StatusCode.NOT_FOUND, f"unknown method {call.method!r}")
        if entry.plain and call.stream is None:
            # The common case, a unary BYTES method called unary: nothing
            # below the else has anything to do (test_router_shortcut in
            # tests/test_fastpath_differential.py proves it).
            codec: ICodec = BYTES
        else:
            codec = entry.codec
            decode = codec is not BYTES
            stream = call.stream
            if stream is not None or entry.kind != "unary":
                called = "unary" if stream is None else stream.kind
                if called != entry.kind:
                    if call._line:
                        raise StatusError(
                            StatusCode.UNIMPLEMENTED,
                            f"method {call.method!r} streams: use the binary format",
                        )
                    raise StatusError(
                        StatusCode.INVALID_ARGUMENT,
                        f"method {call.method!r} is {entry.kind}; called as {called}",
                    )
                if decode:
                    stream.use_codec(codec)
                    if not call.body and entry.kind in ("client_stream", "bidi_stream"):
                        # Their requests are the stream's messages: a call with
                        # no body of its own has no value to decode.
                        decode = False
                        call = call.with_body(None)
            if decode:
                try:
                    call = call.with_body(codec.decode(call.body))
                except CodecError as e:
                    raise StatusError(StatusCode.INVALID_ARGUMENT, str(e)) from e
        try:
            result = entry.function(call)
        except Exception as e:
            translated = _translate(e, entry.errors)
            if translated is e:
                raise
            raise translated from e
        if type(result) is bytes and codec is BYTES:
            return result  # answered without further checks
        return _settle(result, codec, entry.errors)


_KINDS = ("unary", "server_stream", "client_stream", "bidi_stream")

#: What a streamed async generator's end answers: an empty body, whatever
#: the codec (no value to encode).
_EMPTY_END: Any = object()


def _streamed(function: Callable[[Call], Any]) -> Callable[[Call], Any]:
    """
    An async generator function as a streaming responder: each value it
    yields is sent on ``call.stream`` with flow control (encoded by the
    method's codec), and its end is the final status.
    """

    async def respond(call: Call) -> Any:
        messages = function(call)
        try:
            async for value in messages:
                await call.stream.send(value)
        finally:
            # Cancelled or failed mid-stream: run the generator's own
            # finally blocks now, not when it is collected.
            await messages.aclose()
        return _EMPTY_END

    respond.__wrapped__ = function  # type: ignore[attr-defined]
    respond.__doc__ = function.__doc__
    return respond


def _settle(result: Any, codec: ICodec, errors: tuple[tuple[type[BaseException], int], ...]) -> Any:
    """
    What a method function returned, as the answer: a coroutine run as a
    Deferred, a value encoded by ``codec`` (now or when its Deferred fires),
    and declared errors translated.
    """
    if inspect.iscoroutine(result):
        result = Deferred.fromCoroutine(result)
    if isinstance(result, Deferred):
        result.addCallback(_encode, codec)
        if errors:
            result.addErrback(_translate_failure, errors)
        return result
    return _encode(result, codec)


def _encode(result: Any, codec: ICodec) -> Any:
    if result is _EMPTY_END:
        return b""
    if isinstance(result, Reply):
        return Reply(body=codec.encode(result.body), metadata=result.metadata)
    return codec.encode(result)


def _translate(
    error: Exception, declared: tuple[tuple[type[BaseException], int], ...]
) -> Exception:
    if not isinstance(error, StatusError):
        for kind, code in declared:
            if isinstance(error, kind):
                return StatusError(code, _message(error))
    return error


def _message(error: Exception) -> str:
    """
    The message a declared exception is answered with: ``str(error)``, but
    a ``KeyError``'s key as it is, not its ``repr`` (``str(KeyError("ada"))``
    is ``"'ada'"``, which the peer would show as ``NOT_FOUND: 'ada'``), and
    the type's name when there is no text at all.

    :param error: a declared exception.
    :returns: its message, as ``docs/guide.md`` ("Router") describes.
    """
    if isinstance(error, KeyError) and len(error.args) == 1:
        text = str(error.args[0])
    else:
        text = str(error)
    return text or type(error).__name__


def _translate_failure(
    failure: Failure, declared: tuple[tuple[type[BaseException], int], ...]
) -> Failure:
    error = failure.value
    if isinstance(error, Exception):
        translated = _translate(error, declared)
        if translated is not error:
            return Failure(translated)
    return failure
