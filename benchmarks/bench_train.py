"""archdsl's training runner against a faithful re-implementation of d2l's ``train_ch6`` (issue 4).

    python benchmarks/bench_train.py                    # CPU: LeNet at 28x28, VGG-11/8 at 56x56
    python benchmarks/bench_train.py --batches 20 --repeats 3 --device cuda
    python benchmarks/bench_train.py --layouts          # one training step: default layout vs channels_last
    python benchmarks/bench_train.py --amp bf16         # archdsl with bf16 autocast (opt-in on the CPU)

Same model (built by archdsl from the spec, d2l's Xavier init), batch size, device and data (the
Fashion-MNIST files in ../shared/datasets/fashion-mnist) on both sides, measured in one process,
alternating, each a fixed number of training batches after as many warm-up batches:

* archdsl: ``archdsl.runner.train.start`` with ``--limit`` = batches x batch size and two epochs;
  the figure is the second epoch's ``examples_per_s`` from metrics.csv (training time only).
* d2l: ``torch.utils.data.DataLoader`` (shuffle, 4 workers, as ``d2l.get_dataloader_workers``)
  over a Dataset that does what ``torchvision.datasets.FashionMNIST`` with
  ``transforms.Compose([Resize(n), ToTensor()])`` does per sample (PIL image, PIL bilinear resize,
  to float in [0, 1]), and the loop of ``d2l.train_ch6``: ``.to(device)`` per batch, SGD step, then
  ``float()`` of the loss sum and accuracy per batch (d2l's Accumulator). Two figures: wall clock,
  and the book's own, which times only the compute (its timer stops while the DataLoader works).

torchvision is not needed: the two transforms are re-implemented as torchvision does them for PIL
images (``img.resize((w, h), BILINEAR)``; ``ToTensor``'s ``div(255)``). The book's animator is left
out, which favours d2l. Results are medians over ``--repeats``.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = ROOT.parent / "shared" / "datasets"

import archdsl
from archdsl.runner import datasets, train
from archdsl.runner.options import TrainOptions


@dataclass(frozen=True)
class Case:
    label: str
    spec: str
    params: dict
    size: int
    batch: int
    lr: float


CPU_CASES = [
    Case("LeNet, 28x28", "specs/lenet.arch", {}, 28, 256, 0.9),
    Case("VGG-11 (channels/8), 56x56", "specs/vgg11.arch", {"ratio": 8}, 56, 128, 0.05),
]


class BookFashionMNIST(torch.utils.data.Dataset):
    """torchvision's FashionMNIST.__getitem__ with Compose([Resize(size), ToTensor()])."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, size: int) -> None:
        self.data = torch.from_numpy(images[:, 0])  # (N, 28, 28) uint8, as torchvision keeps it
        self.targets = torch.from_numpy(labels)
        self.size = size

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        from PIL import Image

        img, target = self.data[index], int(self.targets[index])
        img = Image.fromarray(img.numpy(), mode="L")
        if self.size != img.size[0]:
            img = img.resize((self.size, self.size), Image.BILINEAR)  # transforms.Resize on a PIL image
        pixels = torch.from_numpy(np.array(img, np.uint8, copy=True))  # transforms.ToTensor
        pixels = pixels.view(img.size[1], img.size[0], 1).permute(2, 0, 1).contiguous()
        return pixels.float().div(255), target


