"""The modules archdsl builds where torch has none that fits: LayerNorm over the channels of an image,
a learned factor per channel, stochastic depth and the channel shuffle.

Each is written as torchvision writes it, so that its weights copy over and its outputs match
bit for bit, and so that ``torch.fx.symbolic_trace``, ``torch.jit.script``, the ONNX export and
channels-last tensors all take it. Each class stands alone (it reads only ``torch`` and ``nn``):
the Python export copies the source of those a network uses into the file it writes.
"""

from __future__ import annotations

import torch
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the C channels at each position of an N×C×H×W tensor, with a weight and a bias of
    C values (torchvision's ConvNeXt LayerNorm2d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Scale(nn.Module):
    """A learned factor per channel, starting at ``init`` (ConvNeXt's layer scale): ``shape`` is
    (C, 1, 1) for N×C×H×W input, (C,) for N×C."""

    def __init__(self, shape: tuple[int, ...], init: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full(shape, init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * x


class DropPath(nn.Module):
    """Stochastic depth per sample (torchvision.ops.StochasticDepth, mode "row"): in training, each
    sample's input is zeroed with probability p and the rest scaled by 1 / (1 - p); in eval mode, the
    identity."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        noise = torch.empty([x.shape[0]] + [1] * (x.dim() - 1), dtype=x.dtype, device=x.device)
        noise = noise.bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle (torchvision's channel_shuffle): the C channels, read as ``groups``
    groups of C / groups, are interleaved group by group."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.size()
        x = x.view(batch, self.groups, channels // self.groups, height, width)
        x = torch.transpose(x, 1, 2).contiguous()
        return x.view(batch, channels, height, width)


class ChannelSlice(nn.Module):
    """Channels ``start`` to ``end`` − 1 of the input, ``x[:, start:end]`` (``chunk N I`` is the slice of its part)."""

    def __init__(self, start: int, end: int) -> None:
        super().__init__()
        self.start = start
        self.end = end

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.start : self.end]
