"""
The hot-path shortcuts of the wire core cannot drift from the general path.

``Connection.next_event`` checks a valid server REQUEST and an awaited client
RESPONSE inline, ``send_request``/``send_response`` use the codec's
``encode_request``/``encode_response``, and the binary codec decodes plain
REQUEST and RESPONSE frames inline.  Each piece takes ``shortcuts=False`` to
run the general path alone; these tests feed both the same bytes and calls
and require the same events, errors and bytes out (aiohttp's habit of
running one test suite over both parser implementations).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    answer_soup,
    any_metadata,
    any_request_fields,
    any_response_fields,
    chunkings,
    metadata,
    request_soup,
)
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from twisted_reqresp import Router
from twisted_reqresp._core import call as call_module
from twisted_reqresp._core import events as events_module
from twisted_reqresp._core.binary import MIN_MAX_FRAME_SIZE, PREFACE, BinaryCodec
from twisted_reqresp._core.call import Call, Cancellation, ConnectionInfo, Reply, new_call
from twisted_reqresp._core.connection import Connection, ConnectionState
from twisted_reqresp._core.errors import LocalProtocolError, StatusError
from twisted_reqresp._core.events import (
    ErrorResponse,
    Event,
    Metadata,
    ProtocolViolation,
    Request,
    Response,
    Role,
    Settings,
    StreamMessage,
    StreamRequest,
    new_request,
    new_response,
)
from twisted_reqresp._core.limits import DEFAULT_LIMITS, Limits
from twisted_reqresp._core.status import StatusCode
from twisted_reqresp._core.streams import message_cost
from twisted_reqresp.codecs import BYTES, JSON


@dataclass(frozen=True)
class _Binary:
    """The binary format, with or without the codec's inline decoding."""

    shortcuts: bool
    name: str = "binary"
    multiplexed: bool = True

    def codec(self, role: Role, limits: Limits) -> BinaryCodec:
        return BinaryCodec(role, limits, shortcuts=self.shortcuts)


def _settings(sender: Role) -> bytes:
    """:returns: a SETTINGS frame with the default limits, as ``sender`` sends it."""
    return BinaryCodec(sender, DEFAULT_LIMITS).encode(
        Settings(
            max_frame_size=DEFAULT_LIMITS.max_frame_size,
            max_concurrent=DEFAULT_LIMITS.max_concurrent,
        )
    )


def _outcome(call: Callable[..., object], *args: object) -> object:
    """:returns: what ``call(*args)`` returned, or the type and text of what it raised."""
    try:
        return call(*args)
    except LocalProtocolError as e:
        return (type(e), e.message, e.code)


# --- the divergence that was found ------------------------------------------------


@pytest.mark.parametrize("shortcuts", [True, False])
@pytest.mark.parametrize(
    ("answer", "name"),
    [
        (Response(request_id=1, body=b"early"), "RESPONSE"),
        (ErrorResponse(request_id=1, code=StatusCode.NOT_FOUND, message="early"), "ERROR"),
    ],
)
def test_answer_before_settings_rejected(shortcuts: bool, answer: Event, name: str) -> None:
    """A client rejects a RESPONSE before the server's SETTINGS exactly as it rejects an ERROR."""
    client = Connection(Role.CLIENT, _Binary(shortcuts), shortcuts=shortcuts)
    client.send_request("m")
    client.data_to_send()
    client.receive_data(BinaryCodec(Role.SERVER, DEFAULT_LIMITS).encode(answer))
    assert client.next_event() == ProtocolViolation(
        code=StatusCode.PROTOCOL_ERROR, message=f"{name} before SETTINGS"
    )
    assert client.state is ConnectionState.CLOSED


# --- the codec's inline decoding ------------------------------------------------


