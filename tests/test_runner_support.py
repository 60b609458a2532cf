"""Networks for the runner's tests, shaped like ``archdsl.CompiledNetwork`` (no tests here).

The runner takes any object with the compiled network's attributes; these small torch models let
its tests run without the compiler, fast, on the CPU.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

import archdsl

REPO = Path(__file__).resolve().parents[1]
FASHION_DIR = REPO.parent / "shared" / "datasets" / "fashion-mnist"
DATA_ROOT = FASHION_DIR.parent

CNN_SPEC = """\
# A small ReLU CNN.
network cnn(width = 16, classes = 10) : [1, 28, 28] -> [classes] =
    conv3x3 width; relu; maxpool2;
    conv3x3 2 * width; relu; maxpool2;
    flatten;
    linear classes
"""


def small_cnn(channels: int, classes: int, width: int) -> nn.Module:
    """conv-relu-pool twice, then a linear classifier: the small ReLU CNN of the issue's checks."""
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.LazyLinear(classes),
    )


def tiny_mlp(channels: int, classes: int, size: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, 32), nn.ReLU(),
                         nn.Dropout(0.1), nn.Linear(32, classes))


@dataclass
class FakeNetwork:
    """A stand-in for archdsl.CompiledNetwork around a torch model factory."""

    name: str = "cnn"
    input_shape: tuple[int, ...] = (1, 28, 28)
    output_shape: tuple[int, ...] = (10,)
    kind: str = "cnn"
    width: int = 16
    source_text: str = "network cnn : [1, 28, 28] = ...\n"
    source_path: str | None = "specs/cnn.arch"
    param_values: dict = field(default_factory=dict)
    params: int = 0
    macs: int = 0

    @property
    def fingerprint(self) -> str:
        """Like the compiler's: the structure of the network, here its factory and sizes."""
        structure = f"{self.source_text}|{self.kind}|{self.width}|{self.input_shape}|{self.output_shape}"
        return hashlib.sha256(structure.encode()).hexdigest()

    require_concrete = archdsl.CompiledNetwork.require_concrete

    def build(self, init: str = "default", seed: int | None = None) -> nn.Module:
        if seed is not None:
            torch.manual_seed(seed)
        channels, size = self.input_shape[0], self.input_shape[1]
        if self.kind == "cnn":
            model = small_cnn(channels, self.output_shape[0], self.width)
        else:
            model = tiny_mlp(channels, self.output_shape[0], size)
        model(torch.zeros(1, *self.input_shape))  # materialise lazy layers
        return model


def tiny_npz(path: Path, train: int = 60, test: int = 30, size: int = 8, classes: int = 3) -> Path:
    """A small random .npz data set (Keras' layout) for runs that take milliseconds, not real data."""
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (train, size, size), dtype=np.uint8),
             y_train=np.arange(train) % classes, x_test=rng.integers(0, 256, (test, size, size), dtype=np.uint8),
             y_test=np.arange(test) % classes)
    return path


def tiny_network() -> FakeNetwork:
    """An MLP for ``tiny_npz``'s 1x8x8 images and 3 classes."""
    return FakeNetwork(kind="mlp", input_shape=(1, 8, 8), output_shape=(3,))


class Holder:
    """Another process that holds a run folder's lock until it is closed."""

    def __init__(self, folder: Path) -> None:
        code = ("import sys\nfrom pathlib import Path\nfrom archdsl.runner import runfolder\n"
                f"with runfolder.claim(Path({str(folder)!r})):\n"
                "    print('held', flush=True)\n    sys.stdin.read()\n")
        self.process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, cwd=REPO)
        assert self.process.stdout.readline() == "held\n"

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)
