"""
Hypothesis strategies for the wire core, in one module (so every property
test draws from the same definitions of "a valid event" and "garbage").

Valid events stay within what a receiver with the default
:class:`~twisted_reqresp.Limits` accepts: at most 64 metadata entries,
SETTINGS values at or above their minimums, text that is valid Unicode.
"""

from __future__ import annotations

import dataclasses
import itertools
import struct

from hypothesis import strategies as st

from twisted_reqresp._core.binary import HEADER_SIZE, BinaryCodec
from twisted_reqresp._core.events import (
    Cancel,
    CreditGranted,
    ErrorResponse,
    Event,
    GoAway,
    Metadata,
    Ping,
    Pong,
    Request,
    Response,
    Role,
    Settings,
    StreamEnd,
    StreamMessage,
    StreamRequest,
)
from twisted_reqresp._core.limits import DEFAULT_LIMITS, MAX_CREDIT
from twisted_reqresp._core.status import StatusCode

__all__ = [
    "answer_soup",
    "any_request_fields",
    "any_response_fields",
    "bodies",
    "chunkings",
    "client_events",
    "error_responses",
    "frame_soup",
    "garbage_frames",
    "goaways",
    "metadata",
    "methods",
    "plain_frames",
    "raw_frames",
    "request_ids",
    "request_soup",
    "requests",
    "responses",
    "server_events",
    "settings_events",
    "split",
    "status_codes",
    "stream_messages",
    "texts",
]

U32_MAX = 0xFFFF_FFFF

#: Text that UTF-8 can carry: any code point but the surrogates.
texts = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40)
#: Method names: non-empty text.
methods = st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=30)
#: Request ids: any unsigned 32-bit number but 0 (reserved for the connection).
request_ids = st.integers(min_value=1, max_value=U32_MAX)
#: Opaque bodies, small enough to keep examples fast.
bodies = st.binary(max_size=200)
#: Metadata: ordered pairs with non-empty keys, at most the default limit.
metadata: st.SearchStrategy[Metadata] = st.lists(
    st.tuples(texts.filter(bool), texts), max_size=5
).map(tuple)
#: Any status code an ERROR or GOAWAY may carry: known ones, unknown
#: reserved ones and application codes, as integers.
status_codes = st.one_of(
    st.sampled_from(list(StatusCode)),
    st.integers(min_value=17, max_value=999),
    st.integers(min_value=1000, max_value=U32_MAX),
)
deadlines = st.none() | st.integers(min_value=0, max_value=U32_MAX)
ping_payloads = st.binary(min_size=8, max_size=8)

#: Credit values: settings and increments (1 and up for increments).
credits = st.integers(min_value=0, max_value=MAX_CREDIT)
settings_events = st.builds(
    Settings,
    max_frame_size=st.integers(min_value=1024, max_value=U32_MAX),
    max_concurrent=st.integers(min_value=1, max_value=U32_MAX),
    stream_credit=st.none() | credits,
    connection_credit=credits,
)
requests = st.builds(
    Request,
    request_id=request_ids,
    method=methods,
    body=bodies,
    metadata=metadata,
    deadline_ms=deadlines,
)
stream_requests = st.builds(
    StreamRequest,
    request_id=request_ids,
    method=methods,
    client_stream=st.booleans(),
    server_stream=st.booleans(),
    body=bodies,
    metadata=metadata,
    deadline_ms=deadlines,
).filter(lambda r: r.client_stream or r.server_stream)
#: Stream messages, empty ones included.
stream_messages = st.builds(StreamMessage, request_id=request_ids, body=bodies)
credit_grants = st.builds(
    CreditGranted,
    request_id=st.integers(min_value=0, max_value=U32_MAX),
    increment=st.integers(min_value=1, max_value=MAX_CREDIT),
)
responses = st.builds(Response, request_id=request_ids, body=bodies, metadata=metadata)
error_responses = st.builds(
    ErrorResponse,
    request_id=request_ids,
    code=status_codes,
    message=texts,
    details=bodies,
    retry_safe=st.booleans(),
)
goaways = st.builds(
    GoAway,
    last_request_id=st.integers(min_value=0, max_value=U32_MAX),
    code=status_codes,
    message=texts,
)
_connection_frames = st.one_of(
    settings_events,
    st.builds(Ping, payload=ping_payloads),
    st.builds(Pong, payload=ping_payloads),
    goaways,
)
#: Frames a client sends (for the codec: any ids, no ordering rules).
client_events: st.SearchStrategy[Event] = st.one_of(
    requests,
    st.builds(Cancel, request_id=request_ids),
    _connection_frames,
    stream_requests,
    stream_messages,
    st.builds(StreamEnd, request_id=request_ids),
    credit_grants,
)
#: Frames a server sends.
server_events: st.SearchStrategy[Event] = st.one_of(
    responses, error_responses, _connection_frames, stream_messages, credit_grants
)


