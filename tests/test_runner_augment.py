"""Augmentation on the device: --augment's syntax, the batched crop, flip, erasing and cutout against plain
per-image references, and the same draws for the same seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from archdsl.errors import UsageError
from archdsl.runner.augment import Augment, Augmenter, fill_boxes, shift_and_flip
from archdsl.runner.batches import DeviceData
from archdsl.runner.datasets import ImageData, Normalization


def batch(count: int = 16, channels: int = 3, height: int = 12, width: int = 10, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, channels, height, width), generator=generator, dtype=torch.uint8)


@pytest.mark.parametrize(("text", "parsed", "canonical"), [
    ("none", Augment(), "none"),
    ("crop", Augment(padding=4), "crop=4:zero"),
    ("crop=2:reflect,flip", Augment(padding=2, fill="reflect", flip=True), "crop=2:reflect,flip"),
    ("flip, erase", Augment(flip=True, erase=0.5), "flip,erase=0.5"),
    ("erase=0.25,cutout=8", Augment(erase=0.25, cutout=8), "erase=0.25,cutout=8"),
])
def test_the_syntax_and_its_canonical_form(text, parsed, canonical):
    assert Augment.parse(text) == parsed
    assert parsed.text() == canonical
    assert Augment.parse(canonical) == parsed


@pytest.mark.parametrize(("text", "message"), [
    ("rotate", "--augment: unknown transform 'rotate'"),
    ("flip,flip", "--augment names flip twice"),
    ("flip=1", "--augment flip takes no argument"),
    ("crop=4:wrap", "--augment crop: padding 'wrap' is neither zero nor reflect"),
    ("crop=-1", "--augment crop=-1: a whole number of pixels from 1 to 1024 was expected"),
    ("erase=2", "--augment erase=2: the probability must be in (0, 1]"),
    ("erase=x", "--augment erase=x: the probability must be in (0, 1]"),
    ("cutout", "--augment cutout needs the square's side, e.g. cutout=16"),
])
def test_mistakes_are_one_error(text, message):
    with pytest.raises(UsageError) as caught:
        Augment.parse(text)
    assert caught.value.message == message


def test_sizes_that_the_images_cannot_take():
    with pytest.raises(UsageError, match="needs a padding below the image's size"):
        Augment.parse("crop=8:reflect").check_size(8, 8)
    with pytest.raises(UsageError, match="cutout=9 is larger than the images"):
        Augment.parse("cutout=9").check_size(8, 8)
    Augment.parse("crop=8:zero,cutout=8").check_size(8, 8)


def test_a_flip_twice_is_the_identity_and_a_flip_mirrors():
    images = batch()
    every = torch.ones(len(images), dtype=torch.bool)
    once = shift_and_flip(images, None, every)
    assert torch.equal(once, images.flip(-1))
    assert torch.equal(shift_and_flip(once, None, every), images)
    some = torch.arange(len(images)) % 3 == 0
    mixed = shift_and_flip(images, None, some)
    assert torch.equal(mixed[some], images[some].flip(-1)) and torch.equal(mixed[~some], images[~some])


@pytest.mark.parametrize("fill", ["zero", "reflect"])
def test_a_crop_keeps_the_size_and_is_the_padded_images_window(fill):
    """Each image against torchvision's way: pad by 4 (zeros or a reflection), cut the window at the offset."""
    images = batch()
    padding = 4
    generator = torch.Generator().manual_seed(1)
    shifts = torch.randint(-padding, padding + 1, (len(images), 2), generator=generator)
    flips = torch.rand(len(images), generator=generator) < 0.5
    out = shift_and_flip(images, shifts, flips, fill, padding)
    assert out.shape == images.shape and out.dtype == torch.uint8
    mode = "constant" if fill == "zero" else "reflect"
    padded = F.pad(images.float(), (padding,) * 4, mode=mode).to(torch.uint8)
    for n, (dy, dx) in enumerate(shifts.tolist()):
        top, left = padding + dy, padding + dx
        window = padded[n, :, top : top + images.shape[2], left : left + images.shape[3]]
        assert torch.equal(out[n], window.flip(-1) if flips[n] else window), n


