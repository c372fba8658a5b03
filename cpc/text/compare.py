"""``cpc compare text``: variants of the text recipe, each trained once per seed, scored by the probe suite.

    cpc compare text --recipe text/books --steps 1500 --seeds 0,1,2 --run-dir runs/text-compare [--suite-size 1000] [--folds 5]

Every arm trains into ``RUN_DIR/<arm>/seed-<S>`` (a finished run is reused, an unfinished one
resumed) and is probed on the same suite (cpc.text.suite, built once with seed 0 into
``RUN_DIR/suite``): CPC z and [z, c], and its random-init control drawn with the run's own seed
(``train.seed``). The rows that do not depend on the trained weights (the random-init encoder,
random word embeddings, bag of words, TF-IDF) are computed once per seed and kept in
``RUN_DIR/baselines.json``, shared by the arms. ``RUN_DIR/report.md``: per arm and feature set,
each task's mean and range over the seeds, and CPC minus its control (the target: a lead on
the cross-sentence tasks and on most of the suite).
"""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path

from cpc.text.suite import ROWS

log = logging.getLogger(__name__)

__all__ = ["TEXT_ARMS", "run_text_compare", "text_arms"]

TEXT_ARMS = {
    "recipe": [],
    # Negatives from the same window (one document): the task cannot be won by telling books apart (speech's lesson).
    "same_document": ["model.loss.negative_scope=sequence"],
}


# The demo's rows less the random word embeddings (the control is the random-init encoder; the demo reports the embeddings).
COMPARE_ROWS = tuple(row for row in ROWS if row[0] != "embeddings")


def text_arms(recipe) -> dict[str, list[str]]:
    """The recipe and its variants (TEXT_ARMS)."""
    return dict(TEXT_ARMS)


def _row_key(row: dict) -> str:
    return f"{row['kind']}/{row['layer']}"


def run_text_compare(
    run_dir,
    arms: dict[str, list[str]],
    *,
    recipe: str,
    steps: int,
    seeds: list[int],
    overrides: list[str] | None = None,
    suite_size: int = 1000,
    mr_size: int | None = 1000,
    folds: int = 5,
    title: str = "Text recipe variants compared",
) -> dict:
    """Train and probe every (arm, seed); write report.md, report.json and curves.png under ``run_dir``."""
    from cpc.config import load_config
    from cpc.eval.report import plot_curves_side_by_side, write_comparison_report
    from cpc.text.suite import build_suite, write_tasks

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    settings = [*(overrides or []), f"train.max_steps={steps}", "train.progress=false"]
    config = load_config(recipe, overrides or [])
    suite = build_suite(config.data.root, probe_fraction=config.data.probe_fraction, size=suite_size, mr_size=mr_size)
    write_tasks(suite, run_dir / "suite")
    evaluation = _evaluation(suite, folds)
    runs = []
    for arm, arm_overrides in arms.items():
        for seed in seeds:
            arm_dir = run_dir / arm / f"seed-{seed}"
            checkpoint = _train(arm_dir, arm, seed, recipe, steps, arm_overrides, settings)
            result_path = arm_dir / "result.json"
            if result_path.is_file() and json.loads(result_path.read_text()).get("evaluation") == evaluation:
                log.info("[%s/seed-%d] reusing %s", arm, seed, result_path)
                runs.append(json.loads(result_path.read_text()))
                continue
            run = {
                "arm": arm,
                "seed": seed,
                "overrides": arm_overrides,
                "evaluation": evaluation,
                **_probe(checkpoint, arm_dir, suite, run_dir / "baselines.json", folds),
            }
            result_path.write_text(json.dumps(run, indent=2) + "\n")
            runs.append(run)
    plot_curves_side_by_side(
        {
            f"{run['arm']}/seed-{run['seed']}": run_dir / run["arm"] / f"seed-{run['seed']}" / "metrics.jsonl"
            for run in runs
        },
        run_dir / "curves.png",
    )
    summary = {
        "recipe": str(recipe),
        "steps": steps,
        "seeds": ", ".join(map(str, seeds)),
        "overrides": " ".join(overrides or []) or "none",
        "suite": ", ".join(f"{name} {count}" for name, count in evaluation["tasks"].items())
        + f" examples, {folds}-fold cross-validation",
    }
    tasks = list(suite)
    per_arm = summarise(runs, arms, tasks)
    table = seed_table(per_arm, tasks) + "\n" + margin_table(per_arm, tasks)
    report = {"summary": summary, "arms": per_arm, "runs": runs}
    return write_comparison_report(run_dir, title, report, table, _legend(folds))


