"""Books as a CPC data source (``data.name=text``; see cpc.data for the interface).

Shape legend: B batch, T sentences per window, L words per sentence, G n-gram ids per word.

The folder built by ``cpc data text`` (cpc.text.corpus) is read once: every sentence is cut
into words (at most ``max_words``), each distinct word hashed once into its n-gram ids (a
(V + 1, G) table, row 0 the padding word), and each sentence kept as word indices. A training
example is a window of up to T consecutive sentences of one document (a chapter of a book, a
fortune): windows start every ``window_stride`` sentences; a document shorter than T gives one
shorter window, padded, with its length in ``lengths`` (documents of one sentence have no next
sentence and are left out). A batch is (B, T, L, G) ids, L the longest sentence of the batch.

Determinism: the windows of step s on rank r are a pure function of (seed, s, r): epoch e =
s // batches_per_epoch is a permutation of the training windows drawn from (seed, e), and rank
r takes slices r, r + W, ... of it (cpc.data.sampler, as cpc.image.source). A resumed run sees
exactly the batches of an uninterrupted one.

Validation: documents whose CRC-32 of ``source/name`` falls in the first ``valid_fraction`` of
the range are held out of training (a fixed choice, independent of the seed and of which other
documents exist); those in the last ``probe_fraction`` are held out of training and validation
alike: the probe suite (cpc.text.suite) builds its tasks from them only; ``valid_batches * batch_size`` of their windows, drawn by a fixed permutation
(not the training seed), give the fixed validation batches. Drawn, not the first ones: the
windows of one chapter overlap, and a batch of them would hold the positive sentence again
among its own negatives.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from cpc.data.sampler import EpochSampler, permutation_draw
from cpc.text.corpus import DEFAULT_ROOT, read_documents
from cpc.text.tokenizer import HashedNgrams, words

__all__ = ["TextData", "TextDataConfig", "probe_document", "windows"]


@dataclass
class TextDataConfig:
    name: str = "text"
    root: str = DEFAULT_ROOT  # the folder of `cpc data text`
    window: int = 8  # T: sentences per training example
    window_stride: int = 4  # sentences between the starts of two windows of a document
    max_words: int = 48  # words kept per sentence (the rest cut)
    sources: list[str] | None = (
        None  # which sources to train on (default: all built: bible, austen, fortunes, or corpus)
    )
    valid_fraction: float = 0.02  # share of documents held out for the validation loss
    probe_fraction: float = 0.1  # share of documents never read by training nor validation: the probe suite's


def windows(document_lengths: list[int], window: int, stride: int) -> np.ndarray:
    """Sentences per document -> windows (M, 3) int64 rows (document, first sentence, sentences):
    starts every ``stride`` sentences while at least two sentences remain (a sentence to predict)."""
    rows = [
        (doc, start, min(window, length - start))
        for doc, length in enumerate(document_lengths)
        for start in range(0, max(length - 1, 0), stride)
    ]
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


VALID_ORDER = 12345  # the fixed seed that orders the validation windows


def _held_out(source: str, name: str, fraction: float) -> bool:
    return zlib.crc32(f"{source}/{name}".encode()) < fraction * 2**32


def probe_document(source: str, name: str, fraction: float) -> bool:
    """Whether a document belongs to the probe suite's share (the last ``fraction`` of the CRC-32 range): never trained on."""
    return zlib.crc32(f"{source}/{name}".encode()) >= (1.0 - fraction) * 2**32


