"""Data sets: the IDX reader on the real Fashion-MNIST files, downloads against a local server,
image folders, .npz files, the search order, and the errors for broken data."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
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
