"""``cpc compare``: train variants of one recipe on the same corpus, steps and seed, then probe each.

    cpc compare objectives --recipe speech/tiny --steps 300 --run-dir runs/objectives [--corpus DIR] [--only infonce,margin]
    cpc compare objectives --recipe image/fashion_mnist --steps 300 --run-dir runs/image-objectives [--labels 1000,10000]
    cpc compare modified --recipe speech/paper --steps 100 --run-dir runs/modified [--tasks phone]  [key=value ...]
    cpc compare modified --recipe speech/tiny --steps 2000 --run-dir runs/lstm --only recipe,lstm_context --seeds 0,1,2
    cpc compare text --recipe text/books --steps 1500 --run-dir runs/text-compare --seeds 0,1,2   (cpc.text.compare: the probe suite)

* ``objectives``: one run per contrastive objective (``model.loss.name``, cpc.objectives), each
  with the recipe's number and scope of negatives and every objective's own defaults
  (temperature, margins, mining): none is tuned more than another.
* ``modified``: "modified CPC" (CPC_audio) toggles one change at a time against the recipe: a
  transformer predictor, an LSTM context, channel norm in the encoder.

Every arm trains with :func:`cpc.speech.demo.train_model` into ``RUN_DIR/<arm>`` (a finished
arm is reused, an unfinished one resumed) and is evaluated with the speech demo's functions
(cpc.speech.evaluate): linear phone probe, speaker probe, ABX within/across. ``RUN_DIR/report.md``
holds one table (those scores, s/step and the last validation accuracy) and one plot,
``curves.png``: the training curves side by side. s/step is the median over the logged windows
of seconds per step (1 / steps per second), so a window that also ran validation does not
dominate it; runs in parallel on a shared machine slow each other.

``--seeds 0,1,2`` (speech) trains every arm once per training seed (``train.seed``: the model's
initialisation, the windows drawn, the negatives) into ``RUN_DIR/<arm>/seed-<S>``; the corpus,
probes and ABX items stay the same. The report then gives each arm's mean and range (min–max)
over its seeds above the per-seed rows. On small CPU runs the spread between seeds is as large
as most single changes (docs/results.md, "Seeds"), so a comparison with one seed per arm says little.
The runs of one seed are independent: two processes with ``--seeds 1`` and ``--seeds 2`` into the
same RUN_DIR run in parallel, and a last call with ``--seeds 1,2`` reuses both and writes the
joint report.

Image recipes (Fashion-MNIST) train with :func:`cpc.train.train_or_resume` instead and
are scored by ``cpc probe image``'s linear probe on pooled [z, c] at each ``--labels`` budget
(test accuracy on the 10,000 test images); the table adds the last validation's loss and its
accuracy per row offset k.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
from pathlib import Path

from cpc.eval.report import seconds_per_step, write_comparison_report

log = logging.getLogger(__name__)

OBJECTIVES = ("infonce", "nt_xent", "margin", "triplet", "binary")
TASKS = ("phone", "speaker", "abx")
IMAGE_LABELS = (1000, 10000)  # labelled training images of the image probe
COLUMNS = [
    ("phone", "phone acc. % ↑"),
    ("speaker", "speaker acc. % ↑"),
    ("abx_within", "ABX within % ↓"),  # speech scores, as shown
    ("abx_across", "ABX across % ↓"),
    ("seconds_per_step", "s/step"),
    ("valid_accuracy", "valid acc. (mean k)"),
]


def objective_arms(recipe: str | os.PathLike) -> dict[str, list[str]]:
    """One arm per objective. Naming another loss starts ``model.loss`` from that objective's
    defaults (cpc.config), so the recipe's negatives are set again: the same candidates for all."""
    from cpc.config import load_config

    loss = load_config(recipe).model.loss
    shared = [
        f"model.loss.num_negatives={loss.num_negatives}",
        f"model.loss.negative_scope={getattr(loss.negative_scope, 'value', loss.negative_scope)}",
    ]
    return {name: [f"model.loss.name={name}", *shared] for name in OBJECTIVES}


def modified_arms(recipe: str | os.PathLike) -> dict[str, list[str]]:
    """The recipe, and the recipe with each of CPC_audio's changes toggled on its own: the
    transformer predictor in place of linear W_k, LSTM in place of GRU, channel norm in the
    encoder (added where the recipe has none, removed where it has it, as speech/tiny)."""
    from cpc.config import load_config

    config = load_config(recipe)
    predictor, model = config.model.predictor, config.model
    keep = [
        f"model.predictor.prediction_steps={predictor.prediction_steps}",
        f"model.predictor.first_offset={predictor.first_offset}",
        f"model.predictor.init={getattr(predictor.init, 'value', predictor.init)}",
    ]
    arms = {"recipe": []}
    if predictor.name == "linear":
        arms["transformer_predictor"] = ["model.predictor.name=transformer", *keep]
    if model.context.name == "gru":
        arms["lstm_context"] = ["model.context.name=lstm"]
    if model.encoder.name == "conv":
        has_norm = getattr(model.encoder.norm, "value", model.encoder.norm) == "channel"
        arms["no_channel_norm" if has_norm else "channel_norm"] = [
            f"model.encoder.norm={'none' if has_norm else 'channel'}"
        ]
    return arms


