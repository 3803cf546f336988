"""
What users install: the wheel's contents (the twistd plugin without any
``twisted/__init__.py`` that would shadow Twisted, ``py.typed``, the console
script, the licence and the classifiers) and the plugin as twistd sees it;
and what packagers get: an sdist that holds its own test suite, which runs
from the unpacked sdist.

Building takes seconds (an isolated build environment), so each build is done
once for its class, from a copy of the source tree so that the build leaves
nothing behind in the checkout.
"""

from __future__ import annotations

import configparser
import email
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp._core.hotpath import COMPILED_MODULES, NO_EXTENSIONS

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

#: Bounds on the subprocesses, so a stuck build fails the test instead of CI.
BUILD_TIMEOUT = 600
COMMAND_TIMEOUT = 60

#: The directories a wheel build reads; with the top-level files, all it
#: needs.  (Copying the whole checkout would also copy caches and fuzzing
#: corpora that other processes may be changing.)
_PACKAGE_DIRS = ("twisted_reqresp", "twisted")
#: The directories MANIFEST.in adds to the sdist (``examples`` may not exist).
_SDIST_DIRS = (*_PACKAGE_DIRS, ".ci", "tests", "docs", "benchmarks", "fuzz", "examples")
_NOT_SOURCE = shutil.ignore_patterns(
    "__pycache__",
    "*.pyc",
    "dropin.cache",
    "corpus*",
    "_trial_temp*",
    ".hypothesis",
    "*.so",
    "*.pyd",
)
#: What an in-place build of the compiled hot path leaves in the checkout.
_COMPILED_SUFFIXES = (".so", ".pyd")

#: Tests run from the unpacked sdist: the wire vectors and the spec they
#: check (tests/vectors, docs/protocol.md), the exports and the api.md that
#: lists them, the layering contract (every module of the package), and the
#: examples of the README and docs (with .ci/run).
SDIST_TESTS = (
    "tests/test_vectors.py",
    "tests/test_exports.py",
    "tests/test_layering.py",
    "tests/test_examples.py",
)
#: Seconds those tests may take, from the unpacked sdist.
SDIST_TEST_TIMEOUT = 300


def _copy_source(target: Path, dirs: tuple[str, ...] = _PACKAGE_DIRS) -> None:
    target.mkdir()
    for entry in ROOT.iterdir():
        if (
            entry.is_file()
            and not entry.name.startswith(".")
            and not entry.name.endswith(_COMPILED_SUFFIXES)
        ):
            shutil.copy2(entry, target / entry.name)
    for name in dirs:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, target / name, ignore=_NOT_SOURCE)


def _source_files(directory: str) -> list[str]:
    """:returns: the files under ``directory`` of the checkout that belong in the sdist."""
    found = []
    for path in (ROOT / directory).rglob("*"):
        parts = path.relative_to(ROOT).parts
        if not path.is_file() or path.suffix in (".pyc", *_COMPILED_SUFFIXES):
            continue
        if path.name == "dropin.cache":
            continue
        if any(p == "__pycache__" or p.startswith(("corpus", "_trial_temp", ".")) for p in parts):
            continue
        found.append(path.relative_to(ROOT).as_posix())
    return found


