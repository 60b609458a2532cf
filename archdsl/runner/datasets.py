"""Finding, downloading and reading labelled image sets into memory as uint8 arrays.

``--data`` names a known set (``fashion-mnist``, ``mnist``: the standard IDX files; ``cifar-10``,
``cifar-100``: their binary releases, cifar.py), a folder in the
ImageFolder layout (``PATH/train/CLASS/*.png`` and ``PATH/test/CLASS/*.png``) or an ``.npz`` file
(``x_train``, ``y_train``, ``x_test``, ``y_test``; images (N, H, W) or (N, H, W, C), uint8).
Known sets are looked for in ``--data-dir``, then ``$ARCHDSL_DATA``, then ``~/.cache/archdsl``
(each as ``ROOT/NAME/``, torchvision's ``ROOT/FashionMNIST/raw/``, or ``ROOT/`` itself) and
downloaded, checksum-verified, into the first of those roots when absent.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import itertools
import math
import os
import sys
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from archdsl.atomic import write_bytes_atomic
from archdsl.errors import UsageError
from archdsl.runner import cifar
from archdsl.runner.cifar import CifarSet
from archdsl.runner.untrusted import CHUNK, open_regular

SPLIT_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm")
NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")

# The whole data set lives in memory and on the device, so sizes are checked against these limits
# from the files' headers, before anything is read or inflated: a 4 MB .gz or .npz member can claim
# (and inflate to) gigabytes. 2 GiB a split is 45 times Fashion-MNIST's training images, 14 times
# CIFAR-10's; an image file of an image folder may have 4096 x 4096 pixels.
MAX_SPLIT_BYTES = 2 << 30
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_CLASSES = 100_000
# A download of an IDX file stops past this: the largest (Fashion-MNIST's training images) has 26 MB, so a
# mirror that sends more is not sending that file, and is never read to its end. A CIFAR archive stops past
# its own size.
MAX_DOWNLOAD_BYTES = 64 << 20
# What a run augments by default (augment.py), by --data: the book's Fashion-MNIST and MNIST runs stay
# as the book has them; CIFAR takes the usual random crop of the image padded by 4 and a horizontal flip.
DEFAULT_AUGMENT = {"cifar-10": "crop=4:zero,flip", "cifar-100": "crop=4:zero,flip"}


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and std of the training images, in pixel units (0..255)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, images: np.ndarray) -> Normalization:
        """Exact integer sums over chunks: no float64 copy of the whole set, the same bits every time."""
        total = np.zeros(images.shape[1], dtype=np.int64)
        squares = np.zeros(images.shape[1], dtype=np.int64)
        for start in range(0, len(images), 4096):
            chunk = images[start : start + 4096].astype(np.int64)
            total += chunk.sum(axis=(0, 2, 3))
            squares += (chunk * chunk).sum(axis=(0, 2, 3))
        count = max(1, images.size // images.shape[1])
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
        return cls(tuple(float(m) for m in mean), tuple(max(float(s), 1.0) for s in std))

    def to_json(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}


@dataclass(frozen=True)
class KnownSet:
    name: str
    title: str
    torchvision_folder: str
    classes: tuple[str, ...]
    mirrors: tuple[str, ...]
    sha256: dict[str, str]  # of the official .gz files, keyed like SPLIT_FILES


KNOWN_SETS: dict[str, KnownSet | CifarSet] = {
    "fashion-mnist": KnownSet(
        name="fashion-mnist",
        title="Fashion-MNIST",
        torchvision_folder="FashionMNIST",
        classes=(
            "t-shirt", "trouser", "pullover", "dress", "coat",
            "sandal", "shirt", "sneaker", "bag", "ankle boot",
        ),
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
        sha256={
            "train_images": "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
            "train_labels": "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
            "test_images": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
            "test_labels": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
        },
    ),
    "mnist": KnownSet(
        name="mnist",
        title="MNIST",
        torchvision_folder="MNIST",
        classes=tuple(str(digit) for digit in range(10)),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        sha256={
            "train_images": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train_labels": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "test_images": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "test_labels": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    ),
    **cifar.CIFAR_SETS,
}


@dataclass(frozen=True, eq=False)
class ImageData:
    """A labelled image set in memory: uint8 images (N, C, H, W) and int64 labels (N,) per split."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]
    source: str  # where it was read from, for messages
    val_images: np.ndarray | None = None  # held out of the training split by with_validation
    val_labels: np.ndarray | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        _, channels, height, width = self.train_images.shape
        return channels, height, width

    def with_validation(self, val: int | float, seed: int) -> ImageData:  # noqa: PYI041 - a count, or a fraction
        """``val`` examples (or that fraction, rounded) of the training split held out for validation, drawn
        by a permutation seeded with ``seed``; both parts keep the files' order.

        >>> data.with_validation(0.1, seed=0)          # doctest: +SKIP   (--val 0.1: 6,000 of 60,000)
        """
        total = len(self.train_labels)
        count = round(val * total) if isinstance(val, float) else val
        if not 1 <= count < total:
            shown = f"{val:g} of {total:,} is {count:,}" if isinstance(val, float) else f"{val:,}"
            raise UsageError(f"--val {shown} validation examples, but the training split has {total:,}: both "
                             "parts need at least one", hint="pass a smaller --val (a count, or a fraction below 1)")
        held = np.sort(np.random.default_rng(seed).permutation(total)[:count])
        kept = np.ones(total, dtype=bool)
        kept[held] = False
        return ImageData(self.name, self.train_images[kept], self.train_labels[kept], self.test_images,
                         self.test_labels, self.classes, self.source, self.train_images[held], self.train_labels[held])

    def limited(self, limit: int | None) -> ImageData:
        """The first ``limit`` examples of each split (quick trials, tests)."""
        if limit is None:
            return self
        return ImageData(
            name=self.name,
            train_images=self.train_images[:limit],
            train_labels=self.train_labels[:limit],
            test_images=self.test_images[:limit],
            test_labels=self.test_labels[:limit],
            classes=self.classes,
            source=self.source,
        )


