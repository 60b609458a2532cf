"""What an exported model takes as input, said once for the Python docstring, the ONNX metadata and the
command's output.

``archdsl train`` feeds a network its images normalised with the training set's per-channel mean and
standard deviation (recorded in run.json). A model exported with ``--checkpoint`` takes instead what a
PyTorch user gives a vision model: float images (N, C, H, W) in [0, 1], as torchvision's ``ToTensor``
makes them. The run's normalisation, rescaled to that range, is the model's first step (``normalize``),
unless ``--no-normalize`` leaves it to the caller. Resizing is not part of it: a run's ``--resize`` is
the caller's to do.

    $ archdsl export specs/lenet.arch -o lenet.onnx --checkpoint runs/lenet-1
    wrote lenet.onnx: ONNX, ...; input: a float tensor (N, 1, 28, 28) with values in [0, 1], ...
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from archdsl import ir
from archdsl.errors import UsageError

PIXEL = 255.0  # run.json holds the mean and std in pixel units, 0..255


@dataclass(frozen=True)
class InputSpec:
    """The input of an exported model: its shape (batch left out) and the normalisation it expects.

    ``mean`` and ``std`` are the run's, for inputs in [0, 1] (None without a run); ``built_in`` says whether
    the model applies them itself; ``resize`` is the run's ``--resize``.
    """

    shape: ir.Shape
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    built_in: bool = False
    resize: int | None = None

    @classmethod
    def of(cls, shape: ir.Shape, run, normalize: bool | None) -> InputSpec:
        """The input of a model exported from ``run`` (a runfolder.RunInfo, or None without --checkpoint);
        ``normalize`` is ``--normalize/--no-normalize`` (None: build the run's normalisation in when there is a run)."""
        if run is None:
            if normalize:
                raise UsageError("--normalize builds a run's input normalisation into the model, and there is no run",
                                 hint="pass --checkpoint RUN_DIR, or drop --normalize")
            return cls(shape)
        mean = tuple(value / PIXEL for value in run.normalization.mean)
        std = tuple(value / PIXEL for value in run.normalization.std)
        return cls(shape, mean, std, built_in=normalize is not False, resize=run.options.resize)

    @property
    def layout(self) -> str:
        dims = ["N", *(ir.format_dim(d) for d in self.shape)]
        return f"({', '.join(dims)})"

    def describe(self) -> str:
        """One sentence: ``a float tensor (N, 1, 28, 28) with values in [0, 1], ...``."""
        if self.mean is None:
            return f"a float tensor {self.layout}; no normalisation built in"
        stats = f"mean {_numbers(self.mean)} and std {_numbers(self.std)}"
        if self.built_in:
            text = (f"a float tensor {self.layout} with values in [0, 1], as torchvision's ToTensor makes them; "
                    f"the run's normalisation, (x - mean) / std with {stats}, is the model's first step")
        else:
            text = (f"a float tensor {self.layout} normalised as the run's images were: (x - mean) / std for x in "
                    f"[0, 1], with {stats} (left out of the model by --no-normalize)")
        if self.resize is not None:
            text += f"; the run resized its images to {self.resize}x{self.resize} (--resize), which is the caller's to do"
        return text

    def metadata(self) -> dict[str, str]:
        """For the ONNX model's metadata_props: the sentence, and its facts as values a program can read."""
        values = {"archdsl.input": self.describe(), "archdsl.input_shape": self.layout,
                  "archdsl.input_range": "[0, 1]" if self.built_in else "normalised" if self.mean else "unspecified"}
        if self.mean is not None:
            values |= {"archdsl.normalization": "built in" if self.built_in else "not built in",
                       "archdsl.mean": json.dumps(self.mean), "archdsl.std": json.dumps(self.std)}
        return values

    def constructor(self) -> str:
        """The Python export's line that makes the normalisation (normalize.py, copied into the file) the
        network's first module."""
        return f"self.normalize = Normalize(mean={self.mean!r}, std={self.std!r})"

    def wrap(self, module):
        """``module`` behind the normalisation when it is built in (for ONNX and TorchScript), else ``module``."""
        if not self.built_in:
            return module
        from collections import OrderedDict

        from torch import nn

        from archdsl.export.normalize import Normalize

        return nn.Sequential(OrderedDict(normalize=Normalize(self.mean, self.std), network=module)).eval()


def _numbers(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{value:.4f}" for value in values) + ("," if len(values) == 1 else "") + ")"
