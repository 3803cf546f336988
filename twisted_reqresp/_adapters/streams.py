"""
The Twisted side of streaming calls (``docs/protocol.md``, "Streaming
calls"): :class:`ServerStream` (``call.stream`` in a responder) and
:class:`StreamingCall` (what ``Client.stream`` returns).

Both are built from the same two pieces, one per direction, so that the
server and the client share every rule:

- :class:`MessageReader`, the messages the peer streams to us.  It holds
  what arrived and was not yet taken (bounded by the credit this side
  granted: the sans-IO core refuses a message sent without credit), and
  gives a message's credit back (``Connection.acknowledge``) only when the
  application *takes* it, never on arrival: a slow reader stops granting,
  and so stops its peer.  Readers take with ``read()`` (a Deferred),
  ``async for``, or as an ``IConsumer`` we produce for (``deliver_to``).
- :class:`MessageWriter`, the messages we stream to the peer.  A message
  goes to the wire while the call and the connection have credit; past
  that it waits in a buffer.  When the buffer reaches ``WRITE_BUFFER`` (64 KiB)
  bytes, a registered producer is paused (a push producer) or no longer
  pulled (a pull producer, such as ``FileSender``), and ``send()`` /
  ``writable()`` wait until it is below again; what waits is sent, in
  order, before the call's end (the client's STREAM_END, the server's
  final status).

Adapter layer: no wire bytes here; the protocols pass in what to call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from .._core.call import Reply
from .._core.errors import CodecError, StatusError
from .._core.status import StatusCode
from .._core.streams import message_cost
from ..codecs import BYTES
from ..interfaces import ICodec

__all__ = [
    "KINDS",
    "WRITE_BUFFER",
    "MessageReader",
    "MessageWriter",
    "ServerStream",
    "StreamingCall",
    "stream_flags",
]

#: The bytes (counted as message costs, 10 + length each) that may wait for
#: credit in one call's writer before its producer is paused and ``send()``
#: waits: as much as the default call credit, so that a writer whose peer
#: reads promptly never waits on its own buffer.
WRITE_BUFFER = 64 * 1024

#: The kinds of call, as ``Router.add(kind=...)`` and ``Client.stream(kind=...)``
#: name them, and which sides stream: (client streams, server streams).
KINDS: dict[str, tuple[bool, bool]] = {
    "server_stream": (False, True),
    "client_stream": (True, False),
    "bidi_stream": (True, True),
}

# What a reader's _take gives at the end of the stream (a decoded message
# may itself be None: JSON null).
_END: Any = object()


def stream_flags(kind: str) -> tuple[bool, bool]:
    """
    :param kind: ``"server_stream"``, ``"client_stream"`` or ``"bidi_stream"``.
    :returns: whether the client streams, and whether the server does.
    :raises ValueError: for any other kind.
    """
    try:
        return KINDS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"kind must be one of {', '.join(sorted(KINDS))}, not {kind!r}") from None


def kind_of(client_stream: bool, server_stream: bool) -> str:
    """:returns: the name of the kind of call the two flags make."""
    if client_stream and server_stream:
        return "bidi_stream"
    return "client_stream" if client_stream else "server_stream"


class MessageReader:
    """
    The messages the peer streams on one call, in arrival order.

    :param acknowledge: called with a message's cost when the application
        takes it (or when it is discarded): gives its credit back.
    :param decode: turns a message's bytes into what readers get.
    """

    def __init__(self, acknowledge: Callable[[int], None], decode: Callable[[bytes], Any]) -> None:
        self._acknowledge = acknowledge
        self.decode = decode
        self._buffer: deque[bytes] = deque()
        self._waiters: deque[Deferred[Any]] = deque()
        #: True once the peer's stream is over (its end, or the call's).
        self.ended = False
        # Why the stream ended badly, if it did: reads fail with it once the
        # messages that came before are taken.
        self._error: Failure | None = None
        # Messages taken from here on are acknowledged and dropped unread.
        self._discarding = False
        self._delivery: _Delivery | None = None

    @property
    def held(self) -> int:
        """Messages received and not yet taken."""
        return len(self._buffer)

    def feed(self, body: bytes) -> None:
        """A message arrived: hand it to a waiting reader, or hold it."""
        if self._discarding:
            self._acknowledge(message_cost(len(body)))
            return
        if self._waiters and not self._buffer:
            self._acknowledge(message_cost(len(body)))
            waiter = self._waiters.popleft()
            try:
                value = self.decode(body)
            except Exception:
                waiter.errback(Failure())
                return
            waiter.callback(value)
            return
        self._buffer.append(body)
        delivery = self._delivery
        if delivery is not None:
            delivery.deliver()

    def finish(self, error: Failure | None = None) -> None:
        """
        The peer's stream is over: cleanly (``error`` is ``None``) or not.
        Messages already held are still read first.
        """
        if self.ended:
            return
        self.ended = True
        self._error = error
        if not self._buffer:
            self._wake_at_end()
        delivery = self._delivery
        if delivery is not None:
            delivery.deliver()

    def discard(self, error: Failure) -> None:
        """
        Nobody will read this stream any more (the call ended): give back
        the credit of every message held, fail waiting readers with
        ``error``, and drop whatever still comes.
        """
        self._discarding = True
        held, self._buffer = self._buffer, deque()
        cost = sum(message_cost(len(body)) for body in held)
        if cost:
            self._acknowledge(cost)
        if not self.ended:
            self.ended = True
            self._error = error
        elif self._error is None and held:
            # A clean end whose messages nobody took: reads now fail
            # instead of pretending the stream was empty.
            self._error = error
        self._wake_at_end()
        if self._delivery is not None:
            self._delivery.deliver()

    def release(self) -> None:
        """
        The call is over, and what it holds stays readable: give the credit
        of every message held back now, not when (if ever) it is taken.

        A caller that wants only a call's result never reads its messages;
        holding their credit until then would let ended calls use up the
        connection credit and stall every streaming call on the connection
        (HTTP/2 implementations return a closed stream's unconsumed window
        for the same reason).  What the reader still holds is then the
        application's to keep or drop: at most one call's credit plus one
        frame.
        """
        cost = sum(message_cost(len(body)) for body in self._buffer)
        acknowledge, self._acknowledge = self._acknowledge, _ignore
        if cost:
            acknowledge(cost)

    def _wake_at_end(self) -> None:
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            if waiter.called:
                continue  # cancelled by an earlier waiter's callback
            if self._error is None:
                waiter.callback(_END)
            else:
                waiter.errback(self._error)

    def take(self) -> Deferred[Any]:
        """
        :returns: a Deferred firing with the next message, decoded, or
            with the end marker ``_END`` at a clean end, or failing with why
            the stream ended badly.
        """
        if self._buffer:
            body = self._buffer.popleft()
            self._acknowledge(message_cost(len(body)))
            try:
                return succeed(self.decode(body))
            except Exception:
                return fail()
        if self.ended:
            return fail(self._error) if self._error is not None else succeed(_END)
        waiter: Deferred[Any] = Deferred(self._forget)
        self._waiters.append(waiter)
        return waiter

    def _forget(self, waiter: Deferred[Any]) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass

    def read(self) -> Deferred[Any]:
        """:returns: :meth:`take`, with ``None`` at the end."""
        return self.take().addCallback(_none_at_end)

    def deliver_to(self, consumer: IConsumer) -> Deferred[None]:
        """See :meth:`ServerStream.deliver_to`."""
        if self._delivery is not None:
            return fail(RuntimeError("this stream is already delivered to a consumer"))
        delivery = self._delivery = _Delivery(self, consumer)
        consumer.registerProducer(delivery, True)
        delivery.deliver()
        return delivery.done


def _none_at_end(value: Any) -> Any:
    return None if value is _END else value


@implementer(IPushProducer)
class _Delivery:
    """A reader's messages written to an ``IConsumer``: we are its push
    producer, and pausing us stops taking, so stops granting credit."""

    def __init__(self, reader: MessageReader, consumer: IConsumer) -> None:
        self.reader = reader
        self.consumer = consumer
        self.paused = False
        self.done: Deferred[None] = Deferred()
        self._delivering = False

    def deliver(self) -> None:
        if self._delivering or self.done.called:
            return
        self._delivering = True
        reader = self.reader
        try:
            while reader._buffer and not self.paused:
                body = reader._buffer.popleft()
                reader._acknowledge(message_cost(len(body)))
                self.consumer.write(body)
            if reader.ended and not reader._buffer:
                self.consumer.unregisterProducer()
                if reader._error is None:
                    self.done.callback(None)
                else:
                    self.done.errback(reader._error)
        finally:
            self._delivering = False

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.deliver()

    def stopProducing(self) -> None:
        # The consumer wants no more: what comes is acknowledged unread.
        self.paused = True
        self.reader._discarding = True
        held, self.reader._buffer = self.reader._buffer, deque()
        cost = sum(message_cost(len(body)) for body in held)
        if cost:
            self.reader._acknowledge(cost)
        if not self.done.called:
            self.done.callback(None)


class MessageWriter:
    """
    The messages this side streams on one call.

    :param can_send: whether a message may go to the wire now (the call
        and the connection both have credit).
    :param send: puts one message on the wire.
    :param max_message: the largest message the peer accepts, in bytes.
    :param bound: the bytes (message costs) that may wait for credit
        before a producer is paused and ``send()`` waits.
    """

    def __init__(
        self,
        can_send: Callable[[], bool],
        send: Callable[[bytes], None],
        max_message: Callable[[], int],
        bound: int = WRITE_BUFFER,
    ) -> None:
        self._can_send = can_send
        self._send = send
        self._max_message = max_message
        self.bound = bound
        self._buffer: deque[bytes] = deque()
        #: The bytes waiting for credit, counted as message costs.
        self.buffered = 0
        self._producer: Any = None
        self._streaming = True
        self._paused = False
        self._pulling = False
        self._wrote = False
        self._room_waiters: list[Deferred[None]] = []
        # Set once nothing more may be written: why (an exception).
        self._closed: BaseException | None = None
        # Called once the buffer is empty after close(): the call's end.
        self._then: Callable[[], None] | None = None

    @property
    def has_room(self) -> bool:
        """Whether less than the bound waits for credit."""
        return self.buffered < self.bound

    def write(self, data: bytes) -> None:
        """See :meth:`ServerStream.write`."""
        if self._closed is not None:
            raise self._closed
        if type(data) is not bytes:
            if not isinstance(data, (bytearray, memoryview)):
                raise TypeError(f"a stream message is bytes, not {type(data).__name__}")
            data = bytes(data)
        limit = self._max_message()
        if len(data) > limit:
            raise StatusError(
                StatusCode.RESOURCE_EXHAUSTED,
                f"message of {len(data)} bytes exceeds the peer's maximum frame size of {limit}",
            )
        self._wrote = True
        if not self._buffer and self._can_send():
            self._send(data)
            return
        self._buffer.append(data)
        self.buffered += message_cost(len(data))
        if not self.has_room and self._producer is not None and self._streaming:
            if not self._paused:
                self._paused = True
                self._producer.pauseProducing()

    def send(self, data: bytes) -> Deferred[None]:
        """:meth:`write`, then :meth:`writable`; failures as the Deferred's."""
        try:
            self.write(data)
        except Exception:
            return fail()
        return self.writable()

    def writable(self) -> Deferred[None]:
        """
        :returns: a Deferred that fires once less than the bound waits for
            credit (at once if it does), or fails once the call is over.
        """
        if self._closed is not None and self._then is None:
            return fail(self._closed)
        if self.has_room:
            return succeed(None)
        d: Deferred[None] = Deferred(self._room_waiters.remove)
        self._room_waiters.append(d)
        return d

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """See :meth:`ServerStream.registerProducer`."""
        if self._producer is not None:
            raise RuntimeError(f"a producer is already registered: {self._producer!r}")
        if self._closed is not None:
            producer.stopProducing()
            return
        self._producer = producer
        self._streaming = bool(streaming)
        self._paused = False
        if streaming:
            if not self.has_room:
                self._paused = True
                producer.pauseProducing()
        else:
            self._pull()

    def unregisterProducer(self) -> None:
        """See :meth:`ServerStream.unregisterProducer`."""
        self._producer = None
        self._paused = False

    def _pull(self) -> None:
        """Ask a pull producer for data while there is room (a loop, not
        recursion: each resumeProducing writes once)."""
        if self._pulling:
            return
        self._pulling = True
        try:
            while (
                self._producer is not None
                and not self._streaming
                and self._closed is None
                and self.has_room
            ):
                self._wrote = False
                self._producer.resumeProducing()
                if not self._wrote:
                    break  # it produces later: its write comes back here
        finally:
            self._pulling = False

    def pump(self) -> None:
        """Credit arrived: send what waits, then let writers go on."""
        buffer = self._buffer
        while buffer and self._can_send():
            data = buffer.popleft()
            self.buffered -= message_cost(len(data))
            self._send(data)
        if buffer:
            return
        then = self._then
        if then is not None:
            self._then = None
            then()
            return
        self._room()

    def _room(self) -> None:
        if not self.has_room or self._closed is not None:
            return
        if self._producer is not None:
            if self._streaming:
                if self._paused:
                    self._paused = False
                    self._producer.resumeProducing()
            else:
                self._pull()
        waiters, self._room_waiters = self._room_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def close(self, why: BaseException, then: Callable[[], None]) -> None:
        """
        Nothing more will be written (``why`` says so to later writers):
        call ``then`` once what waits for credit has been sent.
        """
        if self._closed is None:
            self._closed = why
        self._then = then
        self._stop_producer()
        self.pump()

    def fail(self, why: BaseException) -> None:
        """The call is over: drop what waits, stop the producer, fail
        writers with ``why``."""
        if self._closed is None or self._then is not None:
            self._closed = why
        self._then = None
        self._buffer.clear()
        self.buffered = 0
        self._stop_producer()
        waiters, self._room_waiters = self._room_waiters, []
        for waiter in waiters:
            waiter.errback(Failure(why))

    def _stop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.stopProducing()


