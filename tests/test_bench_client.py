"""
``benchmarks/client_hotpath.py`` feeds each client answers it encodes
itself, by request id: these tests run each client's closed loops a few
rounds, so that the benchmark keeps measuring calls that are answered.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from twisted.trial.unittest import SynchronousTestCase

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load() -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(
            "client_hotpath", BENCHMARKS / "client_hotpath.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


class ClientHotpathTests(SynchronousTestCase):
    """Each client of the in-process client benchmark completes its closed loops."""

    def test_every_client_completes_its_loops(self) -> None:
        """Our Client, our Channel and AMP each get every answer of 3 reads of 1 and of
        4 calls, each answer's callback making the next call."""
        bench = _load()
        for name, make in bench.CLIENTS.items():
            for window in (1, 4):
                with self.subTest(client=name, window=window):
                    run = make(window, 3, None)
                    self.assertEqual(run(), 3 * window)
