"""Resolved graph to ``torch.nn.Module``: plain modules, every size known up front, no Lazy modules.

Submodules are named after the nodes they come from, so ``state_dict`` keys read like the spec:
``vgg_0.conv_0.weight``, ``inception_2.concat_0.b1.conv_1.bias``. Blocks become ``nn.Sequential``;
``concat`` and ``add`` become the two small modules below, which ``torch.fx``, ``torch.jit.script``
and ``torch.compile`` all accept.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from archdsl import ir
from archdsl.errors import BackendError
from archdsl.layers import REGISTRY


class _Join(nn.ModuleDict):
    """Branches as named submodules ``b0``, ``b1``, ...: the IR's paths are the state_dict's keys."""

    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__(OrderedDict((f"b{i}", branch) for i, branch in enumerate(branches)))

    def outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each branch run on the same input, in order."""
        results: list[torch.Tensor] = []
        for branch in self.values():
            results.append(branch(x))
        return results


class Concat(_Join):
    """Runs each branch on the same input and concatenates the results on channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.outputs(x), 1)


class Add(_Join):
    """Runs each branch on the same input and sums the results (a residual connection)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = self.outputs(x)
        total = outputs[0]
        for y in outputs[1:]:
            total = total + y
        return total


class Mul(_Join):
    """Runs each branch on the same input and multiplies the results elementwise, broadcasting a C×1×1
    branch over C×H×W (a gate: squeeze-and-excitation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = self.outputs(x)
        product = outputs[0]
        for y in outputs[1:]:
            product = product * y
        return product


JOINS = {"concat": Concat, "add": Add, "mul": Mul}


def build(network: ir.Network, init: str = "default", seed: int | None = None) -> nn.Sequential:
    """The network as an ``nn.Sequential`` of named submodules.

    ``init="d2l"`` applies Dive into Deep Learning's scheme (Xavier-uniform on conv and linear
    weights); ``seed`` makes the initial weights repeat.
    """
    if not ir.is_concrete(network.input_shape):
        raise BackendError(
            f"network {network.name} has a symbolic input {ir.format_shape(network.input_shape)}: modules need concrete sizes",
            network.span, hint="build it at a concrete input, e.g. archdsl.load(..., input_shape=(1, 96, 96))",
        )
    if init not in ("default", "d2l"):
        raise BackendError(f"unknown initialisation '{init}'", hint="choose default (PyTorch's) or d2l (Xavier-uniform)")
    if seed is not None:
        torch.manual_seed(seed)
    module = _sequence(network.body)
    if init == "d2l":
        for sub in module.modules():
            if isinstance(sub, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(sub.weight)
    return module


def _sequence(nodes: tuple[ir.Resolved, ...]) -> nn.Sequential:
    return nn.Sequential(OrderedDict((node.name, _module(node)) for node in nodes))


def _module(node: ir.Resolved) -> nn.Module:
    if isinstance(node, ir.Layer):
        try:
            return REGISTRY[node.kind].build(node.args, node.in_shape)
        except (RuntimeError, ValueError, TypeError) as err:
            raise BackendError(f"while building {node.path}: {err}", node.span) from None
    if isinstance(node, ir.Block):
        return _sequence(node.body)
    branches = [_sequence(branch) for branch in node.branches]
    return JOINS[node.op](branches)
