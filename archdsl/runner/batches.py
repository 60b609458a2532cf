"""The data set on the device, and the batches drawn from it without per-sample Python work.

The uint8 images go to the device once. Each epoch a seeded permutation (generated on the device)
picks the batches; each batch is gathered, resized there (bilinear with antialias, as the book's
``transforms.Resize`` does) and normalised with the training set's per-channel mean and std. There
is no DataLoader: for a data set that fits in memory, the gather is the whole loading cost. Training
batches may be augmented on the way (augment.py): cropped and flipped as uint8 before the resize, erased
after the normalisation.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from archdsl.runner.augment import Augmenter
from archdsl.runner.datasets import ImageData, Normalization


class Preprocessor:
    """uint8 batches to the network's input: resized on the device (bilinear, antialiased when shrinking)
    and normalised with the training set's per-channel mean and std; what training, eval and predict share."""

    def __init__(self, device: torch.device, *, size: tuple[int, int], normalization: Normalization,
                 channels_last: bool) -> None:
        self.size = size
        self.channels_last = channels_last
        channels = len(normalization.mean)
        std = torch.tensor(normalization.std, dtype=torch.float32)
        mean = torch.tensor(normalization.mean, dtype=torch.float32)
        # (x - mean) / std as one multiply-add on the raw 0..255 values.
        self.scale = (1.0 / std).reshape(1, channels, 1, 1).to(device)
        self.shift = (-mean / std).reshape(1, channels, 1, 1).to(device)

    def __call__(self, images: torch.Tensor, augmenter: Augmenter | None = None) -> torch.Tensor:
        """uint8 (N, C, h, w) to normalised float (N, C, H, W) at the network's size, augmented by
        ``augmenter`` (training batches only).

        Resizing before normalising gives the same result as after (both are affine per pixel and
        the interpolation weights sum to one) and resizes fewer channels' worth of work.
        """
        if augmenter is not None:
            images = augmenter.geometric(images)
        x = images
        if tuple(x.shape[-2:]) != self.size:
            shrinking = self.size[0] < x.shape[-2] or self.size[1] < x.shape[-1]
            # Antialiasing only changes a downscale; upscaling takes the plain kernel (same result, faster).
            x = F.interpolate(x.to(torch.float32), size=self.size, mode="bilinear", align_corners=False,
                              antialias=shrinking)
        x = torch.addcmul(self.shift, x, self.scale)  # on uint8 images it converts as it goes: one pass
        if augmenter is not None:
            x = augmenter.erase(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


class DeviceData:
    """Both splits of an ImageData (and its validation split, if any) as uint8 tensors on ``device``, with
    the batch preprocessing."""

    def __init__(
        self,
        data: ImageData,
        device: torch.device,
        *,
        size: tuple[int, int],
        normalization: Normalization,
        channels_last: bool,
    ) -> None:
        self.train_images = torch.from_numpy(data.train_images).to(device)
        self.train_labels = torch.from_numpy(data.train_labels).to(device)
        self.test_images = torch.from_numpy(data.test_images).to(device)
        self.test_labels = torch.from_numpy(data.test_labels).to(device)
        self.val_images = self.val_labels = None
        if data.val_images is not None and data.val_labels is not None:
            self.val_images = torch.from_numpy(data.val_images).to(device)
            self.val_labels = torch.from_numpy(data.val_labels).to(device)
        self.device = device
        self.preprocess = Preprocessor(device, size=size, normalization=normalization, channels_last=channels_last)

    @property
    def train_count(self) -> int:
        return len(self.train_labels)

    def steps_per_epoch(self, batch_size: int, world_size: int) -> int:
        usable = self.train_count - self.train_count % world_size
        return -(-usable // batch_size)

    def train_batches(
        self, seed: int, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's share of each global batch of one epoch, in the order ``seed`` draws.

        Every rank draws the same permutation; each global batch is split evenly across ranks
        (the last few examples are left out when the count does not divide by the world size),
        so N processes step through the same global batches that one process would.
        """
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed)
        order = torch.randperm(self.train_count, generator=generator, device=self.device)
        usable = self.train_count - self.train_count % world_size
        for start in range(0, usable, batch_size):
            chunk = order[start : min(start + batch_size, usable)]
            share = len(chunk) // world_size
            index = chunk[rank * share : (rank + 1) * share]
            yield self.train_images[index], self.train_labels[index]

    @property
    def has_validation(self) -> bool:
        return self.val_labels is not None

    def test_batches(
        self, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's contiguous share of the test split, in batches."""
        return _shares(self.test_images, self.test_labels, batch_size, rank, world_size)

    def val_batches(
        self, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's contiguous share of the validation split (--val), in batches."""
        if self.val_images is None or self.val_labels is None:
            raise AssertionError("val_batches of data without a validation split")
        return _shares(self.val_images, self.val_labels, batch_size, rank, world_size)


def _shares(images: torch.Tensor, labels: torch.Tensor, batch_size: int, rank: int,
            world_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    count = len(labels)
    low, high = rank * count // world_size, (rank + 1) * count // world_size
    for start in range(low, high, batch_size):
        stop = min(start + batch_size, high)
        yield images[start:stop], labels[start:stop]
