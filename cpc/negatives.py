"""Negative sampling for InfoNCE: which latents play "noise" against each positive z_{t+k}.

Shape legend: B batch, T positions (padded), K offsets ahead, N negatives.

Positions are flat: frames of a sequence, or the patches of an image's grid in row-major
order. The positive for position t and offset k is ``t + k * stride``: stride 1 for frames,
the number of columns for a grid (offset k = k rows down, same column). A sequence's length
counts its valid positions (whole rows for a grid), so t + k * stride < length says the
positive exists.

Every (position t, step k) of every sequence gets its own N negatives, drawn uniformly
with replacement from a candidate set (the paper's "proposal distribution"):

* ``batch``: any valid frame of any sequence in the batch (the paper's default);
* ``sequence``: valid frames of the same sequence only;
* ``other_sequences``: valid frames of the other sequences only.

``batch_shared`` (:func:`sample_shared_negatives`) is the fast variant for large batches on a
GPU: one pool of N + 1 *distinct* valid frames of the batch is drawn per step, and every
prediction takes N of them as its negatives (the pool without its positive, or without the
pool's last frame when the positive is not in it). Each prediction still gets N distinct
negatives, uniform over the batch, never the positive; what changes is that the draws are
shared (correlated) across predictions, as in-batch negatives are in SimCLR. Scoring is then
one (B*T*K, C) x (C, N + 1) product instead of one against all B*T latents
(:func:`cpc.infonce.score_shared`), so compute and memory grow linearly with the batch.

Indices are flat positions into the (B*T) frames of the batch. The positive z_{t+k} and
padded frames (t >= length) are never drawn: we draw a rank among the candidates *without*
the positive and step over the positive's rank, which is exact and needs no rejection
loop. All randomness comes from an explicit ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

Offsets = int | Sequence[int]  # K (meaning offsets 1..K) or the offsets themselves


def _targets(num_frames: int, offsets: Offsets, stride: int, device) -> Tensor:
    """Position of the positive inside its sequence, t + k * stride: (1, T, K)."""
    offsets = list(range(1, offsets + 1) if isinstance(offsets, int) else offsets)
    t = torch.arange(num_frames, device=device)[None, :, None]  # (1, T, 1)
    if offsets == list(range(offsets[0], offsets[0] + len(offsets))):  # consecutive k: made on the device, no host copy
        k = torch.arange(offsets[0], offsets[0] + len(offsets), device=device)[None, None, :]  # (1, 1, K)
    else:
        k = torch.tensor(offsets, device=device)[None, None, :]
    return t + k * stride


def positive_indices(lengths: Tensor, num_frames: int, offsets: Offsets, *, stride: int = 1) -> tuple[Tensor, Tensor]:
    """Flat index of z_{t+k} for every (b, t, k), and whether that pair exists (t + k * stride < length).

    lengths (B,) -> indices (B, T, K) long, valid (B, T, K) bool. ``offsets``: K (k = 1..K) or the k values.
    """
    device = lengths.device
    b = torch.arange(len(lengths), device=device)[:, None, None]  # (B, 1, 1)
    target = _targets(num_frames, offsets, stride, device)  # (1, T, K)
    valid = target < lengths[:, None, None]  # (B, T, K)
    indices = b * num_frames + target.clamp(max=num_frames - 1)  # (B, T, K)
    return indices, valid


def _uniform_below(high: Tensor, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """Integers uniform in [0, high) with ``high`` broadcast to ``shape``; high >= 1."""
    draws = torch.rand(shape, generator=generator, device=generator.device).to(high.device)
    return (draws * high).long().minimum(high - 1)


# Host syncs: on a GPU, reading a device value on the host (``len(x.nonzero())``, ``bool(t)``,
# ``torch.tensor(python_value, device=...)``) stalls the queue of kernels every step. The
# samplers below work on device tensors only; the checks that need a host value run when the
# lengths live on the CPU (training windows on a GPU are checked once, by the data source).


def _starts(lengths: Tensor) -> Tensor:
    """Where each sequence's valid frames start in batch order: (B,)."""
    return torch.cumsum(lengths, 0) - lengths


def _frame_of_rank(rank: Tensor, lengths: Tensor, starts: Tensor, num_frames: int) -> Tensor:
    """Flat index b * T + t of the valid frame with each rank (in batch order), any shape; starts = _starts(lengths)."""
    # A table over every possible rank (B*T of them; those >= the valid total are never asked
    # for), then one gather: cheaper than a search per drawn rank.
    ranks = torch.arange(len(lengths) * num_frames, device=lengths.device)  # (B*T,)
    sequence = torch.searchsorted(starts + lengths, ranks, right=True).clamp(
        max=len(lengths) - 1
    )  # the block holding each rank
    table = sequence * num_frames + (ranks - starts[sequence])  # (B*T,)
    return table[rank]


def _sample_batch(
    lengths: Tensor, num_frames: int, targets: Tensor, num_negatives: int, generator: torch.Generator
) -> Tensor:
    total = lengths.sum()  # () valid frames in the batch
    if lengths.device.type == "cpu" and total < 2:
        raise ValueError(f"negative sampling needs at least 2 valid frames in the batch, got {int(total)}")
    batch_size, steps = len(lengths), targets.shape[-1]
    # The positive's rank among all valid frames (clamped for pairs past the end, which are masked anyway).
    starts = _starts(lengths)
    positive_rank = (starts[:, None, None] + targets).clamp(max=total - 1)  # (B, T, K)
    rank = _uniform_below(total - 1, (batch_size, num_frames, steps, num_negatives), generator)
    rank = rank + (rank >= positive_rank[..., None]).long()  # step over the positive
    return _frame_of_rank(rank, lengths, starts, num_frames)  # (B, T, K, N)


