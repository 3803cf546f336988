"""
Every shipped provider really provides its interface.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyClass, verifyObject

from twisted_reqresp import AutoFormat, BinaryFormat, Limits, LineFormat, Router
from twisted_reqresp._adapters.server import SharedResponder
from twisted_reqresp.codecs import BYTES, JSON
from twisted_reqresp.interfaces import (
    ICodec,
    IResponder,
    IResponderFactory,
    IWireCodec,
    IWireFormat,
)
from twisted_reqresp.wire import AutoCodec, BinaryCodec, LineCodec, Role


class ProviderTests(SynchronousTestCase):
    """verifyObject on each shipped provider."""

    def test_codecs(self) -> None:
        """The bytes and JSON codecs provide ICodec."""
        for codec in (BYTES, JSON):
            self.assertTrue(verifyObject(ICodec, codec))

    def test_router(self) -> None:
        """Router provides IResponder."""
        self.assertTrue(verifyObject(IResponder, Router()))

    def test_shared_responder(self) -> None:
        """SharedResponder provides IResponderFactory."""
        self.assertTrue(verifyObject(IResponderFactory, SharedResponder(Router())))

    def test_wire_formats(self) -> None:
        """The binary, line and auto formats provide IWireFormat."""
        for wire in (BinaryFormat(), LineFormat(), AutoFormat()):
            self.assertTrue(verifyObject(IWireFormat, wire))

    def test_wire_codecs(self) -> None:
        """Their codecs provide IWireCodec, for every role they serve."""
        for wire in (BinaryFormat(), LineFormat()):
            for role in Role:
                self.assertTrue(verifyObject(IWireCodec, wire.codec(role, Limits())))
        self.assertTrue(verifyObject(IWireCodec, AutoFormat().codec(Role.SERVER, Limits())))
        for cls in (BinaryCodec, LineCodec, AutoCodec):
            self.assertTrue(verifyClass(IWireCodec, cls))
