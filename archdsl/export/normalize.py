"""The run's input normalisation as a module: the first step of a model exported with ``--checkpoint``
(inputs.py says when). Like the classes of ``archdsl/torch_modules.py``, it stands alone (it reads only
``torch`` and ``nn``), and the Python export copies its source into the files that construct it.
"""

from __future__ import annotations

import torch
from torch import nn


class Normalize(nn.Module):
    """(x - mean) / std per channel, for images in [0, 1]: the normalisation the network was trained with."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        # Not in the state_dict: the weights file of the Python export holds the network's own tensors.
        self.register_buffer("mean", torch.tensor(mean).reshape(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).reshape(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
