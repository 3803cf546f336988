"""
Every error answer can be encoded: ``Connection.send_error`` is total for a
request that awaits an answer (``docs/protocol.md``, "ERROR"), so a
responder's unsendable error still answers its caller, keeps the connection
open and frees its concurrency slot.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import LINE, Call, Limits, RemoteError, Router, StatusCode, StatusError
from twisted_reqresp._core.binary import PREFACE, BinaryCodec, BinaryFormat
from twisted_reqresp._core.connection import MAX_ERROR_MESSAGE, Connection
from twisted_reqresp._core.errors import LocalProtocolError
from twisted_reqresp._core.events import ErrorResponse, Event, GoAway, Request, Role, Settings
from twisted_reqresp._core.limits import DEFAULT_LIMITS
from twisted_reqresp.testing import ConnectedPair, connected_pair

_ERROR_HEAD = 6  # an ERROR payload's code (u32) and message length (u16)


def _binary_server(peer_max_frame: int = DEFAULT_LIMITS.max_frame_size) -> Connection:
    """:returns: a binary server connection awaiting an answer to request 1."""
    server = Connection(Role.SERVER, BinaryFormat())
    client = BinaryCodec(Role.CLIENT, DEFAULT_LIMITS)
    server.receive_data(
        PREFACE
        + client.encode(Settings(max_frame_size=peer_max_frame, max_concurrent=10))
        + client.encode(Request(request_id=1, method="m"))
    )
    while server.next_event() is not None:
        pass
    server.data_to_send()
    return server


def _sent_error(server: Connection) -> ErrorResponse:
    """:returns: the one ERROR the server queued, decoded as its client sees it."""
    data = server.data_to_send()
    codec = BinaryCodec(Role.CLIENT, DEFAULT_LIMITS)
    codec.receive_data(data)
    events: list[Event] = []
    while (event := codec.next_event()) is not None:
        events.append(event)
    assert codec.buffered == 0
    assert len(events) == 1 and isinstance(events[0], ErrorResponse), events
    return events[0]


# --- status codes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "shown"),
    [
        (StatusCode.OK, "OK"),
        (0, "OK"),
        (StatusCode.PROTOCOL_ERROR, "PROTOCOL_ERROR"),
        (-1, "-1"),
        (2**32, "4294967296"),
        (2**40, "1099511627776"),
        (10**5000, "out of range"),
        ("NOT_FOUND", "of type str"),
    ],
    ids=["OK", "0", "PROTOCOL_ERROR", "-1", "2**32", "2**40", "10**5000", "str"],
)
def test_unsendable_code_becomes_internal(code: Any, shown: str) -> None:
    """A code an ERROR cannot carry is sent as INTERNAL, the message naming it."""
    server = _binary_server()
    server.send_error(1, code, "boom", b"dd", retry_safe=True)
    assert _sent_error(server) == ErrorResponse(
        request_id=1,
        code=StatusCode.INTERNAL,
        message=f"status {shown} cannot be sent in an error answer: boom",
        details=b"dd",
        retry_safe=True,
    )
    assert server.unanswered == 0


@pytest.mark.parametrize("code", [1, 16, 99, 101, 999, 1000, 2**32 - 1])
def test_sendable_codes_kept(code: int) -> None:
    """Every code from 1 to 2**32 - 1 but PROTOCOL_ERROR goes on the wire unchanged."""
    server = _binary_server()
    server.send_error(1, code, "m")
    assert _sent_error(server) == ErrorResponse(request_id=1, code=code, message="m")


def test_unsendable_code_without_message() -> None:
    """A refused code with no message still says which code was refused."""
    server = _binary_server()
    server.send_error(1, 0)
    assert _sent_error(server).message == "status OK cannot be sent in an error answer"


# --- the message field: 65,535 bytes --------------------------------------------------


@pytest.mark.parametrize(
    ("length", "sent"),
    [
        (MAX_ERROR_MESSAGE - 1, MAX_ERROR_MESSAGE - 1),
        (MAX_ERROR_MESSAGE, MAX_ERROR_MESSAGE),
        (MAX_ERROR_MESSAGE + 1, MAX_ERROR_MESSAGE),
        (1024 * 1024, MAX_ERROR_MESSAGE),
    ],
)
def test_message_field_limit(length: int, sent: int) -> None:
    """A message is sent whole up to 65,535 bytes and cut to 65,535 above."""
    server = _binary_server()
    server.send_error(1, StatusCode.NOT_FOUND, "x" * length)
    assert _sent_error(server).message == "x" * sent


def test_message_cut_on_character_boundary() -> None:
    """A message is never cut inside a UTF-8 character."""
    server = _binary_server()
    server.send_error(1, StatusCode.NOT_FOUND, "\u20ac" * 30_000)  # 3 bytes each
    assert _sent_error(server).message == "\u20ac" * (MAX_ERROR_MESSAGE // 3)


def test_lone_surrogate_replaced() -> None:
    """Characters UTF-8 cannot carry are sent as '?'."""
    server = _binary_server()
    server.send_error(1, StatusCode.NOT_FOUND, "a\ud800b")
    assert _sent_error(server).message == "a?b"


# --- the peer's maximum frame size ------------------------------------------------


@pytest.mark.parametrize(("extra", "sent"), [(-1, 1017), (0, 1018), (1, 1018), (5000, 1018)])
def test_message_fits_peer_frame(extra: int, sent: int) -> None:
    """A message is cut to what the peer's 1024-byte frames leave room for."""
    server = _binary_server(peer_max_frame=1024)
    server.send_error(1, StatusCode.NOT_FOUND, "y" * (1024 - _ERROR_HEAD + extra))
    assert _sent_error(server).message == "y" * sent


