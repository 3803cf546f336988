"""
The binary wire format, version 1: framing bytes to events and back.

Wire core: contains no networking code and imports nothing from Twisted.
``docs/protocol.md`` is the normative description; this module follows it,
and ``tests/vectors/binary.json`` checks the two agree in both directions.

In brief::

    client preface  = 89 52 51 52 0D 0A 1A 0A  (magic)  00 01  (version 1)
    frame           = length:u32  type:u8  flags:u8  request_id:u32  payload
                      `length` counts the payload bytes only

A frame's length is checked against our ``max_frame_size`` as soon as its
10-byte header is in, before any of its payload is buffered, so an
announcement of 4 GiB costs nothing but the header.
"""

from __future__ import annotations

import re
import struct
from typing import Final, cast

from zope.interface import classImplements

from .contract import IWireCodec, IWireFormat
from .errors import LocalProtocolError
from .events import (
    DEFAULT_CONNECTION_CREDIT,
    Cancel,
    CreditGranted,
    ErrorResponse,
    Event,
    GoAway,
    Metadata,
    Ping,
    Pong,
    PrefaceReceived,
    ProtocolViolation,
    Rejected,
    Request,
    Response,
    Role,
    Settings,
    StreamEnd,
    StreamMessage,
    StreamRequest,
    new_request,
    new_response,
)
from .limits import MAX_CREDIT, Limits
from .status import STATUS_BY_VALUE, StatusCode

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "PREFACE",
    "VERSION",
    "BinaryCodec",
    "BinaryFormat",
    "FrameType",
    "describe_foreign_bytes",
    "foreign_reply",
]

#: The first eight bytes a client sends.  Like PNG's signature: the high
#: first byte is never typed text, and the CR LF / ^Z / LF catch a channel
#: that mangles line ends.
MAGIC = b"\x89RQR\r\n\x1a\n"
#: The protocol version this module speaks.
VERSION = 1
#: The whole client preface: the magic, then the version as a u16.
PREFACE = MAGIC + struct.pack(">H", VERSION)

# Final: compiled, module constants read from C statics, not the module dict.
_HEADER: Final = struct.Struct(">IBBI")
#: Bytes in a frame header: length u32, type u8, flags u8, request id u32.
HEADER_SIZE: Final[int] = _HEADER.size
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_SETTING = struct.Struct(">HI")
_ERROR_HEAD = struct.Struct(">IH")


class FrameType:
    """Frame type numbers (``docs/protocol.md``, "Frame types")."""

    SETTINGS: Final = 0x1
    REQUEST: Final = 0x2
    RESPONSE: Final = 0x3
    ERROR: Final = 0x4
    CANCEL: Final = 0x5
    PING: Final = 0x6
    PONG: Final = 0x7
    GOAWAY: Final = 0x8
    # 0x9 stays unassigned.
    STREAM_MESSAGE: Final = 0xA
    STREAM_END: Final = 0xB
    CREDIT: Final = 0xC


# Flags, per frame type.  Undefined flags are ignored on receipt and must be
# sent as zero.
FLAG_DEADLINE = 0x01  # REQUEST: a u32 deadline in milliseconds follows the method
FLAG_METADATA = 0x02  # REQUEST, RESPONSE: a metadata block is present
FLAG_RETRY_SAFE = 0x01  # ERROR: the request was not processed
FLAG_CLIENT_STREAM = 0x04  # REQUEST: the client sends a stream of messages
FLAG_SERVER_STREAM = 0x08  # REQUEST: the server sends a stream of messages
_STREAM_FLAGS = FLAG_CLIENT_STREAM | FLAG_SERVER_STREAM

# SETTINGS identifiers.  Unknown identifiers are ignored.
SETTING_MAX_FRAME_SIZE = 0x1
SETTING_MAX_CONCURRENT = 0x2
SETTING_STREAM_CREDIT = 0x3  # absent: the sender takes no part in streaming calls
SETTING_CONNECTION_CREDIT = 0x4
#: The smallest max frame size a peer may advertise: room for any
#: control frame and a useful request.
MIN_MAX_FRAME_SIZE = 1024

