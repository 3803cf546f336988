r"""
The line wire format: one request per line of text, for a person with
``nc localhost 9000``.

Wire core: contains no networking code and imports nothing from Twisted.
The same :class:`~twisted_reqresp._core.connection.Connection` drives it as the
binary format; what the line format cannot carry is dropped on encoding, as
said below.

Syntax
======

All lines end with LF; a single CR just before the LF is removed first, so
CRLF works too.  A line is at most ``Limits.max_line_length`` bytes (64 KiB
by default), its line end included.  Lines that are empty or hold only ASCII
whitespace (SP, HT, CR, VT, FF) are ignored in both directions.  A client
ends the lines it sends with LF, a server with CRLF.

Requests (client to server)::

    request   = METHOD [ SP ARGUMENT ] LF
    METHOD    = the bytes before the first SP: non-empty UTF-8 (a client
                sends none holding ASCII whitespace)
    ARGUMENT  = the bytes after the first SP: the request body, in the
                form below

Responses (server to client), always in request order::

    success   = "OK" [ SP BODY ] CRLF           ("OK" alone: an empty body)
    failure   = "ERR" SP CODE [ SP MESSAGE ] CRLF
    CODE      = a status name ("NOT_FOUND") or, for codes without one
                (application codes, 1000 and above), the decimal number
    MESSAGE   = UTF-8 text; CR and LF in the message are sent as SP

A body (ARGUMENT or BODY) travels as it is, byte for byte, unless it holds
a CR or LF or starts with a backslash: then it is sent in the escaped form,
a backslash followed by the body with ``\\`` for a backslash, ``\n`` for LF
and ``\r`` for CR.  A sender uses the escaped form only when it must; a
receiver decodes it leniently (after the leading backslash, any other
backslash sequence stands for itself).  So what a person types after the
method is the body, JSON escapes included (``echo "say \"hi\""``), and
every body still fits on one line.

What the format does not carry
==============================

- Request ids.  The server numbers request lines 1, 2, 3, ... as they
  arrive, a line it rejects included (it still answers it, in its turn);
  the client takes each response line as the answer to its oldest request
  still unanswered.  Answers must come back in request order: the format is
  not ``multiplexed``, so the server's
  :class:`~twisted_reqresp._core.connection.Connection` holds an answer that is
  ready early until those before it are sent, and hands this codec the
  answers in order.  Held answers count against ``max_concurrent``
  (``Connection.unanswered``), so a slow request stops the reading instead
  of letting fast answers pile up behind it.
- Metadata: a client refuses to send a request with metadata
  (:class:`~twisted_reqresp.LocalProtocolError`); a server drops response
  metadata, so that responders need not know the format.
- Deadlines: dropped.  The client still times the call out locally; the
  server gives the request no deadline but its own cap, if it has one.
- Error details and the retry-safe flag: dropped.
- CANCEL, PING, PONG, GOAWAY and SETTINGS encode to no bytes.  A cancelled
  call's answer still arrives and is dropped by the client connection.

Bad input never raises, and never closes a server's connection: a line
with an empty or non-UTF-8 method is rejected with INVALID_ARGUMENT, a line
too long with RESOURCE_EXHAUSTED (its bytes are dropped as they arrive,
never buffered whole), each answered in its turn; a server's last words,
when it gives up on a connection, are an ``ERR`` line.

A server never sends a line longer than its own ``max_line_length``, which
it takes to be its client's too (a client closes on a longer response
line): encoding an ``OK`` line over it raises RESOURCE_EXHAUSTED, so the
server answers that request with an ``ERR RESOURCE_EXHAUSTED`` line
instead, in its turn, and an ``ERR`` line's message is cut (on a character
boundary) to fit.  A client closes,
sending nothing (any line would be read as a request), on a response line
too long or one it was not waiting for; an unparseable response line fails
only the call it answers.
"""

from __future__ import annotations

import re
from collections import deque

from zope.interface import implementer

from .contract import IWireCodec, IWireFormat
from .errors import LocalProtocolError
from .events import (
    Cancel,
    ErrorResponse,
    Event,
    GoAway,
    Ping,
    Pong,
    ProtocolViolation,
    Rejected,
    Request,
    Response,
    Role,
    Settings,
)
from .limits import DEFAULT_LIMITS, Limits
from .status import STATUS_MAX, StatusCode, parse_status, status_name, utf8_prefix

__all__ = ["LineCodec", "LineFormat", "decode_body", "encode_body"]

