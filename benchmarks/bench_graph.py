"""Benchmark of ``archdsl graph`` (issue 3) against torchview's ``draw_graph``, printed as a Markdown table.

    python benchmarks/bench_graph.py            # about four minutes on 2 cores
    python benchmarks/bench_graph.py --quick    # fewer repetitions

Cases: densenet and googlenet from specs/, and a generated spec of 2,000 layers (285 residual
blocks and a head), each at full depth and at depth 1. Both tools draw the same network: torchview
gets the torch module that archdsl builds from the spec (on the meta device, so no weights are
allocated), whose submodules nest as the spec's blocks do, so ``depth`` means the same to both.

* in-process: archdsl loads the spec, draws the diagram and renders it to SVG with dot; torchview
  builds the module, traces it (``draw_graph(..., expand_nested=True)``) and renders its diagram to
  SVG with the same dot;
* whole commands: ``archdsl graph SPEC -o x.svg`` against a script that imports torch and torchview,
  builds the module and writes the SVG.

torchview is a benchmark-only dependency (``pip install torchview``); without it the peer columns
say so and only archdsl is timed.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from timing import ARCHDSL, command_time, median_seconds

import archdsl
from archdsl.graphviz_backend import render

FULL = 100  # torchview's depth for "every module": deeper than any spec here nests

TORCHVIEW_SCRIPT = """
import sys, torch, archdsl
from torchview import draw_graph
spec, depth, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
net = archdsl.load(spec)
with torch.device("meta"):
    model = net.build()
graph = draw_graph(model, input_size=(1, *net.input_shape), device="meta", depth=depth, expand_nested=True)
open(out, "wb").write(graph.visual_graph.pipe(format="svg"))
"""


def generated_spec(layers: int = 2000) -> str:
    """Residual blocks of 7 layers (conv, BN, ReLU, conv, BN, identity, ReLU), then a 5-layer head."""
    blocks = (layers - 5) // 7
    assert blocks * 7 + 5 == layers
    return (
        "block unit(c) = add [ conv3x3 c; bn; relu; conv3x3 c; bn | id ]; relu\n"
        f"network generated : [8, 16, 16] -> [10] =\n    repeat {blocks} unit(8); conv1x1 8; relu; gap; flatten; linear 10\n"
    )


def median_time(fn, repeat: int) -> tuple[float, object]:
    """Median wall time of ``repeat`` calls after one warm-up call, and the warm-up's result."""
    result = fn()
    return median_seconds(fn, repeat, warmup=False), result


def nodes_in(svg: bytes) -> int:
    return svg.count(b'class="node"')


def archdsl_in_process(spec: Path, depth: int | None, repeat: int) -> tuple[float, float, int]:
    """Seconds to the SVG, seconds to the DOT text (archdsl's own part, before dot), nodes drawn."""

    def run() -> bytes:
        return render(archdsl.load(spec).graph(depth=depth), "svg")

    seconds, svg = median_time(run, repeat)
    own = median_seconds(lambda: archdsl.load(spec).graph(depth=depth).source, repeat)
    return seconds, own, nodes_in(svg)


def torchview_in_process(spec: Path, depth: int | None, repeat: int) -> tuple[float, int]:
    import torch
    from torchview import draw_graph

    net = archdsl.load(spec)

    def run() -> bytes:
        with torch.device("meta"):
            model = net.build()
        graph = draw_graph(model, input_size=(1, *net.input_shape), device="meta",
                           depth=FULL if depth is None else depth, expand_nested=True)
        return graph.visual_graph.pipe(format="svg")

    seconds, svg = median_time(run, repeat)
    return seconds, nodes_in(svg)


def have_torchview() -> bool:
    try:
        import torchview  # noqa: F401
    except ImportError:
        return False
    return True


def table(repeat: int, tmp: Path) -> list[str]:
    generated = tmp / "generated.arch"
    generated.write_text(generated_spec())
    script = tmp / "torchview_graph.py"
    script.write_text(TORCHVIEW_SCRIPT)
    peer = have_torchview()
    cases = [(ROOT / "specs" / f"{name}.arch", name) for name in ("densenet", "googlenet")] + [(generated, "generated")]
    rows = [
        ("| network | layers | depth | archdsl nodes | archdsl in-process (ms) | of which before dot (ms) | "
         "torchview nodes | torchview in-process (ms) | ratio | `archdsl graph` (ms) | torchview script (ms) | ratio |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for spec, name in cases:
        layers = sum(1 for _ in archdsl.load(spec).layers())
        runs = repeat if layers < 1000 else max(2, repeat // 2)
        for depth in (None, 1):
            ours, own, our_nodes = archdsl_in_process(spec, depth, runs)
            depth_args = [] if depth is None else ["--depth", str(depth)]
            ours_cmd = command_time([ARCHDSL, "graph", str(spec), "-o", str(tmp / "ours.svg"), *depth_args],
                                    max(2, runs // 2))
            row = (f"| {name} | {layers:,} | {'full' if depth is None else depth} | {our_nodes:,} | {ours * 1e3:,.0f} |"
                   f" {own * 1e3:,.0f} |")
            if peer:
                theirs, their_nodes = torchview_in_process(spec, depth, runs)
                theirs_cmd = command_time(
                    [sys.executable, str(script), str(spec), str(FULL if depth is None else depth), str(tmp / "tv.svg")],
                    max(2, runs // 2),
                )
                row += (f" {their_nodes:,} | {theirs * 1e3:,.0f} | {theirs / ours:.1f}× | {ours_cmd * 1e3:,.0f} |"
                        f" {theirs_cmd * 1e3:,.0f} | {theirs_cmd / ours_cmd:.1f}× |")
            else:
                row += f" – | – | – | {ours_cmd * 1e3:,.0f} | – | – |"
            rows.append(row)
            print(row, file=sys.stderr, flush=True)
    if not peer:
        rows.append("\ntorchview is not installed (`pip install torchview`): the peer columns were not measured.")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    repeat = 3 if args.quick else 7
    dot = subprocess.run(["dot", "-V"], check=False, capture_output=True, text=True).stderr.strip()
    versions = f"Python {platform.python_version()}, {dot}"
    if have_torchview():
        import torch
        import torchview

        versions += f", torch {torch.__version__}, torchview {torchview.__version__}"
    with tempfile.TemporaryDirectory() as tmp:
        rows = table(repeat, Path(tmp))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores (load average at the end {load}); {versions}; "
          f"command: python benchmarks/bench_graph.py{' --quick' if args.quick else ''}\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
