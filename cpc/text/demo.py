"""``cpc demo text``: books -> sentence CPC training on CPU -> the probe suite against baselines -> report.

    cpc demo text --run-dir runs/text [--steps N] [--recipe text/books] [data.root=DIR] [key=value ...]

1. Data: ``cpc data text`` into ``data.root`` (default ``~/.cache/cpc/text``), built once; one-line
   errors naming the install command when a source is missing. A folder built from your own text
   (``cpc data text --from``) is used as it is.
2. Training: the text recipe (``RUN_DIR/metrics.jsonl``, ``checkpoints/last.pt``); a finished
   run is reused, an unfinished one resumed.
3. Probes: the suite (cpc.text.suite: next-sentence coherence, sentence order, bigram shift,
   sentence length, word content from documents training never read, and MR-like sentiment),
   10-fold cross-validation with L2 chosen inside each training fold (cpc.text.probe), for CPC z
   and [z, c], the random-init encoder (z and [z, c], the run's own seed), the mean of random
   word embeddings, binary bag of words (C words and all) and TF-IDF 1-2-grams; the tasks are
   written to ``RUN_DIR/suite/*.tsv``; the out-of-vocabulary rate of the MR-like text.
4. Report: ``report.md`` / ``report.json`` with the table, CPC minus its random-init control
   per task, ``training.png`` and the prediction accuracy per sentence ahead (``accuracy_per_offset.png``).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from cpc.text.corpus import DEFAULT_ROOT, build_text_data
from cpc.text.probe import oov_rates
from cpc.text.suite import build_suite, control_margins, probe_suite, suite_table, write_tasks

log = logging.getLogger(__name__)

DEFAULT_RECIPE = "text/books"
SUITE_SIZE = 1000  # examples per suite task built from the books (MR-like: all of it)

# cpc demo text (cpc.eval.demo)
DEMO_DESCRIPTION = """\
Sentences (paper section 3.3): `cpc demo text --run-dir DIR` builds the book data (`cpc data
text`), trains the text recipe and compares logistic-regression probes of its sentence
features on MR-like sentiment with TF-IDF, bag of words and random encoders (cpc.text.demo).
"""
DEMO_OPTIONS: dict[str, dict] = {}


def demo_from_args(args, overrides: list[str]) -> None:
    """``cpc demo text`` from its parsed command line; the books are read from the last ``data.root=`` override."""
    roots = [override.split("=", 1)[1] for override in overrides if override.split("=", 1)[0].strip() == "data.root"]
    run_text_demo(
        args.run_dir,
        steps=args.steps,
        recipe=args.recipe or DEFAULT_RECIPE,
        overrides=overrides,
        root=roots[-1] if roots else DEFAULT_ROOT,
    )


def train_text_model(run_dir: Path, recipe: str, overrides: list[str]) -> Path:
    """Train (or reuse / resume) the text recipe; -> the checkpoint path (cpc.train.train_or_resume)."""
    from cpc.config import load_config
    from cpc.train import train_or_resume

    return train_or_resume(load_config(recipe, overrides), run_dir, description=str(recipe))


def run_text_demo(
    run_dir,
    *,
    steps: int | None = None,
    recipe: str = DEFAULT_RECIPE,
    overrides: list[str] | None = None,
    root: str = DEFAULT_ROOT,
    progress: bool = True,
    limit: int | None = None,
    folds: int = 10,
    max_documents: int | None = None,
    suite_size: int = SUITE_SIZE,
) -> dict:
    """The whole demo; ``limit`` (examples per task, MR-like included), ``folds`` and ``max_documents`` (data slice) are for quick looks and tests."""
    from cpc.checkpoint import load_checkpoint

    started = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    overrides = _overrides(root, overrides, steps=steps, progress=progress)

    log.info("[1/4] data")
    manifest = _text_data(root, max_documents)

    log.info("[2/4] training")
    checkpoint, training_seconds = _train(run_dir, recipe, overrides)

    log.info("[3/4] probes")
    config = load_checkpoint(checkpoint)["config"]
    probe_fraction = _probe_fraction(config, checkpoint)
    suite = build_suite(root, probe_fraction=probe_fraction, size=min(suite_size, limit or suite_size), mr_size=limit)
    write_tasks(suite, run_dir / "suite")
    table = probe_suite(checkpoint, suite, folds=folds)
    margins = control_margins(table, list(suite))
    oov = _mr_oov_rates(root, suite, checkpoint)

    log.info("[4/4] report")
    offsets = _plot_training(run_dir, config)
    summary = {
        "data": _data_summary(root, manifest),
        "suite": _suite_summary(suite, probe_fraction),
        "recipe": recipe,
        "overrides": " ".join(overrides),
        "checkpoint": str(checkpoint),
        **_training_summary(run_dir / "metrics.jsonl", offsets, training_seconds),
        "out_of_vocabulary_percent": oov,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    report = {"summary": summary, "results": table, "control_margins": margins}
    _write_report(run_dir, report, list(suite), folds)
    print((run_dir / "report.md").read_text())
    return report


def _overrides(root: str, overrides: list[str] | None, *, steps: int | None, progress: bool) -> list[str]:
    """The recipe overrides the demo trains with: the data folder first, so the caller's own settings win."""
    overrides = [f"data.root={root}", *(overrides or [])]
    if steps is not None:
        overrides.append(f"train.max_steps={steps}")
    if not progress:
        overrides.append("train.progress=false")
    return overrides


