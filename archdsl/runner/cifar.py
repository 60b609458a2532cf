"""CIFAR-10 and CIFAR-100 from their binary releases (never the pickled Python release: loading a pickle
runs code from the file).

A binary file is a run of fixed-size records: the label byte(s), then 3072 bytes of pixels, the red, green
and blue 32x32 planes in turn. CIFAR-10 has one label byte; CIFAR-100 two, the coarse class (of 20) and the
fine class (of 100), of which the fine one is the label here.

    cifar-10-binary.tar.gz   cifar-10-batches-bin/data_batch_1.bin ... data_batch_5.bin, test_batch.bin
    cifar-100-binary.tar.gz  cifar-100-binary/train.bin, test.bin

In each data root, a set is looked for as ``ROOT/NAME/`` or ``ROOT/`` holding the archive's folder, its
files directly, or the archive itself, which is read in place (its members are never extracted to disk).
The archive is downloaded from the authors' page when absent, checked against its SHA-256 first.
"""

from __future__ import annotations

import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from archdsl.errors import UsageError
from archdsl.runner.untrusted import open_regular

SIDE = 32
PIXELS = 3 * SIDE * SIDE

CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl",
    "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair",
    "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin",
    "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp",
    "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck",
    "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger",
    "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)
CIFAR100_COARSE = 20


@dataclass(frozen=True)
class CifarSet:
    """One of the two binary releases: where its files are, and what they hold."""

    name: str
    title: str
    archive: str
    folder: str  # the archive's top folder
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_bytes: int
    classes: tuple[str, ...]
    url: str
    size: int  # the archive's bytes
    sha256: str  # the archive's

    @property
    def record(self) -> int:
        return self.label_bytes + PIXELS

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train_files, *self.test_files)


CIFAR_SETS = {
    "cifar-10": CifarSet(
        name="cifar-10",
        title="CIFAR-10",
        archive="cifar-10-binary.tar.gz",
        folder="cifar-10-batches-bin",
        train_files=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        test_files=("test_batch.bin",),
        label_bytes=1,
        classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        size=170_052_171,
        sha256="c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
    ),
    "cifar-100": CifarSet(
        name="cifar-100",
        title="CIFAR-100",
        archive="cifar-100-binary.tar.gz",
        folder="cifar-100-binary",
        train_files=("train.bin",),
        test_files=("test.bin",),
        label_bytes=2,
        classes=CIFAR100_CLASSES,
        url="https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        size=168_513_733,
        sha256="58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec",
    ),
}

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def find(known: CifarSet, roots: list[Path]) -> Path | None:
    """The folder that holds the set's .bin files, or its archive, in the first root that has either.

    A folder with some of the .bin files but not all is a broken copy: an error, not a reason to look on."""
    for root in roots:
        for folder in (root / known.name / known.folder, root / known.name, root / known.folder, root):
            present = [name for name in known.files if (folder / name).exists()]
            if len(present) == len(known.files):
                return folder
            if present:
                missing = [name for name in known.files if name not in present]
                raise UsageError(f"{known.title} in {folder} is incomplete: {', '.join(missing)} missing",
                                 file=str(folder),
                                 hint=f"copy the missing files there, or put {known.archive} in its place")
        for folder in (root / known.name, root):
            if (folder / known.archive).exists():
                return folder / known.archive
    return None


def read(known: CifarSet, path: Path, limit: int) -> Arrays:
    """Training images, labels, test images, labels from the .bin files in a folder or from the archive
    itself; ``limit`` bounds each split's bytes, checked from the sizes before anything is read."""
    if path.name == known.archive:
        contents = _read_archive(known, path, limit)
    else:
        contents = {name: _read_file(path / name, known.record, limit) for name in known.files}
    train = [_records(known, contents[name], name, path) for name in known.train_files]
    test = [_records(known, contents[name], name, path) for name in known.test_files]
    train_images, train_labels = (np.concatenate(part) for part in zip(*train, strict=True))
    test_images, test_labels = (np.concatenate(part) for part in zip(*test, strict=True))
    return train_images, train_labels, test_images, test_labels


def _read_file(path: Path, record: int, limit: int) -> bytes:
    with open_regular(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        _check_length(path.name, size, record, limit, path)
        data = handle.read(limit + 1)
    if len(data) != size:
        raise UsageError(f"{path.name} changed while it was read ({size:,} bytes, then {len(data):,})",
                         file=str(path))
    return data


def _read_archive(known: CifarSet, path: Path, limit: int) -> dict[str, bytes]:
    """The members the set needs, read from the .tar.gz as it streams by; nothing is extracted, and a
    member that is not a regular file, or whose size is not whole records, is refused unread."""
    wanted = {f"{known.folder}/{name}": name for name in known.files}
    found: dict[str, bytes] = {}
    try:
        with open_regular(path) as handle, tarfile.open(fileobj=handle, mode="r|gz") as archive:
            for member in archive:
                name = wanted.get(member.name.removeprefix("./"))
                if name is None:
                    continue
                if not member.isfile():
                    raise UsageError(f"{member.name} in {path.name} is not a regular file", file=str(path),
                                     hint="the archive is damaged or not the official one")
                _check_length(f"{member.name} in {path.name}", member.size, known.record, limit, path)
                stream = archive.extractfile(member)
                data = stream.read(member.size) if stream is not None else b""
                if len(data) != member.size:
                    raise EOFError(f"{member.name} ends after {len(data):,} of its {member.size:,} bytes")
                found[name] = data
                if len(found) == len(wanted):
                    break
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise UsageError(f"cannot read {path.name}: {err or type(err).__name__}", file=str(path),
                         hint="the archive is damaged; delete it and download it again") from None
    missing = [f"{known.folder}/{name}" for name in known.files if name not in found]
    if missing:
        raise UsageError(f"{path.name} lacks {', '.join(missing)}", file=str(path),
                         hint=f"the archive is not {known.title}'s binary release ({known.url})")
    return found


def _check_length(what: str, size: int, record: int, limit: int, path: Path) -> None:
    if size > limit:
        raise UsageError(f"{what} has {size:,} bytes, more than a split may take ({limit:,})", file=str(path),
                         hint="the file is damaged, or larger than archdsl's in-memory data sets can be")
    if size == 0:
        raise UsageError(f"{what} is empty: it holds no images", file=str(path),
                         hint="the file is damaged; delete it and download the set again")
    if size % record:
        raise UsageError(
            f"{what} has {size:,} bytes, not a whole number of {record:,}-byte records "
            f"({size // record:,} records and {size % record:,} bytes over)", file=str(path),
            hint="the file is truncated or not of this set's binary release; delete it and download the set again",
        )


def _records(known: CifarSet, data: bytes, name: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, known.record)
    labels = rows[:, known.label_bytes - 1].astype(np.int64)
    where = str(path / name) if path.is_dir() else str(path)
    if known.label_bytes == 2 and int(rows[:, 0].max()) >= CIFAR100_COARSE:
        raise UsageError(f"coarse label {int(rows[:, 0].max())} in {name}, but {known.title} has "
                         f"{CIFAR100_COARSE} coarse classes", file=where,
                         hint="the file is damaged or not of this set's binary release")
    if int(labels.max()) >= len(known.classes):
        raise UsageError(f"label {int(labels.max())} in {name}, but {known.title} has {len(known.classes)} classes",
                         file=where, hint="the file is damaged or not of this set's binary release")
    images = rows[:, known.label_bytes:].reshape(-1, 3, SIDE, SIDE)
    return np.ascontiguousarray(images), labels
