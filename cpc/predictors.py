"""Predictors: one linear map W_k per future step k = 1..K (paper, eq. 3).

Shape legend: B batch, T frames, H context size, K steps ahead, C latent channels.

The score of a candidate latent z for step k is the bilinear form z^T W_k c_t, the log of
the paper's density ratio f_k(x_{t+k}, c_t) = exp(z_{t+k}^T W_k c_t). All K maps are held in
one (K*C, H) linear layer, so predicting every step is a single matmul. Other predictor
types (e.g. a transformer over c_{<=t}, "modified CPC") register in ``PREDICTORS``.
"""

from __future__ import annotations

from typing import Callable

from einops import rearrange
from torch import Tensor, nn

from cpc.config import PredictorConfig


class LinearPredictors(nn.Module):
    """W_k c_t for k = 1..K: context (B, T, H) -> predictions (B, T, K, C)."""

    def __init__(self, context_size: int, latent_size: int, prediction_steps: int, *, init: str = "default") -> None:
        super().__init__()
        self.prediction_steps = prediction_steps
        self.maps = nn.Linear(context_size, prediction_steps * latent_size, bias=False)  # eq. 3 has no bias
        if init == "zeros":
            # Start at the uniform score: leaves the chance-level plateau of a freshly
            # initialised encoder much faster on small runs (measured, see the tiny recipe).
            nn.init.zeros_(self.maps.weight)
        elif init != "default":
            raise ValueError(f"model.predictor.init={init!r}: expected 'default' or 'zeros'")

    def forward(self, context: Tensor) -> Tensor:
        predictions = self.maps(context)  # (B, T, K*C)
        return rearrange(predictions, "b t (k c) -> b t k c", k=self.prediction_steps)


PREDICTORS: dict[str, Callable[[PredictorConfig, int, int], nn.Module]] = {
    "linear": lambda config, context_size, latent_size: LinearPredictors(
        context_size, latent_size, config.prediction_steps, init=config.init
    ),
}
