"""
The compiled hot path behaves exactly as its pure-Python sources.

setup.py compiles the binary codec, the connection and the stream accounting
with mypyc; ``twisted_reqresp._core.hotpath`` imports either the compiled modules
or their .py files.  These tests load the .py files a second time under other
names (``twisted_reqresp._core._pure_binary`` and so on; their imports of the
shared modules, events, limits, status and errors, resolve to the same
objects) and feed the same byte streams, split at random points, and the same
calls through both, requiring the same events (by ``repr``, so that a status
code that stopped being a :class:`StatusCode` shows), the same exceptions
(type, message and code) and the same bytes out.

On the pure-Python path both sides are the same code, and these tests prove
nothing: CI runs the suite on both paths, and under ``CI=true`` with a C
compiler the compiled path must really be compiled
(``test_compiled_under_ci``).
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import puretwins
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    answer_soup,
    any_request_fields,
    any_response_fields,
    chunkings,
    client_events,
    frame_soup,
    request_soup,
    server_events,
)

import twisted_reqresp
from twisted_reqresp._core import binary, connection, streams
from twisted_reqresp._core import hotpath as _hotpath
from twisted_reqresp._core.errors import LocalProtocolError
from twisted_reqresp._core.events import Event, Metadata, Request, Role, StreamMessage
from twisted_reqresp._core.limits import DEFAULT_LIMITS, Limits

_CORE = Path(binary.__file__).parent


PURE = {name.rpartition(".")[2]: module for name, module in puretwins.load().items()}
#: (name, binary module, connection module, streams module) of each side.
COMPILED = (binary, connection, streams)
SOURCES = (PURE["binary"], PURE["connection"], PURE["streams"])


def _is_compiled(module: ModuleType) -> bool:
    return not str(module.__file__).endswith(".py")


def test_twins_are_sources() -> None:
    """The pure twins are loaded from the .py files, whatever path is active."""
    for module in SOURCES:
        assert str(module.__file__).endswith(".py"), module.__file__
    assert PURE["connection"].message_cost is PURE["streams"].message_cost


def test_compiled_under_ci() -> None:
    """Under CI with a C compiler and without the env var, the hot path is compiled."""
    forced = os.environ.get(_hotpath.NO_EXTENSIONS, "") not in ("", "0")
    compiler = (
        shutil.which("cc") is not None
        and Path(sysconfig.get_paths()["include"], "Python.h").is_file()
    )
    if not (os.environ.get("CI") and compiler) or forced:
        pytest.skip("not CI with a C compiler, or the pure-Python path is forced")
    assert all(_is_compiled(m) for m in COMPILED), [m.__file__ for m in COMPILED]
    assert twisted_reqresp.compiled


def _outcome(call: Callable[..., object], *args: object) -> object:
    """:returns: the repr of what ``call(*args)`` returned, or what it raised."""
    try:
        return repr(call(*args))
    except LocalProtocolError as e:
        return (type(e), e.message, repr(e.code))
    except (TypeError, ValueError, OverflowError) as e:
        return (type(e), str(e))


def _chunkings(stream: bytes, data: st.DataObject) -> list[list[bytes]]:
    """Whole, byte by byte, and one random chunking."""
    return [
        [stream],
        [stream[i : i + 1] for i in range(len(stream))],
        data.draw(chunkings(stream), label="chunks"),
    ]


# --- the codec -----------------------------------------------------------------------


def _decode(mod: ModuleType, role: Role, chunks: list[bytes]) -> tuple[list[str], int]:
    codec = mod.BinaryCodec(role, DEFAULT_LIMITS)
    events: list[str] = []
    for chunk in chunks:
        codec.receive_data(chunk)
        while (event := codec.next_event()) is not None:
            events.append(repr(event))
    return events, codec.buffered


@given(stream=request_soup() | frame_soup(), data=st.data())
def test_server_codec(stream: bytes, data: st.DataObject) -> None:
    """A compiled server codec decodes any stream to the events the pure one decodes."""
    for chunks in _chunkings(binary.PREFACE + stream, data):
        assert _decode(binary, Role.SERVER, chunks) == _decode(SOURCES[0], Role.SERVER, chunks)


@given(stream=answer_soup() | frame_soup(), data=st.data())
def test_client_codec(stream: bytes, data: st.DataObject) -> None:
    """A compiled client codec decodes any stream to the events the pure one decodes."""
    for chunks in _chunkings(stream, data):
        assert _decode(binary, Role.CLIENT, chunks) == _decode(SOURCES[0], Role.CLIENT, chunks)


@given(event=client_events | server_events, role=st.sampled_from(Role))
def test_encode(event: Event, role: Role) -> None:
    """A compiled codec encodes any event to the pure codec's bytes, or raises its error."""
    fast = binary.BinaryCodec(role, DEFAULT_LIMITS)
    pure = SOURCES[0].BinaryCodec(role, DEFAULT_LIMITS)
    assert _outcome(fast.encode, event) == _outcome(pure.encode, event)


@given(
    request=any_request_fields(),
    answer=any_response_fields(),
    request_id=st.integers(min_value=-2, max_value=2**33),
)
def test_encoders(
    request: tuple[str, bytes, Metadata, int | None],
    answer: tuple[int, bytes, Metadata],
    request_id: int,
) -> None:
    """encode_request and encode_response give the same bytes or errors compiled and pure."""
    sides = [mod.BinaryCodec(Role.CLIENT, DEFAULT_LIMITS) for mod in (binary, SOURCES[0])]
    assert len({repr(_outcome(c.encode_request, request_id, *request)) for c in sides}) == 1
    sides = [mod.BinaryCodec(Role.SERVER, DEFAULT_LIMITS) for mod in (binary, SOURCES[0])]
    assert len({repr(_outcome(c.encode_response, *answer)) for c in sides}) == 1


