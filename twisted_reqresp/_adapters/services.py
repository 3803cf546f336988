"""
Typed service contracts: a :class:`Service` class declares methods once,
in a module both sides import; the server implements them, the client calls
them through a stub made from the same class, and mypy checks both.

The declaration is the contract, as AMP's ``Command`` classes are: each
method's wire name (``service.method``), its kind, its request and response
types and its declared errors.  A streaming method's messages are of its
declared types: a server-streaming method takes one request and streams
responses; a client-streaming one takes a stream of requests and answers
one response; a bidirectional one streams both ways (``docs/guide.md``,
"Streaming calls").
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from enum import StrEnum
from typing import Any, ClassVar, Generic, Protocol, Self, TypeAlias, TypeVar, overload

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from .._core.call import Call, Reply
from .._core.errors import RemoteError, StatusError
from .._core.status import APPLICATION_MIN, STATUS_MAX, StatusCode
from ..interfaces import ICodec
from .builtins import RESERVED_PREFIX, doc_of
from .router import _EMPTY_END, Router
from .streams import StreamingCall
from .typed import ENCODINGS, TypedCodec, check_type, is_struct, json_schema

__all__ = [
    "BidiStreamMethod",
    "Caller",
    "ClientStreamMethod",
    "Implementation",
    "Method",
    "MethodKind",
    "ServerStreamMethod",
    "Service",
    "UnaryMethod",
    "UnaryStub",
    "bidi_stream",
    "client_stream",
    "server_stream",
    "unary",
]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")

#: What an implementation of a unary method returns: the response, a
#: :class:`~twisted_reqresp.Reply` whose body is one (to send metadata), or
#: an awaitable (a coroutine, a Deferred) of either.
Answer: TypeAlias = "RespT | Reply | Awaitable[RespT | Reply] | Deferred[RespT | Reply]"


class MethodKind(StrEnum):
    """How a method is called, as ``reqresp.methods`` reports it."""

    #: One request, one response.
    UNARY = "unary"
    #: One request, a stream of responses.
    SERVER_STREAM = "server_stream"
    #: A stream of requests, one response.
    CLIENT_STREAM = "client_stream"
    #: A stream each way.
    BIDI_STREAM = "bidi_stream"


class Caller(Protocol):
    """
    What a stub calls through: a :class:`~twisted_reqresp.Client`, or
    a :class:`~twisted_reqresp.Channel`, or anything with the same ``call``
    method.
    """

    def call(
        self,
        method: str,
        body: Any = ...,
        *,
        codec: ICodec | None = ...,
        timeout: float | None = ...,
        metadata: Mapping[str, str] | Iterable[tuple[str, str]] | None = ...,
        parent: Call | None = ...,
    ) -> Deferred[Reply]:
        """Call ``method``; see :meth:`twisted_reqresp.Client.call`."""

    def stream(
        self,
        method: str,
        body: Any = ...,
        *,
        kind: str = ...,
        codec: ICodec | None = ...,
        result_codec: ICodec | None = ...,
        timeout: float | None = ...,
        metadata: Mapping[str, str] | Iterable[tuple[str, str]] | None = ...,
        parent: Call | None = ...,
    ) -> StreamingCall[Any, Any]:
        """Open a streaming call; see :meth:`twisted_reqresp.Client.stream`."""


class Method(Generic[ReqT, RespT]):
    """
    One declared method of a :class:`Service`; made by :func:`unary`,
    :func:`server_stream`, :func:`client_stream` or :func:`bidi_stream`.

    :ivar request: the request type.
    :ivar response: the response type.
    :ivar errors: the declared errors: exception class -> status code.
    :ivar doc: what it does, for ``reqresp.methods``.
    :ivar name: its attribute name in the service (``"add"``).
    :ivar service: the :class:`Service` class that declares it.
    """

    #: How it is called.
    kind: ClassVar[MethodKind]

    def __init__(
        self,
        request: type[ReqT],
        response: type[RespT],
        *,
        errors: Mapping[type[Exception], int] | None = None,
        doc: str = "",
    ) -> None:
        self.request = request
        self.response = response
        self.errors: dict[type[Exception], int] = {}
        self._by_code: dict[int, type[Exception]] = {}
        for kind, code in (errors or {}).items():
            if not (isinstance(kind, type) and issubclass(kind, Exception)):
                raise TypeError(f"declared errors are exception classes, not {kind!r}")
            if issubclass(kind, StatusError):
                raise TypeError(f"{kind.__name__} is a StatusError: it carries its own code")
            code = _check_code(code, kind)
            if code in self._by_code:
                raise TypeError(
                    f"{kind.__name__} and {self._by_code[code].__name__} are both declared "
                    f"with status {code}: a caller could not tell them apart"
                )
            self.errors[kind] = code
            self._by_code[code] = kind
        self.doc = doc
        self.name = ""
        self.service: type[Service] | None = None

    @property
    def full_name(self) -> str:
        """The method's name on the wire: ``service.method`` (``"calc.add"``)."""
        service = self.service.__service_name__ if self.service is not None else "?"
        return f"{service}.{self.name}"

    def _bind(self, service: type[Service], name: str, encoding: str) -> None:
        if self.service is not None:
            raise TypeError(f"{self.full_name} is also declared as {service.__name__}.{name}")
        for side, kind in (("request", self.request), ("response", self.response)):
            if not is_struct(kind):
                check_type(kind, f"{service.__service_name__}.{name} {side}")
        self.service = service
        self.name = name
        self.encoding = encoding
        # A server decodes requests and encodes responses; a client the other way.
        self.server_codec: ICodec = TypedCodec(self.response, self.request, encoding)
        self.client_codec: ICodec = TypedCodec(self.request, self.response, encoding)

    def schemas(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """:returns: the JSON Schemas of the request and of the response."""
        return json_schema(self.request), json_schema(self.response)

    def _remote_error(self, failure: Failure) -> Failure:
        """A declared error answered by the server becomes its exception class again."""
        error = failure.value
        if isinstance(error, RemoteError):
            kind = self._by_code.get(int(error.code))
            if kind is not None:
                try:
                    translated = kind(error.message)
                except Exception:
                    return failure  # its constructor wants more: the RemoteError says it all
                translated.__cause__ = error
                return Failure(translated)
        return failure

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.full_name}: "
            f"{self.request.__name__} -> {self.response.__name__}>"
        )


