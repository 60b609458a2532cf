"""The Python API: ``load`` and ``loads`` give a ``CompiledNetwork``, checked and shape-inferred.

    >>> net = archdsl.loads("network n(classes = 10) : [1, 28, 28] = flatten; linear classes")
    >>> net.output_shape, net.params
    ((10,), 7850)
    >>> module = net.build()          # a plain torch.nn.Module
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from archdsl import ir, zoo
from archdsl.errors import UsageError
from archdsl.program import Program, is_file, load_program, paused_gc, read_source
from archdsl.resolve import Limits, resolve_network
from archdsl.source import Source

if TYPE_CHECKING:
    from archdsl.summary import Summary


@dataclass(frozen=True)
class CompiledNetwork:
    """A network resolved at concrete parameters: its IR, shapes and costs, and a way to build it."""

    ir: ir.Network
    program: Program

    @property
    def name(self) -> str:
        return self.ir.name

    @property
    def input_shape(self) -> ir.Shape:
        return self.ir.input_shape

    @property
    def output_shape(self) -> ir.Shape:
        return self.ir.output_shape

    @property
    def params(self) -> int:
        return self.ir.params

    @property
    def macs(self) -> int:
        return self.ir.macs

    @property
    def param_values(self) -> dict[str, ir.Value]:
        return dict(self.ir.params_bound)

    @property
    def source_path(self) -> str | None:
        main = self.program.main
        return main.path if is_file(main) else None

    @property
    def source_files(self) -> tuple[Path, ...]:
        """The spec's file and every file it imports (none for a spec given as text)."""
        return tuple(Path(source.path) for source in self.program.sources.values() if is_file(source))

    @property
    def source_text(self) -> str:
        return self.program.main.text

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the resolved graph's structure: equal for equal networks, whatever the file."""
        text = ir.format_network(self.ir)
        structure = "\n".join(line.split("  # ")[0] for line in text.splitlines())
        return hashlib.sha256(structure.encode()).hexdigest()

    def layers(self):
        """Every layer node in execution order."""
        return ir.layers(self.ir.body)

    def summary(self, depth: int | None = None) -> Summary:
        """The table of layers (or of blocks, down to ``depth``) with totals: it prints as ``archdsl compile``
        does (``str()`` gives that text) and displays as an HTML table in Jupyter."""
        from archdsl.summary import Summary

        return Summary.of(self.ir, depth)

    def text(self) -> str:
        """The IR's stable text form, one node per line."""
        return ir.format_network(self.ir)

    def graph(self, depth: int | None = None, direction: str = "TB", fold_activations: bool = True):
        """The ``graphviz.Digraph`` of the network: a node per layer, shapes on the edges, blocks as clusters.

        ``depth=1`` draws each top-level block call as one node; ``direction`` is "TB" or "LR";
        ``fold_activations`` writes ``relu`` into the node before it (``conv 3×3, 64 + ReLU``).
        Save it with ``archdsl.graphviz_backend.save(graph, Path("net.svg"))``.
        """
        from archdsl.graphviz_backend import draw

        return draw(self.ir, depth, direction, fold_activations)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        """Jupyter's display: the summary at depth 1 (table, totals, legend) beside the depth-1 diagram, or the
        summary alone where Graphviz's dot is missing; as plain text, the summary."""
        from archdsl.graphviz_backend import inline_svg
        from archdsl.summary import beside

        summary = self.summary(depth=1)
        svg = inline_svg(self.graph(depth=1))
        html = summary._repr_html_() if svg is None else beside(summary._repr_html_(), svg)
        return {"text/plain": str(summary).rstrip("\n"), "text/html": html}

    def require_concrete(self, task: str) -> None:
        """Refuse ``task`` (a sentence's subject: "training") when the input has symbolic sizes (1xHxW)."""
        if not ir.is_concrete(self.input_shape):
            raise UsageError(f"{task} needs a concrete input size, and {self.name}'s is {ir.format_shape(self.input_shape)}",
                             file=self.source_path, hint="give one with --input, e.g. --input 1x96x96")

    def build(self, init: str = "default", seed: int | None = None):
        """The ``torch.nn.Module`` (imports torch; where it is not installed, a UsageError names the extra)."""
        from archdsl.extras import required

        with required():
            from archdsl.torch_backend import build

        return build(self.ir, init=init, seed=seed)

    def __repr__(self) -> str:
        shape = ir.format_shape
        return (f"<CompiledNetwork {self.name}: {shape(self.input_shape)} -> {shape(self.output_shape)}, "
                f"{self.params:,} params, {self.macs:,} MACs>")


def compile_program(
    program: Program,
    network: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    limits: Limits | None = None,
    **params: ir.Value,
) -> CompiledNetwork:
    return CompiledNetwork(resolve_network(program, network, params, input_shape, limits), program)


def load(
    path: str | Path,
    network: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    limits: Limits | None = None,
    import_dirs: Sequence[str | Path] | None = None,
    **params: ir.Value,
) -> CompiledNetwork:
    """Compile the spec at ``path``, or the zoo's network of that name; keyword arguments set network parameters.

    ``import_dirs`` are folders its imports may reach besides the spec's own.

    >>> archdsl.load("specs/vgg16.arch", in_channels=3, classes=1000).params
    138357544
    >>> archdsl.load("resnet50").params           # torchvision's, from the zoo (archdsl/zoo/resnet.arch)
    25557032
    """
    path, network = zoo.locate(path, network)
    with paused_gc():
        return compile_program(load_program(read_source(path), import_dirs), network, input_shape, limits, **params)


def loads(
    text: str,
    network: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    path: str = "<string>",
    limits: Limits | None = None,
    import_dirs: Sequence[str | Path] | None = None,
    **params: ir.Value,
) -> CompiledNetwork:
    """Compile spec text; ``path`` names it in messages (and roots its imports when it is a file path)."""
    with paused_gc():
        return compile_program(load_program(Source(path, text), import_dirs), network, input_shape, limits, **params)
