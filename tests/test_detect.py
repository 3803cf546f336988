"""
Tests for :mod:`twisted_reqresp._core.detect`: telling the binary format, the
line format, HTTP and anything else apart from a connection's first bytes.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp._core.binary import PREFACE
from twisted_reqresp._core.detect import MAX_UNDECIDED, detect_wire_format, reply_for_unknown

_ANSWERS = {None, "binary", "line", "http", "unknown"}

# Random bytes rarely look like a request line; pieces of one often do.
_TOKENS = [b"GET", b"PING", b" ", b"/", b"HTTP/", b"1", b".", b"\r", b"\n", b"a", b"\x16", b"\t"]
_FIRST_BYTES = st.one_of(
    st.binary(max_size=48),
    st.lists(st.sampled_from(_TOKENS), max_size=12).map(b"".join),
)


class DetectWireFormatTests(SynchronousTestCase):
    """The rules of :func:`detect_wire_format`."""

    def assertDetects(self, expected: str | None, *samples: bytes) -> None:
        for sample in samples:
            self.assertEqual(detect_wire_format(sample), expected, sample)

    def test_empty_is_undecided(self) -> None:
        """No bytes at all leave the guess open."""
        self.assertDetects(None, b"")

    def test_binary_preface(self) -> None:
        """The binary preface, or just its first byte, is the binary format."""
        self.assertDetects("binary", PREFACE, PREFACE[:1], b"\x89garbage")

    def test_line_requests(self) -> None:
        """Lines starting with a letter, digit, ``_``, ``.``, ``-`` or ``/`` are the line format."""
        self.assertDetects(
            "line",
            b"ping\n",
            b"echo hello\r\n",
            b"Echo x\n",
            b"0day\n",
            b"_private\n",
            b".hidden\n",
            b"-x\n",
            b"/path/method arg\n",
        )

    def test_line_without_lf(self) -> None:
        """A partial line that cannot be HTTP is the line format at once."""
        self.assertDetects("line", b"ping", b"echo hello", b"ECHO hello world", b"GET a b")

    def test_uppercase_line_requests(self) -> None:
        """An uppercase method is the line format once its line shows it is not HTTP."""
        self.assertDetects("line", b"GET foo\n", b"GET a b\n", b"PING\r\n", b"GET / HTTP/1.10\n")

    def test_http(self) -> None:
        """An HTTP/1 request line, with CRLF or LF, is HTTP whatever its method."""
        self.assertDetects(
            "http",
            b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
            b"POST /submit HTTP/1.0\n",
            b"PROPFIND /dav HTTP/1.1\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        )

    def test_http_waits_for_line_end(self) -> None:
        """Bytes that could still grow into an HTTP request line leave the guess open."""
        self.assertDetects(
            None,
            b"G",
            b"GET",
            b"GET ",
            b"GET /pa",
            b"GET / HT",
            b"GET / HTTP/1.1",
            b"GET / HTTP/1.1\r",
        )

    def test_long_http_target(self) -> None:
        """A request line still growing past the limit is taken for HTTP."""
        self.assertDetects(None, b"GET /" + b"a" * (MAX_UNDECIDED - 6))
        self.assertDetects("http", b"GET /" + b"a" * MAX_UNDECIDED)

    def test_unknown(self) -> None:
        """TLS, control bytes, punctuation and non-ASCII text are unknown."""
        self.assertDetects(
            "unknown",
            b"\x16\x03\x01\x02\x00",
            b"\x00",
            b"\x1b[A",
            b'{"json": 1}\n',
            b"\xff",
            b"\xc3\xa9t\xc3\xa9\n",
            b"\n\x16\x03",
        )

    def test_leading_blank_space(self) -> None:
        """Leading blank lines and spaces are skipped before deciding."""
        self.assertDetects(None, b"\n", b"\r\n", b"   ", b"\t\r\n ")
        self.assertDetects("line", b"\n\nping\n", b"  ping\n", b"\r\nping")
        self.assertDetects("http", b"\r\nGET / HTTP/1.1\r\n")

    def test_blank_space_bounded(self) -> None:
        """Blank space alone is taken for the line format after the limit."""
        self.assertDetects("line", b" " * MAX_UNDECIDED, b"\n" * MAX_UNDECIDED)

    @given(_FIRST_BYTES)
    @settings(deadline=None)
    def test_never_raises(self, data: bytes) -> None:
        """Any bytes get one of the documented answers, never an exception."""
        self.assertIn(detect_wire_format(data), _ANSWERS)

    @given(_FIRST_BYTES, _FIRST_BYTES)
    @settings(deadline=None)
    def test_answers_stand(self, head: bytes, more: bytes) -> None:
        """Once the guess is made, more bytes never change it."""
        first = detect_wire_format(head)
        if first is not None:
            self.assertEqual(detect_wire_format(head + more), first)

    @given(st.sampled_from([b"GET / HTTP/1.1\r\n", b"ping\n", b"\r\nGET / HTTP/1.0\n"]))
    @settings(deadline=None)
    def test_prefixes_agree(self, data: bytes) -> None:
        """Every prefix of a sample is either undecided or already right."""
        final = detect_wire_format(data)
        for n in range(len(data)):
            self.assertIn(detect_wire_format(data[:n]), (None, final))


class ReplyForUnknownTests(SynchronousTestCase):
    """The last words of :func:`reply_for_unknown`."""

    def test_http_gets_http_400(self) -> None:
        """An HTTP client gets a well-formed HTTP 400 response that says why."""
        for data in (b"GET / HTTP/1.1\r\n\r\n", b"PROPFIND /x HTTP/1.1\r\n"):
            reply = reply_for_unknown(data)
            self.assertTrue(reply.startswith(b"HTTP/1.1 400 Bad Request\r\n"), reply)
            head, _, body = reply.partition(b"\r\n\r\n")
            self.assertIn(b"Content-Length: %d\r\n" % len(body), head + b"\r\n")
            self.assertIn(b"not HTTP", body)

    def test_tls(self) -> None:
        """A TLS client gets one line saying the port has no TLS."""
        reply = reply_for_unknown(b"\x16\x03\x01\x02\x00")
        self.assertTrue(reply.startswith(b"reqresp: "))
        self.assertTrue(reply.endswith(b"without TLS\r\n"))

    def test_other(self) -> None:
        """Anything else gets one line naming both formats."""
        reply = reply_for_unknown(b"\x00\x01")
        self.assertTrue(reply.startswith(b"reqresp: expected the reqresp binary preface"))
        self.assertTrue(reply.endswith(b"\r\n"))
        self.assertEqual(reply.count(b"\n"), 1)
