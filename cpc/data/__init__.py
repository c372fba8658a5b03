"""Training data sources, one per modality, chosen by ``data.name`` (cpc.registry.DATA_SOURCES).

The training loop only sees this interface: a source hands out batches of model inputs and
their lengths, as a pure function of (seed, step, rank), so a resumed run continues exactly
where it stopped.

    source = DATA_SOURCES[config.data.name].build(config, rank=..., world_size=..., start_step=..., device=...)
    source.check(model)                          # e.g. windows long enough for K steps ahead
    for inputs, lengths in source.train_batches():   # from start_step on, endless
        out = model(inputs, lengths, generator=g)
    source.valid_batches()                       # a fixed list, the same at every evaluation (or [])

``inputs`` is whatever the encoder declares ((B, S) waveforms for speech, (B, rows, cols, P, P)
patches for images) and ``lengths`` is None when every example is full length.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from torch import Tensor, nn

Batch = tuple[Tensor, Tensor | None]  # (inputs, lengths or None), on the training device


class DataSource(Protocol):
    examples_per_batch: int  # examples one rank trains on per step (for examples/s)

    def check(self, model: nn.Module) -> None:
        """Raise ConfigError if the model and this data cannot train together."""

    def train_batches(self) -> Iterator[Batch]:
        """Batches from the start step on; batch s depends only on (seed, s, rank)."""

    def valid_batches(self) -> Iterable[Batch]:
        """The fixed validation batches of this rank (possibly none)."""
