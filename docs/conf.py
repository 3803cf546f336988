"""
Sphinx configuration: the Markdown under docs/ (MyST) plus an API reference
generated from the public modules' docstrings.

Build with warnings as errors, as CI does (``.ci/run``)::

    .venv/bin/pip install -e '.[docs]' --config-settings editable_mode=compat
    .venv/bin/sphinx-build -E -n -W --keep-going -b html docs build/docs

The build needs no network: intersphinx reads Python's inventory from
Debian's python3.11-doc package and Twisted's from an inventory generated
from the installed Twisted (``_ext/twisted_inventory.py``).
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
# The reference is read from the .py sources: mypyc keeps no docstrings, so
# autodoc must not import the compiled hot path (docs/performance.md,
# "Compiled hot path").
os.environ["TWISTED_REQRESP_NO_EXTENSIONS"] = "1"

import twisted_inventory  # noqa: E402
from sphinx.application import Sphinx  # noqa: E402
from sphinx.config import Config  # noqa: E402

project = "twisted-reqresp"
author = "the twisted-reqresp authors"
copyright = "the twisted-reqresp authors"
release = version = importlib.metadata.version("twisted-reqresp")

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "repoze.sphinx.autointerface",
    "reqresp_refs",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext"]

# A broken link between the documents, or to a heading, is a warning, so
# `-W` fails the build on it.  Headings get anchors down to ####, as
# GitHub gives them, so that `twistd.md#tls` links work in both places.
myst_heading_anchors = 4
myst_enable_extensions = ["deflist"]

# Every cross-reference must resolve (`-n`): a reference to an object that
# is not documented is an error, not silently plain text.
nitpicky = True
# Private classes that public signatures mention: what a reader gets from
# `ConnectedPair.server`, `Client.protocol` or `ServerFactory.buildProtocol`,
# and the type variables of annotations.  They are not part of the public
# API, so they have no entry to link to.
nitpick_ignore_regex = [
    (r"py:.*", r"(twisted_reqresp\._adapters\.\w+\.)?(ClientProtocol|ServerProtocol)(\.\w+)?"),
    (r"py:class", r"twisted_reqresp\._adapters\.router\._F"),
    # Call's private fields: its clock, and its state shared between copies.
    (r"py:class", r"twisted_reqresp\._core\.call\.(_Clock|Cancellation)"),
    # A typed service's type variables, its answer alias, and the private
    # base of the three streaming declarations.
    (r"py:.*", r"(twisted_reqresp\._adapters\.services\.)?(ReqT|RespT|Answer|_Streaming)"),
    # The private base through which ServerStream and StreamingCall share
    # their reading and writing methods (documented on each of them), and
    # the reader and writer in their constructors' signatures.
    (r"py:.*", r"(twisted_reqresp\._adapters\.streams\.)?(_Streams|MessageReader|MessageWriter|SendT|RecvT)"),
    # ServerMetrics's registry and resource: prometheus_client publishes no
    # Sphinx inventory, and the resource is what resource() returns.
    (r"py:class", r"(prometheus_client\.)?CollectorRegistry"),
    (r"py:class", r"twisted_reqresp\._adapters\.metrics\.MetricsResource"),
]

autodoc_member_order = "bysource"
# Defaults as written in the source (`limits=DEFAULT_LIMITS`), not the repr
# of their value.
autodoc_preserve_defaults = True
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_default_options = {"members": True, "show-inheritance": True}

# Python's inventory ships in Debian's python3.11-doc (`apt-get install
# python3.11-doc`); Twisted's is written into the build directory from the
# installed Twisted's source, with the URLs pydoctor gives its pages.  A
# missing inventory file is an error, not a quiet fallback to the network.
# REQRESP_PYTHON_INVENTORY names another copy (on a system without Debian's
# package, any Python 3.11 objects.inv).
PYTHON_INVENTORY = Path(
    os.environ.get("REQRESP_PYTHON_INVENTORY", "/usr/share/doc/python3.11/html/objects.inv")
)
if not PYTHON_INVENTORY.is_file():
    raise RuntimeError(
        f"{PYTHON_INVENTORY} is missing: apt-get install python3.11-doc, or set"
        " REQRESP_PYTHON_INVENTORY (the docs build reads Python's inventory offline)"
    )
intersphinx_mapping = {
    "python": ("https://docs.python.org/3.11", str(PYTHON_INVENTORY)),
    # The file is written by `_twisted_inventory` below, before intersphinx
    # reads the mapping.
    "twisted": (twisted_inventory.BASE_URL, None),
}

html_theme = "alabaster"
html_title = "twisted-reqresp"


def _twisted_inventory(app: Sphinx, config: Config) -> None:
    """Write Twisted's inventory into the build tree and point intersphinx at it."""
    path = twisted_inventory.write(Path(app.doctreedir) / "twisted-objects.inv")
    config.intersphinx_mapping["twisted"] = (twisted_inventory.BASE_URL, str(path))


def setup(app: Sphinx) -> None:
    """Generate Twisted's inventory before intersphinx reads its mapping (priority 800)."""
    app.connect("config-inited", _twisted_inventory, priority=100)
