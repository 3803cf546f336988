"""
What users install: the wheel's contents (the twistd plugin without any
``twisted/__init__.py`` that would shadow Twisted, ``py.typed``, the console
script) and the plugin as twistd sees it.

Building a wheel takes seconds (an isolated build environment), so it is done
once for the module, from a copy of the source tree so that the build leaves
nothing behind in the checkout.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

#: Bounds on the subprocesses, so a stuck build fails the test instead of CI.
BUILD_TIMEOUT = 600
COMMAND_TIMEOUT = 60

#: The directories a build reads; with the top-level files, all it needs.
#: (Copying the whole checkout would also copy caches and fuzzing corpora
#: that other processes may be changing.)
_PACKAGE_DIRS = ("twisted_reqresp", "twisted")
_NOT_SOURCE = shutil.ignore_patterns("__pycache__", "*.pyc", "dropin.cache")


def _copy_source(target: Path) -> None:
    target.mkdir()
    for entry in ROOT.iterdir():
        if entry.is_file() and not entry.name.startswith("."):
            shutil.copy2(entry, target / entry.name)
    for name in _PACKAGE_DIRS:
        shutil.copytree(ROOT / name, target / name, ignore=_NOT_SOURCE)


def _run(*argv: str | Path, cwd: Path | None = None, timeout: float = COMMAND_TIMEOUT) -> str:
    result = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{argv} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result.stdout + result.stderr


class WheelTests(SynchronousTestCase):
    """The built wheel holds the package, the plugin, and nothing that shadows Twisted."""

    names: list[str]
    entry_points: str
    _tmp: str

    @classmethod
    def setUpClass(cls) -> None:
        cls._tmp = tempfile.mkdtemp(prefix="reqresp-wheel-")
        try:
            source = Path(cls._tmp, "src")
            _copy_source(source)
            out = Path(cls._tmp, "dist")
            _run(
                sys.executable,
                "-m",
                "build",
                "--wheel",
                "--outdir",
                out,
                source,
                timeout=BUILD_TIMEOUT,
            )
            (wheel,) = out.glob("*.whl")
            with zipfile.ZipFile(wheel) as archive:
                cls.names = archive.namelist()
                (entry_points,) = [
                    n for n in cls.names if n.endswith(".dist-info/entry_points.txt")
                ]
                cls.entry_points = archive.read(entry_points).decode()
        except BaseException:
            shutil.rmtree(cls._tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls._tmp, ignore_errors=True)

    def test_plugin(self) -> None:
        """The twistd plugin module is in the wheel."""
        self.assertIn("twisted/plugins/twisted_reqresp.py", self.names)

    def test_no_twisted_package_files(self) -> None:
        """Neither twisted/__init__.py nor twisted/plugins/__init__.py is shipped."""
        self.assertNotIn("twisted/__init__.py", self.names)
        self.assertNotIn("twisted/plugins/__init__.py", self.names)
        self.assertEqual(
            [n for n in self.names if n.startswith("twisted/")],
            ["twisted/plugins/twisted_reqresp.py"],
        )

    def test_py_typed(self) -> None:
        """The py.typed marker is shipped, so type checkers use the annotations."""
        self.assertIn("twisted_reqresp/py.typed", self.names)

    def test_modules(self) -> None:
        """Every module of the source package is shipped, and no tests."""
        shipped = {n for n in self.names if n.startswith("twisted_reqresp/")}
        for path in (ROOT / "twisted_reqresp").rglob("*.py"):
            name = path.relative_to(ROOT).as_posix()
            self.assertIn(name, shipped)
        self.assertFalse([n for n in self.names if n.startswith("tests/")])

    def test_console_script(self) -> None:
        """The wheel declares the reqresp console script."""
        parser = configparser.ConfigParser()
        parser.read_string(self.entry_points)
        self.assertEqual(parser["console_scripts"]["reqresp"], "twisted_reqresp._app.cli:main")


class InstalledTests(SynchronousTestCase):
    """The installed commands find the plugin (run from an unrelated directory)."""

    def _command(self, name: str) -> Path:
        path = BIN / name
        if not path.exists():
            self.fail(f"{path} is missing: install the project (pip install -e '.[test]')")
        return path

    def test_twistd_lists_plugin(self) -> None:
        """twistd --help lists the reqresp subcommand."""
        output = _run(self._command("twistd"), "--help", cwd=Path(tempfile.gettempdir()))
        self.assertIn("reqresp", output.split())

    def test_twist_lists_plugin(self) -> None:
        """twist --help lists the reqresp plugin too."""
        output = _run(self._command("twist"), "--help", cwd=Path(tempfile.gettempdir()))
        self.assertIn("reqresp", output.split())

    def test_twistd_reqresp_help(self) -> None:
        """twistd reqresp --help shows the plugin's own options."""
        output = _run(self._command("twistd"), "reqresp", "--help", cwd=Path(tempfile.gettempdir()))
        for option in ("--port", "--responder", "--wire", "--max-frame-size"):
            self.assertIn(option, output)

    def test_console_script_runs(self) -> None:
        """The reqresp console script is installed and prints its help."""
        output = _run(self._command("reqresp"), "--help", cwd=Path(tempfile.gettempdir()))
        self.assertIn("exit status", output)

    def test_plugin_is_one_statement(self) -> None:
        """The plugin file imports only ServiceMaker and makes one ServiceMaker."""
        import ast

        source = (ROOT / "twisted" / "plugins" / "twisted_reqresp.py").read_text()
        body = ast.parse(source).body
        self.assertEqual([type(node) for node in body], [ast.ImportFrom, ast.Assign])
        self.assertFalse((ROOT / "twisted" / "__init__.py").exists())
        self.assertFalse((ROOT / "twisted" / "plugins" / "__init__.py").exists())
        self.assertTrue(os.path.isfile(ROOT / "twisted_reqresp" / "py.typed"))
