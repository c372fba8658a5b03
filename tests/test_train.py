"""The training loop: resume equivalence, checkpoints, bad config, NaN, DDP, wandb, the CLI."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import cpc
from cpc.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint
from cpc.config import ConfigError, load_config
from cpc.train import TrainingError, train

from conftest import small_config

REPO = Path(__file__).resolve().parents[1]


def read_metrics(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def test_run_directory_and_checkpoint_round_trip(corpus_dir, tmp_path):
    config = small_config(corpus_dir)
    train(config, tmp_path / "run")
    run = tmp_path / "run"
    assert load_config(run / "config.yaml") == config
    records = read_metrics(run)
    train_records = [r for r in records if "split" not in r]
    assert [r["step"] for r in train_records] == [2, 4, 6]
    assert {"loss", "accuracy", "mutual_information", "lr", "samples_per_s"} <= set(train_records[0])
    assert len(train_records[0]["accuracy"]) == config.model.predictor.prediction_steps
    assert [r["step"] for r in records if r.get("split") == "valid"] == [3, 6]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt", "step_3.pt", "step_6.pt"]

    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["format_version"] == FORMAT_VERSION and state["step"] == 6
    assert {"config", "model", "optimizer", "scheduler", "rng"} <= set(state)
    model = cpc.load(run / "checkpoints" / "last.pt")
    assert not model.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state["model"][name])
    waveform = torch.randn(1, 4096)
    with torch.no_grad():
        features, _ = model.extract_features(waveform)
        again, _ = cpc.load(run / "checkpoints" / "last.pt").extract_features(waveform)
    assert torch.equal(features, again)


def test_resume_equals_uninterrupted(corpus_dir, tmp_path):
    config = small_config(corpus_dir, **{"optim.warmup_steps": 2, "optim.schedule": "cosine", "train.keep_checkpoints": 5})
    train(config, tmp_path / "full")
    # Restart a run from the step-3 checkpoint of the same run, as if it had been killed there.
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(tmp_path / "full" / "checkpoints" / "step_3.pt", resumed / "checkpoints" / "last.pt")
    train(config, resumed, resume=True)
    full = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    again = load_checkpoint(resumed / "checkpoints" / "last.pt")
    assert again["step"] == 6
    for name, tensor in full["model"].items():
        torch.testing.assert_close(again["model"][name], tensor, rtol=0, atol=0, msg=name)
    # The same metrics from the resume on: step 6 (training, averaged over steps 5-6) and validation.
    drop_speed = lambda records: [{k: v for k, v in r.items() if k != "samples_per_s"} for r in records if r["step"] == 6]
    assert drop_speed(read_metrics(resumed)) == drop_speed(read_metrics(tmp_path / "full"))


def test_refuses_to_overwrite_a_run_and_to_resume_nothing(corpus_dir, tmp_path):
    config = small_config(corpus_dir, **{"train.max_steps": 1})
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(config, tmp_path / "run", resume=True)
    train(config, tmp_path / "run")
    with pytest.raises(ValueError, match="already holds a run"):
        train(config, tmp_path / "run")


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_checkpoint(corpus_dir, tmp_path):
    run = tmp_path / "run"
    train(small_config(corpus_dir, **{"train.max_steps": 3}), run)
    good = load_checkpoint(run / "checkpoints" / "last.pt")
    # The same run continued on audio holding inf samples (float WAV can store them).
    broken = tmp_path / "broken"
    broken.mkdir()
    for speaker in range(2):
        for utterance in range(3):
            sf.write(broken / f"{speaker}-{utterance}.wav", np.full(8000, np.inf, dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(TrainingError, match=r"non-finite loss .* at step 4.*last\.pt"):
        train(small_config(broken, **{"train.max_steps": 6}), run, resume=True)
    after = load_checkpoint(run / "checkpoints" / "last.pt")
    assert after["step"] == 3
    for name, tensor in good["model"].items():
        assert torch.equal(after["model"][name], tensor)


def test_kill_during_checkpoint_write_keeps_the_previous_one(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1, "model": {"w": torch.ones(3)}})
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, torch; from cpc.checkpoint import save_checkpoint; "
         "save_checkpoint(sys.argv[1], {'step': 2, 'model': {'w': torch.randn(200_000_000)}})", str(path)],
    )
    deadline = time.time() + 60
    while not any(p.name.endswith(".tmp") and p.stat().st_size > 1_000_000 for p in tmp_path.iterdir()):
        assert writer.poll() is None, "the writer finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.01)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))


def test_checkpoint_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(bad)
    old = tmp_path / "old.pt"
    torch.save({"format_version": FORMAT_VERSION + 1}, old)
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1}"):
        cpc.load(old)


def test_bad_config_keys_and_types_are_named(tmp_path):
    with pytest.raises(ConfigError, match="model.loss.num_negativs"):
        load_config("recipes/speech/paper.yaml", ["model.loss.num_negativs=10"])
    with pytest.raises(ConfigError, match="train.max_steps"):
        load_config("recipes/speech/paper.yaml", ["train.max_steps=many"])
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(recipe)
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.max_steps"])


def run_cli(*args, env=None, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "cpc.cli", *args], cwd=REPO, capture_output=True, text=True,
        env={**os.environ, **(env or {})}, **kwargs,
    )


def test_cli_end_to_end_on_the_tiny_recipe(corpus_dir, tmp_path):
    run = tmp_path / "run"
    result = run_cli("train", "recipes/speech/tiny.yaml", "--run-dir", str(run), f"data.root={corpus_dir}",
                     "data.window=8000", "train.max_steps=4", "train.log_every=2", "train.checkpoint_every=2", "data.num_workers=1")
    assert result.returncode == 0, result.stderr
    assert [r["step"] for r in read_metrics(run) if "split" not in r] == [2, 4]
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 4
    resumed = run_cli("train", "recipes/speech/tiny.yaml", "--run-dir", str(run), "--resume", f"data.root={corpus_dir}",
                      "data.window=8000", "train.max_steps=6", "train.log_every=2", "data.num_workers=0")
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 6
    bad = run_cli("train", "recipes/speech/tiny.yaml", "--run-dir", str(tmp_path / "x"), "model.encoder.widht=3")
    assert bad.returncode == 2 and "model.encoder.widht" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_cli("train", "recipes/speech/tiny.yaml", "--run-dir", str(tmp_path / "y"), f"data.root={tmp_path / 'nowhere'}")
    assert missing.returncode == 2 and "nowhere" in missing.stderr and "does not exist" in missing.stderr


def test_two_process_ddp_on_cpu(corpus_dir, tmp_path):
    run = tmp_path / "ddp"
    config = small_config(corpus_dir)
    recipe = tmp_path / "recipe.yaml"
    from omegaconf import OmegaConf

    OmegaConf.save(config, recipe)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "cpc.cli", "train", str(recipe), "--run-dir", str(run)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_metrics(run)
    assert [r["step"] for r in records if "split" not in r] == [2, 4, 6]  # written once, by rank 0
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 6
    # Two ranks of 4 windows each: the logged throughput counts both.
    assert all(np.isfinite(r["loss"]) for r in records)


def test_wandb_offline_logging(corpus_dir, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    train(small_config(corpus_dir, **{"train.logger": "wandb", "train.max_steps": 2}), run)
    offline_runs = list((run / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1 and any(offline_runs[0].rglob("*.wandb"))
    assert (run / "wandb_run_id").read_text().strip() in offline_runs[0].name


def test_bf16_autocast_runs_and_scores_in_float32(corpus_dir, tmp_path):
    record = train(small_config(corpus_dir, **{"train.precision": "bf16", "train.max_steps": 2}), tmp_path / "run")
    assert np.isfinite(record["loss"]) and abs(record["loss"] - np.log(9)) < 0.05