class UnaryMethod(Method[ReqT, RespT]):
    """A unary method: one request, one response."""

    kind = MethodKind.UNARY

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, instance: Service, owner: type[Any]) -> UnaryStub[ReqT, RespT]: ...
    def __get__(self, instance: Service | None, owner: type[Any]) -> Self | UnaryStub[ReqT, RespT]:
        """
        On the class, the declaration; on a stub instance, the bound method
        that calls it (kept in the instance, so it is made once).
        """
        if instance is None:
            return self
        stub = UnaryStub(self, instance._channel)
        instance.__dict__[self.name] = stub
        return stub

    def implement(
        self, function: Callable[[ReqT, Call], Answer[RespT]]
    ) -> Implementation[ReqT, RespT]:
        """
        Declare ``function`` the implementation of this method, typed so
        that mypy checks it against the declaration.  Use it as a decorator
        (``@Calculator.add.implement``) or call it (on a bound method, say),
        and give the result to :meth:`Service.router`.

        :param function: called with the decoded request and the
            :class:`~twisted_reqresp.Call`; returns the response, a
            :class:`~twisted_reqresp.Reply` of one, or an awaitable of
            either (``async def`` works).  A declared exception it raises
            is answered with its status and ``str(exception)``; anything
            else undeclared is logged and answered INTERNAL.
        :returns: the implementation, still callable as ``function`` was.
        """
        return Implementation(self, function)


