"""Data sets: the IDX reader on the real Fashion-MNIST files, downloads against a local server,
image folders, .npz files, the search order, and the errors for broken data."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import math
import os
import threading
import tracemalloc
import zipfile
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_runner_support import DATA_ROOT, FASHION_DIR

from archdsl.errors import UsageError
from archdsl.runner import datasets
from archdsl.runner.datasets import KNOWN_SETS, SPLIT_FILES, Normalization


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, train: int = 12, test: int = 6, size: int = 8) -> dict[str, bytes]:
    """A tiny IDX data set with the standard file names; returns each file's gz bytes by key."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (train, size, size)),
        "train_labels": rng.integers(0, 10, train),
        "test_images": rng.integers(0, 256, (test, size, size)),
        "test_labels": rng.integers(0, 10, test),
    }
    folder.mkdir(parents=True, exist_ok=True)
    blobs = {}
    for key, array in arrays.items():
        blobs[key] = gzip.compress(idx_bytes(array), mtime=0)
        (folder / (SPLIT_FILES[key] + ".gz")).write_bytes(blobs[key])
    return blobs


def test_reads_the_real_fashion_mnist_files():
    data = datasets.load("fashion-mnist", str(DATA_ROOT), channels=1)
    assert data.train_images.shape == (60000, 1, 28, 28) and data.train_images.dtype == np.uint8
    assert data.test_images.shape == (10000, 1, 28, 28)
    assert data.train_labels.dtype == np.int64
    # Balanced classes, 6,000 and 1,000 per class, as the data set's README says.
    assert np.bincount(data.train_labels).tolist() == [6000] * 10
    assert np.bincount(data.test_labels).tolist() == [1000] * 10
    assert data.classes[9] == "ankle boot"
    # Both the set's own folder and the root above it are accepted.
    again = datasets.load("fashion-mnist", str(FASHION_DIR), channels=1)
    assert np.array_equal(again.test_images, data.test_images)


def test_search_order_is_data_dir_then_env_then_cache(tmp_path, monkeypatch):
    for name in ("flag", "env", "cache"):
        write_idx_set(tmp_path / name / "mnist", train=3 if name == "flag" else 4 if name == "env" else 5)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (tmp_path / "xdg").mkdir()
    (tmp_path / "xdg" / "archdsl").symlink_to(tmp_path / "cache")
    monkeypatch.setenv("ARCHDSL_DATA", str(tmp_path / "env"))
    assert len(datasets.load("mnist", str(tmp_path / "flag"), 1).train_labels) == 3
    assert len(datasets.load("mnist", None, 1).train_labels) == 4
    monkeypatch.delenv("ARCHDSL_DATA")
    assert len(datasets.load("mnist", None, 1).train_labels) == 5


def test_a_truncated_file_is_one_clear_error(tmp_path):
    blobs = write_idx_set(tmp_path / "mnist")
    target = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    target.write_bytes(blobs["train_images"][: len(blobs["train_images"]) // 2])
    with pytest.raises(UsageError) as caught:
        datasets.load("mnist", str(tmp_path), 1)
    assert caught.value.file == str(target)
    assert "cannot read train-images-idx3-ubyte.gz" in caught.value.message
    assert "download it again" in caught.value.hint


def test_a_wrong_length_in_the_header_is_caught(tmp_path):
    write_idx_set(tmp_path / "mnist")
    raw = idx_bytes(np.zeros((12, 8, 8)))
    (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-5]))
    with pytest.raises(UsageError, match="has 779 bytes, but its header 12x8x8 needs 784"):
        datasets.load("mnist", str(tmp_path), 1)


def test_an_incomplete_folder_names_the_missing_files(tmp_path):
    write_idx_set(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UsageError, match="incomplete: t10k-labels-idx1-ubyte.gz missing"):
        datasets.load("mnist", str(tmp_path), 1)


def test_a_missing_data_dir_and_an_unknown_data_set_are_errors(tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="no such folder"):
        datasets.load("mnist", str(tmp_path / "nowhere"), 1)
    # $ARCHDSL_DATA is a root the user named, as --data-dir is: a typo is not a new folder to download into.
    monkeypatch.setenv("ARCHDSL_DATA", str(tmp_path / "gone"))
    with pytest.raises(UsageError) as caught:
        datasets.load("mnist", None, 1)
    assert caught.value.message == f"$ARCHDSL_DATA {tmp_path / 'gone'}: no such folder"
    assert not (tmp_path / "gone").exists()
    with pytest.raises(UsageError, match="neither a known set"):
        datasets.load(str(tmp_path / "nothing-here"), None, 1)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(tmp_path):
    """A local HTTP server on 127.0.0.1 serving a tiny IDX set, and the set's checksums."""
    served = tmp_path / "served"
    blobs = write_idx_set(served)
    handler = lambda *args, **kwargs: _QuietHandler(*args, directory=str(served), **kwargs)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", {k: hashlib.sha256(b).hexdigest() for k, b in blobs.items()}
    server.shutdown()
    server.server_close()


