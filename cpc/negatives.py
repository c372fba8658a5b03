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

Indices are flat positions into the (B*T) frames of the batch. The positive z_{t+k} and
padded frames (t >= length) are never drawn: we draw a rank among the candidates *without*
the positive and step over the positive's rank, which is exact and needs no rejection
loop. All randomness comes from an explicit ``torch.Generator``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor


Offsets = int | Sequence[int]  # K (meaning offsets 1..K) or the offsets themselves


def _targets(num_frames: int, offsets: Offsets, stride: int, device) -> Tensor:
    """Position of the positive inside its sequence, t + k * stride: (1, T, K)."""
    offsets = range(1, offsets + 1) if isinstance(offsets, int) else offsets
    t = torch.arange(num_frames, device=device)[None, :, None]  # (1, T, 1)
    k = torch.tensor(list(offsets), device=device)[None, None, :]  # (1, 1, K)
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


def _valid_frames(lengths: Tensor, num_frames: int) -> tuple[Tensor, Tensor]:
    """Flat indices of all valid frames in batch order (M,), and where each sequence starts in it (B,)."""
    valid = torch.arange(num_frames, device=lengths.device)[None, :] < lengths[:, None]  # (B, T)
    starts = torch.cumsum(lengths, 0) - lengths  # (B,)
    return valid.flatten().nonzero().squeeze(1), starts


def _sample_batch(lengths: Tensor, num_frames: int, targets: Tensor, num_negatives: int, generator: torch.Generator) -> Tensor:
    frames, starts = _valid_frames(lengths, num_frames)
    total = len(frames)
    if total < 2:
        raise ValueError(f"negative sampling needs at least 2 valid frames in the batch, got {total}")
    batch_size, steps = len(lengths), targets.shape[-1]
    # The positive's rank among all valid frames (clamped for pairs past the end, which are masked anyway).
    positive_rank = (starts[:, None, None] + targets).clamp(max=total - 1)  # (B, T, K)
    rank = _uniform_below(torch.tensor(total - 1, device=lengths.device), (batch_size, num_frames, steps, num_negatives), generator)
    rank = rank + (rank >= positive_rank[..., None]).long()  # step over the positive
    return frames[rank]  # (B, T, K, N)


def _sample_sequence(lengths: Tensor, num_frames: int, targets: Tensor, num_negatives: int, generator: torch.Generator) -> Tensor:
    # A sequence with any (t, k) pair has >= 2 frames, hence >= 1 candidate besides the positive.
    batch_size, steps = len(lengths), targets.shape[-1]
    high = (lengths - 1).clamp(min=1)[:, None, None, None]  # (B, 1, 1, 1) candidates other than the positive
    frame = _uniform_below(high, (batch_size, num_frames, steps, num_negatives), generator)
    frame = frame + (frame >= targets[..., None]).long()  # step over the positive; stays < length
    return torch.arange(batch_size, device=lengths.device)[:, None, None, None] * num_frames + frame


def _sample_other_sequences(lengths: Tensor, num_frames: int, targets: Tensor, num_negatives: int, generator: torch.Generator) -> Tensor:
    frames, starts = _valid_frames(lengths, num_frames)
    others = len(frames) - lengths  # (B,) candidates outside each sequence
    if bool(((others < 1) & (lengths > 1)).any()):
        raise ValueError("negative_scope='other_sequences' needs at least two sequences with frames in the batch")
    batch_size, steps = len(lengths), targets.shape[-1]
    high = others.clamp(min=1)[:, None, None, None]
    rank = _uniform_below(high, (batch_size, num_frames, steps, num_negatives), generator)
    rank = rank + (rank >= starts[:, None, None, None]).long() * lengths[:, None, None, None]  # skip own block
    return frames[rank.clamp(max=len(frames) - 1)]


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
    if scope not in NEGATIVE_SAMPLERS:
        raise ValueError(f"model.loss.negative_scope={scope!r}: expected one of {sorted(NEGATIVE_SAMPLERS)}")
    if lengths.dim() != 1:
        raise ValueError(f"expected lengths of shape (B,), got {tuple(lengths.shape)}")
    targets = _targets(num_frames, offsets, stride, lengths.device)  # (1, T, K)
    return NEGATIVE_SAMPLERS[scope](lengths, num_frames, targets, num_negatives, generator)
