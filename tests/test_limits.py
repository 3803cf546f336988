"""
:class:`Limits` validation: every field is checked at, below and above its
bound, and the error names the field.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from twisted_reqresp import DEFAULT_LIMITS, Limits

#: Fields that take a positive integer, with their smallest valid value.
POSITIVE_INTS = {
    "max_frame_size": 1024,
    "max_concurrent": 1,
    "max_line_length": 1,
    "max_metadata_entries": 1,
    "max_parked_bytes": 1,
    "max_queued_calls": 1,
}
#: Fields that take a positive integer or None (off).
OPTIONAL_INTS = ("max_connections", "max_connections_per_peer")
#: Fields that take a positive, finite number of seconds or None (off).
OPTIONAL_SECONDS = (
    "preface_timeout",
    "idle_timeout",
    "ping_interval",
    "max_deadline",
    "close_timeout",
)
NOT_NUMBERS = (True, False, "1", b"1", [1], object())
#: Credit fields (docs/protocol.md, "Flow control"): 0 to 2**31 - 1 bytes;
#: stream_credit may also be None (streaming off).
CREDITS = ("stream_credit", "connection_credit")


def _rejects(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        Limits(**{field: value})


def _accepts(field: str, value: object) -> None:
    assert getattr(Limits(**{field: value}), field) == value


def test_every_field_is_covered() -> None:
    """Each Limits field is in exactly one of this module's tables."""
    covered = [
        *POSITIVE_INTS,
        *OPTIONAL_INTS,
        *OPTIONAL_SECONDS,
        *CREDITS,
        "ping_timeout",
        "grace",
    ]
    assert sorted(covered) == sorted(f.name for f in dataclasses.fields(Limits))


def test_defaults_are_valid() -> None:
    """The default limits pass their own validation."""
    assert Limits() == DEFAULT_LIMITS


@pytest.mark.parametrize("field", sorted(POSITIVE_INTS))
def test_positive_ints(field: str) -> None:
    """An integer field accepts its minimum and more, and refuses below it and non-integers."""
    low = POSITIVE_INTS[field]
    _accepts(field, low)
    _accepts(field, low + 1)
    for bad in (low - 1, 0, -1, 1.0 * low, *NOT_NUMBERS):
        _rejects(field, bad)
    with pytest.raises(ValueError):
        Limits(**{field: None})


@pytest.mark.parametrize("field", ["max_frame_size", "max_concurrent"])
def test_32_bit_fields(field: str) -> None:
    """Fields sent in SETTINGS fit in 32 bits: 2**32-1 passes, 2**32 does not."""
    _accepts(field, 0xFFFF_FFFF)
    _rejects(field, 0x1_0000_0000)


def test_max_frame_size_floor() -> None:
    """max_frame_size is at least 1024 (docs/protocol.md): 1023 is refused, 1024 accepted."""
    _accepts("max_frame_size", 1024)
    with pytest.raises(ValueError, match="at least 1024"):
        Limits(max_frame_size=1023)


@pytest.mark.parametrize("field", OPTIONAL_INTS)
def test_optional_ints(field: str) -> None:
    """A connection limit is a positive integer or None."""
    _accepts(field, None)
    _accepts(field, 1)
    for bad in (0, -1, 1.5, *NOT_NUMBERS):
        _rejects(field, bad)


@pytest.mark.parametrize("field", OPTIONAL_SECONDS)
def test_optional_seconds(field: str) -> None:
    """A timeout is a positive finite number of seconds, or None for off."""
    _accepts(field, None)
    _accepts(field, 0.001)
    _accepts(field, 5)
    for bad in (0, 0.0, -0.001, -1, math.inf, math.nan, *NOT_NUMBERS):
        _rejects(field, bad)


def test_ping_timeout() -> None:
    """ping_timeout is a positive finite number of seconds and cannot be off."""
    _accepts("ping_timeout", 0.001)
    for bad in (None, 0, -1, math.inf, math.nan, *NOT_NUMBERS):
        _rejects("ping_timeout", bad)


def test_grace() -> None:
    """grace is a finite number of seconds >= 0: 0 passes, below 0 does not."""
    _accepts("grace", 0)
    _accepts("grace", 0.5)
    for bad in (-0.001, -1, math.inf, math.nan, None, *NOT_NUMBERS):
        _rejects("grace", bad)


def test_message_shows_the_value() -> None:
    """The error names the field and shows the value given."""
    with pytest.raises(ValueError, match=r"max_concurrent must be a positive integer, not 0"):
        Limits(max_concurrent=0)
    with pytest.raises(ValueError, match=r"close_timeout .* not -1"):
        Limits(close_timeout=-1)


@pytest.mark.parametrize("field", CREDITS)
def test_credits(field: str) -> None:
    """A credit accepts 0 to 2**31-1 and refuses -1, 2**31 and non-integers."""
    for good in (0, 1, 65536, 2**31 - 2, 2**31 - 1):
        _accepts(field, good)
    for bad in (-1, 2**31, 2**32, 1.0, *NOT_NUMBERS):
        _rejects(field, bad)


def test_stream_credit_none_turns_streaming_off() -> None:
    """stream_credit is 65,536 by default and None turns it off; connection_credit is never None."""
    assert DEFAULT_LIMITS.stream_credit == 65536
    _accepts("stream_credit", None)
    _rejects("connection_credit", None)
