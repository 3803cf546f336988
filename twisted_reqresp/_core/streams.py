"""
Flow-control bookkeeping for streaming calls (``docs/protocol.md``,
"Streaming calls"): one :class:`CallStream` per open streaming call.

Wire core: imports nothing from Twisted.

Credit is counted in bytes, and a message costs its whole frame, header
included (:func:`message_cost`), so that empty messages are not free.  A
sender may send while its call credit and its connection credit are both
at least 1, whatever the message's cost; the credit may then go negative.
That keeps a message larger than the credit from stalling the call, and
bounds what a receiver holds to its outstanding credit plus one frame.

Each side keeps two views per direction:

- *send credit*: what this side may still send (the peer's grants, less
  what this side sent);
- *receive credit*: the same number as the peer should see it once the
  grants this side sent have arrived (this side's grants, less what it
  received).  The peer's own count is never larger, so a message that
  arrives while this count is 0 or less was sent without credit.
"""

from __future__ import annotations

__all__ = ["MESSAGE_OVERHEAD", "CallStream", "message_cost"]

#: What a STREAM_MESSAGE costs besides its body: its 10-byte frame header.
MESSAGE_OVERHEAD = 10


def message_cost(body_length: int) -> int:
    """
    :param body_length: a message's length in bytes.
    :returns: the credit the message costs: its whole frame.
    """
    return MESSAGE_OVERHEAD + body_length


class CallStream:
    """
    The flow-control state of one open streaming call, on one side.

    :param sends: this side sends a stream on the call.
    :param receives: this side receives a stream on the call.
    :param send_credit: the credit this side starts with for sending (the
        peer's STREAM_CREDIT).
    :param receive_credit: the credit the peer starts with for sending to
        this side (this side's STREAM_CREDIT).
    """

    __slots__ = (
        "pending",
        "receive_credit",
        "received_end",
        "receives",
        "send_credit",
        "sends",
        "sent_end",
    )

    def __init__(self, sends: bool, receives: bool, send_credit: int, receive_credit: int) -> None:
        self.sends = sends
        self.receives = receives
        self.send_credit = send_credit if sends else 0
        self.receive_credit = receive_credit if receives else 0
        #: Consumed bytes not yet granted back on the call (batched).
        self.pending = 0
        #: The client sent its STREAM_END (client side).
        self.sent_end = False
        #: The client's STREAM_END arrived (server side).
        self.received_end = False

    def __repr__(self) -> str:
        return (
            f"CallStream(sends={self.sends}, receives={self.receives}, "
            f"send_credit={self.send_credit}, receive_credit={self.receive_credit})"
        )
