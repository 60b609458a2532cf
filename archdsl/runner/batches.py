"""The data set on the device, and the batches drawn from it without per-sample Python work.

The uint8 images go to the device once. Each epoch a seeded permutation (generated on the device)
picks the batches; each batch is gathered, resized there (bilinear with antialias, as the book's
``transforms.Resize`` does) and normalised with the training set's per-channel mean and std. There
is no DataLoader: for a data set that fits in memory, the gather is the whole loading cost.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from archdsl.runner.datasets import ImageData, Normalization


class DeviceData:
    """Both splits of an ImageData as uint8 tensors on ``device``, with the batch preprocessing."""

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
        self.device = device
        self.size = size
        self.channels_last = channels_last
        channels = data.train_images.shape[1]
        std = torch.tensor(normalization.std, dtype=torch.float32)
        mean = torch.tensor(normalization.mean, dtype=torch.float32)
        # (x - mean) / std as one multiply-add on the raw 0..255 values.
        self.scale = (1.0 / std).reshape(1, channels, 1, 1).to(device)
        self.shift = (-mean / std).reshape(1, channels, 1, 1).to(device)

    @property
    def train_count(self) -> int:
        return len(self.train_labels)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, h, w) to normalised float (N, C, H, W) at the network's size.

        Resizing before normalising gives the same result as after (both are affine per pixel and
        the interpolation weights sum to one) and resizes fewer channels' worth of work.
        """
        x = images.to(torch.float32)
        if tuple(x.shape[-2:]) != self.size:
            shrinking = self.size[0] < x.shape[-2] or self.size[1] < x.shape[-1]
            # Antialiasing only changes a downscale; upscaling takes the plain kernel (same result, faster).
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=shrinking)
        x = torch.addcmul(self.shift, x, self.scale)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

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

    def test_batches(
        self, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's contiguous share of the test split, in batches."""
        count = len(self.test_labels)
        low, high = rank * count // world_size, (rank + 1) * count // world_size
        for start in range(low, high, batch_size):
            stop = min(start + batch_size, high)
            yield self.test_images[start:stop], self.test_labels[start:stop]
