"""
The sans-IO wire core: bytes in, events out; commands in, bytes out.

Nothing here does I/O or imports Twisted: the connection state machine
(``connection``), the binary and line wire formats and their detection
(``binary``, ``line``, ``detect``, ``auto``), the events, status codes,
errors and limits, and the values a responder sees (``call``).  Each module
may import only modules of this package.
"""

# First: chooses the compiled modules or their .py sources, before any of
# them is imported (see hotpath.py).
from . import hotpath as hotpath
