"""The InfoNCE loss (paper, eq. 4) as pure functions, and the module that applies it to CPC.

Shape legend: B batch, T positions, K offsets ahead, C latent channels, N negatives.

For each context c_t and step k the model scores N + 1 candidates, the true future latent
z_{t+k} and N negatives, with the log density ratio log f_k(z, c_t) = z^T W_k c_t (eq. 3).
InfoNCE is the cross-entropy of picking the positive, which sits at index 0:

    L_k = -E[ log f_k(z_{t+k}, c_t) / sum_j f_k(z_j, c_t) ]                      (eq. 4)

and log(N + 1) - L_k is a lower bound on the mutual information I(z_{t+k}; c_t) (section 2.3,
with N + 1 samples in the set). The reported loss is the mean of L_k over the steps k that
have at least one pair.

Scoring: we never copy the negatives into a (B, T, K, N+1, C) tensor. One matmul scores
every prediction against every latent of the batch, (B, T, K, C) x (B*T, C) -> (B, T, K, B*T),
and the N + 1 sampled columns are gathered from it. ``score_by_copy`` is the copying
variant, kept for the benchmark and as a cross-check.

Grids: latents on a patch grid (B, rows, cols, C) are flattened row-major to T = rows * cols
positions; offset k then means k rows down the same column, i.e. k * cols flat positions, and
negatives are drawn from all positions of the batch's images (or of the same image, with
``negative_scope=sequence``), never the positive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from cpc.config import InfoNCEConfig
from cpc.negatives import positive_indices, sample_negatives


def score_candidates(predictions: Tensor, latents: Tensor, candidates: Tensor) -> Tensor:
    """Scores z_j^T (W_k c_t) for sampled candidates, by one matmul and a gather.

    predictions (B, T, K, C), latents (B, T, C), candidates (B, T, K, M) flat indices into B*T
    -> scores (B, T, K, M).
    """
    batch_size, num_frames, steps, channels = predictions.shape
    flat_latents = latents.reshape(batch_size * num_frames, channels)  # (B*T, C)
    all_scores = predictions.reshape(-1, channels) @ flat_latents.T  # (B*T*K, B*T)
    all_scores = all_scores.view(batch_size, num_frames, steps, batch_size * num_frames)
    return all_scores.gather(-1, candidates)  # (B, T, K, M)


def score_by_copy(predictions: Tensor, latents: Tensor, candidates: Tensor) -> Tensor:
    """Same result as :func:`score_candidates`, by materialising (B, T, K, M, C) candidate latents."""
    channels = latents.shape[-1]
    copied = latents.reshape(-1, channels)[candidates]  # (B, T, K, M, C)
    return torch.einsum("btkmc,btkc->btkm", copied, predictions)


@dataclass
class InfoNCEOutput:
    loss: Tensor  # () mean of loss_per_step over the steps k with pairs
    loss_per_step: Tensor  # (K,) L_k
    accuracy_per_step: Tensor  # (K,) share of pairs whose positive strictly outscores every negative
    mutual_information: Tensor  # (K,) log(N + 1) - L_k, the InfoNCE lower bound (nats)
    num_pairs: Tensor  # (K,) number of valid (b, t) pairs per step


def info_nce(scores: Tensor, valid: Tensor) -> InfoNCEOutput:
    """InfoNCE from candidate scores with the positive at index 0.

    scores (B, T, K, 1 + N), valid (B, T, K) bool: which pairs count. Scores are computed
    in float32 whatever the autocast precision.
    """
    if scores.dim() != 4 or valid.shape != scores.shape[:3]:
        raise ValueError(f"expected scores (B, T, K, 1+N) and valid (B, T, K), got {tuple(scores.shape)} and {tuple(valid.shape)}")
    scores = scores.float()
    # Cross-entropy with target 0 = logsumexp over candidates minus the positive's score.
    losses = torch.logsumexp(scores, dim=-1) - scores[..., 0]  # (B, T, K)
    # Strict: ties (e.g. all-zero predictors at init) do not count as correct.
    correct = scores[..., 0] > scores[..., 1:].amax(dim=-1)  # (B, T, K)
    weights = valid.to(scores.dtype)
    num_pairs = weights.sum(dim=(0, 1))  # (K,)
    denominator = num_pairs.clamp(min=1)
    loss_per_step = (losses * weights).sum(dim=(0, 1)) / denominator
    accuracy_per_step = (correct.to(scores.dtype) * weights).sum(dim=(0, 1)) / denominator
    mutual_information = math.log(scores.shape[-1]) - loss_per_step.detach()
    # The loss is the mean over the steps k that have pairs: a step with none (a window
    # shorter than k + 1 frames) has no L_k, and counting it as 0 would bias the mean.
    # Its per-step entries are 0 with num_pairs 0; aggregators weight by num_pairs.
    has_pairs = (num_pairs > 0).to(scores.dtype)
    loss = (loss_per_step * has_pairs).sum() / has_pairs.sum().clamp(min=1)
    return InfoNCEOutput(loss, loss_per_step, accuracy_per_step.detach(), mutual_information, num_pairs)


def sample_candidates(
    predictions: Tensor, latents: Tensor, lengths: Tensor, generator: torch.Generator, *, offsets: Sequence[int] | None,
    num_negatives: int, negative_scope: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The 1 + N candidates of every prediction: the positive first, then N sampled negatives.

    predictions (B, *grid, K, C), latents (B, *grid, C), lengths (B,) along the grid's first axis
    (frames, or rows of patches); ``offsets``: the k of each of the K predictions (default
    1..K), counted along that axis. The grid is (T,) for sequences or (rows, cols) for images;
    it is flattened row-major. -> predictions (B, T, K, C), latents (B, T, C), candidates
    (B, T, K, 1 + N) flat indices into B*T, valid (B, T, K) bool.
    """
    if latents.dim() < 3 or predictions.shape[:-2] != latents.shape[:-1] or predictions.shape[-1] != latents.shape[-1]:
        raise ValueError(f"expected predictions (B, *grid, K, C) and latents (B, *grid, C), got {tuple(predictions.shape)} and {tuple(latents.shape)}")
    batch_size, channels, steps = latents.shape[0], latents.shape[-1], predictions.shape[-2]
    stride = math.prod(latents.shape[2:-1])  # positions per step along the prediction axis: 1, or cols
    latents = latents.reshape(batch_size, -1, channels)  # (B, T, C), T = rows * cols for a grid
    predictions = predictions.reshape(batch_size, latents.shape[1], steps, channels)  # (B, T, K, C)
    lengths, num_frames = lengths * stride, latents.shape[1]
    offsets = tuple(range(1, steps + 1)) if offsets is None else tuple(offsets)
    positives, valid = positive_indices(lengths, num_frames, offsets, stride=stride)  # (B, T, K) each
    negatives = sample_negatives(lengths, num_frames, offsets, num_negatives, scope=negative_scope, stride=stride, generator=generator)  # (B, T, K, N)
    candidates = torch.cat([positives[..., None], negatives], dim=-1)  # (B, T, K, 1 + N), positive first
    return predictions, latents, candidates, valid


