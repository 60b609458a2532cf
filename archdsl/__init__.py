"""archdsl: a declarative architecture DSL compiler for PyTorch.

    >>> import archdsl
    >>> net = archdsl.load("specs/vgg16.arch", in_channels=3, classes=1000)
    >>> net.params
    138357544
    >>> module = net.build()

Importing archdsl does not import torch; ``build()`` does.
"""

from archdsl.compiled import CompiledNetwork, load, loads
from archdsl.errors import ArchError
from archdsl.resolve import Limits

__all__ = ["ArchError", "CompiledNetwork", "Limits", "load", "loads"]
