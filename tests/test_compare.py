"""``cpc compare``: the arms it trains, and the command end to end on the committed sample."""

import json
from pathlib import Path

import pytest

from cpc.cli import main
from cpc.config import load_config
from cpc.eval.compare import modified_arms, objective_arms
from cpc.image.data import DEFAULT_ROOT, INSTALL_HINT
from cpc.resources import sample_corpus
from cpc.speech.compare import comparison_table, seed_summary, seed_summary_table


@pytest.mark.slow
def test_every_objective_arm_keeps_the_recipes_negatives():
    arms = objective_arms("speech/tiny")
    assert list(arms) == ["infonce", "nt_xent", "margin", "triplet", "binary"]
    for name, overrides in arms.items():
        loss = load_config("speech/tiny", overrides).model.loss
        assert (
            loss.name == name and loss.num_negatives == 64 and loss.negative_scope == "sequence"
        )  # tiny's, not the defaults (128, batch)


def test_modified_arms_change_one_thing_each():
    recipe = load_config("speech/tiny")
    for arm, overrides in modified_arms("speech/tiny").items():
        config = load_config("speech/tiny", overrides)
        changed = {
            section
            for section in ("encoder", "context", "predictor", "loss")
            if config.model[section] != recipe.model[section]
        }
        assert (
            changed
            == {
                "recipe": set(),
                "transformer_predictor": {"predictor"},
                "lstm_context": {"context"},
                "no_channel_norm": {"encoder"},
            }[arm]
        )
        if arm == "transformer_predictor":  # the recipe's K and init kept
            assert config.model.predictor.prediction_steps == 12 and config.model.predictor.init == "zeros"
    assert load_config("speech/tiny", modified_arms("speech/tiny")["no_channel_norm"]).model.encoder.norm == "none"
    # the paper recipe has no channel norm: there the arm adds it
    assert load_config("speech/paper", modified_arms("speech/paper")["channel_norm"]).model.encoder.norm == "channel"


def test_table_leaves_missing_scores_as_dashes():
    table = comparison_table(
        [{"arm": "a", "phone": 50.04, "seconds_per_step": 0.5}, {"arm": "b", "phone": None, "seconds_per_step": 1.25}]
    )
    assert table.splitlines()[0] == "| arm | phone acc. % ↑ | s/step |"
    assert table.splitlines()[2:] == ["| a | 50.0 | 0.500 |", "| b | – | 1.250 |"]


def test_seed_summary_gives_mean_and_range_per_arm():
    rows = [
        {"arm": "a", "seed": 0, "phone": 40.0, "abx_within": 10.0},
        {"arm": "a", "seed": 1, "phone": 50.0, "abx_within": None},
        {"arm": "b", "seed": 0, "phone": 45.0, "abx_within": 12.0},
        {"arm": "a", "seed": 2, "phone": 48.0, "abx_within": 14.0},
    ]
    arms = seed_summary(rows)
    assert list(arms) == ["a", "b"] and arms["a"]["seeds"] == [0, 1, 2]
    assert arms["a"]["phone"] == {"mean": pytest.approx(46.0), "min": 40.0, "max": 50.0}
    assert arms["a"]["abx_within"] == {"mean": 12.0, "min": 10.0, "max": 14.0}  # over the seeds that have the score
    assert seed_summary_table(arms).splitlines()[2:] == [
        "| a | 3 | 46.0 (40.0–50.0) | 12.0 (10.0–14.0) |",
        "| b | 1 | 45.0 (45.0–45.0) | 12.0 (12.0–12.0) |",
    ]
    assert comparison_table(rows).splitlines()[:3] == [
        "| arm | seed | phone acc. % ↑ | ABX within % ↓ |",
        "|---|---:|---:|---:|",
        "| a | 0 | 40.0 | 10.0 |",
    ]


SMALL = [
    "data.window=4096",
    "data.num_workers=0",
    "train.batch_size=4",
    "train.log_every=1",
    "train.valid_every=2",
    "train.valid_batches=1",
    "train.checkpoint_every=2",
    "train.threads=1",
    "model.predictor.prediction_steps=4",
    "model.encoder.layers=["
    + ",".join(
        f"{{channels: 32, kernel_size: {k}, stride: {s}, padding: {p}}}"
        for k, s, p in [(10, 5, 3), (8, 4, 2), (4, 2, 1), (4, 2, 1), (4, 2, 1)]
    )
    + "]",
    "model.context.hidden_size=32",
]


