"""The benchmark commands run and write the JSON they promise (numbers are measured, not asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_train_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cpc.cli",
            "bench",
            "train",
            "--recipe",
            "recipes/speech/tiny.yaml",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--json",
            str(out),
            "data.window=4096",
            "train.batch_size=2",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    entry = report["recipes"]["recipes/speech/tiny.yaml"]
    for key in ("median_step_s", "peak_rss_mb", "copied_negatives_median_step_s", "samples_per_s", "speedup_vs_copied"):
        assert entry[key] > 0, key
    assert entry["batch_size"] == 2 and entry["window"] == 4096
    assert report["machine"]["torch"] and report["machine"]["cpu_count"]
    assert "| recipes/speech/tiny.yaml | 2 x 4096 |" in result.stdout


@pytest.mark.slow
def test_bench_data_writes_json(corpus_dir, tmp_path):
    out = tmp_path / "data.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cpc.cli",
            "bench",
            "data",
            "--batches",
            "5",
            "--warmup",
            "1",
            "--json",
            str(out),
            f"data.root={corpus_dir}",
            "data.window=4096",
            "data.num_workers=0",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["windows_per_s"] > 0


@pytest.mark.slow
def test_bench_data_default_recipe_reads_the_sample_from_any_directory(tmp_path):
    """`cpc bench data` defaults to speech/tiny, whose data.root (data/sample) is the shipped sample outside the checkout."""
    from cpc.resources import sample_corpus

    out = tmp_path / "data.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cpc.cli",
            "bench",
            "data",
            "--batches",
            "2",
            "--warmup",
            "1",
            "--json",
            str(out),
            "data.window=4096",
            "data.num_workers=0",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
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
        (["extract", "--recipe", "speech/nope"], "recipe speech/nope is neither a file nor a shipped recipe"),
        (["extract", "--runs", "0"], "--runs must be at least 1, got 0"),
        (["extract", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["extract", "--seconds", "0"], "--seconds must be positive, got 0.0"),
        (["extract", "--threads", "0"], "--threads must be at least 1, got 0"),
        (["extract", "model.context.hiden_size=3"], "model.context.hiden_size"),
    ],
    ids=[
        "train-missing-recipe",
        "train-steps-0",
        "train-negative-warmup",
        "train-bad-override",
        "data-missing-recipe",
        "data-batches-0",
        "data-negative-warmup",
        "extract-missing-recipe",
        "extract-runs-0",
        "extract-batch-size-0",
        "extract-seconds-0",
        "extract-threads-0",
        "extract-bad-override",
    ],
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


@pytest.mark.slow
def test_a_failing_measurement_is_one_line(capsys):
    """The recipe loads, but a 100-sample window is shorter than the encoder's kernels: the child fails."""
    from cpc.cli import main

    assert (
        main(
            [
                "bench",
                "train",
                "--recipe",
                "speech/tiny",
                "--skip-copied",
                "--steps",
                "1",
                "--warmup",
                "0",
                "data.window=100",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert "Traceback" not in err and len(errors) == 1, err
    assert errors[0].startswith(
        "cpc bench: error: benchmark of speech/tiny (copy_negatives=False) failed: RuntimeError: "
    ), err


@pytest.mark.slow
def test_bench_extract_writes_json_and_table(tmp_path):
    out = tmp_path / "extract.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cpc.cli",
            "bench",
            "extract",
            "--recipe",
            "speech/tiny",
            "--runs",
            "1",
            "--warmup",
            "0",
            "--batch-size",
            "2",
            "--seconds",
            "0.5",
            "--threads",
            "1",
            "--json",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    entry = report["recipes"]["speech/tiny"]
    assert report["matmul_gflops"] > 0 and report["machine"]["torch_threads"] == 1
    for key in ("median_batch_s", "real_time_factor", "gflop_per_audio_s", "achieved_gflops", "fraction_of_matmul"):
        assert entry[key] > 0, key
    assert entry["real_time_factor"] == pytest.approx(2 * 0.5 / entry["median_batch_s"])
    assert entry["achieved_gflops"] == pytest.approx(entry["gflop_per_audio_s"] * entry["real_time_factor"])
    assert entry["target_real_time_factor"] == 200 and isinstance(entry["meets_target"], bool)
    assert "| speech/tiny | 2 x 0.5 s |" in result.stdout and "GFLOP/s" in result.stdout


@pytest.mark.parametrize("recipe, context", [("speech/paper", "gru"), ("speech/tiny", "gru"), ("speech/tiny", "lstm")])
def test_model_flops_match_torch_flop_counter(recipe, context):
    """The count from the layer list equals torch's FLOP counter on 0.1 s of audio, x 10 (1600 samples give whole frames).

    The counter sees the GRU's matmuls but not inside the fused LSTM op: that one is checked against the formula.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from cpc.bench import model_flops
    from cpc.config import load_config
    from cpc.model import build_model
    from cpc.resources import recipe_path

    model = build_model(load_config(recipe_path(recipe), [f"model.context.name={context}"])).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        latents, _ = model.encoder(torch.zeros(1, 1600))
        conv_flops = 10 * counter.get_total_flops()
        model.context(latents)
    flops = model_flops(model)
    assert flops["conv_gflop_per_audio_s"] == pytest.approx(conv_flops / 1e9, rel=1e-9)
    if context == "gru":
        assert flops["gflop_per_audio_s"] == pytest.approx(10 * counter.get_total_flops() / 1e9, rel=1e-9)
    else:
        assert flops["context_gflop_per_audio_s"] == pytest.approx(
            2 * 4 * (128 + 128) * 128 * 100 / 1e9
        )  # 4 gates, 100 frames/s
    if recipe == "speech/paper":
        assert flops["gflop_per_audio_s"] == pytest.approx(
            4.9741824
        )  # 2 x (2,428,108,800 conv + 58,982,400 GRU) multiply-adds