def run_compare(
    run_dir: str | os.PathLike,
    arms: dict[str, list[str]],
    *,
    recipe: str | os.PathLike,
    steps: int,
    corpus=None,
    overrides: list[str] | None = None,
    tasks=TASKS,
    title: str = "Comparison",
    progress: bool = False,
    seeds: list[int] | None = None,
) -> dict:
    """Train and evaluate every arm (same corpus, steps, seed); write report.md, report.json, curves.png.

    With ``seeds``, every arm trains once per training seed (``train.seed``) into ``RUN_DIR/<arm>/seed-<S>``, and the
    report gives each arm's mean and range over the seeds above the per-seed rows."""
    from cpc.checkpoint import load_checkpoint
    from cpc.config import load_config
    from cpc.eval.report import plot_curves_side_by_side, read_metrics
    from cpc.speech.corpus.formats import load_corpus
    from cpc.speech.demo import find_corpus, train_model
    from cpc.speech.evaluate import evaluate_abx, evaluate_phone, evaluate_speaker
    from cpc.speech.features import FeatureCache

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    corpus_root, warning = find_corpus(corpus, 1.0)
    data = load_corpus(corpus_root)
    settings = [*(overrides or []), f"train.max_steps={steps}", "train.progress=false"]
    runs = (
        [(arm, arm_overrides, None) for arm, arm_overrides in arms.items()]
        if seeds is None
        else [
            (arm, [*arm_overrides, f"train.seed={seed}"], seed) for arm, arm_overrides in arms.items() for seed in seeds
        ]
    )
    rows = []
    for arm, arm_overrides, seed in runs:
        arm_dir, name = (run_dir / arm, arm) if seed is None else (run_dir / arm / f"seed-{seed}", f"{arm}/seed-{seed}")
        log.info(
            "[%s] training %s, %d steps (%s)", name, recipe, steps, " ".join(arm_overrides) or "the recipe as it is"
        )
        checkpoint = train_model(arm_dir, corpus_root, recipe, [*arm_overrides, *settings])
        config = load_checkpoint(checkpoint)["config"]
        result_path = arm_dir / "result.json"
        if result_path.is_file() and json.loads(result_path.read_text()).get("tasks") == list(tasks):
            # the folder's name now (it may be a link to another run)
            rows.append({**json.loads(result_path.read_text()), "arm": arm, **({} if seed is None else {"seed": seed})})
            log.info("[%s] reusing %s", name, result_path)
            continue
        cache = FeatureCache(arm_dir / "features")
        options = dict(layer="context", architecture=str(checkpoint), cache=cache, progress=progress)
        scores = {}
        if "phone" in tasks:
            scores["phone"] = evaluate_phone(data, str(checkpoint), **options)["accuracy"]
        if "speaker" in tasks:
            scores["speaker"] = evaluate_speaker(data, str(checkpoint), **options)["accuracy"]
        item_file = corpus_root / "abx" / "test.item"
        if "abx" in tasks and item_file.is_file():
            abx = evaluate_abx(data, str(checkpoint), item_file, **options)
            scores.update(abx_within=abx["within"], abx_across=abx["across"])
        _, valid = read_metrics(arm_dir / "metrics.jsonl")
        last_valid = [a for a in valid[-1]["accuracy"] if a is not None] if valid else []
        row = {
            "arm": arm,
            **({} if seed is None else {"seed": seed}),
            "overrides": arm_overrides,
            "tasks": list(tasks),
            **scores,
            "seconds_per_step": seconds_per_step(arm_dir / "metrics.jsonl", config["train"]["batch_size"]),
            "valid_accuracy": sum(last_valid) / len(last_valid) if last_valid else None,
            "valid_loss": valid[-1]["loss"] if valid else None,
        }
        result_path.write_text(json.dumps(row, indent=2) + "\n")
        log.info(
            "[%s] %s", name, ", ".join(f"{key} {value:.3g}" for key, value in row.items() if isinstance(value, float))
        )
        rows.append(row)
    plot_curves_side_by_side(
        {_run_name(row): run_dir / _run_name(row) / "metrics.jsonl" for row in rows}, run_dir / "curves.png"
    )
    summary = {
        "corpus": str(corpus_root),
        "recipe": str(recipe),
        "steps": steps,
        "seed": load_config(recipe, overrides or []).train.seed if seeds is None else ", ".join(map(str, seeds)),
        "overrides": " ".join(overrides or []) or "none",
    }
    legend = (
        "Phone: linear probe on single 10 ms context frames (test-split accuracy). Speaker: linear probe on mean-pooled 1.28 s "
        "crops. ABX: ZeroSpeech protocol, angular distance + DTW. s/step: median seconds per training step over the logged "
        "windows. valid acc.: mean over k of the last validation's prediction accuracy (the positive beats all N negatives)."
    )
    if seeds is None:
        return write_comparison_report(
            run_dir, title, {"summary": summary, "rows": rows}, comparison_table(rows), legend, warning=warning
        )
    per_arm = seed_summary(rows)
    table = (
        f"Mean over the {len(seeds)} training seeds, the range (min–max) in brackets:\n\n"
        + seed_summary_table(per_arm)
        + "\nEach seed:\n\n"
        + comparison_table(rows)
    )
    return write_comparison_report(
        run_dir, title, {"summary": summary, "arms": per_arm, "rows": rows}, table, legend, warning=warning
    )


