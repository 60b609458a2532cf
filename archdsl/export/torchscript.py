"""TorchScript: ``torch.jit.script`` where it succeeds, ``torch.jit.trace`` where it does not.

archdsl's own modules (``nn.Sequential`` and the two joins of the torch backend) script, so a
trace is a fallback for what scripting may refuse in future layer kinds; the output says which.
TorchScript is deprecated upstream in favour of ``torch.export``; the ONNX export goes that way.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

from archdsl.atomic import write_bytes_atomic
from archdsl.errors import BackendError


def write_torchscript(module, input_shape: tuple[int, ...], path: Path) -> str:
    """Save ``module`` (in eval mode) as TorchScript at ``path``; ``scripted`` or ``traced``."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+` is deprecated", category=DeprecationWarning)
        try:
            with _sequences_ordered(module):
                compiled, how = torch.jit.script(module), "scripted"
        except Exception as scripting:  # torch.jit raises several kinds of frontend errors
            try:
                compiled, how = torch.jit.trace(module, torch.zeros(2, *input_shape)), "traced"
            except Exception as err:
                raise BackendError(f"TorchScript failed: scripting said {scripting}; tracing said {err}") from None
            how += f" (scripting failed: {type(scripting).__name__})"
        # Serialised in memory: on a full disk, torch.jit.save to a file aborts the whole process (its
        # writer's destructor throws), where a write of bytes fails with the file system's own error.
        buffer = io.BytesIO()
        torch.jit.save(compiled, buffer)
    write_bytes_atomic(path, buffer.getvalue())
    return how


@contextlib.contextmanager
def _sequences_ordered(module):
    """Each ``nn.Sequential`` of ``module`` with a constant that names its layers in order, while it is scripted.

    TorchScript gives one compiled type to the modules of a class whose constants, attributes and submodules (their
    names and types, compared as sorted lists) are the same, and an ``nn.Sequential``'s forward runs its layers in
    the order of the first of them: ``add [ linear 8; relu | id ]; add [ relu; linear 8 | id ]`` would run
    ``linear, relu`` twice, and Swin V2's ``linear; gelu; linear; ln`` scripted after Swin's ``ln; linear; gelu;
    linear`` (in one process, the type store is global) would normalise first. With the order a constant, such
    sequences differ."""
    import torch

    sequences = [m for m in module.modules() if type(m) is torch.nn.Sequential]
    for sequence in sequences:
        sequence.__constants__ = ["layer_order"]
        sequence.layer_order = tuple(sequence._modules)
    try:
        yield
    finally:
        for sequence in sequences:
            del sequence.__constants__, sequence.layer_order
