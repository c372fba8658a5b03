"""``cpc compare objectives|modified`` on image recipes: every arm trained alike, scored by the linear probe.

Each arm trains with :func:`cpc.train.train_or_resume` into ``RUN_DIR/<arm>`` (a finished arm is
reused, an unfinished one resumed) and is scored by ``cpc probe image``'s linear probe on pooled
[z, c] at each ``--labels`` budget; ``RUN_DIR/report.md`` holds the table (with the last
validation's loss and its accuracy per row offset k) and ``curves.png``. The arms and the command
line are :mod:`cpc.eval.compare`'s.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from cpc.eval.compare import ARM_COMPARISONS
from cpc.eval.report import seconds_per_step, write_comparison_report

log = logging.getLogger(__name__)

IMAGE_LABELS = (1000, 10000)  # labelled training images of the image probe


def evaluate_image_arm(arm_dir: Path, checkpoint: Path, *, labels, max_images: int | None = None) -> dict:
    """One row of the image table: probe accuracy per label budget, the last validation, s/step."""
    from cpc.checkpoint import load_checkpoint
    from cpc.eval.report import read_metrics
    from cpc.image.probe import label_budget_accuracies
    from cpc.runtime import torch_threads

    config = load_checkpoint(checkpoint)["config"]
    with torch_threads(config["train"]["threads"] or None):  # the probe runs on the arm's training threads
        accuracies = label_budget_accuracies(
            checkpoint, labels, root=config["data"]["root"], limit_train=max_images, limit_test=max_images
        )
    _, valid = read_metrics(arm_dir / "metrics.jsonl")
    return {
        "probe": {str(count): accuracy for count, accuracy in accuracies.items()},  # JSON keys are strings
        "valid_loss": valid[-1]["loss"] if valid else None,
        "valid_accuracy_per_offset": valid[-1]["accuracy"] if valid else None,
        "seconds_per_step": seconds_per_step(arm_dir / "metrics.jsonl", config["train"]["batch_size"]),
    }


def run_image_compare(
    run_dir: str | os.PathLike,
    arms: dict[str, list[str]],
    *,
    recipe: str | os.PathLike,
    steps: int,
    overrides: list[str] | None = None,
    labels=IMAGE_LABELS,
    max_images: int | None = None,
    title: str = "Comparison",
) -> dict:
    """Train every arm of an image recipe (same images, steps, seed), probe each; write report.md, report.json, curves.png."""
    from cpc.config import load_config
    from cpc.eval.report import plot_curves_side_by_side
    from cpc.train import train_or_resume

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    settings = [*(overrides or []), f"train.max_steps={steps}", "train.progress=false"]
    labels = sorted(labels)
    rows = []
    for arm, arm_overrides in arms.items():
        arm_dir = run_dir / arm
        log.info(
            "[%s] training %s, %d steps (%s)", arm, recipe, steps, " ".join(arm_overrides) or "the recipe as it is"
        )
        checkpoint = train_or_resume(load_config(recipe, [*arm_overrides, *settings]), arm_dir, description=str(recipe))
        result_path = arm_dir / "result.json"
        evaluation = {"labels": labels, "max_images": max_images}
        if result_path.is_file() and all(
            json.loads(result_path.read_text()).get(key) == value for key, value in evaluation.items()
        ):
            rows.append({**json.loads(result_path.read_text()), "arm": arm})
            log.info("[%s] reusing %s", arm, result_path)
            continue
        row = {
            "arm": arm,
            "overrides": arm_overrides,
            **evaluation,
            **evaluate_image_arm(arm_dir, checkpoint, labels=labels, max_images=max_images),
        }
        result_path.write_text(json.dumps(row, indent=2) + "\n")
        log.info("[%s] probe %s, s/step %.3g", arm, row["probe"], row["seconds_per_step"] or float("nan"))
        rows.append(row)
    plot_curves_side_by_side(
        {row["arm"]: run_dir / row["arm"] / "metrics.jsonl" for row in rows}, run_dir / "curves.png"
    )
    config = load_config(recipe, overrides or [])
    predictor = config.model.predictor
    offsets = list(range(predictor.first_offset, predictor.first_offset + predictor.prediction_steps))
    summary = {
        "data": f"Fashion-MNIST ({config.data.root})",
        "recipe": str(recipe),
        "steps": steps,
        "seed": config.train.seed,
        "overrides": " ".join(overrides or []) or "none",
        "probe": f"labelled subsets of the first {max_images} training images, scored on the first {max_images} test images (not the protocol)"
        if max_images
        else "labelled subsets of the 60,000 training images, scored on the 10,000 test images",
    }
    legend = (
        "Probe: `cpc probe image`'s linear classifier on [z, c] mean-pooled over the patch grid, trained on a seeded subset of "
        "that many training images, test accuracy on the test images. valid loss: the last validation's loss (each objective's "
        "own, so compare it within a row's objective only); valid acc. k: the share of patches whose positive beats all N "
        "negatives, k rows ahead. s/step: median seconds per training step over the logged windows."
    )
    return write_comparison_report(
        run_dir,
        title,
        {"summary": summary, "offsets": offsets, "rows": rows},
        image_comparison_table(rows, labels, offsets),
        legend,
    )


def image_comparison_table(rows: list[dict], labels, offsets: list[int]) -> str:
    """Markdown: one row per arm; probe accuracy per label budget, last validation loss and accuracy per offset, s/step."""
    header = [
        *(f"probe {count:,} labels % ↑" for count in labels),
        "valid loss",
        *(f"valid acc. k={k}" for k in offsets),
        "s/step",
    ]
    lines = ["| arm | " + " | ".join(header) + " |", "|---|" + "---:|" * len(header)]
    for row in rows:
        per_offset = row["valid_accuracy_per_offset"] or [None] * len(offsets)
        cells = [f"{row['probe'][str(count)]:.1f}" if str(count) in row["probe"] else "–" for count in labels]
        cells += [
            _number(row["valid_loss"], 4),
            *(_number(accuracy, 3) for accuracy in per_offset),
            _number(row["seconds_per_step"], 3),
        ]
        lines.append(f"| {row['arm']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _number(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


# ----------------------------------------------------------------------------- cpc compare (cpc.eval.compare)

COMPARE_DESCRIPTION = """\
    cpc compare objectives --recipe image/fashion_mnist --steps 300 --run-dir runs/image-objectives [--labels 1000,10000]

