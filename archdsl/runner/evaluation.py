"""``archdsl eval`` and ``archdsl predict``: a run's checkpoint on its test split (loss, accuracy, accuracy per
class and the confusion matrix), and on image files (the top classes with their probabilities).

    result = evaluate(net, "runs/lenet-...")              # the last checkpoint; weights="best" for the best
    print(result.report())                                # accuracy per class, confusion matrix
    predict(net, "runs/lenet-...", [Path("shoe.png")])    # [Prediction(image=..., top=(("sneaker", 0.93), ...))]

Both read images exactly as training does (batches.Preprocessor: the run's resize and normalisation), so
a prediction on an image file of the test set is the prediction that eval counts for it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from archdsl.atomic import write_atomic
from archdsl.errors import UsageError
from archdsl.runner import checkpoint, datasets, distributed, runfolder, session
from archdsl.runner import threads as torch_threads
from archdsl.runner.batches import Preprocessor
from archdsl.runner.distributed import Context
from archdsl.runner.options import TrainOptions
from archdsl.runner.session import Network
from archdsl.summary import format_table

CONFUSION = "confusion"
# The confusion matrix is printed up to this many classes (CIFAR-100's is only drawn), and its cells are
# written into the picture up to the second number.
PRINTED_CLASSES = 20
ANNOTATED_CLASSES = 20
DEFAULT_TOP = 5


@dataclass(frozen=True)
class Measured:
    """Sums over a split, on all ranks: loss (plain cross-entropy), correct predictions, examples, and the
    confusion matrix (rows: true class, columns: predicted) when it was asked for."""

    loss: float
    correct: float
    count: int
    confusion: np.ndarray | None = None

    @property
    def mean_loss(self) -> float:
        return self.loss / max(self.count, 1)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.count, 1)


def measure(model: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
            preprocess: Preprocessor, options: TrainOptions, context: Context, classes: int | None = None) -> Measured:
    """Run ``model`` in eval mode over ``batches`` (uint8 images, labels) and sum over the ranks."""
    amp = session.autocast_dtype(options, context)
    device = context.device
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.float64)
    confusion = torch.zeros(classes * classes if classes else 1, device=device, dtype=torch.float64)
    count = 0
    with torch.no_grad():
        for images, labels in batches:
            with session.autocast(device, amp):
                logits = model(preprocess(images))
            predicted = logits.argmax(dim=1)
            loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum").double()
            correct += (predicted == labels).sum().double()
            if classes:
                confusion += torch.bincount(labels * classes + predicted, minlength=classes * classes).double()
            count += len(labels)
    totals = torch.cat([torch.stack([loss_sum, correct, torch.tensor(float(count), dtype=torch.float64,
                                                                       device=device)]), confusion])
    summed = distributed.all_sum(context, totals).cpu()
    loss_total, correct_total, count_total = summed[:3].tolist()
    matrix = summed[3:].numpy().astype(np.int64).reshape(classes, classes) if classes else None
    return Measured(loss_total, correct_total, int(count_total), matrix)


@dataclass(frozen=True)
class EvalResult:
    run_dir: Path
    epoch: int
    test_loss: float
    test_acc: float
    examples: int
    classes: tuple[str, ...] = ()
    confusion: np.ndarray | None = None  # rows: true class, columns: predicted
    weights: str = "last"
    not_drawn: str | None = None  # why confusion.png could not be written (a run folder of someone else's)

    def line(self) -> str:
        which = "best checkpoint" if self.weights == "best" else "checkpoint"
        return (f"test_loss {self.test_loss:.4f}  test_acc {self.test_acc:.4f}  "
                f"({self.examples} examples, {which} of epoch {self.epoch})")

    def per_class(self) -> list[tuple[str, int, int, float]]:
        """(class, test examples, correct, accuracy) for each class."""
        if self.confusion is None:
            return []
        totals = self.confusion.sum(axis=1)
        return [(name, int(total), int(self.confusion[i, i]), float(self.confusion[i, i] / total) if total else 0.0)
                for i, (name, total) in enumerate(zip(self.classes, totals, strict=True))]

    def report(self) -> str:
        """The line, the accuracy of each class, and (up to PRINTED_CLASSES classes) the confusion matrix."""
        parts = [self.line()]
        if self.confusion is None:
            return parts[0]
        body = [[str(i), name, f"{total:,}", f"{right:,}", f"{accuracy:.4f}"]
                for i, (name, total, right, accuracy) in enumerate(self.per_class())]
        parts += ["", format_table(["#", "class", "examples", "correct", "accuracy"], body, {0, 2, 3, 4})]
        if len(self.classes) <= PRINTED_CLASSES:
            header = ["true \\ predicted", *map(str, range(len(self.classes)))]
            rows = [[f"{i} {name}", *(f"{n:,}" for n in row)]
                    for i, (name, row) in enumerate(zip(self.classes, self.confusion, strict=True))]
            parts += ["", format_table(header, rows, set(range(1, len(header))))]
        drawn = (f"confusion matrix drawn in {self.run_dir / CONFUSION}.png and .svg" if self.not_drawn is None
                 else f"note: the confusion matrix was not drawn: {self.not_drawn}")
        return "\n".join([*parts, "", drawn])


def evaluate(net: Network, run_dir: Path, *, device: str | None = None, data_dir: str | None = None,
             data: str | None = None, threads: int | None = None, weights: str = "last") -> EvalResult:
    """Test loss and accuracy of the last (or best) checkpoint in ``run_dir`` on the run's test data (with the
    run's thread count unless ``threads``), per class too; the confusion matrix is drawn in the run folder."""
    net.require_concrete("evaluating")
    info = runfolder.read(Path(run_dir))
    changes = {"device": device, "data_dir": data_dir, "data": data, "threads": threads}
    session.check_recorded_data(info, changes)
    options = info.options.replace(**{key: value for key, value in changes.items() if value is not None})
    context = distributed.setup(options.device)
    thread_count = options.threads or torch_threads.default_choice(None, session.local_processes(context)).count
    try:
        with torch_threads.using(thread_count):
            model = session.build_model(net, options, context)
            chosen = session.chosen_checkpoint(info, model, net, weights)
            checkpoint.load_weights(model, chosen, spec=checkpoint.spec_hash(net), trained_from=info.trained_from())
            image_data = session.load_data(net, options)
            device_data = session.device_data(image_data, options, context, net, info.normalization)
            batches = device_data.test_batches(options.batch_size, context.rank, context.world_size)
            measured = measure(model, batches, device_data.preprocess, options, context, len(image_data.classes))
    finally:
        distributed.teardown(context)
    result = EvalResult(info.folder, chosen.epoch, measured.mean_loss, measured.accuracy, measured.count,
                        image_data.classes, measured.confusion, weights)
    if context.is_main:
        try:
            write_confusion(result, f"{net.name} on {image_data.name}")
        except UsageError as err:  # the figures stand without the picture (a run folder one may only read)
            return dataclasses.replace(result, not_drawn=err.message)
    return result


