"""Write docs/exercises.md: the Dive into Deep Learning exercises for VGG and GoogLeNet, answered by
archdsl commands and their real output, so that the page stays true.

    python scripts/make_exercises.py            # run the commands, read the training runs, write the page
    python scripts/make_exercises.py --train    # first train VGG-11/4 at 56, 84 and 224 pixels (CPU: hours)

The training runs live in runs/exercises/ (ignored by git); their learning curves are copied to
docs/img/. Without them the page says that the training answer was not measured.
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "exercises"
IMG = ROOT / "docs" / "img"
DATA = ROOT.parent / "shared" / "datasets" / "fashion-mnist"

# Reduced CPU runs: a 10,000-image subset of each split, the book's learning rate and init. Every size
# for 3 epochs; the small ones also for 10, which still costs less than 224 pixels for 3.
TRAIN = "archdsl train specs/vgg11.arch -p ratio=4 --input 1x{s}x{s} --resize {s} --epochs {e} --limit 10000 " \
        "--lr 0.05 --batch-size 128 --init d2l --seed 0 --out runs/exercises/{name}"
RUNS_MADE = ((56, 3), (84, 3), (224, 3), (56, 10), (84, 10))
BASELINE = (224, 3)


def run_name(size: int, epochs: int) -> str:
    return f"vgg11-ratio4-{size}" + ("" if epochs == 3 else f"-{epochs}ep")


def relative_work(macs: dict[int, int], size: int, epochs: int) -> float:
    """A run's multiply-accumulates (MACs per image times the images seen) over the baseline run's."""
    return macs[size] * epochs / (macs[BASELINE[0]] * BASELINE[1])


def train_command(size: int, epochs: int) -> str:
    return TRAIN.format(s=size, e=epochs, name=run_name(size, epochs))


def archdsl_command(command: str) -> str:
    """Run an archdsl command line from the repository root; its output, as a terminal shows it."""
    argv = shlex.split(command)
    exe = Path(sys.executable).with_name("archdsl")
    result = subprocess.run([str(exe), *argv[1:]], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "ARCHDSL_DATA": str(DATA)})
    output = (result.stdout + result.stderr).rstrip()
    if result.returncode != 0:
        raise SystemExit(f"`{command}` failed:\n{output}")
    return output


def shown(command: str, keep: int | None = None) -> str:
    output = archdsl_command(command)
    if keep is not None:
        lines = output.splitlines()
        output = "\n".join(lines[:keep] + (["..."] if len(lines) > keep else []))
    return f"```\n$ {command}\n{output}\n```\n"


def training_answer() -> str:
    import archdsl

    # The work of a run: MACs per image (archdsl's count at that input) times the images it saw.
    macs = {size: archdsl.load(ROOT / "specs" / "vgg11.arch", ratio=4, input_shape=(1, size, size)).macs
            for size in {size for size, _ in RUNS_MADE}}
    rows, pictures, final, swings = [], [], {}, [0.0]
    for size, epochs in RUNS_MADE:
        run = RUNS / run_name(size, epochs)
        metrics = run / "metrics.csv"
        work = relative_work(macs, size, epochs)
        if not metrics.exists():
            rows.append(f"| {size}×{size} | {epochs} | {work:.2f} | not measured | | | |")
            continue
        with metrics.open() as f:
            history = list(csv.DictReader(f))
        last = history[-1]
        best = max(history, key=lambda e: float(e["test_acc"]))
        final[(size, epochs)] = (float(last["test_acc"]), float(best["test_acc"]), int(best["epoch"]))
        per_epoch = ", ".join(f"{float(e['test_acc']):.3f}" for e in history)
        swings += [abs(float(a["test_acc"]) - float(b["test_acc"])) for a, b in zip(history, history[1:])]
        rows.append(f"| {size}×{size} | {last['epoch']} | {work:.2f} | {float(last['train_acc']):.3f} | "
                    f"{float(last['test_acc']):.3f} | {float(best['test_acc']):.3f} (epoch {best['epoch']}) | {per_epoch} |")
        IMG.mkdir(parents=True, exist_ok=True)
        picture = f"exercise-{run_name(size, epochs).replace('-ratio4', '')}.svg"
        shutil.copyfile(run / "curves.svg", IMG / picture)
        pictures.append(f"![VGG-11/4 at {size} pixels, {epochs} epochs: loss and accuracies per epoch](img/{picture})")
    commands = "\n".join(train_command(size, epochs) for size, epochs in RUNS_MADE)
    return (
        "Reduced CPU runs (2 cores, no GPU): VGG-11 with a quarter of the channels (the book's `ratio = 4`), "
        "the book's learning rate 0.05, batch 128 and Xavier initialisation, on the first 10,000 images of each "
        "Fashion-MNIST split, instead of the book's 60,000 for 10 epochs; the same seed everywhere, so the first "
        "epochs of a 10-epoch run are those of the 3-epoch run at its size. The book reaches 0.920 test accuracy "
        "at 224×224 after 10 full epochs on a GPU; these short runs are far from converged, so they compare the "
        "sizes with each other, not with the book. *Work* is the run's multiply-accumulates (archdsl's MACs per "
        "image at that input, times the images seen) relative to 224×224 for 3 epochs. (Their speed is in "
        "docs/benchmarks.md: these runs shared the CPU with other work.)\n\n"
        f"```\n{commands}\n```\n\n"
        "| input | epochs | work | train accuracy | test accuracy | best test accuracy | test accuracy per epoch |\n"
        "|---|---:|---:|---:|---:|---:|---|\n"
        + "\n".join(rows) + "\n\n" + comparison(final, macs, max(swings)) + "\n\n".join(pictures) + "\n"
    )


def comparison(final: dict[tuple[int, int], tuple[float, float, int]], macs: dict[int, int], swing: float) -> str:
    """What the table says about the question, from its own numbers."""
    if BASELINE not in final:
        return ""
    base = final[BASELINE][0]
    sentences = []
    for (size, epochs), (last, best, best_epoch) in sorted(final.items()):
        if (size, epochs) == BASELINE:
            continue
        work = relative_work(macs, size, epochs)
        sentences.append(f"{size}×{size} for {epochs} epochs, with {work:.2f} of the work, ends at {last:.3f} "
                         f"and peaks at {best:.3f} (epoch {best_epoch})")
    verdicts = []
    for size in sorted({size for size, _ in final if size != BASELINE[0]}):
        epochs, (_, best, _) = max(((e, v) for (s, e), v in final.items() if s == size), key=lambda run: run[1][1])
        work = relative_work(macs, size, epochs)
        reached = "reaches" if best >= base else "does not reach"
        verdicts.append(f"at {size}×{size} the network {reached} it (best {best:.3f}, in the {epochs}-epoch run, "
                        f"which costs {work:.2f} of the work)")
    answer = f"So, in short: {'; '.join(verdicts)}.\n\n" if verdicts else ""
    return (f"Against 224×224 for 3 epochs ({base:.3f} test accuracy): " + "; ".join(sentences) + ". "
            "Epoch for epoch the small inputs learn more slowly; for less work than the 224-pixel run they get "
            "several times the epochs. At the book's constant learning rate of 0.05 the test accuracy moves by up "
            f"to {swing:.3f} from one epoch to the next while the training accuracy climbs steadily, so a single "
            "final figure says little; the per-epoch column shows the whole course.\n\n" + answer)


def page() -> str:
    parts = [
        "# Exercises from Dive into Deep Learning, answered with archdsl\n",
        "Generated by `python scripts/make_exercises.py` from the commands' real output; do not edit by hand.\n",
        "## VGG (d2l 8.2; 7.2 in the Chinese edition)\n",
        "**How do AlexNet's and VGG's parameter counts and costs compare, and why is VGG so much slower?** "
        "Both spend over 90% of their parameters in the fully connected head, but VGG's stack of 3×3 convolutions "
        "at full resolution costs eight times AlexNet's MACs:\n",
        shown("archdsl compare specs/alexnet.arch specs/vgg11.arch"),
        "**How many FLOPs sit in the convolutional layers against the fully connected ones?** The family rows above "
        "answer it for VGG-11 (98.4% of the MACs in convolutions, 92.8% of the parameters in linear layers); per "
        "stage, at the ImageNet setting:\n",
        shown("archdsl compile specs/vgg16.arch -p in_channels=3 -p classes=1000 --depth 1"),
        "**Build VGG-16 and VGG-19 from the paper's Table 1.** `specs/vgg16.arch` and `specs/vgg19.arch` are "
        "configurations D and E; their totals at the ImageNet setting (torchvision's vgg16 counts 138,357,544):\n",
        shown("archdsl compare specs/vgg16.arch specs/vgg19.arch -p in_channels=3 -p classes=1000"),
        "**Where did VGG-11's other layers go when the book prints eight blocks?** The five `vgg` blocks hold the "
        "eight convolutions; at depth 1 each is one row:\n",
        shown("archdsl compile specs/vgg11.arch --depth 1"),
        "**Train at 56 or 84 pixels instead of 224. Can you keep the accuracy?** First the smallest input VGG "
        "takes and what happens to its classifier as the input shrinks, from the symbolic shapes:\n",
        shown("archdsl check --min-input specs/vgg11.arch"),
        "At 56 pixels the five pools leave 1×1, at 84 pixels 2×2, so the first linear layer shrinks from 25,088 "
        "to 128 or 512 inputs:\n",
        shown("archdsl compare specs/vgg11.arch --param-a ratio=4 --param-b ratio=4 --input-a 1x224x224 --input-b 1x56x56"),
        training_answer(),
        "## GoogLeNet (d2l 8.4; 7.4 in the Chinese edition)\n",
        "**What is the smallest image GoogLeNet takes?** The book's GoogLeNet pads every convolution and pool, so "
        "each window still fits a 1×1 input and no size ever falls below 1: it accepts 1×1 (torch agrees; the "
        "test suite runs it). Networks without that padding have a real minimum, such as AlexNet's 65 pixels:\n",
        shown("archdsl check --min-input specs/googlenet.arch specs/alexnet.arch"),
        "**Compare GoogLeNet's parameters with AlexNet, VGG and NiN.** How NiN and GoogLeNet cut parameters: "
        "no large fully connected head (NiN ends in a 1×1 convolution and global pooling, GoogLeNet in global "
        "pooling and one small linear layer):\n",
        shown("archdsl compare specs/googlenet.arch specs/alexnet.arch"),
        shown("archdsl compare specs/googlenet.arch specs/vgg11.arch"),
        shown("archdsl compare specs/googlenet.arch specs/nin.arch"),
    ]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", action="store_true", help="train the VGG runs first (long on a CPU)")
    args = parser.parse_args()
    if args.train:
        for size, epochs in RUNS_MADE:
            shutil.rmtree(RUNS / run_name(size, epochs), ignore_errors=True)
            print(archdsl_command(train_command(size, epochs)))
    (ROOT / "docs" / "exercises.md").write_text(page(), encoding="utf-8")
    print("wrote docs/exercises.md")


if __name__ == "__main__":
    main()