def _run(
    *argv: str | Path,
    cwd: Path | None = None,
    timeout: float = COMMAND_TIMEOUT,
    env: dict[str, str] | None = None,
) -> str:
    result = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
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
    metadata: email.message.Message
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
                # Built as users build it, whichever path this run tests.
                env={k: v for k, v in os.environ.items() if k != NO_EXTENSIONS},
            )
            (wheel,) = out.glob("*.whl")
            with zipfile.ZipFile(wheel) as archive:
                cls.names = archive.namelist()
                (entry_points,) = [
                    n for n in cls.names if n.endswith(".dist-info/entry_points.txt")
                ]
                cls.entry_points = archive.read(entry_points).decode()
                (metadata,) = [n for n in cls.names if n.endswith(".dist-info/METADATA")]
                cls.metadata = email.message_from_bytes(archive.read(metadata))
        except BaseException:
            shutil.rmtree(cls._tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls._tmp, ignore_errors=True)

    def test_plugin(self) -> None:
        """The twistd plugin module and the mtls: endpoint plugin are in the wheel."""
        self.assertIn("twisted/plugins/twisted_reqresp.py", self.names)
        self.assertIn("twisted/plugins/twisted_reqresp_mtls.py", self.names)

    def test_no_twisted_package_files(self) -> None:
        """Neither twisted/__init__.py nor twisted/plugins/__init__.py is shipped."""
        self.assertNotIn("twisted/__init__.py", self.names)
        self.assertNotIn("twisted/plugins/__init__.py", self.names)
        self.assertEqual(
            sorted(n for n in self.names if n.startswith("twisted/")),
            ["twisted/plugins/twisted_reqresp.py", "twisted/plugins/twisted_reqresp_mtls.py"],
        )

    def test_py_typed(self) -> None:
        """The py.typed marker is shipped, so type checkers use the annotations."""
        self.assertIn("twisted_reqresp/py.typed", self.names)

    def test_compiled_modules(self) -> None:
        """Built with a C compiler, the wheel holds the compiled hot path beside its .py files."""
        if not _can_compile():
            self.skipTest("no C compiler or no Python headers here")
        for name in COMPILED_MODULES:
            stem = "/".join(name.split("."))
            self.assertIn(f"{stem}.py", self.names)
            self.assertTrue(
                [n for n in self.names if n.startswith(f"{stem}.") and n.endswith(".so")],
                f"{name} is not compiled in the wheel",
            )
        self.assertTrue([n for n in self.names if n.startswith("twisted_reqresp__mypyc.")])

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

    def test_license(self) -> None:
        """The MIT licence is declared (an SPDX expression) and its file is in the wheel."""
        self.assertEqual(self.metadata["License-Expression"], "MIT")
        self.assertEqual(self.metadata.get_all("License-File"), ["LICENSE"])
        (licence,) = [n for n in self.names if n.endswith(".dist-info/licenses/LICENSE")]
        self.assertTrue(licence)
        self.assertIn("Copyright (c) 2026 the twisted-reqresp developers", _LICENSE.read_text())

    def test_classifiers(self) -> None:
        """The classifiers name Twisted, the Python versions, typing, the OS and the status."""
        classifiers = self.metadata.get_all("Classifier")
        for expected in (
            "Framework :: Twisted",
            "Programming Language :: Python :: 3.11",
            "Programming Language :: Python :: 3.12",
            "Programming Language :: Python :: 3.13",
            "Typing :: Typed",
            "Operating System :: POSIX",
        ):
            self.assertIn(expected, classifiers)
        self.assertTrue([c for c in classifiers if c.startswith("Development Status :: ")])
        self.assertTrue([c for c in classifiers if c.startswith("Topic :: ")])
        # PEP 639: a licence classifier beside License-Expression is refused by PyPI.
        self.assertFalse([c for c in classifiers if c.startswith("License :: ")])

    def test_extras(self) -> None:
        """The extras the README names exist."""
        extras = self.metadata.get_all("Provides-Extra")
        readme = (ROOT / "README.md").read_text()
        for extra in ("tls", "test"):
            self.assertIn(extra, extras)
            self.assertIn(f"[{extra}]", readme)


_LICENSE = ROOT / "LICENSE"


def _can_compile() -> bool:
    """:returns: whether this machine has a C compiler and Python's headers."""
    include = Path(sysconfig.get_paths()["include"], "Python.h")
    return shutil.which(os.environ.get("CC", "cc")) is not None and include.is_file()


class NoCompilerTests(SynchronousTestCase):
    """Without a working C compiler the install is pure Python, works, and says nothing."""

    def test_pure_wheel(self) -> None:
        """A wheel built with CC=/bin/false is pure Python, built without a word of warning,
        and its package works on the pure-Python path."""
        with tempfile.TemporaryDirectory(prefix="reqresp-nocc-") as tmp:
            source = Path(tmp, "src")
            _copy_source(source)
            out = Path(tmp, "dist")
            env = {k: v for k, v in os.environ.items() if k != NO_EXTENSIONS}
            result = subprocess.run(
                [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(source)],
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT,
                env={**env, "CC": "/bin/false"},
                check=False,
            )
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            (wheel,) = out.glob("*.whl")
            self.assertTrue(wheel.name.endswith("-py3-none-any.whl"), wheel.name)
            for text in (result.stdout, result.stderr):
                self.assertNotRegex(text.lower(), r"mypyc|gcc|/bin/false|error:", text)
            with zipfile.ZipFile(wheel) as archive:
                names = archive.namelist()
            self.assertFalse([n for n in names if n.endswith(_COMPILED_SUFFIXES)])
            target = Path(tmp, "site")
            _run(
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--no-index",
                "--target",
                target,
                wheel,
                timeout=BUILD_TIMEOUT,
            )
            probe = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import twisted_reqresp as t; from twisted_reqresp._core import hotpath; "
                    "from twisted_reqresp.wire import Connection, Role; "
                    "assert Connection(Role.CLIENT, t.BINARY).data_to_send(); "
                    "print(t.__file__, t.compiled, hotpath.reason())",
                ],
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
                env={**env, "PYTHONPATH": str(target)},
                cwd=tmp,
                check=False,
            )
            self.assertEqual(probe.returncode, 0, probe.stderr)
            self.assertEqual(probe.stderr, "")
            where, compiled, reason = probe.stdout.strip().split(" ", 2)
            self.assertTrue(Path(where).is_relative_to(target), where)
            self.assertEqual(
                (compiled, reason), ("False", "hot path: pure Python (not compiled at install)")
            )


