"""
Examples built on the public API of twisted-reqresp only (a test checks
that nothing here imports a private ``twisted_reqresp._*`` module).

Run from the repository root, so that ``examples`` is importable.
"""
