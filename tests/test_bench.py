"""The benchmark commands run and write the JSON they promise (numbers are measured, not asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def test_bench_train_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "cpc.cli", "bench", "train", "--recipe", "recipes/speech/tiny.yaml", "--steps", "1", "--warmup", "0",
         "--json", str(out), "data.window=4096", "train.batch_size=2"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    entry = report["recipes"]["recipes/speech/tiny.yaml"]
    for key in ("median_step_s", "peak_rss_mb", "copied_negatives_median_step_s", "samples_per_s", "speedup_vs_copied"):
        assert entry[key] > 0, key
    assert entry["batch_size"] == 2 and entry["window"] == 4096
    assert report["machine"]["torch"] and report["machine"]["cpu_count"]
    assert "| recipes/speech/tiny.yaml | 2 x 4096 |" in result.stdout


def test_bench_data_writes_json(corpus_dir, tmp_path):
    out = tmp_path / "data.json"
    result = subprocess.run(
        [sys.executable, "-m", "cpc.cli", "bench", "data", "--batches", "5", "--warmup", "1", "--json", str(out),
         f"data.root={corpus_dir}", "data.window=4096", "data.num_workers=0"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["windows_per_s"] > 0


def test_bench_data_default_recipe_reads_the_sample_from_any_directory(tmp_path):
    """`cpc bench data` defaults to speech/tiny, whose data.root (data/sample) is the shipped sample outside the checkout."""
    from cpc.resources import sample_corpus

    out = tmp_path / "data.json"
    result = subprocess.run(
        [sys.executable, "-m", "cpc.cli", "bench", "data", "--batches", "2", "--warmup", "1", "--json", str(out),
         "data.window=4096", "data.num_workers=0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["recipe"] == "speech/tiny" and report["data"] == str(sample_corpus()) and report["windows_per_s"] > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--recipe", "speech/nope"], "recipe speech/nope is neither a file nor a shipped recipe"),
        (["train", "--recipe", "speech/tiny", "--steps", "0"], "--steps must be at least 1, got 0"),
        (["train", "--recipe", "speech/tiny", "--warmup", "-1"], "--warmup must be at least 0, got -1"),
        (["train", "--recipe", "speech/tiny", "model.encoder.widht=3"], "model.encoder.widht"),
        (["data", "--recipe", "speech/nope"], "recipe speech/nope is neither a file nor a shipped recipe"),
        (["data", "--batches", "0"], "--batches must be at least 1, got 0"),
        (["data", "--warmup", "-1"], "--warmup must be at least 0, got -1"),
    ],
    ids=["train-missing-recipe", "train-steps-0", "train-negative-warmup", "train-bad-override", "data-missing-recipe", "data-batches-0", "data-negative-warmup"],
)
def test_bad_input_fails_on_one_line_before_any_timing(args, message, capsys):
    from cpc.cli import main

    assert main(["bench", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cpc bench: error: ") and message in lines[0], lines


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without CUDA")
def test_cuda_without_a_device_fails_on_one_line(capsys):
    from cpc.cli import main

    assert main(["bench", "train", "--recipe", "speech/tiny", "--device", "cuda"]) == 2
    assert "--device cuda: no CUDA device is available here" in capsys.readouterr().err


def test_a_failing_measurement_is_one_line(capsys):
    """The recipe loads, but a 100-sample window is shorter than the encoder's kernels: the child fails."""
    from cpc.cli import main

    assert main(["bench", "train", "--recipe", "speech/tiny", "--skip-copied", "--steps", "1", "--warmup", "0", "data.window=100"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert "Traceback" not in err and len(errors) == 1, err
    assert errors[0].startswith("cpc bench: error: benchmark of speech/tiny (copy_negatives=False) failed: RuntimeError: "), err
