"""``cpc demo image``: Fashion-MNIST -> image-patch CPC training on CPU -> linear probes against baselines -> report.

    cpc demo image --run-dir runs/image [--steps N] [--recipe image/fashion_mnist] [--labels 1000 10000 60000] [key=value ...]

1. Data: the Fashion-MNIST idx files (``apt-get install dataset-fashion-mnist``); a clear
   one-line error when they are missing.
2. Training: the image recipe (``RUN_DIR/metrics.jsonl``, ``checkpoints/last.pt``); a finished
   run is reused, an unfinished one resumed.
3. Probes (cpc.image.probe): CPC features (pooled [z, c], and z and c alone), raw pixels, the
   random-init encoder of the same architecture, and the same encoder trained supervised, at
   each label budget, all scored on the 10,000 test images.
4. Report: ``report.md`` / ``report.json`` with the table, ``training.png``, accuracy per row
   offset (``accuracy_per_offset.png``) and the patch grid on one test image (``patch_grid.png``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from cpc.image.data import DEFAULT_ROOT, load_fashion_mnist
from cpc.image.probe import LABEL_BUDGETS, SUPERVISED_STEPS, image_probe

log = logging.getLogger(__name__)

DEFAULT_RECIPE = "image/fashion_mnist"

# cpc demo image (cpc.eval.demo)
DEMO_DESCRIPTION = """\
Image patches (paper section 3.2): `cpc demo image --run-dir DIR` trains the image recipe on
Fashion-MNIST and compares linear probes of its features with pixels, a random-init and a
supervised encoder at 1k / 10k / 60k labels (cpc.image.demo).
"""
DEMO_OPTIONS = {
    "--labels": dict(
        type=int,
        nargs="+",
        help=f"image: labelled training images per probe (default {' '.join(map(str, LABEL_BUDGETS))})",
    ),
}


def demo_from_args(args, overrides: list[str]) -> None:
    """``cpc demo image`` from its parsed command line."""
    run_image_demo(
        args.run_dir,
        steps=args.steps,
        recipe=args.recipe or DEFAULT_RECIPE,
        overrides=overrides,
        labels=args.labels or LABEL_BUDGETS,
    )


def plot_patch_grid(
    image: np.ndarray, out: Path, *, padded_size: int = 32, patch_size: int = 8, stride: int = 4
) -> None:
    """One test image with the reflect padding and every patch's outline (7 x 7, 50 % overlap)."""
    from cpc.eval.report import pyplot

    plt = pyplot()
    border = (padded_size - image.shape[0]) // 2
    padded = np.pad(
        image,
        ((border, padded_size - image.shape[0] - border), (border, padded_size - image.shape[1] - border)),
        mode="reflect",
    )
    grid = (padded_size - patch_size) // stride + 1
    figure, axes = plt.subplots(1, 2, figsize=(9, 4.4))
    axes[0].imshow(padded, cmap="gray")
    axes[0].add_patch(
        plt.Rectangle((border - 0.5, border - 0.5), image.shape[1], image.shape[0], fill=False, color="yellow", lw=1.5)
    )
    for i in range(grid):
        for j in range(grid):
            colour = plt.cm.viridis(i / max(grid - 1, 1))
            axes[0].add_patch(
                plt.Rectangle(
                    (j * stride - 0.5, i * stride - 0.5), patch_size, patch_size, fill=False, color=colour, lw=0.6
                )
            )
    axes[0].set_title(f"reflect-padded {padded_size}x{padded_size}; yellow: the image; patches by row")
    tiles = np.ones((grid * (patch_size + 1), grid * (patch_size + 1))) * padded.max()
    for i in range(grid):
        for j in range(grid):
            tiles[
                i * (patch_size + 1) : i * (patch_size + 1) + patch_size,
                j * (patch_size + 1) : j * (patch_size + 1) + patch_size,
            ] = padded[i * stride : i * stride + patch_size, j * stride : j * stride + patch_size]
    axes[1].imshow(tiles, cmap="gray")
    axes[1].set_title(f"the {grid}x{grid} grid of {patch_size}x{patch_size} patches")
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)