def _decode(role: Role, chunks: list[bytes], shortcuts: bool) -> tuple[list[Event], int]:
    codec = BinaryCodec(role, DEFAULT_LIMITS, shortcuts=shortcuts)
    events: list[Event] = []
    for chunk in chunks:
        codec.receive_data(chunk)
        while (event := codec.next_event()) is not None:
            events.append(event)
    return events, codec.buffered


def _chunkings(stream: bytes, data: st.DataObject) -> list[list[bytes]]:
    """Whole, byte by byte, and one random chunking."""
    return [
        [stream],
        [stream[i : i + 1] for i in range(len(stream))],
        data.draw(chunkings(stream), label="chunks"),
    ]


@given(stream=request_soup(), data=st.data())
def test_server_codec_shortcut(stream: bytes, data: st.DataObject) -> None:
    """A server codec decodes any stream to the same events with and without inline decoding."""
    for chunks in _chunkings(PREFACE + stream, data):
        assert _decode(Role.SERVER, chunks, True) == _decode(Role.SERVER, chunks, False)


@given(stream=answer_soup(), data=st.data())
def test_client_codec_shortcut(stream: bytes, data: st.DataObject) -> None:
    """A client codec decodes any stream to the same events with and without inline decoding."""
    for chunks in _chunkings(stream, data):
        assert _decode(Role.CLIENT, chunks, True) == _decode(Role.CLIENT, chunks, False)


# --- the connection's shortcuts --------------------------------------------------------


@dataclass
class _Run:
    """Everything observable from one run of a connection."""

    events: list[Event] = field(default_factory=list)
    outcomes: list[object] = field(default_factory=list)
    sent: list[bytes] = field(default_factory=list)
    state: list[object] = field(default_factory=list)


def _observe(conn: Connection, run: _Run) -> None:
    run.sent.append(conn.data_to_send())
    run.state.append((conn.state, sorted(conn.in_flight), conn.last_request_id, conn.peer_settings))


def _serve(chunks: list[bytes], shortcuts: bool, goaway_after: int | None) -> _Run:
    """Feed a server; answer every second request, with the request's own fields."""
    conn = Connection(Role.SERVER, _Binary(shortcuts), shortcuts=shortcuts)
    run = _Run()
    for n, chunk in enumerate(chunks):
        if n == goaway_after and conn.state is not ConnectionState.CLOSED:
            conn.send_goaway()
        conn.receive_data(chunk)
        while (event := conn.next_event()) is not None:
            run.events.append(event)
            if isinstance(event, Request) and event.request_id % 2:
                run.outcomes.append(
                    _outcome(conn.send_response, event.request_id, event.body, event.metadata)
                )
        _observe(conn, run)
    return run


def _call(
    chunks: list[bytes],
    shortcuts: bool,
    calls: list[tuple[str, bytes, Metadata, int | None]],
    with_settings: bool,
) -> _Run:
    """Send requests from a client, then feed it the server's bytes."""
    conn = Connection(Role.CLIENT, _Binary(shortcuts), shortcuts=shortcuts)
    run = _Run()
    for call in calls:
        run.outcomes.append(_outcome(conn.send_request, *call))
    _observe(conn, run)
    if with_settings:
        chunks = [_settings(Role.SERVER), *chunks]
    for chunk in chunks:
        conn.receive_data(chunk)
        while (event := conn.next_event()) is not None:
            run.events.append(event)
        _observe(conn, run)
    return run


@given(
    stream=request_soup(),
    data=st.data(),
    with_settings=st.booleans(),
    goaway_after=st.none() | st.integers(min_value=0, max_value=40),
)
def test_server_connection_shortcuts(
    stream: bytes, data: st.DataObject, with_settings: bool, goaway_after: int | None
) -> None:
    """A server connection gives the same events, errors and bytes with and without shortcuts."""
    handshake = PREFACE + (_settings(Role.CLIENT) if with_settings else b"")
    for chunks in _chunkings(handshake + stream, data):
        assert _serve(chunks, True, goaway_after) == _serve(chunks, False, goaway_after)


