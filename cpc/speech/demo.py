"""The speech demo: corpus -> CPC training on CPU -> probes and ABX against baselines -> report.

    cpc demo --run-dir runs/demo [--corpus DIR] [--hours 1] [--steps N] [--recipe speech/tiny] [--ctc] [key=value ...]

``cpc demo`` (cpc.eval.demo) runs it by default; the image and text demos are in their packages.

Stages (each logs what it does; feature extraction and training show progress bars):

1. Corpus: ``--corpus`` if given; else a ``--hours`` synthetic corpus built once with
   :func:`cpc.speech.corpus.synth.build_corpus` into ``~/.cache/cpc/corpora/`` when festival,
   espeak-ng and bible-kjv are installed; else the committed 6-minute sample (shipped with cpc,
   :func:`cpc.resources.sample_corpus`), with a warning in the log and at the top of the report:
   its numbers are not meaningful.
2. Training: the tiny CPU recipe on the corpus' train split (``RUN_DIR/metrics.jsonl``,
   ``RUN_DIR/checkpoints/last.pt``). A run directory that already holds a finished
   checkpoint is reused; an unfinished one is resumed.
3. Evaluation, for CPC context features, MFCC, log-mel and a randomly initialised CPC of the
   same architecture (the paper's "random init" row): linear phone probe, speaker probe on
   1.28 s crops, within/across-speaker ABX on the corpus' item file, and with ``--ctc`` the CTC
   phone probe (PER; off by default: a linear CTC needs ~1500 Adam steps, ~3 CPU-minutes per
   feature set on a 1-hour corpus). Features are cached in ``RUN_DIR/features``.
4. Report: ``RUN_DIR/report.md`` and ``report.json`` (the table, with the paper's numbers
   beside), ``training.png`` (loss, accuracy, MI bound), ``accuracy_per_step.png`` (accuracy
   against k) and ``projection_<set>.png`` (2-D PCA of test frames coloured by phone).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cpc.speech.audio import SAMPLE_RATE

if TYPE_CHECKING:
    from cpc.speech.corpus.formats import Corpus
    from cpc.speech.features import FeatureCache

log = logging.getLogger(__name__)

DEFAULT_RECIPE = "speech/tiny"  # a shipped recipe (cpc.resources)
CORPUS_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cpc" / "corpora"
BASELINE_SETS = ("mfcc", "logmel")


def find_corpus(
    corpus: str | os.PathLike | None, hours: float, *, cache: Path = CORPUS_CACHE
) -> tuple[Path, str | None]:
    """The corpus the demo uses (see the module docstring, stage 1) and, when it is the sample
    fallback, the warning to put at the top of the report (else None)."""
    if corpus is not None:
        return Path(corpus), None
    from cpc.resources import sample_corpus
    from cpc.speech.corpus import synth

    try:
        synth.check_tools()
    except synth.MissingToolError as error:
        sample = sample_corpus()
        if not sample.is_dir():
            raise FileNotFoundError(f"no corpus: {error}, and the committed sample {sample} is missing") from None
        reason = str(error).split(";")[0]  # check_tools' message: "<what> not found; install ... `<apt line>`"
        warning = (
            f"**sample corpus: numbers not meaningful** — the 6-minute committed sample was used because {reason}; "
            f"install the engines (`{synth.APT_INSTALL}`) for the {hours:g}-hour corpus."
        )
        log.warning(
            "SAMPLE CORPUS, NUMBERS NOT MEANINGFUL: %s, so the demo falls back to the 6-minute committed sample %s. "
            "Install the engines (%s) for the %g-hour corpus.",
            reason,
            sample,
            synth.APT_INSTALL,
            hours,
        )
        return sample, warning
    # "varied": the default build (prosody, room, noise; cpc.speech.corpus.variation). Corpora cached
    # before the builder varied its speech are named synth-<h>h-seed0 and are not reused.
    folder = cache / f"synth-{hours:g}h-varied-seed0"
    if (folder / "summary.json").is_file():
        log.info("corpus: reusing %s", folder)
        return folder, None
    # An interrupted build (no summary.json) is rebuilt by build_corpus itself.
    log.info("corpus: building %g h of synthetic speech into %s (once; reused by later demos)", hours, folder)
    synth.build_corpus(folder, hours, seed=0, workers=2)
    return folder, None


def train_model(run_dir: Path, corpus: Path, recipe: str | os.PathLike, overrides: list[str]) -> Path:
    """Train (or reuse / resume) the recipe on the corpus' train split; -> the checkpoint path."""
    from cpc.config import load_config
    from cpc.resources import recipe_path
    from cpc.train import train_or_resume

    settings = [f"data.root={corpus}"]
    if (corpus / "train_split.txt").is_file():
        settings.append(f"data.train_split={corpus / 'train_split.txt'}")
    config = load_config(recipe_path(recipe), settings + list(overrides))
    return train_or_resume(config, run_dir, description=f"{recipe} on {corpus}")