def _text_data(root: str, max_documents: int | None) -> dict:
    """The built folder's manifest, building the books into ``root`` on first use."""
    manifest_path = Path(root) / "manifest.json"
    built = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    # A folder of your own text (`cpc data text --from`) is used as it is; the books are built once.
    return built if built.get("from") else build_text_data(root, max_documents=max_documents)


def _train(run_dir: Path, recipe: str, overrides: list[str]) -> tuple[Path, float | str]:
    """Train (or reuse / resume) the recipe; -> (checkpoint, the training seconds for the report)."""
    training_started = time.perf_counter()
    reused = (run_dir / "checkpoints" / "last.pt").exists()
    checkpoint = train_text_model(run_dir, recipe, overrides)
    training_seconds = time.perf_counter() - training_started
    # A reused run's seconds would time a checkpoint load, not training.
    return checkpoint, round(training_seconds, 1) if not reused else "reused an existing checkpoint (or resumed it)"


def _probe_fraction(config: dict, checkpoint: Path) -> float:
    """The share of documents the run never read, from which the suite's book tasks are built."""
    if config["data"].get("probe_fraction") is None:
        log.warning(
            "%s trained on every document (no data.probe_fraction): the suite's book tasks hold text it has read",
            checkpoint,
        )
    return config["data"].get("probe_fraction") or 0.1


def _mr_oov_rates(root: str, suite: dict, checkpoint: Path) -> dict | None:
    """How much of the MR-like text the model's tokenizer has never seen (None without that task)."""
    from cpc.checkpoint import load

    texts = suite["mr"].texts if "mr" in suite else []
    return oov_rates(root, texts, load(checkpoint).encoder.tokenizer) if texts else None


def _plot_training(run_dir: Path, config: dict) -> list[int]:
    """``training.png`` and ``accuracy_per_offset.png`` from the run's metrics; -> the predicted offsets."""
    from cpc.eval.report import plot_accuracy_per_step, plot_training

    predictor = config["model"]["predictor"]
    offsets = list(range(predictor["first_offset"], predictor["first_offset"] + predictor["prediction_steps"]))
    metrics = run_dir / "metrics.jsonl"
    plot_training(metrics, run_dir / "training.png")
    plot_accuracy_per_step(metrics, run_dir / "accuracy_per_offset.png", offsets=offsets, xlabel="sentences ahead (k)")
    return offsets


def _data_summary(root: str, manifest: dict) -> str:
    return f"{root}: " + ", ".join(
        f"{name} {c['documents']:,} documents / {c['sentences']:,} sentences / {c['words']:,} words"
        for name, c in manifest["sources"].items()
    )


def _suite_summary(suite: dict, probe_fraction: float) -> str:
    return (
        ", ".join(f"{name} {len(task.texts):,}" for name, task in suite.items()) + " examples; the book tasks from the "
        f"{probe_fraction:.0%} of documents training never read (data.probe_fraction)"
    )


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


def _write_report(run_dir: Path, report: dict, tasks: list[str], folds: int) -> None:
    """``report.json`` and ``report.md``: the summary, the suite table, CPC minus its control, the plots."""
    (run_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Sentence CPC on public-domain books, probed by the text suite", ""] + [
        f"- **{key}**: {value}" for key, value in report["summary"].items()
    ]
    lines += [
        "",
        "## The probe suite: logistic regression on frozen features, accuracy %",
        "",
        suite_table(report["results"], tasks),
        f"Mean ± std over {folds} stratified folds; L2 weight chosen by 5-fold cross-validation inside each training fold (SentEval's protocol). "
        "\\* the answer needs two sentences (pairs: [f(A), f(B), f(A) f(B), |f(A) - f(B)|], B's context c having read A). "
        "Chance: 50 % (binary), 25 % (sentence_length), 10 % (word_content). Paper (BookCorpus, GPUs): CPC 76.9 on MR.",
        "",
        "CPC minus its random-init control, accuracy points: "
        + "; ".join(
            f"{'z' if layer == 'encoder' else '[z, c]'}: "
            + ", ".join(f"{name} {value:+.1f}" for name, value in per_task.items())
            for layer, per_task in report["control_margins"].items()
        ),
        "",
        "## Plots",
        "",
    ]
    for file, caption in (
        ("training.png", "Training curves: InfoNCE loss, prediction accuracy and MI bound"),
        ("accuracy_per_offset.png", "Prediction accuracy against sentences ahead k"),
    ):
        lines.append(f"![{caption}]({file})\n\n{caption}\n")
    (run_dir / "report.md").write_text("\n".join(lines))
