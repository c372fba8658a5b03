"""Predictors: one linear map W_k per offset k ahead (paper, eq. 3).

Shape legend: B batch, T positions, H context size, K offsets predicted, C latent channels.
"T" stands for any grid of positions: frames (B, T, ...) for audio, (B, rows, cols, ...) for
an image's patch grid; the maps act on the last axis only.

The score of a candidate latent z for offset k is the bilinear form z^T W_k c_t, the log of
the paper's density ratio f_k(x_{t+k}, c_t) = exp(z_{t+k}^T W_k c_t). All K maps are held in
one (K*C, H) linear layer, so predicting every offset is a single matmul.

Offsets are ``first_offset .. first_offset + K - 1`` positions along the prediction axis:
1..12 frames for the paper's audio; for image patches they start at 2 rows, because with
50 % overlapping patches the row just below shares pixels with the context (predicting it
can be solved by copying). :class:`TransformerPredictors` puts one causal transformer
layer over c_{<=t} before the same W_k ("modified CPC", CPC_audio); ``cpc.registry.PREDICTORS``
chooses by ``model.predictor.name``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import torch
from einops import rearrange
from torch import Tensor, nn


class PredictorInit(str, Enum):
    default = "default"  # PyTorch's
    zeros = "zeros"


@dataclass
class LinearPredictorConfig:
    """One linear map W_k per step ahead (cpc.predictors.LinearPredictors)."""

    name: str = "linear"
    prediction_steps: int = 12  # K: how many offsets are predicted
    # The first offset k; predicted offsets are first_offset .. first_offset + K - 1 positions
    # ahead along the prediction axis (frames for audio, rows for image patches).
    first_offset: int = 1
    init: PredictorInit = PredictorInit.default
    dropout: float = 0.0  # on the predictions, in training (CPC_audio's --dropout: 0.5)


@dataclass
class TransformerPredictorConfig:
    """Modified CPC (CPC_audio): one causal transformer layer over c_{<=t}, then the W_k heads
    (cpc.predictors.TransformerPredictors)."""

    name: str = "transformer"
    prediction_steps: int = 12
    first_offset: int = 1
    init: PredictorInit = PredictorInit.default  # of the W_k heads
    num_heads: int = 4  # must divide the context size H
    feedforward_size: int = 512
    dropout: float = 0.0


class LinearPredictors(nn.Module):
    """W_k c_t for each offset k: context (B, *grid, H) -> predictions (B, *grid, K, C)."""

    def __init__(
        self,
        context_size: int,
        latent_size: int,
        prediction_steps: int,
        *,
        first_offset: int = 1,
        init: str = "default",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if prediction_steps < 1 or first_offset < 1:
            raise ValueError(
                f"need prediction_steps >= 1 and first_offset >= 1, got {prediction_steps} and {first_offset}"
            )
        self.prediction_steps = prediction_steps
        self.offsets = tuple(range(first_offset, first_offset + prediction_steps))  # k for each map, in order
        self.maps = nn.Linear(context_size, prediction_steps * latent_size, bias=False)  # eq. 3 has no bias
        if init == "zeros":
            # Start at the uniform score: leaves the chance-level plateau of a freshly
            # initialised encoder much faster on small runs (docs/results.md).
            nn.init.zeros_(self.maps.weight)
        elif init != "default":
            raise ValueError(f"model.predictor.init={init!r}: expected 'default' or 'zeros'")
        self.dropout = (
            nn.Dropout(dropout) if dropout else None
        )  # none by default: keeps the state dict and outputs as before

    def forward(self, context: Tensor) -> Tensor:
        predictions = self.maps(context)  # (B, *grid, K*C)
        if self.dropout is not None:
            predictions = self.dropout(predictions)
        return rearrange(predictions, "... (k c) -> ... k c", k=self.prediction_steps)


def build_linear_predictors(config: LinearPredictorConfig, context_size: int, latent_size: int) -> LinearPredictors:
    return LinearPredictors(
        context_size,
        latent_size,
        config.prediction_steps,
        first_offset=config.first_offset,
        init=config.init,
        dropout=config.dropout,
    )


class TransformerPredictors(nn.Module):
    """Modified CPC (CPC_audio, Riviere et al. 2020): one causal transformer layer over
    c_{<=t}, then the per-offset maps W_k: context (B, *grid, H) -> predictions (B, *grid, K, C).

    Causal along the grid's first axis, as the context network: position t attends to the
    positions of rows <= its own (for sequences, frames <= t), so a prediction never sees the
    future it predicts. No positional encoding: the causal mask alone tells positions apart,
    and features of any length stay comparable. Padded frames sit after the valid ones, so a
    valid position never attends to them.
    """

    def __init__(
        self,
        context_size: int,
        latent_size: int,
        prediction_steps: int,
        *,
        first_offset: int = 1,
        init: str = "default",
        num_heads: int = 4,
        feedforward_size: int = 512,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if context_size % num_heads:
            raise ValueError(f"model.predictor.num_heads={num_heads} must divide the context size {context_size}")
        self.layer = nn.TransformerEncoderLayer(context_size, num_heads, feedforward_size, dropout, batch_first=True)
        self.heads = LinearPredictors(context_size, latent_size, prediction_steps, first_offset=first_offset, init=init)
        self.prediction_steps, self.offsets = prediction_steps, self.heads.offsets

    def forward(self, context: Tensor) -> Tensor:
        batch_size, grid, size = context.shape[0], context.shape[1:-1], context.shape[-1]
        per_row = math.prod(grid[1:])  # positions per step of the causal axis: 1, or cols
        flat = context.reshape(batch_size, -1, size)  # (B, T, H), T = rows * cols for a grid
        row = torch.arange(flat.shape[1], device=context.device) // per_row  # (T,)
        future = row[None, :] > row[:, None]  # (T, T): True where a key lies in a later row than the query
        mixed = self.layer(flat, src_mask=future)  # (B, T, H)
        return self.heads(mixed.reshape(context.shape))  # (B, *grid, K, C)


def build_transformer_predictors(
    config: TransformerPredictorConfig, context_size: int, latent_size: int
) -> TransformerPredictors:
    return TransformerPredictors(
        context_size,
        latent_size,
        config.prediction_steps,
        first_offset=config.first_offset,
        init=config.init,
        num_heads=config.num_heads,
        feedforward_size=config.feedforward_size,
        dropout=config.dropout,
    )