@given(
    stream=answer_soup(),
    data=st.data(),
    calls=st.lists(any_request_fields(), max_size=5),
    with_settings=st.booleans(),
)
def test_client_connection_shortcuts(
    stream: bytes,
    data: st.DataObject,
    calls: list[tuple[str, bytes, Metadata, int | None]],
    with_settings: bool,
) -> None:
    """A client connection gives the same events, errors and bytes with and without shortcuts."""
    for chunks in _chunkings(stream, data):
        fast = _call(chunks, True, calls, with_settings)
        general = _call(chunks, False, calls, with_settings)
        assert fast == general


# --- the encoders ------------------------------------------------------------------


@given(fields=any_request_fields(), request_id=st.integers(min_value=-2, max_value=2**33))
def test_encode_request_equals_encode(
    fields: tuple[str, bytes, Metadata, int | None], request_id: int
) -> None:
    """encode_request gives the bytes, or raises the error, of encode(Request(...))."""
    codec = BinaryCodec(Role.CLIENT, DEFAULT_LIMITS)
    method, body, metadata, deadline_ms = fields
    request = Request(
        request_id=request_id,
        method=method,
        body=body,
        metadata=metadata,
        deadline_ms=deadline_ms,
    )
    assert _outcome(
        codec.encode_request, request_id, method, body, metadata, deadline_ms
    ) == _outcome(codec.encode, request)


@given(fields=any_response_fields())
def test_encode_response_equals_encode(fields: tuple[int, bytes, Metadata]) -> None:
    """encode_response gives the bytes, or raises the error, of encode(Response(...))."""
    codec = BinaryCodec(Role.SERVER, DEFAULT_LIMITS)
    request_id, body, metadata = fields
    response = Response(request_id=request_id, body=body, metadata=metadata)
    assert _outcome(codec.encode_response, request_id, body, metadata) == _outcome(
        codec.encode, response
    )


# --- streaming calls turn the client's response shortcut off -----------------------

_STREAMING = Limits(stream_credit=300, connection_credit=600)


def _call_streaming(
    chunks: list[bytes], shortcuts: bool, kinds: list[tuple[bool, bool] | None]
) -> _Run:
    """
    Open unary (``None``) and streaming calls from a streaming client, then
    feed it the server's bytes, acknowledging every message it receives.
    """
    conn = Connection(Role.CLIENT, _Binary(shortcuts), _STREAMING, shortcuts=shortcuts)
    run = _Run()
    conn.receive_data(
        BinaryCodec(Role.SERVER, DEFAULT_LIMITS).encode(
            Settings(max_frame_size=1024, max_concurrent=100, stream_credit=50)
        )
    )
    run.events.append(conn.next_event())  # type: ignore[arg-type]
    for kind in kinds:
        if kind is None:
            run.outcomes.append(_outcome(conn.send_request, "m"))
        else:
            run.outcomes.append(
                _outcome(
                    lambda c, s: conn.start_stream("s", client_stream=c, server_stream=s), *kind
                )
            )
    _observe(conn, run)
    for chunk in chunks:
        conn.receive_data(chunk)
        while (event := conn.next_event()) is not None:
            run.events.append(event)
            if isinstance(event, StreamMessage):
                conn.acknowledge(event.request_id, message_cost(len(event.body)))
        _observe(conn, run)
        # Which calls still stream: a RESPONSE taken inline must end them too.
        run.state.append([conn.can_send_message(rid) for rid in range(7)])
    return run


@given(
    stream=answer_soup(),
    data=st.data(),
    kinds=st.lists(st.none() | st.tuples(st.booleans(), st.booleans()), max_size=5),
)
def test_client_connection_shortcuts_with_streams(
    stream: bytes, data: st.DataObject, kinds: list[tuple[bool, bool] | None]
) -> None:
    """With streaming calls open among unary ones, a client behaves the same with and without
    shortcuts."""
    for chunks in _chunkings(stream, data):
        assert _call_streaming(chunks, True, kinds) == _call_streaming(chunks, False, kinds)