_PING_SIZE = 8
# The hot path's frame types, as module constants (a class attribute is a
# second lookup per frame).
_REQUEST: Final = FrameType.REQUEST
_RESPONSE: Final = FrameType.RESPONSE
# The events' fast constructors, likewise (an imported name is a module-dict
# lookup per call in the compiled module).
_new_request: Final = new_request
_new_response: Final = new_response
#: The frame types version 1 assigns; others are skipped once the handshake is done.
_ASSIGNED: Final = frozenset(range(FrameType.SETTINGS, FrameType.GOAWAY + 1)) | frozenset(
    (FrameType.STREAM_MESSAGE, FrameType.STREAM_END, FrameType.CREDIT)
)
#: How much of a text answer a client quotes when it reports one.
_SHOWN = 200
#: The start of a line-format answer (docs/protocol.md, "Line format"):
#: ``OK`` alone or with a body, or ``ERR`` and a code.
_LINE_ANSWER = re.compile(rb"(?:OK(?:[ \r\n]|$)|ERR )")
_HTTP_METHODS = (
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
    b"PRI ",
)


def describe_foreign_bytes(data: bytes) -> tuple[str, str]:
    """
    Guess what protocol a peer that did not send our preface speaks.

    :param data: the first bytes the peer sent.
    :returns: ``(kind, message)``: ``kind`` is ``"http"``, ``"tls"`` or
        ``"unknown"``; ``message`` is a one-line explanation for a person.
    """
    if data.startswith(_HTTP_METHODS):
        return "http", "this port speaks the reqresp binary protocol, not HTTP"
    if data[:1] == b"\x16" and data[1:2] in (b"", b"\x03"):
        return "tls", "this port speaks the reqresp binary protocol without TLS"
    return (
        "unknown",
        "expected the reqresp binary protocol preface (see docs/protocol.md)",
    )


def foreign_reply(data: bytes, message: str) -> bytes:
    """The last words for a peer that does not speak our protocol at all."""
    kind, _ = describe_foreign_bytes(data)
    text = f"reqresp: {message}\r\n".encode()
    if kind == "http":
        return (
            b"HTTP/1.1 400 Bad Request\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Connection: close\r\n"
            b"Content-Length: " + str(len(text)).encode() + b"\r\n\r\n" + text
        )
    return text


def _encode_metadata(metadata: Metadata) -> bytes:
    parts = [_U16.pack(len(metadata))]
    for key, value in metadata:
        k = key.encode("utf-8")
        v = value.encode("utf-8")
        if not k or len(k) > 0xFFFF:
            raise LocalProtocolError(f"metadata key of {len(k)} bytes (must be 1-65535)")
        parts.append(_U16.pack(len(k)))
        parts.append(k)
        parts.append(_U32.pack(len(v)))
        parts.append(v)
    return b"".join(parts)


_SKIPPED = object()  # what _decode returns for a frame of an unknown type

# The frames whose malformed payload fails only their request (a Rejected
# event), by the role that receives them.
_PER_REQUEST: Final = {
    Role.SERVER: (FrameType.REQUEST,),
    Role.CLIENT: (FrameType.RESPONSE, FrameType.ERROR),
}


class _Malformed(Exception):
    """A frame's payload does not match its type's layout."""


def _decode_metadata(buf: bytes, pos: int, end: int, max_entries: int) -> tuple[Metadata, int]:
    if pos + 2 > end:
        raise _Malformed("truncated metadata count")
    (count,) = _U16.unpack_from(buf, pos)
    if count > max_entries:
        raise _Malformed(f"{count} metadata entries (limit {max_entries})")
    pos += 2
    pairs = []
    for _ in range(count):
        if pos + 2 > end:
            raise _Malformed("truncated metadata key length")
        (klen,) = _U16.unpack_from(buf, pos)
        pos += 2
        if klen == 0 or pos + klen + 4 > end:
            raise _Malformed("bad metadata key length")
        key = buf[pos : pos + klen].decode("utf-8")
        pos += klen
        (vlen,) = _U32.unpack_from(buf, pos)
        pos += 4
        if pos + vlen > end:
            raise _Malformed("metadata value overruns the frame")
        value = buf[pos : pos + vlen].decode("utf-8")
        pos += vlen
        pairs.append((key, value))
    return tuple(pairs), pos


