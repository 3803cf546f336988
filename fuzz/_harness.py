"""
What the atheris harnesses share: how an input is read, how a sans-IO
:class:`~twisted_reqresp.wire.Connection` is driven with it, and the
invariants checked on the way.

Only the pure wire core is fuzzed (STYLE.md, habit 13; h11's
``fuzz/afl-server.py``): no Twisted, no reactor, so an execution costs
microseconds.

An input is read with :class:`atheris.FuzzedDataProvider`:

- its first byte is the *mode*: which role to play, and whether to put a
  valid preface (and, for a client, the server's SETTINGS) in front of the
  fuzzed bytes, so that most inputs get past the handshake;
- the rest is the *stream*, consumed from the front in chunks, and the
  *controls*, consumed from the back (as libFuzzer's own data provider does
  with integers): before each chunk its size (two bytes), after it an
  action byte (answer a request, send one, cancel one, GOAWAY, flush).
  When the controls run out, chunks are one byte long and the action is
  "nothing".

:func:`make_input` builds an input from a stream, chunk sizes and actions;
``make_corpus.py`` uses it for the seed corpora.

The invariants, checked after every step:

1. Nothing raises but what the API documents: decoding never raises at all;
   sending raises only :class:`LocalProtocolError` where documented.
2. After a :class:`ProtocolViolation` the connection is closed and
   :meth:`next_event` returns ``None``, whatever bytes follow.
3. The codec's buffer stays bounded: after decoding, below one frame (or
   line, or detection window) plus a header; after receiving, that plus the
   chunk.
4. Decoded requests, streaming requests and stream frames (and, for a
   client, answers) survive a round trip: encoded again by the peer's codec
   and decoded by a fresh codec, they give equal events.
5. What the core sends is well formed for its peer: the binary bytes a
   server writes after a valid preface decode, with a fresh client codec,
   into frames without any violation; a line server writes only ``OK`` and
   ``ERR`` lines.
6. Streaming calls (docs/protocol.md, "Streaming calls"; both sides offer
   them with :data:`LIMITS`): the stream messages a connection holds
   unacknowledged stay within its connection credit plus one frame;
   ``send_message`` raises exactly when ``can_send_message`` says no.
"""

from __future__ import annotations

import dataclasses
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import atheris  # noqa: E402

# Only our modules are instrumented: the package's first import happens in
# this block (a module imported earlier would be left as it is), and the
# Twisted modules it pulls in are not what we fuzz and would slow every run.
with atheris.instrument_imports(include=["twisted_reqresp"]):
    import twisted_reqresp  # noqa: F401
    from twisted_reqresp._core import auto, binary, connection, detect, line  # noqa: F401

# Which implementation this run targets: the modules compiled with mypyc
# (the default where they are built), or their .py sources with
# TWISTED_REQRESP_NO_EXTENSIONS=1 (see fuzz/README.md, "Both hot paths").
from twisted_reqresp._core.hotpath import reason as _hot_path  # noqa: E402

print(f"fuzzing the wire core: {_hot_path()}", file=sys.stderr)

from twisted_reqresp._core.errors import LocalProtocolError  # noqa: E402
from twisted_reqresp._core.events import (  # noqa: E402
    CreditGranted,
    ErrorResponse,
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
)
from twisted_reqresp._core.limits import Limits  # noqa: E402
from twisted_reqresp._core.streams import MESSAGE_OVERHEAD, message_cost  # noqa: E402
from twisted_reqresp.wire import (  # noqa: E402
    PREFACE,
    AutoFormat,
    BinaryCodec,
    BinaryFormat,
    Connection,
    ConnectionState,
    LineCodec,
    LineFormat,
)

#: Small limits, so that the fuzzer reaches them with short inputs.
LIMITS = Limits(
    max_frame_size=4096,
    max_line_length=4096,
    max_metadata_entries=8,
    stream_credit=512,
    connection_credit=2048,
)
#: The largest chunk fed at once.
MAX_CHUNK = 512
HEADER = binary.HEADER_SIZE

# Actions: the low three bits of the action byte.
ACT_NOTHING = 0
ACT_RESPOND = 1  # server: answer the oldest request in flight
ACT_ERROR = 2  # server: answer the newest request in flight with an error
ACT_FLUSH = 3  # take data_to_send() and check it
ACT_SEND = 4  # client: send a request
ACT_CANCEL = 5  # client: cancel the oldest request in flight
ACT_GOAWAY = 6  # server: send GOAWAY (then requests are refused)
ACT_CLOSE = 7  # give up from this side (close_with_error)
# ACT_NOTHING with bit 0x08 set is a streaming action, chosen by bits 0x30:
STREAM_OPEN = 0x08  # client: open a streaming call; bits 0xC0 say which ways (0: both)
STREAM_SEND = 0x18  # send a message of (action >> 6) * 100 bytes on the newest call
STREAM_END_ = 0x28  # client: end the stream of the oldest call
STREAM_ACK = 0x38  # acknowledge every stream message received


