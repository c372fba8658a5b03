"""`cpc probe text --task FILE.tsv`: any labelled task, sentences or sentence pairs, with the
refusals that name the counts (one class, too few per class for the folds, --folds 0)."""

import json
import logging

import numpy as np
import pytest

from cpc.cli import main
from cpc.text.probe import cross_validate, make_task, minimum_per_class, read_task_file, text_probe


def _write(path, rows):
    path.write_text("".join("\t".join(map(str, row)) + "\n" for row in rows), encoding="utf-8")
    return path


def test_three_classes_and_string_labels_are_read_and_scored(tmp_path):
    rows = [
        (label, f"{word} {word} and some filler {i}")
        for i in range(12)
        for label, word in (("cat", "meow"), ("dog", "woof"), ("cow", "moo"))
    ]
    task = read_task_file(_write(tmp_path / "animals.tsv", rows))
    assert task.name == "animals" and task.classes == ["cat", "cow", "dog"] and not task.pair
    assert task.class_counts() == {"cat": 12, "cow": 12, "dog": 12}
    result = text_probe("bow", task=str(tmp_path / "animals.tsv"), folds=3)
    assert result["accuracy"] == 100.0 and result["classes"] == {"cat": 12, "cow": 12, "dog": 12}
    numbers = make_task("n", [("10", "a b"), ("2", "c d"), ("10", "e f")])
    assert numbers.classes == ["2", "10"] and numbers.labels.tolist() == [1, 0, 1]  # numbers sort as numbers


def test_refusals_name_the_counts(tmp_path, caplog):
    one = _write(tmp_path / "one.tsv", [("pos", f"good {i}") for i in range(30)])
    with pytest.raises(ValueError, match=r"task one: one class \('pos': 30\)"):
        text_probe("bow", task=str(one))
    few = _write(
        tmp_path / "few.tsv", [("pos", f"good {i}") for i in range(30)] + [("neg", f"bad {i}") for i in range(4)]
    )
    with pytest.raises(
        ValueError,
        match=r"'neg' has 4 examples; 10-fold cross-validation \(with 5 inner folds\) needs at least 10 per class",
    ):
        text_probe("bow", task=str(few))
    assert minimum_per_class(10) == 10 and minimum_per_class(2) == 10 and minimum_per_class(3) == 8
    with pytest.raises(ValueError, match=r"^--folds 0: cross-validation needs at least 2 folds"):
        text_probe("bow", task=str(few), folds=0)
    with caplog.at_level(logging.WARNING):
        task = make_task("blanks", [("a", "x y"), ("b", "  "), ("a", "..."), ("b", "z"), ("a", "")])
    assert (
        len(task.texts) == 3 and "skipped 2 of 5 examples with an empty sentence" in caplog.text
    )  # "..." has words: three marks
    (tmp_path / "bad.tsv").write_text("pos\tgood\nno tab here\n")
    with pytest.raises(ValueError, match=r"bad.tsv:2: expected label<TAB>sentence"):
        read_task_file(tmp_path / "bad.tsv")
    (tmp_path / "mixed.tsv").write_text("1\ta\tb\n0\tc\n")
    with pytest.raises(ValueError, match="mixes single sentences and sentence pairs"):
        read_task_file(tmp_path / "mixed.tsv")


def test_cli_task_file_and_its_errors(tmp_path, capsys):
    rows = [(i % 2, ("sunny bright day " if i % 2 else "cold dark night ") + str(i)) for i in range(40)]
    path = _write(tmp_path / "weather.tsv", rows)
    out = tmp_path / "result.json"
    assert main(["probe", "text", "--features", "tfidf", "--task", str(path), "--folds", "4", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["accuracy"] == 100.0
    assert main(["probe", "text", "--features", "bow", "--task", str(path), "--folds", "0"]) == 2
    assert "--folds 0" in capsys.readouterr().err
    assert main(["probe", "text", "--features", "bow", "--task", str(tmp_path / "none.tsv")]) == 2


def test_pairs_use_both_sentences(tmp_path):
    # Label: whether B repeats A's colour; only the pair form [v(A), v(B), v(A) * v(B)] can see it.
    rng = np.random.default_rng(0)
    colours = ["red", "blue", "green", "black", "white", "pink"]
    rows = []
    for i in range(60):
        a, b = rng.choice(colours, 2, replace=False)
        same = i % 2
        rows.append((same, f"the {a} house", f"a {a if same else b} door"))
    task = read_task_file(_write(tmp_path / "pairs.tsv", rows))
    assert task.pair and task.texts[0] == (rows[0][1], rows[0][2])
    assert cross_validate(task.texts, task.labels, sparse="bow", folds=3, pair=True)["accuracy"] > 90.0
