"""The speech report: a markdown table beside the paper's numbers, and a PCA of frames by phone.

* :func:`results_table` turns result dicts (from :mod:`cpc.speech.evaluate`'s ``evaluate_*``) into
  one markdown row per feature set (ABX rows also give the number of cells behind each
  score), with the CPC paper's LibriSpeech-100 numbers (table 1 and
  section 3.1: phone 64.6 / 39.7 / 27.6 %, speaker 97.4 / 17.6 / 1.87 % for CPC / MFCC /
  random init) beside the measured ones. The paper's corpus is 100 h of real read speech with
  251 speakers, ours is usually a small synthetic one: the columns are there for scale, not
  as targets to equal.
* :func:`plot_projection` draws a 2-D PCA of frame features coloured by phone (the most
  frequent phones only, so colours stay readable). PCA rather than t-SNE: deterministic,
  seconds on thousands of frames, and linear, like the probes.
* :func:`write_report` writes the demo's report.json and report.md.

The plots of training curves every modality shares are in :mod:`cpc.eval.report`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cpc.eval.report import pyplot

__all__ = ["PAPER_LIBRISPEECH_100", "results_table", "plot_projection", "write_report"]

# van den Oord et al. 2018, table 1 (LibriSpeech-100, linear classifiers, percent accuracy).
PAPER_LIBRISPEECH_100 = {
    "phone": {"cpc": 64.6, "mfcc": 39.7, "random": 27.6},
    "speaker": {"cpc": 97.4, "mfcc": 17.6, "random": 1.87},
}


def _percent(key: str):
    return lambda result: None if result.get(key) is None else f"{result[key]:.1f}"


def _abx_cells(result: dict) -> str | None:
    """How many cells each ABX score averages: a score over a handful of cells is no measurement (cpc.speech.abx.MIN_CELLS)."""
    if "within_cells" not in result:
        return None
    return f"{result['within_cells']} / {result['across_cells']}"


# (task, cell text from the result, column title, paper column?) in table order.
_COLUMNS = [
    ("phone", _percent("accuracy"), "phone acc. % ↑", True),
    ("phone_hidden", _percent("accuracy"), "phone acc. 1-hidden % ↑", False),
    ("phone_ctc", _percent("per"), "phone PER % ↓", False),
    ("speaker", _percent("accuracy"), "speaker acc. % ↑", True),
    ("abx", _percent("within"), "ABX within % ↓", False),
    ("abx", _percent("across"), "ABX across % ↓", False),
    ("abx", _abx_cells, "ABX cells within / across", False),
]


def _row_name(result: dict) -> str:
    name = result["features"]
    return f"{name} ({result['layer']})" if result.get("layer") else name


def _task(result: dict) -> str:
    return "phone_hidden" if result["task"] == "phone" and result.get("hidden_layers") else result["task"]


def results_table(results: Sequence[dict]) -> str:
    """Markdown: one row per feature set (+ layer), measured columns with the paper's beside them."""
    rows: dict[str, dict] = {}
    for result in results:
        rows.setdefault(_row_name(result), {"features": result["features"]})[_task(result)] = result
    present = [column for column in _COLUMNS if any(column[0] in row for row in rows.values())]
    header, rule = ["features"], ["---"]
    for task, _, title, with_paper in present:
        header.append(title)
        rule.append("---:")
        if with_paper:
            header.append(f"{task} (paper, LS-100)")
            rule.append("---:")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    for name, row in rows.items():
        cells = [name]
        for task, text, _, with_paper in present:
            value = text(row[task]) if task in row else None
            cells.append("–" if value is None else value)
            if with_paper:
                paper = PAPER_LIBRISPEECH_100[task].get(row["features"])
                cells.append("–" if paper is None else f"{paper:g}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_projection(
    features: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    phone_names: Sequence[str],
    out: str | os.PathLike,
    *,
    title: str = "",
    max_frames: int = 4000,
    num_phones: int = 8,
    seed: int = 0,
) -> None:
    """2-D PCA of frame features (T, D) per utterance, the ``num_phones`` most frequent phones coloured."""
    from sklearn.decomposition import PCA

    from cpc.speech.features import align_to_labels

    plt = pyplot()
    pairs = [align_to_labels(features[u], labels[u], u)[:2] for u in sorted(features) if u in labels]
    frames = np.concatenate([x for x, _ in pairs])
    phones = np.concatenate([y for _, y in pairs])
    common = np.argsort(np.bincount(phones))[::-1][:num_phones]
    keep = np.flatnonzero(np.isin(phones, common))
    rng = np.random.default_rng(seed)
    if len(keep) > max_frames:
        keep = np.sort(rng.choice(keep, max_frames, replace=False))
    standardised = (frames - frames.mean(0)) / (frames.std(0) + 1e-8)
    points = PCA(n_components=2, random_state=seed).fit_transform(standardised[keep])
    figure, axis = plt.subplots(figsize=(5.5, 4.5))
    for phone in common:
        chosen = phones[keep] == phone
        axis.scatter(
            points[chosen, 0],
            points[chosen, 1],
            s=4,
            alpha=0.6,
            label=phone_names[phone] if phone < len(phone_names) else str(phone),
        )
    axis.set_title(title or "PCA of frame features")
    axis.legend(markerscale=3, fontsize=8, ncol=2)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)


def write_report(
    run_dir: str | os.PathLike,
    results: Sequence[dict],
    *,
    summary: dict,
    plots: Sequence[tuple[str, str]],
    warnings: Sequence[str] = (),
) -> tuple[Path, Path]:
    """report.json (summary + every result) and report.md (summary, table, plot links) in ``run_dir``.

    ``warnings`` (markdown, e.g. "the sample corpus was used") open report.md as quoted lines,
    above the title, and go into report.json's summary as ``warnings``.
    """
    run_dir = Path(run_dir)
    json_path, markdown_path = run_dir / "report.json", run_dir / "report.md"
    json_path.write_text(
        json.dumps({"summary": {**summary, "warnings": list(warnings)}, "results": list(results)}, indent=2) + "\n"
    )
    lines = [line for warning in warnings for line in (f"> {warning}", "")]
    lines += ["# CPC evaluation report", ""]
    lines += [f"- **{key}**: {value}" for key, value in summary.items()]
    lines += ["", "## Probes and ABX", "", results_table(results)]
    lines += [
        "Phone: linear softmax on single 10 ms frames, test-split frame accuracy. PER: linear CTC, greedy decoding. "
        "Speaker: linear classifier on mean-pooled 1.28 s crops. ABX: ZeroSpeech protocol, angular distance + DTW; "
        "cells: the (context, speaker(s), phone pair) scores each ABX number averages (fewer than 30: not a measurement). "
        "Paper numbers: van den Oord et al. 2018, LibriSpeech-100 (real speech, 251 speakers), for scale only.",
        "",
        "## Plots",
        "",
    ]
    lines += [f"![{caption}]({file})\n\n{caption}\n" for file, caption in plots]
    markdown_path.write_text("\n".join(lines))
    return markdown_path, json_path