def _run_name(row: dict) -> str:
    """A row's folder under RUN_DIR: the arm, or arm/seed-S."""
    return row["arm"] if row.get("seed") is None else f"{row['arm']}/seed-{row['seed']}"


def seed_summary(rows: list[dict]) -> dict[str, dict]:
    """Per arm (in order), per score: mean, min, max over the arm's seeds -> {arm: {"seeds": [...], score: {...}}}."""
    arms: dict[str, dict] = {}
    for row in rows:
        arms.setdefault(row["arm"], {"seeds": []})["seeds"].append(row["seed"])
    for arm, summary in arms.items():
        for key, _ in COLUMNS:
            values = [row[key] for row in rows if row["arm"] == arm and row.get(key) is not None]
            if values:
                summary[key] = {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}
    return arms


def seed_summary_table(arms: dict[str, dict]) -> str:
    """Markdown: one row per arm, each score as "mean (min–max)" over its seeds."""
    columns = [(key, title) for key, title in COLUMNS if any(key in summary for summary in arms.values())]
    lines = [
        "| arm | seeds | " + " | ".join(title for _, title in columns) + " |",
        "|---|---|" + "---:|" * len(columns),
    ]
    for arm, summary in arms.items():
        cells = [
            "–"
            if key not in summary
            else f"{_score(key, summary[key]['mean'])} ({_score(key, summary[key]['min'])}–{_score(key, summary[key]['max'])})"
            for key, _ in columns
        ]
        lines.append(f"| {arm} | {len(summary['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _score(key: str, value: float) -> str:
    return f"{value:.1f}" if key in ("phone", "speaker", "abx_within", "abx_across") else f"{value:.3f}"


def comparison_table(rows: list[dict]) -> str:
    """Markdown: one row per arm (per arm and seed where the rows have seeds)."""
    present = [(key, title) for key, title in COLUMNS if any(row.get(key) is not None for row in rows)]
    seeded = any(row.get("seed") is not None for row in rows)
    lines = [
        "| arm | " + ("seed | " if seeded else "") + " | ".join(title for _, title in present) + " |",
        "|---|" + ("---:|" if seeded else "") + "---:|" * len(present),
    ]
    for row in rows:
        cells = ([str(row.get("seed", "–"))] if seeded else []) + [
            "–" if row.get(key) is None else _score(key, row[key]) for key, _ in present
        ]
        lines.append(f"| {row['arm']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- image recipes


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


# ----------------------------------------------------------------------------- CLI


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="train variants of a recipe on the same data and compare them (report.md)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "what",
        choices=("objectives", "modified", "text"),
        help="objectives: one run per contrastive loss; modified: CPC_audio's variants; text: the text recipe's variants (cpc.text.compare)",
    )
    parser.add_argument("--run-dir", required=True, help="output folder: one sub-folder per arm, report.md, curves.png")
    parser.add_argument("--recipe", default="speech/tiny", help="shipped recipe name or YAML (default speech/tiny)")
    parser.add_argument("--steps", type=int, required=True, help="training steps of every arm")
    parser.add_argument(
        "--corpus", help="corpus folder (default: the 1-hour synthetic corpus, built once; else the committed sample)"
    )
    # Comma-separated, so key=value overrides may follow them.
    parser.add_argument("--only", metavar="ARM,ARM", help="run only these arms, e.g. infonce,margin")
    parser.add_argument(
        "--tasks", metavar="TASK,TASK", help=f"speech: evaluations among {','.join(TASKS)} (default: all)"
    )
    parser.add_argument(
        "--seeds",
        metavar="S,S",
        help="speech and text: train every arm once per seed (train.seed), report mean and range, e.g. 0,1,2",
    )
    parser.add_argument(
        "--labels",
        metavar="N,N",
        help=f"image: label budgets of the linear probe (default {','.join(map(str, IMAGE_LABELS))})",
    )
    parser.add_argument(
        "--max-images",
        type=int,
        help="image: probe only the first N training and N test images (a quick look, not the protocol)",
    )
    parser.add_argument(
        "--suite-size",
        type=int,
        default=1000,
        help="text: examples per probe-suite task, MR-like included (default 1000)",
    )
    parser.add_argument("--folds", type=int, default=5, help="text: cross-validation folds of the suite (default 5)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every arm")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from cpc.cli import CommandError

    if args.steps < 1:
        raise CommandError(f"--steps must be >= 1, got {args.steps}")
    from cpc.config import load_config

    modality = load_config(args.recipe).data.name
    if (args.what == "text") != (modality == "text"):
        raise CommandError(
            f"cpc compare {args.what}: {args.recipe} is a {modality} recipe; `cpc compare text` takes text recipes (text/books), "
            "objectives and modified take speech or image recipes"
        )
    if modality == "text":
        return _main_text(args)
    if modality not in ("speech", "fashion_mnist"):
        raise CommandError(
            f"cpc compare: {args.recipe} is neither a speech nor an image recipe; the comparison evaluates with the speech "
            f"probes and ABX or the image probe (for other recipes, train each objective with `cpc train RECIPE model.loss.name=...`)"
        )
    arms = objective_arms(args.recipe) if args.what == "objectives" else modified_arms(args.recipe)
    only = args.only.split(",") if args.only else list(arms)
    unknown = sorted(set(only) - set(arms))
    if unknown:
        raise CommandError(f"--only {','.join(unknown)}: not an arm of '{args.what}' (arms: {', '.join(arms)})")
    arms = {name: value for name, value in arms.items() if name in only}
    title = (
        "Contrastive objectives compared" if args.what == "objectives" else "Modified CPC (CPC_audio) variants compared"
    )
    if modality == "fashion_mnist":
        return _main_image(args, arms, title)
    if args.labels or args.max_images:
        raise CommandError("--labels and --max-images set the image probe; speech recipes take --tasks")
    tasks = tuple(args.tasks.split(",")) if args.tasks else TASKS
    if set(tasks) - set(TASKS):
        raise CommandError(f"--tasks {args.tasks}: expected a comma-separated list among {', '.join(TASKS)}")
    seeds = _seeds(args.seeds, args.overrides) if args.seeds is not None else None
    run_compare(
        args.run_dir,
        arms,
        recipe=args.recipe,
        steps=args.steps,
        corpus=args.corpus,
        overrides=args.overrides,
        tasks=tasks,
        title=title,
        seeds=seeds,
    )
    return 0


def _seeds(text: str, overrides: list[str]) -> list[int]:
    """--seeds S,S: distinct non-negative integers, in order; the seed is then not also an override."""
    from cpc.cli import CommandError

    try:
        seeds = [int(seed) for seed in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) < len(seeds):
        raise CommandError(f"--seeds {text}: expected distinct non-negative integers, comma-separated, e.g. 0,1,2")
    if any(override.split("=", 1)[0].strip() == "train.seed" for override in overrides):
        raise CommandError("--seeds sets train.seed for each run; drop the train.seed= override")
    return seeds


def _main_text(args: argparse.Namespace) -> int:
    from cpc.cli import CommandError
    from cpc.text.compare import run_text_compare, text_arms

    if args.corpus or args.tasks or args.labels or args.max_images:
        raise CommandError(
            "--corpus, --tasks, --labels and --max-images are speech and image options; text recipes read data.root=DIR "
            "and are scored by the probe suite (--suite-size, --folds)"
        )
    if args.suite_size < 20 or args.folds < 2:
        raise CommandError(
            f"--suite-size {args.suite_size} / --folds {args.folds}: expected at least 20 examples and 2 folds"
        )
    arms = text_arms(args.recipe)
    only = args.only.split(",") if args.only else list(arms)
    unknown = sorted(set(only) - set(arms))
    if unknown:
        raise CommandError(f"--only {','.join(unknown)}: not an arm of 'text' (arms: {', '.join(arms)})")
    seeds = _seeds(args.seeds, args.overrides) if args.seeds is not None else [0]
    run_text_compare(
        args.run_dir,
        {name: value for name, value in arms.items() if name in only},
        recipe=args.recipe,
        steps=args.steps,
        seeds=seeds,
        overrides=args.overrides,
        suite_size=args.suite_size,
        mr_size=args.suite_size,
        folds=args.folds,
    )
    return 0


def _main_image(args: argparse.Namespace, arms: dict[str, list[str]], title: str) -> int:
    from cpc.cli import CommandError

    if args.corpus or args.tasks or args.seeds:
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
