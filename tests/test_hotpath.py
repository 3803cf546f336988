"""
Choosing the hot path at run time (``twisted_reqresp._core.hotpath``).

``TWISTED_REQRESP_NO_EXTENSIONS`` forces the .py sources even where the
compiled modules are installed; a compiled module older than its source is
not imported; ``twisted_reqresp.compiled`` and ``reqresp --version`` say
which path is active.  Each case runs in a fresh interpreter, since the
choice is made once per process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from e2e import BIN, clean_env
from twisted.trial.unittest import SynchronousTestCase

import twisted_reqresp
from twisted_reqresp._core.hotpath import COMPILED_MODULES, NO_EXTENSIONS

PACKAGE = Path(twisted_reqresp.__file__).resolve().parent
#: Bound on each interpreter started.
TIMEOUT = 60

#: Prints, as JSON, what the hot path is in a fresh interpreter.
_PROBE = """
import json, sys, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import twisted_reqresp
    from twisted_reqresp._core import hotpath
    from twisted_reqresp.wire import Connection, Role
    # The core still works: a client queues its preface and SETTINGS.
    works = bool(Connection(Role.CLIENT, twisted_reqresp.BINARY).data_to_send())
print(json.dumps({
    "compiled": twisted_reqresp.compiled,
    "reason": hotpath.reason(),
    "files": [sys.modules[name].__file__ for name in hotpath.COMPILED_MODULES],
    "warnings": [str(w.message) for w in caught],
    "works": works,
}))
"""


def _built() -> bool:
    """:returns: whether the compiled modules are installed beside the sources."""
    return all(
        any(
            p.suffix in (".so", ".pyd")
            for p in PACKAGE.joinpath(*name.split(".")[1:-1]).glob(name.split(".")[-1] + ".*")
        )
        for name in COMPILED_MODULES
    )


def _probe(env: dict[str, str], path: Path | None = None) -> dict[str, object]:
    if path is not None:
        env = {**env, "PYTHONPATH": str(path)}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        cwd=(path if path.is_dir() else path.parent) if path is not None else None,
        check=True,
    )
    probed: dict[str, object] = json.loads(result.stdout)
    return probed


def _copy_package(target: Path) -> Path:
    """Copy the installed package, and the compiled modules' shared library, to ``target``."""
    shutil.copytree(PACKAGE, target / "twisted_reqresp", symlinks=True)
    for library in PACKAGE.parent.glob("twisted_reqresp__mypyc.*"):
        shutil.copy2(library, target / library.name)
    return target


class HotPathTests(SynchronousTestCase):
    """The environment variable, the stale-build guard, and what is reported."""

    def setUp(self) -> None:
        self.env = {k: v for k, v in clean_env().items() if k != NO_EXTENSIONS}

    def test_forced_pure(self) -> None:
        """With TWISTED_REQRESP_NO_EXTENSIONS=1 the package imports the .py sources, and says so."""
        probed = _probe({**self.env, NO_EXTENSIONS: "1"})
        self.assertEqual(
            (probed["compiled"], probed["reason"], probed["warnings"], probed["works"]),
            (False, f"hot path: pure Python ({NO_EXTENSIONS} is set)", [], True),
        )
        for path in probed["files"]:  # type: ignore[attr-defined]
            self.assertTrue(path.endswith(".py"), path)

    def test_zero_does_not_force(self) -> None:
        """TWISTED_REQRESP_NO_EXTENSIONS=0 chooses as if it were unset."""
        self.assertEqual(
            _probe({**self.env, NO_EXTENSIONS: "0"})["compiled"], _probe(self.env)["compiled"]
        )

    def test_default(self) -> None:
        """Without the variable the compiled modules are imported where they are installed."""
        probed = _probe(self.env)
        self.assertEqual(probed["compiled"], _built())
        self.assertEqual(probed["warnings"], [])
        self.assertTrue(probed["works"])
        if _built():
            self.assertEqual(probed["reason"], "hot path: compiled (mypyc)")
            for path in probed["files"]:  # type: ignore[attr-defined]
                self.assertFalse(path.endswith(".py"), path)
        if os.environ.get("CI") and not os.environ.get(NO_EXTENSIONS):
            self.assertTrue(probed["compiled"], "CI must test the compiled hot path")

    def test_not_built(self) -> None:
        """A package without the compiled modules runs pure Python, silently, and says why."""
        with tempfile.TemporaryDirectory() as scratch:
            root = _copy_package(Path(scratch))
            for path in [*root.rglob("*.so"), *root.rglob("*.pyd")]:
                path.unlink()
            probed = _probe(self.env, root)
        self.assertEqual(
            (probed["compiled"], probed["reason"], probed["warnings"], probed["works"]),
            (False, "hot path: pure Python (not compiled at install)", [], True),
        )

    def test_stale_build(self) -> None:
        """A compiled module older than its source is not imported: the source is, with a
        warning that says how to rebuild."""
        if not _built():
            self.skipTest("the compiled modules are not built here")
        with tempfile.TemporaryDirectory() as scratch:
            root = _copy_package(Path(scratch))
            source = root / "twisted_reqresp" / "_core" / "binary.py"
            later = time.time() + 60
            os.utime(source, (later, later))
            probed = _probe(self.env, root)
        self.assertFalse(probed["compiled"])
        self.assertIn("older than their sources", str(probed["reason"]))
        (warning,) = probed["warnings"]  # type: ignore[misc]
        self.assertIn("binary.py is newer than its compiled module", warning)
        self.assertIn("pip install -e .", warning)
        for path in probed["files"]:  # type: ignore[attr-defined]
            self.assertTrue(path.endswith(".py"), path)

    def test_version_forced_pure(self) -> None:
        """reqresp --version says the pure-Python path is forced when the variable is set."""
        result = subprocess.run(
            [str(BIN / "reqresp"), "--version"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env={**self.env, NO_EXTENSIONS: "1"},
            check=True,
        )
        self.assertTrue(
            result.stdout.endswith(f"hot path: pure Python ({NO_EXTENSIONS} is set)\n"),
            result.stdout,
        )


class ZipImportTests(SynchronousTestCase):
    """The package imports from a zip archive (zipimport: zipapps, pex), as it did before
    the compiled path, whether or not the pure-Python path is forced (found in review)."""

    def _probe_zip(self, env: dict[str, str]) -> dict[str, object]:
        scratch = Path(tempfile.mkdtemp(prefix="reqresp-zip-"))
        self.addCleanup(shutil.rmtree, scratch, True)
        archive = scratch / "app.zip"
        with zipfile.ZipFile(archive, "w") as zipped:
            for path in PACKAGE.rglob("*.py"):
                zipped.write(path, path.relative_to(PACKAGE.parent).as_posix())
        return _probe(env, archive)

    def test_from_a_zip(self) -> None:
        """From a zip of the sources, the core imports and works, and the path is pure Python."""
        env = {k: v for k, v in clean_env().items() if k != NO_EXTENSIONS}
        probed = self._probe_zip(env)
        self.assertEqual(
            (probed["compiled"], probed["reason"], probed["works"]),
            (False, "hot path: pure Python (not compiled at install)", True),
        )
        for path in probed["files"]:  # type: ignore[attr-defined]
            self.assertIn("app.zip", path)

    def test_from_a_zip_forced_pure(self) -> None:
        """TWISTED_REQRESP_NO_EXTENSIONS=1 does not break an import from a zip."""
        env = {**clean_env(), NO_EXTENSIONS: "1"}
        probed = self._probe_zip(env)
        self.assertEqual((probed["compiled"], probed["works"]), (False, True))