def write_confusion(result: EvalResult, title: str) -> None:
    """confusion.png and confusion.svg in the run folder: counts, rows the true class, columns the predicted."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix, classes = result.confusion, result.classes
    side = min(4.0 + 0.35 * len(classes), 24.0)
    drawn = Figure(figsize=(side + 1.5, side), layout="constrained")
    FigureCanvasAgg(drawn)
    axes = drawn.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    drawn.colorbar(image, ax=axes, shrink=0.8, label="test examples")
    ticks = range(len(classes))
    axes.set_xticks(ticks, classes, rotation=90, fontsize=7 if len(classes) > 30 else 9)
    axes.set_yticks(ticks, classes, fontsize=7 if len(classes) > 30 else 9)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    if len(classes) <= ANNOTATED_CLASSES:
        threshold = matrix.max() / 2 if matrix.size else 0
        for (row, column), count in np.ndenumerate(matrix):
            axes.text(column, row, f"{count}", ha="center", va="center", fontsize=7,
                      color="white" if count > threshold else "black")
    which = "best" if result.weights == "best" else "last"
    axes.set_title(f"{title}: test accuracy {result.test_acc:.4f} ({which} checkpoint, epoch {result.epoch})")
    for suffix in ("png", "svg"):
        write_atomic(result.run_dir / f"{CONFUSION}.{suffix}",
                     lambda tmp, fmt=suffix: drawn.savefig(tmp, format=fmt, dpi=120))


@dataclass(frozen=True)
class Prediction:
    """The ``top`` classes of one image with their probabilities, most probable first."""

    image: Path
    top: tuple[tuple[str, float], ...]

    def lines(self) -> list[str]:
        width = max(len(name) for name, _ in self.top)
        return [str(self.image), *(f"  {name.ljust(width)}  {probability:.4f}" for name, probability in self.top)]


def predict(net: Network, run_dir: Path, images: Sequence[Path], *, top: int = DEFAULT_TOP, weights: str = "last",
            device: str | None = None, threads: int | None = None) -> list[Prediction]:
    """The ``top`` classes of each image file by the run's last (or best) checkpoint, read as the run's own
    images: grayscale or RGB as the network takes them, resized to its input and normalised as in training."""
    net.require_concrete("predicting")
    if not images:
        raise UsageError("predict needs at least one image file", hint="archdsl predict SPEC --checkpoint RUN a.png")
    if top < 1:
        raise UsageError(f"--top must be at least 1, got {top}")
    info = runfolder.read(Path(run_dir))
    session.check_classifier(net)
    channels = net.input_shape[0]
    if channels not in (1, 3):
        raise UsageError(f"predict reads grayscale or RGB image files; network '{net.name}' takes {channels} channels",
                         file=net.source_path)
    changes = {"device": device, "threads": threads}
    options = info.options.replace(**{key: value for key, value in changes.items() if value is not None})
    pixels = [datasets.read_image(Path(path), "L" if channels == 1 else "RGB") for path in images]
    classes = info.data.classes
    context = distributed.setup(options.device)
    try:
        with torch_threads.using(options.threads or torch_threads.default_choice(None).count):
            model = session.build_model(net, options, context)
            chosen = session.chosen_checkpoint(info, model, net, weights)
            checkpoint.load_weights(model, chosen, spec=checkpoint.spec_hash(net), trained_from=info.trained_from())
            preprocess = Preprocessor(context.device, size=(net.input_shape[1], net.input_shape[2]),
                                      normalization=info.normalization,
                                      channels_last=session.channels_last(options))
            probabilities = _probabilities(model, pixels, preprocess, options, context)
    finally:
        distributed.teardown(context)
    count = min(top, len(classes))
    found = []
    for path, row in zip(images, probabilities, strict=True):
        order = np.argsort(-row, kind="stable")[:count]
        found.append(Prediction(Path(path), tuple((classes[i], float(row[i])) for i in order)))
    return found


def _probabilities(model: torch.nn.Module, pixels: list[np.ndarray], preprocess: Preprocessor,
                   options: TrainOptions, context: Context) -> np.ndarray:
    """Softmax over the classes for each image; images of one size go through the network together, in
    batches of the run's --batch-size, as eval's do."""
    amp = session.autocast_dtype(options, context)
    model.eval()
    result = [None] * len(pixels)
    with torch.no_grad():
        for indices in _same_size_batches(pixels, options.batch_size):
            stacked = np.stack([_chw(pixels[i]) for i in indices])
            images = torch.from_numpy(stacked).to(context.device)
            with session.autocast(context.device, amp):
                logits = model(preprocess(images))
            rows = torch.softmax(logits.float(), dim=1).cpu().numpy()
            for i, row in zip(indices, rows, strict=True):
                result[i] = row
    return np.stack(result)


def _same_size_batches(pixels: list[np.ndarray], batch_size: int) -> Iterator[list[int]]:
    sizes: dict[tuple[int, ...], list[int]] = {}
    for i, array in enumerate(pixels):
        sizes.setdefault(array.shape, []).append(i)
    for indices in sizes.values():
        for start in range(0, len(indices), batch_size):
            yield indices[start : start + batch_size]


def _chw(array: np.ndarray) -> np.ndarray:
    return array[None] if array.ndim == 2 else np.ascontiguousarray(array.transpose(2, 0, 1))