def load(data: str, data_dir: str | None, channels: int) -> ImageData:
    """Read the data set that ``--data`` names. ``channels`` (1 or 3) is what image files become."""
    known = KNOWN_SETS.get(data)
    if isinstance(known, CifarSet):
        return _load_cifar(known, data_dir)
    if known is not None:
        return _load_known(known, data_dir)
    path = Path(data)
    if path.suffix == ".npz":
        return load_npz(path)
    if path.is_dir():
        return load_image_folder(path, channels)
    raise UsageError(
        f"no data set {data!r}: it is neither a known set nor an existing folder or .npz file",
        hint=f"use --data {' or --data '.join(KNOWN_SETS)}, a folder with train/ and test/, or a .npz file",
    )


def default_augment(data: str) -> str:
    """The augmentation a run on ``data`` gets unless --augment says otherwise."""
    return DEFAULT_AUGMENT.get(data, "none")


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "archdsl"


def search_roots(data_dir: str | None) -> list[Path]:
    """--data-dir, then $ARCHDSL_DATA, then the cache folder; the first is where downloads go."""
    roots = []
    if data_dir is not None:
        roots.append(_given_root("--data-dir", data_dir))
    if os.environ.get("ARCHDSL_DATA"):
        roots.append(_given_root("$ARCHDSL_DATA", os.environ["ARCHDSL_DATA"]))
    roots.append(default_cache())
    return roots


def _given_root(origin: str, folder: str) -> Path:
    """A root the user named must exist: a typo should not become a new folder that a download fills."""
    root = Path(folder)
    if not root.is_dir():
        raise UsageError(f"{origin} {folder}: no such folder")
    return root


def find_known(known: KnownSet, roots: list[Path]) -> dict[str, Path] | None:
    """The four IDX files of ``known`` in the first folder that has them all (.gz or not).

    A folder that has some of the files but not all is a broken download or copy: it is an error
    rather than a reason to look further, since the user most likely meant that folder.
    """
    for root in roots:
        for folder in (root / known.name, root / known.torchvision_folder / "raw", root):
            found = {key: _idx_file(folder, stem) for key, stem in SPLIT_FILES.items()}
            present = {key: path for key, path in found.items() if path is not None}
            if len(present) == len(SPLIT_FILES):
                return present
            if present:
                missing = [SPLIT_FILES[key] + ".gz" for key in SPLIT_FILES if key not in present]
                raise UsageError(
                    f"{known.title} in {folder} is incomplete: {', '.join(missing)} missing",
                    file=str(folder),
                    hint="copy the missing files there, or delete the folder to download the set again",
                )
    return None


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        # exists(), not is_file(): a FIFO or a device there is refused by read_idx, not called missing.
        if (folder / name).exists():
            return folder / name
    return None


