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
from conftest import small_config
from omegaconf import OmegaConf

import cpc
from cpc.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint
from cpc.config import ConfigError, load_config
from cpc.train import TrainingError, train

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"


def read_metrics(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
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
    config = small_config(
        corpus_dir, **{"optim.warmup_steps": 2, "optim.schedule": "cosine", "train.keep_checkpoints": 5}
    )
    train(config, tmp_path / "full")
    # Restart a run from the step-3 checkpoint of the same run, as if it had been killed there
    # (after it had logged steps 4 and its first validation: those lines are written again).
    # Step 3 is inside a log window (log_every=2), so the step-4 line must still average steps 3 and 4.
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(tmp_path / "full" / "checkpoints" / "step_3.pt", resumed / "checkpoints" / "last.pt")
    shutil.copy(tmp_path / "full" / "metrics.jsonl", resumed / "metrics.jsonl")
    train(config, resumed, resume=True)
    full = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    again = load_checkpoint(resumed / "checkpoints" / "last.pt")
    assert again["step"] == 6
    for name, tensor in full["model"].items():
        torch.testing.assert_close(again["model"][name], tensor, rtol=0, atol=0, msg=name)
    # Every logged line, training and validation, as the uninterrupted run logged it, once.
    drop_speed = lambda records: [{k: v for k, v in r.items() if k != "samples_per_s"} for r in records]
    assert [r["step"] for r in read_metrics(resumed)] == [2, 3, 4, 6, 6]
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
    # The same run continued on finite audio so loud that the encoder overflows (float WAV can
    # store it; non-finite samples themselves are refused when read).
    broken = tmp_path / "broken"
    broken.mkdir()
    for speaker in range(2):
        for utterance in range(3):
            sf.write(
                broken / f"{speaker}-{utterance}.wav",
                np.resize(np.array([3.4e38, -3.4e38], dtype=np.float32), 8000),
                16000,
                subtype="FLOAT",
            )
    with pytest.raises(TrainingError, match=r"non-finite loss .* at step 5.*last\.pt"):
        train(small_config(broken, **{"train.max_steps": 6}), run, resume=True)
    after = load_checkpoint(run / "checkpoints" / "last.pt")
    assert after["step"] == 3
    for name, tensor in good["model"].items():
        assert torch.equal(after["model"][name], tensor)


@pytest.mark.slow
def test_kill_during_checkpoint_write_keeps_the_previous_one(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1, "model": {"w": torch.ones(3)}})
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, torch; from cpc.checkpoint import save_checkpoint; "
            "save_checkpoint(sys.argv[1], {'step': 2, 'model': {'w': torch.randn(200_000_000)}})",
            str(path),
        ],
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


@pytest.mark.parametrize(
    "key, value, allowed",
    [
        ("optim.schedule", "cosin", "[constant, cosine, linear]"),
        ("model.loss.negative_scope", "batches", "[batch, sequence, other_sequences, batch_shared]"),
        ("model.encoder.norm", "layer", "[none, batch, channel, channel_unbiased, instance]"),
        ("model.predictor.init", "zero", "[default, zeros]"),
        ("train.logger", "tensorboard", "[none, wandb]"),
        ("train.precision", "fp16", "[auto, fp32, bf16]"),
        ("train.device", "tpu", "[auto, cpu, cuda]"),
    ],
)
def test_choices_are_checked_when_the_config_loads(key, value, allowed):
    with pytest.raises(ConfigError) as error:
        load_config("speech/tiny", [f"{key}={value}"])
    assert key in str(error.value) and repr(value) in str(error.value) and allowed in str(error.value)


@pytest.mark.parametrize(
    "key, value", [("train.seed", -1), ("train.max_steps", 0), ("train.batch_size", 0), ("model.loss.num_negatives", 0)]
)
def test_out_of_range_settings_are_named(key, value):
    with pytest.raises(ConfigError, match=rf"{key}.*{value} is below the minimum"):
        load_config("speech/tiny", [f"{key}={value}"])