class Broken(AssertionError):
    """An invariant does not hold (a crash, for the fuzzer)."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Broken(message)


def make_input(
    mode: int, stream: bytes, sizes: list[int] | None = None, actions: list[int] | None = None
) -> bytes:
    """
    Build an input the harnesses read as ``mode``, then ``stream`` fed in
    chunks of ``sizes`` with ``actions`` after each chunk.

    :param sizes: chunk sizes (1 to :data:`MAX_CHUNK`) adding up to the
        stream's length; by default chunks of :data:`MAX_CHUNK`.
    :param actions: one action byte per chunk; ``ACT_FLUSH`` by default.
    """
    if sizes is None:
        sizes = [min(MAX_CHUNK, len(stream) - i) for i in range(0, len(stream), MAX_CHUNK)]
    if sum(sizes) != len(stream) or not all(1 <= n <= MAX_CHUNK for n in sizes):
        raise ValueError("chunk sizes must cut the whole stream")
    if actions is None:
        actions = [ACT_FLUSH] * len(sizes)
    controls = bytearray()
    for size, action in zip(sizes, actions, strict=False):
        # ConsumeIntInRange reads integers from the end, most significant
        # byte last-in-buffer first: emit them in the reverse order.
        value = size - 1
        controls[:0] = bytes([value & 0xFF, value >> 8])
        controls[:0] = bytes([action])
    return bytes([mode]) + stream + bytes(controls)


@dataclasses.dataclass
class Run:
    """One execution's state."""

    conn: Connection
    role: Role
    kind: str  # "binary", "line" or "auto"
    residual: int  # the most bytes left buffered after decoding
    out: bytearray = dataclasses.field(default_factory=bytearray)
    violated: bool = False
    sent_requests: int = 0
    #: Stream messages received and not yet acknowledged: (request id, cost).
    held: list[tuple[int, int]] = dataclasses.field(default_factory=list)


def _residual(kind: str) -> int:
    if kind == "binary":
        return LIMITS.max_frame_size + HEADER
    if kind == "line":
        return LIMITS.max_line_length
    return max(LIMITS.max_frame_size + HEADER, LIMITS.max_line_length, detect.MAX_UNDECIDED)


def new_run(kind: str, role: Role) -> Run:
    fmt = {"binary": BinaryFormat(), "line": LineFormat(), "auto": AutoFormat()}[kind]
    conn = Connection(role, fmt, LIMITS)
    return Run(conn=conn, role=role, kind=kind, residual=_residual(kind))


def feed(run: Run, chunk: bytes) -> None:
    """Give the connection ``chunk`` and take every event it yields."""
    conn = run.conn
    conn.receive_data(chunk)
    if not run.violated:
        check(
            conn.buffered <= run.residual + len(chunk),
            f"{conn.buffered} bytes buffered after a chunk of {len(chunk)}",
        )
    while True:
        event = conn.next_event()
        if event is None:
            break
        check(not run.violated, f"{event!r} after a ProtocolViolation")
        if isinstance(event, ProtocolViolation):
            run.violated = True
            check(conn.state is ConnectionState.CLOSED, "open after a ProtocolViolation")
            check(conn.next_event() is None, "an event right after a ProtocolViolation")
        elif isinstance(event, PrefaceReceived):
            check(False, "PrefaceReceived escaped the connection")
        elif isinstance(event, Request):
            check(run.role is Role.SERVER, "a client decoded a Request")
            round_trip_request(run, event)
        elif isinstance(event, (Response, ErrorResponse)):
            check(run.role is Role.CLIENT, f"a server decoded {event!r}")
            round_trip_answer(run, event)
        elif isinstance(event, Rejected):
            check(run.role is Role.SERVER, "a client got a Rejected event")
            check(event.request_id == conn.last_request_id, "Rejected with an unexpected id")
        elif isinstance(event, Settings):
            check(event.max_frame_size >= 1024, "SETTINGS below the minimum frame size")
        elif isinstance(event, StreamRequest):
            check(run.role is Role.SERVER, "a client decoded a StreamRequest")
            round_trip(run, event, Role.CLIENT)
        elif isinstance(event, StreamMessage):
            run.held.append((event.request_id, message_cost(len(event.body))))
            round_trip(run, event, Role.SERVER if run.role is Role.CLIENT else Role.CLIENT)
        elif isinstance(event, StreamEnd):
            check(run.role is Role.SERVER, "a client decoded a StreamEnd")
            round_trip(run, event, Role.CLIENT)
        elif isinstance(event, CreditGranted):
            round_trip(run, event, Role.SERVER if run.role is Role.CLIENT else Role.CLIENT)
    bound = LIMITS.connection_credit + MESSAGE_OVERHEAD + LIMITS.max_frame_size - 1
    check(
        run.violated or conn.unacknowledged <= bound,
        f"{conn.unacknowledged} bytes of stream messages held (bound {bound})",
    )
    if run.violated:
        check(conn.next_event() is None, "an event after a ProtocolViolation")
    else:
        check(
            conn.buffered <= run.residual,
            f"{conn.buffered} bytes left buffered after decoding (bound {run.residual})",
        )


