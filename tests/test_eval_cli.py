"""Bad input to `cpc probe` / `cpc abx`: one-line errors before any work, stale caches, few ABX cells, plain help."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from test_probes import _cli, write_labelled_corpus

from cpc.corpus.formats import ItemRow, load_corpus, read_item, write_item
from cpc.eval import abx, demo
from cpc.eval import cli as eval_cli
from cpc.features import FeatureError


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
    monkeypatch.setattr(eval_cli, "_load", lambda args: pytest.fail("the command started work before checking its arguments"))


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


def test_abx_without_warnings_on_enough_cells():
    rng = np.random.default_rng(1)
    features, items = {}, []
    for file_index in range(8):
        features[f"f{file_index}"] = rng.standard_normal((200, 4)).astype(np.float32)
        for k in range(40):
            items.append(ItemRow(f"f{file_index}", 0.05 * k, 0.05 * (k + 1), "abcd"[k % 4], "c", "ce"[k // 4 % 2], f"s{file_index % 2}"))
    result = abx.abx_error(features, items)
    assert result["within_cells"] >= abx.MIN_CELLS and result["across_cells"] >= abx.MIN_CELLS
    assert result["warnings"] == []


def test_abx_error_rejects_rows_outside_the_features():
    features = {"f": np.ones((50, 3), np.float32)}
    good = [ItemRow("f", 0.1 * k, 0.1 * (k + 1), "ab"[k % 2], "x", "y", "s") for k in range(4)]
    with pytest.raises(FeatureError, match=r"item row 5: onset -0.01 s is before the start of f"):
        abx.abx_error(features, [*good, ItemRow("f", -0.01, 0.05, "a", "x", "y", "s")])
    with pytest.raises(FeatureError, match=r"item row 5: offset 0.6 s is past the end of f \(0.5 s\)"):
        abx.abx_error(features, [*good, ItemRow("f", 0.4, 0.6, "a", "x", "y", "s")])
    abx.abx_error(features, [*good, ItemRow("f", 0.45, 0.52, "a", "x", "y", "s")])  # within the 2-frame tolerance
