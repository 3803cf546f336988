"""
The write-through shortcut (``_adapters/writethrough.py``) against a real
loopback TCP connection: it reads private attributes of Twisted's
``FileDescriptor`` (``_tempDataLen``, and ``dataBuffer``/``offset``/``TLS``),
so these tests pin what it relies on and fail loudly, naming the
attribute, when a Twisted release changes them, instead of the shortcut
silently turning itself off (or, worse, sending bytes ahead of ones Twisted
still holds).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest_twisted
from twisted.internet import reactor as _reactor
from twisted.internet import tcp
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol

from twisted_reqresp._adapters.writethrough import write_through

reactor: Any = _reactor


class _Collect(Protocol):
    """Collects what it receives; fires ``done`` once ``expected`` bytes came."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.chunks: list[bytes] = []
        self.received = 0
        self.done: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)
        self.received += len(data)
        if self.received >= self.expected and not self.done.called:
            self.done.callback(b"".join(self.chunks))


@contextlib.contextmanager
def _cleanup() -> Iterator[list[Callable[[], object]]]:
    """Runs the callables appended to the list, last first, at the end."""
    cleanups: list[Callable[[], object]] = []
    try:
        yield cleanups
    finally:
        for cleanup in reversed(cleanups):
            cleanup()


@inlineCallbacks
def _connected(expected: int, cleanups: list[Callable[[], object]]) -> Any:
    """:returns: (the server side's transport, the client protocol collecting)."""
    from twisted.internet.endpoints import TCP4ClientEndpoint

    server_side: Deferred[Any] = Deferred()

    class Server(Protocol):
        def connectionMade(self) -> None:
            server_side.callback(self.transport)

    port = reactor.listenTCP(0, Factory.forProtocol(Server), interface="127.0.0.1")
    cleanups.append(port.stopListening)
    collector = _Collect(expected)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
    client = yield endpoint.connect(Factory.forProtocol(lambda: collector))
    cleanups.append(client.transport.abortConnection)
    transport = yield server_side.addTimeout(10, reactor)
    cleanups.append(transport.abortConnection)
    return transport, collector


# pytest-twisted runs the reactor (in a greenlet) for these tests: a trial
# TestCase would try to run it a second time once a plain test started it.


@pytest_twisted.inlineCallbacks
def test_pinned_attributes() -> Any:
    """A plain TCP transport has every attribute the shortcut reads, of the type it reads."""
    with _cleanup() as cleanups:
        transport, _ = yield _connected(0, cleanups)
        assert isinstance(transport, tcp.Connection)
        for name, kind in (
            ("_tempDataLen", int),
            ("dataBuffer", bytes),
            ("offset", int),
            ("connected", int),
            ("disconnecting", int),
        ):
            assert hasattr(transport, name), f"Twisted's tcp.Connection no longer has {name!r}"
            assert isinstance(getattr(transport, name), kind), name
        assert transport.TLS is False, "tcp.Connection.TLS is no longer False"
        assert write_through(transport) != transport.write, (
            "the shortcut is not taken on a plain TCP connection: see writethrough.py"
        )


@pytest_twisted.inlineCallbacks
def test_queued_bytes_are_seen() -> Any:
    """Bytes transport.write queued show in _tempDataLen or dataBuffer, where sends look."""
    with _cleanup() as cleanups:
        transport, _ = yield _connected(0, cleanups)
        transport.write(b"abc")
        queued = transport._tempDataLen + len(transport.dataBuffer) - transport.offset
        assert queued == 3, "Twisted no longer counts queued bytes where we look"


@pytest_twisted.inlineCallbacks
def test_never_reorders() -> Any:
    """Bytes sent through the shortcut never overtake bytes Twisted still holds."""
    big = bytes(range(256)) * (32 * 1024)  # 8 MiB: more than the socket takes at once
    tail = [f"<{i}>".encode() for i in range(50)]
    expected = big + b"".join(tail)
    with _cleanup() as cleanups:
        transport, collector = yield _connected(len(expected), cleanups)
        send = write_through(transport)
        send(big[:1000])  # straight to the socket
        transport.write(big[1000:])  # queued by Twisted
        for chunk in tail:
            send(chunk)  # must queue behind it, not go to the socket
        received = yield collector.done.addTimeout(20, reactor)
        assert len(received) == len(expected)
        assert received == expected, "bytes were reordered"


@pytest_twisted.inlineCallbacks
def test_not_taken_after_starttls() -> Any:
    """After startTLS the transport says TLS, and nothing goes to the socket in clear."""
    from e2e import Certificates
    from twisted.internet import ssl

    certs = Certificates()
    with _cleanup() as cleanups:
        cleanups.append(certs.remove)
        transport, _ = yield _connected(0, cleanups)
        send = write_through(transport)  # made while the connection was plain
        options = ssl.PrivateCertificate.loadPEM(
            certs.key_file.read_text() + certs.cert_file.read_text()
        ).options()
        transport.startTLS(options)
        assert transport.TLS is True, "startTLS no longer sets transport.TLS"
        real = transport.socket
        spy = _SocketSpy(real)
        transport.socket = spy
        try:
            send(b"secret")
        finally:
            transport.socket = real
        assert spy.sent == [], "cleartext sent to a TLS connection's socket"
        assert write_through(transport) == transport.write


class _SocketSpy:
    """A socket that records send() calls and passes everything else on."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        result: int = self.real.send(data)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)