_ESCAPED = re.compile(rb"\\([\\nr])")
_UNESCAPE = {b"\\": b"\\", b"n": b"\n", b"r": b"\r"}
# The ASCII whitespace of bytes.isspace(): a method holding one could make
# a blank line, or be split differently by the server.
_WHITESPACE = re.compile(rb"[ \t\n\r\x0b\x0c]")
# Nothing is sent on the wire for these: the format has no frame for them.
_SILENT = (Cancel, Ping, Pong, GoAway, Settings)
#: The largest line a codec sends.  No SETTINGS are exchanged, so the
#: :class:`~twisted_reqresp._core.connection.Connection` holds the peer to the
#: default frame size; checking it here, before any state changes, keeps a
#: refused line from desynchronising the request order.
MAX_SENT_LINE = DEFAULT_LIMITS.max_frame_size


def encode_body(data: bytes) -> bytes:
    """
    Put a body in its line form: as it is when it can be, else escaped.

    The plain form keeps what a person types intact (JSON's own ``\\"`` and
    ``\\n`` escapes included); the escaped form, marked by a leading
    backslash, carries the bodies a line cannot hold as they are.

    :param data: any bytes.
    :returns: ``data`` itself if it holds no CR or LF and does not start
        with a backslash; else a backslash and ``data`` with backslash, LF
        and CR escaped as ``\\\\``, ``\\n`` and ``\\r``.  Never holds LF or CR.
    """
    # What a body in the plain form may not hold: a line end, which would
    # end the line, or (first) the backslash that marks the escaped form.
    # Three scans in C, not a regular expression whose alternation is
    # tried at every byte (about 11 ns a byte: 160 us for 16 KiB).
    if not (data[:1] == b"\\" or b"\n" in data or b"\r" in data):
        return data
    if b"\\" in data:
        data = data.replace(b"\\", b"\\\\")
    return b"\\" + data.replace(b"\n", b"\\n").replace(b"\r", b"\\r")


def decode_body(data: bytes) -> bytes:
    """
    Undo :func:`encode_body`, leniently: in the escaped form, a backslash
    sequence other than the three stands for itself.

    :param data: a body in its line form.
    :returns: the body.
    """
    if not data.startswith(b"\\"):
        return data
    return _ESCAPED.sub(lambda m: _UNESCAPE[m.group(1)], data[1:])


def _one_line(text: str) -> bytes:
    # ``errors="replace"``: a str may hold lone surrogates, which UTF-8
    # cannot carry; a message is for people, so a "?" is better than a crash.
    return text.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace")


@implementer(IWireFormat)
class LineFormat:
    """
    The line wire format: answers in request order, no metadata, no
    deadlines, no pings.  Instances are stateless and shared;
    :meth:`codec` makes the per-connection state.
    """

    #: The name used by ``--wire`` and in logs.
    name = "line"
    #: Answers come in request order and carry no ids.
    multiplexed = False

    def codec(self, role: Role, limits: Limits) -> LineCodec:
        """
        Make the sans-IO codec for one connection.

        :param role: which end of the connection the codec serves.
        :param limits: what this side accepts (``max_line_length`` counts).
        :returns: a fresh :class:`LineCodec`.
        """
        return LineCodec(role, limits)

    def __repr__(self) -> str:
        return "LineFormat()"