def _decode_text(buf: bytes, pos: int, end: int) -> tuple[str, int]:
    """A u16-length-prefixed UTF-8 string."""
    if pos + 2 > end:
        raise _Malformed("truncated string length")
    (n,) = _U16.unpack_from(buf, pos)
    pos += 2
    if pos + n > end:
        raise _Malformed("string overruns the frame")
    return buf[pos : pos + n].decode("utf-8"), pos + n


def _text(value: str, what: str) -> bytes:
    data = value.encode("utf-8")
    if len(data) > 0xFFFF:
        raise LocalProtocolError(f"{what} of {len(data)} bytes (limit 65535)")
    return _U16.pack(len(data)) + data


class BinaryCodec:
    """
    One connection's binary-format codec: buffers received bytes, decodes
    whole frames into events one at a time, and encodes events to bytes.

    It checks framing and field syntax only; which side may send what is the
    :class:`~twisted_reqresp._core.connection.Connection`'s business.

    :param role: which end of the connection the codec serves.
    :param limits: what this side accepts.
    :param shortcuts: decode plain REQUEST and RESPONSE frames inline (the
        default); ``False`` decodes every frame the general way, with the
        same results.
    """

    #: The client sends a preface and both sides exchange SETTINGS before
    #: the connection is ready.
    handshake = True
    #: PING and PONG frames exist, so either side can check the other.
    keepalive = True
    #: Bytes of each frame not counted against the peer's max frame size.
    frame_overhead = HEADER_SIZE

    # Slots, not a __dict__: one of these per connection (issue 12).
    __slots__ = (
        "__weakref__",
        "_avail",
        "_await_preface",
        "_buf",
        "_failed",
        "_first_frame",
        "_foreign",
        "_max_frame",
        "_max_metadata",
        "_more",
        "_pos",
        "_role",
        "_shortcuts",
    )

    def __init__(self, role: Role, limits: Limits, *, shortcuts: bool = True) -> None:
        self._role = role
        # Plain REQUEST and RESPONSE frames are decoded inline, the server's
        # and the client's hot path; ``shortcuts=False`` leaves every frame to
        # the general decoder, for the test that proves the two agree
        # (tests/test_fastpath_differential.py).
        # (Not ``_inline``: compiled, the attribute becomes a C struct member
        # ``__inline``, a GCC keyword, and the build falls back to pure Python.)
        self._shortcuts = shortcuts
        self._max_frame = limits.max_frame_size
        self._max_metadata = limits.max_metadata_entries
        # Received bytes: ``_buf[_pos:]`` then the chunks in ``_more``, which
        # are joined only once a whole frame is known to be there, so a large
        # frame arriving in many chunks is copied once, not once per chunk.
        # ``_more`` is the shared empty tuple until a second chunk waits (an
        # idle connection holds no list), and ``_buf`` is dropped once every
        # byte in it is decoded (an idle connection holds no old read).
        self._buf = b""
        self._pos = 0
        self._more: list[bytes] | tuple[()] = ()
        self._avail = 0
        self._await_preface = role is Role.SERVER
        # The peer's first frame is not yet in: it must be SETTINGS (or a
        # server's refusing GOAWAY), whatever its type (docs/protocol.md,
        # "Handshake", rules 5 and 6).  Frames of assigned types are the
        # Connection's to vet; an unassigned type, which only the codec sees,
        # is vetted here, before the length.  Also true while the preface is
        # awaited and once the codec failed (see next_event).
        self._first_frame = True
        self._failed = False
        # Set when the peer never spoke our protocol: what to tell it instead
        # of a GOAWAY it could not read.
        self._foreign: bytes | None = None

    # -- receiving ----------------------------------------------------------

    def preface(self) -> bytes:
        """
        :returns: the bytes this side sends before anything else: the
            preface for a client, nothing for a server.
        """
        return PREFACE if self._role is Role.CLIENT else b""

    def receive_data(self, data: bytes) -> None:
        """
        Buffer bytes from the peer.

        :param data: the bytes, in any chunking.
        """
        if not data:
            return
        if self._avail == 0:
            self._buf = bytes(data)
            self._pos = 0
            self._avail = len(data)
        else:
            more = self._more
            if isinstance(more, list):
                more.append(bytes(data))
            else:
                self._more = [bytes(data)]
            self._avail += len(data)

    @property
    def buffered(self) -> int:
        """The number of received bytes not yet decoded."""
        return self._avail

    def _contiguous(self, n: int) -> bool:
        """Make ``n`` bytes available at ``_buf[_pos:]`` if we have them."""
        if len(self._buf) - self._pos >= n:
            return True
        if self._avail < n:
            return False
        self._buf = self._buf[self._pos :] + b"".join(self._more)
        self._more = ()
        self._pos = 0
        return True

    def _fail(self, code: StatusCode, message: str) -> ProtocolViolation:
        self._failed = True
        self._first_frame = True  # next_event's one test for unusual states
        self._more = ()
        self._avail = 0
        self._buf = b""
        self._pos = 0
        return ProtocolViolation(code=code, message=message)

    def next_event(self) -> Event | None:
        """
        Decode the next event from the buffered bytes.

        :returns: the event, or ``None`` if more bytes are needed.  A
            :class:`ProtocolViolation` is the last event the codec returns.
        """
        # Declared (no code in pure Python): compiled, the header fields the
        # loop computes with are native ints, not objects (struct's results
        # are untyped).  The request id is only passed on, so stays an object.
        length: int
        ftype: int
        flags: int
        while True:
            # _first_frame is also true while the preface is awaited and
            # once the codec failed: one test for the three in the steady
            # state.
            first = self._first_frame
            if first:
                if self._failed:
                    return None
                if self._await_preface:
                    return self._read_preface()
            buf = self._buf
            pos = self._pos
            here = len(buf) - pos  # contiguous bytes at pos
            if here < HEADER_SIZE:
                # What _contiguous would answer, without its call at the end
                # of every read.
                avail = self._avail
                if avail < HEADER_SIZE:
                    if not avail:
                        # Everything read is decoded: hold no old bytes
                        # while the connection waits (an idle connection
                        # would otherwise keep its last read).
                        self._buf = b""
                        self._pos = 0
                    return None
                self._contiguous(HEADER_SIZE)
                buf = self._buf
                pos = self._pos
                here = len(buf) - pos
            length, ftype, flags, rid = _HEADER.unpack_from(buf, pos)
            if first:
                if ftype not in _ASSIGNED:
                    # Checked before the length: text read as a header announces
                    # a frame of a gigabyte or so ("ERR " is 0x45525220).
                    return self._first_frame_unassigned(ftype)
                self._first_frame = False
            if length > self._max_frame:
                return self._fail(
                    StatusCode.RESOURCE_EXHAUSTED,
                    f"frame of {length} bytes exceeds the maximum of {self._max_frame}",
                )
            total = HEADER_SIZE + length
            if here < total:
                if not self._contiguous(total):
                    return None
                buf = self._buf
                pos = self._pos
            start = pos + HEADER_SIZE
            end = start + length
            self._pos = end
            self._avail -= total
            if not flags and self._shortcuts:
                if ftype == _REQUEST and length >= 2:
                    # The common request, a method and a body, decoded inline;
                    # any problem is left to the general decoder below to
                    # describe.
                    method_end = start + 2 + ((buf[start] << 8) | buf[start + 1])
                    if start + 2 < method_end <= end:
                        try:
                            method = buf[start + 2 : method_end].decode("utf-8")
                        except UnicodeDecodeError:
                            pass
                        else:
                            return _new_request(rid, method, buf[method_end:end])
                elif ftype == _RESPONSE:
                    return _new_response(rid, buf[start:end])
            try:
                event = self._decode(ftype, flags, rid, buf, start, end)
            except (_Malformed, UnicodeDecodeError, struct.error) as e:
                reason = str(e) if isinstance(e, _Malformed) else "invalid UTF-8"
                # Only a frame this role receives can be confined to one request;
                # a malformed frame the peer may not send at all (a RESPONSE from
                # a client) is as fatal as a well-formed one would be.
                if ftype in _PER_REQUEST[self._role] and rid:
                    code = (
                        StatusCode.INVALID_ARGUMENT
                        if ftype == FrameType.REQUEST
                        else StatusCode.INTERNAL
                    )
                    return Rejected(request_id=rid, code=code, message=f"malformed frame: {reason}")
                return self._fail(
                    StatusCode.PROTOCOL_ERROR, f"malformed frame type {ftype}: {reason}"
                )
            if event is not _SKIPPED:
                return cast("Event | None", event)
            # A frame of an unknown type was skipped: look at the next one.

    def _first_frame_unassigned(self, ftype: int) -> ProtocolViolation | None:
        """
        The peer's first frame has an unassigned type: a connection error.
        From a server, it means that the server does not speak the binary
        format at all (docs/protocol.md, "Peers that do not speak the
        protocol"); the bytes say which text it answered.

        :returns: the violation, or ``None`` while the first line of a text
            answer is still arriving (it is quoted whole, so the message does
            not depend on how the bytes were split).
        """
        if self._role is Role.SERVER:
            return self._fail(
                StatusCode.PROTOCOL_ERROR, f"frame type 0x{ftype:02x} before SETTINGS"
            )
        have = bytes(self._buf[self._pos : self._pos + _SHOWN])
        for chunk in self._more:
            if len(have) >= _SHOWN:
                break
            have += chunk[:_SHOWN]
        have = have[:_SHOWN]
        text = have.startswith((b"reqresp: ", b"HTTP/")) or _LINE_ANSWER.match(have)
        if text and b"\n" not in have and len(have) < _SHOWN:
            return None
        line = have.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
        if have.startswith((b"reqresp: ", b"HTTP/")):
            # A binary port refusing us (our version) or a foreign server.
            message = f"the server answered in text: {line}"
        elif text:
            message = (
                f"not a reqresp binary server: it speaks the line format and answered {line!r}"
            )
        else:
            message = (
                f"not a reqresp binary server: its first frame has type 0x{ftype:02x}, "
                "not SETTINGS or GOAWAY"
            )
        # Nothing is sent back: a server that does not read frames cannot read
        # a GOAWAY (a line port would answer it with one more ERR line).
        self._foreign = b""
        return self._fail(StatusCode.PROTOCOL_ERROR, message)

    def _read_preface(self) -> Event | None:
        have = self._buf[self._pos :] + b"".join(self._more)
        n = min(len(have), len(MAGIC))
        if have[:n] != MAGIC[:n]:
            _, message = describe_foreign_bytes(have)
            self._foreign = foreign_reply(have, message)
            return self._fail(StatusCode.PROTOCOL_ERROR, message)
        if len(have) < len(PREFACE):
            return None
        (version,) = _U16.unpack_from(have, len(MAGIC))
        if version != VERSION:
            self._foreign = (
                f"reqresp: unsupported protocol version {version}; this server speaks {VERSION}\r\n"
            ).encode()
            return self._fail(
                StatusCode.PROTOCOL_ERROR,
                f"unsupported protocol version {version} (this side speaks {VERSION})",
            )
        self._buf = have[len(PREFACE) :]
        self._pos = 0
        self._more = ()
        self._avail = len(self._buf)
        self._await_preface = False
        return PrefaceReceived(version=version)

    def _decode(
        self, ftype: int, flags: int, rid: int, buf: bytes, pos: int, end: int
    ) -> Event | object:
        if ftype == FrameType.REQUEST:
            if pos + 2 > end:
                raise _Malformed("truncated method name length")
            (mlen,) = _U16.unpack_from(buf, pos)
            pos += 2
            if pos + mlen > end:
                raise _Malformed("method name overruns the frame")
            method = buf[pos : pos + mlen].decode("utf-8")
            pos += mlen
            deadline = None
            if flags & FLAG_DEADLINE:
                if pos + 4 > end:
                    raise _Malformed("truncated deadline")
                (deadline,) = _U32.unpack_from(buf, pos)
                pos += 4
            metadata: Metadata = ()
            if flags & FLAG_METADATA:
                metadata, pos = _decode_metadata(buf, pos, end, self._max_metadata)
            if not method:
                raise _Malformed("empty method name")
            if flags & _STREAM_FLAGS:
                return StreamRequest(
                    request_id=rid,
                    method=method,
                    client_stream=bool(flags & FLAG_CLIENT_STREAM),
                    server_stream=bool(flags & FLAG_SERVER_STREAM),
                    body=buf[pos:end],
                    metadata=metadata,
                    deadline_ms=deadline,
                )
            return Request(
                request_id=rid,
                method=method,
                body=buf[pos:end],
                metadata=metadata,
                deadline_ms=deadline,
            )
        if ftype == FrameType.RESPONSE:
            metadata = ()
            if flags & FLAG_METADATA:
                metadata, pos = _decode_metadata(buf, pos, end, self._max_metadata)
            return Response(request_id=rid, body=buf[pos:end], metadata=metadata)
        if ftype == FrameType.ERROR:
            if pos + 6 > end:
                raise _Malformed("truncated ERROR frame")
            code, _ = _ERROR_HEAD.unpack_from(buf, pos)
            message, pos = _decode_text(buf, pos + 4, end)
            return ErrorResponse(
                request_id=rid,
                code=STATUS_BY_VALUE.get(code, code),
                message=message,
                details=buf[pos:end],
                retry_safe=bool(flags & FLAG_RETRY_SAFE),
            )
        if ftype == FrameType.CANCEL:
            return Cancel(request_id=rid)
        if ftype in (FrameType.PING, FrameType.PONG):
            if end - pos != _PING_SIZE:
                raise _Malformed(f"payload of {end - pos} bytes (must be 8)")
            if rid:
                raise _Malformed("request id must be 0")
            payload = buf[pos:end]
            return Ping(payload=payload) if ftype == FrameType.PING else Pong(payload=payload)
        if ftype == FrameType.GOAWAY:
            if pos + 6 > end:
                raise _Malformed("truncated GOAWAY frame")
            code, _ = _ERROR_HEAD.unpack_from(buf, pos)
            message, pos = _decode_text(buf, pos + 4, end)
            return GoAway(
                last_request_id=rid, code=STATUS_BY_VALUE.get(code, code), message=message
            )
        if ftype == FrameType.SETTINGS:
            return self._decode_settings(rid, buf, pos, end)
        if ftype == FrameType.STREAM_MESSAGE:
            return StreamMessage(request_id=rid, body=buf[pos:end])
        if ftype == FrameType.STREAM_END:
            # Like CANCEL: the payload is empty, and ignored if it is not.
            return StreamEnd(request_id=rid)
        if ftype == FrameType.CREDIT:
            if end - pos != 4:
                raise _Malformed(f"payload of {end - pos} bytes (must be 4)")
            (increment,) = _U32.unpack_from(buf, pos)
            if not 1 <= increment <= MAX_CREDIT:
                raise _Malformed(f"credit increment {increment} (must be 1 to {MAX_CREDIT})")
            return CreditGranted(request_id=rid, increment=increment)
        # An unknown frame type: skipped, so that later versions can add
        # frames an older peer ignores (as HTTP/2 does, RFC 9113 section 4.1).
        return _SKIPPED

    def _decode_settings(self, rid: int, buf: bytes, pos: int, end: int) -> Settings:
        if rid:
            raise _Malformed("request id must be 0")
        if (end - pos) % _SETTING.size:
            raise _Malformed("payload is not a whole number of settings")
        max_frame = 16 * 1024 * 1024
        max_concurrent = 100
        stream_credit: int | None = None
        connection_credit = DEFAULT_CONNECTION_CREDIT
        for offset in range(pos, end, _SETTING.size):
            ident, value = _SETTING.unpack_from(buf, offset)
            if ident == SETTING_MAX_FRAME_SIZE:
                if value < MIN_MAX_FRAME_SIZE:
                    raise _Malformed(
                        f"max frame size {value} below the minimum {MIN_MAX_FRAME_SIZE}"
                    )
                max_frame = value
            elif ident == SETTING_MAX_CONCURRENT:
                if value < 1:
                    raise _Malformed("max concurrent requests must be at least 1")
                max_concurrent = value
            elif ident in (SETTING_STREAM_CREDIT, SETTING_CONNECTION_CREDIT):
                if value > MAX_CREDIT:
                    raise _Malformed(f"credit setting {value} above the maximum {MAX_CREDIT}")
                if ident == SETTING_STREAM_CREDIT:
                    stream_credit = value
                else:
                    connection_credit = value
        return Settings(
            max_frame_size=max_frame,
            max_concurrent=max_concurrent,
            stream_credit=stream_credit,
            connection_credit=connection_credit,
        )

    # -- sending -------------------------------------------------------------

    def encode(self, event: Event) -> bytes:
        """
        Encode a message event as one frame.

        :param event: a :class:`Request`, :class:`Response`,
            :class:`ErrorResponse`, :class:`Cancel`, :class:`Ping`,
            :class:`Pong`, :class:`GoAway`, :class:`Settings`,
            :class:`StreamRequest`, :class:`StreamMessage`,
            :class:`StreamEnd` or :class:`CreditGranted`.
        :returns: the frame's bytes.
        :raises LocalProtocolError: if the event cannot be encoded (a field
            too long, a number out of its field's range, text that is not
            valid Unicode, an empty method name, or an event that never
            travels).
        """
        try:
            return self._encode(event)
        except (struct.error, UnicodeEncodeError) as e:
            # A number outside its field (a negative id, a status code above
            # 2**32 - 1, 65536 metadata entries) or a lone surrogate: the
            # caller's mistake, reported as such rather than as a crash.
            raise LocalProtocolError(f"cannot encode {type(event).__name__}: {e}") from None

    def encode_response(self, request_id: int, body: bytes, metadata: Metadata = ()) -> bytes:
        """
        Encode a RESPONSE frame without building a :class:`Response` first:
        the server's hot path (see :meth:`Connection.send_response`).

        :returns: the same bytes as ``encode(Response(...))``.
        :raises LocalProtocolError: as :meth:`encode`.
        """
        try:
            if metadata:
                md = _encode_metadata(metadata)
                head = _HEADER.pack(
                    len(md) + len(body), FrameType.RESPONSE, FLAG_METADATA, request_id
                )
                return head + md + body
            return _HEADER.pack(len(body), _RESPONSE, 0, request_id) + body
        except (struct.error, UnicodeEncodeError) as e:
            raise LocalProtocolError(f"cannot encode Response: {e}") from None

    def encode_request(
        self,
        request_id: int,
        method: str,
        body: bytes,
        metadata: Metadata = (),
        deadline_ms: int | None = None,
    ) -> bytes:
        """
        Encode a REQUEST frame without building a :class:`Request` first:
        the client's hot path (see :meth:`Connection.send_request`).

        :returns: the same bytes as ``encode(Request(...))``.
        :raises LocalProtocolError: as :meth:`encode`.
        """
        try:
            return self._encode_request(request_id, method, body, metadata, deadline_ms, 0)
        except (struct.error, UnicodeEncodeError) as e:
            raise LocalProtocolError(f"cannot encode Request: {e}") from None

    def _encode_request(
        self,
        request_id: int,
        method: str,
        body: bytes,
        metadata: Metadata,
        deadline_ms: int | None,
        flags: int,
    ) -> bytes:
        if not method:
            raise LocalProtocolError("empty method name")
        name = _text(method, "method name")
        if deadline_ms is None and not metadata:
            return (
                _HEADER.pack(len(name) + len(body), FrameType.REQUEST, flags, request_id)
                + name
                + body
            )
        parts = [name]
        if deadline_ms is not None:
            if not 0 <= deadline_ms <= 0xFFFF_FFFF:
                raise LocalProtocolError(f"deadline {deadline_ms} ms does not fit in 32 bits")
            flags |= FLAG_DEADLINE
            parts.append(_U32.pack(deadline_ms))
        if metadata:
            flags |= FLAG_METADATA
            parts.append(_encode_metadata(metadata))
        head = b"".join(parts)
        return (
            _HEADER.pack(len(head) + len(body), FrameType.REQUEST, flags, request_id) + head + body
        )

    def _encode(self, event: Event) -> bytes:
        if isinstance(event, Response):
            return self.encode_response(event.request_id, event.body, event.metadata)
        if isinstance(event, Request):
            return self._encode_request(
                event.request_id, event.method, event.body, event.metadata, event.deadline_ms, 0
            )
        if isinstance(event, StreamMessage):
            return _HEADER.pack(len(event.body), FrameType.STREAM_MESSAGE, 0, event.request_id) + (
                event.body
            )
        if isinstance(event, StreamRequest):
            flags = (FLAG_CLIENT_STREAM if event.client_stream else 0) | (
                FLAG_SERVER_STREAM if event.server_stream else 0
            )
            if not flags:
                raise LocalProtocolError("a StreamRequest streams one way or both")
            return self._encode_request(
                event.request_id,
                event.method,
                event.body,
                event.metadata,
                event.deadline_ms,
                flags,
            )
        if isinstance(event, StreamEnd):
            return _HEADER.pack(0, FrameType.STREAM_END, 0, event.request_id)
        if isinstance(event, CreditGranted):
            if not 1 <= event.increment <= MAX_CREDIT:
                raise LocalProtocolError(
                    f"credit increment {event.increment} (must be 1 to {MAX_CREDIT})"
                )
            return _HEADER.pack(4, FrameType.CREDIT, 0, event.request_id) + _U32.pack(
                event.increment
            )
        if isinstance(event, ErrorResponse):
            payload = (
                _U32.pack(int(event.code)) + _text(event.message, "error message") + event.details
            )
            flags = FLAG_RETRY_SAFE if event.retry_safe else 0
            return _HEADER.pack(len(payload), FrameType.ERROR, flags, event.request_id) + payload
        if isinstance(event, Cancel):
            return _HEADER.pack(0, FrameType.CANCEL, 0, event.request_id)
        if isinstance(event, (Ping, Pong)):
            if len(event.payload) != _PING_SIZE:
                raise LocalProtocolError("a ping payload is exactly 8 bytes")
            ftype = FrameType.PING if isinstance(event, Ping) else FrameType.PONG
            return _HEADER.pack(_PING_SIZE, ftype, 0, 0) + event.payload
        if isinstance(event, GoAway):
            payload = _U32.pack(int(event.code)) + _text(event.message, "GOAWAY message")
            return _HEADER.pack(len(payload), FrameType.GOAWAY, 0, event.last_request_id) + payload
        if isinstance(event, Settings):
            payload = _SETTING.pack(SETTING_MAX_FRAME_SIZE, event.max_frame_size) + _SETTING.pack(
                SETTING_MAX_CONCURRENT, event.max_concurrent
            )
            for credit in (event.stream_credit, event.connection_credit):
                if credit is not None and not 0 <= credit <= MAX_CREDIT:
                    raise LocalProtocolError(f"credit setting {credit} (must be 0 to {MAX_CREDIT})")
            # The streaming settings only when they say something, so that a
            # side without streaming sends the SETTINGS it always sent.
            if event.stream_credit is not None:
                payload += _SETTING.pack(SETTING_STREAM_CREDIT, event.stream_credit)
            if (
                event.stream_credit is not None
                or event.connection_credit != DEFAULT_CONNECTION_CREDIT
            ):
                payload += _SETTING.pack(SETTING_CONNECTION_CREDIT, event.connection_credit)
            return _HEADER.pack(len(payload), FrameType.SETTINGS, 0, 0) + payload
        raise LocalProtocolError(f"{type(event).__name__} is not sent on the wire")

    def encode_fatal(self, code: int, message: str, last_request_id: int) -> bytes:
        """
        The last words before closing a connection this side gave up on.

        :param code: why.
        :param message: for people.
        :param last_request_id: the highest request id that will be answered.
        :returns: a GOAWAY frame, or a line of text (an HTTP 400 response
            for an HTTP client) when the peer never sent our preface.
        """
        if self._foreign is not None:
            return self._foreign
        # Last words must always encode: a message is for people, so a lone
        # surrogate becomes "?" rather than an exception in a close path.
        message = message[:1000].encode("utf-8", "replace").decode("utf-8")
        if self._await_preface:
            return f"reqresp: {message}\r\n".encode()
        return self.encode(GoAway(last_request_id=last_request_id, code=code, message=message))


# Declared here rather than with ``@implementer``: mypyc compiles a class with
# an unknown decorator as a plain Python class (every attribute looked up by
# name, every method a Python call), slower than the pure-Python one.
classImplements(BinaryCodec, IWireCodec)


class BinaryFormat:
    """
    The binary wire format: multiplexed, with deadlines, metadata,
    cancellation, keepalive and GOAWAY.

    Instances are stateless and shared; :meth:`codec` makes the
    per-connection state.
    """

    #: The name used by ``--wire`` and in logs.
    name = "binary"
    #: Responses carry request ids and may come in any order.
    multiplexed = True

    def codec(self, role: Role, limits: Limits) -> BinaryCodec:
        """
        Make the sans-IO codec for one connection.

        :param role: which end of the connection the codec serves.
        :param limits: what this side accepts.
        :returns: a fresh :class:`BinaryCodec`.
        """
        return BinaryCodec(role, limits)

    def __repr__(self) -> str:
        return "BinaryFormat()"


classImplements(BinaryFormat, IWireFormat)