@pytest.mark.slow
def test_compare_objectives_end_to_end(tmp_path, capsys):
    run_dir = tmp_path / "compare"
    arguments = [
        "compare",
        "objectives",
        "--recipe",
        "speech/tiny",
        "--steps",
        "2",
        "--run-dir",
        str(run_dir),
        "--corpus",
        str(sample_corpus()),
        "--only",
        "triplet",
        "--tasks",
        "phone",
        *SMALL,
    ]
    assert main(arguments) == 0
    report = (run_dir / "report.md").read_text()
    rows = json.loads((run_dir / "report.json").read_text())["rows"]
    assert [row["arm"] for row in rows] == [
        "triplet"
    ]  # one arm keeps the test short; the plot test below draws several
    assert all(0 <= row["phone"] <= 100 and row["seconds_per_step"] > 0 for row in rows)
    assert "| triplet |" in report and "![Training curves side by side](curves.png)" in report
    assert (run_dir / "curves.png").stat().st_size > 0
    records = [json.loads(line) for line in (run_dir / "triplet" / "metrics.jsonl").read_text().splitlines()]
    assert "mutual_information" not in records[0] and "semi_hard_share" in records[0]
    # A second call reuses the finished arms and their results.
    assert main(arguments) == 0
    assert json.loads((run_dir / "report.json").read_text())["rows"] == rows


@pytest.mark.slow
def test_compare_trains_each_arm_once_per_seed(tmp_path, capsys):
    import torch

    from cpc.checkpoint import load_checkpoint

    run_dir = tmp_path / "seeds"
    arguments = [
        "compare",
        "modified",
        "--recipe",
        "speech/tiny",
        "--steps",
        "2",
        "--run-dir",
        str(run_dir),
        "--corpus",
        str(sample_corpus()),
        "--only",
        "recipe",
        "--tasks",
        "phone",
        "--seeds",
        "3,1",
        *SMALL,
    ]
    assert main(arguments) == 0
    report = json.loads((run_dir / "report.json").read_text())
    assert [(row["arm"], row["seed"]) for row in report["rows"]] == [("recipe", 3), ("recipe", 1)]
    assert report["summary"]["seed"] == "3, 1"
    phones = [row["phone"] for row in report["rows"]]
    assert report["arms"]["recipe"]["phone"] == {
        "mean": pytest.approx(sum(phones) / 2),
        "min": min(phones),
        "max": max(phones),
    }
    weights = []
    for seed in (3, 1):
        state = load_checkpoint(run_dir / "recipe" / f"seed-{seed}" / "checkpoints" / "last.pt")
        assert state["config"]["train"]["seed"] == seed
        weights.append(next(iter(state["model"].values())))
    assert not torch.equal(*weights)  # each seed its own initialisation
    assert (
        "| recipe | 2 |" in (run_dir / "report.md").read_text()
        and "| recipe | 3 |" in (run_dir / "report.md").read_text()
    )
    # A second call reuses both finished runs and their results.
    assert main(arguments) == 0
    assert json.loads((run_dir / "report.json").read_text())["rows"] == report["rows"]


def test_compare_refuses_unknown_arms_and_other_modalities(tmp_path, capsys):
    assert main(["compare", "objectives", "--steps", "2", "--run-dir", str(tmp_path), "--only", "hinge"]) == 2
    assert "--only hinge: not an arm of 'objectives'" in capsys.readouterr().err
    assert main(["compare", "objectives", "--recipe", "text/books", "--steps", "2", "--run-dir", str(tmp_path)]) == 2
    assert "text/books is a text recipe; `cpc compare text` takes text recipes" in capsys.readouterr().err
    assert (
        main(
            [
                "compare",
                "objectives",
                "--recipe",
                "image/fashion_mnist",
                "--steps",
                "2",
                "--run-dir",
                str(tmp_path),
                "--tasks",
                "phone",
            ]
        )
        == 2
    )
    assert "--corpus, --tasks and --seeds are for speech recipes" in capsys.readouterr().err
    assert main(["compare", "objectives", "--steps", "2", "--run-dir", str(tmp_path), "--labels", "100"]) == 2
    assert "--labels and --max-images set the image probe" in capsys.readouterr().err
    for seeds in ("0,0", "1,x", "-1", ""):
        assert main(["compare", "modified", "--steps", "2", "--run-dir", str(tmp_path), "--seeds", seeds]) == 2
        assert f"--seeds {seeds}: expected distinct non-negative integers" in capsys.readouterr().err
    assert (
        main(["compare", "modified", "--steps", "2", "--run-dir", str(tmp_path), "--seeds", "0,1", "train.seed=3"]) == 2
    )
    assert "drop the train.seed= override" in capsys.readouterr().err


IMAGE_SMALL = [
    "data.train_images=640",
    "data.valid_images=64",
    "model.encoder.channels=8",
    "model.encoder.latent_size=16",
    "model.context.hidden_size=16",
    "model.context.layers=1",
    "model.loss.num_negatives=16",
    "train.batch_size=8",
    "train.log_every=1",
    "train.valid_every=2",
    "train.valid_batches=2",
    "train.checkpoint_every=2",
    "train.threads=1",
]