#: What a streaming implementation returns: a server-streaming or
#: bidirectional one an async generator of responses, or nothing (after
#: writing to ``call.stream``); a client-streaming one the response, as a
#: unary one does.
StreamAnswer: TypeAlias = (
    "AsyncIterator[RespT] | RespT | Reply | Awaitable[RespT | Reply | None] | None"
)


class _Streaming(Method[ReqT, RespT]):
    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, instance: Service, owner: type[Any]) -> StreamStub[ReqT, RespT]: ...
    def __get__(self, instance: Service | None, owner: type[Any]) -> Self | StreamStub[ReqT, RespT]:
        """On the class, the declaration; on a stub, the bound method that opens the call."""
        if instance is None:
            return self
        stub = StreamStub(self, instance._channel)
        instance.__dict__[self.name] = stub
        return stub

    def implement(
        self, function: Callable[[Any, Call], StreamAnswer[RespT]]
    ) -> Implementation[ReqT, RespT]:
        """
        Declare ``function`` the implementation of this streaming method
        (see :meth:`UnaryMethod.implement`).  It is called with the decoded request
        (``None`` for a client-streaming or bidirectional method, whose
        requests are the messages of ``call.stream``) and the
        :class:`~twisted_reqresp.Call`.  A server-streaming or bidirectional
        implementation may be an async generator, each response it yields
        streamed with flow control, or write to ``call.stream`` itself; a
        client-streaming one returns the response.
        """
        return Implementation(self, function)


class ServerStreamMethod(_Streaming[ReqT, RespT]):
    """A server-streaming method: one request, a stream of responses."""

    kind = MethodKind.SERVER_STREAM


class ClientStreamMethod(_Streaming[ReqT, RespT]):
    """A client-streaming method: a stream of requests, one response."""

    kind = MethodKind.CLIENT_STREAM


class BidiStreamMethod(_Streaming[ReqT, RespT]):
    """A bidirectional streaming method: requests and responses both streamed."""

    kind = MethodKind.BIDI_STREAM


@implementer(ICodec)
class _NoValue:
    """The final answer of a method that streams its responses: no value
    (``None``), whatever the body encoding."""

    name = "none"

    def encode(self, value: Any) -> bytes:
        """:returns: no bytes."""
        return b""

    def decode(self, data: bytes) -> None:
        """:returns: ``None``."""
        return None


class StreamStub(Generic[ReqT, RespT]):
    """
    A streaming method bound to a channel: what ``Calculator(client).count``
    is.

    :param method: the declaration.
    :param channel: what it calls through.
    """

    def __init__(self, method: _Streaming[ReqT, RespT], channel: Caller) -> None:
        self.method = method
        self._channel = channel

    def __call__(
        self,
        request: ReqT | None = None,
        /,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        parent: Call | None = None,
    ) -> StreamingCall[ReqT, RespT]:
        """
        Open the call.  Never raises: problems fail its reads and ``result()``.

        :param request: a server-streaming method's request, of the declared
            type; the others take none (their requests are the messages
            sent with :meth:`~twisted_reqresp.StreamingCall.send`).
        :returns: the :class:`~twisted_reqresp.StreamingCall`: its messages
            are responses of the declared type, ``send`` takes requests of
            it (so typed: ``StreamingCall[ReqT, RespT]``), and ``result()`` fires with a
            :class:`~twisted_reqresp.Reply` whose body is the response (a
            client-streaming method) or ``None``.  A declared error fails
            them with its exception class.
        """
        method = self.method
        streams_responses = method.kind is not MethodKind.CLIENT_STREAM
        args: tuple[Any, ...] = () if request is None else (request,)
        call = self._channel.stream(
            method.full_name,
            *args,
            kind=method.kind.value,
            codec=method.client_codec,
            result_codec=_NoValue() if streams_responses else None,
            timeout=timeout,
            metadata=metadata,
            parent=parent,
        )
        if method.errors:
            call._translate = method._remote_error
        return call

    def __repr__(self) -> str:
        return f"<StreamStub {self.method.full_name} over {self._channel!r}>"


