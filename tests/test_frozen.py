"""
fast_init keeps every promise of the frozen dataclasses it speeds up.
"""

from __future__ import annotations

import dataclasses

from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import Reply
from twisted_reqresp._core.frozen import fast_init
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
