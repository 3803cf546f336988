"""
A responder for the streaming end-to-end tests, imported by the ``twistd``
subprocess as ``e2e_stream_responder:router`` (``tests/`` on
``PYTHONPATH``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from twisted_reqresp import Call, Router, StatusCode, StatusError

router = Router()

#: The most ``firehose`` streams in one call: 4 GiB, so that a typo cannot
#: make the server stream for ever.
MAX_FIREHOSE = 4 * 1024**3


@router.method("firehose", kind="server_stream")
async def firehose(call: Call) -> AsyncIterator[bytes]:
    """
    The body is ``TOTAL SIZE``: stream TOTAL bytes in messages of SIZE bytes
    (the last one shorter).  Each ``yield`` waits for credit, so a slow
    reader holds this generator, and the bytes not yet sent are never made.
    """
    try:
        total, size = (int(word) for word in call.body.split())
    except ValueError:
        raise StatusError(StatusCode.INVALID_ARGUMENT, "firehose takes TOTAL SIZE") from None
    if not (0 <= total <= MAX_FIREHOSE and 1 <= size <= 1024 * 1024):
        raise StatusError(StatusCode.INVALID_ARGUMENT, "firehose: TOTAL or SIZE out of range")
    message = b"x" * size
    sent = 0
    while sent < total:
        chunk = message if total - sent >= size else message[: total - sent]
        sent += len(chunk)
        yield chunk
