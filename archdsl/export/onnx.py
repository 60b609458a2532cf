"""ONNX through ``torch.onnx.export`` (the torch.export-based exporter), checked with ``onnx.checker``.

The batch size stays dynamic; every other size is the network's. A model with more than 100 MiB of
weights keeps them in ``NAME.onnx.data`` beside it, as ONNX's external-data convention has it (and
onnxruntime reads): protobuf refuses messages over 2 GiB, and below that, serialising the weights
into the message costs four times writing them raw (VGG-16: 5.6 s against 1.4 s for its 537 MB).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

from archdsl.atomic import install_file, resolve_output
from archdsl.errors import BackendError, UsageError
from archdsl.extras import required
from archdsl.summary import BYTES_PER_VALUE

# Weights over this go to NAME.onnx.data (see above).
EXTERNAL_DATA_BYTES = 100 * 2**20


def write_onnx(module, input_shape: tuple[int, ...], path: Path, params: int,
               metadata: dict[str, str] | None = None) -> str:
    """Export ``module`` (in eval mode) for inputs of ``input_shape`` to ``path``, with ``metadata`` among the
    model's metadata_props (its ``archdsl.input``, the input's description, as the doc_string too); how it
    was written."""
    with required():
        import onnx
        import onnxscript  # noqa: F401 (torch.onnx.export needs it, and says so less clearly)
    import torch

    example = torch.zeros(2, *input_shape)
    batch = torch.export.Dim("batch", min=1)
    with _quiet():
        try:
            program = torch.onnx.export(module, (example,), dynamo=True, verbose=False,
                                        input_names=["input"], output_names=["output"],
                                        dynamic_shapes=({0: batch},))
        except Exception as err:  # the exporter raises many kinds; all mean the same to a user
            raise BackendError(f"torch.onnx.export failed: {type(err).__name__}: {err}") from None
    if metadata:
        program.model.metadata_props.update(metadata)
        program.model.doc_string = f"input: {metadata['archdsl.input']}"
    external = params * BYTES_PER_VALUE > EXTERNAL_DATA_BYTES
    target = resolve_output(path)
    if external and target.direct:
        raise UsageError(f"cannot write {path}: a model with more than {EXTERNAL_DATA_BYTES // 2**20} MiB of weights "
                         "keeps them in a second file beside it", file=str(path), hint="name a regular file")
    folder = None
    try:
        # A staging folder (mkdtemp: mode 0700, a name nobody can guess) beside the output, so that each
        # file is renamed into place; a device or standard output gets a copy.
        folder = Path(tempfile.mkdtemp(prefix=".archdsl-onnx-", dir=None if target.direct else target.path.parent))
        staged = folder / ("model.onnx" if target.direct else target.path.name)
        program.save(str(staged), external_data=external)
        onnx.checker.check_model(str(staged))
        # The weights file first, the model last: a reader never finds a model without its weights.
        for staged_file in sorted(folder.iterdir(), key=lambda p: p.name == staged.name):
            install_file(staged_file, path if staged_file == staged else target.path.parent / staged_file.name)
    except OSError as err:
        raise UsageError(f"cannot write {path}: {err.strerror or err}", file=str(path)) from None
    except onnx.checker.ValidationError as err:
        raise BackendError(f"the exported ONNX model fails onnx.checker: {err}") from None
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    data = f", weights in {path.name}.data" if external else ""
    return f"opset {program.model.opset_imports['']}, batch size dynamic, checked by onnx.checker{data}"


@contextlib.contextmanager
def _quiet():
    """The exporter's progress lines and its warnings about torch internals are not the user's business."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)