@pytest.mark.parametrize("kind", [(True, False), (True, True)])
def test_response_ends_stream_with_and_without_shortcuts(kind: tuple[bool, bool]) -> None:
    """A RESPONSE to a client-streaming call ends its stream on the fast path as on the general."""
    server = BinaryCodec(Role.SERVER, DEFAULT_LIMITS)
    answer = server.encode(Response(request_id=1)) + server.encode(StreamMessage(request_id=1))
    kinds: list[tuple[bool, bool] | None] = [kind, None]
    fast = _call_streaming([answer], True, kinds)
    assert fast == _call_streaming([answer], False, kinds)
    assert fast.state[-1] == [False] * 7


# --- the server's send_response shortcut ------------------------------------------

_SMALL_FRAMES = Settings(max_frame_size=MIN_MAX_FRAME_SIZE, max_concurrent=100, stream_credit=50)


def _answer_run(
    shortcuts: bool,
    answers: list[tuple[int, bytes, Metadata]],
    streams: list[int],
    close_after: int | None,
) -> _Run:
    """
    A server that read requests 1 to 6 (those in ``streams`` as streaming
    calls) from a client whose frames are the smallest allowed, then sends
    ``answers``; closed (a violation) after ``close_after`` of them.
    """
    conn = Connection(Role.SERVER, _Binary(shortcuts), _STREAMING, shortcuts=shortcuts)
    client = BinaryCodec(Role.CLIENT, DEFAULT_LIMITS)
    wire = PREFACE + client.encode(_SMALL_FRAMES)
    for rid in range(1, 7):
        if rid in streams:
            wire += client.encode(
                StreamRequest(request_id=rid, method="s", client_stream=True, server_stream=True)
            )
        else:
            wire += client.encode(Request(request_id=rid, method="m"))
    conn.receive_data(wire)
    run = _Run()
    while (event := conn.next_event()) is not None:
        run.events.append(event)
    _observe(conn, run)
    for n, (rid, body, md) in enumerate(answers):
        if n == close_after:
            conn.receive_data(b"\xff" * 10)  # a frame of 4 GiB: a violation, closing
            while (event := conn.next_event()) is not None:
                run.events.append(event)
        run.outcomes.append(_outcome(conn.send_response, rid, body, md))
        _observe(conn, run)
        # Which streaming calls are still open: an answer ends its call's.
        run.state.append([conn.can_send_message(rid) for rid in range(8)])
    return run


@given(
    answers=st.lists(
        st.tuples(
            st.integers(min_value=-1, max_value=8),
            st.sampled_from([0, 1, MIN_MAX_FRAME_SIZE - 1, MIN_MAX_FRAME_SIZE, 9000]).map(
                lambda n: b"b" * n
            ),
            metadata | any_metadata,
        ),
        max_size=10,
    ),
    streams=st.lists(st.integers(min_value=1, max_value=6), max_size=3),
    close_after=st.none() | st.integers(min_value=0, max_value=10),
)
def test_send_response_shortcut(
    answers: list[tuple[int, bytes, Metadata]], streams: list[int], close_after: int | None
) -> None:
    """A server's send_response gives the same bytes, errors and state with and without
    shortcuts: answers awaited or not, at, below and above the peer's frame size, with
    streaming calls open, and after the connection closed."""
    assert _answer_run(True, answers, streams, close_after) == _answer_run(
        False, answers, streams, close_after
    )


# --- the router's shortcut for unary BYTES methods ---------------------------------


@dataclass
class _Stream:
    """Just what Router.respond reads of a call's stream."""

    kind: str
    codecs: list[object] = field(default_factory=list)

    def use_codec(self, codec: object) -> None:
        self.codecs.append(codec)


async def _later(value: object) -> object:
    return value


