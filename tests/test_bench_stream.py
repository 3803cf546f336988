"""
``benchmarks/stream.py`` encodes its frames by hand, as the load generator
does, so that it costs the server under test more than itself: these tests
check those bytes against the sans-IO core, so the benchmark measures the
protocol the spec describes.
"""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path
from types import ModuleType

from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import DEFAULT_LIMITS
from twisted_reqresp._core.binary import (
    FLAG_SERVER_STREAM,
    PREFACE,
    BinaryFormat,
    FrameType,
)
from twisted_reqresp.wire import (
    Cancel,
    CreditGranted,
    Event,
    Request,
    Role,
    Settings,
    StreamRequest,
)

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load() -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("stream_bench", BENCHMARKS / "stream.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def _decode(data: bytes) -> list[Event]:
    server = BinaryFormat().codec(Role.SERVER, DEFAULT_LIMITS)
    server.receive_data(data)
    events = []
    while (event := server.next_event()) is not None:
        events.append(event)
    return events[1:]  # after PrefaceReceived


class StreamBenchFramesTests(SynchronousTestCase):
    """The stream benchmark's hand-made frames are what the core makes."""

    def setUp(self) -> None:
        self.bench = _load()

    def test_constants(self) -> None:
        """Its frame types, flag and preface are the core's."""
        b = self.bench
        self.assertEqual(
            (b.SETTINGS, b.REQUEST, b.RESPONSE, b.ERROR, b.CANCEL, b.GOAWAY),
            (
                FrameType.SETTINGS,
                FrameType.REQUEST,
                FrameType.RESPONSE,
                FrameType.ERROR,
                FrameType.CANCEL,
                FrameType.GOAWAY,
            ),
        )
        self.assertEqual((b.STREAM_MESSAGE, b.CREDIT), (FrameType.STREAM_MESSAGE, FrameType.CREDIT))
        self.assertEqual(b.FLAG_SERVER_STREAM, FLAG_SERVER_STREAM)
        self.assertEqual(b.PREFACE, PREFACE)

    def test_frames_decode(self) -> None:
        """SETTINGS, the two REQUESTs, CREDIT and CANCEL decode to the events meant."""
        b = self.bench
        data = (
            b.PREFACE
            + b._settings_frame(65536, 1 << 20)
            + b._request(1, b"firehose", b"64", b.FLAG_SERVER_STREAM)
            + b._request(2, b"payload", b"64")
            + b._HDR.pack(4, b.CREDIT, 0, 1)
            + struct.pack(">I", 4096)
            + b._HDR.pack(0, b.CANCEL, 0, 1)
        )
        self.assertEqual(
            _decode(data),
            [
                Settings(
                    max_frame_size=16 * 1024 * 1024,
                    max_concurrent=100,
                    stream_credit=65536,
                    connection_credit=1 << 20,
                ),
                StreamRequest(
                    request_id=1,
                    method="firehose",
                    client_stream=False,
                    server_stream=True,
                    body=b"64",
                ),
                Request(request_id=2, method="payload", body=b"64"),
                CreditGranted(request_id=1, increment=4096),
                Cancel(request_id=1),
            ],
        )
