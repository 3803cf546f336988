"""
fast_init keeps every promise of the frozen dataclasses it speeds up.
"""

from __future__ import annotations

import dataclasses

from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import Reply
from twisted_reqresp._core.frozen import fast_init, twin_of
from twisted_reqresp.wire import Request


class FastInitTests(SynchronousTestCase):
    """Events built by the fast __init__ behave as dataclasses."""

    def test_defaults_and_equality(self) -> None:
        """Defaults apply and equal fields give equal, equally hashed events."""
        a = Request(request_id=1, method="m")
        b = Request(request_id=1, method="m", body=b"", metadata=(), deadline_ms=None)
        self.assertEqual(a, b)
        self.assertEqual(hash(a), hash(b))

    def test_frozen(self) -> None:
        """Fields cannot be assigned after construction."""
        event = Request(request_id=1, method="m")
        with self.assertRaises(dataclasses.FrozenInstanceError):
            event.method = "other"  # type: ignore[misc]

    def test_keyword_only_and_required(self) -> None:
        """Positional arguments and missing required fields are refused."""
        self.assertRaises(TypeError, Request, 1, "m")
        self.assertRaises(TypeError, Request, request_id=1)

    def test_default_factory(self) -> None:
        """A default factory makes a fresh value for each instance."""
        self.assertIsNot(Reply().metadata, Reply().metadata)

    def test_refuses_other_classes(self) -> None:
        """Only frozen, slotted dataclasses can be sped up."""

        @dataclasses.dataclass
        class Plain:
            x: int

        self.assertRaises(TypeError, fast_init, Plain)


class TwinTests(SynchronousTestCase):
    """twin_of gives a class whose instances become the dataclass's, or None."""

    def test_twin_becomes_the_class(self) -> None:
        """An instance of the twin, filled and reassigned, is an instance of the class."""
        twin = twin_of(Request)
        self.assertIsNotNone(twin)
        event = object.__new__(twin)
        for name, value in zip(Request.__slots__, (1, "m", b"", (), None), strict=True):
            setattr(event, name, value)
        event.__class__ = Request
        self.assertEqual(event, Request(request_id=1, method="m"))

    def test_no_twin_without_slots(self) -> None:
        """A class without its own slots gets no twin (its builders fall back)."""

        @dataclasses.dataclass(frozen=True)
        class Plain:
            x: int

        self.assertIsNone(twin_of(Plain))

    def test_no_twin_for_another_layout(self) -> None:
        """A class whose instances cannot be reached by __class__ assignment gets no twin."""

        class OnADict(dict):  # type: ignore[type-arg]
            __slots__ = ("a",)

        self.assertIsNone(twin_of(OnADict))
