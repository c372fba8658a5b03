"""``cpc compare objectives|modified`` on speech recipes: every arm trained alike, then probed.

The arms, ``--only``, ``--seeds`` and the command are :mod:`cpc.eval.compare`'s; the description
below is this module's part of ``cpc compare --help``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from cpc.eval.compare import ARM_COMPARISONS
from cpc.eval.report import seconds_per_step, write_comparison_report
from cpc.speech.demo import DEFAULT_RECIPE as DEMO_RECIPE

if TYPE_CHECKING:
    from cpc.speech.corpus.formats import Corpus

log = logging.getLogger(__name__)

TASKS = ("phone", "speaker", "abx")
COLUMNS = [
    ("phone", "phone acc. % ↑"),
    ("speaker", "speaker acc. % ↑"),
    ("abx_within", "ABX within % ↓"),  # speech scores, as shown
    ("abx_across", "ABX across % ↓"),
    ("seconds_per_step", "s/step"),
    ("valid_accuracy", "valid acc. (mean k)"),
]


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
    from cpc.config import load_config
    from cpc.eval.report import plot_curves_side_by_side
    from cpc.speech.corpus.formats import load_corpus
    from cpc.speech.demo import find_corpus

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    corpus_root, warning = find_corpus(corpus, 1.0)
    data = load_corpus(corpus_root)
    settings = [*(overrides or []), f"train.max_steps={steps}", "train.progress=false"]
    rows = [
        train_and_score_arm(
            run_dir,
            arm,
            arm_overrides,
            seed,
            data=data,
            corpus_root=corpus_root,
            recipe=recipe,
            steps=steps,
            settings=settings,
            tasks=tasks,
            progress=progress,
        )
        for arm, arm_overrides, seed in arm_runs(arms, seeds)
    ]
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
    return write_compare_report(run_dir, title, summary, rows, seeds, warning=warning)


def arm_runs(arms: dict[str, list[str]], seeds: list[int] | None) -> list[tuple[str, list[str], int | None]]:
    """(arm, its overrides, seed) of every run: one per arm, or one per arm and seed (``train.seed`` appended)."""
    if seeds is None:
        return [(arm, arm_overrides, None) for arm, arm_overrides in arms.items()]
    return [
        (arm, [*arm_overrides, f"train.seed={seed}"], seed) for arm, arm_overrides in arms.items() for seed in seeds
    ]


def train_and_score_arm(
    run_dir: Path,
    arm: str,
    arm_overrides: list[str],
    seed: int | None,
    *,
    data: Corpus,
    corpus_root: Path,
    recipe: str | os.PathLike,
    steps: int,
    settings: list[str],
    tasks,
    progress: bool,
) -> dict:
    """One run: train (or reuse, or resume) the arm, then score it, unless its result.json already has these tasks;
    -> its row of the table."""
    from cpc.checkpoint import load_checkpoint
    from cpc.eval.report import read_metrics
    from cpc.speech.demo import train_model

    arm_dir, name = (run_dir / arm, arm) if seed is None else (run_dir / arm / f"seed-{seed}", f"{arm}/seed-{seed}")
    log.info("[%s] training %s, %d steps (%s)", name, recipe, steps, " ".join(arm_overrides) or "the recipe as it is")
    checkpoint = train_model(arm_dir, corpus_root, recipe, [*arm_overrides, *settings])
    config = load_checkpoint(checkpoint)["config"]
    result_path = arm_dir / "result.json"
    if result_path.is_file() and json.loads(result_path.read_text()).get("tasks") == list(tasks):
        log.info("[%s] reusing %s", name, result_path)
        # the folder's name now (it may be a link to another run)
        return {**json.loads(result_path.read_text()), "arm": arm, **({} if seed is None else {"seed": seed})}
    scores = score_arm(data, corpus_root, checkpoint, arm_dir, tasks=tasks, progress=progress)
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
    log.info("[%s] %s", name, ", ".join(f"{key} {value:.3g}" for key, value in row.items() if isinstance(value, float)))
    return row


def score_arm(data: Corpus, corpus_root: Path, checkpoint: Path, arm_dir: Path, *, tasks, progress: bool) -> dict:
    """An arm's speech scores among ``tasks``: phone and speaker probe accuracy, ABX within and across."""
    from cpc.speech.evaluate import evaluate_abx, evaluate_phone, evaluate_speaker
    from cpc.speech.features import FeatureCache

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
    return scores


def write_compare_report(
    run_dir: Path, title: str, summary: dict, rows: list[dict], seeds: list[int] | None, *, warning: str | None
) -> dict:
    """report.md and report.json: the rows' table, and with seeds each arm's mean and range above it."""
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


# ----------------------------------------------------------------------------- cpc compare (cpc.eval.compare)

COMPARE_DESCRIPTION = """\
    cpc compare objectives --recipe speech/tiny --steps 300 --run-dir runs/objectives [--corpus DIR] [--only infonce,margin]
    cpc compare modified --recipe speech/paper --steps 100 --run-dir runs/modified [--tasks phone]  [key=value ...]
    cpc compare modified --recipe speech/tiny --steps 2000 --run-dir runs/lstm --only recipe,lstm_context --seeds 0,1,2

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
"""
COMPARISONS = ARM_COMPARISONS
DEFAULT_RECIPE = DEMO_RECIPE  # the default --recipe of cpc compare (the default data source's)
COMPARE_OPTIONS = {
    "--corpus": dict(
        help="corpus folder (default: the 1-hour synthetic corpus, built once; else the committed sample)"
    ),
    "--tasks": dict(metavar="TASK,TASK", help=f"speech: evaluations among {','.join(TASKS)} (default: all)"),
    "--seeds": dict(
        metavar="S,S",
        help="speech and text: train every arm once per seed (train.seed), report mean and range, e.g. 0,1,2",
    ),
}


def compare_from_args(args: argparse.Namespace) -> int:
    """``cpc compare objectives|modified`` on a speech recipe, from its parsed command line."""
    from cpc.cli import CommandError
    from cpc.eval.compare import arms_from_args, parse_seeds

    arms, title = arms_from_args(args)
    if any(getattr(args, name, None) for name in ("labels", "max_images")):
        raise CommandError("--labels and --max-images set the image probe; speech recipes take --tasks")
    tasks = tuple(args.tasks.split(",")) if args.tasks else TASKS
    if set(tasks) - set(TASKS):
        raise CommandError(f"--tasks {args.tasks}: expected a comma-separated list among {', '.join(TASKS)}")
    seeds = parse_seeds(args.seeds, args.overrides) if args.seeds is not None else None
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
