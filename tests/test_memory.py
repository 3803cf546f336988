"""
Memory per idle server connection (issue 12, item 6: at most 2.5 KiB of
RSS each at 10,000 connections, ``benchmarks/memory.py``).

Of that, about 1 KiB is Twisted's own (the TCP transport and its socket:
the naive echo server of the benchmarks costs that much), so what this
project allocates per connection must come near 1.3 KiB for that target.  These tests
measure it with ``tracemalloc`` over a few hundred in-memory connections
on a fake clock, each past the binary handshake (preface, SETTINGS both
ways), with a transport that keeps nothing, and fail when it grows past a
bound with some margin.  ``docs/performance.md`` gives the figures.
"""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import Router, ServerFactory
from twisted_reqresp._adapters.server import ServerProtocol
from twisted_reqresp._core.binary import PREFACE, BinaryCodec
from twisted_reqresp._core.events import Request, Role, Settings
from twisted_reqresp._core.limits import DEFAULT_LIMITS

#: Connections measured: enough that one-off allocations (a dict growing,
#: a free list) do not count, few enough to run in a fraction of a second.
CONNECTIONS = 200

#: Bytes of tracemalloc'd memory allowed per idle connection after the
#: handshake.  Measured at about 1,430 on CPython 3.11, 1,675 idle again
#: after a call (2,440 before the shared liveness timer, the shared local
#: address and SETTINGS, the lifecycle hook and the lazy core tables;
#: 4,380 before issue 12's slots and lazy tables).  That gives about
#: 2.47 KiB of RSS per connection at 10,000 (``benchmarks/memory.py``),
#: within the 2.5 KiB target: this bound leaves little room.
IDLE_BUDGET = 1_800

_PEER = IPv4Address("TCP", "127.0.0.1", 40000)
_HOST = IPv4Address("TCP", "127.0.0.1", 8000)