def _not_streaming(what: str, kind: str) -> RuntimeError:
    return RuntimeError(f"cannot {what}: a {kind} call does not stream that way")


#: The type of the messages this side streams (for typed services).
SendT = TypeVar("SendT")
#: The type of the messages the peer streams to this side.
RecvT = TypeVar("RecvT")


class _Streams(Generic[SendT, RecvT]):
    """What :class:`ServerStream` and :class:`StreamingCall` share: reading
    the peer's messages and writing ours."""

    #: ``"server_stream"``, ``"client_stream"`` or ``"bidi_stream"``.
    kind: str
    _reader: MessageReader | None
    _writer: MessageWriter | None
    _codec: ICodec

    # -- reading -------------------------------------------------------------

    def read(self) -> Deferred[RecvT | None]:
        """
        :returns: a Deferred firing with the peer's next message (decoded
            by the codec), with ``None`` once its stream ended cleanly, or
            failing with why it did not.
        """
        if self._reader is None:
            return fail(_not_streaming("read a message", self.kind))
        return self._reader.read()

    def __aiter__(self) -> AsyncIterator[RecvT]:
        """``async for message in stream``: each of the peer's messages."""
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[RecvT]:
        if self._reader is None:
            raise _not_streaming("read a message", self.kind)
        reader = self._reader
        while True:
            value = await reader.take()
            if value is _END:
                return
            yield value

    def deliver_to(self, consumer: IConsumer) -> Deferred[None]:
        """
        Write each of the peer's messages (its bytes, not decoded) to
        ``consumer`` as it arrives, as its ``IPushProducer``: while the
        consumer is paused, messages are not taken, so no credit is given
        back and the peer stops.

        :returns: a Deferred that fires once the stream ended cleanly (the
            producer is unregistered first), or fails with why it did not.
        """
        if self._reader is None:
            return fail(_not_streaming("read a message", self.kind))
        return self._reader.deliver_to(consumer)

    # -- writing (IConsumer) -------------------------------------------------

    def write(self, data: bytes) -> None:
        """
        Stream one message (bytes as they are, whatever the codec); never
        waits.  Past the credit it waits in a buffer, and past
        ``WRITE_BUFFER`` (64 KiB) bytes there a registered producer is paused.

        :raises RuntimeError: if this side does not stream on the call.
        :raises StatusError: ``RESOURCE_EXHAUSTED`` for a message larger
            than the peer's maximum frame size.
        :raises Exception: once the call is over, why it is.
        """
        if self._writer is None:
            raise _not_streaming("write a message", self.kind)
        self._writer.write(data)

    def send(self, value: SendT) -> Deferred[None]:
        """
        Encode ``value`` with the codec, :meth:`write` it, and wait until
        there is room for more: ``await stream.send(x)`` in a loop streams
        with flow control.

        :returns: a Deferred firing when more may be written, or failing
            (the call is over, the value cannot be encoded, ...).
        """
        if self._writer is None:
            return fail(_not_streaming("write a message", self.kind))
        codec = self._codec
        try:
            data: bytes = (
                value if type(value) is bytes and codec is BYTES else codec.encode(value)  # type: ignore[assignment]
            )
        except Exception:
            return fail()
        return self._writer.send(data)

    def writable(self) -> Deferred[None]:
        """:returns: a Deferred firing once there is room to write again."""
        if self._writer is None:
            return fail(_not_streaming("write a message", self.kind))
        return self._writer.writable()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """
        ``IConsumer.registerProducer``: a push producer (``streaming``
        true) is paused while ``WRITE_BUFFER`` (64 KiB) bytes wait for credit; a
        pull producer (``FileSender``) is asked for more while they do not.
        It is stopped when the call ends.
        """
        if self._writer is None:
            raise _not_streaming("register a producer", self.kind)
        self._writer.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        """``IConsumer.unregisterProducer``."""
        if self._writer is not None:
            self._writer.unregisterProducer()


