"""The demo end to end on a tiny labelled corpus: train a few steps, probe 4 feature sets, write the report."""

from __future__ import annotations

import json
from pathlib import Path

from test_probes import _cli, write_labelled_corpus

from cpc.eval.report import results_table

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "speech" / "paper.yaml"
PAPER_STACK = [(10, 5, 3), (8, 4, 2), (4, 2, 1), (4, 2, 1), (4, 2, 1)]
SMALL = [
    "model.encoder.layers=[" + ",".join(f"{{channels: 16, kernel_size: {k}, stride: {s}, padding: {p}}}" for k, s, p in PAPER_STACK) + "]",
    "model.context.hidden_size=16",
    "model.predictor.prediction_steps=3",
    "model.loss.num_negatives=8",
    "data.window=4096",
    "data.num_workers=0",
    "train.batch_size=4",
    "train.log_every=1",
    "train.valid_every=2",
    "train.valid_batches=1",
    "train.checkpoint_every=2",
    "train.threads=1",
]


def test_demo_end_to_end(tmp_path):
    corpus = tmp_path / "corpus"
    write_labelled_corpus(corpus, speakers=3, utterances=4, seconds=1.6)
    run_dir = tmp_path / "run"
    argv = ["demo", "--run-dir", str(run_dir), "--corpus", str(corpus), "--steps", "3", "--recipe", str(RECIPE), "--ctc", *SMALL]
    assert _cli(argv) == 0
    for name in ("report.md", "report.json", "training.png", "accuracy_per_step.png", "projection_cpc.png", "projection_mfcc.png", "metrics.jsonl", "checkpoints/last.pt"):
        assert (run_dir / name).is_file(), name
    report = json.loads((run_dir / "report.json").read_text())
    tasks = {(r["features"], r["task"]) for r in report["results"]}
    assert tasks == {(f, t) for f in ("cpc", "mfcc", "logmel", "random") for t in ("phone", "phone_ctc", "speaker", "abx")}
    assert report["summary"]["training_steps"] == 3
    markdown = (run_dir / "report.md").read_text()
    assert "| cpc (context) |" in markdown and "| random (context) |" in markdown and "64.6" in markdown
    # A second run reuses the finished checkpoint and the feature cache.
    assert _cli(argv) == 0
    assert len(json.loads((run_dir / "report.json").read_text())["results"]) == 16


def test_results_table_puts_paper_numbers_beside():
    table = results_table([
        {"task": "phone", "features": "mfcc", "layer": None, "accuracy": 55.0},
        {"task": "speaker", "features": "mfcc", "layer": None, "accuracy": 80.0},
        {"task": "abx", "features": "cpc", "layer": "context", "within": 10.0, "across": 20.0},
    ])
    lines = table.splitlines()
    assert lines[0].startswith("| features | phone acc. % ↑ | phone (paper, LS-100) | speaker acc. % ↑ | speaker (paper, LS-100) | ABX within")
    assert lines[2] == "| mfcc | 55.0 | 39.7 | 80.0 | 17.6 | – | – |"
    assert lines[3] == "| cpc (context) | – | 64.6 | – | 97.4 | 10.0 | 20.0 |"
