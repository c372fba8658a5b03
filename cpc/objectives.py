"""Contrastive objectives beside InfoNCE, as pure functions on the same sampled candidates.

Shape legend: B batch, T positions, K offsets ahead, C latent channels, N negatives,
M = 1 + N candidates (the positive first, at index 0).

Every objective sees the same thing: for each context c_t and offset k, a prediction
p = W_k c_t (the "anchor") and M candidate latents z_j, z_0 = z_{t+k} the positive, z_1..z_N
negatives drawn by :mod:`cpc.negatives`. :class:`ContrastiveCriterion` samples and scores the
candidates once (one matmul + gather, as :mod:`cpc.infonce`), then hands an objective
what it needs:

    scores       s_j = z_j^T p                       (B, T, K, M)   the bilinear score of eq. 3
    cosine       s_j / (|z_j| |p|)                   (B, T, K, M)
    distance^2   |p/|p| - z_j/|z_j||^2 = 2 - 2 cos   (B, T, K, M)   on the unit sphere

Distances come from dot products and norms: the negatives are never copied.

The objectives (each a pure function ``(values, valid, ...) -> metrics dict``):

* ``infonce``  -- CPC, eq. 4 (van den Oord et al. 2018): cross-entropy of picking the positive.
* ``nt_xent``  -- SimCLR (Chen et al. 2020, eq. 1): the same cross-entropy on cos / tau.
* ``margin``   -- Chopra, Hadsell, LeCun 2005 (and Hadsell et al. 2006, eq. 4): pull positives
  together, push negatives out to a margin m.
* ``triplet``  -- FaceNet (Schroff et al. 2015, eq. 1): d(a, p) + alpha < d(a, n), with mining.
* ``binary``   -- wav2vec 1.0 (Schneider et al. 2019, eq. 1): a logistic classifier, positive
  against each negative separately.

The metrics dict holds, per offset k (shape (K,)): ``loss_per_step``, ``accuracy_per_step``
(the positive strictly beats every negative: higher score, or smaller distance) and
``num_pairs`` (valid (b, t) pairs); ``loss`` () is the mean of the steps with pairs. Only
InfoNCE and NT-Xent are lower bounds on the mutual information I(z_{t+k}; c_t), so only
they add ``mutual_information`` = log(N + 1) - L_k. The triplet loss adds the share of
negatives that are hard, semi-hard and easy (``hard_share``, ``semi_hard_share``,
``easy_share``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cpc.infonce import info_nce, sample_candidates
from cpc.runtime import plain


class NegativeScope(str, Enum):
    batch = "batch"
    sequence = "sequence"
    other_sequences = "other_sequences"
    batch_shared = "batch_shared"  # one pool of N + 1 batch frames per step, shared by every prediction (fast on GPUs)


class Score(str, Enum):
    dot = "dot"  # z^T W_k c_t (paper, eq. 3)
    mean = "mean"  # the same divided by C (CPC_audio's mean over channels; for imported models)


@dataclass
class InfoNCEConfig:
    """InfoNCE (paper, eq. 4) over sampled negatives (cpc.objectives.ContrastiveCriterion with cpc.infonce.info_nce)."""

    name: str = "infonce"
    num_negatives: int = 128  # N
    negative_scope: NegativeScope = NegativeScope.batch
    score: Score = Score.dot


# The other contrastive objectives (cpc.objectives). Each scores the same sampled candidates
# as InfoNCE (N negatives per prediction), so switching ``model.loss.name`` changes only the loss.


class Mining(str, Enum):
    all = "all"  # every negative's hinge, averaged
    hard = "hard"  # the negative closest to the anchor
    semi_hard = "semi_hard"  # the closest negative farther than the positive, inside the margin


@dataclass
class NTXentConfig:
    """NT-Xent (SimCLR): InfoNCE on cosine similarities divided by a temperature."""

    name: str = "nt_xent"
    num_negatives: int = 128
    negative_scope: NegativeScope = NegativeScope.batch
    temperature: float = 0.1  # tau


@dataclass
class MarginConfig:
    """Margin contrastive loss (Chopra, Hadsell, LeCun 2005) on L2-normalised vectors."""

    name: str = "margin"
    num_negatives: int = 128
    negative_scope: NegativeScope = NegativeScope.batch
    margin: float = 1.0  # m: negatives closer than this are pushed apart (unit vectors: distances in [0, 2])
    positive_margin: float = 0.0  # positives closer than this cost nothing (pytorch-metric-learning's pos_margin)


@dataclass
class TripletConfig:
    """Triplet loss (FaceNet) on L2-normalised vectors, with negative mining."""

    name: str = "triplet"
    num_negatives: int = 128
    negative_scope: NegativeScope = NegativeScope.batch
    margin: float = 0.2  # alpha, on squared distances (FaceNet's value)
    mining: Mining = Mining.semi_hard


@dataclass
class BinaryConfig:
    """Binary logistic loss (wav2vec 1.0): the positive against each negative, sigmoid cross-entropy."""

    name: str = "binary"
    num_negatives: int = 128
    negative_scope: NegativeScope = NegativeScope.batch


__all__ = [
    "Metrics",
    "infonce",
    "nt_xent",
    "margin_contrastive",
    "triplet",
    "binary_logistic",
    "Candidates",
    "ContrastiveCriterion",
    "PER_STEP_METRICS",
]

Metrics = dict[str, Tensor]  # see the module docstring for the keys

# The per-offset entries each objective reports besides loss_per_step and num_pairs, in order.
PER_STEP_METRICS = {
    "infonce": ("accuracy_per_step", "mutual_information"),
    "nt_xent": ("accuracy_per_step", "mutual_information"),
    "margin": ("accuracy_per_step",),
    "triplet": ("accuracy_per_step", "hard_share", "semi_hard_share", "easy_share"),
    "binary": ("accuracy_per_step",),
}


def _check(values: Tensor, valid: Tensor) -> None:
    if values.dim() != 4 or valid.shape != values.shape[:3] or values.shape[-1] < 2:
        raise ValueError(
            f"expected candidates (B, T, K, 1+N) with N >= 1 and valid (B, T, K), got {tuple(values.shape)} and {tuple(valid.shape)}"
        )


def _per_step(losses: Tensor, correct: Tensor, valid: Tensor, **extra: Tensor) -> Metrics:
    """Average per-pair losses (B, T, K), correctness (B, T, K) and extras (B, T, K) over the
    valid pairs of each step k; the loss is the mean over the steps that have pairs (as info_nce)."""
    weights = valid.to(losses.dtype)
    num_pairs = weights.sum(dim=(0, 1))  # (K,)
    denominator = num_pairs.clamp(min=1)
    mean = lambda values: (values.to(losses.dtype) * weights).sum(dim=(0, 1)) / denominator  # (K,)
    loss_per_step = mean(losses)
    has_pairs = (num_pairs > 0).to(losses.dtype)
    loss = (loss_per_step * has_pairs).sum() / has_pairs.sum().clamp(min=1)
    metrics = {
        "loss": loss,
        "loss_per_step": loss_per_step,
        "accuracy_per_step": mean(correct).detach(),
        "num_pairs": num_pairs,
    }
    metrics.update({name: mean(values).detach() for name, values in extra.items()})
    return metrics


# ----------------------------------------------------------------------------- the objectives


def infonce(scores: Tensor, valid: Tensor) -> Metrics:
    """InfoNCE (CPC, eq. 4): L = -log( exp(s_0) / sum_j exp(s_j) ), positive at index 0.

    scores (B, T, K, M), valid (B, T, K) -> metrics with the MI bound log(N + 1) - L_k
    (section 2.3): :func:`cpc.infonce.info_nce`.
    """
    return info_nce(scores, valid)


def nt_xent(cosine: Tensor, valid: Tensor, *, temperature: float) -> Metrics:
    """NT-Xent, "normalized temperature-scaled cross-entropy" (SimCLR, Chen et al. 2020, eq. 1):

        L = -log( exp(cos(p, z_0) / tau) / sum_j exp(cos(p, z_j) / tau) )

    InfoNCE with the critic cos / tau, so log(N + 1) - L_k is still a lower bound on the MI.
    SimCLR scores two augmented views of a batch against each other; here the "views" are the
    prediction W_k c_t and the latents, over the same sampled candidates as InfoNCE.

    cosine (B, T, K, M) in [-1, 1], valid (B, T, K).
    """
    _check(cosine, valid)
    if temperature <= 0:
        raise ValueError(f"model.loss.temperature must be > 0, got {temperature}")
    return infonce(cosine.float() / temperature, valid)


def margin_contrastive(
    squared_distances: Tensor, valid: Tensor, *, margin: float, positive_margin: float = 0.0
) -> Metrics:
    """Margin contrastive loss (Chopra, Hadsell, LeCun 2005; Hadsell et al. 2006, eq. 4):

        L = max(0, d_0 - m_pos)^2  +  (1/N) sum_{j>=1} max(0, m - d_j)^2

    with d_j = |p - z_j| the Euclidean distance (not squared) between the anchor and
    candidate j, both L2-normalised (so d in [0, 2] and the margins have a fixed scale).
    Positives are pulled together (m_pos = 0: the squared distance itself; a positive margin,
    as pytorch-metric-learning's ``pos_margin``, stops pulling once inside it); negatives are pushed apart until they are m away, then cost nothing. The negative
    term is averaged over the N negatives so that positive and negatives weigh the same
    whatever N. Not a bound on the MI.

    squared_distances (B, T, K, M) >= 0, valid (B, T, K).
    """
    _check(squared_distances, valid)
    distances = squared_distances.float().clamp(min=1e-12).sqrt()  # clamped: sqrt has an infinite gradient at 0
    positive = F.relu(distances[..., 0] - positive_margin).square()  # (B, T, K)
    negatives = F.relu(margin - distances[..., 1:]).square().mean(dim=-1)  # (B, T, K)
    correct = distances[..., 0] < distances[..., 1:].amin(dim=-1)
    return _per_step(positive + negatives, correct, valid)


def triplet(squared_distances: Tensor, valid: Tensor, *, margin: float, mining: str = "semi_hard") -> Metrics:
    """Triplet loss (FaceNet, Schroff et al. 2015, eq. 1) with negative mining:

        L = max(0, D_ap - D_an + alpha),   D = squared Euclidean distance

    for the anchor a = W_k c_t, its positive p = z_{t+k} and a negative n, all L2-normalised
    as FaceNet's embeddings (without it, scaling everything up satisfies any margin). Each negative falls
    in one of three classes (FaceNet section 3.1; recorded as shares of all negatives):

    * hard:       D_an <  D_ap             the negative is closer than the positive;
    * semi-hard:  D_ap <= D_an < D_ap + alpha   farther than the positive, but inside the margin;
    * easy:       D_an >= D_ap + alpha     already far enough: zero loss, zero gradient.

    ``mining`` chooses which negatives give the loss:

    * ``all``: the mean hinge over all N negatives (easy ones add 0);
    * ``hard``: the hardest negative, the one closest to the anchor;
    * ``semi_hard``: the closest semi-hard negative (FaceNet's choice: hardest negatives early
      in training can collapse the model). An anchor with no semi-hard negative gives no loss:
      it counts in ``num_pairs`` and accuracy but adds 0 (all its negatives are hard or easy).

    squared_distances (B, T, K, M) >= 0, valid (B, T, K).
    """
    _check(squared_distances, valid)
    squared_distances = squared_distances.float()
    positive, negatives = squared_distances[..., :1], squared_distances[..., 1:]  # (B, T, K, 1), (B, T, K, N)
    hinge = F.relu(positive - negatives + margin)  # (B, T, K, N)
    hard = negatives < positive
    easy = negatives >= positive + margin
    semi_hard = ~hard & ~easy
    if mining == "all":
        losses = hinge.mean(dim=-1)
    elif mining == "hard":
        losses = hinge.gather(-1, negatives.argmin(dim=-1, keepdim=True)).squeeze(-1)
    elif mining == "semi_hard":
        # The closest semi-hard negative: others are pushed to +inf so argmin skips them.
        chosen = torch.where(semi_hard, negatives, torch.full_like(negatives, math.inf)).argmin(dim=-1, keepdim=True)
        losses = torch.where(
            semi_hard.any(dim=-1), hinge.gather(-1, chosen).squeeze(-1), torch.zeros_like(positive[..., 0])
        )
    else:
        raise ValueError(f"model.loss.mining={mining!r}: expected one of all, hard, semi_hard")
    correct = positive[..., 0] < negatives.amin(dim=-1)
    share = lambda mask: mask.float().mean(dim=-1)  # (B, T, K)
    return _per_step(
        losses, correct, valid, hard_share=share(hard), semi_hard_share=share(semi_hard), easy_share=share(easy)
    )


def binary_logistic(scores: Tensor, valid: Tensor) -> Metrics:
    """Binary logistic loss (wav2vec 1.0, Schneider et al. 2019, eq. 1):

        L = -log sigma(s_0) - sum_{j>=1} log sigma(-s_j)

    each candidate classified on its own as "the true future" or "a distractor", with the
    negatives summed (wav2vec's lambda = N times the expectation over negatives). Unlike
    InfoNCE the candidates do not compete in one softmax; not a bound on the MI.

    scores (B, T, K, M), valid (B, T, K).
    """
    _check(scores, valid)
    scores = scores.float()
    losses = -F.logsigmoid(scores[..., 0]) - F.logsigmoid(-scores[..., 1:]).sum(dim=-1)  # (B, T, K)
    correct = scores[..., 0] > scores[..., 1:].amax(dim=-1)
    return _per_step(losses, correct, valid)


# ----------------------------------------------------------------------------- the criterion


@dataclass
class Candidates:
    """The M = 1 + N candidates of every prediction, scored once.

    scores (B, T, K, M) = z_j^T p; predictions (B, T, K, C) the p; latents (B, T, C) and index
    (B, T, K, M), the candidates' flat positions in them. Norms (for cosines and distances) are
    computed only when an objective asks, so InfoNCE's training step pays nothing for them.
    """

    scores: Tensor
    predictions: Tensor
    latents: Tensor
    index: Tensor

    def cosine(self) -> Tensor:
        prediction_norms = self.predictions.norm(dim=-1)  # (B, T, K)
        candidate_norms = self.latents.norm(dim=-1).flatten()[self.index]  # (B*T,) -> (B, T, K, M)
        return self.scores / (prediction_norms[..., None] * candidate_norms).clamp(min=1e-8)

    def squared_distances(self) -> Tensor:
        """|p/|p| - z_j/|z_j||^2 = 2 - 2 cos: the vectors on the unit sphere (FaceNet's embedding)."""
        return (2 - 2 * self.cosine()).clamp(min=0)


class ContrastiveCriterion(nn.Module):
    """Sample negatives, score the candidates once, apply one objective.

    ``objective(candidates, valid) -> metrics``; holds no parameters. ``per_step_metrics``
    names the (K,) entries it reports besides loss_per_step and num_pairs (for the training
    loop's sums). ``copy_negatives`` scores by materialising every candidate latent, as
    CPC_audio does: the same scores, far more memory; ``cpc bench`` times both.
    """

    def __init__(
        self,
        objective: Callable[[Candidates, Tensor], Metrics],
        *,
        num_negatives: int = 128,
        negative_scope: str = "batch",
        per_step_metrics: Sequence[str] = ("accuracy_per_step",),
        score: str = "dot",
        copy_negatives: bool = False,
    ) -> None:
        super().__init__()
        score = str(plain(score))
        if score not in ("dot", "mean"):
            raise ValueError(f"model.loss.score={score!r}: expected 'dot' or 'mean'")
        self.mean_score = score == "mean"  # CPC_audio's score: the dot product divided by C
        if num_negatives < 1:
            raise ValueError(f"model.loss.num_negatives must be >= 1, got {num_negatives}")
        self.objective = objective
        self.num_negatives = num_negatives
        self.negative_scope = str(plain(negative_scope))
        self.per_step_metrics = tuple(per_step_metrics)
        self.copy_negatives = copy_negatives

    def forward(
        self,
        predictions: Tensor,
        latents: Tensor,
        lengths: Tensor,
        generator: torch.Generator,
        *,
        offsets: Sequence[int] | None = None,
    ) -> Metrics:
        """predictions (B, *grid, K, C), latents (B, *grid, C), lengths (B,) along the grid's first
        axis -> metrics dict. ``offsets``: the k of each of the K predictions (default 1..K), counted
        along that axis. The grid is (T,) for sequences or (rows, cols) for images, flattened row-major."""
        sample = sample_candidates(
            predictions,
            latents,
            lengths,
            generator,
            offsets=offsets,
            num_negatives=self.num_negatives,
            negative_scope=self.negative_scope,
        )  # predictions (B, T, K, C), latents (B, T, C), candidates (B, T, K, M), valid (B, T, K)
        # Scores in float32 even under bf16 autocast: they feed a softmax over N + 1 candidates.
        with torch.autocast(predictions.device.type, enabled=False):
            sample = sample._replace(predictions=sample.predictions.float(), latents=sample.latents.float())
            scores = sample.scores(copy_negatives=self.copy_negatives)  # (B, T, K, M)
            if self.mean_score:
                scores = scores / sample.latents.shape[-1]
            scored = Candidates(scores, sample.predictions, sample.latents, sample.candidates)
            return self.objective(scored, sample.valid)


# ----------------------------------------------------------------------------- builders (cpc.registry.LOSSES)


def _on_scores(function, candidates: Candidates, valid: Tensor, **options) -> Metrics:
    return function(candidates.scores, valid, **options)


def _on_cosine(function, candidates: Candidates, valid: Tensor, **options) -> Metrics:
    return function(candidates.cosine(), valid, **options)


def _on_distances(function, candidates: Candidates, valid: Tensor, **options) -> Metrics:
    return function(candidates.squared_distances(), valid, **options)


def _criterion(config, objective: Callable[[Candidates, Tensor], Metrics]) -> ContrastiveCriterion:
    return ContrastiveCriterion(
        objective,
        num_negatives=config.num_negatives,
        negative_scope=config.negative_scope,
        per_step_metrics=PER_STEP_METRICS[config.name],
    )


def build_infonce_criterion(config: InfoNCEConfig) -> ContrastiveCriterion:
    return ContrastiveCriterion(
        partial(_on_scores, infonce),
        num_negatives=config.num_negatives,
        negative_scope=config.negative_scope,
        per_step_metrics=PER_STEP_METRICS["infonce"],
        score=config.score,
    )


def build_nt_xent(config: NTXentConfig) -> ContrastiveCriterion:
    if config.temperature <= 0:
        raise ValueError(f"model.loss.temperature must be > 0, got {config.temperature}")
    return _criterion(config, partial(_on_cosine, nt_xent, temperature=config.temperature))


def build_margin(config: MarginConfig) -> ContrastiveCriterion:
    return _criterion(
        config, partial(_on_distances, margin_contrastive, margin=config.margin, positive_margin=config.positive_margin)
    )


def build_triplet(config: TripletConfig) -> ContrastiveCriterion:
    mining = str(plain(config.mining))
    return _criterion(config, partial(_on_distances, triplet, margin=config.margin, mining=mining))


def build_binary(config: BinaryConfig) -> ContrastiveCriterion:
    return _criterion(config, partial(_on_scores, binary_logistic))