def _evaluation(suite: dict, folds: int) -> dict:
    """What a probe result depends on besides the weights: a saved result with another one is computed again."""
    from cpc.text.probe import QUICK_C_GRID

    return {
        "tasks": {name: len(task.texts) for name, task in suite.items()},
        "folds": folds,
        "C": list(QUICK_C_GRID),
        "rows": [label for _, _, label in COMPARE_ROWS],
    }


def _train(
    arm_dir: Path, arm: str, seed: int, recipe: str, steps: int, arm_overrides: list[str], settings: list[str]
) -> Path:
    """Train (or reuse / resume) one (arm, seed); -> its checkpoint."""
    from cpc.config import load_config
    from cpc.train import train_or_resume

    log.info(
        "[%s/seed-%d] training %s, %d steps (%s)",
        arm,
        seed,
        recipe,
        steps,
        " ".join(arm_overrides) or "the recipe as it is",
    )
    config = load_config(recipe, [*arm_overrides, f"train.seed={seed}", *settings])
    return train_or_resume(config, arm_dir, description=str(recipe))


def _probe(checkpoint: Path, arm_dir: Path, suite: dict, cache_path: Path, folds: int) -> dict:
    """The suite table of one checkpoint, CPC minus its control, and the run's last validation accuracy and speed."""
    from cpc.checkpoint import load_checkpoint
    from cpc.eval.report import read_metrics, seconds_per_step
    from cpc.text.probe import QUICK_C_GRID
    from cpc.text.suite import control_margins, probe_suite

    # Read again before each run: another process (other --only / --seeds) may have added rows.
    cache = _read_cache(cache_path)
    table = probe_suite(checkpoint, suite, rows=COMPARE_ROWS, folds=folds, cache=cache, grid=QUICK_C_GRID)
    cache_path.write_text(json.dumps({**_read_cache(cache_path), **cache}, indent=1) + "\n")
    _, valid = read_metrics(arm_dir / "metrics.jsonl")
    last_valid = [a for a in valid[-1]["accuracy"] if a is not None] if valid else []
    return {
        "table": table,
        "margins": control_margins(table, list(suite)),
        "valid_accuracy": sum(last_valid) / len(last_valid) if last_valid else None,
        "seconds_per_step": seconds_per_step(
            arm_dir / "metrics.jsonl", load_checkpoint(checkpoint)["config"]["train"]["batch_size"]
        ),
    }


def _legend(folds: int) -> str:
    from cpc.text.probe import QUICK_C_GRID
    from cpc.text.suite import CROSS_SENTENCE

    return (
        f"Accuracy % of logistic regression on frozen features, mean over the seeds (min–max); {folds} stratified folds, L2 weight C "
        f"in {list(QUICK_C_GRID)} chosen inside each training fold (the demo's protocol: 10 folds, C up to 1000). * cross-sentence "
        f"tasks ({', '.join(CROSS_SENTENCE)}). The random-init rows use each run's own seed; bag of words and TF-IDF do not depend on it."
    )


def _read_cache(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values), "values": values}


def summarise(runs: list[dict], arms, tasks) -> dict:
    """Per arm: per feature row and task, accuracy over seeds; per layer and task, CPC minus control over seeds; valid accuracy, s/step."""
    per_arm = {}
    for arm in arms:
        mine = [run for run in runs if run["arm"] == arm]
        if not mine:
            continue
        rows = {}
        for row in mine[0]["table"]:
            key = _row_key(row)
            rows[key] = {"name": row["name"], "tasks": {}}
            for name in tasks:
                values = [
                    r["results"][name]["accuracy"]
                    for run in mine
                    for r in run["table"]
                    if _row_key(r) == key and "accuracy" in r["results"].get(name, {})
                ]
                if len(values) == len(mine):
                    rows[key]["tasks"][name] = _spread(values)
        margins = {
            layer: {
                name: _spread([run["margins"][layer][name] for run in mine])
                for name in tasks
                if all(name in run["margins"].get(layer, {}) for run in mine)
            }
            for layer in ("encoder", "both")
        }
        per_arm[arm] = {
            "seeds": [run["seed"] for run in mine],
            "rows": rows,
            "margins": margins,
            "valid_accuracy": _spread(
                [run["valid_accuracy"] for run in mine if run["valid_accuracy"] is not None] or [float("nan")]
            ),
            "seconds_per_step": _spread(
                [run["seconds_per_step"] for run in mine if run["seconds_per_step"]] or [float("nan")]
            ),
        }
    return per_arm