def test_download_tries_each_mirror_and_verifies_checksums(tmp_path, mirror):
    url, sums = mirror
    known = replace(KNOWN_SETS["mnist"], sha256=sums)
    files = datasets.download(known, tmp_path / "got", mirrors=(url + "missing/", url))
    assert sorted(p.name for p in (tmp_path / "got").iterdir()) == sorted(f + ".gz" for f in SPLIT_FILES.values())
    assert datasets.read_idx(files["train_images"]).shape == (12, 8, 8)


def test_a_checksum_mismatch_keeps_nothing(tmp_path, mirror):
    url, sums = mirror
    known = replace(KNOWN_SETS["mnist"], sha256={**sums, "train_images": "0" * 64})
    with pytest.raises(UsageError) as caught:
        datasets.download(known, tmp_path / "got", mirrors=(url,))
    assert "checksum mismatch" in caught.value.message
    assert not (tmp_path / "got").exists()  # nor the folder the download made for them


def test_a_failed_download_removes_only_the_empty_folders_it_made(tmp_path, mirror):
    url, sums = mirror
    known = replace(KNOWN_SETS["mnist"], sha256=sums)
    with pytest.raises(UsageError, match="could not be downloaded"):
        datasets.download(known, tmp_path / "new" / "mnist", mirrors=(url + "missing/",))
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(UsageError, match="could not be downloaded"):
        datasets.download(known, tmp_path / "kept", mirrors=(url + "missing/",))
    assert list((tmp_path / "kept").iterdir()) == []  # there before: left alone


def test_a_failed_download_leaves_no_empty_set_folder_in_the_root(tmp_path, monkeypatch):
    monkeypatch.setitem(KNOWN_SETS, "mnist", replace(KNOWN_SETS["mnist"],
                                                     mirrors=((tmp_path / "offline").as_uri() + "/",)))
    (tmp_path / "root").mkdir()
    with pytest.raises(UsageError, match="MNIST is not on this machine and could not be downloaded"):
        datasets.load("mnist", str(tmp_path / "root"), 1)
    assert list((tmp_path / "root").iterdir()) == []


def test_absent_files_are_downloaded_into_the_cache(tmp_path, monkeypatch):
    source = tmp_path / "source"
    blobs = write_idx_set(source)
    sums = {k: hashlib.sha256(b).hexdigest() for k, b in blobs.items()}
    monkeypatch.setitem(KNOWN_SETS, "mnist", replace(KNOWN_SETS["mnist"], sha256=sums,
                                                     mirrors=(source.as_uri() + "/",)))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("ARCHDSL_DATA", raising=False)
    data = datasets.load("mnist", None, 1)
    assert data.train_images.shape == (12, 1, 8, 8)
    assert (tmp_path / "cache" / "archdsl" / "mnist" / "train-images-idx3-ubyte.gz").is_file()


def test_a_link_planted_at_the_download_temporary_is_not_followed(tmp_path, mirror):
    """The download wrote through `.NAME.PID.part` beside its target: a link planted at that name (a data
    folder others can write to) sent the file into whatever the link named, then took its place."""
    url, sums = mirror
    folder, victim = tmp_path / "got", tmp_path / "victim"
    folder.mkdir()
    victim.write_bytes(b"mine")
    planted = [folder / f".{stem}.gz.{os.getpid()}.part" for stem in SPLIT_FILES.values()]
    for link in planted:
        link.symlink_to(victim)
    files = datasets.download(replace(KNOWN_SETS["mnist"], sha256=sums), folder, mirrors=(url,))
    assert victim.read_bytes() == b"mine"
    assert all(path.is_file() and not path.is_symlink() for path in files.values())
    assert all(link.is_symlink() for link in planted)
    assert sorted(p.name for p in folder.iterdir()) == sorted([*(p.name for p in planted), *(p.name for p in files.values())])


