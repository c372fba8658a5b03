"""A speech corpus held on the training device: windows cut by index arithmetic, no loader.

    data.loading: auto | device | loader

On a GPU the DataLoader is the slow part of a fast step: worker processes decode files, the
host stacks the windows and copies them over every step. :class:`ResidentSpeechData` reads the
training audio once, as int16 (2 bytes a sample: LibriSpeech's 100 hours are ~11.5 GB), into
one tensor on the device, and from then on a batch costs a few kernels:

    u      ~ uniform over every (file, offset) pair        (B,)   one draw per window
    file   = searchsorted(cumulative offsets, u)           (B,)
    start  = file_start[file] + (u - offsets before file)  (B,)
    x      = audio[start + arange(S)] / 32768              (B, S) float32

which is the loader's distribution (a file with probability proportional to its number of
possible offsets, then a uniform offset; :class:`cpc.speech.windows.WindowSampler`). The draws
of step s on rank r come from a generator seeded with (seed, rank, s), so a batch is a pure
function of (seed, step, rank) and ``--resume`` continues exactly. (The stream differs from
the loader's: switching ``data.loading`` is a different run.) With
``data.same_speaker_batches`` a batch first draws one speaker in proportion to its offsets,
then its windows inside that speaker's files. Each rank holds the whole corpus and draws its
own windows.

``auto`` (the default) holds the corpus on the device when training on CUDA and its int16
samples take at most half of the free device memory, else uses the loader
(:class:`cpc.speech.windows.SpeechData`); the choice is logged. ``device`` insists (a corpus that
does not fit is a ConfigError; on the CPU it means "in RAM", which the tests use); ``loader``
is the loader. Audio at other rates is resampled to 16 kHz while loading; float files are quantised
to 16 bits. Unreadable files are skipped and counted, as by the loader.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from cpc.runtime import generator_for, plain
from cpc.speech.audio import SAMPLE_RATE, AudioError, AudioFile, read_audio
from cpc.speech.windows import SpeechData, check_window, split_corpus, validation_windows

log = logging.getLogger(__name__)

DEVICE_SHARE = 0.5  # the corpus may take this share of the device's free memory (the rest trains)
DATA_STREAM = 2  # random stream id of the windows (cpc.train uses 0 and 1 for negatives)


def corpus_bytes(files: Sequence[AudioFile]) -> int:
    """Bytes the files take as int16 at 16 kHz."""
    return 2 * sum(file.num_samples for file in files)


def _read_int16(file: AudioFile) -> np.ndarray | None:
    try:
        wave = read_audio(file.path, sample_rate=file.sample_rate)  # (samples,) float32 in [-1, 1]
    except AudioError as error:
        log.warning("skipping %s", error)
        return None
    return np.clip(np.round(wave * 32768.0), -32768, 32767).astype(np.int16)


class ResidentSpeechData:
    """The speech data source with the training audio on ``device`` (see the module notes)."""

    loading = "device"  # the data.loading value this source is

    def __init__(
        self, config, *, rank: int = 0, world_size: int = 1, start_step: int = 0, device: torch.device, corpus=None
    ) -> None:
        data, train = config.data, config.train
        self.window, self.device, self.seed, self.rank = data.window, device, train.seed, rank
        self.batch_size = self.examples_per_batch = train.batch_size
        self.same_speaker = data.same_speaker_batches
        self.start_step = start_step
        if corpus is None:
            corpus = split_corpus(
                data.root,
                data.window,
                train_split=data.train_split,
                valid_split=data.valid_split,
                valid_fraction=data.valid_fraction,
                seed=train.seed,
            )
        files = sorted(corpus.train, key=lambda file: file.speaker)  # each speaker's files side by side
        with ThreadPoolExecutor(max(1, data.num_workers)) as pool:  # libsndfile decodes outside the GIL
            waves = list(pool.map(_read_int16, files))
        kept = [(file, wave) for file, wave in zip(files, waves) if wave is not None and len(wave) >= self.window]
        self.num_skipped = len(files) - len(kept)
        if not kept:
            raise AudioError(f"no readable training file in {data.root} holds a full window of {self.window} samples")
        lengths = np.array([len(wave) for _, wave in kept], dtype=np.int64)
        self.audio = torch.from_numpy(np.concatenate([wave for _, wave in kept])).to(device)  # (total samples,) int16
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        offsets = lengths - self.window + 1  # possible window starts per file
        self.file_start = torch.from_numpy(starts).to(device)  # (F,)
        self.offsets_before = torch.from_numpy(np.cumsum(offsets) - offsets).to(
            device
        )  # (F,) offsets of the files before
        self.offsets_through = torch.from_numpy(np.cumsum(offsets)).to(device)  # (F,) ... up to and including each file
        self.total_offsets = int(offsets.sum())
        speakers = np.array([file.speaker for file, _ in kept])
        first_file = np.flatnonzero(np.r_[True, speakers[1:] != speakers[:-1]])  # each speaker's first file
        speaker_offsets = np.add.reduceat(offsets, first_file)  # (speakers,)
        self.speaker_begin = torch.from_numpy(np.cumsum(speaker_offsets) - speaker_offsets).to(device)  # (speakers,)
        self.speaker_size = torch.from_numpy(speaker_offsets).to(device)
        self.speaker_through = torch.cumsum(self.speaker_size, 0)
        self.positions = torch.arange(self.window, device=device)  # (S,)
        valid_items = validation_windows(
            corpus.valid, data.window, train.valid_batches * train.batch_size, rank=rank, world_size=world_size
        )
        valid = [
            read_audio(corpus.valid[f].path, o, o + self.window, sample_rate=corpus.valid[f].sample_rate)
            for f, o in valid_items
        ]
        self.valid = torch.from_numpy(np.stack(valid)).to(device) if valid else None  # (V, S) float32
        log.info(
            "data on %s: %d training files, %.2f h, %.2f GB as int16 (%d unreadable skipped); windows cut on the device",
            device,
            len(kept),
            len(self.audio) / SAMPLE_RATE / 3600,
            2 * len(self.audio) / 1e9,
            self.num_skipped,
        )

    def check(self, model) -> None:
        check_window(self.window, model)

    def _generator(self, step: int) -> torch.Generator:
        return generator_for(self.seed, self.rank, DATA_STREAM, step, device=self.device)

    def _uniform(self, high: torch.Tensor | int, count: int, generator: torch.Generator) -> torch.Tensor:
        """Integers uniform in [0, high) (high an int or broadcast to (count,)); float64 keeps ~2^53 offsets exact enough."""
        draws = torch.rand(count, generator=generator, device=self.device, dtype=torch.float64)
        return (draws * high).long().clamp(max=high - 1)

    def window_starts(self, step: int) -> torch.Tensor:
        """Sample index in ``self.audio`` where each window of step ``step`` begins: (B,)."""
        generator = self._generator(step)
        if self.same_speaker:
            pick = self._uniform(self.total_offsets, 1, generator)
            speaker = torch.searchsorted(self.speaker_through, pick, right=True)  # (1,) in proportion to its offsets
            draw = self.speaker_begin[speaker] + self._uniform(
                self.speaker_size[speaker], self.batch_size, generator
            )  # (B,)
        else:
            draw = self._uniform(self.total_offsets, self.batch_size, generator)  # (B,) python ints only: no host sync
        file = torch.searchsorted(self.offsets_through, draw, right=True)  # (B,)
        return self.file_start[file] + (draw - self.offsets_before[file])

    def batch(self, step: int) -> torch.Tensor:
        """The training windows of step ``step``: (B, S) float32 on the device."""
        starts = self.window_starts(step)  # (B,)
        return self.audio[starts[:, None] + self.positions].float() / 32768.0  # (B, S)

    def train_batches(self) -> Iterator[tuple[torch.Tensor, None]]:
        step = self.start_step
        while True:
            yield self.batch(step), None
            step += 1

    def valid_batches(self) -> list[tuple[torch.Tensor, None]]:
        if self.valid is None:
            return []
        return [(self.valid[i : i + self.batch_size], None) for i in range(0, len(self.valid), self.batch_size)]


def build_speech_data(config, *, rank: int = 0, world_size: int = 1, start_step: int = 0, device: torch.device):
    """The speech data source ``data.loading`` asks for: on the device, or the loader (logged)."""
    from cpc.errors import ConfigError

    mode = str(plain(config.data.loading))
    loader = dict(rank=rank, world_size=world_size, start_step=start_step, device=device)
    if mode == "loader" or (mode == "auto" and device.type != "cuda"):
        if mode == "auto":
            log.info("data: the DataLoader (data.loading=auto holds the corpus on CUDA devices only)")
        return SpeechData(config, **loader)
    data = config.data
    corpus = split_corpus(
        data.root,
        data.window,
        train_split=data.train_split,
        valid_split=data.valid_split,
        valid_fraction=data.valid_fraction,
        seed=config.train.seed,
    )
    needed = corpus_bytes(corpus.train)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if needed > DEVICE_SHARE * free:
            message = (
                f"the training corpus takes {needed / 1e9:.2f} GB as int16, more than {DEVICE_SHARE:.0%} of the "
                f"{free / 1e9:.1f} GB free on {device}"
            )
            if mode == "device":
                raise ConfigError(f"data.loading=device: {message}; use data.loading=auto or loader")
            log.info("data: the DataLoader, because %s", message)
            return SpeechData(config, **loader)
    return ResidentSpeechData(config, **loader, corpus=corpus)
