"""Training data for speech CPC: random fixed-length windows from a list of audio files.

Design notes
------------
* A :class:`WindowSampler` decides *which* windows (file, offset) form each batch; the
  :class:`SpeechWindows` dataset only reads them. Reads seek inside the file (soundfile), so
  one step costs ``batch_size`` small reads, never a pass over the corpus; DataLoader
  workers do the reads in parallel with the model.
* Batches are a pure function of (seed, global step, rank) (the epoch sampler of
  cpc.data.sampler): the sampler for step s draws from a generator seeded with (seed, epoch),
  epoch = s // batches_per_epoch. Resuming at step s therefore continues exactly where an
  uninterrupted run would be, and each rank of a distributed run takes its own slice (rank r
  gets global batches r, r + W, r + 2W, ...).
* An epoch holds as many windows as fit side by side in the training files
  (sum of length // window); each window picks a file with probability proportional to its
  number of possible offsets, then a uniform offset.
* ``same_speaker_batches``: each batch draws all its windows from one speaker (chosen in
  proportion to that speaker's audio), the paper's same-speaker negative-sampling ablation.
* Files shorter than one window are never used for windows (counted and logged).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from cpc.data.sampler import EpochSampler
from cpc.speech.audio import SAMPLE_RATE, AudioError, AudioFile, list_audio, read_audio, read_split

log = logging.getLogger(__name__)


@dataclass
class CorpusSplit:
    """The files a run trains and validates on, and what was left out and why."""

    train: list[AudioFile]
    valid: list[AudioFile]
    unreadable: list[str]
    too_short: list[str]


def split_corpus(
    root: str,
    window: int,
    *,
    train_split: str | None = None,
    valid_split: str | None = None,
    valid_fraction: float = 0.05,
    seed: int = 0,
) -> CorpusSplit:
    """List ``root`` and divide it into training and validation files.

    Validation files come from ``valid_split`` (utterance ids) or, without one, a seeded
    ``valid_fraction`` of the files. ``train_split`` restricts training to its ids. Ids in a
    split file that are not in the corpus raise ``ValueError`` listing them.
    """
    listing = list_audio(root)
    by_id = {file.utterance_id: file for file in listing.files}

    def pick(split_path: str) -> list[AudioFile]:
        ids = read_split(split_path)
        missing = [utterance for utterance in ids if utterance not in by_id]
        if missing:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise ValueError(f"{len(missing)} utterance id(s) of {split_path} are not in {root}: {shown}")
        return [by_id[utterance] for utterance in ids]

    files = pick(train_split) if train_split else list(listing.files)
    if valid_split:
        valid = pick(valid_split)
        held_out = {file.path for file in valid}
        train = [file for file in files if file.path not in held_out]
    else:
        order = np.random.default_rng([seed, 1]).permutation(len(files))
        num_valid = int(round(valid_fraction * len(files)))
        if valid_fraction > 0 and len(files) > 1:
            num_valid = max(num_valid, 1)
        valid = [files[i] for i in sorted(order[:num_valid])]
        train = [files[i] for i in sorted(order[num_valid:])]
    too_short = [file.path for file in train + valid if file.num_samples < window]
    if too_short:
        log.warning("%d file(s) shorter than the %d-sample window are not used for windows", len(too_short), window)
    train = [file for file in train if file.num_samples >= window]
    valid = [file for file in valid if file.num_samples >= window]
    if not train:
        raise ValueError(f"no training file in {root} holds a full window of {window} samples")
    log.info(
        "data %s: %d training files (%.2f h), %d validation files; skipped %d unreadable, %d too short",
        root,
        len(train),
        sum(f.num_samples for f in train) / SAMPLE_RATE / 3600,
        len(valid),
        len(listing.unreadable),
        len(too_short),
    )
    return CorpusSplit(train, valid, listing.unreadable, too_short)


class SpeechWindows(Dataset):
    """Reads windows: item (file_index, offset) -> waveform (window,) float32 at 16 kHz."""

    def __init__(self, files: Sequence[AudioFile], window: int) -> None:
        self.files = list(files)
        self.window = window
        self.num_unreadable = 0

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: tuple[int, int]) -> torch.Tensor:
        file_index, offset = item
        for attempt in range(len(self.files)):
            file = self.files[(file_index + attempt) % len(self.files)]
            offset = min(offset, file.num_samples - self.window)
            try:
                wave = read_audio(file.path, offset, offset + self.window, sample_rate=file.sample_rate)
            except AudioError as error:
                # Header was fine at listing time but the data is not: warn, use the next file.
                self.num_unreadable += 1
                log.warning("skipping window: %s (%d unreadable read(s) in this worker)", error, self.num_unreadable)
                continue
            if len(wave) < self.window:  # a file shorter than its header claimed
                wave = np.pad(wave, (0, self.window - len(wave)))
            return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
        raise AudioError("no readable audio file left in the dataset")


class WindowSampler:
    """Batches of (file_index, offset) for global steps ``start_step``, ``start_step + 1``, ...

    An infinite batch sampler for ``DataLoader(batch_sampler=...)``; see the module notes.
    """

    def __init__(
        self,
        files: Sequence[AudioFile],
        window: int,
        batch_size: int,
        *,
        seed: int = 0,
        same_speaker: bool = False,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
    ) -> None:
        self.window = window
        self.batch_size = batch_size
        self.seed = seed
        self.same_speaker = same_speaker
        self.rank = rank
        self.world_size = world_size
        self.start_step = start_step
        self.offsets = np.array(
            [file.num_samples - window + 1 for file in files], dtype=np.int64
        )  # possible offsets per file
        if (self.offsets < 1).any():
            raise ValueError("every file given to WindowSampler must hold at least one window")
        total_windows = sum(file.num_samples // window for file in files)
        self.batches_per_epoch = max(1, total_windows // (batch_size * world_size))
        speakers = sorted({file.speaker for file in files})
        self.speaker_files = [np.array([i for i, f in enumerate(files) if f.speaker == s]) for s in speakers]
        self.sampler = EpochSampler(
            self._draw_windows,
            seed=seed,
            batches_per_epoch=self.batches_per_epoch,
            rank=rank,
            world_size=world_size,
        )

    def _draw_windows(self, rng: np.random.Generator, num_batches: int) -> np.ndarray:
        """All windows of one epoch: (num_batches, batch_size, 2) of (file, offset)."""
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

    def batch(self, step: int) -> list[tuple[int, int]]:
        """The batch this rank trains on at global step ``step``."""
        return [tuple(map(int, pair)) for pair in self.sampler.batch(step)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while True:
            yield self.batch(step)
            step += 1


def validation_windows(
    files: Sequence[AudioFile], window: int, count: int, *, rank: int = 0, world_size: int = 1
) -> list[tuple[int, int]]:
    """A fixed list of up to ``count`` (file, offset) windows, spread over the files; this rank's share."""
    windows = []
    per_file = [file.num_samples // window for file in files]
    for round_index in range(max(per_file, default=0)):
        for file_index, available in enumerate(per_file):
            if round_index < available and len(windows) < count:
                windows.append((file_index, round_index * window))
    return windows[rank::world_size]


def check_window(window: int, model) -> None:
    """A training window must give frames for every offset: at least (last offset + 1) frames."""
    from cpc.errors import ConfigError

    last = max(model.predictors.offsets)
    frames = int(model.output_lengths(torch.tensor(window)))
    if frames < last + 1:
        minimum = window
        while int(model.output_lengths(torch.tensor(minimum))) < last + 1:
            minimum += 1
        raise ConfigError(
            f"data.window={window} samples gives {frames} frames, but predicting up to {last} frames ahead "
            f"(model.predictor.prediction_steps={len(model.predictors.offsets)}) needs at least {last + 1}: use data.window >= {minimum}"
        )


def leave_ctrl_c_to_the_trainer(worker_id: int) -> None:
    """DataLoader workers ignore Ctrl-C: the training process stops and then shuts them down. A
    worker killed by the terminal's SIGINT while it hands a batch over made the trainer print a
    traceback (multiprocessing's resource sharer) after its one-line message."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class SpeechData:
    """The speech data source for the training loop (see cpc.data): random training windows
    of ``data.window`` samples, fixed validation windows, read by DataLoader workers."""

    loading = "loader"  # the data.loading value this source is

    def __init__(
        self, config, *, rank: int = 0, world_size: int = 1, start_step: int = 0, device: torch.device
    ) -> None:
        from torch.utils.data import DataLoader

        data, train = config.data, config.train
        self.window, self.device = data.window, device
        corpus = split_corpus(
            data.root,
            data.window,
            train_split=data.train_split,
            valid_split=data.valid_split,
            valid_fraction=data.valid_fraction,
            seed=train.seed,
        )
        self.examples_per_batch = train.batch_size
        sampler = WindowSampler(
            corpus.train,
            data.window,
            train.batch_size,
            seed=train.seed,
            same_speaker=data.same_speaker_batches,
            rank=rank,
            world_size=world_size,
            start_step=start_step,
        )
        options = dict(
            num_workers=data.num_workers, pin_memory=device.type == "cuda", worker_init_fn=leave_ctrl_c_to_the_trainer
        )
        self.train_loader = DataLoader(
            SpeechWindows(corpus.train, data.window),
            batch_sampler=sampler,
            persistent_workers=data.num_workers > 0,
            **options,
        )
        items = validation_windows(
            corpus.valid, data.window, train.valid_batches * train.batch_size, rank=rank, world_size=world_size
        )
        self.valid_loader = (
            DataLoader(_Items(SpeechWindows(corpus.valid, data.window), items), batch_size=train.batch_size, **options)
            if items
            else None
        )

    def check(self, model) -> None:
        check_window(self.window, model)

    def train_batches(self) -> Iterator[tuple[torch.Tensor, None]]:
        for waveforms in self.train_loader:
            yield waveforms.to(self.device, non_blocking=True), None  # (B, S), full-length windows

    def valid_batches(self) -> list[tuple[torch.Tensor, None]] | Iterator[tuple[torch.Tensor, None]]:
        if self.valid_loader is None:
            return []
        return ((waveforms.to(self.device), None) for waveforms in self.valid_loader)


class _Items(Dataset):
    """A fixed list of (file, offset) items over a SpeechWindows dataset."""

    def __init__(self, windows: SpeechWindows, items: list[tuple[int, int]]) -> None:
        self.windows, self.items = windows, items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.windows[self.items[index]]
