"""Which examples form batch s on rank r: the epoch sampler every data source shares.

Step s falls in epoch e = s // batches_per_epoch. An epoch's global batches, all
``batches_per_epoch * world_size`` of them, are drawn at once from a generator seeded with
(seed, e); rank r trains on global batches r, r + W, r + 2W, ... of it. A batch is therefore a
pure function of (seed, s, r): a resumed run continues exactly where an uninterrupted one would
be, and each rank of a distributed run trains on global batches of its own.

What a draw returns is the data source's: a permutation of the examples, each seen once per
epoch (:func:`permutation_draw`: images, text windows), or windows drawn with replacement in
proportion to the audio (cpc.speech.windows).

    per_epoch = len(images) // (batch_size * world_size)
    sampler = EpochSampler(permutation_draw(len(images), batch_size), seed=seed,
                           batches_per_epoch=per_epoch, rank=rank, world_size=world_size)
    images[sampler.batch(step)]     # sampler.batch(step): this rank's (B,) indices at this step
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["Draw", "EpochSampler", "permutation_draw"]

# (generator, global batches in the epoch) -> an array whose rows are the epoch's global batches.
Draw = Callable[[np.random.Generator, int], np.ndarray]


class EpochSampler:
    """Batch ``step`` of this rank: a row of the epoch's draw, the draw made once per epoch."""

    def __init__(self, draw: Draw, *, seed: int, batches_per_epoch: int, rank: int = 0, world_size: int = 1) -> None:
        if batches_per_epoch < 1:
            raise ValueError(f"batches_per_epoch must be at least 1, got {batches_per_epoch}")
        self.draw, self.seed, self.batches_per_epoch = draw, seed, batches_per_epoch
        self.rank, self.world_size = rank, world_size
        self._epoch, self._batches = None, None  # the current epoch and its draw: steps run in order

    def epoch_batches(self, epoch: int) -> np.ndarray:
        """All global batches of ``epoch``: the draw's array, one row per batch."""
        return self.draw(np.random.default_rng([self.seed, epoch]), self.batches_per_epoch * self.world_size)

    def batch(self, step: int) -> np.ndarray:
        """This rank's batch at global step ``step``."""
        epoch, index = divmod(step, self.batches_per_epoch)
        if epoch != self._epoch:
            self._epoch, self._batches = epoch, self.epoch_batches(epoch)
        return self._batches[index * self.world_size + self.rank]


def permutation_draw(count: int, batch_size: int) -> Draw:
    """Each of ``count`` examples at most once per epoch: a permutation's first
    ``num_batches * batch_size`` indices as (num_batches, batch_size) int64 rows; the rest of the
    permutation is the epoch's remainder, left out."""

    def draw(generator: np.random.Generator, num_batches: int) -> np.ndarray:
        if num_batches * batch_size > count:
            raise ValueError(
                f"{num_batches} batches of {batch_size} need {num_batches * batch_size} examples, have {count}"
            )
        return generator.permutation(count)[: num_batches * batch_size].reshape(num_batches, batch_size)

    return draw