@pytest.mark.parametrize("extra", [-1, 0])
def test_details_that_fit_kept(extra: int) -> None:
    """Details up to the peer's frame size, less the ERROR head, are kept."""
    server = _binary_server(peer_max_frame=1024)
    details = b"d" * (1024 - _ERROR_HEAD + extra)
    server.send_error(1, StatusCode.NOT_FOUND, "the message", details)
    error = _sent_error(server)
    assert error.details == details
    assert error.message == "the message"[:-extra]  # the bytes the details leave


@pytest.mark.parametrize("size", [1024 - _ERROR_HEAD + 1, 1024 * 1024])
def test_details_too_large_dropped(size: int) -> None:
    """Details over the peer's frame size are dropped and the message says so."""
    server = _binary_server(peer_max_frame=1024)
    server.send_error(1, StatusCode.NOT_FOUND, "gone", b"d" * size)
    assert _sent_error(server) == ErrorResponse(
        request_id=1,
        code=StatusCode.NOT_FOUND,
        message=f"gone (details of {size} bytes dropped: over the peer's maximum frame size)",
    )


def test_details_and_long_message() -> None:
    """Kept details leave the message the rest of the frame."""
    server = _binary_server(peer_max_frame=1024)
    server.send_error(1, StatusCode.NOT_FOUND, "z" * 5000, b"d" * 500)
    error = _sent_error(server)
    assert (error.details, error.message) == (b"d" * 500, "z" * (1024 - _ERROR_HEAD - 500))


def test_wrong_types_dropped() -> None:
    """A message that is not text or details that are not bytes are dropped, with a note."""
    server = _binary_server()
    server.send_error(1, StatusCode.NOT_FOUND, 42, "text")  # type: ignore[arg-type]
    assert _sent_error(server).message == (
        " (message of type int dropped: not text) (details of type str dropped: not bytes)"
    )


def test_note_never_overflows_the_frame() -> None:
    """Details that fill the frame make room for a note about the message, by going."""
    server = _binary_server(peer_max_frame=1024)
    server.send_error(1, StatusCode.NOT_FOUND, None, b"d" * (1024 - _ERROR_HEAD))  # type: ignore[arg-type]
    error = _sent_error(server)
    assert error.details == b""
    assert error.message == (
        " (message of type NoneType dropped: not text)"
        " (details of 1018 bytes dropped: over the peer's maximum frame size)"
    )


def test_not_awaited_raises() -> None:
    """send_error raises LocalProtocolError only for a request not awaiting an answer."""
    server = _binary_server()
    for rid in (0, 2, -1):
        with pytest.raises(LocalProtocolError):
            server.send_error(rid, StatusCode.NOT_FOUND)
    server.send_error(1, 0, "x" * 10**6, b"d" * 10**6)
    with pytest.raises(LocalProtocolError):
        server.send_error(1, StatusCode.NOT_FOUND)


def test_line_format_mapping() -> None:
    """The line format sends refused codes as INTERNAL, cut to the line length."""
    server = Connection(Role.SERVER, LINE, Limits(max_line_length=100))
    server.receive_data(b"a\nb\n")
    while server.next_event() is not None:
        pass
    server.send_error(1, 2**40, "boom")
    server.send_error(2, StatusCode.NOT_FOUND, "q" * 10**6, b"d" * 10**6)
    first, second, rest = server.data_to_send().split(b"\r\n")
    assert first == b"ERR INTERNAL status 1099511627776 cannot be sent in an error answer: boom"
    assert second == b"ERR NOT_FOUND " + b"q" * (100 - len(b"ERR NOT_FOUND \r\n"))
    assert rest == b""


# --- through the server --------------------------------------------------------------


class _Cases:
    """Errors a responder may raise that cannot go on the wire as they are."""

    PEER_MAX_FRAME = 1024

    @staticmethod
    def errors() -> list[tuple[StatusError, int]]:
        """:returns: ``(raised, code the client sees)`` pairs."""
        return [
            (StatusError(0, "zero"), StatusCode.INTERNAL),
            (StatusError(2**40, "huge"), StatusCode.INTERNAL),
            (StatusError(StatusCode.PROTOCOL_ERROR, "wire"), StatusCode.INTERNAL),
            (StatusError(StatusCode.NOT_FOUND, "m" * 1024 * 1024), StatusCode.NOT_FOUND),
            (StatusError(StatusCode.NOT_FOUND, "big details", b"d" * 4096), StatusCode.NOT_FOUND),
        ]


