"""
Typed bodies: declared request and response types turned into bytes and
back, validated on the way in, with a JSON Schema for ``reqresp.methods``.

Two implementations, chosen by the declared types:

- plain dataclasses, with the standard library's JSON only (the default: no
  dependency).  A body is converted by walking the declared type, so a
  value that does not match names its path (``items[2].price: expected int,
  got str``);
- msgspec ``Struct`` types (the ``msgspec`` extra), encoded with msgspec's
  own JSON or MessagePack codec, which validates as it decodes and is
  several times faster.

Unknown object keys are ignored on decoding, as msgspec and protobuf do, so
that a newer peer may add a field without breaking an older one.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import json
import re
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union

from zope.interface import implementer

from .._core.errors import CodecError
from ..codecs import JSON
from ..interfaces import ICodec

__all__ = ["ENCODINGS", "TypedCodec", "check_type", "is_struct", "json_schema"]

#: The body encodings a service may declare.
ENCODINGS = ("json", "msgpack")

_NONE = type(None)
_SCALARS: dict[type, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
}


def is_struct(kind: object) -> bool:
    """
    :param kind: a declared type.
    :returns: whether it is a msgspec ``Struct`` class (without importing
        msgspec when it is not installed).
    """
    for base in getattr(kind, "__mro__", ()):
        if base.__module__.startswith("msgspec") and base.__name__ == "Struct":
            return True
    return False


def _msgspec() -> Any:
    try:
        import msgspec
    except ImportError:  # pragma: no cover - the test extra installs it
        raise TypeError(
            "MessagePack bodies and msgspec Struct types need msgspec: "
            "pip install 'twisted-reqresp[msgspec]'"
        ) from None
    return msgspec


def _hints(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind)


def check_type(kind: Any, where: str) -> None:
    """
    Check that a declared type is one the stdlib JSON codec can carry, so
    that a mistake shows when the service is declared, not on the first call.

    :param kind: the declared type.
    :param where: what declared it, for the message (``"calc.add request"``).
    :raises TypeError: naming the unsupported part.
    """
    _check(kind, where, set())


def _check(kind: Any, where: str, seen: set[type]) -> None:
    if kind is Any or kind is _NONE or kind is None or kind in _SCALARS or kind is bytes:
        return
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        if kind in seen:
            return
        seen.add(kind)
        try:
            hints = _hints(kind)
        except NameError as e:
            raise TypeError(
                f"{where}: cannot resolve the annotations of {kind.__name__}: {e}"
            ) from e
        for f in dataclasses.fields(kind):
            _check(hints[f.name], f"{where}: {kind.__name__}.{f.name}", seen)
        return
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Literal:
        for value in args:
            if not isinstance(value, (str, int, bool)) and value is not None:
                raise TypeError(f"{where}: Literal values are str, int, bool or None: {value!r}")
        return
    if origin in (Union, types.UnionType) or origin in (list, tuple):
        for arg in args:
            if arg is not Ellipsis:
                _check(arg, where, seen)
        return
    if origin is dict:
        if args and args[0] is not str:
            raise TypeError(f"{where}: JSON object keys are text: dict[str, ...], not {kind}")
        if args:
            _check(args[1], where, seen)
        return
    raise TypeError(
        f"{where}: {kind!r} is not a type the JSON codec carries (int, float, str, bool, "
        f"bytes, None, list, tuple, dict[str, X], Optional, dataclasses, enums, Literal)"
    )


# -- values -> JSON-ready data ---------------------------------------------------


def _dump(value: Any, kind: Any, path: str) -> Any:
    """Turn ``value`` of declared type ``kind`` into JSON-ready data, checking it."""
    if kind is Any:
        return value
    if kind is _NONE or kind is None:
        if value is None:
            return None
        raise _mismatch(path, "None", value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise _mismatch(path, "bool", value)
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
        raise _mismatch(path, "int", value)
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _mismatch(path, "float", value)
    if kind is str:
        if isinstance(value, str):
            return str(value)
        raise _mismatch(path, "str", value)
    if kind is bytes:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return base64.b64encode(bytes(value)).decode("ascii")
        raise _mismatch(path, "bytes", value)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        if isinstance(value, kind):
            return value.value
        raise _mismatch(path, kind.__name__, value)
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        if not isinstance(value, kind):
            raise _mismatch(path, kind.__name__, value)
        hints = _hints(kind)
        return {
            f.name: _dump(getattr(value, f.name), hints[f.name], _join(path, f.name))
            for f in dataclasses.fields(kind)
        }
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise CodecError(f"{_at(path)}expected one of {list(args)!r}, got {value!r}")
    if origin in (Union, types.UnionType):
        for arg in args:
            try:
                return _dump(value, arg, path)
            except CodecError:
                continue
        raise _mismatch(path, _name(kind), value)
    if origin is list or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _mismatch(path, _name(kind), value)
        return [_dump(item, sub, f"{path}[{i}]") for i, (item, sub) in _items(value, kind, path)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _mismatch(path, _name(kind), value)
        sub = args[1] if args else Any
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise CodecError(f"{_at(path)}object keys are str, got {type(key).__name__}")
            out[key] = _dump(item, sub, _join(path, key))
        return out
    raise CodecError(f"{_at(path)}cannot encode a value of declared type {kind!r}")


# -- JSON data -> values --------------------------------------------------------


def _load(data: Any, kind: Any, path: str) -> Any:
    """Turn decoded JSON ``data`` into a value of declared type ``kind``, checking it."""
    if kind is Any:
        return data
    if kind is _NONE or kind is None:
        if data is None:
            return None
        raise _mismatch(path, "null", data)
    if kind is bool:
        if isinstance(data, bool):
            return data
        raise _mismatch(path, "bool", data)
    if kind is int:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
        raise _mismatch(path, "int", data)
    if kind is float:
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return float(data)
        raise _mismatch(path, "float", data)
    if kind is str:
        if isinstance(data, str):
            return data
        raise _mismatch(path, "str", data)
    if kind is bytes:
        if not isinstance(data, str):
            raise _mismatch(path, "bytes (base64 text)", data)
        try:
            return base64.b64decode(data.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise CodecError(
                f"{_at(path)}expected bytes (base64 text), got invalid base64"
            ) from None
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        try:
            return kind(data)
        except (ValueError, TypeError):
            allowed = [m.value for m in kind]
            raise CodecError(
                f"{_at(path)}expected one of {allowed!r} ({kind.__name__}), got {data!r}"
            ) from None
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        if not isinstance(data, dict):
            raise _mismatch(path, f"object ({kind.__name__})", data)
        hints = _hints(kind)
        values = {}
        for f in dataclasses.fields(kind):
            if f.name in data:
                values[f.name] = _load(data[f.name], hints[f.name], _join(path, f.name))
            elif (
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            ) and f.init:
                raise CodecError(f"{_join(path, f.name)}: missing required field")
        try:
            return kind(**values)
        except (TypeError, ValueError) as e:
            # The dataclass's own checks (__post_init__) refused the values.
            raise CodecError(f"{_at(path)}invalid {kind.__name__}: {e}") from e
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Literal:
        for allowed in args:
            if data == allowed and type(data) is type(allowed):
                return allowed
        raise CodecError(f"{_at(path)}expected one of {list(args)!r}, got {data!r}")
    if origin in (Union, types.UnionType):
        # None first, so that Optional[X] reports X's error, not null's.
        ordered = sorted(args, key=lambda a: a is not _NONE)
        error: CodecError | None = None
        for arg in ordered:
            try:
                return _load(data, arg, path)
            except CodecError as e:
                error = e
        if len(args) == 2 and _NONE in args and error is not None:
            raise error
        raise _mismatch(path, _name(kind), data)
    if origin is list or origin is tuple:
        if not isinstance(data, list):
            raise _mismatch(path, _name(kind), data)
        loaded = [_load(item, sub, f"{path}[{i}]") for i, (item, sub) in _items(data, kind, path)]
        return loaded if origin is list else tuple(loaded)
    if origin is dict:
        if not isinstance(data, dict):
            raise _mismatch(path, _name(kind), data)
        sub = args[1] if args else Any
        return {key: _load(item, sub, _join(path, key)) for key, item in data.items()}
    raise CodecError(f"{_at(path)}cannot decode a value of declared type {kind!r}")


def _items(value: Any, kind: Any, path: str) -> list[tuple[int, tuple[Any, Any]]]:
    """Pair each item of a list or tuple value with its declared type."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        if len(value) != len(args):
            raise CodecError(f"{_at(path)}expected {len(args)} items, got {len(value)}")
        return list(enumerate(zip(value, args, strict=True)))
    sub = args[0] if args else Any
    return list(enumerate((item, sub) for item in value))


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _join(path: str, key: str) -> str:
    if not _PLAIN_KEY.match(key):
        return f"{path}[{json.dumps(key)}]"
    return f"{path}.{key}" if path else key


