"""Bad input to `cpc probe` / `cpc abx`: one-line errors before any work, stale caches, few ABX cells, plain help."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from test_probes import _cli, write_labelled_corpus

from cpc.speech import abx, demo, evaluate
from cpc.speech.corpus.formats import ItemRow, load_corpus, read_item, write_item
from cpc.speech.features import FeatureError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-cli") / "corpus"
    write_labelled_corpus(root, speakers=2, utterances=3, seconds=1.5)
    return root


def _one_line_error(capsys, *fragments: str) -> str:
    """The command's stderr: exactly one line, naming every fragment, no traceback."""
    error = capsys.readouterr().err
    assert "Traceback" not in error
    lines = error.strip().splitlines()
    assert len(lines) == 1, error
    for fragment in fragments:
        assert fragment in lines[0], error
    return lines[0]


def _no_work(monkeypatch):
    """Fail the test if the command gets as far as reading the corpus."""
    monkeypatch.setattr(
        evaluate, "_load", lambda args: pytest.fail("the command started work before checking its arguments")
    )


# ----------------------------------------------------------------------------- one-line errors before any work


def test_cuda_device_without_a_gpu_is_one_line_before_any_work(corpus, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _no_work(monkeypatch)
    assert _cli(["probe", "phone", "--features", "mfcc", "--data", str(corpus), "--device", "cuda", "--no-cache"]) == 2
    _one_line_error(capsys, "cpc probe: error:", "no CUDA device is available")
    assert _cli(["abx", "--features", "mfcc", "--data", str(corpus), "--device", "gpu", "--no-cache"]) == 2
    _one_line_error(capsys, "cpc abx: error:", "'gpu' is not a torch device name")


@pytest.mark.parametrize(
    "command, option, value",
    [
        (["probe", "speaker"], "--crop-frames", "0"),
        (["probe", "speaker"], "--crop-frames", "-5"),
        (["abx"], "--max-per-group", "0"),
        (["abx"], "--max-x-speakers", "-1"),
        (["probe", "phone"], "--threads", "0"),
        (["abx"], "--threads", "-2"),
    ],
)
def test_non_positive_counts_are_one_line_errors(corpus, capsys, monkeypatch, command, option, value):
    _no_work(monkeypatch)
    assert _cli([*command, "--features", "mfcc", "--data", str(corpus), "--no-cache", option, value]) == 2
    _one_line_error(capsys, f"{option} {value}: expected")


def test_library_rejects_a_non_positive_crop_and_group_size():
    from cpc.speech.probes import pooled_crops, speaker_probe

    features = {"u0": np.zeros((300, 4), np.float32)}
    for crop in (0, -3):
        with pytest.raises(ValueError, match=f"crop_frames={crop}"):
            speaker_probe(features, {"u0": "s"}, ["u0"], ["u0"], crop_frames=crop)
        with pytest.raises(ValueError, match=f"crop_frames={crop}"):
            pooled_crops(features["u0"], crop)
    with pytest.raises(ValueError, match="max_per_group=0"):
        abx.abx_error(features, [ItemRow("u0", 0.0, 0.1, "a", "x", "y", "s")], max_per_group=0)


@pytest.mark.parametrize("where", ["directory", "under a file"])
def test_unwritable_json_fails_before_any_work(corpus, tmp_path, capsys, monkeypatch, where):
    _no_work(monkeypatch)
    if where == "directory":
        target = tmp_path / "out"
        target.mkdir()
    else:  # a parent that cannot be created stands for a read-only place (tests may run as root, for whom chmod does not bite)
        (tmp_path / "a-file").write_text("")
        target = tmp_path / "a-file" / "result.json"
    assert (
        _cli(["probe", "phone", "--features", "mfcc", "--data", str(corpus), "--json", str(target), "--no-cache"]) == 2
    )
    _one_line_error(capsys, f"--json {target}")


def test_the_table_is_printed_when_writing_the_json_fails_after_the_work(corpus, tmp_path, capsys, monkeypatch):
    (tmp_path / "a-file").write_text("")
    target = tmp_path / "a-file" / "result.json"
    monkeypatch.setattr(evaluate, "_check_writable", lambda path: None)  # the place became unwritable during the run
    assert (
        _cli(["probe", "phone", "--features", "mfcc", "--data", str(corpus), "--json", str(target), "--no-cache"]) == 2
    )
    captured = capsys.readouterr()
    assert "| mfcc |" in captured.out
    assert (
        "Traceback" not in captured.err
        and f"cpc probe: error: --json {target}: could not write the result" in captured.err
    )


# ----------------------------------------------------------------------------- usability


def test_json_is_optional_and_the_table_is_printed(corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _cli(["probe", "phone", "--features", "mfcc", "--data", str(corpus), "--no-cache"]) == 0
    assert "| mfcc |" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("command", [["probe"], ["probe", "phone"], ["abx"], ["demo"]])
def test_help_is_plain_text(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        _cli([*command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for markup in ("``", ":func:", ":mod:", ":class:", ":data:"):
        assert markup not in text, f"{markup} in `cpc {' '.join(command)} --help`"


def test_demo_logs_rounded_scores():
    assert demo._scores({"task": "phone", "accuracy": 28.234335780143738}) == "phone 28.2 %"
    assert demo._scores({"task": "phone_ctc", "per": 61.98}) == "phone_ctc PER 62.0 %"
    assert (
        demo._scores({"task": "abx", "within": 12.345, "across": None, "within_cells": 40, "across_cells": 0})
        == "abx within 12.3 % / across – (40 / 0 cells)"
    )


def test_missing_labels_and_splits_name_flags_only_where_they_exist(corpus, tmp_path, capsys):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(corpus, bare)
    (bare / "alignments.txt").unlink()
    (bare / "test_split.txt").unlink()
    # The library (what the demo calls, which has no such flags) names the missing file only.
    with pytest.raises(FeatureError, match="no alignments.txt") as error:
        evaluate.evaluate_phone(load_corpus(bare), "mfcc", progress=False)
    assert "--" not in str(error.value)
    with pytest.raises(FeatureError, match="no test split") as error:
        evaluate.evaluate_speaker(load_corpus(bare), "mfcc", progress=False)
    assert "--" not in str(error.value)
    # The commands have the flags and suggest them.
    assert _cli(["probe", "phone", "--features", "mfcc", "--data", str(bare), "--no-cache"]) == 2
    _one_line_error(capsys, "no alignments.txt", "pass --alignments FILE")
    assert _cli(["probe", "speaker", "--features", "mfcc", "--data", str(bare), "--no-cache"]) == 2
    _one_line_error(capsys, "no test split", "pass --test-split FILE")


# ----------------------------------------------------------------------------- stale cache, end to end


def test_probe_with_a_cache_sees_audio_replaced_in_place(corpus, tmp_path, capsys):
    import os
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(corpus, copy)
    command = ["probe", "phone", "--features", "mfcc", "--data", str(copy), "--cache", str(tmp_path / "cache")]
    assert _cli([*command, "--json", str(tmp_path / "a.json")]) == 0
    rng = np.random.default_rng(0)
    for path in copy.rglob("*.flac"):
        length = sf.info(path).frames
        stat = os.stat(path)
        sf.write(path, 0.1 * rng.standard_normal(length).astype(np.float32), 16000)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert _cli([*command, "--json", str(tmp_path / "b.json")]) == 0
    before, after = (json.loads((tmp_path / name).read_text())["accuracy"] for name in ("a.json", "b.json"))
    assert before > 80.0 and after < before - 30.0  # noise carries no phone information


# ----------------------------------------------------------------------------- ABX: few cells, rows outside the audio


def test_abx_reports_its_cells_and_warns_when_few(corpus, tmp_path, capsys, caplog):
    rows = read_item(corpus / "abx" / "test.item")
    out = tmp_path / "abx.json"
    with caplog.at_level("WARNING", logger="cpc.speech.abx"):
        assert _cli(["abx", "--features", "mfcc", "--data", str(corpus), "--json", str(out), "--no-cache"]) == 0
    result = json.loads(out.read_text())
    assert 0 < result["within_cells"] < abx.MIN_CELLS and result["min_cells"] == abx.MIN_CELLS
    assert any("within-speaker score rests on" in warning for warning in result["warnings"])
    assert f"rests on {result['within_cells']} cell(s) only" in caplog.text
    table = capsys.readouterr().out
    assert "ABX cells within / across" in table and f"| {result['within_cells']} / {result['across_cells']} |" in table
    assert len(rows) == result["items"]


def test_abx_without_warnings_on_enough_cells():
    rng = np.random.default_rng(1)
    features, items = {}, []
    for file_index in range(8):
        features[f"f{file_index}"] = rng.standard_normal((200, 4)).astype(np.float32)
        for k in range(40):
            items.append(
                ItemRow(
                    f"f{file_index}",
                    0.05 * k,
                    0.05 * (k + 1),
                    "abcd"[k % 4],
                    "c",
                    "ce"[k // 4 % 2],
                    f"s{file_index % 2}",
                )
            )
    result = abx.abx_error(features, items)
    assert result["within_cells"] >= abx.MIN_CELLS and result["across_cells"] >= abx.MIN_CELLS
    assert result["warnings"] == []


@pytest.mark.parametrize(
    "onset, offset, problem",
    [(-0.05, 0.1, "onset -0.05 s is before the start"), (0.1, 9.0, "offset 9 s is past the end")],
)
def test_abx_rejects_item_rows_outside_the_audio(corpus, tmp_path, capsys, monkeypatch, onset, offset, problem):
    rows = read_item(corpus / "abx" / "test.item")
    bad = ItemRow(
        rows[0].file,
        onset,
        offset,
        *[getattr(rows[0], name) for name in ("phone", "prev_phone", "next_phone", "speaker")],
    )
    item = tmp_path / "bad.item"
    write_item(item, [*rows[:3], bad, *rows[3:]])  # line 1 is the header: the bad row is on line 5
    monkeypatch.setattr(
        evaluate, "_features", lambda *args, **kwargs: pytest.fail("features were extracted for a bad item file")
    )
    assert _cli(["abx", "--features", "mfcc", "--data", str(corpus), "--item", str(item), "--no-cache"]) == 2
    _one_line_error(capsys, f"{item}:5:", problem, rows[0].file)


def test_abx_error_rejects_rows_outside_the_features():
    features = {"f": np.ones((50, 3), np.float32)}
    good = [ItemRow("f", 0.1 * k, 0.1 * (k + 1), "ab"[k % 2], "x", "y", "s") for k in range(4)]
    with pytest.raises(FeatureError, match=r"item row 5: onset -0.01 s is before the start of f"):
        abx.abx_error(features, [*good, ItemRow("f", -0.01, 0.05, "a", "x", "y", "s")])
    with pytest.raises(FeatureError, match=r"item row 5: offset 0.6 s is past the end of f \(0.5 s\)"):
        abx.abx_error(features, [*good, ItemRow("f", 0.4, 0.6, "a", "x", "y", "s")])
    abx.abx_error(features, [*good, ItemRow("f", 0.45, 0.52, "a", "x", "y", "s")])  # within the 2-frame tolerance
