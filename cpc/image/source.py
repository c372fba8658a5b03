"""Fashion-MNIST as a CPC data source (``data.name=fashion_mnist``; see cpc.data for the interface).

Shape legend: B batch, G grid rows = cols (7), P patch size (8).

The four idx files are read once into memory (47 MB of uint8 for the 60,000 training
images); each step takes B images, cuts each into the G x G grid of overlapping patches
(cpc.image.data.patch_grid) and, when ``augment`` is on, jitters each patch independently
(CPC v2's per-patch augmentation). Nothing else is read from disk while training.

Determinism: the images of step s on rank r are a pure function of (seed, s, r): epoch e =
s // batches_per_epoch is a permutation of the training images drawn from (seed, e), and rank
r takes slices r, r + W, ... of it (cpc.data.sampler); the augmentation of step s on rank r
comes from a generator seeded with (seed, r, s). A resumed run therefore sees exactly the
batches of an uninterrupted one.

Validation: the last ``valid_images`` images of the training split (in file order) are held
out of CPC training and give the fixed validation batches, without augmentation. The test
split is left to the probes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from cpc.data.sampler import EpochSampler, permutation_draw
from cpc.image.data import DEFAULT_ROOT, augment_patches, load_fashion_mnist, normalise, patch_grid
from cpc.runtime import generator_for


@dataclass
class FashionMNISTConfig:
    name: str = "fashion_mnist"
    root: str = DEFAULT_ROOT  # the folder of the four idx files (Debian: apt-get install dataset-fashion-mnist)
    train_images: int = 0  # use only the first N training images (0 = all 60,000), e.g. for tests
    valid_images: int = 1000  # held out of the training images for the validation loss
    # The patch grid (paper: 64 x 64 patches at 50 % overlap on 256 x 256 crops -> 7 x 7):
    padded_size: int = 32  # reflect-pad 28 -> 32 ...
    patch_size: int = 8  # ... and cut 8 x 8 patches ...
    patch_stride: int = 4  # ... every 4 pixels (50 % overlap): a 7 x 7 grid
    # CPC v2's per-patch augmentation (training batches only; never for validation or probes):
    augment: bool = True
    max_shift: int = 2  # crop-and-pad jitter, pixels
    brightness: float = 0.4
    contrast: float = 0.4


def image_patches(images: np.ndarray | Tensor, config: FashionMNISTConfig) -> Tensor:
    """uint8 images (B, 28, 28) -> float patches (B, G, G, P, P), without augmentation (probes, validation)."""
    images = torch.as_tensor(images)
    return patch_grid(
        normalise(images), padded_size=config.padded_size, patch_size=config.patch_size, stride=config.patch_stride
    )


AUGMENTATION = 2  # random stream of the augmentation (0 and 1 are the training and validation negatives, cpc.train)


class FashionMNISTPatches:
    """The data source: batches of (B, G, G, P, P) patches, lengths None (every image has all G rows)."""

    def __init__(
        self, config, *, rank: int = 0, world_size: int = 1, start_step: int = 0, device: torch.device
    ) -> None:
        from cpc.errors import ConfigError

        self.data, self.device = config.data, device
        self.seed, self.batch_size, self.rank, self.world_size = (
            config.train.seed,
            config.train.batch_size,
            rank,
            world_size,
        )
        self.start_step, self.valid_count = start_step, config.train.valid_batches * config.train.batch_size
        images, _ = load_fashion_mnist(self.data.root, "train")
        if self.data.train_images > 0:
            images = images[: self.data.train_images]
        if self.data.valid_images >= len(images):
            raise ConfigError(
                f"data.valid_images={self.data.valid_images} leaves no training images (of {len(images)})"
            )
        cut = len(images) - self.data.valid_images
        self.train_images, self.valid_images = torch.from_numpy(images[:cut]), torch.from_numpy(images[cut:])
        self.batches_per_epoch = len(self.train_images) // (self.batch_size * world_size)
        if self.batches_per_epoch == 0:
            raise ConfigError(
                f"train.batch_size={self.batch_size} x {world_size} processes exceeds the {len(self.train_images)} training images"
            )
        self.examples_per_batch = self.batch_size
        self.sampler = EpochSampler(
            permutation_draw(len(self.train_images), self.batch_size),
            seed=self.seed,
            batches_per_epoch=self.batches_per_epoch,
            rank=rank,
            world_size=world_size,
        )

    def check(self, model) -> None:
        from cpc.errors import ConfigError

        patch_size = getattr(model.encoder, "patch_size", None)
        if patch_size != self.data.patch_size:
            raise ConfigError(
                f"data.patch_size={self.data.patch_size} but the encoder ({type(model.encoder).__name__}) takes patches of {patch_size}"
            )
        rows = (self.data.padded_size - self.data.patch_size) // self.data.patch_stride + 1
        if max(model.predictors.offsets) >= rows:
            raise ConfigError(
                f"model.predictor offsets {list(model.predictors.offsets)} reach row {max(model.predictors.offsets)}, "
                f"but the patch grid has only {rows} rows: lower model.predictor.prediction_steps or first_offset"
            )

    def batch_images(self, step: int) -> Tensor:
        """The uint8 images (B, 28, 28) this rank trains on at ``step``."""
        return self.train_images[torch.from_numpy(self.sampler.batch(step))]

    def train_batches(self) -> Iterator[tuple[Tensor, None]]:
        step = self.start_step
        while True:
            patches = image_patches(self.batch_images(step), self.data)  # (B, G, G, P, P)
            if self.data.augment:
                patches = augment_patches(
                    patches,
                    generator_for(self.seed, self.rank, AUGMENTATION, step),
                    max_shift=self.data.max_shift,
                    brightness=self.data.brightness,
                    contrast=self.data.contrast,
                )
            yield patches.to(self.device, non_blocking=True), None
            step += 1

    def valid_batches(self) -> list[tuple[Tensor, None]]:
        images = self.valid_images[: self.valid_count][self.rank :: self.world_size]
        return [
            (image_patches(images[i : i + self.batch_size], self.data).to(self.device), None)
            for i in range(0, len(images), self.batch_size)
        ]
