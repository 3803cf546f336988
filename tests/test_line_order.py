"""
In-order answering belongs to the :class:`~twisted_reqresp._core.connection.Connection`
(a wire format that is not ``multiplexed`` gets its answers in request
order), held answers count against ``max_concurrent`` through
``Connection.unanswered``, and a line server never sends a line its own
client would refuse (``docs/protocol.md``, "Line format").
"""

from __future__ import annotations

from helpers import echo_and_wait_router
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import LINE, Limits, RemoteError, StatusCode
from twisted_reqresp._core.auto import AutoFormat
from twisted_reqresp._core.binary import PREFACE, BinaryCodec, BinaryFormat
from twisted_reqresp._core.connection import Connection
from twisted_reqresp._core.errors import LocalProtocolError
from twisted_reqresp._core.events import Event, Request, Role, Settings
from twisted_reqresp._core.limits import DEFAULT_LIMITS
from twisted_reqresp.testing import connected_pair


def _drain(conn: Connection) -> list[Event]:
    events = []
    while (event := conn.next_event()) is not None:
        events.append(event)
    return events


def _line_server(lines: int, limits: Limits = DEFAULT_LIMITS) -> Connection:
    """:returns: a line server connection that received ``lines`` requests."""
    server = Connection(Role.SERVER, LINE, limits)
    server.receive_data(b"m\n" * lines)
    assert [type(e) for e in _drain(server)] == [Request] * lines
    return server


def _binary_requests(count: int) -> bytes:
    """:returns: a binary client's preface, SETTINGS and ``count`` requests."""
    client = BinaryCodec(Role.CLIENT, DEFAULT_LIMITS)
    return (
        PREFACE
        + client.encode(Settings(max_frame_size=1024, max_concurrent=1))
        + b"".join(client.encode(Request(request_id=i, method="m")) for i in range(1, count + 1))
    )


class HeldAnswerTests(SynchronousTestCase):
    """The connection holds a line server's early answers until their turn."""

    def test_out_of_order(self) -> None:
        """Answers ready early are held until every earlier answer is sent, then go together."""
        server = _line_server(4)
        server.send_response(3, b"3")
        server.send_response(2, b"2")
        self.assertEqual(server.data_to_send(), b"")
        server.send_response(1, b"1")
        self.assertEqual(server.data_to_send(), b"OK 1\r\nOK 2\r\nOK 3\r\n")
        server.send_response(4, b"4")
        self.assertEqual(server.data_to_send(), b"OK 4\r\n")

    def test_gap_holds_later_answers(self) -> None:
        """Answers after a gap stay held while the gap is open."""
        server = _line_server(3)
        server.send_response(3)
        server.send_response(1)
        self.assertEqual(server.data_to_send(), b"OK\r\n")
        server.send_error(2, 1000)
        self.assertEqual(server.data_to_send(), b"ERR 1000\r\nOK\r\n")

    def test_answer_not_owed(self) -> None:
        """Answering twice, or a request never received, raises and changes nothing."""
        server = _line_server(2)
        server.send_response(2)
        for rid in (2, 3, 0):
            self.assertRaises(LocalProtocolError, server.send_response, rid)
            self.assertRaises(LocalProtocolError, server.send_error, rid, StatusCode.INTERNAL)
        server.send_response(1)
        self.assertEqual(server.data_to_send(), b"OK\r\nOK\r\n")
        self.assertRaises(LocalProtocolError, server.send_response, 1)

    def test_unanswered_counts_held(self) -> None:
        """unanswered counts requests running and answers held; in_flight only the running."""
        server = _line_server(3)
        self.assertEqual(server.unanswered, 3)
        server.send_response(2)
        server.send_response(3)
        self.assertEqual(server.in_flight, {1})
        self.assertEqual(server.unanswered, 3)
        server.send_response(1)
        self.assertEqual(server.unanswered, 0)

    def test_binary_unanswered_is_in_flight(self) -> None:
        """With the binary format, answers are never held: unanswered is len(in_flight)."""
        server = Connection(Role.SERVER, BinaryFormat())
        server.receive_data(_binary_requests(3))
        _drain(server)
        server.send_response(3)
        self.assertEqual(server.unanswered, len(server.in_flight))
        self.assertEqual(server.unanswered, 2)

    def test_forget_answers_cancelled(self) -> None:
        """A forgotten line request is answered CANCELLED so later answers are not stuck."""
        server = _line_server(2)
        server.send_response(2, b"two")
        server.forget(1)
        self.assertEqual(server.data_to_send(), b"ERR CANCELLED cancelled\r\nOK two\r\n")
        self.assertEqual(server.unanswered, 0)

    def test_close_drops_held(self) -> None:
        """Closing forgets held answers: nothing is unanswered and nothing is sent."""
        server = _line_server(2)
        server.send_response(2)
        server.close()
        self.assertEqual(server.unanswered, 0)
        self.assertEqual(server.data_to_send(), b"")

    def test_auto_format_line_peer_in_order(self) -> None:
        """An AutoFormat server holds answers for a peer that speaks the line format."""
        server = Connection(Role.SERVER, AutoFormat())
        server.receive_data(b"a\nb\n")
        self.assertEqual(len(_drain(server)), 2)
        server.send_response(2, b"b")
        self.assertEqual(server.data_to_send(), b"")
        self.assertEqual(server.unanswered, 2)
        server.send_response(1, b"a")
        self.assertEqual(server.data_to_send(), b"OK a\r\nOK b\r\n")

    def test_auto_format_binary_peer_not_held(self) -> None:
        """An AutoFormat server does not hold answers for a binary peer."""
        server = Connection(Role.SERVER, AutoFormat())
        server.receive_data(_binary_requests(2))
        _drain(server)
        server.data_to_send()
        server.send_response(2, b"b")
        self.assertNotEqual(server.data_to_send(), b"")
        self.assertEqual(server.unanswered, 1)