def test_any_non_negative_seed_trains_and_negatives_stay_reproducible(corpus_dir, tmp_path):
    from cpc.train import TRAINING, VALIDATION, negative_generator

    for seed in (20000, 2**63 + 12345):  # the old formula overflowed 64 bits from seed 18447 on
        record = train(small_config(corpus_dir, **{"train.seed": seed, "train.max_steps": 2}), tmp_path / f"run{seed}")
        assert np.isfinite(record["loss"])
    draw = lambda *args, **kwargs: torch.rand(4, generator=negative_generator(*args, torch.device("cpu"), **kwargs))
    assert torch.equal(draw(2**63, 1, 10**9), draw(2**63, 1, 10**9))
    streams = [draw(5, 0, 7), draw(5, 1, 7), draw(5, 0, 8), draw(6, 0, 7), draw(5, 0, 7, stream=VALIDATION)]
    assert TRAINING != VALIDATION and all(
        not torch.equal(a, b) for i, a in enumerate(streams) for b in streams[i + 1 :]
    )


def test_a_run_at_chance_is_reported_once(corpus_dir, tmp_path, monkeypatch, caplog):
    import logging

    from cpc.train import at_chance

    assert at_chance([0.01, 0.02, None], 64) and not at_chance([0.9, 0.02], 64)  # mean against 2 / 65 = 0.031
    assert not at_chance([None, None], 64)
    frozen = small_config(corpus_dir, **{"optim.lr": 1e-9})  # stays at its initial, chance-level scores
    monkeypatch.setattr("cpc.train.CHANCE_CHECK_STEP", 3)  # validations at steps 3 and 6
    with caplog.at_level(logging.WARNING, logger="cpc.train"):
        train(frozen, tmp_path / "frozen")
    warnings = [record.getMessage() for record in caplog.records if "not learning yet" in record.getMessage()]
    assert (
        len(warnings) == 1
        and warnings[0].startswith("step 3:")
        and "2 / (N + 1) = 0.222 with N = 8 negatives" in warnings[0]
    )
    caplog.clear()
    monkeypatch.setattr(
        "cpc.train.CHANCE_CHECK_STEP", 7
    )  # the same run, checked only after its last step: nothing said
    with caplog.at_level(logging.WARNING, logger="cpc.train"):
        train(frozen, tmp_path / "early")
    assert not [record for record in caplog.records if "not learning yet" in record.getMessage()]


def test_chance_watch_says_once_when_a_run_falls_back_to_chance():
    from cpc.train import ChanceWatch

    watch = ChanceWatch(64)  # chance 1/65: left at 4/65 = 0.062 at some k, back when every k < 2/65 = 0.031
    assert watch.check([0.02, 0.01], 10, "training") is None  # never left: not a fall-back
    assert watch.check([0.14, 0.03, None], 30, "training") is None and watch.left_chance
    assert watch.check([0.05, 0.02], 35, "training") is None  # k=1 still above chance
    message = watch.check([0.02, 0.01, None], 40, "validation")
    assert message.startswith("step 40: the model has fallen back to chance: validation accuracy")
    assert watch.check([0.0, 0.0], 50, "training") is None  # once