class TextData:
    """The data source: batches of (B, T, L, G) n-gram ids and (B,) sentences per window."""

    def __init__(
        self, config, *, rank: int = 0, world_size: int = 1, start_step: int = 0, device: torch.device
    ) -> None:
        from cpc.config import ConfigError

        self.data, self.device = config.data, device
        self.seed, self.batch_size, self.rank, self.world_size = (
            config.train.seed,
            config.train.batch_size,
            rank,
            world_size,
        )
        self.start_step, self.valid_count = start_step, config.train.valid_batches * config.train.batch_size
        if not 0.0 <= self.data.probe_fraction < 1.0 - self.data.valid_fraction:
            raise ConfigError(
                f"data.probe_fraction={self.data.probe_fraction}: expected 0 <= it < 1 - data.valid_fraction ({1.0 - self.data.valid_fraction})"
            )
        if self.data.window < 2 or self.data.window_stride < 1 or self.data.max_words < 1:
            raise ConfigError(
                f"data: need window >= 2, window_stride >= 1 and max_words >= 1, got {self.data.window}, {self.data.window_stride}, {self.data.max_words}"
            )
        encoder = config.model.encoder
        if encoder.name != "sentence_conv":
            raise ConfigError(
                f"data.name=text needs model.encoder.name=sentence_conv (n-gram ids in), got {encoder.name!r}"
            )
        self.tokenizer = HashedNgrams(
            buckets=encoder.buckets, min_n=encoder.min_n, max_n=encoder.max_n, max_ngrams=encoder.max_ngrams
        )
        try:
            documents = read_documents(self.data.root)
        except FileNotFoundError as error:
            raise ConfigError(f"data.root: {error}") from None
        wanted = set(self.data.sources) if self.data.sources else None
        built = list(
            dict.fromkeys(source for source, _, _ in documents)
        )  # bible, austen, fortunes; or corpus (`--from`)
        if wanted is not None and wanted - set(built):
            raise ConfigError(f"data.sources: {sorted(wanted - set(built))} not among the built sources {built}")
        documents = [
            d
            for d in documents
            if (wanted is None or d[0] in wanted) and not probe_document(d[0], d[1], self.data.probe_fraction)
        ]
        vocabulary: dict[str, int] = {}
        sentences: list[np.ndarray] = []
        document_ranges, valid = [], []
        for source, name, texts in documents:
            first = len(sentences)
            for text in texts:
                ids = [vocabulary.setdefault(word, len(vocabulary) + 1) for word in words(text)[: self.data.max_words]]
                sentences.append(np.array(ids, dtype=np.int64))
            document_ranges.append((first, len(texts)))
            valid.append(_held_out(source, name, self.data.valid_fraction))
        self.word_ngrams = torch.from_numpy(self.tokenizer.table(list(vocabulary)))  # (V + 1, G)
        self.sentences, self.document_starts = (
            sentences,
            np.array([first for first, _ in document_ranges], dtype=np.int64),
        )
        self.document_names = [
            f"{source}/{name}" for source, name, _ in documents
        ]  # what this source reads, training and validation
        all_windows = windows([count for _, count in document_ranges], self.data.window, self.data.window_stride)
        held = np.array(valid, dtype=bool)[all_windows[:, 0]] if len(all_windows) else np.zeros(0, dtype=bool)
        valid_windows = all_windows[held]
        self.train_windows = all_windows[~held]
        self.valid_windows = valid_windows[np.random.default_rng(VALID_ORDER).permutation(len(valid_windows))]
        self.batches_per_epoch = len(self.train_windows) // (self.batch_size * world_size)
        if self.batches_per_epoch == 0:
            raise ConfigError(
                f"train.batch_size={self.batch_size} x {world_size} processes exceeds the {len(self.train_windows)} training windows in {self.data.root}"
            )
        self.examples_per_batch = self.batch_size
        self.sampler = EpochSampler(
            permutation_draw(len(self.train_windows), self.batch_size),
            seed=self.seed,
            batches_per_epoch=self.batches_per_epoch,
            rank=rank,
            world_size=world_size,
        )

    def check(self, model) -> None:
        from cpc.config import ConfigError

        tokenizer = getattr(model.encoder, "tokenizer", None)
        if tokenizer != self.tokenizer:
            raise ConfigError(
                f"the encoder ({type(model.encoder).__name__}) does not tokenise as the data does ({self.tokenizer})"
            )
        if max(model.predictors.offsets) >= self.data.window:
            raise ConfigError(
                f"model.predictor offsets {list(model.predictors.offsets)} reach sentence {max(model.predictors.offsets)}, "
                f"but a window has only data.window={self.data.window} sentences"
            )

    def batch(self, rows: np.ndarray) -> tuple[Tensor, Tensor]:
        """windows (B, 3) -> ids (B, T, L, G), lengths (B,): sentences past a window's length and words past a sentence's are padding (0)."""
        lengths = torch.from_numpy(rows[:, 2].copy())
        chosen = [
            [self.sentences[self.document_starts[doc] + start + i] for i in range(count)] for doc, start, count in rows
        ]
        longest = max(1, max(len(s) for window in chosen for s in window))
        word_index = np.zeros((len(rows), int(lengths.max()), longest), dtype=np.int64)  # (B, T, L)
        for b, window in enumerate(chosen):
            for t, sentence in enumerate(window):
                word_index[b, t, : len(sentence)] = sentence
        return self.word_ngrams[torch.from_numpy(word_index)], lengths  # (B, T, L, G), (B,)

    def batch_windows(self, step: int) -> np.ndarray:
        """The windows (B, 3) this rank trains on at ``step``."""
        return self.train_windows[self.sampler.batch(step)]

    def train_batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        step = self.start_step
        while True:
            ids, lengths = self.batch(self.batch_windows(step))
            yield ids.to(self.device, non_blocking=True), lengths.to(self.device)
            step += 1

    def valid_batches(self) -> list[tuple[Tensor, Tensor]]:
        rows = self.valid_windows[: self.valid_count][self.rank :: self.world_size]
        batches = [self.batch(rows[i : i + self.batch_size]) for i in range(0, len(rows), self.batch_size)]
        return [(ids.to(self.device), lengths.to(self.device)) for ids, lengths in batches]