@pytest.mark.skipif(
    not (Path(DEFAULT_ROOT) / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST is not installed ({INSTALL_HINT})",
)
@pytest.mark.slow
def test_compare_objectives_on_the_image_recipe(tmp_path, capsys):
    from cpc.image.probe import image_probe

    run_dir = tmp_path / "compare"
    arguments = [
        "compare",
        "objectives",
        "--recipe",
        "image/fashion_mnist",
        "--steps",
        "2",
        "--run-dir",
        str(run_dir),
        "--labels",
        "200,100",
        "--max-images",
        "300",
        *IMAGE_SMALL,
    ]
    assert main(arguments) == 0
    report = json.loads((run_dir / "report.json").read_text())
    assert report["offsets"] == [2, 3, 4] and report["summary"]["steps"] == 2
    rows = {row["arm"]: row for row in report["rows"]}
    assert list(rows) == ["infonce", "nt_xent", "margin", "triplet", "binary"]
    for arm, row in rows.items():
        config = load_config(run_dir / arm / "config.yaml")
        assert config.model.loss.name == arm and config.train.max_steps == 2 and config.train.seed == 0
        assert set(row["probe"]) == {"100", "200"} and all(0 <= accuracy <= 100 for accuracy in row["probe"].values())
        assert len(row["valid_accuracy_per_offset"]) == 3 and row["valid_loss"] > 0 and row["seconds_per_step"] > 0
    # The probe column is `cpc probe image`'s number for the same checkpoint and labelled subset.
    checkpoint = str(run_dir / "margin" / "checkpoints" / "last.pt")
    assert (
        rows["margin"]["probe"]["100"]
        == image_probe(checkpoint, labels=100, limit_train=300, limit_test=300)["accuracy"]
    )
    # One table row per objective, its cells the row's numbers.
    table = [line for line in (run_dir / "report.md").read_text().splitlines() if line.startswith("| ")]
    assert table[0] == (
        "| arm | probe 100 labels % ↑ | probe 200 labels % ↑ | valid loss | valid acc. k=2 | valid acc. k=3 | valid acc. k=4 | "
        "s/step |"
    )
    assert [line.split(" | ")[0] for line in table[1:]] == [f"| {arm}" for arm in rows]
    for line, row in zip(table[1:], rows.values()):
        cells = line.strip("| ").split(" | ")[1:]
        assert cells[:3] == [f"{row['probe']['100']:.1f}", f"{row['probe']['200']:.1f}", f"{row['valid_loss']:.4f}"]
        assert cells[3:6] == [f"{accuracy:.3f}" for accuracy in row["valid_accuracy_per_offset"]]
    assert (run_dir / "curves.png").stat().st_size > 0
    # A second call reuses every arm and its probe.
    assert main(arguments) == 0
    assert json.loads((run_dir / "report.json").read_text())["rows"] == report["rows"]


def test_curves_side_by_side_draws_every_run(tmp_path):
    from cpc.eval.report import plot_curves_side_by_side

    runs = {}
    for arm, mutual_information in (("infonce", True), ("margin", False)):
        path = tmp_path / f"{arm}.jsonl"
        lines = [
            {
                "step": s,
                "loss": 1 / s,
                "accuracy": [0.1 * s, None],
                **({"mutual_information": [0.1, None]} if mutual_information else {}),
            }
            for s in (1, 2)
        ]
        lines.append({"step": 2, "split": "valid", "loss": 0.6, "accuracy": [0.2, 0.1]})
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        runs[arm] = path
    plot_curves_side_by_side(runs, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 10000


def test_the_recipes_data_picks_the_comparison_its_modality_registers(monkeypatch, tmp_path, capsys):
    """`cpc compare WHAT` runs the module registered for the recipe's data.name, with the choices and options it declares."""
    import sys
    import types

    from cpc import registry

    runs = []
    books = types.ModuleType("book_compare_for_test")
    books.COMPARE_DESCRIPTION = "Books: chapters.\n"
    books.COMPARISONS = {"chapters": "one run per chapter length"}
    books.COMPARE_OPTIONS = {"--chapters": dict(type=int, help="text: chapters per arm")}
    books.compare_from_args = lambda args: runs.append((args.what, args.recipe, args.chapters)) or 0
    monkeypatch.setitem(sys.modules, books.__name__, books)
    monkeypatch.setitem(registry.compares(), "text", books.__name__)
    arguments = ["--recipe", "text/books", "--steps", "2", "--run-dir", str(tmp_path)]

    assert main(["compare", "chapters", *arguments, "--chapters", "3"]) == 0
    assert runs == [("chapters", "text/books", 3)]
    assert main(["compare", "objectives", *arguments]) == 2
    assert (
        "cpc compare objectives: text/books is a text recipe; `cpc compare chapters` takes text recipes, "
        "`cpc compare objectives` takes speech or fashion_mnist recipes"
    ) in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "{objectives,modified,chapters}" in help_text and "Books: chapters." in help_text
    assert "(cpc.text.compare: the probe suite)" not in help_text and "--chapters CHAPTERS" in help_text
