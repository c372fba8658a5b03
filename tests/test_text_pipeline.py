"""The text commands end to end on a slice: cpc train (the text recipe) -> cpc probe text -> cpc demo text."""

import json

import pytest

from cpc.cli import main


@pytest.fixture(scope="module")
def trained(text_data_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("text_run")
    overrides = [
        f"data.root={text_data_dir}",
        "data.window=5",
        "data.valid_fraction=0.1",
        "train.batch_size=4",
        "train.max_steps=4",
        "train.log_every=2",
        "train.valid_every=4",
        "train.valid_batches=1",
        "train.checkpoint_every=4",
        "train.progress=false",
        "train.threads=1",
        "model.encoder.buckets=4096",
        "model.encoder.latent_size=32",
        "model.context.hidden_size=32",
    ]
    assert main(["train", "text/books", "--run-dir", str(run), *overrides]) == 0
    return run


@pytest.mark.slow
def test_probe_text_writes_accuracy_and_std(trained, text_data_dir, tmp_path):
    checkpoint = str(trained / "checkpoints" / "last.pt")
    out = tmp_path / "probe.json"
    assert (
        main(
            [
                "probe",
                "text",
                "--features",
                checkpoint,
                "--data",
                str(text_data_dir),
                "--max-examples",
                "200",
                "--folds",
                "3",
                "--oov",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["examples"] == 200 and result["dimensions"] == 32 and len(result["fold_accuracies"]) == 3
    assert 0 <= result["std"] <= 50 and 20 <= result["accuracy"] <= 100
    assert (
        0 < result["oov"]["words"] < 100 and result["oov"]["ngrams"] < result["oov"]["words"]
    )  # n-grams are seen more often than words
    assert (
        main(
            [
                "probe",
                "text",
                "--features",
                "random",
                "--architecture",
                checkpoint,
                "--layer",
                "both",
                "--data",
                str(text_data_dir),
                "--max-examples",
                "200",
                "--folds",
                "3",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["dimensions"] == 64  # [z, c]
    assert (
        main(["probe", "text", "--features", "random", "--data", str(text_data_dir)]) == 2
    )  # random needs --architecture: one line


@pytest.mark.slow
def test_demo_text_reports_every_row(trained, text_data_dir, tmp_path):
    import shutil

    from cpc.text.demo import run_text_demo
    from cpc.text.suite import ROWS, SUITE_TASKS

    run = tmp_path / "demo"
    shutil.copytree(trained, run)  # a finished run is reused, not retrained
    report = run_text_demo(
        run,
        root=str(text_data_dir),
        limit=100,
        folds=2,
        max_documents=40,
        progress=False,
        overrides=[
            "data.window=5",
            "data.valid_fraction=0.1",
            "train.batch_size=4",
            "train.max_steps=4",
            "model.encoder.buckets=4096",
            "model.encoder.latent_size=32",
            "model.context.hidden_size=32",
        ],
    )
    assert [r["name"] for r in report["results"]] == [label for _, _, label in ROWS]
    assert all(set(row["results"]) == set(SUITE_TASKS) for row in report["results"])
    text = (run / "report.md").read_text()
    assert (
        "| features | next_sentence * | sentence_order * | bigram_shift | sentence_length | word_content | mr |" in text
    )
    assert "| CPC z (sentence encoder) |" in text and "TF-IDF" in text and (run / "training.png").is_file()
    assert set(report["control_margins"]) == {"encoder", "both"} and (run / "suite" / "next_sentence.tsv").is_file()
    assert report["summary"]["out_of_vocabulary_percent"]["words"] > 0


@pytest.mark.slow
def test_compare_text_trains_each_seed_and_reports_cpc_against_its_control(text_data_dir, tmp_path):
    run = tmp_path / "compare"
    overrides = [
        f"data.root={text_data_dir}",
        "data.window=5",
        "data.valid_fraction=0.1",
        "train.batch_size=4",
        "train.log_every=2",
        "train.valid_every=2",
        "train.valid_batches=1",
        "train.checkpoint_every=2",
        "train.threads=1",
        "model.encoder.buckets=4096",
        "model.encoder.latent_size=16",
        "model.context.hidden_size=16",
    ]
    arguments = [
        "compare",
        "text",
        "--recipe",
        "text/books",
        "--steps",
        "2",
        "--run-dir",
        str(run),
        "--only",
        "recipe",
        "--seeds",
        "0,1",
        "--suite-size",
        "40",
        "--folds",
        "2",
        *overrides,
    ]
    assert main(arguments) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["arms"]["recipe"]["seeds"] == [0, 1] and (run / "recipe" / "seed-1" / "result.json").is_file()
    margins = report["arms"]["recipe"]["margins"]["both"]["next_sentence"]
    assert len(margins["values"]) == 2 and margins["min"] <= margins["mean"] <= margins["max"]
    baselines = json.loads((run / "baselines.json").read_text())
    assert any(key.startswith("random/encoder/seed-1/") for key in baselines) and any(
        key.startswith("tfidf/") for key in baselines
    )
    text = (run / "report.md").read_text()
    assert "CPC minus its random-init control" in text and "| (all arms) | TF-IDF 1-2-grams |" in text
    assert main([*arguments[:3], "speech/tiny", *arguments[4:]]) == 2  # a speech recipe: refused
