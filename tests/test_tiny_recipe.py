"""The tiny recipe does what it promises: its loss visibly falls within minutes on a CPU."""

import json

import numpy as np
import pytest

from cpc.config import load_config
from cpc.train import train


@pytest.mark.slow
def test_tiny_recipe_loss_falls_on_the_committed_sample(tmp_path):
    config = load_config(
        "recipes/speech/tiny.yaml",
        [
            "train.max_steps=40",
            "train.log_every=10",
            "train.valid_every=1000",
            "train.progress=false",
            "data.num_workers=1",
            "data.window=10240",
            "train.threads=2",
        ],
    )
    train(config, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "split" not in r]
    chance = np.log(config.model.loss.num_negatives + 1)
    assert abs(losses[0] - chance) < 0.15  # starts at chance...
    assert losses[-1] < chance - 0.2, losses  # ...and leaves it within 40 steps (measured: -0.39)
    assert records[-1]["accuracy"][0] > 0.1  # step-1 accuracy far above 1/65