@implementer(IConsumer)
class ServerStream(_Streams[Any, Any]):
    """
    A streaming call's stream, as a responder sees it (``call.stream``).

    Read the client's messages (client and bidirectional streaming) with
    ``async for message in call.stream``, :meth:`read` or
    :meth:`deliver_to`; write the server's (server and bidirectional
    streaming) with :meth:`send`, :meth:`write` or a producer
    (:meth:`registerProducer`).  The responder's return value is the
    call's final status, sent after every message it wrote.

    Messages are decoded and :meth:`send` encodes with the method's codec
    when the call came through a :class:`~twisted_reqresp.Router`, else
    they are bytes.  Made by the server; users do not make these.
    """

    def __init__(
        self,
        kind: str,
        reader: MessageReader | None,
        writer: MessageWriter | None,
    ) -> None:
        self.kind = kind
        self._reader = reader
        self._writer = writer
        self._codec = BYTES

    def __repr__(self) -> str:
        return f"<ServerStream {self.kind}>"

    def use_codec(self, codec: ICodec) -> None:
        """
        Decode the client's messages and encode :meth:`send`'s values with
        ``codec`` (what a router does for its method's codec).
        """
        self._codec = codec
        if self._reader is not None:
            self._reader.decode = _identity if codec is BYTES else _checked(codec)


