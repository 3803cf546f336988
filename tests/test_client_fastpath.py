"""
The client's per-call shortcuts: ``ClientProtocol.call`` checks the common
case (a ``str`` method, a ``bytes`` body, no timeout, no metadata) inline
and leaves the rest to ``_check_call`` and ``metadata_pairs``;
``Client.call`` without interceptors goes straight to the protocol.  These
tests prove both give what the general path gives.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, fail
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import BINARY, Client, Limits
from twisted_reqresp._adapters.client import encode_body, start_call
from twisted_reqresp._adapters.client_protocol import ClientProtocol, _check_call, _deadline_ms
from twisted_reqresp._core.call import metadata_pairs
from twisted_reqresp.codecs import BYTES
from twisted_reqresp.wire import Connection, Request, Role


class _Str(str):
    """A str subclass: not the shortcut's exact type."""


class _Bytes(bytes):
    """A bytes subclass: not the shortcut's exact type."""


_methods = st.one_of(
    st.sampled_from(["echo", "", "é", _Str("sub"), b"echo", None, 1]),
    st.text(max_size=5),
)
_bodies = st.one_of(
    st.sampled_from([b"", b"x" * 64, _Bytes(b"sub"), bytearray(b"ba"), "text", None, 0]),
    st.binary(max_size=8),
)
_metadata = st.sampled_from(
    [None, {}, [], (), {"k": "v"}, [("a", "1"), ("a", "2")], {"k": 1}, [("k",)], "ab", 0]
)
_timeouts = st.sampled_from([None, 0.5, 1, 30.0, 0, -1.0, math.inf, math.nan, True, "1", 1e-9])


def _connected() -> tuple[ClientProtocol, StringTransport, Connection]:
    """:returns: a client protocol past the handshake, its transport, and the server's side."""
    protocol = ClientProtocol(wire=BINARY, limits=Limits(), clock=MemoryReactorClock())
    transport = StringTransport()
    protocol.makeConnection(transport)
    server = Connection(Role.SERVER, BINARY, Limits())
    server.receive_data(transport.value())
    while server.next_event() is not None:
        pass
    transport.clear()
    protocol.dataReceived(server.data_to_send())
    return protocol, transport, server


def _outcome(d: Deferred[Any], transport: StringTransport, server: Connection) -> Any:
    """:returns: the failure's type and message, or the request the server read."""
    failures: list[Failure] = []
    d.addErrback(failures.append)
    if failures:
        return ("failed", failures[0].type, failures[0].getErrorMessage())
    server.receive_data(transport.value())
    events = []
    while (event := server.next_event()) is not None:
        events.append(event)
    return ("sent", events)


def _reference(method: Any, body: Any, metadata: Any, timeout: Any) -> Any:
    """:returns: what the general path makes of the arguments."""
    try:
        _check_call(method, body, timeout)
        pairs = metadata_pairs(metadata)
        deadline = _deadline_ms(timeout) if timeout is not None else None
    except Exception as e:
        return ("failed", type(e), str(e))
    request = Request(
        request_id=1, method=method, body=bytes(body), metadata=pairs, deadline_ms=deadline
    )
    return ("sent", [request])


class CallShortcutTests(SynchronousTestCase):
    """The inline argument checks and the interceptor-less shortcut change no outcome."""

    @given(_methods, _bodies, _metadata, _timeouts)
    def test_protocol_call_same_as_the_general_checks(
        self, method: Any, body: Any, metadata: Any, timeout: Any
    ) -> None:
        """For any method, body, metadata and timeout (exact types, subclasses, wrong
        types), ClientProtocol.call fails with the error the general checks raise, or
        sends the request they accept."""
        protocol, transport, server = _connected()
        d = protocol.call(method, body, metadata=metadata, timeout=timeout)
        actual = _outcome(d, transport, server)
        if actual[0] == "sent":
            d.cancel()
        protocol.liveness.stop()
        expected = _reference(method, body, metadata, timeout)
        if expected[0] == "sent" and actual[0] == "failed":
            # The core refused what the checks let through (an empty method).
            self.assertEqual(method, "")
        else:
            self.assertEqual(actual, expected)

    @given(_methods, _bodies, _metadata, _timeouts)
    def test_client_call_same_as_start_call(
        self, method: Any, body: Any, metadata: Any, timeout: Any
    ) -> None:
        """Client.call without interceptors gives what encode_body then start_call with
        no chain give: the same failure, or the same bytes on the wire."""
        results = []
        for shortcut in (True, False):
            protocol, transport, server = _connected()
            if shortcut:
                d = Client(protocol).call(method, body, metadata=metadata, timeout=timeout)
            else:
                try:
                    data = encode_body(body, BYTES)
                except Exception:
                    d = fail()
                else:
                    d = start_call(protocol, None, method, data, metadata, timeout)
            results.append(_outcome(d, transport, server))
            if not d.called:
                d.cancel()
            d.addErrback(lambda _: None)
            protocol.liveness.stop()
        self.assertEqual(results[0], results[1])