ROWS = (
    ("cpc", "both", "CPC [z, c]"),
    ("cpc", "encoder", "CPC z"),
    ("cpc", "context", "CPC c"),
    ("pixels", None, "raw pixels"),
    ("random", "both", "random-init [z, c]"),
    ("supervised", None, "supervised, same encoder + context"),
)


def image_table(results: list[dict], budgets) -> str:
    header = "| features | dims | " + " | ".join(f"{n:,} labels" for n in budgets) + " |"
    lines = [header, "|" + "---|" * (2 + len(budgets))]
    for kind, layer, label in ROWS:
        cells = {r["labels"]: r for r in results if r["kind"] == kind and r["layer"] == layer}
        if not cells:
            continue
        dims = next(iter(cells.values()))["dimensions"]
        lines.append(
            f"| {label} | {dims} | "
            + " | ".join(f"{cells[n]['accuracy']:.1f} %" if n in cells else "–" for n in budgets)
            + " |"
        )
    return "\n".join(lines) + "\n"


def run_image_demo(
    run_dir,
    *,
    steps: int | None = None,
    recipe: str = DEFAULT_RECIPE,
    overrides: list[str] | None = None,
    labels=LABEL_BUDGETS,
    root: str = DEFAULT_ROOT,
    progress: bool = True,
    limit_train: int | None = None,
    limit_test: int | None = None,
    supervised_steps: int = SUPERVISED_STEPS,
) -> dict:
    """The whole demo; ``limit_train`` / ``limit_test`` (first N images of each split) and ``supervised_steps`` are for quick looks and tests."""
    from cpc.checkpoint import load_checkpoint

    started = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    overrides = _overrides(root, overrides, steps=steps, progress=progress)

    log.info("[1/4] data")
    test_images, _ = load_fashion_mnist(root, "test", limit=1)  # fails early, with the install line, when missing

    log.info("[2/4] training")
    checkpoint, training_seconds = _train(run_dir, recipe, overrides)

    log.info("[3/4] probes")
    results = _probe_rows(
        checkpoint,
        labels,
        root=root,
        limit_train=limit_train,
        limit_test=limit_test,
        supervised_steps=supervised_steps,
    )

    log.info("[4/4] report")
    config = load_checkpoint(checkpoint)["config"]
    offsets = _plot_run(run_dir, config, test_images[0])
    summary = {
        "data": _data_summary(root, limit_train, limit_test),
        "recipe": recipe,
        "overrides": " ".join(overrides),
        "checkpoint": str(checkpoint),
        **_training_summary(run_dir / "metrics.jsonl", offsets, training_seconds),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    _write_report(run_dir, summary, results, supervised_steps)
    print((run_dir / "report.md").read_text())
    return {"summary": summary, "results": results}


def _overrides(root: str, overrides: list[str] | None, *, steps: int | None, progress: bool) -> list[str]:
    """The recipe overrides the demo trains with: the data folder first, so the caller's own settings win."""
    overrides = [f"data.root={root}", *(overrides or [])]
    if steps is not None:
        overrides.append(f"train.max_steps={steps}")
    if not progress:
        overrides.append("train.progress=false")
    return overrides


def _train(run_dir: Path, recipe: str, overrides: list[str]) -> tuple[Path, float | str]:
    """Train (or reuse / resume) the recipe; -> (checkpoint, the training seconds for the report)."""
    from cpc.config import load_config
    from cpc.train import train_or_resume

    training_started = time.perf_counter()
    reused = (run_dir / "checkpoints" / "last.pt").exists()
    checkpoint = train_or_resume(load_config(recipe, overrides), run_dir, description=str(recipe))
    training_seconds = time.perf_counter() - training_started
    # A reused run's seconds would time a checkpoint load, not training.
    return checkpoint, round(training_seconds, 1) if not reused else "reused an existing checkpoint (or resumed it)"


def _probe_rows(checkpoint: Path, labels, **options) -> list[dict]:
    """Every ROWS feature set at every label budget; ``options`` go to image_probe."""
    cache: dict = {}  # pooled features, shared by the budgets and by the layers of one model
    results = []
    for count in labels:
        for kind, layer, label in ROWS:
            features = str(checkpoint) if kind == "cpc" else kind
            result = image_probe(
                features, labels=count, layer=layer or "both", architecture=str(checkpoint), cache=cache, **options
            )
            results.append({**result, "kind": kind, "name": label})
            log.info("%s, %d labels: %.2f %%", label, result["labels"], result["accuracy"])
    return results


def _plot_run(run_dir: Path, config: dict, image: np.ndarray) -> list[int]:
    """The training curves, accuracy per row offset and the patch grid on ``image``; -> the predicted offsets."""
    from cpc.eval.report import plot_accuracy_per_step, plot_training

    offsets = list(
        range(
            config["model"]["predictor"]["first_offset"],
            config["model"]["predictor"]["first_offset"] + config["model"]["predictor"]["prediction_steps"],
        )
    )
    metrics = run_dir / "metrics.jsonl"
    plot_training(metrics, run_dir / "training.png")
    plot_accuracy_per_step(metrics, run_dir / "accuracy_per_offset.png", offsets=offsets, xlabel="rows ahead (k)")
    plot_patch_grid(
        image,
        run_dir / "patch_grid.png",
        padded_size=config["data"]["padded_size"],
        patch_size=config["data"]["patch_size"],
        stride=config["data"]["patch_stride"],
    )
    return offsets


def _data_summary(root: str, limit_train: int | None, limit_test: int | None) -> str:
    if limit_train is None and limit_test is None:
        return f"Fashion-MNIST ({root}): 60,000 train / 10,000 test images"
    return f"Fashion-MNIST slice: first {limit_train or 60000} train / {limit_test or 10000} test images (not the protocol)"


def _training_summary(metrics: Path, offsets: list[int], training_seconds: float | str) -> dict:
    """The report's lines on training: steps, the last losses and validation accuracy per offset."""
    from cpc.eval.report import read_metrics

    train_records, valid_records = read_metrics(metrics)
    return {
        "training_steps": train_records[-1]["step"] if train_records else None,
        "final_train_loss": round(train_records[-1]["loss"], 4) if train_records else None,
        "final_valid_loss": round(valid_records[-1]["loss"], 4) if valid_records else None,
        "final_valid_accuracy_per_offset": dict(zip(offsets, [round(a, 3) for a in valid_records[-1]["accuracy"]]))
        if valid_records
        else None,
        "training_seconds": training_seconds,
    }


def _write_report(run_dir: Path, summary: dict, results: list[dict], supervised_steps: int) -> None:
    """``report.json`` and ``report.md``: the summary, the probe table and the plots."""
    import json

    (run_dir / "report.json").write_text(json.dumps({"summary": summary, "results": results}, indent=2) + "\n")
    lines = ["# Image-patch CPC on Fashion-MNIST", ""] + [f"- **{key}**: {value}" for key, value in summary.items()]
    lines += [
        "",
        "## Linear probe, test accuracy",
        "",
        image_table(results, sorted({r["labels"] for r in results})),
        "Linear classifier (logistic regression, Adam) on standardised frozen features, mean-pooled over the 7 x 7 patch grid; "
        "trained on a seeded subset of the training images, scored on the test images. Supervised: the same encoder and context trained end "
        f"to end with labels on the same subset ({supervised_steps} Adam steps of 64 images). Paper (ImageNet, ResNet-101): CPC 48.7 % top-1.",
        "",
        "## Plots",
        "",
    ]
    for file, caption in (
        ("training.png", "Training curves: InfoNCE loss, prediction accuracy and MI bound"),
        ("accuracy_per_offset.png", "Prediction accuracy against rows ahead k"),
        ("patch_grid.png", "The patch grid on one test image"),
    ):
        lines.append(f"![{caption}]({file})\n\n{caption}\n")
    (run_dir / "report.md").write_text("\n".join(lines))