_BEHAVIOURS: dict[str, Callable[[Call], object]] = {
    "bytes": lambda call: b"answer",
    "echo": lambda call: call.body,
    "text": lambda call: "answer",
    "dict": lambda call: {"answer": 1},
    "reply": lambda call: Reply(body=b"answer", metadata={"k": "v"}),
    "deferred": lambda call: succeed(b"answer"),
    "deferred text": lambda call: succeed("answer"),
    "deferred declared": lambda call: fail(KeyError("ada")),
    "deferred undeclared": lambda call: fail(ValueError("no")),
    "coroutine": lambda call: _later(b"answer"),
    "declared": lambda call: {}["ada"],
    "undeclared": lambda call: int("x"),
    "status": lambda call: (_ for _ in ()).throw(StatusError(StatusCode.ABORTED, "stop")),
}


def _settled(respond: Callable[[Call], object], call: Call) -> object:
    """:returns: what ``respond(call)`` answered, raised, or its Deferred fired with."""
    try:
        result = respond(call)
    except Exception as e:
        return ("raised", type(e), str(e), getattr(e, "code", None))
    if isinstance(result, Deferred):
        fired: list[object] = []
        result.addBoth(fired.append)
        (outcome,) = fired
        if isinstance(outcome, Failure):
            error = outcome.value
            return ("failed", type(error), str(error), getattr(error, "code", None))
        return ("fired", outcome)
    return ("returned", result)


@given(
    behaviour=st.sampled_from(sorted(_BEHAVIOURS)),
    kind=st.sampled_from(["unary", "server_stream", "client_stream", "bidi_stream"]),
    json=st.booleans(),
    called_as=st.none() | st.sampled_from(["unary", "server_stream", "client_stream"]),
    body=st.sampled_from([b"", b"{}", b'"x"', b"not json"]),
    line=st.booleans(),
)
def test_router_shortcut(
    behaviour: str, kind: str, json: bool, called_as: str | None, body: bytes, line: bool
) -> None:
    """A router answers, raises or fires the same with and without its shortcut for unary
    BYTES methods, whatever the method's kind, codec and function, and however it is called."""
    outcomes = []
    for shortcut in (True, False):
        router = Router()
        router.add(
            "m",
            _BEHAVIOURS[behaviour],
            codec=JSON if json else BYTES,
            errors={KeyError: StatusCode.NOT_FOUND},
            kind=kind,
        )
        if not shortcut:
            router._methods["m"] = replace(router._methods["m"], plain=False)
        stream = None if called_as is None else _Stream(called_as)
        call = Call(
            method="m",
            body=body,
            metadata={},
            connection=ConnectionInfo(connection_id=1, peer=None, host=None, wire_format="x"),
            stream=stream,
            _line=line,
        )
        outcomes.append((_settled(router.respond, call), stream))
    assert outcomes[0] == outcomes[1]


# --- the server's Call, made through a twin class ----------------------------------


def _every_field(call: Call) -> list[object]:
    """:returns: every field of ``call``, those left out of equality too."""
    return [getattr(call, f.name) for f in dataclasses.fields(call)]


