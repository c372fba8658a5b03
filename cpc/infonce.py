"""The InfoNCE loss (paper, eq. 4) as a pure function, and how its candidates are drawn and scored.

:class:`cpc.objectives.ContrastiveCriterion` (the criterion every recipe trains with) calls
:func:`sample_candidates`, scores them with :meth:`CandidateSample.scores` and, for
``model.loss.name=infonce``, applies :func:`info_nce`.

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
and the N + 1 sampled columns are gathered from it; when the negatives come from the
positive's own sequence, each sequence is scored against its own latents only
(``score_within_sequences``, B times fewer products). ``score_by_copy`` is the copying
variant, an option of the criterion for the benchmark (``copy_negatives``) and a cross-check.

Grids: latents on a patch grid (B, rows, cols, C) are flattened row-major to T = rows * cols
positions; offset k then means k rows down the same column, i.e. k * cols flat positions, and
negatives are drawn from all positions of the batch's images (or of the same image, with
``negative_scope=sequence``), never the positive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from cpc.negatives import SharedNegatives, positive_indices, sample_negatives, sample_shared_negatives
from cpc.runtime import plain

# Scores are computed in blocks of rows, so that no more than this many float32 scores exist
# at once (256 MiB): the full (B*T*K, B*T) matrix grows with the square of the batch (3 GiB for
# the paper recipe at 64 windows), a block only with B.
SCORE_BLOCK_ELEMENTS = 2**26


class _GatheredScores(torch.autograd.Function):
    """scores[r, m] = predictions[r] . latents[candidates[r, m]], one block of rows at a time.

    The forward scores a block of predictions against every latent by one matmul and keeps the
    M sampled columns; the backward rebuilds that block's gradient (zero except at the sampled
    columns) and multiplies it back. Only the inputs are saved, never a (rows, B*T) block
    (``torch.gather`` would save its whole input), so memory grows linearly with the batch.
    """

    @staticmethod
    def forward(ctx, predictions: Tensor, flat_latents: Tensor, candidates: Tensor, rows_per_block: int) -> Tensor:
        # predictions (R, C) with R = B*T*K, flat_latents (B*T, C), candidates (R, M) -> scores (R, M)
        scores = predictions.new_empty(candidates.shape)
        for start in range(0, len(predictions), rows_per_block):
            rows = slice(start, start + rows_per_block)
            block = predictions[rows] @ flat_latents.T  # (rows, B*T): z_j^T (W_k c_t) for every latent j
            scores[rows] = block.gather(1, candidates[rows])  # (rows, M)
        ctx.save_for_backward(predictions, flat_latents, candidates)
        ctx.rows_per_block = rows_per_block
        return scores

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_scores: Tensor):
        predictions, flat_latents, candidates = ctx.saved_tensors
        grad_predictions = torch.empty_like(predictions) if ctx.needs_input_grad[0] else None
        grad_latents = torch.zeros_like(flat_latents) if ctx.needs_input_grad[1] else None
        for start in range(0, len(predictions), ctx.rows_per_block):
            rows = slice(start, start + ctx.rows_per_block)
            block = grad_scores.new_zeros(len(candidates[rows]), len(flat_latents))  # (rows, B*T)
            block.scatter_add_(1, candidates[rows], grad_scores[rows])  # a column drawn twice gets both gradients
            if grad_predictions is not None:
                grad_predictions[rows] = block @ flat_latents  # (rows, C)
            if grad_latents is not None:
                grad_latents.addmm_(block.T, predictions[rows])  # (B*T, C)
        return grad_predictions, grad_latents, None, None


def score_candidates(
    predictions: Tensor, latents: Tensor, candidates: Tensor, *, block_elements: int = SCORE_BLOCK_ELEMENTS
) -> Tensor:
    """Scores z_j^T (W_k c_t) for sampled candidates, by matmuls and a gather.

    predictions (B, T, K, C), latents (B, T, C), candidates (B, T, K, M) flat indices into B*T
    -> scores (B, T, K, M). Rows are scored in blocks of at most ``block_elements`` scores
    (see :class:`_GatheredScores`); the blocking changes memory, not the result.
    """
    batch_size, num_frames, steps, channels = predictions.shape
    flat_latents = latents.reshape(batch_size * num_frames, channels)  # (B*T, C)
    rows_per_block = max(1, block_elements // max(1, batch_size * num_frames))
    scores = _GatheredScores.apply(
        predictions.reshape(-1, channels), flat_latents, candidates.reshape(-1, candidates.shape[-1]), rows_per_block
    )  # (B*T*K, M)
    return scores.view(candidates.shape)  # (B, T, K, M)


def score_shared(predictions: Tensor, latents: Tensor, candidates: Tensor, shared: SharedNegatives) -> Tensor:
    """The scores of :func:`score_candidates` when every prediction's negatives come from one
    shared pool of N + 1 frames (``negative_scope=batch_shared``): one (B*T*K, C) x (C, N + 1)
    product, linear in the batch, instead of scoring against all B*T latents.

    predictions (B, T, K, C), latents (B, T, C), candidates (B, T, K, 1 + N) (the positive
    first, then ``shared.pool[shared.keep]``) -> scores (B, T, K, 1 + N).
    """
    channels = latents.shape[-1]
    flat_latents = latents.reshape(-1, channels)  # (B*T, C)
    positive = (predictions * flat_latents[candidates[..., 0]]).sum(-1)  # (B, T, K)
    pool = predictions @ flat_latents[shared.pool].T  # (B, T, K, N + 1)
    return torch.cat([positive[..., None], pool.gather(-1, shared.keep)], dim=-1)  # (B, T, K, 1 + N)


def score_within_sequences(predictions: Tensor, latents: Tensor, candidates: Tensor) -> Tensor:
    """The scores of :func:`score_candidates` when every candidate comes from its prediction's
    own sequence (``negative_scope=sequence``): each sequence's predictions against its own T
    latents, (B, T*K, C) x (B, C, T), B times fewer products than scoring against all B*T.

    predictions (B, T, K, C), latents (B, T, C), candidates (B, T, K, M) flat indices into B*T,
    each inside its own sequence's block of T (those of pairs past a sequence's end, which the
    loss masks, are only guaranteed in range) -> scores (B, T, K, M).
    """
    batch_size, num_frames, steps, channels = predictions.shape
    first = torch.arange(batch_size, device=candidates.device)[:, None, None, None] * num_frames  # (B, 1, 1, 1)
    local = (candidates - first).clamp(0, max(num_frames - 1, 0))  # (B, T, K, M) frame indices in the sequence
    block = predictions.reshape(batch_size, num_frames * steps, channels) @ latents.transpose(1, 2)  # (B, T*K, T)
    return block.gather(2, local.reshape(batch_size, num_frames * steps, -1)).view(candidates.shape)  # (B, T, K, M)


def score_by_copy(predictions: Tensor, latents: Tensor, candidates: Tensor) -> Tensor:
    """Same result as :func:`score_candidates`, by materialising (B, T, K, M, C) candidate latents."""
    channels = latents.shape[-1]
    copied = latents.reshape(-1, channels)[candidates]  # (B, T, K, M, C)
    return torch.einsum("btkmc,btkc->btkm", copied, predictions)


def info_nce(scores: Tensor, valid: Tensor) -> dict[str, Tensor]:
    """InfoNCE from candidate scores with the positive at index 0.

    scores (B, T, K, 1 + N), valid (B, T, K) bool: which pairs count. Scores are computed
    in float32 whatever the autocast precision. -> {"loss" (), "loss_per_step" (K,) L_k,
    "accuracy_per_step" (K,) share of pairs whose positive strictly outscores every negative,
    "mutual_information" (K,) log(N + 1) - L_k in nats, "num_pairs" (K,) valid (b, t) pairs}.
    """
    if scores.dim() != 4 or valid.shape != scores.shape[:3]:
        raise ValueError(
            f"expected scores (B, T, K, 1+N) and valid (B, T, K), got {tuple(scores.shape)} and {tuple(valid.shape)}"
        )
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
    return {
        "loss": loss,
        "loss_per_step": loss_per_step,
        "accuracy_per_step": accuracy_per_step.detach(),
        "mutual_information": mutual_information,
        "num_pairs": num_pairs,
    }


class CandidateSample(NamedTuple):
    """What :func:`sample_candidates` returns; ``shared`` is set for ``negative_scope=batch_shared``."""

    predictions: Tensor  # (B, T, K, C)
    latents: Tensor  # (B, T, C)
    candidates: Tensor  # (B, T, K, 1 + N) flat indices into B*T, the positive first
    valid: Tensor  # (B, T, K) bool: which pairs count
    shared: SharedNegatives | None  # the pool the negatives come from (batch_shared only)
    within_sequences: bool = False  # every candidate from its own sequence (negative_scope=sequence)

    def scores(self, *, copy_negatives: bool = False) -> Tensor:
        """The candidates' scores z_j^T W_k c_t (B, T, K, 1 + N), by the cheapest exact route
        (``copy_negatives``: by materialising the candidates, as CPC_audio does; for the benchmark)."""
        if copy_negatives:
            return score_by_copy(self.predictions, self.latents, self.candidates)
        if self.shared is not None:
            return score_shared(self.predictions, self.latents, self.candidates, self.shared)
        if self.within_sequences:
            return score_within_sequences(self.predictions, self.latents, self.candidates)
        return score_candidates(self.predictions, self.latents, self.candidates)


def sample_candidates(
    predictions: Tensor,
    latents: Tensor,
    lengths: Tensor,
    generator: torch.Generator,
    *,
    offsets: Sequence[int] | None,
    num_negatives: int,
    negative_scope: str,
) -> CandidateSample:
    """The 1 + N candidates of every prediction: the positive first, then N sampled negatives.

    predictions (B, *grid, K, C), latents (B, *grid, C), lengths (B,) along the grid's first axis
    (frames, or rows of patches); ``offsets``: the k of each of the K predictions (default
    1..K), counted along that axis. The grid is (T,) for sequences or (rows, cols) for images;
    it is flattened row-major. -> predictions (B, T, K, C), latents (B, T, C), candidates
    (B, T, K, 1 + N) flat indices into B*T, valid (B, T, K) bool, and the shared pool (or None).
    """
    if latents.dim() < 3 or predictions.shape[:-2] != latents.shape[:-1] or predictions.shape[-1] != latents.shape[-1]:
        raise ValueError(
            f"expected predictions (B, *grid, K, C) and latents (B, *grid, C), got {tuple(predictions.shape)} and {tuple(latents.shape)}"
        )
    batch_size, channels, steps = latents.shape[0], latents.shape[-1], predictions.shape[-2]
    stride = math.prod(latents.shape[2:-1])  # positions per step along the prediction axis: 1, or cols
    latents = latents.reshape(batch_size, -1, channels)  # (B, T, C), T = rows * cols for a grid
    predictions = predictions.reshape(batch_size, latents.shape[1], steps, channels)  # (B, T, K, C)
    lengths, num_frames = lengths * stride, latents.shape[1]
    offsets = tuple(range(1, steps + 1)) if offsets is None else tuple(offsets)
    positives, valid = positive_indices(lengths, num_frames, offsets, stride=stride)  # (B, T, K) each
    shared = None
    if str(plain(negative_scope)) == "batch_shared":
        shared = sample_shared_negatives(
            lengths, num_frames, offsets, num_negatives, stride=stride, generator=generator, positives=positives
        )
        negatives = shared.pool[shared.keep]  # (B, T, K, N)
    else:
        negatives = sample_negatives(
            lengths, num_frames, offsets, num_negatives, scope=negative_scope, stride=stride, generator=generator
        )  # (B, T, K, N)
    candidates = torch.cat([positives[..., None], negatives], dim=-1)  # (B, T, K, 1 + N), positive first
    within_sequences = str(plain(negative_scope)) == "sequence"
    return CandidateSample(predictions, latents, candidates, valid, shared, within_sequences)
