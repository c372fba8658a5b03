"""The image recipe end to end: the Fashion-MNIST data source, training, the probe and the demo.

Needs the Debian package dataset-fashion-mnist (installed by .ci/run and the README's commands);
every test uses a slice of it and a small model.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cpc
from cpc.config import ConfigError, load_config
from cpc.image.data import DEFAULT_ROOT, INSTALL_HINT
from cpc.image.source import FashionMNISTPatches
from cpc.train import train

pytestmark = pytest.mark.skipif(
    not (Path(DEFAULT_ROOT) / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST is not installed ({INSTALL_HINT})",
)

SMALL = [
    "data.train_images=640",
    "data.valid_images=64",
    "model.encoder.channels=8",
    "model.encoder.latent_size=16",
    "model.context.hidden_size=16",
    "model.context.layers=1",
    "model.loss.num_negatives=16",
    "train.batch_size=8",
    "train.max_steps=4",
    "train.log_every=2",
    "train.valid_every=2",
    "train.valid_batches=2",
    "train.checkpoint_every=2",
    "train.progress=false",
    "train.threads=1",
]


def source(*overrides, rank=0, world_size=1, start_step=0):
    config = load_config("image/fashion_mnist", SMALL + list(overrides))
    return FashionMNISTPatches(
        config, rank=rank, world_size=world_size, start_step=start_step, device=torch.device("cpu")
    )


@pytest.mark.slow
def test_batches_are_a_function_of_seed_step_and_rank():
    first = source()
    batches = first.train_batches()
    steps = [next(batches)[0] for _ in range(5)]
    assert steps[0].shape == (8, 7, 7, 8, 8) and steps[0].dtype == torch.float32
    resumed = source(start_step=3).train_batches()
    torch.testing.assert_close(next(resumed)[0], steps[3], rtol=0, atol=0)
    # Two ranks take different images of the same epoch.
    rank0, rank1 = source(rank=0, world_size=2), source(rank=1, world_size=2)
    a, b = rank0.batch_images(0), rank1.batch_images(0)
    assert not any(torch.equal(x, y) for x in a for y in b)
    # Augmentation changes training batches only: validation patches are the images' plain grid.
    plain = source("data.augment=false").train_batches()
    assert not torch.equal(next(plain)[0], steps[0])
    (valid, lengths), *_ = first.valid_batches()
    assert lengths is None and valid.shape[1:] == (7, 7, 8, 8) and valid.min() >= 0 and valid.max() <= 1


@pytest.mark.slow
def test_bad_settings_are_named():
    with pytest.raises(ConfigError, match="data.valid_images=640 leaves no training images"):
        source("data.valid_images=640")
    with pytest.raises(ConfigError, match="'model.encoder.layers'.*not in 'PatchEncoderConfig'"):
        load_config("image/fashion_mnist", ["model.encoder.layers=[]"])
    model = cpc.build_model(load_config("image/fashion_mnist", SMALL + ["model.predictor.prediction_steps=6"]))
    with pytest.raises(ConfigError, match=r"reach row 7, but the patch grid has only 7 rows"):
        source().check(model)


@pytest.mark.slow
def test_training_logs_every_offset_and_resumes_identically(tmp_path):
    train(load_config("image/fashion_mnist", SMALL), tmp_path / "straight")
    train(load_config("image/fashion_mnist", SMALL + ["train.max_steps=2"]), tmp_path / "resumed")
    train(load_config("image/fashion_mnist", SMALL), tmp_path / "resumed", resume=True)
    records = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if "split" not in r]
    assert (
        len(train_records[-1]["accuracy"]) == 3 and len(train_records[-1]["mutual_information"]) == 3
    )  # offsets 2, 3, 4
    assert any(r.get("split") == "valid" for r in records)
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=False)["model"]
    resumed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=False)["model"]
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0, msg=key)


@pytest.mark.slow
def test_demo_end_to_end_on_a_slice(tmp_path):
    from cpc.image.demo import run_image_demo

    result = run_image_demo(
        tmp_path / "demo",
        steps=4,
        overrides=SMALL,
        labels=(200,),
        limit_train=1000,
        limit_test=300,
        supervised_steps=5,
        progress=False,
    )
    kinds = {(r["kind"], r["layer"]) for r in result["results"]}
    assert kinds == {
        ("cpc", "both"),
        ("cpc", "encoder"),
        ("cpc", "context"),
        ("pixels", None),
        ("random", "both"),
        ("supervised", None),
    }
    for row in result["results"]:
        assert 0 <= row["accuracy"] <= 100 and row["labels"] == 200 and row["test_images"] == 300
    pixels = next(r for r in result["results"] if r["kind"] == "pixels")
    assert pixels["accuracy"] > 50  # 200 labelled images of 10 classes are far above chance (10 %)
    for name in ("report.md", "report.json", "training.png", "accuracy_per_offset.png", "patch_grid.png"):
        assert (tmp_path / "demo" / name).stat().st_size > 0, name
    assert "raw pixels" in (tmp_path / "demo" / "report.md").read_text()


@pytest.mark.slow
def test_probe_cli_writes_json_and_bad_input_is_one_line(tmp_path):
    run = tmp_path / "run"
    train(load_config("image/fashion_mnist", SMALL), run)
    out = tmp_path / "probe.json"
    command = [
        sys.executable,
        "-m",
        "cpc.cli",
        "probe",
        "image",
        "--features",
        str(run / "checkpoints" / "last.pt"),
        "--labels",
        "100",
        "--max-images",
        "300",
        "--threads",
        "1",
        "--json",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["labels"] == 100 and result["dimensions"] == 32 and 0 <= result["accuracy"] <= 100
    missing = subprocess.run(
        command[:5]
        + [
            "--features",
            "random",
            "--data",
            str(tmp_path / "nowhere"),
            "--architecture",
            str(run / "checkpoints" / "last.pt"),
        ],
        capture_output=True,
        text=True,
    )
    assert (
        missing.returncode == 2 and INSTALL_HINT in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    ), missing.stderr
    # Audio commands refuse an image model in one line.
    extract = subprocess.run(
        [
            sys.executable,
            "-m",
            "cpc.cli",
            "extract",
            str(run / "checkpoints" / "last.pt"),
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "features"),
        ],
        capture_output=True,
        text=True,
    )
    assert (
        extract.returncode == 2
        and "needs a speech model (raw audio)" in extract.stderr
        and "holds an image model" in extract.stderr
    ), extract.stderr
    assert len(extract.stderr.strip().splitlines()) == 1
