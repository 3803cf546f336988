"""
:class:`ClientProtocol`: the client side's Twisted adapter.

As in AMP's ``BoxDispatcher``: a per-connection id counter (in the sans-IO
connection), a map of request id to Deferred, every pending call failed at
once when the connection goes, and ``call`` never raises synchronously.
Unlike AMP, each Deferred has a canceller that sends CANCEL to the server,
and a timeout cancels the Deferred (as ``Deferred.addTimeout`` does, on one
timer per connection instead of one per call), so a timeout and a
cancellation share one path.  While the server is not reading (the
transport's write buffer is full) new calls wait in a bounded queue instead
of piling bytes into memory.
"""

from __future__ import annotations

import heapq
import itertools
import math
import struct
from collections import deque
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IReactorTime,
    ISSLTransport,
)
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from .._core.call import Reply, metadata_pairs
from .._core.connection import Connection, ConnectionState
from .._core.contract import IWireFormat
from .._core.errors import (
    ConnectionClosed,
    DeadlineExceeded,
    LocalProtocolError,
    RemoteError,
    StatusError,
)
from .._core.events import (
    CreditGranted,
    ErrorResponse,
    GoAway,
    Metadata,
    Pong,
    ProtocolViolation,
    Response,
    Role,
    StreamMessage,
)
from .._core.events import Settings as SettingsEvent
from .._core.limits import Limits
from .._core.status import StatusCode, status_name
from ..codecs import BYTES
from ..interfaces import ICodec
from .lifecycle import TransportLifecycle
from .liveness import Liveness
from .streams import MessageReader, MessageWriter, StreamingCall, stream_flags
from .tls import client_hint

__all__ = ["ClientProtocol", "check_timeout"]

_PING = struct.Struct(">Q")
#: The most bytes a read's callbacks hold back for its one write: Twisted's
#: own high-water mark (``FileDescriptor.bufferSize``).  Past it they are
#: written at once, so that a full transport still pauses us (and queues the
#: calls that follow) after no more than this much, as without batching.
_BATCH_BYTES = 64 * 1024
#: A call's timeout fires this early at most: the one timer is set by
#: subtracting clock readings, which can land a rounding error short.
_TIMEOUT_SLACK = 1e-6
#: The metadata of every answer that has none: one shared read-only mapping.
_NO_METADATA: Mapping[str, str] = MappingProxyType({})


#: How the binary codec's messages begin for a peer that is not a reqresp
#: binary server at all (a line-only port, an HTTP server).
_NOT_OURS = ("not a reqresp binary server", "the server answered in text")


def _deadline_ms(timeout: float) -> int:
    # Round up: a deadline of 0 ms would expire before the server starts.
    return min(0xFFFF_FFFF, max(1, math.ceil(timeout * 1000)))


class _Queued:
    """A call waiting for the server to read again."""

    __slots__ = ("body", "deadline", "deferred", "metadata", "method", "request_id")

    def __init__(
        self, method: str, body: bytes, metadata: Metadata, deadline: float | None
    ) -> None:
        self.method = method
        self.body = body
        self.metadata = metadata
        #: When the caller stops waiting, in the clock's seconds: the
        #: deadline sent is what is left of it when the call leaves the queue.
        self.deadline = deadline
        self.request_id: int | None = None
        self.deferred: Deferred[Reply] | None = None