def _load_known(known: KnownSet, data_dir: str | None) -> ImageData:
    roots = search_roots(data_dir)
    files = find_known(known, roots)
    if files is None:
        files = download(known, roots[0] / known.name)
    train_images, train_labels = _read_idx_pair(files["train_images"], files["train_labels"])
    test_images, test_labels = _read_idx_pair(files["test_images"], files["test_labels"])
    _check_images("training", train_images, files["train_images"])
    _check_images("test", test_images, files["test_images"])
    for labels, path in ((train_labels, files["train_labels"]), (test_labels, files["test_labels"])):
        if labels.size and int(labels.max()) >= len(known.classes):
            raise UsageError(
                f"label {int(labels.max())} in a {known.title} file, which has {len(known.classes)} classes",
                file=str(path),
            )
    return ImageData(
        name=known.name,
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        classes=known.classes,
        source=str(files["train_images"].parent),
    )


def _load_cifar(known: CifarSet, data_dir: str | None) -> ImageData:
    roots = search_roots(data_dir)
    path = cifar.find(known, roots)
    if path is None:
        path = download_archive(known, roots[0] / known.name)
    train_images, train_labels, test_images, test_labels = cifar.read(known, path, MAX_SPLIT_BYTES)
    return ImageData(known.name, train_images, train_labels, test_images, test_labels, known.classes, str(path))


def download_archive(known: CifarSet, folder: Path, url: str | None = None) -> Path:
    """Fetch ``known``'s archive into ``folder``, checked against its SHA-256 before it takes its name; a
    failed download removes the folders it made, while they are empty."""
    url = known.url if url is None else url
    target = folder / known.archive
    with _made_folders(folder):
        print(f"archdsl: downloading {url} ({known.size / 1e6:.0f} MB)", file=sys.stderr)
        failure = _fetch_verified(url, target, known.sha256, known.size)
        if failure is not None:
            raise UsageError(f"{known.title} is not on this machine and could not be downloaded:\n  {url}: {failure}",
                             hint=f"put {known.archive} (or its extracted {known.folder}/) in {folder}, or pass "
                                  "--data-dir where it is")
    return target


@contextlib.contextmanager
def _made_folders(folder: Path) -> Iterator[None]:
    """Make ``folder``; if what follows fails (Ctrl-C included), remove the folders made here while they are
    empty, so that no empty ROOT/NAME/ is left to look like a data set."""
    created = list(itertools.takewhile(lambda p: not p.exists(), (folder, *folder.parents)))
    try:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UsageError(f"cannot create {folder}: {err.strerror or err}", file=str(folder)) from None
        yield
    except BaseException:
        for made in created:
            with contextlib.suppress(OSError):  # not empty (files fetched before the failure), or never made
                made.rmdir()
        raise


