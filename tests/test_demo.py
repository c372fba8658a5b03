"""The demo end to end on a tiny labelled corpus: train a few steps, probe 4 feature sets, write the report."""

from __future__ import annotations

import json

import pytest
from test_probes import _cli, write_labelled_corpus

from cpc import resources
from cpc.speech import demo
from cpc.speech.corpus import synth
from cpc.speech.report import results_table, write_report

RECIPE = "speech/paper"  # a shipped recipe, by name (SMALL shrinks it)
PAPER_STACK = [(10, 5, 3), (8, 4, 2), (4, 2, 1), (4, 2, 1), (4, 2, 1)]
SMALL = [
    "model.encoder.layers=["
    + ",".join(f"{{channels: 16, kernel_size: {k}, stride: {s}, padding: {p}}}" for k, s, p in PAPER_STACK)
    + "]",
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


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    corpus = tmp_path / "corpus"
    write_labelled_corpus(corpus, speakers=3, utterances=4, seconds=1.6)
    run_dir = tmp_path / "run"
    argv = [
        "demo",
        "--run-dir",
        str(run_dir),
        "--corpus",
        str(corpus),
        "--steps",
        "3",
        "--recipe",
        str(RECIPE),
        "--ctc",
        *SMALL,
    ]
    assert _cli(argv) == 0
    for name in (
        "report.md",
        "report.json",
        "training.png",
        "accuracy_per_step.png",
        "projection_cpc.png",
        "projection_mfcc.png",
        "metrics.jsonl",
        "checkpoints/last.pt",
    ):
        assert (run_dir / name).is_file(), name
    report = json.loads((run_dir / "report.json").read_text())
    tasks = {(r["features"], r["task"]) for r in report["results"]}
    assert tasks == {
        (f, t) for f in ("cpc", "mfcc", "logmel", "random") for t in ("phone", "phone_ctc", "speaker", "abx")
    }
    assert report["summary"]["training_steps"] == 3
    assert report["summary"]["warnings"] == []
    markdown = (run_dir / "report.md").read_text()
    assert "| cpc (context) |" in markdown and "| random (context) |" in markdown and "64.6" in markdown
    # A second run reuses the finished checkpoint and the feature cache.
    assert _cli(argv) == 0
    assert len(json.loads((run_dir / "report.json").read_text())["results"]) == 16


def test_results_table_puts_paper_numbers_beside():
    table = results_table(
        [
            {"task": "phone", "features": "mfcc", "layer": None, "accuracy": 55.0},
            {"task": "speaker", "features": "mfcc", "layer": None, "accuracy": 80.0},
            {
                "task": "abx",
                "features": "cpc",
                "layer": "context",
                "within": 10.0,
                "across": 20.0,
                "within_cells": 2,
                "across_cells": 40,
            },
        ]
    )
    lines = table.splitlines()
    assert lines[0].startswith(
        "| features | phone acc. % ↑ | phone (paper, LS-100) | speaker acc. % ↑ | speaker (paper, LS-100) | ABX within"
    )
    assert lines[0].endswith(
        "| ABX cells within / across |"
    )  # a score over 2 cells is no measurement: the table says so
    assert lines[2] == "| mfcc | 55.0 | 39.7 | 80.0 | 17.6 | – | – | – |"
    assert lines[3] == "| cpc (context) | – | 64.6 | – | 97.4 | 10.0 | 20.0 | 2 / 40 |"


def test_demo_falls_back_to_the_sample_corpus_loudly(tmp_path, monkeypatch, caplog):
    def missing():
        raise synth.MissingToolError(
            f"festival, bible not found; install the engines and text with `{synth.APT_INSTALL}`"
        )

    monkeypatch.setattr(synth, "check_tools", missing)
    with caplog.at_level("WARNING", logger="cpc.speech.demo"):
        corpus, warning = demo.find_corpus(None, 1.0, cache=tmp_path)
    assert corpus == resources.sample_corpus() and (corpus / "abx" / "test.item").is_file()
    assert warning == (
        "**sample corpus: numbers not meaningful** — the 6-minute committed sample was used because "
        f"festival, bible not found; install the engines (`{synth.APT_INSTALL}`) for the 1-hour corpus."
    )
    assert "SAMPLE CORPUS, NUMBERS NOT MEANINGFUL: festival, bible not found" in caplog.text
    assert demo.find_corpus(tmp_path, 1.0) == (tmp_path, None)  # a corpus given: no fallback, no warning


def test_report_opens_with_its_warnings(tmp_path):
    results = [{"task": "phone", "features": "mfcc", "layer": None, "accuracy": 55.0}]
    markdown, json_path = write_report(
        tmp_path, results, summary={"corpus": "c"}, plots=[], warnings=["**first**", "second"]
    )
    assert markdown.read_text().splitlines()[:5] == ["> **first**", "", "> second", "", "# CPC evaluation report"]
    assert json.loads(json_path.read_text())["summary"] == {"corpus": "c", "warnings": ["**first**", "second"]}
    markdown, json_path = write_report(tmp_path, results, summary={"corpus": "c"}, plots=[])
    assert markdown.read_text().startswith("# CPC evaluation report")


def test_cpc_demo_runs_the_demos_the_modalities_register(monkeypatch, tmp_path, capsys):
    """`cpc demo NAME` is whatever module registered NAME; an option only other demos take is refused on one line."""
    import sys
    import types

    import cpc.cli
    from cpc import registry

    run_dir = str(tmp_path / "run")
    for argv, error in [
        (["--labels", "10"], "cpc demo: --labels is an image option (cpc demo image)"),
        (["image", "--ctc"], "cpc demo image: --corpus and --ctc are speech options"),
        (["text", "--labels", "1"], "cpc demo text: --corpus, --ctc and --labels are speech and image options"),
    ]:
        assert cpc.cli.main(["demo", *argv, "--run-dir", run_dir]) == 2
        assert capsys.readouterr().err == f"cpc demo: error: {error}\n"

    runs = []
    video = types.ModuleType("video_demo_for_test")
    video.DEMO_DESCRIPTION = "Video: frames.\n"
    video.DEFAULT_RECIPE = "video/clips"
    video.DEMO_OPTIONS = {"--frames": dict(type=int, help="video: frames per clip")}
    video.demo_from_args = lambda args, overrides: runs.append((args.recipe, args.frames, overrides))
    monkeypatch.setitem(sys.modules, video.__name__, video)
    monkeypatch.setitem(registry.demos(), "video", video.__name__)
    assert cpc.cli.main(["demo", "video", "--run-dir", run_dir, "--frames", "3", "a.b=1"]) == 0
    assert runs == [(None, 3, ["a.b=1"])]
    with pytest.raises(SystemExit):
        cpc.cli.main(["demo", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "cpc demo [speech|image|text|video]" in help_text and "Video: frames." in help_text
    assert "(default speech/tiny; image: image/fashion_mnist; text: text/books; video: video/clips)" in help_text
    for argv, error in [
        (["--frames", "3"], "cpc demo: --labels and --frames are image and video options"),
        (["film"], "'film' is not a demo; expected one of speech, image, text, video or key=value overrides"),
    ]:
        assert cpc.cli.main(["demo", *argv, "--run-dir", run_dir]) == 2
        assert error in capsys.readouterr().err
    assert len(runs) == 1
