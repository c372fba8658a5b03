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
can be solved by copying). Other predictor types (e.g. a transformer over c_{<=t},
"modified CPC") are registered in ``cpc.registry.PREDICTORS``.
"""

from __future__ import annotations

from einops import rearrange
from torch import Tensor, nn

from cpc.config import LinearPredictorConfig


class LinearPredictors(nn.Module):
    """W_k c_t for each offset k: context (B, *grid, H) -> predictions (B, *grid, K, C)."""

    def __init__(self, context_size: int, latent_size: int, prediction_steps: int, *, first_offset: int = 1, init: str = "default") -> None:
        super().__init__()
        if prediction_steps < 1 or first_offset < 1:
            raise ValueError(f"need prediction_steps >= 1 and first_offset >= 1, got {prediction_steps} and {first_offset}")
        self.prediction_steps = prediction_steps
        self.offsets = tuple(range(first_offset, first_offset + prediction_steps))  # k for each map, in order
        self.maps = nn.Linear(context_size, prediction_steps * latent_size, bias=False)  # eq. 3 has no bias
        if init == "zeros":
            # Start at the uniform score: leaves the chance-level plateau of a freshly
            # initialised encoder much faster on small runs (measured, see the tiny recipe).
            nn.init.zeros_(self.maps.weight)
        elif init != "default":
            raise ValueError(f"model.predictor.init={init!r}: expected 'default' or 'zeros'")

    def forward(self, context: Tensor) -> Tensor:
        predictions = self.maps(context)  # (B, *grid, K*C)
        return rearrange(predictions, "... (k c) -> ... k c", k=self.prediction_steps)


def build_linear_predictors(config: LinearPredictorConfig, context_size: int, latent_size: int) -> LinearPredictors:
    return LinearPredictors(context_size, latent_size, config.prediction_steps, first_offset=config.first_offset, init=config.init)
