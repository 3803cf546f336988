"""
The client API: :class:`Client` (what users call), :class:`ClientFactory`
and :func:`connect`.  The protocol underneath is in ``_adapters/client_protocol.py``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IAddress, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from .._core.binary import BinaryFormat
from .._core.call import Call, OutgoingCall, Reply, metadata_pairs
from .._core.contract import IWireFormat
from .._core.events import Settings
from .._core.limits import DEFAULT_LIMITS, Limits
from ..codecs import BYTES
from ..interfaces import IClientInterceptor, ICodec
from .client_protocol import ClientProtocol
from .interceptors import ClientChain, compose_client, interceptor_function
from .propagation import PROPAGATED_METADATA, bind, inherit
from .streams import StreamingCall
from .tls import require_tls_support

__all__ = [
    "Client",
    "ClientFactory",
    "connect",
    "decode_replies",
    "encode_body",
    "metadata_keys",
    "open_stream",
    "send_outgoing",
    "start_call",
]

#: ``Client.call``'s default body: nothing at all, not an encoded value.
_NO_BODY: Any = object()


class ClientFactory(Factory):
    """
    Builds :class:`ClientProtocol` instances for an endpoint's ``connect``.

    :param wire: the wire format.
    :param limits: what the client accepts from the server.
    :param clock: the clock for timeouts.
    """

    def __init__(self, *, wire: IWireFormat, limits: Limits, clock: IReactorTime) -> None:
        self.wire = wire
        self.limits = limits
        self.clock = clock

    def buildProtocol(self, addr: IAddress | None) -> ClientProtocol:
        """:returns: a new :class:`ClientProtocol`."""
        protocol = ClientProtocol(wire=self.wire, limits=self.limits, clock=self.clock)
        protocol.factory = self
        return protocol


class Client:
    """
    A connection to a server, for making calls.  Get one from
    :func:`connect` (or from :func:`twisted_reqresp.testing.connected_pair`
    in tests).

    Many calls may be in flight at once on one client; with the binary wire
    format their answers may come in any order.

    :param protocol: the connected :class:`ClientProtocol`.
    :param codec: the default codec for call bodies and answers.
    :param timeout: the default timeout of a call, in seconds (``None``: no
        timeout).
    :param interceptors: :class:`~twisted_reqresp.interfaces.IClientInterceptor`
        providers (or plain callables ``f(call, proceed)``) every call
        passes through, the first outermost.
    :param propagate_metadata: the metadata keys a call made with
        ``parent=`` takes from its parent unless it sets them itself (the
        W3C trace context by default; ``()``: none).
    :raises TypeError: if one of ``interceptors`` is not an interceptor, or
        ``propagate_metadata`` is a string rather than a collection of them.
    :raises ValueError: for an endpoint string that cannot be parsed, or a
        ``tls:`` one without pyOpenSSL (the ``tls`` extra).
    """

    def __init__(
        self,
        protocol: ClientProtocol,
        *,
        codec: ICodec = BYTES,
        timeout: float | None = None,
        interceptors: Sequence[object] = (),
        propagate_metadata: Collection[str] = PROPAGATED_METADATA,
    ) -> None:
        self.protocol = protocol
        self.codec = codec
        self.timeout = timeout
        #: The metadata keys a call with ``parent=`` takes from its parent.
        self.propagate_metadata = metadata_keys(propagate_metadata)
        #: The client interceptors, outermost first.
        self.interceptors: tuple[object, ...] = tuple(interceptors)
        self._chain = compose_client(self.interceptors, self._send)

    def call(
        self,
        method: str,
        body: Any = _NO_BODY,
        *,
        codec: ICodec | None = None,
        timeout: float | None = None,
        metadata: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        parent: Call | None = None,
    ) -> Deferred[Reply]:
        """
        Call ``method`` on the server.

        Never raises: every problem arrives as the Deferred's failure.

        :param method: the method name.
        :param body: the request body, encoded with ``codec``; omitted, the
            request has an empty body whatever the codec.
        :param codec: the codec for this call (the client's by default).
        :param timeout: seconds to wait for the answer (the client's default
            if omitted).  It travels as the request's deadline, and when it
            passes the call fails with :class:`~twisted_reqresp.DeadlineExceeded`
            and a CANCEL is sent.
        :param metadata: key/value text pairs sent with the request.
        :param parent: the :class:`~twisted_reqresp.Call` a responder is
            serving, when it makes this call on that call's behalf: the
            timeout is at most what is left of the parent's deadline, the
            call is cancelled (CANCEL sent) when the server gives up on the
            parent, and the parent's metadata for the client's
            ``propagate_metadata`` keys is passed on unless ``metadata``
            sets them.  Nothing is sent when the parent's deadline has
            passed (:class:`~twisted_reqresp.DeadlineExceeded`) or the
            server already gave up on it (``CancelledError``).
        :returns: a Deferred that fires with a :class:`~twisted_reqresp.Reply`
            whose body ``codec`` decoded, or fails with
            :class:`~twisted_reqresp.RemoteError` (the server's error status),
            :class:`~twisted_reqresp.DeadlineExceeded`,
            :class:`~twisted_reqresp.ConnectionClosed`, or
            :class:`~twisted_reqresp.CodecError`.  Cancelling it sends
            CANCEL to the server and fails it with ``CancelledError``.
        """
        codec = codec if codec is not None else self.codec
        try:
            data = encode_body(body, codec)
        except Exception:
            return fail()
        timeout = timeout if timeout is not None else self.timeout
        if parent is not None:
            try:
                timeout, metadata = inherit(parent, timeout, metadata, self.propagate_metadata)
            except Exception:
                return fail()
        if self._chain is None:
            # No interceptors: straight to the protocol (what start_call does then).
            d = self.protocol.call(method, data, metadata=metadata, timeout=timeout)
        else:
            d = start_call(self.protocol, self._chain, method, data, metadata, timeout)
        if codec is not BYTES:
            d = decode_replies(d, codec)
        if parent is not None:
            bind(parent, d)
        return d

    def stream(
        self,
        method: str,
        body: Any = _NO_BODY,
        *,
        kind: str = "server_stream",
        codec: ICodec | None = None,
        timeout: float | None = None,
        metadata: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        parent: Call | None = None,
        result_codec: ICodec | None = None,
    ) -> StreamingCall[Any, Any]:
        """
        Open a streaming call to ``method`` (``docs/guide.md``, "Streaming
        calls").

        Never raises: a call that cannot be made is returned failed (its
        reads and :meth:`~twisted_reqresp.StreamingCall.result` fail).  The
        client interceptors do not see streaming calls.

        :param method: the method name.
        :param body: the request body, apart from any stream, encoded with
            ``codec``; omitted, an empty body.
        :param kind: ``"server_stream"`` (the server streams messages),
            ``"client_stream"`` (the client does) or ``"bidi_stream"``.
        :param codec: encodes the body and the client's messages
            (:meth:`~twisted_reqresp.StreamingCall.send`), decodes the
            server's messages and the final answer (the client's by
            default).
        :param timeout: seconds the whole call may take (the client's
            default if omitted); it travels as the deadline, and when it
            passes the call fails with
            :class:`~twisted_reqresp.DeadlineExceeded` and CANCEL is sent.
        :param metadata: key/value text pairs sent with the request.
        :param parent: as for :meth:`call`: the call is cancelled when the
            server gives up on the parent.
        :param result_codec: decodes the final answer's body, if not
            ``codec`` (a typed stub's server-streaming methods answer no value).
        :returns: the :class:`~twisted_reqresp.StreamingCall`.
        """
        return open_stream(
            self.protocol,
            method,
            body,
            kind=kind,
            codec=codec if codec is not None else self.codec,
            result_codec=result_codec,
            timeout=timeout if timeout is not None else self.timeout,
            metadata=metadata,
            parent=parent,
            propagate=self.propagate_metadata,
        )

    def _send(self, call: OutgoingCall) -> Deferred[Reply]:
        """The innermost step of the interceptor chain: send the call."""
        return send_outgoing(self.protocol, call)

    def ping(self) -> Deferred[float]:
        """
        Measure the round trip to the server with a PING frame.

        :returns: a Deferred firing with the round-trip time in seconds (it
            fails with UNIMPLEMENTED on the line format).
        """
        return self.protocol.ping()

    def close(self) -> Deferred[None]:
        """
        Close in order: new calls fail at once, pending calls finish, then
        the connection closes.

        :returns: a Deferred that fires when the connection is closed.
        """
        return self.protocol.close()

    def when_closed(self) -> Deferred[None]:
        """
        :returns: a Deferred that fires when the connection closes, whoever
            closes it: this client, the server (after a drain, say) or the
            network.
        """
        return self.protocol.when_closed()

    def abort(self) -> None:
        """Drop the connection now; pending calls fail with ConnectionClosed."""
        self.protocol.abort()

    @property
    def wire_format(self) -> str:
        """The name of the wire format this client speaks."""
        name: str = self.protocol.conn.wire.name
        return name

    @property
    def server_settings(self) -> Settings:
        """The limits the server advertised (defaults for the line format)."""
        return self.protocol.conn.peer_settings


def encode_body(body: Any, codec: ICodec) -> bytes:
    """
    The bytes a call sends: shared by :class:`Client` and
    :class:`~twisted_reqresp.Channel`.

    :param body: the caller's body, or ``_NO_BODY`` for an empty one.
    :param codec: the call's codec.
    :returns: the encoded body.
    :raises Exception: whatever the codec raises.
    """
    if body is _NO_BODY:
        return b""
    if type(body) is bytes and codec is BYTES:
        return body
    data: bytes = codec.encode(body)
    return data


def start_call(
    protocol: ClientProtocol,
    chain: ClientChain | None,
    method: str,
    data: bytes,
    metadata: Mapping[str, str] | Iterable[tuple[str, str]] | None,
    timeout: float | None,
    attempt: int = 1,
) -> Deferred[Reply]:
    """
    Send one attempt of a call through the client interceptors (straight
    to the protocol when there are none, the hot path).

    :param protocol: the connection to send on.
    :param chain: :func:`compose_client`'s chain ending in
        :func:`send_outgoing` on ``protocol``, or ``None``.
    :param method: the method name.
    :param data: the encoded body.
    :param metadata: the caller's metadata.
    :param timeout: seconds left for the answer, or ``None``.
    :param attempt: which attempt this is (1 for the first).
    :returns: the answer's Deferred; never raises.
    """
    if chain is None:
        return protocol.call(method, data, metadata=metadata, timeout=timeout)
    try:
        # A dict, so interceptors add keys with {**call.metadata, ...}.
        outgoing = OutgoingCall(
            method=method,
            body=data,
            metadata=dict(metadata_pairs(metadata)),
            timeout=timeout,
            attempt=attempt,
        )
    except Exception:
        return fail()
    return chain(outgoing)


def send_outgoing(protocol: ClientProtocol, call: OutgoingCall) -> Deferred[Reply]:
    """
    The innermost step of a client interceptor chain: send ``call`` on
    ``protocol``.
    """
    return protocol.call(call.method, call.body, metadata=call.metadata, timeout=call.timeout)


def open_stream(
    protocol: ClientProtocol,
    method: str,
    body: Any,
    *,
    kind: str,
    codec: ICodec,
    result_codec: ICodec | None,
    timeout: float | None,
    metadata: Mapping[str, str] | Iterable[tuple[str, str]] | None,
    parent: Call | None,
    propagate: Collection[str],
) -> StreamingCall[Any, Any]:
    """
    Open a streaming call on ``protocol``: shared by :class:`Client` and
    :class:`~twisted_reqresp.Channel`.  The body is encoded, the parent's
    deadline and ``propagate`` metadata inherited, and the call cancelled
    when the server gives up on the parent.

    :returns: the call; never raises (a call that cannot be made is
        returned failed).
    """
    try:
        data = encode_body(body, codec)
        if parent is not None:
            timeout, metadata = inherit(parent, timeout, metadata, propagate)
    except Exception:
        return StreamingCall.failed(kind, Failure())
    call = protocol.stream(
        method,
        data,
        kind=kind,
        codec=codec,
        result_codec=result_codec,
        metadata=metadata,
        timeout=timeout,
    )
    if parent is not None and not call.done:
        call._on_done.append(parent.on_cancel(call.cancel))
    return call


def decode_replies(d: Deferred[Reply], codec: ICodec) -> Deferred[Reply]:
    """
    :param d: a call's Deferred, firing with the raw answer.
    :param codec: the call's codec.
    :returns: ``d``, its answer's body decoded by ``codec`` (a failure
        with :class:`~twisted_reqresp.CodecError` if it cannot be).
    """
    if codec is not BYTES:
        d.addCallback(_decode_reply, codec)
    return d


def metadata_keys(keys: Collection[str]) -> tuple[str, ...]:
    """:returns: ``keys`` as a tuple; :raises TypeError: for a lone string."""
    if isinstance(keys, str):
        # A lone key would pass on its letters, one by one: said now.
        raise TypeError(f"propagate_metadata is a collection of keys, not the string {keys!r}")
    return tuple(keys)


def _decode_reply(reply: Reply, codec: ICodec) -> Reply:
    return Reply(body=codec.decode(reply.body), metadata=reply.metadata)


def _client_endpoint(reactor: Any, description: str) -> IStreamClientEndpoint:
    require_tls_support(description)
    endpoint: IStreamClientEndpoint = clientFromString(reactor, description)
    return endpoint


def connect(
    reactor: Any,
    endpoint: str | IStreamClientEndpoint,
    *,
    wire: IWireFormat | None = None,
    codec: ICodec = BYTES,
    limits: Limits = DEFAULT_LIMITS,
    timeout: float | None = None,
    clock: IReactorTime | None = None,
    interceptors: Sequence[object] = (),
    propagate_metadata: Collection[str] = PROPAGATED_METADATA,
) -> Deferred[Client]:
    """
    Connect to a server.

    :param reactor: the reactor (it also serves as the clock unless
        ``clock`` is given).
    :param endpoint: a client endpoint string such as
        ``"tcp:127.0.0.1:9000"``, ``"unix:/run/app.sock"`` or
        ``"tls:example.com:9000"``, or an ``IStreamClientEndpoint``.
    :param wire: the wire format (:data:`~twisted_reqresp.BINARY` by default).
    :param codec: the client's default codec.
    :param limits: what the client accepts from the server.
    :param timeout: the client's default call timeout, in seconds.
    :param clock: the clock for timeouts, if not the reactor.
    :param interceptors: client interceptors for every call, the first
        outermost (see :class:`Client`).
    :param propagate_metadata: the metadata keys a call made with
        ``parent=`` takes from its parent (see :meth:`Client.call`).
    :returns: a Deferred that fires with a :class:`Client` once the
        handshake is done, or fails with the endpoint's error (such as
        ``ConnectionRefusedError``) or :class:`~twisted_reqresp.ConnectionClosed`.
    :raises TypeError: if one of ``interceptors`` is not an interceptor, or
        ``propagate_metadata`` is a string.
    """
    metadata_keys(propagate_metadata)
    for interceptor in interceptors:
        # A programming error, said before connecting, not after.
        interceptor_function(interceptor, IClientInterceptor)
    target: IStreamClientEndpoint = (
        _client_endpoint(reactor, endpoint) if isinstance(endpoint, str) else endpoint
    )
    factory = ClientFactory(
        wire=wire if wire is not None else BinaryFormat(),
        limits=limits,
        clock=clock if clock is not None else reactor,
    )
    connecting: Deferred[Any] = target.connect(factory)
    connecting.addCallback(lambda protocol: protocol.when_ready())
    connecting.addCallback(
        lambda protocol: Client(
            protocol,
            codec=codec,
            timeout=timeout,
            interceptors=interceptors,
            propagate_metadata=propagate_metadata,
        )
    )
    return connecting
