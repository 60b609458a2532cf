"""archdsl eval per class with its confusion matrix, and archdsl predict on image files, which agrees with eval
on the same images: Fashion-MNIST images written as PNG files, as an image-folder data set."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from test_runner_support import DATA_ROOT, FakeNetwork

from archdsl.errors import UsageError
from archdsl.runner import datasets, evaluation, train
from archdsl.runner.options import TrainOptions

NET = FakeNetwork(width=4)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, list[Path], list[int]]:
    """A run on 400 training and 120 test images of Fashion-MNIST, as PNG files in train/CLASS and test/CLASS;
    the test files and their labels."""
    root = tmp_path_factory.mktemp("fashion")
    real = datasets.load("fashion-mnist", str(DATA_ROOT), 1)
    files, labels = [], []
    for split, images, classes, count in (("train", real.train_images, real.train_labels, 400),
                                          ("test", real.test_images, real.test_labels, 120)):
        for i in range(count):
            folder = root / "data" / split / f"{classes[i]:02d}-{real.classes[classes[i]]}"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{i:04d}.png"
            Image.fromarray(images[i, 0]).save(path)
            if split == "test":
                files.append(path)
                labels.append(int(classes[i]))
    options = TrainOptions(data=str(root / "data"), epochs=2, batch_size=50, lr=0.05, momentum=0.9, threads=1,
                           out=str(root / "run"))
    result = train.start(NET, options, stream=io.StringIO())
    return result.run_dir, files, labels


def test_eval_counts_each_class_and_draws_the_confusion_matrix(run):
    run_dir, _, labels = run
    result = evaluation.evaluate(NET, run_dir)
    assert result.confusion.shape == (10, 10) and result.confusion.sum() == 120
    assert np.array_equal(result.confusion.sum(axis=1), np.bincount(labels, minlength=10))
    assert result.test_acc == pytest.approx(np.trace(result.confusion) / 120)
    per_class = result.per_class()
    assert [name for name, *_ in per_class][:2] == ["00-t-shirt", "01-trouser"]
    assert all(right == result.confusion[i, i] for i, (_, _, right, _) in enumerate(per_class))
    report = result.report().splitlines()
    assert report[0] == result.line()
    assert report[2].split() == ["#", "class", "examples", "correct", "accuracy"]
    assert report[15].split()[:2] == ["true", "\\"]  # the matrix follows the table of classes
    assert report[-1] == f"confusion matrix drawn in {run_dir / 'confusion'}.png and .svg"
    assert (run_dir / "confusion.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (run_dir / "confusion.svg").read_bytes()[:1000]


def test_predict_agrees_with_eval_on_the_same_images(run):
    run_dir, files, labels = run
    found = evaluation.predict(NET, run_dir, files, top=3)
    confusion = np.zeros((10, 10), dtype=np.int64)
    classes = datasets.load(str(files[0].parents[2]), None, 1).classes
    for prediction, label in zip(found, labels, strict=True):
        confusion[label, classes.index(prediction.top[0][0])] += 1
        probabilities = [p for _, p in prediction.top]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6
    assert np.array_equal(confusion, evaluation.evaluate(NET, run_dir).confusion)


def test_predict_reads_any_image_as_the_run_read_its_own(run, tmp_path):
    """An RGB image of another size becomes a grayscale image of the network's size first."""
    run_dir, files, _ = run
    gray = np.asarray(Image.open(files[0]))
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(rgb)
    same = evaluation.predict(NET, run_dir, [files[0], rgb], top=10)
    assert same[0].top == same[1].top and len(same[0].top) == 10
    large = tmp_path / "large.png"
    Image.fromarray(gray).resize((56, 56), Image.NEAREST).save(large)
    assert evaluation.predict(NET, run_dir, [large], top=100)[0].top[0][0] == same[0].top[0][0]  # at most 10


def test_predict_mistakes_are_one_error(run, tmp_path):
    run_dir, files, _ = run
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(UsageError, match="cannot read image notes.png"):
        evaluation.predict(NET, run_dir, [tmp_path / "notes.png"])
    with pytest.raises(UsageError, match="--top must be at least 1"):
        evaluation.predict(NET, run_dir, files[:1], top=0)
    with pytest.raises(UsageError, match="predict needs at least one image file"):
        evaluation.predict(NET, run_dir, [])


def test_the_commands_print_the_tables_and_the_top_classes(run, tmp_path):
    from archdsl.cli import app

    _, files, _ = run
    spec = tmp_path / "cnn.arch"  # eval and predict take the run's network from this spec
    spec.write_text("network cnn(width = 4) : [1, 28, 28] -> [10] =\n"
                    "    conv3x3 width; relu; maxpool2; conv3x3 2 * width; relu; maxpool2; flatten; linear 10\n")
    runner = CliRunner()
    spec_run = tmp_path / "spec-run"
    done = runner.invoke(app, ["train", str(spec), "--data", str(files[0].parents[2]), "--epochs", "1", "--threads",
                               "1", "--batch-size", "50", "--out", str(spec_run)])
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["predict", str(spec), *map(str, files[:2]), "--checkpoint", str(spec_run),
                               "--top", "2"])
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert lines[0] == str(files[0]) and lines[3] == str(files[1]) and len(lines) == 6
    name, probability = lines[1].strip().rsplit(maxsplit=1)
    assert name in datasets.load(str(files[0].parents[2]), None, 1).classes and 0 < float(probability) <= 1
    done = runner.invoke(app, ["eval", str(spec), "--checkpoint", str(spec_run), "--weights", "best"])
    assert done.exit_code == 0, done.output
    assert "best checkpoint of epoch 1" in done.output.splitlines()[0]
    assert "true \\ predicted" in done.output


def test_eval_of_a_run_folder_one_may_only_read_still_reports(run, tmp_path, monkeypatch):
    """The figures stand without the picture: a folder that cannot take confusion.png is a note, not an error."""
    run_dir, _, _ = run

    def refuse(result, title):
        raise UsageError(f"cannot write {run_dir / 'confusion.png'}: Permission denied")

    monkeypatch.setattr(evaluation, "write_confusion", refuse)
    result = evaluation.evaluate(NET, run_dir)
    assert result.report().splitlines()[-1] == (
        f"note: the confusion matrix was not drawn: cannot write {run_dir / 'confusion.png'}: Permission denied")
