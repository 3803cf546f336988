"""
The documentation's own checks that need no Sphinx: docs/testing.md names
every attribute the conformance kits read, every document is in the table
of contents, and the offline Twisted inventory the docs build uses has the
addresses of Twisted's API pages.  The build itself (`sphinx-build -n -W`,
in .ci/run) checks every cross-reference and internal link.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import tempfile
import zlib
from pathlib import Path
from types import ModuleType

from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp.testing import CodecConformanceMixin, WireFormatConformanceMixin

DOCS = Path(__file__).parent.parent / "docs"


def _section(text: str, heading: str) -> str:
    """The Markdown from ``heading`` to the next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    start = text.index(heading + "\n")
    rest = text[start + len(heading) :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


@functools.cache
def _load_inventory_module() -> ModuleType:
    path = DOCS / "_ext" / "twisted_inventory.py"
    spec = importlib.util.spec_from_file_location("twisted_inventory", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def _entries() -> dict[str, tuple[str, str]]:
    # Reading Twisted's source takes about half a second: once per run.
    return {name: (role, uri) for name, role, uri in _load_inventory_module().entries()}


class TestingDocTests(SynchronousTestCase):
    """docs/testing.md documents the conformance kits completely."""

    def test_every_kit_attribute_documented(self) -> None:
        """Each class attribute a conformance mixin reads has a row in its table in testing.md."""
        text = (DOCS / "testing.md").read_text(encoding="utf-8")
        for mixin in (CodecConformanceMixin, WireFormatConformanceMixin):
            section = _section(text, f"### `{mixin.__name__}`")
            attributes = [name for name in vars(mixin)["__annotations__"] if name[0] != "_"]
            self.assertTrue(attributes, mixin.__name__)
            for name in attributes:
                self.assertIn(f"| `{name}` |", section, f"{mixin.__name__}.{name}")

    def test_every_document_in_the_toctree(self) -> None:
        """docs/index.md's toctree lists every other document under docs/."""
        text = (DOCS / "index.md").read_text(encoding="utf-8")
        toctree = re.search(r"```\{toctree\}\n(.*?)```", text, re.DOTALL)
        assert toctree is not None
        listed = {line.strip() for line in toctree.group(1).splitlines()}
        for path in DOCS.glob("*.md"):
            if path.stem != "index":
                self.assertIn(path.stem, listed, path.name)


class TwistedInventoryTests(SynchronousTestCase):
    """The inventory written from the installed Twisted points at pydoctor's pages."""

    def setUp(self) -> None:
        self.inventory = _load_inventory_module()
        self.entries = _entries()

    def test_pages_and_anchors(self) -> None:
        """Modules and classes are pages; functions, methods and attributes anchors on them."""
        expected = {
            "twisted.internet.defer": ("py:module", "twisted.internet.defer.html"),
            "twisted.internet.defer.Deferred": (
                "py:class",
                "twisted.internet.defer.Deferred.html",
            ),
            "twisted.internet.defer.Deferred.addTimeout": (
                "py:method",
                "twisted.internet.defer.Deferred.html#addTimeout",
            ),
            "twisted.internet.task.react": ("py:function", "twisted.internet.task.html#react"),
            "twisted.internet.interfaces.IReactorTime": (
                "py:class",
                "twisted.internet.interfaces.IReactorTime.html",
            ),
            "twisted.internet.testing.StringTransport.disconnecting": (
                "py:attribute",
                "twisted.internet.testing.StringTransport.html#disconnecting",
            ),
        }
        for name, entry in expected.items():
            self.assertEqual(self.entries.get(name), entry, name)

    def test_no_private_or_test_modules(self) -> None:
        """Nothing from Twisted's private modules or its tests is in the inventory."""
        for name in self.entries:
            parts = name.split(".")
            self.assertNotIn("test", parts, name)
            self.assertFalse(any(part.startswith("_") for part in parts), name)

    def test_written_in_sphinx_format(self) -> None:
        """The file has Sphinx's version 2 header and a zlib body of one entry a line."""
        directory = tempfile.TemporaryDirectory(prefix="reqresp-inventory-")
        self.addCleanup(directory.cleanup)
        path = Path(directory.name) / "objects.inv"
        self.assertEqual(self.inventory.write(path), path)
        data = path.read_bytes()
        header, _, _ = data.partition(b"zlib.\n")
        self.assertTrue(header.startswith(b"# Sphinx inventory version 2\n# Project: Twisted\n"))
        lines = zlib.decompress(data[len(header) + len(b"zlib.\n") :]).decode().splitlines()
        self.assertEqual(len(lines), len(self.entries))
        self.assertIn(
            "twisted.internet.defer.Deferred py:class 1 twisted.internet.defer.Deferred.html -",
            lines,
        )