def d2l_accuracy(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    y_hat = y_hat.argmax(axis=1)
    cmp = y_hat.type(y.dtype) == y
    return float(cmp.type(y.dtype).sum())


def run_d2l(net, data, case: Case, batches: int, device: torch.device) -> tuple[float, float]:
    """Examples/s of d2l's train_ch6 loop over ``batches`` batches after as many warm-up ones:
    (wall clock, compute only)."""
    model = net.build(init="d2l", seed=0).to(device)
    loader = torch.utils.data.DataLoader(BookFashionMNIST(data.train_images, data.train_labels, case.size),
                                         case.batch, shuffle=True, num_workers=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=case.lr)
    loss = nn.CrossEntropyLoss()
    model.train()
    compute, seen, started = 0.0, 0, None
    metric = [0.0, 0.0, 0.0]
    for i, (X, y) in enumerate(loader):
        if i == batches:
            started = time.perf_counter()
        if i == 2 * batches:
            break
        tic = time.perf_counter()
        optimizer.zero_grad()
        X, y = X.to(device), y.to(device)
        y_hat = model(X)
        l = loss(y_hat, y)
        l.backward()
        optimizer.step()
        with torch.no_grad():
            for k, value in enumerate((float(l * X.shape[0]), d2l_accuracy(y_hat, y), X.shape[0])):
                metric[k] += value
        if i >= batches:
            compute += time.perf_counter() - tic
            seen += X.shape[0]
    wall = time.perf_counter() - started
    return seen / wall, seen / compute


def run_archdsl(net, case: Case, batches: int, device: str, amp: str) -> float:
    with tempfile.TemporaryDirectory() as folder:
        options = TrainOptions(epochs=2, batch_size=case.batch, lr=case.lr, init="d2l", seed=0,
                               data_dir=str(DATA_ROOT), limit=batches * case.batch, device=device, amp=amp,
                               resize=case.size if case.size != 28 else None, out=str(Path(folder) / "run"))
        result = train.start(net, options, stream=io.StringIO())
    return result.history[1].examples_per_s


LAYOUT_CASES = [  # (label, spec, params, size): the runner's channels_last default, checked per model
    ("LeNet", "specs/lenet.arch", {}, 28),
    ("VGG-11/8", "specs/vgg11.arch", {"ratio": 8}, 56),
    ("VGG-11/4", "specs/vgg11.arch", {"ratio": 4}, 224),
    ("AlexNet", "specs/alexnet.arch", {}, 224),
    ("ResNet-18", "specs/resnet18.arch", {}, 96),
]


def layouts(steps: int, repeats: int, device: torch.device) -> None:
    """One SGD training step (batch 64) in the default layout against channels_last, alternating."""
    print("| model | input | default layout (ex/s) | channels_last (ex/s) | ratio |\n|---|---|---:|---:|---:|")
    for label, spec, params, size in LAYOUT_CASES:
        net = archdsl.load(spec, input_shape=(1, size, size), **params)
        x = torch.randn(64, 1, size, size, device=device)
        y = torch.randint(0, 10, (64,), device=device)
        rates: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(repeats):
            for nhwc in (False, True):
                model = net.build(seed=0).to(device)
                inputs = x
                if nhwc:
                    model = model.to(memory_format=torch.channels_last)
                    inputs = x.contiguous(memory_format=torch.channels_last)
                optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

                def step(model=model, inputs=inputs, optimizer=optimizer, y=y) -> None:
                    optimizer.zero_grad(set_to_none=True)
                    nn.functional.cross_entropy(model(inputs), y).backward()
                    optimizer.step()

                step()
                start = time.perf_counter()
                for _ in range(steps):
                    step()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                rates[nhwc].append(64 * steps / (time.perf_counter() - start))
        plain, nhwc = statistics.median(rates[False]), statistics.median(rates[True])
        print(f"| {label} | {size}x{size} | {plain:,.1f} | {nhwc:,.1f} | {nhwc / plain:.2f}x |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20, help="timed batches per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--amp", default="auto", choices=("auto", "bf16", "off"),
                        help="archdsl's --amp (auto: bf16 on CUDA, fp32 on the CPU); d2l always runs in fp32")
    parser.add_argument("--layouts", action="store_true",
                        help="instead: one training step in the default layout against channels_last, per model")
    args = parser.parse_args()
    os.chdir(ROOT)
    device = torch.device(args.device)
    if args.layouts:
        print(f"load average before: {os.getloadavg()[0]:.2f}; median of {args.repeats}, 3 steps each\n")
        layouts(3, args.repeats, device)
        return
    data = datasets.load("fashion-mnist", str(DATA_ROOT), channels=1)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), device {device}"
          + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""))
    print(f"archdsl --amp {args.amp}; d2l in fp32. {args.batches} timed batches after {args.batches} warm-up ones; "
          f"median of {args.repeats}; "
          f"load average before: {os.getloadavg()[0]:.2f}\n")
    print("| model | batch | archdsl ex/s | d2l ex/s (wall) | d2l ex/s (compute only) | ratio (wall) | ratio (compute) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for case in CPU_CASES:
        net = archdsl.load(case.spec, input_shape=(1, case.size, case.size), **case.params)
        ours, wall, compute = [], [], []
        for _ in range(args.repeats):
            ours.append(run_archdsl(net, case, args.batches, args.device, args.amp))
            book_wall, book_compute = run_d2l(net, data, case, args.batches, device)
            wall.append(book_wall)
            compute.append(book_compute)
        a, w, c = statistics.median(ours), statistics.median(wall), statistics.median(compute)
        print(f"| {case.label} | {case.batch} | {a:,.0f} | {w:,.0f} | {c:,.0f} | {a / w:.2f}x | {a / c:.2f}x |",
              flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f} (above ~0.5 on 2 cores, other work shared the CPU)")


if __name__ == "__main__":
    sys.exit(main())