@st.composite
def chunkings(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """
    A random way to cut ``data`` into non-empty pieces.

    :param data: the bytes to cut.
    :returns: pieces whose concatenation is ``data``.
    """
    if len(data) < 2:
        return [data] if data else []
    cuts = draw(st.lists(st.integers(min_value=1, max_value=len(data) - 1), unique=True))
    return split(data, sorted(cuts))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """
    Cut ``data`` at the given sorted offsets.

    :returns: the pieces, in order.
    """
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


_HEADER = struct.Struct(">IBBI")


@st.composite
def raw_frames(draw: st.DrawFn, max_payload: int = 64) -> bytes:
    """
    A frame with an honest length but anything else random: any type (known
    or not), any flags, any request id, a random payload.  Most are
    malformed; they reach the payload decoders, not just the header check.
    """
    ftype = draw(st.sampled_from([*range(0, 14), 0x42, 0xFF]))
    flags = draw(st.integers(min_value=0, max_value=255))
    rid = draw(st.sampled_from([0, 1, 2, 3]) | st.integers(min_value=0, max_value=U32_MAX))
    payload = draw(st.binary(max_size=max_payload))
    return _HEADER.pack(len(payload), ftype, flags, rid) + payload


@st.composite
def garbage_frames(draw: st.DrawFn) -> bytes:
    """A frame header whose length may lie, followed by random bytes."""
    length = draw(
        st.integers(min_value=0, max_value=80) | st.integers(min_value=0, max_value=U32_MAX)
    )
    ftype = draw(st.integers(min_value=0, max_value=255))
    flags = draw(st.integers(min_value=0, max_value=255))
    rid = draw(st.integers(min_value=0, max_value=U32_MAX))
    return _HEADER.pack(length, ftype, flags, rid) + draw(st.binary(max_size=80))


def _well_formed(events: st.SearchStrategy[Event]) -> st.SearchStrategy[bytes]:
    encoder = BinaryCodec(Role.CLIENT, DEFAULT_LIMITS)
    return events.map(encoder.encode)


@st.composite
def frame_soup(draw: st.DrawFn) -> bytes:
    """
    A byte stream of valid frames of both directions, frames with random
    fields, lying headers and plain random bytes, mixed: what a fuzzer
    would send to a server after the preface.
    """
    pieces = draw(
        st.lists(
            st.one_of(
                _well_formed(client_events),
                _well_formed(server_events),
                raw_frames(),
                garbage_frames(),
                st.binary(max_size=HEADER_SIZE * 2),
            ),
            max_size=12,
        )
    )
    return b"".join(pieces)


# --- for the differential tests of the hot-path shortcuts -----------------------

#: Request ids a connection has likely seen or sent: collisions, reuse and
#: answers to calls in flight are common, not one in four billion.
small_ids = st.integers(min_value=0, max_value=6)
_surrogate_texts = st.text(max_size=6)  # may hold lone surrogates: not encodable

#: Method names including the ones no codec may send: empty, a lone
#: surrogate, one byte over the u16 field.
any_methods = st.one_of(
    methods,
    _surrogate_texts,
    st.sampled_from(["x" * 65535, "x" * 65536]),
)
#: Metadata including what cannot be encoded: an empty key, lone
#: surrogates, a key one byte over its u16 field.
any_metadata: st.SearchStrategy[Metadata] = st.lists(
    st.tuples(
        st.one_of(texts, _surrogate_texts, st.just("k" * 65536)),
        st.one_of(texts, _surrogate_texts),
    ),
    max_size=3,
).map(tuple)


@st.composite
def any_request_fields(
    draw: st.DrawFn,
) -> tuple[str, bytes, Metadata, int | None]:
    """``(method, body, metadata, deadline_ms)`` for a request, valid or not."""
    return (
        draw(any_methods),
        draw(bodies),
        draw(metadata | any_metadata),
        draw(deadlines | st.sampled_from([-1, U32_MAX + 1])),
    )


@st.composite
def any_response_fields(draw: st.DrawFn) -> tuple[int, bytes, Metadata]:
    """``(request_id, body, metadata)`` for a response, valid or not."""
    rid = draw(request_ids | st.sampled_from([-1, 0, U32_MAX + 1]))
    return rid, draw(bodies), draw(metadata | any_metadata)


@st.composite
def plain_frames(draw: st.DrawFn) -> bytes:
    """
    A REQUEST or RESPONSE frame, usually without flags (the frames the
    codec decodes inline), with a method length that may be 0, lie or
    overrun, and text that may not be UTF-8.
    """
    ftype = draw(st.sampled_from([2, 3]))
    flags = draw(st.sampled_from([0, 0, 0, 1, 2, 3, 0x80]))
    rid = draw(small_ids)
    method = draw(st.sampled_from([b"", b"m", b"echo", b"\xff\xfe", "\u00e9".encode()]))
    declared = draw(st.sampled_from([len(method), len(method), 0, len(method) + 3, 0xFFFF]))
    payload = struct.pack(">H", declared) + method + draw(st.binary(max_size=12))
    if draw(st.booleans()):
        payload = payload[: draw(st.integers(min_value=0, max_value=len(payload)))]
    return _HEADER.pack(len(payload), ftype, flags, rid) + payload


def _small_id_events(events: st.SearchStrategy[Event]) -> st.SearchStrategy[Event]:
    # Same events, ids drawn from small_ids so that they meet the connection's.
    return st.tuples(events, small_ids).map(
        lambda pair: (
            dataclasses.replace(pair[0], request_id=pair[1])
            if hasattr(pair[0], "request_id")
            else pair[0]
        )
    )


def _soup(events: st.SearchStrategy[Event]) -> st.SearchStrategy[bytes]:
    pieces = st.one_of(
        _well_formed(_small_id_events(events)),
        plain_frames(),
        raw_frames(max_payload=24),
        garbage_frames(),
    )
    return st.lists(pieces, max_size=10).map(b"".join)


def request_soup() -> st.SearchStrategy[bytes]:
    """What a client might send a server after its preface: its frames with
    small ids (in order, reused, out of order), plain frames and garbage."""
    return _soup(client_events)


def answer_soup() -> st.SearchStrategy[bytes]:
    """What a server might send a client: its frames with small ids (answers
    to calls in flight, late, never sent), plain frames and garbage."""
    return _soup(server_events)
