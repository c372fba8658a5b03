"""Reports: a markdown table beside the paper's numbers, JSON, and matplotlib plots.

* :func:`results_table` turns result dicts (from :mod:`cpc.eval.cli`'s ``evaluate_*``) into
  one markdown row per feature set (ABX rows also give the number of cells behind each
  score), with the CPC paper's LibriSpeech-100 numbers (table 1 and
  section 3.1: phone 64.6 / 39.7 / 27.6 %, speaker 97.4 / 17.6 / 1.87 % for CPC / MFCC /
  random init) beside the measured ones. The paper's corpus is 100 h of real read speech with
  251 speakers, ours is usually a small synthetic one: the columns are there for scale, not
  as targets to equal.
* :func:`plot_training` (loss, mean per-step accuracy, mean MI bound against step, train and
  validation) and :func:`plot_accuracy_per_step` (accuracy against k) read ``metrics.jsonl``.
* :func:`plot_projection` draws a 2-D PCA of frame features coloured by phone (the most
  frequent phones only, so colours stay readable). PCA rather than t-SNE: deterministic,
  seconds on thousands of frames, and linear, like the probes.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "PAPER_LIBRISPEECH_100",
    "results_table",
    "read_metrics",
    "plot_training",
    "plot_accuracy_per_step",
    "plot_projection",
    "write_report",
    "seconds_per_step",
    "write_comparison_report",
    "plot_curves_side_by_side",
]

# van den Oord et al. 2018, table 1 (LibriSpeech-100, linear classifiers, percent accuracy).
PAPER_LIBRISPEECH_100 = {
    "phone": {"cpc": 64.6, "mfcc": 39.7, "random": 27.6},
    "speaker": {"cpc": 97.4, "mfcc": 17.6, "random": 1.87},
}


def _percent(key: str):
    return lambda result: None if result.get(key) is None else f"{result[key]:.1f}"


def _abx_cells(result: dict) -> str | None:
    """How many cells each ABX score averages: a score over a handful of cells is no measurement (cpc.eval.abx.MIN_CELLS)."""
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


# ----------------------------------------------------------------------------- plots


def read_metrics(path: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """metrics.jsonl -> (training records, validation records)."""
    train, valid = [], []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            (valid if record.get("split") == "valid" else train).append(record)
    return train, valid


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on a server
    import matplotlib.pyplot as plt

    return plt


def plot_training(metrics_path: str | os.PathLike, out: str | os.PathLike) -> None:
    """Loss, mean prediction accuracy and mean MI bound (nats) against step; train and validation."""
    plt = pyplot()
    train, valid = read_metrics(metrics_path)
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for records, style, label in ((train, "-", "train"), (valid, "o--", "valid")):
        if not records:
            continue
        steps = [r["step"] for r in records]
        axes[0].plot(steps, [r["loss"] for r in records], style, label=label)
        axes[1].plot(steps, [np.mean(r["accuracy"]) for r in records], style, label=label)
        if all("mutual_information" in r for r in records):  # only InfoNCE and NT-Xent are MI bounds
            axes[2].plot(steps, [np.mean(r["mutual_information"]) for r in records], style, label=label)
    for axis, title in zip(
        axes, ("InfoNCE loss", "prediction accuracy (mean over k)", "MI lower bound (nats, mean over k)")
    ):
        axis.set_title(title)
        axis.set_xlabel("step")
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)


def plot_accuracy_per_step(
    metrics_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    offsets: Sequence[int] | None = None,
    xlabel: str = "latent steps in the future (k)",
) -> None:
    """Prediction accuracy against steps ahead k (the paper's figure 3), last train and validation records.

    ``offsets``: the k of each accuracy entry (default 1..K; image recipes start at 2 rows)."""
    plt = pyplot()
    train, valid = read_metrics(metrics_path)
    figure, axis = plt.subplots(figsize=(5.5, 3.6))
    for records, style, label in ((train, "-o", "train"), (valid, "--s", "valid")):
        if records:
            accuracy = records[-1]["accuracy"]
            ks = list(offsets) if offsets is not None else list(range(1, len(accuracy) + 1))
            axis.plot(ks, accuracy, style, label=f"{label} (step {records[-1]['step']})")
    axis.set_xlabel(xlabel)
    axis.set_ylabel("prediction accuracy")
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)


def plot_curves_side_by_side(runs: dict[str, str | os.PathLike], out: str | os.PathLike) -> None:
    """Training curves of several runs (``cpc compare``): one panel per run with its own loss
    (train and validation; each objective's loss has its own scale), and a last panel with every
    run's mean prediction accuracy over k on one axis, the quantity they share."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(runs) + 1, figsize=(3.2 * (len(runs) + 1), 3.2), squeeze=False)
    for axis, (label, path) in zip(axes[0], runs.items()):
        train, valid = read_metrics(path)
        for records, style, split in ((train, "-", "train"), (valid, "o--", "valid")):
            if records:
                axis.plot([r["step"] for r in records], [r["loss"] for r in records], style, label=split)
                if split == "train":
                    mean_accuracy = [np.mean([a for a in r["accuracy"] if a is not None] or [np.nan]) for r in records]
                    axes[0][-1].plot([r["step"] for r in records], mean_accuracy, label=label)
        axis.set_title(f"{label}: loss")
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    axes[0][-1].set_title("train accuracy (mean over k)")
    axes[0][-1].set_xlabel("step")
    axes[0][-1].set_ylim(0, 1)
    axes[0][-1].grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)


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


# ----------------------------------------------------------------------------- comparisons (cpc compare)


def seconds_per_step(metrics_path: Path, examples_per_step: int) -> float | None:
    """Median over the logged training windows of seconds per step."""
    train, _ = read_metrics(metrics_path)
    rates = [examples_per_step / record["samples_per_s"] for record in train if record.get("samples_per_s")]
    return statistics.median(rates) if rates else None


def write_comparison_report(
    run_dir: Path, title: str, report: dict, table: str, legend: str, *, warning: str | None = None
) -> dict:
    """RUN_DIR/report.json (``report``) and report.md: the title, the summary's items, the table, the legend and
    the curves; prints report.md and returns ``report``."""
    (run_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"> {warning}", ""] if warning else []
    lines += [
        f"# {title}",
        "",
        *(f"- **{key}**: {value}" for key, value in report["summary"].items()),
        "",
        table,
        "",
        legend,
        "",
        "![Training curves side by side](curves.png)",
        "",
    ]
    (run_dir / "report.md").write_text("\n".join(lines))
    print((run_dir / "report.md").read_text())
    return report
