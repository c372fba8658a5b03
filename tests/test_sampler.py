"""The shared epoch sampler (cpc.data.sampler) draws exactly the batches of the samplers it replaced.

The references below are the per-modality samplers as they were, kept here verbatim in
substance: the permutation of Fashion-MNIST images and text windows, and speech's windows drawn
with replacement. Each is compared, for several seeds, sizes, world sizes and epochs, with the
shared sampler and with the data sources that now use it, from step 0 and from resume steps
(a fresh sampler asked for step s first, as after a restart).
"""

import gzip
import struct

import numpy as np
import pytest
import torch

from cpc.data.sampler import EpochSampler, permutation_draw
from cpc.speech.audio import AudioFile
from cpc.speech.windows import WindowSampler

# ----------------------------------------------------------------------------- references


def reference_permutation_batch(count: int, batch_size: int, seed: int, step: int, rank: int, world_size: int):
    """cpc.image.source's and cpc.text.source's draw: epoch e a permutation of the examples from
    SeedSequence([seed, e]); rank r takes the slice of global batch index * W + r."""
    batches_per_epoch = count // (batch_size * world_size)
    epoch, index = divmod(step, batches_per_epoch)
    order = np.random.default_rng(np.random.SeedSequence([seed, epoch])).permutation(count)
    start = (index * world_size + rank) * batch_size
    return order[start : start + batch_size]