def round_trip_request(run: Run, request: Request) -> None:
    """A decoded request, encoded by a client and decoded again, is equal."""
    kind = _effective_kind(run)
    if kind == "binary":
        data = BinaryCodec(Role.CLIENT, LIMITS).encode(request)
        server = BinaryCodec(Role.SERVER, LIMITS)
        server.receive_data(PREFACE + data)
        check(isinstance(server.next_event(), PrefaceReceived), "no PrefaceReceived")
        again = server.next_event()
        check(again == request, f"round trip changed {request!r} into {again!r}")
        check(server.next_event() is None, "round trip left bytes")
        return
    client = LineCodec(Role.CLIENT, LIMITS)
    try:
        line = client.encode(request)
    except LocalProtocolError:
        # Documented: a client cannot send a method holding whitespace
        # (a server only splits on SP, so such a method can arrive).
        check(
            any(c in request.method for c in " \t\n\r\x0b\x0c"),
            f"a line client cannot send {request!r}",
        )
        return
    server = LineCodec(Role.SERVER, LIMITS)
    server.receive_data(line)
    again = server.next_event()
    expected = dataclasses.replace(request, request_id=1)
    check(again == expected, f"round trip changed {expected!r} into {again!r}")


def round_trip(
    run: Run, event: StreamRequest | StreamMessage | StreamEnd | CreditGranted, sender: Role
) -> None:
    """A decoded stream frame, encoded by ``sender`` and decoded again, is equal."""
    data = BinaryCodec(sender, LIMITS).encode(event)
    receiver = BinaryCodec(Role.SERVER if sender is Role.CLIENT else Role.CLIENT, LIMITS)
    receiver.receive_data(PREFACE + data if sender is Role.CLIENT else data)
    if sender is Role.CLIENT:
        check(isinstance(receiver.next_event(), PrefaceReceived), "no PrefaceReceived")
    again = receiver.next_event()
    check(again == event, f"round trip changed {event!r} into {again!r}")
    check(receiver.next_event() is None, "round trip left bytes")


def round_trip_answer(run: Run, answer: Response | ErrorResponse) -> None:
    """A decoded answer, encoded by a server and decoded again, is equal."""
    if run.kind != "binary":
        return  # the line client's answers are checked by the line server's encoder
    data = BinaryCodec(Role.SERVER, LIMITS).encode(answer)
    client = BinaryCodec(Role.CLIENT, LIMITS)
    client.receive_data(data)
    again = client.next_event()
    check(again == answer, f"round trip changed {answer!r} into {again!r}")


def _effective_kind(run: Run) -> str:
    if run.kind != "auto":
        return run.kind
    detected = run.conn._codec.detected  # type: ignore[attr-defined]
    check(detected in ("binary", "line"), f"a request decoded with detected={detected!r}")
    return str(detected)