class _Unannounced(http.server.BaseHTTPRequestHandler):
    """Sends 2 MiB without a Content-Length (the end of the connection ends the body)."""

    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        for _ in range(32):
            self.wfile.write(b"\0" * (64 << 10))

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("announced", [True, False])
def test_a_download_stops_at_its_bound(tmp_path, mirror, monkeypatch, announced):
    """A mirror could send any number of bytes, and all of them were written to disk before the checksum
    refused them."""
    url, sums = mirror
    monkeypatch.setattr(datasets, "MAX_DOWNLOAD_BYTES", 64 << 10)
    sums = {**sums, "train_images": hashlib.sha256(b"\0" * (2 << 20)).hexdigest()}
    if announced:
        big = tmp_path / "served" / "big"
        big.mkdir()
        (big / "train-images-idx3-ubyte.gz").write_bytes(b"\0" * (2 << 20))
        mirrors, expected = (url + "big/",), f"it announces {2 << 20:,} bytes, more than a file of a known set can have"
    else:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unannounced)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        mirrors, expected = (f"http://127.0.0.1:{server.server_address[1]}/",), f"it sent more than {64 << 10:,} bytes"
    try:
        with pytest.raises(UsageError) as caught:
            datasets.download(replace(KNOWN_SETS["mnist"], sha256=sums), tmp_path / "got", mirrors=mirrors)
    finally:
        if not announced:
            server.shutdown()
            server.server_close()
    assert caught.value.message.startswith("MNIST is not on this machine and could not be downloaded")
    assert expected in caught.value.message
    assert not (tmp_path / "got").exists()


def test_an_interrupted_download_leaves_no_temporary(tmp_path, mirror, monkeypatch):
    """Ctrl-C while the bytes arrived left the `.part` file, and with it the folder the download made."""
    url, sums = mirror
    opened = datasets.urllib.request.urlopen

    def interrupted(*args, **kwargs):
        response = opened(*args, **kwargs)
        first = response.read

        def read(size=-1):
            if read.calls:
                raise KeyboardInterrupt
            read.calls += 1
            return first(size)

        read.calls = 0
        response.read = read
        return response

    monkeypatch.setattr(datasets.urllib.request, "urlopen", interrupted)
    with pytest.raises(KeyboardInterrupt):
        datasets.download(replace(KNOWN_SETS["mnist"], sha256=sums), tmp_path / "got", mirrors=(url,))
    assert not (tmp_path / "got").exists()


def test_image_folder_layout(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    for split, count in (("train", 3), ("test", 2)):
        for name in ("cat", "dog"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)).save(tmp_path / split / name / f"{i}.png")
    data = datasets.load(str(tmp_path), None, channels=3)
    assert data.classes == ("cat", "dog")
    assert data.train_images.shape == (6, 3, 6, 5)
    assert data.test_labels.tolist() == [0, 0, 1, 1]
    assert datasets.load(str(tmp_path), None, channels=1).train_images.shape == (6, 1, 6, 5)
    Image.fromarray(np.zeros((7, 5, 3), dtype=np.uint8)).save(tmp_path / "test" / "dog" / "odd.png")
    with pytest.raises(UsageError) as caught:
        datasets.load(str(tmp_path), None, channels=3)
    assert caught.value.message == (f"images differ in size: {tmp_path / 'test' / 'dog' / 'odd.png'} is 7x5, "
                                    f"{tmp_path / 'train' / 'cat' / '0.png'} is 6x5 (H x W)")