def _check_code(code: object, kind: type[Exception]) -> int:
    if isinstance(code, StatusCode):
        if code in (StatusCode.OK, StatusCode.PROTOCOL_ERROR):
            raise TypeError(f"{kind.__name__}: {code.name} is not an error status for a call")
        return int(code)
    if isinstance(code, int) and not isinstance(code, bool):
        if APPLICATION_MIN <= code <= STATUS_MAX:
            return code
        if code in StatusCode._value2member_map_:
            return _check_code(StatusCode(code), kind)
    raise TypeError(
        f"{kind.__name__}: a declared error's status is a StatusCode or an application "
        f"code from {APPLICATION_MIN} to {STATUS_MAX}, not {code!r}"
    )


def unary(
    request: type[ReqT],
    response: type[RespT],
    *,
    errors: Mapping[type[Exception], int] | None = None,
    doc: str = "",
) -> UnaryMethod[ReqT, RespT]:
    """
    Declare a unary method in a :class:`Service` class body.

    :param request: the request type: a dataclass (or another type the JSON
        codec carries), or a msgspec ``Struct``.
    :param response: the response type, likewise.
    :param errors: exception classes the implementation may raise, mapped
        to the status each is answered with (a :class:`~twisted_reqresp.StatusCode`
        or an application code, 1000 and above); the caller's stub raises
        the same class with the same message.
    :param doc: what it does, for ``reqresp.methods``.
    :returns: the declaration.
    :raises TypeError: for an error that is not an exception class, a status
        that cannot be declared, or two errors with one status.
    """
    return UnaryMethod(request, response, errors=errors, doc=doc)


def server_stream(
    request: type[ReqT],
    response: type[RespT],
    *,
    errors: Mapping[type[Exception], int] | None = None,
    doc: str = "",
) -> ServerStreamMethod[ReqT, RespT]:
    """
    Declare a server-streaming method (one request, a stream of
    ``response`` messages); see :func:`unary`.
    """
    return ServerStreamMethod(request, response, errors=errors, doc=doc)


def client_stream(
    request: type[ReqT],
    response: type[RespT],
    *,
    errors: Mapping[type[Exception], int] | None = None,
    doc: str = "",
) -> ClientStreamMethod[ReqT, RespT]:
    """
    Declare a client-streaming method (a stream of ``request`` messages,
    one response); see :func:`server_stream`.
    """
    return ClientStreamMethod(request, response, errors=errors, doc=doc)


def bidi_stream(
    request: type[ReqT],
    response: type[RespT],
    *,
    errors: Mapping[type[Exception], int] | None = None,
    doc: str = "",
) -> BidiStreamMethod[ReqT, RespT]:
    """
    Declare a bidirectional streaming method; see :func:`server_stream`.
    """
    return BidiStreamMethod(request, response, errors=errors, doc=doc)


class UnaryStub(Generic[ReqT, RespT]):
    """
    A unary method bound to a channel: what ``Calculator(client).add`` is.

    :param method: the declaration.
    :param channel: what it calls through.
    """

    def __init__(self, method: UnaryMethod[ReqT, RespT], channel: Caller) -> None:
        self.method = method
        self._channel = channel

    def __call__(
        self,
        request: ReqT,
        /,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        parent: Call | None = None,
    ) -> Deferred[RespT]:
        """
        Call the method.  Never raises: every problem is the Deferred's failure.

        :param request: the request, of the declared type.
        :param timeout: seconds to wait (the channel's default if omitted).
        :param metadata: key/value text pairs sent with the request.
        :param parent: the call a responder is serving, when it makes this
            one on its behalf (its deadline, cancellation and trace metadata
            travel on: see :meth:`~twisted_reqresp.Client.call`).
        :returns: a Deferred firing with the response, of the declared type,
            or failing with the declared exception the server raised (with
            its message), :class:`~twisted_reqresp.RemoteError` for any other
            error status, :class:`~twisted_reqresp.CodecError` for a request
            or an answer that does not match its type (naming the path), or
            as :meth:`~twisted_reqresp.Client.call` fails.
        """
        method = self.method
        d = self._channel.call(
            method.full_name,
            request,
            codec=method.client_codec,
            timeout=timeout,
            metadata=metadata,
            parent=parent,
        )
        result: Deferred[RespT] = d.addCallback(_body)
        if method.errors:
            result.addErrback(method._remote_error)
        return result

    def __repr__(self) -> str:
        return f"<UnaryStub {self.method.full_name} over {self._channel!r}>"