def _sample_sequence(
    lengths: Tensor, num_frames: int, targets: Tensor, num_negatives: int, generator: torch.Generator
) -> Tensor:
    # A sequence with any (t, k) pair has >= 2 frames, hence >= 1 candidate besides the positive.
    batch_size, steps = len(lengths), targets.shape[-1]
    high = (lengths - 1).clamp(min=1)[:, None, None, None]  # (B, 1, 1, 1) candidates other than the positive
    frame = _uniform_below(high, (batch_size, num_frames, steps, num_negatives), generator)
    frame = frame + (frame >= targets[..., None]).long()  # step over the positive; stays < length
    return torch.arange(batch_size, device=lengths.device)[:, None, None, None] * num_frames + frame


def _sample_other_sequences(
    lengths: Tensor, num_frames: int, targets: Tensor, num_negatives: int, generator: torch.Generator
) -> Tensor:
    total = lengths.sum()
    others = total - lengths  # (B,) candidates outside each sequence
    if lengths.device.type == "cpu" and bool(((others < 1) & (lengths > 1)).any()):
        raise ValueError("negative_scope='other_sequences' needs at least two sequences with frames in the batch")
    batch_size, steps = len(lengths), targets.shape[-1]
    high = others.clamp(min=1)[:, None, None, None]
    starts = _starts(lengths)
    rank = _uniform_below(high, (batch_size, num_frames, steps, num_negatives), generator)
    rank = rank + (rank >= starts[:, None, None, None]).long() * lengths[:, None, None, None]  # skip own block
    return _frame_of_rank(rank.clamp(max=total - 1), lengths, starts, num_frames)


class SharedNegatives(NamedTuple):
    """One step's shared negatives: ``pool`` (N + 1,) flat frame indices into B*T, and ``keep``
    (B, T, K, N): which pool entries are the negatives of each prediction (in pool order)."""

    pool: Tensor
    keep: Tensor


def sample_shared_negatives(
    lengths: Tensor,
    num_frames: int,
    offsets: Offsets,
    num_negatives: int,
    *,
    stride: int = 1,
    generator: torch.Generator,
    positives: Tensor | None = None,
) -> SharedNegatives:
    """The ``batch_shared`` scope: lengths (B,) -> a pool of N + 1 distinct valid frames and, per
    (b, t, k), the N pool entries that are not its positive (see the module notes).

    ``pool[keep]`` (B, T, K, N) are the negatives, with the guarantees of :func:`sample_negatives`;
    the batch must hold at least N + 1 valid frames. ``positives``: the (B, T, K) indices of
    :func:`positive_indices`, when the caller has them already.
    """
    valid = (torch.arange(num_frames, device=lengths.device)[None, :] < lengths[:, None]).flatten()  # (B*T,)
    if lengths.device.type == "cpu" and int(valid.sum()) < num_negatives + 1:
        raise ValueError(
            f"negative_scope='batch_shared' draws N + 1 = {num_negatives + 1} distinct frames, but the batch has {int(valid.sum())} valid frames; "
            "lower model.loss.num_negatives or use negative_scope=batch"
        )
    # N + 1 distinct valid frames, uniformly: the smallest of i.i.d. uniform keys (padding keyed out of reach).
    keys = (
        torch.rand(valid.shape, generator=generator, device=generator.device).to(valid.device).masked_fill(~valid, 2.0)
    )
    pool = keys.topk(num_negatives + 1, largest=False).indices  # (N + 1,) flat frame indices
    if positives is None:  # (B, T, K); a caller that has them passes them
        positives, _ = positive_indices(lengths, num_frames, offsets, stride=stride)
    is_positive = pool == positives[..., None]  # (B, T, K, N + 1), at most one True per row
    dropped = torch.where(is_positive.any(-1), is_positive.int().argmax(-1), num_negatives)  # (B, T, K)
    columns = torch.arange(num_negatives, device=pool.device)  # (N,)
    keep = columns + (columns >= dropped[..., None]).long()  # (B, T, K, N): every column but the dropped one
    return SharedNegatives(pool, keep)


NEGATIVE_SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "batch": _sample_batch,
    "sequence": _sample_sequence,
    "other_sequences": _sample_other_sequences,
}


def sample_negatives(
    lengths: Tensor,
    num_frames: int,
    offsets: Offsets,
    num_negatives: int,
    *,
    scope: str = "batch",
    stride: int = 1,
    generator: torch.Generator,
) -> Tensor:
    """Draw N negatives per (b, t, k): lengths (B,) -> flat frame indices (B, T, K, N) into B*T.

    Never returns the positive b*T + t + k*stride nor a frame t' >= lengths[b'] (for pairs with
    t + k*stride < lengths[b]; the others are padding and their draws are only guaranteed in
    range). ``offsets``: K (k = 1..K) or the k values.
    """
    if scope not in NEGATIVE_SAMPLERS and scope != "batch_shared":
        raise ValueError(
            f"model.loss.negative_scope={scope!r}: expected one of {sorted([*NEGATIVE_SAMPLERS, 'batch_shared'])}"
        )
    if lengths.dim() != 1:
        raise ValueError(f"expected lengths of shape (B,), got {tuple(lengths.shape)}")
    if scope == "batch_shared":
        shared = sample_shared_negatives(
            lengths, num_frames, offsets, num_negatives, stride=stride, generator=generator
        )
        return shared.pool[shared.keep]
    targets = _targets(num_frames, offsets, stride, lengths.device)  # (1, T, K)
    return NEGATIVE_SAMPLERS[scope](lengths, num_frames, targets, num_negatives, generator)
