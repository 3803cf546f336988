"""
The exception tree.

Wire core: imports nothing from Twisted.

Every failure a caller can see is a :class:`StatusError`, with a status code,
as in gRPC: the peer's error answer, a local deadline, a lost connection.
Protocol errors say whose fault they are, as in h11: a
:class:`LocalProtocolError` means this side misused the API, a
:class:`RemoteProtocolError` means the peer sent something the protocol does
not allow.
"""

from __future__ import annotations

from .status import StatusCode, status_name

__all__ = [
    "CodecError",
    "ConnectionClosed",
    "DeadlineExceeded",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteError",
    "RemoteProtocolError",
    "ReqRespError",
    "StatusError",
]


class ReqRespError(Exception):
    """The base of every exception this package raises on purpose."""


class StatusError(ReqRespError):
    """
    A call ended with a status other than OK.

    Raise it from a responder to answer a request with that status: the
    code, message and details reach the caller unchanged and the connection
    stays open.

    :ivar code: the status code (a :class:`StatusCode` or an application
        code, 1000 and above).
    :ivar message: a short human-readable explanation.
    :ivar details: opaque bytes for machines (for example an encoded error
        structure); empty by default.
    :ivar retry_safe: true when the server promises that it did not start
        processing the request, so that sending it again cannot do it twice.
    """

    def __init__(
        self,
        code: int,
        message: str = "",
        details: bytes = b"",
        *,
        retry_safe: bool = False,
    ) -> None:
        super().__init__(code, message, details)
        self.code = code
        self.message = message
        self.details = details
        self.retry_safe = retry_safe

    def __str__(self) -> str:
        name = status_name(self.code)
        return f"{name}: {self.message}" if self.message else name

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={status_name(self.code)}, "
            f"message={self.message!r}, details={self.details!r}, "
            f"retry_safe={self.retry_safe!r})"
        )


class RemoteError(StatusError):
    """The peer answered a call with an ERROR frame."""


class DeadlineExceeded(StatusError, TimeoutError):
    """A call's timeout passed before its answer arrived."""

    def __init__(self, message: str = "deadline exceeded") -> None:
        super().__init__(StatusCode.DEADLINE_EXCEEDED, message)


class ConnectionClosed(StatusError):
    """
    The connection closed (or was never usable) before the call was answered.

    :ivar reason: what Twisted said about the close, if anything (usually a
        :class:`twisted.python.failure.Failure`).
    """

    def __init__(
        self,
        message: str = "connection closed",
        reason: object = None,
        *,
        retry_safe: bool = False,
    ) -> None:
        super().__init__(StatusCode.UNAVAILABLE, message, retry_safe=retry_safe)
        self.reason = reason


class ProtocolError(ReqRespError):
    """
    The wire protocol was broken.

    :ivar code: the status code that goes into the GOAWAY (or error line)
        telling the peer why the connection is being closed.
    :ivar message: a short explanation for people.
    """

    def __init__(self, message: str, code: int = StatusCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class LocalProtocolError(ProtocolError):
    """This side asked for something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class CodecError(ReqRespError, ValueError):
    """A codec could not encode a value or decode a body."""
