"""Modified CPC's transformer predictor (cpc.predictors.TransformerPredictors): causal along the
prediction axis, the same heads and offsets as the linear predictors, chosen by name."""

import pytest
import torch

from cpc.config import ConfigError, load_config
from cpc.model import build_model
from cpc.predictors import LinearPredictors, TransformerPredictors


def test_a_prediction_never_sees_later_frames():
    torch.manual_seed(0)
    predictors = TransformerPredictors(16, 8, 3, num_heads=4, feedforward_size=32).eval()
    context = torch.randn(2, 10, 16)
    changed = context.clone()
    changed[:, 6:] = torch.randn(2, 4, 16)
    with torch.no_grad():
        before, after = predictors(context), predictors(changed)  # (B, T, K, C)
    assert before.shape == (2, 10, 3, 8)
    torch.testing.assert_close(after[:, :6], before[:, :6], rtol=0, atol=0)
    assert not torch.allclose(after[:, 6:], before[:, 6:])
    assert not torch.allclose(before[:, 5], LinearPredictors(16, 8, 3)(context)[:, 5])  # it does mix earlier frames in


def test_on_a_grid_a_row_sees_its_own_and_earlier_rows_only():
    torch.manual_seed(0)
    predictors = TransformerPredictors(8, 4, 2, first_offset=2, num_heads=2, feedforward_size=16).eval()
    context = torch.randn(2, 5, 3, 8)  # (B, rows, cols, H)
    assert predictors.offsets == (2, 3)
    with torch.no_grad():
        before = predictors(context)
        for row in range(5):
            below = context.clone()
            below[:, row + 1 :] = torch.randn(2, 4 - row, 3, 8)
            torch.testing.assert_close(predictors(below)[:, : row + 1], before[:, : row + 1], rtol=0, atol=0)
            same_row = context.clone()
            same_row[:, row, 2] = torch.randn(2, 8)  # another column of the same row: visible
            assert not torch.allclose(predictors(same_row)[:, row, 0], before[:, row, 0])


def test_chosen_by_name_and_checked():
    config = load_config(
        "speech/tiny",
        ["model.predictor.name=transformer", "model.predictor.num_heads=8", "model.predictor.prediction_steps=4"],
    )
    model = build_model(config)
    assert isinstance(model.predictors, TransformerPredictors) and model.predictors.offsets == (1, 2, 3, 4)
    out = model(0.05 * torch.randn(2, 4096), generator=torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.predictors.parameters())
    with pytest.raises(ValueError, match="num_heads=3 must divide the context size 128"):
        build_model(load_config("speech/tiny", ["model.predictor.name=transformer", "model.predictor.num_heads=3"]))
    with pytest.raises(ConfigError, match="model.predictor.num_heads"):
        load_config("speech/tiny", ["model.predictor.num_heads=4"])  # the linear predictor has no heads
