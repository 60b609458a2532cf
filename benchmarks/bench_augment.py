"""The augmented batch pipeline against a LeNet training step on the CPU (issue 16: at most 5% of the step).

    python benchmarks/bench_augment.py                  # 1 thread, 5 rounds
    python benchmarks/bench_augment.py --threads 2 --rounds 7

Both sides are the runner's own code, in one process, alternating round by round:

* the pipeline: one batch of the epoch's permutation gathered from the uint8 images on the device
  (``DeviceData.train_batches``), augmented (``Augmenter``: crop and flip as one gather of the uint8 batch,
  erasing and cutout as one masked fill), converted, normalised and laid out channels_last
  (``DeviceData.preprocess``), for each ``--augment`` setting below and for none;
* the step: LeNet (specs/lenet.arch, d2l's init) forward, cross-entropy, backward and an SGD step on a
  preprocessed batch, as ``_Trainer._train_epoch`` does it (channels_last, fp32).

Fashion-MNIST (1x28x28, the real files in ../shared/datasets) with the book's LeNet, and CIFAR-sized images
(3x32x32, random pixels: the pipeline's cost does not depend on what the pixels show) with LeNet at 3 input
channels and 32x32. Each round times ``--batches`` batches of each; the tables give the best round of each (the
least disturbed by other processes on a shared machine) and their ratio, the median over rounds of the
per-round ratio, and what the augmentation adds to the unaugmented pipeline. The load average is printed
before and after.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import archdsl
from archdsl.runner import datasets
from archdsl.runner.augment import Augment, Augmenter
from archdsl.runner.batches import DeviceData
from archdsl.runner.datasets import ImageData, Normalization

DATA_ROOT = ROOT.parent / "shared" / "datasets"
SETTINGS = ("none", "flip", "crop=4:zero,flip", "crop=4:reflect,flip", "crop=4:zero,flip,erase=0.5",
            "crop=4:zero,flip,cutout=8")


def data_sets() -> list[tuple[str, ImageData, dict]]:
    fashion = datasets.load("fashion-mnist", str(DATA_ROOT), 1)
    rng = np.random.default_rng(0)
    cifar_like = ImageData("cifar-sized", rng.integers(0, 256, (50_000, 3, 32, 32), dtype=np.uint8),
                           rng.integers(0, 10, 50_000), np.zeros((1, 3, 32, 32), np.uint8), np.zeros(1, np.int64),
                           tuple(map(str, range(10))), "random")
    return [("Fashion-MNIST, LeNet 1x28x28", fashion, {}),
            ("CIFAR-sized, LeNet 3x32x32", cifar_like, {"in_channels": 3, "input_shape": (3, 32, 32)})]


def per_batch(fn, batches: int) -> float:
    start = time.perf_counter()
    for _ in range(batches):
        fn()
    return (time.perf_counter() - start) / batches


def measure(data: ImageData, lenet: dict, batch: int, batches: int, rounds: int) -> dict[str, list[float]]:
    device = torch.device("cpu")
    size = tuple(lenet.get("input_shape", (1, 28, 28))[1:])
    on_device = DeviceData(data, device, size=size, normalization=Normalization.of(data.train_images[:10_000]),
                           channels_last=True)
    net = archdsl.load(ROOT / "specs" / "lenet.arch", **lenet)
    model = net.build(init="d2l", seed=0).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.9)
    criterion = torch.nn.CrossEntropyLoss()
    x = on_device.preprocess(on_device.train_images[:batch])
    labels = on_device.train_labels[:batch]

    def step() -> None:
        loss = criterion(model(x), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    times: dict[str, list[float]] = {"step": [], **{setting: [] for setting in SETTINGS}}
    for round_ in range(rounds + 1):  # the first round warms up and is left out
        found = {"step": per_batch(step, batches)}
        for setting in SETTINGS:
            augment = Augment.parse(setting)
            augmenter = Augmenter(augment, device, round_) if setting != "none" else None
            order = on_device.train_batches(round_, batch)

            def pipeline(order=order, augmenter=augmenter) -> None:
                images, _ = next(order)
                on_device.preprocess(images, augmenter)

            found[setting] = per_batch(pipeline, batches)
        if round_:
            for key, value in found.items():
                times[key].append(value)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--batches", type=int, default=40, help="batches per figure (an epoch has 234)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; {platform.processor() or 'cpu'}, "
          f"{os.cpu_count()} cores, torch {torch.__version__} with {args.threads} thread(s), batch {args.batch}")
    for label, data, lenet in data_sets():
        times = measure(data, lenet, args.batch, args.batches, args.rounds)
        step, best_step = statistics.median(times["step"]), min(times["step"])
        print(f"\n{label}: LeNet training step {step * 1e3:.2f} ms (median), {best_step * 1e3:.2f} ms (best)")
        print("| --augment | pipeline per batch (best) | of a LeNet step (best times) | of a step (median of rounds) "
              "| augmentation alone (best times) |")
        print("|---|---:|---:|---:|---:|")
        plain = min(times["none"])
        for setting in SETTINGS:
            best = min(times[setting])
            ratio = statistics.median(p / s for p, s in zip(times[setting], times["step"], strict=True))
            shown = "-" if setting == "none" else f"{(best - plain) / best_step:.2%}"
            print(f"| `{setting}` | {best * 1e3:.3f} ms | {best / best_step:.2%} | {ratio:.2%} | {shown} |")
    print(f"\nload average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
