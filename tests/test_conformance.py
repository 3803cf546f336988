"""
The conformance suites of :mod:`twisted_reqresp._adapters.conformance`, applied to
every wire format and codec the package ships.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp._adapters.conformance import CodecConformanceMixin, WireFormatConformanceMixin
from twisted_reqresp._core.binary import BinaryFormat
from twisted_reqresp._core.limits import Limits
from twisted_reqresp._core.line import LineFormat
from twisted_reqresp.codecs import BytesCodec, JSONCodec


class BinaryFormatConformanceTests(WireFormatConformanceMixin, SynchronousTestCase):
    """The binary format passes the wire-format conformance suite, streaming calls included."""

    wire_format = BinaryFormat()
    carries_streams = True


class LineFormatConformanceTests(WireFormatConformanceMixin, SynchronousTestCase):
    """The line format passes the suite, without metadata, deadlines or error details."""

    wire_format = LineFormat()
    carries_metadata = False
    carries_error_details = False


class SmallLineFormatConformanceTests(WireFormatConformanceMixin, SynchronousTestCase):
    """The line format passes the suite with lines limited to a tenth of the default."""

    wire_format = LineFormat()
    carries_metadata = False
    carries_error_details = False
    # Still above the longest escaped line the suite sends (about 5 KiB).
    limits = Limits(max_line_length=6 * 1024)


class BytesCodecConformanceTests(CodecConformanceMixin, SynchronousTestCase):
    """The bytes codec passes the codec conformance suite."""

    codec = BytesCodec()
    sample_values = [b"", b"abc", bytes(range(256)), b"\x00" * 1000]


class JSONCodecConformanceTests(CodecConformanceMixin, SynchronousTestCase):
    """The JSON codec passes the codec conformance suite."""

    codec = JSONCodec()
    sample_values = [
        None,
        True,
        0,
        -17,
        1.5,
        "",
        "caf\u00e9 \u2603",
        [],
        [1, "two", None],
        {"a": {"b": [1, 2.5, False]}, "": ""},
    ]
    invalid_bodies = [b"{", b"\xff", b"[1,]", b"'single'", b'"unterminated']