# --- the connection ------------------------------------------------------------------


def _observe(conn: object, run: list[object]) -> None:
    c: connection.Connection = conn  # type: ignore[assignment]
    run.append(
        (
            c.data_to_send(),
            repr(c.state),
            sorted(c.in_flight),
            c.last_request_id,
            repr(c.peer_settings),
            c.unanswered,
            c.buffered,
        )
    )


def _settings(mods: tuple[ModuleType, ...], sender: Role) -> bytes:
    from twisted_reqresp._core.events import Settings

    return bytes(
        mods[0]
        .BinaryCodec(sender, DEFAULT_LIMITS)
        .encode(
            Settings(
                max_frame_size=DEFAULT_LIMITS.max_frame_size,
                max_concurrent=DEFAULT_LIMITS.max_concurrent,
            )
        )
    )


def _serve(mods: tuple[ModuleType, ...], chunks: list[bytes], goaway_after: int | None) -> list:
    """Feed a server; answer odd requests with their body, even ones with an error."""
    bin_mod, conn_mod, _ = mods
    conn = conn_mod.Connection(Role.SERVER, bin_mod.BinaryFormat())
    run: list[object] = []
    for n, chunk in enumerate(chunks):
        if n == goaway_after and repr(conn.state) != "<ConnectionState.CLOSED: 'closed'>":
            run.append(_outcome(conn.send_goaway))
        run.append(_outcome(conn.receive_data, chunk))
        while True:
            event = conn.next_event()
            if event is None:
                break
            run.append(repr(event))
            if isinstance(event, Request):
                if event.request_id % 2:
                    run.append(
                        _outcome(conn.send_response, event.request_id, event.body, event.metadata)
                    )
                else:
                    run.append(_outcome(conn.send_error, event.request_id, 5, event.method))
        _observe(conn, run)
    return run


def _call(
    mods: tuple[ModuleType, ...],
    chunks: list[bytes],
    calls: list[tuple[str, bytes, Metadata, int | None]],
    cancel: int | None,
) -> list:
    """Send requests from a client (cancelling one), then feed it the server's bytes."""
    bin_mod, conn_mod, streams_mod = mods
    limits = Limits(stream_credit=300, connection_credit=600)
    conn = conn_mod.Connection(Role.CLIENT, bin_mod.BinaryFormat(), limits)
    run: list[object] = []
    for call in calls:
        run.append(_outcome(conn.send_request, *call))
    run.append(_outcome(lambda: conn.start_stream("s", client_stream=True, server_stream=True)))
    if cancel is not None:
        run.append(_outcome(conn.send_cancel, cancel))
    _observe(conn, run)
    for chunk in [_settings(mods, Role.SERVER), *chunks]:
        conn.receive_data(chunk)
        while True:
            event = conn.next_event()
            if event is None:
                break
            run.append(repr(event))
            if isinstance(event, StreamMessage):
                cost = streams_mod.message_cost(len(event.body))
                run.append(_outcome(conn.acknowledge, event.request_id, cost))
        _observe(conn, run)
    return run


@given(
    stream=request_soup(),
    data=st.data(),
    with_settings=st.booleans(),
    goaway_after=st.none() | st.integers(min_value=0, max_value=40),
)
def test_server_connection(
    stream: bytes, data: st.DataObject, with_settings: bool, goaway_after: int | None
) -> None:
    """A compiled server connection gives the pure one's events, errors and bytes."""
    handshake = binary.PREFACE + (_settings(COMPILED, Role.CLIENT) if with_settings else b"")
    for chunks in _chunkings(handshake + stream, data):
        assert _serve(COMPILED, chunks, goaway_after) == _serve(SOURCES, chunks, goaway_after)


@given(
    stream=answer_soup(),
    data=st.data(),
    calls=st.lists(any_request_fields(), max_size=5),
    cancel=st.none() | st.integers(min_value=0, max_value=6),
)
def test_client_connection(
    stream: bytes,
    data: st.DataObject,
    calls: list[tuple[str, bytes, Metadata, int | None]],
    cancel: int | None,
) -> None:
    """A compiled client connection gives the pure one's events, errors and bytes."""
    for chunks in _chunkings(stream, data):
        assert _call(COMPILED, chunks, calls, cancel) == _call(SOURCES, chunks, calls, cancel)


@given(
    code=st.integers(min_value=-(2**70), max_value=2**70) | st.sampled_from([0, 1, 5, 13, 999]),
    message=st.text(max_size=10),
)
def test_send_error_codes(code: int, message: str) -> None:
    """send_error turns any code into the same answer, or the same error, compiled and pure."""
    runs = []
    for mods in (COMPILED, SOURCES):
        chunks = [binary.PREFACE, _settings(mods, Role.CLIENT)]
        conn = mods[1].Connection(Role.SERVER, mods[0].BinaryFormat())
        for chunk in chunks:
            conn.receive_data(chunk)
        while conn.next_event() is not None:
            pass
        client = mods[0].BinaryCodec(Role.CLIENT, DEFAULT_LIMITS)
        conn.receive_data(client.encode_request(1, "m", b"", (), None))
        run = [repr(conn.next_event()), _outcome(conn.send_error, 1, code, message)]
        _observe(conn, run)
        runs.append(run)
    assert runs[0] == runs[1]