class LineLengthTests(SynchronousTestCase):
    """A line server sends no line longer than its maximum line length."""

    LIMIT = 64

    def _server(self) -> Connection:
        return _line_server(2, Limits(max_line_length=self.LIMIT))

    def test_ok_line_at_limit(self) -> None:
        """An OK line of exactly the maximum line length is sent."""
        server = self._server()
        body = b"x" * (self.LIMIT - len(b"OK \r\n"))
        server.send_response(1, body)
        self.assertEqual(server.data_to_send(), b"OK " + body + b"\r\n")

    def test_ok_line_over_limit(self) -> None:
        """An OK line one byte over raises RESOURCE_EXHAUSTED, still awaiting an answer."""
        server = self._server()
        body = b"x" * (self.LIMIT - len(b"OK \r\n") + 1)
        error = self.assertRaises(LocalProtocolError, server.send_response, 1, body)
        self.assertEqual(error.code, StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(server.in_flight, {1, 2})
        server.send_error(1, error.code, error.message)
        server.send_response(2, b"fine")
        sent = server.data_to_send().split(b"\r\n")
        self.assertTrue(sent[0].startswith(b"ERR RESOURCE_EXHAUSTED response line of 65 "), sent)
        self.assertLessEqual(len(sent[0]) + 2, self.LIMIT)
        self.assertEqual(sent[1:], [b"OK fine", b""])

    def test_escaping_counts(self) -> None:
        """The limit applies to the escaped line: a body that doubles when escaped is refused."""
        server = self._server()
        body = b"\n" * (self.LIMIT // 2)
        self.assertRaises(LocalProtocolError, server.send_response, 1, body)

    def test_err_line_message_cut(self) -> None:
        """An ERR line's message is cut so that the line is at, not over, the limit."""
        for extra in (-1, 0, 1, 1000):
            server = self._server()
            head = b"ERR NOT_FOUND "
            message = "m" * (self.LIMIT - len(head) - 2 + extra)
            server.send_error(1, StatusCode.NOT_FOUND, message)
            line = server.data_to_send()
            self.assertEqual(len(line), min(self.LIMIT, len(head) + len(message) + 2), extra)
            self.assertTrue(line.startswith(head + b"mmm"))
            self.assertTrue(line.endswith(b"\r\n"))

    def test_err_line_cut_on_character(self) -> None:
        """A message is cut on a UTF-8 character boundary, never inside a character."""
        server = self._server()
        # "ERR INTERNAL " leaves 49 bytes for 2-byte characters: one byte unused.
        server.send_error(1, StatusCode.INTERNAL, "\u00e9" * self.LIMIT)
        line = server.data_to_send()
        self.assertEqual(line, ("ERR INTERNAL " + "\u00e9" * 24 + "\r\n").encode())
        self.assertEqual(len(line), self.LIMIT - 1)

    def test_fatal_line_fits(self) -> None:
        """A server's last words are cut to the maximum line length too."""
        server = self._server()
        server.close_with_error(StatusCode.UNAVAILABLE, "z" * 500)
        line = server.data_to_send()
        self.assertEqual(len(line), self.LIMIT)
        self.assertTrue(line.startswith(b"ERR UNAVAILABLE zzz"))


class LineServerTests(SynchronousTestCase):
    """Through the public in-memory pair: a line server bounded and in order."""

    def test_slow_request_bounds_fast_ones(self) -> None:
        """Behind a slow request, fast ones start only while under max_concurrent are unanswered."""
        router, waiting = echo_and_wait_router()
        started: list[bytes] = []
        router.add("fast", lambda call: started.append(call.body) or call.body)
        limits = Limits(max_concurrent=3)
        pair = connected_pair(router, wire=LINE, limits=limits, client_limits=limits)
        slow = pair.client.call("wait")
        fast = [pair.client.call("fast", b"%d" % i) for i in range(10)]
        pair.pump()
        self.assertEqual(len(waiting), 1)
        self.assertEqual(len(started), 2)
        # Held answers count: the other 8 are parked (read, not started).
        self.assertEqual(len(pair.server.parked), 8)
        self.assertEqual(pair.server.conn.unanswered, 11)
        for d in fast:
            self.assertNoResult(d)
        waiting[0].callback(b"slow")
        pair.pump()
        self.assertEqual(self.successResultOf(slow).body, b"slow")
        self.assertEqual(
            [self.successResultOf(d).body for d in fast], [b"%d" % i for i in range(10)]
        )
        self.assertEqual(pair.server.conn.unanswered, 0)

    def test_long_answer_becomes_error_in_order(self) -> None:
        """An answer too long for a line is answered RESOURCE_EXHAUSTED in its turn."""
        router, _ = echo_and_wait_router()
        router.add("big", lambda call: b"y" * 70_000)
        pair = connected_pair(router, wire=LINE)
        calls = [
            pair.client.call("echo", b"1"),
            pair.client.call("big"),
            pair.client.call("echo", b"3"),
        ]
        pair.pump()
        self.assertEqual(self.successResultOf(calls[0]).body, b"1")
        error = self.failureResultOf(calls[1], RemoteError).value
        self.assertEqual(error.code, StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("maximum line length", error.message)
        self.assertEqual(self.successResultOf(calls[2]).body, b"3")
        self.assertFalse(pair.client_transport.disconnecting)
        self.assertEqual(pair.server.conn.unanswered, 0)
