"""
Write the seed corpora: a few valid (and a few typical invalid) streams per
harness, in the input layout ``_harness.make_input`` describes, into
``fuzz/corpus_binary/``, ``fuzz/corpus_line/`` and ``fuzz/corpus_auto/``
(ignored by git).  libFuzzer adds what it finds to the same directories.

Run: ``/work/venv/bin/python fuzz/make_corpus.py``
"""

from __future__ import annotations

import hashlib
import os
import random

from _harness import (
    ACT_CANCEL,
    ACT_ERROR,
    ACT_FLUSH,
    ACT_GOAWAY,
    ACT_NOTHING,
    ACT_RESPOND,
    ACT_SEND,
    LIMITS,
    MAX_CHUNK,
    STREAM_ACK,
    STREAM_END_,
    STREAM_OPEN,
    STREAM_SEND,
    make_input,
)

from twisted_reqresp.wire import (
    PREFACE,
    BinaryCodec,
    Cancel,
    CreditGranted,
    ErrorResponse,
    GoAway,
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

HERE = os.path.dirname(os.path.abspath(__file__))
_CLIENT = BinaryCodec(Role.CLIENT, LIMITS)
_SERVER = BinaryCodec(Role.SERVER, LIMITS)
_SETTINGS = Settings(max_frame_size=LIMITS.max_frame_size, max_concurrent=LIMITS.max_concurrent)
# Streaming offered, as the harness's LIMITS do.
_STREAM_SETTINGS = Settings(
    max_frame_size=LIMITS.max_frame_size,
    max_concurrent=LIMITS.max_concurrent,
    stream_credit=LIMITS.stream_credit,
    connection_credit=LIMITS.connection_credit,
)


def client_frames(*events: object) -> bytes:
    return b"".join(_CLIENT.encode(e) for e in events)  # type: ignore[arg-type]


def server_frames(*events: object) -> bytes:
    return b"".join(_SERVER.encode(e) for e in events)  # type: ignore[arg-type]


REQUESTS = client_frames(
    Request(request_id=1, method="echo", body=b"hello"),
    Request(request_id=2, method="ping"),
    Request(request_id=3, method="sleep", body=b"1", deadline_ms=1500),
    Request(request_id=4, method="echo", body=b"x", metadata=(("trace", "abc"), ("k", "\u00e9"))),
    Cancel(request_id=3),
    Ping(payload=b"12345678"),
    Pong(payload=b"\xff" * 8),
    Request(request_id=5, method="big", body=b"b" * (LIMITS.max_frame_size - 16)),
    GoAway(last_request_id=0, code=0, message="bye"),
)
# An unknown frame type, a request with unknown flags and a frame too large.
ODD = (
    b"\x00\x00\x00\x03\x42\xff\x00\x00\x00\x07abc"
    + b"\x00\x00\x00\x06\x02\xf0\x00\x00\x00\x0a\x00\x04echo"
    + b"\xff\xff\xff\xff\x02\x00\x00\x00\x00\x0b"
)
ANSWERS = server_frames(
    Response(request_id=1, body=b"one"),
    ErrorResponse(request_id=2, code=5, message="not found", details=b"d", retry_safe=True),
    Ping(payload=b"\0" * 8),
    Response(request_id=3, body=b"three", metadata=(("a", "b"),)),
    GoAway(last_request_id=3, code=0, message="shutting down"),
)


# A client's streaming calls: one each way and one bidirectional, messages
# (past the credit too), STREAM_END, CREDIT, and frames on ended calls.
STREAMS = client_frames(
    _STREAM_SETTINGS,
    StreamRequest(request_id=1, method="sum", client_stream=True, server_stream=False),
    StreamRequest(request_id=2, method="count", client_stream=False, server_stream=True, body=b"3"),
    StreamRequest(
        request_id=3, method="chat", client_stream=True, server_stream=True, deadline_ms=100
    ),
    StreamMessage(request_id=1, body=b"1"),
    StreamMessage(request_id=3, body=b""),
    StreamMessage(request_id=1, body=b"x" * 600),
    StreamMessage(request_id=1, body=b"over the credit"),
    StreamEnd(request_id=1),
    CreditGranted(request_id=2, increment=100),
    CreditGranted(request_id=0, increment=1000),
    StreamEnd(request_id=2),
    StreamMessage(request_id=9, body=b"never sent"),
)
# A server's side of streaming calls the client opened (ids 1 and 2).
STREAM_ANSWERS = server_frames(
    StreamMessage(request_id=1, body=b"one"),
    CreditGranted(request_id=2, increment=64),
    StreamMessage(request_id=1, body=b""),
    CreditGranted(request_id=0, increment=4096),
    Response(request_id=1, metadata=(("count", "2"),)),
    StreamMessage(request_id=1, body=b"late"),
    ErrorResponse(request_id=2, code=3, message="enough"),
)
_PONG = server_frames(Pong(payload=b"\0" * 8))


def chunked(stream: bytes, rng: random.Random, actions: list[int]) -> tuple[list[int], list[int]]:
    """Cut ``stream`` at random and draw an action for each piece."""
    sizes = []
    left = len(stream)
    while left:
        n = min(left, rng.choice([1, 2, 7, 10, 64, MAX_CHUNK]))
        sizes.append(n)
        left -= n
    return sizes, [rng.choice(actions) for _ in sizes]


def seeds_binary(rng: random.Random) -> list[bytes]:
    server_actions = [ACT_NOTHING, ACT_RESPOND, ACT_ERROR, ACT_FLUSH, ACT_RESPOND | 0x48]
    settings = client_frames(_SETTINGS)
    out = [
        make_input(0x04, REQUESTS),  # preface and SETTINGS given
        make_input(0x00, settings + REQUESTS),  # preface given
        make_input(0xF0, PREFACE + settings + REQUESTS),  # nothing given
        make_input(0x04, ODD),
        make_input(0x04, REQUESTS[:30] + ODD[:13]),
        make_input(0xF0, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        make_input(0xF0, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
        make_input(0xF0, PREFACE[:8] + b"\x00\x02"),  # a later version
        make_input(0x04, REQUESTS, actions=[ACT_GOAWAY | 0x80] * 2),
    ]
    for _ in range(4):
        out.append(make_input(0x04, REQUESTS, *chunked(REQUESTS, rng, server_actions)))
    client_actions = [ACT_NOTHING, ACT_SEND, ACT_CANCEL, ACT_FLUSH]
    out.append(make_input(0x0F, ANSWERS))  # a client that sent 3 requests
    out.append(make_input(0x0F, ANSWERS, *chunked(ANSWERS, rng, client_actions)))
    out.append(make_input(0xFF, server_frames(_SETTINGS) + ANSWERS))
    # Streaming: a server fed the client's streaming calls, answering and
    # acknowledging; a client that opens calls and gets the server's side.
    stream_actions = [ACT_NOTHING, ACT_RESPOND, ACT_FLUSH, STREAM_SEND | 0x40, STREAM_ACK]
    out.append(make_input(0x00, STREAMS))
    for _ in range(3):
        out.append(make_input(0x00, STREAMS, *chunked(STREAMS, rng, stream_actions)))
    opened = _PONG + STREAM_ANSWERS
    sizes = [len(_PONG), len(STREAM_ANSWERS)]
    out.append(make_input(0x03, opened, sizes, [STREAM_OPEN | 0x40, ACT_FLUSH]))
    out.append(make_input(0x03, opened, sizes, [STREAM_OPEN, STREAM_ACK | 0x40]))
    out.append(
        make_input(
            0x03,
            _PONG * 3 + STREAM_ANSWERS,
            [len(_PONG)] * 3 + [len(STREAM_ANSWERS)],
            [STREAM_OPEN | 0x40, STREAM_SEND | 0x40, STREAM_END_, STREAM_ACK],
        )
    )
    # Servers that refuse in text before any SETTINGS.
    out.append(
        make_input(0xF3, b"reqresp: unsupported protocol version 1; this server speaks 2\r\n")
    )
    out.append(make_input(0xF7, b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"))
    return out


def seeds_line(rng: random.Random) -> list[bytes]:
    requests = (
        b"echo hello world\n"
        b"ping\r\n"
        b"\n  \t\n"
        b"echo a\\nb\\\\c\\q\n"
        b"\xff\xfe bad utf-8\n"
        b" leading space\n"
        b"long " + b"y" * (LIMITS.max_line_length + 10) + b"\n"
        b"stats\n"
    )
    answers = (
        b"OK hello\r\nERR NOT_FOUND no such method\r\nOK\r\nERR 1234 app\r\nbogus\r\nOK a\\nb\r\n"
    )
    server_actions = [ACT_NOTHING, ACT_RESPOND, ACT_ERROR, ACT_FLUSH]
    client_actions = [ACT_NOTHING, ACT_SEND, ACT_CANCEL, ACT_FLUSH]
    out = [
        make_input(0x00, requests),
        make_input(0x00, requests, actions=[ACT_RESPOND | 0x40] * (len(requests) // MAX_CHUNK + 1)),
        make_input(0x17, answers),  # a client that sent 6 requests
    ]
    for _ in range(3):
        out.append(make_input(0x00, requests, *chunked(requests, rng, server_actions)))
        out.append(make_input(0x17, answers, *chunked(answers, rng, client_actions)))
    return out


def seeds_auto(rng: random.Random) -> list[bytes]:
    settings = client_frames(_SETTINGS)
    lines = b"echo hi\nping\n\xc3\x28 x\n"
    actions = [ACT_NOTHING, ACT_RESPOND, ACT_ERROR, ACT_FLUSH]
    out = [
        make_input(0x03, REQUESTS),
        make_input(0x01, settings + REQUESTS),
        make_input(0x00, PREFACE + settings + REQUESTS),
        make_input(0x00, lines),
        make_input(0x00, b"\r\n \n" + lines),
        make_input(0x00, b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n"),
        make_input(0x00, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"),
        make_input(0x00, b"\x00\x01\x02"),
    ]
    for _ in range(3):
        out.append(make_input(0x00, lines, *chunked(lines, rng, actions)))
        out.append(make_input(0x03, REQUESTS, *chunked(REQUESTS, rng, actions)))
    return out


def main() -> None:
    rng = random.Random(1)  # the same corpus every time
    for name, make in (("binary", seeds_binary), ("line", seeds_line), ("auto", seeds_auto)):
        directory = os.path.join(HERE, f"corpus_{name}")
        os.makedirs(directory, exist_ok=True)
        seeds = make(rng)
        for seed in seeds:
            path = os.path.join(directory, hashlib.sha1(seed).hexdigest())
            with open(path, "wb") as f:
                f.write(seed)
        print(f"{directory}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