class SdistTests(SynchronousTestCase):
    """The sdist holds its test suite and docs, and tests run from it unpacked."""

    names: list[str]
    unpacked: Path
    _tmp: str

    @classmethod
    def setUpClass(cls) -> None:
        cls._tmp = tempfile.mkdtemp(prefix="reqresp-sdist-")
        try:
            source = Path(cls._tmp, "src")
            _copy_source(source, _SDIST_DIRS)
            out = Path(cls._tmp, "dist")
            _run(
                sys.executable,
                "-m",
                "build",
                "--sdist",
                "--outdir",
                out,
                source,
                timeout=BUILD_TIMEOUT,
            )
            (sdist,) = out.glob("*.tar.gz")
            unpack = Path(cls._tmp, "unpacked")
            with tarfile.open(sdist) as archive:
                (top,) = {Path(n).parts[0] for n in archive.getnames()}
                cls.names = [
                    Path(n).relative_to(top).as_posix() for n in archive.getnames() if n != top
                ]
                archive.extractall(unpack, filter="data")
            cls.unpacked = unpack / top
        except BaseException:
            shutil.rmtree(cls._tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls._tmp, ignore_errors=True)

    def test_top_level_files(self) -> None:
        """The licence, README, build configuration, MANIFEST.in and the CI script are in it."""
        for name in (
            "LICENSE",
            "README.md",
            "pyproject.toml",
            "setup.cfg",
            "setup.py",
            "MANIFEST.in",
            ".ci/run",
        ):
            self.assertIn(name, self.names)

    def test_everything_the_tests_need(self) -> None:
        """Every file of the package, tests, docs, benchmarks, fuzz and examples is in it."""
        for directory in _SDIST_DIRS:
            if (ROOT / directory).is_dir():
                for name in _source_files(directory):
                    self.assertIn(name, self.names)
        self.assertIn("tests/vectors/binary.json", self.names)

    def test_no_build_debris(self) -> None:
        """No bytecode, plugin cache, virtualenv or fuzzing corpus is shipped."""
        for name in self.names:
            parts = name.split("/")
            self.assertNotIn("__pycache__", parts, name)
            self.assertFalse(name.endswith((".pyc", "dropin.cache")), name)
            self.assertNotIn(".venv", parts, name)
            self.assertFalse(name.endswith(_COMPILED_SUFFIXES), name)
            self.assertFalse(any(p.startswith("corpus") for p in parts), name)

    def test_tests_run_from_sdist(self) -> None:
        """A few test modules pass when run from the unpacked sdist, against its own code."""
        # ``python -m`` puts the working directory first on sys.path, so the
        # unpacked package is imported, not the one installed for this run.
        where = _run(
            sys.executable,
            "-c",
            "import twisted_reqresp; print(twisted_reqresp.__file__)",
            cwd=self.unpacked,
        )
        self.assertTrue(Path(where.strip()).is_relative_to(self.unpacked), where)
        output = _run(
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *SDIST_TESTS,
            cwd=self.unpacked,
            timeout=SDIST_TEST_TIMEOUT,
        )
        self.assertRegex(output, r"\b\d+ passed\b")
        self.assertNotRegex(output, r"\b(failed|error)")


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
        for option in ("--port", "--responder", "--app-dir", "--wire", "--max-frame-size"):
            self.assertIn(option, output)

    def test_console_script_runs(self) -> None:
        """The reqresp console script is installed and prints its help."""
        output = _run(self._command("reqresp"), "--help", cwd=Path(tempfile.gettempdir()))
        self.assertIn("exit status", output)

    def test_plugin_is_one_statement(self) -> None:
        """Each plugin file imports one name and makes one object from it."""
        import ast

        plugins = ROOT / "twisted" / "plugins"
        expected = {
            "twisted_reqresp.py": ("twisted.application.service", "ServiceMaker"),
            "twisted_reqresp_mtls.py": ("twisted_reqresp._app.mtls", "MutualTLSServerParser"),
        }
        self.assertEqual(sorted(p.name for p in plugins.glob("*.py")), sorted(expected))
        for name, (module, imported) in expected.items():
            body = ast.parse((plugins / name).read_text()).body
            self.assertEqual([type(node) for node in body], [ast.ImportFrom, ast.Assign], name)
            imports, made = body
            assert isinstance(imports, ast.ImportFrom) and isinstance(made, ast.Assign)
            self.assertEqual(
                (imports.module, [a.name for a in imports.names]), (module, [imported])
            )
            assert isinstance(made.value, ast.Call) and isinstance(made.value.func, ast.Name)
            self.assertEqual(made.value.func.id, imported)
        self.assertFalse((ROOT / "twisted" / "__init__.py").exists())
        self.assertFalse((ROOT / "twisted" / "plugins" / "__init__.py").exists())
        self.assertTrue(os.path.isfile(ROOT / "twisted_reqresp" / "py.typed"))