class ReferenceWindowSampler:
    """cpc.speech.windows.WindowSampler's draw: files in proportion to their offsets (or one speaker
    per batch, in proportion to its audio), then a uniform offset, all from default_rng([seed, e])."""

    def __init__(self, files, window, batch_size, *, seed, same_speaker, rank, world_size):
        self.batch_size, self.seed, self.same_speaker = batch_size, seed, same_speaker
        self.rank, self.world_size = rank, world_size
        self.offsets = np.array([file.num_samples - window + 1 for file in files], dtype=np.int64)
        total_windows = sum(file.num_samples // window for file in files)
        self.batches_per_epoch = max(1, total_windows // (batch_size * world_size))
        speakers = sorted({file.speaker for file in files})
        self.speaker_files = [np.array([i for i, f in enumerate(files) if f.speaker == s]) for s in speakers]

    def epoch(self, epoch):
        rng = np.random.default_rng([self.seed, epoch])
        num_batches = self.batches_per_epoch * self.world_size
        if self.same_speaker:
            weight = np.array([self.offsets[idx].sum() for idx in self.speaker_files], dtype=np.float64)
            speaker = rng.choice(len(self.speaker_files), size=num_batches, p=weight / weight.sum())
            files = np.empty((num_batches, self.batch_size), dtype=np.int64)
            for batch, s in enumerate(speaker):
                idx = self.speaker_files[s]
                p = self.offsets[idx] / self.offsets[idx].sum()
                files[batch] = rng.choice(idx, size=self.batch_size, p=p)
        else:
            p = self.offsets / self.offsets.sum()
            files = rng.choice(len(self.offsets), size=(num_batches, self.batch_size), p=p)
        offsets = (rng.random(files.shape) * self.offsets[files]).astype(np.int64)
        return np.stack([files, offsets], axis=-1)

    def batch(self, step):
        epoch, index = divmod(step, self.batches_per_epoch)
        return [tuple(map(int, pair)) for pair in self.epoch(epoch)[index * self.world_size + self.rank]]


# ----------------------------------------------------------------------------- permutations

PERMUTATION_CASES = [  # (examples, batch size, world size); the last leaves a remainder every epoch
    (64, 8, 1),
    (64, 8, 2),
    (100, 7, 3),
    (576, 8, 1),
    (33, 4, 2),
]
SEEDS = (0, 1, 7, 12345)


def steps_to_check(batches_per_epoch: int) -> range:
    return range(3 * batches_per_epoch + 2)  # three epochs and into the fourth


@pytest.mark.parametrize("count,batch_size,world_size", PERMUTATION_CASES)
def test_permutation_batches_equal_the_reference(count, batch_size, world_size):
    per_epoch = count // (batch_size * world_size)
    for seed in SEEDS:
        for rank in range(world_size):
            sampler = EpochSampler(
                permutation_draw(count, batch_size),
                seed=seed,
                batches_per_epoch=per_epoch,
                rank=rank,
                world_size=world_size,
            )
            for step in steps_to_check(per_epoch):
                expected = reference_permutation_batch(count, batch_size, seed, step, rank, world_size)
                batch = sampler.batch(step)
                assert batch.dtype == expected.dtype and np.array_equal(batch, expected), (seed, rank, step)


@pytest.mark.parametrize("count,batch_size,world_size", PERMUTATION_CASES[:3])
def test_permutation_batches_from_a_resume_step_and_out_of_order(count, batch_size, world_size):
    per_epoch = count // (batch_size * world_size)
    steps = list(steps_to_check(per_epoch))
    for seed in SEEDS:
        for start in (1, per_epoch - 1, per_epoch, 2 * per_epoch + 1):
            resumed = EpochSampler(
                permutation_draw(count, batch_size), seed=seed, batches_per_epoch=per_epoch, world_size=world_size
            )
            for step in steps[start:] + steps[::-1]:  # on from the resume step, then backwards across epochs
                expected = reference_permutation_batch(count, batch_size, seed, step, 0, world_size)
                assert np.array_equal(resumed.batch(step), expected), (seed, start, step)


def test_a_rank_never_shares_an_example_within_an_epoch():
    samplers = [
        EpochSampler(permutation_draw(100, 7), seed=3, batches_per_epoch=4, rank=rank, world_size=3)
        for rank in range(3)
    ]
    seen = np.concatenate([sampler.batch(step) for sampler in samplers for step in range(4)])
    assert len(seen) == 84 and len(np.unique(seen)) == 84


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="batches_per_epoch must be at least 1, got 0"):
        EpochSampler(permutation_draw(10, 4), seed=0, batches_per_epoch=0)
    with pytest.raises(ValueError, match="3 batches of 4 need 12 examples, have 10"):
        EpochSampler(permutation_draw(10, 4), seed=0, batches_per_epoch=3).batch(0)


# ----------------------------------------------------------------------------- speech windows


def audio_files(seed: int, count: int, speakers: int) -> list[AudioFile]:
    """Files of uneven length (1 to 6 windows of 4000 samples and a bit), spread over speakers; nothing is read."""
    rng = np.random.default_rng(seed)
    return [
        AudioFile(f"/nowhere/{index}.flac", int(rng.integers(4000, 26000)), f"speaker{index % speakers}")
        for index in range(count)
    ]


@pytest.mark.parametrize("same_speaker", [False, True])
@pytest.mark.parametrize("batch_size,world_size", [(4, 1), (3, 2), (8, 1), (5, 3)])
def test_window_batches_equal_the_reference(same_speaker, batch_size, world_size):
    for seed in SEEDS:
        files = audio_files(seed, count=9, speakers=3)
        for rank in range(world_size):
            options = dict(seed=seed, same_speaker=same_speaker, rank=rank, world_size=world_size)
            reference = ReferenceWindowSampler(files, 4000, batch_size, **options)
            sampler = WindowSampler(files, 4000, batch_size, **options)
            assert sampler.batches_per_epoch == reference.batches_per_epoch
            steps = list(steps_to_check(reference.batches_per_epoch))
            for step in steps + steps[::-1]:
                assert sampler.batch(step) == reference.batch(step), (seed, rank, step)
            for start in (1, reference.batches_per_epoch, 2 * reference.batches_per_epoch + 1):
                resumed = iter(WindowSampler(files, 4000, batch_size, start_step=start, **options))
                for step in range(start, start + reference.batches_per_epoch + 1):
                    assert next(resumed) == reference.batch(step), (seed, rank, start, step)


# ----------------------------------------------------------------------------- the data sources


def write_fashion_mnist(root, count: int) -> np.ndarray:
    """A Fashion-MNIST folder of ``count`` random train and test images (idx files, gzipped); -> the train images."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, count, dtype=np.uint8)

    def idx(array):
        return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()

    for prefix in ("train", "t10k"):
        (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx(images)))
        (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx(labels)))
    return images


def test_image_source_takes_the_reference_images(tmp_path):
    from cpc.config import load_config
    from cpc.image.source import FashionMNISTPatches

    train = torch.from_numpy(write_fashion_mnist(tmp_path, count=90)[:80])  # the last 10 are held out
    for seed in (0, 5):
        for rank, world_size in ((0, 1), (1, 2)):
            overrides = [f"data.root={tmp_path}", "data.valid_images=10", "train.batch_size=8", f"train.seed={seed}"]
            config = load_config("image/fashion_mnist", overrides)
            source = FashionMNISTPatches(config, rank=rank, world_size=world_size, device=torch.device("cpu"))
            for step in steps_to_check(source.batches_per_epoch):
                expected = train[reference_permutation_batch(80, 8, seed, step, rank, world_size)]
                assert torch.equal(source.batch_images(step), expected), (seed, rank, step)


def test_text_source_takes_the_reference_windows(tmp_path):
    from cpc.config import load_config
    from cpc.text.corpus import build_text_data
    from cpc.text.source import TextData

    mine = tmp_path / "mine"
    mine.mkdir()
    for document in range(30):
        sentences = " ".join(f"Document {document} says thing {i}." for i in range(3 + document % 5))
        (mine / f"{document:02d}.txt").write_text(sentences)
    build_text_data(tmp_path / "data", paths=[mine], wheel=tmp_path / "no-such.whl")
    for seed in (0, 5):
        for rank, world_size in ((0, 1), (1, 2)):
            overrides = [f"data.root={tmp_path / 'data'}", "data.window=3", "data.window_stride=1"]
            overrides += ["data.valid_fraction=0.1", "train.batch_size=4", f"train.seed={seed}"]
            source = TextData(
                load_config("text/books", overrides), rank=rank, world_size=world_size, device=torch.device("cpu")
            )
            count = len(source.train_windows)
            for step in steps_to_check(source.batches_per_epoch):
                expected = source.train_windows[reference_permutation_batch(count, 4, seed, step, rank, world_size)]
                assert np.array_equal(source.batch_windows(step), expected), (seed, rank, step)
