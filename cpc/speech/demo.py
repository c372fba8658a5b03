"""``cpc demo``: corpus -> CPC training on CPU -> probes and ABX against baselines -> report.

    cpc demo --run-dir runs/demo [--corpus DIR] [--hours 1] [--steps N] [--recipe speech/tiny] [--ctc] [key=value ...]
    cpc demo image --run-dir runs/image [--steps N] [key=value ...]      (cpc.image.demo: Fashion-MNIST)
    cpc demo text --run-dir runs/text [--steps N] [key=value ...]        (cpc.text.demo: books -> MR-like sentiment)

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

from cpc.speech.audio import SAMPLE_RATE

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
    from cpc.eval.report import plot_accuracy_per_step, plot_training
    from cpc.speech.corpus.formats import load_corpus
    from cpc.speech.evaluate import evaluate_abx, evaluate_phone, evaluate_speaker
    from cpc.speech.features import FeatureCache, extract, feature_set
    from cpc.speech.report import plot_projection, write_report

    started = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    overrides = list(overrides or [])
    if steps is not None:
        overrides.append(f"train.max_steps={steps}")
    if not progress:
        overrides.append("train.progress=false")

    log.info("[1/4] corpus")
    corpus_root, sample_warning = find_corpus(corpus, hours)
    warnings = [sample_warning] if sample_warning else []
    data = load_corpus(corpus_root)
    log.info(
        "corpus %s: %d utterances, %d speakers, splits %s",
        corpus_root,
        len(data.files),
        len(set(data.speakers.values())),
        {name: len(ids) for name, ids in data.splits.items()},
    )

    log.info("[2/4] training")
    training_started = time.perf_counter()
    reused = (run_dir / "checkpoints" / "last.pt").exists()
    checkpoint = train_model(run_dir, corpus_root, recipe, overrides)
    training_seconds = time.perf_counter() - training_started

    log.info("[3/4] probes and ABX")
    evaluation_started = time.perf_counter()
    cache = FeatureCache(run_dir / "features")
    item_file = corpus_root / "abx" / "test.item"
    feature_sets = [str(checkpoint), *BASELINE_SETS, "random"]
    results = []
    for name in feature_sets:
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
    evaluation_seconds = time.perf_counter() - evaluation_started

    log.info("[4/4] report")
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

    from cpc.eval.report import read_metrics

    train_records, valid_records = read_metrics(metrics) if metrics.is_file() else ([], [])
    summary = {
        "corpus": str(corpus_root),
        "corpus_hours": round(sum(f.num_samples for f in data.files.values()) / SAMPLE_RATE / 3600, 3),
        "utterances": len(data.files),
        "speakers": len(set(data.speakers.values())),
        "recipe": str(recipe),
        "overrides": " ".join(overrides) or "none",
        "checkpoint": str(checkpoint),
        "training_steps": train_records[-1]["step"] if train_records else None,
        "final_train_loss": round(train_records[-1]["loss"], 4) if train_records else None,
        "final_valid_loss": round(valid_records[-1]["loss"], 4) if valid_records else None,
        "training_seconds": round(training_seconds, 1)
        if not reused
        else "reused an existing checkpoint (or resumed it)",
        "evaluation_seconds": round(evaluation_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
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


DESCRIPTION = """\
Train a tiny CPC model on CPU, then compare its features with MFCC, log-mel and a randomly
initialised CPC: linear phone probe, speaker probe on 1.28 s crops, ABX (and with --ctc
the CTC phone probe). Writes RUN_DIR/report.md and report.json with the table and plots.

Corpus: --corpus if given; else a synthetic --hours corpus built once into
~/.cache/cpc/corpora when festival, espeak-ng and bible-kjv are installed; else the
committed 6-minute sample, with a warning: its numbers are not meaningful.
A run directory that holds a finished checkpoint is reused, an unfinished one resumed.

Example:
  cpc demo --run-dir runs/demo --steps 200

Image patches (paper section 3.2): `cpc demo image --run-dir DIR` trains the image recipe on
Fashion-MNIST and compares linear probes of its features with pixels, a random-init and a
supervised encoder at 1k / 10k / 60k labels (cpc.image.demo).

