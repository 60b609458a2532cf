"""TorchScript: ``torch.jit.script`` where it succeeds, ``torch.jit.trace`` where it does not.

archdsl's own modules (``nn.Sequential`` and the two joins of the torch backend) script, so a
trace is a fallback for what scripting may refuse in future layer kinds; the output says which.
TorchScript is deprecated upstream in favour of ``torch.export``; the ONNX export goes that way.
"""

from __future__ import annotations

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
