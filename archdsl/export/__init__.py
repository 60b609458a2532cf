"""Exports: a compiled network as a file to ship, in one of three formats.

* ``python``: a standalone PyTorch source file, one ``nn.Module`` class per block (``python.py``);
* ``onnx``: through ``torch.onnx.export``, checked with ``onnx.checker`` (``onnx.py``);
* ``torchscript``: scripted, or traced where scripting fails (``torchscript.py``).

Weights come from a run of ``archdsl train`` (``checkpoint``, its newest finished epoch, refused
when it was trained from another spec or other parameters) or else from a fresh initialisation.
With a run, the model takes images in [0, 1] and applies the run's normalisation itself (inputs.py).
Every file is written atomically: a reader sees the old file or the new one, never half of one.

    $ archdsl export specs/resnet18.arch --to onnx -o resnet18.onnx --checkpoint runs/resnet18-1
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from archdsl.atomic import STDOUT, check_output
from archdsl.compiled import CompiledNetwork
from archdsl.errors import UsageError
from archdsl.export.inputs import InputSpec

FORMATS = {"python": ".py", "onnx": ".onnx", "torchscript": ".pt"}


@dataclass(frozen=True)
class Exported:
    """What an export wrote: the files, how (``scripted``, ``opset 18``, ...), whose weights, and what input
    the model takes."""

    files: tuple[Path, ...]
    format: str
    how: str
    weights: str
    input: str

    def describe(self) -> str:
        names = " and ".join(str(f) for f in self.files)
        return f"wrote {names}: {self.format}, {self.how}; weights: {self.weights}; input: {self.input}"


def format_for(to: str | None, path: Path) -> str:
    """The format named by ``--to``, or else the one the output file's suffix implies."""
    names = list(FORMATS)
    if to is None:
        by_suffix = {suffix: name for name, suffix in FORMATS.items()} | {".pth": "torchscript"}
        if path.suffix in by_suffix:
            return by_suffix[path.suffix]
        raise UsageError(f"cannot tell the format of '{path}' from its suffix",
                         hint="pass " + ", ".join(f"--to {n}" for n in names[:-1]) + f" or --to {names[-1]}")
    if to not in FORMATS:
        raise UsageError(f"--to takes {', '.join(names[:-1])} or {names[-1]}, not '{to}'")
    return to


def export(net: CompiledNetwork, to: str, path: Path, checkpoint: Path | None = None,
           normalize: bool | None = None) -> Exported:
    """Write ``net`` to ``path`` in the format ``to``, with the weights of the run in ``checkpoint``;
    ``normalize=False`` leaves the run's input normalisation out of the model (inputs.py).

    >>> export(archdsl.load("specs/lenet.arch"), "onnx", Path("lenet.onnx")).describe()   # doctest: +SKIP
    'wrote lenet.onnx: ONNX, opset 20, batch size dynamic, checked by onnx.checker; weights: ...; input: ...'
    """
    check_output(path, net.source_files)
    run = _run(checkpoint)
    inputs = InputSpec.of(net.input_shape, run, normalize)
    if to == "python":
        return _python(net, path, run, inputs)
    net.require_concrete(f"the {to} export")
    module, weights = trained_module(net, run)
    module = inputs.wrap(module)
    if to == "onnx":
        from archdsl.export.onnx import write_onnx

        how = write_onnx(module, net.input_shape, path, net.params, inputs.metadata())
        return Exported((path,), "ONNX", how, weights, inputs.describe())
    from archdsl.export.torchscript import write_torchscript

    return Exported((path,), "TorchScript", write_torchscript(module, net.input_shape, path), weights,
                    inputs.describe())


def _run(checkpoint: Path | None):
    """The run folder's run.json (a runfolder.RunInfo), or None without --checkpoint."""
    if checkpoint is None:
        return None
    from archdsl.runner import runfolder

    return runfolder.read(checkpoint)


def trained_module(net: CompiledNetwork, run):
    """The network's module in eval mode, with the weights of ``run``'s newest checkpoint when there is a
    run (a runfolder.RunInfo); and their origin."""
    module = net.build().eval()
    if run is None:
        return module, "fresh initialisation (PyTorch's defaults; pass --checkpoint RUN_DIR for trained ones)"
    from archdsl.runner import checkpoint as checkpoints

    found = checkpoints.latest(run.folder)
    if found is None:
        raise UsageError(f"{run.folder} holds no checkpoint yet: no epoch has finished", file=str(run.folder))
    checkpoints.load_weights(module, found, spec=checkpoints.spec_hash(net), trained_from=run.trained_from())
    return module, f"{found.weights} (epoch {found.epoch})"  # loading weights keeps eval mode


def _python(net: CompiledNetwork, path: Path, run, inputs: InputSpec) -> Exported:
    from archdsl.atomic import write_atomic, write_text_atomic
    from archdsl.export.python import network_class_name, python_source

    how = f"class {network_class_name(net)}"
    if run is None:
        write_text_atomic(path, python_source(net))
        return Exported((path,), "Python source", how, "none (the source holds no weights)", inputs.describe())
    if path == STDOUT:
        raise UsageError("cannot write --to python --checkpoint to standard output: the weights go to a second file",
                         hint="name the source file with -o, e.g. -o model.py")
    tensors = path.with_suffix(".safetensors")
    if tensors == path:
        raise UsageError(f"cannot write the source to {path}: the weights go to FILE's name with .safetensors",
                         file=str(path), hint=f"name the source {path.with_suffix('.py')}")
    check_output(tensors, net.source_files)
    # The source first: a spec it cannot write leaves no weights behind.
    source = python_source(net, weights_file=tensors.name, inputs=inputs)
    net.require_concrete("the python export")
    module, weights = trained_module(net, run)
    from safetensors.torch import save_model

    write_atomic(tensors, lambda tmp: save_model(module, str(tmp), metadata={"network": net.name}))
    write_text_atomic(path, source)
    return Exported((path, tensors), "Python source", how, weights, inputs.describe())

