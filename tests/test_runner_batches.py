"""Batches on the device: the permutation, the split across ranks, resizing and normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from archdsl.runner.batches import DeviceData
from archdsl.runner.datasets import ImageData, Normalization


def make_data(count: int = 50, size: int = 28, channels: int = 1) -> ImageData:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, channels, size, size), dtype=np.uint8)
    labels = np.arange(count, dtype=np.int64)  # label = index, to see which examples a batch holds
    return ImageData("toy", images, labels, images[:20], labels[:20], tuple(map(str, range(count))), "memory")


def device_data(data: ImageData, size: int = 28) -> DeviceData:
    return DeviceData(data, torch.device("cpu"), size=(size, size),
                      normalization=Normalization.of(data.train_images), channels_last=False)


def test_an_epoch_visits_every_example_once_in_seeded_order():
    data = device_data(make_data())
    epoch = [labels for _, labels in data.train_batches(seed=7, batch_size=16)]
    assert [len(labels) for labels in epoch] == [16, 16, 16, 2]  # the last, partial batch is kept
    assert sorted(torch.cat(epoch).tolist()) == list(range(50))
    again = torch.cat([labels for _, labels in data.train_batches(seed=7, batch_size=16)])
    other = torch.cat([labels for _, labels in data.train_batches(seed=8, batch_size=16)])
    assert torch.equal(torch.cat(epoch), again)
    assert not torch.equal(torch.cat(epoch), other)
    images, labels = next(iter(data.train_batches(seed=7, batch_size=16)))
    assert torch.equal(images, data.train_images[labels])


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_split_the_same_global_batches(world):
    data = device_data(make_data(count=51))
    single = [labels for _, labels in data.train_batches(seed=3, batch_size=12)]
    shares = [[labels for _, labels in data.train_batches(seed=3, batch_size=12, rank=r, world_size=world)]
              for r in range(world)]
    assert len({len(share) for share in shares}) == 1  # every rank takes the same number of steps
    assert len(shares[0]) == data.steps_per_epoch(12, world)
    usable = 51 - 51 % world
    flat = torch.cat(single)[:usable]
    for step, parts in enumerate(zip(*shares)):
        assert len({len(part) for part in parts}) == 1
        assert torch.equal(torch.cat(parts), flat[step * 12 : (step + 1) * 12])


def test_the_test_split_is_shared_out_without_overlap():
    data = device_data(make_data())
    shares = [torch.cat([labels for _, labels in data.test_batches(6, rank=r, world_size=3)]) for r in range(3)]
    assert torch.cat(shares).tolist() == list(range(20))


@pytest.mark.parametrize("target", [14, 28, 56])
def test_preprocess_resizes_like_the_book_and_normalises(target):
    raw = make_data()
    data = device_data(raw, size=target)
    stats = Normalization.of(raw.train_images)
    images = data.train_images[:8]
    # The book: scale to [0, 1], resize (bilinear, antialiased); then normalise with the set's stats.
    reference = images.float() / 255
    if target != 28:
        reference = F.interpolate(reference, size=(target, target), mode="bilinear", antialias=True)
    reference = (reference - stats.mean[0] / 255) / (stats.std[0] / 255)
    got = data.preprocess(images)
    assert got.shape == (8, 1, target, target) and got.dtype == torch.float32
    torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-5)


def test_channels_last_layout():
    data = DeviceData(make_data(channels=3), torch.device("cpu"), size=(32, 32),
                      normalization=Normalization.of(make_data(channels=3).train_images), channels_last=True)
    x = data.preprocess(data.train_images[:4])
    assert x.is_contiguous(memory_format=torch.channels_last)
