"""The benchmark commands run and write the JSON they promise (numbers are measured, not asserted)."""

import json
import subprocess
import sys
from pathlib import Path

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