def _at(path: str) -> str:
    return f"{path}: " if path else ""


def _kind_of(data: Any) -> str:
    return "null" if data is None else type(data).__name__


def _mismatch(path: str, expected: str, data: Any) -> CodecError:
    return CodecError(f"{_at(path)}expected {expected}, got {_kind_of(data)}")


def _name(kind: Any) -> str:
    """A declared type as people write it: ``list[Item]``, ``str | None``."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is _NONE or kind is None:
        return "None"
    if origin in (Union, types.UnionType):
        return " | ".join(_name(arg) for arg in args)
    if origin is Literal:
        return f"Literal{list(args)!r}"
    if origin is not None:
        inner = ", ".join("..." if arg is Ellipsis else _name(arg) for arg in args)
        return f"{_name(origin)}[{inner}]" if args else _name(origin)
    return kind.__name__ if isinstance(kind, type) else str(kind).replace("typing.", "")


# -- JSON Schema --------------------------------------------------------------


def json_schema(kind: Any) -> dict[str, Any]:
    """
    The JSON Schema (2020-12) of the bodies of a declared type, for
    ``reqresp.methods``.  Dataclasses and enums are named in ``$defs``.

    :param kind: a dataclass, a msgspec ``Struct`` or any type :func:`check_type` accepts.
    :returns: the schema, as JSON-ready data.
    """
    if is_struct(kind):
        schema: dict[str, Any] = _msgspec().json.schema(kind)
        return schema
    defs: dict[str, Any] = {}
    top = _schema(kind, defs)
    if defs:
        top = {**top, "$defs": dict(sorted(defs.items()))}
    return top


def _schema(kind: Any, defs: dict[str, Any]) -> dict[str, Any]:
    if kind is Any:
        return {}
    if kind is _NONE or kind is None:
        return {"type": "null"}
    if kind in _SCALARS:
        return {"type": _SCALARS[kind]}
    if kind is bytes:
        return {"type": "string", "contentEncoding": "base64"}
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        if kind.__name__ not in defs:
            defs[kind.__name__] = {"title": kind.__name__, "enum": [m.value for m in kind]}
        return {"$ref": f"#/$defs/{kind.__name__}"}
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        name = kind.__name__
        if name not in defs:
            defs[name] = {}  # placed first: a recursive type refers to itself
            hints = _hints(kind)
            fields = dataclasses.fields(kind)
            defs[name] = {
                "title": name,
                "type": "object",
                "properties": {f.name: _schema(hints[f.name], defs) for f in fields},
                "required": [
                    f.name
                    for f in fields
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                ],
            }
        return {"$ref": f"#/$defs/{name}"}
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (Union, types.UnionType):
        return {"anyOf": [_schema(arg, defs) for arg in args]}
    if origin is list:
        return {"type": "array", "items": _schema(args[0] if args else Any, defs)}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _schema(args[0], defs)}
        return {
            "type": "array",
            "prefixItems": [_schema(arg, defs) for arg in args],
            "minItems": len(args),
            "maxItems": len(args),
        }
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema(args[1] if args else Any, defs)}
    return {}


# -- codecs ---------------------------------------------------------------------

#: msgspec's ValidationError ends with "- at `$.items[2].price`".
_MSGSPEC_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


def _msgspec_message(error: Exception) -> str:
    """Reword a msgspec error as the stdlib codec words it: ``path: expected int, got str``."""
    match = _MSGSPEC_PATH.match(str(error))
    assert match is not None  # the pattern matches any text
    message = match["message"].replace("`", "")
    message = message[:1].lower() + message[1:]
    path = (match["path"] or "").lstrip(".")
    return f"{path}: {message}" if path else message


@implementer(ICodec)
class TypedCodec:
    """
    The codec of one side of a typed method: encodes values of one declared
    type and decodes bodies into another (a server decodes requests and
    encodes responses; a client the other way round).

    :param encodes: the type of the values :meth:`encode` takes.
    :param decodes: the type :meth:`decode` returns.
    :param encoding: ``"json"`` or ``"msgpack"``.
    :raises TypeError: for an encoding other than ``"json"`` and ``"msgpack"``, or
        MessagePack without msgspec.
    """

    def __init__(self, encodes: Any, decodes: Any, encoding: str = "json") -> None:
        if encoding not in ENCODINGS:
            raise TypeError(f"a body encoding is one of {', '.join(ENCODINGS)}: {encoding!r}")
        self.name = encoding
        self.encodes = encodes
        self.decodes = decodes
        self._encode: Callable[[Any], bytes]
        self._decode: Callable[[bytes], Any]
        if encoding == "msgpack" or is_struct(encodes) or is_struct(decodes):
            msgspec = _msgspec()
            module = msgspec.msgpack if encoding == "msgpack" else msgspec.json
            self._encoder = module.Encoder()
            self._decoder = module.Decoder(decodes)
            self._errors: tuple[type[Exception], ...] = (msgspec.DecodeError,)
            self._encode = self._encode_msgspec
            self._decode = self._decode_msgspec
        else:
            self._encode = self._encode_json
            self._decode = self._decode_json

    def encode(self, value: Any) -> bytes:
        """
        :param value: a value of the declared type.
        :returns: its body.
        :raises CodecError: naming the path of the first part that does not
            match the declared type.
        """
        return self._encode(value)

    def decode(self, data: bytes) -> Any:
        """
        :param data: a body.  An empty one stands for ``{}`` when the type is
            an object, so that a method whose fields all have defaults can be
            called with no body (from the line format, say).
        :returns: a value of the declared type.
        :raises CodecError: naming the path of the first part that does not
            match, such as ``items[2].price: expected int, got str``.
        """
        return self._decode(data)

    def _encode_json(self, value: Any) -> bytes:
        try:
            return JSON.encode(_dump(value, self.encodes, ""))
        except RecursionError as e:
            raise CodecError("cannot encode as JSON: nested too deeply") from e

    def _decode_json(self, data: bytes) -> Any:
        if not data and dataclasses.is_dataclass(self.decodes):
            data = b"{}"
        decoded = JSON.decode(data)
        try:
            return _load(decoded, self.decodes, "")
        except RecursionError as e:
            # A recursive type walks a few frames per level of the body, so
            # nesting the JSON parser accepts can still be too deep here:
            # the peer's doing, answered INVALID_ARGUMENT like the parser's.
            raise CodecError("body is not valid JSON: nested too deeply") from e

    def _encode_msgspec(self, value: Any) -> bytes:
        if isinstance(self.encodes, type) and not isinstance(value, self.encodes):
            raise _mismatch("", _name(self.encodes), value)
        try:
            data: bytes = self._encoder.encode(value)
        except (TypeError, ValueError, OverflowError) as e:
            raise CodecError(f"cannot encode {type(value).__name__}: {e}") from e
        return data

    def _decode_msgspec(self, data: bytes) -> Any:
        if not data and (is_struct(self.decodes) or dataclasses.is_dataclass(self.decodes)):
            data = self._encoder.encode({})
        try:
            return self._decoder.decode(data)
        except self._errors as e:
            raise CodecError(_msgspec_message(e)) from e

    def __repr__(self) -> str:
        return f"TypedCodec({_name(self.encodes)}, {_name(self.decodes)}, {self.name!r})"
