"""
Hypothesis strategies for the wire core, in one module (so every property
test draws from the same definitions of "a valid event" and "garbage").

Valid events stay within what a receiver with the default
:class:`~twisted_reqresp.Limits` accepts: at most 64 metadata entries,
SETTINGS values at or above their minimums, text that is valid Unicode.
"""

from __future__ import annotations

import itertools
import struct

from hypothesis import strategies as st

from twisted_reqresp._binary import HEADER_SIZE, BinaryCodec
from twisted_reqresp._events import (
    Cancel,
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
)
from twisted_reqresp._limits import DEFAULT_LIMITS
from twisted_reqresp._status import StatusCode

__all__ = [
    "bodies",
    "chunkings",
    "client_events",
    "error_responses",
    "frame_soup",
    "garbage_frames",
    "goaways",
    "metadata",
    "methods",
    "raw_frames",
    "request_ids",
    "requests",
    "responses",
    "server_events",
    "settings_events",
    "split",
    "status_codes",
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

settings_events = st.builds(
    Settings,
    max_frame_size=st.integers(min_value=1024, max_value=U32_MAX),
    max_concurrent=st.integers(min_value=1, max_value=U32_MAX),
)
requests = st.builds(
    Request,
    request_id=request_ids,
    method=methods,
    body=bodies,
    metadata=metadata,
    deadline_ms=deadlines,
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
    requests, st.builds(Cancel, request_id=request_ids), _connection_frames
)
#: Frames a server sends.
server_events: st.SearchStrategy[Event] = st.one_of(responses, error_responses, _connection_frames)


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
    ftype = draw(st.sampled_from([*range(0, 12), 0x42, 0xFF]))
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
