"""
Codecs: how a method's values become body bytes and back.

A codec is any :class:`~twisted_reqresp.interfaces.ICodec` provider; the two
here are pure and stateless.  Add msgpack or protobuf by writing a class
with ``name``, ``encode`` and ``decode`` and checking it with
:class:`twisted_reqresp.testing.CodecConformanceMixin`.
"""

from __future__ import annotations

import json
import math
from typing import Any

from zope.interface import implementer

from ._core.errors import CodecError
from .interfaces import ICodec

__all__ = ["BYTES", "JSON", "BytesCodec", "JSONCodec"]


@implementer(ICodec)
class BytesCodec:
    """
    Bodies as raw bytes: the default.

    ``encode`` also accepts ``str`` (sent as UTF-8), ``bytearray`` and
    ``memoryview``, so a responder can return text.
    """

    name = "bytes"

    def encode(self, value: Any) -> bytes:
        """
        :param value: bytes, a bytes-like object, or text.
        :returns: the bytes.
        :raises CodecError: for anything else.
        """
        if type(value) is bytes:
            return value
        if isinstance(value, (bytearray, memoryview)):
            return bytes(value)
        if isinstance(value, str):
            return value.encode("utf-8")
        raise CodecError(f"the bytes codec cannot encode {type(value).__name__}")

    def decode(self, data: bytes) -> bytes:
        """
        :returns: ``data`` unchanged.
        """
        return data

    def __repr__(self) -> str:
        return "BytesCodec()"


@implementer(ICodec)
class JSONCodec:
    """
    Bodies as UTF-8 JSON (RFC 8259).

    An empty body decodes to ``None``, so a method that takes no argument can
    be called with no body (from the line format, for instance).
    """

    name = "json"

    def encode(self, value: Any) -> bytes:
        """
        :param value: anything :func:`json.dumps` accepts.
        :returns: compact UTF-8 JSON.
        :raises CodecError: if the value is not JSON-serialisable (NaN and
            infinities included: RFC 8259 has no spelling for them).
        """
        try:
            return json.dumps(
                value, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            ).encode("utf-8")
        except (TypeError, ValueError) as e:
            raise CodecError(f"cannot encode as JSON: {e}") from e

    def decode(self, data: bytes) -> Any:
        """
        :param data: UTF-8 JSON, or no bytes at all.
        :returns: the value (``None`` for an empty body).
        :raises CodecError: if the bytes are not UTF-8 JSON.
        """
        if not data:
            return None
        try:
            return json.loads(
                data.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite_float
            )
        except (UnicodeDecodeError, ValueError) as e:
            raise CodecError(f"body is not valid JSON: {e}") from e
        except RecursionError as e:
            raise CodecError("body is not valid JSON: nested too deeply") from e

    def __repr__(self) -> str:
        return "JSONCodec()"


def _no_constant(name: str) -> Any:
    # NaN and Infinity are Python extensions, not JSON (RFC 8259 section 6).
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number out of range: {text}")
    return value


#: The shared :class:`BytesCodec`.
BYTES = BytesCodec()
#: The shared :class:`JSONCodec`.
JSON = JSONCodec()