def act(run: Run, action: int) -> None:
    """Do what the action byte says, as the application would."""
    conn = run.conn
    what = action & 7
    in_flight = sorted(conn.in_flight)
    if what == ACT_RESPOND and run.role is Role.SERVER and in_flight:
        rid = in_flight[0]
        metadata = (("k", "v"),) if action & 8 else ()
        conn.send_response(rid, bytes([action]) * (action >> 3), metadata)
        check(rid not in conn.in_flight, "answered but still in flight")
    elif what == ACT_ERROR and run.role is Role.SERVER and in_flight:
        conn.send_error(in_flight[-1], 3, "bad" * (action >> 3), b"d", bool(action & 8))
    elif what == ACT_SEND and run.role is Role.CLIENT:
        try:
            conn.send_request("m" + str(action), b"x" * (action >> 3))
            run.sent_requests += 1
        except LocalProtocolError as e:
            # Documented: the connection is closed or the server sent GOAWAY.
            check(
                conn.state is ConnectionState.CLOSED or conn.peer_goaway is not None,
                f"send_request refused on an open connection: {e}",
            )
    elif what == ACT_CANCEL and run.role is Role.CLIENT and in_flight:
        was_open = conn.state is not ConnectionState.CLOSED
        conn.send_cancel(in_flight[0])
        check(not (was_open and in_flight[0] in conn.in_flight), "cancelled but still in flight")
    elif what == ACT_GOAWAY and run.role is Role.SERVER and action & 0x80:
        try:
            conn.send_goaway()
        except LocalProtocolError:
            check(conn.state is ConnectionState.CLOSED, "send_goaway refused on an open connection")
    elif what == ACT_NOTHING and action & 0x08:
        stream_act(run, action)
    elif what == ACT_CLOSE and action == 0xFF:
        # After a violation the connection is closed already and this does
        # nothing (in_flight is cleared by close(), when the transport goes).
        was_open = conn.state is not ConnectionState.CLOSED
        conn.close_with_error(14, "fuzz gives up")
        check(conn.state is ConnectionState.CLOSED, "open after close_with_error")
        check(not (was_open and conn.in_flight), "in flight after close_with_error")
    if what == ACT_FLUSH or action & 0x40:
        flush(run)


def stream_act(run: Run, action: int) -> None:
    """The streaming actions (see ``STREAM_OPEN`` and the others)."""
    conn = run.conn
    in_flight = sorted(conn.in_flight)
    sub = action & 0x38
    if sub == STREAM_OPEN and run.role is Role.CLIENT:
        ways = (action >> 6) or 3
        try:
            conn.start_stream("s", client_stream=bool(ways & 1), server_stream=bool(ways & 2))
        except LocalProtocolError as e:
            # Documented: closed, going away, or streaming not (yet) offered.
            check(
                conn.state is ConnectionState.CLOSED
                or conn.peer_goaway is not None
                or conn.peer_accepts_streams is not True,
                f"start_stream refused on an open connection: {e}",
            )
    elif sub == STREAM_SEND and in_flight:
        rid = in_flight[-1]
        body = b"s" * ((action >> 6) * 100)
        if conn.can_send_message(rid):
            conn.send_message(rid, body)
        else:
            try:
                conn.send_message(rid, body)
            except LocalProtocolError:
                pass
            else:
                check(False, "send_message went through when can_send_message said no")
    elif sub == STREAM_END_ and run.role is Role.CLIENT and in_flight:
        try:
            conn.end_stream(in_flight[0])
        except LocalProtocolError:
            pass  # documented: not a client stream, already ended, or closed
    elif sub == STREAM_ACK:
        for rid, cost in run.held:
            conn.acknowledge(rid, cost)
        run.held.clear()
        check(
            conn.state is ConnectionState.CLOSED or conn.unacknowledged == 0,
            "stream messages held after acknowledging them all",
        )


def flush(run: Run) -> None:
    data = run.conn.data_to_send()
    run.out += data
    check(run.conn.data_to_send() == b"", "data_to_send twice gave bytes")


def check_output(run: Run) -> None:
    """What a server wrote is well formed for a client of its format."""
    flush(run)
    if run.role is not Role.SERVER:
        return
    kind = run.kind
    if kind == "auto":
        kind = run.conn._codec.detected or "foreign"  # type: ignore[attr-defined]
    out = bytes(run.out)
    if kind == "binary" and _preface_seen(run):
        client = BinaryCodec(Role.CLIENT, Limits(max_frame_size=16 * 1024 * 1024))
        client.receive_data(out)
        while (event := client.next_event()) is not None:
            check(
                not isinstance(event, (ProtocolViolation, Rejected)),
                f"the server wrote a frame its client cannot read: {event!r}",
            )
        check(client.buffered == 0, "the server wrote a partial frame")
    elif kind == "line":
        for line in out.split(b"\r\n")[:-1]:
            check(line == b"OK" or line.startswith((b"OK ", b"ERR ")), f"bad line {line!r}")
        check(out.endswith(b"\r\n") or not out, "the server wrote a partial line")


def _preface_seen(run: Run) -> bool:
    codec = run.conn._codec
    codec = getattr(codec, "_inner", codec)
    return isinstance(codec, BinaryCodec) and not codec._await_preface


def drive(run: Run, fdp: atheris.FuzzedDataProvider) -> None:
    """Feed the rest of the input in chunks, acting after each."""
    while fdp.remaining_bytes():
        size = fdp.ConsumeIntInRange(1, MAX_CHUNK)
        chunk = fdp.ConsumeBytes(size)
        feed(run, chunk)
        act(run, fdp.ConsumeIntInRange(0, 255))
    check_output(run)