def run_demo(
    run_dir: str | os.PathLike,
    *,
    corpus: str | os.PathLike | None = None,
    hours: float = 1.0,
    steps: int | None = None,
    recipe: str | os.PathLike = DEFAULT_RECIPE,
    overrides: list[str] | None = None,
    ctc: bool = False,
    progress: bool = True,
) -> dict:
    """Run the four demo stages; -> the report's JSON content."""
    from cpc.speech.features import FeatureCache

    started = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    overrides = list(overrides or [])
    if steps is not None:
        overrides.append(f"train.max_steps={steps}")
    if not progress:
        overrides.append("train.progress=false")

    log.info("[1/4] corpus")
    corpus_root, data, warnings = load_demo_corpus(corpus, hours)

    log.info("[2/4] training")
    training_started = time.perf_counter()
    reused = (run_dir / "checkpoints" / "last.pt").exists()
    checkpoint = train_model(run_dir, corpus_root, recipe, overrides)
    training_seconds = time.perf_counter() - training_started

    log.info("[3/4] probes and ABX")
    evaluation_started = time.perf_counter()
    cache = FeatureCache(run_dir / "features")
    results = evaluate_feature_sets(data, corpus_root, checkpoint, cache, ctc=ctc, progress=progress)
    evaluation_seconds = time.perf_counter() - evaluation_started

    log.info("[4/4] report")
    plots = plot_demo(run_dir, data, corpus_root, checkpoint, cache)
    summary = {
        **corpus_summary(corpus_root, data),
        "recipe": str(recipe),
        "overrides": " ".join(overrides) or "none",
        "checkpoint": str(checkpoint),
        **training_summary(run_dir / "metrics.jsonl"),
        "training_seconds": round(training_seconds, 1)
        if not reused
        else "reused an existing checkpoint (or resumed it)",
        "evaluation_seconds": round(evaluation_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    return write_demo_report(run_dir, results, summary, plots, warnings)


def load_demo_corpus(corpus: str | os.PathLike | None, hours: float) -> tuple[Path, Corpus, list[str]]:
    """Stage 1: the corpus (:func:`find_corpus`), loaded; -> its folder, the loaded corpus and the report's warnings."""
    from cpc.speech.corpus.formats import load_corpus

    corpus_root, sample_warning = find_corpus(corpus, hours)
    data = load_corpus(corpus_root)
    log.info(
        "corpus %s: %d utterances, %d speakers, splits %s",
        corpus_root,
        len(data.files),
        len(set(data.speakers.values())),
        {name: len(ids) for name, ids in data.splits.items()},
    )
    return corpus_root, data, [sample_warning] if sample_warning else []


def evaluate_feature_sets(
    data: Corpus, corpus_root: Path, checkpoint: Path, cache: FeatureCache, *, ctc: bool, progress: bool
) -> list[dict]:
    """Stage 3: phone probe (and CTC), speaker probe and ABX for CPC, the baselines and a random-init CPC."""
    from cpc.speech.evaluate import evaluate_abx, evaluate_phone, evaluate_speaker

    item_file = corpus_root / "abx" / "test.item"
    results = []
    for name in [str(checkpoint), *BASELINE_SETS, "random"]:
        options = dict(layer="context", architecture=str(checkpoint), cache=cache, progress=progress)
        label = "cpc" if name == str(checkpoint) else name
        log.info("evaluating %s: phone probe", label)
        results.append(evaluate_phone(data, name, **options))
        if ctc:
            log.info("evaluating %s: CTC phone probe", label)
            results.append(evaluate_phone(data, name, ctc=True, **options))
        log.info("evaluating %s: speaker probe", label)
        results.append(evaluate_speaker(data, name, **options))
        if item_file.is_file():
            log.info("evaluating %s: ABX", label)
            results.append(evaluate_abx(data, name, item_file, **options))
        log.info("%s: %s", label, ", ".join(_scores(r) for r in results if r["features"] == results[-1]["features"]))
    return results


def plot_demo(
    run_dir: Path, data: Corpus, corpus_root: Path, checkpoint: Path, cache: FeatureCache
) -> list[tuple[str, str]]:
    """Stage 4's plots: training curves, accuracy against k, PCA of CPC and MFCC test frames; -> (file, caption) each."""
    from cpc.eval.report import plot_accuracy_per_step, plot_training
    from cpc.speech.features import extract, feature_set
    from cpc.speech.report import plot_projection

    plots = []
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        plot_training(metrics, run_dir / "training.png")
        plot_accuracy_per_step(metrics, run_dir / "accuracy_per_step.png")
        plots += [
            ("training.png", "Training curves: InfoNCE loss, prediction accuracy and MI bound"),
            ("accuracy_per_step.png", "Prediction accuracy against steps ahead k"),
        ]
    test = data.splits.get("test", [])
    for name, label in ((str(checkpoint), "cpc"), ("mfcc", "mfcc")):
        features = extract(
            feature_set(name, layer="context"), data.files, test, cache=cache, corpus_root=corpus_root, progress=False
        )
        plot_projection(
            features,
            data.labels,
            data.phone_names,
            run_dir / f"projection_{label}.png",
            title=f"PCA of {label} test frames",
        )
        plots.append((f"projection_{label}.png", f"2-D PCA of {label} test frames, the most frequent phones coloured"))
    return plots


def corpus_summary(corpus_root: Path, data: Corpus) -> dict:
    """The report's lines on the corpus: folder, hours, utterances, speakers."""
    return {
        "corpus": str(corpus_root),
        "corpus_hours": round(sum(f.num_samples for f in data.files.values()) / SAMPLE_RATE / 3600, 3),
        "utterances": len(data.files),
        "speakers": len(set(data.speakers.values())),
    }


def training_summary(metrics: Path) -> dict:
    """The report's lines on training, from metrics.jsonl: steps, last train and validation loss."""
    from cpc.eval.report import read_metrics

    train_records, valid_records = read_metrics(metrics) if metrics.is_file() else ([], [])
    return {
        "training_steps": train_records[-1]["step"] if train_records else None,
        "final_train_loss": round(train_records[-1]["loss"], 4) if train_records else None,
        "final_valid_loss": round(valid_records[-1]["loss"], 4) if valid_records else None,
    }


def write_demo_report(
    run_dir: Path, results: list[dict], summary: dict, plots: list[tuple[str, str]], warnings: list[str]
) -> dict:
    """Write report.md and report.json, print the report; -> the report's JSON content."""
    from cpc.speech.report import write_report

    markdown, _ = write_report(run_dir, results, summary=summary, plots=plots, warnings=warnings)
    print(markdown.read_text())
    log.info("wrote %s (%.0f s in all)", markdown, summary["total_seconds"])
    for warning in warnings:  # again after the report, where it is not scrolled away
        log.warning("%s", warning.replace("**", ""))
    return {"summary": {**summary, "warnings": warnings}, "results": results}


def _scores(result: dict) -> str:
    """One result for the log, percentages to one decimal: "phone 28.2 %", "abx within 12.3 % / across 20.1 % (40 / 95 cells)"."""

    def percent(key: str) -> str:
        return "–" if result.get(key) is None else f"{result[key]:.1f} %"

    if result["task"] == "abx":
        return f"abx within {percent('within')} / across {percent('across')} ({result['within_cells']} / {result['across_cells']} cells)"
    if result["task"] == "phone_ctc":
        return f"phone_ctc PER {percent('per')}"
    return f"{result['task']} {percent('accuracy')}"


# ----------------------------------------------------------------------------- cpc demo (cpc.eval.demo)

DEMO_DESCRIPTION = """\
Train a tiny CPC model on CPU, then compare its features with MFCC, log-mel and a randomly
initialised CPC: linear phone probe, speaker probe on 1.28 s crops, ABX (and with --ctc
the CTC phone probe). Writes RUN_DIR/report.md and report.json with the table and plots.

Corpus: --corpus if given; else a synthetic --hours corpus built once into
~/.cache/cpc/corpora when festival, espeak-ng and bible-kjv are installed; else the
committed 6-minute sample, with a warning: its numbers are not meaningful.
A run directory that holds a finished checkpoint is reused, an unfinished one resumed.

Example:
  cpc demo --run-dir runs/demo --steps 200
"""

DEMO_OPTIONS = {
    "--corpus": dict(help="corpus folder (default: build one, else the committed sample)"),
    "--hours": dict(type=float, default=1.0, help="hours of speech to build when no --corpus is given"),
    "--ctc": dict(
        action="store_true", help="also run the CTC phone probe (PER; ~3 CPU-minutes per feature set on 1 h)"
    ),
}


def demo_from_args(args: argparse.Namespace, overrides: list[str]) -> None:
    """``cpc demo`` from its parsed command line."""
    run_demo(
        args.run_dir,
        corpus=args.corpus,
        hours=args.hours,
        steps=args.steps,
        recipe=args.recipe or DEFAULT_RECIPE,
        overrides=overrides,
        ctc=args.ctc,
    )
