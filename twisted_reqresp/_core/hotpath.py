"""
Which hot path is active: the modules compiled with mypyc, or their .py sources.

``setup.py`` compiles :data:`COMPILED_MODULES` with mypyc when it can; the
package works the same without them.  This module, imported by the core's
``__init__`` before any module of the core, decides
once per process which to import and, when it is the sources, installs a
meta-path finder that loads the .py file of each compiled module even though
the extension sits beside it (an extension wins over a .py in the default
finder):

- ``TWISTED_REQRESP_NO_EXTENSIONS`` set to a non-empty value other than
  ``0`` forces the sources (aiohttp's and yarl's convention);
- a compiled module older than its .py (edited after an in-place build)
  would run stale code: the sources are imported instead, with one warning
  that says how to rebuild.

All or none: the compiled modules call each other directly, so a mix of
compiled and source modules is never imported.  This module is never
compiled itself.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__all__ = ["COMPILED_MODULES", "NO_EXTENSIONS", "active", "reason"]

#: The modules setup.py compiles (keep in step with its ``COMPILED``), each
#: after the ones it imports.
COMPILED_MODULES = (
    "twisted_reqresp._core.streams",
    "twisted_reqresp._core.binary",
    "twisted_reqresp._core.connection",
)
#: The environment variable that forces the pure-Python path.
NO_EXTENSIONS = "TWISTED_REQRESP_NO_EXTENSIONS"
#: How much newer a .py may be than its extension before the extension is
#: stale: installing a wheel writes both within milliseconds, in any order.
_STALE_AFTER = 2.0

_PACKAGE = Path(__file__).resolve().parent.parent


def _source(name: str) -> Path:
    return _PACKAGE.joinpath(*name.split(".")[1:]).with_suffix(".py")


def _extension(name: str) -> Path | None:
    """:returns: the compiled module of ``name`` beside its source, if any."""
    source = _source(name)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = source.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def _decide() -> tuple[bool, str]:
    """:returns: whether to import the compiled modules, and why (for people)."""
    if os.environ.get(NO_EXTENSIONS, "") not in ("", "0"):
        return False, f"{NO_EXTENSIONS} is set"
    extensions = [(name, _extension(name)) for name in COMPILED_MODULES]
    missing = [name for name, ext in extensions if ext is None]
    if len(missing) == len(COMPILED_MODULES):
        return False, "not compiled at install"
    if missing:
        return False, f"incomplete build: {', '.join(missing)} not compiled"
    for name, ext in extensions:
        assert ext is not None
        if _source(name).stat().st_mtime > ext.stat().st_mtime + _STALE_AFTER:
            warnings.warn(
                f"twisted_reqresp: {_source(name).name} is newer than its compiled module "
                f"{ext.name}; using the pure-Python sources.  Rebuild with "
                "`pip install -e . --config-settings editable_mode=compat`, or set "
                f"{NO_EXTENSIONS}=1 to silence this.",
                RuntimeWarning,
                stacklevel=2,
            )
            return False, f"compiled modules older than their sources ({ext.name})"
    try:
        # The compiled modules' shared library: an extension that cannot
        # load (a foreign platform's build, a missing runtime) falls back.
        importlib.import_module("twisted_reqresp__mypyc")
    except ImportError as e:
        return False, f"compiled modules do not load: {e}"
    return True, "mypyc"


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Finds the .py source of each compiled module, ahead of the extension."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in COMPILED_MODULES:
            return None
        source = _source(fullname)
        if not source.is_file():
            return None  # not a directory of files (a zip): the default finders
        return importlib.util.spec_from_file_location(fullname, source)


_compiled, _why = _decide()
# The finder only where there is an extension to pass over: without one the
# default finders import the sources anyway, from a directory or a zip.
if (
    not _compiled
    and any(_extension(name) is not None for name in COMPILED_MODULES)
    and not any(isinstance(f, _SourceFinder) for f in sys.meta_path)
):
    sys.meta_path.insert(0, _SourceFinder())


def active() -> bool:
    """:returns: whether the compiled modules are the ones imported."""
    modules = [sys.modules.get(name) for name in COMPILED_MODULES]
    return all(
        module is not None and not str(getattr(module, "__file__", "")).endswith(".py")
        for module in modules
    )


def reason() -> str:
    """:returns: a line for people: which hot path is active, and why."""
    if active():
        return "hot path: compiled (mypyc)"
    return f"hot path: pure Python ({_why if not _compiled else 'not imported yet'})"