@implementer(IHalfCloseableProtocol)
class ClientProtocol(Protocol):
    """
    One client connection.  :func:`~twisted_reqresp.connect` builds it and
    wraps it in a :class:`~twisted_reqresp.Client`; use this class directly
    only to plug the protocol into your own Twisted factory.

    :param wire: the wire format.
    :param limits: what this side accepts from the server, its handshake
        timeout, keepalive and call queue bound.
    :param clock: the clock for timeouts and ping round trips.
    """

    #: Whether what a read's callbacks send goes out in one write (off only
    #: in the differential test that proves batching changes no byte).
    _batch_reads = True

    def __init__(self, *, wire: IWireFormat, limits: Limits, clock: IReactorTime) -> None:
        self.conn = Connection(Role.CLIENT, wire, limits)
        self.clock = clock
        #: Calls waiting for an answer, by request id.
        self.pending: dict[int, Deferred[Reply]] = {}
        #: Open streaming calls, by request id.
        self.streams: dict[int, StreamingCall[Any, Any]] = {}
        #: Calls waiting for the server to read again, or for one of the
        #: server's MAX_CONCURRENT slots.
        self.queued: deque[_Queued] = deque()
        self.lifecycle = TransportLifecycle(clock, limits.close_timeout, self._on_write_blocked)
        #: Why the connection was lost, once it is.
        self.lost: Failure | None = None
        self._pings: dict[bytes, tuple[Deferred[float], float]] = {}
        self._ping_ids = itertools.count(1)
        # Who waits for the handshake; None once it is done.
        self._ready: list[Deferred[ClientProtocol]] | None = []
        self._close_waiters: list[Deferred[None]] = []
        self._closing = False
        self._gave_up: str | None = None
        # While a read's events are dispatched: what the callbacks sent after
        # the read's first write, for one write when the read is done (None
        # outside dataReceived).
        self._batch: list[bytes] | None = None
        self._batch_bytes = 0
        # Whether the current read has written nothing yet.
        self._batch_first = False
        # The calls' timeouts: each timed call's Deferred -> its timeout, and
        # a heap of (deadline, sequence, Deferred) whose entries for calls
        # that finished are dropped lazily; one clock timer for the earliest.
        self._timed: dict[Deferred[Any], float] = {}
        self._deadlines: list[tuple[float, int, Deferred[Any]]] = []
        self._deadline_seq = itertools.count()
        self._timer: IDelayedCall | None = None
        self._timer_at = 0.0
        # The timeouts of calls _expire is cancelling.
        self._expired: dict[Deferred[Any], float] = {}
        self.liveness = Liveness(
            clock,
            limits,
            busy=lambda: bool(self.pending or self.streams),
            can_ping=lambda: self.conn.keepalive,
            reading=lambda: self.lifecycle.reading,
            send_ping=self._keepalive_ping,
            give_up=self._give_up,
            idle=lambda: None,
            idle_timeout=False,
        )

    # -- Twisted plumbing ------------------------------------------------------

    @property
    def write_paused(self) -> bool:
        """True while the transport's write buffer is full (the server is
        not reading)."""
        return self.lifecycle.write_blocked

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.lifecycle.attach(self.transport)
        self._flush()
        if self.conn.state is not ConnectionState.AWAIT_SETTINGS:
            self._fire_ready()
        self.liveness.start()

    def when_ready(self) -> Deferred[ClientProtocol]:
        """
        :returns: a Deferred that fires with this protocol once the server's
            SETTINGS arrived (at once for formats without a handshake), or
            fails with :class:`~twisted_reqresp.ConnectionClosed` if the
            connection closes first or the server refuses it.
        """
        if self.lost is not None:
            return fail(self._closed_error("connection closed during the handshake"))
        if self._ready is None:
            return succeed(self)
        # Cancelled (connect()'s Deferred cancelled during the handshake):
        # nobody wants this connection any more, so close it.
        d: Deferred[ClientProtocol] = Deferred(lambda _: self.abort())
        self._ready.append(d)
        return d

    def _fire_ready(self) -> None:
        self.liveness.handshake_done()
        waiting, self._ready = self._ready, None
        for d in waiting or ():
            if not d.called:
                d.callback(self)

    def dataReceived(self, data: bytes) -> None:
        if self._batch is not None or not self._batch_reads:
            # Re-entered from a callback (an in-memory pump): the outer
            # read writes the batch.
            self._dispatch(data)
            return
        # A closed loop (each answer's callback makes the next call) would
        # otherwise cost one send() per call: what the callbacks send is
        # encoded at once, in order, and written once the read is done.
        # Except the read's first write, which goes out at once: holding it
        # too made client and server take turns (the server idle while we
        # dispatch the read, we idle while it answers the whole batch),
        # doubling the closed loops' latency; with it, the server starts on
        # the first call while we make the rest.
        self._batch = []
        self._batch_first = True
        try:
            self._dispatch(data)
        finally:
            self._write_batch()
            self._batch = None

    def _dispatch(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        self.liveness.last_bytes = self.clock.seconds()
        pending = self.pending
        while True:
            event = conn.next_event()
            if event is None:
                break
            kind = type(event)
            if type(event) is Response:  # not `kind`: mypy narrows this one
                d = pending.pop(event.request_id, None)
                if d is not None and not d.called:
                    metadata = dict(event.metadata) if event.metadata else _NO_METADATA
                    d.callback(Reply(body=event.body, metadata=metadata))
                elif d is None and self.streams:
                    self._stream_done(event.request_id, event)
            elif kind is ErrorResponse:
                assert isinstance(event, ErrorResponse)
                d = pending.pop(event.request_id, None)
                if d is not None:
                    _fail(d, _remote_error(event))
                elif self.streams:
                    self._stream_done(event.request_id, event)
            elif kind is StreamMessage:
                assert isinstance(event, StreamMessage)
                call = self.streams.get(event.request_id)
                if call is not None and call._reader is not None:
                    call._reader.feed(event.body)
            elif kind is CreditGranted:
                assert isinstance(event, CreditGranted)
                self._credit(event.request_id)
            elif kind is SettingsEvent:
                self._fire_ready()
            elif kind is Pong:
                assert isinstance(event, Pong)
                entry = self._pings.pop(event.payload, None)
                if entry is not None:
                    entry[0].callback(self.clock.seconds() - entry[1])
            elif kind is GoAway:
                assert isinstance(event, GoAway)
                self._goaway(event)
            elif kind is ProtocolViolation:
                assert isinstance(event, ProtocolViolation)
                message = event.message
                if not message.startswith(_NOT_OURS):
                    # A peer that speaks no reqresp binary at all did not
                    # "break" the protocol: say what it is instead.
                    message = f"the server broke the protocol: {message}"
                self._gave_up = message
                self._close_transport()
                return
        # Answers free the server's slots: send what waited for one.
        self._release_queue()
        self._flush()
        self._maybe_finish_close()

    def readConnectionLost(self) -> None:
        """
        The server shut down its write side: every answer it sent has been
        read and no more will come.  Close; the calls still waiting fail
        with :class:`~twisted_reqresp.ConnectionClosed`.
        """
        if self.lost is None and not self.lifecycle.closing:
            if self._gave_up is None:
                self._gave_up = "the server closed its side of the connection"
                if self._ready is not None and not self.conn.buffered:
                    # Not one byte of the greeting: a TLS port closes so
                    # when it reads a plaintext preface, so name the likely fix.
                    self._gave_up += " without a word"
                    if not ISSLTransport.providedBy(self.transport):
                        self._gave_up += " (if it is a TLS port, connect with tls:)"
            self._close_transport()

    def writeConnectionLost(self) -> None:
        """Our write side is shut: no call can be sent any more."""
        self.lifecycle.close()

    def _closed_error(self, message: str, *, retry_safe: bool = False) -> ConnectionClosed:
        if self._gave_up is not None:
            message = f"{message}: {self._gave_up}"
        else:
            # A failed TLS handshake: OpenSSL's reason belongs in the
            # message, not only in ``reason`` where nobody reads it.
            hint = client_hint(self.lost)
            if hint is not None:
                message = f"{message}: {hint}"
        return ConnectionClosed(message, self.lost, retry_safe=retry_safe)

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:  # noqa: B008
        if self.lost is not None:
            return
        self.lost = reason
        self.lifecycle.lost()
        self.conn.close()
        self.liveness.stop()
        goaway = self.conn.peer_goaway
        # Every Deferred is failed only if nothing fired it meanwhile: one
        # call's errback may cancel a sibling.
        pending, self.pending = self.pending, {}
        for rid, d in sorted(pending.items()):
            safe = goaway is not None and rid > goaway.last_request_id
            _fail(d, self._closed_error("connection lost before the answer", retry_safe=safe))
        streams, self.streams = self.streams, {}
        for rid, call in sorted(streams.items()):
            safe = goaway is not None and rid > goaway.last_request_id
            error = self._closed_error("connection lost before the call ended", retry_safe=safe)
            call._finish(Failure(error))
        self._fail_queued(lambda: self._closed_error("connection lost", retry_safe=True))
        pings, self._pings = self._pings, {}
        for ping, _ in pings.values():
            _fail(ping, self._closed_error("connection lost before the pong"))
        waiting, self._ready = self._ready, None
        for ready in waiting or ():
            _fail(ready, self._closed_error("connection closed during the handshake"))
        waiters, self._close_waiters = self._close_waiters, []
        for w in waiters:
            if not w.called:
                w.callback(None)

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if not data or self.lost is not None:
            return
        batch = self._batch
        if batch is None:
            self.lifecycle.write(data)
            return
        if self._batch_first:
            self._batch_first = False
            self.lifecycle.write(data)
            return
        batch.append(data)
        self._batch_bytes += len(data)
        if self._batch_bytes >= _BATCH_BYTES:
            self._write_batch()

    def _write_batch(self) -> None:
        """Write what the current read's callbacks sent so far."""
        batch = self._batch
        if batch:
            data = batch[0] if len(batch) == 1 else b"".join(batch)
            batch.clear()
            self._batch_bytes = 0
            if self.lost is None:
                self.lifecycle.write(data)

    def _close_transport(self) -> None:
        """Write what is left (a read's batch included), then close."""
        self._flush()
        self._write_batch()
        self.lifecycle.close()

    def _on_write_blocked(self, blocked: bool) -> None:
        if not blocked:
            self._release_queue()

    def _goaway(self, event: GoAway) -> None:
        why = _going_away(event)
        if self._ready is not None:
            # A GOAWAY instead of SETTINGS: the server refused the connection.
            self._gave_up = f"the server refused the connection: {event.message}"
            return
        if self._gave_up is None:
            # Whatever fails later on this connection says why it went.
            self._gave_up = (
                why
                if event.code == StatusCode.OK
                else f"the server gave up on the connection: {status_name(event.code)} "
                f"{event.message}"
            )
        # Calls the server never accepted fail now, marked safe to retry;
        # the ones it accepted still get their answers.
        for rid in sorted(self.pending):
            if rid > event.last_request_id:
                d = self.pending.pop(rid, None)
                if d is None:
                    continue  # an earlier errback cancelled it
                self.conn.send_cancel(rid)
                _fail(d, ConnectionClosed(why, retry_safe=True))
        # Streaming calls it accepted go on (it lets them finish).
        for rid in sorted(self.streams):
            if rid > event.last_request_id:
                call = self.streams.pop(rid, None)
                if call is not None:
                    self.conn.send_cancel(rid)
                    call._finish(Failure(ConnectionClosed(why, retry_safe=True)))
        self._fail_queued(lambda: ConnectionClosed(why, retry_safe=True))

    def _fail_queued(self, error: Any) -> None:
        queued, self.queued = self.queued, deque()
        for entry in queued:
            if entry.deferred is not None:
                _fail(entry.deferred, error())
        self._maybe_finish_close()

    # -- liveness ------------------------------------------------------------------

    def _keepalive_ping(self) -> None:
        self.conn.send_ping(b"\xff" * 8)  # never one of ping()'s counters
        self._flush()

    def _give_up(self, code: int, message: str) -> None:
        self._gave_up = message
        self.conn.close_with_error(code, message)
        self._close_transport()

    # -- calls -------------------------------------------------------------------

    def call(
        self,
        method: str,
        body: bytes = b"",
        *,
        metadata: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        timeout: float | None = None,
    ) -> Deferred[Reply]:
        """
        Send a request.  See :meth:`twisted_reqresp.Client.call`; this one
        takes and gives bytes only.
        """
        if self._closing or self.lost is not None or self.lifecycle.closing:
            # Never sent, so safe to send again elsewhere.
            return fail(self._closed_error("the connection is closed", retry_safe=True))
        goaway = self.conn.peer_goaway
        if goaway is not None:
            # Never queued behind a GOAWAY: it could only fail later.
            return fail(ConnectionClosed(_going_away(goaway), retry_safe=True))
        try:
            # The checks' common case inline (exactly str and bytes, no timeout, no
            # metadata: what _check_call and metadata_pairs accept as is), the rest by them.
            if timeout is not None or type(method) is not str or type(body) is not bytes:
                _check_call(method, body, timeout)
            pairs = metadata_pairs(metadata) if metadata else ()
            deadline_ms = _deadline_ms(timeout) if timeout is not None else None
        except Exception:
            return fail()
        # _can_send(), inline: once per call.
        if (
            self.queued
            or self.lifecycle.write_blocked
            or len(self.pending) + len(self.streams) >= self.conn.peer_settings.max_concurrent
        ):
            deadline = None if timeout is None else self.clock.seconds() + timeout
            d = self._enqueue(method, body, pairs, deadline)
        else:
            try:
                rid = self.conn.send_request(method, body, pairs, deadline_ms)
            except LocalProtocolError as e:
                return fail(_local_error(e))
            except Exception:
                return fail()
            d = Deferred(lambda _: self._cancel(rid))
            self.pending[rid] = d
            self._flush()
        if timeout is not None:
            self._time_out(d, timeout)
        return d

    # -- timeouts ------------------------------------------------------------------

    def _time_out(self, d: Deferred[Reply], timeout: float) -> None:
        """
        Cancel ``d`` after ``timeout`` seconds unless it fired, and then fail
        it with :class:`~twisted_reqresp.DeadlineExceeded`: what
        ``d.addTimeout(timeout, clock, onTimeoutCancel=...)`` does, but a
        clock timer (a ``DelayedCall``, two closures and two callbacks) per
        call cost about as much as the rest of the call.
        """
        deadline = self.clock.seconds() + timeout
        self._timed[d] = timeout
        heapq.heappush(self._deadlines, (deadline, next(self._deadline_seq), d))
        d.addBoth(self._timeout_done, d)
        if self._timer is None or deadline < self._timer_at:
            self._set_timer()

    def _timeout_done(self, result: Any, d: Deferred[Reply]) -> Any:
        timeout = self._timed.pop(d, None)
        if timeout is None:
            # _expire took it out: the cancellation is its timeout.
            timeout = self._expired.pop(d, None)
            if timeout is not None and isinstance(result, Failure) and result.check(CancelledError):
                raise DeadlineExceeded(f"no answer within {timeout:g} s")
            return result
        deadlines = self._deadlines
        if not self._timed:
            deadlines.clear()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        elif len(deadlines) > 64 + 2 * len(self._timed):
            # Entries of finished calls: bounded to the live ones' number.
            timed = self._timed
            deadlines[:] = [entry for entry in deadlines if entry[2] in timed]
            heapq.heapify(deadlines)
        return result

    def _set_timer(self) -> None:
        """Set the timer for the earliest deadline still waited for."""
        deadlines = self._deadlines
        timed = self._timed
        while deadlines and deadlines[0][2] not in timed:
            heapq.heappop(deadlines)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadlines:
            self._timer_at = deadline = deadlines[0][0]
            delay = max(0.0, deadline - self.clock.seconds())
            self._timer = self.clock.callLater(delay, self._expire)

    def _expire(self) -> None:
        """Cancel the calls whose deadline passed."""
        self._timer = None
        now = self.clock.seconds() + _TIMEOUT_SLACK
        deadlines = self._deadlines
        timed = self._timed
        # One at a time, as separate timers would: a timed-out call's
        # callbacks may cancel a sibling due at the same time (which then
        # fails with CancelledError) or make new timed calls.
        while deadlines and deadlines[0][0] <= now:
            _, _, d = heapq.heappop(deadlines)
            timeout = timed.pop(d, None)
            if timeout is not None:
                self._expired[d] = timeout
                d.cancel()
                self._expired.pop(d, None)  # if its canceller fired it otherwise
        self._set_timer()

    def _can_send(self) -> bool:
        """Whether a call may go out now: the server reads, and one of its
        MAX_CONCURRENT slots is free."""
        return (
            not self.lifecycle.write_blocked
            and len(self.pending) + len(self.streams) < self.conn.peer_settings.max_concurrent
        )

    def _enqueue(
        self, method: str, body: bytes, metadata: Metadata, deadline: float | None
    ) -> Deferred[Reply]:
        if len(self.queued) >= self.conn.limits.max_queued_calls:
            why = (
                "the server is not reading"
                if self.lifecycle.write_blocked
                else f"the server's MAX_CONCURRENT of {self.conn.peer_settings.max_concurrent} "
                "is reached"
            )
            return fail(
                StatusError(
                    StatusCode.RESOURCE_EXHAUSTED,
                    f"{why} and {len(self.queued)} calls are queued (max_queued_calls)",
                    retry_safe=True,
                )
            )
        entry = _Queued(method, body, metadata, deadline)
        d: Deferred[Reply] = Deferred(lambda _: self._cancel_queued(entry))
        entry.deferred = d
        self.queued.append(entry)
        return d

    def _cancel_queued(self, entry: _Queued) -> None:
        if entry.request_id is not None:
            self._cancel(entry.request_id)
        else:
            try:
                self.queued.remove(entry)
            except ValueError:
                pass
            self._maybe_finish_close()

    def _release_queue(self) -> None:
        queued = self.queued
        pending = self.pending
        while queued and not self.lifecycle.closing and self._can_send():
            entry = queued.popleft()
            d = entry.deferred
            assert d is not None
            if d.called:
                continue
            deadline_ms = None
            if entry.deadline is not None:
                # What is left of the caller's wait, not what it was.
                deadline_ms = _deadline_ms(max(0.0, entry.deadline - self.clock.seconds()))
            try:
                rid = self.conn.send_request(entry.method, entry.body, entry.metadata, deadline_ms)
            except LocalProtocolError as e:
                _fail(d, _local_error(e))
                continue
            except Exception:
                _fail(d, Failure())
                continue
            entry.request_id = rid
            pending[rid] = d
            self._flush()  # may pause us again (in a read, once the batch is full)
        self._maybe_finish_close()

    def _cancel(self, rid: int) -> None:
        if self.pending.pop(rid, None) is not None:
            self.conn.send_cancel(rid)
            self._flush()
            # The server frees the slot when it reads the CANCEL, before
            # anything sent after it.
            self._release_queue()

    # -- streaming calls ------------------------------------------------------------

    def stream(
        self,
        method: str,
        body: bytes = b"",
        *,
        kind: str = "server_stream",
        codec: ICodec = BYTES,
        result_codec: ICodec | None = None,
        metadata: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        timeout: float | None = None,
    ) -> StreamingCall[Any, Any]:
        """
        Open a streaming call.  See :meth:`twisted_reqresp.Client.stream`;
        never raises: a call that cannot be sent is returned failed.

        Unlike unary calls, a streaming call is never queued: the server
        parks it if it is past its MAX_CONCURRENT.
        """
        try:
            client_streams, server_streams = stream_flags(kind)
            _check_call(method, body, timeout)
            pairs = metadata_pairs(metadata)
        except Exception:
            return StreamingCall.failed(kind, Failure())
        if self._closing or self.lost is not None or self.lifecycle.closing:
            return StreamingCall.failed(
                kind, Failure(self._closed_error("the connection is closed", retry_safe=True))
            )
        goaway = self.conn.peer_goaway
        if goaway is not None:
            return StreamingCall.failed(
                kind, Failure(ConnectionClosed(_going_away(goaway), retry_safe=True))
            )
        conn = self.conn
        try:
            rid = conn.start_stream(
                method,
                body,
                pairs,
                _deadline_ms(timeout) if timeout is not None else None,
                client_stream=client_streams,
                server_stream=server_streams,
            )
        except LocalProtocolError as e:
            return StreamingCall.failed(kind, Failure(_local_error(e)))
        except Exception:
            return StreamingCall.failed(kind, Failure())
        call: StreamingCall[Any, Any] = StreamingCall(kind, codec, result_codec)
        call.request_id = rid
        if server_streams:

            def acknowledge(nbytes: int) -> None:
                conn.acknowledge(rid, nbytes)
                self._flush()

            call._reader = MessageReader(
                acknowledge, codec.decode if codec is not BYTES else _identity
            )
        if client_streams:

            def send(data: bytes) -> None:
                conn.send_message(rid, data)
                self._flush()

            def end() -> None:
                if rid in self.streams:
                    conn.end_stream(rid)
                    self._flush()

            call._writer = MessageWriter(
                lambda: conn.can_send_message(rid),
                send,
                lambda: conn.peer_settings.max_frame_size,
            )
            call._ender = end
        timer: Any = None

        def give_up(error: BaseException) -> None:
            if self.streams.pop(rid, None) is not None:
                conn.send_cancel(rid)
                self._flush()
            call._finish(Failure(error))

        call._canceller = give_up
        if timeout is not None:
            timer = self.clock.callLater(
                timeout, call._give_up, DeadlineExceeded(f"no answer within {timeout:g} s")
            )
            call._on_done.append(lambda: timer.cancel() if timer.active() else None)
        call._on_done.append(self._maybe_finish_close)
        self.streams[rid] = call
        self._flush()
        return call

    def _stream_done(self, rid: int, event: Response | ErrorResponse) -> None:
        """A streaming call's final status arrived."""
        call = self.streams.pop(rid, None)
        if call is None:
            return
        if isinstance(event, Response):
            metadata = dict(event.metadata) if event.metadata else _NO_METADATA
            call._finish(Reply(body=event.body, metadata=metadata))
        else:
            call._finish(Failure(_remote_error(event)))

    def _credit(self, rid: int) -> None:
        """Credit arrived: the writers it concerns send what waits."""
        if rid == 0:
            calls = list(self.streams.values())
        else:
            one = self.streams.get(rid)
            calls = [one] if one is not None else []
        for call in calls:
            if call._writer is not None:
                call._writer.pump()

    def ping(self) -> Deferred[float]:
        """
        Send a PING.

        :returns: a Deferred firing with the round-trip time in seconds.
        """
        if self.lost is not None:
            return fail(self._closed_error("the connection is closed"))
        if not self.conn.keepalive:
            return fail(StatusError(StatusCode.UNIMPLEMENTED, "this wire format has no PING"))
        payload = _PING.pack(next(self._ping_ids))
        d: Deferred[float] = Deferred(lambda _: self._forget_ping(payload))
        self._pings[payload] = (d, self.clock.seconds())
        self.conn.send_ping(payload)
        self._flush()
        return d

    def _forget_ping(self, payload: bytes) -> None:
        self._pings.pop(payload, None)

    def close(self) -> Deferred[None]:
        """
        Close in order: no new calls; the pending ones finish (or time out);
        then the connection closes.

        :returns: a Deferred that fires once the connection is closed.
        """
        d: Deferred[None] = Deferred()
        if self.lost is not None:
            d.callback(None)
            return d
        self._close_waiters.append(d)
        self._closing = True
        self._maybe_finish_close()
        return d

    def when_closed(self) -> Deferred[None]:
        """
        :returns: a Deferred that fires when the connection closes, whoever
            closes it (at once if it is already closed).
        """
        d: Deferred[None] = Deferred()
        if self.lost is not None:
            d.callback(None)
        else:
            self._close_waiters.append(d)
        return d

    def abort(self) -> None:
        """Close at once; pending calls fail with ConnectionClosed."""
        if self.lost is None:
            self.lifecycle.abort()

    def _maybe_finish_close(self) -> None:
        if self._closing and not self.pending and not self.queued and not self.streams:
            self._close_transport()


def _identity(data: bytes) -> bytes:
    return data


def _going_away(goaway: GoAway) -> str:
    """:returns: why calls fail after the server's GOAWAY."""
    return f"the server is going away: {goaway.message or 'shutting down'}"


def _fail(d: Deferred[Any], error: Any) -> None:
    """Fail ``d`` unless it already fired (cancelled by a sibling's errback)."""
    if not d.called:
        d.errback(error)


def _check_call(method: object, body: object, timeout: float | None) -> None:
    """Reject a call's arguments before anything is sent or queued."""
    if not isinstance(method, str):
        raise TypeError(f"method must be str, not {type(method).__name__}")
    if not isinstance(body, bytes):
        raise TypeError(f"body must be bytes, not {type(body).__name__}")
    check_timeout(timeout)


def check_timeout(timeout: object) -> None:
    """:raises ValueError: unless ``timeout`` is ``None`` or a finite number of seconds > 0."""
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 < timeout < math.inf
    ):
        raise ValueError(f"timeout must be a positive number of seconds or None, not {timeout!r}")


def _remote_error(event: ErrorResponse) -> StatusError:
    if event.code == StatusCode.DEADLINE_EXCEEDED:
        # The server's copy of the deadline fired before our timer (they
        # race): the same outcome, so the same exception as a local timeout.
        return DeadlineExceeded(f"{event.message or 'deadline exceeded'} (at the server)")
    return RemoteError(event.code, event.message, event.details, retry_safe=event.retry_safe)


def _local_error(error: LocalProtocolError) -> StatusError:
    if error.code == StatusCode.UNAVAILABLE:
        return ConnectionClosed(error.message, retry_safe=True)
    return StatusError(error.code, error.message)
