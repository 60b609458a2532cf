"""CIFAR-10 and CIFAR-100 from their binary releases: small files in the same format, read from a folder and
from the .tar.gz itself, truncated or wrong files refused with one error each, the checked download, and a run
on them with CIFAR's default augmentation."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_runner_support import FakeNetwork

from archdsl.errors import UsageError
from archdsl.runner import datasets, train
from archdsl.runner.cifar import CIFAR_SETS, PIXELS, CifarSet
from archdsl.runner.options import TrainOptions

CIFAR10 = CIFAR_SETS["cifar-10"]
CIFAR100 = CIFAR_SETS["cifar-100"]


def records(known: CifarSet, count: int, seed: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """``count`` records of ``known``'s format: the bytes, the images (N, 3, 32, 32) and the labels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, len(known.classes), count).astype(np.uint8)
    label_bytes = [labels[:, None]] if known.label_bytes == 1 else [rng.integers(0, 20, (count, 1), dtype=np.uint8),
                                                                     labels[:, None]]
    rows = np.concatenate([*label_bytes, images.reshape(count, PIXELS)], axis=1)
    return rows.tobytes(), images, labels.astype(np.int64)


def write_set(folder: Path, known: CifarSet, per_file: int = 4) -> dict[str, bytes]:
    """The set's .bin files in ``folder`` (its archive's layout): the bytes of each by name."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for seed, name in enumerate(known.files):
        files[name] = records(known, per_file, seed)[0]
        (folder / name).write_bytes(files[name])
    return files


def archive(path: Path, known: CifarSet, files: dict[str, bytes]) -> bytes:
    """The official archive's layout: a top folder with the .bin files (and a readme that is skipped)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in [("readme.html", b"<html></html>"), *files.items()]:
            info = tarfile.TarInfo(f"{known.folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


@pytest.mark.parametrize("known", [CIFAR10, CIFAR100], ids=["cifar-10", "cifar-100"])
def test_the_binary_files_read_from_a_folder_and_from_the_archive(tmp_path, known):
    files = write_set(tmp_path / "root" / known.name / known.folder, known)
    from_folder = datasets.load(known.name, str(tmp_path / "root"), 3)
    archive(tmp_path / "packed" / known.archive, known, files)
    from_archive = datasets.load(known.name, str(tmp_path / "packed"), 3)
    train_count = 4 * len(known.train_files)
    assert from_folder.train_images.shape == (train_count, 3, 32, 32) and from_folder.test_images.shape == (4, 3, 32, 32)
    assert from_folder.classes == known.classes and len(known.classes) == (10 if known is CIFAR10 else 100)
    for split in ("train_images", "train_labels", "test_images", "test_labels"):
        assert np.array_equal(getattr(from_folder, split), getattr(from_archive, split)), split
    _, images, labels = records(known, 4, 0)  # the first training file's records, as written
    assert np.array_equal(from_folder.train_images[:4], images)
    assert np.array_equal(from_folder.train_labels[:4], labels)  # CIFAR-100: the fine label, not the coarse one


def test_the_files_directly_in_the_set_folder(tmp_path):
    write_set(tmp_path / "cifar-10", CIFAR10)
    assert len(datasets.load("cifar-10", str(tmp_path), 3).train_labels) == 20


def bad_file(tmp_path: Path, data: bytes, name: str = "data_batch_2.bin") -> UsageError:
    folder = tmp_path / "cifar-10" / CIFAR10.folder
    write_set(folder, CIFAR10)
    (folder / name).write_bytes(data)
    with pytest.raises(UsageError) as caught:
        datasets.load("cifar-10", str(tmp_path), 3)
    return caught.value


def test_a_truncated_file_is_one_clear_error(tmp_path):
    whole = records(CIFAR10, 4, 1)[0]
    error = bad_file(tmp_path, whole[:-100])
    assert error.message == ("data_batch_2.bin has 12,192 bytes, not a whole number of 3,073-byte records "
                             "(3 records and 2,973 bytes over)")
    assert error.file.endswith("data_batch_2.bin") and "truncated" in error.hint


def test_a_file_of_the_other_release_is_refused(tmp_path):
    """CIFAR-100's 3,074-byte records in a CIFAR-10 file."""
    error = bad_file(tmp_path, records(CIFAR100, 4, 1)[0])
    assert "not a whole number of 3,073-byte records" in error.message


def test_a_label_beyond_the_classes_and_an_empty_file_are_refused(tmp_path):
    data = bytearray(records(CIFAR10, 4, 1)[0])
    data[3073] = 12  # the second record's label
    assert bad_file(tmp_path, bytes(data)).message == "label 12 in data_batch_2.bin, but CIFAR-10 has 10 classes"
    assert bad_file(tmp_path / "empty", b"").message == "data_batch_2.bin is empty: it holds no images"


def test_the_pickled_python_release_is_never_read(tmp_path):
    """A pickle put where a .bin belongs is refused by its size, never unpickled."""
    import pickle

    pickled = pickle.dumps({b"data": np.zeros((4, PIXELS), dtype=np.uint8), b"labels": [0, 1, 2, 3]})
    assert "not a whole number" in bad_file(tmp_path, pickled).message


def test_an_incomplete_folder_names_what_is_missing(tmp_path):
    folder = tmp_path / "cifar-10" / CIFAR10.folder
    write_set(folder, CIFAR10)
    (folder / "test_batch.bin").unlink()
    with pytest.raises(UsageError, match="CIFAR-10 in .* is incomplete: test_batch.bin missing"):
        datasets.load("cifar-10", str(tmp_path), 3)


def test_a_damaged_or_foreign_archive_is_one_error(tmp_path):
    files = write_set(tmp_path / "unused", CIFAR10)
    packed = archive(tmp_path / "cut" / CIFAR10.archive, CIFAR10, files)
    (tmp_path / "cut" / CIFAR10.archive).write_bytes(packed[: len(packed) // 2])
    with pytest.raises(UsageError) as caught:
        datasets.load("cifar-10", str(tmp_path / "cut"), 3)
    assert caught.value.message.startswith("cannot read cifar-10-binary.tar.gz: ")
    assert "download it again" in caught.value.hint
    archive(tmp_path / "other" / CIFAR10.archive, CIFAR10, {k: v for k, v in files.items() if k != "test_batch.bin"})
    with pytest.raises(UsageError) as caught:
        datasets.load("cifar-10", str(tmp_path / "other"), 3)
    assert caught.value.message == "cifar-10-binary.tar.gz lacks cifar-10-batches-bin/test_batch.bin"
    short = dict(files, **{"data_batch_1.bin": files["data_batch_1.bin"][:-1]})
    archive(tmp_path / "short" / CIFAR10.archive, CIFAR10, short)
    with pytest.raises(UsageError, match="data_batch_1.bin in cifar-10-binary.tar.gz has 12,291 bytes, not a whole"):
        datasets.load("cifar-10", str(tmp_path / "short"), 3)


def test_the_download_is_checked_before_it_takes_its_name(tmp_path, monkeypatch):
    packed = archive(tmp_path / "served" / CIFAR10.archive, CIFAR10, write_set(tmp_path / "unused", CIFAR10))
    url = (tmp_path / "served" / CIFAR10.archive).as_uri()
    good = replace(CIFAR10, url=url, size=len(packed), sha256=hashlib.sha256(packed).hexdigest())
    monkeypatch.setitem(datasets.KNOWN_SETS, "cifar-10", good)
    (tmp_path / "root").mkdir()
    data = datasets.load("cifar-10", str(tmp_path / "root"), 3)
    assert len(data.train_labels) == 20 and (tmp_path / "root" / "cifar-10" / CIFAR10.archive).is_file()

    monkeypatch.setitem(datasets.KNOWN_SETS, "cifar-10", replace(good, sha256="0" * 64))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError) as caught:
        datasets.load("cifar-10", str(tmp_path / "empty"), 3)
    assert caught.value.message.startswith("CIFAR-10 is not on this machine and could not be downloaded")
    assert "checksum mismatch" in caught.value.message
    assert list((tmp_path / "empty").iterdir()) == []  # neither the file nor the folder made for it
    monkeypatch.setitem(datasets.KNOWN_SETS, "cifar-10", replace(good, size=len(packed) - 1))
    with pytest.raises(UsageError, match="more than a file of a known set can have"):
        datasets.load("cifar-10", str(tmp_path / "empty"), 3)


def test_a_run_on_cifar_takes_its_default_augmentation(tmp_path):
    write_set(tmp_path / "cifar-10" / CIFAR10.folder, CIFAR10, per_file=8)
    net = FakeNetwork(kind="mlp", input_shape=(3, 32, 32), output_shape=(10,))
    options = TrainOptions(data="cifar-10", data_dir=str(tmp_path), epochs=1, batch_size=10, threads=1,
                           out=str(tmp_path / "run"))
    stream = io.StringIO()
    result = train.start(net, options, stream=stream)
    assert stream.getvalue().startswith("cnn on cifar-10 (40 training and 8 test images)")
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["options"]["augment"] == "crop=4:zero,flip"
    assert record["data"]["classes"][:3] == ["airplane", "automobile", "bird"]
    none = train.start(net, options.replace(augment="none", out=str(tmp_path / "plain")), stream=io.StringIO())
    assert none.final.train_loss != result.final.train_loss  # the augmented batches differ from the plain ones
