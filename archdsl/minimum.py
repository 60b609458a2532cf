"""The smallest input a network accepts, from its symbolic shapes, confirmed by concrete inference.

Resolved at a symbolic input ``C×H×W``, every spatial size is ``floor((H + a) / m) + b``, non-decreasing
in H; the network accepts an input exactly when each of them is at least 1. The smallest H is the
largest of the smallest solutions, one per size, and the same for W. ``archdsl check --min-input``
prints it, the layer that sets it, the concrete check at the minimum and one pixel less, and where
the flattened size (and with it the classifier) changes with the input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from archdsl import ir
from archdsl.errors import ArchError, ShapeError
from archdsl.program import Program
from archdsl.resolve import choose_network, input_of, resolve_network
from archdsl.shapes import spatial_sizes
from archdsl.symbolic import SEARCH_LIMIT, Sym, single_atom, smallest_satisfying

AXES = ("H", "W")


@dataclass(frozen=True)
class MinimumInput:
    network: str
    channels: int
    smallest: dict[str, int]
    set_by: dict[str, str]
    rejected: dict[str, str] = field(default_factory=dict)
    flatten: list[str] = field(default_factory=list)

    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.smallest["H"], self.smallest["W"])

    def report(self) -> str:
        c, h, w = self.shape()
        lines = [f"{self.network}: smallest input {c}x{h}x{w}"]
        for axis in AXES:
            lines.append(f"  {axis} >= {self.smallest[axis]}: set by {self.set_by[axis]}")
        lines.append(f"  confirmed: {c}x{h}x{w} compiles")
        for axis, message in self.rejected.items():
            lines.append(f"  confirmed: one pixel less in {axis} fails: {message}")
        lines.extend(f"  {line}" for line in self.flatten)
        return "\n".join(lines)


def minimum_input(program: Program, network: str | None = None, params: dict | None = None) -> MinimumInput:
    """The smallest H and W at which ``network`` compiles, with the layers that set them.

    >>> minimum_input(load_program(read_source("specs/googlenet.arch"))).shape()   # doctest: +SKIP
    """
    declared = input_of(program, network, params)
    if len(declared) != 3:
        raise ShapeError(f"--min-input needs an image input C×H×W, not {ir.format_shape(declared, '×')}")
    channels = declared[0]
    symbols = {axis: Sym.symbol(axis) for axis in AXES}
    try:
        symbolic = resolve_network(program, network, params, (channels, symbols["H"], symbols["W"]))
    except ArchError as err:
        # A position embedding or Swin's windows, say: the network takes only inputs of its own size.
        raise err.with_note(f"--min-input resolves the network at a symbolic input {channels}×H×W, which this "
                            "layer refuses", choose_network(program, network).span) from None
    smallest = {axis: 1 for axis in AXES}
    set_by = {axis: "the input itself (every size >= 1 works)" for axis in AXES}
    for layer in ir.layers(symbolic.body):
        for size in spatial_sizes(layer.out_shape):
            if not isinstance(size, Sym):
                continue
            atom = single_atom(size)
            if atom is None:
                continue
            axis = atom[0]
            needed = smallest_satisfying(size, axis, 1)
            if needed is None:
                raise ShapeError(f"no input up to {SEARCH_LIMIT:,} pixels in {axis} is large enough for "
                                 f"{layer.path}, whose output is {size}", layer.span)
            if needed > smallest[axis]:
                smallest[axis] = needed
                set_by[axis] = f"{layer.path} ({layer.spelling} at {layer.span}), whose output is {size}"
    result = MinimumInput(symbolic.name, channels, smallest, set_by)
    _confirm(program, network, params, result)
    result.flatten.extend(_flatten_changes(symbolic, smallest))
    return result


def _confirm(program: Program, network: str | None, params: dict | None, result: MinimumInput) -> None:
    """Concrete inference must accept the minimum and reject one pixel less on each axis."""
    resolve_network(program, network, params, result.shape())
    for index, axis in enumerate(AXES, start=1):
        if result.smallest[axis] == 1:
            continue
        shape = list(result.shape())
        shape[index] -= 1
        try:
            resolve_network(program, network, params, tuple(shape))
        except ArchError as err:
            result.rejected[axis] = f"{err.message} (at {err.span})" if err.span else err.message
        else:
            raise AssertionError(f"{ir.format_shape(tuple(shape))} compiles, but the symbolic minimum says it should not")


def _flatten_changes(symbolic: ir.Network, smallest: dict[str, int]) -> list[str]:
    lines = []
    for layer in ir.layers(symbolic.body):
        if layer.kind != "flatten":
            continue
        size = layer.out_shape[0]
        if not isinstance(size, Sym):
            lines.append(f"{layer.path}: {size} features at every input size")
            continue
        at_min = size.evaluate(smallest)
        steps = []
        for name, a, m in sorted({atom for mono in size.terms for atom in mono}):
            if m == 1:
                steps.append(f"{name}: with every pixel")
                continue
            first = smallest[name] + 1 + (-(smallest[name] + 1 + a)) % m  # the next v with (v + a) % m == 0
            steps.append(f"{name} = {first}, {first + m}, {first + 2 * m}, ... (every {m} pixels)")
        lines.append(f"{layer.path}: {size} features ({at_min} at the smallest input); it grows at " + "; ".join(steps))
    return lines
