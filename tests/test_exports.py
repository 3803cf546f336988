"""
The public surface is pinned: adding or removing a public name is a
deliberate change to this file and to docs/api.md.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

PUBLIC = {
    "twisted_reqresp": [
        "APPLICATION_MIN",
        "AutoFormat",
        "BINARY",
        "BinaryFormat",
        "Call",
        "Client",
        "CodecError",
        "ConnectionClosed",
        "ConnectionInfo",
        "DEFAULT_LIMITS",
        "DeadlineExceeded",
        "LINE",
        "Limits",
        "LineFormat",
        "LocalProtocolError",
        "ProtocolError",
        "RemoteError",
        "RemoteProtocolError",
        "Reply",
        "ReqRespError",
        "Router",
        "ServerFactory",
        "ServerStats",
        "StatusCode",
        "StatusError",
        "connect",
    ],
    "twisted_reqresp.interfaces": [
        "ICodec",
        "IResponder",
        "IResponderFactory",
        "IWireCodec",
        "IWireFormat",
    ],
    "twisted_reqresp.codecs": ["BYTES", "BytesCodec", "JSON", "JSONCodec"],
    "twisted_reqresp.testing": [
        "CodecConformanceMixin",
        "ConnectedPair",
        "WireFormatConformanceMixin",
        "connected_pair",
    ],
    "twisted_reqresp.wire": [
        "AutoCodec",
        "AutoFormat",
        "BinaryCodec",
        "BinaryFormat",
        "Cancel",
        "Connection",
        "ConnectionState",
        "ErrorResponse",
        "Event",
        "GoAway",
        "LineCodec",
        "LineFormat",
        "Metadata",
        "PREFACE",
        "Ping",
        "Pong",
        "PrefaceReceived",
        "ProtocolViolation",
        "Rejected",
        "Request",
        "Response",
        "Role",
        "Settings",
        "parse_status",
        "status_name",
        "to_status",
    ],
}

API_DOC = Path(__file__).parent.parent / "docs" / "api.md"


class ExportTests(SynchronousTestCase):
    """Each public module exports exactly the pinned names, all documented."""

    def test_all_is_pinned(self) -> None:
        """Each public module's __all__ is exactly the pinned list."""
        for name, expected in PUBLIC.items():
            module = importlib.import_module(name)
            self.assertEqual(sorted(module.__all__), sorted(expected), name)

    def test_names_resolve(self) -> None:
        """Every exported name exists in its module."""
        for name, expected in PUBLIC.items():
            module = importlib.import_module(name)
            for attr in expected:
                self.assertTrue(hasattr(module, attr), f"{name}.{attr}")

    def test_public_objects_have_docstrings(self) -> None:
        """Every exported class and function has a docstring, and so do their public methods."""
        for name, expected in PUBLIC.items():
            module = importlib.import_module(name)
            for attr in expected:
                obj = getattr(module, attr)
                if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                    continue
                self.assertTrue(inspect.getdoc(obj), f"{name}.{attr} has no docstring")
                if inspect.isclass(obj) and obj.__module__.startswith("twisted_reqresp"):
                    for method_name, method in vars(obj).items():
                        if method_name.startswith("_") or not inspect.isfunction(method):
                            continue
                        self.assertTrue(
                            inspect.getdoc(method), f"{name}.{attr}.{method_name} has no docstring"
                        )

    def test_documented(self) -> None:
        """docs/api.md mentions every public name."""
        text = API_DOC.read_text(encoding="utf-8")
        for name, expected in PUBLIC.items():
            for attr in expected:
                self.assertIn(f"`{attr}", text, f"{name}.{attr} is not in docs/api.md")