@implementer(IWireCodec)
class LineCodec:
    """
    One connection's line-format codec.

    Received bytes are split into lines as they arrive, so a line too long
    is dropped piece by piece and only whole lines wait to be decoded.
    """

    #: No preface and no SETTINGS: the connection is open at once.
    handshake = False
    #: No PING frames: liveness is left to the transport.
    keepalive = False

    #: A line is all payload: the whole line counts against the peer's
    #: maximum frame size.
    frame_overhead = 0

    def __init__(self, role: Role, limits: Limits) -> None:
        self._role = role
        self._max_line = limits.max_line_length
        # Whole lines (line end removed) waiting for next_event; None marks
        # a line that was too long and whose bytes were dropped.
        self._lines: deque[bytes | None] = deque()
        self._queued = 0  # bytes in _lines, line ends included
        self._tail = bytearray()  # the start of a line whose LF has not come
        self._discarding = False  # dropping the rest of a line too long
        self._stopped = False  # a client saw a fatal line: ignore the rest
        self._failed = False
        # Server: the id of the next line.
        self._next_request_id = 1
        # Client: the ids sent and not yet answered, oldest first.
        self._outstanding: deque[int] = deque()

    # -- receiving ----------------------------------------------------------

    def preface(self) -> bytes:
        """:returns: ``b""``: the line format has no preface."""
        return b""

    @property
    def buffered(self) -> int:
        """The number of received bytes not yet decoded (dropped bytes of a
        line too long are not counted)."""
        return self._queued + len(self._tail)

    def receive_data(self, data: bytes) -> None:
        """
        Take bytes from the peer and split off the whole lines.

        Each byte is searched for LF once, so a long line arriving in many
        chunks costs linear time, and no more than ``max_line_length`` bytes
        of an unfinished line are ever kept.

        :param data: the bytes, in any chunking.
        """
        if self._stopped or self._failed:
            return
        data = bytes(data)
        pos = 0
        end = len(data)
        tail = self._tail
        while pos < end:
            lf = data.find(b"\n", pos)
            if self._discarding:
                if lf < 0:
                    return
                self._discarding = False
                self._too_long()
            elif lf < 0:
                if len(tail) + end - pos >= self._max_line:
                    # No LF within the limit: this line can only be too long.
                    tail.clear()
                    self._discarding = True
                    if self._role is Role.CLIENT:
                        self._too_long()
                    return
                tail += data[pos:]
                return
            elif len(tail) + lf - pos + 1 > self._max_line:
                tail.clear()
                self._too_long()
            else:
                if tail:
                    line = bytes(tail) + data[pos:lf]
                    tail.clear()
                else:
                    line = data[pos:lf]
                self._lines.append(line)
                self._queued += len(line) + 1
            if self._stopped:
                return
            pos = lf + 1

    def _too_long(self) -> None:
        self._lines.append(None)
        # A client cannot tell which answers the rest of the stream holds.
        self._stopped = self._role is Role.CLIENT

    def next_event(self) -> Event | None:
        """
        Decode the next event from the whole lines received.

        :returns: a :class:`Request` or :class:`Rejected` (server), a
            :class:`Response`, :class:`ErrorResponse`, :class:`Rejected` or
            :class:`ProtocolViolation` (client), or ``None`` if more bytes
            are needed.  Nothing follows a :class:`ProtocolViolation`.
        """
        lines = self._lines
        while lines and not self._failed:
            line = lines.popleft()
            if line is None:
                return self._line_too_long()
            self._queued -= len(line) + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line or line.isspace():
                continue  # blank lines are ignored (people press Enter)
            if self._role is Role.SERVER:
                return self._decode_request(line)
            return self._decode_answer(line)
        return None

    def _line_too_long(self) -> Event:
        message = f"line too long (limit {self._max_line} bytes)"
        if self._role is Role.SERVER:
            return self._rejected(StatusCode.RESOURCE_EXHAUSTED, message)
        return self._fail(StatusCode.RESOURCE_EXHAUSTED, f"response {message}")

    def _fail(self, code: int, message: str) -> ProtocolViolation:
        self._failed = True
        self._lines.clear()
        self._queued = 0
        self._tail.clear()
        return ProtocolViolation(code=code, message=message)

    def _rejected(self, code: int, message: str) -> Rejected:
        rid = self._next_request_id
        self._next_request_id += 1
        return Rejected(request_id=rid, code=code, message=message)

    def _decode_request(self, line: bytes) -> Event:
        raw_method, _, argument = line.partition(b" ")
        if not raw_method:
            return self._rejected(StatusCode.INVALID_ARGUMENT, "empty method name")
        try:
            method = raw_method.decode("utf-8")
        except UnicodeDecodeError:
            return self._rejected(StatusCode.INVALID_ARGUMENT, "method name is not valid UTF-8")
        rid = self._next_request_id
        self._next_request_id += 1
        return Request(request_id=rid, method=method, body=decode_body(argument))

    def _decode_answer(self, line: bytes) -> Event:
        if not self._outstanding:
            return self._fail(StatusCode.PROTOCOL_ERROR, "response line with no request waiting")
        rid = self._outstanding.popleft()
        word, _, rest = line.partition(b" ")
        if word == b"OK":
            return Response(request_id=rid, body=decode_body(rest))
        if word == b"ERR":
            name, _, message = rest.partition(b" ")
            try:
                code = parse_status(name.decode("ascii"))
            except ValueError:  # UnicodeDecodeError included
                pass
            else:
                return ErrorResponse(
                    request_id=rid, code=code, message=message.decode("utf-8", "replace")
                )
        shown = line[:80].decode("utf-8", "replace")
        return Rejected(
            request_id=rid, code=StatusCode.INTERNAL, message=f"unparseable response {shown!r}"
        )

    # -- sending -------------------------------------------------------------

    def encode(self, event: Event) -> bytes:
        """
        Encode a message event as a line (or as nothing, for the messages
        the format cannot carry).

        Answers carry no ids: a server's
        :class:`~twisted_reqresp._core.connection.Connection` hands them over in
        request order (the format is not ``multiplexed``).

        :param event: a :class:`Request` (client), a :class:`Response` or
            :class:`ErrorResponse` (server), or a :class:`Cancel`,
            :class:`Ping`, :class:`Pong`, :class:`GoAway` or
            :class:`Settings` (encoded as ``b""``).
        :returns: the bytes to send, possibly ``b""``.
        :raises LocalProtocolError: if this side does not send that event,
            the request has metadata or a method a line cannot hold, the
            request line would exceed the peer's default maximum frame size,
            or an ``OK`` line would exceed the maximum line length (status
            ``RESOURCE_EXHAUSTED``: send an error instead).  Nothing changes
            when it raises.  An ``ERR`` line never exceeds the maximum line
            length: its message is cut to fit.
        """
        if isinstance(event, _SILENT):
            return b""
        if self._role is Role.CLIENT and isinstance(event, Request):
            return self._encode_request(event)
        if self._role is Role.SERVER and isinstance(event, Response):
            return self._encode_response(event)
        if self._role is Role.SERVER and isinstance(event, ErrorResponse):
            if not 0 <= event.code <= STATUS_MAX:
                raise LocalProtocolError(f"status code {event.code} does not fit in 32 bits")
            return self._err_line(event.code, event.message)
        raise LocalProtocolError(
            f"a line-format {self._role.value} does not send {type(event).__name__}"
        )

    def _encode_request(self, request: Request) -> bytes:
        if request.metadata:
            raise LocalProtocolError("the line format carries no metadata")
        method = request.method
        try:
            head = method.encode("utf-8")
        except UnicodeEncodeError:
            raise LocalProtocolError(f"method name {method!r} is not valid Unicode") from None
        if not head or _WHITESPACE.search(head):
            raise LocalProtocolError(
                f"method name {method!r} cannot be sent in the line format "
                "(empty, or holds whitespace)"
            )
        line = head + b" " + encode_body(request.body) + b"\n" if request.body else head + b"\n"
        if len(line) > MAX_SENT_LINE:
            raise LocalProtocolError(
                f"line of {len(line)} bytes exceeds the peer's maximum of {MAX_SENT_LINE}",
                StatusCode.RESOURCE_EXHAUSTED,
            )
        self._outstanding.append(request.request_id)
        return line

    def _encode_response(self, response: Response) -> bytes:
        # The client refuses (and closes on) a response line longer than its
        # maximum line length; we assume it is ours, as with the default
        # limits on both sides.
        line = b"OK " + encode_body(response.body) + b"\r\n" if response.body else b"OK\r\n"
        if len(line) > self._max_line:
            raise LocalProtocolError(
                f"response line of {len(line)} bytes exceeds the maximum line length "
                f"of {self._max_line}",
                StatusCode.RESOURCE_EXHAUSTED,
            )
        return line

    def _err_line(self, code: int, message: str) -> bytes:
        """``ERR CODE MESSAGE`` CRLF, the message cut (on a character
        boundary) so that the line fits the maximum line length."""
        head = b"ERR " + status_name(code).encode("ascii")
        # Room for the message: the line less its head, a SP and CR LF.
        text = utf8_prefix(_one_line(message), self._max_line - len(head) - 3)
        return head + b" " + text + b"\r\n" if text else head + b"\r\n"

    def encode_fatal(self, code: int, message: str, last_request_id: int) -> bytes:
        """
        The last words before closing a connection this side gave up on.

        :param code: why.
        :param message: for people.
        :param last_request_id: unused: the line format has no GOAWAY.
        :returns: for a server, ``ERR CODE MESSAGE`` CRLF; for a client,
            ``b""``, since any line it sends would be read as a request.
        """
        if self._role is Role.CLIENT:
            return b""
        if code == StatusCode.OK:
            # A binary GOAWAY says OK for an orderly close (idle timeout);
            # a line has no GOAWAY, and "ERR OK" would contradict itself.
            code = StatusCode.UNAVAILABLE
        return self._err_line(code, message[:1000])
