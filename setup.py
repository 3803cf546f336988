"""
Build the compiled hot path with mypyc, or fall back to pure Python.

The metadata lives in setup.cfg; this file only adds the extension modules.
mypyc compiles the same typed modules that ``mypy --strict`` checks, so there
is one source of truth (docs/performance.md, "Compiled hot path").  The
build falls back to a pure-Python install, silently and successfully, when
mypyc is missing, the interpreter is not CPython, no C compiler or no Python
headers are usable, or ``TWISTED_REQRESP_NO_EXTENSIONS`` is set to a
non-empty value other than ``0``.  The package behaves the same either way;
only its speed differs.
"""

from __future__ import annotations

import atexit
import os
import platform
import shutil
import sysconfig
import tempfile

from setuptools import setup
from setuptools.command.build_ext import build_ext

#: The modules mypyc compiles, in the package's layout.  Keep in step with
#: ``twisted_reqresp/_core/hotpath.py``'s ``COMPILED_MODULES``.
COMPILED = (
    "twisted_reqresp/_core/binary.py",
    "twisted_reqresp/_core/connection.py",
    "twisted_reqresp/_core/streams.py",
)
#: The environment variable that keeps the build (and, at run time, the
#: import) pure Python.
NO_EXTENSIONS = "TWISTED_REQRESP_NO_EXTENSIONS"


def _disabled() -> bool:
    return os.environ.get(NO_EXTENSIONS, "") not in ("", "0")


def _compiler_works() -> bool:
    """
    :returns: whether a C compiler can build an extension against this
        Python's headers; probed quietly so that a machine without one gets
        a pure-Python install and no compiler noise.
    """
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.sysconfig import customize_compiler

    include = sysconfig.get_paths()["include"]
    if not os.path.isfile(os.path.join(include, "Python.h")):
        return False
    scratch = tempfile.mkdtemp(prefix="reqresp-cc-")
    try:
        source = os.path.join(scratch, "probe.c")
        with open(source, "w") as f:
            f.write("#include <Python.h>\nint probe(void) { return Py_IsInitialized(); }\n")
        compiler = new_compiler()
        customize_compiler(compiler)
        # The compiler's own messages would read as a failed install.
        saved = os.dup(2), os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            os.dup2(devnull, 1)
            compiler.compile([source], output_dir=scratch, include_dirs=[include])
        finally:
            os.dup2(saved[0], 2)
            os.dup2(saved[1], 1)
            for fd in (*saved, devnull):
                os.close(fd)
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _OptionalBuildExt(build_ext):
    """Build the extensions if possible; if the build fails anyway, install
    pure Python (the package imports its .py files when no extension is there)."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:
            print(f"twisted-reqresp: the compiled hot path did not build ({e!r}); pure Python")
            self.extensions = []

    def build_extension(self, ext: object) -> None:
        try:
            super().build_extension(ext)
        except Exception as e:
            # The compiler worked on the probe, so this is the generated C's
            # fault: say so (pip shows it with -v).  An in-place build keeps
            # the old extension, which the import-time stale check then
            # passes over (twisted_reqresp/_core/hotpath.py).
            name = getattr(ext, "name", ext)
            print(f"twisted-reqresp: {name} did not compile ({e!r}); pure Python")


def _ext_modules() -> list[object]:
    if _disabled() or platform.python_implementation() != "CPython":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        return []
    if not _compiler_works():
        return []
    # mypyc writes its C sources to target_dir: a scratch directory, so that
    # a build leaves no generated C in the checkout.
    target = tempfile.mkdtemp(prefix="reqresp-mypyc-")
    atexit.register(shutil.rmtree, target, ignore_errors=True)
    here = os.path.dirname(os.path.abspath(__file__))
    cwd = os.getcwd()
    # mypyc reads pyproject.toml's [tool.mypy] (the zope plugin) from the
    # current directory.
    os.chdir(here)
    try:
        return list(
            mypycify(
                # The compiled modules import only the wire core (no
                # Twisted), but reaching them imports the package's
                # __init__, and with it the adapters: an isolated build
                # environment has no Twisted, so their imports are followed
                # silently (mypy --strict checks them in the development venv).
                ["--follow-imports=silent", *COMPILED],
                opt_level="3",
                target_dir=target,
                group_name="twisted_reqresp",
            )
        )
    except (Exception, SystemExit) as e:
        # A compiler is there, so this is the project's fault (a construct
        # mypyc rejects), not the machine's: say so (pip shows it with -v;
        # CI's tests/test_hotpath.py fails on the pure install), then install
        # pure Python rather than nothing.
        print(f"twisted-reqresp: mypyc could not compile the hot path ({e!r}); pure Python")
        return []
    finally:
        os.chdir(cwd)


setup(ext_modules=_ext_modules(), cmdclass={"build_ext": _OptionalBuildExt})