def _cell(spread: dict | None, signed: bool = False) -> str:
    if spread is None:
        return "–"
    number = "{:+.1f}" if signed else "{:.1f}"
    return f"{number.format(spread['mean'])} ({number.format(spread['min'])}–{number.format(spread['max'])})"


def seed_table(per_arm: dict, tasks) -> str:
    """Markdown: the CPC rows of every arm, then the rows shared by the arms (random-init, embeddings, bag of words, TF-IDF) once."""
    from cpc.text.suite import CROSS_SENTENCE

    header = [f"{name}{' *' if name in CROSS_SENTENCE else ''}" for name in tasks]
    lines = ["| arm | features | " + " | ".join(header) + " |", "|---|---|" + "---:|" * len(tasks)]
    shown_shared = False
    for arm, summary in per_arm.items():
        for key, row in summary["rows"].items():
            shared = not key.startswith("cpc/")
            if shared and shown_shared:
                continue
            lines.append(
                f"| {'(all arms)' if shared else arm} | {row['name']} | "
                + " | ".join(_cell(row["tasks"].get(name)) for name in tasks)
                + " |"
            )
        shown_shared = True
    return "\n".join(lines) + "\n"


def margin_table(per_arm: dict, tasks) -> str:
    """Markdown: CPC minus its random-init control (accuracy points), mean over seeds (min–max), and on how many tasks the mean is above 0."""
    from cpc.text.suite import CROSS_SENTENCE

    header = [f"{name}{' *' if name in CROSS_SENTENCE else ''}" for name in tasks]
    lines = [
        "CPC minus its random-init control, accuracy points:",
        "",
        "| arm | layer | " + " | ".join(header) + " | tasks ahead | valid acc. (mean k) | s/step |",
        "|---|---|" + "---:|" * (len(tasks) + 3),
    ]
    for arm, summary in per_arm.items():
        for layer, per_task in summary["margins"].items():
            ahead = sum(spread["mean"] > 0 for spread in per_task.values())
            lines.append(
                f"| {arm} | {'z' if layer == 'encoder' else '[z, c]'} | "
                + " | ".join(_cell(per_task.get(name), signed=True) for name in tasks)
                + f" | {ahead} of {len(per_task)} | {summary['valid_accuracy']['mean']:.3f} | {summary['seconds_per_step']['mean']:.2f} |"
            )
    return "\n".join(lines) + "\n"


# cpc compare text (cpc.eval.compare)
COMPARE_DESCRIPTION = """\
    cpc compare text --recipe text/books --steps 1500 --run-dir runs/text-compare --seeds 0,1,2   (cpc.text.compare: the probe suite)
"""
COMPARISONS = {"text": "the text recipe's variants (cpc.text.compare)"}
COMPARE_OPTIONS = {
    "--seeds": dict(
        metavar="S,S",
        help="speech and text: train every arm once per seed (train.seed), report mean and range, e.g. 0,1,2",
    ),
    "--suite-size": dict(
        type=int, default=1000, help="text: examples per probe-suite task, MR-like included (default 1000)"
    ),
    "--folds": dict(type=int, default=5, help="text: cross-validation folds of the suite (default 5)"),
}


def compare_from_args(args) -> int:
    """``cpc compare text`` from its parsed command line."""
    from cpc.cli import CommandError
    from cpc.eval.compare import parse_seeds, select_arms

    if any(getattr(args, name, None) for name in ("corpus", "tasks", "labels", "max_images")):
        raise CommandError(
            "--corpus, --tasks, --labels and --max-images are speech and image options; text recipes read data.root=DIR "
            "and are scored by the probe suite (--suite-size, --folds)"
        )
    if args.suite_size < 20 or args.folds < 2:
        raise CommandError(
            f"--suite-size {args.suite_size} / --folds {args.folds}: expected at least 20 examples and 2 folds"
        )
    arms = select_arms(text_arms(args.recipe), args.only, "text")
    seeds = parse_seeds(args.seeds, args.overrides) if args.seeds is not None else [0]
    run_text_compare(
        args.run_dir,
        arms,
        recipe=args.recipe,
        steps=args.steps,
        seeds=seeds,
        overrides=args.overrides,
        suite_size=args.suite_size,
        mr_size=args.suite_size,
        folds=args.folds,
    )
    return 0
