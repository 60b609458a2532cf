"""Which optional part of archdsl brings which package, so that a command needing one that is not
installed says what to install instead of ending in a ModuleNotFoundError traceback.

``pip install archdsl`` brings what compile, check, graph, fmt, compare and the Python export need;
training, building modules and the torch-based exports need the ``train`` extra, ONNX the ``export``
extra, the language server the ``lsp`` extra (pyproject.toml declares them; docs/install.md explains them).

    $ archdsl train specs/lenet.arch          # where torch is not installed
    archdsl: error: torch is not installed; it comes with archdsl's 'train' extra
      hint: pip install 'archdsl[train]' (for the CPU-only torch wheel, see https://...)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from archdsl.errors import UsageError

INSTALL_DOC = "https://github.com/archdsl/archdsl/blob/main/docs/install.md"

# A missing top-level module -> the extra that brings it.
EXTRA_OF = {
    "torch": "train",
    "numpy": "train",
    "safetensors": "train",
    "matplotlib": "train",
    "PIL": "train",
    "rich": "train",
    "tensorboard": "train",
    "onnx": "export",
    "onnxscript": "export",
    "pygls": "lsp",
    "lsprotocol": "lsp",
}


def missing_extra(err: ModuleNotFoundError) -> UsageError | None:
    """The error that names the extra bringing the module ``err`` misses; None for any other module
    (a missing module that no extra brings is a broken installation or a bug, not the user's to fix)."""
    module = (err.name or "").partition(".")[0]
    extra = EXTRA_OF.get(module)
    if extra is None:
        return None
    hint = f"pip install 'archdsl[{extra}]'"
    if extra == "train":  # it brings torch, whose build is best picked first
        hint += f" (for the CPU-only torch wheel, see {INSTALL_DOC})"
    return UsageError(f"{module} is not installed; it comes with archdsl's '{extra}' extra", hint=hint)


@contextlib.contextmanager
def required() -> Iterator[None]:
    """Turn the ModuleNotFoundError of a package that an extra brings into that one UsageError."""
    try:
        yield
    except ModuleNotFoundError as err:
        error = missing_extra(err)
        if error is None:
            raise
        raise error from None
