"""
The import contract: layers import downward only, and the wire core imports
neither Twisted nor zope (``docs/index.md`` lists the layers).

Imports are read with :mod:`ast`, not by importing, so every import counts:
at module scope, inside functions, and under ``TYPE_CHECKING``.  A module
this test does not know fails it: a new module must be given a layer below.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import twisted_reqresp

PACKAGE = "twisted_reqresp"
PACKAGE_DIR = Path(twisted_reqresp.__file__).resolve().parent

#: The layers, lowest first.  A module may import modules of its own layer
#: and of the layers before it, never of a layer after it.  Modules listed
#: here may not exist yet; every module that exists must be listed.
LAYERS: list[tuple[str, frozenset[str]]] = [
    (
        "wire core",
        frozenset(
            {
                "_status",
                "_frozen",
                "_errors",
                "_limits",
                "_events",
                "_binary",
                "_line",
                "_detect",
                "_auto",
                "_connection",
                "_call",
            }
        ),
    ),
    ("interfaces", frozenset({"interfaces"})),
    ("codecs", frozenset({"codecs"})),
    (
        "Twisted adapters",
        frozenset(
            {
                "_liveness",
                "_writethrough",
                "_lifecycle",
                "_protocol",
                "_client_protocol",
                "_router",
                "_server",
                "_client",
                "_stats",
                "_service",
                "_conformance",
            }
        ),
    ),
    ("tap, cli, testing", frozenset({"_tap", "_cli", "_bench", "testing", "wire"})),
    ("package", frozenset({"__init__"})),
]

#: The wire core's modules: they import nothing from these top-level packages.
CORE = LAYERS[0][1]
CORE_FORBIDDEN = ("twisted", "zope")


def layer_of(module: str) -> int | None:
    """
    :param module: a module name inside the package (``"_binary"``).
    :returns: the index of its layer in :data:`LAYERS`, or ``None``.
    """
    for index, (_, members) in enumerate(LAYERS):
        if module in members:
            return index
    return None


def package_modules() -> list[str]:
    """:returns: the names of the package's modules (``"_binary"``, ``"__init__"``...)."""
    return sorted(path.stem for path in PACKAGE_DIR.glob("*.py"))


def imports_of(module: str) -> list[tuple[int, str]]:
    """
    Every import in a module, as absolute dotted names.

    ``from . import x`` and ``from .x import y`` become ``twisted_reqresp.x``
    (and ``twisted_reqresp.x.y``, in case ``y`` is a submodule).

    :returns: ``(line number, dotted name)`` pairs.
    """
    path = PACKAGE_DIR / f"{module}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # The package is flat: one leading dot is the package itself.
                base = PACKAGE if node.level == 1 else "<beyond the package>"
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def internal_target(name: str) -> str | None:
    """
    :param name: a dotted import name.
    :returns: the package module it names (``"_binary"`` for
        ``twisted_reqresp._binary.X``; ``"__init__"`` for the package itself),
        or ``None`` when it is outside the package or not a module of it.
    """
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    if len(parts) == 1:
        return "__init__"
    if (PACKAGE_DIR / f"{parts[1]}.py").exists() or layer_of(parts[1]) is not None:
        return parts[1]
    return None  # a name defined in __init__.py, such as ``from . import Router``


class LayeringTests(SynchronousTestCase):
    """Modules import downward only and the wire core imports no Twisted."""

    def test_every_module_has_a_layer(self) -> None:
        """Every module of the package is placed in exactly one layer."""
        members = [m for _, layer in LAYERS for m in layer]
        self.assertEqual(len(members), len(set(members)), "a module is in two layers")
        unplaced = [m for m in package_modules() if layer_of(m) is None]
        self.assertEqual(
            unplaced,
            [],
            f"place each new module in a layer in tests/test_layering.py (LAYERS) "
            f"and in docs/index.md: {unplaced}",
        )

    def test_known_modules_exist(self) -> None:
        """The package holds the wire core that the contract is about."""
        present = set(package_modules())
        for module in ("_status", "_errors", "_limits", "_events", "_binary", "_connection"):
            self.assertIn(module, present)

    def test_core_imports_no_twisted(self) -> None:
        """No wire-core module imports twisted or zope, anywhere in its source."""
        problems = []
        for module in sorted(CORE & set(package_modules())):
            for line, name in imports_of(module):
                if name.split(".")[0] in CORE_FORBIDDEN:
                    problems.append(f"{module}.py:{line} imports {name}")
        self.assertEqual(problems, [], "the wire core must not import Twisted or zope")

    def test_imports_go_downward(self) -> None:
        """No module imports a module of a higher layer."""
        problems = []
        for module in package_modules():
            own = layer_of(module)
            if own is None:
                continue  # reported by test_every_module_has_a_layer
            for line, name in imports_of(module):
                if name.startswith("<beyond"):
                    problems.append(f"{module}.py:{line} imports from outside the package")
                    continue
                target = internal_target(name)
                if target is None or target == module:
                    continue
                theirs = layer_of(target)
                if theirs is None:
                    problems.append(f"{module}.py:{line} imports {target}, which has no layer")
                elif theirs > own:
                    problems.append(
                        f"{module}.py:{line} ({LAYERS[own][0]}) imports {target} "
                        f"({LAYERS[theirs][0]})"
                    )
        self.assertEqual(problems, [])

    def test_checker_sees_imports(self) -> None:
        """The import reader resolves relative imports and sees the core's own imports."""
        names = {name for _, name in imports_of("_binary")}
        self.assertIn("twisted_reqresp._events", names)
        self.assertIn("struct", names)
        self.assertEqual(internal_target("twisted_reqresp._events.Request"), "_events")
        self.assertEqual(internal_target("twisted_reqresp"), "__init__")
        self.assertIsNone(internal_target("twisted.internet"))

    def test_import_installs_no_reactor(self) -> None:
        """Importing the package (and its public modules) installs no reactor."""
        code = (
            "import sys, twisted_reqresp, twisted_reqresp.wire, twisted_reqresp.interfaces\n"
            "assert 'twisted.internet.reactor' not in sys.modules, 'a reactor was installed'\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=str(PACKAGE_DIR.parent),
            timeout=120,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_core_alone_imports_no_twisted(self) -> None:
        """Importing every wire-core module, without the package ``__init__``, loads no Twisted."""
        present = sorted(CORE & set(package_modules()))
        # A bare package object stands in for __init__.py (which imports the
        # adapters), so only the core modules and what they import are run.
        code = (
            "import importlib, sys, types\n"
            f"pkg = types.ModuleType({PACKAGE!r})\n"
            f"pkg.__path__ = [{str(PACKAGE_DIR)!r}]\n"
            f"sys.modules[{PACKAGE!r}] = pkg\n"
            f"for m in {present!r}:\n"
            "    importlib.import_module('twisted_reqresp.' + m)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('twisted', 'zope'))\n"
            "assert not bad, bad\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=str(PACKAGE_DIR.parent),
            timeout=120,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
