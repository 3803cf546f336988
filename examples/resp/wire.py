r"""
RESP2, the Redis serialization protocol, as a twisted-reqresp wire format.

Sans-IO, like the shipped formats: no networking code, only the public API
(:mod:`twisted_reqresp.interfaces`, :mod:`twisted_reqresp.wire`).  RESP does
not multiplex: a Redis client takes each reply as the answer to its oldest
command still unanswered, so the format says ``multiplexed = False`` and the
:class:`~twisted_reqresp.wire.Connection` hands the server codec its answers
in command order.

How RESP maps onto requests and answers
=======================================

Commands (client to server) come as an array of bulk strings
(``*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n``, what ``redis-cli`` sends) or as an
inline line (``ECHO hi\r\n``, what a person types into ``nc``; split as Redis
splits it, with ``"..."`` and ``'...'`` quoting).  The first element is the
:class:`~twisted_reqresp.wire.Request`'s method, as sent (a responder
compares it case-insensitively, as Redis does).  The others, the command's
arguments, make its body: none gives ``b""``, one gives that argument's
bytes, more give them packed (:func:`pack`: each as a RESP bulk string, one
after the other).  The request's metadata holds the count under
:data:`ARGC_KEY`, so :func:`arguments` always gets the list back.

Answers (server to client) have a RESP type, which a responder chooses with
the metadata of its :class:`~twisted_reqresp.Reply` under :data:`TYPE_KEY`
(the helpers :func:`simple`, :func:`integer`, :data:`NULL`, :func:`array`
do it): ``bulk`` (the default: any bytes), ``simple`` (``+OK``), ``integer``
(``:1``), ``null`` (``$-1``) or ``array`` (a body packed by :func:`pack`).
An error answer is a RESP error, ``-PREFIX message``: the prefix is ``ERR``
for UNKNOWN (Redis's generic error, which a responder raises for an unknown
command) and the status name (``NOT_FOUND``) or number (``4242``) for any
other code, so that a twisted-reqresp client gets the code back.

Limits
======

Each bound comes from the :class:`~twisted_reqresp.Limits` the codec is
given, so ``twistd reqresp --max-frame-size`` and ``--max-line-length`` set
them:

- a command's bulk strings, with their ``$N`` lines, hold at most
  ``max_frame_size`` bytes; an array announcing more elements than that
  could hold (each takes at least 6 bytes, ``$0\r\n\r\n``) is refused at its
  ``*N`` line.  A refused command is answered RESOURCE_EXHAUSTED at once,
  its remaining bytes are dropped as they arrive (never buffered), and the
  connection goes on with the next command;
- an inline line, its line end included, is at most ``max_line_length``
  bytes (refused the same way);
- a ``*N`` or ``$N`` line longer than 32 bytes is a protocol error, as is
  anything that is not RESP (a bulk string not ended by CRLF, a length that
  is not a number): the server answers ``-ERR Protocol error: ...`` and
  closes, as Redis does, since it cannot find the next command.

The client side (for twisted-reqresp clients, and for the conformance kit)
sends every command as an array and reads simple strings, errors,
integers, bulk strings, nulls and flat arrays of bulk strings; a nested
array is a protocol error there.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

from zope.interface import implementer

from twisted_reqresp import Limits, LocalProtocolError, Reply, StatusCode
from twisted_reqresp.interfaces import IWireCodec, IWireFormat
from twisted_reqresp.wire import (
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
    parse_status,
    status_name,
)

__all__ = [
    "ARGC_KEY",
    "NULL",
    "RESP",
    "TYPE_KEY",
    "RESPCodec",
    "RESPFormat",
    "arguments",
    "array",
    "integer",
    "pack",
    "simple",
    "split_inline",
    "unpack",
]

#: The request metadata key holding how many arguments the body packs.
ARGC_KEY = "resp-argc"
#: The answer metadata key choosing its RESP type.
TYPE_KEY = "resp-type"
#: The RESP types an answer may have (``bulk`` is the default).
REPLY_TYPES = ("bulk", "simple", "integer", "null", "array")

#: The longest ``*N`` / ``$N`` line, CRLF included: a sign and 19 digits
#: need 23 bytes; more cannot be a length a peer means.
HEADER_MAX = 32
#: The fewest bytes one bulk string takes: ``$0\r\n\r\n``.
MIN_ELEMENT = 6

# What Redis's sdssplitargs (src/sds.c) skips between inline arguments
# (isspace), and what ends an unquoted one.
_SPACE = frozenset(b" \t\n\r\x0b\x0c")
_ENDS_UNQUOTED = frozenset(b" \n\r\t\x00")
# A NUL ends Redis's C string; here, where the line goes on, it separates.
_SKIPPED = _SPACE | {0}
_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_HEX = frozenset(b"0123456789abcdefABCDEF")
#: What a reader returns when the buffer holds nothing more it can use.
_MORE = object()
# Nothing is sent for these: RESP has no frame for them.
_SILENT = (Cancel, Ping, Pong, GoAway, Settings)


# -- bodies and answers, for responders -------------------------------------------------


def pack(items: Iterable[bytes]) -> bytes:
    """
    Pack byte strings as RESP bulk strings, one after the other.

    :param items: the strings.
    :returns: the packed bytes (``b""`` for none).
    """
    return b"".join(b"$%d\r\n%s\r\n" % (len(item), item) for item in items)


def unpack(data: bytes) -> list[bytes]:
    """
    Undo :func:`pack`.

    :param data: packed bulk strings.
    :returns: the strings.
    :raises ValueError: if ``data`` is not what :func:`pack` makes.
    """
    items = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n", pos)
        length = _length(data[pos:end]) if data[pos : pos + 1] == b"$" and end > 0 else None
        if length is None or length < 0:
            raise ValueError(f"not packed bulk strings at byte {pos}")
        start = end + 2
        stop = start + length
        if data[stop : stop + 2] != b"\r\n":
            raise ValueError(f"bulk string at byte {pos} is not ended by CRLF")
        items.append(data[start:stop])
        pos = stop + 2
    return items


def arguments(body: bytes, metadata: Mapping[str, str]) -> list[bytes]:
    """
    A command's arguments, from a request's body and metadata (a
    responder passes ``call.body`` and ``call.metadata``).

    :param body: the request body.
    :param metadata: the request metadata; without :data:`ARGC_KEY`, a
        non-empty body is one argument.
    :returns: the arguments, the command name not included.
    :raises ValueError: if the body does not pack that many arguments.
    """
    count = int(metadata.get(ARGC_KEY, "1" if body else "0"))
    if count == 0 and not body:
        return []
    if count == 1:
        return [body]
    items = unpack(body)
    if len(items) != count:
        raise ValueError(f"the body packs {len(items)} arguments, not {count}")
    return items


def simple(text: str) -> Reply:
    """
    :param text: one line of text (no CR or LF).
    :returns: an answer sent as a RESP simple string (``+OK``).
    """
    return Reply(body=text.encode("utf-8"), metadata={TYPE_KEY: "simple"})


def integer(value: int) -> Reply:
    """
    :param value: an integer.
    :returns: an answer sent as a RESP integer (``:1``).
    """
    return Reply(body=b"%d" % value, metadata={TYPE_KEY: "integer"})


def array(items: Iterable[bytes]) -> Reply:
    """
    :param items: byte strings.
    :returns: an answer sent as a RESP array of bulk strings.
    """
    return Reply(body=pack(items), metadata={TYPE_KEY: "array"})


#: An answer sent as the RESP null bulk string (``$-1``): GET of a missing key.
NULL = Reply(body=b"", metadata={TYPE_KEY: "null"})


def split_inline(line: bytes) -> list[bytes] | None:
    """
    Split an inline command as Redis does (``sdssplitargs`` in
    ``src/sds.c``): arguments are separated by spaces; ``"..."`` takes
    ``\\n``, ``\\r``, ``\\t``, ``\\b``, ``\\a``, ``\\xHH`` and ``\\<any>``
    escapes; ``'...'`` takes ``\\'``; a closing quote must be followed by a
    space or the end.

    :param line: the line, its line end removed.
    :returns: the arguments, or ``None`` for unbalanced quotes.
    """
    args: list[bytes] = []
    n = len(line)

    def at(k: int) -> int:
        # sdssplitargs reads a C string: past the end is NUL.
        return line[k] if k < n else 0

    p = 0
    while True:
        while p < n and line[p] in _SKIPPED:
            p += 1
        if p >= n:
            return args
        current = bytearray()
        in_double = in_single = False
        while True:
            c = at(p)
            if in_double:
                if c == 0x5C and at(p + 1) == 0x78 and at(p + 2) in _HEX and at(p + 3) in _HEX:
                    current.append(int(line[p + 2 : p + 4], 16))
                    p += 3
                elif c == 0x5C and at(p + 1):
                    p += 1
                    current.append(_ESCAPES.get(line[p], line[p]))
                elif c == 0x22:  # "
                    if at(p + 1) and at(p + 1) not in _SPACE:
                        return None
                    p += 1
                    break
                elif not c and p >= n:
                    return None  # unterminated
                else:
                    current.append(c)
            elif in_single:
                if c == 0x5C and at(p + 1) == 0x27:
                    p += 1
                    current.append(0x27)
                elif c == 0x27:
                    if at(p + 1) and at(p + 1) not in _SPACE:
                        return None
                    p += 1
                    break
                elif not c and p >= n:
                    return None
                else:
                    current.append(c)
            elif c in _ENDS_UNQUOTED:
                break
            elif c == 0x22:
                in_double = True
            elif c == 0x27:
                in_single = True
            else:
                current.append(c)
            p += 1
        args.append(bytes(current))


def _length(line: bytes | bytearray) -> int | None:
    """The number in a ``*N`` / ``$N`` line (its type byte first, CRLF
    removed), or ``None`` if it is not a plain decimal integer."""
    text = line[1:]
    digits = text[1:] if text[:1] == b"-" else text
    if not digits or not digits.isdigit() or len(digits) > 19:
        return None
    return int(text)


def _one_line(text: str, limit: int) -> bytes:
    """Text for a ``-`` or ``+`` line: CR and LF as spaces, at most
    ``limit`` bytes, cut on a UTF-8 character boundary."""
    data = text.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace")
    if len(data) <= limit:
        return data
    cut = max(limit, 0)
    while cut > 0 and data[cut] & 0xC0 == 0x80:
        cut -= 1
    return data[:cut]


# -- the format --------------------------------------------------------------------------


@implementer(IWireFormat)
class RESPFormat:
    """
    RESP2 as a wire format: stateless and shared; :meth:`codec` makes the
    per-connection state.
    """

    #: The name used in logs.
    name = "resp"
    #: Replies carry no ids: they come in command order.
    multiplexed = False

    def codec(self, role: Role, limits: Limits) -> RESPCodec:
        """
        :param role: which end the codec serves.
        :param limits: what this side accepts.
        :returns: a fresh :class:`RESPCodec`.
        """
        return RESPCodec(role, limits)

    def __repr__(self) -> str:
        return "RESPFormat()"


#: The format, for ``twistd reqresp --wire examples.resp:RESP``.
RESP = RESPFormat()


class _Array:
    """An array of bulk strings being read: a command (server) or an
    array reply (client)."""

    def __init__(self, count: int) -> None:
        self.left = count  # elements still to read
        self.bulk: int | None = None  # length of the bulk string being read
        self.skipping = False  # refused: drop what is left
        self.size = 0  # bytes of the elements so far, $N lines included
        self.head: bytes | None = None  # the first element (a command's name)
        self.first = b""  # the first element after head (a lone argument is the body)
        self.items = 0  # elements after head
        self.packed = bytearray()  # the elements after head, packed
        self.lone = False  # client: a bulk reply, not an array


@implementer(IWireCodec)
class RESPCodec:
    """One connection's RESP codec (see the module docstring)."""

    #: No preface, no SETTINGS: the connection is open at once.
    handshake = False
    #: No PING frames (RESP's PING is a command like any other).
    keepalive = False
    #: The whole encoding counts against the peer's maximum frame size.
    frame_overhead = 0

    def __init__(self, role: Role, limits: Limits) -> None:
        self._role = role
        self._max_size = limits.max_frame_size
        self._max_line = limits.max_line_length
        self._buf = bytearray()
        self._skip = 0  # bytes of a refused bulk string still to drop
        self._array: _Array | None = None
        self._scan = 0  # where the search for a line end resumes
        self._discarding = False  # dropping an inline line too long
        self._failed = False
        self._next_request_id = 1  # server: the id of the next command
        self._outstanding: deque[int] = deque()  # client: ids sent, oldest first

    # -- receiving ---------------------------------------------------------------------

    def preface(self) -> bytes:
        """:returns: ``b""``: RESP has no preface."""
        return b""

    @property
    def buffered(self) -> int:
        """Received bytes not yet decoded."""
        return len(self._buf)

    def receive_data(self, data: bytes) -> None:
        """
        Buffer received bytes; :meth:`next_event` decodes them.

        :param data: the bytes, in any chunking.
        """
        if not self._failed:
            self._buf += data

    def next_event(self) -> Event | None:
        """
        :returns: a :class:`Request` or :class:`Rejected` (server), a
            :class:`Response` or :class:`ErrorResponse` (client), a
            :class:`ProtocolViolation` (then nothing more), or ``None`` if
            more bytes are needed.
        """
        # Each reader returns an event, _MORE (the buffer holds no more
        # progress), or None (it took something; go on).
        while not self._failed:
            if self._skip:
                dropped = min(self._skip, len(self._buf))
                del self._buf[:dropped]
                self._skip -= dropped
                if self._skip:
                    return None
            step: Event | object | None
            if self._array is not None:
                step = self._read_element(self._array)
            elif not self._buf:
                return None
            elif self._buf[0] == 0x2A:  # *
                step = self._read_array_header()
            elif self._role is Role.SERVER:
                step = self._read_inline()
            else:
                step = self._read_reply()
            if step is _MORE:
                return None
            if step is not None:
                return step  # type: ignore[return-value]
        return None

    def _fail(self, message: str, code: int = StatusCode.PROTOCOL_ERROR) -> ProtocolViolation:
        self._failed = True
        self._buf.clear()
        self._array = None
        return ProtocolViolation(code=code, message=message)

    def _header(self) -> bytes | ProtocolViolation | object:
        """The ``*N`` / ``$N`` / ``+`` ... line at the start of the buffer,
        CRLF removed, once it is whole (:data:`_MORE` until then)."""
        buf = self._buf
        limit = HEADER_MAX if buf[0] in b"*$" else self._max_line
        # Resume where the last search stopped (less one byte: the CR of a
        # CRLF split between reads), so a long line fed byte by byte costs
        # linear time.
        end = buf.find(b"\r\n", max(self._scan - 1, 0), limit)
        if end < 0:
            self._scan = len(buf)
            if len(buf) >= limit:
                what = "reply line" if buf[0] in b"+-:" else f"'{chr(buf[0])}' line"
                return self._fail(f"Protocol error: {what} longer than {limit} bytes")
            return _MORE
        line = bytes(buf[:end])
        del buf[: end + 2]
        self._scan = 0
        return line

    def _read_array_header(self) -> Event | object:
        if self._role is Role.CLIENT and not self._outstanding:
            return self._fail("Protocol error: a reply with no command waiting")
        line = self._header()
        if not isinstance(line, bytes):
            return line
        count = _length(line)
        if count is None or count < -1:
            return self._fail("Protocol error: invalid multibulk length")
        if self._role is Role.CLIENT:
            if count <= 0:  # *-1 is a null array, *0 an empty one
                kind = "null" if count < 0 else "array"
                return self._answer(b"", ((TYPE_KEY, kind),))
            if count * MIN_ELEMENT > self._max_size:
                return self._fail(f"array reply of {count} elements exceeds the limits")
            self._array = _Array(count)
            return None
        if count <= 0:
            return None  # Redis ignores an empty command
        self._array = _Array(count)
        if count * MIN_ELEMENT > self._max_size:
            return self._refuse(
                self._array,
                f"command of {count} arguments cannot fit in {self._max_size} bytes",
            )
        return None

    def _read_element(self, array: _Array) -> Event | object:
        buf = self._buf
        if array.bulk is None:
            if not buf:
                return _MORE
            if buf[0] != 0x24:  # $
                got = chr(buf[0]) if 0x20 < buf[0] < 0x7F else f"\\x{buf[0]:02x}"
                return self._fail(f"Protocol error: expected '$', got '{got}'")
            line = self._header()
            if not isinstance(line, bytes):
                return line
            length = _length(line)
            if length is None or length < 0:
                return self._fail("Protocol error: invalid bulk length")
            array.size += len(line) + 2 + length + 2
            if self._role is Role.CLIENT and array.size > self._max_size:
                return self._fail(f"array reply larger than {self._max_size} bytes")
            if not array.skipping and array.size > self._max_size:
                array.left -= 1
                self._skip = length + 2
                return self._refuse(array, f"command larger than {self._max_size} bytes")
            if array.skipping:
                array.left -= 1
                self._skip = length + 2
                return self._array_done(array)
            array.bulk = length
        need = array.bulk + 2
        if len(buf) < need:
            return _MORE
        if buf[array.bulk : need] != b"\r\n":
            return self._fail("Protocol error: bulk string not ended by CRLF")
        item = bytes(buf[: array.bulk])
        del buf[:need]
        array.bulk = None
        array.left -= 1
        if array.head is None and self._role is Role.SERVER:
            array.head = item
        else:
            if not array.items:
                array.first = item
            array.items += 1
            array.packed += b"$%d\r\n%s\r\n" % (len(item), item)
        return self._array_done(array)

    def _array_done(self, array: _Array) -> Event | None:
        if array.left:
            return None
        self._array = None
        if array.skipping:
            return None
        if array.lone:
            return self._answer(array.first, ())
        if self._role is Role.CLIENT:
            return self._answer(bytes(array.packed), ((TYPE_KEY, "array"),))
        assert array.head is not None
        body = array.first if array.items == 1 else bytes(array.packed)
        return self._request(array.head, body, array.items)

    def _request(self, name: bytes, body: bytes, argc: int) -> Event:
        rid = self._next_request_id
        self._next_request_id += 1
        try:
            method = name.decode("utf-8")
        except UnicodeDecodeError:
            return Rejected(
                request_id=rid,
                code=StatusCode.INVALID_ARGUMENT,
                message="command name is not valid UTF-8",
            )
        if not method:
            return Rejected(
                request_id=rid, code=StatusCode.INVALID_ARGUMENT, message="empty command name"
            )
        return Request(request_id=rid, method=method, body=body, metadata=((ARGC_KEY, str(argc)),))

    def _refuse(self, array: _Array, message: str) -> Rejected:
        """Answer a command too big now, and drop the rest of it as it comes."""
        array.skipping = True
        array.packed = bytearray()
        rid = self._next_request_id
        self._next_request_id += 1
        if not array.left:
            self._array = None
        return Rejected(request_id=rid, code=StatusCode.RESOURCE_EXHAUSTED, message=message)

    def _read_inline(self) -> Event | object:
        buf = self._buf
        lf = buf.find(b"\n", self._scan)
        if lf < 0:
            if self._discarding or len(buf) >= self._max_line:
                # No LF within the limit: this line can only be too long.
                buf.clear()
                self._scan = 0
                self._discarding = True
            else:
                self._scan = len(buf)
            return _MORE
        self._scan = 0
        if self._discarding or lf + 1 > self._max_line:
            del buf[: lf + 1]
            self._discarding = False
            rid = self._next_request_id
            self._next_request_id += 1
            return Rejected(
                request_id=rid,
                code=StatusCode.RESOURCE_EXHAUSTED,
                message=f"inline command longer than {self._max_line} bytes",
            )
        line = bytes(buf[:lf]).removesuffix(b"\r")
        del buf[: lf + 1]
        args = split_inline(line)
        if args is None:
            rid = self._next_request_id
            self._next_request_id += 1
            return Rejected(
                request_id=rid,
                code=StatusCode.UNKNOWN,
                message="Protocol error: unbalanced quotes in request",
            )
        if not args:
            return None  # Redis ignores an empty line: go on
        rest = args[1:]
        return self._request(args[0], rest[0] if len(rest) == 1 else pack(rest), len(rest))

    def _read_reply(self) -> Event | object:
        if not self._outstanding:
            return self._fail("Protocol error: a reply with no command waiting")
        kind = self._buf[0]
        if kind not in b"+-:$":
            return self._fail(f"Protocol error: unexpected reply type byte {kind:#04x}")
        line = self._header()
        if not isinstance(line, bytes):
            return line
        if kind == 0x2B:  # +
            return self._answer(line[1:], ((TYPE_KEY, "simple"),))
        if kind == 0x2D:  # -
            return self._error(line[1:])
        if kind == 0x3A:  # :
            if _length(line) is None:
                return self._fail("Protocol error: invalid integer reply")
            return self._answer(line[1:], ((TYPE_KEY, "integer"),))
        length = _length(line)
        if length is None or length < -1:
            return self._fail("Protocol error: invalid bulk length")
        if length == -1:
            return self._answer(b"", ((TYPE_KEY, "null"),))
        if length > self._max_size:
            return self._fail(f"bulk reply of {length} bytes exceeds {self._max_size}")
        # The payload is read like an array's element, then answered alone.
        self._array = _Array(1)
        self._array.bulk = length
        self._array.lone = True
        return None

    def _answer(self, body: bytes, metadata: tuple[tuple[str, str], ...]) -> Response:
        return Response(request_id=self._outstanding.popleft(), body=body, metadata=metadata)

    def _error(self, text: bytes) -> ErrorResponse:
        word, _, message = text.partition(b" ")
        code: int = StatusCode.UNKNOWN
        try:
            parsed = parse_status(word.decode("ascii")) if word != b"ERR" else code
        except ValueError:  # UnicodeDecodeError included: not ours, keep it all
            message = text
        else:
            if parsed in (StatusCode.OK, StatusCode.PROTOCOL_ERROR):
                message = text
            else:
                code = parsed
        return ErrorResponse(
            request_id=self._outstanding.popleft(),
            code=code,
            message=message.decode("utf-8", "replace"),
        )

    # -- sending -----------------------------------------------------------------------

    def encode(self, event: Event) -> bytes:
        """
        :param event: a :class:`Request` (client), a :class:`Response` or
            :class:`ErrorResponse` (server); the frames RESP has no room for
            (:class:`Cancel`, :class:`Ping`, ...) encode to ``b""``.
        :returns: the bytes to send.
        :raises LocalProtocolError: if this side does not send that event,
            or it cannot be encoded (then nothing changes).
        """
        if isinstance(event, _SILENT):
            return b""
        if self._role is Role.CLIENT and isinstance(event, Request):
            return self._encode_request(event)
        if self._role is Role.SERVER and isinstance(event, Response):
            return self._encode_response(event)
        if self._role is Role.SERVER and isinstance(event, ErrorResponse):
            return self._error_line(event.code, event.message)
        raise LocalProtocolError(f"a RESP {self._role.value} does not send {type(event).__name__}")

    def _encode_request(self, request: Request) -> bytes:
        try:
            name = request.method.encode("utf-8")
        except UnicodeEncodeError:
            raise LocalProtocolError(f"command {request.method!r} is not valid Unicode") from None
        if not name:
            raise LocalProtocolError("empty command name")
        metadata = dict(request.metadata)
        argc = metadata.pop(ARGC_KEY, None)
        if metadata:
            raise LocalProtocolError(f"RESP carries no metadata but {ARGC_KEY!r}")
        if argc is None:
            args = [request.body] if request.body else []
        else:
            try:
                args = arguments(request.body, {ARGC_KEY: argc})
            except ValueError as e:
                raise LocalProtocolError(f"body and {ARGC_KEY} disagree: {e}") from None
        data = b"*%d\r\n" % (len(args) + 1) + pack([name, *args])
        self._outstanding.append(request.request_id)
        return data

    def _encode_response(self, response: Response) -> bytes:
        kind = dict(response.metadata).get(TYPE_KEY, "bulk")
        body = response.body
        if kind == "bulk":
            return b"$%d\r\n%s\r\n" % (len(body), body)
        if kind == "null":
            return b"$-1\r\n"
        if kind == "simple":
            if b"\r" in body or b"\n" in body or len(body) + 3 > self._max_line:
                raise LocalProtocolError(
                    "a simple string holds no CR or LF and fits the maximum line length",
                    StatusCode.INTERNAL,
                )
            return b"+%s\r\n" % body
        if kind == "integer":
            if _length(b":" + body) is None:
                raise LocalProtocolError(
                    f"integer reply {body[:40]!r} is not an integer", StatusCode.INTERNAL
                )
            return b":%s\r\n" % body
        if kind == "array":
            try:
                count = len(unpack(body))
            except ValueError as e:
                raise LocalProtocolError(
                    f"array reply body is not packed: {e}", StatusCode.INTERNAL
                ) from None
            return b"*%d\r\n%s" % (count, body)
        raise LocalProtocolError(
            f"unknown {TYPE_KEY} {kind!r}; choose from {', '.join(REPLY_TYPES)}",
            StatusCode.INTERNAL,
        )

    def _error_line(self, code: int, message: str) -> bytes:
        prefix = b"ERR" if code == StatusCode.UNKNOWN else status_name(code).encode("ascii")
        # Room for the message: the line less "-", the prefix, a SP and CRLF.
        text = _one_line(message, self._max_line - len(prefix) - 4)
        return b"-%s %s\r\n" % (prefix, text) if text else b"-%s\r\n" % prefix

    def encode_fatal(self, code: int, message: str, last_request_id: int) -> bytes:
        """
        The last words before closing a connection this side gave up on.

        :param code: why.
        :param message: for people.
        :param last_request_id: unused: RESP has no GOAWAY.
        :returns: for a server, a RESP error (``-ERR Protocol error: ...``
            for a protocol error, as Redis says it); for a client ``b""``,
            since anything it sends would be read as a command.
        """
        if self._role is Role.CLIENT:
            return b""
        if code == StatusCode.PROTOCOL_ERROR:
            if not message.startswith("Protocol error"):
                message = f"Protocol error: {message}"
            return self._error_line(StatusCode.UNKNOWN, message)
        if code == StatusCode.OK:
            code = StatusCode.UNAVAILABLE  # an orderly close; "-OK" would contradict itself
        return self._error_line(code, message)