class _NullTransport:
    """A transport that keeps nothing: what it costs is Twisted's, not ours."""

    __slots__ = ("written",)

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writeSequence(self, seq: list[bytes]) -> None:
        self.written += sum(map(len, seq))

    def registerProducer(self, producer: object, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def loseConnection(self) -> None:
        pass

    def abortConnection(self) -> None:
        pass

    def getPeer(self) -> IPv4Address:
        return _PEER

    def getHost(self) -> IPv4Address:
        return _HOST


def _client_hello() -> bytes:
    codec = BinaryCodec(Role.CLIENT, DEFAULT_LIMITS)
    settings = Settings(
        max_frame_size=DEFAULT_LIMITS.max_frame_size,
        max_concurrent=DEFAULT_LIMITS.max_concurrent,
        stream_credit=DEFAULT_LIMITS.stream_credit,
        connection_credit=DEFAULT_LIMITS.connection_credit,
    )
    return PREFACE + codec.encode(settings)


def _factory() -> tuple[ServerFactory, MemoryReactorClock]:
    clock = MemoryReactorClock()
    router = Router()
    router.add("echo", lambda call: call.body)
    return ServerFactory(router, clock=clock), clock


def _connect(factory: ServerFactory, transport: _NullTransport, data: bytes) -> Any:
    protocol = factory.buildProtocol(_PEER)
    protocol.makeConnection(transport)
    protocol.dataReceived(data)
    return protocol


def _bytes_per_connection(factory: ServerFactory, data: bytes) -> float:
    """
    :returns: the bytes tracemalloc sees allocated, and still held, per
        connection made with ``data`` as its peer's bytes.
    """
    # Warm up: the first connections build the factory's lazy state.
    warm = [_connect(factory, _NullTransport(), data) for _ in range(20)]
    transports = [_NullTransport() for _ in range(CONNECTIONS)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        protocols = [_connect(factory, t, data) for t in transports]
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(protocols) == CONNECTIONS and warm
    # The list that holds the protocols is the test's, not the connections'.
    return (after - before - CONNECTIONS * 8) / CONNECTIONS


class IdleConnectionMemoryTests(SynchronousTestCase):
    """What an idle server connection holds, in bytes."""

    def test_idle_after_handshake_within_budget(self) -> None:
        """An idle connection past the handshake holds at most IDLE_BUDGET bytes."""
        factory, clock = _factory()
        per_connection = _bytes_per_connection(factory, _client_hello())
        self.assertEqual(factory.stats.connections_open, CONNECTIONS + 20)
        self.assertLessEqual(per_connection, IDLE_BUDGET, f"{per_connection:.0f} bytes each")
        # One DelayedCall for every connection's liveness, not one each.
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        self.assertEqual(len(factory._liveness_timers()), CONNECTIONS + 20)

    def test_idle_after_a_call_within_budget(self) -> None:
        """A connection idle again after one call holds at most IDLE_BUDGET bytes more than
        its answer's state: the call's buffers and tables are released."""
        codec = BinaryCodec(Role.CLIENT, DEFAULT_LIMITS)
        call = codec.encode(Request(request_id=1, method="echo", body=b"x" * 4000))
        factory, _ = _factory()
        per_connection = _bytes_per_connection(factory, _client_hello() + call)
        self.assertEqual(factory.stats.requests_total, CONNECTIONS + 20)
        # The 4 KB request is not held by its idle connection.
        self.assertLessEqual(per_connection, IDLE_BUDGET, f"{per_connection:.0f} bytes each")


class _FreshAddressTransport(_NullTransport):
    """Like Twisted's TCP transport: a new address object at every call."""

    __slots__ = ("port",)

    def __init__(self, port: int = 8000) -> None:
        super().__init__()
        self.port = port

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 40000)

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", self.port)


class _Heavier(ServerProtocol):
    """A connection holding 512 bytes more than ours do."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ballast = bytes(512)


class BudgetCatchesGrowthTests(SynchronousTestCase):
    """The measurement is not vacuous: growth past the budget fails it."""

    def test_connection_grown_by_512_bytes_is_over_budget(self) -> None:
        """A connection holding 512 bytes more than ours measures above IDLE_BUDGET."""
        factory, _ = _factory()
        factory.protocol = _Heavier  # type: ignore[assignment]
        factory.buildProtocol = lambda addr: _Heavier(factory, 1)  # type: ignore[method-assign]
        per_connection = _bytes_per_connection(factory, _client_hello())
        self.assertGreater(per_connection, IDLE_BUDGET, f"{per_connection:.0f} bytes each")


class SharedAddressTests(SynchronousTestCase):
    """Connections of one listening port share its local address object."""

    def test_equal_local_addresses_are_shared(self) -> None:
        """Two connections whose transports report equal local addresses hold one object."""
        factory, _ = _factory()
        first = _connect(factory, _FreshAddressTransport(), b"")
        second = _connect(factory, _FreshAddressTransport(), b"")
        self.assertEqual(first.info.host, IPv4Address("TCP", "127.0.0.1", 8000))
        self.assertIs(second.info.host, first.info.host)
        # The peers differ per connection and stay each its own.
        self.assertIsNot(second.info.peer, first.info.peer)

    def test_different_local_addresses_are_kept(self) -> None:
        """A connection on another local address gets its own, not a shared one."""
        factory, _ = _factory()
        first = _connect(factory, _FreshAddressTransport(8000), b"")
        other = _connect(factory, _FreshAddressTransport(9000), b"")
        again = _connect(factory, _FreshAddressTransport(9000), b"")
        self.assertEqual(first.info.host.port, 8000)
        self.assertEqual(other.info.host.port, 9000)
        self.assertIs(again.info.host, other.info.host)


class SharedEmptyTablesTests(SynchronousTestCase):
    """An idle Connection shares its empty tables and its peer's SETTINGS."""

    def test_idle_connections_share_peer_settings(self) -> None:
        """Connections whose peers sent equal SETTINGS hold one Settings event."""
        factory, _ = _factory()
        first = _connect(factory, _NullTransport(), _client_hello())
        second = _connect(factory, _NullTransport(), _client_hello())
        self.assertEqual(first.conn.peer_settings.max_concurrent, DEFAULT_LIMITS.max_concurrent)
        self.assertIs(second.conn.peer_settings, first.conn.peer_settings)

    def test_other_settings_are_kept(self) -> None:
        """A peer that sent other SETTINGS keeps its own, and they take effect."""
        factory, _ = _factory()
        first = _connect(factory, _NullTransport(), _client_hello())
        codec = BinaryCodec(Role.CLIENT, DEFAULT_LIMITS)
        other = PREFACE + codec.encode(Settings(max_frame_size=20_000, max_concurrent=3))
        second = _connect(factory, _NullTransport(), other)
        self.assertEqual(second.conn.peer_settings.max_frame_size, 20_000)
        self.assertEqual(first.conn.peer_settings.max_frame_size, DEFAULT_LIMITS.max_frame_size)

    def test_shared_empty_tables_stay_empty(self) -> None:
        """After streaming calls and in-order answers, the shared empty tables hold nothing."""
        from twisted_reqresp._core import connection

        # The line format answers in order (the held table); the streaming
        # tests and the rest of the suite open streams (the streams table).
        from twisted_reqresp.wire import LineFormat

        conn = connection.Connection(Role.SERVER, LineFormat(), DEFAULT_LIMITS)
        self.assertIs(conn._held, connection._NO_HELD)
        self.assertIs(conn._streams, connection._NO_STREAMS)
        conn.receive_data(b"echo a\necho b\n")
        events = [conn.next_event(), conn.next_event()]
        assert isinstance(events[0], Request) and isinstance(events[1], Request)
        conn.send_response(events[1].request_id, b"b")  # held: answered out of order
        self.assertIsNot(conn._held, connection._NO_HELD)
        self.assertEqual(conn.data_to_send(), b"")
        conn.send_response(events[0].request_id, b"a")
        self.assertEqual(conn.data_to_send(), b"OK a\r\nOK b\r\n")
        self.assertEqual(connection._NO_HELD, {})
        self.assertEqual(connection._NO_STREAMS, {})