class ServerErrorAnswerTests(SynchronousTestCase):
    """A responder's unsendable error reaches the caller; the connection stays usable."""

    def _pair(self, router: Router, wire: Any = None) -> ConnectedPair:
        router.add("echo", lambda call: call.body)
        return connected_pair(
            router,
            wire=wire,
            client_limits=Limits(max_frame_size=_Cases.PEER_MAX_FRAME),
        )

    def _check_usable(self, pair: ConnectedPair) -> None:
        self.assertEqual(pair.server.conn.in_flight, set())
        self.assertEqual(pair.server.conn.unanswered, 0)
        self.assertEqual(pair.server.running, {})
        d = pair.client.call("echo", b"still here")
        pair.pump()
        self.assertEqual(self.successResultOf(d).body, b"still here")
        self.assertFalse(pair.server_transport.disconnecting)
        self.assertFalse(pair.client_transport.disconnecting)

    def _check_answer(self, d: Deferred[Any], code: int) -> None:
        error = self.failureResultOf(d, RemoteError).value
        self.assertEqual(error.code, code)
        self.assertLessEqual(len(error.message.encode()), MAX_ERROR_MESSAGE)
        self.assertLessEqual(len(error.details), _Cases.PEER_MAX_FRAME)

    def test_sync_responder(self) -> None:
        """A sync responder raising an unsendable error gets an answer, per case."""
        for wire in (None, LINE):
            for raised, code in _Cases.errors():
                router = Router()

                def fail(call: Call, raised: StatusError = raised) -> bytes:
                    raise raised

                router.add("fail", fail)
                pair = self._pair(router, wire)
                d = pair.client.call("fail")
                pair.pump()
                self._check_answer(d, code)
                self._check_usable(pair)

    def test_async_responder(self) -> None:
        """A Deferred failing later with an unsendable error gets an answer, per case."""
        for wire in (None, LINE):
            for raised, code in _Cases.errors():
                router = Router()
                waiting: list[Deferred[bytes]] = []

                def wait(call: Call, waiting: list[Deferred[bytes]] = waiting) -> Deferred[bytes]:
                    waiting.append(Deferred())
                    return waiting[-1]

                router.add("wait", wait)
                pair = self._pair(router, wire)
                d = pair.client.call("wait")
                pair.pump()
                waiting[0].errback(raised)
                pair.pump()
                self._check_answer(d, code)
                self._check_usable(pair)

    def test_coroutine_responder(self) -> None:
        """An async def responder raising an unsendable error gets an answer."""
        router = Router()

        @router.method("co")
        async def co(call: Call) -> bytes:
            raise StatusError(2**40, "huge")

        pair = self._pair(router)
        d = pair.client.call("co")
        pair.pump()
        self._check_answer(d, StatusCode.INTERNAL)
        self._check_usable(pair)

    def test_longest_binary_method_not_found(self) -> None:
        """A 65,535-byte unknown method (the binary field's limit) gets NOT_FOUND."""
        for method in ("x" * 65_535, "\u00e9" * 32_767):
            pair = self._pair(Router())
            d = pair.client.call(method)
            pair.pump()
            error = self.failureResultOf(d, RemoteError).value
            self.assertEqual(error.code, StatusCode.NOT_FOUND)
            self.assertTrue(error.message.startswith("unknown method '"))
            self._check_usable(pair)

    def test_long_line_method_not_found(self) -> None:
        """A 70,000-byte unknown method on the line format gets NOT_FOUND."""
        router = Router()
        router.add("echo", lambda call: call.body)
        limits = Limits(max_line_length=128 * 1024)
        pair = connected_pair(router, wire=LINE, limits=limits, client_limits=limits)
        d = pair.client.call("x" * 70_000)
        pair.pump()
        error = self.failureResultOf(d, RemoteError).value
        self.assertEqual(error.code, StatusCode.NOT_FOUND)
        self.assertEqual(len(error.message.encode()), MAX_ERROR_MESSAGE)
        self._check_usable(pair)


class FatalWordsTests(SynchronousTestCase):
    """A side's last words always encode."""

    def test_lone_surrogate_in_goaway_message(self) -> None:
        """close_with_error with a lone surrogate in the message sends a GOAWAY with '?'."""
        server = Connection(Role.SERVER, BinaryFormat())
        server.receive_data(PREFACE)
        server.next_event()
        server.data_to_send()
        server.close_with_error(StatusCode.UNAVAILABLE, "bad \udc80 text")
        client = BinaryFormat().codec(Role.CLIENT, Limits())
        client.receive_data(server.data_to_send())
        goaway = client.next_event()
        assert isinstance(goaway, GoAway)
        self.assertEqual(goaway.message, "bad ? text")

    def test_lone_surrogate_before_preface(self) -> None:
        """Before the preface the text line replaces a lone surrogate too."""
        server = Connection(Role.SERVER, BinaryFormat())
        server.close_with_error(StatusCode.DEADLINE_EXCEEDED, "x \udc80")
        self.assertEqual(server.data_to_send(), b"reqresp: x ?\r\n")