def _body(reply: Reply) -> Any:
    return reply.body


class Implementation(Generic[ReqT, RespT]):
    """
    A function declared to implement a unary method (see
    :meth:`UnaryMethod.implement`); calling it calls the function.

    :ivar method: the declaration it implements.
    :ivar function: the function.
    """

    def __init__(self, method: Method[ReqT, RespT], function: Callable[[Any, Call], Any]) -> None:
        self.method = method
        self.function = function
        self.__doc__ = function.__doc__

    def __call__(self, request: ReqT, call: Call) -> Any:
        """Call the function (so that a test can call an implementation directly)."""
        return self.function(request, call)

    def __repr__(self) -> str:
        return f"<Implementation of {self.method.full_name}: {self.function!r}>"


#: Attribute names a service cannot declare a method under: Service's own.
_TAKEN = frozenset({"router", "declarations"})


class Service:
    """
    The base of a service contract.  Declare one as a class::

        class Calculator(Service, name="calc"):
            add = unary(AddRequest, AddResponse, errors={Overflow: 1001})
            count = server_stream(CountRequest, CountItem)

    Its methods are called ``calc.add`` and ``calc.count`` on the wire.

    - On the server, :meth:`router` checks implementations against the
      declaration and makes a :class:`~twisted_reqresp.Router`.
    - On the client, ``Calculator(client)`` is a stub:
      ``await Calculator(client).add(AddRequest(a=1, b=2))`` is an ``AddResponse``.

    Class keywords: ``name``, the service name (the class's name if
    omitted); ``encoding``, ``"json"`` (the default) or ``"msgpack"`` (needs
    the ``msgspec`` extra).

    :param channel: what the stub calls through: a
        :class:`~twisted_reqresp.Client` or anything with its ``call``.
    """

    #: The service name: the first part of each method's wire name.
    __service_name__: ClassVar[str] = ""
    #: The body encoding of every method.
    __encoding__: ClassVar[str] = "json"
    #: The declared methods by attribute name, in declaration order.
    __declarations__: ClassVar[Mapping[str, Method[Any, Any]]] = {}

    def __init_subclass__(
        cls, *, name: str | None = None, encoding: str = "json", **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__declarations__:
            raise TypeError(
                f"{cls.__name__}: a service ({cls.__service_name__}) cannot be subclassed; "
                f"declare a new Service"
            )
        service_name = cls.__name__ if name is None else name
        if not service_name or any(c.isspace() for c in service_name):
            raise TypeError(f"a service name is non-empty with no whitespace: {service_name!r}")
        if f"{service_name}.".startswith(RESERVED_PREFIX):
            raise TypeError(
                f"the service name {service_name!r} is reserved for the server's built-in methods"
            )
        if encoding not in ENCODINGS:
            raise TypeError(f"a service's encoding is one of {', '.join(ENCODINGS)}: {encoding!r}")
        cls.__service_name__ = service_name
        cls.__encoding__ = encoding
        declared: dict[str, Method[Any, Any]] = {}
        for attr, value in vars(cls).items():
            if not isinstance(value, Method):
                continue
            if attr.startswith("_") or attr in _TAKEN:
                raise TypeError(
                    f"{cls.__name__}.{attr}: a method cannot be named {attr!r} "
                    f"(names starting with '_' and {', '.join(sorted(_TAKEN))} are the Service's)"
                )
            value._bind(cls, attr, encoding)
            declared[attr] = value
        cls.__declarations__ = declared

    def __init__(self, channel: Caller) -> None:
        if not type(self).__declarations__ and type(self) is Service:
            raise TypeError("declare a service as a subclass of Service, then make stubs of it")
        self._channel = channel

    @classmethod
    def declarations(cls) -> list[Method[Any, Any]]:
        """:returns: the declared methods, in declaration order."""
        return list(cls.__declarations__.values())

    @classmethod
    def router(
        cls, *implementations: Implementation[Any, Any], router: Router | None = None
    ) -> Router:
        """
        Check implementations against the declaration and serve them.

        Every unary method needs exactly one implementation; the streaming
        methods need none yet, and are answered UNIMPLEMENTED.

        :param implementations: what :meth:`UnaryMethod.implement` returned, one
            per unary method, in any order.
        :param router: a router to add the methods to (a new one if
            omitted), so one router can serve several services.
        :returns: the router: an :class:`~twisted_reqresp.interfaces.IResponder`
            for a :class:`~twisted_reqresp.ServerFactory` or ``twistd
            reqresp --responder``.
        :raises TypeError: naming the method, if one is missing, implemented
            twice, or not a method of this service (an extra one), or an
            argument is not an implementation.
        """
        given: dict[str, Implementation[Any, Any]] = {}
        for implementation in implementations:
            if not isinstance(implementation, Implementation):
                raise TypeError(
                    f"{cls.__name__}.router() takes implementations "
                    f"(@{cls.__name__}.METHOD.implement), not {implementation!r}"
                )
            method = implementation.method
            if method.service is not cls:
                raise TypeError(
                    f"{implementation!r} implements {method.full_name}, which is not a method "
                    f"of service {cls.__service_name__} (its methods: {_names(cls)})"
                )
            if method.name in given:
                raise TypeError(f"{method.full_name} is implemented twice")
            given[method.name] = implementation
        missing = [m.full_name for m in cls.declarations() if m.name not in given]
        if missing:
            raise TypeError(
                f"service {cls.__service_name__} is missing an implementation of "
                f"{', '.join(missing)}"
            )
        router = router if router is not None else Router()
        for declared in cls.declarations():
            schemas = declared.schemas()
            if isinstance(declared, UnaryMethod):
                function = given[declared.name].function
                router._add(
                    declared.full_name,
                    _responder_function(function),
                    codec=declared.server_codec,
                    errors=declared.errors,
                    kind=declared.kind.value,
                    doc=declared.doc or doc_of(function),
                    schemas=schemas,
                )
            elif isinstance(declared, _Streaming):
                function = given[declared.name].function
                router._add(
                    declared.full_name,
                    _streaming_function(function),
                    codec=declared.server_codec,
                    errors=declared.errors,
                    kind=declared.kind.value,
                    doc=declared.doc or doc_of(function),
                    schemas=schemas,
                )
        return router


def _names(service: type[Service]) -> str:
    return ", ".join(service.__declarations__) or "none"


def _responder_function(function: Callable[[Any, Call], Any]) -> Callable[[Call], Any]:
    def respond(call: Call) -> Any:
        return function(call.body, call)

    return respond


def _streaming_function(function: Callable[[Any, Call], Any]) -> Callable[[Call], Any]:
    """A streaming implementation as a router function: an async generator
    stays one (the router streams what it yields); a plain function that
    returns nothing answers with no value."""
    if inspect.isasyncgenfunction(function):

        async def messages(call: Call) -> AsyncIterator[Any]:
            async for value in function(call.body, call):
                yield value

        return messages

    def respond(call: Call) -> Any:
        result = function(call.body, call)
        if inspect.iscoroutine(result):
            result = Deferred.fromCoroutine(result)
        if isinstance(result, Deferred):
            return result.addCallback(_no_value)
        return _no_value(result)

    return respond


def _no_value(result: Any) -> Any:
    return _EMPTY_END if result is None else result