class InfoNCE(nn.Module):
    """The CPC criterion: sample negatives, score candidates, apply InfoNCE.

    Holds no parameters; other contrastive objectives can take its place in :class:`cpc.model.CPC`.
    """

    def __init__(self, num_negatives: int = 128, negative_scope: str = "batch", *, copy_negatives: bool = False) -> None:
        super().__init__()
        if num_negatives < 1:
            raise ValueError(f"model.loss.num_negatives must be >= 1, got {num_negatives}")
        self.num_negatives = num_negatives
        self.negative_scope = negative_scope
        self.score = score_by_copy if copy_negatives else score_candidates

    def forward(
        self, predictions: Tensor, latents: Tensor, lengths: Tensor, generator: torch.Generator, *, offsets: Sequence[int] | None = None
    ) -> InfoNCEOutput:
        """predictions (B, *grid, K, C), latents (B, *grid, C), lengths (B,) along the grid's first
        axis (frames, or rows of patches) -> InfoNCEOutput. ``offsets``: the k of each of the K
        predictions (default 1..K), counted along that axis.

        The grid is (T,) for sequences or (rows, cols) for images; it is flattened row-major.
        """
        predictions, latents, candidates, valid = sample_candidates(
            predictions, latents, lengths, generator, offsets=offsets, num_negatives=self.num_negatives, negative_scope=self.negative_scope
        )  # (B, T, K, C), (B, T, C), (B, T, K, 1 + N), (B, T, K)
        # Scores in float32 even under bf16 autocast: they feed a softmax over N + 1 candidates.
        with torch.autocast(predictions.device.type, enabled=False):
            scores = self.score(predictions.float(), latents.float(), candidates)
        return info_nce(scores, valid)


def build_infonce(config: InfoNCEConfig) -> InfoNCE:
    return InfoNCE(config.num_negatives, config.negative_scope)
