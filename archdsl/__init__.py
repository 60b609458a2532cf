"""archdsl: a declarative architecture DSL compiler for PyTorch.

    >>> import archdsl
    >>> net = archdsl.load("specs/vgg16.arch", in_channels=3, classes=1000)
    >>> net.params
    138357544
    >>> module = net.build()

Importing archdsl does not import torch; ``build()`` does. ``archdsl.__version__`` is the installed
version (pyproject.toml's, through the package's metadata).
"""

from archdsl.compiled import CompiledNetwork, load, loads
from archdsl.errors import ArchError
from archdsl.resolve import Limits

__all__ = ["ArchError", "CompiledNetwork", "Limits", "load", "loads"]


def load_ipython_extension(ipython) -> None:
    """``%load_ext archdsl`` in IPython or Jupyter: the ``%%arch`` cell magic (archdsl/notebook/magic.py)."""
    from archdsl.notebook import load_ipython_extension

    load_ipython_extension(ipython)


def __getattr__(name: str):
    # Looked up when asked for: importlib.metadata would cost every `archdsl check` its import time.
    if name == "__version__":
        from importlib.metadata import version

        return version("archdsl")
    raise AttributeError(f"module 'archdsl' has no attribute '{name}'")