@pytest.mark.slow
def test_a_run_that_falls_back_to_chance_is_reported_at_that_step_across_a_resume(tmp_path, caplog):
    """A real run leaves chance; its predictors are then zeroed in last.pt (every score ties, and a
    tie is not correct), so the resumed run's next training step is at chance: the warning names it."""
    import logging

    settings = ["train.max_steps=30", "train.log_every=1", "train.valid_every=1000", "train.progress=false"]
    config = load_config("speech/tiny", [f"data.root={SAMPLE}", "data.num_workers=0", "train.threads=1", *settings])
    train(config, tmp_path / "run")  # the tiny recipe leaves chance within ~20 steps
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    assert state["chance"] == {"left_chance": True, "warned": False}
    for name in state["model"]:
        if name.startswith("predictors."):
            state["model"][name].zero_()
    torch.save(state, path)
    OmegaConf.update(config, "train.max_steps", 32)
    with caplog.at_level(logging.WARNING, logger="cpc.train"):
        train(config, tmp_path / "run", resume=True)
    warnings = [r.getMessage() for r in caplog.records if "fallen back to chance" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("step 31: the model has fallen back to chance: training")


def test_a_step_without_pairs_is_left_out_of_the_metrics():
    """Per-step metrics are averaged over pairs: a batch where step k has none does not count as 0 for k."""
    from cpc.train import StepMetrics

    def output(loss, accuracy, pairs):
        accuracy, pairs = torch.tensor(accuracy), torch.tensor(pairs, dtype=torch.float)
        return {
            "loss": torch.tensor(loss),
            "loss_per_step": torch.zeros(2),
            "accuracy_per_step": accuracy,
            "mutual_information": 1 - accuracy,
            "num_pairs": pairs,
        }

    metrics = StepMetrics(2, torch.device("cpu"))
    metrics.add(output(2.0, [0.5, 0.0], [10, 0]))  # step 2 had no pair in this batch
    metrics.add(output(4.0, [1.0, 0.25], [30, 20]))
    summary = metrics.summary(world_size=1)
    assert summary["loss"] == 3.0
    assert summary["accuracy"] == pytest.approx([(0.5 * 10 + 1.0 * 30) / 40, 0.25])
    metrics.reset()
    metrics.add(output(2.0, [0.5, 0.0], [10, 0]))
    assert metrics.summary(world_size=1)["accuracy"][1] is None


def test_a_window_too_short_for_every_step_is_refused_before_anything_is_written(corpus_dir, tmp_path):
    """Windows of 4 frames with K = 4 would leave step 4 without any (t, t + 4) pair."""
    with pytest.raises(
        ConfigError, match=r"data.window=640 samples gives 4 frames.*prediction_steps=4.*data.window >= 799"
    ):
        train(small_config(corpus_dir, **{"data.window": 640}), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="data.window.*0 is below the minimum 1"):
        small_config(corpus_dir, **{"data.window": 0})


@pytest.mark.slow
def test_resume_may_change_only_how_long_and_how_it_logs(corpus_dir, tmp_path):
    run = tmp_path / "run"
    train(small_config(corpus_dir, **{"train.max_steps": 4}), run)
    with pytest.raises(
        ConfigError, match=r"--resume cannot change optim.lr \(optim.lr: 0.0002 in the checkpoint, 0.5 now\)"
    ):
        train(small_config(corpus_dir, **{"train.max_steps": 6, "optim.lr": 0.5}), run, resume=True)
    with pytest.raises(ConfigError, match=r"train.max_steps=2 is below the step of .*last.pt \(4\)"):
        train(small_config(corpus_dir, **{"train.max_steps": 2}), run, resume=True)
    assert load_config(run / "config.yaml").train.max_steps == 4  # the refused resumes changed nothing
    train(small_config(corpus_dir, **{"train.max_steps": 6, "train.log_every": 3}), run, resume=True)
    saved = load_config(run / "config.yaml")
    assert saved.train.max_steps == 6 and saved.train.log_every == 3 and saved.optim.lr == 2e-4
    assert [r["step"] for r in read_metrics(run) if "split" not in r] == [2, 4, 6]


def run_cli(*args, env=None, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "cpc.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        **kwargs,
    )


@pytest.mark.slow
def test_cli_end_to_end_on_the_tiny_recipe(corpus_dir, tmp_path):
    run = tmp_path / "run"
    result = run_cli(
        "train",
        "recipes/speech/tiny.yaml",
        "--run-dir",
        str(run),
        f"data.root={corpus_dir}",
        "data.window=8000",
        "train.max_steps=4",
        "train.log_every=2",
        "train.checkpoint_every=2",
        "data.num_workers=1",
    )
    assert result.returncode == 0, result.stderr
    assert [r["step"] for r in read_metrics(run) if "split" not in r] == [2, 4]
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 4
    resumed = run_cli(
        "train",
        "recipes/speech/tiny.yaml",
        "--run-dir",
        str(run),
        "--resume",
        f"data.root={corpus_dir}",
        "data.window=8000",
        "train.max_steps=6",
        "train.log_every=2",
        "data.num_workers=0",
    )
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 6
    bad = run_cli("train", "recipes/speech/tiny.yaml", "--run-dir", str(tmp_path / "x"), "model.encoder.widht=3")
    assert bad.returncode == 2 and "model.encoder.widht" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_cli(
        "train", "recipes/speech/tiny.yaml", "--run-dir", str(tmp_path / "y"), f"data.root={tmp_path / 'nowhere'}"
    )
    assert missing.returncode == 2 and "nowhere" in missing.stderr and "does not exist" in missing.stderr


@pytest.mark.slow
def test_cli_one_line_errors(corpus_dir, tmp_path):
    def one_line(result, *needles):
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert any(all(needle in line for needle in needles) for line in lines), result.stderr

    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  encoder: {norm: channel\n")
    one_line(run_cli("train", str(broken), "--run-dir", str(tmp_path / "a")), "broken.yaml", "not valid YAML at line")
    a_file = tmp_path / "file"
    a_file.write_text("")
    one_line(run_cli("train", "speech/tiny", "--run-dir", str(a_file), f"data.root={corpus_dir}"), "is a file")
    one_line(
        run_cli("train", "speech/tiny", "--run-dir", "/proc/cpc-run", f"data.root={corpus_dir}", "data.window=8000"),
        "/proc/cpc-run",
    )
    one_line(
        run_cli("train", "speech/tiny", "--run-dir", str(tmp_path / "b"), "optim.schedule=cosin"),
        "optim.schedule",
        "cosin",
        "[constant, cosine, linear]",
    )
    one_line(run_cli("train", "speech/nowhere", "--run-dir", str(tmp_path / "c")), "speech/nowhere", "speech/tiny")
    if not torch.cuda.is_available():
        one_line(
            run_cli("train", "speech/tiny", "--run-dir", str(tmp_path / "d"), "train.device=cuda"),
            "train.device=cuda",
            "no CUDA device",
        )
    assert not any((tmp_path / name).exists() for name in "abcd")


@pytest.mark.slow
def test_cli_prints_the_resolved_config_and_lists_keys(tmp_path):
    printed = run_cli("train", "speech/tiny", "--print-config", "optim.lr=0.01")
    assert printed.returncode == 0, printed.stderr
    config = load_config(None, [])
    from omegaconf import OmegaConf

    resolved = OmegaConf.merge(config, OmegaConf.create(printed.stdout))
    assert resolved.optim.lr == 0.01 and resolved.model.encoder.norm == "channel"
    helped = run_cli("train", "--help")
    assert (
        "optim.schedule: constant|cosine|linear = constant" in helped.stdout
        and "A --resume may change only" in helped.stdout
    )


@pytest.mark.slow
def test_cli_logs_plain_lines_and_ctrl_c_names_the_checkpoint(corpus_dir, tmp_path):
    run, log_file = tmp_path / "run", tmp_path / "stderr.txt"
    command = [
        sys.executable,
        "-m",
        "cpc.cli",
        "train",
        "speech/tiny",
        "--run-dir",
        str(run),
        f"data.root={corpus_dir}",
        "data.window=8000",
        "data.num_workers=1",
        "train.max_steps=2000",
        "train.log_every=2",
        "train.checkpoint_every=2",
    ]
    with open(log_file, "w") as stderr:
        # Ctrl-C as in a terminal: a shell without job control starts background jobs with SIGINT
        # ignored, and the child would inherit that, so give it the default disposition back.
        process = subprocess.Popen(
            command, cwd=REPO, stderr=stderr, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
        )
        try:
            deadline = time.time() + 120
            while not (run / "checkpoints" / "last.pt").exists():
                assert process.poll() is None and time.time() < deadline, log_file.read_text()
                time.sleep(0.1)
            time.sleep(1.0)
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)
        finally:
            process.kill()  # never leave a training process behind, whatever failed
    output = log_file.read_text()
    assert process.returncode == 130 and "Traceback" not in output, output
    step = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    assert (
        f"interrupted; --resume continues from {run / 'checkpoints' / 'last.pt'} (step {step})"
        in output.splitlines()[-1]
    )
    assert "\r" not in output and "step 2/2000 | loss " in output  # not a terminal: plain log lines, no progress bar


@pytest.mark.slow
def test_two_process_ddp_on_cpu(corpus_dir, tmp_path):
    from torch.utils.data import default_collate

    from cpc.speech.windows import SpeechWindows, WindowSampler, split_corpus
    from cpc.train import negative_generator

    run = tmp_path / "ddp"
    config = small_config(
        corpus_dir, **{"train.log_every": 1, "train.keep_checkpoints": 2, "optim.lr": 0.02}
    )  # a loss that moves
    recipe = tmp_path / "recipe.yaml"
    from omegaconf import OmegaConf

    OmegaConf.save(config, recipe)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "cpc.cli",
            "train",
            str(recipe),
            "--run-dir",
            str(run),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_metrics(run)
    assert [r["step"] for r in records if "split" not in r] == [1, 2, 3, 4, 5, 6]  # written once, by rank 0
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 6
    # Recompute step 4 on each rank's batch from the step-3 weights: the ranks saw different
    # windows, and the logged metrics are the mean over the two ranks.
    corpus = split_corpus(
        str(corpus_dir), config.data.window, valid_fraction=config.data.valid_fraction, seed=config.train.seed
    )
    windows = SpeechWindows(corpus.train, config.data.window)
    model = cpc.load(run / "checkpoints" / "step_3.pt").train()
    batches, outputs = [], []
    for rank in range(2):
        items = WindowSampler(
            corpus.train, config.data.window, config.train.batch_size, seed=config.train.seed, rank=rank, world_size=2
        ).batch(3)
        batches.append(items)
        with torch.no_grad():
            outputs.append(
                model(
                    default_collate([windows[item] for item in items]),
                    generator=negative_generator(config.train.seed, rank, 3, torch.device("cpu")),
                )
            )
    assert set(batches[0]).isdisjoint(batches[1])
    assert abs(outputs[0]["loss"].item() - outputs[1]["loss"].item()) > 1e-3
    logged = next(r for r in records if r["step"] == 4 and "split" not in r)
    assert logged["loss"] == pytest.approx((outputs[0]["loss"].item() + outputs[1]["loss"].item()) / 2, abs=1e-5)
    mean_accuracy = ((outputs[0]["accuracy_per_step"] + outputs[1]["accuracy_per_step"]) / 2).tolist()
    assert logged["accuracy"] == pytest.approx(mean_accuracy, abs=1e-6)
    # Two ranks of 4 windows each: the logged throughput counts both.
    assert all(np.isfinite(r["loss"]) for r in records)


@pytest.mark.slow
def test_wandb_offline_logging(corpus_dir, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    train(small_config(corpus_dir, **{"train.logger": "wandb", "train.max_steps": 2}), run)
    offline_runs = list((run / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1 and any(offline_runs[0].rglob("*.wandb"))
    assert (run / "wandb_run_id").read_text().strip() in offline_runs[0].name


def test_bf16_autocast_runs_and_scores_in_float32(corpus_dir, tmp_path, monkeypatch):
    import cpc.infonce
    import cpc.objectives
    import cpc.predictors

    seen = {"predictions": set(), "scores": set()}
    predict, info_nce = cpc.predictors.LinearPredictors.forward, cpc.infonce.info_nce

    def spy_predict(self, context):
        predictions = predict(self, context)
        seen["predictions"].add(predictions.dtype)
        return predictions

    def spy_info_nce(scores, valid):
        seen["scores"].add(scores.dtype)
        return info_nce(scores, valid)

    monkeypatch.setattr(cpc.predictors.LinearPredictors, "forward", spy_predict)
    monkeypatch.setattr(cpc.objectives, "info_nce", spy_info_nce)  # where the registry's InfoNCE criterion calls it
    record = train(small_config(corpus_dir, **{"train.precision": "bf16", "train.max_steps": 2}), tmp_path / "run")
    assert seen == {
        "predictions": {torch.bfloat16},
        "scores": {torch.float32},
    }  # autocast was on; the scores were not in it
    assert np.isfinite(record["loss"]) and abs(record["loss"] - np.log(9)) < 0.05