def test_a_folder_that_is_not_a_data_set(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.png").write_bytes(b"")
    with pytest.raises(UsageError, match="needs train/ and test/"):
        datasets.load(str(tmp_path / "photos"), None, channels=1)
    (tmp_path / "photos" / "train").mkdir()
    (tmp_path / "photos" / "test").mkdir()
    with pytest.raises(UsageError, match="has no class folders"):
        datasets.load(str(tmp_path / "photos"), None, channels=1)
    (tmp_path / "photos" / "train" / "x").mkdir()
    (tmp_path / "photos" / "train" / "x" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UsageError, match="cannot read image broken.png"):
        datasets.load(str(tmp_path / "photos"), None, channels=1)


def test_npz_in_keras_layout(tmp_path):
    path = tmp_path / "set.npz"
    x = np.arange(4 * 5 * 5 * 3, dtype=np.uint8).reshape(4, 5, 5, 3)
    np.savez(path, x_train=x, y_train=np.array([0, 1, 2, 1]), x_test=x[:2], y_test=np.array([2, 0]))
    data = datasets.load(str(path), None, channels=3)
    assert data.train_images.shape == (4, 3, 5, 5)
    assert np.array_equal(data.train_images[1, 2], x[1, :, :, 2])
    assert data.classes == ("0", "1", "2")
    np.savez(path, x_train=x.astype(np.float32), y_train=np.zeros(4, int), x_test=x, y_test=np.zeros(4, int))
    with pytest.raises(UsageError, match="x_train in set.npz is float32, not uint8"):
        datasets.load(str(path), None, channels=3)


def test_a_file_that_is_not_an_npz_archive(tmp_path):
    """numpy would take it for a pickle and suggest allow_pickle=True, which could run code from it."""
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(np.random.default_rng(3).bytes(200))
    np.save(tmp_path / "array.npy", np.zeros(3, dtype=np.uint8))
    (tmp_path / "array.npy").rename(tmp_path / "array.npz")
    for name in ("garbage.npz", "array.npz"):
        with pytest.raises(UsageError) as caught:
            datasets.load(str(tmp_path / name), None, channels=1)
        assert caught.value.message == f"{name} is not an .npz file (a zip archive of .npy arrays)"
        assert "pickle" not in str(caught.value)


def test_an_empty_split_names_its_file(tmp_path):
    write_idx_set(tmp_path / "mnist", test=0)
    with pytest.raises(UsageError) as caught:
        datasets.load("mnist", str(tmp_path), 1)
    assert caught.value.message == "the test split is empty: t10k-images-idx3-ubyte.gz holds no images"
    assert caught.value.file == str(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz")


def test_normalization_is_exact():
    images = np.random.default_rng(2).integers(0, 256, (5000, 3, 4, 4), dtype=np.uint8)
    stats = Normalization.of(images)
    as_float = images.astype(np.float64)
    assert np.allclose(stats.mean, as_float.mean(axis=(0, 2, 3)), rtol=0, atol=1e-9)
    assert np.allclose(stats.std, as_float.std(axis=(0, 2, 3)), rtol=0, atol=1e-9)


def idx_header(dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, 0x08, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


def gzip_of_zeros(header: bytes, zeros: int) -> bytes:
    """gzip of ``header`` and ``zeros`` zero bytes, compressed a chunk at a time (never all in memory)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [packer.compress(header)]
    chunk = bytes(1 << 20)
    for _ in range(zeros >> 20):
        parts.append(packer.compress(chunk))
    return b"".join(parts) + packer.flush()


@pytest.mark.parametrize(("dims", "shown"), [
    ((65536, 65536, 65536, 65536), "65536x65536x65536x65536"),  # 2**64: wrapped to 0 in int64, "matching" no data
    ((65536, 256, 256), "65536x256x256"),  # 4 GiB that a few MB of .gz would inflate to
])
def test_idx_sizes_beyond_the_limit_are_refused_from_the_header(tmp_path, dims, shown):
    write_idx_set(tmp_path / "mnist")
    target = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    target.write_bytes(gzip_of_zeros(idx_header(dims), 4 << 20))
    with pytest.raises(UsageError) as caught:
        datasets.load("mnist", str(tmp_path), 1)
    assert caught.value.message == (f"train-images-idx3-ubyte.gz holds {shown} bytes by its header: "
                                    f"{math.prod(dims):,} bytes, more than a split may take (2,147,483,648)")
    assert caught.value.file == str(target)


def test_a_gz_that_inflates_beyond_its_header_is_not_inflated_further(tmp_path):
    write_idx_set(tmp_path / "mnist")
    target = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    target.write_bytes(gzip_of_zeros(idx_header((12, 8, 8)), 256 << 20))  # 250 kB inflating to 256 MiB
    tracemalloc.start()
    try:
        with pytest.raises(UsageError) as caught:
            datasets.load("mnist", str(tmp_path), 1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.message == "train-images-idx3-ubyte.gz holds more than the 784 bytes its header 12x8x8 needs"
    assert peak < 16 << 20  # it stopped at the header's size rather than inflating all of it


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo"])
def test_a_data_file_that_is_not_a_plain_file_is_refused_unread(tmp_path, kind):
    write_idx_set(tmp_path / "mnist")
    target = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    target.unlink()
    os.mkfifo(target) if kind == "fifo" else target.symlink_to("/dev/zero")
    with pytest.raises(UsageError) as caught:
        datasets.load("mnist", str(tmp_path), 1)
    kind_name = "a FIFO (named pipe)" if kind == "fifo" else "a character device"
    assert caught.value.message == f"t10k-labels-idx1-ubyte.gz is {kind_name}, not a regular file; refusing to read it"


def npz_with_header(path: Path, member: str, shape: tuple[int, ...], dtype: str = "|u1") -> None:
    """An .npz whose ``member`` has a header claiming ``shape`` but only a few bytes of data."""
    x, y = np.zeros((4, 8, 8), np.uint8), np.arange(4)
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path) as old:
        members = {name: old.read(name) for name in old.namelist()}
    members[member + ".npy"] = b"\x93NUMPY\x01\x00" + header.getvalue()[8:] + bytes(64)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as new:
        for name, data in members.items():
            new.writestr(name, data)


@pytest.mark.parametrize(("member", "shape", "dtype"), [
    ("x_train", (10**12, 28, 28), "|u1"),  # numpy allocated 784 TB before reading a byte: MemoryError
    ("y_test", (10**12,), "<i8"),
])
def test_an_npy_header_claiming_too_much_is_refused_before_allocating(tmp_path, member, shape, dtype):
    path = tmp_path / "claims.npz"
    npz_with_header(path, member, shape, dtype)
    with pytest.raises(UsageError) as caught:
        datasets.load(str(path), None, channels=1)
    size = math.prod(shape) * np.dtype(dtype).itemsize
    assert caught.value.message == (f"{member} in claims.npz is {'x'.join(map(str, shape))} of {np.dtype(dtype)} "
                                    f"by its header: {size:,} bytes, more than a split may take (2,147,483,648)")


def test_an_npy_of_python_objects_is_refused_without_suggesting_pickles(tmp_path):
    path = tmp_path / "objects.npz"
    npz_with_header(path, "classes", (3,), "|O")
    with pytest.raises(UsageError) as caught:
        datasets.load(str(path), None, channels=1)
    assert caught.value.message == "classes in objects.npz holds Python objects; refused, since loading them could run code"
    assert "allow_pickle" not in caught.value.render()


@pytest.mark.parametrize(("label", "dtype"), [(10**12, np.int64), (2**64 - 1, np.uint64)])
def test_labels_beyond_the_class_limit_are_refused(tmp_path, label, dtype):
    """10**12 asked for 10**12 class names; a uint64 label of 2**64 - 1 turned into -1."""
    x = np.zeros((4, 8, 8), np.uint8)
    y = np.array([0, 1, 2, label], dtype=dtype)
    np.savez(tmp_path / "labels.npz", x_train=x, y_train=y, x_test=x, y_test=np.arange(4))
    with pytest.raises(UsageError) as caught:
        datasets.load(str(tmp_path / "labels.npz"), None, channels=1)
    assert caught.value.message == (f"y_train in labels.npz has label {label}; a data set may have at most "
                                    f"100,000 classes")


def png_header(width: int, height: int) -> bytes:
    """A PNG that has only its header: enough for Pillow to report a size without decoding anything."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [5000, 20000])  # beyond archdsl's limit; beyond Pillow's own (its own exception)
def test_an_image_too_large_is_refused_from_its_header(tmp_path, side):
    from PIL import Image

    for split in ("train", "test"):
        (tmp_path / split / "a").mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / split / "a" / "0.png")
    big = tmp_path / "train" / "a" / "1.png"
    big.write_bytes(png_header(side, side))
    with pytest.raises(UsageError) as caught:
        datasets.load(str(tmp_path), None, channels=1)
    message = "image 1.png has more than 16,777,216 pixels (4096 x 4096), the most an image may have"
    assert caught.value.message == (f"{message}: it is {side}x{side} (H x W)" if side == 5000 else message)
    assert caught.value.file == str(big)


def test_an_image_that_is_a_fifo_is_refused_not_waited_for(tmp_path):
    for split in ("train", "test"):
        (tmp_path / split / "a").mkdir(parents=True)
    os.mkfifo(tmp_path / "train" / "a" / "0.png")
    with pytest.raises(UsageError, match=r"0.png is a FIFO \(named pipe\), not a regular file"):
        datasets.load(str(tmp_path), None, channels=1)


def test_images_without_pixels_are_refused(tmp_path):
    write_idx_set(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_header((6, 0, 0))))
    with pytest.raises(UsageError) as caught:
        datasets.load("mnist", str(tmp_path), 1)
    assert caught.value.message == ("the test images in t10k-images-idx3-ubyte.gz have no pixels: "
                                    "their size is 1x0x0 (C x H x W)")
