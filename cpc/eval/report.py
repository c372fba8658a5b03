"""Reports every modality shares: training curves from ``metrics.jsonl``, and the comparison report.

* :func:`plot_training` (loss, mean per-step accuracy, mean MI bound against step, train and
  validation) and :func:`plot_accuracy_per_step` (accuracy against k) read ``metrics.jsonl``.
* :func:`plot_curves_side_by_side`, :func:`seconds_per_step` and :func:`write_comparison_report`
  make the report of ``cpc compare``.

The speech table beside the paper's numbers is :mod:`cpc.speech.report`.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "read_metrics",
    "plot_training",
    "plot_accuracy_per_step",
    "seconds_per_step",
    "write_comparison_report",
    "plot_curves_side_by_side",
]

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