@given(
    method=st.text(max_size=5),
    body=st.binary(max_size=5),
    metadata=st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
    request_id=st.integers(min_value=0, max_value=2**32),
    deadline=st.none() | st.floats(allow_nan=False),
    line=st.booleans(),
    twin=st.booleans(),
    streaming=st.booleans(),
)
def test_new_call_equals_call(
    method: str,
    body: bytes,
    metadata: dict[str, str],
    request_id: int,
    deadline: float | None,
    line: bool,
    twin: bool,
    streaming: bool,
) -> None:
    """new_call makes a Call equal in every field, type, repr and behaviour to the
    constructor's, with or without a stream, through the twin class and its fallback."""
    connection = ConnectionInfo(connection_id=1, peer=None, host=None, wire_format="x")
    clock = object()
    cancellation = Cancellation()
    stream = object() if streaming else None
    args = (
        method, body, metadata, connection, request_id, deadline, clock, cancellation, line,
        stream,
    )  # fmt: skip
    saved = call_module._CALL_TWIN
    if not twin:
        call_module._CALL_TWIN = None
    try:
        fast = new_call(*args)  # type: ignore[arg-type]
    finally:
        call_module._CALL_TWIN = saved
    general = Call(
        method=method,
        body=body,
        metadata=metadata,
        connection=connection,
        request_id=request_id,
        deadline=deadline,
        stream=stream,  # type: ignore[arg-type]
        _clock=clock,  # type: ignore[arg-type]
        _cancellation=cancellation,
        _line=line,
    )
    assert type(fast) is Call
    assert fast == general
    assert repr(fast) == repr(general)
    assert _every_field(fast) == _every_field(general)
    assert _every_field(fast.with_body(b"other")) == _every_field(general.with_body(b"other"))
    assert _every_field(copy.copy(fast)) == _every_field(general)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.method = "other"  # type: ignore[misc]
    refusals = []
    for each in (fast, general):
        # A slotted dataclass refuses a new attribute with a TypeError
        # (CPython's own quirk): the same for both.
        with pytest.raises(Exception) as refused:
            each.unknown = 1  # type: ignore[attr-defined]
        refusals.append((refused.type, str(refused.value)))
    assert refusals[0] == refusals[1]
    # Both share the one cancellation: a cancel reaches a subscriber on either.
    heard: list[str] = []
    fast.on_cancel(lambda: heard.append("fast"))
    general.on_cancel(lambda: heard.append("general"))
    cancellation.cancel()
    assert heard == ["fast", "general"]
    assert fast.cancelled and general.cancelled


@given(
    request_id=st.integers(min_value=0, max_value=2**32),
    method=st.text(max_size=5),
    body=st.binary(max_size=5),
    twin=st.booleans(),
)
def test_new_request_equals_request(request_id: int, method: str, body: bytes, twin: bool) -> None:
    """new_request makes a Request equal in every field, type, repr, hash and behaviour to
    the constructor's, through the twin class and through its fallback."""
    saved = events_module._REQUEST_TWIN
    if not twin:
        events_module._REQUEST_TWIN = None
    try:
        fast = new_request(request_id, method, body)
    finally:
        events_module._REQUEST_TWIN = saved
    general = Request(request_id=request_id, method=method, body=body)
    assert type(fast) is Request
    assert fast == general
    assert hash(fast) == hash(general)
    assert repr(fast) == repr(general)
    assert dataclasses.astuple(fast) == dataclasses.astuple(general)
    assert copy.copy(fast) == general
    assert dataclasses.replace(fast, body=b"x") == dataclasses.replace(general, body=b"x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.method = "other"  # type: ignore[misc]


@given(
    request_id=st.integers(min_value=0, max_value=2**32),
    body=st.binary(max_size=5),
    twin=st.booleans(),
)
def test_new_response_equals_response(request_id: int, body: bytes, twin: bool) -> None:
    """new_response makes a Response equal in every field, type, repr, hash and behaviour to
    the constructor's, through the twin class and through its fallback."""
    saved = events_module._RESPONSE_TWIN
    if not twin:
        events_module._RESPONSE_TWIN = None
    try:
        fast = new_response(request_id, body)
    finally:
        events_module._RESPONSE_TWIN = saved
    general = Response(request_id=request_id, body=body)
    assert type(fast) is Response
    assert fast == general
    assert hash(fast) == hash(general)
    assert repr(fast) == repr(general)
    assert dataclasses.astuple(fast) == dataclasses.astuple(general)
    assert copy.copy(fast) == general
    assert dataclasses.replace(fast, body=b"x") == dataclasses.replace(general, body=b"x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.body = b"other"  # type: ignore[misc]