def _checked(codec: ICodec) -> Callable[[bytes], Any]:
    """A client's message that the method's codec refuses is the caller's
    fault: it ends the call INVALID_ARGUMENT (if the responder lets the
    error through), as a body that does not decode does."""

    def decode(data: bytes) -> Any:
        try:
            return codec.decode(data)
        except CodecError as e:
            raise StatusError(StatusCode.INVALID_ARGUMENT, f"stream message: {e}") from e

    return decode


def _identity(data: bytes) -> bytes:
    return data


@implementer(IConsumer)
class StreamingCall(_Streams[SendT, RecvT]):
    """
    A streaming call made with :meth:`~twisted_reqresp.Client.stream`.

    Read the server's messages (server and bidirectional streaming) with
    ``async for message in call``, :meth:`read` or :meth:`deliver_to`; a
    read after the last message gives ``None`` once the final status was
    OK, and fails with the error otherwise.  Write the client's (client
    and bidirectional streaming) with :meth:`send`, :meth:`write` or a
    producer, then :meth:`end` the client's stream.  :meth:`result` is the
    final status.  The deadline (``timeout``) bounds the whole call.

    Made by the client; users do not make these.
    """

    def __init__(
        self, kind: str, codec: ICodec = BYTES, result_codec: ICodec | None = None
    ) -> None:
        self.kind = kind
        self._codec = codec
        self._result_codec = codec if result_codec is None else result_codec
        # A typed stub's: turns a declared error status into its exception.
        self._translate: Callable[[Failure], Failure] | None = None
        self._reader = None
        self._writer = None
        #: The call's request id on its connection (0 until it is sent).
        self.request_id = 0
        # The final status, once known: a Reply (decoded) or a Failure.
        self._outcome: Reply | Failure | None = None
        self._waiters: list[Deferred[Reply]] = []
        # Sends CANCEL; set by the protocol while the call is open.
        self._canceller: Callable[[BaseException], None] | None = None
        # Sends STREAM_END; set by the protocol while the call is open.
        self._ender: Callable[[], None] | None = None
        self._ending = False
        # Called once, when the call is over (a parent's unsubscribe).
        self._on_done: list[Callable[[], object]] = []

    def __repr__(self) -> str:
        return f"<StreamingCall {self.kind} request {self.request_id}>"

    @classmethod
    def failed(cls, kind: str, error: Failure) -> StreamingCall[Any, Any]:
        """:returns: a call that was never sent, failed with ``error``."""
        call = cls(kind if kind in KINDS else "server_stream")
        client_streams, server_streams = KINDS[call.kind]
        if server_streams:
            call._reader = MessageReader(_ignore, _identity)
        if client_streams:
            call._writer = MessageWriter(_never, _drop, _no_room)
        call._finish(error)
        return call

    @property
    def done(self) -> bool:
        """Whether the final status is known (or the call failed)."""
        return self._outcome is not None

    def end(self) -> None:
        """
        End the client's stream (STREAM_END), once every message written
        has been sent.  Does nothing once the call is over, or the second
        time.

        :raises RuntimeError: if the client does not stream on this call.
        """
        if self._writer is None:
            raise _not_streaming("end the client's stream", self.kind)
        if self._ending or self._outcome is not None:
            return
        self._ending = True
        ender = self._ender
        assert ender is not None
        self._writer.close(RuntimeError("the client's stream has ended"), ender)

    def result(self) -> Deferred[Reply]:
        """
        :returns: a Deferred firing with the final status, a
            :class:`~twisted_reqresp.Reply` whose body the codec decoded
            (its metadata is the trailing metadata), or failing as
            :meth:`~twisted_reqresp.Client.call` does.  Cancelling it
            cancels the call.
        """
        outcome = self._outcome
        if isinstance(outcome, Reply):
            return succeed(outcome)
        if isinstance(outcome, Failure):
            return fail(outcome)
        d: Deferred[Reply] = Deferred(lambda _: self.cancel())
        self._waiters.append(d)
        return d

    def cancel(self) -> None:
        """
        Give up on the call: CANCEL is sent, and reads, writes and
        :meth:`result` fail with ``CancelledError``.  Does nothing once the
        call is over.
        """
        self._give_up(CancelledError())

    def _give_up(self, error: BaseException) -> None:
        if self._outcome is not None:
            return
        canceller = self._canceller
        if canceller is not None:
            canceller(error)  # sends CANCEL, then calls _finish
        else:
            self._finish(Failure(error))

    def _finish(self, outcome: Reply | Failure) -> None:
        """The call is over: with its final status, or failed."""
        if self._outcome is not None:
            return
        result_codec = self._result_codec
        if isinstance(outcome, Reply) and result_codec is not BYTES:
            try:
                outcome = Reply(body=result_codec.decode(outcome.body), metadata=outcome.metadata)
            except Exception:
                outcome = Failure()
        if isinstance(outcome, Failure) and self._translate is not None:
            outcome = self._translate(outcome)
        self._outcome = outcome
        self._canceller = self._ender = None
        error = outcome if isinstance(outcome, Failure) else None
        if self._reader is not None:
            self._reader.finish(error)
            self._reader.release()
        if self._writer is not None:
            why = error.value if error is not None else None
            self._writer.fail(
                why
                if isinstance(why, BaseException)
                else RuntimeError("the call is over: the server sent its final status")
            )
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if waiter.called:
                continue  # cancelled by an earlier waiter's callback
            if error is None:
                waiter.callback(outcome)
            else:
                waiter.errback(error)
        done, self._on_done = self._on_done, []
        for callback in done:
            callback()


def _ignore(nbytes: int) -> None:
    return None


def _never() -> bool:
    return False


def _drop(data: bytes) -> None:
    return None


def _no_room() -> int:
    return 0