Image recipes (Fashion-MNIST) train with :func:`cpc.train.train_or_resume` instead and
are scored by ``cpc probe image``'s linear probe on pooled [z, c] at each ``--labels`` budget
(test accuracy on the 10,000 test images); the table adds the last validation's loss and its
accuracy per row offset k.
"""
COMPARISONS = ARM_COMPARISONS
COMPARE_OPTIONS = {
    "--labels": dict(
        metavar="N,N", help=f"image: label budgets of the linear probe (default {','.join(map(str, IMAGE_LABELS))})"
    ),
    "--max-images": dict(
        type=int, help="image: probe only the first N training and N test images (a quick look, not the protocol)"
    ),
}


def compare_from_args(args: argparse.Namespace) -> int:
    """``cpc compare objectives|modified`` on an image recipe, from its parsed command line."""
    from cpc.cli import CommandError
    from cpc.eval.compare import arms_from_args

    arms, title = arms_from_args(args)
    if any(getattr(args, name, None) for name in ("corpus", "tasks", "seeds")):
        raise CommandError(
            f"--corpus, --tasks and --seeds are for speech recipes; {args.recipe} reads its images from data.root=DIR "
            f"and is scored by the linear probe (--labels)"
        )
    try:
        labels = [int(count) for count in args.labels.split(",")] if args.labels else list(IMAGE_LABELS)
    except ValueError:
        labels = []
    if not labels or min(labels) < 1:
        raise CommandError(
            f"--labels {args.labels}: expected a comma-separated list of positive numbers of labelled images"
        )
    if args.max_images is not None and not 1 <= max(labels) <= args.max_images:
        raise CommandError(
            f"--max-images {args.max_images}: expected at least the largest label budget ({max(labels)})"
        )
    run_image_compare(
        args.run_dir,
        arms,
        recipe=args.recipe,
        steps=args.steps,
        overrides=args.overrides,
        labels=labels,
        max_images=args.max_images,
        title=title,
    )
    return 0
