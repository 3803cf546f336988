"""
The public surface is pinned: adding or removing a public name is a
deliberate change to this file and to docs/api.md, whose autodoc
directives generate the API reference from the docstrings.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import puretwins
from twisted.trial.unittest import SynchronousTestCase

PUBLIC = {
    "twisted_reqresp": [
        "APPLICATION_MIN",
        "AccessLog",
        "AutoFormat",
        "BINARY",
        "BackendInfo",
        "Backoff",
        "BinaryFormat",
        "Call",
        "Channel",
        "ChannelStats",
        "Client",
        "CodecError",
        "ConnectionClosed",
        "ConnectionInfo",
        "DEFAULT_LIMITS",
        "DeadlineExceeded",
        "EndpointSet",
        "HealthStatus",
        "LINE",
        "Limits",
        "LineFormat",
        "LocalProtocolError",
        "MethodDescription",
        "Outcome",
        "OutgoingCall",
        "ProtocolError",
        "RemoteError",
        "RemoteProtocolError",
        "Reply",
        "ReqRespError",
        "RetryBudget",
        "RetryPolicy",
        "Router",
        "ServerFactory",
        "ServerMetrics",
        "ServerStats",
        "ServerStream",
        "ServingStatus",
        "StatusCode",
        "StatusError",
        "StreamingCall",
        "compiled",
        "connect",
    ],
    "twisted_reqresp.interfaces": [
        "IClientInterceptor",
        "ICodec",
        "IResponder",
        "IResponderFactory",
        "IServerInterceptor",
        "IWireCodec",
        "IWireFormat",
    ],
    "twisted_reqresp.codecs": ["BYTES", "BytesCodec", "JSON", "JSONCodec"],
    "twisted_reqresp.service": [
        "BidiStreamMethod",
        "Caller",
        "ClientStreamMethod",
        "Implementation",
        "Method",
        "MethodKind",
        "ServerStreamMethod",
        "Service",
        "TypedCodec",
        "UnaryMethod",
        "UnaryStub",
        "bidi_stream",
        "client_stream",
        "server_stream",
        "unary",
    ],
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
        "CreditGranted",
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
        "StreamEnd",
        "StreamMessage",
        "StreamRequest",
        "parse_status",
        "status_name",
        "to_status",
    ],
}

API_DOC = Path(__file__).parent.parent / "docs" / "api.md"

# An rST directive inside docs/api.md's eval-rst blocks: autodoc's
# (``.. autoclass:: twisted_reqresp.Client``) or the Python domain's
# (``.. py:class:: BinaryFormat``, under ``.. py:currentmodule::``).
_DIRECTIVE = re.compile(r"^\s*\.\. (?:auto|py:)(\w+):: *(\S+)", re.MULTILINE)


def documented_names(text: str) -> set[str]:
    """
    :param text: the Markdown of docs/api.md.
    :returns: the qualified name of every object an autodoc or Python
        domain directive in it documents.
    """
    names = set()
    module = ""
    for kind, target in _DIRECTIVE.findall(text):
        if kind in ("module", "currentmodule"):
            module = target
        elif "." in target or not module:
            names.add(target)
        else:
            names.add(f"{module}.{target}")
    return names


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
                # mypyc keeps no docstrings: those of a compiled class are
                # read from its .py source.
                obj = puretwins.source_of(getattr(module, attr))
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
        """docs/api.md has a directive documenting every public name under its public module."""
        documented = documented_names(API_DOC.read_text(encoding="utf-8"))
        for name, expected in PUBLIC.items():
            for attr in expected:
                self.assertIn(f"{name}.{attr}", documented, f"{name}.{attr} is not in docs/api.md")

    def test_documents_only_public_names(self) -> None:
        """docs/api.md documents no object that is not a pinned public name."""
        public = {f"{name}.{attr}" for name, expected in PUBLIC.items() for attr in expected}
        documented = documented_names(API_DOC.read_text(encoding="utf-8"))
        self.assertEqual(documented - public, set())
