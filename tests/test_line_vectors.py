"""
The line format against its test vectors (``tests/vectors/line.json``), in
both directions: each vector's line decodes to its event, and its event
encodes to its line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp._core.events import ErrorResponse, Event, Rejected, Request, Response, Role
from twisted_reqresp._core.limits import DEFAULT_LIMITS
from twisted_reqresp._core.line import LineCodec, LineFormat

_ROOT = Path(__file__).resolve().parent.parent
VECTORS_PATH = _ROOT / "tests" / "vectors" / "line.json"

_EVENT_TYPES: dict[str, type] = {
    cls.__name__: cls for cls in (Request, Response, ErrorResponse, Rejected)
}
_DIRECTIONS = ("client->server", "server->client")


def _event(data: dict[str, Any]) -> Event:
    fields = dict(data)
    cls = _EVENT_TYPES[fields.pop("type")]
    if "body" in fields:
        fields["body"] = bytes.fromhex(fields["body"])
    event: Event = cls(**fields)
    return event


def _load() -> list[dict[str, Any]]:
    with VECTORS_PATH.open(encoding="utf-8") as f:
        vectors: list[dict[str, Any]] = json.load(f)["vectors"]
    return vectors


def _receiver(direction: str) -> LineCodec:
    """A fresh server, or a client that has sent one request (id 1)."""
    if direction == "client->server":
        return LineFormat().codec(Role.SERVER, DEFAULT_LIMITS)
    client = LineFormat().codec(Role.CLIENT, DEFAULT_LIMITS)
    client.encode(Request(request_id=1, method="m"))
    return client


def _sender(direction: str) -> LineCodec:
    """A fresh client, or a server that has received one request (id 1)."""
    if direction == "client->server":
        return LineFormat().codec(Role.CLIENT, DEFAULT_LIMITS)
    server = LineFormat().codec(Role.SERVER, DEFAULT_LIMITS)
    server.receive_data(b"m\n")
    assert server.next_event() == Request(request_id=1, method="m")
    return server


def _decode(direction: str, data: bytes, chunk: int) -> list[Event]:
    codec = _receiver(direction)
    for start in range(0, len(data), chunk):
        codec.receive_data(data[start : start + chunk])
    events = []
    while (event := codec.next_event()) is not None:
        events.append(event)
    return events


class LineVectorFileTests(SynchronousTestCase):
    """The vector file itself is well formed and covers the body rule."""

    def test_shape(self) -> None:
        """Vectors are uniquely named, with a direction, lowercase hex that is one line,
        matching text where given, and a known event type."""
        vectors = _load()
        names = [v["name"] for v in vectors]
        self.assertEqual(len(names), len(set(names)))
        for vector in vectors:
            data = bytes.fromhex(vector["hex"])
            self.assertIn(vector["direction"], _DIRECTIONS, vector["name"])
            self.assertEqual(data.hex(), vector["hex"], vector["name"])
            self.assertEqual(data.count(b"\n"), 1, vector["name"])
            self.assertTrue(data.endswith(b"\n"), vector["name"])
            if "text" in vector:
                self.assertEqual(vector["text"].encode("utf-8"), data, vector["name"])
            self.assertIn(vector["event"]["type"], _EVENT_TYPES, vector["name"])

    def test_coverage(self) -> None:
        """Both directions have plain, escaped and JSON bodies, and both have decode-only
        vectors."""
        names = {v["name"] for v in _load()}
        for name in (
            "request_json_quotes",
            "request_json_newline_escape",
            "request_escaped_lf",
            "request_escaped_leading_backslash",
            "response_json",
            "response_escaped_lf",
            "response_escaped_leading_backslash",
            "error_application_code",
        ):
            self.assertIn(name, names)
        for direction in _DIRECTIONS:
            self.assertTrue(
                any(v.get("decode_only") and v["direction"] == direction for v in _load())
            )


class LineVectorTests(SynchronousTestCase):
    """The reference line codecs against every vector."""

    def test_decode(self) -> None:
        """Every vector's line decodes to exactly its event, fed whole and byte by byte."""
        for vector in _load():
            data = bytes.fromhex(vector["hex"])
            expected = [_event(vector["event"])]
            for chunk in (len(data), 1):
                self.assertEqual(
                    _decode(vector["direction"], data, chunk), expected, vector["name"]
                )

    def test_encode(self) -> None:
        """Every vector that is not decode-only encodes to exactly its line."""
        encoded = 0
        for vector in _load():
            if vector.get("decode_only"):
                continue
            codec = _sender(vector["direction"])
            self.assertEqual(
                codec.encode(_event(vector["event"])).hex(), vector["hex"], vector["name"]
            )
            encoded += 1
        self.assertGreater(encoded, 10)
