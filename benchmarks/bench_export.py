"""Export benchmarks (issue 6): every spec in specs/ at its defaults, to each format, printed as Markdown.

    python benchmarks/bench_export.py            # medians of 3 in-process runs, one command each
    python benchmarks/bench_export.py --quick    # one in-process run each, no commands
    python benchmarks/bench_export.py --breakdown googlenet   # where one ONNX export's time goes

In process, a run is ``archdsl.export.export(net, FORMAT, path)`` on a compiled network: for ONNX and
TorchScript that includes building the module (PyTorch's initialisation of every weight) and writing
the file; ONNX includes ``onnx.checker``. The command columns are whole processes,
``archdsl export SPEC -o FILE``, from start (imports included) to exit.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import median_seconds

import archdsl
from archdsl.export import FORMATS, export

ROOT = Path(__file__).resolve().parents[1]

SPECS = ["lenet", "alexnet", "vgg11", "vgg16", "vgg19", "nin", "googlenet", "resnet18", "densenet"]


def command_seconds(spec: Path, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "archdsl.cli", "export", str(spec), "-o", str(out)], check=True,
                   capture_output=True)
    return time.perf_counter() - start


def breakdown(name: str) -> None:
    """Where one ONNX export's time goes, in this fresh process: imports, building, the exporter."""
    from archdsl.export.onnx import write_onnx

    start = time.perf_counter()
    import torch  # noqa: F401

    steps = {"import torch": time.perf_counter()}
    import onnx  # noqa: F401
    import onnxscript  # noqa: F401

    steps["import onnx and onnxscript"] = time.perf_counter()
    net = archdsl.load(ROOT / "specs" / f"{name}.arch")
    module = net.build().eval()
    steps["compile the spec and build the module"] = time.perf_counter()
    path = Path(tempfile.mkdtemp(prefix="bench-export-")) / f"{name}.onnx"
    write_onnx(module, net.input_shape, path, net.params)
    steps["first export (torch.onnx.export, save, onnx.checker)"] = time.perf_counter()
    write_onnx(module, net.input_shape, path, net.params)
    steps["second export, same process"] = time.perf_counter()
    for step, end in steps.items():
        print(f"{step}: {end - start:.2f} s")
        start = end


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one in-process run each, and no commands")
    parser.add_argument("--breakdown", metavar="SPEC", help="time the steps of one ONNX export of specs/SPEC.arch")
    args = parser.parse_args()
    if args.breakdown:
        breakdown(args.breakdown)
        return
    repeat = 1 if args.quick else 3
    folder = Path(tempfile.mkdtemp(prefix="bench-export-"))
    export(archdsl.load(ROOT / "specs" / "lenet.arch"), "onnx", folder / "warm.onnx")  # imports, first compile
    header = ["spec", "params", *(f"{f} (s)" for f in FORMATS), "ONNX file (MB)"]
    if not args.quick:
        header += [f"`archdsl export -o x{suffix}` (s)" for suffix in FORMATS.values()]
    rows = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for name in SPECS:
        spec = ROOT / "specs" / f"{name}.arch"
        net = archdsl.load(spec)
        cells = [name, f"{net.params:,}"]
        for fmt, suffix in FORMATS.items():
            path = folder / f"{name}{suffix}"
            cells.append(f"{median_seconds(lambda: export(net, fmt, path), repeat, warmup=False):.2f}")
        onnx_bytes = sum(f.stat().st_size for f in folder.glob(f"{name}.onnx*"))  # with NAME.onnx.data
        cells.append(f"{onnx_bytes / 1e6:,.1f}")
        if not args.quick:
            cells += [f"{command_seconds(spec, folder / f'cmd-{name}{suffix}'):.2f}" for suffix in FORMATS.values()]
        for stale in folder.glob(f"*{name}*"):
            stale.unlink()  # the VGG files are half a gigabyte each
        rows.append("| " + " | ".join(cells) + " |")
        print(rows[-1], file=sys.stderr, flush=True)
    import torch

    print(f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}; Python "
          f"{platform.python_version()}, torch {torch.__version__}; {'1 run' if args.quick else f'median of {repeat} runs'}"
          " in process.\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
