"""
An intersphinx inventory for Twisted, written from the installed Twisted's
source, so that the docs build needs no network.

Twisted's API reference is built by pydoctor, whose pages have predictable
addresses: a module or class has its own page
(``<BASE_URL><qualified.name>.html``) and everything defined in it is an
anchor on that page (``#name``).  Reading the source with :mod:`ast` (no
imports, so no reactor is installed and no optional dependency is needed)
gives every public module, class, function, method and attribute, which is
what pydoctor documents.  A name the inventory lacks stays an unresolved
reference, which the nitpicky build reports: nothing is dropped silently.
"""

from __future__ import annotations

import ast
import zlib
from collections.abc import Iterator
from pathlib import Path

import twisted

BASE_URL = "https://docs.twisted.org/en/stable/api/"

# Twisted's tests and private modules are not in its API reference.
_SKIP_PARTS = {"test", "tests"}

_Entry = tuple[str, str, str]  # (name, "domain:role", uri)


def _public(name: str) -> bool:
    return not name.startswith("_")


def _modules(root: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if any(part in _SKIP_PARTS or not _public(part) for part in parts):
            continue
        yield ".".join(parts), path


def _targets(node: ast.stmt) -> Iterator[str]:
    if isinstance(node, ast.Assign):
        for target in node.targets:
            if isinstance(target, ast.Name):
                yield target.id
    elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        yield node.target.id


def _class_entries(qualname: str, node: ast.ClassDef) -> Iterator[_Entry]:
    page = f"{qualname}.html"
    yield qualname, "py:class", page
    for child in node.body:
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and _public(child.name):
            yield f"{qualname}.{child.name}", "py:method", f"{page}#{child.name}"
        for name in _targets(child):
            if _public(name):
                yield f"{qualname}.{name}", "py:attribute", f"{page}#{name}"


def _module_entries(modname: str, path: Path) -> Iterator[_Entry]:
    page = f"{modname}.html"
    yield modname, "py:module", page
    try:
        tree = ast.parse(path.read_bytes(), str(path))
    except (SyntaxError, ValueError):
        return
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and _public(node.name):
            yield from _class_entries(f"{modname}.{node.name}", node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _public(node.name):
            yield f"{modname}.{node.name}", "py:function", f"{page}#{node.name}"
        for name in _targets(node):
            if _public(name):
                yield f"{modname}.{name}", "py:data", f"{page}#{name}"


def entries() -> list[_Entry]:
    """
    :returns: every public object of the installed Twisted, with its
        address relative to :data:`BASE_URL`.
    """
    root = Path(twisted.__file__).parent
    seen: dict[str, _Entry] = {}
    for modname, path in _modules(root):
        for entry in _module_entries(modname, path):
            # The first definition wins, as in the module's namespace
            # a later `if`-guarded redefinition is the exception.
            seen.setdefault(entry[0], entry)
    return sorted(seen.values())


def write(path: Path) -> Path:
    """
    Write the inventory (Sphinx's version 2 format) to ``path``.  It takes
    about half a second, so it is written afresh for every build.

    :param path: where to write it.
    :returns: ``path``.
    """
    header = (
        "# Sphinx inventory version 2\n"
        "# Project: Twisted\n"
        f"# Version: {twisted.__version__}\n"
        "# The remainder of this file is compressed using zlib.\n"
    ).encode()
    body = "".join(f"{name} {role} 1 {uri} -\n" for name, role, uri in entries())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + zlib.compress(body.encode()))
    return path