def test_no_shift_and_no_flip_is_the_identity():
    images = batch()
    zero = torch.zeros(len(images), 2, dtype=torch.int64)
    assert torch.equal(shift_and_flip(images, zero, torch.zeros(len(images), dtype=torch.bool)), images)


def test_fill_boxes_zeroes_exactly_the_boxes():
    x = torch.ones(3, 2, 6, 5)
    top, bottom = torch.tensor([0, 2, 4]), torch.tensor([2, 2, 6])
    left, right = torch.tensor([1, 0, 3]), torch.tensor([3, 5, 5])
    out = fill_boxes(x, top, bottom, left, right)
    expected = torch.ones(3, 2, 6, 5)
    expected[0, :, 0:2, 1:3] = 0
    expected[2, :, 4:6, 3:5] = 0  # image 1's box is empty: nothing erased
    assert torch.equal(out, expected)


def augmented(text: str, seed: int, images: torch.Tensor) -> torch.Tensor:
    augmenter = Augmenter(Augment.parse(text), torch.device("cpu"), seed)
    first = augmenter.erase(augmenter.geometric(images).float())
    second = augmenter.erase(augmenter.geometric(images).float())  # the next batch draws afresh
    return torch.stack([first, second])


@pytest.mark.parametrize("text", ["crop=4:zero,flip", "crop=2:reflect", "erase=1", "cutout=5", "flip,erase,cutout=4"])
def test_the_same_seed_draws_the_same_and_another_seed_differs(text):
    images = batch(count=64)
    assert torch.equal(augmented(text, 7, images), augmented(text, 7, images))
    assert not torch.equal(augmented(text, 7, images), augmented(text, 8, images))
    draws = augmented(text, 7, images)
    assert not torch.equal(draws[0], draws[1])
    assert draws.shape[1:] == images.shape


def test_random_erasing_erases_about_p_of_the_images_with_boxes_in_torchvisions_range():
    x = torch.ones(2000, 1, 32, 32)
    out = Augmenter(Augment(erase=0.5), torch.device("cpu"), 3).erase(x)
    erased = (out == 0).flatten(1).sum(dim=1)
    assert 0.45 < (erased > 0).float().mean().item() < 0.55
    fractions = erased[erased > 0].float() / (32 * 32)
    assert fractions.min() >= 0.01 and fractions.max() <= 0.37  # 2% to 33% of the image, each side rounded


def test_cutout_erases_a_clipped_square_in_every_image():
    x = torch.ones(500, 1, 16, 16)
    out = Augmenter(Augment(cutout=8), torch.device("cpu"), 5).erase(x)
    erased = (out == 0).flatten(1).sum(dim=1)
    assert erased.min() >= 16 and erased.max() == 64  # a quarter of it at least (centre in a corner), 8x8 at most


def test_training_batches_are_augmented_where_the_preprocessing_says():
    """Crop and flip on the uint8 images before the resize; erasing after the normalisation (0 is the mean)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 1, 14, 14), dtype=np.uint8)
    data = ImageData("toy", images, np.arange(8), images, np.arange(8), tuple("abcdefgh"), "memory")
    device_data = DeviceData(data, torch.device("cpu"), size=(28, 28), normalization=Normalization.of(images),
                             channels_last=False)
    raw = device_data.train_images
    flip_all = Augmenter(Augment(flip=True), torch.device("cpu"), 0)
    flip_all.geometric = lambda batch: batch.flip(-1)  # every image, to compare with a plain reference
    assert torch.equal(device_data.preprocess(raw, flip_all), device_data.preprocess(raw.flip(-1)))
    erased = device_data.preprocess(raw, Augmenter(Augment(cutout=28), torch.device("cpu"), 0))
    assert erased.shape == (8, 1, 28, 28) and (erased == 0).any()
