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
#: and of the layers before it, never of a layer after it.  A subpackage is
#: a layer: every module in its folder belongs to it, so a new module needs
#: no entry here; a new top-level module must be given a layer.
LAYERS: list[tuple[str, frozenset[str]]] = [
    ("wire core", frozenset({"_core"})),
    ("interfaces", frozenset({"interfaces"})),
    ("codecs", frozenset({"codecs"})),
    ("Twisted adapters", frozenset({"_adapters"})),
    ("application", frozenset({"_app", "service", "testing", "wire"})),
    ("package", frozenset({"__init__"})),
]

#: The wire core's folder: nothing in it imports these top-level packages.
#: (zope.interface is allowed: it is no networking code, and the core
#: declares the wire-format contract with it, once; see _core/contract.py.)
CORE = "_core"
CORE_FORBIDDEN = ("twisted",)


def top_of(module: str) -> str:
    """
    :param module: a module's dotted name inside the package
        (``"_core.binary"``, ``"interfaces"``).
    :returns: what places it in a layer: its folder, or itself at the top.
    """
    return module.split(".")[0]


def layer_of(module: str) -> int | None:
    """
    :param module: a module's dotted name inside the package.
    :returns: the index of its layer in :data:`LAYERS`, or ``None``.
    """
    top = top_of(module)
    for index, (_, members) in enumerate(LAYERS):
        if top in members:
            return index
    return None


def package_modules() -> list[str]:
    """:returns: the package's modules, dotted (``"_core.binary"``, ``"__init__"``...)."""
    names = []
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = path.relative_to(PACKAGE_DIR).with_suffix("").parts
        if len(parts) > 1 and parts[-1] == "__init__":
            parts = parts[:-1]  # a subpackage's __init__ is the subpackage
        names.append(".".join(parts))
    return sorted(names)


def _path_of(module: str) -> Path:
    parts = module.split(".")
    candidate = PACKAGE_DIR.joinpath(*parts).with_suffix(".py")
    if candidate.exists():
        return candidate
    return PACKAGE_DIR.joinpath(*parts, "__init__.py")


def imports_of(module: str) -> list[tuple[int, str]]:
    """
    Every import in a module, as absolute dotted names.

    ``from . import x`` and ``from .x import y`` become
    ``twisted_reqresp.<package>.x`` (and ``...x.y``, in case ``y`` is a
    submodule), resolved from the module's own package.

    :returns: ``(line number, dotted name)`` pairs.
    """
    path = _path_of(module)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    # The package a relative import starts from: the module's own.
    own_package = [PACKAGE, *module.split(".")]
    if path.name != "__init__.py":
        own_package = own_package[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                up = node.level - 1
                if up >= len(own_package):
                    base = "<beyond the package>"
                else:
                    parts = own_package[: len(own_package) - up]
                    base = ".".join(parts)
                    base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def internal_target(name: str) -> str | None:
    """
    :param name: a dotted import name.
    :returns: the package module it names (``"_core.binary"`` for
        ``twisted_reqresp._core.binary.X``; ``"__init__"`` for the package
        itself), or ``None`` when it is outside the package.
    """
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    if len(parts) == 1:
        return "__init__"
    known = set(package_modules())
    # The longest prefix that is a module of the package.
    for end in range(len(parts), 1, -1):
        candidate = ".".join(parts[1:end])
        if candidate in known:
            return candidate
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
        """The package holds the wire core that the contract is about, in its folder."""
        present = set(package_modules())
        for module in ("status", "errors", "limits", "events", "binary", "connection"):
            self.assertIn(f"_core.{module}", present)
        for module in ("server", "client", "lifecycle", "liveness"):
            self.assertIn(f"_adapters.{module}", present)
        for module in ("tap", "cli", "service"):
            self.assertIn(f"_app.{module}", present)

    def test_no_flat_private_modules(self) -> None:
        """Private code lives in a layer's folder: the top level holds only public modules."""
        top = sorted(p.stem for p in PACKAGE_DIR.glob("_*.py") if p.stem != "__init__")
        self.assertEqual(top, [])

    def test_core_imports_no_twisted(self) -> None:
        """No wire-core module imports twisted or zope, anywhere in its source."""
        problems = []
        for module in [m for m in package_modules() if top_of(m) == CORE]:
            for line, name in imports_of(module):
                if name.split(".")[0] in CORE_FORBIDDEN:
                    problems.append(f"{module}.py:{line} imports {name}")
        self.assertEqual(problems, [], "the wire core must not import Twisted")

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
                if target is None or top_of(target) == top_of(module):
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
        names = {name for _, name in imports_of("_core.binary")}
        self.assertIn("twisted_reqresp._core.events", names)
        self.assertIn("struct", names)
        self.assertEqual(internal_target("twisted_reqresp._core.events.Request"), "_core.events")
        server = {name for _, name in imports_of("_adapters.server")}
        self.assertIn("twisted_reqresp._core.connection", server)
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
        present = [m for m in package_modules() if top_of(m) == CORE]
        # A bare package object stands in for __init__.py (which imports the
        # adapters), so only the core modules and what they import are run.
        code = (
            "import importlib, sys, types\n"
            f"pkg = types.ModuleType({PACKAGE!r})\n"
            f"pkg.__path__ = [{str(PACKAGE_DIR)!r}]\n"
            f"sys.modules[{PACKAGE!r}] = pkg\n"
            f"for m in {present!r}:\n"
            "    importlib.import_module('twisted_reqresp.' + m)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'twisted')\n"
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
