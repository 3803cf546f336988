"""
Cross-references to the public names: a Sphinx extension for this project.

The public modules re-export objects defined in private ones
(``twisted_reqresp.Client`` is ``twisted_reqresp._adapters.client.Client``),
and both type annotations and docstrings name them the way the code sees
them: by the private path, or by a bare name imported into the docstring's
module.  Sphinx documents each object under its public name, so those
references would not resolve.  This extension resolves them the way Python
would (import the target, in the docstring's module when it is a bare
name) and points them at the object's public name.  A reference to an
object with no public name stays unresolved, and the nitpicky build fails
on it.

It also teaches autodoc to print zope.interface interfaces in annotations
by name: they are not classes, so Sphinx would print their ``repr``.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import Any

from docutils import nodes
from docutils.nodes import Element
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.ext.intersphinx import missing_reference as intersphinx_missing_reference
from zope.interface.interface import InterfaceClass

#: The public modules, in the order a name exported by several is
#: documented under the first.
PUBLIC_MODULES = (
    "twisted_reqresp",
    "twisted_reqresp.interfaces",
    "twisted_reqresp.codecs",
    "twisted_reqresp.testing",
    "twisted_reqresp.wire",
)

_MISSING = object()
_PUBLIC_NAMES: dict[int, str] = {}


def public_names() -> dict[int, str]:
    """
    :returns: the public name of every exported class, interface and
        function, and of their public methods and properties, by ``id``.
    """
    names: dict[int, str] = {}
    for modname in PUBLIC_MODULES:
        module = importlib.import_module(modname)
        for attr in module.__all__:
            obj = getattr(module, attr)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) and not isinstance(
                obj, InterfaceClass
            ):
                continue
            qualified = f"{modname}.{attr}"
            names.setdefault(id(obj), qualified)
            if inspect.isclass(obj):
                for member_name, member in vars(obj).items():
                    if not member_name.startswith("_"):
                        names.setdefault(id(member), f"{qualified}.{member_name}")
    return names


def _member(obj: Any, name: str) -> Any:
    """``obj.name``; for a class, as stored (not bound), so it matches :func:`public_names`."""
    if inspect.isclass(obj):
        for klass in obj.__mro__:
            if name in vars(klass):
                return vars(klass)[name]
        return _MISSING
    return getattr(obj, name, _MISSING)


def _import(dotted: str) -> Any:
    """The object a dotted name means, importing its module; ``_MISSING`` if none."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for part in parts[split:]:
            obj = _member(obj, part)
            if obj is _MISSING:
                return _MISSING
        return obj
    return _MISSING


def _scopes(module: str | None, klass: str | None) -> list[str]:
    """Where a name in a docstring is looked up, nearest first."""
    scopes = []
    if module and klass:
        scopes.append(f"{module}.{klass}.")
        # The module that defines the class, whose imports the docstring
        # and the annotations see.
        owner = _import(f"{module}.{klass}")
        defined_in = getattr(owner, "__module__", None)
        if isinstance(defined_in, str) and defined_in != module:
            scopes.append(f"{defined_in}.{klass}.")
            scopes.append(f"{defined_in}.")
    if module:
        scopes.append(f"{module}.")
    scopes.append("")
    return scopes


def _lookup(target: str, module: str | None, klass: str | None) -> Any:
    """Find ``target`` as the docstring's code would: in its class, its module, or absolute."""
    for scope in _scopes(module, klass):
        obj = _import(scope + target)
        if obj is not _MISSING:
            return obj
    return _MISSING


def _candidates(target: str, obj: Any, names: dict[int, str]) -> list[str]:
    """The names to try for ``target``: its public name, or where it is defined."""
    if obj is not _MISSING:
        if id(obj) in names:
            return [names[id(obj)]]
        qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
        module = getattr(obj, "__module__", None)
        if isinstance(qualname, str) and isinstance(module, str):
            # Twisted's or Python's: intersphinx knows it by where it is defined.
            return [f"{module}.{qualname}"]
        return []
    # A name the docstring's module does not bind (a function's docstring
    # gives no class to look in): the one public name it can mean, if only one.
    matches = sorted({name for name in names.values() if name.endswith("." + target)})
    return matches if len(matches) == 1 else []


def resolve_public(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: Element
) -> nodes.reference | None:
    """Resolve a Python reference Sphinx did not find to the object's public name."""
    if node.get("refdomain") != "py":
        return None
    if not _PUBLIC_NAMES:
        _PUBLIC_NAMES.update(public_names())
    names = _PUBLIC_NAMES
    target = node["reftarget"].lstrip("~.")
    obj = _lookup(target, node.get("py:module"), node.get("py:class"))
    for candidate in _candidates(target, obj, names):
        if candidate == target and obj is not _MISSING and id(obj) not in names:
            # Sphinx and intersphinx already failed on this very name.
            continue
        found = env.domains["py"].resolve_xref(
            env, node["refdoc"], app.builder, node["reftype"], candidate, node, contnode
        )
        if found is None:
            retry = node.deepcopy()
            retry["reftarget"] = candidate
            found = intersphinx_missing_reference(app, env, retry, contnode)
        if found is not None:
            return found  # type: ignore[no-any-return]
    return None


def _interface_name(annotation: InterfaceClass) -> str:
    return f"{annotation.__module__}.{annotation.__name__}"


def _patch_annotations() -> None:
    """Make Sphinx's annotation printers name interfaces instead of printing their repr."""
    import sphinx.util.typing as typing_util

    stringify_original = typing_util.stringify_annotation
    restify_original = typing_util.restify

    def stringify_annotation(annotation: Any, *args: Any, **kwargs: Any) -> str:
        if isinstance(annotation, InterfaceClass):
            mode = args[0] if args else kwargs.get("mode", "")
            prefix = "~" if mode == "smart" else ""
            return prefix + _interface_name(annotation)
        return stringify_original(annotation, *args, **kwargs)

    def restify(cls: Any, *args: Any, **kwargs: Any) -> str:
        if isinstance(cls, InterfaceClass):
            return f":py:class:`~{_interface_name(cls)}`"
        return restify_original(cls, *args, **kwargs)

    # Modules that imported the functions by name hold their own reference.
    for module in list(sys.modules.values()):
        if not getattr(module, "__name__", "").startswith("sphinx"):
            continue
        if getattr(module, "stringify_annotation", None) is stringify_original:
            module.stringify_annotation = stringify_annotation  # type: ignore[attr-defined]
        if getattr(module, "restify", None) is restify_original:
            module.restify = restify  # type: ignore[attr-defined]


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the resolver and the annotation printers."""
    _patch_annotations()
    app.connect("missing-reference", resolve_public)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
