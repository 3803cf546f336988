"""
The .py sources of the modules compiled with mypyc, loaded a second time.

``setup.py`` compiles some modules of the wire core; when the compiled path is
active, importing them gives the extensions.  :func:`load` executes their .py
files under other names (``twisted_reqresp._core._pure_binary`` and so on),
each importing the others' twins, while their imports of the shared modules
(events, limits, status, errors) resolve to the very objects the compiled
modules use: what tests/test_compiled_differential.py compares, and where
tests read what mypyc does not keep (docstrings).
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

import twisted_reqresp
from twisted_reqresp._core.hotpath import COMPILED_MODULES

_PACKAGE = Path(twisted_reqresp.__file__).parent


def _twin_name(name: str) -> str:
    head, _, short = name.rpartition(".")
    return f"{head}._pure_{short}"


@cache
def load() -> dict[str, ModuleType]:
    """
    :returns: the pure twin of each compiled module, by the compiled
        module's name (``"twisted_reqresp._core.binary"``).
    """
    twins: dict[str, ModuleType] = {}
    for name in COMPILED_MODULES:  # dependencies first
        source = _PACKAGE.joinpath(*name.split(".")[1:]).with_suffix(".py")
        spec = importlib.util.spec_from_file_location(_twin_name(name), source)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        saved = {n: sys.modules[n] for n in twins if n in sys.modules}
        sys.modules.update(twins)
        try:
            spec.loader.exec_module(module)
        finally:
            sys.modules.update(saved)
        twins[name] = module
    return twins


def source_of(obj: object) -> object:
    """
    :returns: ``obj`` itself, or, if it is a class of a compiled module,
        the same-named class of the module's pure twin.
    """
    module = getattr(obj, "__module__", None)
    if module in COMPILED_MODULES and isinstance(obj, type):
        return getattr(load()[module], obj.__qualname__)
    return obj