def download(known: KnownSet, folder: Path, mirrors: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Fetch the four .gz files of ``known`` into ``folder``, each checked against its sha256.

    Each file is tried on every mirror in turn; a file lands under its final name only once its
    checksum matched, so an interrupted download leaves nothing that looks complete.
    """
    mirrors = known.mirrors if mirrors is None else mirrors
    with _made_folders(folder):
        return _download(known, folder, mirrors)


def _download(known: KnownSet, folder: Path, mirrors: tuple[str, ...]) -> dict[str, Path]:
    files = {}
    for key, stem in SPLIT_FILES.items():
        target = folder / (stem + ".gz")
        failures = []
        for mirror in mirrors:
            url = mirror + target.name
            print(f"archdsl: downloading {url}", file=sys.stderr)
            failure = _fetch_verified(url, target, known.sha256[key], MAX_DOWNLOAD_BYTES)
            if failure is None:
                break
            failures.append(f"{url}: {failure}")
        else:
            raise UsageError(
                f"{known.title} is not on this machine and could not be downloaded:\n  "
                + "\n  ".join(failures),
                hint=f"put the four IDX files in {folder}, or pass --data-dir where they are",
            )
        files[key] = target
    return files


def _fetch_verified(url: str, target: Path, sha256: str, limit: int) -> str | None:
    """Download ``url`` to ``target``; None on success, else why it failed (the next mirror is tried).

    The bytes are held in memory, at most ``limit`` of them, and reach the disk only once their
    checksum matched, through write_bytes_atomic (an unpredictable temporary beside ``target``, made with
    O_EXCL | O_NOFOLLOW and removed whatever happens). A failure to write is the file system's UsageError.
    """
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            claimed = response.headers.get("Content-Length", "")
            if claimed.isdigit() and int(claimed) > limit:
                return (f"it announces {int(claimed):,} bytes, more than a file of a known set can have "
                        f"({limit:,}); not downloaded")
            data = bytearray()
            while chunk := response.read(min(CHUNK, limit + 1 - len(data))):
                data += chunk
                if len(data) > limit:
                    return f"it sent more than {limit:,} bytes, more than a file of a known set can have; stopped"
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        return str(getattr(err, "reason", None) or err) or type(err).__name__
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        return f"checksum mismatch (sha256 {digest}, expected {sha256})"
    write_bytes_atomic(target, data)  # a bytearray: no second copy of a 170 MB archive
    return None


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip-compressed or not) of unsigned bytes as a numpy array. The sizes in its header
    are checked before the data is read or inflated, and the data must be exactly that long."""
    try:
        with open_regular(path) as handle:
            return _read_idx_stream(gzip.GzipFile(fileobj=handle) if path.suffix == ".gz" else handle, path)
    except (OSError, EOFError, zlib.error) as err:
        raise UsageError(f"cannot read {path.name}: {err}", file=str(path),
                         hint="the file is damaged; delete it and download it again") from None


def _read_idx_stream(stream: BinaryIO, path: Path) -> np.ndarray:
    magic = stream.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
        raise UsageError(f"{path.name} is not an IDX file (bad magic number)", file=str(path))
    if magic[2] != 0x08:
        raise UsageError(f"{path.name} holds IDX type 0x{magic[2]:02x}; only unsigned bytes (0x08) are read",
                         file=str(path))
    ndim = magic[3]
    sizes = stream.read(4 * ndim)
    if len(sizes) < 4 * ndim:
        raise UsageError(f"{path.name} is truncated (incomplete header)", file=str(path))
    dims = tuple(int.from_bytes(sizes[4 * i : 4 * i + 4], "big") for i in range(ndim))
    header, size = 4 + 4 * ndim, math.prod(dims)  # Python's integers: four sizes of 2**32 - 1 overflow int64
    shown = "x".join(map(str, dims))
    _check_size(size, path, f"{path.name} holds {shown} bytes by its header")
    data = np.empty(size, dtype=np.uint8)  # filled in chunks: no second copy of the whole file
    view, filled = memoryview(data), 0
    while filled < size and (count := stream.readinto(view[filled : filled + CHUNK])):
        filled += count
    if filled < size:
        raise UsageError(f"{path.name} has {header + filled} bytes, but its header {shown} needs {header + size}",
                         file=str(path), hint="the file is damaged; delete it and download it again")
    if stream.read(1):
        raise UsageError(f"{path.name} holds more than the {header + size} bytes its header {shown} needs",
                         file=str(path), hint="the file is damaged; delete it and download it again")
    return data.reshape(dims)


def _check_size(size: int, path: Path, what: str) -> None:
    """Refuse ``what`` (an array of ``size`` bytes) beyond MAX_SPLIT_BYTES, before it is allocated."""
    if size > MAX_SPLIT_BYTES:
        raise UsageError(f"{what}: {size:,} bytes, more than a split may take ({MAX_SPLIT_BYTES:,})", file=str(path),
                         hint="the file is damaged, or larger than archdsl's in-memory data sets can be")


def _read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        raise UsageError(f"{images_path.name} should hold images (3 dimensions), it has {images.ndim}",
                         file=str(images_path))
    if labels.ndim != 1:
        raise UsageError(f"{labels_path.name} should hold labels (1 dimension), it has {labels.ndim}",
                         file=str(labels_path))
    if len(images) != len(labels):
        raise UsageError(
            f"{images_path.name} has {len(images)} images but {labels_path.name} has {len(labels)} labels",
            file=str(images_path),
        )
    return images[:, None, :, :], labels.astype(np.int64)


def load_npz(path: Path) -> ImageData:
    """``x_train``, ``y_train``, ``x_test``, ``y_test`` (Keras' layout); optional ``classes``."""
    if not path.exists():
        raise UsageError(f"{path}: no such file", file=str(path))
    with open_regular(path) as handle:
        # np.load takes anything that is not a zip archive for a pickle, and its refusal suggests
        # allow_pickle=True, which would run code from the file.
        if not zipfile.is_zipfile(handle):
            raise UsageError(f"{path.name} is not an .npz file (a zip archive of .npy arrays)", file=str(path),
                             hint="write it with numpy.savez or numpy.savez_compressed")
        try:
            with zipfile.ZipFile(handle) as archive:
                present = {name.removesuffix(".npy") for name in archive.namelist()}
                missing = [key for key in NPZ_ARRAYS if key not in present]
                if missing:
                    raise UsageError(f"{path.name} lacks the arrays {', '.join(missing)}", file=str(path),
                                     hint="an .npz data set holds x_train, y_train, x_test and y_test")
                arrays = {key: _read_npy(archive, key, path) for key in (*NPZ_ARRAYS, "classes") if key in present}
        except (OSError, EOFError, ValueError, NotImplementedError, zlib.error, zipfile.BadZipFile) as err:
            raise UsageError(f"cannot read {path.name} as .npz: {err}", file=str(path)) from None
    images = {}
    for key in ("x_train", "x_test"):
        x = arrays[key]
        if x.dtype != np.uint8:
            raise UsageError(f"{key} in {path.name} is {x.dtype}, not uint8", file=str(path),
                             hint="store pixels as uint8 in 0..255")
        if x.ndim == 3:
            x = x[:, None]
        elif x.ndim == 4:
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        else:
            raise UsageError(f"{key} in {path.name} has shape {x.shape}; expected (N, H, W) or (N, H, W, C)",
                             file=str(path))
        _check_images("training" if key == "x_train" else "test", x, path, where=f"{key} in {path.name}")
        images[key] = x
    if images["x_train"].shape[1:] != images["x_test"].shape[1:]:
        raise UsageError(f"x_train and x_test in {path.name} differ in image shape", file=str(path))
    labels = {}
    for key, x_key in (("y_train", "x_train"), ("y_test", "x_test")):
        y = arrays[key]
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or len(y) != len(images[x_key]):
            raise UsageError(f"{key} in {path.name} must be integers, one per image of {x_key}", file=str(path))
        labels[key] = _checked_labels(y, f"{key} in {path.name}", path)
    count = int(max(labels["y_train"].max(initial=-1), labels["y_test"].max(initial=-1))) + 1
    classes = tuple(str(c) for c in arrays["classes"]) if "classes" in arrays else tuple(map(str, range(count)))
    if len(classes) < count:
        raise UsageError(f"{path.name} names {len(classes)} classes but has label {count - 1}", file=str(path))
    if len(classes) > MAX_CLASSES:
        raise UsageError(f"{path.name} names {len(classes):,} classes; a data set may have at most {MAX_CLASSES:,}",
                         file=str(path))
    return ImageData(path.stem, images["x_train"], labels["y_train"], images["x_test"], labels["y_test"],
                     classes, str(path))


def _read_npy(archive: zipfile.ZipFile, key: str, path: Path) -> np.ndarray:
    """One array of an .npz, its header checked before the array is allocated: numpy's own loader
    allocates whatever size a header claims (10**12 images) before it reads a byte of data."""
    name = key + ".npy"
    with archive.open(name) as member:
        version = np.lib.format.read_magic(member)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"{name} is .npy version {version[0]}.{version[1]}; only 1.0 and 2.0 are read")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(member)
    if dtype.hasobject:
        raise UsageError(f"{key} in {path.name} holds Python objects; refused, since loading them could run code",
                         file=str(path), hint="store images and labels as plain numeric arrays")
    _check_size(math.prod(shape) * dtype.itemsize, path,
                f"{key} in {path.name} is {'x'.join(map(str, shape))} of {dtype} by its header")
    with archive.open(name) as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def load_image_folder(root: Path, channels: int) -> ImageData:
    """``ROOT/train/CLASS/IMAGE`` and ``ROOT/test/CLASS/IMAGE`` (or ``val/``), as torchvision's ImageFolder.

    Every image must have the same size; images become grayscale for one channel, RGB for three.
    """
    if channels not in (1, 3):
        raise UsageError(f"image folders give 1 or 3 channels; the network expects {channels}")
    train_dir = root / "train"
    test_dir = next((root / name for name in ("test", "val") if (root / name).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise UsageError(
            f"{root} is not a data folder: it needs train/ and test/ (or val/) subfolders",
            file=str(root), hint="lay it out as ROOT/train/CLASS/*.png and ROOT/test/CLASS/*.png",
        )
    classes = tuple(sorted(entry.name for entry in train_dir.iterdir() if entry.is_dir()))
    if not classes:
        raise UsageError(f"{train_dir} has no class folders", file=str(train_dir),
                         hint="put each class's images in a folder of its own: train/CLASS/*.png")
    if len(classes) > MAX_CLASSES:
        raise UsageError(f"{train_dir} has {len(classes):,} class folders; a data set may have at most "
                         f"{MAX_CLASSES:,}", file=str(train_dir))
    mode = "L" if channels == 1 else "RGB"
    splits = []
    first_size: tuple[Path, tuple[int, int]] | None = None
    for split_dir in (train_dir, test_dir):
        unknown = sorted(e.name for e in split_dir.iterdir() if e.is_dir() and e.name not in classes)
        if unknown:
            raise UsageError(f"{split_dir} has classes that train/ lacks: {', '.join(unknown)}",
                             file=str(split_dir))
        pixels, labels = [], []
        for label, name in enumerate(classes):
            class_dir = split_dir / name
            files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) \
                if class_dir.is_dir() else []
            for file in files:
                array = read_image(file, mode)
                if first_size is None:
                    first_size = (file, array.shape[:2])
                elif array.shape[:2] != first_size[1]:
                    raise UsageError(
                        f"images differ in size: {file} is {array.shape[0]}x{array.shape[1]}, "
                        f"{first_size[0]} is {first_size[1][0]}x{first_size[1][1]} (H x W)",
                        file=str(file), hint="resize the images to one size first",
                    )
                pixels.append(array)
                labels.append(label)
                _check_size(len(pixels) * array.nbytes, split_dir, f"the first {len(pixels):,} images in {split_dir}")
        if not pixels:
            raise UsageError(f"{split_dir} holds no images", file=str(split_dir),
                             hint=f"image files end in {', '.join(IMAGE_SUFFIXES)}")
        stacked = np.stack(pixels)
        stacked = stacked[:, None] if stacked.ndim == 3 else stacked.transpose(0, 3, 1, 2)
        splits.append((np.ascontiguousarray(stacked), np.asarray(labels, dtype=np.int64)))
    (train_x, train_y), (test_x, test_y) = splits
    return ImageData(root.name, train_x, train_y, test_x, test_y, classes, str(root))


def read_image(file: Path, mode: str) -> np.ndarray:
    """One image file as uint8 pixels (H, W) or (H, W, 3); its size, from the file's header, is checked
    before the pixels are decoded."""
    from PIL import Image, UnidentifiedImageError

    too_large = f"image {file.name} has more than {MAX_IMAGE_PIXELS:,} pixels (4096 x 4096), the most an image may have"
    try:
        with warnings.catch_warnings():
            # Pillow warns from 89 M pixels and refuses from 179 M; the limit here is lower, and checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with open_regular(file) as handle, Image.open(handle) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise UsageError(f"{too_large}: it is {height}x{width} (H x W)", file=str(file))
                return np.asarray(image.convert(mode), dtype=np.uint8)
    except Image.DecompressionBombError:
        raise UsageError(too_large, file=str(file)) from None
    except (UnidentifiedImageError, OSError) as err:
        raise UsageError(f"cannot read image {file.name}: {err}", file=str(file)) from None


def _check_images(split: str, images: np.ndarray, path: Path, where: str | None = None) -> None:
    """An empty split would still "train" (to a loss of 0) or test on nothing, and write a run of it;
    images without pixels (0 x 0) would fail in the middle of training, even after --resize.
    ``where`` names the images in the message (default: the file's name)."""
    where = where or path.name
    if not len(images):
        raise UsageError(f"the {split} split is empty: {where} holds no images", file=str(path),
                         hint="a data set needs at least one training and one test example")
    if 0 in images.shape[1:]:
        raise UsageError(f"the {split} images in {where} have no pixels: their size is "
                         f"{'x'.join(map(str, images.shape[1:]))} (C x H x W)", file=str(path),
                         hint="the file is damaged, or its arrays are not images")


def _checked_labels(labels: np.ndarray, where: str, path: Path) -> np.ndarray:
    """Integer labels as int64, checked in their own type first: a uint64 label of 2**64 - 1 would turn
    into -1, and one of 10**12 would ask for 10**12 class names."""
    if labels.size and labels.min() < 0:
        raise UsageError(f"{where} has a negative label", file=str(path))
    if labels.size and int(labels.max()) >= MAX_CLASSES:
        raise UsageError(f"{where} has label {int(labels.max())}; a data set may have at most {MAX_CLASSES:,} "
                         f"classes", file=str(path), hint="labels number the classes from 0")
    return labels.astype(np.int64)
