"""Run docs/sweeps.md's worked example and write what it found into the page: a sample of a small AnyNet design
space (specs/anynet.arch at 28x28) trained on part of Fashion-MNIST on the CPU.

    python scripts/sweep_example.py                     # the sweep into a new temporary folder, then the page
    python scripts/sweep_example.py --out sweeps/anynet  # or into this folder (--resume it if a run was killed)

The plots are copied to docs/img/sweep-anynet-accuracy.svg and sweep-anynet-edf.svg; the table of results and the
line that says how long it took, on what, and under which load average go between their markers in the page.
Run it when the machine is otherwise quiet (uptime), since the time is part of what the page reports.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "sweeps.md"
IMAGES = ROOT / "docs" / "img"
MARKERS = ("<!-- results: scripts/sweep_example.py -->", "<!-- end results -->")
SPACE = ["-p", "depths=[1..2,1..3]", "-p", "channels=[8|16,32|64]", "-p", "bot_mul=[1,1],[0.5,0.5]",
         "-p", "groups=[8,8]", "-p", "stem_channels=16", "--lr", "0.05,0.1", "--samples", "32", "--seed", "0"]
TRAINING = ["--input", "1x28x28", "--epochs", "3", "--batch-size", "128", "--limit", "10000", "--jobs", "2"]


def command(out: Path, data_dir: Path) -> list[str]:
    return ["archdsl", "sweep", "specs/anynet.arch", *SPACE, *TRAINING, "--data-dir", str(data_dir),
            "--out", str(out)]


def results(folder: Path) -> list[dict[str, str]]:
    with open(folder / "sweep.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def table(rows: list[dict[str, str]]) -> str:
    """The trained configurations from the most accurate down, the Pareto front (by MACs) marked."""
    from archdsl.runner.sweep.results import pareto_front

    trained = [row for row in rows if row["status"] == "trained"]
    front = {trained[i]["run"] for i in pareto_front([(int(r["macs"]), float(r["final_test_acc"])) for r in trained])}
    lines = ["| run | depths | channels | bot_mul | lr | params | MACs | test acc | best test acc | s |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in sorted(trained, key=lambda r: -float(r["final_test_acc"])):
        mark = " (front)" if row["run"] in front else ""
        lines.append(f"| {row['run']}{mark} | {row['depths']} | {row['channels']} | {row['bot_mul']} | {row['lr']} | "
                     f"{int(row['params']):,} | {int(row['macs']):,} | {float(row['final_test_acc']):.4f} | "
                     f"{float(row['best_test_acc']):.4f} | {float(row['seconds']):.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="the sweep folder (default: a new temporary one)")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="sweep-anynet-")) / "sweep"
    run = command(out, args.data_dir.resolve())
    if out.exists() and (out / "sweep.json").exists():
        run = ["archdsl", "sweep", "specs/anynet.arch", "--resume", str(out), "--jobs", "2"]
    load_before = os.getloadavg()
    began = time.monotonic()
    subprocess.run([sys.executable, "-m", "archdsl", *run[1:]], cwd=ROOT, check=True)
    seconds = time.monotonic() - began
    load_after = os.getloadavg()

    rows = results(out)
    counts = {status: sum(row["status"] == status for row in rows) for status in ("trained", "compile-error")}
    for name in ("accuracy", "edf"):
        shutil.copyfile(out / f"{name}.svg", IMAGES / f"sweep-anynet-{name}.svg")
    measured = (f"Measured {time.strftime('%Y-%m-%d')}: `{' '.join(command(Path('sweeps/anynet'), Path('../shared/datasets')))}` "
                f"took {seconds / 60:.1f} minutes ({counts['trained']} configurations trained, "
                f"{counts['compile-error']} failed to compile) on the project's {os.cpu_count()}-core "
                f"{platform.machine()} CPU, torch {_torch_version()}, load average {load_before[0]:.2f} before and "
                f"{load_after[0]:.2f} after (1-minute).")
    text = PAGE.read_text(encoding="utf-8")
    start, end = MARKERS
    found = re.search(re.escape(start) + ".*?" + re.escape(end), text, re.DOTALL)
    if found is None:
        sys.exit(f"{PAGE}: no {start} ... {end} section")
    figures = ("![Test accuracy of the sampled AnyNet configurations against MACs and parameters, the Pareto front "
               "marked](img/sweep-anynet-accuracy.svg)\n\n![Error distribution functions of the sampled AnyNet "
               "configurations by depths, channels, bottleneck ratio and learning rate](img/sweep-anynet-edf.svg)")
    section = f"{start}\n{measured}\n\n{figures}\n\n{table(rows)}\n{end}"
    PAGE.write_text(text[:found.start()] + section + text[found.end():], encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)} and docs/img/sweep-anynet-*.svg from {out}")


def _torch_version() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    main()
