"""The learners' walkthrough (cpc/walkthrough.py, docs/walkthrough.md) runs on the committed
sample, prints every stage's shape, points at lines that hold the equations, and draws a figure per stage."""

import re
from pathlib import Path

import pytest

import cpc
from cpc.walkthrough import main

PACKAGE = Path(cpc.__file__).resolve().parent


@pytest.mark.slow
def test_the_walkthrough_runs_on_the_sample(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--steps", "1"]) == 0
    printed = capsys.readouterr().out
    for stage, shape in [
        ("raw audio x", "(2, 20480)"),
        ("z = g_enc(x)", "(2, 128, 128)"),
        ("c = g_ar(z)", "(2, 128, 128)"),
        ("W_k c_t (eq. 3)", "(2, 128, 12, 128)"),
        ("negatives", "(2, 128, 12, 64)"),
        ("scores z_j^T W_k c_t", "(2, 128, 12, 65)"),
        ("InfoNCE loss (eq. 4)", "()"),
        ("accuracy per k", "(12,)"),
    ]:
        assert re.search(rf"^{re.escape(stage)}\s+{re.escape(shape)}\s", printed, re.M), stage
    # Each "file.py:line" it prints is a line of that file that holds what the stage names.
    expected = {
        "InfoNCE loss": "logsumexp",
        "scores z_j": "@ flat_latents.T",
        "W_k c_t": "self.maps(context)",
        "negatives": "step over the positive",
        "MI bound": "math.log",
        "nt_xent": "L =",
        "triplet": "L =",
        "binary": "L =",
        "margin": "L =",
    }
    for line in printed.splitlines():
        found = re.search(r"cpc/(\w+\.py):(\d+)", line)
        needle = next((text for key, text in expected.items() if line.strip().startswith(key)), None)
        if found and needle:
            source = (PACKAGE / found[1]).read_text().splitlines()[int(found[2]) - 1]
            assert needle in source, (line, source)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "1_waveform.png",
        "2_latents.png",
        "3_context.png",
        "4_predictions.png",
        "5_negatives.png",
        "6_scores.png",
        "7_accuracy_per_k.png",
    ]


def test_the_docs_point_at_the_script():
    text = (PACKAGE.parent / "docs" / "walkthrough.md").read_text()
    assert "python -m cpc.walkthrough" in text and "(B, T, K, 1+N)" in text