Sentences (paper section 3.3): `cpc demo text --run-dir DIR` builds the book data (`cpc data
text`), trains the text recipe and compares logistic-regression probes of its sentence
features on MR-like sentiment with TF-IDF, bag of words and random encoders (cpc.text.demo).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train a tiny CPC on CPU and compare it with baselines (report.md)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="cpc demo [speech|image|text] --run-dir RUN_DIR [options] [key=value ...]",
    )
    parser.add_argument("--run-dir", required=True, help="output folder (training run, features, report)")
    parser.add_argument("--corpus", help="corpus folder (default: build one, else the committed sample)")
    parser.add_argument("--hours", type=float, default=1.0, help="hours of speech to build when no --corpus is given")
    parser.add_argument("--steps", type=int, help="training steps (default: the recipe's)")
    parser.add_argument(
        "--recipe",
        help=f"training recipe, a shipped name or a YAML file (default {DEFAULT_RECIPE}; image: image/fashion_mnist; text: text/books)",
    )
    parser.add_argument(
        "--labels", type=int, nargs="+", help="image: labelled training images per probe (default 1000 10000 60000)"
    )
    parser.add_argument(
        "--ctc", action="store_true", help="also run the CTC phone probe (PER; ~3 CPU-minutes per feature set on 1 h)"
    )
    parser.add_argument(
        "modality", nargs="?", default="speech", metavar="speech|image|text", help="which demo (default speech)"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for training")
    parser.set_defaults(func=_main)


MODALITIES = ("speech", "image", "text")


def _main(args: argparse.Namespace) -> int:
    from cpc.cli import CommandError

    overrides, modality = list(args.overrides), args.modality
    if "=" in modality:  # `cpc demo --run-dir D key=value`: no modality given, the first word is an override
        overrides, modality = [modality, *overrides], "speech"
    if modality not in MODALITIES:
        raise CommandError(
            f"cpc demo: {modality!r} is not a demo; expected one of {', '.join(MODALITIES)} or key=value overrides"
        )
    if modality == "image":
        from cpc.image.demo import DEFAULT_RECIPE as IMAGE_RECIPE
        from cpc.image.demo import LABEL_BUDGETS, run_image_demo

        if args.corpus or args.ctc:
            raise CommandError("cpc demo image: --corpus and --ctc are speech options")
        run_image_demo(
            args.run_dir,
            steps=args.steps,
            recipe=args.recipe or IMAGE_RECIPE,
            overrides=overrides,
            labels=args.labels or LABEL_BUDGETS,
        )
        return 0
    if modality == "text":
        from cpc.text.demo import DEFAULT_RECIPE as TEXT_RECIPE
        from cpc.text.demo import run_text_demo

        if args.corpus or args.ctc or args.labels:
            raise CommandError("cpc demo text: --corpus, --ctc and --labels are speech and image options")
        from cpc.text.corpus import DEFAULT_ROOT as TEXT_ROOT

        roots = [
            override.split("=", 1)[1] for override in overrides if override.split("=", 1)[0].strip() == "data.root"
        ]
        run_text_demo(
            args.run_dir,
            steps=args.steps,
            recipe=args.recipe or TEXT_RECIPE,
            overrides=overrides,
            root=roots[-1] if roots else TEXT_ROOT,
        )
        return 0
    if args.labels:
        raise CommandError("cpc demo: --labels is an image option (cpc demo image)")
    run_demo(
        args.run_dir,
        corpus=args.corpus,
        hours=args.hours,
        steps=args.steps,
        recipe=args.recipe or DEFAULT_RECIPE,
        overrides=overrides,
        ctc=args.ctc,
    )
    return 0


if __name__ == "__main__":
    import sys

    import cpc.cli

    cpc.cli.COMMAND_MODULES += [
        name for name in ("cpc.speech.evaluate", "cpc.speech.demo") if name not in cpc.cli.COMMAND_MODULES
    ]
    sys.exit(cpc.cli.main(["demo", *sys.argv[1:]]))
